/* tests/trace.c — allocations that fail: errno, the counts of each reason
 * in the statistics, and HAKMEM_TRACE=oom's line for each.
 *
 * The child (this program again, mode "fail") makes every kind of request
 * that must fail: a size over PTRDIFF_MAX (malloc, realloc, pvalloc), a
 * count times a size that overflows (calloc, reallocarray), an alignment
 * no address has (aligned_alloc, posix_memalign), and then, under an
 * RLIMIT_AS that leaves 256 MiB, a 1 GiB malloc and 1000-byte mallocs
 * until one fails (the kernel refuses the mappings). It checks that each
 * returns NULL with errno ENOMEM (posix_memalign: returns ENOMEM), that
 * a block realloc failed to grow is intact, and that hak_stats counts
 * each reason exactly; its exit status says whether all held. The parent
 * runs it with its stderr captured: with HAKMEM_TRACE unset it prints
 * nothing; with HAKMEM_TRACE=oom (or 1) exactly one line per failure, in
 * order, naming the call, what it asked and why; HAKMEM_TRACE=banana warns
 * once and traces nothing. The secure build's refill failure names the
 * size asked (it allocates a larger block below); the default build's
 * names the block it needed. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"
#include "util.h"

extern char **environ;

static const size_t over = (size_t)PTRDIFF_MAX + 1, big = (size_t)1 << 40, huge_align = (size_t)1 << 50;

#define FAILS(name, expr)                                                                               \
  do {                                                                                                  \
    errno = 0;                                                                                          \
    void *r_ = (expr);                                                                                  \
    int e_ = errno;                                                                                     \
    CHECKV(name " returns NULL with errno ENOMEM", r_ == NULL && e_ == ENOMEM, "%p, errno %d", r_, e_); \
  } while (0)

/* VmSize in bytes (the address space the process holds now). */
static size_t vm_size(void) { return (size_t)proc_status_kb("VmSize") << 10; }

static int child_fail(void) {
  setvbuf(stdout, NULL, _IONBF, 0); /* a buffer allocated under the limit would fail too */
  if (!check_hakmem_is_malloc()) return th_done();
  FAILS("malloc(PTRDIFF_MAX + 1)", malloc(LAUNDER(over)));
  FAILS("calloc(2^40, 2^40)", calloc(LAUNDER(big), big));
  FAILS("reallocarray(NULL, 2^33, 2^33)", reallocarray(NULL, LAUNDER((size_t)1 << 33), (size_t)1 << 33));
  FAILS("aligned_alloc(2^50, 100)", aligned_alloc(LAUNDER(huge_align), 100));
  void *out = &out;
  int rc = posix_memalign(&out, LAUNDER(huge_align), 100);
  CHECKV("posix_memalign(2^50, 100) returns ENOMEM and leaves *out", rc == ENOMEM && out == &out, "rc %d",
         rc);
  char *p = malloc(100);
  memset(p, 0x5A, 100);
  FAILS("realloc(p, PTRDIFF_MAX + 1)", realloc(p, LAUNDER(over)));
  CHECK("the block realloc could not grow is intact", all_bytes(p, 100, 0x5A));
  free(p);
  FAILS("pvalloc(PTRDIFF_MAX + 1)", pvalloc(LAUNDER(over)));

  struct rlimit rl = {vm_size() + 256 * MiB, RLIM_INFINITY};
  CHECK("setrlimit(RLIMIT_AS)", setrlimit(RLIMIT_AS, &rl) == 0);
  FAILS("malloc(1 GiB) under RLIMIT_AS", malloc(LAUNDER((size_t)1 << 30)));
  size_t n = 0;
  errno = 0;
  while (n < 1000000 && malloc(LAUNDER((size_t)1000)) != NULL) n++;
  CHECKV("1000-byte mallocs under RLIMIT_AS: one fails, errno ENOMEM", n < 1000000 && errno == ENOMEM,
         "%zu succeeded, errno %d", n, errno);

  hak_stats_t st;
  hak.stats(&st);
  CHECKV("failed_size counts malloc, realloc, pvalloc", st.failed_size == 3, "%llu",
         (unsigned long long)st.failed_size);
  CHECKV("failed_overflow counts calloc, reallocarray", st.failed_overflow == 2, "%llu",
         (unsigned long long)st.failed_overflow);
  CHECKV("failed_align counts aligned_alloc, posix_memalign", st.failed_align == 2, "%llu",
         (unsigned long long)st.failed_align);
  CHECKV("failed_map counts the two refused mappings", st.failed_map == 2, "%llu",
         (unsigned long long)st.failed_map);
  return th_done();
}

