/* random_mixed: single-threaded mix of random sizes (default 16..1040 B, the
 * small-object tier) over a working set. Each step picks a random slot: if it
 * holds a block the block is freed, else a block of random size is allocated
 * into it, so the working set hovers around half full and the order of frees
 * is random. Sizes are uniform in min..max, or with `log` log-uniform (every
 * power-of-two band equally likely, so most blocks are small and a few are
 * large, as in programs). One op = one step = one malloc or one free call. */
#include "bench.h"

static const char usage[] =
    "usage: random_mixed [ops=40M] [working_set=8192] [min=16] [max=1040] [seed=1] [uniform|log]\n";

enum { NSIZES = 4096 };

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  long ops = bench_argl(argc, argv, 1, 40000000);
  long ws = bench_argl(argc, argv, 2, 8192);
  size_t lo = (size_t)bench_argl(argc, argv, 3, 16), hi = (size_t)bench_argl(argc, argv, 4, 1040);
  uint64_t rng = bench_seed((uint64_t)bench_argl(argc, argv, 5, 1), 0);
  if (ws < 1) ws = 1;
  if (lo < 1) lo = 1;
  if (hi < lo) hi = lo;
  int log_sizes = argc > 6 && strcmp(argv[6], "log") == 0;
  if (argc > 6 && !log_sizes && strcmp(argv[6], "uniform") != 0 && strcmp(argv[6], "-") != 0) {
    fputs(usage, stderr);
    return 2;
  }
  static size_t sizes[NSIZES]; /* log: precomputed, one draw per step as for uniform */
  for (int i = 0; i < NSIZES && log_sizes; i++) sizes[i] = bench_loguniform(&rng, lo, hi);

  void **slot = calloc((size_t)ws, sizeof *slot);
  if (!slot) return 1;
  uint64_t sum = 0, t0 = bench_now_ns();
  for (long i = 0; i < ops; i++) {
    uint64_t r = bench_rand(&rng);
    size_t k = (size_t)(r % (uint64_t)ws);
    if (slot[k]) {
      sum += bench_peek(slot[k]);
      free(slot[k]);
      slot[k] = NULL;
    } else {
      size_t sz = log_sizes ? sizes[(r >> 32) % NSIZES] : lo + (size_t)((r >> 32) % (hi - lo + 1));
      char *p = malloc(sz);
      bench_touch(p, sz);
      slot[k] = p;
    }
  }
  uint64_t ns = bench_now_ns() - t0;

  for (long i = 0; i < ws; i++) free(slot[i]);
  free(slot);
  bench_sink += sum;
  char extra[128];
  snprintf(extra, sizeof extra, "working_set=%ld min=%zu max=%zu sizes=%s", ws, lo, hi,
           log_sizes ? "log" : "uniform");
  bench_result("random_mixed", (double)ops, ns, extra);
  return 0;
}
