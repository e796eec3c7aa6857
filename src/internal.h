/* internal.h — hakmem's one internal header: the types the files share,
 * with their invariants, and every _hak_ function shared between files, in
 * sections by the file that defines them, in the order of the layers. It
 * ends with heap.h (the heap and the layers above it) and budget.h.
 *
 * src/README.md lists the layers (bottom up: a file calls only files
 * below it) and defines the verbs for slabs changing hands.
 *
 * Map of the main types:
 *   hak_superslab_t  2 MiB region aligned to 2 MiB; its first page is the
 *                    header (which slab each 64 KiB unit belongs to, and one
 *                    descriptor per unit), the rest holds blocks. Carved
 *                    from 64 MiB reservations.
 *   hak_slab_t       a slab is a run of units holding blocks of one class,
 *                    described by the descriptor of its first unit.
 *   hak_front_t      what the fast paths read from a heap: owner key, and
 *                    per class the free-list head and the current slab.
 *   hak_heap_t       a thread's heap: a hak_front_t plus the slabs it holds.
 *   hak_block_t      a free block; its first word links the list it is on.
 *   chunk map        one byte per 2 MiB of the 47-bit address space; marks
 *                    the chunks that start a SuperSlab or a Large mapping.
 *
 * Invariants (checked by the debug build after every slow-path step):
 *   I1  header(p) = (p - 1) rounded down to 2 MiB, for every block p.
 *   I2  for a slab s held by heap h, with F the number of blocks of s on
 *       h's list of its class (blocks of the current slab, and at most one
 *       block of another slab, freed when the list was empty):
 *         s.used + |s.local_free| == s.carved <= s.capacity
 *         |s.thread_free| + F <= s.used
 *       (used counts blocks with the program, in the heap's list and on
 *       thread_free), and every block on these lists lies in s at a block
 *       boundary.
 *   I3  a slab is held by exactly one heap (owner = that heap's key, the
 *       thread_free word has HAK_DETACHED clear), or detached (owner = 0,
 *       or the key | HAK_SET_ASIDE of the heap that set it aside while
 *       full; HAK_DETACHED set), or transiently claimed by one thread
 *       (HAK_DETACHED clear) which then holds it, releases it or detaches
 *       it again: only an allocating heap, or a free by the heap that set
 *       it aside, holds it. A detached slab with free space is on its
 *       class's abandoned list. A heap holds, per class, its current slab
 *       and partial slabs, and empty Tiny/Mid spare slabs of any class, by
 *       size. Exception: a pool run of one block is held by no heap while
 *       its block is out (owner = 0, thread_free empty, on no list); the
 *       free of that block gives the run back. So is the one-block run of
 *       a sampled block (HAKMEM_PROFILE, any class) and, once that block
 *       is freed, of a Tiny or Mid sample kept for the next samples
 *       (heap.c: owner 0, no block carved).
 *   I4  ss.free_units and the slabs of a SuperSlab partition its 32 units
 *       (a slab on its remote list is one of them until its owner takes it
 *       back); dirty_units is a subset of free_units. A SuperSlab is shared
 *       (its units change under _hak_ss_lock) or owned by one heap's pool
 *       for its pool runs (only the owner's thread changes them, with no
 *       lock), and an owned SuperSlab holds only runs its pool took.
 *   I5  committed == in_use + slab_free + empty + metadata (hak_stats_t),
 *       and the budget's totals (used, empty) agree with the unit maps,
 *       whenever no other heap is live (stats.c checks it). */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"
#include "options.h"
#include "size_class.h"

#ifndef HAK_DEBUG
#define HAK_DEBUG 0
#endif
static const bool hak_cfg_debug = HAK_DEBUG;
/* The secure build (libhakmem-secure): encoded free-list links, a canary
 * after every block's requested size, freed blocks zeroed and held back
 * (the quarantine), guard pages, randomized carving (secure.c); HAK_SECURE
 * is 0 unless the Makefile sets it (size_class.h). */
static const bool hak_cfg_secure = HAK_SECURE;
/* The stats build (libhakmem-stats): the fast paths count every
 * allocation and free per size class (a few instructions more each). */
#ifndef HAK_STATS_BUILD
#define HAK_STATS_BUILD 0
#endif
static const bool hak_cfg_stats = HAK_STATS_BUILD;
/* The profile build (libhakmem-profile): malloc's fast path counts down
 * the bytes each thread allocates, so that HAKMEM_PROFILE can sample every
 * allocation alike (one subtraction and one branch each; heap.c). The
 * other builds do not sample. */
#ifndef HAK_PROFILE_BUILD
#define HAK_PROFILE_BUILD 0
#endif
static const bool hak_cfg_profile = HAK_PROFILE_BUILD;

#define HAK_API __attribute__((visibility("default")))
#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_STR2(x) #x
#define HAK_STR(x) HAK_STR2(x)
#define HAK_VERSION_TEXT \
  "hakmem " HAK_STR(HAKMEM_VERSION_MAJOR) "." HAK_STR(HAKMEM_VERSION_MINOR) "." HAK_STR(HAKMEM_VERSION_PATCH)
/* The struct that holds `member` at address p. */
#define HAK_CONTAINER(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---- layout ------------------------------------------------------------ */
#define HAK_PAGE ((size_t)4096)
#define HAK_SS_SHIFT 21
#define HAK_SS_SIZE ((size_t)1 << HAK_SS_SHIFT) /* SuperSlab and chunk size */
#define HAK_UNIT_SHIFT 16
#define HAK_UNIT_SIZE ((size_t)1 << HAK_UNIT_SHIFT) /* 64 KiB */
#define HAK_UNITS (HAK_SS_SIZE / HAK_UNIT_SIZE)     /* 32 units per SuperSlab */
#define HAK_SS_HEADER HAK_PAGE                      /* unit 0 loses this much */
#define HAK_ADDR_BITS 47
#define HAK_CHUNKS ((size_t)1 << (HAK_ADDR_BITS - HAK_SS_SHIFT))
#define HAK_RESERVATION ((size_t)64 << 20) /* SuperSlabs are carved from these */
#define HAK_UNIT0_MAX_BLOCK HAK_PAGE       /* unit 0 starts 4 KiB aligned: only for blocks <= 4 KiB */
#define HAK_MAX_SLAB_UNITS 16              /* the largest Tiny or Mid slab (spare lists) */
/* Bytes at the end of every slab that hold no block: the secure build's
 * guard page (superslab.c). */
#define HAK_SLAB_GUARD (HAK_SECURE ? HAK_PAGE : 0)
/* The secure build zeroes freed blocks up to this size and proves them
 * zero when it hands them out again (secure.c, slab.c). */
#define HAK_ZEROED_MAX ((size_t)1024)
/* Blocks a Mid slab holds at least. With 8, a class whose live blocks
 * span two slabs refills on about every other slow path (the 1-32 KiB
 * probe, with heap.c's refill policy: 103.1 instructions per round, and
 * 104.6 again with the slab-share classes); 10 takes that to 93.4 with no
 * measurable change in the benchmarks' peak RSS. */
#define HAK_MID_SLAB_BLOCKS 10
#define HAK_CARVE_MIN 4 /* fresh blocks carved at once, at least */
/* HAKMEM_ACE: a class that carves on HAK_CARVE_RUN refills in a row
 * carves twice as many pages at once, up to 1 << HAK_CARVE_SHIFT_MAX;
 * after HAK_CARVE_IDLE_MS without carving it starts again at one page
 * (heap.c). A run of 32: with 4, fixed_size 64 (1000 blocks live, about
 * one slab's worth) ran 25-35 % slower, its warm-up carving its second
 * slab in larger pieces; with 32 it is within 2 %. */
