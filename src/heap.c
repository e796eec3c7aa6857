/* heap.c — thread heaps: creation, the allocation and free slow paths, the
 * slabs a heap holds (current, partial, spare), teardown at thread exit, the
 * locked global heap used after teardown, and the fork child's clean-up. */
#include <errno.h>

#include "internal.h"

const hak_front_t _hak_heap_empty = {.cur_unit = HAK_CUR_UNITS_EMPTY, .key = HAK_KEY_NONE};
const hak_front_t _hak_heap_dead = {.cur_unit = HAK_CUR_UNITS_EMPTY, .key = HAK_KEY_NONE};
__thread hak_front_t *hak_tls_heap __attribute__((tls_model("initial-exec"))) =
    (hak_front_t *)&_hak_heap_empty;

hak_lock_t _hak_heap_registry_lock = HAK_LOCK_INIT;
hak_lock_t _hak_global_heap_lock = HAK_LOCK_INIT;

static hak_heap_t *live_heaps;    /* registry lock */
static hak_heap_t *spare_heaps;   /* registry lock: torn-down heaps, reused whole */
static uint32_t next_heap_id = 2; /* id 1 is the global heap */
static uint64_t heaps_alive;
static hak_heap_t global_heap = {.front = {.cur_unit = HAK_CUR_UNITS_EMPTY, .key = 1u << 2}, .id = 1};

static uint32_t heap_owner(const hak_heap_t *h) { return h->front.key & ~3u; }

/* `busy` tells the fork child that this heap was inside a slow path. */
static void heap_enter(hak_heap_t *h) {
  h->front.busy = 1;
  atomic_signal_fence(memory_order_seq_cst);
}
static void heap_leave(hak_heap_t *h) {
  atomic_signal_fence(memory_order_seq_cst);
  h->front.busy = 0;
}

static hak_heap_t *heap_create(void) {
  _hak_init();
  if (hak_tls_heap != &_hak_heap_empty) /* made by a malloc inside _hak_init */
    return (hak_heap_t *)hak_tls_heap;
  _hak_lock(&_hak_heap_registry_lock);
  hak_heap_t *h = spare_heaps;
  if (h) {
    spare_heaps = h->next_spare;
  } else {
    h = _hak_meta_alloc(sizeof *h);
    if (h) {
      h->id = next_heap_id++;
      for (size_t i = 0; i < HAK_CUR_UNITS; i++) h->front.cur_unit[i].unit = HAK_UNIT_NONE;
    }
  }
  if (h) {
    h->prev_live = NULL;
    h->next_live = live_heaps;
    if (live_heaps) live_heaps->prev_live = h;
    live_heaps = h;
    heaps_alive++;
  }
  _hak_unlock(&_hak_heap_registry_lock);
  if (!h) return NULL;
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) h->stat[i] = 0;
  h->purge_at = 0;
  h->mem_seen[0] = (int64_t)atomic_load_explicit(&_hak_mem.live, memory_order_relaxed);
  h->mem_seen[1] = (int64_t)atomic_load_explicit(&_hak_mem.idle, memory_order_relaxed);
  h->front.key = (h->id << 2) | (hak_opt(HAK_OPT_CHECK) ? HAK_KEY_CHECK : 0);
  hak_tls_heap = &h->front;
  if (_hak_key_ready()) _hak_set_specific(h); /* may allocate: the heap is already set */
  return h;
}

/* h starts or stops holding s. */
static void heap_hold(hak_heap_t *h, hak_slab_t *s) { h->held_bytes += hak_slab_bytes(s); }

/* The refill hint (freed[]) names only partial slabs h holds: it goes
 * when s becomes a spare (which may change class) or leaves h (once given
 * back, its memory may be unmapped). */
static void heap_forget_hint(hak_heap_t *h, const hak_slab_t *s) {
  if (h->front.freed[s->cls] == s) h->front.freed[s->cls] = NULL;
}

/* s stops being held by h. */
static void heap_drop(hak_heap_t *h, hak_slab_t *s) {
  s->where = HAK_IN_NONE;
  h->held_bytes -= hak_slab_bytes(s);
  heap_forget_hint(h, s);
}

static void heap_release(hak_heap_t *h, hak_slab_t *s) {
  heap_drop(h, s);
  _hak_slab_release(s);
}

