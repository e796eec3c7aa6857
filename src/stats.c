/* stats.c — statistics: per-thread counters (HAK_STAT_LIST, plain fields in
 * each heap, merged here at thread exit), figures gathered from the
 * SuperSlab and Large layers, and the reports: a line, a text report
 * (malloc_stats), JSON (hak_stats_json) and XML (malloc_info). */
#include <string.h>

#include "internal.h"

_Atomic uint64_t _hak_stat_total[HAK_STAT_COUNT];
_Atomic uint64_t _hak_invalid_frees;

static const char *const stat_name[HAK_STAT_COUNT] = {
#define HAK_STAT_NAME(name, desc) #name,
    HAK_STAT_LIST(HAK_STAT_NAME)
#undef HAK_STAT_NAME
};
static const char *const stat_desc[HAK_STAT_COUNT] = {
#define HAK_STAT_DESC(name, desc) desc,
    HAK_STAT_LIST(HAK_STAT_DESC)
#undef HAK_STAT_DESC
};

void _hak_stats_merge(uint64_t *stat) {
  for (size_t i = 0; i < HAK_STAT_COUNT; i++)
    if (stat[i]) atomic_fetch_add_explicit(&_hak_stat_total[i], stat[i], memory_order_relaxed);
}

typedef struct snapshot {
  hak_stats_t st;
  uint64_t stat[HAK_STAT_COUNT];
  uint64_t cls_slabs[2 * HAK_CLASSES]; /* current, peak */
  uint64_t cls_used[HAK_CLASSES];
} snapshot_t;

/* With no other heap live, and every lock held, nothing changes the heap
 * while it is read: the identity and the totals the budget runs on must
 * then agree exactly with the unit maps (the debug build checks). */
static void check_at_rest(const hak_stats_t *st) {
  hak_front_t *f = hak_tls_heap;
  int64_t delta[2] = {0, 0};
  if (f->key != HAK_KEY_NONE) {
    delta[0] = ((hak_heap_t *)f)->mem_delta[0];
    delta[1] = ((hak_heap_t *)f)->mem_delta[1];
  }
  int64_t live = (int64_t)atomic_load_explicit(&_hak_mem.live, memory_order_relaxed) + delta[0];
  int64_t idle = (int64_t)atomic_load_explicit(&_hak_mem.idle, memory_order_relaxed) + delta[1];
  HAK_ASSERT(st->unaccounted == 0);
  HAK_ASSERT(st->peak_committed >= st->committed);
  HAK_ASSERT(idle == (int64_t)st->empty);
  HAK_ASSERT(live == (int64_t)(st->in_use + st->slab_free + st->metadata - st->superslabs * HAK_SS_HEADER));
}

/* Every hakmem lock that guards a figure, in the fork order (init.c): the
 * threads without a heap of their own wait meanwhile. */
static void take(snapshot_t *s, bool classes) {
  memset(s, 0, sizeof *s);
  _hak_lock(&_hak_heap_registry_lock);
  _hak_lock(&_hak_global_heap_lock);
  _hak_lock(&_hak_ss_lock);
  _hak_lock(&_hak_large_lock);
  uint64_t heaps = _hak_heaps_stats(s->stat);
  _hak_superslab_stats(&s->st, classes ? s->cls_slabs : NULL, classes ? s->cls_used : NULL);
  _hak_large_stats(&s->st);
  s->st.heaps = heaps;
  s->st.unaccounted = (int64_t)(s->st.committed - (s->st.in_use + s->st.slab_free + s->st.empty + s->st.metadata));
  if (hak_cfg_debug && heaps == (hak_tls_heap->key != HAK_KEY_NONE)) check_at_rest(&s->st);
  _hak_unlock(&_hak_large_lock);
  _hak_unlock(&_hak_ss_lock);
  _hak_unlock(&_hak_global_heap_lock);
  _hak_unlock(&_hak_heap_registry_lock);
  for (size_t i = 0; i < HAK_STAT_COUNT; i++)
    s->stat[i] += atomic_load_explicit(&_hak_stat_total[i], memory_order_relaxed);
  s->st.slabs_detached = s->stat[HAK_STAT_slabs_detached];
  s->st.slabs_adopted = s->stat[HAK_STAT_slabs_adopted];
  s->st.invalid_frees = atomic_load_explicit(&_hak_invalid_frees, memory_order_relaxed);
}

HAK_API int hak_stats(hak_stats_t *out) {
  snapshot_t s;
  take(&s, false);
  *out = s.st;
  return 0;
}

HAK_API void hak_stats_flush(void) { _hak_heap_flush_stats(); }

/* The figures of hak_stats_t, in order, for every report format. */
#define SUMMARY_FIELDS(X)                                                                      \
  X(mapped) X(committed) X(large_committed) X(peak_committed) X(in_use) X(large_in_use) X(large_blocks)           \
  X(bigcache_bytes) X(bigcache_hits) X(bigcache_misses) X(superslabs) X(slabs)                 \
  X(slabs_detached) X(slabs_adopted) X(purged) X(unmapped) X(heaps) X(invalid_frees) X(empty) X(room)  \
  X(slab_free) X(metadata) X(unaccounted)

/* A figure of hak_stats_t, signed or not. */
#define FIGURE(b, v) _Generic((v), int64_t: _hak_buf_int((b), (int64_t)(v)), default: _hak_buf_dec((b), (uint64_t)(v)))

/* The exit line names its process: a program run through another one under
 * LD_PRELOAD (time, env, a shell) prints the other's line too, and one that
 * never allocated prints zeros. */
