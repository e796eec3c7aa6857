/* tests/crash.c — HAKMEM_CRASH_REPORT=1: what a crash report says.
 *
 * Each case is this program again (a mode) with HAKMEM_CRASH_REPORT=1 and
 * its stderr captured. The child says on stderr, in a line "expect: ...",
 * how the report must begin for the address it is about to fault on (it
 * knows the block and its usable size; the report adds the class), then
 * faults. The parent checks that the child died of the signal, that the
 * report line follows the child's last line and begins as expected, and
 * that the memory line follows it:
 *   null     a write to address 16: not hakmem's memory, the first page
 *   foreign  a write far from any mapping of hakmem's: not hakmem's memory
 *   live     a write into a page (made no-access) in the middle of a live
 *            Mid block (in another unit than its slab's first): inside a
 *            live block at that offset
 *   free     the same after the block was freed: inside a free block (in
 *            the secure build: freed, in the quarantine)
 *   large    the same in a live Large block
 *   dfree    a double free: hakmem's own line, then the report of SIGABRT
 *   kill     raise(SIGSEGV): a signal sent, no fault
 *   off      without HAKMEM_CRASH_REPORT a fault prints nothing
 * and in the secure build: guard (a write just past a Large block: its
 * guard page), freed (a write into a freed Large block, whose pages lose
 * their access), zero (a write through malloc(0)'s pointer). Under
 * LD_PRELOAD, chain: a library preloaded after hakmem (so started before
 * it) installs its own SIGSEGV handler, which must still run after the
 * report (it prints a line and exits 42). The debug build's report of live
 * and free ends with the thread's last slow-path events (a refill). */
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

extern char **environ;

static void expect(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void expect(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "expect: %s\n", line);
}

/* The page of p + off, made no-access; the address returned is in it. */
static char *no_access(char *p, size_t off) {
  char *page = (char *)(((uintptr_t)p + off) & ~(uintptr_t)4095);
  if (mprotect(page, 4096, PROT_NONE) != 0) exit(3);
  return page + 8;
}

static void poke(char *a) { *(volatile char *)a = 1; }

static int child(const char *mode) {
  setvbuf(stderr, NULL, _IONBF, 0);
  int secure = hak_load() && strstr(hak.version(), "secure") != NULL;
  if (strcmp(mode, "null") == 0 || strcmp(mode, "off") == 0) {
    expect("hakmem: SIGSEGV at 0x10: not hakmem's memory (the first page: a null pointer's)");
    poke((char *)LAUNDER((uintptr_t)16));
  } else if (strcmp(mode, "foreign") == 0) {
    char *far = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    expect("hakmem: SIGSEGV at %p: not hakmem's memory", (void *)far);
    poke(far);
  } else if (strcmp(mode, "live") == 0 || strcmp(mode, "free") == 0) {
    /* Of 8 blocks of 32 KiB (a slab of 8 units; the secure build's size
     * record fits too), the highest: its middle lies in another unit than
     * the slab's first, whose descriptor the report finds through the
     * unit's (hak_slab_of). The others stay live. */
    char *b[8], *p = NULL, *lo = NULL;
    for (int i = 0; i < 8; i++) {
      b[i] = malloc(LAUNDER((size_t)30000));
      if (!p || b[i] > p) p = b[i];
      if (!lo || b[i] < lo) lo = b[i];
    }
    if (((uintptr_t)p + 8192) >> 16 == (uintptr_t)lo >> 16) _exit(3); /* not the case this mode is for */
    memset(p, 1, 30000);
    size_t usable = malloc_usable_size(p);
    if (strcmp(mode, "free") == 0) free(p);
    char *a = no_access(p, 8192);
    /* The secure build's block is larger than usable: its size record. */
    const char *state = strcmp(mode, "live") == 0 ? "live" : secure ? "freed (in the quarantine)" : "free";
    expect("hakmem: SIGSEGV at %p: inside a %s %zu-byte block at offset %zu (%p, class ", (void *)a, state,
           (usable + 4095) & ~(size_t)4095, (size_t)(a - p), (void *)p);
    poke(a);
    for (int i = 0; i < 8; i++)
      if (b[i] != p) free(b[i]);
  } else if (strcmp(mode, "large") == 0) {
    char *p = malloc(LAUNDER((size_t)3 << 20));
    char *a = no_access(p, (size_t)1 << 20);
    /* The secure build's block holds 9 bytes more (its record), in pages. */
    size_t usable = malloc_usable_size(p), block = secure ? (usable + 9 + 4095) & ~(size_t)4095 : usable;
    expect("hakmem: SIGSEGV at %p: inside a live %zu-byte block at offset %zu (%p, Large)", (void *)a, block,
           (size_t)(a - p), (void *)p);
    poke(a);
  } else if (strcmp(mode, "guard") == 0) {
    char *p = malloc(LAUNDER((size_t)3 << 20)); /* and its 9-byte record: the guard page follows */
    char *end = (char *)(((uintptr_t)p + ((size_t)3 << 20) + 9 + 4095) & ~(uintptr_t)4095);
    expect("hakmem: SIGSEGV at %p: past the end of a ", (void *)end);
    poke(end);
  } else if (strcmp(mode, "freed") == 0) {
    char *p = malloc(LAUNDER((size_t)3 << 20));
    free(p);
    expect("hakmem: SIGSEGV at %p: inside a freed ", (void *)(p + 100));
    poke(p + 100);
  } else if (strcmp(mode, "zero") == 0) {
    char *z = malloc(LAUNDER((size_t)0));
    expect("hakmem: SIGSEGV at %p: in hakmem's region of zero-byte allocations", (void *)z);
    poke(z);
  } else if (strcmp(mode, "dfree") == 0) {
    char *p = malloc(LAUNDER((size_t)48));
    free(p);
    expect("hakmem: SIGABRT (abort(), or hakmem's own report above)");
    free(LAUNDER(p));
  } else if (strcmp(mode, "kill") == 0) {
    expect("hakmem: SIGSEGV (sent with kill or raise: no fault)");
    raise(SIGSEGV);
  }
  return 0; /* not reached */
}

