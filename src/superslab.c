/* superslab.c — hakmem's address space for Tiny, Mid and pool blocks:
 * reservations (64 MiB), the SuperSlabs carved from them, the chunk map that
 * marks them, runs of 64 KiB units handed out as slabs, and giving memory
 * back (purging empty units, unmapping wholly free reservations).
 *
 * A SuperSlab is shared (Tiny and Mid slabs of any heap come from the
 * shared ones with a free run, under _hak_ss_lock) or owned by one heap,
 * which takes its pool runs from it alone and changes its unit maps with no
 * lock: a thread that churns through large blocks neither waits for others
 * nor runs an atomic instruction for them, and the runs it frees merge
 * again in its SuperSlabs' unit maps. Other threads give runs back to an
 * owned SuperSlab through its remote list (see "owned SuperSlabs" below).
 * Owning changes under _hak_ss_lock. */
#include <string.h>

#include "internal.h"

/* One byte per 2 MiB chunk of the 47-bit address space: 64 MiB of .bss,
 * zero until touched, so it needs no initialisation and is valid before any
 * constructor runs. Only chunks that start a SuperSlab or a Large mapping
 * are marked. */
uint8_t _hak_chunk_map[HAK_CHUNKS] __attribute__((aligned(4096)));

hak_lock_t _hak_ss_lock = HAK_LOCK_INIT;
hak_mem_totals_t _hak_mem;
_Atomic size_t _hak_committed, _hak_committed_peak;

void _hak_mem_room_add(hak_heap_t *h) {
  int64_t d = h->room - h->room_added;
  atomic_fetch_add_explicit(&_hak_mem.room, d, memory_order_relaxed);
  h->room_added = h->room;
  if (d > 0) _hak_mem_room_reused();
}

void _hak_mem_room_reused(void) {
  /* To within 1/16 of the lapse: a shared line written rarely. */
  uint64_t now = __builtin_ia32_rdtsc();
  if (now - atomic_load_explicit(&_hak_mem.room_tsc, memory_order_relaxed) > HAK_ROOM_TICKS / 16)
    atomic_store_explicit(&_hak_mem.room_tsc, now, memory_order_relaxed);
}

void _hak_mem_flush(hak_heap_t *h) {
  _Atomic size_t *total[2] = {&_hak_mem.live, &_hak_mem.idle};
  for (int w = 0; w < 2; w++)
    h->mem_seen[w] =
        (int64_t)atomic_fetch_add_explicit(total[w], (size_t)h->mem_delta[w], memory_order_relaxed) + h->mem_delta[w];
  h->mem_delta[0] = h->mem_delta[1] = 0;
}

struct hak_reservation {
  char *base;                      /* 2 MiB aligned */
  uint32_t carved;                 /* SuperSlabs carved so far, from the start */
  uint32_t empty;                  /* carved SuperSlabs whose units are all free */
  uint64_t empty_since;            /* when `empty` reached `carved` (ms), or 0 */
  hak_reservation_t *next, *prev;  /* all reservations */
};
#define RES_SUPERSLABS ((uint32_t)(HAK_RESERVATION / HAK_SS_SIZE))

static hak_reservation_t *res_list;    /* newest first */
static hak_reservation_t *res_spare;   /* records of unmapped reservations */
static hak_superslab_t *avail_head, *avail_tail; /* shared SuperSlabs with a free unit */
/* A SuperSlab's committed memory is its header, the units in slabs and the
 * free units not purged: it changes only when clean units are taken and
 * dirty ones purged, so the hot paths (runs reusing dirty units) touch no
 * shared counter. */
static size_t mapped_bytes;
static uint64_t superslab_count;
static _Atomic uint64_t purged_total; /* purges run under the owner or _hak_ss_lock */
static uint64_t unmapped_total;
static uint32_t res_pending_unmap;     /* reservations with empty_since set */
static _Atomic uint64_t class_slabs[HAK_CLASSES]; /* statistics */
static _Atomic size_t class_slabs_peak[HAK_CLASSES];

static uint32_t unit_bits(unsigned u, unsigned n) {
  return (uint32_t)((((uint64_t)1 << n) - 1) << u);
}

/* The longest run of free units past unit 0 (no pool run starts there). */
static unsigned longest_run(uint32_t free_units) {
  unsigned n = 0;
  for (uint32_t m = free_units & ~1u; m; m &= m >> 1) n++;
  return n;
}

/* An owned SuperSlab's longest free run lives in its heap's pool_longest
 * (the owner's search reads that array, not each header); set by the
 * owner whenever its free units change. */
static void note_longest(hak_superslab_t *ss) {
  uint32_t id = atomic_load_explicit(&ss->heap, memory_order_relaxed);
  if (id) atomic_load_explicit(&ss->owner, memory_order_relaxed)->pool_longest[ss->pool_index] =
      (uint8_t)longest_run(ss->free_units);
}

