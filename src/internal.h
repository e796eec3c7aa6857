/* internal.h — the types shared by hakmem's sources, their invariants, and
 * every _hak_ function shared between files (grouped by the file that
 * defines it).
 *
 * Map of the main types:
 *   hak_superslab_t  2 MiB region aligned to 2 MiB; its first page is the
 *                    header (which slab each 64 KiB unit belongs to, and one
 *                    descriptor per unit), the rest holds blocks. Carved
 *                    from large reservations.
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
 *       it aside, holds it. A detached slab with free space is on its class's
 *       abandoned list. A heap holds, per class, its current slab and
 *       partial slabs, and empty Tiny/Mid spare slabs of any class, by size.
 *       Exception: a pool run of one block is held by no heap while its
 *       block is out (owner = 0, thread_free empty, on no list); the free
 *       of that block gives the run back.
 *   I4  ss.free_units and the slabs of a SuperSlab partition its 32 units
 *       (a slab on its remote list is one of them until its owner takes it
 *       back); dirty_units is a subset of free_units. A SuperSlab is shared
 *       (its units change under _hak_ss_lock) or owned by one heap for its
 *       pool runs (only the owner's thread changes them, with no lock), and
 *       an owned SuperSlab holds only runs its heap took. */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hakmem.h"
#include "size_class.h"

#ifndef HAK_DEBUG
#define HAK_DEBUG 0
#endif
static const bool hak_cfg_debug = HAK_DEBUG;

#define HAK_API __attribute__((visibility("default")))
#define HAK_NOINLINE __attribute__((noinline))
#define HAK_LIKELY(x) __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- layout ------------------------------------------------------------ */
#define HAK_PAGE ((size_t)4096)
#define HAK_SS_SHIFT 21
#define HAK_SS_SIZE ((size_t)1 << HAK_SS_SHIFT)          /* SuperSlab and chunk size */
#define HAK_UNIT_SHIFT 16
#define HAK_UNIT_SIZE ((size_t)1 << HAK_UNIT_SHIFT)      /* 64 KiB */
#define HAK_UNITS (HAK_SS_SIZE / HAK_UNIT_SIZE)          /* 32 units per SuperSlab */
#define HAK_SS_HEADER HAK_PAGE                           /* unit 0 loses this much */
#define HAK_ADDR_BITS 47
#define HAK_CHUNKS ((size_t)1 << (HAK_ADDR_BITS - HAK_SS_SHIFT))
#define HAK_RESERVATION ((size_t)64 << 20)               /* SuperSlabs are carved from these */
#define HAK_UNIT0_MAX_BLOCK HAK_PAGE /* unit 0 starts 4 KiB aligned: only for blocks <= 4 KiB */
#define HAK_MAX_SLAB_UNITS 16        /* the largest slab: 1 MiB */
/* Blocks a Mid slab holds at least. With 8, a class whose live blocks
 * span two slabs switches its current slab on about every other refill
 * (the 1-32 KiB probe: 101.6 instructions per round); 10 takes that to
 * 92.4 with no measurable change in the benchmarks' peak RSS. */
#define HAK_MID_SLAB_BLOCKS 10
#define HAK_CARVE_MIN 4              /* fresh blocks carved at once, at least */
#define HAK_AGE_SHIFT 16             /* a free unit's age is kept in TSC ticks >> this (25 us at 2.6 GHz) */
#define HAK_POOL_SS 128              /* SuperSlabs a heap owns at most (256 MiB of pool runs) */
#define HAK_DIRTY_SEARCH 8           /* SuperSlabs with dirty units looked at for a run */
#define HAK_FULL_KEEP 2              /* full slabs a heap keeps per class before detaching */

enum { HAK_CHUNK_NONE = 0, HAK_CHUNK_SUPERSLAB = 1, HAK_CHUNK_LARGE = 2 };

/* Owner word: the holder's heap key (id << 2); 0 = detached or free; for a
 * slab its holder set aside (detached while full), key | HAK_SET_ASIDE. */
#define HAK_SET_ASIDE 1u     /* a free by that heap takes the slab back */
#define HAK_KEY_CHECK 2u     /* in a heap key: never equal to an owner word, so
                                every free takes the checking slow path */
#define HAK_KEY_NONE 3u      /* key of the static heaps: matches nothing */
/* thread_free word: stack head | HAK_DETACHED. */
#define HAK_DETACHED ((uintptr_t)1)

typedef struct hak_buf hak_buf_t; /* print.c */

typedef struct hak_block {
  struct hak_block *next;
} hak_block_t;

