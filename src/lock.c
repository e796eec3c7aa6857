/* lock.c — hakmem's one lock type: a futex mutex that is statically
 * initialised (usable before any constructor), never allocates, and is taken
 * by the fork handlers (thread.c) so that fork waits for every holder. */
#include "internal.h"

void _hak_lock_slow(hak_lock_t *l) {
  for (int spin = 0; spin < 100; spin++) {
    int expect = 0;
    if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->state, &expect, 1, memory_order_acquire,
                                              memory_order_relaxed))
      return;
    __builtin_ia32_pause();
  }
  /* Mark contended, then sleep until we take it while marking it contended. */
  while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0) _hak_os_futex_wait(&l->state, 2);
}

void _hak_unlock(hak_lock_t *l) {
  if (atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2) _hak_os_futex_wake(&l->state, 1);
}
