/* size_class.c — the Mid classes' tables of size_class.h, computed by the
 * compiler from their formula (tests/classes checks every size against
 * the sizes), and slab geometry: how many units a slab or run of each
 * class spans. */
#include "internal.h"

/* Mid class j (1..8) of doubling b (10..14): 2^(b+4) / (16 - j), rounded
 * down to 16 for j = 1, to 64 for the others (size_class.h). */
#define LOG2(i) (31 - __builtin_clz(i))
#define MID_SIZE(b, j) \
  ((((uint32_t)1 << ((b) + 4)) / (16 - (j))) & ((j) == 1 ? ~(uint32_t)15 : ~(uint32_t)63))

/* The first Mid class whose block holds m = (i + 1) << 4 bytes (every size
 * of entry i rounds up to m), in m's doubling b = LOG2(m - 1): j is one
 * more than the number of its classes smaller than m. Entries below 64
 * are unused. */
#define MID_J(m, b)                                                                                        \
  (1 + (MID_SIZE(b, 1) < (m)) + (MID_SIZE(b, 2) < (m)) + (MID_SIZE(b, 3) < (m)) + (MID_SIZE(b, 4) < (m)) + \
   (MID_SIZE(b, 5) < (m)) + (MID_SIZE(b, 6) < (m)) + (MID_SIZE(b, 7) < (m)))
#define MID(i)                                                            \
  ((i) < 64 ? 0                                                           \
            : HAK_CLASS_TINY_LAST + 8 * (LOG2(((i) + 1) * 16 - 1) - 10) + \
                  MID_J(((i) + 1) * 16, LOG2(((i) + 1) * 16 - 1))),
#define R4(i) MID(i) MID((i) + 1) MID((i) + 2) MID((i) + 3)
#define R16(i) R4(i) R4((i) + 4) R4((i) + 8) R4((i) + 12)
#define R64(i) R16(i) R16((i) + 16) R16((i) + 32) R16((i) + 48)
#define R256(i) R64(i) R64((i) + 64) R64((i) + 128) R64((i) + 192)

const uint8_t _hak_mid_class[HAK_MID_MAX >> HAK_MID_SHIFT] = {R256(0) R256(256) R256(512) R256(768) R256(1024)
                                                                  R256(1280) R256(1536) R256(1792)};
_Static_assert(sizeof _hak_mid_class == 2048, "one entry per 16 bytes up to 32 KiB");

#define MID_SIZES(b)                                                                              \
  MID_SIZE(b, 1), MID_SIZE(b, 2), MID_SIZE(b, 3), MID_SIZE(b, 4), MID_SIZE(b, 5), MID_SIZE(b, 6), \
      MID_SIZE(b, 7), MID_SIZE(b, 8),
const uint16_t _hak_mid_size[HAK_CLASS_MID_LAST - HAK_CLASS_TINY_LAST] = {
    MID_SIZES(10) MID_SIZES(11) MID_SIZES(12) MID_SIZES(13) MID_SIZES(14)};

/* _hak_block_mul (size_class.h), by the compiler: SIZE is hak_class_size,
 * INV the inverse of an odd m modulo 2^64 by Newton's iteration (m is its
 * own inverse modulo 8, and each step doubles the bits that are right:
 * 3, 6, 12, 24, 48, 96). Class 0 holds no blocks. */
#define DOUBLING(c) (10 + ((c)-HAK_CLASS_TINY_LAST - 1) / 8)
#define STEP_J(c) (((c)-HAK_CLASS_TINY_LAST - 1) % 8 + 1)
#define SIZE(c)                                                             \
  ((c) <= HAK_CLASS_TINY_LAST  ? (uint64_t)(c) << 4                         \
   : (c) <= HAK_CLASS_MID_LAST ? (uint64_t)MID_SIZE(DOUBLING(c), STEP_J(c)) \
   : HAK_SECURE && (c) == HAK_CLASS_LAST                                    \
       ? (uint64_t)HAK_POOL_MAX                                             \
       : ((uint64_t)1 << DOUBLING(c)) + ((uint64_t)STEP_J(c) << (DOUBLING(c) - 3)))
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

/* _hak_mid_aligned (size_class.h): from class c on, the first whose size
 * 2^a divides, looking as far as the end of c's doubling (whose power of
 * two every alignment of a request in it divides; entries for larger
 * alignments are never read). */
#define ODD_A(c, a) (SIZE(c) % ((uint64_t)1 << (a)) != 0 && STEP_J(c) < 8)
#define FIRST(c, a)                                                  \
  ((c) +                                                             \
   ODD_A(c, a) * (1 + ODD_A((c) + 1, a) *                            \
                          (1 + ODD_A((c) + 2, a) *                   \
                                   (1 + ODD_A((c) + 3, a) *          \
                                            (1 + ODD_A((c) + 4, a) * \
                                                     (1 + ODD_A((c) + 5, a) * (1 + ODD_A((c) + 6, a))))))))
#define A8(c, a)                                                                           \
  FIRST(c, a), FIRST((c) + 1, a), FIRST((c) + 2, a), FIRST((c) + 3, a), FIRST((c) + 4, a), \
      FIRST((c) + 5, a), FIRST((c) + 6, a), FIRST((c) + 7, a),
#define ALIGNED(a) {A8(65, a) A8(73, a) A8(81, a) A8(89, a) A8(97, a)},
const uint8_t _hak_mid_aligned[HAK_MID_ALIGNS][HAK_CLASS_MID_LAST - HAK_CLASS_TINY_LAST] = {
    ALIGNED(5) ALIGNED(6) ALIGNED(7) ALIGNED(8) ALIGNED(9) ALIGNED(10) ALIGNED(11) ALIGNED(12) ALIGNED(13)
        ALIGNED(14) ALIGNED(15)};
_Static_assert(HAK_CLASS_TINY_LAST + 1 == 65 && HAK_MID_ALIGNS == 11,
               "Mid classes 65 .. 104, alignments 2^5 .. 2^15");

/* Bytes for blocks in a slab of u units (not counting unit 0's header). */
static size_t room(size_t u) { return (u << HAK_UNIT_SHIFT) - HAK_SLAB_GUARD; }

/* Tiny slabs are one unit; a Mid slab of doubling b is 2^(b+4) bytes, at
 * least a unit: max(1, 2^(b-12)) units, of which class j's blocks take
 * 16 - j shares (size_class.h); twice that where it would hold fewer than
 * HAK_MID_SLAB_BLOCKS blocks (j = 7 and 8 from 4 KiB on). A pool run is
 * the size, from the fewest units that hold one block up to 4 units (256
 * KiB), that wastes the least of its bytes (the first such, comparing
 * waste/bytes as cross products). The secure build's guard page comes off
 * each. */
static size_t slab_units(size_t cls) {
  if (cls <= HAK_CLASS_TINY_LAST) return 1;
  size_t size = hak_class_size(cls);
  if (cls <= HAK_CLASS_MID_LAST) {
    size_t b = DOUBLING(cls), u = b <= 12 ? 1 : (size_t)1 << (b - 12);
    return room(u) / size < HAK_MID_SLAB_BLOCKS ? 2 * u : u;
  }
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
