/* tests/soak.c — a long run of everything at once, to show that memory
 * stays flat and no block is ever corrupted.
 *
 *   soak [SECONDS]      (default 600; `make soak`, SOAK_SECONDS=...)
 *
 * SOAK_THREADS workers (default 8) run at all times: each lives for a
 * random number of operations and exits, and the main thread joins it and
 * starts another at once, so threads are created and joined continuously.
 * A worker keeps up to 256 blocks of its own and swaps blocks with a shared
 * array of 4096, which therefore holds blocks of threads long gone, freed
 * later by others; when it ends it leaves half of its blocks there. Sizes
 * cover every tier (Tiny 16 B - 1 KiB most often, Mid to 32 KiB, pool to
 * 1 MiB, Large to 4 MiB), some blocks grow or shrink with realloc, and
 * every block carries a pattern derived from a seed in its header (in
 * every word below 32 KiB, in one word per page above), checked whenever
 * it is freed or reallocated.
 *
 * Every 10 s it prints the elapsed time, VmRSS, the bytes of live blocks
 * and, under hakmem, committed memory (and its terms), slabs and live heaps. RSS is
 * sampled twice a second; after a warm-up (the first fifth of the run, and
 * at least 10 s, or half of a shorter run), the run is "flat" when the
 * mean RSS beyond the live blocks over the last third is at most 10 % +
 * 8 MiB above that over the first third, plus three standard errors of
 * that difference. It ends
 * with
 *   RSS flat: yes|no (...)
 *   corruption: none|found (...)
 * and the harness's closing line; the exit status is 0 only for yes and
 * none. Runs under any malloc (LD_PRELOAD another to compare). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "util.h"

enum { SLOTS = 4096, OWN = 256, MAX_THREADS = 64 };
#define SPARSE_FROM ((size_t)32 << 10) /* blocks from here on carry one pattern word per page */
#define HEADER 16

static _Atomic(uint64_t *) slot[SLOTS];
static atomic_long live_bytes, n_bad, n_null, n_blocks;
static _Atomic int stopping;

/* Byte size: Tiny 70 %, Mid 22 %, pool 7 %, Large 1 %. */
static size_t pick(uint64_t *r) {
  uint64_t x = rng_next(r);
  unsigned k = (unsigned)(x % 100);
  x >>= 8;
  if (k < 70) return 16 + x % 1008;
  if (k < 92) return 1024 + x % (31 * 1024);
  if (k < 99) return SPARSE_FROM + x % (((size_t)1 << 20) - SPARSE_FROM);
  return ((size_t)1 << 20) + x % ((size_t)3 << 20);
}

/* Writes the pattern words of a block of `size` bytes from the one that
 * holds byte `from` on (a block that grew completes its last word). */
static void fill(uint64_t *w, size_t from, size_t size, uint64_t seed) {
  size_t step = size >= SPARSE_FROM ? 4096 : 8;
  for (size_t off = from / step * step; off + 8 <= size; off += step)
    if (off >= HEADER) w[off / 8] = pat_word(seed, off);
}

static int check(const uint64_t *w) {
  size_t size = (size_t)w[0];
  if (size < HEADER || size > ((size_t)4 << 20)) return 0;
  size_t step = size >= SPARSE_FROM ? 4096 : 8;
  for (size_t off = step >= HEADER ? step : HEADER; off + 8 <= size; off += step)
    if (w[off / 8] != pat_word(w[1], off)) return 0;
  return 1;
}

static uint64_t *make(uint64_t *r) {
  size_t size = pick(r);
  uint64_t *w = malloc(size);
  if (!w) {
    atomic_fetch_add(&n_null, 1);
    return NULL;
  }
  w[0] = size;
  w[1] = rng_next(r);
  fill(w, 0, size, w[1]);
  atomic_fetch_add(&live_bytes, (long)size);
  atomic_fetch_add(&n_blocks, 1);
  return w;
}

static int verify(const uint64_t *w) {
  if (check(w)) return 1;
  if (atomic_fetch_add(&n_bad, 1) < 5)
    CHECKV("block intact", 0, "block %p, size word %llu", (const void *)w, (unsigned long long)w[0]);
  return 0;
}

