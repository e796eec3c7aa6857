/* thread.c — heaps and threads: the one thread-local, the registry of
 * heaps (live, and spare ones kept whole for the next thread), making a
 * thread's heap at its first allocation, the pthread key whose destructor
 * detaches it at thread exit, the locked global heap for calls after that,
 * start-up, and the fork protocol.
 *
 * Start-up is re-entrant: every structure is statically initialised, so a
 * malloc that arrives before or during _hak_init (from the dynamic loader,
 * or from pthread_atfork registering our handlers) simply works with the
 * default options.
 *
 * Lock order, which fork's prepare handler follows:
 *   heap registry → global heap → abandoned lists (by class) → sample runs
 *   (a leaf) → SuperSlabs → Large → profile → metadata. */
#include <pthread.h>

#include "internal.h"

const hak_front_t _hak_heap_empty = {.key = HAK_KEY_NONE};
const hak_front_t _hak_heap_dead = {.key = HAK_KEY_NONE};
__thread hak_tls_t hak_tls __attribute__((tls_model("initial-exec"))) = {
    .heap = (hak_front_t *)&_hak_heap_empty,
    .profile_left = -1 /* the first allocation: _hak_alloc_sample_at */};

hak_lock_t _hak_heap_registry_lock = HAK_LOCK_INIT;
hak_lock_t _hak_global_heap_lock = HAK_LOCK_INIT;

static hak_list_t live_heaps;     /* registry lock */
static hak_list_t spare_heaps;    /* registry lock: retired heaps, reused whole */
static uint32_t next_heap_id = 2; /* id 1 is the global heap */
/* Its inbox stays closed: it holds slabs only within a call. */
static hak_heap_t global_heap = {
    .front = {.key = 1u << 2}, .counters = {.sample_left = 1}, .inbox = HAK_INBOX_CLOSED, .id = 1};

static _Atomic int init_state; /* 0 not started, 1 running, 2 done */
static pthread_key_t heap_key;
static _Atomic bool key_ready;

#define HEAP_OF_REG(l) HAK_CONTAINER(l, hak_heap_t, reg)

static hak_heap_t *heap_create(void) {
  _hak_init();
  if (hak_tls.heap != &_hak_heap_empty) /* made by a malloc inside _hak_init */
    return (hak_heap_t *)hak_tls.heap;
  _hak_lock(&_hak_heap_registry_lock);
  hak_heap_t *h = spare_heaps.head ? HEAP_OF_REG(spare_heaps.head) : NULL;
  if (h) {
    hak_list_remove(&spare_heaps, &h->reg);
  } else {
    h = _hak_meta_alloc(sizeof *h);
    if (h) h->id = next_heap_id++;
  }
  if (h) hak_list_push(&live_heaps, &h->reg);
  _hak_unlock(&_hak_heap_registry_lock);
  if (!h) return NULL;
  atomic_store_explicit(&h->inbox, 0, memory_order_relaxed); /* closed when it retired */
  h->pool.purge_at = 0;
  h->counters.sample_left = 1;                      /* its first slow path is timed */
  memset(h->carve_shift, 0, sizeof h->carve_shift); /* HAKMEM_ACE learns each thread's own */
  _hak_budget_start(&h->budget);
  h->front.key = (h->id << 2) | (hak_opt(HAK_OPT_CHECK) ? HAK_KEY_CHECK : 0);
  hak_tls.heap = &h->front;
  hak_tls.profile_left = INT64_MAX; /* no sample */
  if (_hak_profile_on) _hak_heap_profile_start();
  /* May allocate: the heap is already set. */
  if (atomic_load_explicit(&key_ready, memory_order_acquire)) pthread_setspecific(heap_key, h);
  return h;
}

/* Threads past their teardown allocate from the global heap, under its
 * lock. It holds no slab between calls: frees into its slabs, from any
 * thread, are frees into detached slabs, so nothing waits for it to run. */
static void *global_alloc(size_t cls, const char *who) {
  _hak_lock(&_hak_global_heap_lock);
  void *p = _hak_heap_alloc(&global_heap, cls, who);
  _hak_heap_detach_class(&global_heap, cls, false);
  _hak_heap_release_spares(&global_heap);
  _hak_pool_disown_all(&global_heap.pool);
  _hak_unlock(&_hak_global_heap_lock);
  return p;
}

