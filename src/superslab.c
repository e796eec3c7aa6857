/* superslab.c — SuperSlabs as runs of 64 KiB units: initialising one,
 * taking free units as a slab and giving a slab's units back, the shared
 * SuperSlabs (those not owned by a pool: Tiny and Mid slabs of every heap
 * come from them, under _hak_ss_lock) and the search for a run among them,
 * the pages of wholly free ones moved to Large blocks, and the mechanics
 * of purging (which units, in which order; budget.c decides when). Unit
 * bitmap arithmetic is in units.h.
 *
 * A free unit is dirty until purged: it may still be resident, and counts
 * as empty memory. Committed memory changes only when clean units are
 * taken and when dirty ones are purged, so the hot paths (runs reusing
 * dirty units) touch no shared counter. */
#include "units.h"

hak_lock_t _hak_ss_lock = HAK_LOCK_INIT;
static hak_list_t avail;                 /* shared SuperSlabs with a free unit (ss lock), oldest first */
static uint64_t superslab_count;         /* ss lock */
static _Atomic uint64_t purged_total;    /* purges run under the owner or _hak_ss_lock */
static _Atomic uint64_t refaulted_total; /* bytes of purged units taken into slabs again */
static hak_tick_t shared_purge_at;       /* ss lock; read unlocked to skip taking it */

static char *unit_addr(hak_superslab_t *ss, unsigned u) {
  return (char *)ss + ((size_t)u << HAK_UNIT_SHIFT) + (u == 0 ? HAK_SS_HEADER : 0);
}

void _hak_ss_init(hak_superslab_t *ss) {
  ss->free_units = UINT32_MAX;
  ss->dirty_units = 0;
  ss->guarded = 0;
  ss->purged_units = 0;
  ss->purged_early = 0;
  atomic_store_explicit(&ss->pool, NULL, memory_order_relaxed);
  for (unsigned u = 0; u < HAK_UNITS; u++) {
    ss->slab[u].head = (uint8_t)u;
    ss->slab[u].start = (uint32_t)(u << HAK_UNIT_SHIFT) + (u == 0 ? (uint32_t)HAK_SS_HEADER : 0);
  }
  hak_chunk_mark(ss, HAK_CHUNK_SUPERSLAB);
  superslab_count++;
  _hak_committed_add((ptrdiff_t)HAK_SS_HEADER);
  hak_list_push_tail(&avail, &ss->avail);
}

static hak_superslab_t *superslab_carve(void) {
  hak_superslab_t *ss = _hak_reservation_carve();
  if (ss) _hak_ss_init(ss);
  return ss;
}

/* The dirty units among `bits` stop being dirty (taken, purged, unmapped);
 * returns the bytes they counted as empty memory. */
static size_t units_clean(hak_superslab_t *ss, uint32_t bits) {
  size_t counted = hak_units_bytes(ss->dirty_units & bits);
  ss->dirty_units &= ~bits;
  return counted;
}

/* The dirty units among `bits` lose their pages (purged, or moved to a
 * Large block): purged, evidence for HAKMEM_ACE if `early` (the budget
 * purged them, not malloc_trim or a move), and out of the empty and the
 * committed memory. Returns their bytes. */
static size_t units_unbacked(hak_superslab_t *ss, uint32_t bits, bool early) {
  ss->purged_units |= bits;
  ss->purged_early = early ? ss->purged_early | bits : ss->purged_early & ~bits;
  size_t bytes = units_clean(ss, bits);
  hak_mem_move(bytes, HAK_MEM_EMPTY, HAK_MEM_NONE);
  _hak_committed_add(-(ptrdiff_t)bytes);
  return bytes;
}

/* The secure build's guard pages: the last page of every slab's units has
 * no access, so a write that runs off the end of its last block (towards
 * the next slab, or the next SuperSlab's header) faults. Slab geometry
 * leaves that page out of the blocks (size_class.c, slab.c). A guard
 * stays when its slab's units come back (`guarded`), so that units taken
 * again for a slab of the same shape need no system call; one that would
 * fall inside a new slab is taken away first (which must not fail).
 * Setting one may fail past the kernel's limit of mappings (the slab then
 * has none). */
