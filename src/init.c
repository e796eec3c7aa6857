/* init.c — process start-up (options, the thread-exit key, fork handlers),
 * the fork protocol, exit report and version.
 *
 * Start-up is re-entrant: every structure is statically initialised, so a
 * malloc that arrives before or during _hak_init (from the dynamic loader,
 * or from pthread_atfork registering our handlers) simply works with the
 * default options.
 *
 * Lock order, which fork's prepare handler follows:
 *   heap registry → global heap → abandoned lists (by class) → SuperSlabs
 *   → each owned SuperSlab → Large → metadata. */
#include <pthread.h>

#include "internal.h"

static _Atomic int init_state; /* 0 not started, 1 running, 2 done */
static pthread_key_t heap_key;
static _Atomic bool key_ready;

bool _hak_key_ready(void) { return atomic_load_explicit(&key_ready, memory_order_acquire); }

int _hak_set_specific(void *heap) { return pthread_setspecific(heap_key, heap); }

static hak_lock_t *const fixed_order_head[] = {&_hak_heap_registry_lock, &_hak_global_heap_lock};
static hak_lock_t *const fixed_order_tail[] = {&_hak_ss_lock, &_hak_large_lock, &_hak_meta_lock};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void fork_prepare(void) {
  for (size_t i = 0; i < COUNT(fixed_order_head); i++) _hak_lock(fixed_order_head[i]);
  for (size_t c = 0; c < HAK_CLASSES; c++) _hak_lock(&_hak_abandoned_lock[c]);
  for (size_t i = 0; i < COUNT(fixed_order_tail); i++) _hak_lock(fixed_order_tail[i]);
}

static void fork_parent(void) {
  for (size_t i = COUNT(fixed_order_tail); i-- > 0;) _hak_unlock(fixed_order_tail[i]);
  for (size_t c = HAK_CLASSES; c-- > 0;) _hak_unlock(&_hak_abandoned_lock[c]);
  for (size_t i = COUNT(fixed_order_head); i-- > 0;) _hak_unlock(fixed_order_head[i]);
}

static void fork_child(void) {
  /* Only this thread exists: the locks are free again, and the heaps of
   * the threads that did not come along let go of their slabs. */
  for (size_t i = 0; i < COUNT(fixed_order_head); i++) atomic_store(&fixed_order_head[i]->state, 0);
  for (size_t c = 0; c < HAK_CLASSES; c++) atomic_store(&_hak_abandoned_lock[c].state, 0);
  for (size_t i = 0; i < COUNT(fixed_order_tail); i++) atomic_store(&fixed_order_tail[i]->state, 0);
  _hak_heap_fork_child();
}

void _hak_init(void) {
  int expect = 0;
  if (atomic_load_explicit(&init_state, memory_order_acquire) == 2 ||
      !atomic_compare_exchange_strong(&init_state, &expect, 1))
    return;
  _hak_options_load();
  _hak_os_ticks_per_ms(); /* starts measuring the TSC's rate */
  if (pthread_key_create(&heap_key, _hak_heap_destructor) == 0)
    atomic_store_explicit(&key_ready, true, memory_order_release);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  atomic_store_explicit(&init_state, 2, memory_order_release);
}

__attribute__((constructor)) static void hak_constructor(void) { _hak_init(); }

__attribute__((destructor)) static void hak_destructor(void) {
  if (hak_opt(HAK_OPT_STATS)) _hak_stats_exit_report();
}

/* Static glibc calls these around fork and at thread exit; hakmem's own
 * handlers are registered with pthread_atfork, so they have nothing to do.
 * Defining them keeps glibc's malloc.o out of a -static link. */
void __malloc_fork_lock_parent(void);
void __malloc_fork_unlock_parent(void);
void __malloc_fork_unlock_child(void);
void __malloc_arena_thread_freeres(void);
void __malloc_fork_lock_parent(void) {}
void __malloc_fork_unlock_parent(void) {}
void __malloc_fork_unlock_child(void) {}
void __malloc_arena_thread_freeres(void) {}

#define STR2(x) #x
#define STR(x) STR2(x)
HAK_API const char *hak_version(void) {
  return "hakmem " STR(HAKMEM_VERSION_MAJOR) "." STR(HAKMEM_VERSION_MINOR) "." STR(HAKMEM_VERSION_PATCH);
}
