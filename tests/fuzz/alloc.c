/* tests/fuzz/alloc.c — a libFuzzer target over the hak_* API, against a
 * shadow model of every live block.
 *
 * The input is a list of 4-byte operations on 64 slots (a trailing partial
 * one is ignored):
 *
 *   byte 0   bits 0-2 the operation (OP_*), bits 3-7 the alignment (align_of)
 *   byte 1   bits 0-5 the slot, bits 6-7 a variant (per operation)
 *   byte 2-3 the size word, little-endian: bits 13-15 the tier, 0-12 where
 *            in it (size_of): 0-16, Tiny, Mid, pool, Large up to 4 MiB,
 *            class and tier boundaries +-2, log-uniform
 *
 * An allocation into a live slot frees the old block first. The model keeps
 * each block's requested size, usable size, alignment and fill seed; every
 * block is filled with a pattern of (seed, offset) up to its usable size
 * (blocks over 64 KiB: spans at both ends and samples in between). After
 * each operation the block it touched is checked in full, and every other
 * block's first and last bytes and usable size; at the end of the input all
 * are checked in full and freed, so nothing is live across inputs. Checks:
 * non-NULL, aligned, usable_size >= request (within an honest bound for a
 * fresh block) and stable, no overlap with a live block, contents kept,
 * realloc keeps the prefix, calloc reads zero, errno as glibc sets it, and
 * the error paths (huge sizes, bad alignments, calloc overflow). Live bytes
 * are capped at 64 MiB. A failed check prints one line and aborts, which
 * libFuzzer reports as a crash with the input saved.
 *
 * Built by tests/fuzz.mk with clang -fsanitize=fuzzer against the debug
 * build of src/ (invariant checks after slow-path steps), whose exported
 * libc names are made local: the process malloc stays glibc's. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bound.h"
#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

enum { SLOTS = 64, OP_BYTES = 4, SPAN = 4096, SAMPLES = 16, SAMPLE_LEN = 64, EDGE = 8 };
#define FULL_MAX (64 * KiB) /* blocks up to this are filled and checked whole */
#define LIVE_MAX (64 * MiB) /* requested bytes live at once, at most */
#define HUGE_ALIGN ((size_t)1 << 62)
/* The byte loops over blocks, not inlined into instrumented callers:
 * coverage (and comparison tracing) there would only slow every run down. */
#define NO_COVERAGE __attribute__((no_sanitize("coverage"), noinline))

enum { OP_MALLOC, OP_CALLOC, OP_REALLOC, OP_ALIGNED, OP_MEMALIGN, OP_FREE, OP_REALLOC2, OP_MISC };
static const char *const op_name[] = {"malloc",         "calloc", "realloc", "aligned_alloc",
                                      "posix_memalign", "free",   "realloc", "misc"};

typedef struct {
  unsigned char *p; /* the block, NULL if the slot is empty */
  size_t size;      /* bytes requested */
  size_t usable;    /* hak_usable_size when it was allocated: stable */
  size_t align;     /* alignment asked for (16 for malloc and the rest) */
  uint8_t seed;     /* the fill pattern's seed */
} slot_t;

static slot_t slots[SLOTS];
static size_t live_bytes; /* sum of slots[].size */
static uint8_t next_seed;
static size_t op_index; /* operation being run, for the failure line */
static const char *op_label = "start";

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz/alloc: op %zu (%s): ", op_index, op_label);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

/* Byte off of the pattern for seed: a block shifted by 1, 256 or 64 KiB
 * bytes, or another block's contents, reads differently. */
static inline uint8_t pattern(uint8_t seed, size_t off) {
  return (uint8_t)(seed + off * 7 + (off >> 8) * 0x5B + (off >> 16) * 0x33);
}

/* ---- the spans of a block that are filled and checked ------------------ */
typedef struct {
  size_t off, len;
} span_t;
enum { MAX_SPANS = SAMPLES + 3 };

/* Spans over the usable size u of a block of n requested bytes: all of it
 * up to FULL_MAX, else the first SPAN bytes, SAMPLES samples, the last
 * SPAN bytes of the request and the last SAMPLE_LEN of the usable size. */
static int spans_of(size_t n, size_t u, span_t *s) {
  if (u <= FULL_MAX) {
    s[0] = (span_t){0, u};
    return 1;
  }
  int k = 0;
  s[k++] = (span_t){0, SPAN};
  for (size_t i = 1; i < SAMPLES; i++)
    s[k++] = (span_t){(i * (u / SAMPLES)) & ~(size_t)(SAMPLE_LEN - 1), SAMPLE_LEN};
  size_t from = n > SPAN ? n - SPAN : 0;
  s[k++] = (span_t){from, n - from};
  s[k++] = (span_t){u - SAMPLE_LEN, SAMPLE_LEN};
  return k;
}

