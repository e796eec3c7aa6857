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

__attribute__((format(printf, 4, 5), unused)) static int th_check(int ok, const char *file, int line,
                                                                  const char *fmt, ...) {
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
#define CHECKV(name, cond, fmt, ...) \
  th_check(!!(cond), __FILE__, __LINE__, "%s (" fmt ")", (name), __VA_ARGS__)

__attribute__((unused)) static long th_failures(void) { return atomic_load(&th_failed); }

/* A property checked over many cases (every size, every sample): th_prop
 * counts the cases and keeps the first failure's detail, and PROP_DONE
 * turns the lot into one named check, so a systematic fault prints one line
 * with its first instance and a count instead of thousands. A property
 * with no case at all fails (nothing was checked). Not thread-safe: one
 * thread per th_prop_t. */
typedef struct {
  const char *name;
  long n, bad;
  char first[320];
} th_prop_t;
#define PROP(name) \
  { (name), 0, 0, "" }

__attribute__((format(printf, 3, 4), unused)) static int th_prop(th_prop_t *p, int ok, const char *fmt, ...) {
  p->n++;
  if (ok) return 1;
  if (p->bad++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->first, sizeof p->first, fmt, ap);
    va_end(ap);
  }
  return 0;
}

#define PROP_DONE(p)                                                                                   \
  th_check((p)->n > 0 && (p)->bad == 0, __FILE__, __LINE__, "%s (%ld of %ld cases failed; first: %s)", \
           (p)->name, (p)->bad, (p)->n, (p)->n ? (p)->first : "no case was checked")

/* Prints the closing line; the exit status for main. */
__attribute__((unused)) static int th_done(void) {
  printf("%ld passed, %ld failed\n", atomic_load(&th_passed), atomic_load(&th_failed));
  fflush(stdout);
  return atomic_load(&th_failed) ? 1 : 0;
}

#endif
