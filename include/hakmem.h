/* hakmem — a general-purpose memory allocator for Linux x86-64.
 *
 * Loaded with LD_PRELOAD=libhakmem.so or linked with -lhakmem, hakmem replaces
 * malloc, free and the rest of the C allocation API. This header declares the
 * hak_* entry points, which work whether or not hakmem is the process malloc
 * (for example after dlopen), plus statistics and version queries. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAKMEM_VERSION_MAJOR 0
#define HAKMEM_VERSION_MINOR 1
#define HAKMEM_VERSION_PATCH 0

/* "hakmem 0.1.0" (a static string; " (secure build)", " (stats build)" or
 * " (profile build)" after it in those builds). */
const char *hak_version(void);

/* The allocation API; each behaves exactly like its C/POSIX namesake,
 * errno included (see README, "API behaviour"). */
void *hak_malloc(size_t size);
void hak_free(void *p);
void *hak_calloc(size_t n, size_t size);
void *hak_realloc(void *p, size_t size);
void *hak_aligned_alloc(size_t alignment, size_t size);
int hak_posix_memalign(void **out, size_t alignment, size_t size);
size_t hak_usable_size(const void *p);
/* Releases every free page to the OS now; returns 1 if any was released. */
int hak_trim(void);

/* Process-wide statistics. Counters are exact at the moment of the call for
 * this thread and for exited threads; other live threads' counters are
 * merged when they exit or call hak_stats_flush().
 *
 * Accounting identity: committed == in_use + slab_free + empty + metadata.
 * `unaccounted` is committed minus that sum: 0 whenever no other thread
 * changes the heap during the call (hak_stats takes every hakmem lock, so
 * only threads with their own heap can), and the debug build aborts if it
 * is not 0 then. peak_committed >= committed always. */
#define HAK_STATS_FIELDS(X)                                                                              \
  X(size_t, mapped, "bytes of address space hakmem has mapped")                                          \
  X(size_t, committed, "bytes mapped and possibly resident (not purged)")                                \
  X(size_t, large_committed, "the part of committed in Large mappings and BigCache")                     \
  X(size_t, in_use, "bytes in live blocks (block sizes, not requests; Large: from the block's start)")   \
  X(size_t, peak_committed, "high-water mark of committed")                                              \
  X(size_t, large_in_use, "bytes mapped for live Large blocks (own mappings)")                           \
  X(uint64_t, large_blocks, "live Large blocks")                                                         \
  X(size_t, bigcache_bytes, "bytes held in BigCache now")                                                \
  X(uint64_t, bigcache_hits, "Large requests served from BigCache")                                      \
  X(uint64_t, bigcache_misses, "Large requests that needed a new mapping")                               \
  X(uint64_t, superslabs, "SuperSlabs in existence")                                                     \
  X(uint64_t, slabs, "slabs carved out of SuperSlabs, live now")                                         \
  X(uint64_t, slabs_detached, "slabs detached (set aside while full, thread exit, fork)")                \
  X(uint64_t, slabs_adopted, "detached slabs claimed by an allocating thread")                           \
  X(uint64_t, purged, "bytes returned to the OS with madvise, total")                                    \
  X(uint64_t, unmapped, "bytes unmapped, total")                                                         \
  X(uint64_t, heaps, "thread heaps alive now")                                                           \
  X(uint64_t, invalid_frees, "frees of pointers hakmem did not hand out")                                \
  X(size_t, empty, "empty memory kept for reuse: spare slabs, free units not purged, resident BigCache") \
  X(size_t, room, "working room in force: empty memory a churning program may keep")                     \
  X(size_t, slab_free, "bytes of the other slabs (held by a thread or detached) in no live block")       \
  X(size_t, metadata, "SuperSlab headers, and each live Large mapping's bytes before its block")         \
  X(int64_t, unaccounted, "committed - (in_use + slab_free + empty + metadata)")                         \
  X(uint64_t, failed_size, "allocations failed: size over PTRDIFF_MAX")                                  \
  X(uint64_t, failed_overflow, "allocations failed: count times size overflows (calloc, reallocarray)")  \
  X(uint64_t, failed_align, "allocations failed: an alignment no address has")                           \
  X(uint64_t, failed_map, "allocations failed: the kernel refused a mapping (HAKMEM_TRACE=oom: which)")  \
  X(uint64_t, allocs, "allocations of slab blocks (counted by libhakmem-stats only; else 0)")            \
  X(uint64_t, frees, "frees of slab blocks (libhakmem-stats only)")                                      \
  X(uint64_t, misses, "slab allocations the fast path could not serve (each a refill)")                  \
  X(uint64_t, slow_frees, "frees of slab blocks that left the fast path")                                \
  X(uint64_t, remote_sent,                                                                               \
    "blocks freed into a slab the freeing thread did not hold (another's, or one set aside)")            \
  X(uint64_t, remote_received,                                                                           \
    "remote frees their holders took back (all: libhakmem-stats; else those merged)")                    \
  X(uint64_t, mmap_calls, "mmap calls (fresh mappings, and the secure build's discards)")                \
  X(uint64_t, mmap_bytes, "bytes they asked for")                                                        \
  X(uint64_t, munmap_calls, "munmap calls")                                                              \
  X(uint64_t, munmap_bytes, "bytes they gave back")                                                      \
  X(uint64_t, madvise_calls, "madvise calls (purges, huge-page requests)")                               \
  X(uint64_t, madvise_bytes, "bytes they covered")                                                       \
  X(uint64_t, mremap_calls, "mremap calls (Large blocks grown or moved; free SuperSlabs' pages)")        \
  X(uint64_t, mprotect_calls, "mprotect calls (the secure build's guard pages)")                         \
  X(uint64_t, syscall_ns, "nanoseconds spent in those calls")                                            \
  X(uint64_t, purged_reused, "bytes purged and handed out again: their pages fault in again as used")    \
  X(uint64_t, minor_faults, "the process's minor page faults so far (getrusage)")
typedef struct hak_stats {
#define HAK_STATS_MEMBER(type, name, desc) type name;
  HAK_STATS_FIELDS(HAK_STATS_MEMBER)
#undef HAK_STATS_MEMBER
} hak_stats_t;

/* Fills *out; returns 0. */
int hak_stats(hak_stats_t *out);
/* Merges the calling thread's counters into the process totals. */
void hak_stats_flush(void);
/* Writes a human-readable report (what malloc_stats prints) to fd. */
void hak_stats_print(int fd);
/* Writes the same figures as one JSON object, with per-size-class rows. */
void hak_stats_json(int fd);

/* With HAKMEM_PROFILE=1 in the profile build (libhakmem-profile): writes
 * the sampled heap profile (gperftools' heap_v2 format, for google-pprof or
 * pprof) to `path`, or with path NULL to HAKMEM_PROFILE_FILE.N
 * (hakmem.PID.heap.N by default), N counting from 1. Returns 0, or -1
 * with errno: EINVAL if the process is not profiling, else the error
 * opening the file. */
int hak_profile_dump(const char *path);

#ifdef __cplusplus
}
#endif
#endif
