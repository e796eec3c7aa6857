/* os.c — every system call hakmem makes, and its one clock. System calls
 * are issued directly (inline `syscall` instruction), not through libc: no
 * allocator path can re-enter an interposed libc function, holding a lock
 * across one is harmless, and errno is never touched. The clock is the
 * TSC (hak_tick_t), calibrated against CLOCK_MONOTONIC. A refused mapping
 * is noted for failure.c in the calling thread's record (its heap's, over
 * the one thread-local). The bottom layer: it calls nothing of hakmem's. */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>

#include "internal.h"

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}
#define SYS(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

static bool is_error(long r) { return (unsigned long)r > (unsigned long)-4096L; }

static hak_refusal_t refusal_shared;

hak_refusal_t *_hak_os_refusal(void) {
  hak_refusal_t *r = hak_tls_refusal();
  return r ? r : &refusal_shared;
}

/* The memory system calls, counted by kind: calls, bytes asked, and the
 * time spent in them (TSC ticks: two reads of the counter beside a system
 * call). */
static _Atomic uint64_t sys_calls[HAK_SYS_KINDS], sys_bytes[HAK_SYS_KINDS], sys_ticks[HAK_SYS_KINDS];

static long memcall(int kind, size_t bytes, long n, long a, long b, long c, long d, long e, long f) {
  hak_tick_t t0 = _hak_os_ticks();
  long r = sys6(n, a, b, c, d, e, f);
  atomic_fetch_add_explicit(&sys_ticks[kind], _hak_os_ticks() - t0, memory_order_relaxed);
  atomic_fetch_add_explicit(&sys_calls[kind], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&sys_bytes[kind], bytes, memory_order_relaxed);
  return r;
}
#define MEMCALL(kind, bytes, n, a, b, c) \
  memcall((kind), (bytes), (n), (long)(a), (long)(b), (long)(c), 0, 0, 0)

void _hak_os_calls(uint64_t calls[HAK_SYS_KINDS], uint64_t bytes[HAK_SYS_KINDS], uint64_t ns[HAK_SYS_KINDS]) {
  uint64_t per_ms = _hak_os_ms_ticks(1);
  for (int k = 0; k < HAK_SYS_KINDS; k++) {
    calls[k] = atomic_load_explicit(&sys_calls[k], memory_order_relaxed);
    bytes[k] = atomic_load_explicit(&sys_bytes[k], memory_order_relaxed);
    ns[k] = (uint64_t)((unsigned __int128)atomic_load_explicit(&sys_ticks[k], memory_order_relaxed) *
                       1000000 / per_ms);
  }
}

