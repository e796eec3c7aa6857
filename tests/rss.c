/* tests/rss.c — memory goes back to the OS (DESIGN.md section 5), measured
 * as VmRSS from /proc/self/status (read with open/read: no allocation).
 *
 * Each case runs in a fresh process (this program again, with a mode), so
 * nothing of the rest of the suite is resident:
 *   trim   about 1 GiB in blocks of 16 B .. 8 MiB (log-uniform, as in
 *          shared/probes/rss_return.c), every byte touched, all freed; then
 *          malloc_trim(0) returns 1 and RSS < 32 MiB
 *   idle   the same without malloc_trim: 1.5 s later (past the BigCache
 *          decay) and one small malloc/free, RSS < 64 MiB
 *   unmap  80 MiB of 4 KiB blocks (more than one reservation), freed in
 *          order, so the slabs the thread freed into last, its refill
 *          hint among them, lie in the last reservation; malloc_trim(0)
 *          unmaps it (hak_stats says so); then 4 KiB blocks are allocated
 *          and written again (a refill that trusted a hint into the
 *          unmapped SuperSlab crashed here)
 *   delay  with the budget at its minimum (4 MiB: HAKMEM_RETAIN_SHARE=0),
 *          6 MiB of 512 KiB blocks freed (past the budget, under twice
 *          it) are not purged at once, and are 50 ms later (past the
 *          purge delay) at the next free; 24 MiB freed at once (past
 *          twice the budget) are purged right away and RSS drops; `delay0`
 *          (HAKMEM_PURGE_DELAY_MS=0) purges the 6 MiB at once
 *   refault  HAKMEM_RETAIN_SHARE=0 (the budget is 4 MiB), HAKMEM_ACE=1 and
 *          HAKMEM_REFAULT_KEEP_MS=5000: 24 MiB of 1 KiB blocks allocated
 *          and freed three times. The first free purges them (past twice
 *          the budget); the second round takes them back, faulting 12 MiB
 *          and more in again, which the report's "keep" then says; so the
 *          second free keeps them, and the third round faults in at most a
 *          quarter of what the second did. `refault0` (HAKMEM_ACE=0 and
 *          HAKMEM_ROOM_MB=0): the third round faults in at least half as
 *          much as the second, keep 0. `refault-lapse`
 *          (HAKMEM_REFAULT_KEEP_MS=20): 400 ms after the second round (20
 *          halvings), the keep is below 64 KiB and a refill (a class not
 *          used before) purges the empty memory down to the budget: at
 *          most 8 MiB empty
 *   burst  the same rounds six times with HAKMEM_ACE=0: the second
 *          round's refaults grow the static budget's working room as
 *          reuse does, and the room counts up to the memory in use at its
 *          recent reuses (24 MiB), not at the free (none), so rounds 4-6
 *          fault in at most a quarter of what the second did; 0.5 s later (past
 *          the 100-200 ms the memory in use at a reuse counts for) the
 *          room is back within the memory in use and a refill purges the
 *          empty memory down to the budget (at most 8 MiB empty)
 *   yield  HAKMEM_RETAIN_SHARE=0, HAKMEM_ROOM_MB=0, HAKMEM_ACE=1: the
 *          second of two rounds of 1 KiB blocks takes purged memory back,
 *          and its free (one block in 1024 stays, so that no SuperSlab is
 *          wholly free) keeps at least 16 MiB empty; then 40 MiB of 36 KB
 *          blocks commit fresh runs: ACE yields once (the report's
 *          `yielded`), and what it kept is purged (at most 8 MiB empty);
 *          a third round of small blocks refaults, and it stands again
 *          (`yields` 0, a keep). `yield0` (HAKMEM_ACE=0): never yields,
 *          and the static budget purges the same
 *   reuse  HAKMEM_ACE=1: the purge delay follows the reuse ages; `reuse0`
 *          without (mode_reuse says how)
 *   epoch  HAKMEM_ACE=1 and HAKMEM_ELO=1: the epochs last that delay;
 *          `epoch0` without HAKMEM_ACE: the option's length
 *   elo    HAKMEM_ELO=1: the cheapest policy leads, and loses the lead
 *          when the program changes (mode_elo says how; not in the run
 *          without the mixed workload)
 *   spares with HAKMEM_RETAIN_SHARE=1 (the budget is the memory in use),
 *          48 MiB of 8 KiB blocks freed beside 64 MiB of Large blocks are
 *          kept as spare slabs; once the Large blocks are freed too, 50 ms
 *          later the next refill gives the spares back and they are purged
 *          (at least 32 MiB, RSS down as much, empty memory <= 8 MiB)
 *   mixed  RSS_SECONDS (default 30; 0 skips it) of 2 threads allocating
 *          and freeing random sizes 16 B .. 4 MiB (mostly small) with a live
 *          set that follows a triangle wave between 80 and 120 MiB (six
 *          periods, so each third of the run sees the same two). RSS and the
 *          live bytes (the sizes requested) are sampled 60 times (every 0.5 s for 30 s): at every
 *          sample RSS <= 1.5 x live + 48 MiB, live being the higher of
 *          this sample's and the one before (the live set dips below its
 *          wave for a moment when a thread is descheduled between its
 *          frees and its mallocs; RSS cannot follow such a dip, and the
 *          6 s run, which samples every 0.1 s, failed on one at times:
 *          RSS 162.3 MiB, live 74.4, limit 159.6), and no creep: the mean RSS of
 *          the last third is at most 10 % above that of the first third (the
 *          mean, not the highest sample: one sample can catch memory freed
 *          a few milliseconds before, not yet past the purge delay).
 *          Blocks are shared between the threads (half the frees are
 *          remote), every page of a block is written, and each block's
 *          words are checked when it is freed. A line with the figures (and
 *          hakmem's own, at the sample closest to the bound) is printed.
 *          Run again with HAKMEM_ACE=1: what it keeps must hold the same
 *          bound (it yields when the load grows past it: 27 of 60 samples
 *          were over before it did).
 * Needs hakmem as the process malloc (-lhakmem, or LD_PRELOAD): the plain
 * glibc binary run without it only prints that it skips, unless
 * RSS_ANY_MALLOC=1, which runs the cases under whatever malloc the process
 * has, to compare (LD_PRELOAD another allocator, or none for glibc).
 * `rss MODE` runs one case directly. */
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "util.h"

#define GiB ((size_t)1 << 30)

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static double rss_mib(void) { return (double)rss_kb() / 1024.0; }

/* ---- trim and idle: a 1 GiB burst ------------------------------------- */
enum { MAXB = 1 << 16 };
static void *blk[MAXB];

/* Allocates about 1 GiB, touching every byte; returns the block count. */
static int burst(void) {
  uint64_t x = 0x9E3779B97F4A7C15ULL;
  size_t total = 0;
  int n = 0, null = 0;
  while (total < GiB && n < MAXB) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    int shift = 4 + (int)(x % 20); /* 16 B .. 8 MiB, log-uniform */
    size_t sz = ((size_t)1 << shift) + (x >> 40) % ((size_t)1 << shift);
    if (sz > 8 * MiB) sz = 8 * MiB;
    char *p = malloc(sz);
    if (!p) {
      null++;
      break;
    }
    memset(p, 1, sz);
    blk[n++] = p;
    total += sz;
  }
  CHECKV("the 1 GiB burst is allocated", null == 0 && total >= GiB, "%zu bytes in %d blocks", total, n);
  return n;
}

/* The burst, checked resident at its peak (*peak), then freed; returns
 * the RSS right after the frees. */
static double burst_freed(double *peak) {
  int n = burst();
  *peak = rss_mib();
  CHECKV("the burst is resident (RSS >= 900 MiB at its peak)", *peak >= 900, "%.1f MiB", *peak);
  for (int i = 0; i < n; i++) free(blk[i]);
  return rss_mib();
}

static int mode_trim(void) {
  double peak, after_free = burst_freed(&peak);
  int r = malloc_trim(0);
  double after_trim = rss_mib();
  printf("trim: RSS peak %.1f MiB, after free %.1f MiB, after malloc_trim %.1f MiB\n", peak, after_free,
         after_trim);
  CHECKV("malloc_trim(0) after freeing 1 GiB returns 1", r == 1, "returned %d", r);
  CHECKV("after freeing 1 GiB and malloc_trim(0), RSS < 32 MiB", after_trim < 32,
         "%.1f MiB (%.1f MiB before malloc_trim)", after_trim, after_free);
  return th_done();
}

