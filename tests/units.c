/* tests/units.c — unit tests of internals that the other tests reach only
 * through malloc. Built against the internal headers (-Isrc) and linked
 * with debug/libhakmem.a, whose invariant checks abort on any
 * inconsistency:
 *   bitmaps    units.h: hak_unit_bits, hak_count_units, hak_units_bytes,
 *              hak_longest_run, hak_run_starts and hak_fit_in (with and
 *              without guard pages) against plain loops over the 32
 *              units, for 20000 random bitmaps and every run length 1..16
 *   budget     the batch bound, the room (capped at HAKMEM_ROOM_MB, a heap
 *              counts as an earner while its room is above 0), the next
 *              pass of a purge that left memory over (a quarter of the
 *              delay at least), the purge delay in ticks
 *   claim      the claim protocol of slab.c: a detached slab with blocks
 *              out, freed into by two threads at once (10000 rounds): the
 *              slab ends detached with the right count, or, when those were
 *              its last blocks, released exactly once; and a free racing
 *              an allocating thread's adoption: exactly one of them holds
 *              the slab, and no block is lost
 *   shortcut   a thread's 64-byte blocks in two one-unit slabs: the one
 *              that filled first is the class's previous current slab, its
 *              blocks take the free fast path's shortcut and a free of one
 *              goes straight to the class's list; with a third slab,
 *              neither earlier one takes it (heap.c, heap_keep_prev); and
 *              malloc_trim gives the earlier slab back once its blocks are
 *              all free
 *   blocks     size_class.h's proof of a block start (_hak_block_mul,
 *              hak_block_index) against division, for every class, every
 *              offset x, x + 1, x + 3 (x a multiple of 8) of a 1 MiB slab,
 *              and addresses that differ by multiples of 2^16 up to
 *              2^47 */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "units.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* ---- bitmaps ------------------------------------------------------------ */
static int free_at(uint32_t m, int u) { return u >= 0 && u < 32 && (m >> u & 1); }

static uint32_t naive_starts(uint32_t m, unsigned n, bool skip0) {
  uint32_t r = 0;
  for (unsigned u = skip0; u + n <= 32; u++) {
    bool all = true;
    for (unsigned k = 0; k < n && all; k++) all = free_at(m, (int)(u + k));
    if (all) r |= 1u << u;
  }
  return r;
}

/* The system calls a run of n units at u takes for the guard pages g:
 * one if any unit but its last has a guard, one if its last has none. */
static unsigned naive_calls(uint32_t g, unsigned u, unsigned n) {
  unsigned inside = 0;
  for (unsigned k = u; k + 1 < u + n; k++) inside |= g >> k & 1;
  return inside + !(g >> (u + n - 1) & 1);
}

/* The starts of free runs of n units past unit 0 that take the fewest
 * calls, and in *saved the calls they save of two. */
static uint32_t naive_cheapest(uint32_t m, uint32_t g, unsigned n, unsigned *saved) {
  uint32_t ok = naive_starts(m & ~1u, n, true), best = 0;
  unsigned fewest = 3;
  for (unsigned u = 1; u + n <= 32; u++) {
    if (!(ok >> u & 1)) continue;
    unsigned c = naive_calls(g, u, n);
    if (c < fewest) fewest = c, best = 0;
    if (c == fewest) best |= 1u << u;
  }
  *saved = 2 - fewest;
  return best;
}

static unsigned naive_fit(uint32_t m, uint32_t g, unsigned n, unsigned *unit) {
  unsigned best = 0, saved;
  uint32_t cheap = naive_cheapest(m, g, n, &saved);
  for (unsigned u = 1; u + n <= 32; u++) {
    if (!(cheap >> u & 1)) continue;
    bool left = !free_at(m & ~1u, (int)u - 1), right = !free_at(m, (int)(u + n));
    unsigned score = left && right ? 3 : left || right ? 2 : 1;
    /* the lowest start of the best score; a run touching on the left
     * wins over one touching on the right only (the code's order) */
    if (score > best) {
      best = score;
      *unit = u;
    }
  }
  return best ? best + saved * HAK_FIT_PER_CALL : 0;
}

