/* false_sharing: does the allocator put blocks that different threads write
 * in one cache line? (the Hoard paper's cache-thrash and cache-scratch
 * tests, our code and parameters). Each of T threads, `objects` times,
 * allocates a block of `size` bytes, writes every byte of it `writes` times
 * and frees it.
 *   active   the threads start with nothing: an allocator that hands two
 *            threads neighbouring blocks makes their writes fight for the
 *            line (active false sharing)
 *   passive  the main thread first allocates one block per thread, side by
 *            side, and each thread frees its block before it starts: an
 *            allocator that gives the freed block (or its neighbours) back to
 *            the freeing thread makes neighbours of the threads' blocks
 *            (passive false sharing)
 * One op = one write of a byte; the time is mostly those writes, and grows
 * when the lines bounce between cores. */
#include <pthread.h>
#include "bench.h"

static const char usage[] =
    "usage: false_sharing [active|passive] [threads=ncpu] [objects=2000] [writes=20000] [size=8]\n";

static long objects, writes;
static size_t size;

typedef struct {
  pthread_t tid;
  void *given; /* passive: the main thread's block this thread frees first */
  uint64_t sum;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  free(w->given);
  uint64_t sum = 0;
  for (long i = 0; i < objects; i++) {
    volatile char *p = malloc(size);
    for (long r = 0; r < writes; r++)
      for (size_t k = 0; k < size; k++) p[k] = (char)(p[k] + 1);
    sum += (uint64_t)p[0];
    free((void *)p);
  }
  w->sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  const char *mode = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : "active";
  int passive = strcmp(mode, "passive") == 0;
  int nt = bench_threads(argc, argv, 2);
  objects = bench_argl(argc, argv, 3, 2000);
  writes = bench_argl(argc, argv, 4, 20000);
  size = (size_t)bench_argl(argc, argv, 5, 8);
  if ((!passive && strcmp(mode, "active") != 0) || objects < 1 || writes < 1 || size < 1) {
    fputs(usage, stderr);
    return 2;
  }
  worker_t *w = calloc((size_t)nt, sizeof *w);
  if (!w) return 1;
  for (int i = 0; i < nt && passive; i++) {
    w[i].given = malloc(size);
    memset(w[i].given, 0, size);
  }
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < nt; i++) pthread_create(&w[i].tid, NULL, worker, &w[i]);
  for (int i = 0; i < nt; i++) pthread_join(w[i].tid, NULL);
  uint64_t ns = bench_now_ns() - t0;

  for (int i = 0; i < nt; i++) bench_sink += w[i].sum;
  free(w);
  char name[64], extra[96];
  snprintf(name, sizeof name, "false_sharing/%s", mode);
  snprintf(extra, sizeof extra, "threads=%d objects=%ld writes=%ld size=%zu", nt, objects, writes, size);
  bench_result(name, (double)nt * (double)objects * (double)writes * (double)size, ns, extra);
  return 0;
}
