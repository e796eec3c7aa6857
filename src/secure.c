/* secure.c — the secure build's C API (libhakmem-secure; override.c calls
 * it when hak_cfg_secure): every block carries the record of the size the
 * program asked for and a canary after it; freed blocks are zeroed and
 * held back in the thread's quarantine; zero-byte allocations point into
 * memory with no access.
 *
 * A block of `room` usable bytes (its class size, or a Large block's
 * pages) holding `asked` bytes:
 *
 *   [0, asked)                 the program's bytes
 *   [asked, canary_end)        canary bytes, up to 16, at least 1
 *   [room - 8, room)           the trailer: (asked | form << 62) ^ key(block)
 *
 * Each allocation asks the tiers below for asked + 9 bytes, so there is
 * room for both. Free checks the trailer and the canary (a write past the
 * end), and the size free_sized was given; malloc_usable_size says
 * `asked`. The form (HAK_FORM_*: malloc and the like, C++'s operator new
 * or new[], cxx.c) lets delete catch a block of new[] given to delete and
 * the reverse; sized delete is checked against the size asked for a block
 * of new or new[] (one from malloc may be the program's own operator
 * new's, with a header of its own). Blocks up to HAK_ZEROED_MAX (1 KiB)
 * are zeroed whole at free and proved zero when handed out again (a write after free), so they need no
 * memset for calloc; slab.c zeroes them when it carves. A freed block
 * waits in its thread's quarantine (heap.h) until HAKMEM_QUARANTINE_KB of
 * newer frees push it out, holding its size record in its first word and
 * the quarantine mark in its second; it is proved untouched then and
 * freed for reuse (the free list's link takes the first word). Large
 * blocks have their own guard page and quarantine (large.c). */
#include <errno.h>
#include <string.h>

#include "alloc.h"

#define CANARY_MAX 16
#define OVERHEAD 9    /* one canary byte and the trailer, at least */
#define FORM_SHIFT 62 /* the trailer's form bits */
/* Zero-byte allocations: pointers 16 bytes apart into a region with no
 * access, marked in the chunk map. */
#define ZERO_REGION ((size_t)1 << 30)
#define ZERO_STEP 16

static char *_Atomic zero_region;
static _Atomic uint64_t zero_next;

static uint64_t block_key(const void *p) { return hak_secret() ^ ((uintptr_t)p * 0x9e3779b97f4a7c15ull); }
/* The canary byte of the block with key k, in every byte of a word. */
static uint64_t canary_of(uint64_t k) { return ((uint8_t)(k >> 24) | 1) * 0x0101010101010101ull; }
static uintptr_t quarantine_mark(void) { return (uintptr_t)hak_secret() | 1; }

static uint64_t *trailer(void *p, size_t room) { return (uint64_t *)((char *)p + room - 8); }
static size_t canary_end(size_t asked, size_t room) {
  return asked + CANARY_MAX < room - 8 ? asked + CANARY_MAX : room - 8;
}

/* The canary bytes after asked (c: canary_of the block's key): as
 * canary_intact reads them. */
static void canary_set(char *p, size_t asked, size_t room, uint64_t c) {
  size_t end = canary_end(asked, room);
  if (end - asked < 8) {
    memset(p + asked, (uint8_t)c, end - asked);
    return;
  }
  memcpy(p + asked, &c, 8);
  memcpy(p + end - 8, &c, 8);
}

/* Whether the canary bytes after asked still hold the canary c: 1 to 16
 * bytes, read as two words that may overlap. Under 8 bytes, the canary
 * ends where the trailer starts, at least 16 bytes in: the word before
 * the trailer holds it in its top bytes. */
static inline bool canary_intact(const void *p, size_t asked, size_t room, uint64_t c) {
  const char *b = (const char *)p;
  size_t end = canary_end(asked, room);
  uint64_t x, y;
  memcpy(&y, b + end - 8, 8);
  if (end - asked < 8) return !((y ^ c) >> (8 * (8 - (end - asked))));
  memcpy(&x, b + asked, 8);
  return x == c && y == c;
}

/* The size record in p's trailer, read with p's key: the size asked and
 * the form, or false if the trailer holds none (the block is free, or
 * was written past its end). */
static bool record_of(const void *p, size_t room, uint64_t key, size_t *asked, int *form) {
  uint64_t record = *trailer((void *)p, room) ^ key;
  *asked = record & (((uint64_t)1 << FORM_SHIFT) - 1);
  *form = (int)(record >> FORM_SHIFT);
  return *asked <= room - OVERHEAD && *form <= HAK_FORM_ARRAY;
}

/* The offset of the first byte of [from, to) of p that is not 0, or `to`
 * (both multiples of 8, p 16-byte aligned). The bytes are or-ed together
 * 64 at a time, then 16, first; only damage is looked for word by word. */
