/* tests/misuse.c — death tests: each misuse of the heap runs in a child
 * process, which must die as the build promises: of SIGABRT after
 * printing exactly one line on stderr, or of SIGSEGV on memory with no
 * access (the secure build's guard pages and zero-byte allocations), or go
 * on unharmed where the build cannot catch it (README lists them). The
 * child writes the line it expects first ("expect=LINE"), then does the
 * one wrong thing; the parent compares. The secure build's promises that
 * are properties (fresh memory zeroed, freed memory not reused at once)
 * run as children that exit 0 when the property holds.
 *
 * The program runs itself again with HAKMEM_INVALID_FREE=1: misuse inside
 * hakmem's memory must still abort, while a foreign pointer is reported
 * and ignored. */
#include <alloca.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

static char expect_line[512];
static int secure; /* libhakmem-secure: hak_version() says so */

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* The size a report gives for a block of n bytes: its block size (the
 * default build's usable size); the secure build's is that of a block of
 * n + 9 bytes (the trailer and a canary byte), given by the case, or n
 * while the freed block is in the quarantine. */
static size_t block_size(void *p, size_t secure_size) { return secure ? secure_size : malloc_usable_size(p); }

/* The line the child expects, sent to the parent before the misuse. */
__attribute__((format(printf, 1, 2))) static void expect(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(expect_line, sizeof expect_line, fmt, ap);
  va_end(ap);
  char out[600];
  int n = snprintf(out, sizeof out, "expect=%s\n", expect_line);
  if (write(2, out, (size_t)n) != n) _exit(99);
}

static void expect_double(const char *who, void *p, size_t size) {
  expect("hakmem: %s(): double free of %p (%zu-byte block)", who, p, size);
}

static void expect_inside(const char *who, void *p, void *block, size_t size) {
  expect("hakmem: %s(): invalid pointer %p: offset %zu in the %zu-byte block at %p", who, p,
         (size_t)((char *)p - (char *)block), size, block);
}

static void expect_foreign(const char *who, void *p) {
  expect("hakmem: %s(): invalid pointer %p: not allocated by hakmem", who, p);
}

/* Blocks of `size`, one freed twice in a row. */
static int double_now(size_t size, size_t secure_size) {
  char *p = malloc(size);
  memset(p, 1, size);
  expect_double("free", p, block_size(p, secure_size));
  free(p);
  free(LAUNDER(p));
  return 0;
}
static int double_small(void *arg) { return (void)arg, double_now(48, 48); }
static int double_mid(void *arg) { return (void)arg, double_now(4096, 4096); }
static int double_pool(void *arg) { return (void)arg, double_now(256 * KiB, 256 * KiB); }
/* A Large block's pages are not readable once freed: its usable size. */
static int double_large(void *arg) { return (void)arg, double_now(4 * MiB, 4 * MiB + 4096); }

/* Freed, then many other blocks come and go, then freed again. */
static int double_delayed(void *arg) {
  (void)arg;
  char *p = malloc(100);
  expect_double("free", p, block_size(p, 112)); /* out of the quarantine */
  free(p);
  for (int i = 0; i < 10000; i++) free(malloc(1 + (size_t)(i * 7919) % 3000));
  free(LAUNDER(p));
  return 0;
}

/* free(a); free(b); free(a): a is no longer the head of any list. */
static int double_interleaved(void *arg) {
  (void)arg;
  void *a = malloc(64), *b = malloc(64), *c = malloc(64);
  expect_double("free", a, malloc_usable_size(a));
  free(a);
  free(b);
  free(c);
  free(LAUNDER(a));
  return 0;
}

/* The block's slab is not the current one any more: the free takes the
 * descriptor's path. */
static int double_partial(void *arg) {
  (void)arg;
  enum { N = 20000 };
  static void *v[N];
  for (int i = 0; i < N; i++) v[i] = malloc(32);
  void *p = v[17];
  expect_double("free", p, malloc_usable_size(p));
  free(p);
  free(LAUNDER(p));
  return 0;
}

static void *free_it(void *p) {
  free(p);
  return NULL;
}

/* Freed by another thread, then again by the one that allocated it. */
static int double_remote(void *arg) {
  (void)arg;
  void *p = malloc(80);
  pthread_t t;
  if (pthread_create(&t, NULL, free_it, p) != 0 || pthread_join(t, NULL) != 0) return 98;
  expect_double("free", p, secure ? 96 : 80); /* the thread's exit emptied its quarantine */
  free(LAUNDER(p));
  return 0;
}

/* A thread frees the block and goes on, waiting on the pipe until the
 * main thread is done: the block is on its way to the thread that holds
 * its slab, in the freeing thread's batch. */
static int freed[2], release[2];
static void *free_it_and_wait(void *p) {
  char c;
  free(p);
  if (write(freed[1], "x", 1) != 1 || read(release[0], &c, 1) < 0) return NULL;
  return NULL;
}

static pthread_t free_elsewhere(void *p) {
  pthread_t t;
  char c;
  if (pipe(freed) != 0 || pipe(release) != 0 || pthread_create(&t, NULL, free_it_and_wait, p) != 0 ||
      read(freed[0], &c, 1) != 1)
    _exit(98);
  return t;
}

/* Freed by another thread that goes on, then again by the one that
 * allocated it. */
static int double_remote_live(void *arg) {
  (void)arg;
  void *p = malloc(80);
  free_elsewhere(p);
  /* The secure build's quarantine is per heap, and this free was the
   * thread's first call: it had none, so the block went to its slab. */
  expect_double("free", p, secure ? 96 : 80);
  free(LAUNDER(p));
  return 0;
}

/* Written (its second word) on its way to the thread that holds its slab:
 * that thread's malloc_trim takes the batch in once the freeing thread has
 * exited, and finds it. */
static int freed_write_sent(void *arg) {
  (void)arg;
  char *p = malloc(80);
  pthread_t t = free_elsewhere(p);
  LAUNDER(p)[8] = 'X';
  if (write(release[1], "x", 1) != 1 || pthread_join(t, NULL) != 0) return 98;
  expect("hakmem: malloc_trim(): write after free in the 80-byte block at %p (offset 8)", (void *)p);
  malloc_trim(0);
  return 0;
}

/* realloc of a freed block. */
static int double_realloc(void *arg) {
  (void)arg;
  void *p = malloc(48);
  expect_double("realloc", p, 48);
  free(p);
  void *q = realloc(LAUNDER(p), 100);
  (void)q;
  return 0;
}

static int invalid_stack(void *arg) {
  (void)arg;
  _Alignas(16) char buf[64];
  expect_foreign("free", buf + 16);
  free(LAUNDER((void *)(buf + 16)));
  return 0;
}

static int invalid_alloca(void *arg) {
  (void)arg;
  char *p = alloca(100);
  memset(p, 0, 100);
  expect_foreign("free", p);
  free(LAUNDER((void *)p));
  return 0;
}

static int invalid_far(void *arg) {
  (void)arg;
  void *p = (void *)(uintptr_t)0x10000;
  expect_foreign("free", p);
  free(LAUNDER(p));
  return 0;
}

static int invalid_wild(void *arg) {
  (void)arg;
  void *p = (void *)(uintptr_t)0x4141414141414140ull;
  expect_foreign("free", p);
  free(LAUNDER(p));
  return 0;
}

/* Two neighbouring 48-byte blocks lo, hi (64 bytes apart in the secure
 * build): a pointer just before hi. */
static int invalid_close(void *arg) {
  (void)arg;
  size_t size = secure ? 64 : 48;
  char *v[64], *lo = NULL, *hi = NULL;
  for (int i = 0; i < 64; i++) v[i] = malloc(48);
  for (int i = 0; i < 64 && !hi; i++)
    for (int j = 0; j < 64 && !hi; j++)
      if (v[j] - v[i] == (ptrdiff_t)size) lo = v[i], hi = v[j];
  if (!hi) return 97;
  expect_inside("free", hi - 16, lo, size);
  free(LAUNDER((void *)(hi - 16)));
  return 0;
}

/* free(p + off) for a block p of `size`. */
static int inside(size_t size, size_t off, size_t secure_size) {
  char *p = malloc(size);
  expect_inside("free", p + off, p, block_size(p, secure_size));
  free(LAUNDER((void *)(p + off)));
  return 0;
}
static int invalid_unaligned(void *arg) { return (void)arg, inside(48, 1, 64); }
static int invalid_interior(void *arg) { return (void)arg, inside(200, 64, 224); }
static int invalid_interior_mid(void *arg) { return (void)arg, inside(5000, 4096, 5440); }
static int invalid_interior_large(void *arg) { return (void)arg, inside(3 * MiB, 4096, 3 * MiB + 4096); }
/* In a later 64 KiB unit of a pool block's run. */
static int invalid_interior_run(void *arg) { return (void)arg, inside(256 * KiB, 200 * KiB, 288 * KiB); }

/* Into the fifth unit of a freed 512 KiB block's run, once a 64 KiB block
 * took its first unit: the units past it are free (and lead to that block's
 * slab until taken again, superslab.c). */
static int invalid_freed_run(void *arg) {
  (void)arg;
  char *p = malloc(512 * KiB);
  free(p);
  char *q = malloc(64 * KiB);
  if (q != p) return 97;
  expect("hakmem: free(): invalid pointer %p: in hakmem's memory, but in no live block",
         (void *)(p + 300 * KiB));
  free(LAUNDER((void *)(p + 300 * KiB)));
  return 0;
}

/* Past the blocks carved so far in a slab: memory of hakmem's that holds
 * no block yet. */
static int invalid_uncarved(void *arg) {
  (void)arg;
  char *p = malloc(secure ? 1008 - 9 : 1008); /* blocks of 1008 bytes */
  char *q = p + 30 * 1008;
  expect("hakmem: free(): invalid pointer %p: in hakmem's memory, but in no live block", (void *)q);
  free(LAUNDER((void *)q));
  return 0;
}

static int invalid_usable(void *arg) {
  (void)arg;
  char *p = malloc(48);
  expect_inside("malloc_usable_size", p + 8, p, secure ? 64 : 48);
  return (int)malloc_usable_size(LAUNDER((void *)(p + 8)));
}

/* A free of a block that was handed out again: to the default build, a
 * free of the new block; the secure build's quarantine had kept it from
 * being handed out. */
static int double_after_reuse(void *arg) {
  (void)arg;
  void *p = malloc(48);
  expect_double("free", p, 48);
  free(p);
  void *q = malloc(48);
  free(LAUNDER(p));
  return secure || q == p ? 0 : 96;
}

/* ---- writes past the end ---------------------------------------------- */

typedef struct {
  size_t size, over;  /* a block of size bytes, written over more */
  size_t secure_size; /* its block in the secure build */
  int by_memcpy;
} overflow_t;

static char source[5 * MiB]; /* what memcpy copies */

static int overflow(void *arg) {
  const overflow_t *o = arg;
  char *p = malloc(o->size);
  memset(p, 'p', o->size);
  if (o->size + o->over > o->secure_size - 8) /* the trailer, in the last 8 bytes */
    expect("hakmem: free(): write past the end of %p (the record of its size is overwritten)", (void *)p);
  else
    expect("hakmem: free(): write past the end of %p (%zu bytes allocated, offset %zu written)", (void *)p,
           o->size, o->size);
  if (o->by_memcpy) memcpy(LAUNDER(p), source, o->size + o->over);
  else memset(LAUNDER(p) + o->size, 'B', o->over); /* even: the secure build's canary bytes are odd */
  free(p);
  return 0;
}

#define OVERFLOW(name, size, over, secure_size, how) \
  static const overflow_t name = {size, over, secure_size, how};
OVERFLOW(small_1, 48, 1, 64, 0)
OVERFLOW(small_1_memcpy, 48, 1, 64, 1)
OVERFLOW(small_32, 48, 32, 64, 0)
OVERFLOW(small_32_memcpy, 48, 32, 64, 1)
OVERFLOW(small_1m, 48, MiB, 64, 0)
OVERFLOW(mid_1, 4096, 1, 4368, 0)
OVERFLOW(mid_32_memcpy, 4096, 32, 4368, 1)
OVERFLOW(mid_1m, 4096, MiB, 4368, 0)
OVERFLOW(pool_1, 256 * KiB, 1, 288 * KiB, 0)
OVERFLOW(pool_32, 256 * KiB, 32, 288 * KiB, 0)
OVERFLOW(pool_1m_memcpy, 256 * KiB, MiB, 288 * KiB, 1)
OVERFLOW(pool_top_1, MiB, 1, MiB + 60 * KiB, 0)
OVERFLOW(large_1_memcpy, 4 * MiB, 1, 4 * MiB + 4096, 1)
OVERFLOW(large_32, 4 * MiB, 32, 4 * MiB + 4096, 0)
OVERFLOW(large_1m, 4 * MiB, MiB, 4 * MiB + 4096, 0)

/* ---- writes after free -------------------------------------------------- */

/* Written while in the quarantine; malloc_trim checks it. */
static int freed_write_trim(void *arg) {
  (void)arg;
  char *p = malloc(48);
  free(p);
  expect("hakmem: malloc_trim(): write after free in the 64-byte block at %p (offset 20)", (void *)p);
  LAUNDER(p)[20] = 'X';
  malloc_trim(0);
  return 0;
}

/* Written while in the quarantine (its second word); newer frees push it
 * out. */
static int freed_write_evicted(void *arg) {
  (void)arg;
  char *p = malloc(48);
  free(p);
  expect("hakmem: free(): write after free in the 64-byte block at %p (offset 8)", (void *)p);
  LAUNDER(p)[8] = 'X';
  for (int i = 0; i < 20000; i++) free(malloc(48));
  return 0;
}

/* Written in the quarantine, or once it left it: malloc hands it out
 * again. */
static int freed_write_reused(void *arg) {
  char *p = malloc(48);
  free(p);
  if (arg) LAUNDER(p)[40] = 'X';
  for (int i = 0; i < 20000; i++) free(malloc(48));
  expect("hakmem: malloc(): write after free in the 64-byte block at %p (offset %d)", (void *)p,
         arg ? 40 : 24);
  if (!arg) LAUNDER(p)[24] = 'X';
  for (int i = 0; i < 100000; i++)
    if (malloc(48) == p) return 0;
  return 95;
}

/* A Large block's pages lose all access when it is freed. */
static int freed_write_large(void *arg) {
  (void)arg;
  char *p = malloc(4 * MiB);
  memset(p, 1, 4 * MiB);
  free(p);
  expect("SIGSEGV");
  LAUNDER(p)[4096] = 'X';
  return 0;
}

/* ---- zero-byte allocations, the size given to free_sized, execution ---- */

static int zero_write(void *arg) {
  (void)arg;
  char *p = malloc(0);
  expect("SIGSEGV");
  LAUNDER(p)[0] = 1;
  free(p);
  return 0;
}

static int zero_read(void *arg) {
  (void)arg;
  volatile char *p = malloc(0);
  expect("SIGSEGV");
  int v = LAUNDER(p)[0];
  free((void *)p);
  return v == 256;
}

/* C23's free_sized (glibc 2.36 has none: hakmem's, found at run time). */
static int sized_wrong(void *arg) {
  (void)arg;
  void (*free_sized)(void *, size_t);
  *(void **)&free_sized = sym_default("free_sized");
  if (!free_sized) return 94;
  char *p = malloc(48);
  expect("hakmem: free_sized(): invalid pointer %p: freed with size 40, but allocated with size 48",
         (void *)p);
  free_sized(p, LAUNDER((size_t)40));
  return 0;
}

/* C++'s operators (hakmem's, found at run time: this is a C program): a
 * block of new[] given to delete, of new to delete[] (arg not NULL), a
 * block of new given to sized delete with the wrong size. */
static int delete_mismatch(void *arg) {
  void *(*allocate)(size_t);
  void (*release)(void *);
  *(void **)&allocate = sym_default(arg ? "_Znwm" : "_Znam");
  *(void **)&release = sym_default(arg ? "_ZdaPv" : "_ZdlPv");
  if (!allocate || !release) return 94;
  char *p = allocate(48);
  if (arg)
    expect("hakmem: operator delete[](): mismatched delete[] of %p (48 bytes from operator new)", (void *)p);
  else expect("hakmem: operator delete(): mismatched delete of %p (48 bytes from operator new[])", (void *)p);
  release(p);
  return 0;
}

static int sized_delete_wrong(void *arg) {
  (void)arg;
  void *(*allocate)(size_t);
  void (*release)(void *, size_t);
  *(void **)&allocate = sym_default("_Znwm");
  *(void **)&release = sym_default("_ZdlPvm");
  if (!allocate || !release) return 94;
  char *p = allocate(48);
  expect("hakmem: operator delete(): invalid pointer %p: freed with size 40, but allocated with size 48",
         (void *)p);
  release(p, LAUNDER((size_t)40));
  return 0;
}

/* Heap memory is never executable. */
static int heap_exec(void *arg) {
  (void)arg;
  unsigned char *p = malloc(64);
  p[0] = 0xc3; /* ret */
  expect("SIGSEGV");
  void (*f)(void) = (void (*)(void))(uintptr_t)LAUNDER(p);
  f();
  return 0;
}

/* What a build does with a misuse. */
enum { GOES_ON, ABORTS, FAULTS, UNDEFINED /* not run: anything may happen */ };

typedef struct {
  const char *name;
  int (*fn)(void *);
  const void *arg;
  int by_default, by_secure;
  int inside; /* in hakmem's memory: aborts whatever HAKMEM_INVALID_FREE says */
} misuse_case_t;

static const misuse_case_t cases[] = {
    {"double free, 48 bytes", double_small, NULL, ABORTS, ABORTS, 1},
    {"double free, 4 KiB", double_mid, NULL, ABORTS, ABORTS, 1},
    {"double free, 256 KiB", double_pool, NULL, ABORTS, ABORTS, 1},
    {"double free, 4 MiB", double_large, NULL, ABORTS, ABORTS, 1},
    {"double free after other frees", double_delayed, NULL, ABORTS, ABORTS, 1},
    {"double free interleaved", double_interleaved, NULL, ABORTS, ABORTS, 1},
    {"double free, slab not current", double_partial, NULL, ABORTS, ABORTS, 1},
    {"double free, first free by another thread", double_remote, NULL, ABORTS, ABORTS, 1},
    {"double free, first free by another thread that goes on", double_remote_live, NULL, ABORTS, ABORTS, 1},
    {"double free after the block was reused", double_after_reuse, NULL, GOES_ON, ABORTS, 1},
    {"realloc of a freed block", double_realloc, NULL, ABORTS, ABORTS, 1},
    {"free of a stack address", invalid_stack, NULL, ABORTS, ABORTS, 0},
    {"free of an alloca block", invalid_alloca, NULL, ABORTS, ABORTS, 0},
    {"free of a far address", invalid_far, NULL, ABORTS, ABORTS, 0},
    {"free of a wild address", invalid_wild, NULL, ABORTS, ABORTS, 0},
    {"free close to a block", invalid_close, NULL, ABORTS, ABORTS, 1},
    {"free of an unaligned pointer", invalid_unaligned, NULL, ABORTS, ABORTS, 1},
    {"free of an interior pointer", invalid_interior, NULL, ABORTS, ABORTS, 1},
    {"free of an interior pointer, Mid", invalid_interior_mid, NULL, ABORTS, ABORTS, 1},
    {"free of an interior pointer, Large", invalid_interior_large, NULL, ABORTS, ABORTS, 1},
    {"free of an interior pointer, in a later unit of a pool block", invalid_interior_run, NULL, ABORTS,
     ABORTS, 1},
    {"free into a freed pool block whose first unit was taken again", invalid_freed_run, NULL, ABORTS,
     UNDEFINED, 1},
    {"free of memory with no block", invalid_uncarved, NULL, ABORTS, ABORTS, 1},
    {"malloc_usable_size of an interior pointer", invalid_usable, NULL, ABORTS, ABORTS, 1},
    {"overflow by 1 byte, 48 bytes", overflow, &small_1, GOES_ON, ABORTS, 1},
    {"overflow by 1 byte by memcpy, 48 bytes", overflow, &small_1_memcpy, GOES_ON, ABORTS, 1},
    {"overflow by 32 bytes, 48 bytes", overflow, &small_32, UNDEFINED, ABORTS, 1},
    {"overflow by 32 bytes by memcpy, 48 bytes", overflow, &small_32_memcpy, UNDEFINED, ABORTS, 1},
    {"overflow by 1 MiB, 48 bytes", overflow, &small_1m, UNDEFINED, FAULTS, 1},
    {"overflow by 1 byte, 4 KiB", overflow, &mid_1, GOES_ON, ABORTS, 1},
    {"overflow by 32 bytes by memcpy, 4 KiB", overflow, &mid_32_memcpy, UNDEFINED, ABORTS, 1},
    {"overflow by 1 MiB, 4 KiB", overflow, &mid_1m, UNDEFINED, FAULTS, 1},
    {"overflow by 1 byte, 256 KiB", overflow, &pool_1, GOES_ON, ABORTS, 1},
    {"overflow by 32 bytes, 256 KiB", overflow, &pool_32, UNDEFINED, ABORTS, 1},
    {"overflow by 1 MiB by memcpy, 256 KiB", overflow, &pool_1m_memcpy, UNDEFINED, FAULTS, 1},
    {"overflow by 1 byte, 1 MiB", overflow, &pool_top_1, UNDEFINED, ABORTS, 1},
    {"overflow by 1 byte by memcpy, 4 MiB", overflow, &large_1_memcpy, GOES_ON, ABORTS, 1},
    {"overflow by 32 bytes, 4 MiB", overflow, &large_32, GOES_ON, ABORTS, 1},
    {"overflow by 1 MiB, 4 MiB", overflow, &large_1m, UNDEFINED, FAULTS, 1},
    {"write after free, seen by malloc_trim", freed_write_trim, NULL, GOES_ON, ABORTS, 1},
    {"write after free, seen when newer frees push it out", freed_write_evicted, NULL, GOES_ON, ABORTS, 1},
    {"write after free, seen when handed out again", freed_write_reused, NULL, GOES_ON, ABORTS, 1},
    {"write after free in the quarantine, seen when handed out again", freed_write_reused, "", GOES_ON,
     ABORTS, 1},
    {"write after free, Large", freed_write_large, NULL, UNDEFINED, FAULTS, 1},
    {"write after free on the way to the slab's holder", freed_write_sent, NULL, ABORTS, GOES_ON, 1},
    {"write to a zero-byte allocation", zero_write, NULL, GOES_ON, FAULTS, 1},
    {"read of a zero-byte allocation", zero_read, NULL, GOES_ON, FAULTS, 1},
    {"free_sized with the wrong size", sized_wrong, NULL, GOES_ON, ABORTS, 1},
    {"delete of a block of new[]", delete_mismatch, NULL, GOES_ON, ABORTS, 1},
    {"delete[] of a block of new", delete_mismatch, "", GOES_ON, ABORTS, 1},
    {"sized delete with the wrong size", sized_delete_wrong, NULL, GOES_ON, ABORTS, 1},
    {"heap memory executed", heap_exec, NULL, FAULTS, FAULTS, 1},
};

/* ---- the secure build's properties ------------------------------------ */

static int all_zero(const unsigned char *p, size_t from, size_t to) {
  for (size_t i = from; i < to; i++)
    if (p[i]) return 0;
  return 1;
}

/* Blocks up to 1 KiB handed out hold zeros, even where freed blocks held
 * other bytes. */
static int fresh_zeroed(void *arg) {
  (void)arg;
  static const size_t sizes[] = {1, 16, 48, 100, 1000, 1024 - 9};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    for (int i = 0; i < 2000; i++) {
      char *p = malloc(sizes[s]);
      memset(p, 0xab, sizes[s]);
      free(p);
    }
    for (int i = 0; i < 2000; i++) {
      unsigned char *p = malloc(sizes[s]);
      if (!all_zero(p, 0, sizes[s])) return 1;
      free(p);
    }
  }
  return 0;
}

