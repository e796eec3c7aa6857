/* tests/churn.c — thousands of short-lived threads.
 *
 * 16000 threads (CHURN_THREADS), four at a time, each allocate a few dozen
 * blocks, free half of them and leave the rest in a shared array, taking
 * out (and freeing) what earlier, now dead, threads left there. Memory must
 * stay bounded: VmRSS under a fixed bound and not growing from the first
 * quarter of the run to the last; hak_stats() heaps back to a small number
 * after each batch, slabs bounded, in_use back to its start at the end. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

/* The live set and its fragmentation settle after ~3000 threads (the 512
 * slots have turned over ~150 times by then), within the first quarter of
 * the run: growth after that is a leak, not warm-up. */
enum { AT_ONCE = 4, SLOTS = 512, PER_THREAD = 48 };
#define RSS_BOUND_KB (32L * 1024) /* live data is ~2.5 MiB */
#define SLAB_BOUND 512

static _Atomic(void *) slot[SLOTS];
static atomic_long n_bad, n_null;

static void check_free(void *q) {
  size_t size;
  if (!block_intact(q, 64 * KiB, &size)) {
    if (atomic_fetch_add(&n_bad, 1) < 5)
      CHECKV("block intact when freed by another thread", 0, "block %p size %zu", q, size);
    return;
  }
  free(q);
}

static void *worker(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL;
  void *mine[PER_THREAD];
  for (int i = 0; i < PER_THREAD; i++) {
    uint64_t x = rng_next(&r);
    size_t size = x % 48 == 0 ? 64 * KiB : 16 + (x >> 8) % (8 * KiB);
    if (!(mine[i] = block_make(size))) atomic_fetch_add(&n_null, 1);
  }
  for (int i = 0; i < PER_THREAD; i++) {
    if (!mine[i]) continue;
    if (i % 2) {
      check_free(mine[i]);
    } else {
      void *old = atomic_exchange(&slot[rng_next(&r) % SLOTS], mine[i]);
      if (old) check_free(old);
    }
  }
  return NULL;
}

static long max_of(const long *v, int from, int to) {
  long m = 0;
  for (int i = from; i < to; i++)
    if (v[i] > m) m = v[i];
  return m;
}

int main(void) {
  int total = 16000;
  const char *e = getenv("CHURN_THREADS");
  if (e && atoi(e) >= 40) total = atoi(e);
  int batches = total / AT_ONCE;
  long *rss = calloc((size_t)batches, sizeof *rss);
  long *slabs = calloc((size_t)batches, sizeof *slabs);
  long *heaps = calloc((size_t)batches, sizeof *heaps);
  int have_hak = check_hakmem_is_malloc();
  hak_stats_t s0;
  memset(&s0, 0, sizeof s0);
  if (have_hak) hak.stats(&s0);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 * KiB);
  long created = 0;
  for (int b = 0; b < batches; b++) {
    pthread_t t[AT_ONCE];
    int n = 0;
    for (int k = 0; k < AT_ONCE; k++)
      if (pthread_create(&t[n], &attr, worker, (void *)(uintptr_t)(created + 1)) == 0) {
        n++;
        created++;
      }
    for (int k = 0; k < n; k++) pthread_join(t[k], NULL);
    rss[b] = rss_kb();
    if (have_hak) {
      hak_stats_t s;
      hak.stats(&s);
      slabs[b] = (long)s.slabs;
      heaps[b] = (long)s.heaps;
    }
  }
  pthread_attr_destroy(&attr);
  for (int i = 0; i < SLOTS; i++) {
    void *q = atomic_exchange(&slot[i], NULL);
    if (q) check_free(q);
  }

  int q1a = batches / 8, q1b = batches / 4, q4a = batches - batches / 4;
  long rss_max = max_of(rss, 0, batches), rss_q1 = max_of(rss, q1a, q1b), rss_q4 = max_of(rss, q4a, batches);
  CHECKV("all threads were created", created == total, "%ld of %d", created, total);
  CHECKV("no block corrupted", atomic_load(&n_bad) == 0, "%ld", atomic_load(&n_bad));
  CHECKV("no allocation failed", atomic_load(&n_null) == 0, "%ld", atomic_load(&n_null));
  CHECKV("VmRSS stays under a fixed bound", rss_max > 0 && rss_max < RSS_BOUND_KB, "max %ld kB, bound %ld kB",
         rss_max, RSS_BOUND_KB);
  CHECKV("VmRSS does not grow from the first quarter to the last", rss_q4 <= rss_q1 + rss_q1 / 8 + 2048,
         "first quarter max %ld kB, last %ld kB", rss_q1, rss_q4);
  if (have_hak) {
    hak_stats_t s1;
    hak.stats(&s1);
    long slab_q1 = max_of(slabs, q1a, q1b), slab_q4 = max_of(slabs, q4a, batches);
    CHECKV("heaps return to a small number after every batch", max_of(heaps, 0, batches) <= 2,
           "max %ld heaps", max_of(heaps, 0, batches));
    CHECKV("heaps at the end", s1.heaps <= 2, "%llu", (unsigned long long)s1.heaps);
    CHECKV("slabs stay under a fixed bound", max_of(slabs, 0, batches) <= SLAB_BOUND, "max %ld slabs",
           max_of(slabs, 0, batches));
    CHECKV("slabs do not grow from the first quarter to the last", slab_q4 <= slab_q1 + slab_q1 / 8 + 16,
           "first quarter max %ld, last %ld", slab_q1, slab_q4);
    CHECKV("all blocks freed: in_use back to its start", s1.in_use <= s0.in_use + 64 * KiB,
           "in_use %zu -> %zu", s0.in_use, s1.in_use);
  }
  printf("churn: %ld threads; VmRSS max %ld kB, first quarter %ld, last quarter %ld\n", created, rss_max,
         rss_q1, rss_q4);
  free(rss);
  free(slabs);
  free(heaps);
  return th_done();
}
