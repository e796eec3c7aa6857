/* stats.c — statistics: hak_stats_t gathered from every layer under all the
 * locks (the counters of counters.c, the unit maps of the SuperSlabs, the
 * budget's totals, Large blocks), with the accounting identity, and the
 * reports: a line, a text report (malloc_stats), JSON (hak_stats_json) and
 * XML (malloc_info). */
#include <string.h>

#include "units.h"

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

typedef struct snapshot {
  hak_stats_t st;
  uint64_t stat[HAK_STAT_COUNT];
  uint64_t cls_slabs[2 * HAK_CLASSES]; /* current, peak */
  uint64_t cls_used[HAK_CLASSES];
} snapshot_t;

/* The SuperSlabs' slabs, from their unit maps (_hak_ss_lock held): every
 * slab's bytes are in live blocks or not, a spare's are empty; free units
 * not purged are empty too. */
static void walk_slabs(snapshot_t *s, bool classes) {
  hak_front_t *me = hak_tls_heap;
  for (hak_reservation_t *r = _hak_reservation_next(NULL); r; r = _hak_reservation_next(r)) {
    for (uint32_t i = 0; i < r->carved; i++) {
      hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)i * HAK_SS_SIZE);
      s->st.empty += hak_units_bytes(ss->dirty_units);
      for (unsigned u = 0; u < HAK_UNITS; u++) {
        hak_slab_t *sl = &ss->slab[u];
        if (!sl->units) continue;
        s->st.slabs++;
        if (classes) s->cls_slabs[2 * sl->cls]++;
        if (__atomic_load_n(&sl->where, __ATOMIC_RELAXED) == HAK_IN_SPARE) {
          s->st.empty += hak_slab_bytes(sl);
          continue;
        }
        uint32_t blocks = _hak_slab_live(sl, me->key, me->slot[sl->cls].free);
        size_t bytes = (size_t)blocks * sl->block_size;
        s->st.in_use += bytes;
        s->st.slab_free += hak_slab_bytes(sl) - bytes;
        if (classes) s->cls_used[sl->cls] += blocks;
      }
    }
  }
  if (classes)
    for (size_t c = 0; c < HAK_CLASSES; c++) {
      uint64_t peak = _hak_class_peak(c);
      s->cls_slabs[2 * c + 1] = peak > s->cls_slabs[2 * c] ? peak : s->cls_slabs[2 * c];
    }
}

/* With no other heap live, and every lock held, nothing changes the heap
 * while it is read: the identity and the totals the budget runs on must
 * then agree exactly with the unit maps (the debug build checks: I5). */
static void check_at_rest(const hak_stats_t *st, size_t used, size_t empty) {
  HAK_ASSERT(st->unaccounted == 0);
  HAK_ASSERT(st->peak_committed >= st->committed);
  HAK_ASSERT(empty == st->empty);
  HAK_ASSERT(used == st->in_use + st->slab_free + st->metadata - st->superslabs * HAK_SS_HEADER);
}

/* Every hakmem lock that guards a figure, in the fork order (thread.c):
 * the threads without a heap of their own wait meanwhile. */
