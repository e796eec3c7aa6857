/* tests/telemetry.c — the counters of the reports, against a scripted
 * workload with exact expected numbers.
 *
 * Each case is this program again (a fresh process, so that nothing else
 * used the size class), with HAKMEM_SAMPLE=1 (every slow path timed):
 *   work   250 mallocs of 200 bytes (class 208, which nothing else in the
 *          process uses: carving 19 blocks, a page, at a time): 14 misses,
 *          all carved, one from a fresh slab and 13 from the current one;
 *          another thread frees the 250 (250 slow frees, all remote frees
 *          sent); 250 mallocs again: one miss, which takes the 250 back
 *          (remote frees received: the thread sent them in batches of
 *          60, the last at its exit). The stats
 *          build also counts 500 allocations and 250 frees, and its text
 *          report gives the hit rate they make; the other builds count
 *          none. The latency samples of the tiny tier are its misses, of
 *          slow frees its slow frees, with p50 <= p99 <= p99.9; hak_stats
 *          agrees with hak_stats_json (totals, system calls) and with
 *          mallinfo2. After malloc_trim, 250 mallocs again take purged
 *          memory: purged_reused counts at least a slab's bytes.
 *   spare  mallocs of 200 bytes until the class holds a third slab (with
 *          two, the one that filled first keeps the free shortcut, so its
 *          frees go on the class's list: heap.c, heap_keep_prev); the
 *          first slab's blocks freed (the third's last block first, so they
 *          go on the slab): it becomes a spare, and the next malloc of 720
 *          bytes (another one-unit class) refills from it, not from a fresh
 *          slab, and the slab is that class's now.
 *   carve  HAKMEM_ACE=1: 20000 mallocs of 200 bytes, none freed: the class
 *          carves on every refill, so its batch doubles every
 *          HAK_CARVE_RUN (32) refills up to 16 pages (the row's
 *          carve_pages) and it refills less than 1/4 as often as with one
 *          page (171 carves against 1080); 1.2 s later (past
 *          HAK_CARVE_IDLE_MS) the refill that follows the blocks carved
 *          last carves one page again. `carve0` (HAKMEM_ACE=0): one page,
 *          a carve per 19 blocks.
 *   batch  another thread frees the 250 and goes on: the blocks travel to
 *          their holder in batches of HAK_BATCH_BLOCKS (60), so its
 *          malloc_trim takes 240 back, and the last 10 wait in the freeing
 *          thread's batch until it has missed HAK_SEND_MISSES (64) times
 *          (allocations of 100 KiB, a miss each): not after 63, after 64.
 *          Then it frees 4000 of the holder's blocks while the holder
 *          allocates nothing: 64 batches (HAK_BATCHES_MAX) go to the
 *          holder, the other 160 blocks the direct way, and all come back.
 * The figures are read from hak_stats_json (the row of class 208). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"

#define N 250
#define SIZE 200
static char *blocks[N];
static char json[1 << 17];

static void read_json_with(hak_stats_t *st) { stats_json(json, sizeof json, st); }

static void read_json(void) { read_json_with(NULL); }

/* Field `name` of the row of the class of `size`-byte blocks (0 if the
 * class has no row yet). */
static long long size_field(size_t size, const char *name) {
  char key[48];
  snprintf(key, sizeof key, "\"block_size\":%zu,", size);
  const char *row = strstr(json, key);
  if (!row) return 0;
  while (row > json && *row != '{') row--;
  return json_field(row, name);
}

static long long class_field(const char *name) { return size_field(SIZE + 8, name); }

typedef struct {
  long long allocs, frees, misses, carved, fresh, current, slow, sent, received;
} figures_t;

static figures_t figures(void) {
  read_json();
  return (figures_t){class_field("allocs"),     class_field("frees"),       class_field("misses"),
                     class_field("carved"),     class_field("from_fresh"),  class_field("from_current"),
                     class_field("slow_frees"), class_field("remote_sent"), class_field("remote_received")};
}