static char *unit_addr(hak_superslab_t *ss, unsigned u) {
  return (char *)ss + ((size_t)u << HAK_UNIT_SHIFT) + (u == 0 ? HAK_SS_HEADER : 0);
}

/* Set bits of a unit bitmap (x86-64's baseline has no popcnt instruction,
 * and libgcc's is a call). */
static unsigned count_units(uint32_t x) {
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  return (((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
}

/* Bytes of block space in the units of `bits` (unit 0 has the header). */
static size_t bits_bytes(uint32_t bits) {
  return ((size_t)count_units(bits) << HAK_UNIT_SHIFT) - ((bits & 1u) ? HAK_SS_HEADER : 0);
}

/* Slab geometry: Tiny slabs are one unit; Mid slabs get enough units for
 * HAK_MID_SLAB_BLOCKS blocks. A pool run is the size, from the fewest units that hold one
 * block up to 4 units (256 KiB), that wastes the least of its bytes (the
 * first such, comparing waste/bytes as cross products). */
static size_t slab_units(size_t cls) {
  if (cls <= HAK_CLASS_TINY_LAST) return 1;
  size_t size = hak_class_size(cls);
  if (cls <= HAK_CLASS_MID_LAST) return (size * HAK_MID_SLAB_BLOCKS + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT;
  size_t min = (size + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT, best = min;
  size_t best_waste = (min << HAK_UNIT_SHIFT) % size;
  for (size_t u = min + 1; u <= 4; u++) {
    size_t waste = (u << HAK_UNIT_SHIFT) % size;
    if (waste * best < best_waste * u) {
      best_waste = waste;
      best = u;
    }
  }
  return best;
}

/* Whether a run of pool class cls holds a single block (pool runs never
 * start at unit 0). */
bool _hak_pool_single(size_t cls) {
  return cls > HAK_CLASS_MID_LAST && (_hak_slab_units(cls) << HAK_UNIT_SHIFT) / hak_class_size(cls) == 1;
}

/* slab_units by class, filled on first use (any thread may fill an entry:
 * they all write the same value). */
static _Atomic uint8_t units_of[HAK_CLASSES];

size_t _hak_slab_units(size_t cls) {
  uint8_t n = atomic_load_explicit(&units_of[cls], memory_order_relaxed);
  if (HAK_UNLIKELY(!n)) {
    n = (uint8_t)slab_units(cls);
    atomic_store_explicit(&units_of[cls], n, memory_order_relaxed);
  }
  return n;
}

static void avail_push(hak_superslab_t *ss) {
  ss->next = NULL;
  ss->prev = avail_tail;
  if (avail_tail) avail_tail->next = ss;
  else avail_head = ss;
  avail_tail = ss;
}

static void avail_remove(hak_superslab_t *ss) {
  if (ss->prev) ss->prev->next = ss->next;
  else avail_head = ss->next;
  if (ss->next) ss->next->prev = ss->prev;
  else avail_tail = ss->prev;
  ss->next = ss->prev = NULL;
}

static hak_reservation_t *reservation_map(void) {
  char *base = _hak_os_map(HAK_RESERVATION, HAK_SS_SIZE);
  if (!base) return NULL;
  hak_reservation_t *r = res_spare;
  if (r) res_spare = r->next;
  else r = _hak_meta_alloc(sizeof *r);
  if (!r) {
    _hak_os_unmap(base, HAK_RESERVATION);
    return NULL;
  }
  *r = (hak_reservation_t){.base = base, .next = res_list};
  if (res_list) res_list->prev = r;
  res_list = r;
  mapped_bytes += HAK_RESERVATION;
  long thp = hak_opt(HAK_OPT_THP);
  if (thp) _hak_os_hugepage(base, HAK_RESERVATION, (int)thp);
  return r;
}

static hak_superslab_t *superslab_carve(void) {
  hak_reservation_t *r = res_list;
  if (!r || r->carved == RES_SUPERSLABS) r = reservation_map();
  if (!r) return NULL;
  hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)r->carved * HAK_SS_SIZE);
  ss->index = r->carved++;
  ss->res = r;
  ss->free_units = UINT32_MAX;
  ss->dirty_units = 0;
  for (unsigned u = 0; u < HAK_UNITS; u++) ss->unit_slab[u] = &ss->slab[u];
  r->empty++; /* a new SuperSlab is wholly free: the reservation's state is unchanged */
  _hak_chunk_map[(uintptr_t)ss >> HAK_SS_SHIFT] = HAK_CHUNK_SUPERSLAB;
  superslab_count++;
  hak_committed_add((ptrdiff_t)HAK_SS_HEADER);
  avail_push(ss);
  return ss;
}

/* Bit u set: units u .. u+n-1 are all free (and u > 0 if the blocks need
 * more than unit 0's 4 KiB alignment). Each step doubles the run length
 * the bits stand for, up to n. */
static uint32_t run_starts(uint32_t free_units, unsigned n, bool skip_unit0) {
  uint32_t m = free_units;
  for (unsigned k = 1; k < n && m;) { /* bit u of m: units u .. u+k-1 free */
    unsigned step = k < n - k ? k : n - k;
    m &= m >> step;
    k += step;
  }
  return skip_unit0 ? m & ~(uint32_t)1 : m;
}

/* The run of n free units that reuses the most dirty (still resident)
 * units, among the first SuperSlabs that have dirty units; else the first
 * free run anywhere. Returns its SuperSlab (NULL if none) and sets *unit. */
static hak_superslab_t *find_run(unsigned n, bool skip_unit0, int *unit) {
  hak_superslab_t *best = NULL;
  int best_dirty = 0, looked = 0;
  for (hak_superslab_t *ss = avail_head; ss && best_dirty < (int)n && looked < HAK_DIRTY_SEARCH;
       ss = ss->next) {
    if (!ss->dirty_units) continue;
    looked++;
    for (uint32_t m = run_starts(ss->free_units, n, skip_unit0); m; m &= m - 1) {
      unsigned u = (unsigned)__builtin_ctz(m);
      int d = (int)count_units(ss->dirty_units & unit_bits(u, n));
      if (d > best_dirty) {
        best = ss;
        best_dirty = d;
        *unit = (int)u;
      }
    }
  }
  if (best) return best;
  for (hak_superslab_t *ss = avail_head; ss; ss = ss->next) {
    uint32_t m = run_starts(ss->free_units, n, skip_unit0);
    if (m) {
      *unit = __builtin_ctz(m);
      return ss;
    }
  }
  return NULL;
}

static void reservation_note_empty(hak_reservation_t *r, int delta) {
  bool was = r->empty == r->carved;
  r->empty = (uint32_t)((int)r->empty + delta);
  bool is = r->empty == r->carved;
  if (is && !was) {
    r->empty_since = _hak_os_now_ms() | 1;
    res_pending_unmap++;
  } else if (was && !is && r->empty_since) {
    r->empty_since = 0;
    res_pending_unmap--;
  }
}

/* The dirty units among `bits` stop being dirty (taken, purged, unmapped);
 * returns the bytes they counted as empty memory. */
static size_t units_clean(hak_superslab_t *ss, uint32_t bits) {
  size_t counted = bits_bytes(ss->dirty_units & bits);
  ss->dirty_units &= ~bits;
  return counted;
}

/* Units u .. u+n-1 of ss, all free, become one slab held by `owner`. The
 * caller guards ss: its owner, or _hak_ss_lock while it is shared. */
static hak_slab_t *units_take(hak_superslab_t *ss, unsigned u, unsigned n, uint32_t owner) {
  uint32_t bits = unit_bits(u, n);
  HAK_DEBUG_ASSERT((ss->free_units & bits) == bits);
  if (bits & ~ss->dirty_units) hak_committed_add((ptrdiff_t)bits_bytes(bits & ~ss->dirty_units));
  size_t reused = units_clean(ss, bits);
  hak_mem_move(reused, &_hak_mem.idle, NULL);
  hak_mem_reused(reused);
  hak_mem_move(bits_bytes(bits), NULL, &_hak_mem.live);
  ss->free_units &= ~bits;
  note_longest(ss);
  hak_slab_t *s = &ss->slab[u];
  s->units = (uint8_t)n;
  atomic_store_explicit(&s->owner, owner, memory_order_relaxed);
  for (unsigned i = 0; i < n; i++) ss->unit_slab[u + i] = s;
  if (hak_cfg_debug) _hak_superslab_check(ss);
  return s;
}

hak_slab_t *_hak_slab_alloc(size_t cls, uint32_t owner) {
  unsigned n = (unsigned)_hak_slab_units(cls);
  bool skip0 = hak_class_size(cls) > HAK_UNIT0_MAX_BLOCK;
  _hak_lock(&_hak_ss_lock);
  int u = -1;
  hak_superslab_t *ss = find_run(n, skip0, &u);
  if (!ss) {
    ss = superslab_carve();
    if (!ss) {
      _hak_unlock(&_hak_ss_lock);
      return NULL;
    }
    u = __builtin_ctz(run_starts(ss->free_units, n, skip0));
  }
  if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, -1);
  hak_slab_t *s = units_take(ss, (unsigned)u, n, owner);
  if (!ss->free_units) avail_remove(ss);
  _hak_unlock(&_hak_ss_lock);
  _hak_slab_format(s, cls);
  return s;
}

/* The units of the empty slab s from its `keep`-th on go back to ss, free
 * and dirty (empty memory since `since`, a TSC). With keep 0, s stops
 * being a slab. The caller guards ss: its owner, or _hak_ss_lock while it
 * is shared. */
static void units_give(hak_superslab_t *ss, hak_slab_t *s, unsigned keep, uint64_t since) {
  unsigned u = hak_slab_unit(s);
  uint32_t bits = unit_bits(u + keep, s->units - keep);
  uint64_t now = __builtin_ia32_rdtsc();
  for (unsigned k = u + keep; k < u + s->units; k++) {
    ss->unit_slab[k] = &ss->slab[k];
    ss->unit_freed[k] = (uint32_t)(since >> HAK_AGE_SHIFT);
  }
  s->units = (uint8_t)keep;
  if (!keep) {
    s->slot_off = 0;
    s->cls = 0;
  }
  ss->free_units |= bits;
  ss->dirty_units |= bits;
  note_longest(ss);
  ss->freed_at = now;
  hak_mem_move(bits_bytes(bits), &_hak_mem.live, &_hak_mem.idle);
  if (hak_cfg_debug) _hak_superslab_check(ss);
}

/* Purges the dirty units `d` of ss, one madvise per run of contiguous
 * ones: all of them, or until the empty memory is down to three quarters
 * of the budget. */
static size_t purge_units(hak_superslab_t *ss, uint32_t d, bool all) {
  size_t purged = 0;
  while (d && (all || hak_mem_above_target())) {
    unsigned u = (unsigned)__builtin_ctz(d);
    unsigned n = (unsigned)__builtin_ctz(~(d >> u)); /* run length */
    if (u + n > HAK_UNITS) n = HAK_UNITS - u;
    uint32_t bits = unit_bits(u, n);
    size_t bytes = bits_bytes(bits);
    _hak_os_purge(unit_addr(ss, u), bytes);
    hak_mem_move(units_clean(ss, bits), &_hak_mem.idle, NULL);
    d &= ~bits;
    hak_committed_add(-(ptrdiff_t)bytes);
    purged += bytes;
  }
  atomic_fetch_add_explicit(&purged_total, purged, memory_order_relaxed);
  return purged;
}

/* ---- purging over budget -----------------------------------------------
 * A heap purges the SuperSlabs it owns, and any thread the shared ones
 * (under _hak_ss_lock). Over the budget, what goes is the units empty for
 * the purge delay: a churn takes nearly all it frees back well within it
 * (so neither pays a purge nor refaults), a program that stopped using
 * memory loses it a little after. A pass that leaves the memory over the
 * budget sets when the next may look again (*at: when the next unit ages,
 * and no sooner than a quarter of the delay), so that a churn over the
 * budget does not scan its units at every free. Past twice the budget,
 * the units of the SuperSlab whose units came back the longest ago go
 * first, however young. */
typedef struct { /* a walk through the SuperSlabs h owns, or (h NULL) the shared ones */
  hak_heap_t *h;
  uint32_t i;
  hak_superslab_t *ss;
} purge_walk_t;

static hak_superslab_t *walk_next(purge_walk_t *w) {
  if (w->h) w->ss = w->i < w->h->pool_n ? w->h->pool_ss[w->i] : NULL;
  else w->ss = w->i ? w->ss->next : avail_head;
  w->i++;
  return w->ss;
}

/* Dirty units, oldest SuperSlab first: all, or down to 3/4 of the budget. */
static size_t purge_oldest(hak_heap_t *h, bool all) {
  size_t purged = 0;
  while (all || hak_mem_above_target()) {
    hak_superslab_t *old = NULL;
    for (purge_walk_t w = {h, 0, NULL}; walk_next(&w);)
      if (w.ss->dirty_units && (!old || w.ss->freed_at < old->freed_at)) old = w.ss;
    if (!old) break;
    purged += purge_units(old, old->dirty_units, all);
  }
  return purged;
}

/* One pass over h's SuperSlabs, or the shared ones, `now` (TSC); `far`:
 * past twice the budget. */
static void purge_over(hak_heap_t *h, bool far, uint64_t now, uint64_t *at) {
  if (far) {
    purge_oldest(h, false);
    return;
  }
  uint64_t delay = (uint64_t)hak_opt(HAK_OPT_PURGE_DELAY_MS) * _hak_os_ticks_per_ms();
  uint32_t t = (uint32_t)(now >> HAK_AGE_SHIFT), age = (uint32_t)(delay >> HAK_AGE_SHIFT), soonest = age;
  for (purge_walk_t w = {h, 0, NULL}; walk_next(&w);) {
    if (!hak_mem_above_target()) return;
    hak_superslab_t *ss = w.ss;
    uint32_t aged = 0;
    for (uint32_t d = ss->dirty_units; d; d &= d - 1) {
      unsigned u = (unsigned)__builtin_ctz(d);
      uint32_t a = t - ss->unit_freed[u];
      if (a >= age) aged |= 1u << u;
      else if (age - a < soonest) soonest = age - a;
    }
    if (aged) purge_units(ss, aged, false);
  }
  if (hak_mem_above_target()) {
    uint64_t wait = (uint64_t)soonest << HAK_AGE_SHIFT;
    __atomic_store_n(at, now + (wait > delay / 4 ? wait : delay / 4), __ATOMIC_RELAXED); /* read unlocked */
  }
}

static uint64_t shared_purge_at; /* _hak_ss_lock; read unlocked to skip taking it */

static size_t unmap_idle(bool now_all);

/* Over budget, the shared SuperSlabs' pass, if due (_hak_ss_lock held). */
static void shared_purge(uint64_t now, bool far) {
  if (far || now >= shared_purge_at) purge_over(NULL, far, now, &shared_purge_at);
}

/* Over budget, h's pass over its own SuperSlabs, then the shared ones',
 * each if due. */
void _hak_pool_purge(hak_heap_t *h) {
  uint64_t now = __builtin_ia32_rdtsc();
  int excess = hak_mem_excess(now);
  if (excess == HAK_MEM_WITHIN) return;
  if (excess == HAK_MEM_FAR_OVER || now >= h->purge_at) {
    purge_over(h, excess == HAK_MEM_FAR_OVER, now, &h->purge_at);
    if ((excess = hak_mem_excess(now)) == HAK_MEM_WITHIN) return;
  }
  if (excess != HAK_MEM_FAR_OVER && now < __atomic_load_n(&shared_purge_at, __ATOMIC_RELAXED)) return;
  _hak_lock(&_hak_ss_lock);
  shared_purge(now, excess == HAK_MEM_FAR_OVER);
  unmap_idle(false);
  _hak_unlock(&_hak_ss_lock);
}

/* ---- owned SuperSlabs --------------------------------------------------
 * The heap that owns a SuperSlab changes its unit maps alone, with no lock
 * (_hak_pool_alloc, give_back's first case): a thread that churns large
 * blocks runs no atomic instruction for them. Any other thread gives an
 * empty run of it back by pushing its descriptor on the SuperSlab's remote
 * list (one compare-and-swap) and leaving a note in the owner's heap; the
 * owner takes the lists whole at its next slow path, before it claims a
 * SuperSlab, and when it disowns one. Disowning closes the list
 * (REMOTE_CLOSED) under _hak_ss_lock: a thread that finds it closed gives
 * under that lock once the SuperSlab is shared. Only the owner purges an
 * owned SuperSlab. */
#define REMOTE_CLOSED ((uintptr_t)1)

static bool remote_push(hak_superslab_t *ss, hak_slab_t *run) {
  uintptr_t head = atomic_load_explicit(&ss->remote, memory_order_relaxed);
  do {
    if (head & REMOTE_CLOSED) return false;
    run->next = (hak_slab_t *)head;
  } while (!atomic_compare_exchange_weak_explicit(&ss->remote, &head, (uintptr_t)run, memory_order_release,
                                                  memory_order_relaxed));
  /* The owner looks at its next slow path (heaps are never freed: a note
   * left just as the SuperSlab changes owner costs a heap one look). */
  hak_heap_t *h = atomic_load_explicit(&ss->owner, memory_order_relaxed);
  if (h) atomic_store_explicit(&h->remote_pending, 1, memory_order_relaxed);
  return true;
}

/* The owner gives back the runs on ss's remote list, and leaves it empty
 * (or closed). Returns whether there were any. */
static bool remote_collect(hak_superslab_t *ss, uintptr_t leave) {
  uintptr_t list = atomic_exchange_explicit(&ss->remote, leave, memory_order_acquire) & ~REMOTE_CLOSED;
  for (hak_slab_t *s = (hak_slab_t *)list, *next; s; s = next) {
    next = s->next;
    units_give(ss, s, 0, __builtin_ia32_rdtsc());
  }
  return list != 0;
}

/* ss stops being h's: the runs given back to it come in, and it becomes
 * shared (its remote list closed, under _hak_ss_lock). The last of h's
 * SuperSlabs takes its place in h's arrays. */
static void pool_disown(hak_heap_t *h, uint32_t i) {
  hak_superslab_t *ss = h->pool_ss[i];
  _hak_lock(&_hak_ss_lock);
  remote_collect(ss, REMOTE_CLOSED);
  atomic_store_explicit(&ss->owner, NULL, memory_order_relaxed);
  atomic_store_explicit(&ss->heap, 0, memory_order_relaxed);
  uint32_t last = --h->pool_n; /* before ss is shared: another heap may claim it at once */
  if (i != last) {
    h->pool_ss[i] = h->pool_ss[last];
    h->pool_longest[i] = h->pool_longest[last];
    h->pool_ss[i]->pool_index = i;
  }
  if (ss->free_units) avail_push(ss);
  if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, +1);
  _hak_unlock(&_hak_ss_lock);
}

/* A wholly free shared SuperSlab (one with dirty units first: its pages
 * are still there), or a fresh one, becomes h's. Only a wholly free one:
 * an owned SuperSlab holds no slab of another heap, so other threads give
 * runs back to it only when they free its owner's large blocks. A heap
 * that owns HAK_POOL_SS already first gives back the one with the shortest
 * free run. */
static bool pool_claim(hak_heap_t *h) {
  if (h->pool_n == HAK_POOL_SS) {
    uint32_t least = 0;
    for (uint32_t i = 1; i < h->pool_n; i++)
      if (h->pool_longest[i] < h->pool_longest[least]) least = i;
    pool_disown(h, least);
  }
  _hak_lock(&_hak_ss_lock);
  hak_superslab_t *ss = NULL;
  for (hak_superslab_t *s = avail_head; s; s = s->next)
    if (s->free_units == UINT32_MAX && (!ss || (s->dirty_units && !ss->dirty_units))) {
      ss = s;
      if (s->dirty_units) break;
    }
  if (!ss) ss = superslab_carve();
  if (ss) {
    avail_remove(ss);
    reservation_note_empty(ss->res, -1); /* owned: in use */
    atomic_store_explicit(&ss->remote, 0, memory_order_relaxed);
    ss->pool_index = h->pool_n;
    h->pool_ss[h->pool_n++] = ss;
    atomic_store_explicit(&ss->owner, h, memory_order_relaxed);
    atomic_store_explicit(&ss->heap, h->id, memory_order_relaxed);
    note_longest(ss);
  }
  _hak_unlock(&_hak_ss_lock);
  return ss != NULL;
}

void _hak_pool_disown_all(hak_heap_t *h) {
  while (h->pool_n) pool_disown(h, h->pool_n - 1);
}

/* malloc_trim for h's SuperSlabs: the runs given back to them come in, the
 * wholly free ones become shared (so that their reservation can be
 * unmapped), and the others purge. */
void _hak_pool_trim(hak_heap_t *h) {
  for (uint32_t i = h->pool_n; i-- > 0;) {
    hak_superslab_t *ss = h->pool_ss[i];
    remote_collect(ss, 0);
    if (ss->free_units == UINT32_MAX) pool_disown(h, i);
    else purge_units(ss, ss->dirty_units, true);
  }
}

/* Where in ss a run of n units fits best: the lowest start whose run fills
 * a hole exactly (score 3), else one that touches a used unit on its left
 * or right (2), else the lowest (1); 0 if none fits. Tight runs keep the
 * large holes whole for large runs. Unit 0 never holds a pool run. */
static unsigned fit_in(const hak_superslab_t *ss, unsigned n, unsigned *unit) {
  uint32_t free = ss->free_units & ~1u;
  uint32_t m = run_starts(free, n, true);
  if (!m) return 0;
  uint32_t left = m & ~(free << 1), right = m & ~(uint32_t)((uint64_t)free >> n);
  if (left & right) {
    *unit = (unsigned)__builtin_ctz(left & right);
    return 3;
  }
  *unit = (unsigned)__builtin_ctz((left | right) ? (left ? left : right) : m);
  return (left | right) ? 2 : 1;
}

/* The runs other threads gave back to h's SuperSlabs (purging if that
 * puts the empty memory over budget); returns whether there were any. */
static bool pool_collect_all(hak_heap_t *h) {
  bool any = false;
  for (uint32_t i = 0; i < h->pool_n; i++) {
    hak_superslab_t *ss = h->pool_ss[i];
    if (atomic_load_explicit(&ss->remote, memory_order_relaxed)) any |= remote_collect(ss, 0);
  }
  if (any) _hak_pool_purge(h);
  return any;
}

void _hak_pool_collect(hak_heap_t *h) {
  atomic_store_explicit(&h->remote_pending, 0, memory_order_relaxed);
  pool_collect_all(h);
}

hak_slab_t *_hak_pool_alloc(hak_heap_t *h, size_t cls, uint32_t owner) {
  unsigned n = (unsigned)_hak_slab_units(cls);
  for (bool collected = false;;) {
    /* Only this heap takes units from its SuperSlabs. Newest first, the
     * first that holds the run touching a used unit wins, else the first
     * that holds it at all (the heap's copy of each one's longest free run
     * skips the others without reading their headers). One wholly free
     * SuperSlab is kept, the others go back to the shared ones. */
    hak_superslab_t *best = NULL;
    unsigned best_score = 0, best_unit = 0;
    bool have_free = false;
    for (uint32_t i = h->pool_n; i-- > 0 && best_score < 2;) {
      if (h->pool_longest[i] < n) continue;
      hak_superslab_t *ss = h->pool_ss[i];
      if (ss->free_units == UINT32_MAX) {
        if (have_free) {
          pool_disown(h, i);
          continue;
        }
        have_free = true;
      }
      unsigned u, score = fit_in(ss, n, &u);
      if (score > best_score) {
        best = ss;
        best_score = score;
        best_unit = u;
      }
    }
    if (best) {
      hak_slab_t *s = units_take(best, best_unit, n, owner);
      _hak_slab_format(s, cls);
      return s;
    }
    /* No fit: the runs other threads gave back first, then a SuperSlab more. */
    bool any = !collected && pool_collect_all(h);
    if (!any && !pool_claim(h)) return NULL;
    collected = true;
  }
}

/* Per-class slab counts, for the peak in the statistics (the current
 * count comes from their walk). A heap gathers its changes by class and
 * adds one in once it reaches HAK_CLASS_BATCH either way (a pool class
 * changes count with every large block): the peak is within that per
 * thread. Threads without a heap add theirs at once. */
static void class_add(size_t c, int64_t d) {
  int64_t n = (int64_t)atomic_fetch_add_explicit(&class_slabs[c], (uint64_t)d, memory_order_relaxed) + d;
  if (n > 0) hak_atomic_max(&class_slabs_peak[c], (size_t)n);
}

static void class_move(hak_heap_t *h, size_t c, int d) {
  if (!h) {
    class_add(c, d);
    return;
  }
  h->cls_delta[c] = (int8_t)(h->cls_delta[c] + d);
  if (h->cls_delta[c] == d * HAK_CLASS_BATCH) {
    class_add(c, h->cls_delta[c]);
    h->cls_delta[c] = 0;
  }
}

void _hak_class_count(size_t from, size_t to) {
  hak_front_t *f = hak_tls_heap;
  hak_heap_t *h = f->key == HAK_KEY_NONE ? NULL : (hak_heap_t *)f;
  if (from) class_move(h, from, -1);
  if (to) class_move(h, to, +1);
}

void _hak_class_flush(hak_heap_t *h) {
  for (size_t c = 1; c < HAK_CLASSES; c++)
    if (h->cls_delta[c]) {
      class_add(c, h->cls_delta[c]);
      h->cls_delta[c] = 0;
    }
}

static void reservation_unmap(hak_reservation_t *r) {
  for (uint32_t i = 0; i < r->carved; i++) {
    hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
    avail_remove(ss);
    hak_committed_add(-(ptrdiff_t)(bits_bytes(ss->dirty_units) + HAK_SS_HEADER));
    hak_mem_move(units_clean(ss, UINT32_MAX), &_hak_mem.idle, NULL);
    _hak_chunk_map[(uintptr_t)ss >> HAK_SS_SHIFT] = HAK_CHUNK_NONE;
    superslab_count--;
  }
  if (r->prev) r->prev->next = r->next;
  else res_list = r->next;
  if (r->next) r->next->prev = r->prev;
  if (r->empty_since) res_pending_unmap--;
  _hak_os_unmap(r->base, HAK_RESERVATION);
  mapped_bytes -= HAK_RESERVATION;
  unmapped_total += HAK_RESERVATION;
  r->next = res_spare;
  res_spare = r;
}

/* Unmap reservations that have been wholly free for the unmap delay (all
 * of them if `now_all`). The newest reservation is kept unless now_all: it
 * is where the next SuperSlab comes from. */
static size_t unmap_idle(bool now_all) {
  if (!res_pending_unmap) return 0;
  uint64_t now = _hak_os_now_ms();
  uint64_t delay = (uint64_t)hak_opt(HAK_OPT_UNMAP_DELAY_MS);
  size_t n = 0;
  hak_reservation_t *next;
  for (hak_reservation_t *r = res_list; r; r = next) {
    next = r->next;
    if (!r->empty_since || (r == res_list && !now_all)) continue;
    if (now_all || now - r->empty_since >= delay) {
      reservation_unmap(r);
      n += HAK_RESERVATION;
    }
  }
  return n;
}

/* The units of the empty slab s from its `keep`-th on go back, empty since
 * `since` (with keep 0, s stops being a slab): by the owner of ss with no lock, by another
 * thread through ss's remote list while it is owned, else under
 * _hak_ss_lock. Past the budget, the giver purges. The owner marks its heap
 * busy meanwhile: a fork child does not trust the maps of a heap that was
 * changing them. */
static void give_back(hak_slab_t *s, unsigned keep, uint64_t since) {
  hak_superslab_t *ss = hak_superslab_of((char *)s + 1);
  uint32_t id = atomic_load_explicit(&ss->heap, memory_order_relaxed);
  hak_front_t *f = hak_tls_heap;
  if (id && id << 2 == (f->key & ~3u)) {
    hak_heap_t *h = (hak_heap_t *)f;
    uint32_t was = f->busy;
    f->busy = 1;
    atomic_signal_fence(memory_order_seq_cst);
    units_give(ss, s, keep, since);
    _hak_pool_purge(h);
    atomic_signal_fence(memory_order_seq_cst);
    f->busy = was;
    return;
  }
  /* An owned SuperSlab holds only its owner's runs (pool_claim), which are
   * never spares: no one else shrinks one. */
  HAK_DEBUG_ASSERT(!id || !keep);
  if (id && remote_push(ss, s)) return;
  _hak_lock(&_hak_ss_lock);
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed)) { /* owned since */
    bool pushed = remote_push(ss, s);
    HAK_ASSERT(pushed); /* closed only while being disowned, under this lock */
  } else {
    if (!ss->free_units) avail_push(ss);
    units_give(ss, s, keep, since);
    if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, +1);
  }
  uint64_t now = __builtin_ia32_rdtsc();
  int excess = hak_mem_excess(now);
  if (excess != HAK_MEM_WITHIN) shared_purge(now, excess == HAK_MEM_FAR_OVER);
  unmap_idle(false);
  _hak_unlock(&_hak_ss_lock);
}