#define HAK_CARVE_RUN 32
#define HAK_CARVE_SHIFT_MAX 4
#define HAK_CARVE_IDLE_MS 1000
#define HAK_POOL_SS 128    /* SuperSlabs a heap owns at most (256 MiB of pool runs) */
#define HAK_DIRTY_SEARCH 8 /* SuperSlabs with dirty units looked at for a run */
#define HAK_FULL_KEEP 2    /* full slabs a heap keeps per class before setting them aside */
#define HAK_PULLS_MAX 8    /* refills from partial slabs before one becomes current (heap.c) */

/* Owner word: the holder's heap key (id << 2); 0 = detached or free; for a
 * slab its holder set aside (detached while full), key | HAK_SET_ASIDE. */
#define HAK_SET_ASIDE 1u /* a free by that heap takes the slab back */
/* In a heap key: never equal to an owner word, so every free takes the
 * checking slow path. */
#define HAK_KEY_CHECK 2u
#define HAK_KEY_NONE 3u /* key of the static heaps: matches nothing */
/* thread_free word: stack head | HAK_DETACHED. */
#define HAK_DETACHED ((uintptr_t)1)

/* A doubly linked list through a hak_link_t in each member. */
typedef struct hak_link {
  struct hak_link *next, *prev;
} hak_link_t;
typedef struct hak_list {
  hak_link_t *head, *tail;
  uint32_t count;
} hak_list_t;

static inline void hak_list_push(hak_list_t *l, hak_link_t *n) {
  n->prev = NULL;
  n->next = l->head;
  if (l->head) l->head->prev = n;
  else l->tail = n;
  l->head = n;
  l->count++;
}

static inline void hak_list_push_tail(hak_list_t *l, hak_link_t *n) {
  n->next = NULL;
  n->prev = l->tail;
  if (l->tail) l->tail->next = n;
  else l->head = n;
  l->tail = n;
  l->count++;
}

static inline void hak_list_remove(hak_list_t *l, hak_link_t *n) {
  if (n->prev) n->prev->next = n->next;
  else l->head = n->next;
  if (n->next) n->next->prev = n->prev;
  else l->tail = n->prev;
  n->next = n->prev = NULL;
  l->count--;
}

/* A free block. Its first word links the list it is on (encoded in the
 * secure build: read and write it with hak_next and hak_set_next, slab.c's
 * section). Its second word, the mark, is the address of the heap
 * that holds its slab (or last held it): every block on a free list or
 * on its way to the holder in a batch (heap.c) carries it, and every block
 * handed out has it cleared. So a free that
 * finds its block marked with the holder's address has the evidence of a
 * double free (heap.c checks it): hakmem's metadata is never handed out,
 * so a live block holds that address only if the program copied it from
 * a freed one. */
typedef struct hak_block {
  struct hak_block *next;
  uintptr_t mark;
} hak_block_t;

/* HAKMEM_PROFILE: a recorded sample's record, kept with its block (its
 * one-block run's descriptor, or its Large header) until its free. */
typedef struct hak_sample {
  uint64_t born;      /* the tick it was allocated at; 0: not a recorded sample */
  uint64_t size : 48; /* the bytes asked */
  uint64_t site : 16; /* its stack (profile.c) */
} hak_sample_t;

typedef struct hak_slab hak_slab_t;
struct hak_slab {
  union {
    hak_link_t link;     /* first: heap's partial or spare list, abandoned list, or remote list */
    hak_sample_t sample; /* a one-block run's, while its block is out: HAKMEM_PROFILE's record */
  };
  _Atomic uint32_t owner;        /* holder's key (without HAK_KEY_CHECK); see above */
  uint8_t cls;                   /* size class */
  uint8_t units;                 /* units spanned; 0: the unit is in no slab */
  uint8_t listed;                /* on its class's abandoned list */
  uint8_t where;                 /* in its holder: HAK_IN_CUR, _PARTIAL, _ROTATED, _SPARE */
  uint8_t head;                  /* the unit its slab starts at (a free unit's: see hak_slab_of) */
  uint16_t used;                 /* blocks out: with the program or in the holder's list */
  uint16_t carved;               /* blocks carved so far (lazily, a page at a time) */
  uint16_t capacity;             /* blocks that fit; of a free unit, 1 if it began a one-block run */
  uint32_t start;                /* offset of its first block in the SuperSlab (fixed by its unit) */
  uint32_t block_size;           /* bytes per block */
  hak_block_t *local_free;       /* blocks freed by the holder */
  _Atomic uintptr_t thread_free; /* blocks freed by other threads | HAK_DETACHED */
  uintptr_t mark;                /* the mark of its free blocks: its holder's (or last holder's) address */
};
_Static_assert(sizeof(hak_slab_t) == 64, "one cache line per unit descriptor");
#define HAK_SLAB_OF_LINK(l) HAK_CONTAINER(l, hak_slab_t, link)

/* Where a held slab sits in its heap (hak_slab_t.where). */
enum {
  HAK_IN_NONE,    /* not held, or in transition */
  HAK_IN_CUR,     /* the class's current slab */
  HAK_IN_PARTIAL, /* on the partial list */
  HAK_IN_ROTATED, /* on the partial list, gone round once without a free block */
  HAK_IN_SPARE    /* empty, on a spare list */
};

typedef struct hak_reservation hak_reservation_t;
typedef struct hak_superslab hak_superslab_t;
typedef struct hak_pool hak_pool_t;
struct hak_superslab {
  /* One cache line for the unit maps' owner; first, so that no descriptor
   * starts at the SuperSlab's first byte (hak_superslab_of(p) reads p - 1): */
  _Atomic uint32_t free_units; /* bit u: unit u belongs to no slab (the owner reads it unlocked) */
  uint32_t pool_index;         /* owned: its place in its pool's arrays */
  hak_link_t avail;            /* shared: on the list of those with a free unit (ss lock) */
  hak_pool_t *_Atomic pool;    /* the pool that owns it for pool runs; NULL: shared */
  uint32_t dirty_units;        /* free units that may still be resident */
  _Atomic uintptr_t remote;    /* owned: runs other threads gave back (pool.c) */
  _Alignas(64) hak_slab_t slab[HAK_UNITS]; /* descriptors, one per unit; a slab's is its first unit's */
  uint32_t unit_freed[HAK_UNITS];          /* a dirty unit: tick >> HAK_AGE_SHIFT when it came back */
  hak_reservation_t *res;                  /* reservation it was carved from */
  uint32_t index;                          /* position in its reservation */
  uint64_t freed_at;     /* tick when units last came back: purging takes the oldest first */
  uint32_t guarded;      /* secure build: units whose last page has no access (superslab.c) */
  uint32_t purged_units; /* free units purged since they were last in a slab */
  uint32_t purged_early; /* of those, the ones the budget purged (not malloc_trim): HAKMEM_ACE's evidence */
  uint16_t site[HAK_UNITS]; /* HAKMEM_SITES: the site of the block of the one-block pool run starting at
                               unit u, if placed by its site (heap.c); 0: none (every format resets it) */
};
_Static_assert((HAK_SS_SIZE & (HAK_SS_SIZE - 1)) == 0, "SuperSlab size is a power of two");
_Static_assert(sizeof(hak_superslab_t) <= HAK_SS_HEADER, "header fits before unit 0's blocks");
_Static_assert(HAK_UNITS == 32, "unit bitmaps are 32 bits");
#define HAK_SS_OF_AVAIL(l) HAK_CONTAINER(l, hak_superslab_t, avail)