NO_COVERAGE static void fill_range(slot_t *b, size_t off, size_t len) {
  for (size_t i = off; i < off + len; i++) b->p[i] = pattern(b->seed, i);
}

NO_COVERAGE static void check_range(const slot_t *b, int i, size_t off, size_t len, const char *what) {
  for (size_t j = off; j < off + len; j++)
    if (b->p[j] != pattern(b->seed, j))
      fail("slot %d %p (size %zu, usable %zu): %s: byte %zu is 0x%02x, not 0x%02x", i, (void *)b->p, b->size,
           b->usable, what, j, b->p[j], pattern(b->seed, j));
}

static void fill(slot_t *b) {
  span_t s[MAX_SPANS];
  int k = spans_of(b->size, b->usable, s);
  for (int j = 0; j < k; j++) fill_range(b, s[j].off, s[j].len);
}

/* The block's usable size as hakmem says now, and its spans (or only its
 * first and last EDGE bytes: cheap, for the blocks an operation did not
 * touch). */
static void check_block(int i, bool full) {
  const slot_t *b = &slots[i];
  if (!b->p) return;
  size_t u = hak_usable_size(b->p);
  if (u != b->usable) fail("slot %d %p: usable size %zu, was %zu", i, (void *)b->p, u, b->usable);
  if (!full) {
    size_t e = b->usable < EDGE ? b->usable : EDGE;
    check_range(b, i, 0, e, "first bytes kept");
    check_range(b, i, b->usable - e, e, "last bytes kept");
    return;
  }
  span_t s[MAX_SPANS];
  int k = spans_of(b->size, b->usable, s);
  for (int j = 0; j < k; j++) check_range(b, i, s[j].off, s[j].len, "contents kept");
}

/* ---- a fresh block: the checks every allocation passes ------------------ */

/* Checks p as the new block of slot i (n bytes at alignment a) and enters
 * it in the model; bounded says whether usable_max applies (not after a
 * realloc, which may keep a block or leave room to grow). */
NO_COVERAGE static void take(int i, void *p, size_t n, size_t a, bool bounded) {
  if (!p) fail("slot %d: %zu bytes at alignment %zu: NULL (errno %d)", i, n, a, errno);
  if ((uintptr_t)p % (a < 16 ? 16 : a))
    fail("slot %d: %p for %zu bytes is not aligned to %zu", i, p, n, a < 16 ? 16 : a);
  size_t u = hak_usable_size(p);
  if (u < n) fail("slot %d: %p: usable size %zu < %zu requested", i, p, u, n);
  if (bounded && u > usable_max(n, a))
    fail("slot %d: %p: usable size %zu for %zu bytes at alignment %zu is over %zu", i, p, u, n, a,
         usable_max(n, a));
  uintptr_t lo = (uintptr_t)p, hi = lo + u;
  for (int j = 0; j < SLOTS; j++) {
    const slot_t *o = &slots[j];
    if (j == i || !o->p) continue;
    if (lo < (uintptr_t)o->p + o->usable && (uintptr_t)o->p < hi)
      fail("slot %d: %p (usable %zu) overlaps slot %d %p (usable %zu)", i, p, u, j, (void *)o->p, o->usable);
  }
  slot_t *b = &slots[i];
  *b = (slot_t){p, n, u, a < 16 ? 16 : a, next_seed++};
  live_bytes += n;
}

/* Frees slot i's block after a full check; free never changes errno. */
static void drop(int i) {
  slot_t *b = &slots[i];
  if (!b->p) return;
  check_block(i, true);
  errno = 1234;
  hak_free(b->p);
  if (errno != 1234) fail("slot %d: free changed errno to %d", i, errno);
  live_bytes -= b->size;
  b->p = NULL;
}

static bool fits(int i, size_t n) { return live_bytes - (slots[i].p ? slots[i].size : 0) + n <= LIVE_MAX; }

/* ---- decoding ------------------------------------------------------------ */

/* Class sizes above Tiny (8 per doubling, 1 KiB .. 1 MiB) and other edges. */
static size_t edge_size(unsigned e) {
  static const size_t special[] = {
      1,        15,      16,           17,      48,          960,     1008,          4096, 32 * KiB + 1,
      64 * KiB, MiB + 1, 2 * MiB - 64, 2 * MiB, 2 * MiB + 1, 3 * MiB, 4 * MiB - 4096};
  if (e < 80) return (KiB << (e / 8)) * (8 + e % 8) / 8;
  return special[(e - 80) % (sizeof special / sizeof special[0])];
}

static size_t spread(size_t lo, size_t hi, unsigned r) { return lo + (size_t)r * (hi - lo) / 8191; }

