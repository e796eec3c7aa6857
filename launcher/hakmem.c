/* hakmem — the launcher: runs a program with libhakmem preloaded and
 * HAKMEM_* options set, draws a memory timeline, lists the options.
 *
 *   hakmem run [--secure | --count-all] [--lib PATH] [--stats[=line|text|json]]
 *              [--timeline FILE] [--profile FILE] [--trace oom] [--crash-report]
 *              [--option NAME=VALUE ...] -- PROGRAM [ARGS...]
 *   hakmem plot FILE [-o OUT.svg]
 *   hakmem options
 *   hakmem --help | --version
 *
 * The options are checked here against the library's own table
 * (src/options.h) before the program starts: a bad name or value is an
 * error with the valid range, exit status 2. The library is found beside
 * the launcher, else in the library directory seen from the launcher's
 * (HAK_LIBDIR_FROM_BINDIR), unless --lib or $HAKMEM_LIB says.
 * An ordinary program: it runs on glibc's malloc. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "options.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define VERSION STR(HAKMEM_VERSION_MAJOR) "." STR(HAKMEM_VERSION_MINOR) "." STR(HAKMEM_VERSION_PATCH)
#define SONAME(lib) lib ".so." STR(HAKMEM_VERSION_MAJOR)

/* The libraries' directory relative to the launcher's: ../lib, or where
 * make install puts them (install.mk passes it: ../lib/x86_64-linux-gnu
 * in Debian's packages). */
#ifndef HAK_LIBDIR_FROM_BINDIR
#define HAK_LIBDIR_FROM_BINDIR "../lib"
#endif

static const char usage[] =
    "usage: hakmem run [--secure | --count-all] [--lib PATH] [--stats[=line|text|json]] [--timeline FILE]\n"
    "                  [--profile FILE] [--trace oom] [--crash-report] [--option NAME=VALUE ...]\n"
    "                  -- PROGRAM [ARGS...]\n"
    "       hakmem plot FILE [-o OUT.svg]\n"
    "       hakmem options\n"
    "       hakmem --help | --version\n"
    "\n"
    "run      runs PROGRAM with libhakmem preloaded (--secure: libhakmem-secure; --count-all:\n"
    "         libhakmem-stats, which counts every allocation and free) and the options set:\n"
    "         --stats prints the report at exit (HAKMEM_STATS: line 1, text 2, the default, json 3),\n"
    "         --timeline appends a JSON line of memory figures to FILE every 100 ms (HAKMEM_TIMELINE),\n"
    "         --profile samples allocations and writes a heap profile to FILE at exit, for google-pprof\n"
    "         (HAKMEM_PROFILE, HAKMEM_PROFILE_FILE; with HAKMEM_PROFILE=1 set, libhakmem-profile runs),\n"
    "         --trace oom says why each failed allocation failed, --crash-report what a faulting\n"
    "         address is; --option sets any HAKMEM_* option (NAME with or without HAKMEM_)\n"
    "plot     draws a timeline FILE as an SVG picture (default FILE.svg), with gnuplot\n"
    "options  lists the options, their defaults and ranges\n";

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
#define TEXT(id, name, desc) {name, desc},
    HAK_TEXT_OPTION_LIST(TEXT)
#undef TEXT
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void __attribute__((noreturn, format(printf, 2, 3))) fail(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("hakmem: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(status);
}

/* Checks NAME=VALUE (NAME with or without HAKMEM_) and sets it in the
 * environment as HAKMEM_NAME. */
static void set_option(const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) fail(2, "--option %s: not NAME=VALUE", arg);
  char name[128];
  int n = snprintf(name, sizeof name, "%s%.*s", strncmp(arg, "HAKMEM_", 7) == 0 ? "" : "HAKMEM_",
                   (int)(eq - arg), arg);
  if (n < 0 || (size_t)n >= sizeof name) fail(2, "--option %s: the name is too long", arg);
  const char *value = eq + 1;
  for (size_t i = 0; i < COUNT(numeric); i++) {
    if (strcmp(numeric[i].name, name) != 0) continue;
    long parsed, bit;
    if (!hak_option_parse((int)i, value, numeric[i].lo, numeric[i].hi, &parsed)) {
      char also[128] = "";
      const char *word;
      for (unsigned k = 0; (word = hak_option_word((int)i, k, &bit)) != NULL; k++)
        snprintf(also + strlen(also), sizeof also - strlen(also), "%s%s", also[0] ? "," : " or a list of ",
                 word);
      fail(2, "%s=%s: not a whole number in [%ld, %ld]%s", name, value, numeric[i].lo, numeric[i].hi, also);
    }
    setenv(name, value, 1);
    return;
  }
  for (size_t i = 0; i < COUNT(text); i++) {
    if (strcmp(text[i].name, name) != 0) continue;
    if (!*value || strlen(value) >= HAK_TEXT_MAX)
      fail(2, "%s: the value must be 1 to %d bytes", name, HAK_TEXT_MAX - 1);
    setenv(name, value, 1);
    return;
  }
  fail(2, "unknown option %s ('hakmem options' lists them)", name);
}

