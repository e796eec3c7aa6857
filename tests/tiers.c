/* tests/tiers.c — every size-class and tier boundary, through malloc, calloc,
 * aligned_alloc and realloc.
 *
 * Sizes: each class's block size -1, +0 and +1 (the classes of DESIGN.md
 * section 1, derived here independently of the library: 16-byte steps up to
 * 1 KiB, then 8 per doubling up to 1 MiB), the tier boundaries 1 KiB,
 * 32 KiB, 1 MiB and 2 MiB, and Large sizes up to 33 MiB. For each API all
 * blocks of one pass are live together, each filled with a pattern derived
 * from its address that is checked just before it is freed (an overlap or a
 * stray write shows as a damaged pattern). Each block must be aligned, have
 * malloc_usable_size >= the request and no more than an honest bound (see
 * usable_max), and calloc memory must read zero: fresh, from a reused slab
 * block that was dirtied and freed, and from BigCache (a Large mapping
 * filled with 0xFF, freed and handed out again, with hak_stats showing the
 * hit). realloc walks up and down across the tiers (16 B .. 64 MiB) keeping
 * the contents, and a Large realloc that cannot grow in place (a page is
 * mapped right after it) moves without touching that page.
 *
 * Built linked with -lhakmem (release and debug) and glibc-linked for runs
 * under LD_PRELOAD; run.sh also runs it with HAKMEM_CHECK=1. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bound.h"
#include "harness.h"
#include "util.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static int have_hak; /* hakmem is the process malloc and hak_* resolved */

static hak_stats_t stats(void) {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  if (have_hak) hak.stats(&s);
  return s;
}

/* ---- the sizes -------------------------------------------------------- */
enum { MAX_SIZES = 600 };
static size_t sizes[MAX_SIZES];
static int n_sizes;

static void add_size(size_t n) {
  for (int i = 0; i < n_sizes; i++)
    if (sizes[i] == n) return;
  if (n > 0 && n_sizes < MAX_SIZES) sizes[n_sizes++] = n;
}

static void make_sizes(void) {
  for (size_t b = 16; b <= KiB; b += 16) {
    add_size(b - 1);
    add_size(b);
    add_size(b + 1);
  }
  for (size_t d = KiB; d < MiB; d <<= 1)
    for (size_t k = 1; k <= 8; k++) {
      size_t b = d + k * (d >> 3);
      add_size(b - 1);
      add_size(b);
      add_size(b + 1);
    }
  const size_t extra[] = {1,           2,       2 * MiB - 1, 2 * MiB,     2 * MiB + 1, 3 * MiB,
                          4 * MiB - 1, 4 * MiB, 4 * MiB + 1, 8 * MiB - 1, 8 * MiB + 1, 33 * MiB};
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) add_size(extra[i]);
}

/* ---- properties -------------------------------------------------------- */
static th_prop_t p_nonnull = PROP("allocation succeeds");
static th_prop_t p_align = PROP("pointer is aligned (16, or the requested alignment)");
static th_prop_t p_usable = PROP("malloc_usable_size >= request");
static th_prop_t p_usable_max = PROP("malloc_usable_size within the honest bound (usable_max)");
static th_prop_t p_content = PROP("contents kept until free (no overlap, no stray write)");
static th_prop_t p_zero = PROP("calloc memory reads zero (fresh pass)");
static th_prop_t p_zero_reuse = PROP("calloc zeroes a reused, dirtied block");
static th_prop_t p_zero_big = PROP("calloc from BigCache reads zero (mapping was filled with 0xFF)");
static th_prop_t p_big_hit = PROP("calloc after freeing a Large block of the same size is a BigCache hit");
static th_prop_t p_realloc = PROP("realloc across tiers succeeds, aligned, usable >= request");
static th_prop_t p_realloc_keep = PROP("realloc across tiers keeps the contents");

enum { API_MALLOC, API_CALLOC, API_ALIGNED };
static const char *const api_name[] = {"malloc", "calloc", "aligned_alloc"};