static void drop(uint64_t *w) {
  if (!w || !verify(w)) return;
  atomic_fetch_sub(&live_bytes, (long)w[0]);
  free(w);
}

/* Grows or shrinks w with realloc; the prefix must survive. */
static uint64_t *resize(uint64_t *w, uint64_t *r) {
  if (!verify(w)) return NULL;
  size_t old = (size_t)w[0], size = pick(r);
  uint64_t *q = realloc(w, size);
  if (!q) {
    atomic_fetch_add(&n_null, 1);
    return w;
  }
  q[0] = size;
  size_t keep = size < old ? size : old;
  /* The prefix kept its pattern; a block that was sparse and is now dense
   * gets the words between its pages. */
  if (old >= SPARSE_FROM && size < SPARSE_FROM) fill(q, 0, size, q[1]);
  else fill(q, keep, size, q[1]);
  atomic_fetch_add(&live_bytes, (long)size - (long)old);
  return q;
}

static void *worker(void *arg) {
  uint64_t r = mix64((uint64_t)(uintptr_t)arg) | 1;
  uint64_t *own[OWN] = {0};
  long ops = 2000 + (long)(rng_next(&r) % 60000);
  while (ops-- > 0 && !atomic_load_explicit(&stopping, memory_order_relaxed)) {
    uint64_t x = rng_next(&r);
    unsigned i = (unsigned)(x % OWN), k = (unsigned)(x >> 32) % 16;
    if (k < 9) { /* a new block in place of one of ours */
      drop(own[i]);
      own[i] = make(&r);
    } else if (k < 11) {
      drop(own[i]);
      own[i] = NULL;
    } else if (k < 15) { /* swap with the shared array: the block we get is usually another thread's */
      own[i] = atomic_exchange(&slot[(x >> 8) % SLOTS], own[i]);
    } else if (own[i]) {
      own[i] = resize(own[i], &r);
    }
  }
  for (unsigned i = 0; i < OWN; i++)
    if (i % 2) drop(atomic_exchange(&slot[rng_next(&r) % SLOTS], own[i]));
    else drop(own[i]);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
  pthread_t t;
  _Atomic int done;
  int live;
} runner_t;

static runner_t runner[MAX_THREADS];

static void *run(void *arg) {
  runner_t *me = arg;
  static _Atomic uint64_t seq;
  worker((void *)(uintptr_t)atomic_fetch_add(&seq, 1));
  atomic_store(&me->done, 1);
  return NULL;
}

