/* tests/bigcache.c — BigCache, where freed Large mappings wait for reuse.
 *
 * Each case runs in a fresh process (this program again, with a mode and
 * HAKMEM_* options in its environment) so that nothing else is cached:
 *   hit     a freed Large block's mapping serves the next request of the
 *           same size (bigcache_hits + 1, no new mapping), and one that uses
 *           at least 7/8 of it; a request using only half of it is served
 *           by it cut to size (the tail unmapped), one larger than it by it
 *           grown (only the difference mapped anew, its pages moved: they
 *           hold what the freed block held); calloc from the cache reads
 *           zero
 *   split   a cached 7 MiB mapping cut for a 1.5 MiB request keeps its
 *           part past the next 2 MiB boundary cached, which then serves a
 *           5 MiB request with its pages (nothing mapped anew)
 *   donate  HAKMEM_THP=2 (so every page faults on its own) and
 *           HAKMEM_RETAIN_KB=65536 (nothing is purged): with mappings
 *           of 6 and 4 MiB cached, a 9 MiB request is made of their whole
 *           2 MiB chunks, moved: it is a hit, maps nothing new on balance,
 *           takes its last chunk whole (usable size 10 MiB less the
 *           header's line), holds their bytes in that order, and memset of
 *           it all faults in no page; freed, it serves the next such
 *           request as it is; realloc grows it to 30 MiB (it is several
 *           kernel areas, which mremap alone cannot grow) with its bytes
 *   slabs   HAKMEM_THP=2, HAKMEM_PURGE_DELAY_MS=60000 and
 *           HAKMEM_BIGCACHE_MB=0: 12 MiB of 1000-byte blocks written and
 *           freed leave 3 wholly free SuperSlabs dirty (the rest purged);
 *           an 8 MiB block takes their pages, one mremap each: writing it
 *           faults in only its fourth chunk (and their header pages), and
 *           committed memory grows by a quarter of it, the empty memory
 *           kept shrinks by the rest; then the SuperSlabs serve slabs
 *           again, every block keeping its bytes, and calloc of 8 MiB from
 *           them reads zero
 *   spares  HAKMEM_THP=2, HAKMEM_RETAIN_KB=65536 (the freed slabs stay
 *           the thread's spares, the pool runs' SuperSlabs its pool's) and
 *           HAKMEM_BIGCACHE_MB=0: after 12 MiB of 100 KiB blocks, and
 *           then of 1000-byte blocks, written and freed, an 8 MiB block
 *           takes their pages, 4 chunks moved (the spares go back and the
 *           pool's wholly free SuperSlabs are shared first): writing it
 *           faults in only the pages the blocks never had (fewer than 64
 *           after the small blocks), and committed memory does not grow
 *           by it
 *   learn   HAKMEM_ACE=1, HAKMEM_BIGCACHE_MB=8, HAKMEM_RETAIN_SHARE=0 (the
 *           budget is 8 MiB), HAKMEM_BIGCACHE_DECAY_MS=300: four rounds of 4 blocks of
 *           6 MiB allocated and freed. The budget holds one; each block it
 *           could not hold and the next round asks for again teaches it
 *           (HAKMEM_ACE): rounds 2, 3 and 4 have exactly 1, 3 and 4 hits,
 *           and the report says the budget learned 4 mappings (25182208
 *           bytes, grew 4 times); 450 ms later (past the decay) the free
 *           of a 2 MiB block live throughout unmaps them unused, and it
 *           unlearns them (learned 0, shrank 4); `learn0` (HAKMEM_ACE=0):
 *           1 hit in every round, nothing learned
 *   budget  HAKMEM_BIGCACHE_MB=8: after every free of many 3 MiB blocks,
 *           bigcache_bytes <= 8 MiB; a block over the budget is not kept;
 *           with the default budget (32 MiB) the cache fills up to it, and
 *           no more than twice HAKMEM_RETAIN_KB (default 4 MiB) of it stays
 *           resident; past the purge delay (10 ms), the next Large
 *           malloc/free purges it down to HAKMEM_RETAIN_KB
 *   none    HAKMEM_BIGCACHE_MB=0 keeps nothing
 *   live    beside 192 MiB of live Large blocks the budget is a quarter of
 *           them (HAKMEM_RETAIN_SHARE), 48 MiB; with HAKMEM_RETAIN_SHARE=0
 *           it stays HAKMEM_BIGCACHE_MB
 *   thp     malloc's Large mappings, fresh or grown from a cached one, ask
 *           for huge pages (VmFlags hg in
 *           /proc/self/smaps), calloc's and those under 2 MiB do not;
 *           HAKMEM_THP=2 forbids them (nh)
 *   decay   HAKMEM_BIGCACHE_DECAY_MS=100: 300 ms after the frees, one Large
 *           malloc/free unmaps the old entries; with the default decay
 *           (1 s) an immediate one keeps them
 *   age     HAKMEM_BIGCACHE_DECAY_MS=100: 300 ms after the frees, no Large
 *           call at all, but small mallocs that take a slab: the cached
 *           mappings are unmapped (a program that stops making Large
 *           blocks does not keep its last ones)
 *   trim    malloc_trim(0) empties the cache and returns 1; a second one,
 *           with nothing freed in between, returns 0
 *   moves   HAKMEM_BIGCACHE_MB=0, HAKMEM_INVALID_FREE=2: for 1.5 s two
 *           threads grow Large blocks with realloc (their pages move to a
 *           new mapping) while two others map and free Large blocks; every
 *           block keeps its bytes and none is taken for a foreign pointer
 *           (the old range's chunk-map mark was once cleared after mremap
 *           had given the range up, and so could erase the mark of another
 *           thread's new mapping there: its free then aborted; about one
 *           run in five of this case caught it)
 * Needs hakmem as the process malloc (-lhakmem, or LD_PRELOAD): the plain
 * glibc binary run without it only prints that it skips. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

static hak_stats_t st(void) {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  hak.stats(&s);
  return s;
}

#define ULL(x) ((unsigned long long)(x))

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static int mode_hit(void) {
  const size_t n = 3 * MiB;
  char *p = malloc(LAUNDER(n));
  if (!CHECK("malloc(3 MiB)", p != NULL)) return th_done();
  memset(p, 0x3C, n);
  hak_stats_t s0 = st();
  free(p);
  hak_stats_t s1 = st();
  CHECKV("a freed 3 MiB block's mapping is kept in BigCache", s1.bigcache_bytes >= s0.bigcache_bytes + n,
         "bigcache_bytes %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes);
  CHECKV("a freed Large block is no longer counted live", s1.large_blocks + 1 == s0.large_blocks,
         "large_blocks %llu -> %llu", ULL(s0.large_blocks), ULL(s1.large_blocks));
  char *q = malloc(LAUNDER(n));
  hak_stats_t s2 = st();
  CHECKV("malloc of the same size is a BigCache hit",
         s2.bigcache_hits == s1.bigcache_hits + 1 && s2.bigcache_misses == s1.bigcache_misses,
         "hits %llu -> %llu, misses %llu -> %llu", ULL(s1.bigcache_hits), ULL(s2.bigcache_hits),
         ULL(s1.bigcache_misses), ULL(s2.bigcache_misses));
  CHECKV("the hit takes the mapping out of the cache", s2.bigcache_bytes + n <= s1.bigcache_bytes,
         "bigcache_bytes %zu -> %zu", s1.bigcache_bytes, s2.bigcache_bytes);
  CHECKV("a hit maps nothing new", s2.mapped <= s1.mapped, "mapped %zu -> %zu", s1.mapped, s2.mapped);
  CHECKV("the block from the cache is usable", q && malloc_usable_size(q) >= n, "%p", (void *)q);
  if (q != p) printf("note: the cached block came back at %p, not %p\n", (void *)q, (void *)p);
  if (q) {
    memset(q, 0x7E, n);
    free(q);
  }

  /* A request that uses 7/8 of the cached mapping is served by it. */
  hak_stats_t s3 = st();
  q = malloc(LAUNDER(n - 256 * KiB));
  hak_stats_t s4 = st();
  CHECKV("a request using >= 7/8 of a cached mapping is a hit", q && s4.bigcache_hits == s3.bigcache_hits + 1,
         "hits %llu -> %llu", ULL(s3.bigcache_hits), ULL(s4.bigcache_hits));
  free(q);

  /* Half of it: served by it, cut to size. */
  s3 = st();
  q = malloc(LAUNDER(n / 2));
  s4 = st();
  CHECKV("a request using half of the only cached mapping is served by it (a hit)",
         q && s4.bigcache_hits == s3.bigcache_hits + 1 && s4.bigcache_misses == s3.bigcache_misses,
         "hits %llu -> %llu, misses %llu -> %llu", ULL(s3.bigcache_hits), ULL(s4.bigcache_hits),
         ULL(s3.bigcache_misses), ULL(s4.bigcache_misses));
  CHECKV("cut to size: its tail unmapped", s4.mapped + n / 2 <= s3.mapped, "mapped %zu -> %zu", s3.mapped,
         s4.mapped);
  CHECKV("and the block's usable size is the request's, rounded to pages",
         q && malloc_usable_size(q) >= n / 2 && malloc_usable_size(q) < n / 2 + 4096, "usable %zu",
         q ? malloc_usable_size(q) : 0);
  if (q) memset(q, 0x5A, n / 2);
  free(q);

  /* More than it has: served by it, grown (its pages moved, not copied). */
  s3 = st();
  q = malloc(LAUNDER(4 * MiB + 3 * 4096));
  s4 = st();
  CHECKV("a request larger than every cached mapping is served by the largest (a hit)",
         q && s4.bigcache_hits == s3.bigcache_hits + 1 && s4.bigcache_misses == s3.bigcache_misses,
         "hits %llu -> %llu, misses %llu -> %llu", ULL(s3.bigcache_hits), ULL(s4.bigcache_hits),
         ULL(s3.bigcache_misses), ULL(s4.bigcache_misses));
  CHECKV("grown: only the difference is mapped anew", s4.mapped <= s3.mapped + 4 * MiB + 3 * 4096 - n / 2,
         "mapped %zu -> %zu", s3.mapped, s4.mapped);
  CHECKV("its first pages are the cached mapping's (they hold what the freed block held)",
         q && q[0] == 0x5A && q[n / 2 - 1] == 0x5A, "bytes 0x%02x 0x%02x", q ? q[0] & 0xFF : 0,
         q ? q[n / 2 - 1] & 0xFF : 0);
  CHECKV("the grown block is usable whole", q && malloc_usable_size(q) >= 4 * MiB + 3 * 4096, "usable %zu",
         q ? malloc_usable_size(q) : 0);
  if (q) memset(q, 0x11, 4 * MiB + 3 * 4096);
  free(q);

  /* calloc from the cache: the mapping was dirtied above. */
  for (size_t m = 3 * MiB; m >= MiB + 1; m = m / 2 + 1) {
    char *d = malloc(LAUNDER(m));
    if (!d) continue;
    memset(d, 0xFF, malloc_usable_size(d));
    free(d);
    s3 = st();
    char *z = calloc(1, LAUNDER(m));
    s4 = st();
    CHECKV("calloc served from BigCache", z && s4.bigcache_hits == s3.bigcache_hits + 1,
           "size %zu: hits %llu -> %llu", m, ULL(s3.bigcache_hits), ULL(s4.bigcache_hits));
    CHECKV("calloc from BigCache reads zero", z && all_bytes(z, m, 0), "size %zu at %p", m, (void *)z);
    free(z);
  }
  return th_done();
}