/* h lets go of s: sets it aside (a full slab it may free into again), or
 * for good (thread exit, fork child, the global heap). */
static void heap_detach(hak_heap_t *h, hak_slab_t *s, bool aside) {
  heap_drop(h, s);
  h->stat[HAK_STAT_slabs_detached]++;
  _hak_slab_detach(s, aside ? heap_owner(h) | HAK_SET_ASIDE : 0);
}

/* Empty Tiny and Mid slabs are kept as spares, by size, for any class of
 * that size: a class whose blocks come and go then needs neither the
 * SuperSlab lock nor fresh pages. Spares count as empty memory: while it is
 * over budget, the largest spares are given back (and their SuperSlab
 * purges). Empty pool runs go straight back to their SuperSlab, which the
 * heap owns (superslab.c): there they merge with their free neighbours,
 * without the global lock. */
static void heap_unspare(hak_heap_t *h, hak_slab_t *s) {
  unsigned i = s->units - 1u;
  hak_list_remove(&h->spare[i], s);
  if (!h->spare[i].head) h->spare_mask &= ~(1u << i);
  h->spare_bytes -= hak_slab_bytes(s);
  h->spare_at = __builtin_ia32_rdtsc();
  hak_mem_move(hak_slab_bytes(s), &_hak_mem.idle, &_hak_mem.live);
}

static void heap_add_spare(hak_heap_t *h, hak_slab_t *s) {
  if (s->cls > HAK_CLASS_MID_LAST) {
    heap_release(h, s);
    return;
  }
  unsigned i = s->units - 1u;
  heap_forget_hint(h, s);
  s->where = HAK_IN_SPARE;
  hak_list_push(&h->spare[i], s);
  h->spare_mask |= 1u << i;
  h->spare_bytes += hak_slab_bytes(s);
  h->spare_at = __builtin_ia32_rdtsc();
  hak_mem_move(hak_slab_bytes(s), &_hak_mem.live, &_hak_mem.idle);
  while (h->spare_mask && hak_mem_over()) {
    hak_slab_t *victim = h->spare[31u - (unsigned)__builtin_clz(h->spare_mask)].tail;
    heap_unspare(h, victim);
    heap_release(h, victim);
  }
}

/* Spares that no allocation took and no free added for the purge delay are
 * empty memory nobody reuses: over the budget, the largest go back as
 * empty since then, so that the purge pass their release runs finds them
 * aged (a thread that stops allocating after a burst keeps no more than
 * the budget, however large the budget was when it kept them). */
static void heap_age_spares(hak_heap_t *h) {
  if (!h->spare_mask) return;
  uint64_t delay = (uint64_t)hak_opt(HAK_OPT_PURGE_DELAY_MS) * _hak_os_ticks_per_ms();
  if (__builtin_ia32_rdtsc() - h->spare_at < delay) return;
  uint64_t since = h->spare_at;
  while (h->spare_mask && hak_mem_over()) {
    hak_slab_t *victim = h->spare[31u - (unsigned)__builtin_clz(h->spare_mask)].tail;
    heap_unspare(h, victim);
    heap_drop(h, victim);
    _hak_slab_release_since(victim, since);
  }
  h->spare_at = since; /* what stays has aged just as long */
}

/* A spare slab for cls, made a slab of cls: one of its size, else the
 * smallest larger one, whose extra units go back to its SuperSlab. */
static hak_slab_t *heap_take_spare(hak_heap_t *h, size_t cls) {
  if (cls > HAK_CLASS_MID_LAST) return NULL; /* pool runs come from the heap's SuperSlabs */
  unsigned n = (unsigned)_hak_slab_units(cls);
  bool unit0_ok = hak_class_size(cls) <= HAK_UNIT0_MAX_BLOCK;
  hak_slab_t *s = NULL;
  for (uint32_t m = h->spare_mask >> (n - 1) << (n - 1); m && !s; m &= m - 1)
    for (s = h->spare[__builtin_ctz(m)].head; s && !unit0_ok && hak_slab_unit(s) == 0;) s = s->next;
  if (!s) return NULL;
  heap_unspare(h, s);
  hak_mem_reused(hak_slab_bytes(s));
  if (s->units > n) {
    h->held_bytes -= hak_slab_bytes(s);
    _hak_slab_shrink(s, n);
    h->held_bytes += hak_slab_bytes(s);
  }
  if (s->cls != cls) _hak_slab_format(s, cls);
  return s;
}

