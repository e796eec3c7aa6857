/* pool.c — SuperSlabs owned by one heap's pool for its pool runs
 * (32 KiB - 1 MiB blocks), and giving slabs back to their SuperSlab
 * whoever owns it.
 *
 * The owner changes an owned SuperSlab's unit maps alone, with no lock: a
 * thread that churns through large blocks neither waits for others nor
 * runs an atomic instruction for them, and the runs it frees merge again in
 * its unit maps. Any other thread gives an empty run of it back by pushing
 * its descriptor on the SuperSlab's remote list (one compare-and-swap) and
 * leaving a note in the owner's pool; the owner takes the lists whole at
 * its next slow path, before it owns another SuperSlab, and when it
 * disowns one. Disowning closes the list (REMOTE_CLOSED) under
 * _hak_ss_lock: a thread that finds it closed gives under that lock once
 * the SuperSlab is shared. Only the owner purges an owned SuperSlab.
 * Owning changes under _hak_ss_lock. */
#include "units.h"

#define REMOTE_CLOSED ((uintptr_t)1)

/* p's copy of an owned SuperSlab's longest free run (its search reads that
 * array, not each header), set whenever the free units change. */
static void note_longest(hak_pool_t *p, hak_superslab_t *ss) {
  p->longest[ss->pool_index] = (uint8_t)hak_longest_run(ss->free_units);
  if (hak_cfg_debug) HAK_ASSERT(p->ss[ss->pool_index] == ss && atomic_load(&ss->pool) == p);
}

static bool remote_push(hak_superslab_t *ss, hak_slab_t *run) {
  uintptr_t head = atomic_load_explicit(&ss->remote, memory_order_relaxed);
  do {
    if (head & REMOTE_CLOSED) return false;
    run->link.next = (hak_link_t *)head;
  } while (!atomic_compare_exchange_weak_explicit(&ss->remote, &head, (uintptr_t)&run->link,
                                                  memory_order_release, memory_order_relaxed));
  /* The owner looks at its next slow path (pools live in heaps, which are
   * never freed: a note left just as the SuperSlab changes owner costs a
   * heap one look). */
  hak_pool_t *p = atomic_load_explicit(&ss->pool, memory_order_relaxed);
  if (p) atomic_store_explicit(&p->remote_pending, 1, memory_order_relaxed);
  return true;
}

/* The owner gives back the runs on ss's remote list, and leaves it empty
 * (or closed). Returns whether there were any. */
static bool remote_collect(hak_pool_t *p, hak_superslab_t *ss, uintptr_t leave) {
  uintptr_t list = atomic_exchange_explicit(&ss->remote, leave, memory_order_acquire) & ~REMOTE_CLOSED;
  for (hak_link_t *l = (hak_link_t *)list, *next; l; l = next) {
    next = l->next;
    _hak_units_give(ss, HAK_SLAB_OF_LINK(l), 0, _hak_os_ticks());
  }
  if (list) note_longest(p, ss);
  return list != 0;
}

/* ss stops being p's: the runs given back to it come in, and it becomes
 * shared (its remote list closed, under _hak_ss_lock). The last of p's
 * SuperSlabs takes its place in p's arrays. */
static void pool_disown(hak_pool_t *p, uint32_t i) {
  hak_superslab_t *ss = p->ss[i];
  _hak_lock(&_hak_ss_lock);
  remote_collect(p, ss, REMOTE_CLOSED);
  atomic_store_explicit(&ss->pool, NULL, memory_order_relaxed);
  uint32_t last = --p->n; /* before ss is shared: another pool may own it at once */
  if (i != last) {
    p->ss[i] = p->ss[last];
    p->longest[i] = p->longest[last];
    p->ss[i]->pool_index = i;
  }
  _hak_ss_share(ss);
  _hak_unlock(&_hak_ss_lock);
}

/* A wholly free shared SuperSlab (one with dirty units first: its pages
 * are still there), or a fresh one, becomes p's. Only a wholly free one:
 * an owned SuperSlab holds no slab of another heap, so other threads give
 * runs back to it only when they free its owner's large blocks. A pool
 * that owns HAK_POOL_SS already first disowns the one with the shortest
 * free run. */
