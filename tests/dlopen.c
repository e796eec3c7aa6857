/* tests/dlopen.c — dlopen libhakmem.so into a running multi-threaded process.
 *
 * A glibc-linked program starts four threads that allocate with glibc, then
 * dlopens the library given as argv[1] (its one initial-exec TLS pointer must
 * fit the static TLS surplus of threads that already exist), looks up the
 * hak_* API and uses it from those threads and from two started after the
 * dlopen, handing blocks between threads. Every block is checked when freed.
 * Then dlclose, and the process carries on with glibc's malloc. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

enum { EARLY = 4, LATE = 2, SLOTS = 512 };

static atomic_int phase; /* 0: glibc malloc, 1: hak_*, 2: stop */
static _Atomic(void *) slot[SLOTS];
static atomic_long n_glibc_ops, n_hak_ops, n_bad;
static atomic_long hak_ops_of[EARLY + LATE + 1]; /* per thread */
static void *(*h_malloc)(size_t);
static void (*h_free)(void *);
static size_t (*h_usable)(const void *);

static void bad(const char *what, void *p, size_t size) {
  if (atomic_fetch_add(&n_bad, 1) < 5) CHECKV(what, 0, "block %p size %zu", p, size);
}

/* Blocks carry their size (xor address) in the first 8 bytes, then a
 * pattern. */
static void verify_free(void *q) {
  char *p = q;
  uint64_t v;
  memcpy(&v, p, 8);
  size_t size = (size_t)(v ^ (uint64_t)(uintptr_t)p);
  if (size < 16 || size > 256 * KiB || h_usable(p) < size ||
      pat_check(p + 8, size - 8, pat_seed(p, size)) != SIZE_MAX) {
    bad("a block handed between threads is intact", p, size);
    return;
  }
  h_free(p);
}

static void *worker(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 31337;
  long ops = 0;
  while (atomic_load(&phase) == 0) {
    size_t size = 1 + rng_next(&r) % 2000;
    void *p = malloc(size);
    if (!p) {
      bad("glibc malloc before dlopen", NULL, size);
      continue;
    }
    pat_fill(p, size, r);
    if (pat_check(p, size, r) != SIZE_MAX) bad("glibc block intact", p, size);
    free(p);
    ops++;
  }
  atomic_fetch_add(&n_glibc_ops, ops);
  ops = 0;
  while (atomic_load(&phase) == 1) {
    uint64_t x = rng_next(&r);
    size_t size = x % 50 == 0 ? 64 * KiB + x % (192 * KiB) : 16 + (x >> 8) % 4000;
    char *p = h_malloc(size);
    if (!p) {
      bad("hak_malloc after dlopen", NULL, size);
      continue;
    }
    uint64_t v = (uint64_t)size ^ (uint64_t)(uintptr_t)p;
    memcpy(p, &v, 8);
    pat_fill(p + 8, size - 8, pat_seed(p, size));
    void *old = atomic_exchange(&slot[x % SLOTS], p);
    if (old) verify_free(old);
    ops++;
  }
  atomic_fetch_add(&n_hak_ops, ops);
  atomic_store(&hak_ops_of[(uintptr_t)arg % (EARLY + LATE + 1)], ops);
  return NULL;
}

int main(int argc, char **argv) {
  if (!CHECK("usage: dlopen PATH-TO-libhakmem.so", argc == 2)) return th_done();
  pthread_t t[EARLY + LATE];
  for (int i = 0; i < EARLY; i++) pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  usleep(50 * 1000);

  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  CHECKV("dlopen of libhakmem.so into a threaded process succeeds", h != NULL, "%s", h ? "" : dlerror());
  const char *(*version)(void) = NULL;
  int (*stats)(hak_stats_t *) = NULL;
  if (h) {
    *(void **)&h_malloc = dlsym(h, "hak_malloc");
    *(void **)&h_free = dlsym(h, "hak_free");
    *(void **)&h_usable = dlsym(h, "hak_usable_size");
    *(void **)&version = dlsym(h, "hak_version");
    *(void **)&stats = dlsym(h, "hak_stats");
  }
  int have = h_malloc && h_free && h_usable && version && stats;
  CHECK("dlsym finds hak_malloc, hak_free, hak_usable_size, hak_version, hak_stats", have);
  if (have) CHECKV("hak_version() names hakmem", strncmp(version(), "hakmem ", 7) == 0, "\"%s\"", version());
  atomic_store(&phase, have ? 1 : 2);
  int n = EARLY;
  if (have) {
    for (int i = 0; i < LATE; i++) n += pthread_create(&t[n], NULL, worker, (void *)(uintptr_t)n) == 0;
    usleep(400 * 1000);
    atomic_store(&phase, 2);
  }
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  if (have) {
    for (int i = 0; i < SLOTS; i++) {
      void *q = atomic_exchange(&slot[i], NULL);
      if (q) verify_free(q);
    }
    hak_stats_t s;
    memset(&s, 0, sizeof s);
    stats(&s);
    CHECKV("every hak_malloc block was freed: in_use back to ~0", s.in_use <= 64 * KiB, "in_use %zu",
           s.in_use);
    int early_used = 1;
    for (int i = 0; i < EARLY; i++) early_used &= atomic_load(&hak_ops_of[i]) > 0;
    CHECK("threads started before the dlopen used hak_*", early_used);
    CHECKV("threads started after the dlopen ran", n == EARLY + LATE, "%d threads", n);
  }
  CHECKV("glibc malloc ran before the dlopen", atomic_load(&n_glibc_ops) > 0, "%ld ops",
         atomic_load(&n_glibc_ops));
  CHECKV("hak_* ran in several threads after the dlopen", atomic_load(&n_hak_ops) > 1000, "%ld ops",
         atomic_load(&n_hak_ops));
  CHECKV("no block damaged", atomic_load(&n_bad) == 0, "%ld", atomic_load(&n_bad));
  if (h) CHECK("dlclose succeeds", dlclose(h) == 0);
  /* The process carries on: glibc's malloc, and a new thread. */
  void *p = malloc(100000);
  CHECK("malloc works after dlclose", p != NULL);
  free(p);
  atomic_store(&phase, 0);
  pthread_t late;
  int ok = pthread_create(&late, NULL, worker, (void *)(uintptr_t)(EARLY + LATE)) == 0;
  usleep(10 * 1000);
  atomic_store(&phase, 2);
  if (ok) pthread_join(late, NULL);
  CHECK("a thread started after dlclose runs and exits", ok);
  return th_done();
}