static int mode_unmap(void) {
  enum { N = 80 * 256 };
  static char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = malloc(LAUNDER((size_t)4096));
    if (!p[i]) return CHECK("80 MiB of 4 KiB blocks allocated", 0), th_done();
    p[i][0] = (char)i;
  }
  for (int i = 0; i < N; i++) free(p[i]);
  hak_stats_t before = {0}, after = {0};
  if (hak.stats) hak.stats(&before);
  int r = malloc_trim(0);
  if (hak.stats) hak.stats(&after);
  CHECKV("malloc_trim(0) after freeing 80 MiB returns 1", r == 1, "returned %d", r);
  if (hak.stats)
    CHECKV("malloc_trim(0) unmapped at least one 64 MiB reservation",
           after.unmapped - before.unmapped >= 64 * MiB, "%.1f MiB unmapped",
           (double)(after.unmapped - before.unmapped) / MiB);
  int intact = 1;
  for (int i = 0; i < 64; i++) {
    p[i] = malloc(LAUNDER((size_t)4096));
    memset(p[i], i, 4096);
  }
  for (int i = 0; i < 64; i++) {
    for (int k = 0; k < 4096; k++) intact &= p[i][k] == (char)i;
    free(p[i]);
  }
  CHECK("after the unmap, 64 blocks of 4 KiB allocated, written and read back", intact);
  return th_done();
}

/* After malloc_trim(0), n blocks of sz bytes, block i written whole with
 * byte i; 0 (checked as `what`) if one could not be allocated. */
static int trim_then_alloc(char **p, int n, size_t sz, const char *what) {
  malloc_trim(0);
  for (int i = 0; i < n; i++) {
    p[i] = malloc(LAUNDER(sz));
    if (!p[i]) return CHECK(what, 0);
    memset(p[i], i, sz);
  }
  return 1;
}

/* n blocks of 1 KiB allocated (every page written) and freed, but for
 * every pin-th (none with pin 0); the bytes of purged memory the
 * allocations took back. */
static size_t refault_round_pinned(char **p, size_t n, size_t pin) {
  hak_stats_t s0, s1;
  hak.stats(&s0);
  for (size_t i = 0; i < n; i++) {
    p[i] = malloc(LAUNDER(1000));
    if (p[i]) memset(p[i], 0x3D, 1000);
  }
  hak.stats(&s1);
  for (size_t i = 0; i < n; i++)
    if (!pin || i % pin) free(p[i]);
  return (size_t)(s1.purged_reused - s0.purged_reused);
}

static size_t refault_round(char **p, size_t n) { return refault_round_pinned(p, n, 0); }

static char json[1 << 17];

static long long refault_keep(void) {
  stats_json(json, sizeof json, NULL);
  const char *a = strstr(json, "\"ace\":{");
  return a ? json_field(a, "keep") : -1;
}

static int mode_refault(const char *mode) {
  enum { N = 24 * 1024 };
  static char *p[N];
  int ace = strcmp(mode, "refault0") != 0;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  refault_round(p, N);
  size_t second = refault_round(p, N);
  long long keep = refault_keep();
  CHECKV("the second round takes back at least 12 MiB of purged memory", second >= 12 * MiB, "%.1f MiB",
         (double)second / MiB);
  if (ace)
    CHECKV("HAKMEM_ACE: the report keeps what was taken back", keep == (long long)second,
           "keep %lld, taken back %zu", keep, second);
  else CHECKV("HAKMEM_ACE=0: nothing kept", keep == 0, "keep %lld", keep);
  if (strcmp(mode, "refault-lapse") == 0) {
    sleep_s(0.4);
    keep = refault_keep();
    CHECKV("20 halvings later, the keep has lapsed", keep >= 0 && keep < 64 * 1024, "keep %lld", keep);
    free(malloc(LAUNDER(24 * 1024))); /* a refill: the budget is checked */
    hak_stats_t s;
    hak.stats(&s);
    CHECKV("and a refill purges the empty memory down to the budget", s.empty <= 8 * MiB, "empty %.1f MiB",
           (double)s.empty / MiB);
    return th_done();
  }
  size_t third = refault_round(p, N);
  if (ace)
    CHECKV("HAKMEM_ACE: the third round faults in at most a quarter of what the second did",
           third <= second / 4, "%.1f MiB, then %.1f MiB", (double)second / MiB, (double)third / MiB);
  else
    CHECKV("HAKMEM_ACE=0, no room: the third round faults it all in again", third >= second / 2,
           "%.1f MiB, then %.1f MiB", (double)second / MiB, (double)third / MiB);
  return th_done();
}

/* burst (see the top): a repeated burst earns the static budget's room. */
static int mode_burst(void) {
  enum { N = 24 * 1024, ROUNDS = 6 };
  static char *p[N];
  size_t fault[ROUNDS];
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  for (int r = 0; r < ROUNDS; r++) fault[r] = refault_round(p, N);
  hak_stats_t s;
  hak.stats(&s);
  printf("burst: 24 MiB allocated and freed %d times, MiB faulted in again:", ROUNDS);
  for (int r = 1; r < ROUNDS; r++) printf(" %.1f", (double)fault[r] / MiB);
  printf("; then %.1f MiB empty, room %.1f MiB\n", (double)s.empty / MiB, (double)s.room / MiB);
  CHECKV("the second round takes back at least 12 MiB of purged memory", fault[1] >= 12 * MiB, "%.1f MiB",
         (double)fault[1] / MiB);
  size_t later = 0;
  for (int r = 3; r < ROUNDS; r++) later += fault[r];
  CHECKV("the room keeps the burst: rounds 4-6 fault in at most a quarter of what the second did",
         later <= fault[1] / 4, "%.1f MiB, then %.1f MiB in rounds 4-6", (double)fault[1] / MiB,
         (double)later / MiB);
  CHECKV("everything freed, the room keeps up to the memory lately in use", s.room >= 12 * MiB,
         "room %.1f MiB", (double)s.room / MiB);
  /* Half a second on (past twice HAK_ROOM_PEAK_MS, within the lapse), the
   * room follows the memory in use down: the program stopped. */
  sleep_s(0.5);
  free(malloc(LAUNDER(24 * 1024))); /* a refill: the budget is checked */
  hak.stats(&s);
  CHECKV("0.5 s later the room is back within the memory in use", s.room <= 4 * MiB, "room %.1f MiB",
         (double)s.room / MiB);
  CHECKV("and a refill purges the empty memory down to the budget", s.empty <= 8 * MiB, "empty %.1f MiB",
         (double)s.empty / MiB);
  return th_done();
}

/* HAKMEM_ACE's yield: its keep, and whether it yields (-1: no report). */
static void ace_look(long long *keep, long long *yields, long long *yielded) {
  stats_json(json, sizeof json, NULL);
  const char *a = strstr(json, "\"ace\":{");
  *keep = a ? json_field(a, "keep") : -1;
  *yields = a ? json_field(a, "yields") : -1;
  *yielded = a ? json_field(a, "yielded") : -1;
}

