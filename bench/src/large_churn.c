/* large_churn: a set of large buffers, each replaced again and again by a
 * new zero-initialised one of another size (what C++'s
 * std::make_unique<char[]>(n) does: the new buffer is allocated and zeroed
 * before the old one is freed). The buffers are filled first; then each
 * step picks a buffer at random, allocates its replacement (size uniform
 * in [min, max] MiB, not a page multiple), zeroes it with memset, or has
 * calloc zero it (and then writes a byte of every page, as a program
 * filling it would), and frees the old one. The time is the allocator's as
 * much as memset's: the pages a new buffer brings are faulted in (and
 * zeroed by the kernel) unless the allocator reuses resident memory.
 * One op = one malloc (or calloc) or one free call. */
#include "bench.h"

static const char usage[] =
    "usage: large_churn [buffers=20] [min_mib=5] [max_mib=25] [replacements=2000] [zero=memset|calloc] "
    "[seed=1]\n";

/* Called through a volatile pointer: the compiler must not fuse malloc and
 * memset into calloc, as C++'s value-initialisation is not either. */
static void *(*volatile zero_fill)(void *, int, size_t) = memset;

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  long n = bench_argl(argc, argv, 1, 20);
  size_t lo = (size_t)bench_argf(argc, argv, 2, 5) << 20, hi = (size_t)bench_argf(argc, argv, 3, 25) << 20;
  long steps = bench_argl(argc, argv, 4, 2000);
  const char *zero = argc > 5 && strcmp(argv[5], "-") != 0 ? argv[5] : "memset";
  uint64_t rng = bench_seed((uint64_t)bench_argl(argc, argv, 6, 1), 0);
  int use_calloc = strcmp(zero, "calloc") == 0;
  if (n < 1 || lo < 1 || hi < lo || (!use_calloc && strcmp(zero, "memset") != 0)) {
    fputs(usage, stderr);
    return 2;
  }

  char **buf = calloc((size_t)n, sizeof *buf);
  size_t *len = calloc((size_t)n, sizeof *len);
  if (!buf || !len) return 1;
  uint64_t sum = 0, t0 = 0;
  for (long i = -n; i < steps; i++) {
    if (i == 0) t0 = bench_now_ns(); /* the first n fill the set */
    size_t k = i < 0 ? (size_t)(i + n) : (size_t)(bench_rand(&rng) % (uint64_t)n);
    size_t size = bench_uniform(&rng, lo, hi) | 1; /* odd: never a page multiple */
    char *p = use_calloc ? calloc(1, size) : malloc(size);
    if (!p) return 1;
    if (!use_calloc) zero_fill(p, 0, size);
    else /* the program fills the buffer: every page is written */
      for (size_t o = 0; o < size; o += 4096) sum += (uint64_t)p[o]++;
    sum += (uint64_t)(p[size / 2] + p[size - 1]);
    p[0] = (char)size;
    p[size - 1] = (char)k;
    if (buf[k]) {
      sum += bench_peek(buf[k]);
      free(buf[k]);
    }
    buf[k] = p;
    len[k] = size;
  }
  uint64_t ns = bench_now_ns() - t0;
  size_t live = 0;
  for (long i = 0; i < n; i++) {
    live += len[i];
    free(buf[i]);
  }
  free(buf);
  free(len);
  bench_sink += sum;
  char extra[160];
  snprintf(extra, sizeof extra, "buffers=%ld min=%zu max=%zu zero=%s live_mib=%zu", n, lo, hi, zero,
           live >> 20);
  bench_result("large_churn", 2.0 * (double)steps, ns, extra);
  return 0;
}
