/* tests/tsan.c — the hak_* API from many threads at once, under
 * ThreadSanitizer: a TSan build of src/ linked in with its libc names made
 * local (tests/sanitize.mk), so the process malloc is TSan's and this
 * program reaches hakmem only through hak_*.
 *
 *   exchange  WORKERS threads swap blocks through a table of atomic slots:
 *             each takes a slot's block (allocated by any thread), checks
 *             it, and frees it (a remote free, mostly) or reallocates it
 *             and puts it back, or allocates a new one of any tier with
 *             malloc, calloc, aligned_alloc or posix_memalign
 *   orphans   ROUNDS rounds of WORKERS threads that leave their blocks
 *             behind when they exit; the next round's threads free them
 *             (into slabs whose holder has gone) while they allocate their
 *             own (adopting those slabs)
 *   stats     throughout both, one more thread calls hak_stats,
 *             hak_stats_flush, hak_trim and the reports
 *
 * Every block describes itself: its first 24 bytes hold its size, its
 * usable size and a seed, the rest a pattern of (seed, offset), all of it
 * up to 64 KiB, its ends and samples above. Whoever frees or reallocates a
 * block checks it whole; a fresh block is checked for alignment and usable
 * size, calloc's for zeros. Each property is one check. A data race is
 * TSan's report: with TSAN_OPTIONS=halt_on_error=1 (tests/run.sh) it ends
 * the run with a failing status. TSAN_OPS sets the operations per exchange
 * worker (default 6000). */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hakmem.h"
#include "harness.h"
#include "internal.h" /* for the types of os.c's functions only */

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { WORKERS = 8, SLOTS = 256, ROUNDS = 6, LEFT = 48, HEAD = 24, SAMPLES = 8, SAMPLE_LEN = 64 };
#define FULL_MAX (64 * KiB) /* blocks up to this are filled and checked whole */
#define SPAN (4 * KiB)      /* else the first and last SPAN bytes and samples */

/* One property over many cases, on any thread: a count of cases and of
 * failures, and the first failure's detail (printed when it happens). The
 * counts are relaxed: they must not order the threads, which would hide
 * races from TSan. */
typedef struct {
  const char *name;
  atomic_long n, bad;
} prop_t;

static prop_t p_fresh = {.name = "fresh blocks are aligned, with usable size >= the request"};
static prop_t p_zero = {.name = "calloc blocks read zero"};
static prop_t p_intact = {.name = "blocks are intact when another thread (or their own) frees them"};
static prop_t p_usable = {.name = "usable size is stable when another thread asks"};
static prop_t p_realloc = {.name = "realloc from another thread keeps the prefix"};
static prop_t p_stats = {.name = "hak_stats under load: peak_committed >= committed"};
static prop_t p_orphans = {.name = "blocks of exited threads are intact when the next round frees them"};

__attribute__((format(printf, 3, 4))) static int prop(prop_t *p, int ok, const char *fmt, ...) {
  atomic_fetch_add_explicit(&p->n, 1, memory_order_relaxed);
  if (ok) return 1;
  if (atomic_fetch_add_explicit(&p->bad, 1, memory_order_relaxed) == 0) {
    va_list ap;
    va_start(ap, fmt);
    flockfile(stdout);
    printf("first failure of '%s': ", p->name);
    vprintf(fmt, ap);
    putchar('\n');
    funlockfile(stdout);
    va_end(ap);
  }
  return 0;
}

