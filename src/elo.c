/* elo.c — HAKMEM_ELO: which purge and retention policy is in force,
 * chosen by measured cost. A policy scales the options that decide how
 * long empty memory waits and how much of it is kept: the purge delay,
 * the budget of empty memory, the working room (on or off) and BigCache's
 * budget (_hak_policies; budget.h and large.c read the one in force
 * through hak_policy()).
 *
 * The process runs epochs of HAKMEM_ELO_EPOCH_MS, or of the purge delay
 * HAKMEM_ACE's reuse ages ask for (budget.c) if that is longer: a trial
 * must outlast the program's reuse cycle, or what a policy does to memory
 * the program takes back later shows in no epoch's cost (40 MiB freed and
 * taken back 100 ms later gave every policy the same cost in epochs of 20
 * ms). An epoch ends sooner (but after at least a quarter of its length)
 * once HAK_ELO_EPOCH_BYTES have been taken into use (slabs and Large
 * blocks). An epoch's cost is, per second of the
 * process's CPU time in it (user and system, all threads: the program's
 * work, which time it waited or was not scheduled does not dilute; at
 * least a millisecond),
 *   hakmem's system calls' time (measured)
 *   + the process's minor page faults (the program's own too), each at
 *     the cost of a refault as measured once (fault_measure)
 *   + the slow paths' time, estimated from the sampled latencies
 *     (slow_ns_since; the system calls and faults they make count twice)
 *   + HAKMEM_ELO_MIB_US microseconds per MiB of committed memory (the
 *     mean of the epoch's start and end) and per second of the epoch's
 *     wall time: memory held while the program waits costs as much as
 *     while it works, so for a program that mostly waits, memory is most
 *     of the cost.
 * The next epoch runs the leader (the highest rating, the lower index on
 * a tie), except that after one of the leader's epochs, with chance 1 in
 * HAK_ELO_EXPLORE and never past one epoch in HAK_ELO_EXPLORE in all, a
 * policy other than the leader, drawn uniformly, runs a trial of two
 * epochs. Then the leader runs again, and the challenger plays the leader
 * it replaced: the cost of its second epoch and the leader's after it
 * against twice the leader's before the trial. A policy's effects lag: its
 * first epoch pays for what the leader left (memory purged and faulted
 * in again, memory kept to reuse), and the leader's epoch after pays for
 * what it left, so the first counts for neither and the last for the
 * challenger (a trend of the program's own counts against the challenger
 * as often as for it). The cheaper by more than HAK_ELO_TIE wins, a draw otherwise,
 * and both ratings move by K times the surprise (Elo's update, K = 32,
 * from 1500). A rating trails the leader by at most HAK_ELO_GAP, so a
 * policy that lost in one phase of the program can win back in the next
 * within a few games. The draws come from HAKMEM_ELO_SEED (0: the
 * clock's), so a seed and the same costs give the same choices.
 *
 * The engine (_hak_elo_start, _hak_elo_close) is pure, for the unit tests;
 * _hak_elo_tick drives it from the slow paths, one thread at a time (the
 * others go on without waiting; fork waits, thread.c). */
#include "internal.h"

const hak_policy_t _hak_policies[HAK_POLICIES] = {
    /* name, purge delay x4, budget x4, BigCache x2, working room, budget to the peak */
    {"static", 4, 4, 2, true, false}, /* the options as they are */
    {"lean", 1, 2, 1, false, false},  /* a quarter of the delay, half the budgets, no room */
    {"keep", 32, 16, 4, true, false}, /* 8 times the delay, 4 times the budget, twice the cache */
    {"hoard", 128, 16, 8, true, true} /* and then some: nothing purged below the peak */
};

_Atomic uint32_t _hak_policy_now;
_Atomic hak_tick_t _hak_elo_due = UINT64_MAX;
_Atomic uint64_t _hak_elo_due_taken = UINT64_MAX;

/* e^y for |y| <= 8: the series of e^(y/16), squared 4 times. */
static double exp_small(double y) {
  double z = y / 16, term = 1, sum = 1;
  for (int i = 1; i < 16; i++) {
    term *= z / i;
    sum += term;
  }
  for (int i = 0; i < 4; i++) sum *= sum;
  return sum;
}

double _hak_elo_expected(int32_t diff) {
  if (diff > 1200) diff = 1200;
  if (diff < -1200) diff = -1200;
  return 1 / (1 + exp_small(-(double)diff * 2.302585092994046 / 400)); /* 1 / (1 + 10^(-diff/400)) */
}

static uint64_t draw(hak_elo_t *e) {
  uint64_t x = e->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return e->rng = x;
}

void _hak_elo_start(hak_elo_t *e, uint64_t seed) {
  *e = (hak_elo_t){.rng = seed ? seed : 1, .challenger = HAK_POLICIES};
  for (uint32_t i = 0; i < HAK_POLICIES; i++) e->rating[i] = HAK_ELO_START;
}

