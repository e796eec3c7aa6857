/* override.c — the exported entry points: the C allocation API under its
 * standard names, glibc's __libc_* aliases (so that a -static link does not
 * pull glibc's malloc.o), and the hak_* API of include/hakmem.h. The
 * secure build's calls go to secure.c; the default build's to api.c and
 * the fast paths. */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"

#define ALIAS(name) __attribute__((alias(#name), copy(name), visibility("default"), used))

HAK_API void *malloc(size_t size) {
  if (hak_cfg_secure) return _hak_secure_alloc(size, 16, false, HAK_FORM_MALLOC, "malloc");
  return hak_alloc_inline(size, "malloc");
}

static inline __attribute__((always_inline)) void free_block(void *p, const char *who) {
  if (hak_cfg_secure) _hak_secure_free(p, 0, false, HAK_FORM_MALLOC, who);
  else hak_free_inline(p, who);
}

HAK_API void free(void *p) { free_block(p, "free"); }

HAK_API void *calloc(size_t n, size_t size) {
  if (!hak_cfg_secure) return _hak_calloc(n, size);
  size_t total;
  return hak_total_of(n, size, &total, "calloc")
             ? _hak_secure_alloc(total, 16, true, HAK_FORM_MALLOC, "calloc")
             : NULL;
}

static void *realloc_block(void *p, size_t size) {
  return hak_cfg_secure ? _hak_secure_realloc(p, size, "realloc") : _hak_realloc(p, size);
}

HAK_API void *realloc(void *p, size_t size) { return realloc_block(p, size); }

HAK_API void *reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  return hak_total_of(n, size, &total, "reallocarray") ? realloc_block(p, total) : NULL;
}

static inline __attribute__((always_inline)) void *alloc_aligned(size_t align, size_t size, const char *who) {
  return hak_cfg_secure ? _hak_secure_alloc(size, align, false, HAK_FORM_MALLOC, who)
                        : hak_alloc_aligned_inline(align, size, who);
}

static bool power_of_two(size_t a) { return a && !(a & (a - 1)); }

/* errno is left as it was on success, as by every allocation that
 * succeeds: hakmem sets it only where a call fails (its system calls do
 * not go through libc, os.c). */