static int mode_yield(int ace) {
  enum { N = 24 * 1024, POOL_N = 1200, POOL_SIZE = 36000, PIN = 1024 };
  static char *p[N], *q[POOL_N], *r[N];
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  refault_round(p, N);
  /* The second round faults the purged units in again (ACE keeps them),
   * and leaves one block in 1024 live: no SuperSlab is wholly free, so
   * neither a pool nor a Large block can take one whole. */
  size_t back = refault_round_pinned(p, N, PIN);
  hak_stats_t s0, s1;
  long long keep, yields, yielded;
  ace_look(&keep, &yields, &yielded);
  hak.stats(&s0);
  CHECKV("the second round takes back at least 12 MiB of purged memory", back >= 12 * MiB, "%.1f MiB",
         (double)back / MiB);
  if (ace)
    CHECKV("HAKMEM_ACE keeps it: at least 16 MiB empty, not yielding",
           s0.empty >= 16 * MiB && keep > 0 && yields == 0 && yielded == 0,
           "empty %.1f MiB, keep %lld, yields %lld, yielded %lld", (double)s0.empty / MiB, keep, yields,
           yielded);
  /* Blocks of a pool class commit fresh runs, as much as is kept and
   * more: ACE yields, and the next refills purge what it kept. */
  for (size_t i = 0; i < POOL_N; i++) {
    q[i] = malloc(LAUNDER(POOL_SIZE));
    if (q[i]) memset(q[i], 0x5A, POOL_SIZE);
  }
  ace_look(&keep, &yields, &yielded);
  hak.stats(&s1);
  if (ace)
    CHECKV("after 40 MiB committed fresh, HAKMEM_ACE has yielded once", yielded == 1, "yielded %lld",
           yielded);
  else
    CHECKV("HAKMEM_ACE=0: never yields", yields == 0 && yielded == 0, "yields %lld, yielded %lld", yields,
           yielded);
  CHECKV("what was kept is purged: at most 8 MiB empty", s1.empty <= 8 * MiB, "empty %.1f MiB",
         (double)s1.empty / MiB);
  /* Small blocks again: purged units fault in, a refault: ACE stands again. */
  refault_round(r, N);
  ace_look(&keep, &yields, &yielded);
  if (ace)
    CHECKV("a refault: it stands again, keeping what came back", yields == 0 && yielded == 1 && keep > 0,
           "yields %lld, yielded %lld, keep %lld", yields, yielded, keep);
  for (size_t i = 0; i < POOL_N; i++) free(q[i]);
  for (size_t i = 0; i < N; i += PIN) free(p[i]);
  return th_done();
}

/* HAKMEM_ELO's leader and figures from the JSON report: the leader's
 * name into lead (16 bytes), the epochs in all and explored, the sum of
 * the policies' epochs, and hoard's. */
typedef struct {
  char lead[16];
  long long epochs, explored, sum, hoard; /* hoard: the epochs it ran */
} elo_seen_t;

static elo_seen_t elo_look(void) {
  elo_seen_t e = {.epochs = -1};
  stats_json(json, sizeof json, NULL);
  const char *o = strstr(json, "\"elo\":{"), *l = o ? strstr(o, "\"leader\":\"") : NULL;
  if (!l) return e;
  sscanf(l + 10, "%15[a-z]", e.lead);
  e.epochs = json_field(o, "epochs");
  e.explored = json_field(o, "explored");
  for (const char *p = strstr(o, "{\"name\""); p; p = strstr(p + 1, "{\"name\""))
    e.sum += json_field(p, "epochs");
  const char *h = strstr(o, "{\"name\":\"hoard\"");
  e.hoard = h ? json_field(h, "epochs") : -1;
  return e;
}

/* HAKMEM_ELO=1 with 20 ms epochs, a 1 MiB budget (HAKMEM_RETAIN_SHARE=0,
 * HAKMEM_RETAIN_KB=1024) and a MiB worth 20 ms a second
 * (HAKMEM_ELO_MIB_US=20000). First bursts: 12 MiB of 1 KiB blocks
 * allocated, written and freed, again and again. That is past twice even
 * keep's budget (4 MiB): every policy but hoard purges it at once and
 * faults it in again (3072 faults a burst, about 27 ms here against 3 for
 * the burst without them), hoard keeps it (the budget is the peak). With
 * HAKMEM_ROOM_MB=0: the refaults would earn static and keep a working
 * room that keeps the burst as hoard does (`burst`). A
 * burst is shorter than an epoch, so a policy's trial sees what it does to
 * the next burst. (With 40 MiB bursts, longer than the epochs, no trial
 * saw it and hoard did not lead; with 24 MiB and the default budget, keep
 * kept them too.) So hoard is the cheapest, and must lead within 30 s and
 * run at least 60 % of the epochs of the next 3 s (a noisy game may give
 * another the lead for a while). Then quiet: a few blocks of a class after
 * another, 1 ms apart, a 256 KiB block freed each time (the budget is
 * looked at, so epochs end), and every 100 rounds a burst of 4 MiB, which
 * hoard keeps and the others purge. The program mostly waits, so memory is
 * most of the cost, and hoard keeps 12 MiB more than the others: it must
 * lose the lead within 60 s. Throughout, at most 1 epoch in 10 explores
 * and the policies' epochs add up. Under two busy loops hoard led after
 * 0.7-16 s and ran 90-91 % of the next epochs, and lost the lead 2-13 s
 * into the quiet: the release and the LD_PRELOAD runs only (RSS_SECONDS >
 * 0). */
static int mode_elo(void) {
  enum { N = 12 * 1024 };
  static char *p[N];
  if (!CHECK("hak_stats_json is available", hak.stats_json != NULL)) return th_done();
  elo_seen_t e = elo_look();
  CHECKV("the report names the leader", e.epochs >= 0 && strcmp(e.lead, "static") == 0, "%s %lld", e.lead,
         e.epochs);
  double t0 = now_s(), led = -1;
  elo_seen_t from = e;
  for (; now_s() < t0 + (led < 0 ? 30 : led + 3); refault_round(p, N)) {
    e = elo_look();
    if (strcmp(e.lead, "hoard") == 0 && led < 0) {
      led = now_s() - t0;
      from = e;
    }
  }
  long long share = e.epochs > from.epochs ? 100 * (e.hoard - from.hoard) / (e.epochs - from.epochs) : 0;
  printf("elo: hoard led after %.2f s, then ran %lld %% of %lld epochs (%lld explored in all)\n", led, share,
         e.epochs - from.epochs, e.explored);
  CHECKV("bursts: hoard, which purges nothing below the peak, leads and runs most epochs of the next 3 s",
         led >= 0 && share >= 60, "led after %.1f s, then %lld %%", led, share);
  CHECKV("at most 1 epoch in 10 explores", e.explored * 10 <= e.epochs + 2, "%lld of %lld", e.explored,
         e.epochs);
  CHECKV("the policies' epochs add up to the epochs", e.sum == e.epochs, "%lld of %lld", e.sum, e.epochs);
  double t1 = now_s(), lost = -1;
  for (unsigned k = 0; now_s() < t1 + 60 && lost < 0; k++) {
    for (int i = 0; i < 16; i++) p[i] = malloc(LAUNDER(16 + 16 * (k % 200)));
    for (int i = 0; i < 16; i++) free(p[i]);
    free(malloc(LAUNDER(256 * 1024)));         /* a pool run freed: the budget is looked at */
    if (k % 100 == 0) refault_round(p, N / 3); /* 4 MiB: hoard keeps it, the others not */
    sleep_s(0.001);
    if (k % 16 == 0 && strcmp((e = elo_look()).lead, "hoard") != 0) lost = now_s() - t1;
  }
  printf("elo: then %s led after %.2f s (%lld epochs, %lld explored)\n", e.lead, lost, e.epochs, e.explored);
  CHECKV("quiet: memory is the cost, and hoard loses the lead", lost >= 0, "leader %s", e.lead);
  CHECKV("at most 1 epoch in 10 explores", e.explored * 10 <= e.epochs + 2, "%lld of %lld", e.explored,
         e.epochs);
  return th_done();
}

static int mode_delay(int with_delay) {
  enum { N = 64, FIRST = 12, BURST = 48 };
  const size_t sz = 512 << 10;
  static char *p[N];
  hak_stats_t s0, s1, s2;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  if (!trim_then_alloc(p, N, sz, "64 blocks of 512 KiB allocated")) return th_done();
  hak.stats(&s0);
  for (int i = 0; i < FIRST; i++) free(p[i]);
  hak.stats(&s1);
  double at_once = (double)(s1.purged - s0.purged) / MiB;
  if (with_delay) {
    CHECKV("6 MiB freed past the 4 MiB budget (not past twice it): nothing purged at once", at_once < 1,
           "%.1f MiB purged", at_once);
    sleep_s(0.05);
    free(p[FIRST]); /* the next free purges what has aged */
    hak.stats(&s2);
    CHECKV("50 ms later (past the purge delay) the next free purges them, down to 3/4 of the budget",
           s2.purged - s1.purged >= 3 * MiB, "%.1f MiB purged", (double)(s2.purged - s1.purged) / MiB);
  } else {
    CHECKV("HAKMEM_PURGE_DELAY_MS=0: purged at once, down to 3/4 of the budget", at_once >= 3,
           "%.1f MiB purged", at_once);
    free(p[FIRST]);
  }
  double before = rss_mib();
  hak.stats(&s1);
  for (int i = FIRST + 1; i <= FIRST + BURST; i++) free(p[i]);
  hak.stats(&s2);
  double after = rss_mib();
  CHECKV("24 MiB freed at once (past twice the budget): at least 16 MiB purged right away",
         s2.purged - s1.purged >= 16 * MiB, "%.1f MiB purged", (double)(s2.purged - s1.purged) / MiB);
  CHECKV("and RSS drops by at least 16 MiB", before - after >= 16, "%.1f MiB -> %.1f MiB", before, after);
  for (int i = FIRST + BURST + 1; i < N; i++) free(p[i]);
  return th_done();
}