typedef struct hak_slab hak_slab_t;
struct hak_slab {
  _Atomic uint32_t owner;          /* holder's key (without HAK_KEY_CHECK); 0 = none */
  uint8_t cls;                     /* size class */
  uint8_t units;                   /* units spanned; 0: the unit is in no slab */
  uint8_t listed;                  /* on its class's abandoned list */
  uint8_t where;                   /* in its holder: HAK_IN_CUR, _PARTIAL, _ROTATED, _SPARE */
  uintptr_t slot_off;              /* byte offset of its class's slot in hak_front_t */
  hak_block_t *local_free;         /* blocks freed by the holder */
  uint32_t used;                   /* blocks out: with the program or in the holder's list */
  uint32_t carved;                 /* blocks carved so far (lazily, a page at a time) */
  _Atomic uintptr_t thread_free;   /* blocks freed by other threads | HAK_DETACHED */
  uint32_t block_size;             /* bytes per block */
  uint32_t capacity;               /* blocks that fit */
  hak_slab_t *next, *prev;         /* heap's partial or spare list, or abandoned list */
};
_Static_assert(sizeof(hak_slab_t) == 64, "one cache line per unit descriptor");

/* ---- locks: one type; fork takes them all (init.c documents the order) -- */
typedef struct hak_lock {
  _Atomic int state; /* 0 free, 1 held, 2 held with waiters */
} hak_lock_t;
#define HAK_LOCK_INIT {0}
void _hak_lock_slow(hak_lock_t *l);
static inline void _hak_lock(hak_lock_t *l) {
  int expect = 0;
  if (!atomic_compare_exchange_strong_explicit(&l->state, &expect, 1, memory_order_acquire,
                                               memory_order_relaxed))
    _hak_lock_slow(l);
}
void _hak_unlock(hak_lock_t *l);

typedef struct hak_reservation hak_reservation_t;
typedef struct hak_superslab hak_superslab_t;
typedef struct hak_heap hak_heap_t;
struct hak_superslab {
  hak_slab_t *unit_slab[HAK_UNITS]; /* first: the slab of each unit (its own descriptor if free) */
  hak_slab_t slab[HAK_UNITS];      /* descriptors; a slab's is its first unit's */
  /* One cache line for the unit maps' owner and the free path: */
  _Atomic uint32_t free_units;     /* bit u: unit u belongs to no slab (the owner reads it unlocked) */
  uint32_t pool_index;             /* owned: its place in its heap's pool_ss */
  hak_superslab_t *next, *prev;    /* shared: the list of those with a free unit (ss lock) */
  _Atomic uint32_t heap;           /* id of the heap that owns it for pool runs; 0: shared */
  uint32_t dirty_units;            /* free units that may still be resident */
  _Atomic uintptr_t remote;        /* owned: runs other threads gave back (superslab.c) */
  uint32_t unit_freed[HAK_UNITS];  /* a dirty unit: TSC >> HAK_AGE_SHIFT when it came back */
  hak_heap_t *_Atomic owner;       /* owned: its heap (heaps are never freed) */
  hak_reservation_t *res;          /* reservation it was carved from */
  uint32_t index;                  /* position in its reservation */
  uint64_t freed_at;               /* TSC when units last came back: purging takes the oldest first */
};
_Static_assert((HAK_SS_SIZE & (HAK_SS_SIZE - 1)) == 0, "SuperSlab size is a power of two");
_Static_assert(sizeof(hak_superslab_t) <= HAK_SS_HEADER, "header fits before unit 0's blocks");
_Static_assert(HAK_UNITS == 32, "unit bitmaps are 32 bits");

/* Where a held slab sits in its heap (hak_slab_t.where). */
enum {
  HAK_IN_NONE,     /* not held, or in transition */
  HAK_IN_CUR,      /* the class's current slab */
  HAK_IN_PARTIAL,  /* on the partial list */
  HAK_IN_ROTATED,  /* on the partial list, gone round once without a free block */
  HAK_IN_SPARE     /* empty, on a spare list */
};

/* A doubly linked list of slabs through hak_slab_t.next/prev. */
typedef struct hak_slab_list {
  hak_slab_t *head, *tail;
  uint32_t count;
} hak_slab_list_t;

static inline void hak_list_push(hak_slab_list_t *l, hak_slab_t *s) {
  s->prev = NULL;
  s->next = l->head;
  if (l->head) l->head->prev = s;
  else l->tail = s;
  l->head = s;
  l->count++;
}

static inline void hak_list_push_tail(hak_slab_list_t *l, hak_slab_t *s) {
  s->next = NULL;
  s->prev = l->tail;
  if (l->tail) l->tail->next = s;
  else l->head = s;
  l->tail = s;
  l->count++;
}

static inline void hak_list_remove(hak_slab_list_t *l, hak_slab_t *s) {
  if (s->prev) s->prev->next = s->next;
  else l->head = s->next;
  if (s->next) s->next->prev = s->prev;
  else l->tail = s->prev;
  s->next = s->prev = NULL;
  l->count--;
}

