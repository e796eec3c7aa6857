/* tests/api.c — the C allocation API, call by call, against the behaviour
 * table of CHECKLIST.md (errno included), plus the hak_* API and stats.
 *
 * Built linked with -lhakmem (release and debug), linked -static with
 * libhakmem.a, and glibc-linked for runs under LD_PRELOAD. The exported
 * names come from exports.h (generated from src/exports.map); symbols glibc
 * lacks (free_sized, cfree...) are found with dlsym, or by symbol name in
 * the static build. */
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "exports.h"
#include "harness.h"
#include "util.h"

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);
typedef void *(*memalign_fn)(size_t, size_t);
typedef int (*posix_memalign_fn)(void **, size_t, size_t);
typedef void (*free_sized_fn)(void *, size_t);
typedef void (*free_aligned_sized_fn)(void *, size_t, size_t);

#ifdef TEST_STATIC
/* Each exported name (exports.h, from src/exports.map) referred to by its
 * symbol, so that no declaration is needed: the static link resolves each
 * to hakmem's definition; one that hakmem lacked would pull libc.a's
 * malloc.o in and fail the link on its duplicates. */
#define EXPORT_REF(n) extern char export_##n __asm__(#n);
HAK_LIBC_EXPORTS(EXPORT_REF)
#undef EXPORT_REF
static const struct {
  const char *name;
  void *addr;
} static_syms[] = {
#define EXPORT_SYM(n) {#n, (void *)&export_##n},
    HAK_LIBC_EXPORTS(EXPORT_SYM)
#undef EXPORT_SYM
};

static void *api_sym(const char *name) {
  for (size_t i = 0; i < sizeof static_syms / sizeof static_syms[0]; i++)
    if (strcmp(static_syms[i].name, name) == 0) return static_syms[i].addr;
  return NULL;
}
#else
static void *api_sym(const char *name) { return dlsym(RTLD_DEFAULT, name); }
#endif

static const char *const api_names[] = {
#define EXPORT_NAME(n) #n,
    HAK_LIBC_EXPORTS(EXPORT_NAME)
#undef EXPORT_NAME
};

static size_t page;
static int secure; /* libhakmem-secure (run.sh runs this with HAKMEM_QUARANTINE_KB=0) */

static hak_stats_t stats(void) {
  hak_stats_t s;
  memset(&s, 0, sizeof s);
  if (hak.stats) hak.stats(&s);
  return s;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

/* 1 if the blocks p[i] (usable sizes taken from malloc_usable_size) are
 * pairwise disjoint. Sorts p. */
static int disjoint(void **p, size_t n) {
  qsort(p, n, sizeof *p, cmp_ptr);
  for (size_t i = 1; i < n; i++)
    if ((uintptr_t)p[i - 1] + malloc_usable_size(p[i - 1]) > (uintptr_t)p[i]) return 0;
  return 1;
}

/* ---- identity ------------------------------------------------------------ */
static void test_identity(void) {
  CHECK("all hak_* entry points resolve", hak_load());
  char want[64];
  snprintf(want, sizeof want, "hakmem %d.%d.%d", HAKMEM_VERSION_MAJOR, HAKMEM_VERSION_MINOR,
           HAKMEM_VERSION_PATCH);
  if (hak.version && strstr(hak.version(), " (secure build)")) strcat(want, " (secure build)");
  CHECKV("hak_version() matches hakmem.h", hak.version && strcmp(hak.version(), want) == 0,
         "got \"%s\", want \"%s\"", hak.version ? hak.version() : "(none)", want);
  CHECK("hakmem is the process malloc", hakmem_is_malloc());
  for (size_t i = 0; i < sizeof api_names / sizeof api_names[0]; i++) {
    void *s = api_sym(api_names[i]);
    CHECKV("API symbol is defined by hakmem", s && same_object(s, (const void *)hak.version), "%s -> %p",
           api_names[i], s);
  }
}

/* ---- malloc ------------------------------------------------------------- */
static void test_malloc_zero(void) {
  enum { N = 256 };
  void *p[N];
  int nonnull = 1;
  for (int i = 0; i < N; i++) {
    p[i] = malloc(LAUNDER((size_t)0));
    nonnull &= p[i] != NULL;
  }
  CHECK("malloc(0) returns non-NULL", nonnull);
  if (!nonnull) return;
  qsort(p, N, sizeof *p, cmp_ptr);
  int unique = 1;
  for (int i = 1; i < N; i++) unique &= p[i] != p[i - 1];
  CHECK("malloc(0) pointers are unique", unique);
  for (int i = 0; i < N; i++) free(p[i]);
}

static void test_malloc_huge(void) {
  const size_t sizes[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX - 15, (size_t)1 << 62};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    errno = 0;
    void *p = malloc(LAUNDER(sizes[i]));
    CHECKV("malloc(>PTRDIFF_MAX or unsatisfiable) returns NULL with ENOMEM", p == NULL && errno == ENOMEM,
           "size %zu: %p errno %d", sizes[i], p, errno);
  }
}

/* Out of address space (RLIMIT_AS) in a child: every call fails cleanly with
 * ENOMEM, the old block of a failed realloc is intact, and small requests
 * still succeed afterwards. Returns a bit mask of what went wrong. */
static int oom_child(void *arg) {
  (void)arg;
  int bad = 0;
  void *keep = malloc(3000), *big = malloc(3 * MiB);
  if (!keep || !big) return 1 << 10;
  pat_fill(keep, 3000, 77);
  pat_fill(big, 3 * MiB, 78);
  long vm = proc_status_kb("VmSize");
  struct rlimit rl = {(rlim_t)vm * 1024 + 256 * MiB, RLIM_INFINITY};
  if (vm <= 0 || setrlimit(RLIMIT_AS, &rl) != 0) return 1 << 11;
  size_t g = LAUNDER((size_t)1 << 30);
  errno = 0;
  void *p = malloc(g);
  if (p || errno != ENOMEM) bad |= 1;
  errno = 0;
  p = calloc(1, g);
  if (p || errno != ENOMEM) bad |= 2;
  errno = 0;
  p = realloc(keep, g);
  if (p || errno != ENOMEM || pat_check(keep, 3000, 77) != SIZE_MAX) bad |= 4;
  errno = 0;
  p = realloc(big, g);
  if (p || errno != ENOMEM || pat_check(big, 3 * MiB, 78) != SIZE_MAX) bad |= 8;
  errno = 0;
  p = aligned_alloc(4096, g);
  if (p || errno != ENOMEM) bad |= 16;
  void *q = (void *)&bad;
  if (posix_memalign(&q, 64, g) != ENOMEM || q != (void *)&bad) bad |= 32;
  for (int i = 0; i < 1000; i++) {
    p = malloc((size_t)(i % 50) * 16 + 1);
    if (!p) {
      bad |= 64;
      break;
    }
    memset(p, 1, (size_t)(i % 50) * 16 + 1);
    free(p);
  }
  free(keep);
  free(big);
  return bad;
}