static void *alloc_api(int api, size_t align, size_t n) {
  switch (api) {
    case API_MALLOC:
      return malloc(LAUNDER(n));
    case API_CALLOC:
      return calloc(LAUNDER((size_t)1), n);
    default:
      return aligned_alloc(LAUNDER(align), n);
  }
}

/* Checks a block just allocated, of n bytes; 0 if it is NULL. */
static int check_fresh(const char *api, void *p, size_t n, size_t align) {
  if (!th_prop(&p_nonnull, p != NULL, "%s(%zu) align %zu returned NULL", api, n, align)) return 0;
  size_t a = align < 16 ? 16 : align;
  th_prop(&p_align, ((uintptr_t)p & (a - 1)) == 0, "%s(%zu) align %zu -> %p", api, n, align, p);
  size_t u = malloc_usable_size(p);
  th_prop(&p_usable, u >= n, "%s(%zu) align %zu: usable %zu", api, n, align, u);
  th_prop(&p_usable_max, u <= usable_max(n, align), "%s(%zu) align %zu: usable %zu > bound %zu", api, n,
          align, u, usable_max(n, align));
  return 1;
}

/* One pass: a block of every size from one API, all live together. */
static void pass(int api, size_t align) {
  static void *blk[MAX_SIZES];
  for (int i = 0; i < n_sizes; i++) {
    size_t n = sizes[i];
    void *p = blk[i] = alloc_api(api, align, n);
    if (!check_fresh(api_name[api], p, n, align)) continue;
    if (api == API_CALLOC) th_prop(&p_zero, all_bytes(p, n, 0), "calloc(1, %zu) -> %p not zero", n, p);
    pat_fill(p, n, pat_seed(p, n));
  }
  for (int i = 0; i < n_sizes; i++) {
    if (!blk[i]) continue;
    size_t n = sizes[i], off = pat_check(blk[i], n, pat_seed(blk[i], n));
    th_prop(&p_content, off == SIZE_MAX, "%s(%zu) align %zu at %p: byte %zu changed", api_name[api], n, align,
            blk[i], off);
    free(blk[i]);
    blk[i] = NULL;
  }
}

/* calloc of a block size just dirtied and freed: a few blocks at a time, a
 * few rounds, so that calloc gets the same (dirty) blocks back. */
static void calloc_reuse(void) {
  enum { K = 4, ROUNDS = 3 };
  for (int i = 0; i < n_sizes; i++) {
    size_t n = sizes[i];
    if (n > MiB) continue;
    for (int r = 0; r < ROUNDS; r++) {
      void *p[K];
      for (int k = 0; k < K; k++) {
        p[k] = malloc(LAUNDER(n));
        if (p[k]) memset(p[k], 0xA5, malloc_usable_size(p[k]));
      }
      for (int k = K - 1; k >= 0; k--) free(p[k]);
      for (int k = 0; k < K; k++) {
        p[k] = r & 1 ? calloc(LAUNDER(n), 1) : calloc(1, LAUNDER(n));
        if (check_fresh("calloc (reuse)", p[k], n, 16))
          th_prop(&p_zero_reuse, all_bytes(p[k], n, 0), "calloc(%zu) round %d -> %p not zero", n, r, p[k]);
      }
      for (int k = 0; k < K; k++) free(p[k]);
    }
  }
}

/* A Large block filled with 0xFF, freed (BigCache keeps its mapping), then
 * calloc of the same size, or of one that uses at least 7/8 of it. */