/* ---- statistics (per-thread counters, merged into the process totals) -- */
#define HAK_STAT_LIST(X)                                                         \
  X(refills, "free lists handed to the fast path")                              \
  X(remote_frees, "blocks freed by a thread other than the holder")             \
  X(slow_frees, "frees that left the fast path")                                \
  X(slabs_taken, "slabs taken from SuperSlabs")                                   \
  X(slabs_released, "empty slabs given back to their SuperSlab")                \
  X(slabs_detached, "slabs detached (full, thread exit, fork)")                 \
  X(slabs_adopted, "detached slabs claimed by an allocating thread")
enum {
#define HAK_STAT_ENUM(name, desc) HAK_STAT_##name,
  HAK_STAT_LIST(HAK_STAT_ENUM)
#undef HAK_STAT_ENUM
  HAK_STAT_COUNT
};

/* Raises *peak to v if v is more (several threads may race to raise it:
 * the highest value wins). */
static inline void hak_atomic_max(_Atomic size_t *peak, size_t v) {
  size_t old = atomic_load_explicit(peak, memory_order_relaxed);
  while (v > old && !atomic_compare_exchange_weak_explicit(peak, &old, v, memory_order_relaxed,
                                                           memory_order_relaxed)) {
  }
}

/* ---- heaps ------------------------------------------------------------- */
/* A heap's current slab of a class: the one whose blocks free[c] holds.
 * The fast free pushes a block of it straight back on free[c]; in checking
 * mode the pointer carries HAK_CUR_CHECK so that this never matches. */
#define HAK_CUR_CHECK ((uintptr_t)1)

typedef struct hak_class_slot {
  hak_block_t *free;               /* free-list head; slot[0].free stays NULL */
  uintptr_t cur;                   /* current slab | HAK_CUR_CHECK; 0 = none */
} hak_class_slot_t;

/* The units of a heap's current slabs (untagged ones), by unit number
 * modulo HAK_CUR_UNITS: the free fast path finds a block's class slot here
 * from its address alone. An entry is set while its unit is in the current
 * slab of that slot's class; a unit that collides takes the entry over and
 * the other unit's frees take the longer path. */
#define HAK_CUR_UNITS 256
#define HAK_UNIT_NONE UINTPTR_MAX /* no unit: p >> HAK_UNIT_SHIFT never equals it */
typedef struct hak_cur_unit {
  uintptr_t unit;                  /* address >> HAK_UNIT_SHIFT, or HAK_UNIT_NONE */
  hak_class_slot_t *slot;
} hak_cur_unit_t;
_Static_assert(sizeof(hak_cur_unit_t) == 16, "entry offset = (p >> (HAK_UNIT_SHIFT - 4)) & mask");
#define HAK_CUR_UNITS_EMPTY {[0 ... HAK_CUR_UNITS - 1] = {HAK_UNIT_NONE, NULL}}

typedef struct hak_front {
  hak_class_slot_t slot[HAK_CLASSES]; /* first: a slot's address is heap + offset */
  hak_cur_unit_t cur_unit[HAK_CUR_UNITS];
  hak_slab_t *freed[HAK_CLASSES];  /* partial slab that last had a block freed by this heap */
  uint32_t key;                    /* owner word of the slabs it holds, or a never-matching key */
  uint32_t busy;                   /* inside a slow path that changes its slabs (fork child reads) */
} hak_front_t;
#define HAK_SLOT_OFF(cls) ((uintptr_t)(cls) * sizeof(hak_class_slot_t))
_Static_assert(sizeof(hak_class_slot_t) == 16, "Tiny slot offset = (size + 15) & ~15");

static inline hak_slab_t *hak_front_cur(const hak_front_t *f, size_t cls) {
  return (hak_slab_t *)(f->slot[cls].cur & ~HAK_CUR_CHECK);
}