static void test_oom(void) {
  static child_t c;
  if (!CHECK("out-of-memory child runs", run_child(oom_child, NULL, &c, 60) == 0)) return;
  int code = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
  CHECKV("out of memory child exited normally", WIFEXITED(c.status), "status 0x%x, stderr: %s", c.status,
         c.err);
  if (!WIFEXITED(c.status)) return;
  CHECKV("setup of the out-of-memory child", !(code & (3 << 10)), "code %d", code);
  CHECKV("malloc out of memory: NULL, ENOMEM", !(code & 1), "code %d", code);
  CHECKV("calloc out of memory: NULL, ENOMEM", !(code & 2), "code %d", code);
  CHECKV("realloc out of memory: NULL, ENOMEM, old small block intact", !(code & 4), "code %d", code);
  CHECKV("realloc out of memory: NULL, ENOMEM, old large block intact", !(code & 8), "code %d", code);
  CHECKV("aligned_alloc out of memory: NULL, ENOMEM", !(code & 16), "code %d", code);
  CHECKV("posix_memalign out of memory: ENOMEM, *p untouched", !(code & 32), "code %d", code);
  CHECKV("small mallocs still succeed after out of memory", !(code & 64), "code %d", code);
}

/* Sizes 0..2048, then growing by ~1/8 up to 16 MiB: alignment, usable size
 * >= request and stable, whole usable block writable, blocks disjoint. */
static void test_malloc_sweep(void) {
  enum { MAXN = 2400 };
  static void *p[MAXN];
  static size_t sz[MAXN], us[MAXN];
  size_t n = 0;
  for (size_t s = 0; s <= 2048; s++) sz[n++] = s;
  for (size_t s = 2048; s <= 16 * MiB; s += s / 8, n++) sz[n] = s + (n & 1 ? 0 : 5);
  int ok_null = 1, ok_align = 1, ok_usable = 1, ok_stable = 1, ok_pat = 1, ok_bound = 1;
  for (size_t i = 0; i < n; i++) {
    p[i] = malloc(LAUNDER(sz[i]));
    if (!p[i]) {
      ok_null = 0;
      continue;
    }
    size_t a = sz[i] > 8 ? 16 : 8;
    if ((uintptr_t)p[i] % a) {
      CHECKV("malloc alignment (16, or 8 for sizes <= 8)", 0, "size %zu -> %p", sz[i], p[i]);
      ok_align = 0;
    }
    us[i] = malloc_usable_size(p[i]);
    if (us[i] < sz[i]) {
      CHECKV("malloc_usable_size >= request", 0, "size %zu usable %zu", sz[i], us[i]);
      ok_usable = 0;
    }
    if (us[i] > 2 * sz[i] + 64 * KiB) {
      CHECKV("malloc_usable_size is not absurdly large", 0, "size %zu usable %zu", sz[i], us[i]);
      ok_bound = 0;
    }
    pat_fill(p[i], us[i], pat_seed(p[i], us[i]));
  }
  CHECK("malloc sweep: no NULL", ok_null);
  CHECK("malloc sweep: alignment", ok_align);
  CHECK("malloc sweep: usable >= request", ok_usable);
  CHECK("malloc sweep: usable size within a sane bound", ok_bound);
  for (size_t i = 0; i < n; i++) {
    if (!p[i]) continue;
    if (malloc_usable_size(p[i]) != us[i]) ok_stable = 0;
    size_t off = pat_check(p[i], us[i], pat_seed(p[i], us[i]));
    if (off != SIZE_MAX) {
      CHECKV("malloc sweep: block contents survive neighbours", 0,
             "size %zu usable %zu block %p bad at offset %zu", sz[i], us[i], p[i], off);
      ok_pat = 0;
    }
  }
  CHECK("malloc_usable_size stable for the block's life", ok_stable);
  CHECK("malloc sweep: contents intact", ok_pat);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (p[i]) p[m++] = p[i];
  CHECK("malloc sweep: blocks are disjoint", disjoint(p, m));
  for (size_t i = 0; i < m; i++) free(p[i]);
  CHECK("malloc_usable_size(NULL) == 0", malloc_usable_size(NULL) == 0);
}

/* A single-threaded random workout with pattern checks. */
static void test_random_workout(void) {
  enum { SLOTS = 2048, OPS = 150000 };
  static void *p[SLOTS];
  static size_t sz[SLOTS];
  static uint64_t seed[SLOTS];
  uint64_t r = 12345;
  long bad = 0, nulls = 0;
  for (int op = 0; op < OPS; op++) {
    uint64_t x = rng_next(&r);
    int i = (int)(x % SLOTS);
    size_t s = (x >> 16) % 100 < 90 ? (x >> 24) % 1024 : (x >> 24) % (256 * KiB);
    if (p[i]) {
      if (pat_check(p[i], sz[i], seed[i]) != SIZE_MAX) {
        if (bad++ < 5) CHECKV("random workout: block intact", 0, "block %p size %zu", p[i], sz[i]);
      }
      if ((x >> 8) % 4 == 0) {
        void *q = realloc(p[i], s);
        if (!q && s) {
          nulls++;
          continue;
        }
        if (pat_check(q, s < sz[i] ? s : sz[i], seed[i]) != SIZE_MAX && bad++ < 5)
          CHECKV("random workout: realloc keeps contents", 0, "%zu -> %zu", sz[i], s);
        p[i] = q;
      } else {
        free(p[i]);
        p[i] = NULL;
        continue;
      }
    } else {
      switch ((x >> 12) % 4) {
        case 0:
          p[i] = calloc(1, s);
          if (p[i] && !all_bytes(p[i], s, 0) && bad++ < 5)
            CHECKV("random workout: calloc zeroed", 0, "size %zu", s);
          break;
        case 1:
          p[i] = aligned_alloc((size_t)64 << ((x >> 40) % 6), s);
          break;
        default:
          p[i] = malloc(s);
      }
      if (!p[i]) {
        nulls++;
        continue;
      }
    }
    sz[i] = s;
    seed[i] = x;
    pat_fill(p[i], s, seed[i]);
  }
  for (int i = 0; i < SLOTS; i++) {
    if (p[i] && pat_check(p[i], sz[i], seed[i]) != SIZE_MAX) bad++;
    free(p[i]);
    p[i] = NULL;
  }
  CHECKV("random workout: no corrupted block", bad == 0, "%ld bad", bad);
  CHECKV("random workout: no failed allocation", nulls == 0, "%ld NULL", nulls);
}

/* ---- free and errno --------------------------------------------------------- */
static void test_free_errno(void) {
  errno = 4242;
  free(NULL);
  CHECK("free(NULL) leaves errno alone", errno == 4242);
  const size_t sizes[] = {1, 16, 100, 1024, 5000, 32 * KiB, 100 * KiB, 900 * KiB, 2 * MiB, 40 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = malloc(sizes[i]);
    memset(p, 1, sizes[i]);
    errno = 4242;
    free(p);
    CHECKV("free leaves errno alone", errno == 4242, "size %zu errno %d", sizes[i], errno);
  }
  /* Frees that empty many slabs (and so purge) must not touch errno either. */
  enum { N = 4096 };
  static void *q[N];
  for (int i = 0; i < N; i++) {
    q[i] = malloc(16 * KiB);
    memset(q[i], 2, 16 * KiB);
  }
  int changed = 0;
  for (int i = 0; i < N; i++) {
    errno = 4243;
    free(q[i]);
    changed += errno != 4243;
  }
  CHECKV("free of 64 MiB of blocks never changes errno", changed == 0, "%d frees changed it", changed);
}