/* A cached 7 MiB mapping serving a 1.5 MiB request keeps the part past
 * its next 2 MiB boundary (5 MiB) cached, pages and all: a 5 MiB request
 * is then served by it, with nothing mapped anew. */
static int mode_split(void) {
  const size_t big = 7 * MiB, small = MiB + MiB / 2, rest = 5 * MiB;
  char *p = malloc(LAUNDER(big));
  if (!CHECK("malloc(7 MiB)", p != NULL)) return th_done();
  memset(p, 0x33, big);
  free(p);
  hak_stats_t s0 = st();
  char *q = malloc(LAUNDER(small));
  hak_stats_t s1 = st();
  CHECKV("1.5 MiB served by the cached 7 MiB mapping", q && s1.bigcache_hits == s0.bigcache_hits + 1,
         "hits %llu -> %llu", ULL(s0.bigcache_hits), ULL(s1.bigcache_hits));
  CHECKV("its part past the next 2 MiB boundary stays cached", s1.bigcache_bytes >= rest,
         "bigcache_bytes %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes);
  CHECKV("only the bytes before that boundary are unmapped", s1.mapped + MiB / 2 >= s0.mapped,
         "mapped %zu -> %zu", s0.mapped, s1.mapped);
  char *r = malloc(LAUNDER(rest));
  hak_stats_t s2 = st();
  CHECKV("a 5 MiB request is served by that part", r && s2.bigcache_hits == s1.bigcache_hits + 1,
         "hits %llu -> %llu", ULL(s1.bigcache_hits), ULL(s2.bigcache_hits));
  CHECKV("with nothing mapped anew", s2.mapped <= s1.mapped, "mapped %zu -> %zu", s1.mapped, s2.mapped);
  CHECKV("its pages are the freed block's (they hold what it held)", r && r[0] == 0x33 && r[rest - 1] == 0x33,
         "bytes 0x%02x 0x%02x", r ? r[0] & 0xFF : 0, r ? r[rest - 1] & 0xFF : 0);
  if (q) memset(q, 1, small);
  if (r) memset(r, 2, rest);
  free(q);
  free(r);
  return th_done();
}

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static int mode_donate(void) {
  char *a = malloc(LAUNDER(6 * MiB)), *b = malloc(LAUNDER(4 * MiB));
  if (!CHECK("malloc(6 MiB), malloc(4 MiB)", a && b)) return th_done();
  memset(a, 0xA1, 6 * MiB);
  memset(b, 0xB2, 4 * MiB);
  free(a);
  free(b);
  hak_stats_t s0 = st();
  long f0 = minor_faults();
  char *q = malloc(LAUNDER(9 * MiB));
  hak_stats_t s1 = st();
  CHECKV("9 MiB made of the cached mappings' chunks is a hit",
         q && s1.bigcache_hits == s0.bigcache_hits + 1 && s1.bigcache_misses == s0.bigcache_misses,
         "hits %llu -> %llu, misses %llu -> %llu", ULL(s0.bigcache_hits), ULL(s1.bigcache_hits),
         ULL(s0.bigcache_misses), ULL(s1.bigcache_misses));
  CHECKV("it maps nothing new on balance", s1.mapped <= s0.mapped, "mapped %zu -> %zu", s0.mapped, s1.mapped);
  CHECKV("the cache gave up every chunk", s1.bigcache_bytes == 0, "bigcache_bytes %zu -> %zu",
         s0.bigcache_bytes, s1.bigcache_bytes);
  if (!CHECKV("it takes its last chunk whole", q && malloc_usable_size(q) == 10 * MiB - 64, "usable %zu",
              q ? malloc_usable_size(q) : 0))
    return th_done();
  CHECKV("it holds the 6 MiB block's bytes, then the 4 MiB block's (pages moved, not faulted in)",
         all_bytes(q, 6 * MiB - 64, 0xA1) && all_bytes(q + 6 * MiB, 4 * MiB - 64, 0xB2),
         "bytes 0x%02x 0x%02x 0x%02x", q[0] & 0xFF, q[6 * MiB - 65] & 0xFF, q[6 * MiB] & 0xFF);
  memset(q, 0x5C, 10 * MiB - 64);
  long faults = minor_faults() - f0;
  CHECKV("writing all of it faults in fewer than 16 pages (2560 if none had been moved)", faults < 16,
         "%ld faults", faults);
  free(q);
  s0 = st();
  char *r = malloc(LAUNDER(9 * MiB));
  s1 = st();
  CHECKV("freed, it serves the next 9 MiB request as it is",
         r == q && s1.bigcache_hits == s0.bigcache_hits + 1 && s1.mapped == s0.mapped,
         "%p, was %p; mapped %zu -> %zu", (void *)r, (void *)q, s0.mapped, s1.mapped);
  char *g = r ? realloc(r, LAUNDER(30 * MiB)) : NULL;
  CHECKV("realloc grows it to 30 MiB with its bytes", g && all_bytes(g, 10 * MiB - 64, 0x5C), "%p",
         (void *)g);
  if (g) memset(g, 1, 30 * MiB);
  free(g ? g : r);
  return th_done();
}

/* Blocks of `size` bytes filling `bytes`, each written whole with `c`,
 * then freed in order: their slabs go back to their SuperSlabs (or to the
 * thread's spares, or its pool), dirty. */
static void slab_round(size_t bytes, size_t size, int c) {
  enum { N = 16384 };
  static char *blk[N];
  size_t n = bytes / size < N ? bytes / size : N;
  for (size_t i = 0; i < n; i++) {
    blk[i] = malloc(LAUNDER(size));
    if (blk[i]) memset(blk[i], c, size);
  }
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    bad += !blk[i] || !all_bytes(blk[i], size, (unsigned char)c);
    free(blk[i]);
  }
  CHECKV("slab blocks hold their bytes", bad == 0, "%zu of %zu blocks of %zu bad (byte 0x%02x)", bad, n, size,
         c);
}

