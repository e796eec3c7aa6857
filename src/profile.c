/* profile.c — HAKMEM_PROFILE: the sampling heap profiler's records. heap.c
 * (and api.c, for Large blocks) chooses the sampled allocations, about one
 * per HAKMEM_PROFILE_RATE bytes, and keeps each where its free takes a
 * slow path; here each one's call stack is taken, the stacks are kept with
 * their allocated and freed samples and how long the freed ones lived (a
 * sample's own record stays with its block: hak_sample_t), and the heap
 * profile is written in gperftools' heap_v2 format (google-pprof
 * and pprof read it) at exit, on hak_profile_dump and every
 * HAKMEM_PROFILE_EVERY_MB of growth.
 *
 * Stacks come from unwind.c, which reads each return address's DWARF
 * call frame information once and keeps it for every thread (Debian's
 * programs have no frame pointers), or with HAKMEM_PROFILE_UNWIND=0 from
 * libgcc's _Unwind_Backtrace, which interprets every frame's unwind table
 * each time (about 50 us a stack). Neither allocates in glibc's programs;
 * an allocation made while its thread takes a stack (an unwinder of
 * another libgcc, or one that reads frames registered at run time) is not
 * recorded (`unwinding`). No profile lock is held while they run. The
 * frames in hakmem's own shared object are left out. Memory: the stacks'
 * table from meta.c, taken at start-up when the option is on; a sample
 * whose stack finds it full is counted as dropped. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <string.h>
#include <unwind.h>

#include "internal.h"

#define DEPTH 32        /* frames kept of a stack */
#define SITES 4096      /* distinct stacks kept (a power of two) */
#define LIFE_BUCKETS 40 /* lifetimes: bucket k holds [2^k, 2^(k+1)) us; 0 holds [0, 2) */
#define SHARDS 4        /* a site's counts, by the heap that samples or frees (a power of two) */
#define SITE_NONE UINT32_MAX
_Static_assert(SITES <= 1u << 16, "a sample's record holds its site in 16 bits");

/* A stack's entry. Found without a lock (made under the profile lock, its
 * hash written last); its counts are atomic, so that samples of several
 * threads take no lock (the dumps read them as they are, and add up the
 * shards). Each thread counts in the shard of its heap's id, a cache line
 * of its own: two threads sampling one stack (mid_large_mt: a sample every
 * few allocations) took turns at one line. */
typedef struct shard {
  _Alignas(64) _Atomic uint64_t alloc_objs, alloc_bytes; /* samples taken here, and their bytes */
  _Atomic uint64_t freed_objs, freed_bytes;              /* of those, freed */
  _Atomic uint32_t life[LIFE_BUCKETS];                   /* the freed ones, by lifetime */
} shard_t;
typedef struct site {
  _Atomic uint64_t hash; /* of the frames; 0: an unused entry */
  uint32_t depth;
  uintptr_t pc[DEPTH]; /* return addresses, the allocation's caller first */
  shard_t shard[SHARDS];
} site_t;

bool _hak_profile_on;
hak_lock_t _hak_profile_lock = HAK_LOCK_INIT;
static site_t *sites;                  /* made under the profile lock */
static uint32_t sites_used;            /* profile lock */
static _Atomic uint64_t dropped;       /* samples the sites table had no room for */
static _Atomic uint64_t live_estimate; /* the live bytes the live samples stand for (growth dumps) */
static uint64_t rate;                  /* HAKMEM_PROFILE_RATE */
static int start_pid;                  /* the process that started profiling */
static uint32_t dumps;                 /* profile lock: numbered dumps written */
static uint64_t growth_step;           /* HAKMEM_PROFILE_EVERY_MB in bytes (0: no growth dumps) */
static _Atomic uint64_t next_dump_at;  /* live_estimate due for the next growth dump */
static uint64_t shared_rng;            /* profile lock: the countdown of threads without a heap */
static int64_t shared_left;
static uintptr_t own_lo, own_hi; /* hakmem's code, when it is a shared object of its own */
static bool own_unwinder;        /* unwind.c's walk (HAKMEM_PROFILE_UNWIND=1), else libgcc's */

