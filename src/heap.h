/* heap.h — the sections of internal.h for the heap and the layers above it
 * (thread, stats, api): the fast paths' view of a heap (hak_front_t), the
 * heap, and the accessors through which lower layers reach the calling
 * thread's own part of them. Included by internal.h, not on its own. */
#ifndef HAK_HEAP_H
#define HAK_HEAP_H

/* ---- heap.c: thread heaps ---------------------------------------------- */
/* A heap's current slab of a class: the one free[c] was last refilled
 * from when it switched (free[c] also holds blocks refills took from the
 * heap's partial slabs, heap.c). The fast free pushes a block of it
 * straight back on free[c], unless the
 * slot's `cur` carries HAK_CUR_COUNTED: then every free of it is counted on
 * the slab (checking mode, and pool classes, whose empty runs go back at
 * once). */
#define HAK_CUR_COUNTED ((uintptr_t)1)

typedef struct hak_class_slot {
  hak_block_t *free; /* free-list head; slot[0].free stays NULL */
  uintptr_t cur;     /* current slab | HAK_CUR_COUNTED; 0 = none */
} hak_class_slot_t;

/* The units of a heap's current slabs (uncounted ones), and of a class's
 * previous current slab while it is the class's only other one (heap.c,
 * heap_keep_prev), by unit number modulo HAK_CUR_UNITS: the free fast path
 * finds a block's class slot here from its address alone. The entry of a
 * unit of such a slab s of class c holds what proves that p is a block of s:
 *   hak_block_index(p * mul - base) < limit,  mul = _hak_block_mul[c],
 *   base = start(s) * mul, limit = s->carved (size_class.h: exactly the
 * starts of the blocks carved in s). A unit that collides takes the entry
 * over and the other unit's frees take the longer path; an entry of zeros
 * (limit 0) matches nothing. */
#define HAK_CUR_UNITS 256
typedef struct hak_cur_unit {
  uint64_t mul, base, limit;
  hak_class_slot_t *slot;
} hak_cur_unit_t;
_Static_assert(sizeof(hak_cur_unit_t) == 32, "entry offset = (p >> (HAK_UNIT_SHIFT - 5)) & mask");

struct hak_front {
  hak_cur_unit_t cur_unit[HAK_CUR_UNITS]; /* first: its entries are addressed from the heap's start */
  hak_class_slot_t slot[HAK_CLASSES];     /* a slot's address is slot + HAK_SLOT_OFF */
  hak_slab_t *refill_hint[HAK_CLASSES];   /* partial slab that last had a block freed by this heap */
  uint32_t key;                           /* owner word of the slabs it holds, or a never-matching key */
  uint32_t busy;                          /* inside a slow path that changes its slabs (fork child reads) */
};
#define HAK_SLOT_OFF(cls) ((uintptr_t)(cls) * sizeof(hak_class_slot_t))
_Static_assert(sizeof(hak_class_slot_t) == 16, "Tiny slot offset = (size + 15) & ~15");

static inline hak_slab_t *hak_front_cur(const hak_front_t *f, size_t cls) {
  return (hak_slab_t *)(f->slot[cls].cur & ~HAK_CUR_COUNTED);
}

/* The secure build's quarantine: blocks its thread freed, held back from
 * reuse, oldest first, up to HAKMEM_QUARANTINE_KB bytes (secure.c fills
 * it; a block leaves it when newer ones push it out, or when the heap
 * drains it at thread exit, malloc_trim and in a fork child). A block in
 * it is with the program as far as its slab knows. */
#define HAK_QUARANTINE_SLOTS (HAK_SECURE ? 4096 : 1)
typedef struct hak_quarantine {
  struct {
    hak_block_t *block;
    size_t size;
  } slot[HAK_QUARANTINE_SLOTS];
  uint32_t first, count;
  size_t bytes;
} hak_quarantine_t;

/* A block (of `size` bytes) goes in. */
static inline void hak_quarantine_put(hak_quarantine_t *q, hak_block_t *b, size_t size) {
  uint32_t i = (q->first + q->count) % HAK_QUARANTINE_SLOTS;
  q->slot[i].block = b;
  q->slot[i].size = size;
  atomic_signal_fence(memory_order_release); /* a fork child sees the slot before the count */
  q->count++;
  q->bytes += size;
}
/* The oldest comes out, with its size (NULL if none), while the blocks
 * held are over `budget` bytes or fill every slot. */