static void heap_release_spares(hak_heap_t *h) {
  while (h->spare_mask) {
    hak_slab_t *s = h->spare[__builtin_ctz(h->spare_mask)].head;
    heap_unspare(h, s);
    heap_release(h, s);
  }
}

static void heap_add_partial(hak_heap_t *h, hak_slab_t *s, uint8_t where) {
  s->where = where;
  hak_list_push_tail(&h->partial[s->cls], s);
}

static bool has_free_block(hak_slab_t *s) {
  _hak_slab_collect(s);
  return s->local_free || s->carved < s->capacity;
}

/* Next slab for cls: the partial slab this heap last freed a block into,
 * else the oldest partial one that has free blocks, a spare one, an
 * abandoned one, or a fresh one; NULL when out of memory.
 * A partial slab without a free block goes round the list once more; found
 * full again, it is detached (the next free into it claims it) unless the
 * list is short, so a heap keeps no more than a couple of slabs it cannot
 * allocate from. */
static hak_slab_t *heap_next_slab(hak_heap_t *h, size_t cls) {
  hak_slab_list_t *partial = &h->partial[cls];
  hak_slab_t *s = h->front.freed[cls];
  h->front.freed[cls] = NULL;
  /* The hint is a slab h holds (heap_forget_hint), of class cls, but it may
   * have filled up or become current since. */
  HAK_DEBUG_ASSERT(!s || (atomic_load_explicit(&s->owner, memory_order_relaxed) == heap_owner(h) && s->cls == cls));
  if (s && (s->where == HAK_IN_PARTIAL || s->where == HAK_IN_ROTATED) && has_free_block(s)) {
    hak_list_remove(partial, s);
    return s;
  }
  for (uint32_t n = partial->count; n > 0 && (s = partial->head) != NULL; n--) {
    hak_list_remove(partial, s);
    if (has_free_block(s)) return s;
    if (s->where != HAK_IN_ROTATED || partial->count < HAK_FULL_KEEP) {
      heap_add_partial(h, s, HAK_IN_ROTATED);
      continue;
    }
    heap_detach(h, s, true);
  }
  /* Taking memory: what aged past the delay goes first (if over budget). */
  heap_age_spares(h);
  _hak_pool_purge(h);
  if ((s = heap_take_spare(h, cls)) != NULL) return s;
  if ((s = _hak_slab_adopt(cls, heap_owner(h))) != NULL) {
    h->stat[HAK_STAT_slabs_adopted]++;
  } else if ((s = cls > HAK_CLASS_MID_LAST ? _hak_pool_alloc(h, cls, heap_owner(h))
                                           : _hak_slab_alloc(cls, heap_owner(h))) != NULL) {
    h->stat[HAK_STAT_slabs_taken]++;
  } else {
    return NULL;
  }
  heap_hold(h, s);
  return s;
}

/* The number (address >> HAK_UNIT_SHIFT) of s's first unit. */
static inline uintptr_t slab_unit_number(const hak_slab_t *s) {
  return (((uintptr_t)s >> HAK_UNIT_SHIFT) & ~(uintptr_t)(HAK_UNITS - 1)) + hak_slab_unit(s);
}

/* s's units now lead to slot in the free fast path. */
static inline void cur_units_add(hak_front_t *f, const hak_slab_t *s, hak_class_slot_t *slot) {
  uintptr_t unit = slab_unit_number(s), end = unit + s->units;
  do {
    hak_cur_unit_t *e = &f->cur_unit[unit & (HAK_CUR_UNITS - 1)];
    e->unit = unit;
    e->slot = slot;
  } while (++unit != end);
}

/* s's units no longer do (entries another unit took over stay). */
static inline void cur_units_forget(hak_front_t *f, const hak_slab_t *s) {
  uintptr_t unit = slab_unit_number(s), end = unit + s->units;
  do {
    hak_cur_unit_t *e = &f->cur_unit[unit & (HAK_CUR_UNITS - 1)];
    if (e->unit == unit) e->unit = HAK_UNIT_NONE;
  } while (++unit != end);
}

