/* superslab.c — hakmem's address space for Tiny, Mid and pool blocks:
 * reservations (64 MiB), the SuperSlabs carved from them, the chunk map that
 * marks them, runs of 64 KiB units handed out as slabs, and giving memory
 * back (purging empty units, unmapping wholly free reservations).
 *
 * A SuperSlab is shared (Tiny and Mid slabs of any heap come from the
 * shared ones with a free run, under _hak_ss_lock) or owned by one heap,
 * which takes its pool runs from it alone, under the SuperSlab's own lock:
 * a thread that churns through large blocks then neither waits for others
 * nor scatters its runs among theirs, and the runs it frees merge again in
 * its SuperSlabs' unit maps. Any thread may give units back to an owned
 * SuperSlab (its lock), and only the owner takes them. Owning changes under
 * both locks; the global one is never taken while holding a SuperSlab's. */
#include <string.h>

#include "internal.h"

/* One byte per 2 MiB chunk of the 47-bit address space: 64 MiB of .bss,
 * zero until touched, so it needs no initialisation and is valid before any
 * constructor runs. Only chunks that start a SuperSlab or a Large mapping
 * are marked. */
uint8_t _hak_chunk_map[HAK_CHUNKS] __attribute__((aligned(4096)));

hak_lock_t _hak_ss_lock = HAK_LOCK_INIT;
_Atomic size_t _hak_mem_live, _hak_mem_idle;

void _hak_mem_flush(hak_heap_t *h) {
  atomic_fetch_add_explicit(&_hak_mem_live, (size_t)h->mem_delta[0], memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_mem_idle, (size_t)h->mem_delta[1], memory_order_relaxed);
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
static hak_superslab_t *owned_head;    /* SuperSlabs owned by a heap */
/* Committed: units in slabs or free but not purged, and the headers. It
 * changes only when clean units are taken and when dirty ones are purged,
 * so the hot paths (runs reusing dirty units) touch no shared counter. */
static _Atomic size_t committed, peak_committed;
static size_t mapped_bytes;
static uint64_t superslab_count;
static uint64_t purged_total, unmapped_total;
static uint32_t res_pending_unmap;     /* reservations with empty_since set */
static _Atomic uint64_t class_slabs[HAK_CLASSES], class_slabs_peak[HAK_CLASSES]; /* statistics */

static uint32_t unit_bits(unsigned u, unsigned n) {
  return (uint32_t)((((uint64_t)1 << n) - 1) << u);
}

/* The longest run of free units past unit 0 (no pool run starts there). */
static unsigned longest_run(uint32_t free_units) {
  unsigned n = 0;
  for (uint32_t m = free_units & ~1u; m; m &= m >> 1) n++;
  return n;
}

/* Sets ss->longest (lock held); only owned SuperSlabs keep it up to date,
 * for their owner's search. */
static void note_longest(hak_superslab_t *ss) {
  atomic_store_explicit(&ss->longest, longest_run(ss->free_units), memory_order_relaxed);
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

static void committed_add(size_t bytes) {
  size_t now = atomic_fetch_add_explicit(&committed, bytes, memory_order_relaxed) + bytes;
  if (now > atomic_load_explicit(&peak_committed, memory_order_relaxed))
    atomic_store_explicit(&peak_committed, now, memory_order_relaxed);
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
  committed_add(HAK_SS_HEADER);
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
 * returns the bytes they counted as empty resident memory. */
static size_t units_clean(hak_superslab_t *ss, uint32_t bits) {
  size_t counted = 0;
  for (uint32_t m = ss->dirty_units & bits; m; m &= m - 1) {
    unsigned u = (unsigned)__builtin_ctz(m);
    counted += ss->unit_idle[u];
    ss->unit_idle[u] = 0;
  }
  ss->dirty_units &= ~bits;
  return counted;
}

/* Units u .. u+n-1 of ss, all free, become one slab held by `owner`. The
 * caller holds the lock that guards ss. */
static hak_slab_t *units_take(hak_superslab_t *ss, unsigned u, unsigned n, uint32_t owner) {
  uint32_t bits = unit_bits(u, n);
  HAK_DEBUG_ASSERT((ss->free_units & bits) == bits);
  if (bits & ~ss->dirty_units) committed_add(bits_bytes(bits & ~ss->dirty_units));
  hak_mem_move(units_clean(ss, bits), &_hak_mem_idle, NULL);
  hak_mem_move(bits_bytes(bits), NULL, &_hak_mem_live);
  ss->free_units &= ~bits;
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed)) note_longest(ss);
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

static void owned_push(hak_superslab_t *ss) {
  ss->oprev = NULL;
  ss->onext = owned_head;
  if (owned_head) owned_head->oprev = ss;
  owned_head = ss;
}

static void owned_remove(hak_superslab_t *ss) {
  if (ss->oprev) ss->oprev->onext = ss->onext;
  else owned_head = ss->onext;
  if (ss->onext) ss->onext->oprev = ss->oprev;
  ss->onext = ss->oprev = NULL;
}

/* A shared SuperSlab with a free run of n units (the one find_run picks),
 * or a fresh one, becomes heap `id`'s, at the head of *mine. */
static bool pool_claim(hak_superslab_t **mine, uint32_t id, unsigned n) {
  _hak_lock(&_hak_ss_lock);
  int u;
  hak_superslab_t *ss = find_run(n, true, &u);
  if (!ss) ss = superslab_carve();
  if (ss) {
    avail_remove(ss);
    if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, -1); /* owned: in use */
    atomic_store_explicit(&ss->heap, id, memory_order_relaxed);
    note_longest(ss); /* kept only while owned */
    owned_push(ss);
  }
  _hak_unlock(&_hak_ss_lock);
  if (!ss) return false;
  ss->prev = NULL;
  ss->next = *mine;
  if (*mine) (*mine)->prev = ss;
  *mine = ss;
  return true;
}

void _hak_pool_disown(hak_superslab_t **mine, hak_superslab_t *ss) {
  if (ss->prev) ss->prev->next = ss->next;
  else *mine = ss->next;
  if (ss->next) ss->next->prev = ss->prev;
  ss->next = ss->prev = NULL;
  _hak_lock(&_hak_ss_lock);
  _hak_lock(&ss->lock);
  atomic_store_explicit(&ss->heap, 0, memory_order_relaxed);
  _hak_unlock(&ss->lock);
  owned_remove(ss);
  if (ss->free_units) avail_push(ss);
  if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, +1);
  _hak_unlock(&_hak_ss_lock);
}

