/* tests/options.c — HAKMEM_* options from the environment.
 *
 * Each case runs this binary again (/proc/self/exe MODE) with a prepared
 * environment and its stderr captured: hakmem prints nothing by default;
 * HAKMEM_VERBOSE=1 prints the options table; a bad value warns once, keeps
 * the default and the program runs on; HAKMEM_STATS=1 prints one line
 * starting "hakmem: " at exit; variables set after start-up are ignored
 * (options are read once, at initialisation). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

extern char **environ;

static void *work_thread(void *arg) {
  uint64_t r = (uint64_t)(uintptr_t)arg;
  long bad = 0;
  for (int i = 0; i < 20000; i++) {
    size_t size = 1 + rng_next(&r) % 4000;
    void *p = malloc(size);
    if (!p) {
      bad++;
      continue;
    }
    pat_fill(p, size, r);
    if (pat_check(p, size, r) != SIZE_MAX) bad++;
    free(p);
  }
  return (void *)bad;
}

/* The child's work: threads that allocate; exit status 0 if all went well. */
static int child_work(void) {
  pthread_t t[4];
  int bad = 0;
  for (int i = 0; i < 4; i++)
    bad |= pthread_create(&t[i], NULL, work_thread, (void *)(uintptr_t)(i + 1)) != 0;
  for (int i = 0; i < 4; i++) {
    void *res = NULL;
    pthread_join(t[i], &res);
    bad |= res != NULL;
  }
  void *big = malloc(5 * MiB);
  bad |= big == NULL;
  free(big);
  return bad;
}

/* Number of lines of s that begin with prefix. */
static int lines_starting(const char *s, const char *prefix) {
  int n = 0;
  size_t pl = strlen(prefix);
  for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    n += strncmp(l, prefix, pl) == 0;
  return n;
}

/* Runs `/proc/self/exe mode` with the current environment less every
 * HAKMEM_* variable, plus `extra` (NULL-terminated). */
static int run_mode(const char *mode, const char *const *extra, child_t *c) {
  size_t n = 0, k = 0;
  while (environ[n]) n++;
  size_t ne = 0;
  while (extra[ne]) ne++;
  char **env = calloc(n + ne + 1, sizeof *env);
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "HAKMEM_", 7) != 0) env[k++] = environ[i];
  for (size_t i = 0; i < ne; i++) env[k++] = (char *)extra[i];
  env[k] = NULL;
  char *argv[] = {"/proc/self/exe", (char *)mode, NULL};
  int r = run_exec(argv, env, c, 60);
  free(env);
  return r;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "work") == 0) return child_work();
  if (argc > 1 && strcmp(argv[1], "late-setenv") == 0) {
    setenv("HAKMEM_VERBOSE", "1", 1);
    setenv("HAKMEM_STATS", "1", 1);
    return child_work();
  }
  check_hakmem_is_malloc();
  static child_t c;

  const char *none[] = {NULL};
  if (CHECK("child runs", run_mode("work", none, &c) == 0)) {
    CHECKV("without HAKMEM_* variables the child runs", exited_ok(c.status), "status 0x%x", c.status);
    CHECKV("hakmem prints nothing by default", c.len == 0, "stderr: %.300s", c.err);
  }

  const char *verbose[] = {"HAKMEM_VERBOSE=1", NULL};
  if (CHECK("child runs", run_mode("work", verbose, &c) == 0)) {
    CHECKV("HAKMEM_VERBOSE=1: the child runs", exited_ok(c.status), "status 0x%x", c.status);
    CHECKV("HAKMEM_VERBOSE=1 prints a table of options naming HAKMEM_ variables",
           count_lines_with(c.err, "HAKMEM_") >= 3 && strstr(c.err, "HAKMEM_VERBOSE"), "stderr: %.500s",
           c.err);
  }

  const char *banana[] = {"HAKMEM_VERBOSE=banana", NULL};
  if (CHECK("child runs", run_mode("work", banana, &c) == 0)) {
    CHECKV("HAKMEM_VERBOSE=banana: the program still runs", exited_ok(c.status),
           "status 0x%x, stderr: %.300s", c.status, c.err);
    CHECKV("a bad value warns exactly once, naming the variable",
           count_lines_with(c.err, "HAKMEM_VERBOSE") == 1 && strstr(c.err, "hakmem"), "stderr: %.500s",
           c.err);
    CHECKV("a bad value keeps the default (no options table)", count_lines_with(c.err, "HAKMEM_") == 1,
           "stderr: %.500s", c.err);
  }

  const char *huge[] = {"HAKMEM_VERBOSE=99999999999999999999999999", NULL};
  if (CHECK("child runs", run_mode("work", huge, &c) == 0)) {
    CHECKV("an out-of-range value: the program still runs", exited_ok(c.status),
           "status 0x%x, stderr: %.300s", c.status, c.err);
    CHECKV("an out-of-range value warns exactly once", count_lines_with(c.err, "HAKMEM_VERBOSE") == 1,
           "stderr: %.500s", c.err);
  }

  const char *stats[] = {"HAKMEM_STATS=1", NULL};
  if (CHECK("child runs", run_mode("work", stats, &c) == 0)) {
    CHECKV("HAKMEM_STATS=1: the child runs", exited_ok(c.status), "status 0x%x", c.status);
    CHECKV("HAKMEM_STATS=1 prints one line starting \"hakmem: \" at exit",
           lines_starting(c.err, "hakmem: ") == 1, "stderr: %.500s", c.err);
    /* A program that allocated shows what it mapped; the pid tells its line
     * from that of a program it was started through. */
    CHECKV("the exit line names the process (pid=N) and its memory (mapped is not 0)",
           strncmp(c.err, "hakmem: pid=", 12) == 0 && strstr(c.err, " mapped=") &&
               !strstr(c.err, " mapped=0 ") && strstr(c.err, " unaccounted="),
           "stderr: %.500s", c.err);
  }

  if (CHECK("child runs", run_mode("late-setenv", none, &c) == 0)) {
    CHECKV("setenv after start-up: the child runs", exited_ok(c.status), "status 0x%x", c.status);
    CHECKV("options set after start-up are ignored (read once at init)", c.len == 0, "stderr: %.300s", c.err);
  }
  return th_done();
}