static size_t size_of(unsigned w) {
  unsigned r = w & 8191;
  switch (w >> 13) {
    case 0:
      return r % 17;
    case 1:
    case 2:
      return 1 + r % 1024;
    case 3:
      return spread(KiB + 1, 32 * KiB, r);
    case 4:
      return spread(32 * KiB + 1, MiB, r);
    case 5:
      return spread(MiB + 1, 4 * MiB, r);
    case 6: {
      size_t n = edge_size(r % 96) + (r / 96) % 5;
      return n >= 2 ? n - 2 : 0;
    }
    default: {
      unsigned e = r % 22;
      return ((size_t)1 << e) + ((((size_t)r >> 5) << e) >> 8);
    }
  }
}

/* Powers of two up to 4 MiB, then alignments that are not (0, 3, 24, 48),
 * one too large to be served, and the common ones again. */
static size_t align_of(unsigned x) {
  static const size_t odd[] = {0, 3, 24, 48, HUGE_ALIGN, 16, 64, 4096, 32};
  return x <= 22 ? (size_t)1 << x : odd[x - 23];
}

static bool power_of_two(size_t a) { return a && !(a & (a - 1)); }

/* ---- the operations ------------------------------------------------------ */

static void op_realloc(int i, size_t n) {
  slot_t *b = &slots[i];
  if (!b->p) {
    if (!fits(i, n)) return;
    take(i, hak_realloc(NULL, n), n, 16, false);
    fill(&slots[i]);
    return;
  }
  check_block(i, true);
  if (n == 0) {
    void *q = hak_realloc(b->p, 0);
    if (q) fail("slot %d: realloc(%p, 0) returned %p, not NULL", i, (void *)b->p, q);
    live_bytes -= b->size;
    b->p = NULL;
    return;
  }
  if (!fits(i, n)) return;
  slot_t old = *b;
  unsigned char *q = hak_realloc(b->p, n);
  if (!q) fail("slot %d: realloc(%p, %zu) from %zu: NULL (errno %d)", i, (void *)old.p, n, old.size, errno);
  live_bytes -= old.size;
  b->p = NULL;
  take(i, q, n, 16, false);
  /* The old block's spans, within what realloc keeps, now at q. */
  size_t keep = old.size < n ? old.size : n;
  slot_t moved = old;
  moved.p = q;
  span_t s[MAX_SPANS];
  int k = spans_of(old.size, old.usable, s);
  for (int j = 0; j < k; j++) {
    if (s[j].off >= keep) continue;
    size_t len = s[j].off + s[j].len > keep ? keep - s[j].off : s[j].len;
    check_range(&moved, i, s[j].off, len, "realloc keeps the prefix");
  }
  fill(&slots[i]);
}

/* The first byte of p[0 .. n) that is not 0, or n. */
NO_COVERAGE static size_t nonzero_at(const unsigned char *p, size_t n) {
  static const unsigned char zero[4096];
  size_t j = 0;
  while (j + sizeof zero <= n && !memcmp(p + j, zero, sizeof zero)) j += sizeof zero;
  while (j < n && !p[j]) j++;
  return j;
}

static void op_alloc(int op, int i, unsigned variant, size_t n, size_t a) {
  if (op == OP_ALIGNED || op == OP_MEMALIGN) {
    bool valid = power_of_two(a) && (op == OP_ALIGNED || a >= sizeof(void *));
    bool served = valid && a != HUGE_ALIGN;
    if (served) {
      if (!fits(i, n + a)) return;
      drop(i);
    }
    void *p = (void *)1;
    int rc = 0;
    errno = 4321;
    if (op == OP_ALIGNED) p = hak_aligned_alloc(a, n);
    else rc = hak_posix_memalign(&p, a, n);
    if (!served) {
      int err = op == OP_ALIGNED ? errno : rc, want = valid ? ENOMEM : EINVAL;
      if (op == OP_ALIGNED ? p != NULL : (rc == 0 || p != (void *)1))
        fail("%s(%zu, %zu) gave %p (rc %d), not an error", op_name[op], a, n, p, rc);
      if (err != want) fail("%s(%zu, %zu): error %d, not %d", op_name[op], a, n, err, want);
      return;
    }
    if (op == OP_MEMALIGN) {
      if (rc != 0) fail("posix_memalign(%zu, %zu) returned %d", a, n, rc);
      if (errno != 4321) fail("posix_memalign(%zu, %zu) changed errno to %d", a, n, errno);
    }
    take(i, p, n, a, true);
    fill(&slots[i]);
    return;
  }
  if (!fits(i, n)) return;
  drop(i);
  if (op == OP_MALLOC) {
    take(i, hak_malloc(n), n, 16, true);
  } else {
    static const size_t count[] = {1, 2, 3, 5};
    size_t c = count[variant], each = n / c;
    n = c * each;
    unsigned char *p = hak_calloc(c, each);
    take(i, p, n, 16, true);
    size_t j = nonzero_at(p, n);
    if (j < n) fail("slot %d: calloc(%zu, %zu) = %p: byte %zu is 0x%02x", i, c, each, (void *)p, j, p[j]);
  }
  fill(&slots[i]);
}

