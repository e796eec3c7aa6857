/* tests/stress.c — many threads on few cores hand blocks to each other.
 *
 * Ten threads at a time (on 2 cores) swap blocks into a shared array by
 * atomic exchange and free what they take out, so most frees are remote.
 * Threads end after a few thousand operations and new ones start while their
 * blocks live on in the array. Every block is filled with a pattern derived
 * from its address and size and checked when it is freed or reallocated.
 * Sizes are mostly 1 B..32 KiB, some up to 2 MiB. Runs for STRESS_SECONDS
 * (default 2). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

enum { SLOTS = 4096, LIVE = 10, OPS_PER_THREAD = 4000, BIG_TAG = 0xFFFF };

static _Atomic uint64_t slot[SLOTS];
static atomic_int stop;
static atomic_long n_ops, n_corrupt, n_null, n_misaligned, n_usable, n_calloc;
static uint64_t seed_base;

/* A slot holds a tagged pointer: the block's address in the low 48 bits and
 * its size in the top 16; blocks of BIG_TAG bytes or more keep their size
 * (xor their address) in their first 8 bytes instead. */
static size_t hdr_of(size_t size) { return size >= BIG_TAG ? 8 : 0; }

static size_t pick_size(uint64_t x) {
  unsigned r = (unsigned)(x % 1000);
  x >>= 10;
  if (r < 550) return 1 + x % 256;
  if (r < 850) return 257 + x % (4096 - 256);
  if (r < 985) return 4097 + x % (32 * KiB - 4096);
  size_t base = (size_t)32 * KiB << (x % 6); /* 32 KiB .. 1 MiB */
  return base + (x >> 3) % base;             /* .. 2 MiB */
}

static void report(atomic_long *counter, const char *what, void *p, size_t size, size_t off) {
  if (atomic_fetch_add(counter, 1) < 5) CHECKV(what, 0, "block %p size %zu offset %zu", p, size, off);
}

static void init_block(void *p, size_t size) {
  size_t h = hdr_of(size);
  if (h) {
    uint64_t v = (uint64_t)size ^ (uint64_t)(uintptr_t)p;
    memcpy(p, &v, 8);
  }
  pat_fill((char *)p + h, size - h, pat_seed(p, size));
}

static uint64_t tag_of(void *p, size_t size) {
  return (uint64_t)(uintptr_t)p | (uint64_t)(size >= BIG_TAG ? BIG_TAG : size) << 48;
}

/* Decodes a tag; checks the block's header, usable size and pattern.
 * Returns 0 when the block is damaged. */
static int check_block(uint64_t tag, void **pp, size_t *psize) {
  void *p = (void *)(uintptr_t)(tag & (((uint64_t)1 << 48) - 1));
  size_t size = (size_t)(tag >> 48);
  if (size == BIG_TAG) {
    uint64_t v;
    memcpy(&v, p, 8);
    size = (size_t)(v ^ (uint64_t)(uintptr_t)p);
    if (size < BIG_TAG || size > 4 * MiB) {
      report(&n_corrupt, "large block header intact", p, size, 0);
      return 0;
    }
  }
  *pp = p;
  *psize = size;
  if (malloc_usable_size(p) < size)
    report(&n_usable, "usable size >= request for the block's life", p, size, 0);
  size_t h = hdr_of(size);
  size_t off = pat_check((char *)p + h, size - h, pat_seed(p, size));
  if (off != SIZE_MAX) {
    report(&n_corrupt, "block pattern intact when freed", p, size, off + h);
    return 0;
  }
  return 1;
}

static void *alloc_block(uint64_t x, size_t size) {
  void *p;
  switch ((x >> 40) % 8) {
    case 5:
      p = calloc(1, size);
      if (p && !all_bytes(p, size, 0)) report(&n_calloc, "calloc block is zeroed", p, size, 0);
      break;
    case 6:
      p = aligned_alloc((size_t)64 << ((x >> 50) % 5), size);
      break;
    case 7:
      if (posix_memalign(&p, (size_t)16 << ((x >> 50) % 5), size) != 0) p = NULL;
      break;
    default:
      p = malloc(size);
  }
  if (!p) {
    report(&n_null, "allocation succeeds", NULL, size, 0);
    return NULL;
  }
  if ((uintptr_t)p % 16 && size > 8)
    report(&n_misaligned, "blocks > 8 bytes are 16-byte aligned", p, size, 0);
  if ((uintptr_t)p >> 47) report(&n_corrupt, "pointer below 2^47", p, size, 0);
  init_block(p, size);
  return p;
}

static void free_block(uint64_t tag) {
  void *p;
  size_t size;
  if (check_block(tag, &p, &size)) free(p); /* a damaged block is leaked rather than freed */
}