/* ---- errno after allocations that succeed ------------------------------------ */
/* Allocation call number c (0 .. 6) of the errno check. */
static void *alloc_call(int c, size_t size, size_t align) {
  void *p = NULL;
  if (c == 0) return malloc(size);
  if (c == 1) return calloc(1, size);
  if (c == 2) return realloc(malloc(16), size);
  if (c == 3) return posix_memalign(&p, align, size) == 0 ? p : NULL;
  if (c == 4) return aligned_alloc(align, (size + align - 1) & ~(align - 1));
  if (c == 5) return memalign(align, size);
  return valloc(size);
}

/* Every allocation call, over sizes that take every tier and its slow paths
 * (refills, fresh slabs and SuperSlabs, Large mappings and BigCache): the
 * calls that failed or changed errno. */
static int errno_changes(void) {
  static const size_t sizes[] = {1, 16, 100, 1000, 1500, 5000, 20 * KiB, 40 * KiB, 300 * KiB, 2 * MiB};
  static const size_t aligns[] = {32, 64, 256, 4096, 64 * KiB, 2 * MiB};
  enum { ROUNDS = 200, CALLS = 7 };
  static void *keep[ROUNDS][CALLS];
  int changed = 0;
  for (int r = 0; r < ROUNDS; r++) {
    size_t size = sizes[r % (sizeof sizes / sizeof sizes[0])];
    size_t align = aligns[r % (sizeof aligns / sizeof aligns[0])];
    void **k = keep[r];
    for (int c = 0; c < CALLS; c++) {
      errno = 4245;
      k[c] = alloc_call(c, size, align);
      changed += k[c] == NULL || errno != 4245;
    }
    if (r % 3 == 2) /* frees, so that later rounds reuse and refill */
      for (int q = r - 2; q <= r; q++)
        for (int c = 0; c < CALLS; c++) free(keep[q][c]);
  }
  for (int r = ROUNDS - ROUNDS % 3; r < ROUNDS; r++)
    for (int c = 0; c < CALLS; c++) free(keep[r][c]);
  return changed;
}

/* The same in a new thread, after its first allocation, which makes its
 * heap: 1 if that one failed or changed errno, plus twice the rest's. */
static void *errno_thread(void *arg) {
  (void)arg;
  errno = 4246;
  void *p = malloc(24);
  intptr_t first = p == NULL || errno != 4246;
  free(p);
  return (void *)(first + 2 * errno_changes());
}

static void test_alloc_errno(void) {
  int changed = errno_changes();
  CHECKV("allocations that succeed leave errno alone", changed == 0, "%d calls failed or changed it",
         changed);
  pthread_t t;
  void *res = (void *)1;
  CHECK("a thread for the errno check starts",
        pthread_create(&t, NULL, errno_thread, NULL) == 0 && pthread_join(t, &res) == 0);
  CHECKV("a thread's first allocation, and the rest, leave errno alone", res == NULL, "first %d, then %d",
         (int)((intptr_t)res & 1), (int)((intptr_t)res >> 1));
}

/* ---- calloc ---------------------------------------------------------------- */
static void test_calloc(void) {
  const size_t sizes[] = {1,         8,       16,          24,      100,      1000,     1024,
                          1025,      4000,    4096,        8192,    32 * KiB, 33 * KiB, 100 * KiB,
                          512 * KiB, 1 * MiB, 1 * MiB + 1, 3 * MiB, 8 * MiB,  16 * MiB};
  enum { REP = 16 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i], rep = n > MiB ? 3 : REP;
    void *d[REP];
    for (size_t k = 0; k < rep; k++) {
      d[k] = malloc(n);
      memset(d[k], 0xA5, malloc_usable_size(d[k]));
    }
    for (size_t k = 0; k < rep; k++) free(d[k]);
    int zero = 1;
    for (size_t k = 0; k < rep; k++) {
      d[k] = k & 1 ? calloc(n, 1) : calloc(1, n);
      zero &= d[k] && all_bytes(d[k], n, 0);
    }
    CHECKV("calloc returns zeroed memory after dirty frees", zero, "size %zu", n);
    for (size_t k = 0; k < rep; k++) free(d[k]);
  }
  /* Same after a large dirty free, which may come back from BigCache. */
  void *big = malloc(8 * MiB);
  memset(big, 0x5A, 8 * MiB);
  free(big);
  big = calloc(8, MiB);
  CHECK("calloc of a reused large block is zeroed", big && all_bytes(big, 8 * MiB, 0));
  free(big);

  const size_t ovf[][2] = {{SIZE_MAX / 2 + 1, 2},
                           {(size_t)1 << 33, (size_t)1 << 33},
                           {SIZE_MAX, SIZE_MAX},
                           {3, SIZE_MAX / 3 + 1},
                           {(size_t)PTRDIFF_MAX, 2}};
  for (size_t i = 0; i < sizeof ovf / sizeof ovf[0]; i++) {
    errno = 0;
    void *p = calloc(LAUNDER(ovf[i][0]), LAUNDER(ovf[i][1]));
    CHECKV("calloc overflow sets ENOMEM and returns NULL", p == NULL && errno == ENOMEM,
           "%zu x %zu: %p errno %d", ovf[i][0], ovf[i][1], p, errno);
  }
  void *z1 = calloc(LAUNDER((size_t)0), LAUNDER(SIZE_MAX));
  void *z2 = calloc(LAUNDER(SIZE_MAX), LAUNDER((size_t)0));
  CHECK("calloc(0, n) and calloc(n, 0) return unique non-NULL", z1 && z2 && z1 != z2);
  free(z1);
  free(z2);
}

/* ---- realloc ---------------------------------------------------------------- */
static void test_realloc_basic(void) {
  void *p = realloc(NULL, 1000);
  CHECK("realloc(NULL, n) acts as malloc(n)", p && malloc_usable_size(p) >= 1000);
  if (p) {
    memset(p, 3, 1000);
    free(p);
  }
  p = realloc(NULL, LAUNDER((size_t)0));
  CHECK("realloc(NULL, 0) returns a non-NULL block", p != NULL);
  free(p);
  errno = 0;
  p = realloc(NULL, LAUNDER(SIZE_MAX));
  CHECK("realloc(NULL, SIZE_MAX) returns NULL with ENOMEM", p == NULL && errno == ENOMEM);

  const size_t sizes[] = {24, 600, 3000, 20 * KiB, 200 * KiB, 3 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    void *b = malloc(n);
    pat_fill(b, n, n);
    size_t us = malloc_usable_size(b);
    const size_t huge[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX, SIZE_MAX - 64};
    for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++) {
      errno = 0;
      void *q = realloc(b, LAUNDER(huge[k]));
      CHECKV("realloc failure returns NULL with ENOMEM", q == NULL && errno == ENOMEM,
             "%zu -> %zu: %p errno %d", n, huge[k], q, errno);
      CHECKV("realloc failure leaves the old block intact",
             pat_check(b, n, n) == SIZE_MAX && malloc_usable_size(b) == us, "size %zu", n);
    }
    free(b);
  }

  /* realloc(p, 0) frees p and returns NULL. 100 KiB blocks are in glibc's and
   * hakmem's counted heap, so mallinfo2 shows the release either way. */
  enum { N = 64 };
  void *blk[N];
  for (int i = 0; i < N; i++) {
    blk[i] = malloc(100 * KiB);
    memset(blk[i], 4, 100 * KiB);
  }
  struct mallinfo2 before = mallinfo2();
  int nulls = 1;
  for (int i = 0; i < N; i++) nulls &= realloc(blk[i], LAUNDER((size_t)0)) == NULL;
  struct mallinfo2 after = mallinfo2();
  CHECK("realloc(p, 0) returns NULL", nulls);
  CHECKV("realloc(p, 0) frees p", before.uordblks >= after.uordblks + N * 100 * KiB, "uordblks %zu -> %zu",
         before.uordblks, after.uordblks);
}