/* ---- reuse: the purge delay follows the reuse ages (HAKMEM_ACE) --------
 * With the budget at 4 MiB (HAKMEM_RETAIN_SHARE=0), no working room
 * (HAKMEM_ROOM_MB=0) and nothing kept for refaults past a millisecond
 * (HAKMEM_REFAULT_KEEP_MS=1): 20 rounds of 6 MiB of 512 KiB blocks freed
 * (past the budget, not past twice it), 40 ms of quiet, a free (which
 * purges what has aged past the delay), and the 6 MiB allocated again.
 * With the 10 ms delay every round purges at least 3 MiB and faults it in
 * again. `reuse` (HAKMEM_ACE=1): the reuse ages (40 ms and more) ask for a
 * delay of twice their bucket's end, which the report says (at least 40
 * ms), and the last 8 rounds fault in less than 1 MiB. `reuse0`
 * (HAKMEM_ACE=0): at least 3 MiB a round, and no delay in the report.
 * `epoch` (HAKMEM_ACE=1, HAKMEM_ELO=1 with 20 ms epochs): after the same
 * rounds, HAKMEM_ELO's epochs last as long as the delay the reuse ages ask
 * for (at least 40 ms); `epoch0` (HAKMEM_ACE=0): the option's 20 ms. */
enum { REUSE_N = 64, REUSE_FREED = 12, REUSE_ROUNDS = 20, REUSE_LAST = 8 };
static const size_t reuse_size = 512 << 10;

/* The rounds; s0: the statistics before the last REUSE_LAST. */
static bool reuse_rounds(char **p, hak_stats_t *s0) {
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return false;
  if (!trim_then_alloc(p, REUSE_N, reuse_size, "64 blocks of 512 KiB allocated")) return false;
  for (int r = 0; r < REUSE_ROUNDS; r++) {
    if (r == REUSE_ROUNDS - REUSE_LAST) hak.stats(s0);
    for (int i = 0; i < REUSE_FREED; i++) free(p[i]);
    sleep_s(0.04);
    free(p[REUSE_FREED]); /* purges what has aged past the delay */
    p[REUSE_FREED] = malloc(LAUNDER(reuse_size));
    for (int i = 0; i < REUSE_FREED; i++) {
      p[i] = malloc(LAUNDER(reuse_size));
      if (p[i]) memset(p[i], 0x5A, reuse_size);
    }
  }
  return true;
}

static int mode_reuse(int ace) {
  static char *p[REUSE_N];
  hak_stats_t s0, s1;
  if (!reuse_rounds(p, &s0)) return th_done();
  hak.stats(&s1);
  stats_json(json, sizeof json, NULL);
  const char *a = strstr(json, "\"ace\":{");
  long long delay = a ? json_field(a, "purge_delay_us") : -1;
  double refaulted = (double)(s1.purged_reused - s0.purged_reused) / MiB;
  if (ace) {
    CHECKV("HAKMEM_ACE: the purge delay follows the reuse ages (40 ms and more)", delay >= 40000, "%lld us",
           delay);
    CHECKV("and the last rounds fault in almost nothing again", refaulted < 1, "%.1f MiB in %d rounds",
           refaulted, REUSE_LAST);
  } else {
    CHECKV("HAKMEM_ACE=0: the purge delay is the option's", delay == 0, "%lld us", delay);
    CHECKV("and every round faults in at least 3 MiB again", refaulted >= 3 * REUSE_LAST,
           "%.1f MiB in %d rounds", refaulted, REUSE_LAST);
  }
  for (int i = 0; i < REUSE_N; i++) free(p[i]);
  return th_done();
}

static int mode_epoch(int ace) {
  static char *p[REUSE_N];
  hak_stats_t s0;
  if (!reuse_rounds(p, &s0)) return th_done();
  stats_json(json, sizeof json, NULL);
  const char *e = strstr(json, "\"elo\":{");
  long long len = e ? json_field(e, "epoch_ms") : -1;
  if (ace)
    CHECKV(
        "HAKMEM_ACE and HAKMEM_ELO: an epoch lasts the purge delay the reuse ages ask for (40 ms and more)",
        len >= 40, "%lld ms", len);
  else CHECKV("HAKMEM_ELO alone: an epoch lasts HAKMEM_ELO_EPOCH_MS", len == 20, "%lld ms", len);
  for (int i = 0; i < REUSE_N; i++) free(p[i]);
  return th_done();
}

/* ---- spares: empty slabs kept while the budget was large ---------------
 * With HAKMEM_RETAIN_SHARE=1 the budget is the memory in use: 48 MiB of
 * 8 KiB blocks freed beside 64 MiB of Large blocks stay as the thread's
 * spare slabs. Once the Large blocks are freed too the budget is back at
 * its minimum, but no free adds a spare to give the excess back: 50 ms
 * later (past the purge delay), the thread's next refill of a class gives
 * the spares nobody took back, aged, and they are purged. */
static int mode_spares(void) {
  enum { SMALL = 6144, BIG = 16 };
  static char *small[SMALL], *big[BIG];
  hak_stats_t s0, s1, s2;
  int got = 0;
  for (int i = 0; i < BIG; i++)
    if ((big[i] = malloc(LAUNDER(4 * MiB))) != NULL && ++got) memset(big[i], 1, 4 * MiB);
  for (int i = 0; i < SMALL; i++)
    if ((small[i] = malloc(LAUNDER(8 * KiB))) != NULL && ++got) memset(small[i], 2, 8 * KiB);
  if (!CHECKV("16 blocks of 4 MiB and 6144 of 8 KiB allocated", got == BIG + SMALL, "%d", got))
    return th_done();
  for (int i = 0; i < SMALL; i++) free(small[i]);
  hak.stats(&s0);
  CHECKV("48 MiB of 8 KiB blocks freed within a budget of the memory in use: kept as spares",
         s0.empty >= 32 * MiB, "empty %.1f MiB", (double)s0.empty / MiB);
  for (int i = 0; i < BIG; i++) free(big[i]);
  hak.stats(&s1);
  sleep_s(0.05);
  double before = rss_mib();
  void *q = malloc(LAUNDER((size_t)3000)); /* a class not used yet: a refill */
  hak.stats(&s2);
  double after = rss_mib();
  CHECK("malloc(3000)", q != NULL);
  free(q);
  CHECKV("past the purge delay, the next refill gives the spares back and they are purged",
         s2.purged - s1.purged >= 32 * MiB, "%.1f MiB purged, empty %.1f -> %.1f MiB",
         (double)(s2.purged - s1.purged) / MiB, (double)s1.empty / MiB, (double)s2.empty / MiB);
  CHECKV("empty memory back within twice the minimum budget", s2.empty <= 8 * MiB, "%.1f MiB",
         (double)s2.empty / MiB);
  CHECKV("and RSS drops by at least 32 MiB", before - after >= 32, "%.1f MiB -> %.1f MiB", before, after);
  return th_done();
}

/* ---- room: a churn keeps its working room, a burst does not ----------- */
/* 40 blocks of 1 MiB, written whole; each round frees 12 of them and
 * allocates 12 again (the runs just freed come back). Both cases run with
 * HAKMEM_PURGE_DELAY_MS=0, so that only the room keeps memory from being
 * purged. With the working room (HAKMEM_ROOM_MB, default) the churn earns
 * the room by that reuse and, after a few rounds, purges nothing; with
 * HAKMEM_ROOM_MB=0 (the control, `room0`) every round purges what is past
 * a quarter of the memory in use. Three seconds without reuse, the room has lapsed. Then
 * everything is freed: the freed blocks are purged at once either way. */