static char *guard_addr(hak_superslab_t *ss, unsigned unit) {
  return (char *)ss + ((size_t)(unit + 1) << HAK_UNIT_SHIFT) - HAK_PAGE;
}

static void guard_slab(hak_superslab_t *ss, unsigned u, unsigned n) {
  if (!hak_cfg_secure || !n) return;
  uint32_t inside = hak_unit_bits(u, n - 1) & ss->guarded;
  if (inside) { /* one call from the first to the last: the pages between have access already */
    char *first = guard_addr(ss, (unsigned)__builtin_ctz(inside));
    char *last = guard_addr(ss, 31u - (unsigned)__builtin_clz(inside));
    int rc = _hak_os_protect(first, (size_t)(last - first) + HAK_PAGE, true);
    HAK_ASSERT(rc == 0);
  }
  ss->guarded &= ~inside;
  uint32_t end = 1u << (u + n - 1);
  if (!(ss->guarded & end) && _hak_os_protect(guard_addr(ss, u + n - 1), HAK_PAGE, false) == 0)
    ss->guarded |= end;
}

hak_slab_t *_hak_units_take(hak_superslab_t *ss, unsigned u, unsigned n, uint32_t owner) {
  uint32_t bits = hak_unit_bits(u, n);
  HAK_DEBUG_ASSERT((ss->free_units & bits) == bits);
  if (hak_opt(HAK_OPT_ACE)) { /* empty units taken again: how long they were empty */
    uint32_t now = (uint32_t)(_hak_os_ticks() >> HAK_AGE_SHIFT);
    for (uint32_t e = bits & (ss->dirty_units | ss->purged_units); e; e &= e - 1)
      hak_mem_reuse_age(hak_units_bytes(e & -e), (hak_tick_t)(now - ss->unit_freed[__builtin_ctz(e)])
                                                     << HAK_AGE_SHIFT);
  }
  if (bits & ss->purged_units) { /* their pages fault in again as the slab is used */
    atomic_fetch_add_explicit(&refaulted_total, hak_units_bytes(bits & ss->purged_units),
                              memory_order_relaxed);
    uint32_t early = bits & ss->purged_early;
    for (uint32_t e = early; e; e &= e - 1)
      if (!hak_refault_counts(ss->unit_freed[__builtin_ctz(e)])) early &= ~(e & -e);
    _hak_mem_refaulted(hak_units_bytes(early));
    hak_mem_reused(hak_units_bytes(early)); /* evidence for the room too: it grows as by reuse */
    ss->purged_units &= ~bits;
    ss->purged_early &= ~bits;
  }
  if (bits & ~ss->dirty_units) _hak_committed_add((ptrdiff_t)hak_units_bytes(bits & ~ss->dirty_units));
  size_t reused = units_clean(ss, bits);
  hak_mem_move(reused, HAK_MEM_EMPTY, HAK_MEM_NONE);
  hak_mem_reused(reused);
  hak_mem_move(hak_units_bytes(bits), HAK_MEM_NONE, HAK_MEM_USED);
  ss->free_units &= ~bits;
  hak_slab_t *s = &ss->slab[u];
  __atomic_store_n(&s->units, (uint8_t)n, __ATOMIC_RELAXED);
  s->local_free = NULL;
  atomic_store_explicit(&s->owner, owner, memory_order_relaxed);
  for (unsigned i = 0; i < n; i++) __atomic_store_n(&ss->slab[u + i].head, (uint8_t)u, __ATOMIC_RELAXED);
  guard_slab(ss, u, n);
  if (hak_cfg_debug) _hak_superslab_check(ss);
  return s;
}