static bool pool_own(hak_pool_t *p) {
  if (p->n == HAK_POOL_SS) {
    uint32_t least = 0;
    for (uint32_t i = 1; i < p->n; i++)
      if (p->longest[i] < p->longest[least]) least = i;
    pool_disown(p, least);
  }
  _hak_lock(&_hak_ss_lock);
  hak_superslab_t *ss = _hak_ss_take_free();
  if (ss) {
    atomic_store_explicit(&ss->remote, 0, memory_order_relaxed);
    ss->pool_index = p->n;
    p->ss[p->n++] = ss;
    atomic_store_explicit(&ss->pool, p, memory_order_relaxed);
    note_longest(p, ss);
  }
  _hak_unlock(&_hak_ss_lock);
  return ss != NULL;
}

void _hak_pool_disown_all(hak_pool_t *p) {
  while (p->n) pool_disown(p, p->n - 1);
}

/* While p's unit maps change, p is busy: a fork child does not trust
 * the maps of a pool that was changing them. Sections nest. */
static uint32_t pool_enter(hak_pool_t *p) {
  uint32_t was = p->busy;
  p->busy = 1;
  atomic_signal_fence(memory_order_seq_cst);
  return was;
}
static void pool_leave(hak_pool_t *p, uint32_t was) {
  atomic_signal_fence(memory_order_seq_cst);
  p->busy = was;
}

void _hak_pool_share_free(hak_pool_t *p) {
  uint32_t was = pool_enter(p);
  for (uint32_t i = p->n; i-- > 0;)
    if (p->longest[i] == HAK_UNITS - 1 && p->ss[i]->free_units == UINT32_MAX) pool_disown(p, i);
  pool_leave(p, was);
}

/* malloc_trim for p's SuperSlabs: the runs given back to them come in, the
 * wholly free ones become shared (so that their reservation can be
 * unmapped), and the others purge. */
void _hak_pool_trim(hak_pool_t *p) {
  for (uint32_t i = p->n; i-- > 0;) {
    hak_superslab_t *ss = p->ss[i];
    remote_collect(p, ss, 0);
    if (ss->free_units == UINT32_MAX) pool_disown(p, i);
    else _hak_purge_units(ss, ss->dirty_units, true);
  }
}

/* Over budget, p's pass over its own SuperSlabs, then the shared ones',
 * each if due (hak_purge_due). */
static void purge_over_budget(hak_pool_t *p) {
  hak_tick_t now = _hak_os_ticks();
  int excess = hak_budget_excess(now);
  if (excess == HAK_MEM_WITHIN) return;
  if (excess == HAK_MEM_FAR_OVER || hak_purge_due(now, p->purge_at)) {
    hak_ss_walk_t mine = {p->ss, p->n};
    _hak_purge_walk(&mine, excess == HAK_MEM_FAR_OVER, now, &p->purge_at);
    if ((excess = hak_budget_excess(now)) == HAK_MEM_WITHIN) return;
  }
  if (excess != HAK_MEM_FAR_OVER && !_hak_ss_purge_due(now)) return;
  _hak_lock(&_hak_ss_lock);
  _hak_ss_purge_pass(now, excess == HAK_MEM_FAR_OVER);
  _hak_unmap_idle(false);
  _hak_unlock(&_hak_ss_lock);
}

/* Busy itself: the Large path calls it outside any other slow path. */
void _hak_purge_over_budget(hak_pool_t *p) {
  uint32_t was = pool_enter(p);
  purge_over_budget(p);
  pool_leave(p, was);
}

/* The runs other threads gave back to p's SuperSlabs (purging if that
 * puts the empty memory over budget); returns whether there were any. */
static bool pool_collect_all(hak_pool_t *p) {
  bool any = false;
  for (uint32_t i = 0; i < p->n; i++) {
    hak_superslab_t *ss = p->ss[i];
    if (atomic_load_explicit(&ss->remote, memory_order_relaxed)) any |= remote_collect(p, ss, 0);
  }
  if (any) _hak_purge_over_budget(p);
  return any;
}