static int go[2];

static void *freer(void *arg) {
  (void)arg;
  char c;
  if (read(go[0], &c, 1) != 1) return NULL;
  for (int i = 0; i < N; i++) free(blocks[i]);
  return NULL;
}

static long long top_field(const char *name) { return json_field(json, name); }

static int work(void) {
  if (!check_hakmem_is_malloc()) return th_done();
  int stats = strstr(hak.version(), "stats build") != NULL;
  pthread_t t;
  if (pipe(go) != 0 || pthread_create(&t, NULL, freer, NULL) != 0) return 3;

  figures_t a = figures();
  for (int i = 0; i < N; i++) blocks[i] = malloc(LAUNDER((size_t)SIZE));
  figures_t b = figures();
  CHECKV("250 mallocs of 200 bytes: 14 misses (19 blocks carved a page at a time)", b.misses - a.misses == 14,
         "%lld", b.misses - a.misses);
  CHECKV("every one of those refills carved fresh blocks", b.carved - a.carved == 14, "%lld",
         b.carved - a.carved);
  CHECKV("the first from a fresh slab, the others from the current one",
         b.fresh - a.fresh == 1 && b.current - a.current == 13, "fresh %lld, current %lld", b.fresh - a.fresh,
         b.current - a.current);
  CHECKV("allocations: 250 counted by the stats build, none by the others",
         b.allocs - a.allocs == (stats ? N : 0), "%lld", b.allocs - a.allocs);

  if (write(go[1], "x", 1) != 1) return 3;
  pthread_join(t, NULL); /* its counts are merged at its exit */
  figures_t c = figures();
  CHECKV("another thread's 250 frees: 250 slow frees", c.slow - b.slow == N, "%lld", c.slow - b.slow);
  CHECKV("and 250 remote frees sent", c.sent - b.sent == N, "%lld", c.sent - b.sent);
  CHECKV("frees: 250 counted by the stats build", c.frees - b.frees == (stats ? N : 0), "%lld",
         c.frees - b.frees);

  for (int i = 0; i < N; i++) blocks[i] = malloc(LAUNDER((size_t)SIZE));
  figures_t d = figures();
  CHECKV("250 mallocs again: one miss, the rest come back from the other thread's frees",
         d.misses - c.misses == 1 && d.current - c.current == 1 && d.carved == c.carved,
         "misses %lld, carved %lld", d.misses - c.misses, d.carved - c.carved);
  CHECKV("the 250 remote frees taken back: 250 received", d.received - c.received == N, "%lld",
         d.received - c.received);

  /* The hit rate of the text report: (allocs - misses) / allocs. */
  FILE *f = tmpfile();
  hak.stats_print(fileno(f));
  rewind(f);
  char line[512], want[32];
  int found = 0;
  if (stats) {
    long long pm = (d.allocs - d.misses) * 1000 / d.allocs;
    snprintf(want, sizeof want, " %lld.%lld ", pm / 10, pm % 10);
  } else {
    snprintf(want, sizeof want, " - ");
  }
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "  13 ", 5) == 0 && strstr(line, " 208 ")) found = strstr(line, want) != NULL;
  fclose(f);
  CHECKV("the text report's row of class 13 gives the hit rate", found, "want '%s'", want);

  /* Latency: every slow path timed (HAKMEM_SAMPLE=1). */
  read_json();
  const char *lat = strstr(json, "\"latency\":{");
  const char *tiny = lat ? strstr(lat, "\"tiny\":{") : NULL, *fr = lat ? strstr(lat, "\"free\":{") : NULL;
  const char *tiers = strstr(json, "\"tiers\":[");
  long long tiny_misses = tiers ? json_field(strstr(tiers, "{\"tier\":\"tiny\""), "misses") : -1;
  long long tiny_slow = tiers ? json_field(strstr(tiers, "{\"tier\":\"tiny\""), "slow_frees") : -1;
  CHECKV("HAKMEM_SAMPLE=1: the tiny tier's latency samples are its misses",
         tiny && json_field(tiny, "samples") == tiny_misses && tiny_misses >= 15, "%lld samples, %lld misses",
         tiny ? json_field(tiny, "samples") : -1, tiny_misses);
  CHECKV("and the slow frees' samples are the slow frees (all tiny here)",
         fr && json_field(fr, "samples") >= tiny_slow && tiny_slow >= N, "%lld samples, %lld slow frees",
         fr ? json_field(fr, "samples") : -1, tiny_slow);
  CHECKV("p50 <= p99 <= p99.9, none 0",
         tiny && json_field(tiny, "p50_ns") > 0 && json_field(tiny, "p50_ns") <= json_field(tiny, "p99_ns") &&
             json_field(tiny, "p99_ns") <= json_field(tiny, "p999_ns"),
         "%lld %lld %lld", tiny ? json_field(tiny, "p50_ns") : -1, tiny ? json_field(tiny, "p99_ns") : -1,
         tiny ? json_field(tiny, "p999_ns") : -1);

  /* hak_stats, the JSON and mallinfo2 agree (nothing allocated between). */
  hak_stats_t st;
  read_json_with(&st);
  CHECKV("hak_stats_json's totals are hak_stats's",
         top_field("in_use") == (long long)st.in_use && top_field("committed") == (long long)st.committed &&
             top_field("slabs") == (long long)st.slabs && top_field("misses") == (long long)st.misses &&
             top_field("remote_sent") == (long long)st.remote_sent,
         "in_use %lld/%zu committed %lld/%zu", top_field("in_use"), st.in_use, top_field("committed"),
         st.committed);
  CHECKV("the JSON's system calls are hak_stats's",
         st.mmap_calls > 0 && json_field(strstr(json, "\"mmap\":{"), "calls") == (long long)st.mmap_calls &&
             json_field(strstr(json, "\"madvise\":{"), "calls") == (long long)st.madvise_calls,
         "mmap %llu", (unsigned long long)st.mmap_calls);
  hak.stats(&st);
  struct mallinfo2 mi = mallinfo2();
  CHECKV("mallinfo2 agrees: uordblks is the slab blocks in use, hblkhd the Large mappings",
         mi.uordblks == st.in_use - st.large_in_use && mi.hblkhd == st.large_in_use, "uordblks %zu",
         mi.uordblks);
  CHECKV("the misses of hak_stats add up those of the classes", st.misses >= (unsigned long long)d.misses,
         "%llu", (unsigned long long)st.misses);
  /* Purged memory taken again: its pages fault in again. */
  for (int i = 0; i < N; i++) free(blocks[i]);
  malloc_trim(0);
  hak_stats_t t0, t1;
  hak.stats(&t0);
  for (int i = 0; i < N; i++) blocks[i] = malloc(LAUNDER((size_t)SIZE));
  for (int i = 0; i < N; i++) blocks[i][0] = 1;
  hak.stats(&t1);
  CHECKV("after malloc_trim, the blocks come from purged memory: purged_reused counts a slab's bytes",
         t0.purged > 0 && t1.purged_reused - t0.purged_reused >= 60 * 1024,
         "purged %llu, purged_reused %llu -> %llu", (unsigned long long)t0.purged,
         (unsigned long long)t0.purged_reused, (unsigned long long)t1.purged_reused);
  for (int i = 0; i < N; i++) free(blocks[i]);
  return th_done();
}

