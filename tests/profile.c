/* tests/profile.c — HAKMEM_PROFILE, the sampling heap profiler. Each case
 * runs in a fresh process (run_self) with the profile's options set, and
 * reads back the profiles it wrote with hak_profile_dump: the gperftools
 * heap_v2 format, each stack's first address named with dladdr (the test
 * is linked -rdynamic).
 *
 *   sites    two functions allocate 70 % and 30 % of the bytes (the same
 *            sizes, 24 B to 20 KB) at HAKMEM_PROFILE_RATE=4096: the
 *            profile's estimate of each one's share is within 10 % of it,
 *            and of the share still live; once all is freed none is live
 *   exact    HAKMEM_PROFILE_RATE=1 samples every allocation: exact counts
 *            of allocated and live objects and bytes, in every tier, with
 *            realloc (moving) and memalign, contents intact
 *   threads  four threads allocate, free each other's blocks and exit with
 *            blocks live: the live share is estimated within 10 %
 *   fork     (rate 1) a fork child writes its own profile (FILE.PID) at
 *            exit, with what it inherited and what it allocated; the
 *            parent's is unchanged
 *   growth   HAKMEM_PROFILE_EVERY_MB=4: numbered profiles as memory grows,
 *            and hak_profile_dump(NULL) takes the next number
 *   off      without HAKMEM_PROFILE: hak_profile_dump fails with EINVAL
 * Only the profile build (libhakmem-profile) samples. Under another build
 * it runs two cases:
 *   refused  HAKMEM_PROFILE=1 prints one line saying so at start-up, and
 *            hak_profile_dump fails with EINVAL
 *   off      as above
 * Without arguments it runs them all; `tests/run.sh` also reads the
 * profile of `profile sites` with google-pprof. */
#include <malloc.h>
#include <math.h>
#include <pthread.h>

#include "util.h"

#define RATE_SITES 4096

typedef struct entry {
  uint64_t live_objs, live_bytes, alloc_objs, alloc_bytes;
  char name[64]; /* the function of the first frame, or "" */
} entry_t;

typedef struct profile {
  uint64_t rate;
  uint64_t tot[4]; /* the header's live objects, bytes, allocated objects, bytes */
  int n;
  entry_t e[256];
  int has_maps; /* a MAPPED_LIBRARIES section naming this program */
} profile_t;

/* Reads a profile of this process; 0 if it is well formed. */
static int read_profile(const char *path, profile_t *p) {
  memset(p, 0, sizeof *p);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[4096];
  int ok =
      fgets(line, sizeof line, f) && sscanf(line, "heap profile: %lu: %lu [%lu: %lu] @ heap_v2/%lu",
                                            &p->tot[0], &p->tot[1], &p->tot[2], &p->tot[3], &p->rate) == 5;
  uint64_t sum[4] = {0, 0, 0, 0};
  while (ok && fgets(line, sizeof line, f)) {
    if (strcmp(line, "\n") == 0) continue;
    if (strcmp(line, "MAPPED_LIBRARIES:\n") == 0) {
      while (fgets(line, sizeof line, f))
        if (strstr(line, "r-xp") && strstr(line, "profile")) p->has_maps = 1;
      break;
    }
    entry_t *e = &p->e[p->n < 256 ? p->n : 255];
    unsigned long first = 0;
    int at = 0;
    if (sscanf(line, "%lu: %lu [%lu: %lu] @ %n", &e->live_objs, &e->live_bytes, &e->alloc_objs,
               &e->alloc_bytes, &at) < 4 ||
        !at || sscanf(line + at, "%lx", &first) != 1) {
      ok = 0;
      break;
    }
    Dl_info info;
    e->name[0] = 0;
    if (dladdr((void *)first, &info) && info.dli_sname)
      snprintf(e->name, sizeof e->name, "%s", info.dli_sname);
    sum[0] += e->live_objs;
    sum[1] += e->live_bytes;
    sum[2] += e->alloc_objs;
    sum[3] += e->alloc_bytes;
    if (p->n < 256) p->n++;
  }
  fclose(f);
  return ok && !memcmp(sum, p->tot, sizeof sum) ? 0 : -1;
}