struct hak_heap {
  hak_front_t front;                       /* first: the TLS pointer points here */
  hak_slab_list_t partial[HAK_CLASSES];    /* held slabs other than the current, oldest first */
  hak_slab_list_t spare[HAK_MAX_SLAB_UNITS]; /* empty slabs kept for reuse, by units - 1 */
  uint32_t spare_mask;                     /* bit i: spare[i] is not empty */
  uint64_t spare_at;                       /* TSC when a spare was last added or taken */
  size_t spare_bytes;                      /* their bytes */
  size_t held_bytes;                       /* bytes of every slab it holds (0 after teardown) */
  hak_superslab_t *pool_ss[HAK_POOL_SS];   /* SuperSlabs it owns for pool runs (pool_n of them) */
  uint8_t pool_longest[HAK_POOL_SS];       /* each one's longest run of free units (superslab.c) */
  uint32_t pool_n;
  int64_t mem_delta[2];                    /* not yet added to _hak_mem.live and _idle */
  int64_t room, room_added;                /* its working room, and what _hak_mem.room has of it */
  int64_t mem_seen[2];                     /* _hak_mem.live and _idle at its last flush or look */
  uint64_t mem_look_at;                    /* TSC from which it looks at the totals again */
  uint64_t purge_at;                       /* TSC before which it does not look for aged units again */
  int8_t cls_delta[HAK_CLASSES];           /* slab counts not yet added in (superslab.c) */
  uint64_t stat[HAK_STAT_COUNT];           /* this thread's counters */
  hak_heap_t *next_live, *prev_live;       /* registry of live heaps */
  hak_heap_t *next_spare;                  /* registry of spare heaps */
  uint32_t id;                             /* key = id << 2; ids are never reused by another struct */
  _Atomic uint32_t remote_pending;         /* a thread gave a run back to one of its SuperSlabs */
};

/* The one thread-local: starts at the read-only empty heap. */
extern __thread hak_front_t *hak_tls_heap __attribute__((tls_model("initial-exec")));
extern const hak_front_t _hak_heap_empty;  /* before the thread's first allocation */
extern const hak_front_t _hak_heap_dead;   /* after the thread's teardown */

/* ---- chunk map --------------------------------------------------------- */
extern uint8_t _hak_chunk_map[HAK_CHUNKS];

static inline hak_superslab_t *hak_superslab_of(const void *p) {
  return (hak_superslab_t *)(((uintptr_t)p - 1) & ~(HAK_SS_SIZE - 1));
}
/* The slab holding address a (inside ss); a unit in no slab gives its own
 * descriptor, whose `units` is 0. */
static inline hak_slab_t *hak_slab_of(const hak_superslab_t *ss, uintptr_t a) {
  return ss->unit_slab[(a >> HAK_UNIT_SHIFT) & (HAK_UNITS - 1)];
}
static inline unsigned hak_slab_unit(const hak_slab_t *s) {
  return (unsigned)((((uintptr_t)s & (HAK_SS_SIZE - 1)) - offsetof(hak_superslab_t, slab)) /
                    sizeof(hak_slab_t));
}
static inline char *hak_slab_start(const hak_slab_t *s) {
  uintptr_t ss = (uintptr_t)s & ~(HAK_SS_SIZE - 1);
  unsigned u = hak_slab_unit(s);
  return (char *)ss + ((size_t)u << HAK_UNIT_SHIFT) + (u == 0 ? HAK_SS_HEADER : 0);
}
/* Bytes of block space in a slab's units (unit 0 gives its first page to
 * the header): what every total counts for it. */
static inline size_t hak_slab_bytes(const hak_slab_t *s) {
  return ((size_t)s->units << HAK_UNIT_SHIFT) - (hak_slab_unit(s) == 0 ? HAK_SS_HEADER : 0);
}

/* ---- os.c: every system call (raw, no libc on allocator paths) ----------
 * _hak_os_map: fresh zeroed read-write private anonymous memory, not
 * reserved against overcommit; NULL on failure. `align` (a power of two,
 * >= page) aligns the start. Other calls return 0 on success, -errno on
 * failure. */
void *_hak_os_map(size_t size, size_t align);
int _hak_os_unmap(void *p, size_t size);
int _hak_os_purge(void *p, size_t size);          /* MADV_DONTNEED, or MADV_FREE by option */
int _hak_os_hugepage(void *p, size_t size, int mode); /* mode: 1 request, 2 forbid */
void *_hak_os_remap(void *p, size_t old_size, size_t new_size, void *fixed); /* NULL on failure */
long _hak_os_write(int fd, const void *buf, size_t n);
void _hak_os_futex_wait(_Atomic int *addr, int val);
void _hak_os_futex_wake(_Atomic int *addr, int n);
uint64_t _hak_os_now_ms(void);                    /* monotonic clock */
uint64_t _hak_os_ticks_per_ms(void);              /* TSC rate (measured once running) */
int _hak_os_getpid(void);
void _hak_os_abort(void);

/* ---- meta.c: metadata memory (heaps, tables), never returned ---------- */
extern hak_lock_t _hak_meta_lock;
void *_hak_meta_alloc(size_t size); /* zeroed, 64-byte aligned; NULL on failure */

