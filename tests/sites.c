/* tests/sites.c — HAKMEM_SITES: lifetimes learned per call site, and the
 * placement of lasting blocks apart.
 *
 * Each case runs in a fresh process (this program again, with a mode and
 * HAKMEM_* options in its environment):
 *   pool    two call sites allocate 200 KiB blocks (a run each): one
 *           keeps its blocks (lasting), the other frees each 8 allocations
 *           later (short-lived). Learning: the report names both sites, one
 *           of them lasting, with samples seen both ways. Placement: then 10
 *           rounds of 3 short-lived blocks of 48 KiB kept and 1 lasting one
 *           (a run of that class holds four), interleaved; once the
 *           short-lived ones are freed, no run stays pinned by a lasting
 *           block: slab_free grows by less than 512 KiB (the class's
 *           current run, and the 16 KiB after each lasting block in the
 *           64 KiB run of its own); the lasting ones were placed apart
 *           (counters.site_apart), and hold what was written into them
 *   off     HAKMEM_SITES=0, the same program: no site known, nothing placed
 *           apart, and the 10 runs the lasting blocks share with freed ones
 *           stay (slab_free grows by their 30 free blocks, 1440 KiB; at
 *           least 1 MiB is asked): what `pool` saves
 *   large   Large blocks of 3 MiB: once a site proved lasting, its freed
 *           block is not kept in BigCache (bigcache_bytes unchanged, and
 *           the mapping unmapped), while a short-lived site's is
 * Needs hakmem as the process malloc (-lhakmem, or LD_PRELOAD): the plain
 * glibc binary run without it only prints that it skips. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

#define ULL(x) ((unsigned long long)(x))

static char json[1 << 17];

static hak_stats_t st(void) {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  hak.stats(&s);
  return s;
}

/* The two call sites: each its own call to malloc. */
static __attribute__((noinline)) char *alloc_lasting(size_t n, int tag) {
  char *p = malloc(LAUNDER(n));
  if (p) memset(p, tag, n);
  return p;
}

static __attribute__((noinline)) char *alloc_brief(size_t n, int tag) {
  char *p = malloc(LAUNDER(n));
  if (p) memset(p, tag, n);
  return p;
}

#define BLOCK (48 * KiB)        /* a run of this class holds four */
#define LEARN_BLOCK (200 * KiB) /* a run of its own each: learning leaves no run half used */
#define KEPT_MAX 128
static char *kept[KEPT_MAX];
static int nkept;

/* Short-lived blocks freed 8 allocations later, one lasting block kept
 * every 64 of them, until the allocation clock has gone round the memory
 * in use many times. */
static void learn(void) {
  char *ring[8] = {0};
  for (int i = 0; i < 4000; i++) {
    free(ring[i % 8]);
    ring[i % 8] = alloc_brief(LEARN_BLOCK, 0x11);
    if (i % 64 == 0) kept[nkept++] = alloc_lasting(LEARN_BLOCK, 0x5A);
  }
  for (int i = 0; i < 8; i++) free(ring[i]);
}

