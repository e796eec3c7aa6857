/* alloc.h — the malloc and free fast paths, inline in override.c and api.c.
 * malloc: size → class → pop the heap's free-list head. free: a unit of one
 * of the heap's current slabs → push on the heap's list; else chunk map says
 * SuperSlab → slab descriptor held by this heap (one compare) → push on the
 * slab's local list. Everything else is a slow path. */
#ifndef HAK_ALLOC_H
#define HAK_ALLOC_H

#include "internal.h"

/* A block from the slot at byte offset `off` (HAK_SLOT_OFF of its class). */
static inline void *hak_alloc_slot(size_t off) {
  hak_class_slot_t *slot = (hak_class_slot_t *)((uintptr_t)hak_tls_heap + off);
  hak_block_t *b = slot->free;
  if (HAK_UNLIKELY(!b)) return _hak_alloc_refill(off / sizeof(hak_class_slot_t));
  slot->free = b->next;
  return b;
}

/* A block of class cls (1 .. HAK_CLASS_LAST, or 0 for malloc(0)). */
static inline void *hak_alloc_class(size_t cls) { return hak_alloc_slot(HAK_SLOT_OFF(cls)); }

static inline void *hak_alloc_inline(size_t size) {
  if (HAK_LIKELY(size <= HAK_TINY_MAX)) /* (size + 15) / 16 slots of 16 bytes */
    return hak_alloc_slot((size + 15) & ~(size_t)15);
  if (size <= HAK_MID_MAX) return hak_alloc_class(_hak_mid_class[(size - 1) >> HAK_MID_SHIFT]);
  return _hak_alloc_slow(size);
}

/* A block of one of this heap's current slabs is found by its unit alone
 * (cur_unit: the entry proves the unit is in that slab, so neither the
 * chunk map nor the header is needed) and goes straight back on the list
 * malloc pops (blocks on it count as used, so no counter changes). Else:
 * the chunk map says SuperSlab (a block of a SuperSlab never starts at its
 * first byte, so p's own chunk is its SuperSlab's) → slab descriptor → held
 * by this heap (one compare): its local list. Everything else is a slow
 * path. */
static inline void hak_free_inline(void *p, const char *who) {
  uintptr_t a = (uintptr_t)p;
  hak_front_t *h = hak_tls_heap;
  hak_block_t *b = p;
  const hak_cur_unit_t *e =
      (const hak_cur_unit_t *)((uintptr_t)h->cur_unit + ((a >> (HAK_UNIT_SHIFT - 4)) &
                                                         ((HAK_CUR_UNITS - 1) * sizeof(hak_cur_unit_t))));
  if (HAK_LIKELY(e->unit == a >> HAK_UNIT_SHIFT)) {
    hak_class_slot_t *slot = e->slot;
    b->next = slot->free;
    atomic_signal_fence(memory_order_release); /* a fork child sees the link before the head */
    slot->free = b;
    return;
  }
  uintptr_t chunk = a >> HAK_SS_SHIFT;
  if (HAK_UNLIKELY(chunk >= HAK_CHUNKS || _hak_chunk_map[chunk] != HAK_CHUNK_SUPERSLAB)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_slab_t *s = hak_slab_of((hak_superslab_t *)(chunk << HAK_SS_SHIFT), a);
  if (HAK_UNLIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) != h->key)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_class_slot_t *slot = (hak_class_slot_t *)((uintptr_t)h + s->slot_off);
  if (!slot->free && !(slot->cur & HAK_CUR_COUNTED)) {
    /* A slab of this heap, and its class's list is empty: the block goes
     * there for the next malloc (it stays counted as used). */
    b->next = NULL;
    slot->free = b;
    return;
  }
  b->next = s->local_free;
  atomic_signal_fence(memory_order_release);
  s->local_free = b;
  h->refill_hint[s->cls] = s; /* where the next refill looks first */
  if (HAK_UNLIKELY(--s->used == 0)) _hak_free_local_empty(s);
}

#endif