void _hak_units_give(hak_superslab_t *ss, hak_slab_t *s, unsigned first, hak_tick_t since) {
  unsigned u = hak_slab_unit(s);
  uint32_t bits = hak_unit_bits(u + first, s->units - first);
  /* The descriptor of a free unit has no block (carved 0); that of the
   * first unit of a one-block run keeps capacity 1 and its block size, so
   * that a second free of that block is known for what it is. A later unit
   * of a slab has carved 0 already (only a slab's first descriptor counts
   * blocks), and a slab given back whole leaves the `head` of its later
   * units as it was: they lead to its first descriptor, which then has no
   * block, or to whatever slab starts there later, whose block p is not
   * (hak_slab_has_block fails for an address outside its slab), until
   * _hak_units_take sets them again. Only its first descriptor and the
   * ages' array are written, not a line per unit (mid_large_mt's runs of
   * up to 16 units). A slab that keeps some units still counts blocks in
   * the others: those lead to themselves again. */
  bool single = s->capacity == 1 && !first;
  guard_slab(ss, u, first); /* what it keeps */
  for (unsigned k = u + first; k < u + s->units; k++) {
    HAK_DEBUG_ASSERT(k == u || ss->slab[k].carved == 0);
    ss->unit_freed[k] = (uint32_t)(since >> HAK_AGE_SHIFT);
  }
  if (first) {
    for (unsigned k = u + first; k < u + s->units; k++) {
      __atomic_store_n(&ss->slab[k].head, (uint8_t)k, __ATOMIC_RELAXED);
      ss->slab[k].capacity = 0;
    }
  } else {
    s->carved = 0;
  }
  __atomic_store_n(&s->units, (uint8_t)first, __ATOMIC_RELEASE);
  if (!first) {
    s->cls = 0;
    s->capacity = single;
  }
  ss->free_units |= bits;
  ss->dirty_units |= bits;
  ss->freed_at = _hak_os_ticks();
  hak_mem_move(hak_units_bytes(bits), HAK_MEM_USED, HAK_MEM_EMPTY);
  if (hak_cfg_debug) _hak_superslab_check(ss);
}

/* The run of n free units that reuses the most dirty (still resident)
 * units, among the first shared SuperSlabs that have dirty units; else the
 * first free run anywhere. Returns its SuperSlab (NULL if none) and sets
 * *unit. */
static hak_superslab_t *find_run(unsigned n, bool skip_unit0, int *unit) {
  hak_superslab_t *best = NULL;
  int best_dirty = 0, looked = 0;
  for (hak_link_t *l = avail.head; l && best_dirty < (int)n && looked < HAK_DIRTY_SEARCH; l = l->next) {
    hak_superslab_t *ss = HAK_SS_OF_AVAIL(l);
    if (!ss->dirty_units) continue;
    looked++;
    for (uint32_t m = hak_run_starts(ss->free_units, n, skip_unit0); m; m &= m - 1) {
      unsigned u = (unsigned)__builtin_ctz(m);
      int d = (int)hak_count_units(ss->dirty_units & hak_unit_bits(u, n));
      if (d > best_dirty) {
        best = ss;
        best_dirty = d;
        *unit = (int)u;
      }
    }
  }
  if (best) return best;
  for (hak_link_t *l = avail.head; l; l = l->next) {
    hak_superslab_t *ss = HAK_SS_OF_AVAIL(l);
    uint32_t m = hak_run_starts(ss->free_units, n, skip_unit0);
    if (m) {
      *unit = __builtin_ctz(m);
      return ss;
    }
  }
  return NULL;
}

hak_slab_t *_hak_ss_take_run(unsigned n, bool skip_unit0, uint32_t owner) {
  _hak_lock(&_hak_ss_lock);
  int u = -1;
  hak_superslab_t *ss = find_run(n, skip_unit0, &u);
  if (!ss) {
    ss = superslab_carve();
    if (!ss) {
      _hak_unlock(&_hak_ss_lock);
      return NULL;
    }
    u = __builtin_ctz(hak_run_starts(ss->free_units, n, skip_unit0));
  }
  if (ss->free_units == UINT32_MAX) _hak_reservation_note_empty(ss->res, -1);
  hak_slab_t *s = _hak_units_take(ss, (unsigned)u, n, owner);
  if (!ss->free_units) hak_list_remove(&avail, &ss->avail);
  _hak_unlock(&_hak_ss_lock);
  return s;
}