/* ---- the sampling interval ------------------------------------------- */
/* ln(u) for u in (0, 1], without libm: u = m 2^e with m in [1, 2), and
 * ln m = 2 atanh((m - 1) / (m + 1)), a series in t <= 1/3 (four terms:
 * error below 1e-5, plenty for a random interval). */
static double ln(double u) {
  union {
    double d;
    uint64_t i;
  } x = {.d = u};
  int e = (int)((x.i >> 52) & 0x7ff) - 1023;
  x.i = (x.i & ((1ull << 52) - 1)) | (1023ull << 52);
  double t = (x.d - 1) / (x.d + 1), t2 = t * t;
  return e * 0.6931471805599453 + 2 * t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 / 7)));
}

/* e^-r for r >= 0: e^-n e^-f with f in [0, 1), e^-f by its series. */
static double exp_neg(double r) {
  if (r > 700) return 0;
  double y = 1, f = r - (double)(uint64_t)r, term = 1;
  for (int k = 1; k < 14; k++) y += (term *= -f / k);
  for (uint64_t n = (uint64_t)r; n; n--) y *= 0.36787944117144233;
  return y;
}

/* Bytes until the next sample: exponential with mean `rate`, so that every
 * allocated byte is equally likely to be the sampled one (pprof's
 * heap_v2 unsampling assumes it). rng: the heap's xorshift state. */
uint64_t _hak_profile_interval(uint64_t *rng) {
  uint64_t x = *rng ? *rng : _hak_os_ticks() | 1;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *rng = x;
  double u = (double)(((x * 0x2545f4914f6cdd1dull) >> 11) + 1) * 0x1p-53; /* (0, 1] */
  double bytes = -ln(u) * (double)rate;
  return bytes < 1 ? 1 : (uint64_t)bytes;
}

/* For threads without a heap (their Large blocks): one countdown, under
 * the lock. */
bool _hak_profile_due_shared(size_t bytes) {
  _hak_lock(&_hak_profile_lock);
  bool due = shared_left <= (int64_t)bytes;
  shared_left = due ? (int64_t)_hak_profile_interval(&shared_rng) : shared_left - (int64_t)bytes;
  _hak_unlock(&_hak_profile_lock);
  return due;
}

/* The bytes that `objs` samples of `bytes` bytes in all stand for: each,
 * of their average size z, was sampled with probability 1 - e^(-z/rate)
 * (pprof's heap_v2 unsampling). */
static uint64_t weight_of(uint64_t bytes, uint64_t objs) {
  if (!objs) return 0;
  double r = (double)bytes / (double)objs / (double)rate;
  double p = r < 1e-6 ? r : 1 - exp_neg(r);
  return (uint64_t)((double)bytes / p);
}

/* ---- stacks ---------------------------------------------------------- */
typedef struct walk {
  uintptr_t pc[DEPTH + 8]; /* room for hakmem's own frames, which take_stack drops */
  uint32_t n;
} walk_t;