/* The entries of one function, summed; with `live`, the live columns. */
static void site_sum(const profile_t *p, const char *name, uint64_t *objs, uint64_t *bytes, int live) {
  *objs = *bytes = 0;
  for (int i = 0; i < p->n; i++)
    if (strcmp(p->e[i].name, name) == 0) {
      *objs += live ? p->e[i].live_objs : p->e[i].alloc_objs;
      *bytes += live ? p->e[i].live_bytes : p->e[i].alloc_bytes;
    }
}

/* pprof's estimate of the bytes a stack's samples stand for. */
static double unsampled(const profile_t *p, const char *name, int live) {
  double total = 0;
  for (int i = 0; i < p->n; i++) {
    const entry_t *e = &p->e[i];
    uint64_t objs = live ? e->live_objs : e->alloc_objs, bytes = live ? e->live_bytes : e->alloc_bytes;
    if (strcmp(e->name, name) != 0 || !objs) continue;
    double ratio = (double)bytes / (double)objs / (double)p->rate;
    total += (double)bytes / (1 - exp(-ratio));
  }
  return total;
}

static const char *profile_path(const char *suffix, char *buf, size_t cap) {
  snprintf(buf, cap, "%s%s", getenv("HAKMEM_PROFILE_FILE"), suffix);
  return buf;
}

/* ---- sites ---------------------------------------------------------------- */
static const size_t site_sizes[] = {24, 100, 400, 1000, 3000, 9000, 20000}; /* 7: prime to 10 */
#define SITE_ROUNDS 12000

/* Not inlined, and not ending in a tail call: each is a frame of its own,
 * the first of its blocks' stacks. */
__attribute__((noinline, noclone)) void *alloc70(size_t n) {
  void *p = malloc(n);
  if (p) pat_fill(p, n, pat_seed(p, n));
  return LAUNDER(p);
}

__attribute__((noinline, noclone)) void *alloc30(size_t n) {
  void *p = malloc(n);
  if (p) pat_fill(p, n, pat_seed(p, n));
  return LAUNDER(p);
}

static int case_sites(void) {
  static void *kept[SITE_ROUNDS];
  static size_t kept_n[SITE_ROUNDS];
  size_t nk = 0;
  double bytes[2] = {0, 0}, live[2] = {0, 0};
  for (int i = 0; i < SITE_ROUNDS; i++) {
    size_t n = site_sizes[i % 7];
    int s70 = i % 10 < 7;
    void *p = s70 ? alloc70(n) : alloc30(n);
    if (!p) return CHECK("every allocation succeeds", 0), th_done();
    bytes[!s70] += (double)n;
    if (i % 4 == 0) {
      kept[nk] = p;
      kept_n[nk++] = n;
      live[!s70] += (double)n;
    } else {
      free(p);
    }
  }
  char path[512];
  profile_t *pr = malloc(sizeof *pr);
  CHECK("hak_profile_dump writes the profile",
        hak.profile_dump(profile_path(".sites", path, sizeof path)) == 0);
  CHECK("the profile is well formed, its totals the sum of its lines", read_profile(path, pr) == 0);
  CHECK("the header gives the rate", pr->rate == RATE_SITES);
  CHECK("the mappings follow", pr->has_maps);
  double a70 = unsampled(pr, "alloc70", 0), a30 = unsampled(pr, "alloc30", 0);
  double share = a70 / (a70 + a30), want = bytes[0] / (bytes[0] + bytes[1]);
  CHECKV("alloc70's share of the bytes allocated, within 10 %", fabs(share - want) <= want / 10,
         "%.3f, true %.3f", share, want);
  CHECKV("alloc30's share, within 10 %", fabs((1 - share) - (1 - want)) <= (1 - want) / 10, "%.3f, true %.3f",
         1 - share, 1 - want);
  double l70 = unsampled(pr, "alloc70", 1), l30 = unsampled(pr, "alloc30", 1);
  double lshare = l70 / (l70 + l30), lwant = live[0] / (live[0] + live[1]);
  CHECKV("alloc70's share of the bytes live, within 10 %", fabs(lshare - lwant) <= lwant / 10,
         "%.3f, true %.3f", lshare, lwant);
  int intact = 1;
  for (size_t k = 0; k < nk; k++) {
    intact &=
        hak.usable_size(kept[k]) >= kept_n[k] && pat_check(kept[k], kept_n[k], pat_seed(kept[k], kept_n[k]));
    free(kept[k]);
  }
  CHECK("every block kept is intact", intact);
  uint64_t objs, b;
  CHECK("hak_profile_dump again", hak.profile_dump(profile_path(".freed", path, sizeof path)) == 0);
  CHECK("... well formed", read_profile(path, pr) == 0);
  site_sum(pr, "alloc70", &objs, &b, 0);
  CHECK("... alloc70's samples are all there", objs > 0);
  site_sum(pr, "alloc70", &objs, &b, 1);
  CHECKV("... and none live once all are freed", objs == 0 && b == 0, "%lu objects", (unsigned long)objs);
  site_sum(pr, "alloc30", &objs, &b, 1);
  CHECKV("... alloc30's neither", objs == 0 && b == 0, "%lu objects", (unsigned long)objs);
  free(pr);
  return th_done();
}