/* The batch case's freeing thread: at each word from the pipe, frees the
 * 250 ('f') or every other one of the MANY, from the last down ('F'), or
 * misses 63 times ('m') or once ('1'), then answers. */
#define MANY 8000
static char *many[MANY];
static int ack[2];
static void *batch_freer(void *arg) {
  (void)arg;
  char c;
  while (read(go[0], &c, 1) == 1) {
    if (c == 'f')
      for (int i = 0; i < N; i++) free(blocks[i]);
    if (c == 'F')
      for (int i = MANY - 1; i > 0; i -= 2) free(many[i]);
    for (int i = 0; i < (c == 'm' ? 63 : c == '1' ? 1 : 0); i++) free(malloc(LAUNDER((size_t)100 << 10)));
    if (write(ack[1], "x", 1) != 1) break;
  }
  return NULL;
}

/* The remote frees received once the main thread's malloc_trim has taken
 * its batches in. */
static long long received_after_trim(void) {
  malloc_trim(0);
  read_json();
  return class_field("remote_received");
}

static int batch(void) {
  if (!check_hakmem_is_malloc()) return th_done();
  for (int i = 0; i < N; i++) blocks[i] = malloc(LAUNDER((size_t)SIZE));
  long long before = received_after_trim();
  pthread_t t;
  char c;
  if (pipe(go) != 0 || pipe(ack) != 0 || pthread_create(&t, NULL, batch_freer, NULL) != 0) return 3;
  if (write(go[1], "f", 1) != 1 || read(ack[0], &c, 1) != 1) return 3;
  long long full = received_after_trim() - before;
  CHECKV("a thread frees 250 and goes on: 4 full batches came back (240)", full == 240, "%lld", full);
  if (write(go[1], "m", 1) != 1 || read(ack[0], &c, 1) != 1) return 3;
  full = received_after_trim() - before;
  CHECKV("after 63 misses of its own, its last 10 still wait", full == 240, "%lld", full);
  if (write(go[1], "1", 1) != 1 || read(ack[0], &c, 1) != 1) return 3;
  long long all = received_after_trim() - before;
  CHECKV("its 64th miss sends them: all 250 back", all == N, "%lld", all);
  /* This thread frees every other one of 8000 blocks (its slabs stay
   * partly used: it holds them) and allocates nothing while the other
   * frees the rest, from the last down: past HAK_BATCHES_MAX (64) batches
   * of 60 of its own, the freeing thread frees the other 160 (blocks of
   * the first slabs, neither current nor previous, so malloc_trim does
   * not collect them) onto the slabs' remote lists. */
  for (int i = 0; i < MANY; i++) many[i] = malloc(LAUNDER((size_t)SIZE));
  for (int i = 0; i < MANY; i += 2) free(many[i]);
  before = received_after_trim();
  hak_stats_t s0, s1;
  hak.stats(&s0);
  if (write(go[1], "F", 1) != 1 || read(ack[0], &c, 1) != 1) return 3;
  long long batched = received_after_trim() - before;
  CHECKV("a holder that does not allocate gets 64 batches (3840 of 4000 blocks), no more", batched == 64 * 60,
         "%lld", batched);
  for (int i = 0; i < MANY; i++) many[i] = malloc(LAUNDER((size_t)SIZE));
  hak.stats(&s1);
  CHECKV("and the other 160 came back too: 8000 mallocs take no more memory", s1.committed <= s0.committed,
         "committed %zu -> %zu", s0.committed, s1.committed);
  for (int i = 0; i < MANY; i++) free(many[i]);
  before = received_after_trim();
  close(go[1]);
  pthread_join(t, NULL);
  long long after = received_after_trim() - before;
  CHECKV("nothing more at its exit: it had no batch left", after == 0, "%lld", after);
  return th_done();
}