/* A block that grows by less than a quarter of its usable size gets room
 * to grow again (half its usable size on top); one that grows by more
 * gets the block its size asks for, as malloc would give. (Not the secure
 * build's realloc, which always moves to a block of the size asked.) */
static void test_realloc_room(void) {
  char *p = malloc(2000), *q = malloc(2600);
  size_t old = malloc_usable_size(p), fresh = malloc_usable_size(q);
  free(q);
  p = realloc(p, LAUNDER(old + old / 8));
  CHECKV("realloc by an eighth leaves room: usable >= 1.5x the old usable size",
         p && malloc_usable_size(p) >= old + old / 2, "old usable %zu, now %zu", old,
         p ? malloc_usable_size(p) : 0);
  free(p);
  p = malloc(2000);
  p = realloc(p, LAUNDER((size_t)2600));
  CHECKV("realloc by more than a quarter: the block malloc gives for the size",
         p && malloc_usable_size(p) == fresh, "usable %zu, malloc(2600)'s %zu", p ? malloc_usable_size(p) : 0,
         fresh);
  free(p);
}

/* realloc keeps contents across every size class and tier boundary, up and
 * down, and across far jumps. */
static void test_realloc_boundaries(void) {
  static size_t s[256];
  size_t n = 0;
  for (size_t x = 16; x <= 1024; x += 16) s[n++] = x;
  for (size_t x = 1024; x < MiB;) {
    x += x / 8;
    x = (x + 15) & ~(size_t)15;
    s[n++] = x < MiB ? x : MiB;
  }
  const size_t tail[] = {MiB + MiB / 2, 2 * MiB, 4 * MiB, 8 * MiB, 32 * MiB};
  for (size_t i = 0; i < sizeof tail / sizeof tail[0]; i++) s[n++] = tail[i];

  int ok_up = 1, ok_down = 1, ok_jump = 1, ok_usable = 1, ok_align = 1;
  void *p = malloc(s[0]);
  uint64_t seed = 1;
  pat_fill(p, s[0], seed);
  for (size_t i = 1; i < n && p; i++) {
    void *q = realloc(p, s[i]);
    if (!q) {
      CHECKV("realloc up returns non-NULL", 0, "%zu -> %zu", s[i - 1], s[i]);
      ok_up = 0;
      break;
    }
    if (pat_check(q, s[i - 1], seed) != SIZE_MAX) {
      CHECKV("realloc up keeps contents", 0, "%zu -> %zu", s[i - 1], s[i]);
      ok_up = 0;
    }
    ok_usable &= malloc_usable_size(q) >= s[i];
    ok_align &= (uintptr_t)q % 16 == 0;
    p = q;
    pat_fill(p, s[i], ++seed);
  }
  for (size_t i = n - 1; i-- > 0 && p;) {
    void *q = realloc(p, s[i]);
    if (!q) {
      CHECKV("realloc down returns non-NULL", 0, "%zu -> %zu", s[i + 1], s[i]);
      ok_down = 0;
      break;
    }
    if (pat_check(q, s[i], seed) != SIZE_MAX) {
      CHECKV("realloc down keeps contents", 0, "%zu -> %zu", s[i + 1], s[i]);
      ok_down = 0;
    }
    ok_usable &= malloc_usable_size(q) >= s[i];
    ok_align &= (uintptr_t)q % 16 == 0;
    p = q;
    pat_fill(p, s[i], ++seed);
  }
  free(p);
  for (size_t i = 0; i < n; i++) {
    size_t j = (i * 37 + 11) % n;
    p = malloc(s[i]);
    pat_fill(p, s[i], i);
    void *q = realloc(p, s[j]);
    size_t keep = s[i] < s[j] ? s[i] : s[j];
    if (!q || pat_check(q, keep, i) != SIZE_MAX) {
      CHECKV("realloc jump keeps contents", 0, "%zu -> %zu", s[i], s[j]);
      ok_jump = 0;
      free(q ? q : p);
      continue;
    }
    ok_usable &= malloc_usable_size(q) >= s[j];
    free(q);
  }
  CHECK("realloc up through every boundary keeps contents", ok_up);
  CHECK("realloc down through every boundary keeps contents", ok_down);
  CHECK("realloc far jumps keep contents", ok_jump);
  CHECK("realloc result: usable size >= request", ok_usable);
  CHECK("realloc result: 16-byte aligned", ok_align);
}

static void test_reallocarray(void) {
  errno = 0;
  void *p = reallocarray(NULL, LAUNDER(SIZE_MAX / 2 + 1), LAUNDER((size_t)2));
  CHECK("reallocarray(NULL, overflow) returns NULL with ENOMEM", p == NULL && errno == ENOMEM);
  p = reallocarray(NULL, 10, 100);
  CHECK("reallocarray(NULL, 10, 100) allocates", p && malloc_usable_size(p) >= 1000);
  if (!p) return;
  pat_fill(p, 1000, 9);
  errno = 0;
  void *q = reallocarray(LAUNDER(p), LAUNDER((size_t)1 << 40), LAUNDER((size_t)1 << 40));
  CHECK("reallocarray overflow returns NULL with ENOMEM", q == NULL && errno == ENOMEM);
  CHECK("reallocarray overflow leaves the block intact", pat_check(p, 1000, 9) == SIZE_MAX);
  q = reallocarray(LAUNDER(p), 100, 100);
  CHECK("reallocarray grows and keeps contents", q && pat_check(q, 1000, 9) == SIZE_MAX);
  free(q ? q : LAUNDER(p));
}

/* ---- aligned allocation ----------------------------------------------------- */
static void test_posix_memalign_errors(void) {
  const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 96, 4097, SIZE_MAX, (SIZE_MAX >> 1) + 2};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = (void *)0x1234;
    int r = posix_memalign(&p, LAUNDER(bad[i]), 64);
    CHECKV("posix_memalign: EINVAL for a bad alignment, *p untouched", r == EINVAL && p == (void *)0x1234,
           "alignment %zu: returned %d, p %p", bad[i], r, p);
  }
  void *p = (void *)0x1234;
  int r = posix_memalign(&p, 64, LAUNDER(SIZE_MAX - 100));
  CHECKV("posix_memalign: ENOMEM for a huge size, *p untouched", r == ENOMEM && p == (void *)0x1234,
         "returned %d p %p", r, p);
  p = (void *)0x1234;
  r = posix_memalign(&p, LAUNDER((size_t)1 << 62), 64);
  CHECKV("posix_memalign: 2^62 alignment fails, *p untouched", r != 0 && p == (void *)0x1234,
         "returned %d p %p", r, p);
  p = NULL;
  r = posix_memalign(&p, sizeof(void *), 1);
  CHECK("posix_memalign(sizeof(void*)) succeeds", r == 0 && p != NULL);
  free(p);
  p = NULL;
  r = posix_memalign(&p, 64, 0);
  CHECK("posix_memalign of size 0 succeeds", r == 0 && p != NULL);
  free(p);
}