/* An 8 MiB block, written whole: the page faults that took (*faults), with
 * the figures before and after; NULL if malloc failed. */
static char *write_big(hak_stats_t *s0, hak_stats_t *s1, long *faults) {
  *s0 = st();
  long f0 = minor_faults();
  char *q = malloc(LAUNDER(8 * MiB));
  if (q) memset(q, 0x5C, 8 * MiB - 64);
  *faults = minor_faults() - f0;
  *s1 = st();
  return q;
}

static int mode_slabs(void) {
  slab_round(12 * MiB, 1000, 0xEE);
  hak_stats_t s0, s1;
  long faults;
  char *q = write_big(&s0, &s1, &faults);
  if (!CHECK("malloc(8 MiB)", q != NULL)) return th_done();
  CHECKV(
      "8 MiB takes the pages of the 3 wholly free SuperSlabs: writing it faults in one chunk's 512 "
      "pages and their headers' (2048 if none had been moved)",
      faults >= 512 && faults < 540, "%ld faults", faults);
  CHECKV("committed memory grows by less than half the block", s1.committed < s0.committed + 4 * MiB,
         "committed %zu -> %zu", s0.committed, s1.committed);
  CHECKV("the empty memory kept shrinks by what the block took", s1.empty + 4 * MiB <= s0.empty,
         "empty %zu -> %zu", s0.empty, s1.empty);
  CHECKV("their pages moved with mremap, one call each", s1.mremap_calls == s0.mremap_calls + 3,
         "mremap calls %llu -> %llu", ULL(s0.mremap_calls), ULL(s1.mremap_calls));
  free(q);
  /* The SuperSlabs serve slabs again (their headers kept, their units
   * purged); calloc of moved pages reads zero. */
  slab_round(12 * MiB, 1000, 0x3D);
  slab_round(12 * MiB, 1000, 0x4B);
  char *z = calloc(1, LAUNDER(8 * MiB));
  CHECKV("calloc made of a free SuperSlab's pages reads zero", z && all_bytes(z, 8 * MiB, 0), "%p",
         (void *)z);
  free(z);
  slab_round(12 * MiB, 1000, 0x77);
  return th_done();
}