/* Debug: every cur_unit entry is a unit of its slot's current slab. */
static void heap_check_cur_units(const hak_heap_t *h) {
  for (size_t i = 0; i < HAK_CUR_UNITS; i++) {
    const hak_cur_unit_t *e = &h->front.cur_unit[i];
    if (e->unit == HAK_UNIT_NONE) continue;
    uintptr_t a = e->unit << HAK_UNIT_SHIFT;
    HAK_ASSERT((e->unit & (HAK_CUR_UNITS - 1)) == i && !(e->slot->cur & HAK_CUR_CHECK));
    HAK_ASSERT(hak_slab_of((hak_superslab_t *)(a & ~(HAK_SS_SIZE - 1)), a) == (hak_slab_t *)e->slot->cur);
  }
}

/* The fast free's shortcut for the current slab (cur_unit) is off in
 * checking mode, and for pool classes: their frees count, so that an empty
 * run is seen at once and given back (a run is up to 1 MiB). A slab stops
 * being current here before anything else happens to it. */
static inline void heap_set_cur(hak_heap_t *h, size_t cls, hak_slab_t *s) {
  hak_class_slot_t *slot = &h->front.slot[cls];
  hak_slab_t *old = hak_front_cur(&h->front, cls);
  if (old && !(slot->cur & HAK_CUR_CHECK)) cur_units_forget(&h->front, old);
  bool tag = (h->front.key & HAK_KEY_CHECK) || cls > HAK_CLASS_MID_LAST;
  slot->cur = s ? (uintptr_t)s | (tag ? HAK_CUR_CHECK : 0) : 0;
  if (s) {
    s->where = HAK_IN_CUR;
    if (!tag) cur_units_add(&h->front, s, slot);
  }
  if (hak_cfg_debug) heap_check_cur_units(h);
}

/* A run of a pool class that holds a single block is taken for that
 * block and belongs to no heap while the block is out (owner 0, on no
 * list, never current); freeing the block gives it back at once
 * (_hak_free_slow). So a large block costs a run taken and a run given
 * back, with no list or ownership change on either side. */
static hak_block_t *heap_alloc_single(hak_heap_t *h, size_t cls) {
  heap_age_spares(h);
  hak_slab_t *s = _hak_pool_alloc(h, cls, 0);
  if (!s) return NULL;
  h->stat[HAK_STAT_slabs_taken]++;
  return _hak_slab_take(s);
}

/* Pops a block of cls, refilling the heap's list from its slabs. A current
 * slab with nothing left goes to the back of the partial list, where frees
 * have time to come back to it. */
static void *heap_alloc(hak_heap_t *h, size_t cls) {
  hak_block_t *b = h->front.slot[cls].free;
  if (b) {
    h->front.slot[cls].free = b->next;
    return b;
  }
  heap_enter(h);
  if (atomic_load_explicit(&h->remote_pending, memory_order_relaxed)) _hak_pool_collect(h);
  if (_hak_pool_single(cls)) {
    b = heap_alloc_single(h, cls);
    heap_leave(h);
    return b;
  }
  hak_slab_t *s = hak_front_cur(&h->front, cls);
  for (;;) {
    if (s && (b = _hak_slab_take(s)) != NULL) break;
    if (s) {
      heap_set_cur(h, cls, NULL);
      heap_add_partial(h, s, HAK_IN_PARTIAL);
    }
    s = heap_next_slab(h, cls);
    heap_set_cur(h, cls, s);
    if (!s) {
      heap_leave(h);
      return NULL;
    }
  }
  h->stat[HAK_STAT_refills]++;
  h->front.slot[cls].free = b->next;
  if (hak_cfg_debug) _hak_slab_check(s, &h->front);
  heap_leave(h);
  return b;
}

static void heap_detach_class(hak_heap_t *h, size_t c, bool recount);

/* Threads past their teardown allocate from the global heap, under its
 * lock. It holds no slab between calls: frees into its slabs, from any
 * thread, are frees into detached slabs, so nothing waits for it to run. */
static void *global_alloc(size_t cls) {
  _hak_lock(&_hak_global_heap_lock);
  void *p = heap_alloc(&global_heap, cls);
  heap_detach_class(&global_heap, cls, false);
  heap_release_spares(&global_heap);
  _hak_pool_disown_all(&global_heap);
  _hak_unlock(&_hak_global_heap_lock);
  return p;
}