/* ---- exact ------------------------------------------------------------------ */
__attribute__((noinline, noclone)) void *exact_alloc(size_t n) {
  void *p = malloc(n);
  if (p) pat_fill(p, n, 7 + n);
  return LAUNDER(p);
}

__attribute__((noinline, noclone)) void *exact_realloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (q) pat_fill(q, n, 7 + n);
  return LAUNDER(q);
}

__attribute__((noinline, noclone)) void *exact_memalign(size_t align, size_t n) {
  void *p = memalign(align, n);
  if (p) memset(p, 0x5a, n);
  return LAUNDER(p);
}

static int case_exact(void) {
  /* Tiny, Mid, pool and Large; every one sampled at rate 1 (each interval
   * is at least a byte, and one of 16 or more only once in e^16). */
  static const size_t sizes[] = {24, 16, 48, 1000, 1024, 1500, 32768, 40000, 300000, 1048576, 3 << 20};
  enum { N = sizeof sizes / sizeof sizes[0], COPIES = 6 };
  void *p[N][COPIES];
  uint64_t asked = 0, live_objs = 0;
  for (int c = 0; c < COPIES; c++)
    for (int i = 0; i < N; i++) {
      p[i][c] = exact_alloc(sizes[i]);
      if (!p[i][c]) return CHECK("every allocation succeeds", 0), th_done();
      asked += sizes[i];
    }
  for (int i = 0; i < N; i++)
    for (int c = 0; c < COPIES; c += 2) free(p[i][c]);
  for (int i = 0; i < N; i++)
    for (int c = 1; c < COPIES; c += 2) live_objs++;
  char path[512];
  profile_t *pr = malloc(sizeof *pr);
  uint64_t objs, bytes;
  CHECK("hak_profile_dump", hak.profile_dump(profile_path(".exact", path, sizeof path)) == 0);
  CHECK("the profile is well formed", read_profile(path, pr) == 0);
  site_sum(pr, "exact_alloc", &objs, &bytes, 0);
  CHECKV("every allocation sampled (rate 1)", objs == N * COPIES, "%lu", (unsigned long)objs);
  CHECKV("their bytes: the sizes asked", bytes == asked, "%lu for %lu asked", (unsigned long)bytes,
         (unsigned long)asked);
  site_sum(pr, "exact_alloc", &objs, &bytes, 1);
  CHECKV("the live ones: each free seen", objs == live_objs, "%lu, want %lu", (unsigned long)objs,
         (unsigned long)live_objs);
  /* realloc that moves: a free of the old block, an allocation at the
   * realloc's caller. */
  int intact = 1;
  for (int i = 0; i < N; i++) {
    size_t grow = sizes[i] * 3 + 4096;
    void *q = exact_realloc(p[i][1], grow);
    if (!q) return CHECK("realloc succeeds", 0), th_done();
    intact &= pat_check(q, grow, 7 + grow);
    p[i][1] = q;
  }
  CHECK("the blocks realloc moved are intact", intact);
  void *al = exact_memalign(4096, 5000);
  CHECK("memalign's block is aligned", al && ((uintptr_t)al & 4095) == 0);
  CHECK("hak_profile_dump", hak.profile_dump(profile_path(".exact2", path, sizeof path)) == 0);
  CHECK("well formed", read_profile(path, pr) == 0);
  site_sum(pr, "exact_alloc", &objs, &bytes, 1);
  CHECKV("exact_alloc's live: the realloc'd ones left", objs == live_objs - N, "%lu", (unsigned long)objs);
  site_sum(pr, "exact_realloc", &objs, &bytes, 1);
  CHECKV("exact_realloc's live: all of them (a free and an allocation each)", objs == N, "%lu",
         (unsigned long)objs);
  site_sum(pr, "exact_memalign", &objs, &bytes, 1);
  CHECK("memalign sampled", objs == 1);
  for (int i = 0; i < N; i++)
    for (int c = 1; c < COPIES; c += 2) free(p[i][c]);
  free(al);
  CHECK("hak_profile_dump", hak.profile_dump(profile_path(".exact3", path, sizeof path)) == 0);
  CHECK("well formed", read_profile(path, pr) == 0);
  uint64_t live_test = 0;
  for (const char *const *f = (const char *const[]){"exact_alloc", "exact_realloc", "exact_memalign", NULL};
       *f; f++) {
    site_sum(pr, *f, &objs, &bytes, 1);
    live_test += objs;
  }
  CHECKV("once all are freed, none of the test's blocks is live", live_test == 0, "%lu live",
         (unsigned long)live_test);
  free(pr);
  return th_done();
}