/* The thread's spare slabs (kept: the budget is 64 MiB) and its pool's
 * wholly free SuperSlabs go back before a Large block is made, and give it
 * their pages. */
static int mode_spares(void) {
  /* Pool runs first (no spares yet). A 100 KiB block's run is two units,
   * whose last 28 KiB the program never wrote, and no pool run starts in
   * unit 0: those pages of the chunks moved are not resident (about 540). */
  static const size_t sizes[2] = {100 * KiB, 1000};
  static const long most_faults[2] = {600, 64};
  for (int k = 0; k < 2; k++) {
    slab_round(12 * MiB, sizes[k], 0x21 + k);
    hak_stats_t s0, s1;
    long faults;
    char *q = write_big(&s0, &s1, &faults);
    if (!CHECK("malloc(8 MiB)", q != NULL)) return th_done();
    CHECKV("12 MiB of blocks freed stay as empty memory (the thread's spares, or its pool's)",
           s0.empty >= 10 * MiB, "blocks of %zu: empty %zu", sizes[k], s0.empty);
    CHECKV(
        "an 8 MiB block takes their pages: writing it faults in only those never written (2048 if none "
        "moved)",
        faults < most_faults[k], "blocks of %zu: %ld faults, %ld at most", sizes[k], faults, most_faults[k]);
    CHECKV("the pages of 4 chunks moved", s1.mremap_calls == s0.mremap_calls + 4,
           "blocks of %zu: %llu mremap calls", sizes[k], ULL(s1.mremap_calls - s0.mremap_calls));
    CHECKV("committed memory does not grow by the block", s1.committed < s0.committed + MiB,
           "blocks of %zu: committed %zu -> %zu", sizes[k], s0.committed, s1.committed);
    free(q);
    slab_round(12 * MiB, sizes[k], 0x31 + k);
  }
  return th_done();
}

