/* stats.c — statistics: hak_stats_t gathered from every layer under all the
 * locks (the counters of counters.c, the unit maps of the SuperSlabs, the
 * budget's totals, Large blocks), with the accounting identity, and the
 * reports: a line, a text report (malloc_stats), JSON (hak_stats_json) and
 * XML (malloc_info). */
#include <string.h>

#include "units.h"

static const char *const stat_name[HAK_STAT_COUNT] = {
#define HAK_STAT_NAME(name, desc) #name,
    HAK_STAT_LIST(HAK_STAT_NAME)
#undef HAK_STAT_NAME
};
static const char *const stat_desc[HAK_STAT_COUNT] = {
#define HAK_STAT_DESC(name, desc) desc,
    HAK_STAT_LIST(HAK_STAT_DESC)
#undef HAK_STAT_DESC
};

static const char *const cstat_name[HAK_CSTAT_COUNT] = {
#define HAK_CSTAT_NAME(name, desc) #name,
    HAK_CLASS_STAT_LIST(HAK_CSTAT_NAME)
#undef HAK_CSTAT_NAME
};
static const char *const lat_name[HAK_LAT_KINDS] = {"tiny", "mid", "pool", "large", "free"};
static const char *const sys_name[HAK_SYS_KINDS] = {"mmap", "munmap", "mremap", "madvise", "mprotect"};

/* Misses: each took one of the refill paths. */
static uint64_t class_misses(const uint64_t *ev) {
  return ev[HAK_CSTAT_from_current] + ev[HAK_CSTAT_from_partial] + ev[HAK_CSTAT_from_spare] +
         ev[HAK_CSTAT_from_adopted] + ev[HAK_CSTAT_from_fresh];
}

typedef struct snapshot {
  hak_stats_t st;
  uint64_t stat[HAK_STAT_COUNT];
  uint64_t cev[HAK_CLASSES][HAK_CSTAT_COUNT]; /* class events */
  uint64_t lat[HAK_LAT_KINDS][HAK_LAT_BUCKETS];
  uint64_t sys_calls[HAK_SYS_KINDS], sys_bytes[HAK_SYS_KINDS], sys_ns[HAK_SYS_KINDS];
  uint64_t cls_slabs[2 * HAK_CLASSES]; /* current, peak */
  uint64_t cls_used[HAK_CLASSES];
  hak_learned_t learned;            /* HAKMEM_ACE */
  hak_site_stats_t sites;           /* HAKMEM_SITES */
  hak_elo_t elo;                    /* HAKMEM_ELO */
  uint64_t elo_epoch_ms;            /* its running epoch's length */
  uint8_t carve_shift[HAK_CLASSES]; /* HAKMEM_ACE: the calling thread's heap's (0 without one) */
} snapshot_t;

/* The SuperSlabs' slabs, from their unit maps (_hak_ss_lock held): every
 * slab's bytes are in live blocks or not, a spare's are empty; free units
 * not purged are empty too. */
static void walk_slabs(snapshot_t *s, bool classes) {
  hak_front_t *me = hak_tls.heap;
  for (hak_reservation_t *r = _hak_reservation_next(NULL); r; r = _hak_reservation_next(r)) {
    for (uint32_t i = 0; i < r->carved; i++) {
      hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
      s->st.empty += hak_units_bytes(ss->dirty_units);
      for (unsigned u = 0; u < HAK_UNITS; u++) {
        hak_slab_t *sl = &ss->slab[u];
        if (!sl->units) continue;
        s->st.slabs++;
        if (classes) s->cls_slabs[2 * sl->cls]++;
        if (__atomic_load_n(&sl->where, __ATOMIC_RELAXED) == HAK_IN_SPARE) {
          s->st.empty += hak_slab_bytes(sl);
          continue;
        }
        uint32_t blocks = _hak_slab_live(sl, me->key, me->slot[sl->cls].free);
        size_t bytes = (size_t)blocks * sl->block_size;
        s->st.in_use += bytes;
        s->st.slab_free += hak_slab_bytes(sl) - bytes;
        if (classes) s->cls_used[sl->cls] += blocks;
      }
    }
  }
  if (classes)
    for (size_t c = 0; c < HAK_CLASSES; c++) {
      uint64_t peak = _hak_class_peak(c);
      s->cls_slabs[2 * c + 1] = peak > s->cls_slabs[2 * c] ? peak : s->cls_slabs[2 * c];
    }
}