static inline hak_block_t *hak_quarantine_take(hak_quarantine_t *q, size_t budget, size_t *size) {
  if (!q->count || (q->bytes <= budget && q->count < HAK_QUARANTINE_SLOTS)) return NULL;
  hak_block_t *b = q->slot[q->first].block;
  *size = q->slot[q->first].size;
  q->bytes -= *size;
  q->first = (q->first + 1) % HAK_QUARANTINE_SLOTS;
  q->count--;
  return b;
}

/* The debug build's ring of a thread's recent slow-path events, printed by
 * the crash report (crash.c): the last HAK_RING_EVENTS, each with its
 * time, kind and two figures (what they are depends on the kind). */
#define HAK_RING_EVENTS (HAK_DEBUG ? 32 : 1)
enum { HAK_EV_REFILL, HAK_EV_SLOW_FREE, HAK_EV_LARGE_ALLOC, HAK_EV_LARGE_FREE, HAK_EV_TRIM, HAK_EV_KINDS };
typedef struct hak_ring {
  struct {
    hak_tick_t at;
    uint32_t kind;
    uint64_t a, b;
  } ev[HAK_RING_EVENTS];
  uint32_t next; /* events so far */
} hak_ring_t;

/* Blocks freed into slabs another heap holds travel to it in batches
 * (heap.c, heap_send): the freeing thread gathers them by the holder they
 * go to, each marked as that heap's free blocks are, and pushes a batch on
 * its inbox with one compare-and-swap; the holder frees them into its
 * slabs at its next miss, reading their addresses from the batch, not
 * from the blocks, and writing their links itself. A batch goes back to
 * the heap that made it once emptied. */
#define HAK_INBOX_CLOSED ((uintptr_t)1) /* its heap retired: senders free their batches themselves */
#define HAK_BATCH_BLOCKS 60
#define HAK_OUTBOXES 4
#define HAK_SEND_MISSES 64 /* a batch not full goes out after this many misses */
#define HAK_BATCHES_MAX 64 /* batches a heap makes at most (32 KiB) */
typedef struct hak_heap hak_heap_t;
typedef struct hak_batch hak_batch_t;
struct hak_batch {
  hak_batch_t *next;      /* on an inbox, or its maker's stock or returns */
  hak_heap_t *to, *maker; /* its destination; the heap that made it */
  uint32_t n;             /* blocks in it */
  hak_block_t *block[HAK_BATCH_BLOCKS];
};
_Static_assert(sizeof(hak_batch_t) == 512, "a batch is 512 bytes of metadata");

#define HAK_HEAP_SAMPLE_RUNS 4

struct hak_heap {
  hak_front_t front;                            /* first: the thread-local points here */
  hak_list_t partial[HAK_CLASSES];              /* held slabs other than the current, oldest first */
  hak_slab_t *prev[HAK_CLASSES];                /* the last current one, if it keeps the shortcut */
  hak_list_t spare[HAK_MAX_SLAB_UNITS];         /* empty slabs kept for reuse, by units - 1 */
  uint8_t pulls[HAK_CLASSES];                   /* refills in a row from partial slabs, current kept */
  uint8_t carve_shift[HAK_CLASSES];             /* HAKMEM_ACE: a class carves 1 << this pages at once */
  uint8_t carves[HAK_CLASSES];                  /* and has carved on this many refills in a row */
  uint32_t carved_at[HAK_CLASSES];              /* when it last carved (ticks >> HAK_AGE_SHIFT) */
  uint32_t spare_mask;                          /* bit i: spare[i] is not empty */
  hak_tick_t spare_at;                          /* when a spare was last added or taken */
  size_t spare_bytes;                           /* their bytes */
  size_t held_bytes;                            /* bytes of every slab it holds (0 after teardown) */
  hak_slab_t *sample_run[HAK_HEAP_SAMPLE_RUNS]; /* HAKMEM_PROFILE: freed samples' runs it keeps (heap.c) */
  uint32_t sample_runs;                         /* how many */
  hak_pool_t pool;                              /* the SuperSlabs it owns (pool.c) */
  hak_budget_local_t budget;                    /* its changes to the totals (budget.c) */
  hak_counters_t counters;                      /* its event counts (counters.c) */
  hak_site_local_t sites;               /* its allocation clock's batch, its sample countdown (sites.c) */
  hak_profile_local_t profile;          /* HAKMEM_PROFILE: whether it is taking a stack (profile.c) */
  hak_quarantine_t quarantine;          /* the secure build's freed blocks held back */
  hak_batch_t *outbox[HAK_OUTBOXES];    /* batches it fills, by destination (heap.c, heap_send) */
  hak_batch_t *stock;                   /* its empty batches */
  uint32_t batches_made;                /* batches it made (HAK_BATCHES_MAX at most) */
  uint32_t send_countdown;              /* misses until the batches go out (0: none being filled) */
  _Alignas(64) _Atomic uintptr_t inbox; /* batches sent to it, or HAK_INBOX_CLOSED; other threads push */
  _Atomic(hak_batch_t *) returns;       /* its batches, emptied by their receivers */
  hak_refusal_t refusal;                /* its last refused mapping (os.c) */
  hak_ring_t ring;                      /* the debug build's recent slow-path events */
  uint64_t profile_rng;                 /* HAKMEM_PROFILE: the sampling intervals' random state */
  hak_link_t reg;                       /* on the registry's live or spare list (thread.c) */
  uint32_t id;                          /* key = id << 2; ids are never reused by another struct */
};
_Static_assert(offsetof(hak_heap_t, front) == 0, "a front is its heap");

