/* report.c — pointers given to free, realloc or malloc_usable_size that are
 * not live blocks of hakmem, and blocks the secure build finds damaged: one
 * line on stderr naming the call, the error, the address and the block
 * where known, then SIGABRT. Only a pointer
 * wholly outside hakmem's memory may, by HAKMEM_INVALID_FREE, be reported
 * once and ignored (1) or ignored (0), for programs that mix allocators;
 * every one is counted. */
#include "internal.h"

static _Atomic uint64_t invalid_count;

static void put_block(hak_buf_t *b, const void *block, size_t size) {
  _hak_buf_dec(b, size);
  _hak_buf_str(b, "-byte block at ");
  _hak_buf_hex(b, (uintptr_t)block);
}

/* " N, T M": the figures of a size mismatch. */
static void put_sizes(hak_buf_t *b, size_t given, const char *then, size_t size) {
  _hak_buf_str(b, ": freed with size ");
  _hak_buf_dec(b, given);
  _hak_buf_str(b, then);
  _hak_buf_dec(b, size);
}

/* What is wrong with p, after "hakmem: who(): ". */
static void put_problem(hak_buf_t *b, const void *p, hak_misuse_t m) {
  switch (m.kind) {
    case HAK_MISUSE_DOUBLE_FREE:
      _hak_buf_str(b, "double free of ");
      _hak_buf_hex(b, (uintptr_t)p);
      _hak_buf_str(b, " (");
      _hak_buf_dec(b, m.size);
      _hak_buf_str(b, "-byte block)");
      return;
    case HAK_MISUSE_OVERFLOW:
      _hak_buf_str(b, "write past the end of ");
      _hak_buf_hex(b, (uintptr_t)p);
      if (!m.size && !m.given) {
        _hak_buf_str(b, " (the record of its size is overwritten)");
        return;
      }
      _hak_buf_str(b, " (");
      _hak_buf_dec(b, m.size);
      _hak_buf_str(b, " bytes allocated, offset ");
      _hak_buf_dec(b, m.given);
      _hak_buf_str(b, " written)");
      return;
    case HAK_MISUSE_FREED_WRITE:
      _hak_buf_str(b, "write after free in the ");
      put_block(b, p, m.size);
      _hak_buf_str(b, " (offset ");
      _hak_buf_dec(b, m.given);
      _hak_buf_str(b, ")");
      return;
    case HAK_MISUSE_BAD_LINK:
      _hak_buf_str(b, "free list corrupted: it leads to ");
      _hak_buf_hex(b, (uintptr_t)p);
      _hak_buf_str(b, ", which is no free block");
      return;
    case HAK_MISUSE_DELETE_FORM:
      _hak_buf_str(b, m.given == HAK_FORM_ARRAY ? "mismatched delete of " : "mismatched delete[] of ");
      _hak_buf_hex(b, (uintptr_t)p);
      _hak_buf_str(b, " (");
      _hak_buf_dec(b, m.size);
      _hak_buf_str(b,
                   m.given == HAK_FORM_ARRAY ? " bytes from operator new[])" : " bytes from operator new)");
      return;
    default:
      break;
  }
  _hak_buf_str(b, "invalid pointer ");
  _hak_buf_hex(b, (uintptr_t)p);
  switch (m.kind) {
    case HAK_MISUSE_INSIDE:
      _hak_buf_str(b, ": offset ");
      _hak_buf_dec(b, (uint64_t)((const char *)p - (const char *)m.block));
      _hak_buf_str(b, " in the ");
      put_block(b, m.block, m.size);
      break;
    case HAK_MISUSE_NO_BLOCK:
      _hak_buf_str(b, ": in hakmem's memory, but in no live block");
      break;
    case HAK_MISUSE_SIZE:
      put_sizes(b, m.given, ", larger than its ", m.size);
      _hak_buf_str(b, "-byte block");
      break;
    case HAK_MISUSE_SIZE_ASKED:
      put_sizes(b, m.given, ", but allocated with size ", m.size);
      break;
    default:
      _hak_buf_str(b, ": not allocated by hakmem");
      break;
  }
}

void _hak_report(const char *who, const void *p, hak_misuse_t m) {
  static _Atomic int reported;
  atomic_fetch_add_explicit(&invalid_count, 1, memory_order_relaxed);
  long mode = m.kind == HAK_MISUSE_FOREIGN ? hak_opt(HAK_OPT_INVALID_FREE) : 2;
  if (mode == 0) return;
  if (mode == 1 && atomic_exchange_explicit(&reported, 1, memory_order_relaxed)) return;
  hak_buf_t b = {.fd = 2};
  _hak_buf_str(&b, "hakmem: ");
  _hak_buf_str(&b, who);
  _hak_buf_str(&b, "(): ");
  put_problem(&b, p, m);
  _hak_buf_str(&b, mode == 1 ? "; ignored (further invalid pointers are counted, not reported)\n" : "\n");
  _hak_buf_flush(&b);
  if (mode == 2) _hak_os_abort();
}

uint64_t _hak_invalid_count(void) { return atomic_load_explicit(&invalid_count, memory_order_relaxed); }