static char json[1 << 17];

static int mode_learn(int ace) {
  const size_t n = 6 * MiB, mapping = n + 4096; /* its header's page */
  const unsigned want[4] = {0, 1, ace ? 3 : 1, ace ? 4 : 1};
  char *p[4], *q = malloc(LAUNDER(2 * MiB)); /* live throughout: its free is the last */
  for (int round = 0; round < 4; round++) {
    hak_stats_t s0 = st();
    for (int i = 0; i < 4; i++) {
      p[i] = malloc(LAUNDER(n));
      if (!CHECK("malloc(6 MiB)", p[i] != NULL)) return th_done();
      memset(p[i], i, 4096);
    }
    hak_stats_t s1 = st();
    CHECKV("each round has as many BigCache hits as the budget learned to keep",
           s1.bigcache_hits - s0.bigcache_hits == want[round], "round %d: %llu hits, %u expected", round + 1,
           ULL(s1.bigcache_hits - s0.bigcache_hits), want[round]);
    for (int i = 0; i < 4; i++) free(p[i]);
  }
  stats_json(json, sizeof json, NULL);
  const char *a = strstr(json, "\"ace\":{");
  CHECKV("the report says what the budget learned",
         a && json_field(a, "on") == ace &&
             json_field(a, "bigcache_learned") == (long long)(ace ? 4 * mapping : 0) &&
             json_field(a, "bigcache_grew") == (ace ? 4 : 0) &&
             json_field(a, "bigcache_budget") == (long long)(ace ? 4 * mapping : 8 * MiB),
         "%.160s", a ? a : "no \"ace\" object");
  sleep_ms(450);
  free(q); /* the decay looks at the cache */
  stats_json(json, sizeof json, NULL);
  a = strstr(json, "\"ace\":{");
  CHECKV("past the decay, the mappings no request took are unlearnt",
         a && json_field(a, "bigcache_learned") == 0 && json_field(a, "bigcache_shrank") == (ace ? 4 : 0) &&
             json_field(a, "bigcache_budget") == (long long)(8 * MiB),
         "%.160s", a ? a : "no \"ace\" object");
  return th_done();
}

/* Frees `count` blocks of `size`, checking the cache stays within `budget`
 * after every free; returns the largest bigcache_bytes seen. */
static size_t free_many(size_t count, size_t size, size_t budget) {
  char *p[32];
  for (size_t i = 0; i < count; i++) {
    p[i] = malloc(LAUNDER(size));
    if (p[i]) memset(p[i], (int)i, size);
  }
  th_prop_t within = PROP("bigcache_bytes <= HAKMEM_BIGCACHE_MB after every free");
  size_t most = 0;
  for (size_t i = 0; i < count; i++) {
    free(p[i]);
    hak_stats_t s = st();
    th_prop(&within, s.bigcache_bytes <= budget, "budget %zu, after %zu frees of %zu bytes: %zu", budget,
            i + 1, size, s.bigcache_bytes);
    if (s.bigcache_bytes > most) most = s.bigcache_bytes;
  }
  PROP_DONE(&within);
  return most;
}