static void take(snapshot_t *s, bool classes) {
  memset(s, 0, sizeof *s);
  _hak_lock(&_hak_heap_registry_lock);
  _hak_lock(&_hak_global_heap_lock);
  _hak_lock(&_hak_ss_lock);
  _hak_lock(&_hak_large_lock);
  uint64_t heaps = _hak_heaps_counters(s->stat);
  walk_slabs(s, classes);
  _hak_superslab_figures(&s->st);
  _hak_reservation_figures(&s->st);
  _hak_large_figures(&s->st);
  size_t used, empty;
  _hak_budget_figures(&used, &empty, &s->st.committed, &s->st.peak_committed, &s->st.room);
  s->st.heaps = heaps;
  s->st.unaccounted =
      (int64_t)(s->st.committed - (s->st.in_use + s->st.slab_free + s->st.empty + s->st.metadata));
  if (hak_cfg_debug && heaps == (hak_tls_own_heap() != NULL)) check_at_rest(&s->st, used, empty);
  _hak_unlock(&_hak_large_lock);
  _hak_unlock(&_hak_ss_lock);
  _hak_unlock(&_hak_global_heap_lock);
  _hak_unlock(&_hak_heap_registry_lock);
  _hak_counters_totals(s->stat);
  s->st.slabs_detached = s->stat[HAK_STAT_slabs_detached];
  s->st.slabs_adopted = s->stat[HAK_STAT_slabs_adopted];
  s->st.invalid_frees = _hak_invalid_count();
  s->st.failed_size = _hak_fail_count(HAK_FAIL_SIZE);
  s->st.failed_overflow = _hak_fail_count(HAK_FAIL_OVERFLOW);
  s->st.failed_align = _hak_fail_count(HAK_FAIL_ALIGN);
  s->st.failed_map = _hak_fail_count(HAK_FAIL_MAP);
}

void _hak_stats_tiers(hak_stats_t *st, size_t tier[4]) {
  static const size_t last[3] = {HAK_CLASS_TINY_LAST, HAK_CLASS_MID_LAST, HAK_CLASS_LAST};
  snapshot_t s;
  take(&s, true);
  *st = s.st;
  size_t t = 0;
  tier[0] = tier[1] = tier[2] = 0;
  for (size_t c = 1; c <= HAK_CLASS_LAST; c++) {
    if (c > last[t]) t++;
    tier[t] += (size_t)s.cls_used[c] * hak_class_size(c);
  }
  tier[3] = s.st.in_use - tier[0] - tier[1] - tier[2]; /* in_use: the slabs' blocks, and Large blocks */
}

HAK_API int hak_stats(hak_stats_t *out) {
  snapshot_t s;
  take(&s, false);
  *out = s.st;
  return 0;
}

HAK_API void hak_stats_flush(void) { _hak_heap_flush_counters(); }

/* A figure of hak_stats_t, signed or not. */
#define FIGURE(b, v) \
  _Generic((v), int64_t : _hak_buf_int((b), (int64_t)(v)), default : _hak_buf_dec((b), (uint64_t)(v)))

/* The exit line names its process: a program run through another one under
 * LD_PRELOAD (time, env, a shell) prints the other's line too, and one that
 * never allocated prints zeros. */
static void line(hak_buf_t *b, const hak_stats_t *st) {
  _hak_buf_str(b, "hakmem: pid=");
  _hak_buf_dec(b, (uint64_t)_hak_os_getpid());
#define LINE_FIELD(type, f, desc) \
  _hak_buf_str(b, " " #f "=");    \
  FIGURE(b, (st->f));
  HAK_STATS_FIELDS(LINE_FIELD)
#undef LINE_FIELD
  _hak_buf_str(b, "\n");
}

HAK_API void hak_stats_print(int fd) {
  snapshot_t s;
  take(&s, true);
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "hakmem statistics (");
  _hak_buf_str(&b, HAK_VERSION_TEXT);
  _hak_buf_str(&b, ")\n");
#define TEXT_FIELD(type, f, desc) \
  _hak_buf_str(&b, "  " #f);      \
  _hak_buf_pad(&b, 24);           \
  FIGURE(&b, (s.st.f));           \
  _hak_buf_str(&b, "\n");
  HAK_STATS_FIELDS(TEXT_FIELD)
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
  _hak_buf_str(&b, HAK_VERSION_TEXT);
  _hak_buf_str(&b, "\"");
#define JSON_FIELD(type, f, desc)   \
  _hak_buf_str(&b, ",\"" #f "\":"); \
  FIGURE(&b, (s.st.f));
  HAK_STATS_FIELDS(JSON_FIELD)
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
#define XML_FIELD(type, f, desc)                     \
  _hak_buf_str(b, "<total type=\"" #f "\" size=\""); \
  FIGURE(b, (s.st.f));                               \
  _hak_buf_str(b, "\"/>\n");
  HAK_STATS_FIELDS(XML_FIELD)
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
