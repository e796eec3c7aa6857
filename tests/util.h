/* tests/util.h — helpers shared by the test binaries: block patterns, RSS,
 * the hak_* entry points, and child processes with captured stderr.
 *
 * Each test is built three ways (see tests.mk): linked with -lhakmem
 * (TEST_LINKED), linked -static with libhakmem.a (TEST_STATIC), or plain
 * glibc-linked for LD_PRELOAD runs; in the last case the hak_* functions are
 * found with dlsym, so the binary links without hakmem. */
#ifndef HAK_TEST_UTIL_H
#define HAK_TEST_UTIL_H

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exports.h"
#include "hakmem.h"
#include "harness.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Hides a value from the optimiser, so calls with huge constant sizes are
 * neither folded nor warned about, and malloc/free pairs are not elided. */
#define LAUNDER(x)                   \
  ({                                 \
    __typeof__((x) + 0) l_ = (x);    \
    __asm__ volatile("" : "+r"(l_)); \
    l_;                              \
  })

/* ---- patterns ----------------------------------------------------------
 * Byte i of the pattern for `seed` depends only on (seed, i), so a prefix of
 * a block can be checked after realloc. Blocks that never move use
 * pat_seed(p, n) so the pattern also depends on address and size. */
static inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

static inline uint64_t pat_seed(const void *p, size_t n) { return mix64((uint64_t)(uintptr_t)p * 31 + n); }

static inline uint64_t pat_word(uint64_t seed, size_t off) {
  return (seed | 1) * (uint64_t)(off + 1) + (seed >> 17) + off * 0x9E3779B97F4A7C15ULL;
}

__attribute__((unused)) static void pat_fill(void *p, size_t n, uint64_t seed) {
  unsigned char *b = (unsigned char *)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = pat_word(seed, i);
    memcpy(b + i, &v, 8);
  }
  if (i < n) {
    uint64_t v = pat_word(seed, i);
    memcpy(b + i, &v, n - i);
  }
}

/* Offset of the first byte of p[0..n) that differs from the pattern, or
 * SIZE_MAX when all match. */
__attribute__((unused)) static size_t pat_check(const void *p, size_t n, uint64_t seed) {
  const unsigned char *b = (const unsigned char *)p;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = pat_word(seed, i), w;
    memcpy(&w, b + i, 8);
    if (v != w) break;
  }
  for (; i < n; i++) {
    uint64_t v = pat_word(seed, i & ~(size_t)7);
    if (b[i] != (unsigned char)(v >> (8 * (i & 7)))) return i;
  }
  return SIZE_MAX;
}

/* A block that describes itself: its first 8 bytes hold its size xor its
 * address, the rest the pattern; at least 16 bytes. NULL if malloc fails. */
__attribute__((unused)) static void *block_make(size_t size) {
  if (size < 16) size = 16;
  char *p = (char *)malloc(size);
  if (!p) return NULL;
  uint64_t v = (uint64_t)size ^ (uint64_t)(uintptr_t)p;
  memcpy(p, &v, 8);
  pat_fill(p + 8, size - 8, pat_seed(p, size));
  return p;
}

/* 1 if a block_make block is intact and its size (put in *size either
 * way) is 16 .. max bytes. */
__attribute__((unused)) static int block_intact(const void *q, size_t max, size_t *size) {
  const char *p = (const char *)q;
  uint64_t v;
  memcpy(&v, p, 8);
  *size = (size_t)(v ^ (uint64_t)(uintptr_t)p);
  return *size >= 16 && *size <= max && pat_check(p + 8, *size - 8, pat_seed(p, *size)) == SIZE_MAX;
}

/* 1 if every byte of p[0..n) is c. */
__attribute__((unused)) static int all_bytes(const void *p, size_t n, unsigned char c) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != c) return 0;
  return 1;
}

/* ---- time, RNG, RSS ---------------------------------------------------- */
__attribute__((unused)) static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t rng_next(uint64_t *s) {
  *s += 0x9E3779B97F4A7C15ULL;
  return mix64(*s);
}

/* A field of /proc/self/status in kB (VmRSS, VmSize...), read with
 * open/read so that it allocates nothing; -1 if not found. */
