/* alloc.h — the malloc and free fast paths, inline in override.c and api.c.
 * malloc: size → class → pop the heap's free-list head. free: chunk map says
 * SuperSlab → slab descriptor → held by this thread's heap (one compare) →
 * push on the slab's local list. Everything else is a slow path. */
#ifndef HAK_ALLOC_H
#define HAK_ALLOC_H

#include "internal.h"

/* A block of class cls (1 .. HAK_CLASS_LAST, or 0 for malloc(0)). */
static inline void *hak_alloc_class(size_t cls) {
  hak_front_t *h = hak_tls_heap;
  hak_block_t *b = h->free[cls];
  if (HAK_UNLIKELY(!b)) return _hak_alloc_refill(cls);
  h->free[cls] = b->next;
  return b;
}

static inline void *hak_alloc_inline(size_t size) {
  size_t cls;
  if (HAK_LIKELY(size <= HAK_TINY_MAX)) cls = (size + 15) >> 4;
  else if (size <= HAK_MID_MAX) cls = hak_class_of(size);
  else return _hak_alloc_slow(size);
  return hak_alloc_class(cls);
}

static inline void hak_free_inline(void *p, const char *who) {
  uintptr_t a = (uintptr_t)p;
  uintptr_t chunk = (a - 1) >> HAK_SS_SHIFT; /* NULL wraps around: not a chunk */
  if (HAK_UNLIKELY(chunk >= HAK_CHUNKS || _hak_chunk_map[chunk] != HAK_CHUNK_SUPERSLAB)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_slab_t *s = hak_slab_head(hak_unit_of((hak_superslab_t *)(chunk << HAK_SS_SHIFT), a));
  if (HAK_UNLIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) != hak_tls_heap->key)) {
    _hak_free_slow(p, who);
    return;
  }
  hak_block_t *b = p;
  b->next = s->local_free;
  atomic_signal_fence(memory_order_release); /* a fork child sees the link before the head */
  s->local_free = b;
  if (HAK_UNLIKELY(--s->used == 0)) _hak_free_local_empty(s);
}

#endif