enum { ROOM_N = 40, ROOM_K = 12 };
static char *room_p[ROOM_N];

/* Round r of the room churn: 12 of the 40 blocks freed (*mid: the stats
 * then) and allocated again, written whole. 0 if malloc failed. */
static int room_round(int r, hak_stats_t *mid) {
  for (int k = 0; k < ROOM_K; k++) free(room_p[(r * 7 + k) % ROOM_N]);
  hak.stats(mid);
  for (int k = 0; k < ROOM_K; k++) {
    char *q = room_p[(r * 7 + k) % ROOM_N] = malloc(LAUNDER(MiB));
    if (!q) return 0;
    memset(q, r, MiB);
  }
  return 1;
}

/* A room is as large as its evidence. 40 blocks of 1 MiB live; 9 of them
 * freed (a quarter of the memory in use is the budget: past it, what they
 * leave empty is purged) and allocated again, which faults a few MiB the
 * budget purged in again; then 12 rounds that free 8 and allocate them
 * again, all within the budget, so each reuses 8 MiB and faults nothing
 * in. The room that reuse grows is at most 4 times the memory faulted in
 * again (the three refaults of CPython's JSON step, 1.1 MiB in all, once
 * let it grow to 46 MiB, which kept 17 MiB its pool freed while a large
 * block mapped fresh pages); so 20 blocks freed at the end are purged
 * past it. Run with HAKMEM_PURGE_DELAY_MS=0. */
/* p[0..n) freed, then allocated again and written whole with `fill`; 0
 * if malloc failed. */
static int replace_blocks(char **p, int n, int fill) {
  for (int i = 0; i < n; i++) free(p[i]);
  for (int i = 0; i < n; i++) {
    if ((p[i] = malloc(LAUNDER(MiB))) == NULL) return 0;
    memset(p[i], fill, MiB);
  }
  return 1;
}

static int mode_room_proof(void) {
  enum { SEED = 9, CHURN = 8, ROUNDS = 12, BURST = 20 };
  hak_stats_t s0, s;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  if (!trim_then_alloc(room_p, ROOM_N, MiB, "40 blocks of 1 MiB allocated")) return th_done();
  hak.stats(&s0);
  if (!replace_blocks(room_p, SEED, 0)) return CHECK("1 MiB blocks allocated again", 0), th_done();
  hak.stats(&s);
  size_t seed = (size_t)(s.purged_reused - s0.purged_reused), room_most = 0, refaulted = 0;
  CHECKV("9 MiB freed and allocated again fault purged memory in again", seed >= MiB, "%.1f MiB",
         (double)seed / MiB);
  int proven = 1;
  for (int r = 0; r < ROUNDS; r++) {
    if (!replace_blocks(room_p + SEED, CHURN, r)) return CHECK("1 MiB blocks allocated again", 0), th_done();
    hak.stats(&s);
    refaulted = (size_t)(s.purged_reused - s0.purged_reused);
    if (s.room > room_most) room_most = s.room;
    proven &= s.room <= 4 * refaulted;
  }
  for (int i = 0; i < BURST; i++) free(room_p[ROOM_N - 1 - i]);
  hak.stats(&s);
  printf("room-proof: %.1f MiB faulted in again, room at most %.1f MiB; %d MiB freed: %.1f MiB empty kept\n",
         (double)refaulted / MiB, (double)room_most / MiB, BURST, (double)s.empty / MiB);
  CHECKV("the room is at most 4 times the memory faulted in again, at every round", proven,
         "room at most %.1f MiB, %.1f MiB faulted in again", (double)room_most / MiB,
         (double)refaulted / MiB);
  size_t budget = 4 * refaulted > s.in_use / 4 ? 4 * refaulted : s.in_use / 4;
  if (budget < 4 * MiB) budget = 4 * MiB;
  CHECKV("20 MiB freed: what is past that room (and a quarter of the memory in use) is purged",
         s.empty <= budget + MiB, "%.1f MiB empty, %.1f MiB in use", (double)s.empty / MiB,
         (double)s.in_use / MiB);
  for (int i = 0; i < ROOM_N - BURST; i++) free(room_p[i]);
  return th_done();
}

static int mode_room(int with_room) {
  enum { ROUNDS = 24, WARM = 12 };
  hak_stats_t s;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  if (!trim_then_alloc(room_p, ROOM_N, MiB, "40 blocks of 1 MiB allocated")) return th_done();
  uint64_t purged0 = 0;
  size_t room_least = SIZE_MAX;
  for (int r = 0; r < ROUNDS; r++) {
    if (r == WARM) {
      hak.stats(&s);
      purged0 = s.purged;
    }
    if (!room_round(r, &s)) return CHECK("1 MiB blocks allocated again", 0), th_done();
    if (r >= WARM && s.room < room_least) room_least = s.room;
  }
  hak.stats(&s);
  double purged = (double)(s.purged - purged0) / MiB;
  printf(
      "room%s: %d rounds of 12 MiB freed and allocated again: %.1f MiB purged after round %d, "
      "room at least %.1f MiB\n",
      with_room ? "" : " (HAKMEM_ROOM_MB=0)", ROUNDS, purged, WARM, (double)room_least / MiB);
  if (with_room) {
    CHECKV("a steady churn earns a working room (at least the 12 MiB it reuses)", room_least >= 12 * MiB,
           "room at least %.1f MiB", (double)room_least / MiB);
    CHECKV("and then purges nothing", purged < 1, "%.1f MiB purged", purged);
  } else {
    CHECKV("HAKMEM_ROOM_MB=0: no working room", room_least == 0, "room at least %.1f MiB",
           (double)room_least / MiB);
    CHECKV("HAKMEM_ROOM_MB=0: each round purges what is past the budget", purged >= 24, "%.1f MiB purged",
           purged);
  }
  /* The room lapses once the program stops reusing (2^31 TSC ticks: 3 s
   * covers 0.7 GHz), and not while it goes on: a churn at its cap for
   * longer than that keeps it (only growth once counted as reuse, so a
   * room at its cap lapsed under a steady churn). */
  if (with_room) {
    hak.stats(&s);
    uint64_t purged1 = s.purged;
    room_least = SIZE_MAX;
    double end = now_s() + 3.5;
    for (int r = ROUNDS; now_s() < end; r++) {
      if (!room_round(r, &s)) return CHECK("1 MiB blocks allocated again", 0), th_done();
      if (s.room < room_least) room_least = s.room;
      sleep_s(0.05);
    }
    hak.stats(&s);
    CHECKV("3.5 s more of the same churn (the room at its cap): the room stays", room_least >= 12 * MiB,
           "room at least %.1f MiB", (double)room_least / MiB);
    CHECKV("and nothing is purged", s.purged - purged1 < MiB, "%.1f MiB purged",
           (double)(s.purged - purged1) / MiB);
    sleep_s(3);
    hak.stats(&s);
    CHECKV("3 s without reuse: the room has lapsed", s.room == 0, "room %.1f MiB", (double)s.room / MiB);
  }
  for (int i = 0; i < ROOM_N; i++) free(room_p[i]);
  hak.stats(&s);
  CHECKV("everything freed: the empty memory kept is back to the minimum budget (4 MiB)",
         s.empty <= 4 * MiB + MiB, "%.1f MiB empty, room %.1f MiB", (double)s.empty / MiB,
         (double)s.room / MiB);
  return th_done();
}

/* room-unpurged: the same churn with HAKMEM_PURGE_DELAY_MS=1000 and a
 * 16 MiB budget (HAKMEM_RETAIN_KB), so that nothing it frees is ever
 * purged: its reuse costs no page fault, so it earns no working room (a
 * room starts only once memory the budget purged was faulted in again),
 * and the empty memory stays within the budget. The `room` case is the
 * other side: purged at once, the churn's memory faults in again, and
 * then its reuse earns the room. */