/* With no other heap live, and every lock held, nothing changes the heap
 * while it is read: the identity and the totals the budget runs on must
 * then agree exactly with the unit maps (the debug build checks: I5). */
static void check_at_rest(const hak_stats_t *st, size_t used, size_t empty) {
  HAK_ASSERT(st->unaccounted == 0);
  HAK_ASSERT(st->peak_committed >= st->committed);
  HAK_ASSERT(empty == st->empty);
  HAK_ASSERT(used == st->in_use + st->slab_free + st->metadata - st->superslabs * HAK_SS_HEADER);
}

/* Every hakmem lock that guards a figure, in the fork order (thread.c):
 * the threads without a heap of their own wait meanwhile. */
static void take(snapshot_t *s, bool classes) {
  memset(s, 0, sizeof *s);
  _hak_lock(&_hak_heap_registry_lock);
  _hak_lock(&_hak_global_heap_lock);
  _hak_lock(&_hak_ss_lock);
  _hak_lock(&_hak_large_lock);
  uint64_t heaps = _hak_heaps_counters(s->stat, s->cev);
  walk_slabs(s, classes);
  _hak_superslab_figures(&s->st);
  _hak_reservation_figures(&s->st);
  _hak_large_figures(&s->st);
  _hak_large_learned(&s->learned);
  s->sites = _hak_site_stats();
  s->learned.keep = hak_refault_keep(_hak_os_ticks());
  s->learned.yielded = atomic_load_explicit(&_hak_mem.ace_yielded, memory_order_relaxed);
  s->learned.yields = hak_ace_yields();
  s->learned.purge_delay_us =
      atomic_load_explicit(&_hak_mem.reuse_delay, memory_order_relaxed) * 1000 / _hak_os_ms_ticks(1);
  size_t used, empty;
  _hak_budget_figures(&used, &empty, &s->st.committed, &s->st.peak_committed, &s->st.room);
  s->st.heaps = heaps;
  s->st.unaccounted =
      (int64_t)(s->st.committed - (s->st.in_use + s->st.slab_free + s->st.empty + s->st.metadata));
  if (hak_cfg_debug && heaps == (hak_tls_own_heap() != NULL)) check_at_rest(&s->st, used, empty);
  _hak_unlock(&_hak_large_lock);
  _hak_unlock(&_hak_ss_lock);
  _hak_unlock(&_hak_global_heap_lock);
  _hak_unlock(&_hak_heap_registry_lock);
  _hak_counters_totals(s->stat);
  _hak_class_events_add(NULL, s->cev);
  _hak_latency(s->lat);
  _hak_elo_figures(&s->elo, &s->elo_epoch_ms);
  const hak_heap_t *mine = hak_tls_own_heap();
  for (size_t c = 0; c < HAK_CLASSES; c++) s->carve_shift[c] = mine ? mine->carve_shift[c] : 0;
  _hak_os_calls(s->sys_calls, s->sys_bytes, s->sys_ns);
  for (size_t c = 0; c < HAK_CLASSES; c++) {
    s->st.allocs += s->cev[c][HAK_CSTAT_allocs];
    s->st.frees += s->cev[c][HAK_CSTAT_frees];
    s->st.misses += class_misses(s->cev[c]);
    s->st.slow_frees += s->cev[c][HAK_CSTAT_slow_frees];
    s->st.remote_sent += s->cev[c][HAK_CSTAT_remote_sent];
    s->st.remote_received += s->cev[c][HAK_CSTAT_remote_received];
  }
  s->st.mmap_calls = s->sys_calls[HAK_SYS_MMAP];
  s->st.mmap_bytes = s->sys_bytes[HAK_SYS_MMAP];
  s->st.munmap_calls = s->sys_calls[HAK_SYS_MUNMAP];
  s->st.munmap_bytes = s->sys_bytes[HAK_SYS_MUNMAP];
  s->st.madvise_calls = s->sys_calls[HAK_SYS_MADVISE];
  s->st.madvise_bytes = s->sys_bytes[HAK_SYS_MADVISE];
  s->st.mremap_calls = s->sys_calls[HAK_SYS_MREMAP];
  s->st.mprotect_calls = s->sys_calls[HAK_SYS_MPROTECT];
  for (int k = 0; k < HAK_SYS_KINDS; k++) s->st.syscall_ns += s->sys_ns[k];
  hak_usage_t u;
  _hak_os_usage(&u);
  s->st.minor_faults = u.minor_faults;
  s->st.slabs_detached = s->stat[HAK_STAT_slabs_detached];
  s->st.slabs_adopted = s->stat[HAK_STAT_slabs_adopted];
  s->st.invalid_frees = _hak_invalid_count();
  s->st.failed_size = _hak_fail_count(HAK_FAIL_SIZE);
  s->st.failed_overflow = _hak_fail_count(HAK_FAIL_OVERFLOW);
  s->st.failed_align = _hak_fail_count(HAK_FAIL_ALIGN);
  s->st.failed_map = _hak_fail_count(HAK_FAIL_MAP);
}