static _Unwind_Reason_Code walk_frame(struct _Unwind_Context *ctx, void *arg) {
  walk_t *w = arg;
  uintptr_t ip = _Unwind_GetIP(ctx);
  if (!ip) return _URC_END_OF_STACK;
  if (!w->n && ip - own_lo < own_hi - own_lo) return _URC_NO_REASON; /* still in hakmem */
  w->pc[w->n++] = ip;
  return w->n == DEPTH ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* The threads taking a stack now. An unwinder may allocate (libgcc's,
 * for frames a program registered at run time): such an allocation,
 * sampled, is not recorded, or taking its stack would recurse without
 * end. */
#define UNWINDING 64
static _Atomic uintptr_t unwinding[UNWINDING];

/* Marks the calling thread as taking a stack: false if it is taking one
 * already. A thread with a heap marks it there; one without (its Large
 * blocks) takes one of UNWINDING slots, named by the address of its
 * thread-local (no system call), in *slot (false if it holds one already,
 * or 64 threads do). */
static bool unwinding_enter(hak_profile_local_t *me, int *slot) {
  if (me) {
    if (me->unwinding) return false;
    return me->unwinding = true;
  }
  uintptr_t tid = (uintptr_t)&hak_tls;
  for (int i = 0; i < UNWINDING; i++)
    if (atomic_load_explicit(&unwinding[i], memory_order_relaxed) == tid) return false;
  for (*slot = 0; *slot < UNWINDING; ++*slot) {
    uintptr_t none = 0;
    if (atomic_compare_exchange_strong_explicit(&unwinding[*slot], &none, tid, memory_order_relaxed,
                                                memory_order_relaxed))
      return true;
  }
  return false;
}

static void unwinding_leave(hak_profile_local_t *me, int slot) {
  if (me) me->unwinding = false;
  else atomic_store_explicit(&unwinding[slot], 0, memory_order_relaxed);
}

/* A stack into w, hakmem's own frames left out (they come first). */
static void take_stack(walk_t *w, hak_tick_t now, const hak_frame_t *from) {
  w->n = 0;
  if (!own_unwinder) {
    _Unwind_Backtrace(walk_frame, w);
    return;
  }
  unsigned n = _hak_unwind(w->pc, DEPTH + 8, now, from), i = 0;
  while (i < n && w->pc[i] - own_lo < own_hi - own_lo) i++;
  if (i) memmove(w->pc, w->pc + i, (n - i) * sizeof w->pc[0]); /* a call from inside hakmem (calloc) */
  w->n = n - i < DEPTH ? n - i : DEPTH;
}

/* The executable segment holding this file's code, if it is not the
 * program's own (hakmem linked into a program: its frames stay). */
static int find_own(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  uintptr_t me = (uintptr_t)arg;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X) || me - lo >= ph->p_memsz) continue;
    if (info->dlpi_name && info->dlpi_name[0]) {
      own_lo = lo;
      own_hi = lo + ph->p_memsz;
    }
    return 1;
  }
  return 0;
}

static uint64_t hash_pcs(const uintptr_t *pc, uint32_t n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  for (uint32_t i = 0; i < n; i++) h = (h ^ pc[i]) * 0x100000001b3ull;
  return h | 1;
}

/* Whether s holds w's stack (a loop: the stacks are short, and memcmp's
 * call cost more than the compare). */
static bool site_is(const site_t *s, const walk_t *w) {
  if (s->depth != w->n) return false;
  for (uint32_t i = 0; i < w->n; i++)
    if (s->pc[i] != w->pc[i]) return false;
  return true;
}

/* The site of w's stack, whose hash is h (linear probing): its entry, or
 * the empty one where it would go (*found false); SITE_NONE if the probe
 * went round. */
static uint32_t site_probe(const walk_t *w, uint64_t h, bool *found) {
  for (uint32_t i = (uint32_t)h & (SITES - 1), k = 0; k < SITES; k++, i = (i + 1) & (SITES - 1)) {
    site_t *s = &sites[i];
    uint64_t at = atomic_load_explicit(&s->hash, memory_order_acquire);
    *found = at == h && site_is(s, w);
    if (*found || !at) return i;
  }
  return SITE_NONE;
}

/* The site of w's stack, made if new (under the profile lock); SITE_NONE
 * if the table is full. */
static uint32_t site_of(const walk_t *w) {
  uint64_t h = hash_pcs(w->pc, w->n);
  bool found;
  uint32_t i = site_probe(w, h, &found);
  if (found) return i;
  _hak_lock(&_hak_profile_lock);
  i = site_probe(w, h, &found); /* another thread may have made it */
  if (!found && i != SITE_NONE) {
    if (sites_used >= SITES - SITES / 8) { /* probes stay short */
      i = SITE_NONE;
    } else {
      sites_used++;
      site_t *s = &sites[i];
      s->depth = w->n;
      memcpy(s->pc, w->pc, w->n * sizeof w->pc[0]);
      atomic_store_explicit(&s->hash, h, memory_order_release);
    }
  }
  _hak_unlock(&_hak_profile_lock);
  return i;
}

/* ---- the profile file ------------------------------------------------- */
/* The file of dump n (0: the exit dump): HAKMEM_PROFILE_FILE, else
 * hakmem.PID.heap; a fork child's own adds .PID to a name it inherited,
 * and numbered dumps add .n. */
