/* tests/fork.c — fork while other threads allocate.
 *
 * Four threads allocate, swap and free blocks (16 B..4 MiB) through a shared
 * array without pause while the main thread forks 120 times. Each child
 * frees blocks inherited from the (now absent) threads, mallocs and frees
 * blocks of many sizes, runs a thread of its own, sometimes forks again, and
 * exits 0 when every check held; a deadlock is ended by alarm(). The parent
 * checks every child's exit status and keeps allocating in between. */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

enum { SLOTS = 1024, THREADS = 4, FORKS = 120 };

static _Atomic(void *) slot[SLOTS];
static atomic_int stop;
static atomic_long n_ops, n_bad;

/* 1 if a block_make block is intact (and as large as malloc_usable_size
 * says); with `release`, an intact block is freed. */
static int verify(void *q, int release) {
  size_t size;
  int ok = block_intact(q, 8 * MiB, &size) && malloc_usable_size(q) >= size;
  if (ok && release) free(q);
  return ok;
}

static size_t pick(uint64_t x) {
  unsigned r = (unsigned)(x % 100);
  x >>= 8;
  if (r < 70) return 16 + x % 1024;
  if (r < 99) return 1024 + x % (64 * KiB);
  return 1 * MiB + x % (3 * MiB); /* Large: mappings, BigCache, their locks */
}

static void *allocator(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg * 7919;
  long ops = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    uint64_t x = rng_next(&r);
    size_t size = pick(x >> 10);
    void *p = block_make(size);
    if (!p) {
      atomic_fetch_add(&n_bad, 1);
      continue;
    }
    unsigned i = (unsigned)(x % SLOTS);
    void *old = atomic_exchange(&slot[i], p);
    if (old && !verify(old, 1)) atomic_fetch_add(&n_bad, 1);
    ops++;
  }
  atomic_fetch_add(&n_ops, ops);
  return NULL;
}

/* ---- the child ----------------------------------------------------------- */
static void *child_thread(void *arg) {
  void **inherited = arg;
  long bad = 0;
  for (int i = 0; i < 8; i++)
    if (inherited[i] && !verify(inherited[i], 1)) bad++;
  void *p[64];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 64; i++) p[i] = block_make(16 + (size_t)(i * 997 + round * 131) % (48 * KiB));
    for (int i = 0; i < 64; i++)
      if (!p[i] || !verify(p[i], 1)) bad++;
  }
  return (void *)bad;
}

static int child_main(int depth) {
  int code = 0;
  /* Blocks that the parent's threads left: their heaps no longer exist. */
  void *inherited[8] = {0};
  int took = 0;
  for (int i = 0; i < SLOTS && took < 40; i += 7) {
    void *q = atomic_exchange(&slot[i], NULL);
    if (!q) continue;
    if (took < 8) inherited[took] = q;
    else if (!verify(q, 1)) code |= 1;
    took++;
  }
  static const size_t sizes[] = {1,    16,       48,        100,       512,     1024,   3000,
                                 8192, 32 * KiB, 100 * KiB, 700 * KiB, 2 * MiB, 5 * MiB};
  void *p[sizeof sizes / sizeof sizes[0]];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (!(p[i] = block_make(sizes[i]))) code |= 2;
  void *z = calloc(1000, 10);
  if (!z || !all_bytes(z, 10000, 0)) code |= 4;
  free(z);
  /* A thread in the child; it also frees blocks the child took over. */
  pthread_t t;
  void *res = (void *)1;
  if (pthread_create(&t, NULL, child_thread, inherited) != 0 || pthread_join(t, &res) != 0 || res != NULL)
    code |= 8;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    if (p[i] && !verify(p[i], 1)) code |= 16;
  if (depth == 0) { /* a grandchild, from a process whose only thread is this one */
    fflush(NULL);
    pid_t g = fork();
    if (g == 0) exit(child_main(1));
    int st = 0;
    if (g < 0 || waitpid(g, &st, 0) != g || !exited_ok(st)) code |= 32;
  }
  return code;
}

int main(void) {
  check_hakmem_is_malloc();
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, allocator, (void *)(uintptr_t)(i + 1));

  int ok_children = 0, ok_parent = 1;
  uint64_t r = 99;
  for (int k = 0; k < FORKS; k++) {
    /* The parent keeps allocating between forks. */
    void *mine[32];
    for (int i = 0; i < 32; i++) mine[i] = block_make(pick(rng_next(&r)) % (256 * KiB));
    usleep((useconds_t)(rng_next(&r) % 3000));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(30);
      exit(child_main(k % 10 == 0 ? 0 : 1));
    }
    for (int i = 0; i < 32; i++)
      if (!mine[i] || !verify(mine[i], 1)) ok_parent = 0;
    int st = 0;
    if (!CHECKV("fork succeeds", pid > 0, "fork %d", k)) continue;
    waitpid(pid, &st, 0);
    if (exited_ok(st)) ok_children++;
    else if (WIFEXITED(st)) CHECKV("child exits 0", 0, "fork %d: exit code %d", k, WEXITSTATUS(st));
    else
      CHECKV("child exits 0", 0, "fork %d: killed by signal %d%s", k, WTERMSIG(st),
             WTERMSIG(st) == SIGALRM ? " (deadlock: alarm after 30 s)" : "");
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  long ops = atomic_load(&n_ops);
  for (int i = 0; i < SLOTS; i++) {
    void *q = atomic_exchange(&slot[i], NULL);
    if (q && !verify(q, 1)) atomic_fetch_add(&n_bad, 1);
  }
  CHECKV("every child exited 0", ok_children == FORKS, "%d of %d", ok_children, FORKS);
  CHECK("the parent's own blocks stayed intact across forks", ok_parent);
  CHECKV("the allocating threads' blocks stayed intact", atomic_load(&n_bad) == 0, "%ld bad",
         atomic_load(&n_bad));
  CHECKV("the threads kept allocating while the parent forked", ops > 1000, "%ld operations", ops);
  void *p = malloc(12345);
  CHECK("the parent still allocates after the forks", p && malloc_usable_size(p) >= 12345);
  free(p);
  return th_done();
}