/* A zero-byte aligned block has a usable byte and can grow, at every
 * alignment: a Large one once had none, and realloc took it for a bad
 * pointer (EINVAL; found by tests/fuzz). The secure build's has none (its
 * usable size is the size asked for; up to a page's alignment any access
 * faults), and grows too. */
static void test_aligned_zero(void) {
  for (int k = 4; k <= 23; k++) {
    size_t a = (size_t)1 << k;
    char *p = aligned_alloc(a, 0);
    size_t u = p ? malloc_usable_size(p) : 0;
    if (secure) {
      CHECKV("secure: aligned_alloc(a, 0): aligned, no usable byte", p && (uintptr_t)p % a == 0 && u == 0,
             "a=%zu p=%p usable %zu", a, (void *)p, u);
      char *q = realloc(p, 100);
      CHECKV("secure: realloc of aligned_alloc(a, 0) to 100 bytes", q && malloc_usable_size(q) == 100,
             "a=%zu q=%p", a, (void *)q);
      free(q ? q : p);
      continue;
    }
    CHECKV("aligned_alloc(a, 0): an aligned block with a usable byte", p && (uintptr_t)p % a == 0 && u >= 1,
           "a=%zu p=%p usable %zu", a, (void *)p, u);
    if (!p) continue;
    memset(p, 0x5A, u);
    errno = 0;
    char *q = realloc(p, 100);
    int e = errno;
    CHECKV("realloc of aligned_alloc(a, 0) to 100 bytes keeps its bytes", q && errno == 0 && q[0] == 0x5A,
           "a=%zu q=%p errno %d", a, (void *)q, e);
    free(q ? q : p);
  }
}

/* aligned_alloc, posix_memalign and memalign for every alignment 1..2^26:
 * aligned, usable >= request, the whole usable block writable, blocks
 * disjoint and intact. */
static void test_alignment_sweep(void) {
  for (int k = 0; k <= 26; k++) {
    size_t a = (size_t)1 << k;
    size_t sizes[4] = {1, 24, a, a + 1};
    int nsizes = a >= MiB ? 2 : 4;
    if (a >= MiB) sizes[1] = a;
    void *p[12];
    size_t us[12];
    int n = 0, ok = 1;
    for (int si = 0; si < nsizes; si++) {
      size_t s = sizes[si];
      for (int f = 0; f < 3; f++) {
        void *q = NULL;
        const char *fn = f == 0 ? "aligned_alloc" : f == 1 ? "posix_memalign" : "memalign";
        if (f == 0) q = aligned_alloc(a, s);
        else if (f == 1) {
          if (posix_memalign(&q, a < sizeof(void *) ? sizeof(void *) : a, s) != 0) q = NULL;
        } else q = memalign(a, s);
        if (!q) {
          CHECKV("aligned allocation succeeds", 0, "%s(%zu, %zu)", fn, a, s);
          ok = 0;
          continue;
        }
        if ((uintptr_t)q % a) {
          CHECKV("aligned allocation is aligned", 0, "%s(%zu, %zu) = %p", fn, a, s, q);
          ok = 0;
        }
        size_t u = malloc_usable_size(q);
        if (u < s) {
          CHECKV("aligned allocation: usable >= request", 0, "%s(%zu, %zu) usable %zu", fn, a, s, u);
          ok = 0;
        }
        memset(q, 0xEE, u);
        pat_fill(q, u, pat_seed(q, u));
        us[n] = u;
        p[n++] = q;
      }
    }
    for (int i = 0; i < n; i++)
      if (pat_check(p[i], us[i], pat_seed(p[i], us[i])) != SIZE_MAX || malloc_usable_size(p[i]) != us[i]) {
        CHECKV("aligned blocks keep contents and usable size", 0, "alignment %zu block %p", a, p[i]);
        ok = 0;
      }
    if (!disjoint(p, (size_t)n)) {
      CHECKV("aligned blocks are disjoint", 0, "alignment %zu", a);
      ok = 0;
    }
    for (int i = 0; i < n; i++) free(p[i]);
    CHECKV("alignment sweep", ok, "alignment %zu", a);
  }
  /* Mid sizes with every alignment up to 32 KiB: Mid block sizes are
   * multiples of 16 (of 64 but the first class of each doubling), so such
   * a request takes the first class that fits whose size the alignment
   * divides; every block of it is aligned, not only a slab's first. */
  int ok_mid = 1;
  for (size_t a = 32; a <= 32 * KiB; a *= 2)
    for (size_t s = 1025; s <= 32 * KiB; s += 48) {
      void *q[3];
      for (int i = 0; i < 3; i++) {
        if (posix_memalign(&q[i], a, LAUNDER(s)) != 0) q[i] = NULL;
        if (!q[i] || (uintptr_t)q[i] % a || malloc_usable_size(q[i]) < s) {
          if (ok_mid)
            CHECKV("Mid sizes with every alignment", 0, "posix_memalign(%zu, %zu) = %p", a, s, q[i]);
          ok_mid = 0;
        }
      }
      for (int i = 0; i < 3; i++) free(q[i]);
    }
  CHECK("Mid sizes 1025 .. 32 KiB with alignments 32 .. 32 KiB: aligned, usable >= request", ok_mid);
  /* Many aligned blocks of slab sizes at once. */
  for (size_t a = 16; a <= 4096; a *= 2) {
    enum { N = 100 };
    void *p[N];
    int ok = 1;
    for (int i = 0; i < N; i++) {
      p[i] = aligned_alloc(a, a);
      ok &= p[i] && (uintptr_t)p[i] % a == 0;
      if (p[i]) memset(p[i], 0x11, a);
    }
    CHECKV("100 aligned_alloc(a, a) blocks aligned", ok, "a=%zu", a);
    if (ok) CHECKV("100 aligned_alloc(a, a) blocks disjoint", disjoint(p, N), "a=%zu", a);
    for (int i = 0; i < N; i++) free(p[i]);
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void test_valloc_pvalloc(void) {
  const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 100 * KiB, 3 * MiB + 5};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i], rounded = (n + page - 1) & ~(page - 1);
    void *v = valloc(n), *pv = pvalloc(n);
    CHECKV("valloc is page aligned, usable >= n", v && (uintptr_t)v % page == 0 && malloc_usable_size(v) >= n,
           "n=%zu p=%p", n, v);
    CHECKV("pvalloc is page aligned and rounds up to a page",
           pv && (uintptr_t)pv % page == 0 && malloc_usable_size(pv) >= rounded, "n=%zu p=%p usable %zu", n,
           pv, pv ? malloc_usable_size(pv) : 0);
    if (v) memset(v, 1, n);
    if (pv) memset(pv, 2, rounded);
    if (v) CHECK("valloc block intact", all_bytes(v, n, 1));
    free(v);
    free(pv);
  }
  void *pv = pvalloc(LAUNDER((size_t)0));
  CHECK("pvalloc(0) returns a page-aligned block", pv && (uintptr_t)pv % page == 0);
  free(pv);
  errno = 0;
  pv = pvalloc(LAUNDER(SIZE_MAX - 10));
  CHECK("pvalloc(SIZE_MAX - 10) returns NULL with ENOMEM", pv == NULL && errno == ENOMEM);
  errno = 0;
  pv = valloc(LAUNDER(SIZE_MAX - 10));
  CHECK("valloc(SIZE_MAX - 10) returns NULL with ENOMEM", pv == NULL && errno == ENOMEM);
}
#pragma GCC diagnostic pop