__attribute__((unused)) static long proc_status_kb(const char *field) {
  char buf[8192];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = 0, r;
  while (n < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += r;
  close(fd);
  buf[n] = 0;
  size_t fl = strlen(field);
  for (char *s = buf; (s = strstr(s, field)) != NULL; s++)
    if ((s == buf || s[-1] == '\n') && s[fl] == ':') return strtol(s + fl + 1, NULL, 10);
  return -1;
}

__attribute__((unused)) static long rss_kb(void) { return proc_status_kb("VmRSS"); }

/* ---- the hak_* API ------------------------------------------------------
 * One pointer per hak_ function of include/hakmem.h (exports.h lists them):
 * hak.malloc is hak_malloc, and so on. */
typedef struct {
#define HAK_API_MEMBER(n) __typeof__(hak_##n) *n;
  HAK_API_EXPORTS(HAK_API_MEMBER)
#undef HAK_API_MEMBER
} hak_api_t;

static hak_api_t hak;

/* Fills `hak`; returns 1 when every entry point was found. */
__attribute__((unused)) static int hak_load(void) {
#if defined(TEST_LINKED) || defined(TEST_STATIC)
#define HAK_API_SET(n) hak.n = hak_##n;
#else
#define HAK_API_SET(n) *(void **)&hak.n = dlsym(RTLD_DEFAULT, "hak_" #n);
#endif
  HAK_API_EXPORTS(HAK_API_SET)
#undef HAK_API_SET
  void **f = (void **)&hak;
  for (size_t i = 0; i < sizeof hak / sizeof(void *); i++)
    if (!f[i]) return 0;
  return 1;
}

/* ---- statistics as JSON ------------------------------------------------ */
/* hak_stats_json into out (n bytes, NUL-terminated); with st, hak_stats
 * just before it, nothing allocated between the two. */
__attribute__((unused)) static void stats_json(char *out, size_t n, hak_stats_t *st) {
  FILE *f = tmpfile();
  if (!f) exit(3);
  if (st) hak.stats(st);
  hak.stats_json(fileno(f));
  rewind(f);
  size_t got = fread(out, 1, n - 1, f);
  out[got] = 0;
  fclose(f);
}

/* Field `name` (a whole number) of the object that begins at `obj`, -1 if
 * absent. */
__attribute__((unused)) static long long json_field(const char *obj, const char *name) {
  char key[64];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *end = strchr(obj, '}');
  const char *p = strstr(obj, key);
  return p && (!end || p < end) ? atoll(p + strlen(key)) : -1;
}

/* Address of a symbol as the process resolves it (NULL if absent). In the
 * static build there is no dynamic symbol table: returns NULL. */
__attribute__((unused)) static void *sym_default(const char *name) {
#ifdef TEST_STATIC
  (void)name;
  return NULL;
#else
  return dlsym(RTLD_DEFAULT, name);
#endif
}

/* 1 if both addresses lie in the same loaded object (always 1 when
 * static, where everything is in the executable). */
__attribute__((unused)) static int same_object(const void *a, const void *b) {
#ifdef TEST_STATIC
  return a && b;
#else
  Dl_info ia, ib;
  if (!a || !b || !dladdr(a, &ia) || !dladdr(b, &ib)) return 0;
  return ia.dli_fbase == ib.dli_fbase;
#endif
}

/* 1 when hakmem is the process malloc: its API is present, malloc and
 * hak_version live in the same object, and hakmem recognises a block from
 * malloc. Call hak_load() first. */
__attribute__((unused)) static int hakmem_is_malloc(void) {
  if (!hak.version || strncmp(hak.version(), "hakmem ", 7) != 0) return 0;
  void *(*volatile m)(size_t) = malloc;
  if (!same_object((const void *)m, (const void *)hak.version)) return 0;
  void *p = malloc(LAUNDER((size_t)1000));
  int ok = p && hak.usable_size(p) >= 1000;
  free(p);
  return ok;
}

/* Loads the hak_* API and checks that hakmem is the process malloc (one
 * check in the caller's report); returns whether the API is there. */
__attribute__((unused)) static int check_hakmem_is_malloc(void) {
  int have_hak = hak_load();
  CHECK("hakmem is the process malloc", have_hak && hakmem_is_malloc());
  return have_hak;
}

/* ---- child processes ----------------------------------------------------- */
typedef struct {
  int status;        /* as from waitpid */
  size_t len;        /* bytes of stderr captured */
  char err[1 << 16]; /* the child's stderr, NUL-terminated (truncated) */
} child_t;

static void child_collect(int fd, pid_t pid, child_t *c) {
  c->len = 0;
  ssize_t r;
  char sink[4096];
  for (;;) {
    if (c->len < sizeof c->err - 1) r = read(fd, c->err + c->len, sizeof c->err - 1 - c->len);
    else r = read(fd, sink, sizeof sink);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    if (c->len < sizeof c->err - 1) c->len += (size_t)r;
  }
  c->err[c->len] = 0;
  close(fd);
  while (waitpid(pid, &c->status, 0) < 0 && errno == EINTR)
    ;
}

/* Forks a child whose stderr (and stdout, with `both`) goes to a pipe and
 * which SIGALRM kills after timeout_s seconds. Returns 0 in the child; in
 * the parent the child's pid with *rfd the pipe's read end, or -1. */
static pid_t fork_piped(int both, unsigned timeout_s, int *rfd) {
  int fds[2];
  fflush(NULL);
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    if (both) dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[1]);
    alarm(timeout_s);
    return 0;
  }
  close(fds[1]);
  *rfd = fds[0];
  return pid;
}

/* Runs exit(fn(arg)) in a forked child with stderr sent to a pipe, killed by
 * SIGALRM after timeout_s seconds; returns 0 when it could be run. */
__attribute__((unused)) static int run_child(int (*fn)(void *), void *arg, child_t *c, unsigned timeout_s) {
  int rfd;
  pid_t pid = fork_piped(0, timeout_s, &rfd);
  if (pid < 0) return -1;
  if (pid == 0) exit(fn(arg));
  child_collect(rfd, pid, c);
  return 0;
}