void _hak_slab_release_since(hak_slab_t *s, uint64_t since) {
  hak_stat_count(HAK_STAT_slabs_released);
  _hak_class_count(s->cls, 0);
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  give_back(s, 0, since);
}

void _hak_slab_release(hak_slab_t *s) { _hak_slab_release_since(s, __builtin_ia32_rdtsc()); }

/* Gives the units of an empty slab beyond its first n back (dirty). */
void _hak_slab_shrink(hak_slab_t *s, unsigned n) { give_back(s, n, __builtin_ia32_rdtsc()); }

size_t _hak_purge_all(void) {
  _hak_lock(&_hak_ss_lock);
  size_t n = purge_oldest(NULL, true);
  n += unmap_idle(true);
  _hak_unlock(&_hak_ss_lock);
  return n;
}

void _hak_superslab_check(hak_superslab_t *ss) {
  uint32_t covered = 0;
  for (unsigned u = 0; u < HAK_UNITS;) {
    hak_slab_t *s = &ss->slab[u];
    if (ss->free_units & (1u << u)) {
      HAK_ASSERT(ss->unit_slab[u] == s && s->units == 0 && s->slot_off == 0);
      u++;
      continue;
    }
    HAK_ASSERT(s->units >= 1 && u + s->units <= HAK_UNITS);
    for (unsigned i = 0; i < s->units; i++)
      HAK_ASSERT(ss->unit_slab[u + i] == s && !(ss->free_units & (1u << (u + i))));
    covered |= unit_bits(u, s->units);
    u += s->units;
  }
  HAK_ASSERT((covered | ss->free_units) == UINT32_MAX && !(covered & ss->free_units));
  HAK_ASSERT((ss->dirty_units & ~ss->free_units) == 0);
  hak_heap_t *owner = atomic_load_explicit(&ss->owner, memory_order_relaxed);
  if (owner)
    HAK_ASSERT(owner->pool_ss[ss->pool_index] == ss &&
               owner->pool_longest[ss->pool_index] == longest_run(ss->free_units));
}