static inline hak_superslab_t *hak_superslab_of(const void *p) {
  return (hak_superslab_t *)(((uintptr_t)p - 1) & ~(HAK_SS_SIZE - 1));
}
/* The slab holding address a (inside ss), if a lies in one. The
 * descriptor of a's unit answers: a one-unit slab is the slab (one cache
 * line for the free path), any other unit names the unit its slab starts
 * at (`head`, which _hak_units_take sets for every unit of a slab). A free
 * unit's head is its own or that of the slab it was last part of: the
 * descriptor it leads to has no block (units 0, carved 0) or is a slab
 * that does not hold a, so every caller proves a block with
 * hak_slab_has_block (false outside the slab) or asks the SuperSlab's
 * free-unit bits first. The branch goes by the slab's size, which a class fixes,
 * not by where in its slab the block lies: a program that frees blocks of
 * one class at random does not mispredict it (fixed_size/8192, whose
 * blocks lie in the first or the second unit of their slabs at random,
 * ran at 0.56 of the speed when the branch asked whether the unit was its
 * slab's first). A unit's `head` is set before its slab's units change
 * from 0 (superslab.c), so a free in another thread reading them unlocked
 * sees one state or the other. */
static inline hak_slab_t *hak_slab_of(const hak_superslab_t *ss, uintptr_t a) {
  hak_slab_t *d = (hak_slab_t *)&ss->slab[(a >> HAK_UNIT_SHIFT) & (HAK_UNITS - 1)];
  if (HAK_LIKELY(__atomic_load_n(&d->units, __ATOMIC_ACQUIRE) == 1)) return d;
  return (hak_slab_t *)&ss->slab[__atomic_load_n(&d->head, __ATOMIC_RELAXED)];
}
static inline unsigned hak_slab_unit(const hak_slab_t *s) {
  return (unsigned)((((uintptr_t)s & (HAK_SS_SIZE - 1)) - offsetof(hak_superslab_t, slab)) /
                    sizeof(hak_slab_t));
}
static inline char *hak_slab_start(const hak_slab_t *s) {
  return (char *)((uintptr_t)s & ~(HAK_SS_SIZE - 1)) + s->start;
}
/* Bytes of block space in a slab's units (unit 0 gives its first page to
 * the header): what every total counts for it. */
static inline size_t hak_slab_bytes(const hak_slab_t *s) {
  return ((size_t)s->units << HAK_UNIT_SHIFT) - (hak_slab_unit(s) == 0 ? HAK_SS_HEADER : 0);
}

/* ---- the one thread-local (defined in thread.c) --------------------------
 * `heap` points at the thread's heap, whose first member is a hak_front_t,
 * or at a static empty front (key HAK_KEY_NONE) before the thread's first
 * allocation and after its teardown. `profile_left` is the profile build's
 * countdown to the thread's next sample (heap.c): beside `heap`, malloc
 * reaches both through one address, and it counts down before it knows
 * whether the thread has a heap (INT64_MAX while the thread samples
 * nothing: no heap, a dead one, or no HAKMEM_PROFILE). */
typedef struct hak_front hak_front_t;
typedef struct hak_tls {
  hak_front_t *heap;
  int64_t profile_left;
} hak_tls_t;
extern __thread hak_tls_t hak_tls __attribute__((tls_model("initial-exec")));

/* ---- os.c: every system call (raw, no libc on allocator paths) ----------
 * _hak_os_map: fresh zeroed read-write private anonymous memory, not
 * reserved against overcommit; NULL on failure. `align` (a power of two,
 * >= page) aligns the start. Other calls return 0 on success, -errno on
 * failure. The clock: hakmem's one time base is the TSC, a hak_tick_t;
 * _hak_os_ms_ticks converts milliseconds to it (the rate is measured over
 * the first 20 ms after start-up, and assumed 3 GHz until then). */
typedef uint64_t hak_tick_t;
static inline hak_tick_t _hak_os_ticks(void) { return __builtin_ia32_rdtsc(); }
uint64_t _hak_os_ticks_per_ms(void); /* measuring while it is 0 */
extern _Atomic uint64_t _hak_os_tick_rate;
static inline hak_tick_t _hak_os_ms_ticks(uint64_t ms) {
  uint64_t rate = atomic_load_explicit(&_hak_os_tick_rate, memory_order_relaxed);
  return ms * (HAK_LIKELY(rate) ? rate : _hak_os_ticks_per_ms());
}
/* The memory system calls are counted by kind (calls, bytes asked, time
 * in nanoseconds); _hak_os_calls reads the counts. */
enum { HAK_SYS_MMAP, HAK_SYS_MUNMAP, HAK_SYS_MREMAP, HAK_SYS_MADVISE, HAK_SYS_MPROTECT, HAK_SYS_KINDS };
void _hak_os_calls(uint64_t calls[HAK_SYS_KINDS], uint64_t bytes[HAK_SYS_KINDS], uint64_t ns[HAK_SYS_KINDS]);
void *_hak_os_map(size_t size, size_t align);
void *_hak_os_reserve(size_t size, size_t align); /* like _hak_os_map, but no access (PROT_NONE) */
void *_hak_os_map_at(void *p, size_t size);       /* like _hak_os_map, at p if nothing is there; else NULL */
/* The last mapping the kernel refused the calling thread (os.c writes it
 * when mmap fails, failure.c reads and clears it): its bytes and the
 * errno. The record is in the thread's heap; threads without one share
 * one. */
typedef struct hak_refusal {
  size_t bytes;
  int err;
} hak_refusal_t;
hak_refusal_t *_hak_os_refusal(void);
static inline hak_refusal_t *hak_tls_refusal(void); /* the heap's, or NULL */
int _hak_os_unmap(void *p, size_t size);
int _hak_os_protect(void *p, size_t size, bool access); /* read-write, or none */
int _hak_os_purge(void *p, size_t size, bool lazy);     /* MADV_DONTNEED, or MADV_FREE if lazy */
int _hak_os_discard(void *p, size_t size);              /* fresh pages with no access in their place */
int _hak_os_hugepage(void *p, size_t size, int mode);   /* mode: 1 request, 2 forbid */
void *_hak_os_remap(void *p, size_t old_size, size_t new_size, void *fixed); /* NULL on failure */
/* The pages of [p, p + size) move to `to` (over what is mapped there); p's
 * range stays mapped, with no pages. NULL on failure (kernels before 5.7). */
void *_hak_os_move(void *p, size_t size, void *to);
long _hak_os_write(int fd, const void *buf, size_t n);
void _hak_os_futex_wait(_Atomic int *addr, int val);
void _hak_os_futex_wake(_Atomic int *addr, int n);
int _hak_os_getpid(void);
void _hak_os_abort(void) __attribute__((noreturn));
/* For the crash report (crash.c): copies n bytes from p, 0, or -errno if
 * any is not readable (it never faults); sends sig to the calling thread;
 * the signal action and the alternate signal stack (libc's: no allocator
 * path calls them). */
