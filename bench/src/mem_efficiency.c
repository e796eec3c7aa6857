/* mem_efficiency: peak RSS against peak live bytes under a churn workload whose
 * size mix shifts from phase to phase, so memory freed in one phase must be
 * reused for other sizes in the next. Each phase: allocate until `live` bytes
 * (requested sizes) reach the target; replace as many random blocks as are
 * live (free one, allocate up to the target); then free free% of the live
 * blocks at random, leaving scattered survivors. Every block is written in
 * full, so untouched pages do not flatter anyone.
 * Prints frag_ratio = (VmHWM - baseline RSS) / peak live bytes (1.0 would be
 * perfect), and VmRSS after everything has been freed (memory returned). */
#include <sys/mman.h>
#include "bench.h"

static const char usage[] =
    "usage: mem_efficiency [peak_live_mib=64] [phases=8] [free%=75] [seed=1]\n";

static char **ptr;    /* live blocks, dense */
static uint32_t *len; /* their requested sizes */
static long nlive, cap;
static size_t live, peak_live;
static long nops;

static size_t phase_size(uint64_t *r, int phase) {
  switch (phase % 6) {
  case 0: return bench_uniform(r, 16, 128);
  case 1: return bench_uniform(r, 128, 1024);
  case 2: return bench_loguniform(r, 1024, 16 << 10);
  case 3: return bench_uniform(r, 16, 64);
  case 4: return bench_loguniform(r, 16 << 10, 256 << 10);
  default: return bench_loguniform(r, 16, 64 << 10);
  }
}

static int add(size_t sz) {
  if (nlive == cap) return 0;
  char *p = malloc(sz);
  if (!p) return 0;
  memset(p, (int)(nops & 0x7f) | 1, sz);
  ptr[nlive] = p;
  len[nlive++] = (uint32_t)sz;
  live += sz;
  if (live > peak_live) peak_live = live;
  nops++;
  return 1;
}

static void drop(long i) {
  bench_sink += bench_peek(ptr[i]);
  free(ptr[i]);
  live -= len[i];
  ptr[i] = ptr[--nlive];
  len[i] = len[nlive];
  nops++;
}

int main(int argc, char **argv) {
  if (bench_wants_help(argc, argv, usage)) return 0;
  size_t target = (size_t)(bench_argf(argc, argv, 1, 64) * 1048576.0);
  int phases = (int)bench_argl(argc, argv, 2, 8);
  long free_pct = bench_argl(argc, argv, 3, 75);
  uint64_t r = bench_seed((uint64_t)bench_argl(argc, argv, 4, 1), 0);
  if (target < 1048576) target = 1048576;
  if (free_pct < 0) free_pct = 0;
  if (free_pct > 100) free_pct = 100;

  /* The bookkeeping arrays come from mmap, not malloc, and are touched before
   * the baseline is read, so they count in the baseline and not against the
   * allocator. */
  cap = (long)(target / 40) + 1024;
  size_t bytes = (size_t)cap * (sizeof *ptr + sizeof *len);
  char *area = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (area == MAP_FAILED) return 1;
  memset(area, 0, bytes);
  ptr = (char **)area;
  len = (uint32_t *)(area + (size_t)cap * sizeof *ptr);
  free(malloc(1)); /* let the allocator initialise before the baseline */
  long base_kb = bench_status_kb("VmRSS");

  uint64_t t0 = bench_now_ns();
  for (int ph = 0; ph < phases; ph++) {
    while (live < target && add(phase_size(&r, ph))) {
    }
    long churn = nlive;
    for (long i = 0; i < churn && nlive > 0; i++) {
      drop((long)(bench_rand(&r) % (uint64_t)nlive));
      while (live < target && add(phase_size(&r, ph))) {
      }
    }
    long nfree = nlive * free_pct / 100;
    for (long i = 0; i < nfree; i++) drop((long)(bench_rand(&r) % (uint64_t)nlive));
  }
  uint64_t ns = bench_now_ns() - t0;
  long hwm_kb = bench_status_kb("VmHWM");
  while (nlive > 0) drop(nlive - 1);
  long end_kb = bench_status_kb("VmRSS");

  double peak_kb = (double)peak_live / 1024.0;
  double frag = peak_kb > 0 ? (double)(hwm_kb - base_kb) / peak_kb : 0.0;
  char extra[256];
  snprintf(extra, sizeof extra,
           "frag_ratio=%.3f peak_live_kb=%.0f hwm_kb=%ld base_kb=%ld rss_after_free_kb=%ld phases=%d",
           frag, peak_kb, hwm_kb, base_kb, end_kb, phases);
  bench_result("mem_efficiency", (double)nops, ns, extra);
  munmap(area, bytes);
  return 0;
}
