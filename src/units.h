/* units.h — arithmetic on a SuperSlab's unit bitmaps (bit u: unit u), for
 * superslab.c, pool.c and stats.c (part of the SuperSlab layer). Pure
 * functions of their arguments; tests/units.c checks them. */
#ifndef HAK_UNITS_H
#define HAK_UNITS_H

#include "internal.h"

/* Bits u .. u+n-1. */
static inline uint32_t hak_unit_bits(unsigned u, unsigned n) {
  return (uint32_t)((((uint64_t)1 << n) - 1) << u);
}

/* Set bits (x86-64's baseline has no popcnt instruction, and libgcc's is a
 * call). */
static inline unsigned hak_count_units(uint32_t x) {
  x = x - ((x >> 1) & 0x55555555u);
  x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
  return (((x + (x >> 4)) & 0x0f0f0f0fu) * 0x01010101u) >> 24;
}

/* Bytes of block space in the units of `bits` (unit 0 has the header). */
static inline size_t hak_units_bytes(uint32_t bits) {
  return ((size_t)hak_count_units(bits) << HAK_UNIT_SHIFT) - ((bits & 1u) ? HAK_SS_HEADER : 0);
}

/* The longest run of free units past unit 0 (no pool run starts there). */
static inline unsigned hak_longest_run(uint32_t free_units) {
  unsigned n = 0;
  for (uint32_t m = free_units & ~1u; m; m &= m >> 1) n++;
  return n;
}

/* Bit u set: units u .. u+n-1 are all free (and u > 0 with skip_unit0, for
 * blocks that need more than unit 0's 4 KiB alignment). Each step doubles
 * the run length the bits stand for, up to n. */
static inline uint32_t hak_run_starts(uint32_t free_units, unsigned n, bool skip_unit0) {
  uint32_t m = free_units;
  for (unsigned k = 1; k < n && m;) { /* bit u of m: units u .. u+k-1 free */
    unsigned step = k < n - k ? k : n - k;
    m &= m >> step;
    k += step;
  }
  return skip_unit0 ? m & ~(uint32_t)1 : m;
}

/* Where a run of n units fits best among free_units, and how well. First
 * by the system calls the secure build's guard pages would take there
 * (`guarded`: the units whose last page has no access; superslab.c): a
 * run wants a guard at its last unit and none inside, so it takes up to
 * two, and each one saved adds HAK_FIT_PER_CALL (with no guards, as in
 * the default build, every start saves one). Then by fit: the lowest
 * start whose run fills a hole exactly (3), else one that touches a used
 * unit on its left or right (2), else the lowest (1). Returns the sum, 0
 * if none fits. Tight runs keep the large holes whole for large runs.
 * Unit 0 never holds a pool run. */
#define HAK_FIT_PER_CALL 3
static inline unsigned hak_fit_in(uint32_t free_units, uint32_t guarded, unsigned n, unsigned *unit) {
  uint32_t free = free_units & ~1u;
  uint32_t m = hak_run_starts(free, n, true);
  if (!m) return 0;
  uint32_t end = guarded >> (n - 1), clear = n > 1 ? hak_run_starts(~guarded, n - 1, false) : UINT32_MAX;
  uint32_t none = m & end & clear, one = m & (end ^ clear);
  unsigned saved = (none ? 2 : one ? 1 : 0) * HAK_FIT_PER_CALL;
  m = none ? none : one ? one : m;
  uint32_t left = m & ~(free << 1), right = m & ~(uint32_t)((uint64_t)free >> n);
  if (left & right) {
    *unit = (unsigned)__builtin_ctz(left & right);
    return saved + 3;
  }
  *unit = (unsigned)__builtin_ctz((left | right) ? (left ? left : right) : m);
  return saved + ((left | right) ? 2 : 1);
}

#endif
