/* chunkmap.c — the chunk map: one byte per 2 MiB chunk of the 47-bit
 * address space, 64 MiB of .bss, zero until touched, so it needs no
 * initialisation and is valid before any constructor runs. Only chunks
 * that start a SuperSlab or a Large mapping are marked (internal.h has the
 * helpers). A mapping's mark is set once it is mapped and hakmem's, and
 * cleared before it is unmapped or moved: another thread may map the range
 * as soon as it is given up. */
#include "internal.h"

uint8_t _hak_chunk_map[HAK_CHUNKS] __attribute__((aligned(4096)));