/* Runs `/proc/self/exe fail` with the environment less every HAKMEM_*
 * variable, plus `extra` (NULL or one "NAME=VALUE"). */
static int run_fail(const char *extra, child_t *c) {
  size_t n = 0, k = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 2, sizeof *env);
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "HAKMEM_", 7) != 0) env[k++] = environ[i];
  if (extra) env[k++] = (char *)extra;
  char *argv[] = {"/proc/self/exe", "fail", NULL};
  int r = run_exec(argv, env, c, 60);
  free(env);
  return r;
}

static const char *const expected[] = {
    "hakmem: malloc(9223372036854775808) failed: the size is over PTRDIFF_MAX",
    "hakmem: calloc(1099511627776, 1099511627776) failed: the count times the size overflows",
    "hakmem: reallocarray(8589934592, 8589934592) failed: the count times the size overflows",
    "hakmem: aligned_alloc(100) failed (alignment 1125899906842624): no address in the 47-bit address space "
    "has that alignment",
    "hakmem: posix_memalign(100) failed (alignment 1125899906842624): no address in the 47-bit address space "
    "has that alignment",
    "hakmem: realloc(9223372036854775808) failed: the size is over PTRDIFF_MAX",
    "hakmem: pvalloc(9223372036854775808) failed: the size is over PTRDIFF_MAX",
    "hakmem: malloc(1073741824) failed: mmap of 1 GiB refused (ENOMEM)",
};
#define NEXPECTED (sizeof expected / sizeof expected[0])

/* Whether c's stderr is the expected lines, then the refill failure's. */
static int traced(const child_t *c, int secure) {
  const char *l = c->err;
  for (size_t i = 0; i < NEXPECTED; i++) {
    size_t len = strlen(expected[i]);
    if (strncmp(l, expected[i], len) != 0 || l[len] != '\n') return 0;
    l += len + 1;
  }
  const char *head = secure ? "hakmem: malloc(1000) failed: mmap of "
                            : "hakmem: malloc() failed: no memory for a 1008-byte block: mmap of ";
  const char *end = strchr(l, '\n');
  return end && end[1] == 0 && strncmp(l, head, strlen(head)) == 0 &&
         (size_t)(end - l) > strlen(" refused (ENOMEM)") &&
         strncmp(end - strlen(" refused (ENOMEM)"), " refused (ENOMEM)", strlen(" refused (ENOMEM)")) == 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "fail") == 0) return child_fail();
  if (!check_hakmem_is_malloc()) return th_done();
  int secure = strstr(hak.version(), "secure") != NULL;
  static child_t c;

  if (CHECK("child runs", run_fail(NULL, &c) == 0)) {
    CHECKV("every failure: NULL, ENOMEM, counted (the child's checks)", exited_ok(c.status), "status 0x%x",
           c.status);
    CHECKV("without HAKMEM_TRACE a failure prints nothing", c.len == 0, "stderr: %.500s", c.err);
  }
  const char *on[] = {"HAKMEM_TRACE=oom", "HAKMEM_TRACE=1"};
  for (size_t i = 0; i < 2; i++) {
    if (!CHECK("child runs", run_fail(on[i], &c) == 0)) continue;
    CHECKV("with HAKMEM_TRACE the failures are the same", exited_ok(c.status), "%s: status 0x%x", on[i],
           c.status);
    CHECKV("HAKMEM_TRACE=oom (or 1): one line per failure, what was asked and why", traced(&c, secure),
           "%s: stderr:\n%.2000s", on[i], c.err);
  }
  if (CHECK("child runs", run_fail("HAKMEM_TRACE=banana", &c) == 0)) {
    CHECKV("HAKMEM_TRACE=banana: the program runs", exited_ok(c.status), "status 0x%x", c.status);
    CHECKV("HAKMEM_TRACE=banana warns once, naming the words it takes, and traces nothing",
           strcmp(c.err,
                  "hakmem: HAKMEM_TRACE=banana is not a whole number in [0, 1] or a list of oom; "
                  "keeping 0\n") == 0,
           "stderr: %.500s", c.err);
  }
  return th_done();
}