/* ---- free_sized, free_aligned_sized, cfree, __libc_* ------------------------ */
static void test_sized_frees(void) {
  free_sized_fn fs = (free_sized_fn)api_sym("free_sized");
  free_aligned_sized_fn fas = (free_aligned_sized_fn)api_sym("free_aligned_sized");
  free_fn cf = (free_fn)api_sym("cfree");
  CHECK("free_sized exists", fs != NULL);
  CHECK("free_aligned_sized exists", fas != NULL);
  CHECK("cfree exists", cf != NULL);
  if (!fs || !fas || !cf) return;
  const size_t sizes[] = {1, 100, 1000, 5000, 50 * KiB, 500 * KiB, 5 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    hak_stats_t s0 = stats();
    void *a = malloc(n), *b = aligned_alloc(256, n), *c = malloc(n);
    memset(a, 1, n);
    memset(b, 2, n);
    memset(c, 3, n);
    hak_stats_t s1 = stats();
    fs(a, n);
    fas(b, 256, n);
    cf(c);
    hak_stats_t s2 = stats();
    CHECKV("free_sized/free_aligned_sized/cfree release the blocks",
           s1.in_use >= s0.in_use + 3 * n && s2.in_use == s0.in_use, "size %zu: in_use %zu -> %zu -> %zu", n,
           s0.in_use, s1.in_use, s2.in_use);
  }
  errno = 4242;
  fs(NULL, 10);
  fas(NULL, 64, 10);
  cf(NULL);
  void *z = malloc(10);
  fs(z, 10);
  CHECK("free_sized/free_aligned_sized/cfree (NULL included) leave errno alone", errno == 4242);
}

/* A wrong size passed to free_sized must not be trusted: the block must not
 * be handed out later as a block of the claimed size. */
static int wrong_size_child(void *arg) {
  (void)arg;
  free_sized_fn fs = (free_sized_fn)api_sym("free_sized");
  if (!fs) return 2;
  void *small = malloc(32), *big = malloc(4000);
  fs(small, 4000); /* claims bigger than it is */
  fs(big, 16);     /* claims smaller than it is */
  enum { N = 64 };
  void *p[2 * N];
  for (int i = 0; i < N; i++) {
    p[2 * i] = malloc(4000);
    p[2 * i + 1] = malloc(16);
    if (!p[2 * i] || !p[2 * i + 1]) return 3;
    pat_fill(p[2 * i], malloc_usable_size(p[2 * i]), 1000 + (uint64_t)i);
    pat_fill(p[2 * i + 1], malloc_usable_size(p[2 * i + 1]), 2000 + (uint64_t)i);
  }
  for (int i = 0; i < N; i++) {
    if (pat_check(p[2 * i], malloc_usable_size(p[2 * i]), 1000 + (uint64_t)i) != SIZE_MAX ||
        pat_check(p[2 * i + 1], malloc_usable_size(p[2 * i + 1]), 2000 + (uint64_t)i) != SIZE_MAX)
      return 1;
    if (p[2 * i] == small) return 1;
  }
  if (!disjoint(p, 2 * N)) return 1;
  for (int i = 0; i < 2 * N; i++) free(p[i]);
  return 0;
}

static void test_wrong_size(void) {
  static child_t c;
  if (!CHECK("free_sized wrong-size child runs", run_child(wrong_size_child, NULL, &c, 60) == 0)) return;
  int ignored = exited_ok(c.status);
  int reported = WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGABRT && strstr(c.err, "hakmem");
  CHECKV("free_sized with a wrong size is ignored (or reported), never trusted", ignored || reported,
         "status 0x%x, stderr: %.300s", c.status, c.err);
}

static void test_libc_aliases(void) {
  malloc_fn lm = (malloc_fn)api_sym("__libc_malloc");
  calloc_fn lc = (calloc_fn)api_sym("__libc_calloc");
  realloc_fn lr = (realloc_fn)api_sym("__libc_realloc");
  free_fn lf = (free_fn)api_sym("__libc_free");
  memalign_fn lma = (memalign_fn)api_sym("__libc_memalign");
  malloc_fn lv = (malloc_fn)api_sym("__libc_valloc");
  malloc_fn lpv = (malloc_fn)api_sym("__libc_pvalloc");
  posix_memalign_fn lpm = (posix_memalign_fn)api_sym("__posix_memalign");
  if (!CHECK("all __libc_* aliases and __posix_memalign resolve",
             lm && lc && lr && lf && lma && lv && lpv && lpm))
    return;
  hak_stats_t s0 = stats();
  void *a = lm(100);
  CHECK("__libc_malloc works", a && malloc_usable_size(a) >= 100);
  memset(a, 1, 100);
  void *b = lc(10, 30);
  CHECK("__libc_calloc zeroes", b && all_bytes(b, 300, 0));
  pat_fill(a, 100, 5);
  void *c = lr(a, 5000);
  CHECK("__libc_realloc keeps contents", c && pat_check(c, 100, 5) == SIZE_MAX);
  void *d = lma(256, 1000);
  CHECK("__libc_memalign aligns", d && (uintptr_t)d % 256 == 0 && malloc_usable_size(d) >= 1000);
  void *e = lv(100);
  CHECK("__libc_valloc is page aligned", e && (uintptr_t)e % page == 0);
  void *f = lpv(100);
  CHECK("__libc_pvalloc is page aligned, a whole page",
        f && (uintptr_t)f % page == 0 && malloc_usable_size(f) >= page);
  void *g = (void *)1;
  int r = lpm(&g, 128, 100);
  CHECK("__posix_memalign aligns", r == 0 && (uintptr_t)g % 128 == 0);
  void *h = (void *)1;
  r = lpm(&h, 3, 100);
  CHECK("__posix_memalign EINVAL, *p untouched", r == EINVAL && h == (void *)1);
  void *m = malloc(300);
  hak_stats_t s1 = stats();
  /* Cross them: blocks from the aliases freed by free() and vice versa. */
  free(b);
  free(c);
  lf(d);
  lf(e);
  free(f);
  lf(g);
  lf(m);
  lf(NULL);
  hak_stats_t s2 = stats();
  CHECKV("blocks from the aliases are hakmem's: in_use returns to its start",
         s1.in_use > s0.in_use && s2.in_use == s0.in_use, "in_use %zu -> %zu -> %zu", s0.in_use, s1.in_use,
         s2.in_use);
}