void _hak_pool_collect(hak_pool_t *p) {
  atomic_store_explicit(&p->remote_pending, 0, memory_order_relaxed);
  pool_collect_all(p);
}

hak_slab_t *_hak_pool_take_run(hak_pool_t *p, unsigned n, uint32_t owner) {
  for (bool collected = false;;) {
    /* Only this pool takes units from its SuperSlabs. Newest first, the
     * first that holds the run touching a used unit (and, in the secure
     * build, needing no system call for its guard pages) wins, else the
     * best (the copy of each one's longest free run skips the others
     * without reading their headers). One wholly free SuperSlab is kept,
     * the others go back to the shared ones. */
    const unsigned good = (hak_cfg_secure ? 2 : 1) * HAK_FIT_PER_CALL + 2;
    hak_superslab_t *best = NULL;
    unsigned best_score = 0, best_unit = 0;
    bool have_free = false;
    for (uint32_t i = p->n; i-- > 0 && best_score < good;) {
      if (p->longest[i] < n) continue;
      hak_superslab_t *ss = p->ss[i];
      if (ss->free_units == UINT32_MAX) {
        if (have_free) {
          pool_disown(p, i);
          continue;
        }
        have_free = true;
      }
      unsigned u, score = hak_fit_in(ss->free_units, ss->guarded, n, &u);
      if (score > best_score) {
        best = ss;
        best_score = score;
        best_unit = u;
      }
    }
    if (best) {
      hak_slab_t *s = _hak_units_take(best, best_unit, n, owner);
      note_longest(p, best);
      return s;
    }
    /* No fit: the runs other threads gave back first, then a SuperSlab more. */
    bool any = !collected && pool_collect_all(p);
    if (!any && !pool_own(p)) return NULL;
    collected = true;
  }
}

/* The units of the empty slab s from its `first` on go back, empty since
 * `since` (with first 0, s stops being a slab): by the owner of its
 * SuperSlab with no lock, by another thread through the remote list while
 * it is owned, else under _hak_ss_lock. Past the budget, the giver purges.
 * The owner marks its pool busy meanwhile (pool_enter). */
static void give_back(hak_slab_t *s, unsigned first, hak_tick_t since) {
  hak_superslab_t *ss = hak_superslab_of((char *)s + 1);
  hak_pool_t *owner = atomic_load_explicit(&ss->pool, memory_order_relaxed), *mine = hak_tls_pool();
  if (owner && owner == mine) {
    uint32_t was = pool_enter(mine);
    _hak_units_give(ss, s, first, since);
    note_longest(mine, ss);
    _hak_purge_over_budget(mine);
    pool_leave(mine, was);
    return;
  }
  /* An owned SuperSlab holds only its owner's runs (pool_own), which are
   * never spares: no one else shrinks one. */
  HAK_DEBUG_ASSERT(!owner || !first);
  if (owner && remote_push(ss, s)) return;
  _hak_lock(&_hak_ss_lock);
  if (atomic_load_explicit(&ss->pool, memory_order_relaxed)) { /* owned since */
    bool pushed = remote_push(ss, s);
    HAK_ASSERT(pushed); /* closed only while being disowned, under this lock */
  } else {
    _hak_ss_give(s, first, since);
  }
  hak_tick_t now = _hak_os_ticks();
  int excess = hak_budget_excess(now);
  if (excess != HAK_MEM_WITHIN) _hak_ss_purge_pass(now, excess == HAK_MEM_FAR_OVER);
  _hak_unmap_idle(false);
  _hak_unlock(&_hak_ss_lock);
}

void _hak_slab_release_since(hak_slab_t *s, hak_tick_t since) {
  _hak_count(HAK_STAT_slabs_released);
  _hak_class_count(s->cls, 0);
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  give_back(s, 0, since);
}

void _hak_slab_release(hak_slab_t *s) { _hak_slab_release_since(s, _hak_os_ticks()); }

/* Gives the units of an empty slab beyond its first n back (dirty). */
void _hak_slab_shrink(hak_slab_t *s, unsigned n) { give_back(s, n, _hak_os_ticks()); }
