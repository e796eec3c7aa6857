/* fragment: a server whose long-lived and short-lived blocks of the same sizes
 * interleave, with a peak followed by a drop.
 *
 * Each worker serves requests. A request allocates three short-lived blocks
 * (request, read buffer, response) and a scratch block it frees at once;
 * while the session cache is below its target, the request also adds one
 * long-lived block to it, between its read buffer and its scratch block.
 * Requests stay in flight until one is completed (its blocks freed) at
 * random, so a short-lived block lives for about as many requests as are in
 * flight. Every block, long- or short-lived, has a size drawn from the same
 * distribution (the mix), and each kind comes from call sites of its own
 * (noinline functions below), so only the call site tells a long-lived block
 * from a short-lived one.
 *
 * Phases, per worker (bytes are the requested sizes):
 *   ramp  the in-flight target grows from 0 to peak_mib of short-lived blocks
 *         and the session cache from 0 to long_mib, over 2 W requests
 *         (W: requests in flight at the peak, estimated from the mix);
 *   hold  rounds x W requests at the peak; from here on, one request in
 *         `turnover` (256 by default) also evicts the oldest session (FIFO)
 *         and adds a new one;
 *   drop  every request in flight completes: the short-lived blocks are
 *         freed, the sessions stay;
 *   tail  low activity for tail_ms after the drop: 20 slices, each of
 *         max(16, W / 64) requests with a peak_mib / 64 in-flight target,
 *         then a wait for the end of its twentieth of tail_ms, so that the
 *         tail ends tail_ms after the drop however busy the machine.
 * The measured time is ramp, hold and drop. The RSS (/proc/self/statm) is
 * read at the peak (end of hold), right after the drop, and after the tail:
 * rss_after_drop_kb, what the allocator still holds once the program has
 * gone on at low activity for a while (no malloc_trim: servers do not call
 * it). With threads, every worker runs the same workload on its share of the
 * bytes, and all meet at each phase boundary, where the RSS is read.
 *
 * Every block is filled with a pattern of its own (its tag at both ends, a
 * byte elsewhere), checked when it is freed (both ends, the middle byte, one
 * byte per 4 KiB); a mismatch is reported and the program exits 1. The blocks
 * still live after the tail are checked and left to the exit. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sys/mman.h>
#include "bench.h"

static const char usage[] =
    "usage: fragment [mix=mixed] [peak_mib=96] [long_mib=12] [rounds=8] [threads=1] [tail_ms=1000] "
    "[seed=1] [turnover=256]\n"
    "  mix: small (16 B - 1 KiB), mid (1 - 32 KiB), pool (32 KiB - 1 MiB), buffers (32 - 128\n"
    "       KiB), each log-uniform, or\n"
    "       mixed (90 % small, 9.5 % mid, 0.5 % pool blocks)\n"
    "  peak_mib: short-lived bytes at the peak; long_mib: long-lived (session) bytes; both in\n"
    "  all, shared out among the threads; rounds: length of the peak, in turnovers of the\n"
    "  requests in flight; turnover: after the ramp, one request in this many replaces the\n"
    "  oldest session\n";

enum { MIX_SMALL, MIX_MID, MIX_POOL, MIX_BUFFERS, MIX_MIXED };
static const char *const mix_names[] = {"small", "mid", "pool", "buffers", "mixed"};

/* Call sites: three for long-lived blocks, four for short-lived ones. */
enum { SITE_SESSION, SITE_CACHE_ENTRY, SITE_USER_RECORD, SITE_REQUEST, SITE_READ_BUFFER, SITE_RESPONSE, SITE_SCRATCH };

#define REQ_BLOCKS 3 /* kept by a request in flight: request, read buffer, response */
#define TAIL_SLICES 20

typedef struct {
  char *p;
  uint32_t size, tag;
} blk_t;

typedef struct {
  blk_t b[REQ_BLOCKS];
} req_t;

typedef struct {
  int id, mix;
  uint64_t rng;
  size_t peak, longb; /* targets, bytes */
  long ramp, hold, tail_slice;
  long tail_ms;
  req_t *req; /* requests in flight, dense */
  long nreq, req_cap;
  blk_t *ses; /* the session cache, a FIFO ring */
  long ses_head, nses, ses_cap;
  size_t short_live, long_live;
  size_t peak_live, long_after, live_after; /* at the peak and after the tail */
  uint32_t serial;
  long ops, served; /* served: requests since the ramp */
  uint64_t sum;
  long bad;
} worker_t;

