/* man/fragments.c — the parts of hakmem(3) that the sources define, as
 * man(7) markup: `fragments options` lists the HAKMEM_* options
 * (src/options.h), `fragments stats` the fields of hak_stats_t
 * (include/hakmem.h). install.mk puts them in place of the lines @OPTIONS@
 * and @STATISTICS@ of man/hakmem.3.in, so the page cannot fall behind. */
#include <stdio.h>
#include <string.h>

#include "hakmem.h"
#include "options.h"

/* s and then end as text on a line of its own: a backslash written \e,
 * and a leading dot or quote kept from being read as a request. */
static void text_line(const char *s, const char *end) {
  if (*s == '.' || *s == '\'') fputs("\\&", stdout);
  for (; *s; s++) {
    if (*s == '\\') fputs("\\e", stdout);
    else putchar(*s);
  }
  puts(end);
}

/* One numeric option: its name, what it does, its default and range, and
 * the words it also takes. */
static void numeric(int id, const char *name, long def, long lo, long hi, const char *desc) {
  printf(".TP\n.B %s\n", name);
  text_line(desc, ".");
  printf("Default %ld; a whole number from %ld to %ld", def, lo, hi);
  const char *word;
  long bit;
  for (unsigned k = 0; (word = hak_option_word(id, k, &bit)) != NULL; k++)
    printf("%s\\fB%s\\fP (%ld)", k ? ", " : ", or a comma-separated list of ", word, bit);
  printf(".\n");
}

static void text(const char *name, const char *desc) {
  printf(".TP\n.BI %s= file\n", name);
  text_line(desc, ".");
  printf("Not set by default; the value is 1 to %d bytes.\n", HAK_TEXT_MAX - 1);
}

static void options(void) {
#define NUMERIC(id, name, def, lo, hi, desc) numeric(HAK_OPT_##id, name, def, lo, hi, desc);
  HAK_OPTION_LIST(NUMERIC)
#undef NUMERIC
#define TEXT(id, name, desc) text(name, desc);
  HAK_TEXT_OPTION_LIST(TEXT)
#undef TEXT
}

static void field(const char *type, const char *name, const char *desc) {
  printf(".TP\n.IR %s \" (%s)\"\n", name, type);
  text_line(desc, "");
}

static void stats(void) {
#define FIELD(type, name, desc) field(#type, #name, desc);
  HAK_STATS_FIELDS(FIELD)
#undef FIELD
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "options") == 0) options();
  else if (argc == 2 && strcmp(argv[1], "stats") == 0) stats();
  else {
    fputs("usage: fragments options|stats\n", stderr);
    return 2;
  }
  return fflush(stdout) == 0 ? 0 : 1;
}
