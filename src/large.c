/* large.c — blocks above the pool (and over-aligned ones): each in its own
 * mapping, 2 MiB aligned, which starts with the header. The block starts
 * `offset` bytes in (a cache line, or the alignment up to 2 MiB), so
 * (p - 1) rounded down to 2 MiB is the header, whose chunk the chunk map
 * marks HAK_CHUNK_LARGE. BigCache keeps freed mappings for the next request that
 * fits, within a byte budget and for a limited time (both options). Its
 * resident bytes count in the budget of empty memory (internal.h): past it,
 * the pages of entries cached for the purge delay are purged, oldest first
 * (the mapping stays).
 *
 * The secure build gives each block pages of its own after the header's,
 * and a guard page (no access) after them; a freed block's pages are
 * replaced by fresh ones with no access while the mapping waits in a
 * quarantine of the last LARGE_QUARANTINE frees: it serves a block of the
 * same size again once half of them came after it, and is unmapped when
 * it is the oldest. BigCache and mremap are not used. */
#include <string.h>

#include "internal.h"

#define LARGE_MAGIC 0x6c6172676568616bull /* live block */
#define CACHE_FIT_SLACK 8                 /* a cached mapping serves requests that use 7/8 of it as it is */
#define SHRINK_MIN HAK_SS_SIZE            /* realloc gives back a tail of at least this */
#define LARGE_GUARD (HAK_SECURE ? HAK_PAGE : 0)
#define LARGE_QUARANTINE 64

typedef struct hak_large {
  uint64_t magic;      /* LARGE_MAGIC while live, 0 once freed */
  size_t map_size;     /* bytes mapped from the header on */
  size_t offset;       /* block start - header */
  uint32_t site;       /* HAKMEM_SITES: its allocation site (sites.c), 0: none */
  hak_sample_t sample; /* HAKMEM_PROFILE's record of it */
} hak_large_t;

typedef struct cache_entry {
  char *base;
  size_t size;
  hak_tick_t freed_at;
  bool resident; /* pages not purged since the block was freed */
  bool zeroed;   /* purged with MADV_DONTNEED: reads zero */
} cache_entry_t;

/* A request no cached mapping fits gets a fresh mapping whose whole 2 MiB
 * chunks are the resident chunks of cached ones, moved there with mremap
 * (cache_donate, cache_splice), and then those of wholly free SuperSlabs
 * (_hak_ss_donors). If the cache has a chunk for each and the
 * block uses 7/8 of its last chunk, it takes that chunk whole (its size
 * rounded up to 2 MiB: the pages are resident either way); else it faults
 * in what it lacks.
 * Only whole chunks move: between 2 MiB aligned places the kernel moves
 * the page-table entry of each chunk, whatever its pages; a run of pages
 * moved to another offset within 2 MiB is moved page by page, which costs
 * about what faulting it in does (under some hypervisors, 30 times more).
 * The chunks of one donor are a run of its own. */
#define DONORS_MAX 16
typedef struct donor {
  char *from;
  size_t size; /* whole chunks */
} donor_t;

hak_lock_t _hak_large_lock = HAK_LOCK_INIT;
static cache_entry_t *cache; /* BigCache, oldest first; the table grows as needed */
static size_t cache_len, cache_cap, cache_bytes, cache_resident;
static uint64_t cache_hits, cache_misses, purged_bytes, purged_reused;
static size_t live_bytes, live_count, mapped_bytes;
static size_t live_meta;        /* of live_bytes, the bytes before each block: header, alignment */
static size_t committed_synced; /* live_bytes + cache_resident as last added to committed memory */
static struct {
  char *base;
  size_t size;
} quarantine[LARGE_QUARANTINE]; /* secure build: freed mappings, a ring */
static size_t quarantine_next;

/* HAKMEM_ACE: BigCache's budget learns from what the program does. A
 * mapping unmapped to keep the cache within its budget is remembered (a
 * ghost, the last GHOSTS of them); a request that then finds no cached
 * mapping but one of those ghosts that would have served it, unmapped
 * less than the decay time ago, proves that the budget was too small: the
 * learned budget grows by the ghost's size. A mapping unmapped because no
 * request took it for the decay time proves that it was too large: it
 * shrinks by that mapping's size. It stays within the live Large bytes
 * (the cache never holds more than the program uses), counting the block
 * being made. */