static int nthreads;
static long turnover = 256; /* after the ramp, one request in this many evicts a session */
static pthread_barrier_t barrier;
enum { AT_START, AT_PEAK, AT_DROP, AT_TAIL };
static uint64_t t_start, t_drop;
static long rss_peak, rss_freed, rss_after;

static size_t mix_size(uint64_t *r, int mix) {
  switch (mix) {
  case MIX_SMALL: return bench_loguniform(r, 16, 1023);
  case MIX_MID: return bench_loguniform(r, 1024, 32767);
  case MIX_POOL: return bench_loguniform(r, 32768, (1 << 20) - 1);
  case MIX_BUFFERS: return bench_loguniform(r, 32768, 131071);
  default: {
    uint64_t x = bench_rand(r) % 1000;
    return mix_size(r, x < 900 ? MIX_SMALL : x < 995 ? MIX_MID : MIX_POOL);
  }
  }
}

static inline unsigned char pattern(uint32_t tag) { return (unsigned char)(tag >> 24 | 1); }

static int mix_of(const char *name) {
  for (int m = 0; m < 5; m++)
    if (strcmp(name, mix_names[m]) == 0) return m;
  return -1;
}

static void fail(const char *what, size_t n) {
  fprintf(stderr, "fragment: %s of %zu bytes failed\n", what, n);
  exit(1);
}

/* Inlined into each site, so that each site has its own call to malloc. */
static inline __attribute__((always_inline)) void block_alloc(worker_t *w, blk_t *b, uint32_t site) {
  size_t n = mix_size(&w->rng, w->mix);
  char *p = malloc(n);
  if (!p) fail("malloc", n);
  uint32_t tag = (++w->serial * 0x9E3779B1u) ^ ((uint32_t)w->id << 3 | site);
  memset(p, pattern(tag), n);
  memcpy(p, &tag, sizeof tag);
  memcpy(p + n - sizeof tag, &tag, sizeof tag);
  b->p = p;
  b->size = (uint32_t)n;
  b->tag = tag;
  w->ops++;
}

static __attribute__((noinline)) void alloc_session(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_SESSION); }
static __attribute__((noinline)) void alloc_cache_entry(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_CACHE_ENTRY); }
static __attribute__((noinline)) void alloc_user_record(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_USER_RECORD); }
static __attribute__((noinline)) void alloc_request(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_REQUEST); }
static __attribute__((noinline)) void alloc_read_buffer(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_READ_BUFFER); }
static __attribute__((noinline)) void alloc_response(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_RESPONSE); }
static __attribute__((noinline)) void alloc_scratch(worker_t *w, blk_t *b) { block_alloc(w, b, SITE_SCRATCH); }

/* Checks what block_alloc wrote into the block. */
static void block_check(worker_t *w, const blk_t *b) {
  const char *p = b->p;
  size_t n = b->size;
  uint32_t head, tail;
  memcpy(&head, p, sizeof head);
  memcpy(&tail, p + n - sizeof tail, sizeof tail);
  unsigned char want = pattern(b->tag);
  int ok = head == b->tag && tail == b->tag && (unsigned char)p[n / 2] == want;
  for (size_t o = 4096; ok && o < n - sizeof tail; o += 4096) ok = (unsigned char)p[o] == want;
  if (!ok) w->bad++;
  w->sum += head + (unsigned char)p[n / 2];
}

static void block_free(worker_t *w, const blk_t *b) {
  block_check(w, b);
  free(b->p);
  w->ops++;
}

static void session_add(worker_t *w) {
  blk_t *b = &w->ses[(w->ses_head + w->nses) % w->ses_cap];
  switch (w->serial % 3) {
  case 0: alloc_session(w, b); break;
  case 1: alloc_cache_entry(w, b); break;
  default: alloc_user_record(w, b); break;
  }
  w->nses++;
  w->long_live += b->size;
}

static void session_evict(worker_t *w) {
  blk_t *b = &w->ses[w->ses_head];
  w->long_live -= b->size;
  block_free(w, b);
  w->ses_head = (w->ses_head + 1) % w->ses_cap;
  w->nses--;
}