static void test_bitmaps(void) {
  th_prop_t bits = PROP("hak_unit_bits(u, n) sets bits u .. u+n-1");
  th_prop_t count = PROP("hak_count_units counts the set bits");
  th_prop_t bytes = PROP("hak_units_bytes: 64 KiB a unit, unit 0 less its header page");
  th_prop_t longest = PROP("hak_longest_run: the longest run of free units past unit 0");
  th_prop_t starts = PROP("hak_run_starts: the units where n free units start");
  th_prop_t fit = PROP("hak_fit_in: score and unit as the plain search finds them, guard pages first");
  for (unsigned u = 0; u < 32; u++)
    for (unsigned n = 1; u + n <= 32; n++) {
      uint32_t want = 0;
      for (unsigned k = u; k < u + n; k++) want |= 1u << k;
      th_prop(&bits, hak_unit_bits(u, n) == want, "u %u n %u", u, n);
      th_prop(&longest, hak_longest_run(want) == (u ? n : n - 1), "one run at %u of %u: %u", u, n,
              hak_longest_run(want));
    }
  for (int i = 0; i < 20000; i++) {
    /* dense, sparse and blocky bitmaps */
    uint32_t m = (uint32_t)next();
    if (i % 3 == 1) m &= (uint32_t)next();
    else if (i % 3 == 2) m = (uint32_t)(next() | next() >> 7);
    th_prop(&count, hak_count_units(m) == (unsigned)__builtin_popcount(m), "m %#x", m);
    size_t b = (size_t)__builtin_popcount(m) * HAK_UNIT_SIZE - ((m & 1) ? HAK_SS_HEADER : 0);
    th_prop(&bytes, hak_units_bytes(m) == b, "m %#x", m);
    unsigned run = 0, cur = 0;
    for (int u = 1; u < 32; u++) {
      cur = free_at(m, u) ? cur + 1 : 0;
      if (cur > run) run = cur;
    }
    th_prop(&longest, hak_longest_run(m) == run, "m %#x: %u, want %u", m, hak_longest_run(m), run);
    for (unsigned n = 1; n <= 16; n++) {
      for (int skip = 0; skip < 2; skip++)
        th_prop(&starts, hak_run_starts(m, n, skip) == naive_starts(m, n, skip), "m %#x n %u skip %d", m, n,
                skip);
      /* no guards (the default build), dense or sparse ones */
      uint32_t g = i % 4 == 0 ? 0 : i % 4 == 1 ? (uint32_t)next() : (uint32_t)(next() & next() & next());
      unsigned gu = 99, wu = 99, got = hak_fit_in(m, g, n, &gu), want = naive_fit(m, g, n, &wu);
      int same = got == want && (got == 0 || gu == wu);
      if (!same && got == want && got % HAK_FIT_PER_CALL == 2) {
        /* both touch a used unit: the code takes the lowest that touches on
         * the left, else the lowest that touches on the right */
        unsigned saved;
        uint32_t free = m & ~1u, ok = naive_cheapest(m, g, n, &saved);
        uint32_t left = ok & ~(free << 1), right = ok & ~(uint32_t)((uint64_t)free >> n);
        same = gu == (unsigned)__builtin_ctz(left ? left : right);
      }
      th_prop(&fit, same, "m %#x g %#x n %u: score %u unit %u, plain search %u unit %u", m, g, n, got, gu,
              want, wu);
    }
  }
  PROP_DONE(&bits);
  PROP_DONE(&count);
  PROP_DONE(&bytes);
  PROP_DONE(&longest);
  PROP_DONE(&starts);
  PROP_DONE(&fit);
}