static void prop_done(prop_t *p) {
  long n = atomic_load(&p->n), bad = atomic_load(&p->bad);
  CHECKV(p->name, n > 0 && bad == 0, "%ld of %ld cases failed", bad, n);
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = *s += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/* ---- hakmem's mappings, made known to TSan ---------------------------------
 * hakmem maps and unmaps with raw system calls (os.c), which TSan does not
 * see: a range one thread gives up and another maps again keeps the first
 * thread's accesses in TSan's shadow, and the second thread's look like
 * races with them, though the kernel ordered the two. tests/sanitize.mk
 * links os.c's object apart with _hak_os_map and _hak_os_remap wrapped (ld
 * --wrap): each range they hand out new is mapped again at once through
 * libc's mmap, which TSan intercepts and starts afresh. Fresh pages replace
 * fresh pages, as _hak_os_map makes them: nothing has touched them yet. */
__typeof__(_hak_os_map) __real__hak_os_map, __wrap__hak_os_map;
__typeof__(_hak_os_remap) __real__hak_os_remap, __wrap__hak_os_remap;

static void *mapped_anew(void *p, size_t size) {
  if (p && size)
    mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return p;
}

void *__wrap__hak_os_map(size_t size, size_t align) {
  return mapped_anew(__real__hak_os_map(size, align), size);
}

/* Only a range grown in place is new; a moved one went to a fresh mapping. */
void *__wrap__hak_os_remap(void *p, size_t old_size, size_t new_size, void *fixed) {
  char *q = __real__hak_os_remap(p, old_size, new_size, fixed);
  if (q && !fixed && new_size > old_size) mapped_anew(q + old_size, new_size - old_size);
  return q;
}

/* ---- self-describing blocks ----------------------------------------------- */
typedef struct {
  size_t size;   /* bytes requested */
  size_t usable; /* hak_usable_size when it was filled: stable */
  uint64_t seed; /* the pattern's seed */
} head_t;

static inline uint8_t pattern(uint64_t seed, size_t off) {
  return (uint8_t)(seed + off * 7 + (off >> 8) * 0x5B + (off >> 16) * 0x33);
}

typedef struct {
  size_t off, len;
} span_t;

/* The spans of a block of n bytes past its head that carry the pattern. */
static int spans_of(size_t n, span_t *s) {
  if (n <= FULL_MAX) {
    s[0] = (span_t){HEAD, n - HEAD};
    return 1;
  }
  int k = 0;
  s[k++] = (span_t){HEAD, SPAN - HEAD};
  for (size_t i = 1; i <= SAMPLES; i++) s[k++] = (span_t){i * (n / (SAMPLES + 2)) & ~(size_t)63, SAMPLE_LEN};
  s[k++] = (span_t){n - SPAN, SPAN};
  return k;
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
  head_t h = {n, hak_usable_size(p), seed};
  memcpy(p, &h, sizeof h);
  span_t s[SAMPLES + 2];
  int k = spans_of(n, s);
  for (int j = 0; j < k; j++)
    for (size_t i = s[j].off; i < s[j].off + s[j].len; i++) p[i] = pattern(seed, i);
}

/* Offset of the first byte of the spans of a block of n bytes (clipped to
 * `keep`) that is not the pattern, or 0 when all are. */
static size_t first_wrong(const unsigned char *p, size_t n, uint64_t seed, size_t keep) {
  span_t s[SAMPLES + 2];
  int k = spans_of(n, s);
  for (int j = 0; j < k; j++)
    for (size_t i = s[j].off; i < s[j].off + s[j].len && i < keep; i++)
      if (p[i] != pattern(seed, i)) return i;
  return 0;
}

static head_t head_of(const void *p) {
  head_t h;
  memcpy(&h, p, sizeof h);
  return h;
}

/* Checks a block taken from another thread (or its own) before it is freed
 * or reallocated; returns its head. */
static head_t check_block(prop_t *p, const unsigned char *b) {
  head_t h = head_of(b);
  size_t u = hak_usable_size(b);
  prop(&p_usable, u == h.usable, "%p (%zu bytes): usable size %zu, was %zu", (void *)b, h.size, u, h.usable);
  size_t at = first_wrong(b, h.size, h.seed, h.size);
  prop(p, at == 0, "%p (%zu bytes): byte %zu is 0x%02x, not 0x%02x", (void *)b, h.size, at, b[at],
       pattern(h.seed, at));
  return h;
}

/* A size from any tier: Tiny mostly, then Mid, pool and a few Large. */
static size_t pick_size(uint64_t *r) {
  uint64_t x = rng_next(r);
  unsigned k = (unsigned)(x % 100);
  x >>= 8;
  if (k < 60) return HEAD + x % (KiB - HEAD + 1);
  if (k < 85) return KiB + 1 + x % (32 * KiB - KiB);
  if (k < 98) return 32 * KiB + 1 + x % (MiB - 32 * KiB);
  return MiB + 1 + x % (3 * MiB);
}

/* The first byte of p[from .. to) that is not 0, or to. */
static size_t nonzero_at(const unsigned char *p, size_t from, size_t to) {
  while (from < to && !p[from]) from++;
  return from;
}

/* A new block of a random size, by a random one of the allocating calls,
 * checked and filled; NULL (a failed check) if the call failed. */
static unsigned char *make(uint64_t *r) {
  size_t n = pick_size(r), align = 16;
  uint64_t how = rng_next(r);
  unsigned char *p = NULL;
  switch (how % 8) {
    case 0: {
      size_t count = 1 + (how >> 8) % 3, each = n / count;
      p = hak_calloc(count, each);
      n = count * each;
      break;
    }
    case 1:
      align = (size_t)1 << (4 + (how >> 8) % 14);
      p = hak_aligned_alloc(align, n);
      break;
    case 2:
      align = (size_t)1 << (3 + (how >> 8) % 10);
      if (hak_posix_memalign((void **)&p, align, n) != 0) p = NULL;
      break;
    default:
      p = hak_malloc(n);
      break;
  }
  size_t u = p ? hak_usable_size(p) : 0;
  if (!prop(&p_fresh, p && (uintptr_t)p % align == 0 && u >= n, "%zu bytes at alignment %zu: %p, usable %zu",
            n, align, (void *)p, u))
    return NULL;
  if (how % 8 == 0) {
    size_t at = nonzero_at(p, 0, n < FULL_MAX ? n : FULL_MAX);
    if (n > FULL_MAX && at == FULL_MAX) at = nonzero_at(p, n - SPAN, n);
    prop(&p_zero, at == n, "calloc %p (%zu bytes): byte %zu is not 0", (void *)p, n, at);
  }
  fill(p, n, rng_next(r));
  return p;
}

/* Reallocates a block to a new random size, checks that the prefix moved
 * with it, and fills the rest. */
static unsigned char *grow_or_shrink(unsigned char *b, uint64_t *r) {
  head_t h = check_block(&p_intact, b);
  size_t n = pick_size(r);
  unsigned char *q = hak_realloc(b, n);
  if (!prop(&p_fresh, q && (uintptr_t)q % 16 == 0 && hak_usable_size(q) >= n, "realloc(%p, %zu) from %zu: %p",
            (void *)b, n, h.size, (void *)q)) {
    if (!q) hak_free(b);
    return NULL;
  }
  size_t keep = h.size < n ? h.size : n;
  size_t at = first_wrong(q, h.size, h.seed, keep);
  prop(&p_realloc, at == 0 && head_of(q).seed == h.seed, "%p -> %p (%zu -> %zu bytes): byte %zu", (void *)b,
       (void *)q, h.size, n, at);
  fill(q, n, h.seed);
  return q;
}

/* ---- exchange: blocks through shared slots --------------------------------- */
/* Swapped with acquire and release: a block's contents pass with it, as in
 * any program that hands a pointer to another thread. */
static _Atomic(unsigned char *) slot[SLOTS];
static long ops_per_worker = 6000;

static void put(unsigned char *b, uint64_t *r) {
  unsigned char *old = atomic_exchange_explicit(&slot[rng_next(r) % SLOTS], b, memory_order_acq_rel);
  if (old) {
    check_block(&p_intact, old);
    hak_free(old);
  }
}

static void *exchange_worker(void *arg) {
  uint64_t r = (uintptr_t)arg * 0x1000193;
  for (long i = 0; i < ops_per_worker; i++) {
    unsigned char *b = atomic_exchange_explicit(&slot[rng_next(&r) % SLOTS], NULL, memory_order_acq_rel);
    if (!b) {
      b = make(&r);
      if (b) put(b, &r);
    } else if (rng_next(&r) % 4 == 0) {
      b = grow_or_shrink(b, &r);
      if (b) put(b, &r);
    } else {
      check_block(&p_intact, b);
      hak_free(b);
    }
  }
  return NULL;
}

/* ---- orphans: blocks outlive their threads ------------------------------------ */
/* The blocks round n's threads leave, in left[n % 2]: round n + 1 frees
 * them, after round n has been joined. */
static unsigned char *left[2][WORKERS][LEFT];

static void *orphan_worker(void *arg) {
  uintptr_t t = (uintptr_t)arg, round = t / WORKERS, i = t % WORKERS;
  uint64_t r = t * 0x9E3779B9;
  /* The previous round's blocks of another thread: free most, reallocate
   * some (blocks in slabs their holder let go of at exit). */
  unsigned char **mine = left[round % 2][i], **theirs = left[(round + 1) % 2][(i + 1) % WORKERS];
  unsigned char *kept[LEFT];
  for (int k = 0; k < LEFT; k++) {
    kept[k] = NULL;
    if (!theirs[k]) continue;
    if (k % 4 == 0) {
      kept[k] = grow_or_shrink(theirs[k], &r);
    } else {
      check_block(&p_orphans, theirs[k]);
      hak_free(theirs[k]);
    }
    theirs[k] = NULL;
  }
  for (int k = 0; k < LEFT; k++) {
    mine[k] = make(&r);
    if (kept[k]) {
      check_block(&p_orphans, kept[k]);
      hak_free(kept[k]);
    }
  }
  return NULL;
}

/* ---- the statistics thread -------------------------------------------------- */
static atomic_int stop;

static void *stats_worker(void *arg) {
  int fd = *(int *)arg;
  for (long k = 0; !atomic_load_explicit(&stop, memory_order_relaxed); k++) {
    hak_stats_t s;
    hak_stats(&s);
    prop(&p_stats, s.peak_committed >= s.committed, "peak_committed %zu, committed %zu", s.peak_committed,
         s.committed);
    hak_stats_flush();
    if (k % 8 == 0) hak_trim();
    if (k % 32 == 0) hak_stats_print(fd);
    if (k % 32 == 16) hak_stats_json(fd);
    usleep(2000);
  }
  return NULL;
}

static int run_threads(void *(*fn)(void *), uintptr_t first) {
  pthread_t t[WORKERS];
  int n = 0;
  for (uintptr_t i = 0; i < WORKERS; i++) n += pthread_create(&t[n], NULL, fn, (void *)(first + i)) == 0;
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  return n;
}

int main(void) {
  const char *e = getenv("TSAN_OPS");
  if (e && atol(e) > 0) ops_per_worker = atol(e);
  CHECK("the process malloc is not hakmem's (its libc names are local)",
        (uintptr_t)&malloc != (uintptr_t)&hak_malloc);

  int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  pthread_t st;
  CHECK("the statistics thread starts",
        null_fd >= 0 && pthread_create(&st, NULL, stats_worker, &null_fd) == 0);

  CHECK("the exchange workers run", run_threads(exchange_worker, 1) == WORKERS);
  int rounds = 0;
  for (int n = 0; n < ROUNDS; n++) rounds += run_threads(orphan_worker, (uintptr_t)n * WORKERS) == WORKERS;
  CHECK("every round of orphan threads runs", rounds == ROUNDS);

  atomic_store_explicit(&stop, 1, memory_order_relaxed);
  pthread_join(st, NULL);
  close(null_fd);
  for (int i = 0; i < SLOTS; i++) {
    unsigned char *b = atomic_exchange(&slot[i], NULL);
    if (!b) continue;
    check_block(&p_intact, b);
    hak_free(b);
  }
  for (int g = 0; g < 2; g++)
    for (int t = 0; t < WORKERS; t++)
      for (int i = 0; i < LEFT; i++)
        if (left[g][t][i]) {
          check_block(&p_orphans, left[g][t][i]);
          hak_free(left[g][t][i]);
        }
  hak_stats_t s;
  hak_stats(&s);
  CHECKV("every block freed: no Large block is live", s.large_blocks == 0, "%llu live",
         (unsigned long long)s.large_blocks);
  CHECKV("with one thread left, the accounting identity holds", s.unaccounted == 0, "unaccounted %lld",
         (long long)s.unaccounted);

  prop_t *props[] = {&p_fresh, &p_zero, &p_intact, &p_usable, &p_realloc, &p_stats, &p_orphans};
  for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) prop_done(props[i]);
  return th_done();
}
