/* size_class.c — the Mid class table of size_class.h, computed by the
 * compiler from the same formula as hak_class_of (tests/classes checks
 * that the two agree for every size), and slab geometry: how many units a
 * slab or run of each class spans. */
#include "internal.h"

/* Class of size (i << 7) + 1 .. (i + 1) << 7 for i >= 8: with m = i << 7
 * and b = floor(log2 m) = 7 + floor(log2 i), hak_class_of gives
 * 65 + 8 (b - 10) + ((m >> (b - 3)) & 7). Entries below 8 are unused. */
#define LOG2(i) (31 - __builtin_clz(i))
#define MID(i) ((i) < 8 ? 0 : HAK_CLASS_TINY_LAST + 1 + 8 * (LOG2(i) - 3) + ((((i) << 3) >> LOG2(i)) & 7)),
#define R4(i) MID(i) MID((i) + 1) MID((i) + 2) MID((i) + 3)
#define R16(i) R4(i) R4((i) + 4) R4((i) + 8) R4((i) + 12)
#define R64(i) R16(i) R16((i) + 16) R16((i) + 32) R16((i) + 48)

const uint8_t _hak_mid_class[HAK_MID_MAX >> HAK_MID_SHIFT] = {R64(0) R64(64) R64(128) R64(192)};
_Static_assert(sizeof _hak_mid_class == 256, "one entry per 128 bytes up to 32 KiB");

/* _hak_block_mul (size_class.h), by the compiler: SIZE is hak_class_size,
 * INV the inverse of an odd m modulo 2^64 by Newton's iteration (m is its
 * own inverse modulo 8, and each step doubles the bits that are right:
 * 3, 6, 12, 24, 48, 96). Class 0 holds no blocks. */
#define DOUBLING(c) (10 + ((c)-HAK_CLASS_TINY_LAST - 1) / 8)
#define SIZE(c)                                    \
  ((c) <= HAK_CLASS_TINY_LAST ? (uint64_t)(c) << 4 \
   : HAK_SECURE && (c) == HAK_CLASS_LAST           \
       ? (uint64_t)HAK_POOL_MAX                    \
       : ((uint64_t)1 << DOUBLING(c)) +            \
             ((uint64_t)(((c)-HAK_CLASS_TINY_LAST - 1) % 8 + 1) << (DOUBLING(c) - 3)))
#define ODD(c) (SIZE(c) >> __builtin_ctzll(SIZE(c)))
#define STEP(m, x) ((x) * (2 - (m) * (x)))
#define INV(m) STEP(m, STEP(m, STEP(m, STEP(m, STEP(m, m)))))
#define MUL(c) ((c) == 0 ? 0 : INV(ODD(c)) << (HAK_BLOCK_ROT - __builtin_ctzll(SIZE(c)))),
#define M4(c) MUL(c) MUL((c) + 1) MUL((c) + 2) MUL((c) + 3)
#define M16(c) M4(c) M4((c) + 4) M4((c) + 8) M4((c) + 12)

const uint64_t _hak_block_mul[HAK_CLASS_LAST + 1] = {M16(0) M16(16) M16(32) M16(48) M16(64) M16(80) M16(96)
                                                         M16(112) M16(128) MUL(144)};
_Static_assert(sizeof _hak_block_mul == 145 * sizeof(uint64_t), "one multiplier per class");
_Static_assert(!HAK_SECURE || HAK_POOL_MAX == 17 * HAK_UNIT_SIZE - HAK_SLAB_GUARD,
               "the secure build's last class fills the 17 units a 1 MiB block and its guard page take");

/* Bytes for blocks in a slab of u units (not counting unit 0's header). */
static size_t room(size_t u) { return (u << HAK_UNIT_SHIFT) - HAK_SLAB_GUARD; }

/* Tiny slabs are one unit; Mid slabs get enough units for
 * HAK_MID_SLAB_BLOCKS blocks. A pool run is the size, from the fewest units
 * that hold one block up to 4 units (256 KiB), that wastes the least of its
 * bytes (the first such, comparing waste/bytes as cross products). The
 * secure build's guard page comes off each. */
static size_t slab_units(size_t cls) {
  if (cls <= HAK_CLASS_TINY_LAST) return 1;
  size_t size = hak_class_size(cls);
  if (cls <= HAK_CLASS_MID_LAST)
    return (size * HAK_MID_SLAB_BLOCKS + HAK_SLAB_GUARD + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT;
  size_t min = (size + HAK_SLAB_GUARD + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT, best = min;
  size_t best_waste = room(min) % size;
  for (size_t u = min + 1; u <= 4; u++) {
    size_t waste = room(u) % size;
    if (waste * best < best_waste * u) {
      best_waste = waste;
      best = u;
    }
  }
  return best;
}

/* slab_units by class, filled on first use (any thread may fill an entry:
 * they all write the same value). */
static _Atomic uint8_t units_of[HAK_CLASSES];

size_t _hak_slab_units(size_t cls) {
  uint8_t n = atomic_load_explicit(&units_of[cls], memory_order_relaxed);
  if (HAK_UNLIKELY(!n)) {
    n = (uint8_t)slab_units(cls);
    atomic_store_explicit(&units_of[cls], n, memory_order_relaxed);
  }
  return n;
}

/* Whether a run of pool class cls holds a single block (pool runs never
 * start at unit 0). */
bool _hak_pool_single(size_t cls) {
  HAK_DEBUG_ASSERT(cls > HAK_CLASS_MID_LAST);
  return room(_hak_slab_units(cls)) / hak_class_size(cls) == 1;
}