#define SPARE_MAX 2000 /* more 200-byte blocks than two 64 KiB slabs hold */

static int spare(void) {
  if (!check_hakmem_is_malloc()) return th_done();
  static char *b[SPARE_MAX];
  int n = 0, first = 0; /* b[0 .. first) are the first slab's */
  read_json();
  while (n < SPARE_MAX && class_field("slabs") < 3) {
    b[n++] = malloc(LAUNDER((size_t)SIZE));
    read_json();
    if (!first && class_field("slabs") == 2) first = n - 1;
  }
  CHECKV("mallocs of 200 bytes fill two slabs and take a third", class_field("slabs") == 3 && first > 100,
         "%d blocks, %d in the first slab", n, first);
  free(b[n - 1]); /* the third slab's: it goes on the class's list */
  for (int i = 0; i < first; i++) free(b[i]);
  read_json();
  long long spare0 = size_field(720, "from_spare"), fresh0 = size_field(720, "from_fresh");
  char *p = malloc(LAUNDER((size_t)720));
  read_json();
  CHECKV("a malloc of 720 bytes refills from the spare, not from a fresh slab",
         size_field(720, "from_spare") - spare0 == 1 && size_field(720, "from_fresh") == fresh0,
         "from_spare %lld -> %lld, from_fresh %lld -> %lld", spare0, size_field(720, "from_spare"), fresh0,
         size_field(720, "from_fresh"));
  CHECKV("the spare is a slab of 720-byte blocks now",
         class_field("slabs") == 2 && size_field(720, "slabs") == 1,
         "200-byte class %lld slabs, 720-byte class %lld", class_field("slabs"), size_field(720, "slabs"));
  free(p);
  for (int i = first; i < n - 1; i++) free(b[i]);
  return th_done();
}