int _hak_os_peek(const void *p, void *out, size_t n);
void _hak_os_raise(int sig);
struct sigaction;
int _hak_os_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
int _hak_os_sigaltstack(void *stack, size_t size);
/* For the timeline (timeline.c) and the heap profile (profile.c): files
 * opened to append to (created if absent), to write or to read (-errno on
 * failure), the resident bytes (0 if unknown), the process's page faults
 * and system time so far, and a sleep. */
int _hak_os_open_append(const char *path);
int _hak_os_open_write(const char *path); /* created or truncated */
int _hak_os_open_read(const char *path);
long _hak_os_read(int fd, void *buf, size_t n); /* bytes read, 0 at the end, or -errno */
void _hak_os_close(int fd);
size_t _hak_os_rss(void);
typedef struct hak_usage {
  uint64_t minor_faults, major_faults;
  uint64_t sys_us, cpu_us; /* system time, and user and system time, in microseconds */
} hak_usage_t;
void _hak_os_usage(hak_usage_t *u);
void _hak_os_sleep_ms(uint64_t ms);
uint64_t _hak_os_wall_ms(void); /* CLOCK_REALTIME in milliseconds */
/* The process's secret (secure build): random, never 0, the same for every
 * thread from the first call of _hak_os_make_secret on (before any block
 * is carved). */
extern _Atomic uint64_t _hak_secret;
void _hak_os_make_secret(void);
static inline uint64_t hak_secret(void) { return atomic_load_explicit(&_hak_secret, memory_order_relaxed); }

