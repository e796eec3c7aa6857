/* phases: a program whose phases want opposite memory-return policies, so
 * that no single static setting (purge delay, empty memory kept, large-block
 * cache size, huge pages) is right throughout. Each cycle runs, in order:
 *   burst   BURST_REPEATS times: allocate small and medium blocks (log-uniform
 *           16 B - 64 KiB) until burst_mib are live, write every byte, free
 *           them all in allocation order; keeping the freed memory resident
 *           saves the page faults of the next burst;
 *   steady  a live set of live_mib in blocks of 16 B - 16 KiB (log-uniform);
 *           steady_ops times a random block is freed and replaced by one of
 *           a random size: a stable working set, where purging only costs;
 *   large   with the steady set still live, bufs buffers of 4 - 32 MiB
 *           (uniform), replaced large_ops times in all, at random; the
 *           replacement is allocated and zeroed with memset before the old
 *           buffer is freed, as C++'s std::make_unique<char[]>(n) does: a
 *           large-block cache sized to the working set saves the faults;
 *   idle    everything is freed, then idle_ms pass in IDLE_SLICES slices,
 *           each a timer tick (a few small blocks allocated and freed, as an
 *           idle server's housekeeping does) and a sleep, after which the RSS
 *           is read: an allocator that gives memory back soon wins.
 * The time (secs) is that of every phase but the idle's sleeps; one op is one
 * malloc or free call. idle_rss_mib is the median of the RSS samples of all
 * the idles. */
#include <errno.h>
#include <sys/mman.h>
#include "bench.h"

static const char usage[] =
    "usage: phases [cycles=3] [burst_mib=128] [live_mib=32] [steady_ops=4M] [bufs=8] [large_ops=400] "
    "[idle_ms=300] [seed=1]\n"
    "  per cycle: burst (blocks of 16 B - 64 KiB, burst_mib of them allocated, written and freed,\n"
    "  4 times), steady (steady_ops replacements in a live set of live_mib, 16 B - 16 KiB), large\n"
    "  (bufs buffers of 4 - 32 MiB replaced large_ops times in all), idle (everything freed, idle_ms\n"
    "  of near inactivity while the RSS is sampled)\n";

#define BURST_REPEATS 4
#define IDLE_SLICES 10
#define IDLE_TICK 16 /* small blocks allocated and freed per idle slice */
#define LARGE_MIN (4u << 20)
#define LARGE_MAX ((32u << 20) - 1)

/* Called through a volatile pointer: the compiler must not fuse malloc and
 * memset into calloc, as C++'s value-initialisation is not either. */
static void *(*volatile fill)(void *, int, size_t) = memset;

static uint64_t rng, sum;
static long ops;

static void fail(const char *what, size_t n) {
  fprintf(stderr, "phases: %s of %zu bytes failed\n", what, n);
  exit(1);
}

/* Bookkeeping comes from mmap, not from the allocator under test; pages
 * never touched take no memory, so the arrays are sized for the worst case. */
static void *area(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("mmap", bytes);
  return p;
}

static char *alloc(size_t n) {
  char *p = malloc(n);
  if (!p) fail("malloc", n);
  ops++;
  return p;
}

static void release(char *p) {
  sum += bench_peek(p);
  free(p);
  ops++;
}

static void burst(char **blk, size_t bytes) {
  for (int r = 0; r < BURST_REPEATS; r++) {
    size_t n = 0;
    for (size_t live = 0; live < bytes; n++) {
      size_t size = bench_loguniform(&rng, 16, (64 << 10) - 1);
      blk[n] = alloc(size);
      fill(blk[n], (int)(n | 1), size);
      live += size;
    }
    for (size_t i = 0; i < n; i++) release(blk[i]);
  }
}

/* Fills the steady set up to bytes, then replaces random blocks; returns
 * the number of blocks, which stay live. */
static size_t steady(char **blk, size_t bytes, long steps) {
  size_t n = 0;
  for (size_t live = 0; live < bytes; n++) {
    size_t size = bench_loguniform(&rng, 16, (16 << 10) - 1);
    blk[n] = alloc(size);
    bench_touch(blk[n], size);
    live += size;
  }
  for (long s = 0; s < steps; s++) {
    size_t k = (size_t)(bench_rand(&rng) % n);
    size_t size = bench_loguniform(&rng, 16, (16 << 10) - 1);
    release(blk[k]);
    blk[k] = alloc(size);
    bench_touch(blk[k], size);
  }
  return n;
}

