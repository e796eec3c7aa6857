/* sites.c — HAKMEM_SITES, the site rules: how long each allocation site's
 * blocks live, learned online, for the blocks that take a slow path anyway
 * (pool classes, 32 KiB - 1 MiB, and Large blocks, whose call site is the
 * caller's return address, passed down from the API). heap.c places the
 * pool blocks of a site that has proved lasting apart, each in a run of
 * its own, so that the runs of the short-lived blocks allocated around
 * them drain and go back whole (and a lasting block's freed run goes back
 * first in line for the purge); large.c keeps no Large block of a lasting
 * site in BigCache (its replacement is not about to be asked for).
 * (Runs of lasting blocks in SuperSlabs of their own as well kept 10 %
 * less after fragment/buffers' drop than runs of their own alone, for 9 %
 * more at the peak and 14 % more time: the memory the short-lived runs
 * gave back was not theirs to reuse.)
 *
 * Lifetimes are measured on an allocation clock: the bytes of pool and
 * Large blocks allocated so far (each heap adds its own in batches of
 * CLOCK_BATCH). A block is lasting if it lived while the clock advanced by
 * LASTING_FACTOR times the memory in use (the budget's used total, at least
 * LASTING_MIN): while the program replaced all its memory that many times.
 *
 * Each site has at most one sampled block out at a time (`sample`, born at
 * `born` on the clock), which the layers above tag so that its free tells
 * _hak_site_freed. A sample still live past the limit counts as lasting at
 * its site's next allocation, so a site whose blocks are never freed is
 * learned too. A site's score moves one step toward each observation,
 * between -SCORE_MAX and SCORE_MAX; at LASTING_AT or above the site is
 * lasting, at SURE_AT or below it has proved short-lived and is sampled
 * only once in SAMPLE_EVERY of its heap's sited allocations (a sample of a
 * class whose runs hold several blocks takes a run of its own). A
 * misprediction costs memory only: a lasting block placed with short-lived
 * ones pins their run, a short-lived one placed apart takes a run of its
 * own.
 *
 * The table is direct-mapped by return address (SLOTS entries, bounded
 * memory): a site that lands on a slot held by another takes it over and
 * starts learning from nothing. Updates are atomic but not ordered among
 * themselves: a race costs an observation, never a block. */
#include "internal.h"

#define SLOTS 1024 /* a power of two */
#define CLOCK_BATCH ((uint64_t)4 << 20)
#define LASTING_FACTOR 4
#define LASTING_MIN ((uint64_t)8 << 20)
#define SCORE_MAX 4
#define LASTING_AT 2
#define SURE_AT (-2)
#define SAMPLE_EVERY 1024

typedef struct site {
  _Atomic uintptr_t pc;     /* the return address; 0: a free slot */
  _Atomic uintptr_t sample; /* its sampled block out, 0: none (or being allocated) */
  _Atomic uint64_t born;    /* the clock when the sample was taken; 0: no sample */
  _Atomic int32_t score;
  _Atomic uint32_t lasting, brief; /* observations */
} site_t;

static site_t sites[SLOTS];
static _Atomic uint64_t clock_bytes = 1; /* from 1: a born of 0 means no sample */

static uint64_t lasting_limit(void) {
  uint64_t used = atomic_load_explicit(&_hak_mem.total[HAK_MEM_USED], memory_order_relaxed);
  return LASTING_FACTOR * (used > LASTING_MIN ? used : LASTING_MIN);
}

/* A thread's view of the clock and the limit, as of its last batch added
 * (with its own batch since): the plan of an allocation reads no line
 * another thread writes but its site's. Another thread's view may be behind
 * by its batch: a lifetime can come out negative, and counts as short. */
typedef struct view {
  uint64_t now, limit;
} view_t;

static inline __attribute__((always_inline)) view_t view_of(hak_site_local_t *l) {
  if (!l) return (view_t){atomic_load_explicit(&clock_bytes, memory_order_relaxed), lasting_limit()};
  if (!l->limit) { /* the thread's first */
    l->seen = atomic_load_explicit(&clock_bytes, memory_order_relaxed);
    l->limit = lasting_limit();
  }
  return (view_t){l->seen + l->pending, l->limit};
}

/* The calling thread's view once it allocated `bytes`. */
static inline __attribute__((always_inline)) view_t clock_add(hak_site_local_t *l, size_t bytes) {
  if (!l) {
    uint64_t now = atomic_fetch_add_explicit(&clock_bytes, bytes, memory_order_relaxed) + bytes;
    return (view_t){now, lasting_limit()};
  }
  l->pending += bytes;
  if (l->pending >= CLOCK_BATCH) {
    l->seen = atomic_fetch_add_explicit(&clock_bytes, l->pending, memory_order_relaxed) + l->pending;
    l->pending = 0;
    l->limit = lasting_limit();
  }
  return view_of(l);
}