void _hak_ss_give(hak_slab_t *s, unsigned first, hak_tick_t since) {
  hak_superslab_t *ss = hak_superslab_of((char *)s + 1);
  if (!ss->free_units) hak_list_push_tail(&avail, &ss->avail);
  _hak_units_give(ss, s, first, since);
  if (ss->free_units == UINT32_MAX) _hak_reservation_note_empty(ss->res, +1);
}

hak_superslab_t *_hak_ss_take_free(void) {
  hak_superslab_t *ss = NULL;
  for (hak_link_t *l = avail.head; l; l = l->next) {
    hak_superslab_t *s = HAK_SS_OF_AVAIL(l);
    if (s->free_units == UINT32_MAX && (!ss || (s->dirty_units && !ss->dirty_units))) {
      ss = s;
      if (s->dirty_units) break;
    }
  }
  if (!ss) ss = superslab_carve();
  if (ss) {
    hak_list_remove(&avail, &ss->avail);
    _hak_reservation_note_empty(ss->res, -1); /* owned: in use */
  }
  return ss;
}

void _hak_ss_share(hak_superslab_t *ss) {
  if (ss->free_units) hak_list_push_tail(&avail, &ss->avail);
  if (ss->free_units == UINT32_MAX) _hak_reservation_note_empty(ss->res, +1);
}

/* ---- free SuperSlabs' pages for Large blocks ---------------------------
 * A wholly free shared SuperSlab whose units are mostly dirty holds up to
 * 2 MiB of resident pages that only a slab of its own would reuse. A Large
 * block that would fault in fresh pages takes them instead (large.c): the
 * kernel moves the chunk's page table to the block's mapping, and the
 * SuperSlab's range stays mapped with no pages, as if purged (one header
 * page faults in again). The block costs no page faults for that chunk
 * and committed memory does not grow by it: memory kept for one tier
 * serves the other instead of raising the peak. */
#define DONOR_DIRTY_MIN (HAK_UNITS / 2) /* a chunk with fewer resident units saves too few faults */
#define DONOR_SEARCH 64                 /* shared SuperSlabs looked at per request (the lock is held) */

static bool donate_off; /* a move failed (a kernel before 5.7): none is tried again (ss lock) */

/* The next donor on the shared list after *l (NULL: from the start). */
static hak_superslab_t *next_donor(hak_link_t **l, int *looked) {
  for (*l = *l ? (*l)->next : avail.head; *l && *looked < DONOR_SEARCH; *l = (*l)->next) {
    hak_superslab_t *ss = HAK_SS_OF_AVAIL(*l);
    ++*looked;
    if (ss->free_units == UINT32_MAX && hak_count_units(ss->dirty_units) >= DONOR_DIRTY_MIN) return ss;
  }
  return NULL;
}

unsigned _hak_ss_donors(unsigned chunks) {
  unsigned n = 0;
  if (!chunks || __atomic_load_n(&donate_off, __ATOMIC_RELAXED)) return 0;
  _hak_lock(&_hak_ss_lock);
  hak_link_t *l = NULL;
  int looked = 0;
  while (n < chunks && next_donor(&l, &looked)) n++;
  _hak_unlock(&_hak_ss_lock);
  return n;
}

/* The header of a SuperSlab whose page a move took, written back from h.
 * A thread whose run went onto its remote list may still read `pool`
 * (remote_push, after the owner collected the run and let the SuperSlab
 * go): the fields others read unlocked go back with atomic stores. */