static int mode_room_unpurged(void) {
  enum { ROUNDS = 24 };
  hak_stats_t s;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  if (!trim_then_alloc(room_p, ROOM_N, MiB, "40 blocks of 1 MiB allocated")) return th_done();
  hak.stats(&s);
  uint64_t purged0 = s.purged;
  size_t room_most = 0, empty_most = 0;
  for (int r = 0; r < ROUNDS; r++) {
    if (!room_round(r, &s)) return CHECK("1 MiB blocks allocated again", 0), th_done();
    if (s.room > room_most) room_most = s.room;
    if (s.empty > empty_most) empty_most = s.empty;
  }
  hak.stats(&s);
  if (s.room > room_most) room_most = s.room;
  printf(
      "room-unpurged: %d rounds of 12 MiB freed and allocated again: %.1f MiB purged, room at most %.1f MiB, "
      "empty at most %.1f MiB\n",
      ROUNDS, (double)(s.purged - purged0) / MiB, (double)room_most / MiB, (double)empty_most / MiB);
  CHECKV("nothing the churn frees is purged", s.purged == purged0, "%.1f MiB purged",
         (double)(s.purged - purged0) / MiB);
  CHECKV("so its reuse earns no working room", room_most == 0, "room at most %.1f MiB",
         (double)room_most / MiB);
  CHECKV("and the empty memory stays within the 16 MiB budget", empty_most <= 16 * MiB, "%.1f MiB",
         (double)empty_most / MiB);
  for (int i = 0; i < ROOM_N; i++) free(room_p[i]);
  return th_done();
}

/* ---- remote: large blocks freed by another thread ---------------------- */
/* A thread allocates 32 blocks of 512 KiB (runs of one block in SuperSlabs
 * its heap owns); the main thread frees them (their runs go back through
 * the SuperSlabs' remote lists). Round 2: the thread allocates 32 again,
 * which take those runs: no SuperSlab is added, no more than small change
 * committed. Round 3: after the frees the thread only allocates small
 * blocks; its next slow path takes the runs back all the same, and the
 * 16 MiB, past the budget, are purged. Then it exits holding a last 32
 * (its SuperSlabs become shared), and the main thread frees them too.
 * Run with HAKMEM_ROOM_MB=0: the same 16 MiB allocated again after a
 * purge earn a working room, which would keep them (`burst`). */
enum { RN = 32, RSMALL = 64 };
static char *remote_blocks[RN];
static void *remote_small[RSMALL];
static pthread_barrier_t remote_bar;

static void *remote_worker(void *arg) {
  (void)arg;
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < RN; i++) {
      remote_blocks[i] = malloc(LAUNDER((size_t)512 << 10));
      if (remote_blocks[i]) memset(remote_blocks[i], round * RN + i, (size_t)512 << 10);
    }
    pthread_barrier_wait(&remote_bar); /* the blocks are out */
    pthread_barrier_wait(&remote_bar); /* the main thread has freed them */
    if (round == 2) {
      for (int i = 0; i < RSMALL; i++) remote_small[i] = malloc(LAUNDER((size_t)3000));
      pthread_barrier_wait(&remote_bar); /* small blocks allocated */
      pthread_barrier_wait(&remote_bar); /* the main thread has looked */
      for (int i = 0; i < RSMALL; i++) free(remote_small[i]);
    }
    if (round == 3) break; /* exits holding the last 32 */
  }
  return NULL;
}

static int remote_free_all(int round) {
  int intact = 1;
  for (int i = 0; i < RN; i++) {
    char *q = remote_blocks[i];
    if (!q) return 0;
    intact &= q[0] == (char)(round * RN + i) && q[(512 << 10) - 1] == (char)(round * RN + i);
    free(q);
  }
  return intact;
}

static int mode_remote(void) {
  hak_stats_t s0, s1, s2, s3;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  pthread_t t;
  pthread_barrier_init(&remote_bar, NULL, 2);
  if (!CHECK("a thread starts", pthread_create(&t, NULL, remote_worker, NULL) == 0)) return th_done();
  /* round 1 */
  pthread_barrier_wait(&remote_bar);
  hak.stats(&s0);
  CHECK("32 blocks of 512 KiB, freed by another thread, intact", remote_free_all(0));
  pthread_barrier_wait(&remote_bar);
  /* round 2 */
  pthread_barrier_wait(&remote_bar);
  hak.stats(&s1);
  CHECKV("allocated again, they take the runs given back: no SuperSlab added", s1.superslabs == s0.superslabs,
         "%llu -> %llu", (unsigned long long)s0.superslabs, (unsigned long long)s1.superslabs);
  CHECKV("and less than 1 MiB more committed (not another 16 MiB)", s1.committed <= s0.committed + MiB,
         "%.1f -> %.1f MiB", (double)s0.committed / MiB, (double)s1.committed / MiB);
  CHECK("round 2 blocks intact", remote_free_all(1));
  pthread_barrier_wait(&remote_bar);
  /* round 3 */
  pthread_barrier_wait(&remote_bar);
  CHECK("round 3 blocks intact", remote_free_all(2));
  hak.stats(&s1);
  pthread_barrier_wait(&remote_bar);
  pthread_barrier_wait(&remote_bar); /* the thread allocated small blocks */
  hak.stats(&s2);
  CHECKV("the owner's next slow path takes the runs back: past the budget, they are purged",
         s2.purged - s1.purged >= 8 * MiB, "%.1f MiB purged", (double)(s2.purged - s1.purged) / MiB);
  pthread_barrier_wait(&remote_bar);
  /* round 4: the thread exits holding its blocks */
  pthread_barrier_wait(&remote_bar);
  pthread_barrier_wait(&remote_bar);
  pthread_join(t, NULL);
  hak.stats(&s2);
  CHECK("freed after their thread exited, intact", remote_free_all(3));
  hak.stats(&s3);
  CHECKV("all 16 MiB of them are back (in_use)", s2.in_use - s3.in_use >= (size_t)RN * (512 << 10),
         "in_use %.1f -> %.1f MiB", (double)s2.in_use / MiB, (double)s3.in_use / MiB);
  pthread_barrier_destroy(&remote_bar);
  return th_done();
}

/* ---- many: more pool runs than a heap keeps SuperSlabs for ------------- */
/* 300 blocks of 1 MiB (one per SuperSlab: more than the 128 a heap owns
 * at most, so it gives the emptiest back as it claims more), each marked
 * at both ends, all live together; then freed, and malloc_trim gives
 * every SuperSlab back. */
static int mode_many(void) {
  enum { N = 300 };
  static char *p[N];
  hak_stats_t s0, s1, s2;
  if (!CHECK("hak_stats is available", hak.stats != NULL)) return th_done();
  hak.stats(&s0);
  int ok = 1;
  for (int i = 0; i < N; i++) {
    p[i] = malloc(LAUNDER(MiB));
    if (!p[i]) return CHECK("300 blocks of 1 MiB allocated", 0), th_done();
    p[i][0] = (char)i;
    p[i][MiB - 1] = (char)~i;
  }
  hak.stats(&s1);
  for (int i = 0; i < N; i++) {
    ok &= p[i][0] == (char)i && p[i][MiB - 1] == (char)~i;
    free(p[i]);
  }
  CHECK("300 blocks of 1 MiB live together, intact at both ends", ok);
  CHECKV("they use at least 300 SuperSlabs", s1.superslabs >= s0.superslabs + N, "%llu -> %llu",
         (unsigned long long)s0.superslabs, (unsigned long long)s1.superslabs);
  malloc_trim(0);
  hak.stats(&s2);
  CHECKV("freed and trimmed: in_use back to where it started", s2.in_use <= s0.in_use, "%zu -> %zu bytes",
         s0.in_use, s2.in_use);
  CHECKV("and their reservations unmapped", s2.mapped <= s0.mapped + 64 * MiB, "mapped %.0f -> %.0f MiB",
         (double)s0.mapped / MiB, (double)s2.mapped / MiB);
  return th_done();
}

static int mode_idle(void) {
  double peak, after_free = burst_freed(&peak);
  sleep_s(1.5);
  void *volatile v = malloc(LAUNDER((size_t)64));
  free(v);
  double after_idle = rss_mib();
  printf("idle: RSS peak %.1f MiB, after free %.1f MiB, 1.5 s later %.1f MiB\n", peak, after_free,
         after_idle);
  CHECKV("after freeing 1 GiB, 1.5 s and one small malloc/free, RSS < 64 MiB (no malloc_trim)",
         after_idle < 64, "%.1f MiB (%.1f MiB just after the frees)", after_idle, after_free);
  return th_done();
}