static void observe(site_t *s, bool lasting) {
  int32_t v = atomic_load_explicit(&s->score, memory_order_relaxed);
  v = lasting ? (v < SCORE_MAX ? v + 1 : v) : (v > -SCORE_MAX ? v - 1 : v);
  atomic_store_explicit(&s->score, v, memory_order_relaxed);
  atomic_fetch_add_explicit(lasting ? &s->lasting : &s->brief, 1, memory_order_relaxed);
}

/* The sample of s born at `born` is done: whoever ends it observes it. */
static void sample_end(site_t *s, uint64_t born, view_t v) {
  if (!atomic_compare_exchange_strong_explicit(&s->born, &born, 0, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  atomic_store_explicit(&s->sample, 0, memory_order_relaxed);
  observe(s, (int64_t)(v.now - born) > (int64_t)v.limit);
}

hak_site_plan_t _hak_site_plan(uintptr_t pc, size_t bytes) {
  hak_site_plan_t plan = {0};
  if (!pc || !hak_opt(HAK_OPT_SITES)) return plan;
  hak_site_local_t *l = hak_tls_sites();
  view_t v = clock_add(l, bytes);
  uint32_t i = (uint32_t)((pc * 0x9e3779b97f4a7c15ull) >> (64 - 10));
  _Static_assert(SLOTS == 1 << 10, "the hash gives 10 bits");
  site_t *s = &sites[i];
  if (atomic_load_explicit(&s->pc, memory_order_relaxed) != pc) { /* taken over */
    atomic_store_explicit(&s->pc, pc, memory_order_relaxed);
    atomic_store_explicit(&s->born, 0, memory_order_relaxed);
    atomic_store_explicit(&s->sample, 0, memory_order_relaxed);
    atomic_store_explicit(&s->score, 0, memory_order_relaxed);
    atomic_store_explicit(&s->lasting, 0, memory_order_relaxed);
    atomic_store_explicit(&s->brief, 0, memory_order_relaxed);
  }
  plan.site = i + 1;
  uint64_t born = atomic_load_explicit(&s->born, memory_order_relaxed);
  if (born && (int64_t)(v.now - born) > (int64_t)v.limit) sample_end(s, born, v);
  int32_t score = atomic_load_explicit(&s->score, memory_order_relaxed);
  plan.lasting = score >= LASTING_AT;
  /* A site that has proved short-lived (SURE_AT) is sampled only when the
   * heap's countdown is out, any other whenever it has no sample out: a
   * lasting site whose first sample died young (the first of a FIFO) is
   * not starved of samples by the short-lived ones around it, and a
   * short-lived one whose sample outlived the limit once does not take a
   * sample at every allocation. */
  bool sure = score <= SURE_AT;
  if (sure && l && l->countdown) {
    l->countdown--;
    return plan;
  }
  uint64_t none = 0;
  if (atomic_load_explicit(&s->born, memory_order_relaxed)) return plan; /* one out already */
  if (atomic_compare_exchange_strong_explicit(&s->born, &none, v.now, memory_order_relaxed,
                                              memory_order_relaxed)) {
    plan.sample = true;
    if (sure && l) l->countdown = SAMPLE_EVERY - 1;
  }
  return plan;
}

void _hak_site_sampled(uint32_t site, const void *p) {
  site_t *s = &sites[site - 1];
  if (p) atomic_store_explicit(&s->sample, (uintptr_t)p, memory_order_relaxed);
  else atomic_store_explicit(&s->born, 0, memory_order_relaxed); /* the allocation failed */
}

void _hak_site_freed(uint32_t site, const void *p) {
  site_t *s = &sites[site - 1];
  if (atomic_load_explicit(&s->sample, memory_order_relaxed) != (uintptr_t)p) return;
  uint64_t born = atomic_load_explicit(&s->born, memory_order_relaxed);
  if (born) sample_end(s, born, view_of(hak_tls_sites()));
}

void _hak_site_moved(uint32_t site, const void *from, const void *to) {
  uintptr_t was = (uintptr_t)from;
  atomic_compare_exchange_strong_explicit(&sites[site - 1].sample, &was, (uintptr_t)to, memory_order_relaxed,
                                          memory_order_relaxed);
}

bool _hak_site_lasting(uint32_t site) {
  return atomic_load_explicit(&sites[site - 1].score, memory_order_relaxed) >= LASTING_AT;
}

hak_site_stats_t _hak_site_stats(void) {
  hak_site_stats_t st = {.clock = atomic_load_explicit(&clock_bytes, memory_order_relaxed)};
  for (size_t i = 0; i < SLOTS; i++) {
    site_t *s = &sites[i];
    if (!atomic_load_explicit(&s->pc, memory_order_relaxed)) continue;
    st.known++;
    st.lasting += atomic_load_explicit(&s->score, memory_order_relaxed) >= LASTING_AT;
    st.seen_lasting += atomic_load_explicit(&s->lasting, memory_order_relaxed);
    st.seen_brief += atomic_load_explicit(&s->brief, memory_order_relaxed);
  }
  return st;
}