void *_hak_alloc_refill(size_t cls) {
  hak_front_t *f = hak_tls_heap;
  if (cls == 0) cls = 1; /* malloc(0): the smallest block */
  if (f == &_hak_heap_empty) {
    hak_heap_t *h = heap_create();
    f = h ? &h->front : (hak_front_t *)&_hak_heap_dead;
  }
  void *p = f == &_hak_heap_dead ? global_alloc(cls) : heap_alloc((hak_heap_t *)f, cls);
  if (!p) errno = ENOMEM;
  return p;
}

/* A local free made s empty (used reached 0 on the fast path, or here). */
static void heap_slab_empty(hak_heap_t *h, hak_slab_t *s) {
  heap_enter(h);
  if (hak_front_cur(&h->front, s->cls) == s) heap_set_cur(h, s->cls, NULL); /* its list is empty */
  else hak_list_remove(&h->partial[s->cls], s);
  heap_add_spare(h, s);
  heap_leave(h);
}

void _hak_free_slow(void *p, const char *who) {
  if (!p) return;
  uintptr_t a = (uintptr_t)p;
  uint8_t kind = ((a - 1) >> HAK_ADDR_BITS) ? HAK_CHUNK_NONE : _hak_chunk_map[(a - 1) >> HAK_SS_SHIFT];
  if (kind == HAK_CHUNK_LARGE) {
    const char *problem = _hak_large_problem(p);
    if (problem) _hak_report_invalid(who, p, problem);
    else _hak_large_free(p);
    return;
  }
  if (kind != HAK_CHUNK_SUPERSLAB) {
    _hak_report_invalid(who, p, "was not allocated by hakmem");
    return;
  }
  hak_slab_t *s = hak_slab_of(hak_superslab_of(p), a);
  if (!_hak_slab_block_valid(s, p)) {
    _hak_report_invalid(who, p, "is not the start of a hakmem block");
    return;
  }
  hak_front_t *f = hak_tls_heap;
  hak_block_t *b = p;
  if (s->capacity == 1) { /* a single-block run (heap_alloc_single) */
    if (f != &_hak_heap_empty && f != &_hak_heap_dead) ((hak_heap_t *)f)->stat[HAK_STAT_slow_frees]++;
    s->used = 0;
    _hak_slab_release(s);
    return;
  }
  if (f == &_hak_heap_empty || f == &_hak_heap_dead) {
    _hak_slab_free_remote(s, b, 0);
    return;
  }
  hak_heap_t *h = (hak_heap_t *)f;
  h->stat[HAK_STAT_slow_frees]++;
  uint32_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
  if (owner && owner == heap_owner(h)) { /* only in checking mode: the key never matches */
    if (_hak_slab_block_is_free(s, b, f)) {
      _hak_report_invalid(who, p, "was already freed (double free)");
      return;
    }
    b->next = s->local_free;
    s->local_free = b;
    if (--s->used == 0) heap_slab_empty(h, s);
    else if (hak_cfg_debug) _hak_slab_check(s, f);
    return;
  }
  /* Another heap's slab, or a detached one; one this heap set aside comes
   * back to it. */
  h->stat[HAK_STAT_remote_frees]++;
  if (!_hak_slab_free_remote(s, b, heap_owner(h) | HAK_SET_ASIDE)) return;
  heap_enter(h);
  h->stat[HAK_STAT_slabs_adopted]++;
  heap_hold(h, s);
  if (s->used == 0) {
    heap_add_spare(h, s);
  } else {
    heap_add_partial(h, s, HAK_IN_PARTIAL);
    h->front.freed[s->cls] = s;
    if (hak_cfg_debug) _hak_slab_check(s, f);
  }
  heap_leave(h);
}

void _hak_free_local_empty(hak_slab_t *s) {
  heap_slab_empty((hak_heap_t *)hak_tls_heap, s);
}

/* Lets go of every slab of class c that h holds. */
static void heap_detach_class(hak_heap_t *h, size_t c, bool recount) {
  hak_slab_t *s = hak_front_cur(&h->front, c);
  if (recount && s) _hak_slab_recount(s);
  /* The list may hold a block of another slab, with or without a current one. */
  _hak_slab_return_blocks(h->front.slot[c].free);
  h->front.slot[c].free = NULL;
  if (s) {
    heap_set_cur(h, c, NULL);
    heap_detach(h, s, false);
  }
  while ((s = h->partial[c].head) != NULL) {
    hak_list_remove(&h->partial[c], s);
    if (recount) _hak_slab_recount(s);
    heap_detach(h, s, false);
  }
}

