/* failure.c — allocations that return NULL for want of memory: counted by
 * reason (the reports show them), and with HAKMEM_TRACE=oom one line each
 * on stderr saying what was asked and why it failed:
 *   hakmem: malloc(68719476736) failed: mmap of 64 GiB refused (ENOMEM)
 * The reason of a refused mapping is the calling thread's last one (os.c
 * notes it). errno is ENOMEM whatever the reason, as C and POSIX say. */
#include <errno.h>

#include "internal.h"

static _Atomic uint64_t counts[HAK_FAIL_REASONS];

static const struct {
  int err;
  const char *name;
} errnames[] = {{ENOMEM, "ENOMEM"}, {EAGAIN, "EAGAIN"}, {EINVAL, "EINVAL"},       {EPERM, "EPERM"},
                {EACCES, "EACCES"}, {ENFILE, "ENFILE"}, {EOVERFLOW, "EOVERFLOW"}, {EFAULT, "EFAULT"}};

static void put_errno(hak_buf_t *b, int err) {
  for (size_t i = 0; i < sizeof errnames / sizeof errnames[0]; i++)
    if (errnames[i].err == err) {
      _hak_buf_str(b, errnames[i].name);
      return;
    }
  _hak_buf_str(b, "errno ");
  _hak_buf_dec(b, (uint64_t)err);
}

static void trace(hak_ask_t ask, int why, hak_refusal_t refusal) {
  hak_buf_t b = {.fd = 2};
  _hak_buf_str(&b, "hakmem: ");
  _hak_buf_str(&b, ask.who);
  _hak_buf_str(&b, "(");
  if (ask.block) {
    _hak_buf_str(&b, ") failed: no memory for a ");
    _hak_buf_dec(&b, ask.size);
    _hak_buf_str(&b, "-byte block");
  } else {
    if (why == HAK_FAIL_OVERFLOW) {
      _hak_buf_dec(&b, ask.n);
      _hak_buf_str(&b, ", ");
    }
    _hak_buf_dec(&b, ask.size);
    _hak_buf_str(&b, ") failed");
    if (ask.align) {
      _hak_buf_str(&b, " (alignment ");
      _hak_buf_dec(&b, ask.align);
      _hak_buf_str(&b, ")");
    }
  }
  switch (why) {
    case HAK_FAIL_SIZE:
      _hak_buf_str(&b, ": the size is over PTRDIFF_MAX");
      break;
    case HAK_FAIL_OVERFLOW:
      _hak_buf_str(&b, ": the count times the size overflows");
      break;
    case HAK_FAIL_ALIGN:
      _hak_buf_str(&b, ": no address in the 47-bit address space has that alignment");
      break;
    default:
      if (!refusal.err) {
        _hak_buf_str(&b, ": no memory");
        break;
      }
      _hak_buf_str(&b, ": mmap of ");
      _hak_buf_bytes(&b, refusal.bytes);
      _hak_buf_str(&b, " refused (");
      put_errno(&b, refusal.err);
      _hak_buf_str(&b, ")");
  }
  _hak_buf_str(&b, "\n");
  _hak_buf_flush(&b);
}

void *_hak_fail(hak_ask_t ask, int why) {
  errno = ENOMEM;
  if (!ask.who) return NULL; /* the caller reports it, with what it was asked */
  hak_refusal_t *r = _hak_os_refusal(), refusal = *r;
  *r = (hak_refusal_t){0};
  atomic_fetch_add_explicit(&counts[why], 1, memory_order_relaxed);
  if (hak_opt(HAK_OPT_TRACE) & HAK_TRACE_OOM) trace(ask, why, refusal);
  return NULL;
}

uint64_t _hak_fail_count(int why) { return atomic_load_explicit(&counts[why], memory_order_relaxed); }