#define GHOSTS 16
static struct {
  size_t size;
  hak_tick_t at;
} ghost[GHOSTS];
static unsigned ghost_next;
static size_t learned;
static uint64_t learned_grew, learned_shrank;

static size_t page_round(size_t n) { return (n + HAK_PAGE - 1) & ~(HAK_PAGE - 1); }

static hak_large_t *header_of(const void *p) { return (hak_large_t *)hak_superslab_of(p); }

/* The block starts in (0, 2 MiB] after the header so that (p - 1) finds
 * it: a cache line in, in the header's page (a block costs no page more
 * than its bytes need), or at its alignment. */
#define BLOCK_OFFSET 64
_Static_assert(sizeof(hak_large_t) <= BLOCK_OFFSET, "the header fits before the block");
static size_t offset_for(size_t align) {
  if (hak_cfg_secure && align < HAK_PAGE) return HAK_PAGE;
  if (align <= BLOCK_OFFSET) return BLOCK_OFFSET;
  return align < HAK_SS_SIZE ? align : HAK_SS_SIZE;
}

/* When the oldest cached mapping reaches the decay time (never, with none
 * cached): until then _hak_large_age has nothing to do. */
static _Atomic hak_tick_t cache_due = UINT64_MAX;

/* Every section under the Large lock ends here: what it changed in the
 * live mappings and the resident cache goes into the committed total, and
 * when the cache is due to decay. */
static void large_unlock(void) {
  size_t now = live_bytes + cache_resident;
  _hak_committed_add((ptrdiff_t)(now - committed_synced));
  committed_synced = now;
  hak_tick_t decay = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_BIGCACHE_DECAY_MS));
  atomic_store_explicit(&cache_due, cache_len ? cache[0].freed_at + decay : UINT64_MAX, memory_order_relaxed);
  _hak_unlock(&_hak_large_lock);
}

static void cache_remove_at(size_t i) {
  cache_bytes -= cache[i].size;
  if (cache[i].resident) {
    cache_resident -= cache[i].size;
    hak_mem_move(cache[i].size, HAK_MEM_EMPTY, HAK_MEM_NONE);
  }
  memmove(&cache[i], &cache[i + 1], (cache_len - i - 1) * sizeof *cache);
  cache_len--;
}

static void unmap_region(char *base, size_t size) {
  hak_chunk_mark(base, HAK_CHUNK_NONE);
  _hak_os_unmap(base, size);
  mapped_bytes -= size;
}

/* BigCache's byte budget: HAKMEM_BIGCACHE_MB (as the policy in force
 * scales it, elo.c), or as much of the live Large bytes as the budget of
 * empty memory allows (HAKMEM_RETAIN_SHARE), whichever is more: a program
 * that keeps many large buffers and replaces them finds the pages it freed
 * again. Large lock held. */
static size_t cache_budget(void) {
  size_t min = ((size_t)hak_opt(HAK_OPT_BIGCACHE_MB) << 20) * hak_policy()->bigcache_x2 / 2;
  long share = hak_opt(HAK_OPT_RETAIN_SHARE);
  size_t dyn = share && min ? live_bytes / (size_t)share : 0, most = dyn > min ? dyn : min;
  return learned > most ? learned : most; /* learned: 0 with HAKMEM_BIGCACHE_MB=0 (ghost_note) */
}

/* A mapping of `size` bytes leaves or bypasses the cache for its budget
 * (HAKMEM_ACE). Large lock held. */
static void ghost_note(size_t size, hak_tick_t now) {
  if (!hak_opt(HAK_OPT_ACE) || !hak_opt(HAK_OPT_BIGCACHE_MB)) return; /* learning, or caching, is off */
  ghost[ghost_next % GHOSTS].size = size;
  ghost[ghost_next++ % GHOSTS].at = now;
}

/* A request of `need` bytes the cache could not serve: whether a mapping
 * unmapped for the budget would have (HAKMEM_ACE). Large lock held. */
static void cache_learn_miss(size_t need, hak_tick_t now) {
  hak_tick_t decay = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_BIGCACHE_DECAY_MS));
  for (unsigned i = 0; i < GHOSTS; i++) {
    if (ghost[i].size < need || now - ghost[i].at >= decay) continue;
    learned += ghost[i].size;
    if (learned > live_bytes + need) learned = live_bytes + need; /* with the block it is about to map */
    learned_grew++;
    ghost[i].size = 0;
    return;
  }
}