typedef uint64_t hak_vec_t __attribute__((vector_size(16)));
static size_t first_nonzero(const char *p, size_t from, size_t to) {
  size_t i = from;
  uint64_t rest = 0;
  if (i % 16) { /* a first word on its own */
    rest = *(const uint64_t *)(p + i);
    i += 8;
  }
  hak_vec_t any = {0, 0};
  for (; i + 64 <= to; i += 64)
    any |= (*(const hak_vec_t *)(p + i) | *(const hak_vec_t *)(p + i + 16)) |
           (*(const hak_vec_t *)(p + i + 32) | *(const hak_vec_t *)(p + i + 48));
  for (; i + 16 <= to; i += 16) any |= *(const hak_vec_t *)(p + i);
  if (i < to) rest |= *(const uint64_t *)(p + i);
  if (HAK_LIKELY(!(rest | any[0] | any[1]))) return to;
  for (i = from; !*(const uint64_t *)(p + i); i += 8) {
  }
  return i + (size_t)__builtin_ctzll(*(const uint64_t *)(p + i)) / 8;
}

/* ---- zero-byte allocations ---------------------------------------------- */

/* The region, reserved at the first zero-byte allocation; its chunks are
 * marked before any thread can hand out a pointer into it. */
static char *zero_region_get(void) {
  char *z = atomic_load_explicit(&zero_region, memory_order_acquire);
  if (HAK_LIKELY(z)) return z;
  char *r = _hak_os_reserve(ZERO_REGION, HAK_SS_SIZE);
  if (!r) return NULL;
  for (size_t c = 0; c < ZERO_REGION; c += HAK_SS_SIZE) hak_chunk_mark(r + c, HAK_CHUNK_ZERO);
  if (atomic_compare_exchange_strong_explicit(&zero_region, &z, r, memory_order_acq_rel,
                                              memory_order_acquire))
    return r;
  for (size_t c = 0; c < ZERO_REGION; c += HAK_SS_SIZE) hak_chunk_mark(r + c, HAK_CHUNK_NONE);
  _hak_os_unmap(r, ZERO_REGION);
  return z;
}

/* A pointer that faults on any access, aligned to `align` (at most a
 * page); never the region's first byte (whose chunk-map entry is the one
 * before it). */
static void *zero_alloc(size_t align) {
  char *z = zero_region_get();
  if (!z) return NULL;
  size_t step = align > ZERO_STEP ? align : ZERO_STEP, slots = ZERO_REGION / step - 1;
  uint64_t n = atomic_fetch_add_explicit(&zero_next, 1, memory_order_relaxed);
  return z + step * (1 + n % slots);
}

static bool is_zero_alloc(const void *p) {
  char *z = atomic_load_explicit(&zero_region, memory_order_acquire);
  return z && (const char *)p > z && (const char *)p < z + ZERO_REGION && (uintptr_t)p % ZERO_STEP == 0;
}

/* ---- checks --------------------------------------------------------------- */

/* What is wrong with p, a block of ours of `room` usable bytes, if
 * anything; else *asked is the size the program asked for and *form how.
 * A block in a quarantine, or on a free list, is freed already; a lost
 * trailer or canary byte is a write past the end. */
static hak_misuse_t block_problem(void *p, size_t room, size_t *asked, int *form) {
  hak_block_t *b = p;
  uint64_t key = block_key(p);
  bool slab = hak_chunk_kind(p) == HAK_CHUNK_SUPERSLAB;
  hak_misuse_t freed = {.kind = HAK_MISUSE_DOUBLE_FREE, .block = p, .size = room};
  if (slab && b->mark == quarantine_mark()) {
    size_t was = *(uint64_t *)p ^ key;
    if (was <= room - OVERHEAD) freed.size = was;
    return freed;
  }
  if (!record_of(p, room, key, asked, form)) {
    /* A free block has a mark and a zero trailer (a 16-byte block's is its
     * mark; up to HAK_ZEROED_MAX, zeros past the mark): then the lists say. */
    bool looks_free = b->mark && (!*trailer(p, room) || room == 16) &&
                      (room > HAK_ZEROED_MAX || first_nonzero(p, 16, room) == room);
    if (slab && looks_free && _hak_block_is_free(hak_slab_of(hak_superslab_of(p), (uintptr_t)p), b))
      return freed;
    return (hak_misuse_t){.kind = HAK_MISUSE_OVERFLOW};
  }
  uint64_t c = canary_of(key);
  if (HAK_UNLIKELY(!canary_intact(p, *asked, room, c))) {
    const uint8_t *bytes = (const uint8_t *)p;
    size_t i = *asked;
    while (bytes[i] == (uint8_t)c) i++;
    return (hak_misuse_t){.kind = HAK_MISUSE_OVERFLOW, .size = *asked, .given = i};
  }
  return (hak_misuse_t){.kind = HAK_MISUSE_NONE};
}

