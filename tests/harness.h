/* tests/harness.h — the tiny check harness every test binary uses.
 *
 * CHECK("name", cond) counts a named check and prints only failures (with
 * file:line); CHECKV adds a printf-style detail line to a failure. A test's
 * main ends with `return th_done();`, which prints the closing line
 * `N passed, N failed` and returns nonzero when any check failed. Counters are
 * atomic, so checks may run on any thread. */
#ifndef HAK_TEST_HARNESS_H
#define HAK_TEST_HARNESS_H

#include <stdarg.h>
#include <stdio.h>

#ifdef __cplusplus
#include <atomic>
static std::atomic<long> th_passed, th_failed;
#define atomic_fetch_add(a, v) (a)->fetch_add(v)
#define atomic_load(a) (a)->load()
#else
#include <stdatomic.h>
static atomic_long th_passed, th_failed;
#endif

__attribute__((format(printf, 4, 5), unused)) static int
th_check(int ok, const char *file, int line, const char *fmt, ...)
{
  if (ok) {
    atomic_fetch_add(&th_passed, 1);
    return 1;
  }
  atomic_fetch_add(&th_failed, 1);
  va_list ap;
  va_start(ap, fmt);
  flockfile(stdout);
  printf("FAIL %s:%d: ", file, line);
  vprintf(fmt, ap);
  putchar('\n');
  fflush(stdout);
  funlockfile(stdout);
  va_end(ap);
  return 0;
}

/* Returns the truth value of cond, so a test can stop early on failure. */
#define CHECK(name, cond) th_check(!!(cond), __FILE__, __LINE__, "%s", (name))
#define CHECKV(name, cond, fmt, ...)                                           \
  th_check(!!(cond), __FILE__, __LINE__, "%s (" fmt ")", (name), __VA_ARGS__)

__attribute__((unused)) static long th_failures(void) { return atomic_load(&th_failed); }

/* Prints the closing line; the exit status for main. */
__attribute__((unused)) static int th_done(void)
{
  printf("%ld passed, %ld failed\n", atomic_load(&th_passed), atomic_load(&th_failed));
  fflush(stdout);
  return atomic_load(&th_failed) ? 1 : 0;
}

#endif
