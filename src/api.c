/* api.c — the semantics of the C allocation API beyond the fast paths:
 * sizes above the inline path, calloc, realloc, aligned allocation, usable
 * size and trimming. override.c exports them under the standard names. */
#include <errno.h>
#include <string.h>

#include "alloc.h"

/* A Large block for ask (zeroed if `zero`), or the failure why not. */
static void *large_block(hak_ask_t ask, size_t align, bool zero, uintptr_t pc) {
  if (ask.size > PTRDIFF_MAX) return _hak_fail(ask, HAK_FAIL_SIZE);
  hak_tick_t t0 = hak_sample_start(hak_tls_counters());
  hak_site_plan_t plan = _hak_site_plan(pc, ask.size);
  _hak_heap_before_large(ask.size);
  void *p = _hak_large_alloc(ask.size, align, zero, plan.site);
  if (plan.sample) _hak_site_sampled(plan.site, p);
  if (p && HAK_UNLIKELY(_hak_profile_on)) _hak_heap_sample_large(p, ask.size);
  hak_note(HAK_EV_LARGE_ALLOC, (uintptr_t)p, ask.size);
  if (t0) _hak_sample_end(HAK_LAT_LARGE, t0);
  return p ? p : _hak_fail(ask, HAK_FAIL_MAP);
}

void *_hak_alloc_slow(size_t size, const char *who, uintptr_t pc) {
  if (size > HAK_POOL_MAX) return large_block((hak_ask_t){.who = who, .size = size}, 0, false, pc);
  size_t cls = hak_class_of(size);
  void *p =
      cls > HAK_CLASS_MID_LAST && hak_opt(HAK_OPT_SITES) ? _hak_heap_alloc_sited(cls, size, pc, who) : NULL;
  return p ? p : hak_alloc_class(cls, size, who);
}

void *_hak_calloc(size_t n, size_t size) {
  size_t total;
  if (!hak_total_of(n, size, &total, "calloc")) return NULL;
  if (total > HAK_POOL_MAX)
    return large_block((hak_ask_t){.who = "calloc", .size = total}, 0, true,
                       (uintptr_t)__builtin_return_address(0));
  void *p = hak_alloc_inline(total, "calloc");
  if (p) memset(p, 0, total);
  return p;
}

/* A failure of an aligned allocation: its record is built only here, off
 * the path that succeeds (comprehensive/aligned: 7 instructions fewer per
 * allocation). */
static __attribute__((noinline, cold)) void *aligned_fail(const char *who, size_t size, size_t align,
                                                          int why) {
  return _hak_fail((hak_ask_t){.who = who, .size = size, .align = align}, why);
}

/* An alignment above 16 (hak_alloc_aligned_inline takes the rest, and the
 * Tiny and Mid requests it can). Alignments up to 64 KiB with sizes up to
 * HAK_POOL_MAX come from the first class that fits whose block size is a
 * multiple of the alignment, or whose run holds one block (the secure
 * build's last): slabs start 64 KiB aligned (4 KiB in unit 0, which only
 * holds blocks up to 4 KiB), so every block of such a class is aligned.
 * The rest are Large. */
void *_hak_alloc_aligned(size_t align, size_t size, const char *who) {
  HAK_DEBUG_ASSERT(align > 16);
  if (size > PTRDIFF_MAX) return aligned_fail(who, size, align, HAK_FAIL_SIZE);
  if (align <= HAK_UNIT_SIZE) {
    size_t rounded = (size + align - 1) & ~(align - 1);
    if (rounded == 0) rounded = align;
    if (rounded <= HAK_TINY_MAX)
      return hak_alloc_slot(rounded, size, who); /* Tiny: the class size is `rounded` */
    if (rounded <= HAK_POOL_MAX) {
      /* rounded is a multiple of align: a Mid doubling ends with a power
       * of two that align divides; in the pool's, if align is at least the
       * class step, rounded is a class size itself; if less, every class
       * size of that doubling is a multiple of align. */
      size_t cls = hak_class_of(rounded);
      if (cls <= HAK_CLASS_MID_LAST) cls = hak_mid_class_aligned(cls, align);
      HAK_DEBUG_ASSERT((hak_class_size(cls) & (align - 1)) == 0 || _hak_pool_single(cls));
      return hak_alloc_class(cls, size, who);
    }
  }
  if (align >> HAK_ADDR_BITS) return aligned_fail(who, size, align, HAK_FAIL_ALIGN);
  /* A Large block of 0 bytes would have no usable byte, which realloc and
   * malloc_usable_size could not tell from a bad pointer. */
  void *p = _hak_large_alloc(size ? size : 1, align, false, 0);
  if (p && HAK_UNLIKELY(_hak_profile_on)) _hak_heap_sample_large(p, size);
  return p ? p : aligned_fail(who, size, align, HAK_FAIL_MAP);
}