/* Unmaps the oldest entries while over the budget, older than the decay, or
 * all of them; then, while the empty memory is over its budget, purges the
 * pages of those cached for the purge delay (past twice the budget, of any),
 * oldest first. Large lock held. */
static size_t cache_decay(hak_tick_t now, bool all) {
  if (hak_cfg_secure) return 0; /* it caches nothing */
  size_t budget = cache_budget(), n = 0;
  hak_tick_t decay = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_BIGCACHE_DECAY_MS));
  while (cache_len && (all || cache_bytes > budget || now - cache[0].freed_at >= decay)) {
    size_t size = cache[0].size;
    if (!all && now - cache[0].freed_at >= decay) { /* no request took it for the decay time */
      if (learned) learned_shrank++;
      learned = learned > size ? learned - size : 0;
    } else if (!all) {
      ghost_note(size, now);
    }
    n += size;
    unmap_region(cache[0].base, size);
    cache_remove_at(0);
  }
  bool far = hak_budget_excess(_hak_os_ticks()) == HAK_MEM_FAR_OVER;
  hak_tick_t delay = far ? 0 : hak_purge_delay();
  bool lazy = hak_opt(HAK_OPT_MADV_FREE) != 0;
  for (size_t i = 0; i < cache_len && cache_resident && now - cache[i].freed_at >= delay; i++) {
    if (!cache[i].resident) continue;
    if (!hak_budget_over()) break;
    _hak_os_purge(cache[i].base, cache[i].size, lazy);
    cache[i].resident = false;
    cache[i].zeroed = !lazy; /* MADV_FREE pages may keep their bytes */
    cache_resident -= cache[i].size;
    hak_mem_move(cache[i].size, HAK_MEM_EMPTY, HAK_MEM_NONE);
    purged_bytes += cache[i].size;
  }
  return n;
}

static bool cache_reserve(void) {
  if (cache_len < cache_cap) return true;
  size_t cap = cache_cap ? cache_cap * 2 : 256;
  cache_entry_t *t = _hak_os_map(cap * sizeof *t, HAK_PAGE);
  if (!t) return false;
  if (cache) {
    memcpy(t, cache, cache_len * sizeof *t);
    _hak_os_unmap(cache, cache_cap * sizeof *t);
  }
  cache = t;
  cache_cap = cap;
  return true;
}

/* Puts a mapping in the cache (large lock held); false if it does not
 * fit in the budget or the table cannot grow (the caller unmaps it). */
static bool cache_put(char *base, size_t size, hak_tick_t now, bool resident, bool zeroed) {
  if (size > cache_budget()) {
    ghost_note(size, now);
    return false;
  }
  if (!cache_reserve()) return false;
  cache[cache_len++] = (cache_entry_t){base, size, now, resident, zeroed};
  cache_bytes += size;
  if (resident) {
    cache_resident += size;
    hak_mem_move(size, HAK_MEM_NONE, HAK_MEM_EMPTY);
  }
  return true;
}

/* The part of a mapping from a 2 MiB boundary on, `size` bytes (maybe 0),
 * once the front is taken (cache_cut, cache_donate): cached as a mapping of
 * its own if it can hold a Large block and fits in the budget, else
 * unmapped. Large lock held. */
static void cache_put_tail(char *tail, size_t size, hak_tick_t now, bool resident, bool zeroed) {
  if (size > HAK_POOL_MAX + HAK_PAGE && cache_put(tail, size, now, resident, zeroed)) {
    ((hak_large_t *)tail)->magic = 0; /* its header was inside the block */
    hak_chunk_mark(tail, HAK_CHUNK_LARGE);
  } else if (size) {
    unmap_region(tail, size);
  }
}

/* Where a mapping of `size` bytes cut for a block of `need` is cut: at
 * the next 2 MiB boundary if the part past it can hold a Large block (it
 * stays cached), else at its end (cache_cut). */
static size_t cut_point(size_t need, size_t size) {
  size_t cut = (need + HAK_SS_SIZE - 1) & ~(HAK_SS_SIZE - 1);
  return cut < size && size - cut > HAK_POOL_MAX + HAK_PAGE ? cut : size;
}