/* ---- mixed: two threads, a live set that rises and falls --------------- */
enum { SLOTS = 16384, NSAMPLES = 60 };
#define LIVE_LO ((double)(80 * MiB))
#define LIVE_HI ((double)(120 * MiB))
#define MAGIC 0x6d697865645f7273ULL

static _Atomic uintptr_t slots[SLOTS];
static atomic_long live_bytes, n_ops, n_null, n_bad;
static atomic_int stop;
static double t_start, period;

/* Mostly small: 80 % 16..256 B (uniform), 15 % 256 B..32 KiB and 4 %
 * 32 KiB..1 MiB (log-uniform), 1 % 1..4 MiB (uniform). By bytes, Large
 * blocks are about 2/3 of the live set and pool blocks most of the rest. */
static size_t pick_size(uint64_t x) {
  unsigned r = (unsigned)(x % 1000);
  x >>= 10;
  if (r < 800) return 16 + x % 241;
  if (r < 990) {
    unsigned lo = r < 950 ? 8 : 15, span = r < 950 ? 7 : 5; /* 2^lo .. 2^(lo+span) */
    unsigned shift = lo + (unsigned)(x % span);
    x >>= 3;
    return ((size_t)1 << shift) + x % ((size_t)1 << shift);
  }
  return MiB + x % (3 * MiB);
}

static uint64_t word_at(uintptr_t p, size_t off) { return mix64(p + off); }

/* Writes the block's header (size, check word), a word every 4 KiB and one
 * at its end (the last 8 bytes, which no other word overlaps): every page
 * it spans is touched, so RSS sees the whole block. */
static void touch(char *p, size_t sz) {
  uintptr_t a = (uintptr_t)p;
  uint64_t h[2] = {sz, sz ^ a ^ MAGIC};
  memcpy(p, h, 16);
  for (size_t off = 4096; off + 16 <= sz; off += 4096) {
    uint64_t w = word_at(a, off);
    memcpy(p + off, &w, 8);
  }
  if (sz >= 24) {
    uint64_t w = word_at(a, sz - 8);
    memcpy(p + sz - 8, &w, 8);
  }
}

/* The size of an intact block, or 0 when its words are damaged (then *bad
 * is the offset of the first damaged word, and *got what it holds). */
static size_t check(char *p, size_t *bad, uint64_t *got) {
  uintptr_t a = (uintptr_t)p;
  uint64_t h[2];
  memcpy(h, p, 16);
  size_t sz = (size_t)h[0];
  *bad = 0;
  *got = h[0];
  if (sz < 16 || sz > 4 * MiB || h[1] != (sz ^ a ^ MAGIC)) return 0;
  for (size_t off = 4096; off + 16 <= sz; off += 4096) {
    memcpy(got, p + off, 8);
    if (*got != word_at(a, off)) {
      *bad = off;
      return 0;
    }
  }
  if (sz >= 24) {
    memcpy(got, p + sz - 8, 8);
    if (*got != word_at(a, sz - 8)) {
      *bad = sz - 8;
      return 0;
    }
  }
  return sz;
}

/* The live-set target at time t: a triangle wave LIVE_LO .. LIVE_HI. */
static long target_at(double t) {
  double ph = t / period;
  ph -= (double)(long)ph;
  double tri = ph < 0.5 ? 2 * ph : 2 - 2 * ph;
  return (long)(LIVE_LO + (LIVE_HI - LIVE_LO) * tri);
}

static void drop(uintptr_t old) {
  uint64_t got;
  size_t bad, sz = check((char *)old, &bad, &got);
  if (!sz) {
    if (atomic_fetch_add(&n_bad, 1) < 3)
      CHECKV("mixed: block intact when freed", 0,
             "block %p, header size %llu, usable %zu: word at offset %zu holds 0x%llx", (void *)old,
             (unsigned long long)((uint64_t *)old)[0], malloc_usable_size((void *)old), bad,
             (unsigned long long)got);
    return; /* damaged: not freed */
  }
  atomic_fetch_sub(&live_bytes, (long)sz);
  free((void *)old);
}

static void *worker(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 0x51ED27;
  long target = (long)LIVE_LO, ops = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    if ((ops & 63) == 0) target = target_at(now_s() - t_start);
    ops++;
    size_t i = rng_next(&r) % SLOTS;
    uintptr_t old = atomic_exchange(&slots[i], 0);
    if (old) drop(old);
    if (atomic_load_explicit(&live_bytes, memory_order_relaxed) >= target) continue;
    size_t sz = pick_size(rng_next(&r));
    char *p = malloc(sz);
    if (!p) {
      atomic_fetch_add(&n_null, 1);
      continue;
    }
    touch(p, sz);
    atomic_fetch_add(&live_bytes, (long)sz);
    uintptr_t expect = 0;
    if (!atomic_compare_exchange_strong(&slots[i], &expect, (uintptr_t)p)) drop((uintptr_t)p);
  }
  atomic_fetch_add(&n_ops, ops);
  return NULL;
}

static int mode_mixed(double secs) {
  static double rss[NSAMPLES], live[NSAMPLES];
  static hak_stats_t hs[NSAMPLES]; /* hakmem's own figures, for the report */
  int have_stats = hak.stats != NULL && hakmem_is_malloc();
  double interval = secs / NSAMPLES;
  period = secs / 6;
  t_start = now_s();
  pthread_t t[2];
  int started = 0;
  for (int i = 0; i < 2; i++) started += pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1)) == 0;
  CHECK("mixed: both threads start", started == 2);
  for (int k = 0; k < NSAMPLES; k++) {
    sleep_s(t_start + (k + 1) * interval - now_s());
    long l1 = atomic_load(&live_bytes);
    rss[k] = rss_mib();
    long l2 = atomic_load(&live_bytes);
    live[k] = (double)(l1 > l2 ? l1 : l2) / (double)MiB;
    if (have_stats) hak.stats(&hs[k]);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
  for (size_t i = 0; i < SLOTS; i++) {
    uintptr_t old = atomic_exchange(&slots[i], 0);
    if (old) drop(old);
  }

  th_prop_t bound = PROP("mixed: RSS <= 1.5 x live + 48 MiB at every sample");
  double max_rss = 0, max_live = 0, worst = -1e9, third[3] = {0, 0, 0};
  int worst_k = 0;
  for (int k = 0; k < NSAMPLES; k++) {
    double limit = 1.5 * (k && live[k - 1] > live[k] ? live[k - 1] : live[k]) + 48;
    th_prop(&bound, rss[k] <= limit, "sample %d at %.1f s: RSS %.1f MiB, live %.1f MiB, limit %.1f", k,
            (k + 1) * interval, rss[k], live[k], limit);
    if (rss[k] - limit > worst) {
      worst = rss[k] - limit;
      worst_k = k;
    }
    if (rss[k] > max_rss) max_rss = rss[k];
    if (live[k] > max_live) max_live = live[k];
    int th = k * 3 / NSAMPLES;
    third[th] += rss[k] / (NSAMPLES / 3);
  }
  printf(
      "mixed: %.0f s, %ld ops; max live %.1f MiB, max RSS %.1f MiB; closest sample %d: RSS "
      "%.1f MiB, live %.1f MiB; mean RSS by thirds %.1f %.1f %.1f MiB\n",
      secs, atomic_load(&n_ops), max_live, max_rss, worst_k, rss[worst_k], live[worst_k], third[0], third[1],
      third[2]);
  if (have_stats) {
    const hak_stats_t *w = &hs[worst_k];
    printf(
        "mixed: hakmem at sample %d: committed %.1f MiB (Large %.1f), in use %.1f MiB (Large "
        "%.1f), BigCache %.1f MiB\n",
        worst_k, (double)w->committed / MiB, (double)w->large_committed / MiB, (double)w->in_use / MiB,
        (double)w->large_in_use / MiB, (double)w->bigcache_bytes / MiB);
  }
  PROP_DONE(&bound);
  CHECKV("mixed: no creep: mean RSS of the last third <= mean RSS of the first third + 10 %",
         third[2] <= third[0] * 1.10, "first %.1f MiB, middle %.1f MiB, last %.1f MiB", third[0], third[1],
         third[2]);
  CHECKV("mixed: the live set reached its high phase", max_live >= 0.8 * LIVE_HI / (double)MiB,
         "max live %.1f MiB", max_live);
  CHECKV("mixed: every allocation succeeded", atomic_load(&n_null) == 0, "%ld NULL", atomic_load(&n_null));
  CHECKV("mixed: every block intact", atomic_load(&n_bad) == 0, "%ld damaged", atomic_load(&n_bad));
  CHECKV("mixed: every block freed (live bytes back to 0)", atomic_load(&live_bytes) == 0, "%ld bytes",
         atomic_load(&live_bytes));
  return th_done();
}