static void header_restore(hak_superslab_t *ss, const hak_superslab_t *h) {
  memcpy(&ss->slab, &h->slab, sizeof *ss - offsetof(hak_superslab_t, slab));
  ss->pool_index = h->pool_index;
  ss->avail = h->avail;
  ss->dirty_units = h->dirty_units;
  atomic_store_explicit(&ss->free_units, atomic_load_explicit(&h->free_units, memory_order_relaxed),
                        memory_order_relaxed);
  atomic_store_explicit(&ss->pool, atomic_load_explicit(&h->pool, memory_order_relaxed),
                        memory_order_relaxed);
  atomic_store_explicit(&ss->remote, atomic_load_explicit(&h->remote, memory_order_relaxed),
                        memory_order_relaxed);
}

unsigned _hak_ss_donate(char *to, unsigned chunks) {
  unsigned n = 0;
  _hak_lock(&_hak_ss_lock);
  hak_link_t *l = NULL;
  int looked = 0;
  hak_superslab_t *ss;
  while (n < chunks && !donate_off && (ss = next_donor(&l, &looked)) != NULL) {
    hak_superslab_t header;
    memcpy(&header, ss, sizeof header); /* the move takes the header's page too */
    if (!_hak_os_move(ss, HAK_SS_SIZE, to + (size_t)n * HAK_SS_SIZE)) {
      donate_off = true;
      break;
    }
    header_restore(ss, &header);
    hak_mem_reused(units_unbacked(ss, ss->dirty_units, false)); /* reused, not lost: no evidence for ACE */
    n++;
  }
  _hak_unlock(&_hak_ss_lock);
  return n;
}

/* ---- purging -------------------------------------------------------------
 * A pool purges the SuperSlabs it owns, and any thread the shared ones
 * (under _hak_ss_lock). Over the budget, what goes is the units empty for
 * the purge delay: a churn takes nearly all it frees back well within it
 * (so neither pays a purge nor refaults), a program that stopped using
 * memory loses it a little after. Past twice the budget, the units of the
 * SuperSlab whose units came back the longest ago go first, however
 * young. */
size_t _hak_purge_units(hak_superslab_t *ss, uint32_t d, bool all) {
  size_t purged = 0;
  bool lazy = hak_opt(HAK_OPT_MADV_FREE) != 0;
  while (d && (all || hak_budget_above_target())) {
    unsigned u = (unsigned)__builtin_ctz(d);
    unsigned n = (unsigned)__builtin_ctzll(~((uint64_t)d >> u)); /* run length: d has 32 bits */
    uint32_t bits = hak_unit_bits(u, n);
    _hak_os_purge(unit_addr(ss, u), hak_units_bytes(bits), lazy);
    purged += units_unbacked(ss, bits, !all);
    d &= ~bits;
  }
  atomic_fetch_add_explicit(&purged_total, purged, memory_order_relaxed);
  return purged;
}

/* The SuperSlabs of a walk, one by one: *l follows the shared list, *i the
 * array. */
static hak_superslab_t *walk_next(const hak_ss_walk_t *w, uint32_t *i, hak_link_t **l) {
  if (w) return *i < w->n ? w->ss[(*i)++] : NULL;
  *l = *l ? (*l)->next : avail.head;
  return *l ? HAK_SS_OF_AVAIL(*l) : NULL;
}

/* Dirty units, oldest SuperSlab first: all, or down to 3/4 of the budget. */
static size_t purge_oldest(const hak_ss_walk_t *w, bool all) {
  size_t purged = 0;
  while (all || hak_budget_above_target()) {
    hak_superslab_t *old = NULL, *ss;
    uint32_t i = 0;
    hak_link_t *l = NULL;
    while ((ss = walk_next(w, &i, &l)) != NULL)
      if (ss->dirty_units && (!old || ss->freed_at < old->freed_at)) old = ss;
    if (!old) break;
    purged += _hak_purge_units(old, old->dirty_units, all);
  }
  return purged;
}