/* The bytes a block of `need` takes of a cached mapping of `size` cut for
 * it: up to the cut if it uses 7/8 of them (the chunk it ends in stays
 * whole, cache_donate), else `need`. */
static size_t cut_take(size_t need, size_t size) {
  size_t cut = cut_point(need, size);
  return cut < size && cut - need <= cut / CACHE_FIT_SLACK ? cut : need;
}

/* The bytes of whole chunks a block of `need` bytes takes from the cache
 * (cache_donate): with its last chunk if it uses 7/8 of it (as a cached
 * mapping serves a request as it is, cache_fit), and if the cache has
 * every chunk; else the chunks it fills. */
static size_t chunks_for(size_t need) {
  size_t whole = (need + HAK_SS_SIZE - 1) & ~(HAK_SS_SIZE - 1);
  return whole - need <= whole / CACHE_FIT_SLACK ? whole : need & ~(HAK_SS_SIZE - 1);
}

/* Bytes of resident pages the cached mapping e loses, or bytes the block
 * faults in, if e serves `need` bytes (cache_fit). */
static size_t fit_cost(const cache_entry_t *e, size_t need) {
  if (!e->resident) return need;
  if (e->size < need) return need - e->size;
  return e->size - need <= e->size / CACHE_FIT_SLACK ? 0 : cut_point(need, e->size) - cut_take(need, e->size);
}

/* The cached mapping that serves `need` bytes at the least cost in pages
 * (fit_cost), taken out of the cache into *e. False if the cache is
 * empty, or if none is resident and big enough and whole resident chunks
 * of the cache make the block (cache_donate) with fewer bytes faulted in,
 * or with at most a chunk more: a mapping grown faults its new pages in
 * one by one and ends in a partial chunk, where chunks moved keep the
 * cache in whole chunks (large_churn: 1.3x faster that way). */
static bool cache_take(size_t need, cache_entry_t *e) {
  size_t best = SIZE_MAX, best_cost = SIZE_MAX, chunks = 0;
  for (size_t i = 0; i < cache_len; i++) {
    size_t cost = fit_cost(&cache[i], need);
    if (cost < best_cost) {
      best = i;
      best_cost = cost;
    }
    if (cache[i].resident) chunks += cache[i].size & ~(HAK_SS_SIZE - 1);
  }
  if (best == SIZE_MAX) return false;
  size_t want = chunks_for(need), donated = chunks < want ? chunks : want;
  size_t lacking = donated >= need ? 0 : need - donated;
  if (chunks && (cache[best].size < need || !cache[best].resident) && lacking < best_cost + HAK_SS_SIZE)
    return false;
  *e = cache[best];
  if (e->resident) hak_mem_reused(e->size < need ? e->size : need);
  else purged_reused += e->size < need ? e->size : need; /* faults in again as used */
  cache_remove_at(best);
  return true;
}

/* The mapping at base, `old` bytes, made `need` bytes: its tail unmapped,
 * or grown where it is, or its pages moved (mremap, no copy) to the start
 * of a new 2 MiB aligned mapping, which then takes its chunk map mark.
 * Returns where it now is, or NULL (unchanged) if it could not grow. A
 * mapping made of donors' chunks is several kernel areas (VMAs), which
 * mremap does not grow: it grows by a mapping placed right after it, or
 * moves at its own size (kernels from 6.17 move several areas at once). */
static char *mapping_resize(char *base, size_t old, size_t need) {
  if (need <= old) {
    if (need < old) _hak_os_unmap(base + need, old - need);
    return base;
  }
  if (_hak_os_remap(base, old, need, NULL) || _hak_os_map_at(base + old, need - old)) return base;
  char *target = _hak_os_map(need, HAK_SS_SIZE);
  if (!target) return NULL;
  /* The old range's mark goes before mremap gives the range up: from then
   * on another thread may map it and mark it for a block of its own. */
  hak_chunk_mark(base, HAK_CHUNK_NONE);
  if (!_hak_os_remap(base, old, old, target)) {
    hak_chunk_mark(base, HAK_CHUNK_LARGE);
    _hak_os_unmap(target, need);
    return NULL;
  }
  /* The chunk map follows the header before the block is handed out. */
  hak_chunk_mark(target, HAK_CHUNK_LARGE);
  return target;
}