/* A freed block holds zeros but for its first two words. */
static int freed_zeroed(void *arg) {
  (void)arg;
  unsigned char *p = malloc(200);
  memset(p, 0xab, 200);
  free(p);
  return !all_zero(LAUNDER(p), 16, 200);
}

/* The next allocation of the same or a smaller size is not the block just
 * freed. */
static int not_reused_at_once(void *arg) {
  (void)arg;
  void *p = malloc(48);
  free(p);
  void *q = malloc(48), *r = malloc(40);
  return q == p || r == p;
}

/* A freed Large mapping is not handed out again before 32 more Large
 * frees. */
static int large_not_reused(void *arg) {
  (void)arg;
  void *p = malloc(4 * MiB);
  free(p);
  for (int i = 0; i < 31; i++) {
    void *q = malloc(4 * MiB);
    if (q == p) return 1;
    free(q);
  }
  return 0;
}

static int realloc_moves(void *arg) {
  (void)arg;
  void *p = malloc(100), *q = realloc(p, 60), *r = realloc(q, 61);
  return q == p || r == q || !r;
}

/* A request of 1 MiB is a pool block, not a Large one (whose pages go at
 * every free), though its canary and size record make it larger; its
 * usable size is what was asked. */
static int top_pool(void *arg) {
  (void)arg;
  char *p = malloc(MiB);
  hak_stats_t st;
  hak.stats(&st);
  memset(p, 1, MiB);
  int large = st.large_blocks != 0 || malloc_usable_size(p) != MiB;
  free(p);
  return large;
}

