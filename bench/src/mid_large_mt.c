/* mid_large_mt: T threads, each with its own working set, allocating and
 * freeing blocks of random sizes between 1 KiB and 1 MiB (log-uniform: each
 * power-of-two band equally likely, so 1-2 KiB blocks are as common as
 * 512 KiB-1 MiB ones). Each step picks a random slot of the thread's working
 * set: free the block there, or allocate one if empty. One op = one malloc or
 * one free call; ops/s is the sum over threads divided by wall time. */
#include <pthread.h>
#include "bench.h"

static const char usage[] =
    "usage: mid_large_mt [threads=ncpu] [ops_per_thread=2M] [working_set=256] [min=1024] "
    "[max=1048576] [seed=1]\n";

typedef struct {
  long ops, ws;
  size_t lo, hi;
  uint64_t rng;
  uint64_t sum;
  pthread_barrier_t *start;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  void **slot = calloc((size_t)w->ws, sizeof *slot);
  uint64_t sum = 0;
  pthread_barrier_wait(w->start);
  for (long i = 0; i < w->ops; i++) {
    size_t k = (size_t)(bench_rand(&w->rng) % (uint64_t)w->ws);
    if (slot[k]) {
      sum += bench_peek(slot[k]);
      free(slot[k]);
      slot[k] = NULL;
    } else {
      size_t sz = bench_loguniform(&w->rng, w->lo, w->hi);
      char *p = malloc(sz);
      bench_touch(p, sz);
      slot[k] = p;
    }
  }
  for (long i = 0; i < w->ws; i++) free(slot[i]);
  free(slot);
  w->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  int nt = bench_threads(argc, argv, 1);
  long ops = bench_argl(argc, argv, 2, 2000000);
  long ws = bench_argl(argc, argv, 3, 256);
  size_t lo = (size_t)bench_argl(argc, argv, 4, 1024), hi = (size_t)bench_argl(argc, argv, 5, 1 << 20);
  uint64_t seed = (uint64_t)bench_argl(argc, argv, 6, 1);
  if (ws < 1) ws = 1;
  if (lo < 1) lo = 1;
  if (hi < lo) hi = lo;

  pthread_t tid[1024];
  worker_t w[1024];
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
  for (int t = 0; t < nt; t++) {
    w[t] = (worker_t){ops, ws, lo, hi, bench_seed(seed, (uint64_t)t), 0, &start};
    pthread_create(&tid[t], NULL, worker, &w[t]);
  }
  pthread_barrier_wait(&start);
  uint64_t t0 = bench_now_ns();
  for (int t = 0; t < nt; t++) {
    pthread_join(tid[t], NULL);
    bench_sink += w[t].sum;
  }
  uint64_t ns = bench_now_ns() - t0;
  char extra[160];
  snprintf(extra, sizeof extra, "threads=%d working_set=%ld min=%zu max=%zu", nt, ws, lo, hi);
  bench_result("mid_large_mt", (double)ops * nt, ns, extra);
  return 0;
}