uint32_t hak_elo_leader(const hak_elo_t *e) {
  uint32_t best = 0;
  for (uint32_t i = 1; i < HAK_POLICIES; i++)
    if (e->rating[i] > e->rating[best]) best = i;
  return best;
}

/* The game of p, at cost, against q, at cost_q. */
static void play(hak_elo_t *e, uint32_t p, double cost, uint32_t q, double cost_q) {
  double score = cost < cost_q * (1 - HAK_ELO_TIE) ? 1 : cost > cost_q * (1 + HAK_ELO_TIE) ? 0 : 0.5;
  double change = HAK_ELO_K * (score - _hak_elo_expected(e->rating[p] - e->rating[q]));
  int32_t d = (int32_t)(change < 0 ? change - 0.5 : change + 0.5);
  e->rating[p] += d;
  e->rating[q] -= d;
  if (score != 0.5) {
    e->wins[score > 0.5 ? p : q]++;
    e->losses[score > 0.5 ? q : p]++;
  }
  int32_t top = e->rating[hak_elo_leader(e)];
  for (uint32_t i = 0; i < HAK_POLICIES; i++)
    if (e->rating[i] < top - HAK_ELO_GAP) e->rating[i] = top - HAK_ELO_GAP;
}

uint32_t _hak_elo_close(hak_elo_t *e, double cost) {
  uint32_t p = e->now, c = e->challenger;
  e->cost[p] = cost;
  e->epochs[p]++;
  e->epoch++;
  if (c != HAK_POLICIES && p == c && e->trial++ == 0) return p; /* its first epoch: the change itself */
  if (c != HAK_POLICIES && p != c) { /* the leader is back: the challenger's game */
    play(e, c, e->cost[c] + cost, p, 2 * e->before);
    e->challenger = c = HAK_POLICIES;
  }
  uint32_t lead = hak_elo_leader(e);
  uint64_t r = draw(e);
  e->now = lead;
  if (c == HAK_POLICIES && p == lead && (e->explored + 2) * HAK_ELO_EXPLORE <= e->epoch + 2 &&
      r % HAK_ELO_EXPLORE == 0) {
    uint32_t k = (uint32_t)(r / HAK_ELO_EXPLORE % (HAK_POLICIES - 1)); /* the k-th of the others */
    e->now = e->challenger = k < lead ? k : k + 1;
    e->before = cost;
    e->trial = 0;
    e->explored += 2;
  }
  return e->now;
}

/* The process's engine and the epoch running: when it started, and the
 * time spent and faults so far then. */
hak_lock_t _hak_elo_lock = HAK_LOCK_INIT;
static hak_elo_t elo;
static struct {
  hak_tick_t at, len;
  uint64_t sys_ns, faults, cpu_us;
  size_t committed;
} epoch;

/* The slow paths' time since the histograms were last read into `seen`
 * (1 in HAKMEM_SAMPLE timed): each sample at 3/2 of its bucket's floor,
 * but at most HAK_ELO_SLOW_CAP_NS, times HAKMEM_SAMPLE. The cap: a slow
 * path the scheduler preempted counts milliseconds, and on a loaded
 * machine those decided the epochs' costs. */
#define HAK_ELO_SLOW_CAP_NS 65536
static uint64_t seen[HAK_LAT_KINDS][HAK_LAT_BUCKETS];
static uint64_t slow_ns_since(void) {
  uint64_t hist[HAK_LAT_KINDS][HAK_LAT_BUCKETS], ns = 0;
  _hak_latency(hist);
  for (int t = 0; t < HAK_LAT_KINDS; t++)
    for (int k = 0; k < HAK_LAT_BUCKETS; k++) {
      uint64_t each = 3ull << k >> 1;
      ns += (hist[t][k] - seen[t][k]) * (each < HAK_ELO_SLOW_CAP_NS ? each : HAK_ELO_SLOW_CAP_NS);
      seen[t][k] = hist[t][k];
    }
  return ns * (uint64_t)hak_opt(HAK_OPT_SAMPLE);
}

/* hakmem's system calls' time so far, in nanoseconds. */
static uint64_t sys_ns(void) {
  uint64_t calls[HAK_SYS_KINDS], bytes[HAK_SYS_KINDS], ns[HAK_SYS_KINDS], sum = 0;
  _hak_os_calls(calls, bytes, ns);
  for (int k = 0; k < HAK_SYS_KINDS; k++) sum += ns[k];
  return sum;
}

