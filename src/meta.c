/* meta.c — memory for hakmem's own metadata (heaps, tables): carved from
 * chunks mapped through os.c, zeroed, never returned to the OS (heaps are
 * recycled by the heap registry instead). */
#include "internal.h"

#define META_CHUNK ((size_t)1 << 20)

hak_lock_t _hak_meta_lock = HAK_LOCK_INIT;
static char *meta_next, *meta_end;

void *_hak_meta_alloc(size_t size) {
  size = (size + 63) & ~(size_t)63;
  _hak_lock(&_hak_meta_lock);
  if ((size_t)(meta_end - meta_next) < size) {
    size_t chunk = size > META_CHUNK ? (size + HAK_PAGE - 1) & ~(HAK_PAGE - 1) : META_CHUNK;
    char *p = _hak_os_map(chunk, HAK_PAGE);
    if (!p) {
      _hak_unlock(&_hak_meta_lock);
      return NULL;
    }
    meta_next = p;
    meta_end = p + chunk;
  }
  void *r = meta_next;
  meta_next += size;
  _hak_unlock(&_hak_meta_lock);
  return r;
}
