/* tests/classes.c — the size-class arithmetic of src/size_class.h, for every
 * request size from 1 byte to 1 MiB.
 *
 * Compiled with src/size_class.c (-Isrc; no allocator is linked: the
 * arithmetic is checked as the library's own inline functions see it).
 * The promises of size_class.h and DESIGN.md section 1: a class's block fits
 * the request; Tiny classes (up to 1 KiB) step by 16 bytes, so a block wastes
 * less than 16 bytes; Mid classes (up to 32 KiB) are shares of their slab
 * (class j of doubling b is 2^(b+4) / (16 - j) bytes rounded down to 16
 * for j = 1 and to 64 for the others, and its slab holds at least 16 - j
 * of them, 4 or 2 times as many below 4 KiB, leaving less than 64 bytes a
 * block), so a block wastes at most 1/8 of itself; pool blocks at most
 * 1/9; the class of a size is the smallest that fits (hak_class_of reads
 * the Mid table the inline malloc path uses), classes grow with the size,
 * and every power of two from 16 to 1 MiB is a block size. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "internal.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

int main(void) {
  th_prop_t fits = PROP("class block fits the request: hak_class_size(hak_class_of(s)) >= s");
  th_prop_t tightest = PROP("hak_class_of(s) is the smallest class that fits s");
  th_prop_t in_range = PROP("hak_class_of(s) is a class, 1 .. HAK_CLASS_LAST");
  th_prop_t tiny_waste = PROP("up to 1 KiB a block wastes less than 16 bytes");
  th_prop_t eighth = PROP("a Mid block wastes at most 1/8 of its size");
  th_prop_t ninth = PROP("a pool block wastes at most 1/9 of its size");
  th_prop_t mono = PROP("classes are monotonic in the size");
  th_prop_t mult16 = PROP("every block size is a multiple of 16");
  th_prop_t tier = PROP("tier limits: Tiny <= 1 KiB < Mid <= 32 KiB < pool <= 1 MiB");
  th_prop_t grow = PROP("block sizes strictly increase with the class");
  th_prop_t round = PROP("hak_class_of(hak_class_size(c)) == c");
  th_prop_t pow2 = PROP("every power of two 16 .. 1 MiB is a block size");
  th_prop_t per_doubling = PROP("8 classes per doubling above 1 KiB");
  th_prop_t share =
      PROP("Mid class j of doubling b is 2^(b+4) / (16 - j) bytes, rounded down to 16 (j = 1) or 64");
  th_prop_t aligned =
      PROP("hak_mid_class_aligned: the first Mid class that fits whose size the alignment divides");
  th_prop_t slab =
      PROP("a Mid slab holds at least 16 - j blocks (x4, x2 below 4 KiB), less than 64 bytes a block left");

  size_t prev = 0;
  for (size_t s = 1; s <= MiB; s++) {
    size_t c = hak_class_of(s);
    if (!th_prop(&in_range, c >= 1 && c <= HAK_CLASS_LAST, "size %zu -> class %zu", s, c)) continue;
    size_t b = hak_class_size(c);
    th_prop(&fits, b >= s, "size %zu -> class %zu of %zu bytes", s, c, b);
    th_prop(&tightest, c == 1 || hak_class_size(c - 1) < s,
            "size %zu -> class %zu (%zu bytes), but class %zu has %zu bytes", s, c, b, c - 1,
            hak_class_size(c - 1));
    if (s <= 1024) th_prop(&tiny_waste, b >= s && b - s < 16, "size %zu -> %zu bytes", s, b);
    else if (s <= 32 * KiB) th_prop(&eighth, b >= s && 8 * (b - s) <= b, "size %zu -> %zu bytes", s, b);
    else th_prop(&ninth, b >= s && 9 * (b - s) <= b, "size %zu -> %zu bytes, waste %zu", s, b, b - s);
    th_prop(&mono, c >= prev, "size %zu -> class %zu, size %zu -> class %zu", s - 1, prev, s, c);
    th_prop(&mult16, b % 16 == 0, "class %zu: %zu bytes", c, b);
    int want_tier = s <= 1024       ? c <= HAK_CLASS_TINY_LAST
                    : s <= 32 * KiB ? c > HAK_CLASS_TINY_LAST && c <= HAK_CLASS_MID_LAST
                                    : c > HAK_CLASS_MID_LAST;
    th_prop(&tier, want_tier, "size %zu -> class %zu", s, c);
    prev = c;
  }
  CHECKV("malloc(0) has class 0", hak_class_of(0) == 0, "got %zu", hak_class_of(0));
  CHECKV("1 KiB is the last Tiny class",
         hak_class_of(1024) == HAK_CLASS_TINY_LAST && hak_class_size(HAK_CLASS_TINY_LAST) == HAK_TINY_MAX,
         "class %zu", hak_class_of(1024));
  CHECKV("32 KiB is the last Mid class",
         hak_class_of(32 * KiB) == HAK_CLASS_MID_LAST && hak_class_size(HAK_CLASS_MID_LAST) == HAK_MID_MAX,
         "class %zu", hak_class_of(32 * KiB));
  CHECKV("1 MiB is the last class",
         hak_class_of(MiB) == HAK_CLASS_LAST && hak_class_size(HAK_CLASS_LAST) == HAK_POOL_MAX, "class %zu",
         hak_class_of(MiB));

  for (size_t c = 1; c <= HAK_CLASS_LAST; c++) {
    size_t b = hak_class_size(c);
    if (c > 1)
      th_prop(&grow, b > hak_class_size(c - 1), "class %zu: %zu bytes, class %zu: %zu bytes", c - 1,
              hak_class_size(c - 1), c, b);
    th_prop(&round, hak_class_of(b) == c, "class %zu: %zu bytes -> class %zu", c, b, hak_class_of(b));
  }
  for (size_t p = 16; p <= MiB; p <<= 1)
    th_prop(&pow2, hak_class_size(hak_class_of(p)) == p, "%zu -> class %zu of %zu bytes", p, hak_class_of(p),
            hak_class_size(hak_class_of(p)));
  for (size_t d = KiB; d < MiB; d <<= 1)
    th_prop(&per_doubling, hak_class_of(2 * d) - hak_class_of(d) == 8, "(%zu, %zu] has %zu classes", d, 2 * d,
            hak_class_of(2 * d) - hak_class_of(d));
  for (size_t c = HAK_CLASS_TINY_LAST + 1; c <= HAK_CLASS_MID_LAST; c++) {
    size_t k = c - HAK_CLASS_TINY_LAST - 1, doubling = 10 + k / 8, j = k % 8 + 1, size = hak_class_size(c);
    size_t grain = j == 1 ? 16 : 64, want = ((size_t)1 << (doubling + 4)) / (16 - j) / grain * grain;
    th_prop(&share, size == want, "class %zu (j %zu of 2^%zu): %zu bytes, want %zu", c, j, doubling, size,
            want);
    size_t bytes = _hak_slab_units(c) << HAK_UNIT_SHIFT, blocks = bytes / size;
    size_t shares = (16 - j) * (doubling == 10 ? 4 : doubling == 11 ? 2 : 1);
    th_prop(&slab, blocks >= shares && bytes - blocks * size < 64 * blocks,
            "class %zu of %zu bytes: %zu units hold %zu blocks (want %zu), %zu bytes left", c, size,
            _hak_slab_units(c), blocks, shares, bytes - blocks * size);
  }

  for (size_t align = 32; align <= HAK_MID_MAX; align <<= 1)
    for (size_t rounded = align; rounded <= HAK_MID_MAX; rounded += align) {
      if (rounded <= HAK_TINY_MAX) continue;
      size_t want =
          HAK_CLASS_TINY_LAST + 1; /* the smallest Mid block of at least rounded that align divides */
      while (want < HAK_CLASS_MID_LAST && (hak_class_size(want) < rounded || hak_class_size(want) % align))
        want++;
      size_t c = hak_mid_class_aligned(hak_class_of(rounded), align);
      th_prop(&aligned, c == want && hak_class_size(c) >= rounded && hak_class_size(c) % align == 0,
              "%zu bytes aligned to %zu: class %zu of %zu bytes, want class %zu", rounded, align, c,
              hak_class_size(c), want);
    }
  th_prop_t *all[] = {&fits, &tightest, &in_range, &tiny_waste, &eighth,       &ninth, &mono,    &mult16,
                      &tier, &grow,     &round,    &pow2,       &per_doubling, &share, &aligned, &slab};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) PROP_DONE(all[i]);
  return th_done();
}
