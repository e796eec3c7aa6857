/* heap.c — one thread heap's slow paths: the slabs it holds (current,
 * partial, spare), refilling its free lists, the free slow path, letting go
 * of its slabs, and malloc_trim's part. thread.c makes heaps and gives them
 * to threads. */
#include <errno.h>

#include "internal.h"

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

/* h starts holding s: its bytes count in held_bytes, and its free blocks
 * carry h's mark (those of a slab another heap held are marked anew). */
static void heap_held_add(hak_heap_t *h, hak_slab_t *s) {
  h->held_bytes += hak_slab_bytes(s);
  if (s->mark == (uintptr_t)h) return;
  __atomic_store_n(&s->mark, (uintptr_t)h, __ATOMIC_RELAXED);
  for (hak_block_t *b = s->local_free; b; b = hak_next(b)) b->mark = (uintptr_t)h;
}

/* The refill hint names only partial slabs h holds: it goes
 * when s becomes a spare (which may change class) or leaves h (once given
 * back, its memory may be unmapped). */
static void heap_forget_hint(hak_heap_t *h, const hak_slab_t *s) {
  if (h->front.refill_hint[s->cls] == s) h->front.refill_hint[s->cls] = NULL;
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
  hak_count(&h->counters, HAK_STAT_slabs_detached);
  _hak_slab_detach(s, aside ? heap_owner(h) | HAK_SET_ASIDE : 0);
}

/* Empty Tiny and Mid slabs are kept as spares, by size, for any class of
 * that size: a class whose blocks come and go then needs neither the
 * SuperSlab lock nor fresh pages. Spares count as empty memory: while it is
 * over budget, the largest spares are given back (and their SuperSlab
 * purges). Empty pool runs go straight back to their SuperSlab, which the
 * heap owns (pool.c): there they merge with their free neighbours,
 * without the global lock. */
static void heap_unspare(hak_heap_t *h, hak_slab_t *s) {
  unsigned i = s->units - 1u;
  hak_list_remove(&h->spare[i], &s->link);
  if (!h->spare[i].head) h->spare_mask &= ~(1u << i);
  h->spare_bytes -= hak_slab_bytes(s);
  h->spare_at = _hak_os_ticks();
  hak_mem_move(hak_slab_bytes(s), HAK_MEM_EMPTY, HAK_MEM_USED);
}