/* ---- statistics and control -------------------------------------------------- */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void test_mallinfo(void) {
  enum { N = 2560, SZ = 4096 }; /* 10 MiB of 4 KiB blocks */
  static void *p[N];
  struct mallinfo2 a = mallinfo2();
  struct mallinfo ao = mallinfo();
  hak_stats_t sa = stats();
  for (int i = 0; i < N; i++) {
    p[i] = malloc(SZ);
    memset(p[i], 7, SZ);
  }
  struct mallinfo2 b = mallinfo2();
  struct mallinfo bo = mallinfo();
  hak_stats_t sb = stats();
  for (int i = 0; i < N; i++) free(p[i]);
  struct mallinfo2 c = mallinfo2();
  struct mallinfo co = mallinfo();
  hak_stats_t sc = stats();
  size_t ten = (size_t)N * SZ;
  CHECKV("mallinfo2.uordblks grows by >= 10 MiB after allocating 10 MiB", b.uordblks >= a.uordblks + ten,
         "%zu -> %zu", a.uordblks, b.uordblks);
  CHECKV("mallinfo2.arena + hblkhd covers uordblks", b.arena + b.hblkhd >= b.uordblks,
         "arena %zu hblkhd %zu uordblks %zu", b.arena, b.hblkhd, b.uordblks);
  CHECKV("mallinfo2.uordblks shrinks by >= 10 MiB after freeing", c.uordblks + ten <= b.uordblks,
         "%zu -> %zu", b.uordblks, c.uordblks);
  CHECKV("mallinfo.uordblks grows by >= 10 MiB after allocating 10 MiB",
         (size_t)bo.uordblks >= (size_t)ao.uordblks + ten, "%d -> %d", ao.uordblks, bo.uordblks);
  CHECKV("mallinfo.uordblks shrinks after freeing", (size_t)co.uordblks + ten <= (size_t)bo.uordblks,
         "%d -> %d", bo.uordblks, co.uordblks);
  CHECKV("mallinfo.arena is positive while 10 MiB are live", bo.arena > 0, "%d", bo.arena);
  CHECKV("hak_stats.in_use grows by >= 10 MiB", sb.in_use >= sa.in_use + ten, "%zu -> %zu", sa.in_use,
         sb.in_use);
  CHECKV("hak_stats.in_use shrinks back after freeing", sc.in_use == sa.in_use, "%zu -> %zu -> %zu",
         sa.in_use, sb.in_use, sc.in_use);
  CHECKV("hak_stats: mapped >= committed >= in_use", sb.mapped >= sb.committed && sb.committed >= sb.in_use,
         "mapped %zu committed %zu in_use %zu", sb.mapped, sb.committed, sb.in_use);
  CHECKV("hak_stats: superslabs, slabs and heaps are counted",
         sb.superslabs >= 1 && sb.slabs >= 1 && sb.heaps >= 1, "superslabs %llu slabs %llu heaps %llu",
         (unsigned long long)sb.superslabs, (unsigned long long)sb.slabs, (unsigned long long)sb.heaps);
  CHECKV("mallinfo2.uordblks is hakmem's in_use (less Large blocks, if kept in hblkhd)",
         b.uordblks == sb.in_use || b.uordblks == sb.in_use - sb.large_in_use,
         "uordblks %zu in_use %zu large_in_use %zu", b.uordblks, sb.in_use, sb.large_in_use);

  /* Large blocks: counted in large_in_use, and a freed one is reused from
   * BigCache. */
  hak_stats_t l0 = stats();
  void *big = malloc(8 * MiB);
  memset(big, 1, 8 * MiB);
  hak_stats_t l1 = stats();
  free(big);
  hak_stats_t l2 = stats();
  big = malloc(8 * MiB);
  hak_stats_t l3 = stats();
  free(big);
  CHECKV("hak_stats.large_in_use counts a live 8 MiB block",
         l1.large_in_use >= l0.large_in_use + 8 * MiB && l2.large_in_use == l0.large_in_use,
         "%zu -> %zu -> %zu", l0.large_in_use, l1.large_in_use, l2.large_in_use);
  if (secure) /* its freed Large mappings wait in a quarantine, then go */
    CHECKV("the secure build caches no Large mapping",
           l3.bigcache_hits == l2.bigcache_hits && !l2.bigcache_bytes,
           "hits %llu -> %llu, bigcache_bytes after free %zu", (unsigned long long)l2.bigcache_hits,
           (unsigned long long)l3.bigcache_hits, l2.bigcache_bytes);
  else
    CHECKV("a freed Large block is reused from BigCache", l3.bigcache_hits > l2.bigcache_hits,
           "hits %llu -> %llu, bigcache_bytes after free %zu", (unsigned long long)l2.bigcache_hits,
           (unsigned long long)l3.bigcache_hits, l2.bigcache_bytes);
}
#pragma GCC diagnostic pop

static void test_trim(void) {
  enum { N = 4096, SZ = 16 * KiB }; /* 64 MiB */
  static void *p[N];
  malloc_trim(0); /* start from a clean state: nothing free is retained */
  for (int i = 0; i < N; i++) {
    p[i] = malloc(SZ);
    memset(p[i], 9, SZ);
  }
  long r1 = rss_kb();
  for (int i = 0; i < N; i++) free(p[i]);
  long r2 = rss_kb();
  hak_stats_t s0 = stats();
  int t1 = malloc_trim(0);
  hak_stats_t s1 = stats();
  long r3 = rss_kb();
  int t2 = malloc_trim(0);
  int t3 = hak.trim ? hak.trim() : -1;
  CHECKV("RSS comes down after freeing a 64 MiB burst (before any trim)", r2 <= r1 - 48 * 1024,
         "%ld -> %ld kB", r1, r2);
  CHECKV("malloc_trim returns 0 or 1", t1 == 0 || t1 == 1, "%d", t1);
  CHECKV("malloc_trim returns 1 when it released the retained free memory", t1 == 1, "%d", t1);
  CHECKV("malloc_trim releases: RSS ends >= 48 MiB below the peak", r3 <= r1 - 48 * 1024,
         "peak %ld, after trim %ld kB", r1, r3);
  CHECKV("malloc_trim with nothing left to release returns 0", t2 == 0, "%d", t2);
  CHECKV("hak_trim with nothing left to release returns 0", t3 == 0, "%d", t3);
  CHECKV("malloc_trim's release shows in the stats (purged or unmapped grow)",
         t1 != 1 || s1.purged + s1.unmapped > s0.purged + s0.unmapped, "purged %llu -> %llu",
         (unsigned long long)s0.purged, (unsigned long long)s1.purged);
  CHECKV("hak_stats.committed does not grow from malloc_trim", s1.committed <= s0.committed, "%zu -> %zu",
         s0.committed, s1.committed);
}