static void large(char **buf, long nbufs, long steps) {
  for (long i = -nbufs; i < steps; i++) {
    long k = i < 0 ? i + nbufs : (long)(bench_rand(&rng) % (uint64_t)nbufs); /* the first fill the set */
    size_t size = bench_uniform(&rng, LARGE_MIN, LARGE_MAX) | 1;             /* odd: never a page multiple */
    char *p = alloc(size);
    fill(p, 0, size);
    p[0] = (char)size;
    sum += (uint64_t)p[size - 1];
    if (buf[k]) release(buf[k]);
    buf[k] = p;
  }
}

/* Sleeps until deadline (CLOCK_MONOTONIC, ns). */
static void sleep_until(uint64_t deadline) {
  struct timespec until = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
  }
}

/* The idle's slices: a tick, a sleep to the slice's end, an RSS sample into
 * rss (IDLE_SLICES of them). Returns the time spent outside the sleeps. */
static uint64_t idle(long idle_ms, long *rss) {
  uint64_t start = bench_now_ns(), busy = 0;
  for (int s = 1; s <= IDLE_SLICES; s++) {
    uint64_t t = bench_now_ns();
    char *tick[IDLE_TICK];
    for (int i = 0; i < IDLE_TICK; i++) {
      size_t size = bench_loguniform(&rng, 16, 1023);
      tick[i] = alloc(size);
      bench_touch(tick[i], size);
    }
    for (int i = 0; i < IDLE_TICK; i++) release(tick[i]);
    busy += bench_now_ns() - t;
    sleep_until(start + (uint64_t)idle_ms * 1000000u * (uint64_t)s / IDLE_SLICES);
    rss[s - 1] = bench_rss_kb();
  }
  return busy;
}

static long median(long *v, long n) {
  for (long i = 1; i < n; i++) { /* insertion sort: qsort may call malloc */
    long x = v[i], j = i;
    for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
    v[j] = x;
  }
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  long cycles = bench_argl(argc, argv, 1, 3);
  double burst_mib = bench_argf(argc, argv, 2, 128), live_mib = bench_argf(argc, argv, 3, 32);
  long steady_ops = bench_argl(argc, argv, 4, 4000000), nbufs = bench_argl(argc, argv, 5, 8);
  long large_ops = bench_argl(argc, argv, 6, 400), idle_ms = bench_argl(argc, argv, 7, 300);
  rng = bench_seed((uint64_t)bench_argl(argc, argv, 8, 1), 0);
  if (cycles < 1 || burst_mib < 0 || live_mib <= 0 || steady_ops < 0 || nbufs < 1 || nbufs > 4096 ||
      large_ops < 0 || idle_ms < 0) {
    fputs(usage, stderr);
    return 2;
  }
  size_t burst_bytes = (size_t)(burst_mib * 1048576), live_bytes = (size_t)(live_mib * 1048576);

  /* Every block is at least 16 bytes: bytes / 16 + 1 bound the counts. */
  char **burst_blk = area((burst_bytes / 16 + 1) * sizeof(char *));
  char **live_blk = area((live_bytes / 16 + 1) * sizeof(char *));
  char **buf = area((size_t)nbufs * sizeof(char *));
  long *rss = area((size_t)cycles * IDLE_SLICES * sizeof(long));
  long base_kb = bench_rss_kb();

  uint64_t burst_ns = 0, steady_ns = 0, large_ns = 0, idle_ns = 0;
  for (long c = 0; c < cycles; c++) {
    uint64_t t0 = bench_now_ns();
    burst(burst_blk, burst_bytes);
    uint64_t t1 = bench_now_ns();
    size_t nlive = steady(live_blk, live_bytes, steady_ops);
    uint64_t t2 = bench_now_ns();
    large(buf, nbufs, large_ops);
    uint64_t t3 = bench_now_ns();
    for (size_t i = 0; i < nlive; i++) release(live_blk[i]);
    for (long i = 0; i < nbufs; i++) {
      release(buf[i]);
      buf[i] = NULL;
    }
    idle_ns += bench_now_ns() - t3;
    idle_ns += idle(idle_ms, rss + c * IDLE_SLICES);
    burst_ns += t1 - t0;
    steady_ns += t2 - t1;
    large_ns += t3 - t2;
  }
  long peak_kb = bench_status_kb("VmHWM");
  bench_sink += sum;
  char extra[256];
  snprintf(extra, sizeof extra,
           "cycles=%ld burst_s=%.3f steady_s=%.3f large_s=%.3f idle_rss_mib=%.1f base_rss_mib=%.1f "
           "peak_rss_mib=%.1f idle_ms=%ld",
           cycles, (double)burst_ns / 1e9, (double)steady_ns / 1e9, (double)large_ns / 1e9,
           (double)median(rss, cycles * IDLE_SLICES) / 1024, (double)base_kb / 1024, (double)peak_kb / 1024,
           idle_ms);
  bench_result("phases", (double)ops, burst_ns + steady_ns + large_ns + idle_ns, extra);
  return 0;
}