/* The block takes the first `need` bytes of the cached mapping e; the rest
 * is cut off. From the next 2 MiB boundary on, if that can hold a Large
 * block, it goes back to the cache as a mapping of its own, its pages
 * kept; what lies before it is unmapped. */
static void cache_cut(const cache_entry_t *e, size_t need, hak_tick_t now) {
  size_t cut = cut_point(need, e->size);
  if (cut > need) _hak_os_unmap(e->base + need, cut - need);
  _hak_lock(&_hak_large_lock);
  mapped_bytes -= cut - need;
  cache_put_tail(e->base + cut, e->size - cut, now, e->resident, e->zeroed);
  cache_decay(now, false); /* within the byte budget again */
  large_unlock();
}

/* Whole resident chunks for `want` bytes (a multiple of 2 MiB) of a block,
 * taken out of the cache into d, from the front of the mappings that have
 * the most, as runs: how many. What a mapping keeps past its last chunk
 * taken stays cached as a mapping of its own if it can hold a Large block,
 * else it is unmapped. Large lock held. */
static unsigned cache_donate(size_t want, donor_t *d, hak_tick_t now, size_t *donated) {
  unsigned n = 0;
  while (want && n < DONORS_MAX) {
    size_t most = SIZE_MAX;
    for (size_t i = 0; i < cache_len; i++)
      if (cache[i].resident && cache[i].size >= HAK_SS_SIZE &&
          (most == SIZE_MAX || cache[i].size > cache[most].size))
        most = i;
    if (most == SIZE_MAX) break;
    cache_entry_t e = cache[most];
    size_t whole = e.size & ~(HAK_SS_SIZE - 1), take = whole < want ? whole : want, rest = e.size - take;
    cache_remove_at(most);
    hak_mem_reused(take);
    hak_chunk_mark(e.base, HAK_CHUNK_NONE); /* before mremap gives the range up */
    mapped_bytes -= take;                   /* counted in the block's mapping */
    d[n++] = (donor_t){e.base, take};
    want -= take;
    *donated += take;
    cache_put_tail(e.base + take, rest, now, true, false);
  }
  return n;
}

/* The donors' chunks move to dest, one run after the other, over the
 * fresh pages there; with dest NULL (no block could be mapped) they are
 * unmapped. A run mremap cannot move (several kernel areas, VMAs, on a
 * kernel before 6.17) is unmapped too: its part of dest faults in. */
static void cache_splice(char *dest, const donor_t *d, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    if (!dest || !_hak_os_remap(d[i].from, d[i].size, d[i].size, dest)) _hak_os_unmap(d[i].from, d[i].size);
    if (dest) dest += d[i].size;
  }
}

/* Makes the cached mapping e serve `need` bytes: as it is if they use 7/8
 * of it, else cut to size or grown. Returns its base (*got: its size now),
 * or NULL if it could not grow (it is unmapped then). */
static char *cache_fit(const cache_entry_t *e, size_t need, hak_tick_t now, size_t *got) {
  *got = e->size;
  if (e->size >= need && e->size - need <= e->size / CACHE_FIT_SLACK) return e->base;
  if (e->size > need) {
    *got = cut_take(need, e->size);
    cache_cut(e, *got, now);
    return e->base;
  }
  *got = need;
  char *base = mapping_resize(e->base, e->size, need);
  _hak_lock(&_hak_large_lock);
  if (base) mapped_bytes += need - e->size;
  else unmap_region(e->base, e->size);
  large_unlock();
  return base;
}

/* A fresh mapping of `need` bytes whose header is 2 MiB aligned and whose
 * block (at `offset`) is `align` aligned. */
static char *map_fresh(size_t need, size_t align) {
  if (align <= HAK_SS_SIZE) return _hak_os_map(need, HAK_SS_SIZE);
  /* The header goes 2 MiB before an aligned address. */
  char *r = _hak_os_map(need + align, HAK_SS_SIZE);
  if (!r) return NULL;
  char *base = (char *)((((uintptr_t)r + HAK_SS_SIZE + align - 1) & ~(uintptr_t)(align - 1)) - HAK_SS_SIZE);
  if (base > r) _hak_os_unmap(r, (size_t)(base - r));
  char *end = base + need, *r_end = r + need + align;
  if (r_end > end) _hak_os_unmap(end, (size_t)(r_end - end));
  return base;
}

