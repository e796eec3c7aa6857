/* alloc.h — the malloc and free fast paths, inline in override.c and api.c.
 * malloc: size → class → pop the heap's free-list head, clear the block's
 * mark. free: a block of one of the heap's current slabs, or of a class's
 * slab before it (proved by one multiply, heap.h) → push on the heap's
 * list; else chunk map says SuperSlab → slab descriptor held by this heap
 * (one compare) and a block of it → push on the slab's local list. A block
 * that already carries the heap's mark, and everything else, takes a slow
 * path. */
#ifndef HAK_ALLOC_H
#define HAK_ALLOC_H

#include <errno.h>

#include "internal.h"

/* n * size in *total, or false (a failure of `who`, errno ENOMEM) if it
 * overflows: calloc's and reallocarray's check. */
static inline bool hak_total_of(size_t n, size_t size, size_t *total, const char *who) {
  if (!__builtin_mul_overflow(n, size, total)) return true;
  _hak_fail((hak_ask_t){.who = who, .size = size, .n = n}, HAK_FAIL_OVERFLOW);
  return false;
}

/* Keeps an offset in a register where the compiler would add it to its
 * base once for several accesses: each access then takes it as an index,
 * and the fast path saves the add. */
#define HAK_KEEP_INDEX(off) __asm__("" : "+r"(off))

/* A block from the slot at byte offset `off` (HAK_SLOT_OFF of its class),
 * for a request of `size` bytes (which only the profile build counts
 * down, first: the allocation that ends the interval is the sample). `who`,
 * the API call, only goes to the slow paths (for their failures). `off`
 * is kept out of the registers that hold `size` and the block: without
 * that the profile build copied both (4 instructions for its countdown,
 * 2 with it; the other builds' code is the same either way). */
static inline __attribute__((always_inline)) void *hak_alloc_slot(size_t off, size_t size, const char *who) {
  __asm__("" : "+c"(off));
  if (hak_cfg_profile && HAK_UNLIKELY((hak_tls.profile_left -= (int64_t)size) < 0))
    return _hak_alloc_sample(off / sizeof(hak_class_slot_t), size, who);
  hak_front_t *f = hak_tls.heap;
  char *h = (char *)f->slot;
  hak_block_t *b = ((hak_class_slot_t *)(h + off))->free;
  if (HAK_UNLIKELY(!b)) return _hak_alloc_refill(off / sizeof(hak_class_slot_t), who);
  HAK_KEEP_INDEX(off);
  ((hak_class_slot_t *)(h + off))->free = hak_next(b);
  b->mark = 0;
  if (hak_cfg_stats)
    ((hak_heap_t *)hak_tls.heap)->counters.cls[off / sizeof(hak_class_slot_t)][HAK_CSTAT_allocs]++;
  return b;
}

/* A block of class cls (1 .. HAK_CLASS_LAST, or 0 for malloc(0)), for a
 * request of `size` bytes. */
static inline void *hak_alloc_class(size_t cls, size_t size, const char *who) {
  return hak_alloc_slot(HAK_SLOT_OFF(cls), size, who);
}

/* Inlined always: its caller's return address names the allocation's
 * site for the slow path (HAKMEM_SITES). */
static inline __attribute__((always_inline)) void *hak_alloc_inline(size_t size, const char *who) {
  if (HAK_LIKELY(size <= HAK_TINY_MAX)) /* (size + 15) / 16 slots of 16 bytes */
    return hak_alloc_slot((size + 15) & ~(size_t)15, size, who);
  if (size <= HAK_MID_MAX) return hak_alloc_class(hak_mid_class(size), size, who);
  return _hak_alloc_slow(size, who, (uintptr_t)__builtin_return_address(0));
}

/* A block aligned to `align` (a power of two). Up to a unit's alignment and
 * Mid sizes, the first class that holds the request rounded up to the
 * alignment and whose block size is a multiple of it (size_class.h) has
 * every block aligned (api.c): the inline path pops one. The rest, and the
 * failures, take _hak_alloc_aligned. (`size <= rounded` fails only when
 * the rounding wraps; `rounded` is a nonzero multiple of align, so align
 * is at most HAK_MID_MAX here.) */