/* ---- budget ------------------------------------------------------------- */
static void test_budget(void) {
  CHECK("a total off by less than the batch is not flushed",
        !hak_mem_batch_full(HAK_MEM_BATCH) && !hak_mem_batch_full(-HAK_MEM_BATCH));
  CHECK("a total off by more than the batch, either way, is flushed",
        hak_mem_batch_full(HAK_MEM_BATCH + 1) && hak_mem_batch_full(-HAK_MEM_BATCH - 1));
  hak_budget_local_t b = {0};
  uint32_t earners = atomic_load(&_hak_mem.earners);
  int64_t cap = (int64_t)hak_opt(HAK_OPT_ROOM_MB) << 20;
  hak_room_move(&b, 1 << 20);
  CHECK("a heap with a room counts as an earner", atomic_load(&_hak_mem.earners) == earners + 1);
  hak_room_move(&b, 2 * cap);
  CHECKV("the room stops at HAKMEM_ROOM_MB", b.room == cap, "%lld", (long long)b.room);
  hak_room_move(&b, -4 * cap);
  CHECKV("and at 0", b.room == 0, "%lld", (long long)b.room);
  CHECK("a heap whose room is 0 is no earner", atomic_load(&_hak_mem.earners) == earners);
  _hak_budget_drop_room(&b);
  hak_tick_t delay = hak_purge_delay();
  CHECKV("the purge delay is HAKMEM_PURGE_DELAY_MS in ticks", delay == _hak_os_ms_ticks(10), "%llu",
         (unsigned long long)delay);
  CHECK("a pass over the budget looks again when the next unit ages",
        _hak_purge_next(1000, delay) == 1000 + delay);
  CHECK("and no sooner than a quarter of the delay", _hak_purge_next(1000, 1) == 1000 + delay / 4);
}

/* ---- elo ---------------------------------------------------------------- */
/* An engine fed the costs of `table` (microseconds per second), each
 * epoch's off by up to ±10 % (the test's draws), for n epochs: how many ran
 * the policy `want` among the last `tail`, and the first epoch after which
 * `want` led (n if never). */
static long elo_run(hak_elo_t *e, const double *table, long n, uint32_t want, long tail, long *led) {
  long ran = 0;
  *led = n;
  for (long i = 0; i < n; i++) {
    double noise = 0.9 + 0.2 * (double)(next() % 1001) / 1000;
    if (i >= n - tail) ran += e->now == want;
    _hak_elo_close(e, table[e->now] * noise);
    if (hak_elo_leader(e) == want && *led == n) *led = i + 1;
    if (hak_elo_leader(e) != want) *led = n;
  }
  return ran;
}

/* A game as the engine plays it: the leader's epoch at `before`, the
 * challenger's two (the first, the change, at a cost that must not count;
 * the second at `cost`), the leader's again at `after` (the challenger's
 * cost + after against 2 x before). */
static void elo_game(hak_elo_t *e, uint32_t challenger, double cost, uint32_t leader, double before,
                     double after) {
  e->now = e->challenger = challenger; /* as the leader's epoch at `before` left it when it explored */
  e->before = before;
  e->trial = 0;
  _hak_elo_close(e, 1e9); /* the change itself: not counted */
  CHECK("the challenger runs a second epoch", e->now == challenger);
  _hak_elo_close(e, cost);
  CHECK("then the leader runs", e->now == leader && e->challenger == challenger);
  _hak_elo_close(e, after);
}