void _hak_stats_tiers(hak_stats_t *st, size_t tier[4]) {
  static const size_t last[3] = {HAK_CLASS_TINY_LAST, HAK_CLASS_MID_LAST, HAK_CLASS_LAST};
  snapshot_t s;
  take(&s, true);
  *st = s.st;
  size_t t = 0;
  tier[0] = tier[1] = tier[2] = 0;
  for (size_t c = 1; c <= HAK_CLASS_LAST; c++) {
    if (c > last[t]) t++;
    tier[t] += (size_t)s.cls_used[c] * hak_class_size(c);
  }
  tier[3] = s.st.in_use - tier[0] - tier[1] - tier[2]; /* in_use: the slabs' blocks, and Large blocks */
}

HAK_API int hak_stats(hak_stats_t *out) {
  snapshot_t s;
  take(&s, false);
  *out = s.st;
  return 0;
}

HAK_API void hak_stats_flush(void) { _hak_heap_flush_counters(); }

/* A figure of hak_stats_t, signed or not. */
#define FIGURE(b, v) \
  _Generic((v), int64_t : _hak_buf_int((b), (int64_t)(v)), default : _hak_buf_dec((b), (uint64_t)(v)))

/* The exit line names its process: a program run through another one under
 * LD_PRELOAD (time, env, a shell) prints the other's line too, and one that
 * never allocated prints zeros. */
static void line(hak_buf_t *b, const hak_stats_t *st) {
  _hak_buf_str(b, "hakmem: pid=");
  _hak_buf_dec(b, (uint64_t)_hak_os_getpid());
#define LINE_FIELD(type, f, desc) \
  _hak_buf_str(b, " " #f "=");    \
  FIGURE(b, (st->f));
  HAK_STATS_FIELDS(LINE_FIELD)
#undef LINE_FIELD
  _hak_buf_str(b, "\n");
}

/* ---- the reports' tables: per class, per tier, latency, system calls */

static bool class_active(const snapshot_t *s, size_t c) {
  return s->cls_slabs[2 * c + 1] || class_misses(s->cev[c]) || s->cev[c][HAK_CSTAT_slow_frees];
}

/* The share of allocations served by the fast path, in tenths of a
 * percent; -1 if allocations are not counted (only the stats build does). */
static int64_t hit_permille(uint64_t allocs, uint64_t misses) {
  return allocs ? (int64_t)((allocs - (misses < allocs ? misses : allocs)) * 1000 / allocs) : -1;
}

static void put_permille(hak_buf_t *b, int64_t pm) {
  if (pm < 0) {
    _hak_buf_str(b, "-");
    return;
  }
  _hak_buf_dec(b, (uint64_t)pm / 10);
  _hak_buf_str(b, ".");
  _hak_buf_dec(b, (uint64_t)pm % 10);
}

/* Kind k's latency at the q-th per-mille: the upper end of the bucket
 * that holds it (2^(b+1) ns), or 0 with no sample. */
static uint64_t percentile(const uint64_t *hist, unsigned q) {
  uint64_t total = 0, seen = 0;
  for (int k = 0; k < HAK_LAT_BUCKETS; k++) total += hist[k];
  for (int k = 0; k < HAK_LAT_BUCKETS && total; k++)
    if ((seen += hist[k]) * 1000 >= total * q) return (uint64_t)2 << k;
  return 0;
}

static uint64_t samples(const uint64_t *hist) {
  uint64_t n = 0;
  for (int k = 0; k < HAK_LAT_BUCKETS; k++) n += hist[k];
  return n;
}

typedef struct tier_sum {
  uint64_t ev[HAK_CSTAT_COUNT];
  uint64_t live;
} tier_sum_t;

/* The class events and live bytes summed per tier (tiny, mid, pool). */
static void tier_sums(const snapshot_t *s, tier_sum_t t[3]) {
  memset(t, 0, 3 * sizeof *t);
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    tier_sum_t *x = &t[hak_lat_kind(c)];
    for (int i = 0; i < HAK_CSTAT_COUNT; i++) x->ev[i] += s->cev[c][i];
    x->live += s->cls_used[c] * hak_class_size(c);
  }
}