/* ---- superslab.c: reservations, SuperSlabs, slab runs, purging -------- */
extern hak_lock_t _hak_ss_lock;
hak_slab_t *_hak_slab_alloc(size_t cls, uint32_t owner); /* a fresh slab of class cls */
void _hak_slab_release(hak_slab_t *s);                   /* give an empty slab's units back */
void _hak_slab_release_since(hak_slab_t *s, uint64_t since); /* ... empty since that TSC */
void _hak_slab_shrink(hak_slab_t *s, unsigned n);        /* keep an empty slab's first n units */
/* Pool runs come from SuperSlabs heap h owns (its pool_ss). */
hak_slab_t *_hak_pool_alloc(hak_heap_t *h, size_t cls, uint32_t owner);
void _hak_pool_collect(hak_heap_t *h); /* runs given back to its SuperSlabs (remote_pending) */
void _hak_pool_purge(hak_heap_t *h);   /* past the budget: its SuperSlabs' aged units, then the shared ones' */
void _hak_pool_disown_all(hak_heap_t *h); /* its SuperSlabs back to shared */
void _hak_pool_trim(hak_heap_t *h);       /* malloc_trim: those wholly free back, the others purged */
size_t _hak_purge_all(void);                             /* malloc_trim: bytes purged and unmapped */
void _hak_superslab_stats(hak_stats_t *st, uint64_t *class_slabs, uint64_t *class_used);
size_t _hak_slab_units(size_t cls);
bool _hak_pool_single(size_t cls);
void _hak_class_count(size_t from, size_t to);
void _hak_class_flush(hak_heap_t *h);
#define HAK_CLASS_BATCH 4
void _hak_superslab_check(hak_superslab_t *ss);

/* ---- slab.c: a slab's lists and its ownership transitions ------------- */
extern hak_lock_t _hak_abandoned_lock[HAK_CLASSES];
void _hak_slab_format(hak_slab_t *s, size_t cls);
hak_block_t *_hak_slab_take(hak_slab_t *s);                 /* free blocks for the fast path */
uint32_t _hak_slab_collect(hak_slab_t *s);                  /* thread_free → local_free */
void _hak_slab_return_blocks(hak_block_t *list);
void _hak_slab_detach(hak_slab_t *s, uint32_t mark); /* mark: its owner word while detached */
hak_slab_t *_hak_slab_adopt(size_t cls, uint32_t key);
bool _hak_slab_free_remote(hak_slab_t *s, hak_block_t *b, uint32_t mine);
bool _hak_slab_block_valid(const hak_slab_t *s, const void *p);
bool _hak_slab_block_is_free(hak_slab_t *s, const hak_block_t *b, const hak_front_t *h);
void _hak_slab_recount(hak_slab_t *s);
uint32_t _hak_slab_live(hak_slab_t *s, const hak_front_t *me);
void _hak_slab_check(hak_slab_t *s, const hak_front_t *h);

/* ---- heap.c: thread heaps ---------------------------------------------- */
extern hak_lock_t _hak_heap_registry_lock;
extern hak_lock_t _hak_global_heap_lock;
void *_hak_alloc_refill(size_t cls);          /* free[cls] was empty */
void _hak_free_slow(void *p, const char *who); /* who: the API call, for messages */
void _hak_free_local_empty(hak_slab_t *s);     /* the fast path's free emptied s */
void _hak_heap_flush_stats(void);
size_t _hak_heap_trim(void);
void _hak_heap_destructor(void *arg);
void _hak_heap_fork_child(void);
uint64_t _hak_heaps_stats(uint64_t *stat);

/* ---- large.c: blocks above the pool, own mappings, BigCache ----------- */
extern hak_lock_t _hak_large_lock;
void *_hak_large_alloc(size_t size, size_t align, bool zero);
void _hak_large_free(void *p);
size_t _hak_large_usable(const void *p);
void *_hak_large_realloc(void *p, size_t size);
const char *_hak_large_problem(const void *p); /* NULL if p is a live Large block */
size_t _hak_large_trim(void);
void _hak_large_stats(hak_stats_t *st);

/* ---- api.c: the semantics of the C allocation API ---------------------- */
void *_hak_alloc_slow(size_t size);
void *_hak_calloc(size_t n, size_t size);
void *_hak_realloc(void *p, size_t size);
void *_hak_alloc_aligned(size_t align, size_t size);
size_t _hak_usable_size(const void *p, const char *who);
int _hak_trim(void);
void _hak_report_invalid(const char *who, const void *p, const char *what);

