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

static void counters(uint64_t *stat) {
  for (size_t i = 0; i < HAK_STAT_COUNT; i++)
    stat[i] = atomic_load_explicit(&_hak_stat_total[i], memory_order_relaxed);
  _hak_heaps_stats(stat);
}

typedef struct snapshot {
  hak_stats_t st;
  uint64_t stat[HAK_STAT_COUNT];
  uint64_t cls_slabs[2 * HAK_CLASSES]; /* current, peak */
  uint64_t cls_used[HAK_CLASSES];
} snapshot_t;

static void take(snapshot_t *s, bool classes) {
  memset(s, 0, sizeof *s);
  _hak_superslab_stats(&s->st, classes ? s->cls_slabs : NULL, classes ? s->cls_used : NULL);
  _hak_large_stats(&s->st);
  counters(s->stat);
  s->st.slabs_detached = s->stat[HAK_STAT_slabs_detached];
  s->st.slabs_adopted = s->stat[HAK_STAT_slabs_adopted];
  s->st.heaps = _hak_heaps_live();
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
  X(slabs_detached) X(slabs_adopted) X(purged) X(unmapped) X(heaps) X(invalid_frees) X(empty) X(room)

static void line(hak_buf_t *b, const hak_stats_t *st) {
  _hak_buf_str(b, "hakmem:");
#define LINE_FIELD(f)        \
  _hak_buf_str(b, " " #f "="); \
  _hak_buf_dec(b, (uint64_t)st->f);
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
  _hak_buf_dec(&b, (uint64_t)s.st.f);  \
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
  _hak_buf_dec(&b, (uint64_t)s.st.f);
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
  _hak_buf_dec(b, (uint64_t)s.st.f);    \
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