/* The library: --lib, $HAKMEM_LIB, else its soname (the name its runtime
 * package installs) beside the launcher or in HAK_LIBDIR_FROM_BINDIR. */
/* variant: 0 the default build, 1 the secure one, 2 the stats one, 3 the
 * profile one. */
static const char *find_library(const char *given, int variant, char *buf, size_t len) {
  if (len < PATH_MAX) fail(2, "internal: a path buffer under PATH_MAX");
  static const char *const files[] = {SONAME("libhakmem"), SONAME("libhakmem-secure"),
                                      SONAME("libhakmem-stats"), SONAME("libhakmem-profile")};
  const char *file = files[variant];
  if (!given) given = getenv("HAKMEM_LIB");
  if (given) {
    if (access(given, R_OK) != 0) fail(2, "%s: %s", given, strerror(errno));
    return realpath(given, buf) ? buf : given;
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) fail(2, "cannot find where the launcher is: %s", strerror(errno));
  self[n] = 0;
  *strrchr(self, '/') = 0;
  static const char *const dirs[] = {"", "/" HAK_LIBDIR_FROM_BINDIR};
  for (size_t i = 0; i < COUNT(dirs); i++) {
    if ((size_t)snprintf(buf, len, "%s%s/%s", self, dirs[i], file) >= len) continue;
    char real[PATH_MAX];
    if (access(buf, R_OK) == 0) return realpath(buf, real) ? strcpy(buf, real) : buf;
  }
  fail(2, "cannot find %s beside the launcher (%s) or in %s/%s; --lib PATH says where", file, self, self,
       HAK_LIBDIR_FROM_BINDIR);
}

static int cmd_run(int argc, char **argv) {
  int variant = 0, i = 0;
  const char *lib = NULL;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--secure") == 0) variant = 1;
    else if (strcmp(a, "--count-all") == 0) variant = 2;
    else if (strcmp(a, "--lib") == 0 && next) lib = argv[++i];
    else if (strcmp(a, "--stats") == 0 || strcmp(a, "--stats=text") == 0) set_option("STATS=2");
    else if (strcmp(a, "--stats=line") == 0) set_option("STATS=1");
    else if (strcmp(a, "--stats=json") == 0) set_option("STATS=3");
    else if (strcmp(a, "--timeline") == 0 && next) {
      char opt[HAK_TEXT_MAX + 16];
      snprintf(opt, sizeof opt, "TIMELINE=%s", argv[++i]);
      set_option(opt);
    } else if (strcmp(a, "--profile") == 0 && next) {
      char opt[HAK_TEXT_MAX + 16];
      snprintf(opt, sizeof opt, "PROFILE_FILE=%s", argv[++i]);
      set_option(opt);
      set_option("PROFILE=1");
    } else if (strcmp(a, "--trace") == 0 && next) {
      char opt[128];
      snprintf(opt, sizeof opt, "TRACE=%s", argv[++i]);
      set_option(opt);
    } else if (strcmp(a, "--crash-report") == 0) set_option("CRASH_REPORT=1");
    else if (strcmp(a, "--option") == 0 && next) set_option(argv[++i]);
    else
      fail(2, "run: %s%s ('hakmem --help' shows the usage)", a,
           strncmp(a, "--", 2) == 0 ? ": unknown, or its value is missing" : ": the program goes after --");
  }
  if (i + 1 >= argc) fail(2, "run: no program (hakmem run [OPTIONS] -- PROGRAM [ARGS...])");
  /* Only the profile build samples (its fast path counts down). */
  const char *profile = getenv("HAKMEM_PROFILE");
  if (profile && strcmp(profile, "1") == 0) {
    if (variant != 0)
      fail(2, "run: HAKMEM_PROFILE=1 samples in the profile build only, not with %s",
           variant == 1 ? "--secure" : "--count-all");
    variant = 3;
  }
  char path[PATH_MAX], preload[2 * PATH_MAX + 2];
  const char *so = find_library(lib, variant, path, sizeof path);
  const char *old = getenv("LD_PRELOAD");
  snprintf(preload, sizeof preload, "%s%s%s", so, old && *old ? " " : "", old ? old : "");
  setenv("LD_PRELOAD", preload, 1);
  execvp(argv[i + 1], argv + i + 1);
  fail(127, "cannot run %s: %s", argv[i + 1], strerror(errno));
}

/* The number after "name": in a JSON line, or -1. */
static double json_field(const char *line, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = strstr(line, key);
  if (!p) return -1;
  char *end;
  double v = strtod(p + strlen(key), &end);
  return end == p + strlen(key) ? -1 : v;
}

/* A program that wrote a timeline: its pid and start time. */
typedef struct {
  double pid, start;
} writer_t;

static writer_t writer_of(const char *line) {
  return (writer_t){json_field(line, "pid"), json_field(line, "start")};
}

/* The program with the most lines in the timeline f (its children, and
 * the programs it execs, may append to the file too; up to 64 are told
 * apart), with the number of programs that wrote. f is read from the
 * start again. */