/* 64 blocks carved from a fresh slab do not lie in address order. */
static int random_order(void *arg) {
  (void)arg;
  char *v[64];
  int ascending = 1;
  for (int i = 0; i < 64; i++) v[i] = malloc(3000);
  for (int i = 1; i < 64; i++) ascending &= v[i] > v[i - 1];
  return ascending;
}

typedef struct {
  const char *name;
  int (*fn)(void *);
} property_t;

static const property_t properties[] = {
    {"fresh blocks are zeroed", fresh_zeroed},
    {"freed blocks are zeroed", freed_zeroed},
    {"a freed block is not handed out at once", not_reused_at_once},
    {"a freed Large mapping is not handed out again at once", large_not_reused},
    {"realloc always moves the block", realloc_moves},
    {"blocks are carved in a random order", random_order},
    {"a request of 1 MiB is a pool block", top_pool},
};

/* The child ended as the build promises for m, whose line (after the
 * child's "expect=") is e, len bytes, followed by what else it printed. */
static void check_case(const misuse_case_t *m, const child_t *c, const char *e, int len, int mode) {
  const char *rest = e + len + 1;
  int does = secure ? m->by_secure : m->by_default;
  char want[1200];
  if (does == FAULTS) {
    CHECKV("the process dies of SIGSEGV", WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGSEGV,
           "%s: status 0x%x, stderr: %.300s", m->name, c->status, c->err);
    want[0] = 0;
  } else if (does == GOES_ON) {
    CHECKV("the process goes on", exited_ok(c->status), "%s: status 0x%x, stderr: %.300s", m->name, c->status,
           c->err);
    want[0] = 0;
  } else if (m->inside || mode == 2) {
    snprintf(want, sizeof want, "%.*s\n", len, e);
    CHECKV("the process dies of SIGABRT", WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGABRT,
           "%s: status 0x%x, stderr: %.300s", m->name, c->status, c->err);
  } else {
    snprintf(want, sizeof want, "%.*s%s\n", mode == 0 ? 0 : len, e,
             mode == 1 ? "; ignored (further invalid pointers are counted, not reported)" : "");
    if (mode == 0) want[0] = 0;
    CHECKV("the process goes on", exited_ok(c->status), "%s: status 0x%x, stderr: %.300s", m->name, c->status,
           c->err);
  }
  CHECKV("stderr is exactly the message", strcmp(rest, want) == 0, "%s: got \"%s\", expected \"%s\"", m->name,
         rest, want);
}

