/* tests/foreign.c — pointers hakmem did not allocate.
 *
 * free, realloc and malloc_usable_size of a stack address, a static array,
 * an mmap'd page and a non-canonical address: each case runs in a child
 * with stderr to a pipe. By default (HAKMEM_INVALID_FREE=2) the child dies
 * of SIGABRT after exactly the line "hakmem: FN(): invalid pointer 0xADDR:
 * not allocated by hakmem". The program runs itself again with
 * HAKMEM_INVALID_FREE=1 and =0, where the process must go on (exit 0), the
 * foreign memory must be left untouched, the pointer counted, and stderr
 * carry that line once, "; ignored ..." appended (1), or nothing (0). */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "util.h"

enum { OP_FREE, OP_REALLOC, OP_USABLE };
enum { WHERE_STACK, WHERE_STATIC, WHERE_MMAP, WHERE_NONCANONICAL };

static const char *const op_name[] = {"free", "realloc", "malloc_usable_size"};
static const char *const where_name[] = {"stack address", "static array", "mmap'd page",
                                         "address above 2^47"};

static _Alignas(64) unsigned char static_area[4096];

typedef struct {
  int op, where;
} foreign_case_t;

/* Exit code bits of the child. */
enum { BAD_CONTENTS = 1, BAD_AFTER = 2, BAD_COUNT = 4, BAD_SETUP = 8 };

static int foreign_child(void *arg) {
  foreign_case_t *c = arg;
  _Alignas(64) unsigned char stack_area[512];
  unsigned char *p;
  size_t len;
  switch (c->where) {
    case WHERE_STACK:
      p = stack_area + 64;
      len = 256;
      break;
    case WHERE_STATIC:
      p = static_area + 128;
      len = 1024;
      break;
    case WHERE_MMAP:
      p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return BAD_SETUP;
      len = 4096;
      break;
    default:
      p = (unsigned char *)(uintptr_t)0xdead000000001000ULL;
      len = 0;
  }
  /* The address goes to the parent as the first line of stderr. */
  char line[64];
  int n = snprintf(line, sizeof line, "addr=%lx\n", (unsigned long)(uintptr_t)p);
  if (write(2, line, (size_t)n) != n) return BAD_SETUP;
  pat_fill(p, len, 42);
  hak_stats_t s0, s1;
  memset(&s0, 0, sizeof s0);
  memset(&s1, 0, sizeof s1);
  if (hak.stats) hak.stats(&s0);
  void *volatile out = NULL;
  size_t volatile us = 0;
  switch (c->op) {
    case OP_FREE:
      free(LAUNDER((void *)p));
      break;
    case OP_REALLOC:
      out = realloc(LAUNDER((void *)p), 100);
      break;
    default:
      us = malloc_usable_size(LAUNDER((void *)p));
  }
  (void)out;
  (void)us;
  if (hak.stats) hak.stats(&s1);
  int code = 0;
  if (pat_check(p, len, 42) != SIZE_MAX) code |= BAD_CONTENTS;
  /* The allocator still works. */
  for (int i = 0; i < 2000; i++) {
    size_t size = 1 + (size_t)(i * 37) % 5000;
    void *q = malloc(size);
    if (!q) {
      code |= BAD_AFTER;
      break;
    }
    pat_fill(q, size, (uint64_t)i);
    if (pat_check(q, size, (uint64_t)i) != SIZE_MAX) code |= BAD_AFTER;
    free(q);
  }
  if (c->op == OP_FREE && hak.stats && s1.invalid_frees != s0.invalid_frees + 1) code |= BAD_COUNT;
  return code;
}

int main(int argc, char **argv) {
  check_hakmem_is_malloc();
  const char *env = getenv("HAKMEM_INVALID_FREE");
  int mode = env ? atoi(env) : 2;
  static child_t c;
  for (int op = OP_FREE; op <= OP_USABLE; op++) {
    for (int where = WHERE_STACK; where <= WHERE_NONCANONICAL; where++) {
      foreign_case_t fc = {op, where};
      if (!CHECK("child runs", run_child(foreign_child, &fc, &c, 60) == 0)) continue;
      const char *what = where_name[where], *fn = op_name[op];
      const char *a = strstr(c.err, "addr=");
      char hex[32] = "", want[320];
      if (a) sscanf(a + 5, "%31[0-9a-f]", hex);
      snprintf(want, sizeof want, "addr=%s\nhakmem: %s(): invalid pointer 0x%s: not allocated by hakmem%s\n",
               hex, fn, hex,
               mode == 1 ? "; ignored (further invalid pointers are counted, not reported)" : "");
      if (mode == 2) {
        CHECKV("the process dies of SIGABRT", WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGABRT,
               "%s(%s): status 0x%x, stderr: %.300s", fn, what, c.status, c.err);
        CHECKV("stderr is exactly the message", strcmp(c.err, want) == 0,
               "%s(%s): stderr \"%s\", expected \"%s\"", fn, what, c.err, want);
        continue;
      }
      int code = WIFEXITED(c.status) ? WEXITSTATUS(c.status) : -1;
      CHECKV("the process goes on after a foreign pointer", WIFEXITED(c.status) && code == 0,
             "%s(%s): status 0x%x, stderr: %.300s", fn, what, c.status, c.err);
      if (!WIFEXITED(c.status) || (code & BAD_SETUP)) continue;
      CHECKV("foreign memory is left untouched", !(code & BAD_CONTENTS), "%s(%s)", fn, what);
      CHECKV("malloc works after a foreign pointer", !(code & BAD_AFTER), "%s(%s)", fn, what);
      if (op == OP_FREE) CHECKV("hak_stats counts the invalid free", !(code & BAD_COUNT), "%s(%s)", fn, what);
      if (mode == 0) strchr(want, '\n')[1] = 0; /* the address line only */
      CHECKV("stderr is exactly the message", strcmp(c.err, want) == 0,
             "%s(%s): stderr \"%s\", expected \"%s\"", fn, what, c.err, want);
    }
  }
  if (argc < 2) {
    for (int m = 1; m >= 0; m--) {
      const char *set[] = {m ? "HAKMEM_INVALID_FREE=1" : "HAKMEM_INVALID_FREE=0", NULL};
      int ran = run_self("again", set, &c, 120);
      child_merge(set[0], ran, &c);
    }
  }
  (void)argv;
  return th_done();
}