HAK_API int posix_memalign(void **out, size_t align, size_t size) {
  if (!power_of_two(align) || align < sizeof(void *)) return EINVAL;
  void *p = alloc_aligned(align, size, "posix_memalign");
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

/* C11 (DR 460) and glibc >= 2.38: an alignment that is not a power of two
 * is an error. */
HAK_API void *aligned_alloc(size_t align, size_t size) {
  if (!power_of_two(align)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(align, size, "aligned_alloc");
}

/* glibc: an alignment that is not a power of two is rounded up to one. */
HAK_API void *memalign(size_t align, size_t size) {
  if (align > ((size_t)1 << (sizeof(size_t) * 8 - 1))) {
    errno = EINVAL;
    return NULL;
  }
  if (!power_of_two(align)) align = align <= 1 ? 1 : (size_t)1 << (64 - __builtin_clzl(align - 1));
  return alloc_aligned(align, size, "memalign");
}

HAK_API void *valloc(size_t size) { return alloc_aligned(HAK_PAGE, size, "valloc"); }

HAK_API void *pvalloc(size_t size) {
  if (size > PTRDIFF_MAX) return _hak_fail((hak_ask_t){.who = "pvalloc", .size = size}, HAK_FAIL_SIZE);
  return alloc_aligned(HAK_PAGE, (size + HAK_PAGE - 1) & ~(HAK_PAGE - 1), "pvalloc");
}

static size_t usable_size(const void *p, const char *who) {
  return hak_cfg_secure ? _hak_secure_usable(p, who) : _hak_usable_size(p, who);
}

HAK_API size_t malloc_usable_size(void *p) { return usable_size(p, "malloc_usable_size"); }

/* C23 and legacy names that glibc 2.36's headers do not declare. */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);
void cfree(void *p);

/* C23: the size is a promise we do not trust; checking mode verifies it
 * against the block's, the secure build against the size asked for. */
static void free_checked(void *p, size_t size, const char *who) {
  if (hak_cfg_secure) {
    _hak_secure_free(p, size, true, HAK_FORM_MALLOC, who);
    return;
  }
  if (p && hak_opt(HAK_OPT_CHECK)) {
    size_t usable = _hak_usable_size(p, who);
    if (!usable) return;
    if (size > usable) {
      _hak_report(who, p, (hak_misuse_t){.kind = HAK_MISUSE_SIZE, .block = p, .size = usable, .given = size});
      return;
    }
  }
  hak_free_inline(p, who);
}

HAK_API void free_sized(void *p, size_t size) { free_checked(p, size, "free_sized"); }

HAK_API void free_aligned_sized(void *p, size_t align, size_t size) {
  (void)align;
  free_checked(p, size, "free_aligned_sized");
}

HAK_API void cfree(void *p) { free_block(p, "cfree"); }

static int trim(const char *who) {
  if (hak_cfg_secure) _hak_secure_check_quarantine(who);
  return _hak_trim();
}

HAK_API int malloc_trim(size_t pad) {
  (void)pad;
  return trim("malloc_trim");
}

/* mallinfo2's fields, in hakmem's terms (README: "Statistics"). */
HAK_API struct mallinfo2 mallinfo2(void) {
  hak_stats_t st;
  hak_stats(&st);
  struct mallinfo2 mi = {0};
  mi.arena = st.committed - st.large_committed; /* SuperSlab memory that may be resident */
  mi.ordblks = st.slabs;                        /* slabs */
  mi.hblks = st.large_blocks;                   /* live Large blocks */
  mi.hblkhd = st.large_in_use;                  /* bytes in their mappings */
  mi.usmblks = st.peak_committed;               /* high-water mark of committed memory */
  mi.uordblks = st.in_use - st.large_in_use;    /* bytes in small blocks in use */
  mi.fordblks = mi.arena > mi.uordblks ? mi.arena - mi.uordblks : 0;
  mi.keepcost = st.bigcache_bytes; /* freed Large mappings kept for reuse */
  return mi;
}

static int clamp_int(size_t v) { return v > INT_MAX ? INT_MAX : (int)v; }

HAK_API struct mallinfo mallinfo(void) {
  struct mallinfo2 m = mallinfo2();
  struct mallinfo mi = {.arena = clamp_int(m.arena),
                        .ordblks = clamp_int(m.ordblks),
                        .smblks = clamp_int(m.smblks),
                        .hblks = clamp_int(m.hblks),
                        .hblkhd = clamp_int(m.hblkhd),
                        .usmblks = clamp_int(m.usmblks),
                        .fsmblks = clamp_int(m.fsmblks),
                        .uordblks = clamp_int(m.uordblks),
                        .fordblks = clamp_int(m.fordblks),
                        .keepcost = clamp_int(m.keepcost)};
  return mi;
}

/* glibc's parameters that have a hakmem meaning; 0 for the rest. */
HAK_API int mallopt(int param, int value) {
  switch (param) {
    case M_TRIM_THRESHOLD: /* within HAKMEM_RETAIN_KB's range, or refused */
      return value >= 0 && _hak_option_set(HAK_OPT_RETAIN_KB, (long)value >> 10);
    case M_CHECK_ACTION:
      return _hak_option_set(HAK_OPT_INVALID_FREE, value == 0 ? 0 : (value & 2) ? 2 : 1);
    default:
      return 0;
  }
}

HAK_API void malloc_stats(void) { hak_stats_print(2); }

HAK_API int malloc_info(int options, FILE *fp) {
  if (options != 0 || !fp) {
    errno = EINVAL;
    return -1;
  }
  hak_buf_t b = {.file = fp};
  _hak_stats_xml(&b);
  return 0;
}

/* glibc's internal names, defined so that nothing needs glibc's malloc. */
void *__libc_malloc(size_t) ALIAS(malloc);
void __libc_free(void *) ALIAS(free);
void *__libc_calloc(size_t, size_t) ALIAS(calloc);
void *__libc_realloc(void *, size_t) ALIAS(realloc);
void *__libc_memalign(size_t, size_t) ALIAS(memalign);
void *__libc_valloc(size_t) ALIAS(valloc);
void *__libc_pvalloc(size_t) ALIAS(pvalloc);
int __posix_memalign(void **, size_t, size_t) ALIAS(posix_memalign);

/* The hak_* API: the same functions under hakmem's own names, for programs
 * that use hakmem beside another malloc (dlopen, RTLD_DEEPBIND). */
void *hak_malloc(size_t) ALIAS(malloc);
void hak_free(void *) ALIAS(free);
void *hak_calloc(size_t, size_t) ALIAS(calloc);
void *hak_realloc(void *, size_t) ALIAS(realloc);
void *hak_aligned_alloc(size_t, size_t) ALIAS(aligned_alloc);
int hak_posix_memalign(void **, size_t, size_t) ALIAS(posix_memalign);

HAK_API size_t hak_usable_size(const void *p) { return usable_size(p, "hak_usable_size"); }

HAK_API int hak_trim(void) { return trim("hak_trim"); }