static void file_name(char *out, size_t cap, uint32_t n) {
  const char *given = hak_opt_text(HAK_TEXT_PROFILE_FILE);
  int pid = _hak_os_getpid();
  hak_buf_t b = {.fd = -1};
  if (given) {
    _hak_buf_str(&b, given);
    if (pid != start_pid) {
      _hak_buf_str(&b, ".");
      _hak_buf_dec(&b, (uint64_t)pid);
    }
  } else {
    _hak_buf_str(&b, "hakmem.");
    _hak_buf_dec(&b, (uint64_t)pid);
    _hak_buf_str(&b, ".heap");
  }
  if (n) {
    _hak_buf_str(&b, ".");
    _hak_buf_dec(&b, n);
  }
  size_t len = b.len < cap - 1 ? b.len : cap - 1;
  memcpy(out, b.data, len);
  out[len] = 0;
}

static void put_counts(hak_buf_t *b, uint64_t lo, uint64_t lb, uint64_t ao, uint64_t ab) {
  _hak_buf_dec(b, lo);
  _hak_buf_str(b, ": ");
  _hak_buf_dec(b, lb);
  _hak_buf_str(b, " [");
  _hak_buf_dec(b, ao);
  _hak_buf_str(b, ": ");
  _hak_buf_dec(b, ab);
  _hak_buf_str(b, "]");
}

/* The shard of a site's counts that the calling thread counts in. */
static shard_t *shard_of(site_t *s, const hak_profile_local_t *me) {
  return &s->shard[me ? me->shard & (SHARDS - 1) : 0];
}

/* s's counts as the profile gives them, its shards added up: live objects
 * and bytes, allocated objects and bytes (the freed ones read first: never
 * more than those allocated). */
static void site_counts(const site_t *s, uint64_t c[4]) {
  c[0] = c[1] = c[2] = c[3] = 0;
  if (!atomic_load_explicit(&s->hash, memory_order_acquire)) return; /* an unused entry */
  uint64_t fo = 0, fb = 0;
  for (unsigned k = 0; k < SHARDS; k++) {
    fo += atomic_load_explicit(&s->shard[k].freed_objs, memory_order_acquire);
    fb += atomic_load_explicit(&s->shard[k].freed_bytes, memory_order_acquire);
  }
  for (unsigned k = 0; k < SHARDS; k++) {
    c[2] += atomic_load_explicit(&s->shard[k].alloc_objs, memory_order_relaxed);
    c[3] += atomic_load_explicit(&s->shard[k].alloc_bytes, memory_order_relaxed);
  }
  c[0] = c[2] > fo ? c[2] - fo : 0;
  c[1] = c[3] > fb ? c[3] - fb : 0;
}

/* The profile to fd: a header with the totals and the sampling rate, a
 * line per stack (live objects: bytes [allocated objects: bytes] @ return
 * addresses; the first less one, as pprof takes the first as the
 * allocation's own address), and the process's mappings, which pprof
 * needs to find each address's object. */
static void write_profile(int fd) {
  hak_buf_t b = {.fd = fd};
  _hak_lock(&_hak_profile_lock);
  uint64_t t[4] = {0, 0, 0, 0}, c[4];
  for (uint32_t i = 0; i < SITES; i++) {
    site_counts(&sites[i], c);
    for (int k = 0; k < 4; k++) t[k] += c[k];
  }
  _hak_buf_str(&b, "heap profile: ");
  put_counts(&b, t[0], t[1], t[2], t[3]);
  _hak_buf_str(&b, " @ heap_v2/");
  _hak_buf_dec(&b, rate);
  _hak_buf_str(&b, "\n");
  for (uint32_t i = 0; i < SITES; i++) {
    const site_t *s = &sites[i];
    site_counts(s, c);
    if (!c[2]) continue;
    put_counts(&b, c[0], c[1], c[2], c[3]);
    _hak_buf_str(&b, " @");
    for (uint32_t k = 0; k < s->depth; k++) {
      _hak_buf_str(&b, " ");
      _hak_buf_hex(&b, s->pc[k] - (k == 0));
    }
    _hak_buf_str(&b, "\n");
  }
  _hak_unlock(&_hak_profile_lock);
  _hak_buf_str(&b, "\nMAPPED_LIBRARIES:\n");
  _hak_buf_flush(&b);
  int maps = _hak_os_open_read("/proc/self/maps");
  if (maps >= 0) {
    long n;
    while ((n = _hak_os_read(maps, b.data, sizeof b.data)) > 0) _hak_os_write(fd, b.data, (size_t)n);
    _hak_os_close(maps);
  }
}