/* ---- options.c: the HAKMEM_* table ------------------------------------- */
#define HAK_OPTION_LIST(X)                                                                  \
  X(VERBOSE, 0, 0, 1, "print the options in force at start-up")                             \
  X(STATS, 0, 0, 3, "at exit print statistics: 1 a line, 2 the report, 3 JSON")             \
  X(STATS_FD, 2, 0, 65535, "file descriptor the exit statistics are written to")          \
  X(INVALID_FREE, 1, 0, 2, "pointer hakmem did not hand out: 0 ignore, 1 report once, 2 abort") \
  X(CHECK, 0, 0, 1, "validate every free (double free, interior pointer) on the slow path") \
  X(RETAIN_KB, 4096, 0, 1048576, "empty memory kept resident for reuse, at least (KiB)")  \
  X(RETAIN_SHARE, 4, 0, 64, "and up to 1/N of the memory in use (0: the minimum only)")    \
  X(ROOM_MB, 48, 0, 65536, "or up to this much for a thread that keeps reusing it (MiB)") \
  X(PURGE_DELAY_MS, 10, 0, 60000, "empty memory past the budget is purged once empty this long (ms)") \
  X(UNMAP_DELAY_MS, 10000, 0, 3600000, "delay before a wholly free reservation is unmapped") \
  X(MADV_FREE, 0, 0, 1, "purge with MADV_FREE instead of MADV_DONTNEED")                    \
  X(THP, 0, 0, 2, "transparent huge pages for SuperSlabs: 0 system default, 1 request, 2 forbid") \
  X(BIGCACHE_MB, 32, 0, 65536, "bytes of freed Large mappings kept for reuse (MiB)")        \
  X(BIGCACHE_DECAY_MS, 1000, 0, 3600000, "age after which a cached Large mapping is unmapped")
enum {
#define HAK_OPTION_ENUM(name, def, lo, hi, desc) HAK_OPT_##name,
  HAK_OPTION_LIST(HAK_OPTION_ENUM)
#undef HAK_OPTION_ENUM
  HAK_OPT_COUNT
};
extern _Atomic long _hak_options[HAK_OPT_COUNT];
static inline long hak_opt(int id) {
  return atomic_load_explicit(&_hak_options[id], memory_order_relaxed);
}
void _hak_options_load(void);
void _hak_options_print(int fd);

/* Empty committed memory, one budget for the three places it waits for
 * reuse (threads' spare slabs, free units not yet purged, BigCache): at
 * least RETAIN_KB, or 1/RETAIN_SHARE of the memory in use, or the working
 * room, whichever is more. So a steady churn keeps its working room, and
 * after a burst is freed the room shrinks with it. Each place that adds
 * empty memory while over the budget purges or gives back its own: what
 * has been empty for PURGE_DELAY_MS (memory the program takes again within
 * that is never purged, and most of a churn's is), and past twice the
 * budget anything, oldest first.
 *
 * The working room is the sum of the rooms the thread heaps earn by reuse:
 * a heap's grows by each byte of empty memory its thread takes back (a
 * dirty unit, a spare slab, a resident BigCache mapping) and shrinks by a
 * quarter of each byte its thread makes empty, within 0 .. ROOM_MB. A
 * thread that keeps reusing its empty memory (at least a quarter of what it
 * frees comes back before it is purged) keeps up to ROOM_MB of it resident
 * and pays neither purges nor refaults; N such threads keep up to ROOM_MB
 * or N/2 times it, whichever is more (each has holes of its own to refill,
 * and two share what one would keep); a thread that only
 * allocates fresh memory and frees it (a burst) earns none, and what it
 * frees past the budget is purged. The room also lapses once no heap has
 * taken empty memory back for HAK_ROOM_TICKS (about a second at 2-4 GHz), counts
 * for no more than the memory in use, and leaves with its thread; a
 * thread's malloc_trim empties its own. Threads without a heap earn none. */
typedef struct hak_mem_totals {
  /* Changed by every thread's flush: */
  _Alignas(64) _Atomic size_t live; /* slabs holding blocks and live Large mappings */
  _Atomic size_t idle;              /* spare slabs, dirty free units, resident BigCache */
  /* Changed seldom, read at every budget check: a line of its own. */
  _Alignas(64) _Atomic int64_t room; /* the heaps' working rooms, as they added them */
  _Atomic uint64_t room_tsc;         /* TSC when a heap last took empty memory back */
  _Atomic uint32_t earners;          /* heaps with a room */
} hak_mem_totals_t;
extern hak_mem_totals_t _hak_mem;
/* Committed memory: mapped and possibly resident (not purged), SuperSlabs
 * and Large mappings alike, with its high-water mark. It changes only when
 * memory is first taken from a mapping or purged, unmapped or cut off. */