static void heap_detach_all(hak_heap_t *h, bool recount) {
  for (size_t c = 1; c < HAK_CLASSES; c++) heap_detach_class(h, c, recount);
  heap_release_spares(h);
  _hak_pool_disown_all(h);
}

/* h's working room goes (thread exit, malloc_trim). */
static void heap_drop_room(hak_heap_t *h) {
  if (h->room) atomic_fetch_sub_explicit(&_hak_mem.earners, 1, memory_order_relaxed);
  h->room = 0;
  _hak_mem_room_add(h);
}

/* Unlinks h from the live registry; with `reuse`, keeps it for a new thread. */
static void heap_retire(hak_heap_t *h, bool reuse) {
  _hak_mem_flush(h);
  heap_drop_room(h);
  _hak_class_flush(h);
  _hak_stats_merge(h->stat);
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) h->stat[i] = 0;
  _hak_lock(&_hak_heap_registry_lock);
  if (h->prev_live) h->prev_live->next_live = h->next_live;
  else live_heaps = h->next_live;
  if (h->next_live) h->next_live->prev_live = h->prev_live;
  h->next_live = h->prev_live = NULL;
  if (reuse) {
    h->next_spare = spare_heaps;
    spare_heaps = h;
  }
  heaps_alive--;
  _hak_unlock(&_hak_heap_registry_lock);
}

void _hak_heap_destructor(void *arg) {
  hak_heap_t *h = arg;
  hak_tls_heap = (hak_front_t *)&_hak_heap_dead; /* later calls use the global heap */
  heap_enter(h);
  heap_detach_all(h, false);
  HAK_DEBUG_ASSERT(h->held_bytes == 0 && h->spare_bytes == 0);
  heap_leave(h);
  heap_retire(h, true);
}

/* In the fork child (single-threaded, locks reinitialised): let go of the
 * slabs of every heap whose thread does not exist here. A heap that was in
 * the middle of a slow path when fork happened cannot be trusted: it is
 * retired with its slabs (they stay held by an id no thread will have). */
void _hak_heap_fork_child(void) {
  hak_front_t *me = hak_tls_heap;
  hak_heap_t *next;
  for (hak_heap_t *h = live_heaps; h; h = next) {
    next = h->next_live;
    if (&h->front == me) continue;
    bool sound = !h->front.busy;
    if (sound) heap_detach_all(h, true);
    heap_retire(h, sound);
  }
}

/* malloc_trim: the calling thread's heap gives back its spare slabs, the
 * current slabs whose blocks are all free, and its wholly free SuperSlabs.
 * Returns slabs released. */
size_t _hak_heap_trim(void) {
  hak_front_t *f = hak_tls_heap;
  if (f == &_hak_heap_empty || f == &_hak_heap_dead) return 0;
  hak_heap_t *h = (hak_heap_t *)f;
  size_t n = 0;
  heap_enter(h);
  for (unsigned i = 0; i < HAK_MAX_SLAB_UNITS; i++) n += h->spare[i].count;
  heap_release_spares(h);
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    _hak_slab_return_blocks(f->slot[c].free);
    f->slot[c].free = NULL;
    hak_slab_t *s = hak_front_cur(f, c);
    if (s) {
      _hak_slab_collect(s);
      if (s->used == 0) {
        heap_set_cur(h, c, NULL);
        heap_release(h, s);
        n++;
      }
    }
  }
  _hak_pool_trim(h);
  heap_drop_room(h);
  heap_leave(h);
  return n;
}

/* Adds the live heaps' counters and the global heap's to stat; returns the
 * number of live heaps (registry and global heap locks held). */
uint64_t _hak_heaps_stats(uint64_t *stat) {
  for (hak_heap_t *h = live_heaps; h; h = h->next_live)
    for (size_t i = 0; i < HAK_STAT_COUNT; i++) stat[i] += __atomic_load_n(&h->stat[i], __ATOMIC_RELAXED);
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) stat[i] += global_heap.stat[i];
  return heaps_alive;
}

void _hak_heap_flush_stats(void) {
  hak_front_t *f = hak_tls_heap;
  if (f == &_hak_heap_empty || f == &_hak_heap_dead) return;
  hak_heap_t *h = (hak_heap_t *)f;
  _hak_stats_merge(h->stat);
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) h->stat[i] = 0;
  _hak_class_flush(h);
}