static void request_complete(worker_t *w, long i) {
  req_t *q = &w->req[i];
  for (int k = 0; k < REQ_BLOCKS; k++) {
    w->short_live -= q->b[k].size;
    block_free(w, &q->b[k]);
  }
  *q = w->req[--w->nreq];
}

/* One request: complete random requests while the in-flight bytes are at the
 * target, start a new one, and keep the session cache at its target. */
static void serve(worker_t *w, size_t inflight_target, size_t long_target, int evict) {
  while (w->nreq > 0 && (w->short_live >= inflight_target || w->nreq == w->req_cap))
    request_complete(w, (long)(bench_rand(&w->rng) % (uint64_t)w->nreq));
  if (evict && ++w->served % turnover == 0 && w->nses > 0) session_evict(w);
  req_t *q = &w->req[w->nreq++];
  alloc_request(w, &q->b[0]);
  alloc_read_buffer(w, &q->b[1]);
  if (w->long_live < long_target && w->nses < w->ses_cap) session_add(w);
  blk_t scratch;
  alloc_scratch(w, &scratch);
  block_free(w, &scratch);
  alloc_response(w, &q->b[2]);
  for (int k = 0; k < REQ_BLOCKS; k++) w->short_live += q->b[k].size;
}

static void take(int at) {
  switch (at) {
  case AT_START: t_start = bench_now_ns(); break;
  case AT_PEAK: rss_peak = bench_rss_kb(); break;
  case AT_DROP:
    t_drop = bench_now_ns();
    rss_freed = bench_rss_kb();
    break;
  default: rss_after = bench_rss_kb(); break;
  }
}

/* Phase boundary: the workers meet and the main thread takes its figures. */
static void checkpoint(int at) {
  if (nthreads == 1) {
    take(at);
    return;
  }
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier);
}

