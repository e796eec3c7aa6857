/* xthread_churn: cross-thread churn in the style of SmartHeap sh6bench and
 * sh8bench. Each of T threads, per round, allocates `blocks` blocks of
 * varying sizes (min..max, and every 64th block 1..64 KiB), then frees the
 * first third in allocation order, the second third in reverse order and the
 * last third in random order. A share of the blocks (remote%, default 25)
 * is not freed locally but passed in batches to another thread, which frees
 * it at the start of its next round: those are remote frees. A thread whose
 * batches would make another's inbox hold more than INBOX_MAX waits,
 * freeing its own inbox meanwhile, and a thread past its last round goes on
 * freeing its inbox until all are: without that, a thread that fell behind
 * had ever more to free, the one ahead stopped freeing at the end, and the
 * peak RSS (27 to 370 MiB from run to run, under every allocator) and the
 * time measured that luck of scheduling, not the allocator. One op = one malloc
 * or one free call (2 per block). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include "bench.h"

static const char usage[] =
    "usage: xthread_churn [threads=ncpu] [rounds=1000] [blocks=2000] [min=8] [max=1000] "
    "[remote%=25] [seed=1]\n";

enum { BATCH_CAP = 254, NSIZES = 4096, NPERM = 4, INBOX_MAX = 8 /* batches: about 4 rounds of 2000 blocks */ };

typedef struct batch {
  struct batch *next;
  long n;
  void *p[BATCH_CAP];
} batch_t;

typedef struct {
  _Alignas(64) pthread_mutex_t lock;
  batch_t *head;
  long batches; /* in head */
} inbox_t;

typedef struct {
  int id, nt;
  long rounds, blocks;
  size_t min, max;
  unsigned remote_pct;
  uint64_t rng, sum;
  long frees_local, frees_remote;
} worker_t;

static inbox_t *inbox;
static pthread_barrier_t start;
static _Atomic int running; /* threads not past their last round */

static void drain(worker_t *w);

static void post(worker_t *w, batch_t *b) {
  int to = w->nt > 1 ? (w->id + 1 + (int)(bench_rand(&w->rng) % (uint64_t)(w->nt - 1))) % w->nt : w->id;
  pthread_mutex_lock(&inbox[to].lock);
  while (to != w->id && inbox[to].batches >= INBOX_MAX) {
    pthread_mutex_unlock(&inbox[to].lock);
    drain(w); /* the other thread may be waiting for this one's inbox */
    sched_yield();
    pthread_mutex_lock(&inbox[to].lock);
  }
  b->next = inbox[to].head;
  inbox[to].head = b;
  inbox[to].batches++;
  pthread_mutex_unlock(&inbox[to].lock);
}

static void drain(worker_t *w) {
  pthread_mutex_lock(&inbox[w->id].lock);
  batch_t *b = inbox[w->id].head;
  inbox[w->id].head = NULL;
  inbox[w->id].batches = 0;
  pthread_mutex_unlock(&inbox[w->id].lock);
  uint64_t sum = 0;
  while (b) {
    batch_t *next = b->next;
    for (long i = 0; i < b->n; i++) {
      sum += bench_peek(b->p[i]);
      free(b->p[i]);
    }
    w->frees_remote += b->n;
    free(b);
    b = next;
  }
  w->sum += sum;
}

