/* larson: the Larson & Krishnan server simulation (as in mimalloc-bench).
 * Each of T threads owns an array of `chunks` blocks (allocated, shuffled and
 * churned by the main thread first, so the first frees are remote). A thread
 * replaces random blocks (free + malloc of min..max bytes) rounds*chunks
 * times, then hands its array to a newly created thread that continues, until
 * `sleep` seconds have passed. One op = one free+malloc replacement (the
 * classic larson "operations"). Usual form: larson 5 8 1000 5000 100 4141 T. */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include "bench.h"

static const char usage[] =
    "usage: larson [sleep_s=2] [min=8] [max=1000] [chunks=5000] [rounds=100] [seed=4141] "
    "[threads=ncpu]\n  sleep may be fractional; chunks is per thread\n";

typedef struct {
  _Alignas(64) char **array;
  long asize, nblocks;
  size_t min, range;
  uint64_t rng;
  long allocs;    /* replacements done by all threads of this chain */
  long threads;   /* threads that ran this chain */
  uint64_t sum;
  _Atomic int finished;
} chain_t;

static _Atomic int stop;
static pthread_attr_t detached;

static void *exercise(void *arg) {
  chain_t *d = arg;
  for (;;) {
    d->threads++;
    long n = 0;
    uint64_t sum = 0;
    for (; n < d->nblocks; n++) {
      uint64_t x = bench_rand(&d->rng);
      long victim = (long)(x % (uint64_t)d->asize);
      sum += bench_peek(d->array[victim]);
      free(d->array[victim]);
      size_t sz = d->range ? d->min + (size_t)((x >> 32) % d->range) : d->min;
      char *p = malloc(sz);
      bench_touch(p, sz);
      d->array[victim] = p;
      if (atomic_load_explicit(&stop, memory_order_relaxed)) {
        n++;
        break;
      }
    }
    d->allocs += n;
    d->sum += sum;
    if (atomic_load(&stop)) break;
    pthread_t t;
    if (pthread_create(&t, &detached, exercise, d) == 0) return NULL;
    /* could not create a thread: carry on in this one */
  }
  atomic_store(&d->finished, 1);
  return NULL;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  double sleep_s = bench_argf(argc, argv, 1, 2.0);
  size_t min = (size_t)bench_argl(argc, argv, 2, 8), max = (size_t)bench_argl(argc, argv, 3, 1000);
  long chunks = bench_argl(argc, argv, 4, 5000), rounds = bench_argl(argc, argv, 5, 100);
  uint64_t seed = (uint64_t)bench_argl(argc, argv, 6, 4141);
  int nt = bench_threads(argc, argv, 7);
  if (min < 2) min = 2;
  if (max < min) max = min;
  if (chunks < 1) chunks = 1;
  if (rounds < 1) rounds = 1;

  /* Warm-up as in the original: allocate, shuffle, churn 4x, on this thread. */
  long total = chunks * nt;
  char **blk = malloc(sizeof *blk * (size_t)total);
  uint64_t r = bench_seed(seed, 0);
  size_t range = max - min;
  for (long i = 0; i < total; i++) {
    size_t sz = range ? min + (size_t)(bench_rand(&r) % range) : min;
    blk[i] = malloc(sz);
    bench_touch(blk[i], sz);
  }
  for (long i = total; i > 1; i--) {
    long v = (long)(bench_rand(&r) % (uint64_t)i);
    char *t = blk[v];
    blk[v] = blk[i - 1];
    blk[i - 1] = t;
  }
  for (long i = 0; i < 4 * total; i++) {
    long v = (long)(bench_rand(&r) % (uint64_t)total);
    free(blk[v]);
    size_t sz = range ? min + (size_t)(bench_rand(&r) % range) : min;
    blk[v] = malloc(sz);
    bench_touch(blk[v], sz);
  }

  chain_t *c = calloc((size_t)nt, sizeof *c);
  pthread_attr_init(&detached);
  pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
  uint64_t t0 = bench_now_ns();
  for (int t = 0; t < nt; t++) {
    c[t].array = blk + (long)t * chunks;
    c[t].asize = chunks;
    c[t].nblocks = rounds * chunks;
    c[t].min = min;
    c[t].range = range;
    c[t].rng = bench_seed(seed, (uint64_t)t + 1);
    pthread_t tid;
    if (pthread_create(&tid, &detached, exercise, &c[t]) != 0) {
      fprintf(stderr, "larson: pthread_create failed\n");
      return 1;
    }
  }
  struct timespec ts = {(time_t)sleep_s, (long)((sleep_s - (double)(time_t)sleep_s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0) {
  }
  atomic_store(&stop, 1);
  for (int t = 0; t < nt; t++) {
    while (!atomic_load(&c[t].finished)) {
      struct timespec ms = {0, 200000};
      nanosleep(&ms, NULL);
    }
  }
  uint64_t ns = bench_now_ns() - t0;

  long allocs = 0, threads = 0;
  for (int t = 0; t < nt; t++) {
    allocs += c[t].allocs;
    threads += c[t].threads;
    bench_sink += c[t].sum;
  }
  for (long i = 0; i < total; i++) free(blk[i]);
  free(blk);
  free(c);
  char extra[192];
  snprintf(extra, sizeof extra, "threads=%d min=%zu max=%zu chunks=%ld rounds=%ld threads_created=%ld",
           nt, min, max, chunks, rounds, threads);
  bench_result("larson", (double)allocs, ns, extra);
  return 0;
}