/* The class of a slot the fast free put a block on: for the stats build's
 * count. */
static inline size_t hak_slot_class(const hak_front_t *f, const hak_class_slot_t *slot) {
  return (size_t)(slot - f->slot);
}

/* ---- the thread's own parts -----------------------------------------------
 * The calling thread's heap, or NULL before its first allocation and after
 * its teardown; and the parts of it that lower layers own. */
static inline hak_heap_t *hak_tls_own_heap(void) {
  hak_front_t *f = hak_tls.heap;
  return f->key == HAK_KEY_NONE ? NULL : (hak_heap_t *)f;
}
static inline hak_counters_t *hak_tls_counters(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->counters : NULL;
}
static inline hak_budget_local_t *hak_tls_budget(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->budget : NULL;
}
static inline hak_pool_t *hak_tls_pool(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->pool : NULL;
}
static inline hak_profile_local_t *hak_tls_profile(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->profile : NULL;
}
static inline hak_site_local_t *hak_tls_sites(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->sites : NULL;
}
static inline hak_refusal_t *hak_tls_refusal(void) {
  hak_heap_t *h = hak_tls_own_heap();
  return h ? &h->refusal : NULL;
}

/* ---- heap.c, continued ------------------------------------------------- */
/* The debug build notes a slow-path event of the calling thread. */
static inline void hak_note(uint32_t kind, uint64_t a, uint64_t b) {
  hak_heap_t *h = hak_cfg_debug ? hak_tls_own_heap() : NULL;
  if (!h) return;
  uint32_t i = h->ring.next++ % HAK_RING_EVENTS;
  h->ring.ev[i].at = _hak_os_ticks();
  h->ring.ev[i].kind = kind;
  h->ring.ev[i].a = a;
  h->ring.ev[i].b = b;
}
void _hak_free_slow(void *p, const char *who); /* who: the API call, for messages */
void _hak_heap_free_unheld(hak_heap_t *h, void *p, const char *who);
/* Whether b, a block of s, is free already (as far as the calling thread
 * can prove: heap.c, _hak_free_slow). */
bool _hak_block_is_free(hak_slab_t *s, const hak_block_t *b);
void _hak_free_local_empty(hak_slab_t *s); /* the fast path's free emptied s */
/* A block of cls from h, whose list is empty; `who`, the API call, names
 * it in a report of what h finds in the batches it takes in. */
void *_hak_heap_alloc(hak_heap_t *h, size_t cls, const char *who);
/* HAKMEM_SITES: a block of pool class cls (for a request of `size`
 * bytes) allocated from return address pc, if its site's plan puts it in
 * a run of its own (the site is lasting, or this is its sample); NULL: the
 * class's list serves it. */
void *_hak_heap_alloc_sited(size_t cls, size_t size, uintptr_t pc, const char *who);
/* HAKMEM_PROFILE: the calling thread's heap samples from now on (the
 * profiler's start-up, and every heap made after it). */
void _hak_heap_profile_start(void);
/* HAKMEM_PROFILE: the runs of freed Tiny and Mid samples, kept for the next
 * samples of any heap (heap.c); the lock is a leaf (thread.c's fork
 * handlers take it). */
extern hak_lock_t _hak_sample_runs_lock;
void _hak_heap_release_sample_runs(void); /* malloc_trim: they go back */
/* HAKMEM_PROFILE: the allocation of `size` bytes of class cls that ended
 * h's sampling interval: a block on a run of its own, its stack recorded
 * (from the frame `from` on), and the next interval drawn; NULL if no run could be had (the class's
 * list serves it then). */