static void calloc_bigcache(void) {
  const size_t big[][2] = {{MiB + 1, MiB + 1},        {MiB + MiB / 2, MiB + MiB / 2},
                           {3 * MiB, 3 * MiB},        {3 * MiB, 3 * MiB - 256 * KiB},
                           {8 * MiB, 8 * MiB},        {31 * MiB, 31 * MiB},
                           {2 * MiB + 1, 2 * MiB + 1}};
  for (int rep = 0; rep < 2; rep++)
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
      size_t n = big[i][0], m = big[i][1];
      void *p = malloc(LAUNDER(n));
      if (!check_fresh("malloc (Large)", p, n, 16)) continue;
      memset(p, 0xFF, malloc_usable_size(p));
      free(p);
      hak_stats_t s0 = stats();
      void *q = calloc(1, LAUNDER(m));
      hak_stats_t s1 = stats();
      if (!check_fresh("calloc (BigCache)", q, m, 16)) continue;
      th_prop(&p_zero_big, all_bytes(q, m, 0),
              "freed %zu bytes filled with 0xFF, calloc(1, %zu) -> %p (freed block was %p) not zero", n, m, q,
              p);
      if (have_hak)
        th_prop(&p_big_hit, s1.bigcache_hits > s0.bigcache_hits,
                "freed %zu, calloc(1, %zu): bigcache_hits %llu -> %llu", n, m,
                (unsigned long long)s0.bigcache_hits, (unsigned long long)s1.bigcache_hits);
      free(q);
    }
}

/* realloc up and down across the tiers with one pattern (byte i depends
 * only on i), checking the common prefix at every step. */
static void realloc_walk(void) {
  const size_t walk[] = {16,      1023,        1024,    1025,        32 * KiB - 1, 32 * KiB, 32 * KiB + 1,
                         MiB - 1, MiB,         MiB + 1, 2 * MiB + 1, 8 * MiB,      64 * MiB, 40 * MiB,
                         8 * MiB, 2 * MiB - 1, MiB + 1, MiB,         32 * KiB + 1, 32 * KiB, 1025,
                         1024,    17,          16,      1,           300 * KiB,    16};
  const uint64_t seed = 0x7157;
  size_t n = walk[0];
  char *p = malloc(LAUNDER(n));
  if (!th_prop(&p_realloc, p != NULL, "malloc(%zu)", n)) return;
  pat_fill(p, n, seed);
  for (size_t i = 1; i < sizeof walk / sizeof walk[0]; i++) {
    size_t m = walk[i];
    char *q = realloc(p, LAUNDER(m));
    if (!th_prop(&p_realloc, q != NULL && ((uintptr_t)q & 15) == 0 && malloc_usable_size(q) >= m,
                 "realloc(%zu -> %zu) -> %p, usable %zu", n, m, (void *)q, q ? malloc_usable_size(q) : 0))
      return; /* p is still live but its state is unknown: leave it */
    size_t keep = n < m ? n : m, off = pat_check(q, keep, seed);
    th_prop(&p_realloc_keep, off == SIZE_MAX, "realloc(%zu -> %zu): byte %zu of %zu changed", n, m, off,
            keep);
    pat_fill(q, m, seed);
    p = q;
    n = m;
  }
  free(p);
}

/* A Large block with a page mapped right after its mapping cannot grow in
 * place: realloc must move it (mremap) and leave that page alone; the old
 * pointer is gone (only the result is freed), and the stats count one
 * live Large block throughout. Then one that may grow in place. */
