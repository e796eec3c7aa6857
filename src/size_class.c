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

/* Tiny slabs are one unit; Mid slabs get enough units for
 * HAK_MID_SLAB_BLOCKS blocks. A pool run is the size, from the fewest units
 * that hold one block up to 4 units (256 KiB), that wastes the least of its
 * bytes (the first such, comparing waste/bytes as cross products). */
static size_t slab_units(size_t cls) {
  if (cls <= HAK_CLASS_TINY_LAST) return 1;
  size_t size = hak_class_size(cls);
  if (cls <= HAK_CLASS_MID_LAST) return (size * HAK_MID_SLAB_BLOCKS + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT;
  size_t min = (size + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT, best = min;
  size_t best_waste = (min << HAK_UNIT_SHIFT) % size;
  for (size_t u = min + 1; u <= 4; u++) {
    size_t waste = (u << HAK_UNIT_SHIFT) % size;
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
  return cls > HAK_CLASS_MID_LAST && (_hak_slab_units(cls) << HAK_UNIT_SHIFT) / hak_class_size(cls) == 1;
}