static void test_elo(void) {
  CHECK("an even game is expected to end even", _hak_elo_expected(0) == 0.5);
  double e400 = _hak_elo_expected(400);
  CHECKV("400 points above: 10 to 1", e400 > 10.0 / 11 - 1e-9 && e400 < 10.0 / 11 + 1e-9, "%.12f", e400);
  double worst = 0;
  for (int32_t d = 0; d <= 1500; d += 7) {
    double sum = _hak_elo_expected(d) + _hak_elo_expected(-d);
    worst = sum - 1 > worst ? sum - 1 : 1 - sum > worst ? 1 - sum : worst;
  }
  CHECKV("the two sides' expectations add up to 1", worst < 1e-12, "%g", worst);
  CHECK("a difference past 1200 counts as 1200", _hak_elo_expected(5000) == _hak_elo_expected(1200));

  hak_elo_t e;
  _hak_elo_start(&e, 1);
  CHECK("every policy starts at 1500, the first in force",
        e.rating[0] == 1500 && e.rating[3] == 1500 && e.now == 0 && hak_elo_leader(&e) == 0);
  _hak_elo_close(&e, 100);
  CHECK("an epoch of the leader alone plays no game",
        e.rating[0] == 1500 && e.epoch == 1 && e.epochs[0] == 1);
  e.rating[1] = 1501; /* leads */
  e.rng = 0;          /* draws 0 forever: explores whenever the bound allows */
  long trials = 0;
  for (int i = 0; i < 200; i++) {
    uint32_t before = e.now;
    _hak_elo_close(&e, 100);
    trials += before == 1 && e.now != 1;
  }
  CHECKV("a challenger runs 2 epochs, and no more than 1 epoch in 10 explores",
         trials == 10 && e.explored == 20, "%ld trials, %llu epochs", trials, (unsigned long long)e.explored);
  _hak_elo_start(&e, 1);
  _hak_elo_close(&e, 100);
  elo_game(&e, 1, 50, 0, 80, 100);
  CHECKV(
      "a challenger whose epoch and the one after cost less than two of the leader's before wins K/2 "
      "from an even game",
      e.rating[1] == 1516 && e.rating[0] == 1484, "%d %d", e.rating[1], e.rating[0]);
  CHECK("its win and the other's loss are counted", e.wins[1] == 1 && e.losses[0] == 1 && e.wins[0] == 0);
  CHECK("the winner leads, and runs next unless it explores", hak_elo_leader(&e) == 1 && e.now == 1);
  elo_game(&e, 0, 102, 1, 100, 101);
  CHECK("costs within 3 % make a draw: no win, no loss",
        e.wins[0] == 0 && e.losses[1] == 0 && e.rating[0] + e.rating[1] == 3000);
  CHECKV("a draw moves the ratings toward each other", e.rating[0] == 1485 && e.rating[1] == 1515, "%d %d",
         e.rating[0], e.rating[1]);
  for (int i = 0; i < 100; i++) elo_game(&e, 2, 1000, 1, 10, 10);
  int32_t top = e.rating[hak_elo_leader(&e)];
  CHECKV("a policy that loses every game trails the leader by HAK_ELO_GAP at most",
         e.rating[2] == top - HAK_ELO_GAP, "%d %d", e.rating[2], top);

  /* Exploration: bounded, deterministic under a seed. */
  static const double even[HAK_POLICIES] = {100, 100, 100, 100};
  hak_elo_t a, b, c;
  _hak_elo_start(&a, 42);
  _hak_elo_start(&b, 42);
  _hak_elo_start(&c, 43);
  long over = 0, same = 1, differ = 0;
  for (long i = 0; i < 10000; i++) {
    _hak_elo_close(&a, even[a.now]);
    _hak_elo_close(&b, even[b.now]);
    _hak_elo_close(&c, even[c.now]);
    over += a.explored * HAK_ELO_EXPLORE > a.epoch + 2; /* a trial's two epochs count once it starts */
    same &= a.now == b.now;
    differ += a.now != c.now;
  }
  CHECKV("never more than 1 epoch in 10 explores", over == 0, "%ld epochs over", over);
  CHECKV("and it does explore", a.explored > 10000 / 20, "%llu", (unsigned long long)a.explored);
  CHECK("the same seed and costs make the same choices", same);
  CHECK("another seed makes others", differ > 0);

  /* Convergence to the cheapest, then a change of phase. */
  static const double costs_first[HAK_POLICIES] = {100, 60, 90, 120},
                      costs_then[HAK_POLICIES] = {100, 140, 90, 60};
  hak_elo_t p;
  _hak_elo_start(&p, 7);
  long led, ran = elo_run(&p, costs_first, 3000, 1, 1000, &led);
  CHECKV("the cheapest policy leads", hak_elo_leader(&p) == 1 && led < 300, "leader %u from epoch %ld",
         hak_elo_leader(&p), led);
  CHECKV("and runs at least 9 epochs in 10 minus the exploration", ran >= 850, "%ld of 1000", ran);
  ran = elo_run(&p, costs_then, 3000, 3, 1000, &led);
  printf("elo: phase change led after %ld epochs\n", led);
  CHECKV("after a change of phase the new cheapest leads", hak_elo_leader(&p) == 3 && led < 600,
         "leader %u from epoch %ld", hak_elo_leader(&p), led);
  CHECKV("and runs", ran >= 850, "%ld of 1000", ran);
}