extern _Atomic size_t _hak_committed, _hak_committed_peak;
static inline void hak_committed_add(ptrdiff_t bytes) {
  size_t now = atomic_fetch_add_explicit(&_hak_committed, (size_t)bytes, memory_order_relaxed) + (size_t)bytes;
  if (bytes > 0) hak_atomic_max(&_hak_committed_peak, now);
}
#define HAK_ROOM_TICKS ((uint64_t)1 << 31)
#define HAK_ROOM_DRAIN 4 /* the room shrinks by 1/4 of what becomes empty */
/* A thread gathers its changes to the totals in its heap and adds them
 * in once one passes HAK_MEM_BATCH, so that threads churning large blocks
 * do not all write one cache line; each total is off by less than that per
 * thread (and may dip below 0 for a moment: readers clamp). A thread reads
 * the totals as they were at its own last flush or look (hak_mem_total):
 * the thread giving memory back flushes as it goes, and so sees it pass the
 * budget; it looks at the totals again every millisecond (hak_mem_look).
 * Threads without a heap add theirs at once. */
#define HAK_MEM_BATCH ((int64_t)4 << 20) /* and a heap's room the same way */
void _hak_mem_flush(hak_heap_t *h);
void _hak_mem_room_add(hak_heap_t *h); /* adds h's room change in */
void _hak_mem_room_reused(void);       /* notes the time of a reuse (the room lapses without) */
static inline bool hak_mem_batch_full(int64_t delta) {
  return (uint64_t)(delta + HAK_MEM_BATCH) > (uint64_t)(2 * HAK_MEM_BATCH);
}
/* The calling thread's room changes by delta (hak_mem_reused, hak_mem_move). */
static inline void hak_mem_room_move(int64_t delta) {
  hak_front_t *f = hak_tls_heap;
  if (f->key == HAK_KEY_NONE) return;
  hak_heap_t *h = (hak_heap_t *)f;
  int64_t cap = (int64_t)hak_opt(HAK_OPT_ROOM_MB) << 20, r = h->room + delta;
  r = r < 0 ? 0 : r > cap ? cap : r;
  if ((r > 0) != (h->room > 0))
    atomic_fetch_add_explicit(&_hak_mem.earners, r > 0 ? 1u : (uint32_t)-1, memory_order_relaxed);
  h->room = r;
  if (hak_mem_batch_full(h->room - h->room_added)) _hak_mem_room_add(h);
  else if (delta > 0 && r == cap) _hak_mem_room_reused(); /* reuse at the cap keeps the room too */
}
static inline void hak_mem_move(size_t bytes, _Atomic size_t *from, _Atomic size_t *to) {
  if (to == &_hak_mem.idle) hak_mem_room_move(-(int64_t)(bytes / HAK_ROOM_DRAIN));
  hak_front_t *f = hak_tls_heap;
  if (f->key == HAK_KEY_NONE) {
    if (from) atomic_fetch_sub_explicit(from, bytes, memory_order_relaxed);
    if (to) atomic_fetch_add_explicit(to, bytes, memory_order_relaxed);
    return;
  }
  hak_heap_t *h = (hak_heap_t *)f;
  if (from) h->mem_delta[from == &_hak_mem.idle] -= (int64_t)bytes;
  if (to) h->mem_delta[to == &_hak_mem.idle] += (int64_t)bytes;
  if (hak_mem_batch_full(h->mem_delta[0]) || hak_mem_batch_full(h->mem_delta[1])) _hak_mem_flush(h);
}
/* Empty memory taken back for reuse (hak_mem_move takes it off the total). */
static inline void hak_mem_reused(size_t bytes) { hak_mem_room_move((int64_t)bytes); }
/* A total as this thread sees it: with a heap, as of its last flush plus
 * its own changes since (reading it touches no line other threads write);
 * without, the shared total. */
static inline size_t hak_mem_total(_Atomic size_t *total) {
  hak_front_t *f = hak_tls_heap;
  int64_t v;
  if (f->key == HAK_KEY_NONE) {
    v = (int64_t)atomic_load_explicit(total, memory_order_relaxed);
  } else {
    hak_heap_t *h = (hak_heap_t *)f;
    int w = total == &_hak_mem.idle;
    v = h->mem_seen[w] + h->mem_delta[w];
  }
  return v < 0 ? 0 : (size_t)v;
}
/* The working room in force: earned, not lapsed, and at most the memory in
 * use (so a small program does not keep ROOM_MB for a few MiB of blocks). */
