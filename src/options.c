/* options.c — the one table of HAKMEM_* options (internal.h lists them,
 * each row with its variable's full name).
 * Values are read once, at initialisation, and copied: a later setenv
 * changes nothing. Like secure_getenv, a setuid or setgid program ignores
 * them all. A bad value
 * warns once and keeps the default; an unknown HAKMEM_ variable warns. */
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include "internal.h"

typedef struct option {
  const char *name;
  long def, lo, hi;
  const char *desc;
} option_t;

static const option_t table[] = {
#define HAK_OPTION_ROW(id, name, def, lo, hi, desc) {name, def, lo, hi, desc},
    HAK_OPTION_LIST(HAK_OPTION_ROW)
#undef HAK_OPTION_ROW
};
_Static_assert(sizeof table / sizeof table[0] == HAK_OPT_COUNT, "one row per option");

_Atomic long _hak_options[HAK_OPT_COUNT] = {
#define HAK_OPTION_DEFAULT(id, name, def, lo, hi, desc) def,
    HAK_OPTION_LIST(HAK_OPTION_DEFAULT)
#undef HAK_OPTION_DEFAULT
};

static const struct {
  const char *name, *desc;
} text_table[] = {
#define HAK_TEXT_OPTION_ROW(id, name, desc) {name, desc},
    HAK_TEXT_OPTION_LIST(HAK_TEXT_OPTION_ROW)
#undef HAK_TEXT_OPTION_ROW
};
static char text_value[HAK_TEXT_COUNT][HAK_TEXT_MAX];

const char *hak_opt_text(int id) { return text_value[id][0] ? text_value[id] : NULL; }

static void warn_bad(const option_t *o, const char *value) {
  hak_buf_t b = {.fd = 2};
  _hak_buf_str(&b, "hakmem: ");
  _hak_buf_str(&b, o->name);
  _hak_buf_str(&b, "=");
  _hak_buf_str(&b, value);
  _hak_buf_str(&b, " is not a whole number in [");
  _hak_buf_dec(&b, (uint64_t)o->lo);
  _hak_buf_str(&b, ", ");
  _hak_buf_dec(&b, (uint64_t)o->hi);
  _hak_buf_str(&b, "]");
  const char *sep = " or a list of ", *word;
  long bit;
  for (unsigned k = 0; (word = hak_option_word((int)(o - table), k, &bit)) != NULL; k++) {
    _hak_buf_str(&b, sep);
    _hak_buf_str(&b, word);
    sep = ",";
  }
  _hak_buf_str(&b, "; keeping ");
  _hak_buf_dec(&b, (uint64_t)o->def);
  _hak_buf_str(&b, "\n");
  _hak_buf_flush(&b);
}

static void warn_unknown(void) {
  extern char **environ;
  if (!environ) return;
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "HAKMEM_", 7) != 0) continue;
    size_t len = strcspn(*e, "=");
    bool known = false;
    for (size_t i = 0; i < HAK_OPT_COUNT && !known; i++)
      known = strlen(table[i].name) == len && strncmp(table[i].name, *e, len) == 0;
    for (size_t i = 0; i < HAK_TEXT_COUNT && !known; i++)
      known = strlen(text_table[i].name) == len && strncmp(text_table[i].name, *e, len) == 0;
    if (!known) {
      hak_buf_t b = {.fd = 2};
      _hak_buf_str(&b, "hakmem: unknown option ");
      _hak_buf_str(&b, *e);
      _hak_buf_str(&b, " (HAKMEM_VERBOSE=1 lists the options)\n");
      _hak_buf_flush(&b);
    }
  }
}

void _hak_options_load(void) {
  if (getauxval(AT_SECURE)) return;
  for (size_t i = 0; i < HAK_OPT_COUNT; i++) {
    const char *v = getenv(table[i].name);
    long value;
    if (!v) continue;
    if (hak_option_parse((int)i, v, table[i].lo, table[i].hi, &value))
      atomic_store_explicit(&_hak_options[i], value, memory_order_relaxed);
    else warn_bad(&table[i], v);
  }
  for (size_t i = 0; i < HAK_TEXT_COUNT; i++) {
    const char *v = getenv(text_table[i].name);
    if (!v) continue;
    size_t len = strlen(v);
    if (len > 0 && len < HAK_TEXT_MAX) {
      memcpy(text_value[i], v, len + 1);
      continue;
    }
    hak_buf_t b = {.fd = 2};
    _hak_buf_str(&b, "hakmem: ");
    _hak_buf_str(&b, text_table[i].name);
    _hak_buf_str(&b, len ? " is longer than 255 bytes; ignored\n" : " is empty; ignored\n");
    _hak_buf_flush(&b);
  }
  warn_unknown();
  if (hak_opt(HAK_OPT_VERBOSE)) _hak_options_print(2);
}

bool _hak_option_set(int id, long value) {
  if (id < 0 || id >= HAK_OPT_COUNT || value < table[id].lo || value > table[id].hi) return false;
  atomic_store_explicit(&_hak_options[id], value, memory_order_relaxed);
  return true;
}

void _hak_options_print(int fd) {
  hak_buf_t b = {.fd = fd};
  _hak_buf_str(&b, "hakmem: ");
  _hak_buf_str(&b, HAK_VERSION_TEXT);
  _hak_buf_str(&b, " options (value, default, range):\n");
  for (size_t i = 0; i < HAK_OPT_COUNT; i++) {
    const option_t *o = &table[i];
    _hak_buf_str(&b, "  ");
    _hak_buf_str(&b, o->name);
    _hak_buf_pad(&b, 30);
    _hak_buf_dec(&b, (uint64_t)hak_opt((int)i));
    _hak_buf_pad(&b, 40);
    _hak_buf_dec(&b, (uint64_t)o->def);
    _hak_buf_pad(&b, 50);
    _hak_buf_dec(&b, (uint64_t)o->lo);
    _hak_buf_str(&b, "..");
    _hak_buf_dec(&b, (uint64_t)o->hi);
    _hak_buf_pad(&b, 68);
    _hak_buf_str(&b, o->desc);
    _hak_buf_str(&b, "\n");
  }
  for (size_t i = 0; i < HAK_TEXT_COUNT; i++) {
    _hak_buf_str(&b, "  ");
    _hak_buf_str(&b, text_table[i].name);
    _hak_buf_pad(&b, 30);
    _hak_buf_str(&b, text_value[i][0] ? text_value[i] : "-");
    _hak_buf_pad(&b, 68);
    _hak_buf_str(&b, text_table[i].desc);
    _hak_buf_str(&b, "\n");
  }
  _hak_buf_flush(&b);
}