/* Huge pages for a fresh or grown Large mapping (HAKMEM_THP): by default
 * requested for the blocks of malloc, whose pages the program writes
 * before it reads them (a block of n MiB then faults n/2 times, not
 * 256 n), and left to the system for calloc's, which a program may use
 * sparsely (a huge page would make 2 MiB resident for one byte written).
 * Only the whole 2 MiB chunks of a mapping can be huge pages: a mapping
 * costs no page more than its bytes. A mapping keeps its choice when
 * cached and reused as it is or cut, except that calloc forbids huge
 * pages in purged pages it hands out unwritten (a request cannot be
 * taken back otherwise). */
static void large_thp(char *base, size_t size, bool zero) {
  long thp = hak_opt(HAK_OPT_THP);
  if ((thp == 0 && zero) || size < HAK_SS_SIZE) return;
  _hak_os_hugepage(base, size, thp == 2 ? 2 : 1);
}

/* The secure build hands a quarantined mapping out again once at least
 * half the quarantine's worth of Large frees came after its own: the
 * oldest of exactly `need` bytes whose block starts `offset` bytes in,
 * aligned to `align` (NULL if none). Its pages have no access and read
 * zero once they get it back; its header and guard page are in place.
 * Large lock held. */
static char *quarantine_reuse(size_t need, size_t offset, size_t align) {
  for (size_t k = 0; k < LARGE_QUARANTINE / 2; k++) {
    size_t i = (quarantine_next + k) % LARGE_QUARANTINE;
    char *base = quarantine[i].base;
    /* From 2 MiB up every alignment has offset 2 MiB: the block must be as aligned as asked. */
    if (base && quarantine[i].size == need && ((hak_large_t *)base)->offset == offset &&
        ((uintptr_t)(base + offset) & (align - 1)) == 0) {
      quarantine[i].base = NULL;
      return base;
    }
  }
  return NULL;
}

/* A freed mapping (secure build) waits in the quarantine; the oldest one
 * there makes room, and is returned (NULL if none) for the caller to unmap
 * once it dropped the lock. Large lock held. */
static char *quarantine_put(char *base, size_t size, size_t *old_size) {
  size_t i = quarantine_next++ % LARGE_QUARANTINE;
  char *old = quarantine[i].base;
  *old_size = quarantine[i].size;
  if (old) {
    hak_chunk_mark(old, HAK_CHUNK_NONE);
    mapped_bytes -= *old_size;
  }
  quarantine[i].base = base;
  quarantine[i].size = size;
  return old;
}