/* The column of the per-class table where class event i goes: hit % and
 * misses (derived) come after frees. */
static size_t event_column(int i) { return 36 + (size_t)(i + (i > HAK_CSTAT_frees ? 2 : 0)) * 11; }

static void put_classes_text(hak_buf_t *b, const snapshot_t *s) {
  static const char *const head[HAK_CSTAT_COUNT] = {"allocs", "frees",   "current", "partial",
                                                    "spare",  "adopted", "fresh",   "carved",
                                                    "slow",   "sent",    "received"};
  _hak_buf_str(b, "  class  size    slabs peak  in use");
  for (int i = 0; i < HAK_CSTAT_COUNT; i++) {
    _hak_buf_pad(b, event_column(i));
    _hak_buf_str(b, i == HAK_CSTAT_frees ? "frees" : head[i]);
    if (i != HAK_CSTAT_frees) continue;
    _hak_buf_pad(b, event_column(i) + 11);
    _hak_buf_str(b, "hit %");
    _hak_buf_pad(b, event_column(i) + 22);
    _hak_buf_str(b, "misses");
  }
  _hak_buf_str(b, "\n");
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!class_active(s, c)) continue;
    const uint64_t *e = s->cev[c];
    _hak_buf_pad(b, 2);
    _hak_buf_dec(b, c);
    _hak_buf_pad(b, 9);
    _hak_buf_dec(b, hak_class_size(c));
    _hak_buf_pad(b, 17);
    _hak_buf_dec(b, s->cls_slabs[2 * c]);
    _hak_buf_pad(b, 23);
    _hak_buf_dec(b, s->cls_slabs[2 * c + 1]);
    _hak_buf_pad(b, 29);
    _hak_buf_dec(b, s->cls_used[c]);
    for (int i = 0; i < HAK_CSTAT_COUNT; i++) {
      _hak_buf_pad(b, event_column(i));
      _hak_buf_dec(b, e[i]);
      if (i != HAK_CSTAT_frees) continue;
      _hak_buf_pad(b, event_column(i) + 11);
      put_permille(b, hit_permille(e[HAK_CSTAT_allocs], class_misses(e)));
      _hak_buf_pad(b, event_column(i) + 22);
      _hak_buf_dec(b, class_misses(e));
    }
    _hak_buf_str(b, "\n");
  }
  _hak_buf_str(b,
               "  (allocs, frees, hit %: libhakmem-stats only; misses: allocations the fast path could not\n"
               "   serve, each a refill from the current slab's freed blocks, a partial or spare slab, an\n"
               "   adopted one or a fresh one; carved: refills of fresh blocks; slow: frees off the fast\n"
               "   path; sent, received: remote frees)\n");
}

static void put_tiers_text(hak_buf_t *b, const snapshot_t *s) {
  tier_sum_t t[3];
  tier_sums(s, t);
  _hak_buf_str(b, "  tier   live bytes      allocs   hit %     misses  slow frees  remote sent  received\n");
  for (int k = 0; k < 3; k++) {
    _hak_buf_str(b, "  ");
    _hak_buf_str(b, lat_name[k]);
    _hak_buf_pad(b, 9);
    _hak_buf_dec(b, t[k].live);
    _hak_buf_pad(b, 22);
    _hak_buf_dec(b, t[k].ev[HAK_CSTAT_allocs]);
    _hak_buf_pad(b, 36);
    put_permille(b, hit_permille(t[k].ev[HAK_CSTAT_allocs], class_misses(t[k].ev)));
    _hak_buf_pad(b, 42);
    _hak_buf_dec(b, class_misses(t[k].ev));
    _hak_buf_pad(b, 53);
    _hak_buf_dec(b, t[k].ev[HAK_CSTAT_slow_frees]);
    _hak_buf_pad(b, 65);
    _hak_buf_dec(b, t[k].ev[HAK_CSTAT_remote_sent]);
    _hak_buf_pad(b, 78);
    _hak_buf_dec(b, t[k].ev[HAK_CSTAT_remote_received]);
    _hak_buf_str(b, "\n");
  }
  _hak_buf_str(b, "  large");
  _hak_buf_pad(b, 9);
  _hak_buf_dec(b, s->st.large_in_use);
  _hak_buf_str(b, "   (blocks ");
  _hak_buf_dec(b, s->st.large_blocks);
  _hak_buf_str(b, ", BigCache hits ");
  _hak_buf_dec(b, s->st.bigcache_hits);
  _hak_buf_str(b, ", misses ");
  _hak_buf_dec(b, s->st.bigcache_misses);
  _hak_buf_str(b, ")\n");
}