/* ---- claim -------------------------------------------------------------- */
enum { ROUNDS = 10000 };
#define KEY_A (7000u << 2) /* heap keys no real heap has */
#define KEY_B (7001u << 2)
#define CLS 57 /* 912-byte blocks */

static pthread_barrier_t bar;
static hak_slab_t *slab;
static hak_block_t *blk[2];
static _Atomic int adopted;

static void *freer(void *arg) {
  int i = (int)(intptr_t)arg;
  for (int r = 0; r < ROUNDS; r++) {
    pthread_barrier_wait(&bar); /* the slab is set up */
    _hak_slab_free_remote(slab, blk[i], 0);
    pthread_barrier_wait(&bar); /* both freed */
  }
  return NULL;
}

/* A fresh slab of class CLS held by KEY_A with n blocks out (the first two
 * in blk[]), then detached for good. */
static hak_slab_t *detached_slab(int n) {
  hak_slab_t *s = _hak_slab_alloc(CLS, KEY_A);
  hak_block_t *list = _hak_slab_take(s, 0); /* a page of blocks, all out */
  hak_block_t *keep = NULL;
  for (int i = 0; list; i++) {
    hak_block_t *b = list;
    list = b->next;
    if (i < 2) blk[i] = b;
    else if (i < n) {
      b->next = keep;
      keep = b;
    } else {
      b->next = s->local_free; /* given back by the holder */
      s->local_free = b;
      s->used--;
    }
  }
  _hak_slab_detach(s, 0);
  return s;
}

/* Done with the detached test slab: adopted and given back whole (its
 * blocks are never used again). No other slab of CLS is ever detached: the
 * test process allocates no block of that size. */
static long foreign;
static void discard_detached(void) {
  hak_slab_t *s = _hak_slab_adopt(CLS, KEY_A);
  if (s != slab) {
    foreign++;
    return;
  }
  s->used = 0;
  _hak_slab_release(s);
}

static void *adopter(void *arg) {
  (void)arg;
  for (int r = 0; r < ROUNDS; r++) {
    pthread_barrier_wait(&bar);
    hak_slab_t *s = _hak_slab_adopt(CLS, KEY_B);
    if (s) atomic_store(&adopted, s == slab ? 1 : 2);
    pthread_barrier_wait(&bar);
  }
  return NULL;
}

