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

static const struct {
  const char *name;
  long def, lo, hi;
  const char *desc;
} numeric[] = {
#define ROW(id, name, def, lo, hi, desc) {name, def, lo, hi, desc},
    HAK_OPTION_LIST(ROW)
#undef ROW
};
static const struct {
  const char *name, *desc;
} text[] = {
#define ROW(id, name, desc) {name, desc},
    HAK_TEXT_OPTION_LIST(ROW)
#undef ROW
};
static const struct {
  const char *type, *name, *desc;
} fields[] = {
#define ROW(type, name, desc) {#type, #name, desc},
    HAK_STATS_FIELDS(ROW)
#undef ROW
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void options(void) {
  for (size_t i = 0; i < COUNT(numeric); i++) {
    printf(".TP\n.B %s\n", numeric[i].name);
    text_line(numeric[i].desc, ".");
    printf("Default %ld; a whole number from %ld to %ld", numeric[i].def, numeric[i].lo, numeric[i].hi);
    const char *word;
    long bit;
    for (unsigned k = 0; (word = hak_option_word((int)i, k, &bit)) != NULL; k++)
      printf("%s\\fB%s\\fP (%ld)", k ? ", " : ", or a comma-separated list of ", word, bit);
    printf(".\n");
  }
  for (size_t i = 0; i < COUNT(text); i++) {
    printf(".TP\n.BI %s= file\n", text[i].name);
    text_line(text[i].desc, ".");
    printf("Not set by default; the value is 1 to %d bytes.\n", HAK_TEXT_MAX - 1);
  }
}

static void stats(void) {
  for (size_t i = 0; i < COUNT(fields); i++) {
    printf(".TP\n.IR %s \" (%s)\"\n", fields[i].name, fields[i].type);
    text_line(fields[i].desc, "");
  }
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