static int mode_pool(int on) {
  learn();
  stats_json(json, sizeof json, NULL);
  const char *s = strstr(json, "\"sites\":{");
  if (on) {
    CHECKV("the report names both sites, one of them lasting",
           s && json_field(s, "on") == 1 && json_field(s, "known") >= 2 && json_field(s, "lasting") == 1,
           "%.200s", s ? s : "no \"sites\" object");
    CHECKV("samples were seen lasting and short-lived",
           s && json_field(s, "seen_lasting") >= 2 && json_field(s, "seen_brief") >= 2, "%.200s",
           s ? s : "no \"sites\" object");
  } else {
    CHECKV("HAKMEM_SITES=0: no site known, no sample",
           s && json_field(s, "on") == 0 && json_field(s, "known") == 0 && json_field(s, "seen_brief") == 0,
           "%.200s", s ? s : "no \"sites\" object");
  }
  /* Placement: short-lived blocks and lasting ones interleaved, then the
   * short-lived ones freed. */
  char *brief[30];
  int first = nkept;
  hak_stats_t t0 = st();
  for (int r = 0; r < 10; r++) {
    for (int k = 0; k < 3; k++) brief[3 * r + k] = alloc_brief(BLOCK, 0x22);
    kept[nkept++] = alloc_lasting(BLOCK, 0x6B);
  }
  for (int i = 0; i < 30; i++) free(brief[i]);
  hak_stats_t t;
  stats_json(json, sizeof json, &t);
  const char *c = strstr(json, "\"counters\":{");
  long long apart = c ? json_field(c, "site_apart") : -1;
  if (on) {
    CHECKV("the lasting site's blocks were placed apart", apart >= 10, "site_apart %lld", apart);
    CHECKV("no run stays pinned by a lasting block once the short-lived ones are freed",
           t.slab_free < t0.slab_free + 512 * KiB, "slab_free %zu -> %zu", t0.slab_free, t.slab_free);
  } else {
    CHECKV("HAKMEM_SITES=0: nothing placed apart", apart == 0, "site_apart %lld", apart);
    CHECKV("HAKMEM_SITES=0: the runs the lasting blocks share stay", t.slab_free >= t0.slab_free + MiB,
           "slab_free %zu -> %zu", t0.slab_free, t.slab_free);
  }
  int intact = 1;
  for (int i = 0; i < nkept; i++)
    intact &= kept[i] && all_bytes(kept[i], i >= first ? BLOCK : LEARN_BLOCK, i >= first ? 0x6B : 0x5A);
  CHECK("every lasting block holds what was written into it", intact);
  for (int i = 0; i < nkept; i++) free(kept[i]);
  return th_done();
}

/* Large blocks: a lasting site's freed block is not cached. */
static int mode_large(void) {
  const size_t n = 3 * MiB;
  char *keep[16];
  int nk = 0;
  for (int i = 0; i < 800 && nk < 16; i++) {
    free(alloc_brief(n, 0x33));
    if (i % 50 == 0) keep[nk++] = alloc_lasting(n, 0x44);
  }
  stats_json(json, sizeof json, NULL);
  const char *s = strstr(json, "\"sites\":{");
  CHECKV("the site keeping its Large blocks is lasting", s && json_field(s, "lasting") == 1, "%.200s",
         s ? s : "no \"sites\" object");
  hak_stats_t s0 = st();
  free(keep[--nk]);
  hak_stats_t s1 = st();
  CHECKV("a lasting site's freed Large block is not kept in BigCache",
         s1.bigcache_bytes == s0.bigcache_bytes && s1.mapped + n <= s0.mapped,
         "bigcache_bytes %zu -> %zu, mapped %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes, s0.mapped,
         s1.mapped);
  char *b = alloc_brief(n, 0x55);
  s0 = st();
  free(b);
  s1 = st();
  CHECKV("a short-lived site's is", s1.bigcache_bytes >= s0.bigcache_bytes + n, "bigcache_bytes %zu -> %zu",
         s0.bigcache_bytes, s1.bigcache_bytes);
  int intact = 1;
  for (int i = 0; i < nk; i++) intact &= all_bytes(keep[i], n, 0x44);
  CHECK("the lasting Large blocks hold what was written into them", intact);
  while (nk) free(keep[--nk]);
  return th_done();
}

int main(int argc, char **argv) {
  int ok = hak_load() && hakmem_is_malloc();
  if (argc > 1) {
    if (!CHECK("hakmem is the process malloc (child)", ok)) return th_done();
    if (strcmp(argv[1], "pool") == 0) return mode_pool(1);
    if (strcmp(argv[1], "off") == 0) return mode_pool(0);
    if (strcmp(argv[1], "large") == 0) return mode_large();
    fprintf(stderr, "sites: unknown mode %s\n", argv[1]);
    return 2;
  }
  if (!ok) {
    printf("skip: hakmem is not the process malloc (run with LD_PRELOAD=libhakmem.so)\n");
    return th_done();
  }
  static const th_case_t cases[] = {
      {"pool", {NULL}},
      {"off", {"HAKMEM_SITES=0", NULL}},
      {"large", {NULL}},
  };
  run_cases(cases, sizeof cases / sizeof cases[0]);
  return th_done();
}