static int mode_budget8(void) {
  const size_t budget = 8 * MiB;
  size_t most = free_many(12, 3 * MiB, budget);
  CHECKV("with an 8 MiB budget the cache still keeps 3 MiB blocks", most >= 3 * MiB,
         "largest bigcache_bytes %zu", most);
  hak_stats_t s0 = st();
  char *p = malloc(LAUNDER(10 * MiB));
  if (p) memset(p, 1, 10 * MiB);
  free(p);
  hak_stats_t s1 = st();
  CHECKV("a block larger than the budget is not cached", s1.bigcache_bytes <= budget,
         "bigcache_bytes %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes);
  return th_done();
}

static int mode_budget_default(void) {
  const size_t budget = 32 * MiB;
  size_t most = free_many(20, 3 * MiB, budget);
  CHECKV("with the default budget (32 MiB) ten 3 MiB blocks are cached", most >= 30 * MiB,
         "largest bigcache_bytes %zu", most);
  hak_stats_t s = st();
  CHECKV("no Large block is live", s.large_blocks == 0 && s.large_in_use == 0,
         "large_blocks %llu, large_in_use %zu", ULL(s.large_blocks), s.large_in_use);
  CHECKV("BigCache keeps at most twice HAKMEM_RETAIN_KB (default 4 MiB) resident when nothing is live",
         s.large_committed <= s.large_in_use + 8 * MiB, "large_committed %zu, large_in_use %zu",
         s.large_committed, s.large_in_use);
  sleep_ms(50);
  char *p = malloc(LAUNDER(3 * MiB));
  if (p) memset(p, 1, 3 * MiB);
  free(p);
  s = st();
  CHECKV("50 ms later (past the purge delay) one Large malloc/free purges it down to HAKMEM_RETAIN_KB",
         s.large_committed <= s.large_in_use + 4 * MiB, "large_committed %zu, large_in_use %zu",
         s.large_committed, s.large_in_use);
  return th_done();
}

/* 64 live 3 MiB blocks (192 MiB, never touched), then `extra` more
 * allocated and freed: the most BigCache held on the way. */
static size_t cache_beside_live(size_t extra) {
  static char *live[64], *more[24];
  for (size_t i = 0; i < 64; i++) live[i] = malloc(LAUNDER(3 * MiB));
  for (size_t i = 0; i < extra; i++) more[i] = malloc(LAUNDER(3 * MiB));
  size_t most = 0;
  for (size_t i = 0; i < extra; i++) {
    free(more[i]);
    size_t b = st().bigcache_bytes;
    most = b > most ? b : most;
  }
  CHECKV("the 64 blocks stay live", st().large_in_use >= 192 * MiB, "large_in_use %zu", st().large_in_use);
  for (size_t i = 0; i < 64; i++) free(live[i]);
  return most;
}

static int mode_live(void) {
  size_t most = cache_beside_live(20);
  CHECKV("beside 192 MiB of live Large blocks BigCache keeps a quarter of them (48 MiB: 16 blocks of 3 MiB)",
         most >= 16 * 3 * MiB && most <= 48 * MiB + 3 * MiB, "largest bigcache_bytes %zu", most);
  return th_done();
}

static int mode_live_fixed(void) {
  size_t most = cache_beside_live(20);
  CHECKV("HAKMEM_RETAIN_SHARE=0: BigCache keeps HAKMEM_BIGCACHE_MB (32 MiB) however much is live",
         most >= 30 * MiB && most <= 32 * MiB, "largest bigcache_bytes %zu", most);
  return th_done();
}

/* The VmFlags of the mapping that holds p, from /proc/self/smaps ("" if
 * not found). */
static const char *vm_flags(const void *p, char *out, size_t len) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
    else if (in && strncmp(line, "VmFlags:", 8) == 0) snprintf(out, len, "%s", line + 8);
  }
  if (f) fclose(f);
  return out;
}

static int has_flag(const char *flags, const char *flag) {
  for (const char *q = flags; (q = strstr(q, flag)) != NULL; q++)
    if ((q == flags || q[-1] == ' ') && (q[2] == ' ' || q[2] == '\n' || q[2] == 0)) return 1;
  return 0;
}

static int mode_thp(void) {
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
    printf("skip: this kernel has no transparent huge pages\n");
    return th_done();
  }
  const char *opt = getenv("HAKMEM_THP");
  int forbid = opt && strcmp(opt, "2") == 0;
  char fm[256], fc[256];
  /* A fresh 1.5 MiB mapping holds no whole 2 MiB chunk: nothing to ask
   * (first: a cached mapping keeps its choice). */
  char *s = malloc(LAUNDER(MiB + MiB / 2));
  vm_flags(s, fm, sizeof fm);
  CHECKV("a Large mapping under 2 MiB is left to the system",
         fm[0] && !has_flag(fm, "hg") && !has_flag(fm, "nh"), "VmFlags:%s", fm);
  free(s);
  char *m = malloc(LAUNDER(8 * MiB)), *c = calloc(1, LAUNDER(8 * MiB));
  vm_flags(m, fm, sizeof fm);
  vm_flags(c, fc, sizeof fc);
  if (forbid) {
    CHECKV("HAKMEM_THP=2: malloc's Large mapping forbids huge pages (nh)",
           has_flag(fm, "nh") && !has_flag(fm, "hg"), "VmFlags:%s", fm);
    CHECKV("HAKMEM_THP=2: so does calloc's", has_flag(fc, "nh") && !has_flag(fc, "hg"), "VmFlags:%s", fc);
  } else {
    CHECKV("malloc's Large mapping asks for huge pages (hg)", has_flag(fm, "hg"), "VmFlags:%s", fm);
    CHECKV("calloc's is left to the system (neither hg nor nh)",
           fc[0] && !has_flag(fc, "hg") && !has_flag(fc, "nh"), "VmFlags:%s", fc);
  }
  free(m);
  free(c);
  return th_done();
}