static void put_latency_text(hak_buf_t *b, const snapshot_t *s) {
  _hak_buf_str(b, "  slow-path latency, 1 in ");
  _hak_buf_dec(b, (uint64_t)hak_opt(HAK_OPT_SAMPLE));
  _hak_buf_str(b, " timed (HAKMEM_SAMPLE), ns at most:\n  kind     samples      p50      p99    p99.9\n");
  for (int k = 0; k < HAK_LAT_KINDS; k++) {
    _hak_buf_str(b, "  ");
    _hak_buf_str(b, lat_name[k]);
    _hak_buf_pad(b, 9);
    _hak_buf_dec(b, samples(s->lat[k]));
    static const unsigned q[3] = {500, 990, 999};
    for (int i = 0; i < 3; i++) {
      _hak_buf_pad(b, 21 + (size_t)i * 9);
      _hak_buf_dec(b, percentile(s->lat[k], q[i]));
    }
    _hak_buf_str(b, "\n");
  }
}

static void put_syscalls_text(hak_buf_t *b, const snapshot_t *s) {
  _hak_buf_str(b, "  system calls    calls         bytes           ns\n");
  for (int k = 0; k < HAK_SYS_KINDS; k++) {
    _hak_buf_str(b, "  ");
    _hak_buf_str(b, sys_name[k]);
    _hak_buf_pad(b, 16);
    _hak_buf_dec(b, s->sys_calls[k]);
    _hak_buf_pad(b, 26);
    _hak_buf_dec(b, s->sys_bytes[k]);
    _hak_buf_pad(b, 40);
    _hak_buf_dec(b, s->sys_ns[k]);
    _hak_buf_str(b, "\n");
  }
  _hak_buf_str(b, "  minor page faults of the process: ");
  _hak_buf_dec(b, s->st.minor_faults);
  _hak_buf_str(b, "\n");
}

/* What HAKMEM_SITES learned (sites.c). */
static void put_sites_text(hak_buf_t *b, const snapshot_t *s) {
  const hak_site_stats_t *t = &s->sites;
  _hak_buf_str(b, "  call sites (HAKMEM_SITES=");
  _hak_buf_dec(b, (uint64_t)hak_opt(HAK_OPT_SITES));
  _hak_buf_str(b, "): ");
  _hak_buf_dec(b, t->known);
  _hak_buf_str(b, " known, ");
  _hak_buf_dec(b, t->lasting);
  _hak_buf_str(b, " lasting; samples seen lasting ");
  _hak_buf_dec(b, t->seen_lasting);
  _hak_buf_str(b, ", short-lived ");
  _hak_buf_dec(b, t->seen_brief);
  _hak_buf_str(b, "; clock ");
  _hak_buf_bytes(b, t->clock);
  _hak_buf_str(b, "\n");
}

/* What HAKMEM_ACE learned: the memory kept for refaults, the purge delay
 * the reuse ages ask for and its yields (budget.c), BigCache's budget (large.c),
 * and the carve batches of the calling thread's classes (heap.c). */