static void test_mallopt(void) {
  int r = mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  CHECKV("mallopt(M_MMAP_THRESHOLD) returns 0 or 1", r == 0 || r == 1, "%d", r);
  r = mallopt(M_ARENA_MAX, 2);
  CHECKV("mallopt(M_ARENA_MAX) returns 0 or 1", r == 0 || r == 1, "%d", r);
  r = mallopt(M_TRIM_THRESHOLD, 1 << 20);
  CHECKV("mallopt(M_TRIM_THRESHOLD) returns 0 or 1", r == 0 || r == 1, "%d", r);
  r = mallopt(9999, 7);
  CHECKV("mallopt of an unknown parameter returns 0", r == 0, "%d", r);
  if (hakmem_is_malloc()) {
    /* hakmem maps M_TRIM_THRESHOLD to HAKMEM_RETAIN_KB, within its range */
    r = mallopt(M_TRIM_THRESHOLD, INT_MAX);
    CHECKV("mallopt(M_TRIM_THRESHOLD) past HAKMEM_RETAIN_KB's range (1 GiB) returns 0", r == 0, "%d", r);
    r = mallopt(M_TRIM_THRESHOLD, -1);
    CHECKV("mallopt(M_TRIM_THRESHOLD, -1) returns 0", r == 0, "%d", r);
    r = mallopt(M_TRIM_THRESHOLD, 4 << 20); /* back to the default */
    CHECKV("mallopt(M_TRIM_THRESHOLD) within the range returns 1", r == 1, "%d", r);
  }
  void *p = malloc(300 * KiB);
  CHECK("malloc works after mallopt", p != NULL);
  free(p);
}

/* Output written to fd 2 (or to a given fd) by fn, captured in a memfd. */
static size_t capture_fd(void (*fn)(int), int to_stderr, char *buf, size_t cap) {
  int fd = memfd_create("capture", MFD_CLOEXEC);
  if (fd < 0) return 0;
  if (to_stderr) {
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(2);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
  } else {
    fn(fd);
  }
  lseek(fd, 0, SEEK_SET);
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  return n > 0 ? (size_t)n : 0;
}

static void call_malloc_stats(int fd) {
  (void)fd;
  malloc_stats();
}
static void call_stats_print(int fd) { hak.stats_print(fd); }
static void call_stats_json(int fd) { hak.stats_json(fd); }

static void test_reports(void) {
  static char buf[1 << 16];
  void *keep = malloc(1000);
  size_t n = capture_fd(call_malloc_stats, 1, buf, sizeof buf);
  CHECKV("malloc_stats writes a report to stderr", n > 20, "%zu bytes", n);
  if (hak.stats_print) {
    n = capture_fd(call_stats_print, 0, buf, sizeof buf);
    CHECKV("hak_stats_print writes a report", n > 20, "%zu bytes", n);
  }
  if (hak.stats_json) {
    n = capture_fd(call_stats_json, 0, buf, sizeof buf);
    size_t e = n;
    while (e > 0 && (buf[e - 1] == '\n' || buf[e - 1] == ' ')) e--;
    int depth = 0, balanced = 1;
    for (size_t i = 0; i < n; i++) {
      depth += (buf[i] == '{') - (buf[i] == '}');
      balanced &= depth >= 0;
    }
    CHECKV("hak_stats_json writes one JSON object with \"in_use\"",
           n > 2 && buf[0] == '{' && buf[e - 1] == '}' && balanced && depth == 0 &&
               strstr(buf, "\"in_use\"") != NULL,
           "%zu bytes: %.200s", n, buf);
  }
  char *mem = NULL;
  size_t memlen = 0;
  FILE *f = open_memstream(&mem, &memlen);
  int r = f ? malloc_info(0, f) : -1;
  if (f) fclose(f);
  CHECKV("malloc_info(0, fp) on an open_memstream FILE returns 0 and writes", r == 0 && memlen > 0,
         "returned %d, %zu bytes", r, memlen);
  free(mem);
  f = tmpfile();
  r = f ? malloc_info(0, f) : -1;
  long flen = f ? (fflush(f), ftell(f)) : -1;
  char head[16] = "";
  if (f) {
    rewind(f);
    if (!fgets(head, sizeof head, f)) head[0] = 0;
    fclose(f);
  }
  CHECKV("malloc_info(0, fp) on a file returns 0 and writes XML", r == 0 && flen > 0 && head[0] == '<',
         "returned %d, %ld bytes, starts \"%s\"", r, flen, head);
  free(keep);
}

/* ---- the hak_* API itself ------------------------------------------------------ */
static void test_hak_api(void) {
  if (!hak.malloc) return;
  void *a = hak.malloc(0), *b = hak.malloc(0);
  CHECK("hak_malloc(0) returns unique non-NULL", a && b && a != b);
  hak.free(a);
  hak.free(b);
  errno = 0;
  a = hak.malloc(LAUNDER(SIZE_MAX));
  CHECK("hak_malloc(SIZE_MAX): NULL, ENOMEM", a == NULL && errno == ENOMEM);
  errno = 0;
  a = hak.calloc(LAUNDER(SIZE_MAX / 2 + 1), 2);
  CHECK("hak_calloc overflow: NULL, ENOMEM", a == NULL && errno == ENOMEM);
  a = hak.calloc(100, 10);
  CHECK("hak_calloc zeroes", a && all_bytes(a, 1000, 0));
  pat_fill(a, 1000, 3);
  b = hak.realloc(a, 100000);
  CHECK("hak_realloc keeps contents", b && pat_check(b, 1000, 3) == SIZE_MAX);
  CHECK("hak_usable_size >= request", b && hak.usable_size(b) >= 100000);
  CHECK("hak_realloc(p, 0) returns NULL", hak.realloc(b, LAUNDER((size_t)0)) == NULL);
  a = hak.aligned_alloc(4096, 100);
  CHECK("hak_aligned_alloc aligns", a && (uintptr_t)a % 4096 == 0);
  hak.free(a);
  a = (void *)1;
  CHECK("hak_posix_memalign: EINVAL for alignment 3, *p untouched",
        hak.posix_memalign(&a, 3, 8) == EINVAL && a == (void *)1);
  CHECK("hak_posix_memalign aligns", hak.posix_memalign(&a, 512, 8) == 0 && (uintptr_t)a % 512 == 0);
  hak.free(a);
  CHECK("hak_usable_size(NULL) == 0", hak.usable_size(NULL) == 0);
  errno = 77;
  hak.free(NULL);
  CHECK("hak_free(NULL) leaves errno alone", errno == 77);
  /* hak_* and the libc names share one heap. */
  a = hak.malloc(777);
  CHECK("hak_malloc blocks are seen by malloc_usable_size", malloc_usable_size(a) >= 777);
  free(a);
  a = malloc(777);
  CHECK("malloc blocks are seen by hak_usable_size", hak.usable_size(a) >= 777);
  hak.free(a);
}

int main(void) {
  page = (size_t)sysconf(_SC_PAGESIZE);
  test_identity();
  secure = hak.version && strstr(hak.version(), " (secure build)") != NULL;
  test_malloc_zero();
  test_malloc_huge();
  test_oom();
  test_malloc_sweep();
  test_random_workout();
  test_free_errno();
  test_alloc_errno();
  test_calloc();
  test_realloc_basic();
  if (!secure) test_realloc_room();
  test_realloc_boundaries();
  test_reallocarray();
  test_posix_memalign_errors();
  test_alignment_sweep();
  test_aligned_zero();
  test_valloc_pvalloc();
  test_sized_frees();
  test_wrong_size();
  test_libc_aliases();
  test_mallinfo();
  test_trim();
  test_mallopt();
  test_reports();
  test_hak_api();
  return th_done();
}