void *_hak_alloc_refill(size_t cls, const char *who) {
  hak_front_t *f = hak_tls.heap;
  if (cls == 0) cls = 1; /* malloc(0): the smallest block */
  if (f == &_hak_heap_empty) {
    hak_heap_t *h = heap_create();
    f = h ? &h->front : (hak_front_t *)&_hak_heap_dead;
  }
  hak_block_t *b = f->slot[cls].free; /* malloc(0) comes here with class 1's list as it is */
  if (HAK_UNLIKELY(b)) f->slot[cls].free = hak_next(b);
  else b = f == &_hak_heap_dead ? global_alloc(cls, who) : _hak_heap_alloc((hak_heap_t *)f, cls, who);
  if (hak_cfg_stats && b) hak_class_event(cls, HAK_CSTAT_allocs, 1);
  if (!b) return _hak_fail((hak_ask_t){.who = who, .size = hak_class_size(cls), .block = true}, HAK_FAIL_MAP);
  b->mark = 0; /* handed out: not free */
  return b;
}

/* The profile build's sample: a block of a run of its own, or if none
 * could be had, the list's (or a refill's) as any other. Its entry,
 * _hak_alloc_sample, passes on the frame of the call (its return address,
 * the stack pointer after the return, rbp, as they are at the entry), so
 * that the stack walk starts there, not in hakmem's own frames: a quarter of
 * a sample's instructions. Called, or jumped to by a caller that left no
 * frame (malloc's fast path); either way the walk from there is sound. */
__asm__(
    ".text\n"
    ".globl _hak_alloc_sample\n"
    ".hidden _hak_alloc_sample\n"
    ".type _hak_alloc_sample, @function\n"
    "_hak_alloc_sample:\n"
    "  .cfi_startproc\n"
    "  sub $24, %rsp\n" /* a hak_frame_t; rsp 16-byte aligned for the call */
    "  .cfi_adjust_cfa_offset 24\n"
    "  mov 24(%rsp), %rax\n"
    "  mov %rax, 0(%rsp)\n" /* ip */
    "  lea 32(%rsp), %rax\n"
    "  mov %rax, 8(%rsp)\n"  /* sp */
    "  mov %rbp, 16(%rsp)\n" /* bp */
    "  mov %rsp, %rcx\n"
    "  call _hak_alloc_sample_at\n"
    "  add $24, %rsp\n"
    "  .cfi_adjust_cfa_offset -24\n"
    "  ret\n"
    "  .cfi_endproc\n"
    ".size _hak_alloc_sample, .-_hak_alloc_sample\n");

void *_hak_alloc_sample_at(size_t cls, size_t size, const char *who, const hak_frame_t *from) {
  /* A thread's first allocation comes here too (its countdown starts at
   * -1): it makes the heap, and so the countdown, and is counted. */
  if (hak_tls.heap == &_hak_heap_empty && (!heap_create() || (hak_tls.profile_left -= (int64_t)size) >= 0))
    return _hak_alloc_refill(cls, who);
  void *b = _hak_heap_alloc_sample((hak_heap_t *)hak_tls.heap, cls, size, from);
  return b ? b : _hak_alloc_refill(cls, who);
}

/* A free into a slab the calling thread's heap does not hold (a remote
 * free, mostly), or of a block that may be free already. A thread that has
 * no heap yet makes one first, as its first allocation would: its frees
 * are then counted in its own counters, not in shared atomics (a consumer
 * thread that only frees paid three atomic adds per block). */
void _hak_free_unheld(void *p, const char *who) {
  if (HAK_UNLIKELY(hak_tls.heap == &_hak_heap_empty)) heap_create();
  _hak_heap_free_unheld(hak_tls_own_heap(), p, who);
}

/* Unlinks h from the live registry, its budget changes, room and counts
 * added in; with `reuse`, keeps it for a new thread. */