void *_hak_large_alloc(size_t size, size_t align, bool zero, uint32_t site) {
  if (size > PTRDIFF_MAX) return NULL;
  size_t offset = offset_for(align), need = page_round(offset + size) + LARGE_GUARD;
  hak_tick_t now = _hak_os_ticks();
  cache_entry_t e = {0};
  donor_t d[DONORS_MAX] = {{0}};
  unsigned donors = 0;
  bool cached = !hak_cfg_secure && align <= HAK_SS_SIZE;
  _hak_lock(&_hak_large_lock);
  bool hit = cached && cache_take(need, &e);
  char *base = hak_cfg_secure ? quarantine_reuse(need, offset, align ? align : 1) : NULL;
  size_t want = chunks_for(need), donated = 0;
  if (cached && !hit && want) donors = cache_donate(want, d, now, &donated);
  if (donated > need) need = donated; /* its last chunk whole */
  if (hit || donors) cache_hits++;
  else cache_misses++;
  if (cached && !hit && !donors && hak_opt(HAK_OPT_ACE)) cache_learn_miss(need, now);
  if (hit) hak_mem_reuse_age(e.size, now - e.freed_at);
  cache_decay(now, false);
  large_unlock();
  /* What the cache lacks, wholly free SuperSlabs may give (superslab.c),
   * after its chunks: as many as there are now (fewer, if other threads
   * take some meanwhile: those chunks fault in), the thread's pool's
   * among them. */
  size_t from_cache = donated;
  if (cached && !hit && donated < want) {
    hak_pool_t *pool = hak_tls_pool();
    if (pool) _hak_pool_share_free(pool);
    size_t lack = (want - donated) / HAK_SS_SIZE;
    donated += (size_t)_hak_ss_donors(lack < DONORS_MAX ? (unsigned)lack : DONORS_MAX) * HAK_SS_SIZE;
    if (donated > need) need = donated;
  }
  size_t got = need, fresh = 0;
  bool zeroed = true;
  if (base) { /* the block's part of one mapping with no access: giving it access splits nothing */
    int rc = _hak_os_protect(base + offset, need - offset - LARGE_GUARD, true);
    HAK_ASSERT(rc == 0);
  } else if (hit) {
    base = cache_fit(&e, need, now, &got);
    zeroed = base && e.zeroed;
    if (base && got > e.size) large_thp(base, got, zero); /* grown: as if fresh */
    if (zeroed && zero && hak_opt(HAK_OPT_THP) == 0) _hak_os_hugepage(base, got, 2);
  }
  if (!base) { /* fresh pages are zero (but the donors'): calloc skips the memset */
    hak_pool_t *pool = hak_tls_pool();
    if (pool && hak_ace_yields()) _hak_purge_over_budget(pool); /* what HAKMEM_ACE kept goes first */
    base = map_fresh(need, align);
    cache_splice(base, d, donors);
    if (!base) return NULL;
    unsigned moved = donated > from_cache
                         ? _hak_ss_donate(base + from_cache, (unsigned)((donated - from_cache) / HAK_SS_SIZE))
                         : 0;
    large_thp(base, need, zero);
    got = fresh = need;
    zeroed = !donors && !moved;
    if (hak_cfg_secure) _hak_os_protect(base + need - LARGE_GUARD, LARGE_GUARD, false);
  }
  if (zero && !zeroed) memset(base + offset, 0, got - offset);
  _hak_lock(&_hak_large_lock);
  live_bytes += got;
  live_meta += offset;
  hak_mem_move(got, HAK_MEM_NONE, HAK_MEM_USED);
  live_count++;
  mapped_bytes += fresh;
  large_unlock();
  hak_large_t *h = (hak_large_t *)base;
  h->magic = LARGE_MAGIC;
  h->map_size = got;
  h->offset = offset;
  h->site = site;
  h->sample.born = 0;
  hak_chunk_mark(base, HAK_CHUNK_LARGE);
  return base + offset;
}

hak_misuse_t _hak_large_problem(const void *p) {
  hak_large_t *h = header_of(p);
  const char *block = (const char *)h + h->offset;
  size_t size = h->map_size - h->offset - LARGE_GUARD; /* its usable bytes */
  if ((const char *)p == block) {
    if (h->magic == LARGE_MAGIC) return (hak_misuse_t){.kind = HAK_MISUSE_NONE};
    return (hak_misuse_t){.kind = HAK_MISUSE_DOUBLE_FREE, .block = block, .size = size};
  }
  if (h->magic == LARGE_MAGIC && (const char *)p > block && (const char *)p < block + size)
    return (hak_misuse_t){.kind = HAK_MISUSE_INSIDE, .block = block, .size = size};
  return (hak_misuse_t){.kind = HAK_MISUSE_NO_BLOCK};
}

/* A block of a lasting site (HAKMEM_SITES) is not kept in BigCache: what
 * replaces it, if anything, is not about to be asked for. */
void _hak_large_free(void *p) {
  hak_large_t *h = header_of(p);
  char *base = (char *)h;
  size_t size = h->map_size, offset = h->offset;
  bool keep = true;
  hak_tick_t now = _hak_os_ticks();
  if (h->sample.born) _hak_profile_freed(&h->sample, now);
  if (h->site) {
    _hak_site_freed(h->site, p);
    keep = !_hak_site_lasting(h->site);
  }
  h->magic = 0;
  if (hak_cfg_secure) _hak_os_discard(base + offset, size - offset);
  char *old = NULL;
  size_t old_size = 0;
  _hak_lock(&_hak_large_lock);
  live_bytes -= size;
  live_meta -= offset;
  hak_mem_move(size, HAK_MEM_USED, HAK_MEM_NONE);
  live_count--;
  if (hak_cfg_secure) old = quarantine_put(base, size, &old_size);
  else if (keep && cache_put(base, size, now, true, false)) cache_decay(now, false);
  else unmap_region(base, size);
  large_unlock();
  if (old) _hak_os_unmap(old, old_size);
}