static void put_learned_text(hak_buf_t *b, const snapshot_t *s) {
  const hak_learned_t *l = &s->learned;
  _hak_buf_str(b, "  self-tuning (HAKMEM_ACE=");
  _hak_buf_dec(b, (uint64_t)hak_opt(HAK_OPT_ACE));
  _hak_buf_str(b, "): kept for refaults ");
  _hak_buf_dec(b, l->keep);
  _hak_buf_str(b, ", purge delay ");
  _hak_buf_dec(b, l->purge_delay_us);
  _hak_buf_str(b, l->purge_delay_us ? " us" : " (the option's)");
  _hak_buf_str(b, ", yielded ");
  _hak_buf_dec(b, l->yielded);
  _hak_buf_str(b, l->yields ? " times (yields now: no keep, the option's delay)" : " times");
  _hak_buf_str(b, ", BigCache budget ");
  _hak_buf_dec(b, l->bigcache_budget);
  _hak_buf_str(b, " (learned ");
  _hak_buf_dec(b, l->bigcache_learned);
  _hak_buf_str(b, ": grew ");
  _hak_buf_dec(b, l->bigcache_grew);
  _hak_buf_str(b, " times, shrank ");
  _hak_buf_dec(b, l->bigcache_shrank);
  _hak_buf_str(b, ")\n");
  const char *sep = "    classes carving more than a page at once in this thread: class ";
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!s->carve_shift[c]) continue;
    _hak_buf_str(b, sep);
    sep = ", class ";
    _hak_buf_dec(b, c);
    _hak_buf_str(b, " ");
    _hak_buf_dec(b, (uint64_t)1 << s->carve_shift[c]);
    _hak_buf_str(b, " pages");
  }
  if (*sep == ',') _hak_buf_str(b, "\n");
}

/* HAKMEM_ELO: the policy in force, and each one's rating and record
 * (elo.c). */
static void put_elo_text(hak_buf_t *b, const snapshot_t *s) {
  const hak_elo_t *e = &s->elo;
  _hak_buf_str(b, "  policy (HAKMEM_ELO=");
  _hak_buf_dec(b, (uint64_t)hak_opt(HAK_OPT_ELO));
  _hak_buf_str(b, "): in force ");
  _hak_buf_str(b, _hak_policies[e->now].name);
  _hak_buf_str(b, ", epochs ");
  _hak_buf_dec(b, e->epoch);
  _hak_buf_str(b, " (explored ");
  _hak_buf_dec(b, e->explored);
  _hak_buf_str(b, "), epoch ");
  _hak_buf_dec(b, s->elo_epoch_ms);
  _hak_buf_str(b, " ms\n");
  for (uint32_t i = 0; i < HAK_POLICIES; i++) {
    _hak_buf_str(b, "    ");
    _hak_buf_str(b, _hak_policies[i].name);
    _hak_buf_pad(b, 14);
    _hak_buf_str(b, "rating ");
    _hak_buf_dec(b, (uint64_t)e->rating[i]);
    _hak_buf_str(b, ", epochs ");
    _hak_buf_dec(b, e->epochs[i]);
    _hak_buf_str(b, ", won ");
    _hak_buf_dec(b, e->wins[i]);
    _hak_buf_str(b, ", lost ");
    _hak_buf_dec(b, e->losses[i]);
    _hak_buf_str(b, ", last cost ");
    _hak_buf_dec(b, (uint64_t)e->cost[i]);
    _hak_buf_str(b, " us/s\n");
  }
}

static void json_key(hak_buf_t *b, const char *sep, const char *key, uint64_t v) {
  _hak_buf_str(b, sep);
  _hak_buf_str(b, "\"");
  _hak_buf_str(b, key);
  _hak_buf_str(b, "\":");
  _hak_buf_dec(b, v);
}