static int mode_none(void) {
  free_many(4, 3 * MiB, 0);
  hak_stats_t s0 = st();
  char *p = malloc(LAUNDER(3 * MiB));
  free(p);
  p = malloc(LAUNDER(3 * MiB));
  hak_stats_t s1 = st();
  CHECKV("HAKMEM_BIGCACHE_MB=0: no hits", p && s1.bigcache_hits == s0.bigcache_hits, "hits %llu -> %llu",
         ULL(s0.bigcache_hits), ULL(s1.bigcache_hits));
  free(p);
  return th_done();
}

static void alloc_free_big(size_t count, size_t size) {
  char *p[16];
  for (size_t i = 0; i < count; i++) {
    p[i] = malloc(LAUNDER(size));
    if (p[i]) memset(p[i], 0x11, size);
  }
  for (size_t i = 0; i < count; i++) free(p[i]);
}

/* One Large malloc/free of 1.5 MiB (a cached 3 MiB mapping cut to size). */
static void one_large(void) {
  char *volatile p = malloc(LAUNDER(MiB + MiB / 2));
  if (p) p[0] = 1;
  free(p);
}

static int mode_decay_default(void) {
  alloc_free_big(5, 3 * MiB);
  hak_stats_t s0 = st();
  one_large();
  hak_stats_t s1 = st();
  CHECKV("5 freed 3 MiB blocks are cached", s0.bigcache_bytes >= 15 * MiB, "bigcache_bytes %zu",
         s0.bigcache_bytes);
  CHECKV("before the decay (1 s) a Large malloc/free keeps the cached mappings (one cut to 1.5 MiB)",
         s1.bigcache_bytes + 3 * MiB / 2 + 4096 >= s0.bigcache_bytes, "bigcache_bytes %zu -> %zu",
         s0.bigcache_bytes, s1.bigcache_bytes);
  return th_done();
}

static int mode_decay(void) {
  alloc_free_big(5, 3 * MiB);
  hak_stats_t s0 = st();
  CHECKV("5 freed 3 MiB blocks are cached", s0.bigcache_bytes >= 15 * MiB, "bigcache_bytes %zu",
         s0.bigcache_bytes);
  sleep_ms(300);
  one_large();
  hak_stats_t s1 = st();
  CHECKV("HAKMEM_BIGCACHE_DECAY_MS=100: 300 ms later a Large malloc/free unmaps the old entries",
         s1.bigcache_bytes <= 2 * MiB, "bigcache_bytes %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes);
  CHECKV("the decayed mappings are unmapped", s1.mapped + 15 * MiB <= s0.mapped + 2 * MiB,
         "mapped %zu -> %zu", s0.mapped, s1.mapped);
  return th_done();
}

static int mode_age(void) {
  alloc_free_big(5, 3 * MiB);
  hak_stats_t s0 = st();
  CHECKV("5 freed 3 MiB blocks are cached", s0.bigcache_bytes >= 15 * MiB, "bigcache_bytes %zu",
         s0.bigcache_bytes);
  sleep_ms(300);
  enum { N = 100 };
  static char *small[N];
  for (int i = 0; i < N; i++) small[i] = malloc(LAUNDER((size_t)3000)); /* a class not used before */
  hak_stats_t s1 = st();
  for (int i = 0; i < N; i++) free(small[i]);
  CHECKV("300 ms later, small mallocs taking a slab unmap the decayed mappings", s1.bigcache_bytes == 0,
         "bigcache_bytes %zu -> %zu", s0.bigcache_bytes, s1.bigcache_bytes);
  CHECKV("and they are gone", s1.mapped + 15 * MiB <= s0.mapped + 2 * MiB, "mapped %zu -> %zu", s0.mapped,
         s1.mapped);
  return th_done();
}

static int mode_trim(void) {
  alloc_free_big(4, 3 * MiB);
  hak_stats_t s0 = st();
  CHECKV("4 freed 3 MiB blocks are cached", s0.bigcache_bytes >= 12 * MiB, "bigcache_bytes %zu",
         s0.bigcache_bytes);
  int r = malloc_trim(0);
  hak_stats_t s1 = st();
  CHECKV("malloc_trim(0) returns 1 when BigCache held mappings", r == 1, "returned %d", r);
  CHECKV("malloc_trim(0) empties BigCache", s1.bigcache_bytes == 0, "bigcache_bytes %zu -> %zu",
         s0.bigcache_bytes, s1.bigcache_bytes);
  CHECKV("malloc_trim(0) unmaps the cached mappings", s1.mapped + 12 * MiB <= s0.mapped, "mapped %zu -> %zu",
         s0.mapped, s1.mapped);
  r = malloc_trim(0);
  CHECKV("a second malloc_trim(0), nothing freed in between, returns 0", r == 0, "returned %d", r);
  return th_done();
}

static _Atomic int moves_stop;
static atomic_long moves_bad;

static void *grower(void *arg) {
  (void)arg;
  while (!atomic_load(&moves_stop)) {
    size_t n = 2 * MiB + 4096;
    unsigned char *p = malloc(LAUNDER(n));
    if (!p) {
      atomic_fetch_add(&moves_bad, 1);
      return NULL;
    }
    p[0] = 0x5a;
    for (int k = 0; k < 4; k++) {
      p[n - 1] = (unsigned char)k;
      unsigned char *q = realloc(p, n + 3 * MiB);
      if (!q || q[0] != 0x5a || q[n - 1] != (unsigned char)k) {
        atomic_fetch_add(&moves_bad, 1);
        free(q ? q : p);
        return NULL;
      }
      p = q;
      n += 3 * MiB;
    }
    free(p);
  }
  return NULL;
}

static void *mapper(void *arg) {
  size_t i = (size_t)(uintptr_t)arg;
  while (!atomic_load(&moves_stop)) {
    unsigned char *p = malloc(LAUNDER(2 * MiB + (i++ % 7) * 4096));
    if (!p) {
      atomic_fetch_add(&moves_bad, 1);
      return NULL;
    }
    p[0] = 1;
    free(p);
  }
  return NULL;
}

static int mode_moves(void) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, i < 2 ? grower : mapper, (void *)(uintptr_t)i);
  sleep_ms(1500);
  atomic_store(&moves_stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  CHECKV("Large blocks moved by realloc keep their bytes", atomic_load(&moves_bad) == 0, "%ld bad",
         atomic_load(&moves_bad));
  CHECKV("no invalid free while blocks move (the process would have aborted)", st().invalid_frees == 0,
         "%llu", (unsigned long long)st().invalid_frees);
  return th_done();
}