/* The SuperSlab figures (_hak_ss_lock held): committed and its terms
 * from the unit maps (block-space bytes of slabs, in live blocks or not;
 * spare slabs and dirty free units as empty; headers as metadata). */
void _hak_superslab_stats(hak_stats_t *st, uint64_t *cls_slabs, uint64_t *cls_used) {
  st->mapped += mapped_bytes;
  st->committed += atomic_load_explicit(&_hak_committed, memory_order_relaxed);
  st->peak_committed += atomic_load_explicit(&_hak_committed_peak, memory_order_relaxed);
  st->superslabs += superslab_count;
  st->metadata += superslab_count * HAK_SS_HEADER;
  st->purged += purged_total;
  st->unmapped += unmapped_total;
  size_t live = atomic_load_explicit(&_hak_mem.live, memory_order_relaxed);
  st->room = hak_mem_room((ptrdiff_t)live < 0 ? 0 : live, __builtin_ia32_rdtsc());
  for (hak_reservation_t *r = res_list; r; r = r->next) {
    for (uint32_t i = 0; i < r->carved; i++) {
      hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
      st->empty += bits_bytes(ss->dirty_units);
      for (unsigned u = 0; u < HAK_UNITS; u++) {
        hak_slab_t *s = &ss->slab[u];
        if (!s->units) continue;
        st->slabs++;
        if (cls_slabs) cls_slabs[2 * s->cls]++;
        if (__atomic_load_n(&s->where, __ATOMIC_RELAXED) == HAK_IN_SPARE) {
          st->empty += hak_slab_bytes(s);
          continue;
        }
        uint32_t blocks = _hak_slab_live(s, hak_tls_heap);
        size_t bytes = (size_t)blocks * s->block_size;
        st->in_use += bytes;
        st->slab_free += hak_slab_bytes(s) - bytes;
        if (cls_used) cls_used[s->cls] += blocks;
      }
    }
  }
  if (cls_slabs)
    for (size_t c = 0; c < HAK_CLASSES; c++) {
      uint64_t peak = atomic_load_explicit(&class_slabs_peak[c], memory_order_relaxed);
      cls_slabs[2 * c + 1] = peak > cls_slabs[2 * c] ? peak : cls_slabs[2 * c];
    }
}