/* The usable size of p; a pointer that is not a live block is reported
 * (and 0 returned if it is foreign and HAKMEM_INVALID_FREE lets it be). */
size_t _hak_usable_size(const void *p, const char *who) {
  if (!p) return 0;
  uintptr_t a = (uintptr_t)p;
  uint8_t kind = ((a - 1) >> HAK_ADDR_BITS) ? HAK_CHUNK_NONE : _hak_chunk_map[(a - 1) >> HAK_SS_SHIFT];
  if (kind == HAK_CHUNK_SUPERSLAB) {
    hak_superslab_t *ss = hak_superslab_of(p);
    hak_slab_t *s = hak_slab_of(ss, a);
    if (hak_slab_has_block(s, p)) return s->block_size;
    _hak_report(who, p, _hak_slab_problem(s, p));
    return 0;
  }
  if (kind == HAK_CHUNK_LARGE) {
    hak_misuse_t m = _hak_large_problem(p);
    if (m.kind == HAK_MISUSE_NONE) return _hak_large_usable(p);
    _hak_report(who, p, m);
    return 0;
  }
  _hak_report(who, p, (hak_misuse_t){.kind = HAK_MISUSE_FOREIGN});
  return 0;
}

void *_hak_realloc(void *p, size_t size) {
  if (!p) return hak_alloc_inline(size, "realloc");
  if (size == 0) {
    hak_free_inline(p, "realloc");
    return NULL;
  }
  size_t old = _hak_usable_size(p, "realloc");
  if (old == 0) {
    errno = EINVAL;
    return NULL;
  }
  if (size > PTRDIFF_MAX) return _hak_fail((hak_ask_t){.who = "realloc", .size = size}, HAK_FAIL_SIZE);
  if (old > HAK_POOL_MAX && size > HAK_POOL_MAX) {
    void *q = _hak_large_realloc(p, size); /* a sample's free told (large.c) */
    if (q && HAK_UNLIKELY(_hak_profile_on)) _hak_heap_sample_large(q, size);
    if (q) return q;
  } else if (size <= old && (size > old / 2 || hak_class_size(hak_class_of(size)) >= old)) {
    return p; /* a smaller block would not save half */
  }
  /* A block that grows by less than a quarter (appends) is likely to grow
   * so again: leave it room, half its size, within the pool (a Large block
   * grows with mremap instead). One that grows by more grows
   * geometrically by itself: room on top of that kept memory and saved few
   * copies (comprehensive/realloc's 1.5x chains: 14 % more bytes held for
   * 3 % fewer copied). */
  size_t want = size;
  if (size > old && size < old + old / 4 && old + old / 2 <= HAK_POOL_MAX) want = old + old / 2;
  void *q = hak_alloc_inline(want, "realloc");
  if (!q) return NULL;
  memcpy(q, p, size < old ? size : old);
  hak_free_inline(p, "realloc");
  return q;
}

int _hak_trim(void) {
  hak_heap_t *h = hak_tls_own_heap();
  hak_note(HAK_EV_TRIM, 0, 0);
  size_t n = h ? _hak_heap_trim(h) : 0;
  _hak_heap_release_sample_runs();
  _hak_mem_refaulted_forget(); /* the program asks for the memory to go: what was kept for refaults too */
  n += _hak_purge_all();
  n += _hak_large_trim();
  return n > 0;
}