static void put_json(hak_buf_t *b, const snapshot_t *s) {
  _hak_buf_str(b, ",\"classes\":[");
  const char *sep = "{";
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!class_active(s, c)) continue;
    _hak_buf_str(b, sep);
    sep = ",{";
    json_key(b, "", "class", c);
    json_key(b, ",", "block_size", hak_class_size(c));
    json_key(b, ",", "slabs", s->cls_slabs[2 * c]);
    json_key(b, ",", "peak_slabs", s->cls_slabs[2 * c + 1]);
    json_key(b, ",", "blocks_in_use", s->cls_used[c]);
    for (int i = 0; i < HAK_CSTAT_COUNT; i++) json_key(b, ",", cstat_name[i], s->cev[c][i]);
    json_key(b, ",", "misses", class_misses(s->cev[c]));
    json_key(b, ",", "carve_pages", (uint64_t)1 << s->carve_shift[c]);
    _hak_buf_str(b, "}");
  }
  tier_sum_t t[3];
  tier_sums(s, t);
  _hak_buf_str(b, "],\"tiers\":[");
  for (int k = 0; k < 3; k++) {
    _hak_buf_str(b, k ? ",{\"tier\":\"" : "{\"tier\":\"");
    _hak_buf_str(b, lat_name[k]);
    _hak_buf_str(b, "\"");
    json_key(b, ",", "live_bytes", t[k].live);
    for (int i = 0; i < HAK_CSTAT_COUNT; i++) json_key(b, ",", cstat_name[i], t[k].ev[i]);
    json_key(b, ",", "misses", class_misses(t[k].ev));
    _hak_buf_str(b, "}");
  }
  _hak_buf_str(b, ",{\"tier\":\"large\"");
  json_key(b, ",", "live_bytes", s->st.large_in_use);
  json_key(b, ",", "blocks", s->st.large_blocks);
  _hak_buf_str(b, "}],\"latency\":{");
  json_key(b, "", "sample", (uint64_t)hak_opt(HAK_OPT_SAMPLE));
  for (int k = 0; k < HAK_LAT_KINDS; k++) {
    _hak_buf_str(b, ",\"");
    _hak_buf_str(b, lat_name[k]);
    _hak_buf_str(b, "\":{");
    json_key(b, "", "samples", samples(s->lat[k]));
    json_key(b, ",", "p50_ns", percentile(s->lat[k], 500));
    json_key(b, ",", "p99_ns", percentile(s->lat[k], 990));
    json_key(b, ",", "p999_ns", percentile(s->lat[k], 999));
    _hak_buf_str(b, "}");
  }
  _hak_buf_str(b, "},\"syscalls\":{");
  for (int k = 0; k < HAK_SYS_KINDS; k++) {
    _hak_buf_str(b, k ? ",\"" : "\"");
    _hak_buf_str(b, sys_name[k]);
    _hak_buf_str(b, "\":{");
    json_key(b, "", "calls", s->sys_calls[k]);
    json_key(b, ",", "bytes", s->sys_bytes[k]);
    json_key(b, ",", "ns", s->sys_ns[k]);
    _hak_buf_str(b, "}");
  }
  _hak_buf_str(b, "},\"ace\":{");
  json_key(b, "", "on", (uint64_t)hak_opt(HAK_OPT_ACE));
  json_key(b, ",", "keep", s->learned.keep);
  json_key(b, ",", "purge_delay_us", s->learned.purge_delay_us);
  json_key(b, ",", "yielded", s->learned.yielded);
  json_key(b, ",", "yields", (uint64_t)s->learned.yields);
  json_key(b, ",", "bigcache_budget", s->learned.bigcache_budget);
  json_key(b, ",", "bigcache_learned", s->learned.bigcache_learned);
  json_key(b, ",", "bigcache_grew", s->learned.bigcache_grew);
  json_key(b, ",", "bigcache_shrank", s->learned.bigcache_shrank);
  _hak_buf_str(b, "},\"sites\":{");
  json_key(b, "", "on", (uint64_t)hak_opt(HAK_OPT_SITES));
  json_key(b, ",", "known", s->sites.known);
  json_key(b, ",", "lasting", s->sites.lasting);
  json_key(b, ",", "seen_lasting", s->sites.seen_lasting);
  json_key(b, ",", "seen_brief", s->sites.seen_brief);
  json_key(b, ",", "clock", s->sites.clock);
  const hak_elo_t *e = &s->elo;
  _hak_buf_str(b, "},\"elo\":{");
  json_key(b, "", "on", (uint64_t)hak_opt(HAK_OPT_ELO));
  _hak_buf_str(b, ",\"in_force\":\"");
  _hak_buf_str(b, _hak_policies[e->now].name);
  _hak_buf_str(b, "\",\"leader\":\"");
  _hak_buf_str(b, _hak_policies[hak_elo_leader(e)].name);
  _hak_buf_str(b, "\"");
  json_key(b, ",", "epochs", e->epoch);
  json_key(b, ",", "explored", e->explored);
  json_key(b, ",", "epoch_ms", s->elo_epoch_ms);
  _hak_buf_str(b, ",\"policies\":[");
  for (uint32_t i = 0; i < HAK_POLICIES; i++) {
    _hak_buf_str(b, i ? ",{\"name\":\"" : "{\"name\":\"");
    _hak_buf_str(b, _hak_policies[i].name);
    _hak_buf_str(b, "\"");
    json_key(b, ",", "rating", (uint64_t)e->rating[i]);
    json_key(b, ",", "epochs", e->epochs[i]);
    json_key(b, ",", "wins", e->wins[i]);
    json_key(b, ",", "losses", e->losses[i]);
    json_key(b, ",", "cost_us", (uint64_t)e->cost[i]);
    _hak_buf_str(b, "}");
  }
  _hak_buf_str(b, "]}");
}