static void *worker(void *arg) {
  uint64_t r = seed_base ^ (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL;
  long ops = 0;
  for (; ops < OPS_PER_THREAD && !atomic_load_explicit(&stop, memory_order_relaxed); ops++) {
    uint64_t x = rng_next(&r);
    unsigned i = (unsigned)(x % SLOTS);
    unsigned kind = (unsigned)((x >> 12) % 16);
    if (kind <= 10) { /* swap a new block in, free what was there */
      size_t size = pick_size(rng_next(&r));
      void *p = alloc_block(x, size);
      if (!p) continue;
      uint64_t old = atomic_exchange(&slot[i], tag_of(p, size));
      if (old) free_block(old);
    } else if (kind <= 12) { /* realloc a block taken out of the array */
      uint64_t old = atomic_exchange(&slot[i], 0);
      void *p;
      size_t size;
      if (!old || !check_block(old, &p, &size)) continue;
      size_t ns = pick_size(rng_next(&r));
      if (ns < 8) ns = 8;
      void *q = realloc(p, ns);
      if (!q) {
        report(&n_null, "realloc succeeds", p, ns, 0);
        free(p);
        continue;
      }
      size_t keep = size < ns ? size : ns, h = hdr_of(size);
      if (keep > h) {
        size_t off = pat_check((char *)q + h, keep - h, pat_seed(p, size));
        if (off != SIZE_MAX) report(&n_corrupt, "realloc keeps the contents", q, ns, off + h);
      }
      init_block(q, ns);
      uint64_t displaced = atomic_exchange(&slot[i], tag_of(q, ns));
      if (displaced) free_block(displaced);
    } else if (kind == 13) { /* leave a hole */
      uint64_t old = atomic_exchange(&slot[i], 0);
      if (old) free_block(old);
    } else { /* a local burst, freed in reverse order by this thread */
      enum { B = 24 };
      uint64_t local[B];
      size_t cap = (x >> 20) % 2 ? 512 : 8192;
      int n = 0;
      for (int k = 0; k < B; k++) {
        size_t size = 1 + rng_next(&r) % cap;
        void *p = alloc_block(rng_next(&r), size);
        if (p) local[n++] = tag_of(p, size);
      }
      while (n > 0) free_block(local[--n]);
    }
  }
  atomic_fetch_add(&n_ops, ops);
  return NULL;
}

int main(void) {
  double seconds = 2.0;
  const char *e = getenv("STRESS_SECONDS");
  if (e && atof(e) > 0) seconds = atof(e);
  seed_base = (uint64_t)time(NULL);
  int have_hak = check_hakmem_is_malloc();
  hak_stats_t s0;
  memset(&s0, 0, sizeof s0);
  if (have_hak) hak.stats(&s0);

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * KiB);
  pthread_t t[LIVE];
  uintptr_t id = 0;
  int started = 0;
  for (int k = 0; k < LIVE; k++) started += pthread_create(&t[k], &attr, worker, (void *)++id) == 0;
  CHECKV("at least 8 threads run at once", started >= 8, "%d started", started);
  double deadline = now_s() + seconds;
  long created = started, joined = 0;
  int live[LIVE];
  for (int k = 0; k < LIVE; k++) live[k] = k < started;
  for (int k = 0;; k = (k + 1) % LIVE) {
    int any = 0;
    for (int j = 0; j < LIVE; j++) any |= live[j];
    if (!any) break;
    if (!live[k]) continue;
    pthread_join(t[k], NULL);
    joined++;
    live[k] = 0;
    /* Until the deadline, and at least three generations of threads
     * however slowly a loaded machine runs them. */
    if (now_s() < deadline || created < 3 * LIVE) {
      if (pthread_create(&t[k], &attr, worker, (void *)++id) == 0) {
        live[k] = 1;
        created++;
      }
    } else {
      atomic_store(&stop, 1);
    }
  }
  pthread_attr_destroy(&attr);

  /* Blocks of long-gone threads are freed here by the main thread. */
  long left = 0;
  for (int i = 0; i < SLOTS; i++) {
    uint64_t old = atomic_exchange(&slot[i], 0);
    if (old) {
      free_block(old);
      left++;
    }
  }
  CHECKV("no block corrupted", atomic_load(&n_corrupt) == 0, "%ld", atomic_load(&n_corrupt));
  CHECKV("no allocation failed", atomic_load(&n_null) == 0, "%ld", atomic_load(&n_null));
  CHECKV("no misaligned block", atomic_load(&n_misaligned) == 0, "%ld", atomic_load(&n_misaligned));
  CHECKV("usable size never below the request", atomic_load(&n_usable) == 0, "%ld", atomic_load(&n_usable));
  CHECKV("calloc blocks always zeroed", atomic_load(&n_calloc) == 0, "%ld", atomic_load(&n_calloc));
  CHECKV("threads ended and were replaced", created >= 3 * LIVE && joined == created,
         "%ld created, %ld joined", created, joined);
  CHECKV("enough operations ran", atomic_load(&n_ops) >= 20000, "%ld", atomic_load(&n_ops));
  CHECKV("blocks outlived their threads", left > SLOTS / 4, "%ld left in the array", left);
  if (have_hak) {
    hak_stats_t s1;
    hak.stats(&s1);
    /* The secure build's main thread holds its last frees back (its
     * quarantine, HAKMEM_QUARANTINE_KB): they count as in use. */
    const char *q = getenv("HAKMEM_QUARANTINE_KB");
    size_t held = strstr(hak.version(), " (secure build)") ? (q ? (size_t)atol(q) : 512) * KiB : 0;
    CHECKV("all blocks freed: in_use back to its start", s1.in_use <= s0.in_use + 64 * KiB + held,
           "in_use %zu -> %zu", s0.in_use, s1.in_use);
    CHECKV("heaps of exited threads are gone", s1.heaps <= 2, "%llu heaps", (unsigned long long)s1.heaps);
    CHECKV("exiting threads detached slabs", s1.slabs_detached > s0.slabs_detached, "%llu",
           (unsigned long long)s1.slabs_detached);
    CHECKV("new threads adopted detached slabs", s1.slabs_adopted > s0.slabs_adopted, "%llu",
           (unsigned long long)s1.slabs_adopted);
  }
  printf("stress: %ld threads, %ld operations in %.1f s\n", created, atomic_load(&n_ops), seconds);
  return th_done();
}