/* ---- threads -------------------------------------------------------------- */
#define THREADS 4
#define PER_THREAD 20000
static void *_Atomic handoff[THREADS][PER_THREAD / 2];
static _Atomic uint64_t thread_bytes, thread_kept; /* allocated, and kept live */

__attribute__((noinline, noclone)) void *thread_alloc(size_t n) {
  void *p = malloc(n);
  if (p) memset(p, 1, n);
  return LAUNDER(p);
}

static void *thread_main(void *arg) {
  int t = (int)(intptr_t)arg;
  uint64_t bytes = 0, kept = 0;
  for (int i = 0; i < PER_THREAD; i++) {
    size_t n = 16 + (size_t)(i % 50) * 40;
    void *p = thread_alloc(n);
    bytes += n;
    if (i % 2) atomic_store(&handoff[t][i / 2], p); /* another thread (or main) frees it */
    else if (i % 4) free(p);
    else kept += n; /* kept live */
    free(atomic_exchange(&handoff[(t + 1) % THREADS][i / 2 > 100 ? i / 2 - 100 : 0], NULL));
  }
  atomic_fetch_add(&thread_bytes, bytes);
  atomic_fetch_add(&thread_kept, kept);
  return NULL;
}

static int case_threads(void) {
  pthread_t th[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t);
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  for (int t = 0; t < THREADS; t++)
    for (int i = 0; i < PER_THREAD / 2; i++) free(atomic_exchange(&handoff[t][i], NULL));
  char path[512];
  profile_t *pr = malloc(sizeof *pr);
  uint64_t objs, bytes, lobjs, lbytes;
  CHECK("hak_profile_dump after the threads exit",
        hak.profile_dump(profile_path(".threads", path, sizeof path)) == 0);
  CHECK("well formed", read_profile(path, pr) == 0);
  site_sum(pr, "thread_alloc", &objs, &bytes, 0);
  site_sum(pr, "thread_alloc", &lobjs, &lbytes, 1);
  CHECKV("the threads' samples", objs > 1000 && lobjs < objs, "%lu allocated, %lu live", (unsigned long)objs,
         (unsigned long)lobjs);
  double l = unsampled(pr, "thread_alloc", 1), a = unsampled(pr, "thread_alloc", 0);
  double want = (double)thread_kept / (double)thread_bytes;
  CHECKV("the share still live, within 10 %", fabs(l / a - want) <= want / 10, "%.3f, true %.3f", l / a,
         want);
  free(pr);
  return th_done();
}

