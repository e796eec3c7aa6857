/* tests/misuse.c — death tests: each misuse of the heap that hakmem can
 * prove (double frees in every tier, pointers that are not the start of a
 * live block) runs in a child process, which must die of SIGABRT after
 * printing exactly one line on stderr. The child writes the line it
 * expects first ("expect=LINE"), then does the one wrong thing; the parent
 * compares. Cases hakmem cannot catch in this build are run too, and must
 * let the program go on (README lists them).
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
static int double_now(size_t size) {
  char *p = malloc(size);
  memset(p, 1, size);
  expect_double("free", p, malloc_usable_size(p));
  free(p);
  free(LAUNDER(p));
  return 0;
}
static int double_small(void *arg) { return (void)arg, double_now(48); }
static int double_mid(void *arg) { return (void)arg, double_now(4096); }
static int double_pool(void *arg) { return (void)arg, double_now(256 << 10); }
static int double_large(void *arg) { return (void)arg, double_now(4 << 20); }

/* Freed, then many other blocks come and go, then freed again. */
static int double_delayed(void *arg) {
  (void)arg;
  char *p = malloc(100);
  expect_double("free", p, malloc_usable_size(p));
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
  expect_double("free", p, 80);
  free(LAUNDER(p));
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

/* Two neighbouring 48-byte blocks lo, hi: a pointer just before hi. */
static int invalid_close(void *arg) {
  (void)arg;
  char *a = malloc(48), *b = malloc(48);
  char *lo = a < b ? a : b, *hi = a < b ? b : a;
  if (hi - lo != 48) return 97;
  expect_inside("free", hi - 16, lo, 48);
  free(LAUNDER((void *)(hi - 16)));
  return 0;
}

/* free(p + off) for a block p of `size`. */
static int inside(size_t size, size_t off) {
  char *p = malloc(size);
  expect_inside("free", p + off, p, malloc_usable_size(p));
  free(LAUNDER((void *)(p + off)));
  return 0;
}
static int invalid_unaligned(void *arg) { return (void)arg, inside(48, 1); }
static int invalid_interior(void *arg) { return (void)arg, inside(200, 64); }
static int invalid_interior_mid(void *arg) { return (void)arg, inside(5000, 4096); }
static int invalid_interior_large(void *arg) { return (void)arg, inside(3 << 20, 4096); }

/* Past the blocks carved so far in a slab: memory of hakmem's that holds
 * no block yet. */
static int invalid_uncarved(void *arg) {
  (void)arg;
  char *p = malloc(1024 - 16);
  char *q = p + 30 * 1008;
  expect("hakmem: free(): invalid pointer %p: in hakmem's memory, but in no live block", (void *)q);
  free(LAUNDER((void *)q));
  return 0;
}

static int invalid_usable(void *arg) {
  (void)arg;
  char *p = malloc(48);
  expect_inside("malloc_usable_size", p + 8, p, 48);
  return (int)malloc_usable_size(LAUNDER((void *)(p + 8)));
}

/* What this build cannot catch: a free of a block that was handed out
 * again (to the program it is the new block). */
static int uncaught_after_reuse(void *arg) {
  (void)arg;
  void *p = malloc(48);
  free(p);
  void *q = malloc(48);
  free(LAUNDER(p));
  return q == p ? 0 : 96;
}

typedef struct {
  const char *name;
  int (*fn)(void *);
  int inside; /* in hakmem's memory: aborts whatever HAKMEM_INVALID_FREE says */
} misuse_case_t;

static const misuse_case_t cases[] = {
    {"double free, 48 bytes", double_small, 1},
    {"double free, 4 KiB", double_mid, 1},
    {"double free, 256 KiB", double_pool, 1},
    {"double free, 4 MiB", double_large, 1},
    {"double free after other frees", double_delayed, 1},
    {"double free interleaved", double_interleaved, 1},
    {"double free, slab not current", double_partial, 1},
    {"double free, first free by another thread", double_remote, 1},
    {"realloc of a freed block", double_realloc, 1},
    {"free of a stack address", invalid_stack, 0},
    {"free of an alloca block", invalid_alloca, 0},
    {"free of a far address", invalid_far, 0},
    {"free of a wild address", invalid_wild, 0},
    {"free close to a block", invalid_close, 1},
    {"free of an unaligned pointer", invalid_unaligned, 1},
    {"free of an interior pointer", invalid_interior, 1},
    {"free of an interior pointer, Mid", invalid_interior_mid, 1},
    {"free of an interior pointer, Large", invalid_interior_large, 1},
    {"free of memory with no block", invalid_uncarved, 1},
    {"malloc_usable_size of an interior pointer", invalid_usable, 1},
};

int main(int argc, char **argv) {
  check_hakmem_is_malloc();
  const char *env = getenv("HAKMEM_INVALID_FREE");
  int mode = env ? atoi(env) : 2;
  static child_t c;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const misuse_case_t *m = &cases[i];
    if (!CHECK("child runs", run_child(m->fn, NULL, &c, 60) == 0)) continue;
    const char *e = strncmp(c.err, "expect=", 7) == 0 ? c.err + 7 : NULL;
    const char *nl = e ? strchr(e, '\n') : NULL;
    if (!CHECKV("the child says what it expects", nl != NULL, "%s: status 0x%x, stderr: %.300s", m->name,
                c.status, c.err))
      continue;
    int len = (int)(nl - e);
    char want[1200];
    if (m->inside || mode == 2) {
      snprintf(want, sizeof want, "%.*s\n", len, e);
      CHECKV("the process dies of SIGABRT", WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGABRT,
             "%s: status 0x%x, stderr: %.300s", m->name, c.status, c.err);
    } else {
      snprintf(want, sizeof want, "%.*s%s\n", len, e,
               mode == 1 ? "; ignored (further invalid pointers are counted, not reported)" : "");
      CHECKV("the process goes on", exited_ok(c.status), "%s: status 0x%x, stderr: %.300s", m->name, c.status,
             c.err);
    }
    if (mode == 0 && !m->inside) want[0] = 0;
    CHECKV("stderr is exactly the message", strcmp(nl + 1, want) == 0, "%s: got \"%s\", expected \"%s\"",
           m->name, nl + 1, want);
  }
  if (CHECK("child runs", run_child(uncaught_after_reuse, NULL, &c, 60) == 0))
    CHECKV("a free of a block handed out again is a free of the new block", exited_ok(c.status) && !c.err[0],
           "status 0x%x, stderr: %.300s", c.status, c.err);
  if (argc < 2) {
    const char *set[] = {"HAKMEM_INVALID_FREE=1", NULL};
    int ran = run_self("again", set, &c, 120);
    child_merge(set[0], ran, &c);
  }
  (void)argv;
  return th_done();
}
