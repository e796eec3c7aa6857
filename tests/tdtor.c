/* tests/tdtor.c — malloc after a thread's own teardown, and at exit.
 *
 * The test's pthread key is created after hakmem's, and its destructor sets
 * the key again so it runs in later destructor rounds too: in every round but
 * possibly the first, hakmem's own destructor has already torn the thread's
 * heap down. There the destructor frees blocks the thread allocated,
 * allocates and frees many blocks of all sizes, and hands blocks to the main
 * thread. Half the threads never call malloc before their destructors.
 * An atexit handler allocates and frees after main has returned, and prints
 * the closing line. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

enum { THREADS = 40, AT_ONCE = 2, ROUNDS = 3, OWN = 8 };

typedef struct {
  int id, round;
  void *own[OWN]; /* blocks the thread allocated before its teardown */
  size_t own_size[OWN];
} ctx_t;

static pthread_key_t key;
static atomic_long n_calls, n_bad;
static _Atomic(void *) handed[THREADS * ROUNDS];
static void *main_block; /* allocated in main, freed by the atexit handler */
static hak_stats_t s_start;
static int have_hak;

static void bad(const char *what, int id, int round) {
  if (atomic_fetch_add(&n_bad, 1) < 5) CHECKV(what, 0, "thread %d, destructor round %d", id, round);
}

/* Allocates, checks and frees blocks of many sizes; returns 0 on damage. */
static int workout(uint64_t seed, int n) {
  int ok = 1;
  for (int i = 0; i < n; i++) {
    uint64_t x = rng_next(&seed);
    size_t size = i % 25 == 24 ? 2 * MiB : 1 + x % (i % 2 ? 512 : 64 * KiB);
    void *p = i % 5 == 0 ? calloc(1, size) : malloc(size);
    if (!p) return 0;
    if (i % 5 == 0 && !all_bytes(p, size, 0)) ok = 0;
    pat_fill(p, size, x);
    void *q = realloc(p, size + 100);
    if (!q) {
      free(p);
      return 0;
    }
    if (pat_check(q, size, x) != SIZE_MAX) ok = 0;
    free(q);
  }
  return ok;
}

static void dtor(void *v) {
  ctx_t *c = v;
  atomic_fetch_add(&n_calls, 1);
  for (int i = 0; i < OWN; i++) {
    if (!c->own[i]) continue;
    if (pat_check(c->own[i], c->own_size[i], (uint64_t)c->id * 100 + (uint64_t)i) != SIZE_MAX)
      bad("the thread's blocks are intact in its destructor", c->id, c->round);
    free(c->own[i]);
    c->own[i] = NULL;
  }
  if (!workout((uint64_t)c->id * 1000 + (uint64_t)c->round, 150))
    bad("malloc/realloc/free work in a destructor after teardown", c->id, c->round);
  /* Blocks allocated now outlive the thread: the main thread frees them. */
  size_t hs = 100 + (size_t)c->id * 10 + (size_t)c->round;
  void *h = malloc(hs);
  if (h) {
    pat_fill(h, hs, hs);
    atomic_store(&handed[c->id * ROUNDS + c->round], h);
  } else {
    bad("malloc works in a destructor after teardown", c->id, c->round);
  }
  /* Blocks allocated before teardown come back once more. */
  if (c->round == 0)
    for (int i = 0; i < OWN; i += 2) {
      c->own_size[i] = 1 + (size_t)i * 300;
      c->own[i] = malloc(c->own_size[i]);
      if (c->own[i]) pat_fill(c->own[i], c->own_size[i], (uint64_t)c->id * 100 + (uint64_t)i);
    }
  if (++c->round < ROUNDS) {
    if (pthread_setspecific(key, c) != 0) bad("pthread_setspecific in a destructor", c->id, c->round);
  } else {
    free(c); /* allocated by the main thread */
  }
}

static void *thread_main(void *arg) {
  ctx_t *c = arg;
  if (c->id % 2 == 0) /* the other half never calls malloc before teardown */
    for (int i = 0; i < OWN; i++) {
      c->own_size[i] = 1 + (size_t)i * 1000;
      c->own[i] = malloc(c->own_size[i]);
      if (c->own[i]) pat_fill(c->own[i], c->own_size[i], (uint64_t)c->id * 100 + (uint64_t)i);
    }
  pthread_setspecific(key, c);
  return NULL;
}

static void at_exit_handler(void) {
  CHECK("main's block is intact in the atexit handler",
        main_block && pat_check(main_block, 5000, 5) == SIZE_MAX);
  free(main_block);
  CHECK("malloc/realloc/free work in an atexit handler", workout(777, 300));
  void *p = malloc(3 * MiB);
  CHECK("a Large block can be allocated in an atexit handler",
        p && (memset(p, 1, 3 * MiB), all_bytes(p, 3 * MiB, 1)));
  free(p);
  if (have_hak) {
    hak_stats_t s;
    hak.stats(&s);
    CHECKV("heaps of exited threads are gone", s.heaps <= 2, "%llu", (unsigned long long)s.heaps);
    CHECKV("every block freed: in_use back to its start", s.in_use <= s_start.in_use + 64 * KiB,
           "in_use %zu -> %zu", s_start.in_use, s.in_use);
  }
  int rc = th_done();
  if (rc) _exit(rc);
}

int main(void) {
  have_hak = hak_load();
  CHECK("hakmem is the process malloc", have_hak && hakmem_is_malloc());
  /* hakmem is initialised by now, so its key precedes this one. */
  CHECK("pthread_key_create", pthread_key_create(&key, dtor) == 0);
  if (have_hak) hak.stats(&s_start);
  atexit(at_exit_handler);
  main_block = malloc(5000);
  if (main_block) pat_fill(main_block, 5000, 5);

  for (int base = 0; base < THREADS; base += AT_ONCE) {
    pthread_t t[AT_ONCE];
    int n = 0;
    for (int k = 0; k < AT_ONCE && base + k < THREADS; k++) {
      ctx_t *c = calloc(1, sizeof *c);
      c->id = base + k;
      if (pthread_create(&t[n], NULL, thread_main, c) == 0) n++;
      else free(c);
    }
    for (int k = 0; k < n; k++) pthread_join(t[k], NULL);
  }
  CHECKV("every destructor round ran", atomic_load(&n_calls) == THREADS * ROUNDS, "%ld of %d",
         atomic_load(&n_calls), THREADS * ROUNDS);
  CHECKV("nothing went wrong in destructors", atomic_load(&n_bad) == 0, "%ld", atomic_load(&n_bad));
  int ok = 1, all = 1;
  for (int i = 0; i < THREADS * ROUNDS; i++) {
    void *h = atomic_exchange(&handed[i], NULL);
    if (!h) {
      all = 0;
      continue;
    }
    size_t hs = 100 + (size_t)(i / ROUNDS) * 10 + (size_t)(i % ROUNDS);
    if (pat_check(h, hs, hs) != SIZE_MAX || malloc_usable_size(h) < hs) ok = 0;
    free(h);
  }
  CHECK("every destructor handed a block over", all);
  CHECK("blocks allocated after teardown are intact in another thread", ok);
  return 0; /* the atexit handler prints the closing line */
}