int main(int argc, char **argv) {
  /* RSS_ANY_MALLOC=1 runs the cases under whatever malloc the process has
   * (glibc, or another allocator preloaded), to compare. */
  const char *any = getenv("RSS_ANY_MALLOC");
  int ok = (hak_load() && hakmem_is_malloc()) || (any && strcmp(any, "1") == 0);
  const char *env = getenv("RSS_SECONDS");
  double secs = env && *env ? strtod(env, NULL) : 30;
  if (argc > 1) {
    if (!CHECK("hakmem is the process malloc (child; RSS_ANY_MALLOC=1 waives it)", ok)) return th_done();
    if (strcmp(argv[1], "trim") == 0) return mode_trim();
    if (strcmp(argv[1], "idle") == 0) return mode_idle();
    if (strcmp(argv[1], "unmap") == 0) return mode_unmap();
    if (strcmp(argv[1], "delay") == 0) return mode_delay(1);
    if (strcmp(argv[1], "delay0") == 0) return mode_delay(0);
    if (strcmp(argv[1], "spares") == 0) return mode_spares();
    if (strncmp(argv[1], "refault", 7) == 0) return mode_refault(argv[1]);
    if (strcmp(argv[1], "elo") == 0) return mode_elo();
    if (strcmp(argv[1], "yield") == 0) return mode_yield(1);
    if (strcmp(argv[1], "yield0") == 0) return mode_yield(0);
    if (strcmp(argv[1], "reuse") == 0) return mode_reuse(1);
    if (strcmp(argv[1], "reuse0") == 0) return mode_reuse(0);
    if (strcmp(argv[1], "epoch") == 0) return mode_epoch(1);
    if (strcmp(argv[1], "epoch0") == 0) return mode_epoch(0);
    if (strcmp(argv[1], "burst") == 0) return mode_burst();
    if (strcmp(argv[1], "room") == 0) return mode_room(1);
    if (strcmp(argv[1], "room0") == 0) return mode_room(0);
    if (strcmp(argv[1], "room-unpurged") == 0) return mode_room_unpurged();
    if (strcmp(argv[1], "room-proof") == 0) return mode_room_proof();
    if (strcmp(argv[1], "remote") == 0) return mode_remote();
    if (strcmp(argv[1], "many") == 0) return mode_many();
    if (strcmp(argv[1], "mixed") == 0) return mode_mixed(secs);
    fprintf(stderr, "rss: unknown mode %s\n", argv[1]);
    return 2;
  }
  if (!ok) {
    printf("skip: hakmem is not the process malloc (run with LD_PRELOAD=libhakmem.so)\n");
    return th_done();
  }
  static child_t c;
  child_merge("trim", run_self("trim", NULL, &c, 120), &c);
  child_merge("idle", run_self("idle", NULL, &c, 120), &c);
  child_merge("unmap", run_self("unmap", NULL, &c, 120), &c);
  static const char *const min_budget[] = {"HAKMEM_RETAIN_SHARE=0", NULL};
  child_merge("delay", run_self("delay", min_budget, &c, 120), &c);
  static const char *const min_no_delay[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_PURGE_DELAY_MS=0", NULL};
  child_merge("delay0", run_self("delay0", min_no_delay, &c, 120), &c);
  static const char *const refault[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ACE=1",
                                        "HAKMEM_REFAULT_KEEP_MS=5000", NULL};
  child_merge("refault", run_self("refault", refault, &c, 120), &c);
  static const char *const refault0[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ACE=0", "HAKMEM_ROOM_MB=0", NULL};
  child_merge("refault0", run_self("refault0", refault0, &c, 120), &c);
  static const char *const burst[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ACE=0", NULL};
  child_merge("burst", run_self("burst", burst, &c, 120), &c);
  static const char *const lapse[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ACE=1", "HAKMEM_REFAULT_KEEP_MS=20",
                                      NULL};
  child_merge("refault-lapse", run_self("refault-lapse", lapse, &c, 120), &c);
  static const char *const yield[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ROOM_MB=0", "HAKMEM_ACE=1",
                                      "HAKMEM_REFAULT_KEEP_MS=5000", NULL};
  child_merge("yield", run_self("yield", yield, &c, 120), &c);
  static const char *const yield0[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ROOM_MB=0", "HAKMEM_ACE=0", NULL};
  child_merge("yield0", run_self("yield0", yield0, &c, 120), &c);
  static const char *const elo[] = {"HAKMEM_RETAIN_SHARE=0",
                                    "HAKMEM_RETAIN_KB=1024",
                                    "HAKMEM_ROOM_MB=0",
                                    "HAKMEM_ELO=1",
                                    "HAKMEM_ELO_EPOCH_MS=20",
                                    "HAKMEM_ELO_SEED=5",
                                    NULL};
  if (secs > 0) child_merge("elo", run_self("elo", elo, &c, 150), &c);
  else printf("skip: elo (RSS_SECONDS=0: it takes up to 90 s)\n");
  static const char *const reuse[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ROOM_MB=0", "HAKMEM_REFAULT_KEEP_MS=1",
                                      "HAKMEM_ACE=1", NULL};
  child_merge("reuse", run_self("reuse", reuse, &c, 120), &c);
  static const char *const reuse0[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ROOM_MB=0", "HAKMEM_ACE=0", NULL};
  child_merge("reuse0", run_self("reuse0", reuse0, &c, 120), &c);
  static const char *const epoch[] = {"HAKMEM_RETAIN_SHARE=0",
                                      "HAKMEM_ROOM_MB=0",
                                      "HAKMEM_REFAULT_KEEP_MS=1",
                                      "HAKMEM_ACE=1",
                                      "HAKMEM_ELO=1",
                                      "HAKMEM_ELO_EPOCH_MS=20",
                                      NULL};
  child_merge("epoch", run_self("epoch", epoch, &c, 120), &c);
  static const char *const epoch0[] = {"HAKMEM_RETAIN_SHARE=0", "HAKMEM_ROOM_MB=0",       "HAKMEM_ACE=0",
                                       "HAKMEM_ELO=1",          "HAKMEM_ELO_EPOCH_MS=20", NULL};
  child_merge("epoch0", run_self("epoch0", epoch0, &c, 120), &c);
  static const char *const share_all[] = {"HAKMEM_RETAIN_SHARE=1", NULL};
  child_merge("spares", run_self("spares", share_all, &c, 120), &c);
  static const char *const no_delay[] = {"HAKMEM_PURGE_DELAY_MS=0", NULL};
  child_merge("room", run_self("room", no_delay, &c, 120), &c);
  static const char *const no_room[] = {"HAKMEM_ROOM_MB=0", "HAKMEM_PURGE_DELAY_MS=0", NULL};
  child_merge("room0", run_self("room0", no_room, &c, 120), &c);
  child_merge("room-proof", run_self("room-proof", no_delay, &c, 120), &c);
  static const char *const unpurged[] = {"HAKMEM_PURGE_DELAY_MS=1000", "HAKMEM_RETAIN_KB=16384", NULL};
  child_merge("room-unpurged", run_self("room-unpurged", unpurged, &c, 120), &c);
  static const char *const no_room_only[] = {"HAKMEM_ROOM_MB=0", NULL};
  child_merge("remote", run_self("remote", no_room_only, &c, 120), &c);
  child_merge("many", run_self("many", NULL, &c, 120), &c);
  static const char *const ace_on[] = {"HAKMEM_ACE=1", NULL};
  if (secs > 0) {
    child_merge("mixed", run_self("mixed", NULL, &c, (unsigned)secs + 120), &c);
    child_merge("mixed (HAKMEM_ACE=1)", run_self("mixed", ace_on, &c, (unsigned)secs + 120), &c);
  } else {
    printf("skip: mixed workload (RSS_SECONDS=0)\n");
  }
  return th_done();
}