static void line(hak_buf_t *b, const hak_stats_t *st) {
  _hak_buf_str(b, "hakmem: pid=");
  _hak_buf_dec(b, (uint64_t)_hak_os_getpid());
#define LINE_FIELD(f)        \
  _hak_buf_str(b, " " #f "="); \
  FIGURE(b, (st->f));
  SUMMARY_FIELDS(LINE_FIELD)
#undef LINE_FIELD
  _hak_buf_str(b, "\n");
}

HAK_API void hak_stats_print(int fd) {
  snapshot_t s;
  take(&s, true);
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "hakmem statistics (");
  _hak_buf_str(&b, hak_version());
  _hak_buf_str(&b, ")\n");
#define TEXT_FIELD(f)                  \
  _hak_buf_str(&b, "  " #f);           \
  _hak_buf_pad(&b, 24);                \
  FIGURE(&b, (s.st.f));  \
  _hak_buf_str(&b, "\n");
  SUMMARY_FIELDS(TEXT_FIELD)
#undef TEXT_FIELD
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) {
    _hak_buf_str(&b, "  ");
    _hak_buf_str(&b, stat_name[i]);
    _hak_buf_pad(&b, 24);
    _hak_buf_dec(&b, s.stat[i]);
    _hak_buf_pad(&b, 40);
    _hak_buf_str(&b, stat_desc[i]);
    _hak_buf_str(&b, "\n");
  }
  _hak_buf_str(&b, "  class  block size   slabs  peak slabs  blocks in use\n");
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!s.cls_slabs[2 * c + 1]) continue;
    _hak_buf_pad(&b, 2);
    _hak_buf_dec(&b, c);
    _hak_buf_pad(&b, 9);
    _hak_buf_dec(&b, hak_class_size(c));
    _hak_buf_pad(&b, 21);
    _hak_buf_dec(&b, s.cls_slabs[2 * c]);
    _hak_buf_pad(&b, 29);
    _hak_buf_dec(&b, s.cls_slabs[2 * c + 1]);
    _hak_buf_pad(&b, 41);
    _hak_buf_dec(&b, s.cls_used[c]);
    _hak_buf_str(&b, "\n");
  }
  _hak_buf_flush(&b);
}

HAK_API void hak_stats_json(int fd) {
  snapshot_t s;
  take(&s, true);
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "{\"version\":\"");
  _hak_buf_str(&b, hak_version());
  _hak_buf_str(&b, "\"");
#define JSON_FIELD(f)           \
  _hak_buf_str(&b, ",\"" #f "\":"); \
  FIGURE(&b, (s.st.f));
  SUMMARY_FIELDS(JSON_FIELD)
#undef JSON_FIELD
  _hak_buf_str(&b, ",\"counters\":{");
  for (size_t i = 0; i < HAK_STAT_COUNT; i++) {
    _hak_buf_str(&b, i ? ",\"" : "\"");
    _hak_buf_str(&b, stat_name[i]);
    _hak_buf_str(&b, "\":");
    _hak_buf_dec(&b, s.stat[i]);
  }
  _hak_buf_str(&b, "},\"classes\":[");
  bool first = true;
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!s.cls_slabs[2 * c + 1]) continue;
    _hak_buf_str(&b, first ? "{\"class\":" : ",{\"class\":");
    first = false;
    _hak_buf_dec(&b, c);
    _hak_buf_str(&b, ",\"block_size\":");
    _hak_buf_dec(&b, hak_class_size(c));
    _hak_buf_str(&b, ",\"slabs\":");
    _hak_buf_dec(&b, s.cls_slabs[2 * c]);
    _hak_buf_str(&b, ",\"peak_slabs\":");
    _hak_buf_dec(&b, s.cls_slabs[2 * c + 1]);
    _hak_buf_str(&b, ",\"blocks_in_use\":");
    _hak_buf_dec(&b, s.cls_used[c]);
    _hak_buf_str(&b, "}");
  }
  _hak_buf_str(&b, "]}\n");
  _hak_buf_flush(&b);
}

void _hak_stats_xml(hak_buf_t *b) {
  snapshot_t s;
  take(&s, true);
  _hak_buf_str(b, "<malloc version=\"hakmem\">\n");
  for (size_t c = 1; c < HAK_CLASSES; c++) {
    if (!s.cls_slabs[2 * c + 1]) continue;
    _hak_buf_str(b, "<size from=\"");
    _hak_buf_dec(b, c > 1 ? hak_class_size(c - 1) + 1 : 1);
    _hak_buf_str(b, "\" to=\"");
    _hak_buf_dec(b, hak_class_size(c));
    _hak_buf_str(b, "\" slabs=\"");
    _hak_buf_dec(b, s.cls_slabs[2 * c]);
    _hak_buf_str(b, "\" in_use=\"");
    _hak_buf_dec(b, s.cls_used[c]);
    _hak_buf_str(b, "\"/>\n");
  }
#define XML_FIELD(f)                     \
  _hak_buf_str(b, "<total type=\"" #f "\" size=\""); \
  FIGURE(b, (s.st.f));    \
  _hak_buf_str(b, "\"/>\n");
  SUMMARY_FIELDS(XML_FIELD)
#undef XML_FIELD
  _hak_buf_str(b, "</malloc>\n");
  _hak_buf_flush(b);
}

void _hak_stats_exit_report(void) {
  long mode = hak_opt(HAK_OPT_STATS);
  int fd = (int)hak_opt(HAK_OPT_STATS_FD);
  if (mode == 1) {
    hak_stats_t st;
    hak_stats(&st);
    hak_buf_t b = {.fd = fd};
    line(&b, &st);
    _hak_buf_flush(&b);
  } else if (mode == 2) {
    hak_stats_print(fd);
  } else if (mode == 3) {
    hak_stats_json(fd);
  }
}