/* The usable bytes of p if it is the start of a block of a slab, else 0. */
static inline size_t slab_room(const void *p) {
  if (HAK_UNLIKELY(hak_chunk_kind(p) != HAK_CHUNK_SUPERSLAB)) return 0;
  const hak_slab_t *s = hak_slab_of(hak_superslab_of(p), (uintptr_t)p);
  return HAK_LIKELY(hak_slab_has_block(s, p)) ? s->block_size : 0;
}

/* The usable bytes of p, as _hak_usable_size says (which reports what is
 * not a block), with a block of a slab's looked up here. */
static size_t room_of(const void *p, const char *who) {
  size_t r = slab_room(p);
  return HAK_LIKELY(r) ? r : _hak_usable_size(p, who);
}

/* The size the program asked for p, a pointer given to the API as a live
 * block, its usable bytes in *room and its form in *form; a problem is
 * reported (fatal, but for a foreign pointer HAKMEM_INVALID_FREE lets
 * through: then 0 and *room 0, as for a zero-byte allocation). */
static size_t block_check(void *p, size_t *room, int *form, const char *who) {
  *room = 0;
  *form = HAK_FORM_MALLOC;
  if (hak_chunk_kind(p) == HAK_CHUNK_ZERO) {
    if (!is_zero_alloc(p)) _hak_report(who, p, (hak_misuse_t){.kind = HAK_MISUSE_NO_BLOCK});
    return 0;
  }
  size_t r = room_of(p, who), asked = 0;
  if (!r) return 0;
  hak_misuse_t m = block_problem(p, r, &asked, form);
  if (m.kind != HAK_MISUSE_NONE) {
    _hak_report(who, p, m);
    return 0;
  }
  *room = r;
  return asked;
}

/* A block in the quarantine is as its free left it: its size record, the
 * quarantine mark, and zero (beyond HAK_ZEROED_MAX: its trailer). The
 * offset of the first byte written since, or room. When it leaves, only
 * its first words and trailer are looked at (`whole` false): malloc
 * proves the rest zero when it hands the block out again. */
static size_t quarantine_damage(const hak_block_t *b, size_t room, bool whole) {
  const char *c = (const char *)b;
  if ((*(const uint64_t *)b ^ block_key(b)) > room - OVERHEAD) return 0;
  if (b->mark != quarantine_mark()) return 8;
  if (room <= HAK_ZEROED_MAX) return whole ? first_nonzero(c, 16, room) : room;
  return first_nonzero(c, room - 8, room);
}

static void quarantine_check(hak_block_t *b, size_t room, bool whole, const char *who) {
  size_t bad = quarantine_damage(b, room, whole);
  if (bad != room)
    _hak_report(who, b,
                (hak_misuse_t){.kind = HAK_MISUSE_FREED_WRITE, .block = b, .size = room, .given = bad});
}

/* ---- the API ---------------------------------------------------------- */

/* A failure of the call, reported with the size asked (the block below
 * has OVERHEAD bytes more). */
static void *alloc_failed(size_t size, size_t align, const char *who, int why) {
  return _hak_fail((hak_ask_t){.who = who, .size = size, .align = align > 16 ? align : 0}, why);
}

void *_hak_secure_alloc(size_t size, size_t align, bool zero, int form, const char *who) {
  if (size == 0 && align <= HAK_PAGE) {
    void *z = zero_alloc(align);
    return z ? z : alloc_failed(size, align, who, HAK_FAIL_MAP);
  }
  if (size > PTRDIFF_MAX - OVERHEAD) return alloc_failed(size, align, who, HAK_FAIL_SIZE);
  if (align >> HAK_ADDR_BITS) return alloc_failed(size, align, who, HAK_FAIL_ALIGN);
  size_t inner = size + OVERHEAD, room;
  char *p;
  if (HAK_LIKELY(align <= 16 && inner <= HAK_MID_MAX)) { /* the class's size, as hak_alloc_inline picks it */
    p = hak_alloc_inline(inner, NULL);
    room = hak_class_size(hak_class_of(inner));
  } else {
    p = hak_alloc_aligned_inline(align, inner, NULL);
    room = p ? room_of(p, "malloc") : 0;
  }
  if (HAK_UNLIKELY(!p)) return alloc_failed(size, align, who, HAK_FAIL_MAP);
  HAK_DEBUG_ASSERT(room == room_of(p, "malloc"));
  if (room <= HAK_ZEROED_MAX) {
    /* Zero since its free (or its carving), but for the link and mark. */
    size_t bad = first_nonzero(p, 16, room);
    if (HAK_UNLIKELY(bad != room))
      _hak_report("malloc", p,
                  (hak_misuse_t){.kind = HAK_MISUSE_FREED_WRITE, .block = p, .size = room, .given = bad});
    memset(p, 0, 16);
  } else if (zero && hak_chunk_kind(p) == HAK_CHUNK_SUPERSLAB) {
    memset(p, 0, size); /* Large blocks are fresh pages */
  }
  uint64_t key = block_key(p);
  canary_set(p, size, room, canary_of(key));
  *trailer(p, room) = (size | (uint64_t)form << FORM_SHIFT) ^ key;
  return p;
}