static int start(runner_t *w) {
  atomic_store(&w->done, 0);
  w->live = pthread_create(&w->t, NULL, run, w) == 0;
  if (!w->live) atomic_fetch_add(&n_null, 1);
  return w->live;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? strtod(argv[1], NULL) : 600;
  const char *e = getenv("SOAK_THREADS");
  int nthreads = e && *e ? atoi(e) : 8;
  if (nthreads < 1 || nthreads > MAX_THREADS) nthreads = 8;
  int have_hak = hak_load() && hakmem_is_malloc();
  enum { MAX_SAMPLES = 1 << 16 };
  static double excess[MAX_SAMPLES], at[MAX_SAMPLES];
  int ns = 0;
  long threads_run = 0;
  printf("soak: %.0f s, %d threads at a time, %s\n", secs, nthreads,
         have_hak ? hak.version() : "not hakmem (figures of RSS only)");
  fflush(stdout);
  for (int i = 0; i < nthreads; i++) threads_run += start(&runner[i]);
  double t0 = now(), next_sample = t0, next_print = t0 + 10;
  for (;;) {
    double t = now();
    if (t - t0 >= secs) break;
    for (int i = 0; i < nthreads; i++)
      if (runner[i].live && atomic_load(&runner[i].done)) {
        pthread_join(runner[i].t, NULL);
        threads_run += start(&runner[i]);
      }
    if (t >= next_sample && ns < MAX_SAMPLES) {
      long rss = rss_kb() << 10;
      excess[ns] = (double)(rss - atomic_load(&live_bytes)) / 1048576.0;
      at[ns++] = t - t0;
      next_sample += 0.5;
    }
    if (t >= next_print) {
      next_print += 10;
      printf("%6.0f s  RSS %7.1f MiB  live %7.1f MiB  threads %ld", t - t0, rss_kb() / 1024.0,
             atomic_load(&live_bytes) / 1048576.0, threads_run);
      if (have_hak) {
        hak_stats_t st;
        hak.stats(&st);
        printf("  committed %7.1f MiB (in use %.1f, free in slabs %.1f, empty %.1f)  slabs %llu  heaps %llu",
               st.committed / 1048576.0, st.in_use / 1048576.0, st.slab_free / 1048576.0,
               st.empty / 1048576.0, (unsigned long long)st.slabs, (unsigned long long)st.heaps);
      }
      printf("\n");
      fflush(stdout);
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  atomic_store(&stopping, 1);
  for (int i = 0; i < nthreads; i++)
    if (runner[i].live) pthread_join(runner[i].t, NULL);
  for (int i = 0; i < SLOTS; i++) drop(atomic_exchange(&slot[i], NULL));

  /* Flat: after the warm-up (the working rooms and the budget grow with
   * the run's first seconds: a fifth of the run, and at least 10 s of a run
   * of 20 s or more), the mean excess over the last third is at most 10 %
   * + 8 MiB above that over the first, plus three standard errors of the
   * difference (the live set moves at random: in a short run the noise is
   * tens of MiB, in ten minutes a few). */
  double warm = secs / 5 > 10 ? secs / 5 : secs / 2 < 10 ? secs / 2 : 10, span = secs - warm;
  double sum[2] = {0, 0}, sq[2] = {0, 0};
  int cnt[2] = {0, 0};
  for (int i = 0; i < ns; i++) {
    int w = at[i] < warm ? -1 : at[i] < warm + span / 3 ? 0 : at[i] >= warm + 2 * span / 3 ? 1 : -1;
    if (w < 0) continue;
    sum[w] += excess[i];
    sq[w] += excess[i] * excess[i];
    cnt[w]++;
  }
  double mean[2], var[2];
  for (int w = 0; w < 2; w++) {
    mean[w] = cnt[w] ? sum[w] / cnt[w] : 0;
    var[w] = cnt[w] > 1 ? (sq[w] - cnt[w] * mean[w] * mean[w]) / (cnt[w] - 1) : 0;
  }
  double noise = 3 * sqrt((cnt[0] ? var[0] / cnt[0] : 0) + (cnt[1] ? var[1] / cnt[1] : 0));
  double first = mean[0], last = mean[1];
  int flat = cnt[0] && cnt[1] && last <= first * 1.10 + 8 + noise;
  long bad = atomic_load(&n_bad), nul = atomic_load(&n_null);
  printf(
      "RSS flat: %s (RSS beyond the live blocks: mean %.1f MiB in the first third after warm-up, "
      "%.1f in the last, noise %.1f; %d samples)\n",
      flat ? "yes" : "no", first, last, noise, ns);
  printf("corruption: %s (%ld blocks, %ld threads, %ld blocks damaged, %ld allocations failed)\n",
         bad ? "found" : "none", atomic_load(&n_blocks), threads_run, bad, nul);
  CHECKV("RSS flat", flat, "%.1f -> %.1f MiB beyond the live blocks", first, last);
  CHECK("no block corrupted", bad == 0);
  CHECKV("every allocation and thread creation succeeded", nul == 0, "%ld failed", nul);
  CHECKV("live bytes back to 0 after the final free", atomic_load(&live_bytes) == 0, "%ld",
         atomic_load(&live_bytes));
  if (have_hak) {
    hak_stats_t st;
    hak.stats(&st);
    CHECKV("hakmem: one heap left at the end (the main thread's)", st.heaps <= 1, "%llu",
           (unsigned long long)st.heaps);
    CHECKV("hakmem: the accounting identity holds at the end", st.unaccounted == 0, "off by %lld",
           (long long)st.unaccounted);
  }
  return th_done();
}