void _hak_purge_walk(const hak_ss_walk_t *w, bool far, hak_tick_t now, hak_tick_t *next) {
  if (far) {
    purge_oldest(w, false);
    return;
  }
  hak_tick_t delay = hak_purge_delay();
  uint32_t t = (uint32_t)(now >> HAK_AGE_SHIFT), age = (uint32_t)(delay >> HAK_AGE_SHIFT), soonest = age;
  hak_superslab_t *ss;
  uint32_t i = 0;
  hak_link_t *l = NULL;
  while ((ss = walk_next(w, &i, &l)) != NULL) {
    if (!hak_budget_above_target()) return;
    uint32_t aged = 0;
    for (uint32_t d = ss->dirty_units; d; d &= d - 1) {
      unsigned u = (unsigned)__builtin_ctz(d);
      uint32_t a = t - ss->unit_freed[u];
      if (a >= age) aged |= 1u << u;
      else if (age - a < soonest) soonest = age - a;
    }
    if (aged) _hak_purge_units(ss, aged, false);
  }
  if (hak_budget_above_target()) /* read unlocked for the shared ones */
    __atomic_store_n(next, _hak_purge_next(now, (hak_tick_t)soonest << HAK_AGE_SHIFT), __ATOMIC_RELAXED);
}

void _hak_ss_purge_pass(hak_tick_t now, bool far) {
  if (!far && !hak_purge_due(now, __atomic_load_n(&shared_purge_at, __ATOMIC_RELAXED))) return;
  _hak_purge_walk(NULL, far, now, &shared_purge_at);
}

bool _hak_ss_purge_due(hak_tick_t now) {
  return hak_purge_due(now, __atomic_load_n(&shared_purge_at, __ATOMIC_RELAXED));
}

size_t _hak_unmap_idle(bool now_all) {
  size_t n = 0;
  for (hak_reservation_t *r = _hak_reservation_idle(now_all, NULL), *next; r; r = next) {
    next = _hak_reservation_idle(now_all, r);
    for (uint32_t i = 0; i < r->carved; i++) {
      hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
      hak_list_remove(&avail, &ss->avail);
      _hak_committed_add(-(ptrdiff_t)(hak_units_bytes(ss->dirty_units) + HAK_SS_HEADER));
      hak_mem_move(units_clean(ss, UINT32_MAX), HAK_MEM_EMPTY, HAK_MEM_NONE);
      hak_chunk_mark(ss, HAK_CHUNK_NONE);
      superslab_count--;
    }
    _hak_reservation_unmap(r);
    n += HAK_RESERVATION;
  }
  return n;
}

size_t _hak_purge_all(void) {
  _hak_lock(&_hak_ss_lock);
  size_t n = purge_oldest(NULL, true);
  n += _hak_unmap_idle(true);
  _hak_unlock(&_hak_ss_lock);
  return n;
}

void _hak_superslab_check(hak_superslab_t *ss) {
  uint32_t covered = 0;
  for (unsigned u = 0; u < HAK_UNITS;) {
    hak_slab_t *s = &ss->slab[u];
    if (ss->free_units & (1u << u)) {
      HAK_ASSERT(s->units == 0 && s->cls == 0 && s->carved == 0);
      u++;
      continue;
    }
    HAK_ASSERT(s->units >= 1 && u + s->units <= HAK_UNITS);
    for (unsigned i = 0; i < s->units; i++)
      HAK_ASSERT(hak_slab_of(ss, (uintptr_t)ss + ((uintptr_t)(u + i) << HAK_UNIT_SHIFT)) == s &&
                 !(ss->free_units & (1u << (u + i))) && (i == 0 || ss->slab[u + i].carved == 0));
    covered |= hak_unit_bits(u, s->units);
    u += s->units;
  }
  HAK_ASSERT((covered | ss->free_units) == UINT32_MAX && !(covered & ss->free_units));
  HAK_ASSERT((ss->dirty_units & ~ss->free_units) == 0);
}

void _hak_superslab_figures(hak_stats_t *st) {
  st->superslabs += superslab_count;
  st->metadata += superslab_count * HAK_SS_HEADER;
  st->purged += atomic_load_explicit(&purged_total, memory_order_relaxed);
  st->purged_reused += atomic_load_explicit(&refaulted_total, memory_order_relaxed);
}