static int dump_to(const char *path) {
  int fd = _hak_os_open_write(path);
  if (fd < 0) return fd;
  write_profile(fd);
  _hak_os_close(fd);
  return 0;
}

/* The next numbered dump. */
static int dump_numbered(void) {
  char path[HAK_TEXT_MAX + 48];
  _hak_lock(&_hak_profile_lock);
  uint32_t n = ++dumps;
  _hak_unlock(&_hak_profile_lock);
  file_name(path, sizeof path, n);
  return dump_to(path);
}

/* ---- the interface ---------------------------------------------------- */
void _hak_profile_start(void) {
  if (!hak_cfg_profile) {
    hak_buf_t b = {.fd = 2};
    _hak_buf_str(&b,
                 "hakmem: HAKMEM_PROFILE: only libhakmem-profile.so samples (hakmem run --profile FILE "
                 "preloads it); not profiling\n");
    _hak_buf_flush(&b);
    return;
  }
  rate = (uint64_t)hak_opt(HAK_OPT_PROFILE_RATE);
  sites = _hak_meta_alloc(SITES * sizeof *sites);
  if (!sites) {
    hak_buf_t b = {.fd = 2};
    _hak_buf_str(&b, "hakmem: HAKMEM_PROFILE: no memory for the profile's tables; not profiling\n");
    _hak_buf_flush(&b);
    return;
  }
  start_pid = _hak_os_getpid();
  shared_left = (int64_t)_hak_profile_interval(&shared_rng);
  growth_step = (uint64_t)hak_opt(HAK_OPT_PROFILE_EVERY_MB) << 20;
  atomic_store_explicit(&next_dump_at, growth_step, memory_order_relaxed);
  dl_iterate_phdr(find_own, (void *)(uintptr_t)&_hak_profile_start);
  own_unwinder = hak_opt(HAK_OPT_PROFILE_UNWIND) && _hak_unwind_start();
  _hak_profile_on = true;
}

/* The live samples' estimate of the memory in use changed by `delta`
 * (growth dumps only): whether it has grown HAKMEM_PROFILE_EVERY_MB since
 * the last growth dump (one thread finds so). */
static bool growth_due(int64_t delta) {
  uint64_t now =
      atomic_fetch_add_explicit(&live_estimate, (uint64_t)delta, memory_order_relaxed) + (uint64_t)delta;
  uint64_t due = atomic_load_explicit(&next_dump_at, memory_order_relaxed);
  return delta > 0 && now >= due &&
         atomic_compare_exchange_strong_explicit(&next_dump_at, &due, now + growth_step, memory_order_relaxed,
                                                 memory_order_relaxed);
}

void _hak_profile_record(hak_sample_t *rec, size_t size, const hak_frame_t *from) {
  walk_t w;
  rec->born = 0;
  hak_profile_local_t *me = hak_tls_profile();
  int slot = -1;
  if (!unwinding_enter(me, &slot)) return;
  hak_tick_t now = _hak_os_ticks();
  take_stack(&w, now, from);
  unwinding_leave(me, slot);
  uint32_t i = site_of(&w);
  if (i == SITE_NONE) {
    atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
    return;
  }
  shard_t *c = shard_of(&sites[i], me);
  atomic_fetch_add_explicit(&c->alloc_objs, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->alloc_bytes, size, memory_order_relaxed);
  *rec = (hak_sample_t){.born = now, .size = size, .site = i};
  if (growth_step && growth_due((int64_t)weight_of(size, 1))) dump_numbered();
}

void _hak_profile_freed(const hak_sample_t *rec, hak_tick_t now) {
  if (!rec->born) return;
  shard_t *c = shard_of(&sites[rec->site], hak_tls_profile());
  uint64_t us = (now - rec->born) * 1000 / _hak_os_ms_ticks(1);
  unsigned k = us < 2 ? 0 : 63u - (unsigned)__builtin_clzll(us);
  atomic_fetch_add_explicit(&c->life[k < LIFE_BUCKETS ? k : LIFE_BUCKETS - 1], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->freed_bytes, rec->size, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->freed_objs, 1, memory_order_release);
  if (growth_step) growth_due(-(int64_t)weight_of(rec->size, 1));
}