/* given: the size free_sized or sized delete was told (sized), which must
 * be the one asked for; form: a delete's (see the top). A sound block of
 * a slab is proved so here with one look at its slab; anything else goes
 * through block_check, which names what is wrong. */
void _hak_secure_free(void *p, size_t given, bool sized, int form, const char *who) {
  if (!p) return;
  hak_block_t *b = p;
  uint64_t key = block_key(p);
  size_t room = slab_room(p), asked;
  int made;
  bool sound = HAK_LIKELY(room) && b->mark != quarantine_mark() && record_of(p, room, key, &asked, &made) &&
               canary_intact(p, asked, room, canary_of(key));
  if (HAK_UNLIKELY(!sound)) {
    asked = block_check(p, &room, &made, who);
    if (!room) return; /* zero-byte, or foreign and let through */
  }
  if (form != HAK_FORM_MALLOC && made != HAK_FORM_MALLOC && made != form)
    _hak_report(
        who, p,
        (hak_misuse_t){.kind = HAK_MISUSE_DELETE_FORM, .block = p, .size = asked, .given = (size_t)made});
  if (sized && given != asked && (form == HAK_FORM_MALLOC || made == form))
    _hak_report(who, p,
                (hak_misuse_t){.kind = HAK_MISUSE_SIZE_ASKED, .block = p, .size = asked, .given = given});
  if (!sound && hak_chunk_kind(p) != HAK_CHUNK_SUPERSLAB) {
    hak_free_inline(p, who); /* Large: large.c holds it back */
    return;
  }
  hak_heap_t *h = hak_tls_own_heap();
  size_t budget = (size_t)hak_opt(HAK_OPT_QUARANTINE_KB) << 10;
  if (room <= HAK_ZEROED_MAX) memset(p, 0, room);
  else *trailer(p, room) = 0;
  if (!h || !budget) {
    hak_free_inline(p, who);
    return;
  }
  *(uint64_t *)p = asked ^ key;
  b->mark = quarantine_mark();
  hak_quarantine_put(&h->quarantine, b, room);
  size_t r;
  for (hak_block_t *e; (e = hak_quarantine_take(&h->quarantine, budget, &r)) != NULL;) {
    quarantine_check(e, r, false, who);
    hak_free_inline(e, who);
  }
}

size_t _hak_secure_usable(const void *p, const char *who) {
  size_t room;
  int form;
  return p ? block_check((void *)p, &room, &form, who) : 0;
}

/* Always moves (the old block goes into the quarantine), so that a
 * pointer to the old block is a pointer to freed memory. */
void *_hak_secure_realloc(void *p, size_t size, const char *who) {
  if (!p) return _hak_secure_alloc(size, 16, false, HAK_FORM_MALLOC, who);
  int form;
  size_t room, old = block_check(p, &room, &form, who);
  if (!room && hak_chunk_kind(p) != HAK_CHUNK_ZERO) {
    errno = EINVAL; /* a foreign pointer let through */
    return NULL;
  }
  if (size == 0) {
    _hak_secure_free(p, 0, false, HAK_FORM_MALLOC, who);
    return NULL;
  }
  void *q = _hak_secure_alloc(size, 16, false, HAK_FORM_MALLOC, who);
  if (!q) return NULL;
  memcpy(q, p, old < size ? old : size);
  _hak_secure_free(p, 0, false, HAK_FORM_MALLOC, who);
  return q;
}

/* Every block in the calling thread's quarantine is checked (at exit and
 * malloc_trim, before the blocks go back). */
void _hak_secure_check_quarantine(const char *who) {
  hak_heap_t *h = hak_tls_own_heap();
  if (!h) return;
  hak_quarantine_t *q = &h->quarantine;
  for (uint32_t i = 0; i < q->count; i++) {
    uint32_t k = (q->first + i) % HAK_QUARANTINE_SLOTS;
    quarantine_check(q->slot[k].block, q->slot[k].size, true, who);
  }
}