/* Runs argv with envp, stderr to a pipe, stdout to /dev/null; as run_child. */
__attribute__((unused)) static int run_exec(char *const argv[], char *const envp[], child_t *c,
                                            unsigned timeout_s) {
  int rfd;
  pid_t pid = fork_piped(0, timeout_s, &rfd);
  if (pid < 0) return -1;
  if (pid == 0) {
    int nul = open("/dev/null", O_WRONLY);
    if (nul >= 0) dup2(nul, 1);
    execve(argv[0], argv, envp);
    _exit(127);
  }
  child_collect(rfd, pid, c);
  return 0;
}

__attribute__((unused)) static int exited_ok(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Runs this program again, `/proc/self/exe mode`, as a fresh process with
 * the current environment in which each "NAME=VALUE" of `set` (NULL-ended)
 * replaces any NAME already there; its stdout and stderr both go to c->err.
 * Killed by SIGALRM after timeout_s seconds. Returns 0 when it could be
 * run. The caller must not be multi-threaded (the environment is copied
 * with malloc before the fork). */
__attribute__((unused)) static int run_self(const char *mode, const char *const *set, child_t *c,
                                            unsigned timeout_s) {
  extern char **environ;
  size_t n = 0, ns = 0, k = 0;
  while (environ[n]) n++;
  while (set && set[ns]) ns++;
  char **env = (char **)calloc(n + ns + 1, sizeof *env);
  if (!env) return -1;
  for (size_t i = 0; i < n; i++) {
    int replaced = 0;
    for (size_t j = 0; j < ns && !replaced; j++) {
      size_t len = strcspn(set[j], "=");
      replaced = strncmp(environ[i], set[j], len) == 0 && environ[i][len] == '=';
    }
    if (!replaced) env[k++] = environ[i];
  }
  for (size_t j = 0; j < ns; j++) env[k++] = (char *)set[j];
  env[k] = NULL;
  char *argv[] = {(char *)"/proc/self/exe", (char *)mode, NULL};
  int rfd;
  pid_t pid = fork_piped(1, timeout_s, &rfd);
  if (pid == 0) {
    execve(argv[0], argv, env);
    _exit(127);
  }
  free(env);
  if (pid < 0) return -1;
  child_collect(rfd, pid, c);
  return 0;
}

/* Takes the checks of a child that ran the harness itself (run_self) into
 * this process's totals: its "N passed, M failed" line is added to ours and
 * its other output is printed, each line prefixed with `label`. A child that
 * could not run, died, or ended without a closing line is one failed check;
 * a clean one adds one passing check. Returns 1 when the child passed. */
__attribute__((unused)) static int child_merge(const char *label, int ran, const child_t *c) {
  if (!CHECKV("child process runs", ran == 0, "%s", label)) return 0;
  long p = -1, f = -1;
  const char *s = c->err;
  while (*s) {
    const char *e = strchr(s, '\n');
    int len = (int)(e ? e - s : (long)strlen(s));
    long a, b;
    char tail;
    if (sscanf(s, "%ld passed, %ld failed%c", &a, &b, &tail) == 3 && tail == '\n') {
      p = a;
      f = b;
    } else if (len > 0) {
      printf("  [%s] %.*s\n", label, len, s);
    }
    s += len + (e ? 1 : 0);
  }
  fflush(stdout);
  if (p >= 0) {
    atomic_fetch_add(&th_passed, p);
    atomic_fetch_add(&th_failed, f);
  }
  int clean = exited_ok(c->status) || (WIFEXITED(c->status) && WEXITSTATUS(c->status) == 1 && f > 0);
  CHECKV("child process ends normally with its closing line", p >= 0 && clean, "%s: status 0x%x (%s %d)%s",
         label, c->status, WIFSIGNALED(c->status) ? "signal" : "exit",
         WIFSIGNALED(c->status) ? WTERMSIG(c->status) : WEXITSTATUS(c->status),
         p < 0 ? ", no closing line" : "");
  return p >= 0 && f == 0 && exited_ok(c->status);
}

/* A mode of this program and the HAKMEM_* options it runs with. */
typedef struct th_case {
  const char *mode;
  const char *env[6]; /* "NAME=VALUE", NULL-ended */
} th_case_t;

/* Runs each case in a fresh process (run_self, 60 s at most) and takes its
 * checks in (child_merge). */
__attribute__((unused)) static void run_cases(const th_case_t *cases, size_t n) {
  static child_t c;
  for (size_t i = 0; i < n; i++) {
    int ran = run_self(cases[i].mode, cases[i].env, &c, 60);
    child_merge(cases[i].mode, ran, &c);
  }
}

/* Number of lines of s containing needle. */
__attribute__((unused)) static int count_lines_with(const char *s, const char *needle) {
  int n = 0;
  while (*s) {
    const char *e = strchr(s, '\n');
    size_t len = e ? (size_t)(e - s) : strlen(s);
    const char *f = strstr(s, needle);
    if (f && f < s + len) n++;
    s += len + (e ? 1 : 0);
  }
  return n;
}

#endif
