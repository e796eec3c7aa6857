/* report.c — pointers hakmem did not hand out (given to free, realloc or
 * malloc_usable_size): every one is counted; by HAKMEM_INVALID_FREE the
 * first is reported on stderr (0: none, 2: each, then abort). */
#include "internal.h"

static _Atomic uint64_t invalid_count;

void _hak_report_invalid(const char *who, const void *p, const char *what) {
  static _Atomic int reported;
  atomic_fetch_add_explicit(&invalid_count, 1, memory_order_relaxed);
  long mode = hak_opt(HAK_OPT_INVALID_FREE);
  if (mode == 0) return;
  if (mode == 2 || !atomic_exchange_explicit(&reported, 1, memory_order_relaxed)) {
    hak_buf_t b = {.fd = 2};
    _hak_buf_str(&b, "hakmem: ");
    _hak_buf_str(&b, who);
    _hak_buf_str(&b, "(): ");
    _hak_buf_hex(&b, (uintptr_t)p);
    _hak_buf_str(&b, " ");
    _hak_buf_str(&b, what);
    _hak_buf_str(
        &b, mode == 2 ? "; aborting\n" : "; ignored (further invalid pointers are counted, not reported)\n");
    _hak_buf_flush(&b);
  }
  if (mode == 2) _hak_os_abort();
}

uint64_t _hak_invalid_count(void) { return atomic_load_explicit(&invalid_count, memory_order_relaxed); }