/* carve: HAKMEM_ACE's carve batch (carve0: without ACE). */
#define CARVE_N 20000

static int carve(int ace) {
  if (!check_hakmem_is_malloc()) return th_done();
  static char *b[CARVE_N];
  for (int i = 0; i < CARVE_N; i++) b[i] = malloc(LAUNDER((size_t)SIZE));
  read_json();
  long long pages = class_field("carve_pages"), carves = class_field("carved");
  if (!ace) {
    CHECKV("HAKMEM_ACE=0: a refill carves one page of blocks (19)", pages == 1 && carves >= CARVE_N / 19,
           "%lld pages, %lld carves", pages, carves);
    for (int i = 0; i < CARVE_N; i++) free(b[i]);
    return th_done();
  }
  CHECKV("a class that carves on every refill carves 16 pages at once", pages == 16, "%lld pages", pages);
  CHECKV("and so refills far less often", carves < CARVE_N / 19 / 4, "%lld carves", carves);
  usleep(1200 * 1000); /* past HAK_CARVE_IDLE_MS */
  static char *more[400];
  long long misses = class_field("misses");
  int n = 0;
  while (class_field("misses") == misses && n < 400) { /* until the blocks carved last run out */
    more[n++] = malloc(LAUNDER((size_t)SIZE));
    read_json();
  }
  CHECKV("idle for 1.2 s, its next refill carves one page again", class_field("carve_pages") == 1,
         "%lld pages after %d mallocs", class_field("carve_pages"), n);
  for (int i = 0; i < n; i++) free(more[i]);
  for (int i = 0; i < CARVE_N; i++) free(b[i]);
  return th_done();
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "work") == 0) return work();
  if (argc > 1 && strcmp(argv[1], "spare") == 0) return spare();
  if (argc > 1 && strcmp(argv[1], "carve") == 0) return carve(1);
  if (argc > 1 && strcmp(argv[1], "carve0") == 0) return carve(0);
  if (argc > 1 && strcmp(argv[1], "batch") == 0) return batch();
  if (!check_hakmem_is_malloc()) return th_done();
  static child_t c;
  const char *env[] = {"HAKMEM_SAMPLE=1", NULL};
  int ran = run_self("work", env, &c, 60);
  child_merge("work", ran, &c);
  ran = run_self("spare", env, &c, 60);
  child_merge("spare", ran, &c);
  const char *ace[] = {"HAKMEM_ACE=1", NULL}, *ace0[] = {"HAKMEM_ACE=0", NULL};
  child_merge("carve", run_self("carve", ace, &c, 60), &c);
  child_merge("carve0", run_self("carve0", ace0, &c, 60), &c);
  child_merge("batch", run_self("batch", env, &c, 60), &c);
  return th_done();
}
