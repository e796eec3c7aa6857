/* size_class.h — request size → size class → block size.
 *
 * Class 0 is the class of malloc(0): it never holds blocks, so the fast path
 * misses and the slow path serves the request from class 1.
 * Classes 1..64 (Tiny) step by 16 bytes up to 1 KiB: class = (size + 15) / 16.
 * Above 1 KiB each doubling (2^b, 2^(b+1)] has 8 classes. Mid's (up to 32
 * KiB, classes 65..104) are shares of a slab: class j (1..8) of doubling b
 * is 2^(b+4) / (16 - j) bytes, and its slab (size_class.c) holds 16 - j of
 * them (4 and 2 times as many in the 1 and 2 KiB doublings; rounding down
 * can fit one more). The first class of each doubling, 1/15 above its
 * power of two, where programs' sizes cluster (a page and a header:
 * sqlite3's 4368-byte page cache entries fill a 64 KiB unit 15 times), is
 * rounded down to 16 bytes; the others to 64, a cache line, so that a
 * request aligned to 64 finds each of them (hak_mid_class_aligned). So a
 * slab wastes less than 64 bytes a block, and a block at most 1/8 of its
 * size. The L2.5 pool's (up to 1 MiB, classes 105..144) step by 2^(b-3),
 * so a block wastes at most 1/9 of its size. Every block size is a
 * multiple of 16, and every power of two from 16 to 1 MiB is a block size;
 * except that the secure build's last class is larger (HAK_POOL_MAX). */
#ifndef HAK_SIZE_CLASS_H
#define HAK_SIZE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#ifndef HAK_SECURE
#define HAK_SECURE 0 /* the secure build (internal.h) */
#endif

#define HAK_TINY_MAX ((size_t)1024)      /* largest Tiny block */
#define HAK_MID_MAX ((size_t)32 << 10)   /* largest Mid block: the inline path's limit */
#define HAK_LADDER_MAX ((size_t)1 << 20) /* the last class of the ladder above */
/* The largest pool block; above it, Large. The secure build's last class
 * is the run its 1 MiB block took anyway, 17 units (1 MiB and the guard
 * page, superslab.c), less the guard page: 1 MiB + 60 KiB, so that a
 * request of 1 MiB, with its canary and size record (secure.c), is a pool
 * block and not a Large one, whose pages that build purges and protects
 * at every free (mid_large_mt: 40 times slower). */
#define HAK_POOL_MAX (HAK_SECURE ? ((size_t)17 << 16) - 4096 : HAK_LADDER_MAX)
#define HAK_CLASS_TINY_LAST 64
#define HAK_CLASS_MID_LAST 104
#define HAK_CLASS_LAST 144
#define HAK_CLASSES (HAK_CLASS_LAST + 1)

/* Mid classes by table, for the inline path and hak_class_of: entry
 * (size - 1) >> 4, for sizes 1025 .. 32 KiB, is the class (Mid block sizes
 * are multiples of 16; entries below 64 are unused). Their block sizes, by
 * class - HAK_CLASS_TINY_LAST - 1. */
#define HAK_MID_SHIFT 4
extern const uint8_t _hak_mid_class[HAK_MID_MAX >> HAK_MID_SHIFT];
extern const uint16_t _hak_mid_size[HAK_CLASS_MID_LAST - HAK_CLASS_TINY_LAST];

/* Class of a request of 1025 .. HAK_MID_MAX bytes. */
static inline size_t hak_mid_class(size_t size) { return _hak_mid_class[(size - 1) >> HAK_MID_SHIFT]; }

/* Class of a request of 1 .. HAK_POOL_MAX bytes (and 0 for 0). */
static inline size_t hak_class_of(size_t size) {
  if (size <= HAK_TINY_MAX) return (size + 15) >> 4;
  if (size <= HAK_MID_MAX) return hak_mid_class(size);
  if (HAK_SECURE && size > HAK_LADDER_MAX) return HAK_CLASS_LAST;
  size_t m = size - 1;
  unsigned b = 63u - (unsigned)__builtin_clzl(m); /* 15 .. 19 */
  return HAK_CLASS_TINY_LAST + 1 + ((size_t)(b - 10) << 3) + ((m >> (b - 3)) & 7);
}

/* Block size of class c (1 .. HAK_CLASS_LAST). */
static inline size_t hak_class_size(size_t c) {
  if (c <= HAK_CLASS_TINY_LAST) return c << 4;
  if (c <= HAK_CLASS_MID_LAST) return _hak_mid_size[c - HAK_CLASS_TINY_LAST - 1];
  if (HAK_SECURE && c == HAK_CLASS_LAST) return HAK_POOL_MAX;
  size_t k = c - (HAK_CLASS_TINY_LAST + 1), b = 10 + (k >> 3);
  return ((size_t)1 << b) + (((k & 7) + 1) << (b - 3));
}

/* The first Mid class from cls on whose block size is a multiple of
 * align (32 .. 32 KiB), for an aligned request of `rounded` bytes (a
 * multiple of align) whose class is cls: at most the power of two that
 * ends its doubling, which align divides. By table: entry [a - 5][cls -
 * HAK_CLASS_TINY_LAST - 1] for align 2^a (size_class.c). */
#define HAK_MID_ALIGNS 11
extern const uint8_t _hak_mid_aligned[HAK_MID_ALIGNS][HAK_CLASS_MID_LAST - HAK_CLASS_TINY_LAST];
static inline size_t hak_mid_class_aligned(size_t cls, size_t align) {
  return _hak_mid_aligned[__builtin_ctzl(align) - 5][cls - HAK_CLASS_TINY_LAST - 1];
}

/* Block starts without a division. With a class's block size d = m 2^s
 * (m odd, s >= 4) and _hak_block_mul[c] = m^-1 2^(HAK_BLOCK_ROT - s)
 * (mod 2^64), for an offset x into a slab of that class:
 *   hak_block_index(x * mul) = k  exactly when  x = k d  (k < 2^44),
 * where hak_block_index rotates right by HAK_BLOCK_ROT. If x = k d the
 * product is k 2^ROT, rotated to k. Conversely a result k means the product
 * is k 2^ROT, so x m^-1 = k 2^s modulo 2^(64 - ROT + s), and x = k d
 * modulo 2^(64 - ROT + s) >= 2^48: two addresses below 2^47 differ by less,
 * so x = k d. So one multiply, a rotate and a compare with the blocks
 * carved say whether p is the start of a block of the slab: for an
 * interior, unaligned or outside pointer the index is not below the
 * count. (A pointer at or above 2^47, which no user-space access can
 * reach, may alias a block start; a write to it faults.) */
#define HAK_BLOCK_ROT 20 /* >= s for every class: 1 MiB = 2^20 */
extern const uint64_t _hak_block_mul[HAK_CLASS_LAST + 1];
static inline uint64_t hak_block_index(uint64_t product) {
  return (product >> HAK_BLOCK_ROT) | (product << (64 - HAK_BLOCK_ROT));
}

_Static_assert(HAK_CLASS_MID_LAST == HAK_CLASS_TINY_LAST + 5 * 8, "five doublings 1..32 KiB");
_Static_assert(HAK_CLASS_LAST == HAK_CLASS_MID_LAST + 5 * 8, "five doublings 32 KiB..1 MiB");

#endif