int _hak_profile_dump(const char *path) {
  if (!_hak_profile_on) return -EINVAL;
  return path ? dump_to(path) : dump_numbered();
}

void _hak_profile_exit(void) {
  if (!_hak_profile_on) return;
  char path[HAK_TEXT_MAX + 48];
  file_name(path, sizeof path, 0);
  int r = dump_to(path);
  if (r < 0) {
    hak_buf_t b = {.fd = 2};
    _hak_buf_str(&b, "hakmem: HAKMEM_PROFILE: cannot write ");
    _hak_buf_str(&b, path);
    _hak_buf_str(&b, " (errno ");
    _hak_buf_dec(&b, (uint64_t)-r);
    _hak_buf_str(&b, ")\n");
    _hak_buf_flush(&b);
  }
}

/* ---- the per-site summary, for the reports ---------------------------- */

/* The lifetime below which q thousandths of s's freed samples fell, as the
 * bucket's upper end in microseconds (0: none freed). */
static uint64_t life_upto(const site_t *s, unsigned q) {
  uint64_t life[LIFE_BUCKETS] = {0}, n = 0, seen = 0;
  for (unsigned i = 0; i < SHARDS; i++)
    for (unsigned k = 0; k < LIFE_BUCKETS; k++) {
      uint32_t v = atomic_load_explicit(&s->shard[i].life[k], memory_order_relaxed);
      life[k] += v;
      n += v;
    }
  if (!n) return 0;
  for (unsigned k = 0; k < LIFE_BUCKETS; k++)
    if ((seen += life[k]) * 1000 >= n * q) return (uint64_t)2 << k;
  return (uint64_t)2 << (LIFE_BUCKETS - 1);
}

static void put_us(hak_buf_t *b, uint64_t us) {
  static const struct {
    uint64_t us;
    const char *unit;
  } u[] = {{60000000, " min"}, {1000000, " s"}, {1000, " ms"}, {1, " us"}};
  unsigned i = 0;
  while (us < u[i].us && i < 3) i++;
  _hak_buf_dec(b, (us + u[i].us / 2) / u[i].us);
  _hak_buf_str(b, u[i].unit);
}

#define TOP_SITES 10
/* The sites with the most estimated allocated bytes, most first (profile
 * lock); returns how many. */
static unsigned top_sites(uint32_t top[TOP_SITES]) {
  unsigned n = 0;
  uint64_t weight[TOP_SITES], c[4];
  for (uint32_t i = 0; i < SITES; i++) {
    site_counts(&sites[i], c);
    if (!c[2]) continue;
    uint64_t e = weight_of(c[3], c[2]);
    unsigned k = n < TOP_SITES ? n++ : TOP_SITES;
    while (k > 0 && weight[k - 1] < e) {
      if (k < TOP_SITES) {
        top[k] = top[k - 1];
        weight[k] = weight[k - 1];
      }
      k--;
    }
    if (k < TOP_SITES) {
      top[k] = i;
      weight[k] = e;
    }
  }
  return n;
}

/* The module and offset of pc, and its symbol if the module exports one
 * (dladdr allocates nothing). */
static void put_where(hak_buf_t *b, uintptr_t pc) {
  Dl_info info;
  _hak_buf_hex(b, pc);
  if (!dladdr((void *)pc, &info) || !info.dli_fname) return;
  const char *base = info.dli_fname, *slash;
  while ((slash = strchr(base, '/')) != NULL) base = slash + 1;
  _hak_buf_str(b, " ");
  _hak_buf_str(b, base[0] ? base : "program");
  _hak_buf_str(b, "+");
  _hak_buf_hex(b, pc - (uintptr_t)info.dli_fbase);
  if (info.dli_sname) {
    _hak_buf_str(b, " ");
    _hak_buf_str(b, info.dli_sname);
  }
}

