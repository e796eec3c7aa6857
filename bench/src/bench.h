/* Helpers shared by the benchmark programs: clock, random numbers, argument
 * parsing, touching memory, reading /proc/self/status, and the RESULT line.
 * Header-only (static functions) so every program is one .c file. */
#ifndef BENCH_H
#define BENCH_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Every program adds to this checksum what it read back from its blocks and
 * prints it, so the compiler cannot drop the allocations. */
static volatile uint64_t bench_sink;

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: fast, good enough for picking sizes and slots. */
static inline uint64_t bench_rand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t bench_seed(uint64_t seed, uint64_t stream) {
  uint64_t s = (seed + 1) * 0x9E3779B97F4A7C15ull ^ (stream + 1) * 0xBF58476D1CE4E5B9ull;
  return s ? s : 1;
}

/* Uniform in [lo, hi]. */
static inline size_t bench_uniform(uint64_t *s, size_t lo, size_t hi) {
  return lo + (size_t)(bench_rand(s) % (hi - lo + 1));
}

/* Log-uniform in [lo, hi]: each power-of-two band is equally likely. */
static inline size_t bench_loguniform(uint64_t *s, size_t lo, size_t hi) {
  uint64_t r = bench_rand(s);
  int lo_bits = 63 - __builtin_clzll(lo), hi_bits = 63 - __builtin_clzll(hi);
  int b = lo_bits + (int)(r % (uint64_t)(hi_bits - lo_bits + 1));
  size_t base = (size_t)1 << b;
  size_t v = base + (size_t)((r >> 8) % base);
  return v < lo ? lo : v > hi ? hi : v;
}

/* Write the first and last byte: the least a real program does. */
static inline void bench_touch(void *p, size_t n) {
  char *c = p;
  c[0] = (char)n;
  c[n - 1] = (char)(n >> 3);
}

/* Read back what bench_touch wrote (first byte), into the checksum. */
static inline uint64_t bench_peek(const void *p) { return (uint64_t)*(const volatile char *)p; }

static inline long bench_ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}

/* Positional argument i as a number (k/m/g suffixes allowed), or dflt when
 * absent or "-". */
static inline double bench_argf(int argc, char **argv, int i, double dflt) {
  if (i >= argc || strcmp(argv[i], "-") == 0) return dflt;
  char *end;
  double v = strtod(argv[i], &end);
  switch (*end) {
  case 'k': case 'K': v *= 1e3; break;
  case 'm': case 'M': v *= 1e6; break;
  case 'g': case 'G': v *= 1e9; break;
  default: break;
  }
  return v;
}

static inline long bench_argl(int argc, char **argv, int i, long dflt) {
  return (long)bench_argf(argc, argv, i, (double)dflt);
}

/* Thread count: argument, else $BENCH_THREADS, else the number of CPUs. */
static inline int bench_threads(int argc, char **argv, int i) {
  long t = bench_argl(argc, argv, i, 0);
  if (t <= 0) {
    const char *e = getenv("BENCH_THREADS");
    t = e && atol(e) > 0 ? atol(e) : bench_ncpu();
  }
  return t > 1024 ? 1024 : (int)t;
}

static inline int bench_wants_help(int argc, char **argv, const char *usage) {
  if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    fputs(usage, stdout);
    return 1;
  }
  return 0;
}

/* The start of a /proc file into buf (size bytes, NUL-terminated), read
 * with open/read so it allocates nothing; 0 if unreadable. */
static inline int bench_read_proc(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return 1;
}

/* A field of /proc/self/status in kB ("VmRSS", "VmHWM"); -1 if
 * unavailable. */
static inline long bench_status_kb(const char *field) {
  char buf[8192];
  if (!bench_read_proc("/proc/self/status", buf, sizeof buf)) return -1;
  size_t fl = strlen(field);
  for (char *p = buf; (p = strstr(p, field)) != NULL; p++) {
    if ((p == buf || p[-1] == '\n') && p[fl] == ':') return atol(p + fl + 1);
  }
  return -1;
}

/* Resident set size in kB: the second field of /proc/self/statm (pages);
 * -1 if unavailable. */
static inline long bench_rss_kb(void) {
  char buf[256];
  if (!bench_read_proc("/proc/self/statm", buf, sizeof buf)) return -1;
  const char *p = strchr(buf, ' ');
  return p ? atol(p + 1) * (sysconf(_SC_PAGESIZE) / 1024) : -1;
}

/* Prints the RESULT line. `extra` holds the benchmark's own "key=value ..."
 * fields; ops_per_sec, secs and chk are added here. */
static inline void bench_result(const char *name, double ops, uint64_t ns, const char *extra) {
  double secs = (double)ns / 1e9;
  printf("RESULT bench=%s ops_per_sec=%.0f secs=%.3f ops=%.0f %s chk=%llu\n", name,
         secs > 0 ? ops / secs : 0.0, secs, ops, extra ? extra : "",
         (unsigned long long)(bench_sink & 0xffff));
  fflush(stdout);
}

#endif