static void heap_add_spare(hak_heap_t *h, hak_slab_t *s) {
  if (s->cls > HAK_CLASS_MID_LAST) {
    heap_release(h, s);
    return;
  }
  unsigned i = s->units - 1u;
  heap_forget_hint(h, s);
  s->where = HAK_IN_SPARE;
  hak_list_push(&h->spare[i], &s->link);
  h->spare_mask |= 1u << i;
  h->spare_bytes += hak_slab_bytes(s);
  h->spare_at = _hak_os_ticks();
  hak_mem_move(hak_slab_bytes(s), HAK_MEM_USED, HAK_MEM_EMPTY);
  while (h->spare_mask && hak_budget_over()) {
    hak_slab_t *victim = HAK_SLAB_OF_LINK(h->spare[31u - (unsigned)__builtin_clz(h->spare_mask)].tail);
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
  if (_hak_os_ticks() - h->spare_at < hak_purge_delay()) return;
  hak_tick_t since = h->spare_at;
  while (h->spare_mask && hak_budget_over()) {
    hak_slab_t *victim = HAK_SLAB_OF_LINK(h->spare[31u - (unsigned)__builtin_clz(h->spare_mask)].tail);
    heap_unspare(h, victim);
    heap_drop(h, victim);
    _hak_slab_release_since(victim, since);
  }
  h->spare_at = since; /* what stays has aged just as long */
}

/* A spare slab of n units (which may be in unit 0 if unit0_ok), off the
 * spare lists: one of that size, else the smallest larger one, whose extra
 * units go back to its SuperSlab; NULL if none. */
static hak_slab_t *heap_unspare_units(hak_heap_t *h, unsigned n, bool unit0_ok) {
  hak_slab_t *s = NULL;
  for (uint32_t m = h->spare_mask >> (n - 1) << (n - 1); m && !s; m &= m - 1)
    for (hak_link_t *l = h->spare[__builtin_ctz(m)].head; l && !s; l = l->next)
      if (unit0_ok || hak_slab_unit(HAK_SLAB_OF_LINK(l)) != 0) s = HAK_SLAB_OF_LINK(l);
  if (!s) return NULL;
  heap_unspare(h, s);
  hak_mem_reused(hak_slab_bytes(s));
  if (s->units > n) {
    h->held_bytes -= hak_slab_bytes(s);
    _hak_slab_shrink(s, n);
    h->held_bytes += hak_slab_bytes(s);
  }
  return s;
}

/* A spare slab for cls, made a slab of cls (a sampled block's run,
 * capacity 1, is formatted anew whatever its class). */
static hak_slab_t *heap_take_spare(hak_heap_t *h, size_t cls) {
  if (cls > HAK_CLASS_MID_LAST) return NULL; /* pool runs come from the heap's SuperSlabs */
  hak_slab_t *s =
      heap_unspare_units(h, (unsigned)_hak_slab_units(cls), hak_class_size(cls) <= HAK_UNIT0_MAX_BLOCK);
  if (s && (s->cls != cls || s->capacity == 1)) _hak_slab_format(s, cls);
  return s;
}

static void heap_release_spare_slabs(hak_heap_t *h) {
  while (h->spare_mask) {
    hak_slab_t *s = HAK_SLAB_OF_LINK(h->spare[__builtin_ctz(h->spare_mask)].head);
    heap_unspare(h, s);
    heap_release(h, s);
  }
}

void _hak_heap_release_spares(hak_heap_t *h) {
  heap_release_spare_slabs(h);
  while (h->sample_runs) _hak_slab_release(h->sample_run[--h->sample_runs]);
}

void _hak_heap_before_large(size_t size) {
  hak_heap_t *h = hak_tls_own_heap();
  if (!h || size < HAK_SS_SIZE || h->spare_bytes < HAK_SS_SIZE) return;
  heap_enter(h);
  heap_release_spare_slabs(h);
  heap_leave(h);
}

static inline void cur_units_forget(hak_heap_t *h, const hak_slab_t *s);

/* s, partial, stops being its class's previous current slab (heap_keep_prev):
 * its units no longer lead to the class's list. */
static void heap_forget_prev(hak_heap_t *h, const hak_slab_t *s) {
  if (h->prev[s->cls] != s) return;
  cur_units_forget(h, s);
  h->prev[s->cls] = NULL;
}

/* A slab other than the previous current one joining the partial list
 * ends that one's shortcut (heap_keep_prev). */
static void heap_add_partial(hak_heap_t *h, hak_slab_t *s, uint8_t where) {
  hak_slab_t *prev = h->prev[s->cls];
  if (prev && prev != s) heap_forget_prev(h, prev);
  s->where = where;
  hak_list_push_tail(&h->partial[s->cls], &s->link);
}

/* s comes off its class's partial list (to become current, a spare, or to
 * be let go): it is no longer the previous current slab either. */
static void heap_unlist_partial(hak_heap_t *h, hak_slab_t *s) {
  heap_forget_prev(h, s);
  hak_list_remove(&h->partial[s->cls], &s->link);
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
/* The next slab with a free block for cls; *from: where it came from
 * (HAK_CSTAT_from_partial, _spare, _adopted or _fresh). */
static hak_slab_t *heap_next_slab(hak_heap_t *h, size_t cls, int *from) {
  hak_list_t *partial = &h->partial[cls];
  hak_slab_t *s = h->front.refill_hint[cls];
  *from = HAK_CSTAT_from_partial;
  h->front.refill_hint[cls] = NULL;
  /* The hint is a slab h holds (heap_forget_hint), of class cls, but it may
   * have filled up or become current since. */
  HAK_DEBUG_ASSERT(!s ||
                   (atomic_load_explicit(&s->owner, memory_order_relaxed) == heap_owner(h) && s->cls == cls));
  if (s && (s->where == HAK_IN_PARTIAL || s->where == HAK_IN_ROTATED) && has_free_block(s)) {
    heap_unlist_partial(h, s);
    return s;
  }
  for (uint32_t n = partial->count; n > 0 && partial->head; n--) {
    s = HAK_SLAB_OF_LINK(partial->head);
    heap_unlist_partial(h, s);
    if (has_free_block(s)) return s;
    if (s->where != HAK_IN_ROTATED || partial->count < HAK_FULL_KEEP) {
      heap_add_partial(h, s, HAK_IN_ROTATED);
      continue;
    }
    heap_detach(h, s, true);
  }
  /* Taking memory: what aged past the delay goes first (if over budget),
   * and BigCache's mappings past their decay. */
  heap_age_spares(h);
  _hak_purge_over_budget(&h->pool);
  _hak_large_age(_hak_os_ticks());
  if ((s = heap_take_spare(h, cls)) != NULL) {
    *from = HAK_CSTAT_from_spare;
    return s;
  }
  if ((s = _hak_slab_adopt(cls, heap_owner(h))) != NULL) {
    hak_count(&h->counters, HAK_STAT_slabs_adopted);
    *from = HAK_CSTAT_from_adopted;
  } else if ((s = cls > HAK_CLASS_MID_LAST ? _hak_pool_alloc(&h->pool, cls, heap_owner(h))
                                           : _hak_slab_alloc(cls, heap_owner(h))) != NULL) {
    hak_count(&h->counters, HAK_STAT_slabs_taken);
    *from = HAK_CSTAT_from_fresh;
  } else {
    return NULL;
  }
  heap_held_add(h, s);
  return s;
}

/* The number (address >> HAK_UNIT_SHIFT) of s's first unit. */
static inline uintptr_t slab_unit_number(const hak_slab_t *s) {
  return (((uintptr_t)s >> HAK_UNIT_SHIFT) & ~(uintptr_t)(HAK_UNITS - 1)) + hak_slab_unit(s);
}

static inline uint64_t cur_unit_base(const hak_slab_t *s) {
  return (uint64_t)(uintptr_t)hak_slab_start(s) * _hak_block_mul[s->cls];
}

/* Whether the fast free's shortcut for the current slab (cur_unit) is on
 * for cls: not in checking mode, and not for pool classes (their frees
 * count, so that an empty run is seen at once and given back: a run is up
 * to 1 MiB). */
static inline bool heap_cur_units_on(const hak_heap_t *h, size_t cls) {
  return !(h->front.key & HAK_KEY_CHECK) && cls <= HAK_CLASS_MID_LAST;
}

/* s's units now lead to its class's target in the free fast path, for the
 * blocks it has carved. */
static inline void cur_units_set(hak_heap_t *h, const hak_slab_t *s) {
  uintptr_t unit = slab_unit_number(s), end = unit + s->units;
  hak_class_slot_t *target = &h->front.slot[s->cls];
  do {
    hak_cur_unit_t *e = &h->front.cur_unit[unit & (HAK_CUR_UNITS - 1)];
    e->mul = _hak_block_mul[s->cls];
    e->base = cur_unit_base(s);
    e->limit = s->carved;
    e->slot = target;
  } while (++unit != end);
}

/* s, current, carved more blocks: its entries (those no other unit took
 * over) lead to them too. */
static inline void cur_units_carved(hak_heap_t *h, const hak_slab_t *s) {
  uintptr_t unit = slab_unit_number(s), end = unit + s->units;
  uint64_t base = cur_unit_base(s);
  const hak_class_slot_t *target = &h->front.slot[s->cls];
  do {
    hak_cur_unit_t *e = &h->front.cur_unit[unit & (HAK_CUR_UNITS - 1)];
    if (e->base == base && e->slot == target) e->limit = s->carved;
  } while (++unit != end);
}

/* s's units no longer do (entries another unit took over stay). */
static inline void cur_units_forget(hak_heap_t *h, const hak_slab_t *s) {
  uintptr_t unit = slab_unit_number(s), end = unit + s->units;
  uint64_t base = cur_unit_base(s);
  const hak_class_slot_t *target = &h->front.slot[s->cls];
  do {
    hak_cur_unit_t *e = &h->front.cur_unit[unit & (HAK_CUR_UNITS - 1)];
    if (e->base == base && e->slot == target) e->limit = 0;
  } while (++unit != end);
}

/* Debug: every cur_unit entry in use is that of a unit of its slot's
 * current slab, or of its class's previous one (heap_keep_prev). */
static void heap_check_cur_units(const hak_heap_t *h) {
  for (size_t i = 0; i < HAK_CUR_UNITS; i++) {
    const hak_cur_unit_t *e = &h->front.cur_unit[i];
    if (!e->limit) continue; /* matches nothing */
    HAK_ASSERT(!(e->slot->cur & HAK_CUR_COUNTED));
    const hak_slab_t *s = (const hak_slab_t *)e->slot->cur;
    if (!s || e->base != cur_unit_base(s)) {
      s = h->prev[hak_slot_class(&h->front, e->slot)];
      HAK_ASSERT(s && s->units == 1);
    }
    HAK_ASSERT(e->mul == _hak_block_mul[s->cls] && e->base == cur_unit_base(s) && e->limit == s->carved);
    HAK_ASSERT(((i - slab_unit_number(s)) & (HAK_CUR_UNITS - 1)) < s->units);
  }
}

/* s becomes cls's current slab (NULL: none). Where the shortcut is off,
 * the slot carries HAK_CUR_COUNTED. A slab stops being current here before
 * anything else happens to it. */
static inline void heap_set_cur(hak_heap_t *h, size_t cls, hak_slab_t *s) {
  hak_class_slot_t *slot = &h->front.slot[cls];
  hak_slab_t *old = hak_front_cur(&h->front, cls);
  bool units = heap_cur_units_on(h, cls);
  if (old && units) cur_units_forget(h, old);
  slot->cur = s ? (uintptr_t)s | (units ? 0 : HAK_CUR_COUNTED) : 0;
  if (s) {
    s->where = HAK_IN_CUR;
    if (units) cur_units_set(h, s);
  }
  if (hak_cfg_debug) heap_check_cur_units(h);
}

/* s, current until now, has just gone back on the partial list. If it is
 * the class's only partial slab, the class's blocks are in two slabs, s
 * and the one becoming current, and s's units keep leading to the class's
 * list in the free fast path as the current slab's do: every free of the
 * class takes the shortcut. With a third slab (another one joins the
 * partial list, heap_add_partial), they go back to their local lists: the
 * fast free's first branch would then go one way or the other at random,
 * and mispredict (fixed_size 64 with 2000 blocks in three slabs: 288 ->
 * 151 M ops/s when two of them took the shortcut). One-unit slabs only
 * (a switch rewrites the entries of the slab's units). */
static void heap_keep_prev(hak_heap_t *h, hak_slab_t *s) {
  size_t cls = s->cls;
  HAK_DEBUG_ASSERT(!h->prev[cls]); /* heap_add_partial ended it */
  if (h->partial[cls].count != 1 || s->units != 1 || !heap_cur_units_on(h, cls)) return;
  h->prev[cls] = s;
  cur_units_set(h, s);
  if (hak_cfg_debug) heap_check_cur_units(h);
}

/* The blocks on cls's list go back to their slabs. */
static void heap_return_lists(hak_heap_t *h, size_t cls) {
  _hak_slab_return_blocks(h->front.slot[cls].free);
  h->front.slot[cls].free = NULL;
}

/* HAKMEM_PROFILE: the runs of freed Tiny and Mid samples (made runs of no
 * heap, formatted with no block carved), for the next samples: a sample
 * then costs no trip through a heap's spares and the budget. The freeing
 * heap keeps HAK_HEAP_SAMPLE_RUNS (no lock), the rest wait for any heap's
 * samples, so that a producer whose samples another thread frees gets
 * their runs back. */
#define SAMPLE_RUNS 16
hak_lock_t _hak_sample_runs_lock = HAK_LOCK_INIT;
static hak_slab_t *sample_run[SAMPLE_RUNS]; /* sample runs lock */
static uint32_t sample_runs;                /* sample runs lock */

/* One of runs[0 .. *n) of `units` units (which may be unit 0 if
 * unit0_ok), taken off; NULL if none. */
static hak_slab_t *sample_run_find(hak_slab_t **runs, uint32_t *n, unsigned units, bool unit0_ok) {
  for (uint32_t i = 0; i < *n; i++) {
    hak_slab_t *s = runs[i];
    if (s->units != units || (!unit0_ok && hak_slab_unit(s) == 0)) continue;
    runs[i] = runs[--*n];
    return s;
  }
  return NULL;
}

static hak_slab_t *sample_run_take(hak_heap_t *h, unsigned units, bool unit0_ok) {
  hak_slab_t *s = sample_run_find(h->sample_run, &h->sample_runs, units, unit0_ok);
  if (s) return s;
  _hak_lock(&_hak_sample_runs_lock);
  s = sample_run_find(sample_run, &sample_runs, units, unit0_ok);
  _hak_unlock(&_hak_sample_runs_lock);
  return s;
}

/* Keeps s (whether there was room); h: the freeing heap, or NULL. */
static bool sample_run_put(hak_heap_t *h, hak_slab_t *s) {
  if (h && h->sample_runs < HAK_HEAP_SAMPLE_RUNS) {
    heap_enter(h);
    h->sample_run[h->sample_runs] = s;
    atomic_signal_fence(memory_order_release); /* a fork child sees the run before the count */
    h->sample_runs++;
    heap_leave(h);
    return true;
  }
  _hak_lock(&_hak_sample_runs_lock);
  bool room = sample_runs < SAMPLE_RUNS;
  if (room) sample_run[sample_runs++] = s;
  _hak_unlock(&_hak_sample_runs_lock);
  return room;
}

void _hak_heap_release_sample_runs(void) {
  hak_slab_t *out[SAMPLE_RUNS];
  _hak_lock(&_hak_sample_runs_lock); /* a leaf: released after */
  uint32_t n = sample_runs;
  memcpy(out, sample_run, n * sizeof out[0]);
  sample_runs = 0;
  _hak_unlock(&_hak_sample_runs_lock);
  while (n) _hak_slab_release(out[--n]);
}

/* HAKMEM_PROFILE: a run for one sampled block of cls, as the class's own
 * blocks take memory, so that samples cost no SuperSlab lock, purge or
 * page fault more than they do: for a pool class, a run of h's pool; for
 * Tiny and Mid, a freed sample's run, else one of h's spares, made a run
 * of no heap; else a fresh run of a shared SuperSlab. Only a run that
 * is not a freed sample's ages h's spares first, as heap_alloc_single's
 * other runs do. */
static hak_slab_t *heap_sample_run(hak_heap_t *h, size_t cls) {
  size_t size = hak_class_size(cls);
  unsigned units = _hak_slab_units_one(cls);
  bool unit0_ok = size <= HAK_UNIT0_MAX_BLOCK;
  hak_slab_t *s = cls <= HAK_CLASS_MID_LAST ? sample_run_take(h, units, unit0_ok) : NULL;
  if (s) {
    if (s->cls != cls) _hak_slab_format_one(s, cls);
    return s;
  }
  heap_age_spares(h);
  s = cls > HAK_CLASS_MID_LAST ? _hak_pool_alloc_one(&h->pool, cls) : heap_unspare_units(h, units, unit0_ok);
  if (!s) return _hak_slab_alloc_one(cls);
  if (cls > HAK_CLASS_MID_LAST) return s;
  heap_drop(h, s);
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  _hak_slab_format_one(s, cls);
  return s;
}

/* A run of a pool class that holds a single block is taken for that
 * block and belongs to no heap while the block is out (owner 0, on no
 * list, never current); freeing the block gives it back at once
 * (_hak_free_slow). So a large block costs a run taken and a run given
 * back, with no list or ownership change on either side. A sampled block
 * (HAKMEM_PROFILE) of any class, and a pool block its site places apart
 * (HAKMEM_SITES), takes such a run of its own (heap_sample_run), so that
 * its free always takes the slow path. */
static hak_block_t *heap_alloc_single(hak_heap_t *h, size_t cls, bool sampled) {
  if (!sampled) heap_age_spares(h);
  if (hak_ace_yields()) _hak_purge_over_budget(&h->pool); /* what HAKMEM_ACE kept goes first */
  hak_slab_t *s = sampled ? heap_sample_run(h, cls) : _hak_pool_alloc(&h->pool, cls, 0);
  if (!s) return NULL;
  hak_count(&h->counters, HAK_STAT_slabs_taken);
  h->counters.cls[cls][HAK_CSTAT_from_fresh]++;
  return _hak_slab_take(s, 0);
}

/* HAKMEM_PROFILE: b, the block of a one-block run, is a sample: its stack
 * is recorded, and its record kept in the run's descriptor, so that its
 * free tells the profile. */
static void heap_record_sample(hak_block_t *b, size_t size, const hak_frame_t *from) {
  _hak_profile_record(&hak_slab_of(hak_superslab_of(b), (uintptr_t)b)->sample, size, from);
}

/* HAKMEM_PROFILE: the calling thread's next sampling interval starts,
 * drawn from h's random state (h: its heap). hak_tls.profile_left is one
 * less than the bytes to the allocation that ends it, so that the fast
 * path's test of the countdown is its subtraction's sign. */
static void heap_profile_next(hak_heap_t *h) {
  hak_tls.profile_left = (int64_t)_hak_profile_interval(&h->profile_rng) - 1;
}

/* HAKMEM_PROFILE: the calling thread's heap starts sampling (the profile
 * build's fast path counts its bytes down from now on). */
void _hak_heap_profile_start(void) {
  hak_heap_t *h = hak_tls_own_heap();
  if (!h) return;
  h->profile_rng = _hak_os_ticks() ^ (uintptr_t)h;
  h->profile.shard = (uint8_t)h->id;
  heap_profile_next(h);
}

/* Whether h's next allocation, of `bytes`, reaches the end of the
 * interval (it counts it down; the one that reaches it is the sample, and
 * the next interval starts after it): for blocks the fast path does not
 * count (Large, and pool blocks a site places apart). */
static bool heap_profile_due(hak_heap_t *h, size_t bytes) {
  if (hak_tls.profile_left >= (int64_t)bytes) {
    hak_tls.profile_left -= (int64_t)bytes;
    return false;
  }
  heap_profile_next(h);
  return true;
}

void *_hak_heap_alloc_sample(hak_heap_t *h, size_t cls, size_t size, const hak_frame_t *from) {
  heap_profile_next(h);
  heap_enter(h);
  hak_block_t *b = heap_alloc_single(h, cls, true);
  heap_leave(h);
  if (!b) return NULL;
  b->mark = 0; /* handed out: not free */
  heap_record_sample(b, size, from);
  return b;
}

/* HAKMEM_ACE: a refill of cls carved fresh blocks, or took freed ones.
 * A class that keeps carving (it allocates more than it frees) carves
 * more pages at once, so it refills less often; one that takes freed
 * blocks back, or carves again after HAK_CARVE_IDLE_MS, carves fewer. */
static void heap_learn_carve(hak_heap_t *h, size_t cls, bool carved) {
  if (!carved) {
    h->carves[cls] = 0;
    if (h->carve_shift[cls]) h->carve_shift[cls]--;
    return;
  }
  uint32_t now = (uint32_t)(_hak_os_ticks() >> HAK_AGE_SHIFT);
  if ((hak_tick_t)(now - h->carved_at[cls]) << HAK_AGE_SHIFT > _hak_os_ms_ticks(HAK_CARVE_IDLE_MS)) {
    h->carve_shift[cls] = 0;
    h->carves[cls] = 0;
  } else if (++h->carves[cls] >= HAK_CARVE_RUN && h->carve_shift[cls] < HAK_CARVE_SHIFT_MAX) {
    h->carve_shift[cls]++;
    h->carves[cls] = 0;
  }
  h->carved_at[cls] = now;
}

/* A block of cls, whose list is empty, refilling the list from the heap's
 * slabs. A current slab with nothing left goes to the back of the partial
 * list, where frees have time to come back to it, and the next slab
 * becomes current; except that a current slab of several units stays
 * current while partial slabs have blocks to give: their blocks go on the
 * list (taken, so they count as used) and they stay partial. A class whose
 * live blocks span two slabs would otherwise switch on nearly every
 * refill, and a switch rewrites the fast free's entries of both slabs'
 * units (cur_unit), while the slab that filled up is the one with the most
 * blocks out, so the most frees to come (1-32 KiB probe: 107 -> 95
 * instructions per round). One-unit slabs switch: the rewrite is short,
 * and the switch lets the other slab drain to a spare that any class can
 * take (random_mixed, 16-1040 B, held 4 more slabs when they stayed
 * current). After HAK_PULLS_MAX such refills in a row (the current slab's
 * blocks are not coming back) the partial slab becomes current. */
static inline __attribute__((always_inline)) void *heap_refill(hak_heap_t *h, size_t cls) {
  hak_block_t *b;
  HAK_DEBUG_ASSERT(!h->front.slot[cls].free);
  heap_enter(h);
  if (atomic_load_explicit(&h->pool.remote_pending, memory_order_relaxed)) _hak_pool_collect(&h->pool);
  /* The class test inline: a Tiny or Mid miss makes no call here. */
  if (cls > HAK_CLASS_MID_LAST && _hak_pool_single(cls)) {
    b = heap_alloc_single(h, cls, false);
    heap_leave(h);
    return b;
  }
  hak_slab_t *cur = hak_front_cur(&h->front, cls), *s = cur;
  uint32_t carved = 0; /* s's before the take: the fast path learns of blocks carved now */
  int from = HAK_CSTAT_from_current;
  for (;;) {
    if (s) {
      carved = s->carved;
      if ((b = _hak_slab_take(s, h->carve_shift[cls])) != NULL) break;
    }
    s = heap_next_slab(h, cls, &from);
    if (cur && cur->units > 1 && s && from == HAK_CSTAT_from_partial && h->pulls[cls] < HAK_PULLS_MAX) {
      h->pulls[cls]++;
      carved = s->carved;
      b = _hak_slab_take(s, h->carve_shift[cls]);
      HAK_DEBUG_ASSERT(b); /* heap_next_slab found a free block */
      heap_add_partial(h, s, HAK_IN_PARTIAL);
      break;
    }
    h->pulls[cls] = 0;
    if (cur) {
      heap_set_cur(h, cls, NULL);
      heap_add_partial(h, cur, HAK_IN_PARTIAL);
      heap_keep_prev(h, cur);
    }
    heap_set_cur(h, cls, s);
    if (!s) {
      heap_leave(h);
      return NULL;
    }
    cur = s;
  }
  uint64_t *ev = h->counters.cls[cls];
  ev[from]++;
  hak_note(HAK_EV_REFILL, cls, (uint64_t)from);
  if (s->carved != carved) {
    ev[HAK_CSTAT_carved]++;
    if (s == cur && heap_cur_units_on(h, cls)) cur_units_carved(h, s);
  }
  if (hak_opt(HAK_OPT_ACE)) heap_learn_carve(h, cls, s->carved != carved);
  h->front.slot[cls].free = hak_next(b);
  if (hak_cfg_debug) _hak_slab_check(s, h->front.slot[cls].free);
  heap_leave(h);
  return b;
}

void _hak_heap_sample_large(void *p, size_t size) {
  hak_heap_t *h = hak_tls_own_heap();
  if (h ? heap_profile_due(h, size) : _hak_profile_due_shared(size))
    _hak_profile_record(_hak_large_sample(p), size, NULL);
}

/* A local free made s empty (used reached 0 on the fast path, or here). */
static void heap_slab_empty(hak_heap_t *h, hak_slab_t *s) {
  heap_enter(h);
  if (hak_front_cur(&h->front, s->cls) == s) heap_set_cur(h, s->cls, NULL); /* its list is empty */
  else heap_unlist_partial(h, s);
  heap_add_spare(h, s);
  heap_leave(h);
}

static bool heap_holds(const hak_heap_t *h, const hak_slab_t *s) {
  uint32_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
  return h && owner && owner == heap_owner(h);
}

/* Whether b, a block of s (not a one-block run), is free already: if it
 * carries the mark of s's free blocks (it may be on its way to h in
 * another thread's batch, heap_send, where no list shows it), or, if h
 * holds s, if it is on one of the lists (a block another thread freed
 * into s before h took s over carries its old holder's mark). */
static bool heap_holds_free(hak_heap_t *h, hak_slab_t *s, const hak_block_t *b) {
  if (b->mark == __atomic_load_n(&s->mark, __ATOMIC_RELAXED)) return true;
  return heap_holds(h, s) && _hak_slab_block_is_free(s, b, h->front.slot[s->cls].free);
}

bool _hak_block_is_free(hak_slab_t *s, const hak_block_t *b) {
  return s->capacity != 1 && heap_holds_free(hak_tls_own_heap(), s, b);
}

/* b, a live block of s, which h does not hold: onto s's remote list; if
 * s was detached, h has claimed it by that, and takes it if it had set it
 * aside itself. */
static void heap_free_remote(hak_heap_t *h, hak_slab_t *s, hak_block_t *b) {
  if (!_hak_slab_free_remote(s, b, heap_owner(h) | HAK_SET_ASIDE)) return;
  heap_enter(h);
  hak_count(&h->counters, HAK_STAT_slabs_adopted);
  heap_held_add(h, s);
  if (s->used == 0) {
    heap_add_spare(h, s);
  } else {
    heap_add_partial(h, s, HAK_IN_PARTIAL);
    h->front.refill_hint[s->cls] = s;
    if (hak_cfg_debug) _hak_slab_check(s, h->front.slot[s->cls].free);
  }
  heap_leave(h);
}

/* ---- batches of blocks freed into other heaps' slabs (heap.h) -------- */

/* An empty batch of h's: from its stock, else from those its receivers
 * gave back, else new, up to HAK_BATCHES_MAX; NULL if h has made that
 * many (all on their way, or waiting for a holder that does not allocate:
 * the blocks then go the direct way, and the metadata, never returned,
 * stays bounded) or no metadata can be had. */
static hak_batch_t *heap_batch_get(hak_heap_t *h) {
  hak_batch_t *b = h->stock;
  if (!b) b = atomic_exchange_explicit(&h->returns, NULL, memory_order_acquire);
  if (!b) {
    if (h->batches_made == HAK_BATCHES_MAX || (b = _hak_meta_alloc(sizeof *b)) == NULL) return NULL;
    h->batches_made++;
    b->maker = h;
  }
  h->stock = b->next;
  b->n = 0;
  return b;
}

/* An emptied batch goes back to the heap that made it. */
static void heap_batch_put(hak_heap_t *h, hak_batch_t *b) {
  hak_heap_t *maker = b->maker;
  if (maker == h) {
    b->next = h->stock;
    h->stock = b;
    return;
  }
  hak_batch_t *head = atomic_load_explicit(&maker->returns, memory_order_relaxed);
  do b->next = head;
  while (!atomic_compare_exchange_weak_explicit(&maker->returns, &head, b, memory_order_release,
                                                memory_order_relaxed));
}

/* b, a block sent with the mark `sent` (the heap it went to), freed by h:
 * onto its slab's local list if h holds the slab, else as a remote free. A
 * slab that this empties stays where it is, as one whose blocks came back
 * on its `thread_free` list does, for the next refill to take whole (made
 * a spare, whose memory the budget purges, a producer's slabs were purged
 * and faulted in again: prodcons/mixed 4x slower). A block whose mark
 * changed on the way was written after its free: reported. */
static void heap_take_sent(hak_heap_t *h, hak_block_t *b, uintptr_t sent, const char *who) {
  hak_slab_t *s = hak_slab_of(hak_superslab_of(b), (uintptr_t)b);
  if (HAK_UNLIKELY(b->mark != sent)) {
    _hak_report(who, b,
                (hak_misuse_t){.kind = HAK_MISUSE_FREED_WRITE,
                               .block = b,
                               .size = s->block_size,
                               .given = offsetof(hak_block_t, mark)});
    return;
  }
  if (!heap_holds(h, s)) {
    heap_free_remote(h, s, b);
    return;
  }
  h->counters.cls[s->cls][HAK_CSTAT_remote_received]++;
  hak_set_next(b, s->local_free);
  b->mark = s->mark;
  s->local_free = b;
  s->used--;
}

/* The blocks of a list of batches, freed by h; each batch goes back to
 * its maker. */
static void heap_take_batches(hak_heap_t *h, hak_batch_t *list, const char *who) {
  for (hak_batch_t *next; list; list = next) {
    next = list->next;
    uintptr_t sent = (uintptr_t)list->to;
    /* The blocks' lines are with the thread that freed them: all asked
     * for at once, not one miss after another. */
    for (uint32_t i = 0; i < list->n; i++) __builtin_prefetch(list->block[i], 1);
    for (uint32_t i = 0; i < list->n; i++) heap_take_sent(h, list->block[i], sent, who);
    heap_batch_put(h, list);
  }
}

/* The batches sent to h come in; its inbox then holds `leave` (0, or
 * HAK_INBOX_CLOSED as it retires). */
static void heap_take_inbox(hak_heap_t *h, uintptr_t leave, const char *who) {
  uintptr_t list = atomic_exchange_explicit(&h->inbox, leave, memory_order_acquire);
  heap_take_batches(h, (hak_batch_t *)(list & ~HAK_INBOX_CLOSED), who);
}

/* h's batch b goes on its destination's inbox; if that heap retired, h
 * frees b's blocks itself. */
static void heap_batch_send(hak_heap_t *h, hak_batch_t *b, const char *who) {
  hak_heap_t *to = b->to;
  uintptr_t head = atomic_load_explicit(&to->inbox, memory_order_relaxed);
  do {
    if (head & HAK_INBOX_CLOSED) {
      b->next = NULL;
      heap_take_batches(h, b, who);
      return;
    }
    b->next = (hak_batch_t *)head;
  } while (!atomic_compare_exchange_weak_explicit(&to->inbox, &head, (uintptr_t)b, memory_order_release,
                                                  memory_order_relaxed));
}

/* Every batch h fills goes out. */
static void heap_send_all(hak_heap_t *h, const char *who) {
  h->send_countdown = 0;
  for (unsigned i = 0; i < HAK_OUTBOXES; i++) {
    hak_batch_t *b = h->outbox[i];
    h->outbox[i] = NULL;
    if (b) heap_batch_send(h, b, who);
  }
}

/* b, a live block of s, which another heap holds (its mark names it), goes
 * into the batch h fills for that heap, which is sent once full, at h's
 * HAK_SEND_MISSES-th miss since it began its batches, at malloc_trim and
 * at exit. So the blocks travel as addresses, and their holder writes
 * their links: a remote free's link, written here, was a cache miss for
 * every block the holder then took off its list, one after another. A
 * fork child finds a batch as it was before the fork's last append
 * (appended, then counted), or loses one batch being handed on: a
 * bounded leak. */
static void heap_send(hak_heap_t *h, hak_slab_t *s, hak_block_t *b, const char *who) {
  hak_heap_t *to = (hak_heap_t *)__atomic_load_n(&s->mark, __ATOMIC_RELAXED);
  HAK_DEBUG_ASSERT(to); /* s has a holder, so it was held: its mark names a heap */
  hak_batch_t **slot = &h->outbox[to->id % HAK_OUTBOXES], *batch = *slot;
  if (batch && batch->to != to) {
    *slot = NULL;
    heap_batch_send(h, batch, who);
    batch = NULL;
  }
  if (!batch) {
    if ((batch = heap_batch_get(h)) == NULL) {
      heap_free_remote(h, s, b);
      return;
    }
    batch->to = to;
    *slot = batch;
    if (!h->send_countdown) h->send_countdown = HAK_SEND_MISSES;
  }
  b->mark = (uintptr_t)to;
  batch->block[batch->n] = b;
  atomic_signal_fence(memory_order_release);
  if (++batch->n == HAK_BATCH_BLOCKS) {
    *slot = NULL;
    heap_batch_send(h, batch, who);
  }
}

/* Every miss: the batches sent to h come in first, and h's own go out
 * every HAK_SEND_MISSES misses. */
static inline __attribute__((always_inline)) void heap_miss(hak_heap_t *h, const char *who) {
  if (atomic_load_explicit(&h->inbox, memory_order_relaxed) > HAK_INBOX_CLOSED) heap_take_inbox(h, 0, who);
  if (h->send_countdown && --h->send_countdown == 0) heap_send_all(h, who);
}

/* The miss counted, and timed 1 in HAKMEM_SAMPLE times. */
void *_hak_heap_alloc(hak_heap_t *h, size_t cls, const char *who) {
  hak_tick_t t0 = hak_sample_start(&h->counters);
  heap_miss(h, who);
  void *b = heap_refill(h, cls);
  if (HAK_UNLIKELY(t0)) _hak_sample_end(hak_lat_kind(cls), t0);
  return b;
}

void *_hak_heap_alloc_sited(size_t cls, size_t size, uintptr_t pc, const char *who) {
  hak_heap_t *h = hak_tls_own_heap();
  if (!h) return NULL;
  hak_site_plan_t plan = _hak_site_plan(pc, hak_class_size(cls));
  if (!plan.lasting && !plan.sample) return NULL;
  hak_tick_t t0 = hak_sample_start(&h->counters);
  heap_miss(h, who); /* a miss, as the class's list would have had */
  /* A run of its own, as a profiler's sample takes one, tagged with its
   * site: its free tells the site if it is the sample, and the purge if
   * the site is lasting. */
  heap_enter(h);
  hak_block_t *b = heap_alloc_single(h, cls, true);
  if (b) {
    hak_count(&h->counters, plan.lasting ? HAK_STAT_site_apart : HAK_STAT_site_samples);
    hak_superslab_t *ss = hak_superslab_of(b);
    ss->site[hak_slab_unit(hak_slab_of(ss, (uintptr_t)b))] = (uint16_t)plan.site;
  }
  heap_leave(h);
  if (plan.sample) _hak_site_sampled(plan.site, b);
  if (b && hak_cfg_profile && heap_profile_due(h, size)) heap_record_sample(b, size, NULL);
  if (HAK_UNLIKELY(t0)) _hak_sample_end(hak_lat_kind(cls), t0);
  return b;
}

/* A slow free of a block of class cls counted, for h (NULL: none). */
static void heap_count_free(hak_heap_t *h, size_t cls, bool remote) {
  if (h) {
    uint64_t *ev = h->counters.cls[cls];
    ev[HAK_CSTAT_slow_frees]++;
    ev[HAK_CSTAT_remote_sent] += remote;
    if (hak_cfg_stats) ev[HAK_CSTAT_frees]++;
  } else {
    hak_class_event(cls, HAK_CSTAT_slow_frees, 1);
    hak_class_event(cls, HAK_CSTAT_remote_sent, remote);
    if (hak_cfg_stats) hak_class_event(cls, HAK_CSTAT_frees, 1);
  }
}

/* Frees b, a live block of s, for h, the calling thread's heap (NULL if
 * it has none). */
static void heap_free(hak_heap_t *h, hak_slab_t *s, hak_block_t *b) {
  heap_count_free(h, s->cls, s->capacity != 1 && !heap_holds(h, s));
  if (s->capacity == 1) { /* a single-block run (heap_alloc_single) */
    hak_tick_t since = _hak_os_ticks();
    bool sample = hak_cfg_profile && s->sample.born;
    if (sample) _hak_profile_freed(&s->sample, since);
    /* A lasting site's run goes back as if empty for the purge delay
     * already: the purge takes it first (it is not about to be reused). */
    uint16_t site = hak_superslab_of(b)->site[hak_slab_unit(s)];
    if (site) {
      _hak_site_freed(site, b);
      if (_hak_site_lasting(site)) since -= hak_purge_delay();
    }
    s->used = 0;
    if (s->cls <= HAK_CLASS_MID_LAST && (sample || h)) {
      /* A sampled block's: kept for the next sample, else a spare of the
       * freeing heap, with no block carved (a second free of the block is
       * then reported, as not a block). */
      _hak_slab_format_one(s, s->cls);
      if (sample && sample_run_put(h, s)) return;
      if (h) {
        heap_enter(h);
        atomic_store_explicit(&s->owner, heap_owner(h), memory_order_relaxed);
        heap_held_add(h, s);
        heap_add_spare(h, s);
        heap_leave(h);
        return;
      }
    }
    _hak_slab_release_since(s, since);
    return;
  }
  if (!h) {
    _hak_slab_free_remote(s, b, 0);
    return;
  }
  hak_block_t *list = h->front.slot[s->cls].free;
  if (heap_holds(h, s)) { /* checking mode, the quarantine */
    hak_set_next(b, s->local_free);
    b->mark = s->mark;
    s->local_free = b;
    if (--s->used == 0) heap_slab_empty(h, s);
    else if (hak_cfg_debug) _hak_slab_check(s, list);
    return;
  }
  heap_free_remote(h, s, b); /* another heap's slab, or a detached one */
}

/* The free fast path's branch for blocks of SuperSlabs whose slab h does
 * not hold (h: the calling thread's heap, NULL if it has none): a live
 * block of another heap's slab, or of a detached one, goes to it here,
 * after the checks _hak_free_slow makes of such a block (a block of it,
 * not carrying the mark of its free blocks); everything else goes there.
 * Half the instructions of that path (xthread_churn: 170 per remote
 * free). */
void _hak_heap_free_unheld(hak_heap_t *h, void *p, const char *who) {
  hak_slab_t *s = hak_slab_of(hak_superslab_of(p), (uintptr_t)p);
  hak_block_t *b = p;
  /* heap_holds_free's test for a slab h does not hold: the mark */
  if (!h || s->capacity == 1 || !hak_slab_has_block(s, p) || heap_holds(h, s) ||
      b->mark == __atomic_load_n(&s->mark, __ATOMIC_RELAXED)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_tick_t t0 = hak_sample_start(&h->counters);
  heap_count_free(h, s->cls, true);
  /* To its holder in a batch; a detached slab, at once (the free claims
   * it), as in the secure build and checking mode, which find misuse at
   * the free. */
  uint32_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
  if (owner && !(owner & HAK_SET_ASIDE) && !hak_cfg_secure && !(h->front.key & HAK_KEY_CHECK))
    heap_send(h, s, b, who);
  else heap_free_remote(h, s, b);
  hak_note(HAK_EV_SLOW_FREE, (uintptr_t)p, s->cls);
  if (t0) _hak_sample_end(HAK_LAT_FREE, t0);
}

/* Every free the fast path does not finish: Large blocks, pointers that
 * are not blocks (reported), one-block runs, blocks carrying their slab's
 * mark, frees in checking mode, and frees into slabs this heap does not
 * hold. A block with its slab's mark is freed again if this heap holds the
 * slab and finds it on a free list; if another heap holds it, or none,
 * the mark is the evidence (internal.h). */
void _hak_free_slow(void *p, const char *who) {
  if (!p) return;
  uint8_t kind = hak_chunk_kind(p);
  hak_tick_t t0 = hak_sample_start(hak_tls_counters());
  if (kind == HAK_CHUNK_LARGE) {
    hak_misuse_t m = _hak_large_problem(p);
    if (m.kind == HAK_MISUSE_NONE) {
      _hak_large_free(p);
    } else {
      _hak_report(who, p, m);
    }
    hak_note(HAK_EV_LARGE_FREE, (uintptr_t)p, 0);
    if (t0) _hak_sample_end(HAK_LAT_LARGE, t0);
    return;
  }
  if (kind != HAK_CHUNK_SUPERSLAB) {
    _hak_report(who, p, (hak_misuse_t){.kind = HAK_MISUSE_FOREIGN});
    return;
  }
  hak_slab_t *s = hak_slab_of(hak_superslab_of(p), (uintptr_t)p);
  if (!hak_slab_has_block(s, p)) {
    _hak_report(who, p, _hak_slab_problem(s, p));
    return;
  }
  hak_heap_t *h = hak_tls_own_heap();
  hak_block_t *b = p;
  if (_hak_block_is_free(s, b)) {
    _hak_report(who, p, (hak_misuse_t){.kind = HAK_MISUSE_DOUBLE_FREE, .block = p, .size = s->block_size});
    return;
  }
  heap_free(h, s, b);
  hak_note(HAK_EV_SLOW_FREE, (uintptr_t)p, s->cls);
  if (t0) _hak_sample_end(HAK_LAT_FREE, t0);
}

void _hak_free_local_empty(hak_slab_t *s) { heap_slab_empty(hak_tls_own_heap(), s); }

void _hak_heap_detach_class(hak_heap_t *h, size_t c, bool recount) {
  hak_slab_t *s = hak_front_cur(&h->front, c);
  if (recount && s) _hak_slab_recount(s);
  /* The lists may hold blocks of other slabs (refills take partial slabs' blocks). */
  heap_return_lists(h, c);
  if (s) {
    heap_set_cur(h, c, NULL);
    heap_detach(h, s, false);
  }
  while (h->partial[c].head) {
    s = HAK_SLAB_OF_LINK(h->partial[c].head);
    heap_unlist_partial(h, s);
    if (recount) _hak_slab_recount(s);
    heap_detach(h, s, false);
  }
}

/* Every block in h's quarantine is freed, and h's batches go out. */
static void heap_drain(hak_heap_t *h, const char *who) {
  size_t size;
  for (hak_block_t *b; (b = hak_quarantine_take(&h->quarantine, 0, &size)) != NULL;)
    heap_free(h, hak_slab_of(hak_superslab_of(b), (uintptr_t)b), b);
  heap_send_all(h, who);
}

void _hak_heap_detach_all(hak_heap_t *h, bool recount, const char *who) {
  heap_drain(h, who);
  heap_take_inbox(h, HAK_INBOX_CLOSED, who);
  heap_enter(h);
  for (size_t c = 1; c < HAK_CLASSES; c++) _hak_heap_detach_class(h, c, recount);
  _hak_heap_release_spares(h);
  _hak_pool_disown_all(&h->pool);
  HAK_DEBUG_ASSERT(h->held_bytes == 0 && h->spare_bytes == 0);
  heap_leave(h);
}

/* malloc_trim: h (the calling thread's) gives back its spare slabs, the
 * current slabs (and previous ones, heap_keep_prev) whose blocks are all
 * free, and its wholly free SuperSlabs,
 * and its working room goes. Returns slabs released. */
size_t _hak_heap_trim(hak_heap_t *h) {
  hak_front_t *f = &h->front;
  size_t n = 0;
  heap_drain(h, "malloc_trim");
  heap_take_inbox(h, 0, "malloc_trim");
  heap_enter(h);
  for (unsigned i = 0; i < HAK_MAX_SLAB_UNITS; i++) n += h->spare[i].count;
  _hak_heap_release_spares(h);
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    heap_return_lists(h, c);
    hak_slab_t *s = h->prev[c];
    if (s) { /* its blocks were on the list */
      _hak_slab_collect(s);
      if (s->used == 0) {
        heap_unlist_partial(h, s);
        heap_release(h, s);
        n++;
      }
    }
    s = hak_front_cur(f, c);
    if (s) {
      _hak_slab_collect(s);
      if (s->used == 0) {
        heap_set_cur(h, c, NULL);
        heap_release(h, s);
        n++;
      }
    }
  }
  _hak_pool_trim(&h->pool);
  _hak_budget_drop_room(&h->budget);
  heap_leave(h);
  return n;
}
