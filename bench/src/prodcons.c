/* prodcons: producers allocate, consumers free. P producer threads each
 * allocate `blocks` blocks of min..max bytes (log-uniform: every power-of-two
 * band equally likely; min = max for one size), write them, and hand them in
 * batches of 64 to a queue shared by C consumer threads, which read and free
 * them: every free is a remote free, and a consumer frees blocks of every
 * producer. At most 256 batches wait in the queue; a producer that finds it
 * full yields. The batch records themselves are allocated by producers and
 * freed by consumers too. One op = one malloc or one free call of a block. */
#include <pthread.h>
#include <sched.h>
#include "bench.h"

static const char usage[] =
    "usage: prodcons [producers=1] [consumers=1] [blocks=10M] [min=64] [max=64] [seed=1]\n"
    "  blocks: per producer\n";

enum { BATCH = 64, QUEUE_MAX = 256, NSIZES = 4096 };

typedef struct batch {
  struct batch *next;
  void *p[BATCH];
} batch_t;

static struct {
  _Alignas(64) pthread_mutex_t lock;
  batch_t *head, *tail;
  long queued;          /* batches in the queue */
  int producers_left;   /* producers still running */
} q = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t sizes[NSIZES]; /* precomputed, so the RNG is off the timed path */
static long blocks;

static void *producer(void *arg) {
  unsigned si = (unsigned)(uintptr_t)arg * 997;
  for (long done = 0; done < blocks; done += BATCH) { /* blocks: a multiple of BATCH */
    batch_t *b = malloc(sizeof *b);
    b->next = NULL;
    for (int i = 0; i < BATCH; i++) {
      size_t sz = sizes[si++ % NSIZES];
      char *p = malloc(sz);
      bench_touch(p, sz);
      b->p[i] = p;
    }
    for (;;) {
      pthread_mutex_lock(&q.lock);
      if (q.queued < QUEUE_MAX) break;
      pthread_mutex_unlock(&q.lock);
      sched_yield();
    }
    if (q.tail) q.tail->next = b;
    else q.head = b;
    q.tail = b;
    q.queued++;
    pthread_mutex_unlock(&q.lock);
  }
  pthread_mutex_lock(&q.lock);
  q.producers_left--;
  pthread_mutex_unlock(&q.lock);
  return NULL;
}

static void *consumer(void *arg) {
  uint64_t sum = 0;
  for (;;) {
    pthread_mutex_lock(&q.lock);
    batch_t *b = q.head;
    if (b) {
      q.head = b->next;
      if (!q.head) q.tail = NULL;
      q.queued--;
    }
    int left = q.producers_left;
    pthread_mutex_unlock(&q.lock);
    if (!b) {
      if (!left) break;
      sched_yield();
      continue;
    }
    for (int i = 0; i < BATCH; i++) {
      sum += bench_peek(b->p[i]);
      free(b->p[i]);
    }
    free(b);
  }
  *(uint64_t *)arg = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  long np = bench_argl(argc, argv, 1, 1), nc = bench_argl(argc, argv, 2, 1);
  blocks = bench_argl(argc, argv, 3, 10000000);
  size_t lo = (size_t)bench_argl(argc, argv, 4, 64), hi = (size_t)bench_argl(argc, argv, 5, 64);
  uint64_t rng = bench_seed((uint64_t)bench_argl(argc, argv, 6, 1), 0);
  if (np < 1 || np > 256 || nc < 1 || nc > 256 || blocks < 1 || lo < 1 || hi < lo) {
    fputs(usage, stderr);
    return 2;
  }
  for (int i = 0; i < NSIZES; i++) sizes[i] = bench_loguniform(&rng, lo, hi);
  blocks = (blocks + BATCH - 1) / BATCH * BATCH;
  q.producers_left = (int)np;

  pthread_t tid[512];
  uint64_t sums[256] = {0};
  uint64_t t0 = bench_now_ns();
  for (long i = 0; i < nc; i++) pthread_create(&tid[i], NULL, consumer, &sums[i]);
  for (long i = 0; i < np; i++) pthread_create(&tid[nc + i], NULL, producer, (void *)(uintptr_t)i);
  for (long i = 0; i < np + nc; i++) pthread_join(tid[i], NULL);
  uint64_t ns = bench_now_ns() - t0;

  for (long i = 0; i < nc; i++) bench_sink += sums[i];
  char extra[128];
  snprintf(extra, sizeof extra, "producers=%ld consumers=%ld min=%zu max=%zu", np, nc, lo, hi);
  bench_result("prodcons", 2.0 * (double)blocks * (double)np, ns, extra);
  return 0;
}