void *_hak_heap_alloc_sample(hak_heap_t *h, size_t cls, size_t size, const hak_frame_t *from);
/* HAKMEM_PROFILE: a Large block of `size` bytes was just allocated; the
 * calling thread's heap (or, if it has none, the shared countdown) counts
 * it and samples it if due. */
void _hak_heap_sample_large(void *p, size_t size);
/* h lets go of every slab of class c it holds (with recount: after fork,
 * see _hak_slab_recount), or of every slab and SuperSlab, its batches
 * sent and its inbox closed (`who`: "exit" or "fork", for reports). */
void _hak_heap_detach_class(hak_heap_t *h, size_t c, bool recount);
void _hak_heap_detach_all(hak_heap_t *h, bool recount, const char *who);
void _hak_heap_release_spares(hak_heap_t *h);
/* A Large block of `size` bytes is about to be made: for one of 2 MiB or
 * more, the calling thread's spare slabs (2 MiB of them or more) go back to
 * their SuperSlabs, so that those left wholly free give the block their
 * pages (_hak_ss_donate) instead of the block faulting in fresh ones beside
 * memory kept empty. (Its pool's wholly free SuperSlabs are shared by
 * large.c, once BigCache has missed.) */
void _hak_heap_before_large(size_t size);
size_t _hak_heap_trim(hak_heap_t *h);

/* ---- thread.c: registry, thread-local, thread exit, global heap, fork -- */
extern hak_lock_t _hak_heap_registry_lock;
extern hak_lock_t _hak_global_heap_lock;
extern const hak_front_t _hak_heap_empty;             /* before the thread's first allocation */
extern const hak_front_t _hak_heap_dead;              /* after the thread's teardown */
void *_hak_alloc_refill(size_t cls, const char *who); /* free[cls] was empty (the fast path's slow path) */
/* The profile build's slow path: an allocation of `size` bytes of cls
 * that ended the thread's sampling interval (thread.c's entry in assembly
 * passes on the frame of the call). */
void *_hak_alloc_sample(size_t cls, size_t size, const char *who);
void *_hak_alloc_sample_at(size_t cls, size_t size, const char *who, const hak_frame_t *from);
void _hak_free_unheld(void *p, const char *who); /* a free into a slab this thread's heap does not hold */
void _hak_init(void);                            /* options, the thread-exit key, fork handlers; re-entrant */
void _hak_heap_flush_counters(void);             /* the calling thread's counters into the totals */
/* n += live heaps' counts (and cls += their class events, if cls is not
 * NULL); returns live heaps (locks held). */
uint64_t _hak_heaps_counters(uint64_t *n, uint64_t (*cls)[HAK_CSTAT_COUNT]);

/* ---- stats.c ----------------------------------------------------------- */
void _hak_stats_exit_report(void);
void _hak_stats_xml(hak_buf_t *b);

/* The figures and the bytes of live blocks per tier (tiny, mid, pool,
 * Large), for the timeline. */
void _hak_stats_tiers(hak_stats_t *st, size_t tier[4]);

/* ---- timeline.c: HAKMEM_TIMELINE's helper thread ----------------------- */
void _hak_timeline_start(void); /* at start-up, if HAKMEM_TIMELINE is set */
void _hak_timeline_end(void);   /* at exit: the last line */

/* ---- crash.c: HAKMEM_CRASH_REPORT's signal handlers ------------------- */
void _hak_crash_install(void); /* at start-up, by the thread that starts the library */

/* ---- api.c: the semantics of the C allocation API ---------------------- */
void *_hak_alloc_slow(size_t size, const char *who, uintptr_t pc); /* pc: the caller's return address */
void *_hak_calloc(size_t n, size_t size);
void *_hak_realloc(void *p, size_t size);
void *_hak_alloc_aligned(size_t align, size_t size, const char *who);
size_t _hak_usable_size(const void *p, const char *who);
int _hak_trim(void);

/* ---- secure.c: the secure build's C API -------------------------------- */
/* align: 16 for malloc; form: HAK_FORM_*, as the block's record keeps it */
void *_hak_secure_alloc(size_t size, size_t align, bool zero, int form, const char *who);
/* given: the size the program says (if sized); form: the delete's
 * HAK_FORM (HAK_FORM_MALLOC for free, which takes any block) */
void _hak_secure_free(void *p, size_t given, bool sized, int form, const char *who);
size_t _hak_secure_usable(const void *p, const char *who);
void *_hak_secure_realloc(void *p, size_t size, const char *who);
void _hak_secure_check_quarantine(const char *who); /* the calling thread's */

#endif
