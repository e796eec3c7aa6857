/* comprehensive: a battery of allocation patterns, one RESULT line each
 * (bench=comprehensive/<pattern>). The runner starts one process per pattern
 * so each gets its own peak RSS; `all` runs them in turn.
 *   lifo      allocate a batch of 1024 blocks (16..1024 B), free newest first
 *   fifo      same batch, free oldest first
 *   random    same batch, free in a random order
 *   realloc   64 interleaved growth chains: 16 B grown by ~1.5x with realloc
 *             up to 128 KiB, then freed and restarted
 *   calloc    calloc of random sizes (16 B..8 KiB, 1 in 16 up to 256 KiB)
 *             over a working set of 4096 slots
 *   aligned   posix_memalign / aligned_alloc, alignment 16..4096, sizes
 *             16..2048, over a working set of 4096 slots
 *   prodcons  threads/2 producer-consumer pairs (at least one): the producer
 *             allocates 16..1024 B and passes the block through a ring to its
 *             consumer, which frees it (every free is a remote free)
 * One op = one malloc, calloc, realloc, aligned allocation or free call. */
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include "bench.h"

static const char usage[] =
    "usage: comprehensive [pattern=all] [ops] [threads=ncpu] [seed=1]\n"
    "  pattern: lifo fifo random realloc calloc aligned prodcons all\n"
    "  ops defaults per pattern: 20M lifo/fifo/random, 2M realloc, 4M calloc, 10M aligned/prodcons\n";

enum { BATCH = 1024, NSIZES = 4096, NPERM = 8 };

static size_t sizes[NSIZES];       /* precomputed 16..1024, so the RNG is off the timed path */
static unsigned perm[NPERM][BATCH]; /* free orders for `random` */
static uint64_t seed_arg;

static void init_tables(void) {
  uint64_t r = bench_seed(seed_arg, 100);
  for (int i = 0; i < NSIZES; i++) sizes[i] = bench_uniform(&r, 16, 1024);
  for (int k = 0; k < NPERM; k++) {
    for (unsigned i = 0; i < BATCH; i++) perm[k][i] = i;
    for (unsigned i = BATCH - 1; i > 0; i--) {
      unsigned j = (unsigned)(bench_rand(&r) % (i + 1)), t = perm[k][i];
      perm[k][i] = perm[k][j];
      perm[k][j] = t;
    }
  }
}

/* lifo / fifo / random: order 0, 1, 2. */
static double batch_pattern(long ops, int order) {
  static void *blk[BATCH];
  long rounds = ops / (2 * BATCH);
  if (rounds < 1) rounds = 1;
  unsigned si = 0;
  uint64_t sum = 0;
  for (long r = 0; r < rounds; r++) {
    for (int i = 0; i < BATCH; i++) {
      size_t sz = sizes[si++ % NSIZES];
      char *p = malloc(sz);
      bench_touch(p, sz);
      blk[i] = p;
    }
    si += 7; /* shift the size sequence between rounds */
    if (order == 0) {
      for (int i = BATCH - 1; i >= 0; i--) { sum += bench_peek(blk[i]); free(blk[i]); }
    } else if (order == 1) {
      for (int i = 0; i < BATCH; i++) { sum += bench_peek(blk[i]); free(blk[i]); }
    } else {
      const unsigned *pm = perm[r % NPERM];
      for (int i = 0; i < BATCH; i++) { sum += bench_peek(blk[pm[i]]); free(blk[pm[i]]); }
    }
  }
  bench_sink += sum;
  return (double)rounds * 2 * BATCH;
}

static double realloc_pattern(long ops) {
  enum { CHAINS = 64 };
  const size_t max = 128 << 10;
  char *p[CHAINS];
  size_t sz[CHAINS];
  uint64_t r = bench_seed(seed_arg, 1), sum = 0;
  double done = 0;
  for (int c = 0; c < CHAINS; c++) {
    sz[c] = 16;
    p[c] = malloc(16);
    bench_touch(p[c], 16);
  }
  while (done < (double)ops) {
    uint64_t x = bench_rand(&r);
    int c = (int)(x % CHAINS);
    if (sz[c] >= max) {
      sum += bench_peek(p[c]);
      free(p[c]);
      sz[c] = 16 + (size_t)((x >> 8) % 48);
      p[c] = malloc(sz[c]);
      done += 2;
    } else {
      sz[c] += sz[c] / 2 + (size_t)((x >> 8) % 64);
      p[c] = realloc(p[c], sz[c]);
      done += 1;
    }
    bench_touch(p[c], sz[c]);
  }
  for (int c = 0; c < CHAINS; c++) free(p[c]);
  bench_sink += sum;
  return done;
}