int main(int argc, char **argv) {
  check_hakmem_is_malloc();
  secure = hak.version && strstr(hak.version(), "(secure build)") != NULL;
  const char *env = getenv("HAKMEM_INVALID_FREE");
  int mode = env ? atoi(env) : 2;
  static child_t c;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const misuse_case_t *m = &cases[i];
    if ((secure ? m->by_secure : m->by_default) == UNDEFINED) continue;
    if (!CHECK("child runs", run_child(m->fn, (void *)m->arg, &c, 60) == 0)) continue;
    const char *e = strncmp(c.err, "expect=", 7) == 0 ? c.err + 7 : NULL;
    const char *nl = e ? strchr(e, '\n') : NULL;
    if (!CHECKV("the child says what it expects", nl != NULL, "%s: status 0x%x, stderr: %.300s", m->name,
                c.status, c.err))
      continue;
    check_case(m, &c, e, (int)(nl - e), mode);
  }
  for (size_t i = 0; secure && i < sizeof properties / sizeof properties[0]; i++)
    if (CHECK("child runs", run_child(properties[i].fn, NULL, &c, 60) == 0))
      CHECKV(properties[i].name, exited_ok(c.status) && !c.err[0], "status 0x%x, stderr: %.300s", c.status,
             c.err);
  if (argc < 2) {
    const char *set[] = {"HAKMEM_INVALID_FREE=1", NULL};
    int ran = run_self("again", set, &c, 120);
    child_merge(set[0], ran, &c);
  }
  (void)argv;
  return th_done();
}