/* ---- print.c: formatting without stdio (no allocation) ----------------- */
typedef struct hak_buf {
  char data[1024];
  size_t len;
  size_t col; /* characters since the last newline */
  int fd;     /* flushed here when full, and by _hak_buf_flush */
  void *file; /* or to this FILE * (malloc_info), outside every hakmem lock */
} hak_buf_t;
void _hak_buf_str(hak_buf_t *b, const char *s);
void _hak_buf_dec(hak_buf_t *b, uint64_t v);
void _hak_buf_int(hak_buf_t *b, int64_t v);
void _hak_buf_hex(hak_buf_t *b, uint64_t v);
void _hak_buf_pad(hak_buf_t *b, size_t width); /* spaces up to column `width` of the current line */
void _hak_buf_bytes(hak_buf_t *b, size_t n);   /* "64 GiB", "1.5 MiB", "100 bytes" */
void _hak_buf_flush(hak_buf_t *b);
void _hak_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define HAK_ASSERT(e) ((e) ? (void)0 : _hak_assert_fail(#e, __FILE__, __LINE__))
#define HAK_DEBUG_ASSERT(e) (hak_cfg_debug ? HAK_ASSERT(e) : (void)0)

/* ---- options.c: the HAKMEM_* table ------------------------------------- */
extern _Atomic long _hak_options[HAK_OPT_COUNT];
static inline long hak_opt(int id) { return atomic_load_explicit(&_hak_options[id], memory_order_relaxed); }
enum {
#define HAK_TEXT_OPTION_ENUM(id, name, desc) HAK_TEXT_##id,
  HAK_TEXT_OPTION_LIST(HAK_TEXT_OPTION_ENUM)
#undef HAK_TEXT_OPTION_ENUM
      HAK_TEXT_COUNT
};
const char *hak_opt_text(int id); /* the value, or NULL if unset */
void _hak_options_load(void);
bool _hak_option_set(int id, long value); /* false (and unchanged) if out of the option's range */
void _hak_options_print(int fd);

/* ---- report.c: pointers that are not live blocks, damaged blocks ------- */
enum {
  HAK_MISUSE_NONE,        /* a live block */
  HAK_MISUSE_FOREIGN,     /* wholly outside hakmem's memory */
  HAK_MISUSE_DOUBLE_FREE, /* a block already free (size: its size) */
  HAK_MISUSE_INSIDE,      /* not the start of the block it is in (block, size) */
  HAK_MISUSE_NO_BLOCK,    /* in hakmem's memory but in no live block */
  HAK_MISUSE_SIZE,        /* freed with a size (given) larger than its block's (size) */
  /* Found by the secure build: */
  HAK_MISUSE_SIZE_ASKED,  /* freed with a size (given) other than the one allocated (size) */
  HAK_MISUSE_OVERFLOW,    /* written past the size allocated (size; given: the offset; 0 0: trailer lost) */
  HAK_MISUSE_FREED_WRITE, /* a free block (size) was written at offset `given` */
  HAK_MISUSE_BAD_LINK,    /* a free list leads to p, which is no free block */
  HAK_MISUSE_DELETE_FORM  /* delete of new[]'s block or delete[] of new's (size; given: its HAK_FORM) */
};
/* How the secure build's blocks were allocated: C++'s delete must match. */
enum { HAK_FORM_MALLOC, HAK_FORM_OBJECT, HAK_FORM_ARRAY };
typedef struct hak_misuse {
  int kind;
  const void *block; /* the block p is in, if known */
  size_t size;       /* its size, if known */
  size_t given;      /* the size the program gave */
} hak_misuse_t;
/* Counts p as an invalid pointer given to `who` (the API call), says what
 * is wrong on stderr, and aborts: a foreign pointer, by
 * HAKMEM_INVALID_FREE, is instead reported once or not at all, and
 * returns. */
void _hak_report(const char *who, const void *p, hak_misuse_t m);
uint64_t _hak_invalid_count(void);

/* ---- failure.c: allocations that fail, counted and traced ------------- */
/* Why an allocation returned NULL for want of memory. */
enum { HAK_FAIL_SIZE, HAK_FAIL_OVERFLOW, HAK_FAIL_ALIGN, HAK_FAIL_MAP, HAK_FAIL_REASONS };
/* What was asked, as the trace names it: who(size), or who(n, size) when
 * n * size overflowed, with the alignment where one was asked (align > 16);
 * with `block`, size is only the size of the block the call needed (its
 * class's). */
typedef struct hak_ask {
  const char *who;
  size_t size, n, align;
  bool block;
} hak_ask_t;
/* Counts the failure, traces it (HAKMEM_TRACE=oom: one line on stderr,
 * the reason for HAK_FAIL_MAP being the thread's last refused mapping),
 * sets errno to ENOMEM; returns NULL, for the caller to return. With no
 * `who`, only sets errno: a caller above reports the failure itself. */
void *_hak_fail(hak_ask_t ask, int why);
uint64_t _hak_fail_count(int why);

/* ---- lock.c: one lock type; fork takes them all (thread.c: the order) -- */
typedef struct hak_lock {
  _Atomic int state; /* 0 free, 1 held, 2 held with waiters */
} hak_lock_t;
#define HAK_LOCK_INIT \
  { 0 }
void _hak_lock_slow(hak_lock_t *l);
static inline void _hak_lock(hak_lock_t *l) {
  int expect = 0;
  if (!atomic_compare_exchange_strong_explicit(&l->state, &expect, 1, memory_order_acquire,
                                               memory_order_relaxed))
    _hak_lock_slow(l);
}
void _hak_unlock(hak_lock_t *l);

/* ---- meta.c: metadata memory (heaps, tables), never returned ---------- */
extern hak_lock_t _hak_meta_lock;
void *_hak_meta_alloc(size_t size); /* zeroed, 64-byte aligned; NULL on failure */

/* ---- counters.c: event counts and slabs per class ----------------------
 * Each thread counts in its heap (plain increments, no atomics) and adds
 * its counts to the process totals when it exits or flushes; threads
 * without a heap add theirs at once. Slabs per class: a thread gathers its
 * changes by class and adds one in once it reaches HAK_CLASS_BATCH either
 * way (a pool class changes count with every large block), so the peak is
 * within that per thread. */
#define HAK_STAT_LIST(X)                                                        \
  X(slabs_taken, "slabs taken from SuperSlabs")                                 \
  X(site_apart, "pool blocks of lasting sites placed apart (HAKMEM_SITES)")     \
  X(site_samples, "pool blocks sampled for their site's lifetime")              \
  X(slabs_released, "empty slabs given back to their SuperSlab")                \
  X(slabs_detached, "slabs detached (set aside while full, thread exit, fork)") \
  X(slabs_adopted, "detached slabs claimed by an allocating thread")
enum {
#define HAK_STAT_ENUM(name, desc) HAK_STAT_##name,
  HAK_STAT_LIST(HAK_STAT_ENUM)
#undef HAK_STAT_ENUM
      HAK_STAT_COUNT
};
/* Events per size class, counted alike; allocs and frees only by the
 * stats build (hak_cfg_stats), on its fast paths. */
#define HAK_CLASS_STAT_LIST(X)                                                                             \
  X(allocs, "allocations (the stats build counts every one; the others none)")                             \
  X(frees, "frees (the stats build)")                                                                      \
  X(from_current, "refills from the blocks freed into the current slab")                                   \
  X(from_partial, "refills from a partial slab the thread held")                                           \
  X(from_spare, "refills from an empty slab the thread kept (a spare)")                                    \
  X(from_adopted, "refills from a slab adopted (one a thread left)")                                       \
  X(from_fresh, "refills from a slab newly taken from a SuperSlab or pool run")                            \
  X(carved, "refills of freshly carved blocks")                                                            \
  X(slow_frees, "frees that left the fast path")                                                           \
  X(remote_sent, "blocks freed into a slab the freeing thread did not hold (another's, or one set aside)") \
  X(remote_received, "remote frees the holder took back (a remote list taken whole: stats build only)")
enum {
#define HAK_CLASS_STAT_ENUM(name, desc) HAK_CSTAT_##name,
  HAK_CLASS_STAT_LIST(HAK_CLASS_STAT_ENUM)
#undef HAK_CLASS_STAT_ENUM
      HAK_CSTAT_COUNT
};
#define HAK_CLASS_BATCH 4
typedef struct hak_counters {
  uint64_t n[HAK_STAT_COUNT];                 /* events not yet added to the totals */
  uint64_t cls[HAK_CLASSES][HAK_CSTAT_COUNT]; /* per-class events not yet added in */
  int8_t cls_delta[HAK_CLASSES];              /* slab counts not yet added in */
  uint32_t sample_left;                       /* slow paths until the next one timed */
} hak_counters_t;
/* Slow-path latency, sampled (HAKMEM_SAMPLE: 1 in N slow paths timed): a
 * histogram per kind of slow path, of powers of two of nanoseconds. */
enum { HAK_LAT_TINY, HAK_LAT_MID, HAK_LAT_POOL, HAK_LAT_LARGE, HAK_LAT_FREE, HAK_LAT_KINDS };
#define HAK_LAT_BUCKETS 40                     /* bucket k: [2^k, 2^(k+1)) ns; 0 holds [0, 2) */
hak_tick_t _hak_sample_due(hak_counters_t *c); /* c's countdown (or the shared one, c NULL) ran out */
/* The time now if this slow path of the thread whose counters are c (NULL:
 * one without a heap) is to be timed, else 0. */
static inline hak_tick_t hak_sample_start(hak_counters_t *c) {
  if (c && HAK_LIKELY(--c->sample_left != 0)) return 0;
  return _hak_sample_due(c);
}
void _hak_sample_end(int kind, hak_tick_t t0);                    /* after hak_sample_start gave t0 (not 0) */
void _hak_latency(uint64_t hist[HAK_LAT_KINDS][HAK_LAT_BUCKETS]); /* the histograms so far */
static inline int hak_lat_kind(size_t cls) {
  return cls <= HAK_CLASS_TINY_LAST ? HAK_LAT_TINY : cls <= HAK_CLASS_MID_LAST ? HAK_LAT_MID : HAK_LAT_POOL;
}
static inline hak_counters_t *hak_tls_counters(void);
static inline void hak_count(hak_counters_t *c, int id) { c->n[id]++; }
void _hak_count(int id);                                      /* an event of the calling thread */
void _hak_class_event_shared(size_t cls, int id, uint64_t n); /* the totals' (no heap) */
/* n events of class cls for the calling thread. */
static inline void hak_class_event(size_t cls, int id, uint64_t n) {
  hak_counters_t *c = hak_tls_counters();
  if (HAK_LIKELY(c)) c->cls[cls][id] += n;
  else _hak_class_event_shared(cls, id, n);
}
/* into[c][id] += the counts of class events, merged ones and c's (if not NULL) */
void _hak_class_events_add(const hak_counters_t *c, uint64_t (*into)[HAK_CSTAT_COUNT]);
void _hak_class_count(size_t from, size_t to);                /* a slab changes class (0: none) */
void _hak_counters_merge(hak_counters_t *c);                  /* into the totals, c zeroed */
void _hak_counters_add(const hak_counters_t *c, uint64_t *n); /* n += c's unmerged counts */
void _hak_counters_totals(uint64_t *n);                       /* n += the merged counts */
uint64_t _hak_class_peak(size_t cls);                         /* most slabs of cls so far */

/* Raises *peak to v if v is more (several threads may race to raise it:
 * the highest value wins). */
static inline void hak_atomic_max(_Atomic size_t *peak, size_t v) {
  size_t old = atomic_load_explicit(peak, memory_order_relaxed);
  while (v > old &&
         !atomic_compare_exchange_weak_explicit(peak, &old, v, memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* ---- elo.c: HAKMEM_ELO, the purge and retention policy in force -------
 * A policy scales PURGE_DELAY_MS (delay_x4 / 4), the budget of empty
 * memory's floor and share (budget_x4 / 4: RETAIN_KB, RETAIN_SHARE) and
 * BigCache's budget (bigcache_x2 / 2), says whether the working room
 * counts, and whether the budget is at least the peak of committed memory
 * (to_peak: nothing the program needed before is purged). Without
 * HAKMEM_ELO the first, "static" (the options as they are), is in force
 * throughout. hak_elo_t is the rating engine's state; _hak_elo_close ends
 * the epoch of the policy in force at `cost` and returns the next's. */
#define HAK_POLICIES 4
typedef struct hak_policy {
  const char *name;
  uint16_t delay_x4, budget_x4, bigcache_x2;
  bool room, to_peak;
} hak_policy_t;
extern const hak_policy_t _hak_policies[HAK_POLICIES];
extern _Atomic uint32_t _hak_policy_now; /* the index in force */
static inline const hak_policy_t *hak_policy(void) {
  return &_hak_policies[atomic_load_explicit(&_hak_policy_now, memory_order_relaxed)];
}
#define HAK_ELO_START 1500                        /* every rating's */
#define HAK_ELO_K 32                              /* a game moves a rating by up to this */
#define HAK_ELO_GAP 200                           /* a rating trails the leader's by at most this */
#define HAK_ELO_TIE 0.03                          /* costs closer than 3 % make a draw */
#define HAK_ELO_EXPLORE 10                        /* at most 1 epoch in this many explores (a trial is 2) */
#define HAK_ELO_EPOCH_BYTES ((uint64_t)512 << 20) /* an epoch ends once this much is taken into use */
typedef struct hak_elo {
  uint64_t rng; /* the draws of exploration */
  int32_t rating[HAK_POLICIES];
  uint64_t epochs[HAK_POLICIES], wins[HAK_POLICIES], losses[HAK_POLICIES];
  double cost[HAK_POLICIES]; /* each one's last epoch's, microseconds per second */
  uint64_t epoch, explored;  /* epochs closed; epochs that explored */
  uint32_t now;              /* the policy of the epoch running */
  uint32_t challenger;       /* the one exploring, until its game (HAK_POLICIES: none) */
  uint32_t trial;            /* its epochs closed */
  double before;             /* the leader's cost in the epoch before the challenger's */
} hak_elo_t;
void _hak_elo_start(hak_elo_t *e, uint64_t seed);
uint32_t _hak_elo_close(hak_elo_t *e, double cost);
uint32_t hak_elo_leader(const hak_elo_t *e);
double _hak_elo_expected(int32_t diff); /* a score's expectation, rated diff above the opponent */
/* The process's epochs: _hak_elo_begin at start-up (with the options);
 * budget.c calls _hak_elo_tick once time passes _hak_elo_due, or the
 * bytes taken into use so far pass _hak_elo_due_taken (both never, with
 * HAKMEM_ELO=0). */
extern hak_lock_t _hak_elo_lock;
extern _Atomic hak_tick_t _hak_elo_due;
extern _Atomic uint64_t _hak_elo_due_taken;
void _hak_elo_begin(void);
/* A new epoch (a fork child's: its counts start again). `reuse`: the purge
 * delay HAKMEM_ACE's reuse ages ask for (0: none), the least length of an
 * epoch that starts. */
void _hak_elo_restart(size_t committed, uint64_t taken, hak_tick_t reuse);
void _hak_elo_tick(hak_tick_t now, size_t committed, uint64_t taken, hak_tick_t reuse);
/* A copy of the engine, and the running epoch's length, for the reports. */
void _hak_elo_figures(hak_elo_t *out, uint64_t *epoch_ms);

/* ---- size_class.c: slab geometry (the classes are in size_class.h) ----- */
size_t _hak_slab_units(size_t cls); /* units in a slab (or run) of cls */
bool _hak_pool_single(size_t cls);  /* a run of pool class cls holds one block */

/* ---- chunkmap.c: the chunk map ----------------------------------------- */
enum { HAK_CHUNK_NONE = 0, HAK_CHUNK_SUPERSLAB = 1, HAK_CHUNK_LARGE = 2, HAK_CHUNK_ZERO = 3 /* secure.c */ };
extern uint8_t _hak_chunk_map[HAK_CHUNKS];
/* What the chunk of p's header is (p - 1, so that a block at a chunk
 * boundary finds the header before it); HAK_CHUNK_NONE past 47 bits. */
static inline uint8_t hak_chunk_kind(const void *p) {
  uintptr_t a = (uintptr_t)p;
  return ((a - 1) >> HAK_ADDR_BITS) ? HAK_CHUNK_NONE : _hak_chunk_map[(a - 1) >> HAK_SS_SHIFT];
}
static inline void hak_chunk_mark(const void *header, uint8_t kind) {
  _hak_chunk_map[(uintptr_t)header >> HAK_SS_SHIFT] = kind;
}

/* ---- budget.c: the totals, the working room, purge decisions -----------
 * Empty committed memory has one budget for the three places it waits
 * for reuse (threads' spare slabs, free units not yet purged, BigCache):
 * at least RETAIN_KB, or 1/RETAIN_SHARE of the memory in use, or the
 * working room, whichever is more. Past it, each place purges or gives
 * back its own: what has been empty for PURGE_DELAY_MS (memory the program
 * takes again within that is never purged, and most of a churn's is), and
 * past twice the budget anything, oldest first; a purge goes down to three
 * quarters of the budget (budget.c explains the room). Each thread gathers
 * its changes to the totals in its heap (hak_budget_local_t) and adds them
 * in once one passes 4 MiB. */
enum { HAK_MEM_NONE = -1, HAK_MEM_USED, HAK_MEM_EMPTY }; /* the totals */
#define HAK_AGE_BUCKETS 20 /* HAKMEM_ACE's reuse ages, by powers of two (budget.h) */
typedef struct hak_budget_local {
  int64_t delta[2];                /* not yet added to the totals (used, empty) */
  int64_t seen[2];                 /* the totals at its last flush or look */
  hak_tick_t look_at;              /* when it looks at the totals again */
  int64_t room, room_added;        /* its working room, and what the total room has of it */
  uint64_t taken;                  /* bytes taken into use not yet added to the total */
  uint64_t reuse[HAK_AGE_BUCKETS]; /* HAKMEM_ACE: KiB of empty memory reused, by age */
} hak_budget_local_t;
static inline hak_budget_local_t *hak_tls_budget(void);
void _hak_budget_start(hak_budget_local_t *b);     /* a new heap's: the totals as they are */
void _hak_budget_flush(hak_budget_local_t *b);     /* its changes into the totals */
void _hak_budget_drop_room(hak_budget_local_t *b); /* its room goes (thread exit, malloc_trim) */
enum { HAK_MEM_WITHIN, HAK_MEM_OVER, HAK_MEM_FAR_OVER };
/* Inline, in budget.h (included at the end): hak_mem_move(bytes, from, to),
 * hak_mem_reused(bytes), hak_budget_excess(now), hak_budget_over(),
 * hak_budget_above_target() (while purging: still above 3/4 of the
 * budget), hak_purge_delay(). */
hak_tick_t _hak_purge_next(hak_tick_t now,
                           hak_tick_t soonest); /* when a pass that left memory over looks again */
/* Committed memory: mapped and possibly resident (not purged), SuperSlabs
 * and Large mappings alike, with its high-water mark. It changes only when
 * memory is first taken from a mapping or purged, unmapped or cut off. */
void _hak_committed_add(ptrdiff_t bytes);
/* The figures (exact when no other heap is live): the totals with the
 * calling thread's own changes, committed and its peak, the room in force. */
void _hak_budget_figures(size_t *used, size_t *empty, size_t *committed, size_t *peak, size_t *room);

/* ---- unwind.c: the calling thread's call stack, from the DWARF CFI ----- */
/* A frame as a call leaves it: the return address, the stack pointer
 * after the return, rbp. */
typedef struct hak_frame {
  uintptr_t ip, sp, bp;
} hak_frame_t;
bool _hak_unwind_start(void); /* its table; false without memory for it */
/* Up to max return addresses, the caller's first: from `from` on (its ip
 * first), or with from NULL from _hak_unwind's caller on; the count. now:
 * the tick. */
unsigned _hak_unwind(uintptr_t *pc, unsigned max, hak_tick_t now, const hak_frame_t *from);

/* ---- profile.c: HAKMEM_PROFILE, the sampling heap profiler ------------
 * In the profile build, the fast path counts down the bytes each heap
 * allocates (_hak_profile_interval draws the next interval); heap.c gives
 * each sampled block a run of its own, so that its free takes a slow
 * path, which tells _hak_profile_freed; api.c counts Large blocks. Nothing
 * here runs unless _hak_profile_on, which only the profile build sets. */
extern bool _hak_profile_on;       /* HAKMEM_PROFILE=1, set at start-up */
typedef struct hak_profile_local { /* a heap's part (hak_tls_profile) */
  bool unwinding;                  /* its thread is taking a stack */
  uint8_t shard;                   /* its heap's id, which picks the shard of a site's counts */
} hak_profile_local_t;
static inline hak_profile_local_t *hak_tls_profile(void);
extern hak_lock_t _hak_profile_lock;           /* the tables (thread.c: the lock order) */
void _hak_profile_start(void);                 /* at start-up, with the options loaded */
uint64_t _hak_profile_interval(uint64_t *rng); /* bytes to the next sample; rng: the heap's state */
bool _hak_profile_due_shared(size_t bytes);    /* the countdown of threads without a heap */
/* A sampled block of `size` bytes was just allocated: its stack (from
 * `from` on, if not NULL: the frame of the call into hakmem) and its record
 * (rec->born stays 0 if it is not recorded). */
void _hak_profile_record(hak_sample_t *rec, size_t size, const hak_frame_t *from);
void _hak_profile_freed(const hak_sample_t *rec, hak_tick_t now); /* a block with this record is freed now */
int _hak_profile_dump(const char *path);    /* 0 or -errno; path NULL: the next numbered file */
void _hak_profile_exit(void);               /* at exit: the profile file */
void _hak_profile_sites_text(hak_buf_t *b); /* the sites' summary, for the reports */
void _hak_profile_sites_json(hak_buf_t *b);

/* ---- sites.c: HAKMEM_SITES, lifetimes learned per allocation site ------
 * A site is an index into the table (1 ..; 0: none). heap.c and api.c plan
 * each pool or Large allocation by its caller's return address: whether
 * the site is lasting (its pool blocks go apart) and whether this block is
 * its sample (tagged, so that its free reaches _hak_site_freed). */
typedef struct hak_site_plan {
  uint32_t site;
  bool lasting, sample;
} hak_site_plan_t;
typedef struct hak_site_local { /* a heap's part (hak_tls_sites) */
  uint64_t pending;             /* bytes allocated, not yet on the clock */
  uint64_t seen, limit;         /* the clock and the lasting limit when it added its last batch */
  uint32_t countdown;           /* sited allocations before it takes a sample again */
} hak_site_local_t;
typedef struct hak_site_stats {
  uint64_t clock;                    /* bytes of pool and Large blocks allocated */
  uint32_t known, lasting;           /* sites in the table, and of those lasting */
  uint64_t seen_lasting, seen_brief; /* samples observed */
} hak_site_stats_t;
static inline hak_site_local_t *hak_tls_sites(void);
hak_site_plan_t _hak_site_plan(uintptr_t pc, size_t bytes); /* {0} with HAKMEM_SITES=0 or pc 0 */
void _hak_site_sampled(uint32_t site, const void *p);       /* the sample planned is p (NULL: failed) */
void _hak_site_freed(uint32_t site, const void *p);         /* p, tagged with site, is being freed */
void _hak_site_moved(uint32_t site, const void *from, const void *to); /* realloc moved it */
bool _hak_site_lasting(uint32_t site);
hak_site_stats_t _hak_site_stats(void);

/* ---- reservation.c: 64 MiB reservations -------------------------------- */
struct hak_reservation {
  char *base;             /* 2 MiB aligned */
  uint32_t carved;        /* SuperSlabs carved so far, from the start */
  uint32_t empty;         /* carved SuperSlabs whose units are all free */
  hak_tick_t empty_since; /* when `empty` reached `carved`, or 0 */
  hak_link_t link;        /* all reservations, newest first */
};
#define HAK_RES_SUPERSLABS ((uint32_t)(HAK_RESERVATION / HAK_SS_SIZE))
/* All under _hak_ss_lock. */
hak_superslab_t *_hak_reservation_carve(
    void); /* the next 2 MiB of a reservation (mapped if needed), unmarked */
void _hak_reservation_note_empty(hak_reservation_t *r, int delta); /* SuperSlabs wholly free: +1 / -1 */
/* A wholly free reservation due to be unmapped (the unmap delay passed,
 * or any with `now_all` but the newest unless now_all), or NULL; then
 * _hak_reservation_unmap, once its SuperSlabs are forgotten. */
hak_reservation_t *_hak_reservation_idle(bool now_all, hak_reservation_t *after);
void _hak_reservation_unmap(hak_reservation_t *r);
hak_reservation_t *_hak_reservation_next(hak_reservation_t *r); /* NULL: the newest; then older */
void _hak_reservation_figures(hak_stats_t *st);                 /* mapped, unmapped */

/* ---- superslab.c: unit maps, shared SuperSlabs, runs, purging ---------- */
extern hak_lock_t _hak_ss_lock;
#define HAK_AGE_SHIFT 16 /* a free unit's age is kept in ticks >> this (25 us at 2.6 GHz) */
hak_slab_t *_hak_ss_take_run(unsigned n, bool skip_unit0, uint32_t owner); /* a run of n units, unformatted */
hak_slab_t *_hak_units_take(hak_superslab_t *ss, unsigned u, unsigned n, uint32_t owner);
void _hak_units_give(hak_superslab_t *ss, hak_slab_t *s, unsigned first, hak_tick_t since);
void _hak_ss_give(hak_slab_t *s, unsigned first, hak_tick_t since); /* to a shared SuperSlab (lock held) */
void _hak_ss_init(hak_superslab_t *ss); /* a fresh SuperSlab: all units free, marked in the chunk map */
hak_superslab_t *_hak_ss_take_free(
    void); /* a wholly free shared SuperSlab (dirty first) or a fresh one, off the list */
void _hak_ss_share(hak_superslab_t *ss); /* back on the shared list, with what it has free */
/* Wholly free shared SuperSlabs, mostly dirty, whose pages a Large block
 * may take: how many there are now, up to `chunks`; and the pages of up to
 * `chunks` of them moved to `to` (2 MiB aligned, one chunk after the other;
 * each SuperSlab stays, its units purged): how many moved. */
unsigned _hak_ss_donors(unsigned chunks);
unsigned _hak_ss_donate(char *to, unsigned chunks);
void _hak_ss_purge_pass(hak_tick_t now, bool far); /* the shared ones' pass, if due (lock held) */
bool _hak_ss_purge_due(hak_tick_t now);            /* read unlocked: whether to take the lock for it */
/* A pass over the SuperSlabs of `walk` (a pool's, or the shared ones with
 * NULL): units empty for the purge delay (or, far over, the oldest), down
 * to 3/4 of the budget; *next: when the next may look. */
typedef struct hak_ss_walk {
  hak_superslab_t *const *ss; /* an array of n, or NULL: the shared list */
  uint32_t n;
} hak_ss_walk_t;
void _hak_purge_walk(const hak_ss_walk_t *walk, bool far, hak_tick_t now, hak_tick_t *next);
size_t _hak_purge_units(hak_superslab_t *ss, uint32_t units, bool all); /* bytes purged */
size_t _hak_purge_all(void);          /* malloc_trim: shared SuperSlabs purged, idle reservations unmapped */
size_t _hak_unmap_idle(bool now_all); /* lock held: bytes unmapped */
void _hak_superslab_check(hak_superslab_t *ss);
void _hak_superslab_figures(hak_stats_t *st); /* lock held: SuperSlabs, their headers, purged */

/* ---- pool.c: SuperSlabs owned by one heap, releasing slabs ------------ */
struct hak_pool {
  hak_superslab_t *ss[HAK_POOL_SS]; /* the SuperSlabs it owns (n of them) */
  uint8_t longest[HAK_POOL_SS];     /* each one's longest run of free units */
  uint32_t n;
  uint32_t busy;                   /* changing its unit maps (the fork child reads it) */
  hak_tick_t purge_at;             /* before which it does not look for aged units again */
  _Atomic uint32_t remote_pending; /* a thread gave a run back to one of its SuperSlabs */
};
static inline hak_pool_t *hak_tls_pool(void);
hak_slab_t *_hak_pool_take_run(hak_pool_t *p, unsigned n, uint32_t owner); /* n units, unformatted */
void _hak_pool_collect(hak_pool_t *p);      /* runs given back to its SuperSlabs (remote_pending) */
void _hak_purge_over_budget(hak_pool_t *p); /* past the budget: p's aged units, then the shared ones' */
void _hak_pool_disown_all(hak_pool_t *p);
void _hak_pool_trim(hak_pool_t *p); /* malloc_trim: wholly free ones back, the others purged */
/* p's wholly free SuperSlabs shared (their pages kept), for a Large block
 * to take (large.c): only those its longest runs already say are free. */
void _hak_pool_share_free(hak_pool_t *p);
/* The units of an empty slab go back (all of them: released; past its
 * first n: shrunk), empty since `since`: by the owner of its SuperSlab,
 * through the remote list of one another pool owns, or under the lock. */
void _hak_slab_release(hak_slab_t *s);
void _hak_slab_release_since(hak_slab_t *s, hak_tick_t since);
void _hak_slab_shrink(hak_slab_t *s, unsigned n);

/* ---- slab.c: a slab's lists and its ownership transitions ------------- */
/* Whether p, an address in s's SuperSlab, is the start of a block of s
 * that was carved (size_class.h): false for any other pointer, and for a
 * unit in no slab (carved 0). */
static inline bool hak_slab_has_block(const hak_slab_t *s, const void *p) {
  uint64_t x = ((uintptr_t)p & (HAK_SS_SIZE - 1)) - (uint64_t)s->start;
  return hak_block_index(x * _hak_block_mul[s->cls]) < __atomic_load_n(&s->carved, __ATOMIC_RELAXED);
}
/* A free block's link. The secure build stores it xor the secret and the
 * block's address, so that a link the program overwrites after the free
 * leads nowhere it chose (secure.c checks every block handed out). */
static inline uintptr_t hak_link_key(const hak_block_t *b) {
  return hak_cfg_secure ? hak_secret() ^ (uintptr_t)b : 0;
}
static inline hak_block_t *hak_next(const hak_block_t *b) {
  hak_block_t *next = (hak_block_t *)((uintptr_t)b->next ^ hak_link_key(b));
  if (hak_cfg_secure && next &&
      (hak_chunk_kind(next) != HAK_CHUNK_SUPERSLAB ||
       !hak_slab_has_block(hak_slab_of(hak_superslab_of(next), (uintptr_t)next), next)))
    _hak_report("malloc", next, (hak_misuse_t){.kind = HAK_MISUSE_BAD_LINK});
  return next;
}
static inline void hak_set_next(hak_block_t *b, const hak_block_t *next) {
  b->next = (hak_block_t *)((uintptr_t)next ^ hak_link_key(b));
}
extern hak_lock_t _hak_abandoned_lock[HAK_CLASSES];
void _hak_slab_format(hak_slab_t *s, size_t cls);
hak_slab_t *_hak_slab_alloc(size_t cls, uint32_t owner); /* a fresh slab from a shared SuperSlab */
hak_slab_t *_hak_pool_alloc(hak_pool_t *p, size_t cls, uint32_t owner); /* a fresh run from p */
/* A run of the fewest units (_hak_slab_units_one) of a shared SuperSlab
 * for one block of cls (capacity 1, owner 0: its free takes the slow path,
 * as a single-block pool run's); _hak_slab_format_one makes an empty run
 * of that many units one. */
unsigned _hak_slab_units_one(size_t cls);
void _hak_slab_format_one(hak_slab_t *s, size_t cls);
hak_slab_t *_hak_slab_alloc_one(size_t cls);
hak_slab_t *_hak_pool_alloc_one(hak_pool_t *p, size_t cls); /* a pool class's run of p for one block */
hak_block_t *_hak_slab_take(hak_slab_t *s, unsigned shift); /* free blocks for the fast path */
uint32_t _hak_slab_collect(hak_slab_t *s);                  /* thread_free → local_free */
void _hak_slab_return_blocks(hak_block_t *list);
void _hak_slab_detach(hak_slab_t *s, uint32_t mark); /* mark: its owner word while detached */
hak_slab_t *_hak_slab_adopt(size_t cls, uint32_t key);
bool _hak_slab_free_remote(hak_slab_t *s, hak_block_t *b, uint32_t mine);
hak_misuse_t _hak_slab_problem(const hak_slab_t *s, const void *p); /* p is not a block of s: why */
bool _hak_slab_block_is_free(hak_slab_t *s, const hak_block_t *b, const hak_block_t *list);
void _hak_slab_recount(hak_slab_t *s);
uint32_t _hak_slab_live(hak_slab_t *s, uint32_t my_key, const hak_block_t *my_list);
void _hak_slab_check(hak_slab_t *s, const hak_block_t *list);

/* ---- large.c: blocks above the pool, own mappings, BigCache ----------- */
extern hak_lock_t _hak_large_lock;
void *_hak_large_alloc(size_t size, size_t align, bool zero, uint32_t site); /* site: HAKMEM_SITES's, or 0 */
void _hak_large_free(void *p);
size_t _hak_large_usable(const void *p);
void *_hak_large_realloc(void *p, size_t size);
hak_misuse_t _hak_large_problem(const void *p); /* in a Large header's chunk: kind NONE if a live block */
size_t _hak_large_trim(void);
/* The Large mapping around p, if p is in one (for the crash report:
 * takes no lock, reads through _hak_os_peek). */
typedef struct hak_large_where {
  const char *block; /* its block */
  size_t size;       /* the block's usable bytes */
  bool live;         /* its header says live */
} hak_large_where_t;
bool _hak_large_where(const void *p, hak_large_where_t *w);
void _hak_large_figures(hak_stats_t *st); /* lock held */
/* BigCache's mappings cached past HAKMEM_BIGCACHE_DECAY_MS are unmapped
 * (and the resident ones purged as over the budget) at the Large calls,
 * and here: heap.c calls it when it takes memory, so that a program that
 * stops making Large blocks does not keep its last ones resident. One
 * load when nothing is due. */
void _hak_large_age(hak_tick_t now);
/* HAKMEM_PROFILE: the record of p, a live Large block, if it is sampled:
 * its free (or a realloc) tells the profile. */
hak_sample_t *_hak_large_sample(void *p);
/* What HAKMEM_ACE learned, for the reports: the memory kept for refaults
 * and the purge delay (budget.c), and BigCache's budget (large.c). */
typedef struct hak_learned {
  size_t keep;
  uint64_t purge_delay_us; /* the purge delay reuse ages ask for (0: the option's) */
  uint64_t yielded;        /* times it yielded (budget.c) */
  bool yields;             /* and whether it does now: no keep, the option's purge delay */
  size_t bigcache_budget, bigcache_learned;
  uint64_t bigcache_grew, bigcache_shrank;
} hak_learned_t;
void _hak_large_learned(hak_learned_t *l); /* lock held */

#include "heap.h"

#include "budget.h"

#endif
