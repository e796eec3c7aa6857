/* fixed_size: malloc/free of one size over a working set.
 * The working set is filled first; then each step frees a random slot and
 * allocates a new block into it. One op = one malloc or one free call. */
#include "bench.h"

static const char usage[] =
    "usage: fixed_size [size=64] [ops=40M] [working_set=1000] [seed=1]\n"
    "  ops counts malloc and free calls; numbers take k/M/G suffixes, '-' = default\n";

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  size_t size = (size_t)bench_argl(argc, argv, 1, 64);
  long ops = bench_argl(argc, argv, 2, 40000000);
  long ws = bench_argl(argc, argv, 3, 1000);
  uint64_t rng = bench_seed((uint64_t)bench_argl(argc, argv, 4, 1), 0);
  if (size < 1) size = 1;
  if (ws < 1) ws = 1;

  void **slot = calloc((size_t)ws, sizeof *slot);
  if (!slot) return 1;
  for (long i = 0; i < ws; i++) {
    slot[i] = malloc(size);
    bench_touch(slot[i], size);
  }

  long steps = ops / 2;
  uint64_t sum = 0, t0 = bench_now_ns();
  for (long i = 0; i < steps; i++) {
    size_t k = (size_t)(bench_rand(&rng) % (uint64_t)ws);
    sum += bench_peek(slot[k]);
    free(slot[k]);
    char *p = malloc(size);
    bench_touch(p, size);
    slot[k] = p;
  }
  uint64_t ns = bench_now_ns() - t0;

  for (long i = 0; i < ws; i++) free(slot[i]);
  free(slot);
  bench_sink += sum;
  char extra[128];
  snprintf(extra, sizeof extra, "size=%zu working_set=%ld", size, ws);
  bench_result("fixed_size", (double)steps * 2, ns, extra);
  return 0;
}