static inline size_t hak_mem_room(size_t live, uint64_t now) {
  if (now - atomic_load_explicit(&_hak_mem.room_tsc, memory_order_relaxed) >= HAK_ROOM_TICKS)
    return 0;
  int64_t room = atomic_load_explicit(&_hak_mem.room, memory_order_relaxed);
  hak_front_t *f = hak_tls_heap;
  if (f->key != HAK_KEY_NONE) { /* with this thread's own room as it is */
    hak_heap_t *h = (hak_heap_t *)f;
    room += h->room - h->room_added;
  }
  uint32_t earners = atomic_load_explicit(&_hak_mem.earners, memory_order_relaxed);
  int64_t one = (int64_t)hak_opt(HAK_OPT_ROOM_MB) << 20, cap = earners > 2 ? one / 2 * earners : one;
  room = room < 0 ? 0 : room > cap ? cap : room;
  return (size_t)room < live ? (size_t)room : live;
}
/* The budget as of `now` (TSC). */
static inline size_t hak_mem_budget(uint64_t now) {
  size_t min = (size_t)hak_opt(HAK_OPT_RETAIN_KB) << 10, live = hak_mem_total(&_hak_mem.live);
  long share = hak_opt(HAK_OPT_RETAIN_SHARE);
  size_t dyn = share ? live / (size_t)share : 0, room = hak_mem_room(live, now);
  size_t budget = dyn > min ? dyn : min;
  return room > budget ? room : budget;
}
/* A heap looks at the shared totals again once a millisecond has passed
 * since it last did: what other threads changed meanwhile, above all what
 * exiting threads gave back, then counts in its decisions (a line other
 * threads write is read at most once a millisecond per thread). */
static inline void hak_mem_look(uint64_t now) {
  hak_front_t *f = hak_tls_heap;
  if (f->key == HAK_KEY_NONE) return;
  hak_heap_t *h = (hak_heap_t *)f;
  if (now < h->mem_look_at) return;
  h->mem_look_at = now + _hak_os_ticks_per_ms();
  h->mem_seen[0] = (int64_t)atomic_load_explicit(&_hak_mem.live, memory_order_relaxed);
  h->mem_seen[1] = (int64_t)atomic_load_explicit(&_hak_mem.idle, memory_order_relaxed);
}
/* Where the empty memory stands against the budget. Past twice it, it is
 * purged at once, however young. */
enum { HAK_MEM_WITHIN, HAK_MEM_OVER, HAK_MEM_FAR_OVER };
static inline int hak_mem_excess(uint64_t now) {
  hak_mem_look(now);
  size_t idle = hak_mem_total(&_hak_mem.idle), budget = hak_mem_budget(now);
  return idle > 2 * budget ? HAK_MEM_FAR_OVER : idle > budget ? HAK_MEM_OVER : HAK_MEM_WITHIN;
}
static inline bool hak_mem_over(void) { return hak_mem_excess(__builtin_ia32_rdtsc()) != HAK_MEM_WITHIN; }
/* Once over, purging goes down to three quarters of the budget, so it runs
 * in batches and keeps most of the room. */
static inline bool hak_mem_above_target(void) {
  return hak_mem_total(&_hak_mem.idle) > hak_mem_budget(__builtin_ia32_rdtsc()) / 4 * 3;
}

/* ---- stats.c ----------------------------------------------------------- */
extern _Atomic uint64_t _hak_stat_total[HAK_STAT_COUNT]; /* exited threads' counters */
/* Counts one event of the calling thread: in its heap, or straight into
 * the totals for a thread without one. */
static inline void hak_stat_count(int id) {
  hak_front_t *f = hak_tls_heap;
  if (f->key == HAK_KEY_NONE) atomic_fetch_add_explicit(&_hak_stat_total[id], 1, memory_order_relaxed);
  else ((hak_heap_t *)f)->stat[id]++;
}
extern _Atomic uint64_t _hak_invalid_frees;
void _hak_stats_merge(uint64_t *stat);
void _hak_stats_exit_report(void);
void _hak_stats_xml(hak_buf_t *b);

/* ---- print.c: formatting without stdio (no allocation) ----------------- */
struct hak_buf {
  char data[1024];
  size_t len;
  size_t col;  /* characters since the last newline */
  int fd;      /* flushed here when full, and by _hak_buf_flush */
  void *file;  /* or to this FILE * (malloc_info), outside every hakmem lock */
};
void _hak_buf_str(hak_buf_t *b, const char *s);
void _hak_buf_dec(hak_buf_t *b, uint64_t v);
void _hak_buf_int(hak_buf_t *b, int64_t v);
void _hak_buf_hex(hak_buf_t *b, uint64_t v);
void _hak_buf_pad(hak_buf_t *b, size_t width); /* spaces up to column `width` of the current line */
void _hak_buf_flush(hak_buf_t *b);
void _hak_message(const char *a, const char *b, const char *c); /* "hakmem: " a b c "\n" on fd 2 */

/* ---- init.c ------------------------------------------------------------ */
void _hak_init(void);
bool _hak_key_ready(void);
int _hak_set_specific(void *heap);

/* ---- assertions -------------------------------------------------------- */
void _hak_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define HAK_ASSERT(e) ((e) ? (void)0 : _hak_assert_fail(#e, __FILE__, __LINE__))
#define HAK_DEBUG_ASSERT(e) (hak_cfg_debug ? HAK_ASSERT(e) : (void)0)

#endif