static void *worker(void *arg) {
  worker_t *w = arg;
  size_t *sizes = malloc(sizeof *sizes * NSIZES);
  void **blk = malloc(sizeof *blk * (size_t)w->blocks);
  unsigned *perm = malloc(sizeof *perm * (size_t)w->blocks * NPERM);
  uint8_t *remote = malloc(NSIZES);
  for (int i = 0; i < NSIZES; i++) {
    sizes[i] = i % 64 == 63 ? bench_loguniform(&w->rng, 1024, 64 << 10) : bench_uniform(&w->rng, w->min, w->max);
    remote[i] = bench_rand(&w->rng) % 100 < w->remote_pct;
  }
  long third = w->blocks / 3, rest = w->blocks - 2 * third;
  for (int k = 0; k < NPERM; k++) {
    unsigned *pm = perm + (size_t)k * (size_t)w->blocks;
    for (long i = 0; i < rest; i++) pm[i] = (unsigned)(2 * third + i);
    for (long i = rest - 1; i > 0; i--) {
      long j = (long)(bench_rand(&w->rng) % (uint64_t)(i + 1));
      unsigned t = pm[i];
      pm[i] = pm[j];
      pm[j] = t;
    }
  }
  batch_t *out = NULL;
  unsigned si = (unsigned)w->id * 977, ri = 0;
  uint64_t sum = 0;
  pthread_barrier_wait(&start);
  for (long r = 0; r < w->rounds; r++) {
    drain(w);
    for (long i = 0; i < w->blocks; i++) {
      size_t sz = sizes[si++ % NSIZES];
      char *p = malloc(sz);
      bench_touch(p, sz);
      blk[i] = p;
    }
    si += 13;
    const unsigned *pm = perm + (size_t)(r % NPERM) * (size_t)w->blocks;
    for (long i = 0; i < w->blocks; i++) {
      long k = i < third ? i : i < 2 * third ? 3 * third - 1 - i : (long)pm[i - 2 * third];
      void *p = blk[k];
      if (remote[ri++ % NSIZES]) {
        if (!out) {
          out = malloc(sizeof *out);
          out->n = 0;
        }
        out->p[out->n++] = p;
        if (out->n == BATCH_CAP) {
          post(w, out);
          out = NULL;
        }
      } else {
        sum += bench_peek(p);
        free(p);
        w->frees_local++;
      }
    }
    ri += 7;
  }
  if (out) post(w, out);
  /* Past its last round it goes on freeing what the others send, until all are done. */
  atomic_fetch_sub(&running, 1);
  while (atomic_load(&running) > 0) {
    drain(w);
    sched_yield();
  }
  drain(w);
  w->sum += sum;
  free(sizes);
  free(blk);
  free(perm);
  free(remote);
  return NULL;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  int nt = bench_threads(argc, argv, 1);
  long rounds = bench_argl(argc, argv, 2, 1000), blocks = bench_argl(argc, argv, 3, 2000);
  size_t min = (size_t)bench_argl(argc, argv, 4, 8), max = (size_t)bench_argl(argc, argv, 5, 1000);
  long pct = bench_argl(argc, argv, 6, 25);
  uint64_t seed = (uint64_t)bench_argl(argc, argv, 7, 1);
  if (blocks < 3) blocks = 3;
  if (min < 1) min = 1;
  if (max < min) max = min;
  if (pct < 0) pct = 0;
  if (pct > 100) pct = 100;

  inbox = calloc((size_t)nt, sizeof *inbox);
  worker_t *w = calloc((size_t)nt, sizeof *w);
  pthread_t *tid = calloc((size_t)nt, sizeof *tid);
  pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
  atomic_store(&running, nt);
  for (int t = 0; t < nt; t++) {
    pthread_mutex_init(&inbox[t].lock, NULL);
    w[t] = (worker_t){t, nt, rounds, blocks, min, max, (unsigned)pct, bench_seed(seed, (uint64_t)t), 0, 0, 0};
    pthread_create(&tid[t], NULL, worker, &w[t]);
  }
  pthread_barrier_wait(&start);
  uint64_t t0 = bench_now_ns();
  long local = 0, remote = 0;
  for (int t = 0; t < nt; t++) {
    pthread_join(tid[t], NULL);
    bench_sink += w[t].sum;
    local += w[t].frees_local;
    remote += w[t].frees_remote;
  }
  uint64_t ns = bench_now_ns() - t0;
  char extra[192];
  snprintf(extra, sizeof extra, "threads=%d blocks=%ld min=%zu max=%zu remote_frees=%ld local_frees=%ld", nt,
           blocks, min, max, remote, local);
  bench_result("xthread_churn", 2.0 * (double)(local + remote), ns, extra);
  free(inbox);
  free(w);
  free(tid);
  return 0;
}