static void test_claim(void) {
  pthread_barrier_init(&bar, NULL, 3);
  pthread_t t[2];
  /* Two frees of a slab's last two blocks: released once. */
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, freer, (void *)(intptr_t)i);
  long wrong = 0, twice = 0;
  for (int r = 0; r < ROUNDS; r++) {
    slab = detached_slab(2);
    hak_superslab_t *ss = hak_superslab_of((char *)slab + 1);
    unsigned u = hak_slab_unit(slab);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    if (!(ss->free_units >> u & 1) || slab->units != 0) wrong++;
    if (atomic_load(&slab->thread_free) != 0) twice++;
  }
  CHECKV("two threads free a detached slab's last two blocks at once: it is released", wrong == 0,
         "%ld of %d rounds", wrong, ROUNDS);
  CHECKV("and its descriptor is left clean (released once)", twice == 0, "%ld of %d rounds", twice, ROUNDS);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);

  /* Two frees of a slab with a third block out: it stays detached. */
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, freer, (void *)(intptr_t)i);
  wrong = 0;
  for (int r = 0; r < ROUNDS; r++) {
    slab = detached_slab(3);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    if (atomic_load(&slab->thread_free) != HAK_DETACHED || slab->used != 1 || !slab->listed) wrong++;
    _hak_slab_check(slab, NULL);
    discard_detached();
  }
  CHECKV("two frees of a detached slab with a block left: detached, one block out, listed", wrong == 0,
         "%ld of %d rounds", wrong, ROUNDS);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);

  /* A free racing an adoption: exactly one of them has the slab. */
  pthread_create(&t[0], NULL, freer, (void *)(intptr_t)0);
  pthread_create(&t[1], NULL, adopter, NULL);
  long lost = 0, held = 0;
  for (int r = 0; r < ROUNDS; r++) {
    slab = detached_slab(3);
    atomic_store(&adopted, 0);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    int a = atomic_load(&adopted);
    if (a == 1) {
      held++;
      /* adopted: held by B; the free came before (counted then) or after
       * (pushed on thread_free, which the holder collects) */
      _hak_slab_collect(slab);
      if (atomic_load(&slab->owner) != KEY_B || slab->used != 2 || atomic_load(&slab->thread_free) != 0)
        lost++;
      slab->used = 0;
      _hak_slab_release(slab);
    } else {
      /* not adopted (the free claimed it first, or the list was empty at
       * the glance): still detached, the freed block counted */
      if (atomic_load(&slab->thread_free) != HAK_DETACHED || slab->used != 2) lost++;
      discard_detached();
    }
  }
  CHECKV("a free racing an adoption: the slab is held by the adopter or detached, no block lost", lost == 0,
         "%ld of %d rounds", lost, ROUNDS);
  printf("claim: the adopter won %ld of %d races\n", held, ROUNDS);
  CHECKV("the test slab was the one detached slab of its class each time", foreign == 0, "%ld other",
         foreign);
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  pthread_barrier_destroy(&bar);
}

/* ---- block starts ------------------------------------------------------- */
static void test_blocks(void) {
  long wrong = 0, aliased = 0;
  for (size_t c = 1; c <= HAK_CLASS_LAST; c++) {
    uint64_t d = hak_class_size(c), mul = _hak_block_mul[c];
    uint64_t carved = ((uint64_t)1 << 20) / d;
    for (uint64_t x = 0; x < ((uint64_t)1 << 20) + 4096; x += 8)
      for (uint64_t off = x; off < x + 4; off += 1 + 2 * (off - x)) { /* x, x + 1, x + 3 */
        uint64_t k = hak_block_index(off * mul);
        bool want = off % d == 0 && off / d < carved;
        wrong += (k < carved) != want || (want && k != off / d);
      }
    /* An address outside the slab, by a multiple of 64 KiB below 2^47 either
     * way, never passes for one of its blocks. */
    for (uint64_t j = 32; j < ((uint64_t)1 << 31); j += 1 + (next() & 0xffff)) { /* 2 MiB on */
      uint64_t off = j << 16;
      aliased += hak_block_index(off * mul) < carved;
      aliased += hak_block_index((0 - off) * mul) < carved;
    }
  }
  CHECKV("block index by multiply = offset / size exactly at block starts", wrong == 0, "%ld wrong", wrong);
  CHECKV("no address within 2^47 of a slab aliases one of its blocks", aliased == 0, "%ld aliased", aliased);
}

/* ---- the free shortcut of a class's two slabs --------------------------- */
/* Whether the calling thread's free fast path proves p a block of one of
 * the slabs whose frees go straight to the class's list (alloc.h). */
static bool shortcut_takes(const void *p) {
  const hak_heap_t *h = hak_tls_own_heap();
  uintptr_t a = (uintptr_t)p;
  const hak_cur_unit_t *e = &h->front.cur_unit[(a >> HAK_UNIT_SHIFT) & (HAK_CUR_UNITS - 1)];
  return hak_block_index(a * e->mul - e->base) < e->limit;
}