static writer_t main_writer(FILE *f, size_t *programs) {
  writer_t w[64];
  long lines[64];
  size_t n = 0, best = 0;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    writer_t p = writer_of(line);
    size_t k = 0;
    while (k < n && (w[k].pid != p.pid || w[k].start != p.start)) k++;
    if (p.pid < 0 || (k == n && n == COUNT(w))) continue;
    if (k == n) {
      w[n] = p;
      lines[n++] = 0;
    }
    if (++lines[k] > lines[best]) best = k;
  }
  rewind(f);
  *programs = n;
  return n ? w[best] : (writer_t){-1, -1};
}

static int cmd_plot(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
    else if (!in && argv[i][0] != '-') in = argv[i];
    else fail(2, "plot: %s: unexpected (hakmem plot FILE [-o OUT.svg])", argv[i]);
  }
  if (!in) fail(2, "plot: no timeline file (hakmem plot FILE [-o OUT.svg])");
  char def[PATH_MAX];
  if (!out) {
    snprintf(def, sizeof def, "%s.svg", in);
    out = def;
  }
  FILE *f = fopen(in, "r");
  if (!f) fail(1, "plot: %s: %s", in, strerror(errno));
  static const char *const col[] = {"t_ms",      "rss",  "committed", "in_use", "empty",
                                    "slab_free", "tiny", "mid",       "pool",   "large"};
  char tmp[] = "/tmp/hakmem-plot.XXXXXX";
  int fd = mkstemp(tmp);
  FILE *data = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (!data) fail(1, "plot: a temporary file: %s", strerror(errno));
  char line[4096];
  long rows = 0, bad = 0;
  size_t programs;
  writer_t main = main_writer(f, &programs);
  while (fgets(line, sizeof line, f)) {
    double v[COUNT(col)];
    writer_t w = writer_of(line);
    int ok = line[0] == '{' && w.pid == main.pid && w.start == main.start;
    for (size_t c = 0; c < COUNT(col) && ok; c++) ok = (v[c] = json_field(line, col[c])) >= 0;
    if (!ok) {
      bad++;
      continue;
    }
    fprintf(data, "%.3f", v[0] / 1000);
    for (size_t c = 1; c < COUNT(col); c++) fprintf(data, " %.3f", v[c] / 1048576);
    fputc('\n', data);
    rows++;
  }
  fclose(f);
  fclose(data);
  if (!rows) {
    unlink(tmp);
    fail(1, "plot: %s: no timeline line in it (%ld other lines)", in, bad);
  }
  FILE *gp = popen("gnuplot 2>&1", "w");
  if (!gp) fail(1, "plot: cannot start gnuplot: %s", strerror(errno));
  fprintf(
      gp,
      "set terminal svg size 900,480 dynamic background rgb 'white'\nset output '%s'\n"
      "set title 'hakmem memory timeline: %s'\nset xlabel 'seconds'\nset ylabel 'MiB'\nset key top left\n"
      "set grid\nplot '%s' using 1:2 with lines lw 2 title 'RSS', '' using 1:3 with lines title 'committed', "
      "'' using 1:4 with lines lw 2 title 'in use', '' using 1:5 with lines title 'empty (kept for reuse)', "
      "'' using 1:6 with lines title 'free in slabs held', '' using 1:7 with lines dt 2 title 'tiny', "
      "'' using 1:8 with lines dt 2 title 'mid', '' using 1:9 with lines dt 2 title 'pool', "
      "'' using 1:10 with lines dt 2 title 'large'\n",
      out, in, tmp);
  int status = pclose(gp);
  unlink(tmp);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail(1, "plot: gnuplot failed (status %d); is it installed? (Debian: apt-get install gnuplot-nox)",
         status);
  printf("%s: %ld points of process %.0f", out, rows, main.pid);
  if (programs > 1) printf(" (of %zu programs that wrote to %s: the one with the most lines)", programs, in);
  putchar('\n');
  return 0;
}

static int cmd_options(void) {
  printf("%-28s %-10s %-16s %s\n", "variable", "default", "range", "meaning");
  for (size_t i = 0; i < COUNT(numeric); i++) {
    char range[40];
    snprintf(range, sizeof range, "%ld..%ld", numeric[i].lo, numeric[i].hi);
    printf("%-28s %-10ld %-16s %s\n", numeric[i].name, numeric[i].def, range, numeric[i].desc);
  }
  for (size_t i = 0; i < COUNT(text); i++)
    printf("%-28s %-10s %-16s %s\n", text[i].name, "-", "text", text[i].desc);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("hakmem %s\n", VERSION);
    return 0;
  }
  if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 2, argv + 2);
  if (strcmp(argv[1], "plot") == 0) return cmd_plot(argc - 2, argv + 2);
  if (strcmp(argv[1], "options") == 0 && argc == 2) return cmd_options();
  fail(2, "%s: unknown command ('hakmem --help' shows the usage)", argv[1]);
}
