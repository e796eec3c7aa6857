/* crash.c — HAKMEM_CRASH_REPORT=1: on SIGSEGV, SIGBUS and SIGABRT, before
 * the program's own handler (or the default action) runs, one line says
 * what the faulting address is in hakmem's terms, and one more gives the
 * memory figures:
 *   hakmem: SIGSEGV at 0x7f1c2a0b8228: inside a live 48-byte block at offset 40 (0x7f1c2a0b8200, class 3)
 *   hakmem: memory: 1.2 MiB in use, 4 MiB empty kept for reuse; 0 invalid frees, 0 failed allocations
 * The handler is async-signal-safe: it takes no lock, allocates nothing,
 * and reads hakmem's structures and the blocks only through _hak_os_peek,
 * which fails instead of faulting. It reports once; then the action that
 * was in place when hakmem installed its own is put back, and the signal
 * runs it: a fault happens again as the instruction restarts, a signal
 * sent by a program (abort, kill) is sent again. Handlers a program
 * installs after start-up replace hakmem's. Only the thread that started
 * the library has an alternate signal stack (a stack overflow there is
 * reported; in another thread the kernel kills the process). */
#include <signal.h>

#include "internal.h"

static const int signals[] = {SIGSEGV, SIGBUS, SIGABRT};
#define NSIGNALS (sizeof signals / sizeof signals[0])
static struct sigaction before[NSIGNALS]; /* the actions hakmem's replaced */
static _Atomic int reported;
#define ALT_STACK (64 << 10)

static void put_block(hak_buf_t *b, const char *state, size_t size, size_t offset, const void *block) {
  _hak_buf_str(b, "inside a ");
  _hak_buf_str(b, state);
  _hak_buf_str(b, " ");
  _hak_buf_dec(b, size);
  _hak_buf_str(b, "-byte block at offset ");
  _hak_buf_dec(b, offset);
  _hak_buf_str(b, " (");
  _hak_buf_hex(b, (uintptr_t)block);
}

/* Where in a SuperSlab `a` is. */
static void put_superslab(hak_buf_t *b, uintptr_t a) {
  hak_superslab_t *ss = hak_superslab_of((const void *)a);
  unsigned u = (unsigned)((a & (HAK_SS_SIZE - 1)) >> HAK_UNIT_SHIFT);
  hak_slab_t s;
  uint32_t guarded, free_units;
  if (a - (uintptr_t)ss < HAK_SS_HEADER) {
    _hak_buf_str(b, "in a SuperSlab's header (hakmem's metadata)");
    return;
  }
  /* hak_slab_of, each read checked: the unit's descriptor, or the slab it
   * leads to (a free unit's may lead anywhere: its bit says first) */
  if (_hak_os_peek(&ss->free_units, &free_units, sizeof free_units) ||
      _hak_os_peek(&ss->slab[u], &s, sizeof s) ||
      (!(free_units >> u & 1) && s.units != 1 && s.head != u &&
       _hak_os_peek(&ss->slab[s.head % HAK_UNITS], &s, sizeof s)) ||
      _hak_os_peek(&ss->guarded, &guarded, sizeof guarded)) {
    _hak_buf_str(b, "in a SuperSlab whose header cannot be read");
    return;
  }
  uintptr_t unit_end = (uintptr_t)ss + ((uintptr_t)(u + 1) << HAK_UNIT_SHIFT);
  if ((guarded >> u & 1) && a >= unit_end - HAK_PAGE) {
    _hak_buf_str(b, "in a guard page (no access) after a slab");
    return;
  }
  if ((free_units >> u & 1) || !s.units) {
    _hak_buf_str(b, "in a free unit of a SuperSlab (in no slab)");
    return;
  }
  uintptr_t start = (uintptr_t)ss + s.start, k = (a - start) / s.block_size;
  if (a < start || k >= s.carved) {
    _hak_buf_str(b, "in a slab of ");
    _hak_buf_dec(b, s.block_size);
    _hak_buf_str(b, "-byte blocks, but in no block carved yet");
    return;
  }
  const hak_block_t *block = (const hak_block_t *)(start + k * s.block_size);
  uintptr_t mark;
  const char *state = "live";
  if (_hak_os_peek(&block->mark, &mark, sizeof mark)) state = "(unreadable)";
  else if (mark == s.mark) state = "free";
  else if (hak_cfg_secure && mark == (hak_secret() | 1)) state = "freed (in the quarantine)";
  put_block(b, state, s.block_size, a - (uintptr_t)block, block);
  _hak_buf_str(b, ", class ");
  _hak_buf_dec(b, s.cls);
  _hak_buf_str(b, ")");
}

static void put_large(hak_buf_t *b, uintptr_t a, const hak_large_where_t *w) {
  uintptr_t block = (uintptr_t)w->block;
  if (a < block) {
    _hak_buf_str(b, "in the header of a Large block at ");
    _hak_buf_hex(b, block);
    _hak_buf_str(b, " (hakmem's metadata)");
  } else if (a >= block + w->size) {
    _hak_buf_str(b, "past the end of a ");
    _hak_buf_dec(b, w->size);
    _hak_buf_str(b, "-byte Large block at ");
    _hak_buf_hex(b, block);
    _hak_buf_str(b, " (its guard page)");
  } else {
    put_block(b, w->live ? "live" : "freed", w->size, a - block, (const void *)block);
    _hak_buf_str(b, w->live ? ", Large)" : ", Large: its pages have no access until it is reused)");
  }
}