static inline __attribute__((always_inline)) void *hak_alloc_aligned_inline(size_t align, size_t size,
                                                                            const char *who) {
  if (align <= 16) return hak_alloc_inline(size, who);
  size_t rounded = (size + align - 1) & ~(align - 1);
  if (HAK_UNLIKELY(rounded - 1 >= HAK_MID_MAX || size > rounded)) return _hak_alloc_aligned(align, size, who);
  if (rounded <= HAK_TINY_MAX)
    return hak_alloc_slot(rounded, size, who); /* the Tiny class of size `rounded` */
  size_t cls = hak_mid_class_aligned(hak_mid_class(rounded), align);
  HAK_DEBUG_ASSERT((hak_class_size(cls) & (align - 1)) == 0);
  return hak_alloc_class(cls, size, who);
}

/* A block of one of this heap's current slabs (or of the slab before one,
 * heap.h) is proved one by its unit's cur_unit entry (the start of a block
 * carved there, so neither the chunk map nor the descriptor is needed) and
 * goes straight back on the list malloc pops (blocks on it count as used,
 * so no counter changes). Else: the chunk map says SuperSlab (a block of a
 * SuperSlab never starts at its first byte, so p's own chunk is its
 * SuperSlab's) →
 * slab descriptor → held by this heap (one compare) and p a block of it:
 * its local list (or the class's list, if that is empty). Either way a
 * block that already carries this heap's mark may be free already: the
 * slow path looks. (Putting up to 32 blocks of other slabs on the class's
 * list, as a thread cache would, served more mallocs from the cache but
 * kept their slabs from draining: mem_efficiency's peak RSS +27%.) */
static inline __attribute__((always_inline)) void hak_free_inline(void *p, const char *who) {
  uintptr_t a = (uintptr_t)p;
  hak_front_t *h = hak_tls.heap;
  hak_block_t *b = p;
  uintptr_t off = (a >> (HAK_UNIT_SHIFT - 5)) & ((HAK_CUR_UNITS - 1) * sizeof(hak_cur_unit_t));
#define CUR(field)                                                   \
  ({                                                                 \
    HAK_KEEP_INDEX(off);                                             \
    ((const hak_cur_unit_t *)((uintptr_t)h->cur_unit + off))->field; \
  })
  if (HAK_LIKELY(hak_block_index(a * CUR(mul) - CUR(base)) < CUR(limit))) {
    if (HAK_UNLIKELY(b->mark == (uintptr_t)h)) {
      _hak_free_slow(p, who);
      return;
    }
    hak_class_slot_t *slot = CUR(slot);
#undef CUR
    b->mark = (uintptr_t)h;
    hak_set_next(b, slot->free);
    atomic_signal_fence(memory_order_release); /* a fork child sees the link before the head */
    slot->free = b;
    if (hak_cfg_stats) ((hak_heap_t *)h)->counters.cls[hak_slot_class(h, slot)][HAK_CSTAT_frees]++;
    return;
  }
  uintptr_t chunk = a >> HAK_SS_SHIFT;
  if (HAK_UNLIKELY(chunk >= HAK_CHUNKS || _hak_chunk_map[chunk] != HAK_CHUNK_SUPERSLAB)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_slab_t *s = hak_slab_of((hak_superslab_t *)(chunk << HAK_SS_SHIFT), a);
  if (HAK_UNLIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) != h->key ||
                   !hak_slab_has_block(s, p) || b->mark == (uintptr_t)h)) {
    _hak_free_unheld(p, who);
    return;
  }
  b->mark = (uintptr_t)h;
  if (hak_cfg_stats) ((hak_heap_t *)h)->counters.cls[s->cls][HAK_CSTAT_frees]++;
  hak_class_slot_t *slot = (hak_class_slot_t *)((uintptr_t)h->slot + HAK_SLOT_OFF(s->cls));
  if (!slot->free && !(slot->cur & HAK_CUR_COUNTED)) {
    /* A slab of this heap, and its class's list is empty: the block goes
     * there for the next malloc (it stays counted as used). */
    hak_set_next(b, NULL);
    slot->free = b;
    return;
  }
  hak_set_next(b, s->local_free);
  atomic_signal_fence(memory_order_release);
  s->local_free = b;
  h->refill_hint[s->cls] = s; /* where the next refill looks first */
  if (HAK_UNLIKELY(--s->used == 0)) _hak_free_local_empty(s);
}

#endif