void _hak_profile_sites_text(hak_buf_t *b) {
  if (!_hak_profile_on) return;
  uint32_t top[TOP_SITES];
  _hak_lock(&_hak_profile_lock);
  unsigned n = top_sites(top);
  _hak_buf_str(b, "\nsampled allocation sites (HAKMEM_PROFILE, one sample per ");
  _hak_buf_bytes(b, rate);
  _hak_buf_str(b, " on average): ");
  _hak_buf_dec(b, sites_used);
  _hak_buf_str(b, " stacks (");
  _hak_buf_str(b, own_unwinder ? "hakmem's unwinder" : "libgcc's unwinder");
  _hak_buf_str(b, "), ");
  _hak_buf_dec(b, dropped);
  _hak_buf_str(b, " samples dropped; the top ones by bytes allocated\n");
  _hak_buf_str(b, "  allocated   samples   live  lifetime p50    p90  caller\n");
  for (unsigned k = 0; k < n; k++) {
    const site_t *s = &sites[top[k]];
    uint64_t c[4];
    site_counts(s, c);
    _hak_buf_pad(b, 2);
    _hak_buf_bytes(b, weight_of(c[3], c[2]));
    _hak_buf_pad(b, 13);
    _hak_buf_dec(b, c[2]);
    _hak_buf_pad(b, 23);
    _hak_buf_dec(b, c[0] * 100 / c[2]);
    _hak_buf_str(b, "%");
    uint64_t p50 = life_upto(s, 500), p90 = life_upto(s, 900);
    _hak_buf_pad(b, 30);
    if (p50) {
      _hak_buf_str(b, "<");
      put_us(b, p50);
      _hak_buf_pad(b, 45);
      _hak_buf_str(b, "<");
      put_us(b, p90);
    } else {
      _hak_buf_str(b, "(none freed)");
    }
    _hak_buf_pad(b, 54);
    put_where(b, s->depth ? s->pc[0] : 0);
    _hak_buf_str(b, "\n");
  }
  _hak_unlock(&_hak_profile_lock);
}

void _hak_profile_sites_json(hak_buf_t *b) {
  _hak_buf_str(b, "\"profile\":{\"on\":");
  _hak_buf_dec(b, _hak_profile_on);
  if (!_hak_profile_on) {
    _hak_buf_str(b, "}");
    return;
  }
  uint32_t top[TOP_SITES];
  _hak_lock(&_hak_profile_lock);
  unsigned n = top_sites(top);
  _hak_buf_str(b, ",\"rate\":");
  _hak_buf_dec(b, rate);
  _hak_buf_str(b, ",\"unwinder\":\"");
  _hak_buf_str(b, own_unwinder ? "hakmem" : "libgcc");
  _hak_buf_str(b, "\",\"stacks\":");
  _hak_buf_dec(b, sites_used);
  _hak_buf_str(b, ",\"dropped\":");
  _hak_buf_dec(b, dropped);
  _hak_buf_str(b, ",\"sites\":[");
  for (unsigned k = 0; k < n; k++) {
    const site_t *s = &sites[top[k]];
    uint64_t c[4];
    site_counts(s, c);
    _hak_buf_str(b, k ? ",{\"caller\":\"" : "{\"caller\":\"");
    _hak_buf_hex(b, s->depth ? s->pc[0] : 0);
    _hak_buf_str(b, "\",\"allocated_bytes\":");
    _hak_buf_dec(b, weight_of(c[3], c[2]));
    _hak_buf_str(b, ",\"samples\":");
    _hak_buf_dec(b, c[2]);
    _hak_buf_str(b, ",\"live_samples\":");
    _hak_buf_dec(b, c[0]);
    _hak_buf_str(b, ",\"life_p50_us\":");
    _hak_buf_dec(b, life_upto(s, 500));
    _hak_buf_str(b, ",\"life_p90_us\":");
    _hak_buf_dec(b, life_upto(s, 900));
    _hak_buf_str(b, "}");
  }
  _hak_unlock(&_hak_profile_lock);
  _hak_buf_str(b, "]}");
}

HAK_API int hak_profile_dump(const char *path) {
  int r = _hak_profile_dump(path);
  if (r == 0) return 0;
  errno = -r;
  return -1;
}