static const hak_slab_t *slab_at(const void *p) { return hak_slab_of(hak_superslab_of(p), (uintptr_t)p); }

enum { SHORTCUT_MAX = 4096, SHORTCUT_CLASS = 64 / 16 };

/* The calling thread's 64-byte blocks into p until they fill one slab and
 * start a second: p[n] (n returned) is the first of the second slab, or
 * NULL. */
static int shortcut_two_slabs(void **p) {
  int n = 0;
  do p[n] = malloc(64);
  while (p[n] && slab_at(p[n]) == slab_at(p[0]) && ++n < SHORTCUT_MAX - 1);
  return n;
}

static void *shortcut_thread(void *arg) {
  (void)arg;
  static void *p[SHORTCUT_MAX];
  int n = shortcut_two_slabs(p);
  const hak_slab_t *a = slab_at(p[0]), *b = p[n] ? slab_at(p[n]) : NULL;
  n++;
  const hak_heap_t *h = hak_tls_own_heap();
  CHECK("64-byte blocks fill a one-unit slab, then start another", b && b != a && a->units == 1);
  CHECK("in two slabs: the one that filled first is the class's previous current slab",
        h->prev[SHORTCUT_CLASS] == a);
  CHECK("its blocks take the free shortcut, as the current slab's do",
        shortcut_takes(p[0]) && shortcut_takes(p[n - 1]));
  free(p[1]);
  CHECK("a free of one goes straight to the class's list", h->front.slot[SHORTCUT_CLASS].free == p[1]);
  p[1] = malloc(64);
  /* Until a third slab starts: then neither earlier slab keeps it. */
  int second = n;
  do p[n] = malloc(64);
  while (p[n] && slab_at(p[n]) == b && ++n < SHORTCUT_MAX - 1);
  CHECK("more blocks start a third slab", p[n] && slab_at(p[n]) != a && slab_at(p[n]) != b);
  n++;
  CHECK("with three slabs, none is the previous current one", h->prev[SHORTCUT_CLASS] == NULL);
  CHECK("the first two no longer take the shortcut, the current one does",
        !shortcut_takes(p[0]) && !shortcut_takes(p[second - 1]) && shortcut_takes(p[n - 1]));
  for (int i = 0; i < n; i++) free(p[i]);
  return NULL;
}

/* malloc_trim gives the previous current slab back once its blocks are
 * all free (they are on the class's list). */
static void *shortcut_trim_thread(void *arg) {
  (void)arg;
  static void *p[SHORTCUT_MAX];
  int n = shortcut_two_slabs(p);
  const hak_heap_t *h = hak_tls_own_heap();
  const hak_slab_t *a = slab_at(p[0]);
  CHECK("trim: two slabs, the first the previous current one", p[n] && h->prev[SHORTCUT_CLASS] == a);
  for (int i = 0; i < n; i++) free(p[i]); /* the first slab's blocks */
  CHECK("its blocks all freed, it is still held", h->prev[SHORTCUT_CLASS] == a);
  malloc_trim(0);
  CHECK("malloc_trim gives it back", h->prev[SHORTCUT_CLASS] == NULL && atomic_load(&a->owner) == 0);
  free(p[n]);
  return NULL;
}

/* In threads of their own, so that each heap starts empty. */
static void test_shortcut(void) {
  pthread_t t;
  if (CHECK("a thread for the shortcut test", pthread_create(&t, NULL, shortcut_thread, NULL) == 0))
    pthread_join(t, NULL);
  if (CHECK("a thread for the shortcut's trim", pthread_create(&t, NULL, shortcut_trim_thread, NULL) == 0))
    pthread_join(t, NULL);
}

int main(void) {
  test_shortcut();
  test_blocks();
  test_bitmaps();
  test_budget();
  test_elo();
  test_claim();
  return th_done();
}