/* ---- fork ------------------------------------------------------------------ */
__attribute__((noinline, noclone)) void *child_alloc(size_t n) {
  void *p = malloc(n);
  if (p) memset(p, 2, n);
  return LAUNDER(p);
}

static int case_fork(void) {
  enum { K = 64 };
  void *mine[K];
  for (int i = 0; i < K; i++) mine[i] = exact_alloc(100);
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < K; i++) child_alloc(200);
    for (int i = 0; i < K / 2; i++) free(mine[i]);
    _exit(0); /* the exit dump runs (a destructor), the harness not */
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK("the child exits", exited_ok(status));
  char path[512];
  snprintf(path, sizeof path, "%s.%d", getenv("HAKMEM_PROFILE_FILE"), (int)pid);
  profile_t *pr = malloc(sizeof *pr);
  uint64_t objs, bytes;
  /* _exit skips destructors: the child wrote nothing. */
  CHECK("_exit writes no profile", access(path, F_OK) != 0);
  pid = fork();
  if (pid == 0) {
    for (int i = 0; i < K; i++) child_alloc(200);
    for (int i = 0; i < K / 2; i++) free(mine[i]);
    exit(0);
  }
  waitpid(pid, &status, 0);
  CHECK("the child exits", exited_ok(status));
  snprintf(path, sizeof path, "%s.%d", getenv("HAKMEM_PROFILE_FILE"), (int)pid);
  CHECKV("the child's exit profile is FILE.PID, well formed", read_profile(path, pr) == 0, "%s", path);
  site_sum(pr, "child_alloc", &objs, &bytes, 1);
  CHECKV("... with what the child allocated", objs == K, "%lu", (unsigned long)objs);
  site_sum(pr, "exact_alloc", &objs, &bytes, 1);
  CHECKV("... and what it inherited, less what it freed", objs == K / 2, "%lu", (unsigned long)objs);
  CHECK("the parent's dump", hak.profile_dump(profile_path(".parent", path, sizeof path)) == 0);
  CHECK("well formed", read_profile(path, pr) == 0);
  site_sum(pr, "exact_alloc", &objs, &bytes, 1);
  CHECKV("the parent's blocks all live in its own", objs == K, "%lu", (unsigned long)objs);
  site_sum(pr, "child_alloc", &objs, &bytes, 0);
  CHECK("none of the child's", objs == 0);
  for (int i = 0; i < K; i++) free(mine[i]);
  free(pr);
  return th_done();
}

/* ---- growth ---------------------------------------------------------------- */
static int case_growth(void) {
  enum { BLOCKS = 1024 };
  static void *keep[BLOCKS];
  for (int i = 0; i < BLOCKS; i++) keep[i] = exact_alloc(16 * KiB); /* 16 MiB in use */
  char path[512];
  int numbered = 0;
  profile_t *pr = malloc(sizeof *pr);
  for (int n = 1; n <= 8; n++) {
    snprintf(path, sizeof path, "%s.%d", getenv("HAKMEM_PROFILE_FILE"), n);
    if (access(path, F_OK) != 0) break;
    numbered += read_profile(path, pr) == 0;
  }
  CHECKV("a numbered profile for each 4 MiB of growth, well formed", numbered >= 2 && numbered <= 5, "%d",
         numbered);
  CHECK("hak_profile_dump(NULL)", hak.profile_dump(NULL) == 0);
  snprintf(path, sizeof path, "%s.%d", getenv("HAKMEM_PROFILE_FILE"), numbered + 1);
  CHECKV("takes the next number", read_profile(path, pr) == 0, "%s", path);
  CHECK("a path no file can have: -1", hak.profile_dump("/nonexistent-dir/x.heap") == -1 && errno == ENOENT);
  for (int i = 0; i < BLOCKS; i++) free(keep[i]);
  free(pr);
  return th_done();
}