void _hak_pool_disown_all(hak_superslab_t **mine) {
  while (*mine) _hak_pool_disown(mine, *mine);
}

void _hak_pool_disown_free(hak_superslab_t **mine) {
  for (hak_superslab_t *ss = *mine, *next; ss; ss = next) {
    next = ss->next;
    if (ss->free_units == UINT32_MAX) _hak_pool_disown(mine, ss);
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

hak_slab_t *_hak_pool_alloc(hak_superslab_t **mine, uint32_t id, size_t cls, uint32_t owner) {
  unsigned n = (unsigned)_hak_slab_units(cls);
  for (;;) {
    /* Only this heap takes units from its SuperSlabs: a fit seen here stays
     * free until it takes it. The first that holds the run touching a used
     * unit wins, else the first that holds it at all: reading every
     * SuperSlab's header for the best fit cost more than the holes it
     * saved. One wholly free SuperSlab is kept, the others go back to the
     * shared ones. */
    hak_superslab_t *best = NULL;
    unsigned best_score = 0, best_unit = 0;
    bool have_free = false;
    for (hak_superslab_t *ss = *mine, *next; ss && best_score < 2; ss = next) {
      next = ss->next;
      if (ss->free_units == UINT32_MAX) {
        if (have_free) {
          _hak_pool_disown(mine, ss);
          continue;
        }
        have_free = true;
      }
      if (atomic_load_explicit(&ss->longest, memory_order_relaxed) < n) continue;
      unsigned u, score = fit_in(ss, n, &u);
      if (score > best_score) {
        best = ss;
        best_score = score;
        best_unit = u;
      }
    }
    if (best) {
      _hak_lock(&best->lock);
      hak_slab_t *s = units_take(best, best_unit, n, owner);
      _hak_unlock(&best->lock);
      _hak_slab_format(s, cls);
      return s;
    }
    if (!pool_claim(mine, id, n)) return NULL;
  }
}

/* Per-class slab counts, kept as a slab changes class. */
void _hak_class_count(size_t from, size_t to) {
  if (from) atomic_fetch_sub_explicit(&class_slabs[from], 1, memory_order_relaxed);
  if (to) {
    uint64_t n = atomic_fetch_add_explicit(&class_slabs[to], 1, memory_order_relaxed) + 1;
    if (n > atomic_load_explicit(&class_slabs_peak[to], memory_order_relaxed))
      atomic_store_explicit(&class_slabs_peak[to], n, memory_order_relaxed);
  }
}

/* Purges ss's dirty units, one madvise per run of contiguous ones: all of
 * them, or until the empty memory is down to half the budget. */
static size_t purge_superslab(hak_superslab_t *ss, bool all) {
  size_t purged = 0;
  uint32_t d = ss->dirty_units;
  while (d && (all || hak_mem_above_half())) {
    unsigned u = (unsigned)__builtin_ctz(d);
    unsigned n = (unsigned)__builtin_ctz(~(d >> u)); /* run length */
    if (u + n > HAK_UNITS) n = HAK_UNITS - u;
    uint32_t bits = unit_bits(u, n);
    size_t bytes = bits_bytes(bits);
    _hak_os_purge(unit_addr(ss, u), bytes);
    hak_mem_move(units_clean(ss, bits), &_hak_mem_idle, NULL);
    d &= ~bits;
    atomic_fetch_sub_explicit(&committed, bytes, memory_order_relaxed);
    purged += bytes;
  }
  return purged;
}

/* Purges free dirty units (_hak_ss_lock held): all of them, or down to half
 * the budget of empty memory, from the SuperSlab whose units came back the
 * longest ago (least likely to be reused soon) on. */
static size_t purge_dirty(bool all) {
  size_t purged = 0;
  for (;;) {
    if (!all && !hak_mem_above_half()) break;
    hak_superslab_t *old = NULL;
    for (hak_superslab_t *ss = avail_head; ss; ss = ss->next)
      if (ss->dirty_units && (!old || ss->freed_at < old->freed_at)) old = ss;
    for (hak_superslab_t *ss = owned_head; ss; ss = ss->onext)
      if (ss->dirty_units && (!old || ss->freed_at < old->freed_at)) old = ss;
    if (!old) break;
    bool owned = atomic_load_explicit(&old->heap, memory_order_relaxed) != 0;
    if (owned) _hak_lock(&old->lock);
    purged += purge_superslab(old, all);
    if (owned) _hak_unlock(&old->lock);
  }
  purged_total += purged;
  return purged;
}

static void reservation_unmap(hak_reservation_t *r) {
  for (uint32_t i = 0; i < r->carved; i++) {
    hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
    avail_remove(ss);
    atomic_fetch_sub_explicit(&committed, bits_bytes(ss->dirty_units) + HAK_SS_HEADER, memory_order_relaxed);
    hak_mem_move(units_clean(ss, UINT32_MAX), &_hak_mem_idle, NULL);
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

/* What the units of an empty run will count as empty resident memory once
 * given back. A run of HAK_MEASURE_UNITS or more, given back while the
 * empty memory is past half its budget, is measured (mincore, before any
 * lock: the caller still holds it): each unit counts its resident pages,
 * stored in c, and the total is returned. Otherwise the run counts whole
 * and -1 is returned. A large block the program touched only here and
 * there then costs the budget what it really holds, and is not purged (a
 * system call and, later, faults) for nothing. */
typedef struct {
  uint32_t bytes[HAK_UNITS];
} unit_counts_t;

static long run_counts(hak_superslab_t *ss, unsigned u, unsigned n, unit_counts_t *c) {
  enum { PAGES = HAK_UNIT_SIZE / HAK_PAGE };
  uint8_t vec[HAK_UNITS * PAGES];
  size_t run = bits_bytes(unit_bits(u, n));
  if (n < HAK_MEASURE_UNITS || hak_mem_total(&_hak_mem_idle) + run <= hak_mem_budget() / 2 ||
      _hak_os_resident(unit_addr(ss, u), run, vec) != 0)
    return -1;
  size_t total = 0, i = 0;
  for (unsigned k = u; k < u + n; k++) {
    size_t pages = bits_bytes(1u << k) / HAK_PAGE, resident = 0;
    for (; pages >= 8; pages -= 8, i += 8) { /* bit 0 of 8 bytes at a time */
      uint64_t w;
      memcpy(&w, vec + i, 8);
      resident += ((w & 0x0101010101010101ull) * 0x0101010101010101ull) >> 56;
    }
    for (; pages; pages--, i++) resident += vec[i] & 1;
    c->bytes[k] = (uint32_t)(resident * HAK_PAGE);
    total += resident * HAK_PAGE;
  }
  return (long)total;
}

/* The units of the empty slab s from its `keep`-th on go back to ss, free
 * and dirty, counting what run_counts said (`counted` < 0: whole). With
 * keep 0, s stops being a slab. The caller holds the lock that guards ss. */
static void units_give(hak_superslab_t *ss, hak_slab_t *s, unsigned keep, const unit_counts_t *c, long counted) {
  unsigned u = hak_slab_unit(s);
  uint32_t bits = unit_bits(u + keep, s->units - keep);
  for (unsigned i = keep; i < s->units; i++) {
    ss->unit_slab[u + i] = &ss->slab[u + i];
    ss->unit_idle[u + i] = counted < 0 ? (uint32_t)(HAK_UNIT_SIZE - (u + i == 0 ? HAK_SS_HEADER : 0))
                                       : c->bytes[u + i];
  }
  s->units = (uint8_t)keep;
  if (!keep) {
    s->slot_off = 0;
    s->cls = 0;
  }
  ss->free_units |= bits;
  ss->dirty_units |= bits;
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed)) note_longest(ss);
  ss->freed_at = __builtin_ia32_rdtsc();
  hak_mem_move(bits_bytes(bits), &_hak_mem_live, NULL);
  hak_mem_move(counted < 0 ? bits_bytes(bits) : (size_t)counted, NULL, &_hak_mem_idle);
  if (hak_cfg_debug) _hak_superslab_check(ss);
}

/* units_give under the lock that guards ss: its own while a heap owns it,
 * else _hak_ss_lock, with the shared lists kept; then purging if over the
 * budget. Owning changes under both locks, so either one held pins it. */
static void give_back(hak_slab_t *s, unsigned keep) {
  hak_superslab_t *ss = hak_superslab_of((char *)s + 1);
  unit_counts_t c;
  long counted = run_counts(ss, hak_slab_unit(s) + keep, s->units - keep, &c);
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed)) {
    _hak_lock(&ss->lock);
    bool owned = atomic_load_explicit(&ss->heap, memory_order_relaxed) != 0;
    if (owned) units_give(ss, s, keep, &c, counted);
    _hak_unlock(&ss->lock);
    if (owned) {
      if (hak_mem_over()) _hak_purge(false);
      return;
    }
  }
  _hak_lock(&_hak_ss_lock);
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed)) { /* owned since */
    _hak_lock(&ss->lock);
    units_give(ss, s, keep, &c, counted);
    _hak_unlock(&ss->lock);
  } else {
    if (!ss->free_units) avail_push(ss);
    units_give(ss, s, keep, &c, counted);
    if (ss->free_units == UINT32_MAX) reservation_note_empty(ss->res, +1);
  }
  if (hak_mem_over()) purge_dirty(false);
  unmap_idle(false);
  _hak_unlock(&_hak_ss_lock);
}