static void *map_raw(size_t size, int prot) {
  long r = memcall(HAK_SYS_MMAP, size, SYS_mmap, 0, (long)size, prot,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (!is_error(r)) return (void *)r;
  *_hak_os_refusal() = (hak_refusal_t){.bytes = size, .err = (int)-r};
  return NULL;
}

static void *map_aligned(size_t size, size_t align, int prot) {
  if (align <= HAK_PAGE) return map_raw(size, prot);
  /* Over-map by the alignment and cut the ends off. */
  size_t span = size + align - HAK_PAGE;
  if (span < size) return NULL;
  char *p = map_raw(span, prot);
  if (!p) return NULL;
  char *start = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
  if (start > p) MEMCALL(HAK_SYS_MUNMAP, (size_t)(start - p), SYS_munmap, p, start - p, 0);
  char *end = start + size, *map_end = p + span;
  if (map_end > end) MEMCALL(HAK_SYS_MUNMAP, (size_t)(map_end - end), SYS_munmap, end, map_end - end, 0);
  return start;
}

void *_hak_os_map(size_t size, size_t align) { return map_aligned(size, align, PROT_READ | PROT_WRITE); }

void *_hak_os_reserve(size_t size, size_t align) { return map_aligned(size, align, PROT_NONE); }

void *_hak_os_map_at(void *p, size_t size) {
  long r = memcall(HAK_SYS_MMAP, size, SYS_mmap, (long)p, (long)size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
  if (is_error(r)) return NULL;
  if ((void *)r == p) return p;
  MEMCALL(HAK_SYS_MUNMAP, size, SYS_munmap, r, size, 0); /* a kernel before 4.17 took p as a hint */
  return NULL;
}

int _hak_os_unmap(void *p, size_t size) { return (int)MEMCALL(HAK_SYS_MUNMAP, size, SYS_munmap, p, size, 0); }

int _hak_os_protect(void *p, size_t size, bool access) {
  return (int)MEMCALL(HAK_SYS_MPROTECT, size, SYS_mprotect, p, size,
                      access ? PROT_READ | PROT_WRITE : PROT_NONE);
}

int _hak_os_discard(void *p, size_t size) {
  long r = memcall(HAK_SYS_MMAP, size, SYS_mmap, (long)p, (long)size, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  return is_error(r) ? (int)r : 0;
}

int _hak_os_purge(void *p, size_t size, bool lazy) {
  return (int)MEMCALL(HAK_SYS_MADVISE, size, SYS_madvise, p, size, lazy ? MADV_FREE : MADV_DONTNEED);
}

int _hak_os_hugepage(void *p, size_t size, int mode) {
  return (int)MEMCALL(HAK_SYS_MADVISE, size, SYS_madvise, p, size,
                      mode == 1 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
}

void *_hak_os_remap(void *p, size_t old_size, size_t new_size, void *fixed) {
  long flags = fixed ? MREMAP_MAYMOVE | MREMAP_FIXED : 0;
  long r = memcall(HAK_SYS_MREMAP, new_size, SYS_mremap, (long)p, (long)old_size, (long)new_size, flags,
                   (long)fixed, 0);
  return is_error(r) ? NULL : (void *)r;
}

void *_hak_os_move(void *p, size_t size, void *to) {
  long r = memcall(HAK_SYS_MREMAP, size, SYS_mremap, (long)p, (long)size, (long)size,
                   MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, (long)to, 0);
  return is_error(r) ? NULL : (void *)r;
}

long _hak_os_write(int fd, const void *buf, size_t n) {
  const char *c = buf;
  size_t done = 0;
  while (done < n) {
    long r = SYS(SYS_write, fd, c + done, n - done);
    if (r == -EINTR) continue;
    if (r <= 0) return done ? (long)done : r;
    done += (size_t)r;
  }
  return (long)done;
}

void _hak_os_futex_wait(_Atomic int *addr, int val) {
  sys6(SYS_futex, (long)addr, FUTEX_WAIT_PRIVATE, val, 0, 0, 0);
}

void _hak_os_futex_wake(_Atomic int *addr, int n) {
  sys6(SYS_futex, (long)addr, FUTEX_WAKE_PRIVATE, n, 0, 0, 0);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  /* vDSO-free, so it is safe under any lock; called only on slow paths. */
  SYS(SYS_clock_gettime, CLOCK_MONOTONIC, &ts, 0);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The TSC's rate, measured against the monotonic clock over the first
 * CALIBRATE_MS after the first call (which hakmem's initialisation makes);
 * until then an assumed 3 GHz. */
#define CALIBRATE_MS 20
#define ASSUMED_TICKS_PER_MS 3000000
static _Atomic uint64_t cal_ms, cal_tsc;
_Atomic uint64_t _hak_os_tick_rate; /* ticks per ms once measured; 0 until then */

uint64_t _hak_os_ticks_per_ms(void) {
  uint64_t t = atomic_load_explicit(&_hak_os_tick_rate, memory_order_relaxed);
  if (t) return t;
  uint64_t ms = now_ms(), tsc = _hak_os_ticks();
  uint64_t tsc0 = atomic_load_explicit(&cal_tsc, memory_order_acquire);
  if (!tsc0) {
    atomic_store_explicit(&cal_ms, ms, memory_order_relaxed);
    atomic_store_explicit(&cal_tsc, tsc, memory_order_release);
    return ASSUMED_TICKS_PER_MS;
  }
  uint64_t ms0 = atomic_load_explicit(&cal_ms, memory_order_relaxed);
  if (ms - ms0 < CALIBRATE_MS || tsc <= tsc0) return ASSUMED_TICKS_PER_MS;
  t = (tsc - tsc0) / (ms - ms0);
  atomic_store_explicit(&_hak_os_tick_rate, t, memory_order_relaxed);
  return t;
}

_Atomic uint64_t _hak_secret;

/* From getrandom, or (no entropy yet, or an old kernel) from the clock and
 * addresses, which differ from run to run with ASLR. The first thread to
 * make one sets it. */
void _hak_os_make_secret(void) {
  if (hak_secret()) return;
  uint64_t v = 0;
  if (SYS(SYS_getrandom, &v, sizeof v, 1 /* GRND_NONBLOCK */) != (long)sizeof v)
    v = _hak_os_ticks() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)&v ^ ((uintptr_t)&_hak_secret << 17);
  v |= (uint64_t)1 << 63; /* never 0 */
  uint64_t expect = 0;
  atomic_compare_exchange_strong(&_hak_secret, &expect, v);
}

int _hak_os_getpid(void) { return (int)SYS(SYS_getpid, 0, 0, 0); }

int _hak_os_peek(const void *p, void *out, size_t n) {
  struct iovec local = {out, n}, remote = {(void *)p, n};
  long r = sys6(SYS_process_vm_readv, SYS(SYS_getpid, 0, 0, 0), (long)&local, 1, (long)&remote, 1, 0);
  return r == (long)n ? 0 : is_error(r) ? (int)r : -EFAULT;
}

void _hak_os_raise(int sig) { SYS(SYS_tgkill, SYS(SYS_getpid, 0, 0, 0), SYS(SYS_gettid, 0, 0, 0), sig); }

int _hak_os_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  return sigaction(sig, act, old);
}

int _hak_os_sigaltstack(void *stack, size_t size) {
  stack_t alt = {.ss_sp = stack, .ss_size = size};
  return sigaltstack(&alt, NULL);
}

int _hak_os_open_append(const char *path) {
  return (int)SYS(SYS_open, path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int _hak_os_open_write(const char *path) {
  return (int)SYS(SYS_open, path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
}

int _hak_os_open_read(const char *path) { return (int)SYS(SYS_open, path, O_RDONLY | O_CLOEXEC, 0); }

long _hak_os_read(int fd, void *buf, size_t n) {
  long r;
  while ((r = SYS(SYS_read, fd, buf, n)) == -EINTR)
    ;
  return r;
}

void _hak_os_close(int fd) { SYS(SYS_close, fd, 0, 0); }

/* /proc/self/statm's second field: resident pages. */
size_t _hak_os_rss(void) {
  char buf[128];
  int fd = (int)SYS(SYS_open, "/proc/self/statm", O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return 0;
  long n = SYS(SYS_read, fd, buf, sizeof buf - 1);
  SYS(SYS_close, fd, 0, 0);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *p = buf;
  while (*p && *p != ' ') p++;
  size_t pages = 0;
  for (p++; *p >= '0' && *p <= '9'; p++) pages = pages * 10 + (size_t)(*p - '0');
  return pages * HAK_PAGE;
}

void _hak_os_usage(hak_usage_t *u) {
  struct rusage ru = {0};
  SYS(SYS_getrusage, RUSAGE_SELF, &ru, 0);
  u->minor_faults = (uint64_t)ru.ru_minflt;
  u->major_faults = (uint64_t)ru.ru_majflt;
  u->sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
  u->cpu_us = u->sys_us + (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec;
}

uint64_t _hak_os_wall_ms(void) {
  struct timespec ts = {0, 0};
  SYS(SYS_clock_gettime, CLOCK_REALTIME, &ts, 0);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void _hak_os_sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (SYS(SYS_nanosleep, &ts, &ts, 0) == -EINTR)
    ;
}

void _hak_os_abort(void) {
  SYS(SYS_kill, SYS(SYS_getpid, 0, 0, 0), 6 /* SIGABRT */, 0);
  for (;;) SYS(SYS_exit_group, 127, 0, 0);
}