static void *worker(void *arg) {
  worker_t *w = arg;
  checkpoint(AT_START);
  for (long t = 0; t < w->ramp; t++)
    serve(w, (size_t)((double)w->peak * (double)(t + 1) / (double)w->ramp),
          (size_t)((double)w->longb * (double)(t + 1) / (double)w->ramp), 0);
  for (long t = 0; t < w->hold; t++) serve(w, w->peak, w->longb, 1);
  w->peak_live = w->short_live + w->long_live;
  checkpoint(AT_PEAK);
  while (w->nreq > 0) request_complete(w, w->nreq - 1);
  checkpoint(AT_DROP);
  long ops = w->ops;
  for (int s = 1; s <= TAIL_SLICES; s++) {
    for (long t = 0; t < w->tail_slice; t++) serve(w, w->peak / 64, w->longb, 1);
    uint64_t end = t_drop + (uint64_t)w->tail_ms * 1000000u * (uint64_t)s / TAIL_SLICES;
    struct timespec until = {(time_t)(end / 1000000000u), (long)(end % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
  }
  w->long_after = w->long_live;
  w->live_after = w->short_live + w->long_live;
  checkpoint(AT_TAIL);
  /* The survivors are checked, not freed, as a server exits: an allocator's
   * report at exit shows the memory as it was after the drop. */
  for (long i = 0; i < w->nreq; i++)
    for (int k = 0; k < REQ_BLOCKS; k++) block_check(w, &w->req[i].b[k]);
  for (long i = 0; i < w->nses; i++) block_check(w, &w->ses[(w->ses_head + i) % w->ses_cap]);
  w->ops = ops; /* the measured phases only */
  return NULL;
}

/* Bookkeeping comes from mmap, not from the allocator under test. */
static void *area(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) fail("mmap", bytes);
  memset(p, 0, bytes);
  return p;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  int mix = argc > 1 && strcmp(argv[1], "-") != 0 ? mix_of(argv[1]) : MIX_MIXED;
  if (mix < 0) {
    fprintf(stderr, "fragment: unknown mix '%s'\n%s", argv[1], usage);
    return 2;
  }
  double peak_mib = bench_argf(argc, argv, 2, 96), long_mib = bench_argf(argc, argv, 3, 12);
  long rounds = bench_argl(argc, argv, 4, 8);
  nthreads = (int)bench_argl(argc, argv, 5, 1);
  long tail_ms = bench_argl(argc, argv, 6, 1000);
  uint64_t seed = (uint64_t)bench_argl(argc, argv, 7, 1);
  turnover = bench_argl(argc, argv, 8, 256);
  if (peak_mib < 1) peak_mib = 1;
  if (long_mib < 0) long_mib = 0;
  if (rounds < 1) rounds = 1;
  if (nthreads < 1) nthreads = 1;
  if (nthreads > 256) nthreads = 256;
  if (tail_ms < 0) tail_ms = 0;
  if (turnover < 1) turnover = 1;

  /* The mean block size of the mix and its coefficient of variation, from a
   * sample of its own: n blocks of the mix reach a byte target give or take
   * cv sqrt(n), so six times that bounds the bookkeeping arrays. */
  uint64_t r = bench_seed(seed, 1000);
  double mean = 0, sq = 0;
  for (int i = 0; i < 1 << 16; i++) {
    double x = (double)mix_size(&r, mix);
    mean += x;
    sq += x * x;
  }
  mean /= 1 << 16;
  double cv = sqrt(sq / (1 << 16) - mean * mean) / mean;

  worker_t *w = area(sizeof *w * (size_t)nthreads);
  for (int t = 0; t < nthreads; t++) {
    worker_t *x = &w[t];
    x->id = t;
    x->mix = mix;
    x->rng = bench_seed(seed, (uint64_t)t);
    x->peak = (size_t)(peak_mib * 1048576.0 / nthreads);
    x->longb = (size_t)(long_mib * 1048576.0 / nthreads);
    long w_est = (long)((double)x->peak / (REQ_BLOCKS * mean)) + 1; /* W */
    x->ramp = 2 * w_est;
    x->hold = rounds * w_est;
    x->tail_slice = w_est / 64 > 16 ? w_est / 64 : 16;
    x->tail_ms = tail_ms;
    double nses = (double)x->longb / mean;
    x->req_cap = w_est + (long)(6 * cv / sqrt(REQ_BLOCKS) * sqrt((double)w_est)) + 64;
    x->ses_cap = (long)(nses + 6 * cv * sqrt(nses)) + 64;
    x->req = area(sizeof *x->req * (size_t)x->req_cap);
    x->ses = area(sizeof *x->ses * (size_t)x->ses_cap);
  }
  free(malloc(1)); /* let the allocator initialise before the baseline */
  long base_kb = bench_rss_kb();

  if (nthreads == 1) {
    worker(w);
  } else {
    pthread_t tid[256];
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
    for (int t = 0; t < nthreads; t++) {
      if (pthread_create(&tid[t], NULL, worker, &w[t]) != 0) {
        fprintf(stderr, "fragment: pthread_create failed\n");
        return 1;
      }
    }
    for (int at = AT_START; at <= AT_TAIL; at++) {
      pthread_barrier_wait(&barrier);
      take(at);
      pthread_barrier_wait(&barrier);
    }
    for (int t = 0; t < nthreads; t++) pthread_join(tid[t], NULL);
  }
  long hwm_kb = bench_status_kb("VmHWM");

  long ops = 0, bad = 0;
  size_t peak_live = 0, long_after = 0, live_after = 0;
  for (int t = 0; t < nthreads; t++) {
    ops += w[t].ops;
    bad += w[t].bad;
    peak_live += w[t].peak_live;
    long_after += w[t].long_after;
    live_after += w[t].live_after;
    bench_sink += w[t].sum;
  }
  if (bad) {
    fprintf(stderr, "fragment: %ld block%s did not hold what was written into %s\n", bad, bad == 1 ? "" : "s",
            bad == 1 ? "it" : "them");
    return 1;
  }
  char extra[400];
  snprintf(extra, sizeof extra,
           "mix=%s threads=%d peak_live_kb=%zu long_live_kb=%zu live_after_drop_kb=%zu base_kb=%ld "
           "rss_peak_kb=%ld hwm_kb=%ld rss_freed_kb=%ld rss_after_drop_kb=%ld tail_ms=%ld turnover=%ld",
           mix_names[mix], nthreads, peak_live >> 10, long_after >> 10, live_after >> 10, base_kb, rss_peak,
           hwm_kb, rss_freed, rss_after, tail_ms, turnover);
  char name[32];
  snprintf(name, sizeof name, "fragment/%s", mix_names[mix]);
  bench_result(name, (double)ops, t_drop - t_start, extra);
  return 0;
}
