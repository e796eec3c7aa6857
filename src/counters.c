/* counters.c — event counts (HAK_STAT_LIST), events per size class
 * (HAK_CLASS_STAT_LIST), slabs per size class and the sampled slow-path
 * latency: the raw data of the statistics. A thread counts in its heap's
 * hak_counters_t with plain increments and merges it into the process
 * totals at exit or on hak_stats_flush; a thread without a heap counts in
 * the totals at once. The current number of slabs of a class comes from
 * the SuperSlabs' unit maps (stats.c); its peak is kept here. The latency
 * histograms are the process's (1 in HAKMEM_SAMPLE slow paths adds to
 * them, so their atomic adds are rare). */
#include "internal.h"

static _Atomic uint64_t totals[HAK_STAT_COUNT]; /* merged counts */
static _Atomic uint64_t class_totals[HAK_CLASSES][HAK_CSTAT_COUNT];
static _Atomic uint64_t class_slabs[HAK_CLASSES];
static _Atomic size_t class_slabs_peak[HAK_CLASSES];

void _hak_count(int id) {
  hak_counters_t *c = hak_tls_counters();
  if (c) hak_count(c, id);
  else atomic_fetch_add_explicit(&totals[id], 1, memory_order_relaxed);
}

static _Atomic uint64_t latency[HAK_LAT_KINDS][HAK_LAT_BUCKETS];
static _Atomic uint32_t shared_sample_left; /* threads without a heap */

/* c's countdown reached 0 (this slow path is the one in N), or a thread
 * without a heap takes a step of the shared countdown. */
hak_tick_t _hak_sample_due(hak_counters_t *c) {
  uint32_t every = (uint32_t)hak_opt(HAK_OPT_SAMPLE);
  if (c) {
    c->sample_left = every ? every : UINT32_MAX; /* none timed: look at the option again much later */
  } else {
    uint32_t left = atomic_load_explicit(&shared_sample_left, memory_order_relaxed);
    atomic_store_explicit(&shared_sample_left, left > 1 ? left - 1 : every, memory_order_relaxed);
    if (left > 1) return 0;
  }
  return every ? _hak_os_ticks() | 1 : 0;
}

void _hak_sample_end(int kind, hak_tick_t t0) {
  uint64_t ns = (uint64_t)((unsigned __int128)(_hak_os_ticks() - t0) * 1000000 / _hak_os_ms_ticks(1));
  int k = ns < 2 ? 0 : 63 - __builtin_clzll(ns);
  atomic_fetch_add_explicit(&latency[kind][k < HAK_LAT_BUCKETS ? k : HAK_LAT_BUCKETS - 1], 1,
                            memory_order_relaxed);
}

void _hak_latency(uint64_t hist[HAK_LAT_KINDS][HAK_LAT_BUCKETS]) {
  for (int t = 0; t < HAK_LAT_KINDS; t++)
    for (int k = 0; k < HAK_LAT_BUCKETS; k++)
      hist[t][k] = atomic_load_explicit(&latency[t][k], memory_order_relaxed);
}

void _hak_class_event_shared(size_t cls, int id, uint64_t n) {
  atomic_fetch_add_explicit(&class_totals[cls][id], n, memory_order_relaxed);
}

void _hak_class_events_add(const hak_counters_t *c, uint64_t (*into)[HAK_CSTAT_COUNT]) {
  for (size_t cls = 0; cls < HAK_CLASSES; cls++)
    for (int i = 0; i < HAK_CSTAT_COUNT; i++)
      into[cls][i] += c ? __atomic_load_n(&c->cls[cls][i], __ATOMIC_RELAXED)
                        : atomic_load_explicit(&class_totals[cls][i], memory_order_relaxed);
}

static void class_add(size_t cls, int64_t d) {
  int64_t n = (int64_t)atomic_fetch_add_explicit(&class_slabs[cls], (uint64_t)d, memory_order_relaxed) + d;
  if (n > 0) hak_atomic_max(&class_slabs_peak[cls], (size_t)n);
}

static void class_move(hak_counters_t *c, size_t cls, int d) {
  if (!c) {
    class_add(cls, d);
    return;
  }
  c->cls_delta[cls] = (int8_t)(c->cls_delta[cls] + d);
  if (c->cls_delta[cls] == d * HAK_CLASS_BATCH) {
    class_add(cls, c->cls_delta[cls]);
    c->cls_delta[cls] = 0;
  }
}

void _hak_class_count(size_t from, size_t to) {
  hak_counters_t *c = hak_tls_counters();
  if (from) class_move(c, from, -1);
  if (to) class_move(c, to, +1);
}

void _hak_counters_merge(hak_counters_t *c) {
  for (size_t i = 0; i < HAK_STAT_COUNT; i++)
    if (c->n[i]) atomic_fetch_add_explicit(&totals[i], c->n[i], memory_order_relaxed);
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) c->n[i] = 0;
  for (size_t cls = 0; cls < HAK_CLASSES; cls++)
    for (int i = 0; i < HAK_CSTAT_COUNT; i++)
      if (c->cls[cls][i]) {
        atomic_fetch_add_explicit(&class_totals[cls][i], c->cls[cls][i], memory_order_relaxed);
        c->cls[cls][i] = 0;
      }
  for (size_t cls = 1; cls < HAK_CLASSES; cls++)
    if (c->cls_delta[cls]) {
      class_add(cls, c->cls_delta[cls]);
      c->cls_delta[cls] = 0;
    }
}

void _hak_counters_add(const hak_counters_t *c, uint64_t *n) {
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) n[i] += __atomic_load_n(&c->n[i], __ATOMIC_RELAXED);
}

void _hak_counters_totals(uint64_t *n) {
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) n[i] += atomic_load_explicit(&totals[i], memory_order_relaxed);
}

uint64_t _hak_class_peak(size_t cls) {
  return atomic_load_explicit(&class_slabs_peak[cls], memory_order_relaxed);
}