/* calloc (kind 0) and aligned (kind 1) over a half-full working set. */
static double slot_pattern(long ops, int kind) {
  enum { WS = 4096 };
  static void *slot[WS];
  static const size_t aligns[] = {16, 32, 64, 128, 256, 512, 1024, 4096};
  uint64_t r = bench_seed(seed_arg, 2 + (uint64_t)kind), sum = 0;
  for (long i = 0; i < ops; i++) {
    uint64_t x = bench_rand(&r);
    size_t k = (size_t)(x % WS);
    if (slot[k]) {
      sum += bench_peek(slot[k]);
      free(slot[k]);
      slot[k] = NULL;
      continue;
    }
    char *p;
    size_t sz;
    if (kind == 0) {
      sz = ((x >> 16) & 15) == 0 ? bench_loguniform(&r, 8192, 256 << 10) : 16 + (size_t)((x >> 24) % 8177);
      p = calloc(1, sz);
      if (p) sum += (uint64_t)p[sz / 2];
    } else {
      size_t a = aligns[(x >> 16) & 7];
      sz = 16 + (size_t)((x >> 24) % 2033);
      if ((x >> 20) & 1) {
        void *q = NULL;
        if (posix_memalign(&q, a, sz) != 0) q = NULL;
        p = q;
      } else {
        sz = (sz + a - 1) & ~(a - 1); /* C11 wants a multiple of the alignment */
        p = aligned_alloc(a, sz);
      }
    }
    if (!p) continue;
    bench_touch(p, sz);
    slot[k] = p;
  }
  for (int k = 0; k < WS; k++) { free(slot[k]); slot[k] = NULL; }
  bench_sink += sum;
  return (double)ops;
}

/* prodcons: single-producer single-consumer rings of block pointers. */
enum { RING = 4096, PUBLISH = 64 }; /* the producer publishes every PUBLISH blocks */
typedef struct {
  _Alignas(64) _Atomic unsigned long head; /* written by the consumer */
  _Alignas(64) _Atomic unsigned long tail; /* written by the producer */
  _Alignas(64) void *buf[RING];
  long count;  /* blocks the producer makes */
  uint64_t rng;
  uint64_t sum;
} ring_t;

static void *producer(void *arg) {
  ring_t *q = arg;
  unsigned long tail = 0;
  for (long i = 0; i < q->count; i++) {
    size_t sz = bench_uniform(&q->rng, 16, 1024);
    char *p = malloc(sz);
    bench_touch(p, sz);
    while (tail - atomic_load_explicit(&q->head, memory_order_acquire) >= RING) sched_yield();
    q->buf[tail++ % RING] = p;
    if (tail % PUBLISH == 0 || i == q->count - 1) atomic_store_explicit(&q->tail, tail, memory_order_release);
  }
  return NULL;
}

static void *consumer(void *arg) {
  ring_t *q = arg;
  unsigned long head = 0;
  uint64_t sum = 0;
  while ((long)head < q->count) {
    unsigned long tail = atomic_load_explicit(&q->tail, memory_order_acquire);
    if (tail == head) {
      sched_yield();
      continue;
    }
    while (head < tail) {
      void *p = q->buf[head % RING];
      sum += bench_peek(p);
      free(p);
      head++;
    }
    atomic_store_explicit(&q->head, head, memory_order_release);
  }
  q->sum = sum;
  return NULL;
}

static double prodcons_pattern(long ops, int threads) {
  int pairs = threads / 2 < 1 ? 1 : threads / 2;
  if (pairs > 512) pairs = 512;
  ring_t *q = aligned_alloc(64, sizeof(ring_t) * (size_t)pairs);
  pthread_t tid[2 * 512];
  for (int i = 0; i < pairs; i++) {
    memset(&q[i], 0, sizeof q[i]);
    q[i].count = ops / 2 / pairs;
    q[i].rng = bench_seed(seed_arg, 10 + (uint64_t)i);
    pthread_create(&tid[2 * i], NULL, consumer, &q[i]);
    pthread_create(&tid[2 * i + 1], NULL, producer, &q[i]);
  }
  double done = 0;
  for (int i = 0; i < pairs; i++) {
    pthread_join(tid[2 * i], NULL);
    pthread_join(tid[2 * i + 1], NULL);
    bench_sink += q[i].sum;
    done += 2.0 * (double)q[i].count;
  }
  free(q);
  return done;
}

static const char *const names[] = {"lifo", "fifo", "random", "realloc", "calloc", "aligned", "prodcons"};

static const long default_ops[] = {20000000, 20000000, 20000000, 2000000, 4000000, 10000000, 10000000};

static void run(int which, long ops, int threads) {
  if (ops <= 0) ops = default_ops[which];
  uint64_t t0 = bench_now_ns();
  double done;
  switch (which) {
  case 0: case 1: case 2: done = batch_pattern(ops, which); break;
  case 3: done = realloc_pattern(ops); break;
  case 4: case 5: done = slot_pattern(ops, which - 4); break;
  default: done = prodcons_pattern(ops, threads); break;
  }
  uint64_t ns = bench_now_ns() - t0;
  char name[64], extra[64];
  snprintf(name, sizeof name, "comprehensive/%s", names[which]);
  snprintf(extra, sizeof extra, "threads=%d", which == 6 ? (threads / 2 < 1 ? 2 : threads / 2 * 2) : 1);
  bench_result(name, done, ns, extra);
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  const char *pat = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : "all";
  long ops = bench_argl(argc, argv, 2, 0);
  int threads = bench_threads(argc, argv, 3);
  seed_arg = (uint64_t)bench_argl(argc, argv, 4, 1);
  init_tables();
  int n = (int)(sizeof names / sizeof names[0]), ran = 0;
  for (int i = 0; i < n; i++) {
    if (strcmp(pat, "all") == 0 || strcmp(pat, names[i]) == 0) {
      run(i, ops, threads);
      ran++;
    }
  }
  if (!ran) {
    fputs(usage, stderr);
    return 2;
  }
  return 0;
}
