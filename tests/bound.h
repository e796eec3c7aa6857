/* tests/bound.h — the most malloc_usable_size may honestly report, for
 * tests/tiers.c and the fuzzer (tests/fuzz/alloc.c).
 *
 * For a request of n bytes at alignment a (16 for malloc and calloc): a
 * class block wastes at most 1/8 of itself (1/7 of the request), or under
 * 16 bytes up to 1 KiB, and an aligned request is first rounded up to a
 * multiple of its alignment; one of 1-32 KiB aligned to more than 64 may
 * take the power of two that ends its doubling (Mid block sizes are
 * multiples of 64 at most). A Large block (over 1 MiB, or aligned above
 * 64 KiB) may come from a BigCache mapping it uses at least 7/8 of, the
 * block starting up to min(a, 2 MiB) into the mapping, rounded to pages:
 * (n + offset) / 7 more, plus slack. */
#ifndef HAK_TEST_BOUND_H
#define HAK_TEST_BOUND_H

#include <stddef.h>

static inline size_t usable_max(size_t n, size_t a) {
  const size_t kib = 1024, mib = kib * kib;
  size_t rounded = (n + a - 1) & ~(a - 1);
  if (a > 64 && rounded > kib && rounded <= 32 * kib) return (size_t)1 << (64 - __builtin_clzl(rounded - 1));
  if (n <= mib && a <= 64 * kib) return n + n / 7 + (a > 16 ? a : 16);
  size_t off = a < 2 * mib ? a : 2 * mib;
  if (off < 4096) off = 4096;
  return n + (n + off) / 7 + 64 * kib;
}

#endif
