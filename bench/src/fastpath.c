/* fastpath: the per-operation cost probe used by `make bench-instr`
 * (same program as ../shared/probes/fastpath.c, kept here so a clean clone
 * can run it). N rounds of free+malloc over a working set of 256 live blocks
 * with sizes lo..hi drawn from a fixed xorshift sequence. Run under
 * callgrind at two N and take the difference: instructions per malloc+free
 * pair, independent of start-up cost and machine noise.
 *   fastpath [rounds=1000000] [lo=16] [hi=512] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  size_t lo = argc > 2 ? (size_t)atol(argv[2]) : 16, hi = argc > 3 ? (size_t)atol(argv[3]) : 512;
  enum { W = 256 };
  void *slot[W] = {0};
  uint64_t x = 88172645463325252ull, sum = 0;
  for (long i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    unsigned k = (unsigned)(x % W);
    free(slot[k]);
    size_t sz = lo + (size_t)((x >> 16) % (hi - lo + 1));
    char *p = malloc(sz);
    p[0] = (char)i;
    sum += (uintptr_t)p & 0xff;
    slot[k] = p;
  }
  for (int k = 0; k < W; k++) free(slot[k]);
  printf("%llu\n", (unsigned long long)sum);
  return 0;
}