#define REFUSED                                                                                             \
  "hakmem: HAKMEM_PROFILE: only libhakmem-profile.so samples (hakmem run --profile FILE preloads it); not " \
  "profiling"

static int case_off(void) {
  errno = 0;
  CHECK("not sampling, hak_profile_dump fails with EINVAL",
        hak.profile_dump("profile-off.heap") == -1 && errno == EINVAL);
  CHECK("and writes nothing", access("profile-off.heap", F_OK) != 0);
  return th_done();
}

int main(int argc, char **argv) {
  if (!hak_load()) {
    CHECK("the hak_* API is there", 0);
    return th_done();
  }
  typedef struct {
    const char *mode;
    int (*run)(void);
    const char *rate, *every;
  } profile_case_t;
  static const profile_case_t sampling[] = {
      {"sites", case_sites, "4096", "0"},     {"exact", case_exact, "1", "0"},
      {"threads", case_threads, "4096", "0"}, {"fork", case_fork, "1", "0"},
      {"growth", case_growth, "4096", "4"},   {"off", case_off, NULL, NULL},
  };
  static const profile_case_t not_sampling[] = {{"refused", case_off, "4096", "0"},
                                                {"off", case_off, NULL, NULL}};
  int profile_build = strstr(hak.version(), "(profile build)") != NULL;
  const profile_case_t *cases = profile_build ? sampling : not_sampling;
  int n = profile_build ? (int)(sizeof sampling / sizeof sampling[0]) : 2;
  if (argc > 1) {
    for (int i = 0; i < n; i++)
      if (strcmp(argv[1], cases[i].mode) == 0) return cases[i].run();
    fprintf(stderr, "profile: no case %s\n", argv[1]);
    return 2;
  }
  check_hakmem_is_malloc();
  char dir[] = "/tmp/hakmem-profile.XXXXXX";
  if (!CHECK("a directory for the profiles", mkdtemp(dir))) return th_done();
  for (int i = 0; i < n; i++) {
    char file[600], rate[64], every[64], on[32];
    snprintf(file, sizeof file, "HAKMEM_PROFILE_FILE=%s/%s", dir, cases[i].mode);
    snprintf(on, sizeof on, "HAKMEM_PROFILE=%d", cases[i].rate != NULL);
    snprintf(rate, sizeof rate, "HAKMEM_PROFILE_RATE=%s", cases[i].rate ? cases[i].rate : "524288");
    snprintf(every, sizeof every, "HAKMEM_PROFILE_EVERY_MB=%s", cases[i].every ? cases[i].every : "0");
    const char *set[] = {on, rate, every, file, NULL};
    child_t *c = malloc(sizeof *c);
    int ran = run_self(cases[i].mode, set, c, 120);
    if (!profile_build && cases[i].rate)
      CHECKV("a build that does not sample says so, once", ran == 0 && count_lines_with(c->err, REFUSED) == 1,
             "%s", hak.version());
    if (child_merge(cases[i].mode, ran, c) && profile_build && cases[i].rate) {
      /* the exit profile */
      profile_t *pr = malloc(sizeof *pr);
      CHECKV("the exit profile is written, well formed",
             read_profile(file + strlen("HAKMEM_PROFILE_FILE="), pr) == 0, "%s", cases[i].mode);
      free(pr);
    }
    free(c);
  }
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK("the profiles are removed", system(cmd) == 0);
  return th_done();
}