/* Calls that must fail, and how. */
static void op_errors(int i, unsigned r) {
  void *p = (void *)1;
  const char *what = "";
  int want = ENOMEM;
  errno = 0;
  switch (r % 8) {
    case 0:
      what = "malloc(SIZE_MAX)";
      p = hak_malloc(SIZE_MAX);
      break;
    case 1:
      what = "malloc(PTRDIFF_MAX + 1)";
      p = hak_malloc((size_t)PTRDIFF_MAX + 1);
      break;
    case 2:
      what = "calloc(SIZE_MAX / 2, 3)";
      p = hak_calloc(SIZE_MAX / 2, 3);
      break;
    case 3:
      what = "calloc(2^32, 2^32)";
      p = hak_calloc((size_t)1 << 32, (size_t)1 << 32);
      break;
    case 4:
      what = "aligned_alloc(16, PTRDIFF_MAX + 1)";
      p = hak_aligned_alloc(16, (size_t)PTRDIFF_MAX + 1);
      break;
    case 5:
      what = "aligned_alloc(4096, SIZE_MAX - 4095)";
      p = hak_aligned_alloc(4096, SIZE_MAX - 4095);
      break;
    case 6: {
      what = "posix_memalign(64, SIZE_MAX)";
      void *out = (void *)1;
      int rc = hak_posix_memalign(&out, 64, SIZE_MAX);
      if (rc != ENOMEM || out != (void *)1) fail("%s: rc %d, out %p", what, rc, out);
      return;
    }
    default:
      /* realloc to a huge size fails and leaves the block as it was. */
      if (!slots[i].p) {
        if (hak_usable_size(NULL) != 0) fail("usable_size(NULL) is not 0");
        hak_free(NULL);
        if (errno != 0) fail("free(NULL) changed errno to %d", errno);
        return;
      }
      what = "realloc(p, SIZE_MAX)";
      p = hak_realloc(slots[i].p, SIZE_MAX);
      break;
  }
  if (p) fail("%s gave %p, not NULL", what, p);
  if (errno != want) fail("%s: errno %d, not %d", what, errno, want);
}

static void op_stats(void) {
  hak_stats_t s;
  if (hak_stats(&s) != 0) fail("hak_stats did not return 0");
  if (s.unaccounted != 0) fail("hak_stats: unaccounted %lld", (long long)s.unaccounted);
  if (s.peak_committed < s.committed)
    fail("peak_committed %zu < committed %zu", s.peak_committed, s.committed);
  if (s.in_use < live_bytes) fail("hak_stats: in_use %zu < %zu bytes live", s.in_use, live_bytes);
}

static void op_misc(int i, unsigned variant, unsigned w) {
  switch (variant) {
    case 0:
      hak_trim();
      break;
    case 1:
      op_stats();
      break;
    case 2:
      op_errors(i, w);
      break;
    default:
      for (int j = 0; j < SLOTS; j++) check_block(j, true);
      break;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process malloc must stay glibc's (tests/fuzz.mk makes hakmem's libc
 * names local): the fuzzer's own allocations are not in the model. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if ((uintptr_t)&malloc == (uintptr_t)&hak_malloc)
    fail("malloc is hakmem's: the libc names were not made local");
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (op_index = 0; (op_index + 1) * OP_BYTES <= size; op_index++) {
    const uint8_t *b = data + op_index * OP_BYTES;
    int op = b[0] & 7, i = b[1] & (SLOTS - 1);
    unsigned variant = b[1] >> 6, w = b[2] | (unsigned)b[3] << 8;
    size_t n = size_of(w), a = align_of(b[0] >> 3);
    op_label = op_name[op];
    switch (op) {
      case OP_MALLOC:
      case OP_CALLOC:
      case OP_ALIGNED:
      case OP_MEMALIGN:
        op_alloc(op, i, variant, n, a);
        break;
      case OP_REALLOC:
      case OP_REALLOC2:
        op_realloc(i, variant == 3 ? 0 : n);
        break;
      case OP_FREE:
        drop(i);
        break;
      default:
        op_misc(i, variant, w);
        break;
    }
    check_block(i, true);
    for (int j = 0; j < SLOTS; j++)
      if (j != i) check_block(j, false);
  }
  op_label = "end of input";
  for (int j = 0; j < SLOTS; j++) drop(j);
  /* Spare slabs, empty units and BigCache go back, so that the next input
   * starts much as this one did and a crash replays from its input alone. */
  hak_trim();
  return 0;
}