/* The directory of this program (with a trailing slash). */
static void self_dir(char *out, size_t len) {
  ssize_t n = readlink("/proc/self/exe", out, len - 1);
  out[n > 0 ? n : 0] = 0;
  char *slash = strrchr(out, '/');
  if (slash) slash[1] = 0;
}

/* Runs `/proc/self/exe mode` with HAKMEM_CRASH_REPORT=1 (unless `off`),
 * the environment's HAKMEM_* and LD_PRELOAD replaced by `preload` (if
 * not NULL). */
static int run_mode(const char *mode, const char *preload, int off, child_t *c) {
  size_t n = 0, k = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 3, sizeof *env);
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "HAKMEM_", 7) != 0 && (!preload || strncmp(environ[i], "LD_PRELOAD=", 11) != 0))
      env[k++] = environ[i];
  if (!off) env[k++] = "HAKMEM_CRASH_REPORT=1";
  static char pre[PATH_MAX * 2 + 16];
  if (preload) {
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", preload);
    env[k++] = pre;
  }
  char *argv[] = {"/proc/self/exe", (char *)mode, NULL};
  int r = run_exec(argv, env, c, 60);
  free(env);
  return r;
}

/* The child's "expect: " line, the report beginning as it says, then the
 * memory line. */
static int reported(const child_t *c) {
  const char *e = strstr(c->err, "expect: ");
  if (!e) return 0;
  e += 8;
  const char *eol = strchr(e, '\n');
  if (!eol) return 0;
  size_t len = (size_t)(eol - e);
  const char *r = strstr(eol + 1, "hakmem: SIG");
  if (!r || strncmp(r, e, len) != 0) return 0;
  const char *next = strchr(r, '\n');
  return next && strncmp(next + 1, "hakmem: memory: ", 16) == 0 && strstr(next + 1, " in use, ") &&
         strstr(next + 1, " failed allocations\n");
}

static int died_of(const child_t *c, int sig) { return WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig; }

int main(int argc, char **argv) {
  if (argc > 1) return child(argv[1]);
  if (!check_hakmem_is_malloc()) return th_done();
  int secure = strstr(hak.version(), "secure") != NULL;
  const char *pre = getenv("LD_PRELOAD");
  int debug = strstr(argv[0], "/debug/") || (pre && strstr(pre, "debug/libhakmem"));
  static child_t c;
  static const struct {
    const char *mode;
    int sig, secure_only;
  } cases[] = {{"null", SIGSEGV, 0},  {"foreign", SIGSEGV, 0}, {"live", SIGSEGV, 0}, {"free", SIGSEGV, 0},
               {"large", SIGSEGV, 0}, {"dfree", SIGABRT, 0},   {"kill", SIGSEGV, 0}, {"guard", SIGSEGV, 1},
               {"freed", SIGSEGV, 1}, {"zero", SIGSEGV, 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].secure_only && !secure) continue;
    if (!CHECK("child runs", run_mode(cases[i].mode, NULL, 0, &c) == 0)) continue;
    CHECKV("the child dies of its signal, re-raised after the report", died_of(&c, cases[i].sig),
           "%s: status 0x%x", cases[i].mode, c.status);
    CHECKV("the report says what the address is, then the memory figures", reported(&c),
           "%s: stderr:\n%.1500s", cases[i].mode, c.err);
    if (debug && (strcmp(cases[i].mode, "live") == 0 || strcmp(cases[i].mode, "free") == 0))
      CHECKV("the debug build's report ends with the thread's last slow-path events",
             strstr(c.err, "hakmem: this thread's last slow-path events (debug build), oldest first:\n") &&
                 strstr(c.err, " us ago: refill of class "),
             "%s: stderr:\n%.1500s", cases[i].mode, c.err);
  }
  if (CHECK("child runs", run_mode("off", NULL, 1, &c) == 0)) {
    CHECKV("without HAKMEM_CRASH_REPORT: the default action", died_of(&c, SIGSEGV), "status 0x%x", c.status);
    CHECKV("without HAKMEM_CRASH_REPORT: no report", !strstr(c.err, "\nhakmem: "), "stderr: %.500s", c.err);
  }
  const char *preload = getenv("LD_PRELOAD");
  if (preload && strstr(preload, "libhakmem")) {
    char dir[PATH_MAX], both[PATH_MAX * 2 + 2];
    self_dir(dir, sizeof dir);
    snprintf(both, sizeof both, "%s %s../crash-handler.so", preload, dir);
    if (CHECK("child runs", run_mode("null", both, 0, &c) == 0)) {
      CHECKV("a handler installed before hakmem's runs after the report",
             WIFEXITED(c.status) && WEXITSTATUS(c.status) == 42, "status 0x%x, stderr: %.500s", c.status,
             c.err);
      CHECKV("the report comes first, then the program's handler",
             reported(&c) && strstr(c.err, "\ncrash-handler: SIGSEGV\n"), "stderr:\n%.1500s", c.err);
    }
  }
  return th_done();
}