static void realloc_large(void) {
  const size_t n = 4 * MiB + 123, m = 12 * MiB + 5;
  const uint64_t seed = 0x1a26e;
  hak_stats_t s0 = stats();
  char *p = malloc(LAUNDER(n));
  if (!CHECK("malloc(4 MiB) for the realloc test", p != NULL)) return;
  pat_fill(p, n, seed);
  char *end = p + malloc_usable_size(p);
  int blocked = ((uintptr_t)end & 4095) == 0;
  char *guard = MAP_FAILED;
  if (blocked) {
    guard = mmap(end, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (guard != MAP_FAILED && guard != end) {
      munmap(guard, 4096);
      guard = MAP_FAILED;
    }
    blocked = guard != MAP_FAILED;
  }
  if (blocked) memset(guard, 0x5A, 4096);
  hak_stats_t s1 = stats();
  char *q = realloc(p, LAUNDER(m));
  hak_stats_t s2 = stats();
  if (CHECKV("Large realloc 4 MiB -> 12 MiB succeeds", q != NULL && malloc_usable_size(q) >= m, "%p",
             (void *)q)) {
    size_t off = pat_check(q, n, seed);
    CHECKV("Large realloc keeps the contents", off == SIZE_MAX, "byte %zu of %zu changed", off, n);
    if (blocked) {
      CHECKV("Large realloc blocked in place moves the block",
             q != p && (q + m <= guard || q >= guard + 4096), "old %p, new %p, page mapped at %p", (void *)p,
             (void *)q, (void *)guard);
      CHECK("Large realloc leaves the page after the old mapping alone", all_bytes(guard, 4096, 0x5A));
    }
    pat_fill(q, m, seed);
    if (have_hak) {
      CHECKV("one more live Large block after malloc", s1.large_blocks == s0.large_blocks + 1, "%llu -> %llu",
             (unsigned long long)s0.large_blocks, (unsigned long long)s1.large_blocks);
      CHECKV("a Large realloc that moves leaves one live Large block",
             s2.large_blocks == s1.large_blocks && s2.large_in_use >= s0.large_in_use + m,
             "large_blocks %llu -> %llu, large_in_use %zu -> %zu (%zu before malloc)",
             (unsigned long long)s1.large_blocks, (unsigned long long)s2.large_blocks, s1.large_in_use,
             s2.large_in_use, s0.large_in_use);
    }
    /* Grow again (in place if the space after it is free), then shrink. */
    char *r = realloc(q, LAUNDER(m + 3 * MiB));
    if (CHECK("Large realloc 12 MiB -> 15 MiB succeeds", r != NULL && malloc_usable_size(r) >= m + 3 * MiB)) {
      size_t off2 = pat_check(r, m, seed);
      CHECKV("Large realloc (grow again) keeps the contents", off2 == SIZE_MAX, "byte %zu changed", off2);
      pat_fill(r, m + 3 * MiB, seed);
      char *t = realloc(r, LAUNDER(5 * MiB));
      if (CHECK("Large realloc 15 MiB -> 5 MiB succeeds", t != NULL && malloc_usable_size(t) >= 5 * MiB)) {
        size_t off3 = pat_check(t, 5 * MiB, seed);
        CHECKV("Large realloc (shrink) keeps the contents", off3 == SIZE_MAX, "byte %zu changed", off3);
        if (have_hak)
          CHECKV("a shrunk Large block gives most of its tail back",
                 malloc_usable_size(t) <= 5 * MiB + 5 * MiB / 4 + 2 * MiB, "usable %zu",
                 malloc_usable_size(t));
        r = t;
      }
      free(r);
    } else {
      free(q);
    }
    if (have_hak) {
      hak_stats_t s3 = stats();
      CHECKV("after free the live Large blocks are as before", s3.large_blocks == s0.large_blocks,
             "%llu before, %llu after", (unsigned long long)s0.large_blocks,
             (unsigned long long)s3.large_blocks);
    }
  }
  if (blocked) munmap(guard, 4096);
}

int main(void) {
  have_hak = hak_load() && hakmem_is_malloc();
  CHECK("hakmem is the process malloc", have_hak);
  uint64_t invalid0 = stats().invalid_frees;
  make_sizes();
  CHECKV("size list covers every class (3 per class) and the Large sizes", n_sizes >= 3 * 144 + 8, "%d sizes",
         n_sizes);

  pass(API_MALLOC, 16);
  pass(API_CALLOC, 16);
  const size_t aligns[] = {16, 64, 256, 4096, 64 * KiB, MiB, 4 * MiB};
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++) pass(API_ALIGNED, aligns[i]);
  calloc_reuse();
  calloc_bigcache();
  realloc_walk();
  realloc_large();

  th_prop_t *all[] = {&p_nonnull, &p_align,      &p_usable,   &p_usable_max, &p_content,
                      &p_zero,    &p_zero_reuse, &p_zero_big, &p_realloc,    &p_realloc_keep};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PROP_DONE(all[i]);
  if (have_hak) {
    PROP_DONE(&p_big_hit);
    CHECKV("no pointer was reported invalid", stats().invalid_frees == invalid0, "%llu reported",
           (unsigned long long)(stats().invalid_frees - invalid0));
  }
  return th_done();
}