static void put_where(hak_buf_t *b, uintptr_t a) {
  hak_large_where_t w;
  if (a < HAK_PAGE) {
    _hak_buf_str(b, "not hakmem's memory (the first page: a null pointer's)");
    return;
  }
  switch (hak_chunk_kind((const void *)(a + 1))) { /* the chunk of a itself */
    case HAK_CHUNK_SUPERSLAB:
      put_superslab(b, a);
      return;
    case HAK_CHUNK_ZERO:
      _hak_buf_str(b, "in hakmem's region of zero-byte allocations (a malloc(0) pointer: no byte to access)");
      return;
    default:
      if (_hak_large_where((const void *)a, &w)) put_large(b, a, &w);
      else _hak_buf_str(b, "not hakmem's memory");
  }
}

/* The debug build: the calling thread's recent slow-path events, oldest
 * first, each with how long before now it was. */
static void put_ring(hak_buf_t *b) {
  static const char *const kind[HAK_EV_KINDS] = {"refill of class", "slow free of", "Large malloc at",
                                                 "Large free of", "trim"};
  static const char *const from[] = {
      "", "", "from the current slab", "from a partial slab", "from an adopted slab", "from a fresh slab"};
  hak_heap_t *h = hak_tls_own_heap();
  hak_ring_t r;
  if (!hak_cfg_debug || !h || _hak_os_peek(&h->ring, &r, sizeof r) || !r.next) return;
  hak_tick_t now = _hak_os_ticks(), per_us = _hak_os_ms_ticks(1) / 1000 + 1;
  _hak_buf_str(b, "hakmem: this thread's last slow-path events (debug build), oldest first:\n");
  for (uint32_t i = r.next > HAK_RING_EVENTS ? r.next - HAK_RING_EVENTS : 0; i < r.next; i++) {
    const __typeof__(r.ev[0]) *e = &r.ev[i % HAK_RING_EVENTS];
    if (e->kind >= HAK_EV_KINDS) continue;
    _hak_buf_str(b, "  ");
    _hak_buf_dec(b, (now - e->at) / per_us);
    _hak_buf_str(b, " us ago: ");
    _hak_buf_str(b, kind[e->kind]);
    switch (e->kind) {
      case HAK_EV_REFILL:
        _hak_buf_str(b, " ");
        _hak_buf_dec(b, e->a);
        _hak_buf_str(b, " ");
        _hak_buf_str(b, e->b < sizeof from / sizeof from[0] ? from[e->b] : "");
        break;
      case HAK_EV_SLOW_FREE:
      case HAK_EV_LARGE_FREE:
        _hak_buf_str(b, " ");
        _hak_buf_hex(b, e->a);
        break;
      case HAK_EV_LARGE_ALLOC:
        _hak_buf_str(b, " ");
        _hak_buf_hex(b, e->a);
        _hak_buf_str(b, ", ");
        _hak_buf_dec(b, e->b);
        _hak_buf_str(b, " bytes");
        break;
      default:
        break;
    }
    _hak_buf_str(b, "\n");
  }
}

static const char *name_of(int sig) {
  return sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : "SIGABRT";
}

static void report(int sig, const siginfo_t *si) {
  hak_buf_t b = {.fd = 2};
  _hak_buf_str(&b, "hakmem: ");
  _hak_buf_str(&b, name_of(sig));
  if (sig != SIGABRT && si->si_code > 0) { /* a fault: the address is the kernel's */
    _hak_buf_str(&b, " at ");
    _hak_buf_hex(&b, (uintptr_t)si->si_addr);
    _hak_buf_str(&b, ": ");
    put_where(&b, (uintptr_t)si->si_addr);
  } else if (sig == SIGABRT) {
    _hak_buf_str(&b, " (abort(), or hakmem's own report above)");
  } else {
    _hak_buf_str(&b, " (sent with kill or raise: no fault)");
  }
  _hak_buf_str(&b, "\nhakmem: memory: ");
  _hak_buf_bytes(&b, hak_mem_total(hak_tls_budget(), HAK_MEM_USED));
  _hak_buf_str(&b, " in use, ");
  _hak_buf_bytes(&b, hak_mem_total(hak_tls_budget(), HAK_MEM_EMPTY));
  _hak_buf_str(&b, " empty kept for reuse; ");
  _hak_buf_dec(&b, _hak_invalid_count());
  _hak_buf_str(&b, " invalid frees, ");
  uint64_t failed = 0;
  for (int r = 0; r < HAK_FAIL_REASONS; r++) failed += _hak_fail_count(r);
  _hak_buf_dec(&b, failed);
  _hak_buf_str(&b, " failed allocations\n");
  put_ring(&b);
  _hak_buf_flush(&b);
}

static void on_signal(int sig, siginfo_t *si, void *ctx) {
  (void)ctx;
  size_t i = 0;
  while (signals[i] != sig) i++;
  if (!atomic_exchange_explicit(&reported, 1, memory_order_relaxed)) report(sig, si);
  _hak_os_sigaction(sig, &before[i], NULL);
  if (sig == SIGABRT || si->si_code <= 0) _hak_os_raise(sig);
}

void _hak_crash_install(void) {
  void *alt = _hak_os_map(ALT_STACK, HAK_PAGE);
  if (alt) _hak_os_sigaltstack(alt, ALT_STACK);
  struct sigaction sa = {.sa_sigaction = on_signal, .sa_flags = SA_SIGINFO | SA_ONSTACK};
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < NSIGNALS; i++) _hak_os_sigaction(signals[i], &sa, &before[i]);
}