int main(int argc, char **argv) {
  int ok = hak_load() && hakmem_is_malloc();
  if (argc > 1) {
    if (!CHECK("hakmem is the process malloc (child)", ok)) return th_done();
    if (strcmp(argv[1], "hit") == 0) return mode_hit();
    if (strcmp(argv[1], "split") == 0) return mode_split();
    if (strcmp(argv[1], "donate") == 0) return mode_donate();
    if (strcmp(argv[1], "slabs") == 0) return mode_slabs();
    if (strcmp(argv[1], "spares") == 0) return mode_spares();
    if (strcmp(argv[1], "learn") == 0 || strcmp(argv[1], "learn0") == 0) return mode_learn(argv[1][5] == 0);
    if (strcmp(argv[1], "budget8") == 0) return mode_budget8();
    if (strcmp(argv[1], "budget") == 0) return mode_budget_default();
    if (strcmp(argv[1], "none") == 0) return mode_none();
    if (strcmp(argv[1], "live") == 0) return mode_live();
    if (strcmp(argv[1], "live-fixed") == 0) return mode_live_fixed();
    if (strcmp(argv[1], "thp") == 0 || strcmp(argv[1], "thp-forbid") == 0) return mode_thp();
    if (strcmp(argv[1], "decay") == 0) return mode_decay();
    if (strcmp(argv[1], "age") == 0) return mode_age();
    if (strcmp(argv[1], "decay-default") == 0) return mode_decay_default();
    if (strcmp(argv[1], "trim") == 0) return mode_trim();
    if (strcmp(argv[1], "moves") == 0) return mode_moves();
    fprintf(stderr, "bigcache: unknown mode %s\n", argv[1]);
    return 2;
  }
  if (!ok) {
    printf("skip: hakmem is not the process malloc (run with LD_PRELOAD=libhakmem.so)\n");
    return th_done();
  }
  static const th_case_t cases[] = {
      {"hit", {NULL}},
      {"budget8", {"HAKMEM_BIGCACHE_MB=8", NULL}},
      {"budget", {NULL}},
      {"none", {"HAKMEM_BIGCACHE_MB=0", NULL}},
      {"live", {NULL}},
      {"live-fixed", {"HAKMEM_RETAIN_SHARE=0", NULL}},
      {"thp", {NULL}},
      {"thp-forbid", {"HAKMEM_THP=2", NULL}},
      {"decay-default", {NULL}},
      {"decay", {"HAKMEM_BIGCACHE_DECAY_MS=100", NULL}},
      {"age", {"HAKMEM_BIGCACHE_DECAY_MS=100", NULL}},
      {"trim", {NULL}},
      {"split", {NULL}},
      {"donate", {"HAKMEM_THP=2", "HAKMEM_RETAIN_KB=65536"}},
      {"slabs", {"HAKMEM_THP=2", "HAKMEM_PURGE_DELAY_MS=60000", "HAKMEM_BIGCACHE_MB=0"}},
      {"spares", {"HAKMEM_THP=2", "HAKMEM_RETAIN_KB=65536", "HAKMEM_BIGCACHE_MB=0"}},
      {"learn",
       {"HAKMEM_BIGCACHE_MB=8", "HAKMEM_RETAIN_SHARE=0", "HAKMEM_BIGCACHE_DECAY_MS=300", "HAKMEM_ACE=1"}},
      {"learn0",
       {"HAKMEM_BIGCACHE_MB=8", "HAKMEM_RETAIN_SHARE=0", "HAKMEM_BIGCACHE_DECAY_MS=300", "HAKMEM_ACE=0"}},
      {"moves", {"HAKMEM_BIGCACHE_MB=0", "HAKMEM_INVALID_FREE=2"}},
  };
  run_cases(cases, sizeof cases / sizeof cases[0]);
  return th_done();
}