HAK_API void hak_stats_print(int fd) {
  snapshot_t s;
  take(&s, true);
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "hakmem statistics (");
  _hak_buf_str(&b, HAK_VERSION_TEXT);
  _hak_buf_str(&b, ")\n");
#define TEXT_FIELD(type, f, desc) \
  _hak_buf_str(&b, "  " #f);      \
  _hak_buf_pad(&b, 24);           \
  FIGURE(&b, (s.st.f));           \
  _hak_buf_str(&b, "\n");
  HAK_STATS_FIELDS(TEXT_FIELD)
#undef TEXT_FIELD
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) {
    _hak_buf_str(&b, "  ");
    _hak_buf_str(&b, stat_name[i]);
    _hak_buf_pad(&b, 24);
    _hak_buf_dec(&b, s.stat[i]);
    _hak_buf_pad(&b, 40);
    _hak_buf_str(&b, stat_desc[i]);
    _hak_buf_str(&b, "\n");
  }
  put_classes_text(&b, &s);
  put_tiers_text(&b, &s);
  put_latency_text(&b, &s);
  put_syscalls_text(&b, &s);
  put_learned_text(&b, &s);
  put_sites_text(&b, &s);
  put_elo_text(&b, &s);
  _hak_profile_sites_text(&b);
  _hak_buf_flush(&b);
}

HAK_API void hak_stats_json(int fd) {
  snapshot_t s;
  take(&s, true);
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "{\"version\":\"");
  _hak_buf_str(&b, HAK_VERSION_TEXT);
  _hak_buf_str(&b, "\"");
#define JSON_FIELD(type, f, desc)   \
  _hak_buf_str(&b, ",\"" #f "\":"); \
  FIGURE(&b, (s.st.f));
  HAK_STATS_FIELDS(JSON_FIELD)
#undef JSON_FIELD
  _hak_buf_str(&b, ",\"counters\":{");
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) {
    _hak_buf_str(&b, i ? ",\"" : "\"");
    _hak_buf_str(&b, stat_name[i]);
    _hak_buf_str(&b, "\":");
    _hak_buf_dec(&b, s.stat[i]);
  }
  _hak_buf_str(&b, "}");
  put_json(&b, &s);
  _hak_buf_str(&b, ",");
  _hak_profile_sites_json(&b);
  _hak_buf_str(&b, "}\n");
  _hak_buf_flush(&b);
}

void _hak_stats_xml(hak_buf_t *b) {
  snapshot_t s;
  take(&s, true);
  _hak_buf_str(b, "<malloc version=\"hakmem\">\n");
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!s.cls_slabs[2 * c + 1]) continue;
    _hak_buf_str(b, "<size from=\"");
    _hak_buf_dec(b, c > 1 ? hak_class_size(c - 1) + 1 : 1);
    _hak_buf_str(b, "\" to=\"");
    _hak_buf_dec(b, hak_class_size(c));
    _hak_buf_str(b, "\" slabs=\"");
    _hak_buf_dec(b, s.cls_slabs[2 * c]);
    _hak_buf_str(b, "\" in_use=\"");
    _hak_buf_dec(b, s.cls_used[c]);
    _hak_buf_str(b, "\"/>\n");
  }
#define XML_FIELD(type, f, desc)                     \
  _hak_buf_str(b, "<total type=\"" #f "\" size=\""); \
  FIGURE(b, (s.st.f));                               \
  _hak_buf_str(b, "\"/>\n");
  HAK_STATS_FIELDS(XML_FIELD)
#undef XML_FIELD
  _hak_buf_str(b, "</malloc>\n");
  _hak_buf_flush(b);
}

void _hak_stats_exit_report(void) {
  long mode = hak_opt(HAK_OPT_STATS);
  int fd = (int)hak_opt(HAK_OPT_STATS_FD);
  if (mode == 1) {
    hak_stats_t st;
    hak_stats(&st);
    hak_buf_t b = {.fd = fd};
    line(&b, &st);
    _hak_buf_flush(&b);
  } else if (mode == 2) {
    hak_stats_print(fd);
  } else if (mode == 3) {
    hak_stats_json(fd);
  }
}