/* Only the header's chunk is marked: the mapping around p starts at the
 * nearest Large mark at or below p's chunk, if no SuperSlab or other
 * region comes first and it reaches p. The scan stops after WHERE_CHUNKS
 * (a 64 GiB block). */
#define WHERE_CHUNKS (1u << 15)
bool _hak_large_where(const void *p, hak_large_where_t *w) {
  uintptr_t a = (uintptr_t)p, c = a >> HAK_SS_SHIFT;
  if (a >> HAK_ADDR_BITS) return false;
  for (unsigned n = 0; n < WHERE_CHUNKS; n++, c--) {
    uint8_t kind = _hak_chunk_map[c];
    if (kind == HAK_CHUNK_LARGE) {
      hak_large_t h;
      const char *base = (const char *)(c << HAK_SS_SHIFT);
      if (_hak_os_peek(base, &h, sizeof h) || h.offset > h.map_size || a >= (uintptr_t)base + h.map_size)
        return false;
      *w = (hak_large_where_t){base + h.offset, h.map_size - h.offset - LARGE_GUARD, h.magic == LARGE_MAGIC};
      return true;
    }
    if (kind != HAK_CHUNK_NONE || c == 0) return false;
  }
  return false;
}

size_t _hak_large_usable(const void *p) {
  hak_large_t *h = header_of(p);
  return h->map_size - h->offset - LARGE_GUARD;
}

/* Resizes in place (mremap without moving, or unmapping the tail), else
 * moves the pages to a new 2 MiB aligned place with mremap; NULL if neither
 * works (the caller then copies). */
void *_hak_large_realloc(void *p, size_t size) {
  hak_large_t *h = header_of(p);
  char *base = (char *)h;
  if (size > PTRDIFF_MAX) return NULL;
  if (h->sample.born) {
    /* The profile takes it as a free and an allocation (api.c); the free
     * first, before another thread can have the old address. */
    _hak_profile_freed(&h->sample, _hak_os_ticks());
    h->sample.born = 0;
  }
  size_t offset = h->offset, old = h->map_size, need = page_round(offset + size);
  if (need <= old && (old - need < SHRINK_MIN || old - need < old / 4)) return p; /* keeps its tail */
  char *moved = mapping_resize(base, old, need);
  if (!moved) return NULL;
  hak_large_t *now = (hak_large_t *)moved; /* h is gone if it moved */
  now->map_size = need;
  if (moved != base && now->site) _hak_site_moved(now->site, p, moved + offset);
  _hak_lock(&_hak_large_lock);
  if (need > old) {
    live_bytes += need - old;
    hak_mem_move(need - old, HAK_MEM_NONE, HAK_MEM_USED);
  } else {
    live_bytes -= old - need;
    hak_mem_move(old - need, HAK_MEM_USED, HAK_MEM_NONE);
  }
  mapped_bytes += need - old;
  large_unlock();
  return moved + offset;
}

hak_sample_t *_hak_large_sample(void *p) { return &header_of(p)->sample; }

void _hak_large_age(hak_tick_t now) {
  if (now < atomic_load_explicit(&cache_due, memory_order_relaxed)) return;
  _hak_lock(&_hak_large_lock);
  cache_decay(now, false);
  large_unlock();
}

size_t _hak_large_trim(void) {
  _hak_lock(&_hak_large_lock);
  size_t n = cache_decay(0, true);
  large_unlock();
  return n;
}

void _hak_large_learned(hak_learned_t *l) {
  l->bigcache_budget = cache_budget();
  l->bigcache_learned = learned;
  l->bigcache_grew = learned_grew;
  l->bigcache_shrank = learned_shrank;
}

/* The Large figures (_hak_large_lock held). */
void _hak_large_figures(hak_stats_t *st) {
  st->mapped += mapped_bytes;
  st->large_committed += live_bytes + cache_resident;
  st->large_in_use += live_bytes;
  st->large_blocks += live_count;
  st->in_use += live_bytes - live_meta;
  st->metadata += live_meta;
  st->empty += cache_resident;
  st->bigcache_bytes += cache_bytes;
  st->bigcache_hits += cache_hits;
  st->bigcache_misses += cache_misses;
  st->purged += purged_bytes;
  st->purged_reused += purged_reused;
}