/* A refault's cost in ticks, measured at the first epoch's end (the
 * TSC's rate is known by then): 64 pages of a fresh mapping written,
 * purged as the budget purges, and written again one by one: what a
 * purge that proves wrong costs. Wall time, not the process's system
 * time: under this machine's hypervisor much of a fault's cost is counted
 * as the user time of the instruction that faulted (a refault took 9 us
 * here; a burst of 40 MiB of 1 KiB blocks faulted in again took 145 ms,
 * 64-71 of them system time, against 17 ms when its memory was kept). */
static hak_tick_t fault_ticks;
static void fault_measure(void) {
  enum { PAGES = 64 };
  char *m = _hak_os_map(PAGES * HAK_PAGE, HAK_PAGE);
  if (!m) {
    fault_ticks = _hak_os_ms_ticks(1) / 1000; /* a microsecond, if it cannot be measured */
    return;
  }
  for (size_t i = 0; i < PAGES; i++) ((volatile char *)m)[i * HAK_PAGE] = 1;
  _hak_os_purge(m, PAGES * HAK_PAGE, false);
  hak_tick_t t0 = _hak_os_ticks();
  for (size_t i = 0; i < PAGES; i++) ((volatile char *)m)[i * HAK_PAGE] = 1;
  fault_ticks = (_hak_os_ticks() - t0) / PAGES;
  _hak_os_unmap(m, PAGES * HAK_PAGE);
}

static void epoch_begin(hak_tick_t now, size_t committed, uint64_t taken, hak_tick_t reuse,
                        const hak_usage_t *u, uint64_t sys) {
  hak_tick_t len = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_ELO_EPOCH_MS));
  epoch.at = now;
  epoch.len = reuse > len ? reuse : len;
  epoch.sys_ns = sys;
  slow_ns_since();
  epoch.faults = u->minor_faults;
  epoch.cpu_us = u->cpu_us;
  epoch.committed = committed;
  atomic_store_explicit(&_hak_elo_due_taken, taken + HAK_ELO_EPOCH_BYTES, memory_order_relaxed);
  atomic_store_explicit(&_hak_elo_due, now + epoch.len, memory_order_relaxed);
}

void _hak_elo_begin(void) {
  if (!hak_opt(HAK_OPT_ELO)) return;
  uint64_t seed = (uint64_t)hak_opt(HAK_OPT_ELO_SEED);
  _hak_elo_start(&elo, seed ? seed : _hak_os_ticks());
  _hak_elo_restart(0, 0, 0);
}

void _hak_elo_restart(size_t committed, uint64_t taken, hak_tick_t reuse) {
  if (!hak_opt(HAK_OPT_ELO)) return;
  hak_usage_t u;
  _hak_os_usage(&u);
  epoch_begin(_hak_os_ticks(), committed, taken, reuse, &u, sys_ns());
}

void _hak_elo_tick(hak_tick_t now, size_t committed, uint64_t taken, hak_tick_t reuse) {
  int expect = 0;
  if (!atomic_compare_exchange_strong_explicit(&_hak_elo_lock.state, &expect, 1, memory_order_acquire,
                                               memory_order_relaxed))
    return; /* another thread is closing the epoch */
  hak_tick_t ms = _hak_os_ms_ticks(1), span = now - epoch.at;
  if (now < epoch.at || span < epoch.len / 4 ||
      (now < atomic_load_explicit(&_hak_elo_due, memory_order_relaxed) &&
       taken < atomic_load_explicit(&_hak_elo_due_taken, memory_order_relaxed))) {
    _hak_unlock(&_hak_elo_lock);
    return;
  }
  if (!fault_ticks) fault_measure();
  hak_usage_t u;
  _hak_os_usage(&u);
  uint64_t sys = sys_ns(), slow = slow_ns_since();
  double cpu = (double)(u.cpu_us - epoch.cpu_us) / 1e6, secs = cpu > 1e-3 ? cpu : 1e-3;
  double ns = (double)(sys - epoch.sys_ns) + (double)slow +
              (double)(u.minor_faults - epoch.faults) * (double)fault_ticks * 1e6 / (double)ms;
  double mib = (double)(epoch.committed + committed) / 2 / (1 << 20), wall = (double)span / (double)ms / 1000;
  uint32_t next = _hak_elo_close(&elo, (ns / 1000 + (double)hak_opt(HAK_OPT_ELO_MIB_US) * mib * wall) / secs);
  atomic_store_explicit(&_hak_policy_now, next, memory_order_relaxed);
  epoch_begin(now, committed, taken, reuse, &u, sys);
  _hak_unlock(&_hak_elo_lock);
}

void _hak_elo_figures(hak_elo_t *out, uint64_t *epoch_ms) {
  _hak_lock(&_hak_elo_lock);
  *out = elo;
  *epoch_ms = epoch.len / _hak_os_ms_ticks(1);
  _hak_unlock(&_hak_elo_lock);
  if (!hak_opt(HAK_OPT_ELO)) _hak_elo_start(out, 1); /* the ratings as they start */
}
