/* size_class.c — the Mid class table of size_class.h, computed by the
 * compiler from the same formula as hak_class_of (tests/classes checks
 * that the two agree for every size). */
#include "size_class.h"

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