static void heap_retire(hak_heap_t *h, bool reuse) {
  _hak_budget_flush(&h->budget);
  _hak_budget_drop_room(&h->budget);
  _hak_counters_merge(&h->counters);
  _hak_lock(&_hak_heap_registry_lock);
  hak_list_remove(&live_heaps, &h->reg);
  if (reuse) hak_list_push(&spare_heaps, &h->reg);
  _hak_unlock(&_hak_heap_registry_lock);
}

static void heap_destructor(void *arg) {
  hak_heap_t *h = arg;
  hak_tls.heap = (hak_front_t *)&_hak_heap_dead; /* later calls use the global heap */
  hak_tls.profile_left = INT64_MAX;              /* and are not sampled */
  _hak_heap_detach_all(h, false, "exit");
  heap_retire(h, true);
}

void _hak_heap_flush_counters(void) {
  hak_heap_t *h = hak_tls_own_heap();
  if (h) _hak_counters_merge(&h->counters);
}

uint64_t _hak_heaps_counters(uint64_t *n, uint64_t (*cls)[HAK_CSTAT_COUNT]) {
  for (hak_link_t *l = live_heaps.head; l; l = l->next) {
    _hak_counters_add(&HEAP_OF_REG(l)->counters, n);
    if (cls) _hak_class_events_add(&HEAP_OF_REG(l)->counters, cls);
  }
  _hak_counters_add(&global_heap.counters, n);
  if (cls) _hak_class_events_add(&global_heap.counters, cls);
  return live_heaps.count;
}

/* ---- fork ------------------------------------------------------------- */
static hak_lock_t *const fixed_order_head[] = {&_hak_heap_registry_lock, &_hak_global_heap_lock};
static hak_lock_t *const fixed_order_tail[] = {&_hak_sample_runs_lock, &_hak_ss_lock,   &_hak_large_lock,
                                               &_hak_profile_lock,     &_hak_meta_lock, &_hak_elo_lock};
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

/* In the child only this thread exists: the locks are free again, HAKMEM_ELO
 * starts a new epoch (the child's page faults and times count from 0), and the
 * heaps of the threads that did not come along let go of their slabs. A
 * heap (or its pool) that was in the middle of a slow path when fork
 * happened cannot be trusted: it is retired with its slabs (they stay held
 * by an id no thread will have: a bounded leak, never a corruption). */
static void fork_child(void) {
  for (size_t i = 0; i < COUNT(fixed_order_head); i++) atomic_store(&fixed_order_head[i]->state, 0);
  for (size_t c = 0; c < HAK_CLASSES; c++) atomic_store(&_hak_abandoned_lock[c].state, 0);
  for (size_t i = 0; i < COUNT(fixed_order_tail); i++) atomic_store(&fixed_order_tail[i]->state, 0);
  _hak_elo_restart(atomic_load_explicit(&_hak_mem.committed, memory_order_relaxed),
                   atomic_load_explicit(&_hak_mem.taken, memory_order_relaxed),
                   atomic_load_explicit(&_hak_mem.reuse_delay, memory_order_relaxed));
  hak_front_t *me = hak_tls.heap;
  for (hak_link_t *l = live_heaps.head, *next; l; l = next) {
    next = l->next;
    hak_heap_t *h = HEAP_OF_REG(l);
    if (&h->front == me) continue;
    bool sound = !h->front.busy && !h->pool.busy;
    if (sound) _hak_heap_detach_all(h, true, "fork");
    else atomic_store_explicit(&h->inbox, HAK_INBOX_CLOSED, memory_order_relaxed); /* batches sent: leaked */
    heap_retire(h, sound);
  }
}

void _hak_init(void) {
  if (hak_cfg_secure) _hak_os_make_secret(); /* before the first block is carved */
  int expect = 0;
  if (atomic_load_explicit(&init_state, memory_order_acquire) == 2 ||
      !atomic_compare_exchange_strong(&init_state, &expect, 1))
    return;
  _hak_options_load();
  _hak_os_ticks_per_ms(); /* starts measuring the TSC's rate */
  _hak_elo_begin();
  if (pthread_key_create(&heap_key, heap_destructor) == 0)
    atomic_store_explicit(&key_ready, true, memory_order_release);
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  atomic_store_explicit(&init_state, 2, memory_order_release);
}