void _hak_slab_release(hak_slab_t *s) {
  _hak_class_count(s->cls, 0);
  atomic_store_explicit(&s->owner, 0, memory_order_relaxed);
  give_back(s, 0);
}

/* Gives the units of an empty slab beyond its first n back (dirty). */
void _hak_slab_shrink(hak_slab_t *s, unsigned n) { give_back(s, n); }

size_t _hak_purge(bool all) {
  _hak_lock(&_hak_ss_lock);
  size_t n = purge_dirty(all);
  n += unmap_idle(all);
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
  if (atomic_load_explicit(&ss->heap, memory_order_relaxed))
    HAK_ASSERT(atomic_load_explicit(&ss->longest, memory_order_relaxed) == longest_run(ss->free_units));
  for (unsigned u = 0; u < HAK_UNITS; u++)
    HAK_ASSERT((ss->dirty_units & (1u << u)) ? ss->unit_idle[u] <= bits_bytes(1u << u) : ss->unit_idle[u] == 0);
}

void _hak_superslab_stats(hak_stats_t *st, uint64_t *cls_slabs, uint64_t *cls_used) {
  _hak_lock(&_hak_ss_lock);
  st->mapped += mapped_bytes;
  st->committed += committed;
  st->peak_committed += peak_committed;
  st->superslabs += superslab_count;
  st->purged += purged_total;
  st->unmapped += unmapped_total;
  for (hak_reservation_t *r = res_list; r; r = r->next) {
    for (uint32_t i = 0; i < r->carved; i++) {
      hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
      for (unsigned u = 0; u < HAK_UNITS; u++) {
        hak_slab_t *s = &ss->slab[u];
        if (!s->units) continue;
        st->slabs++;
        uint32_t live = _hak_slab_live(s, hak_tls_heap);
        st->in_use += (size_t)live * s->block_size;
        if (cls_used) cls_used[s->cls] += live;
      }
    }
  }
  if (cls_slabs)
    for (size_t c = 0; c < HAK_CLASSES; c++) {
      cls_slabs[2 * c] = atomic_load_explicit(&class_slabs[c], memory_order_relaxed);
      cls_slabs[2 * c + 1] = atomic_load_explicit(&class_slabs_peak[c], memory_order_relaxed);
    }
  _hak_unlock(&_hak_ss_lock);
}

/* Fork: the prepare handler takes every owned SuperSlab's lock after
 * _hak_ss_lock (which keeps the owned list still); the parent lets them go,
 * the child finds them free. */
void _hak_superslab_fork(int phase) {
  for (hak_superslab_t *ss = owned_head; ss; ss = ss->onext) {
    if (phase == 0) _hak_lock(&ss->lock);
    else if (phase == 1) _hak_unlock(&ss->lock);
    else atomic_store(&ss->lock.state, 0);
  }
}
