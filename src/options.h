/* options.h — the HAKMEM_* options, as X-macros, and how a value is read:
 * the one list and the one parser of the library (options.c) and the
 * launcher (launcher/hakmem.c). It needs nothing of hakmem's.
 *
 * HAK_OPTION_LIST: X(id, variable, default, min, max, description), whole
 * numbers. HAK_OPTION_WORDS: X(id, word, bit), the words a numeric option
 * also takes (a comma-separated list of them sets their bits).
 * HAK_TEXT_OPTION_LIST: X(id, variable, description), options whose value
 * is text (a file name). */
#ifndef HAK_OPTIONS_H
#define HAK_OPTIONS_H

#include <stdbool.h>
#include <string.h>

#define HAK_OPTION_LIST(X)                                                                                   \
  X(VERBOSE, "HAKMEM_VERBOSE", 0, 0, 1, "print the options in force at start-up")                            \
  X(STATS, "HAKMEM_STATS", 0, 0, 3, "at exit print statistics: 1 a line, 2 the report, 3 JSON")              \
  X(STATS_FD, "HAKMEM_STATS_FD", 2, 0, 65535, "file descriptor the exit statistics are written to")          \
  X(INVALID_FREE, "HAKMEM_INVALID_FREE", 2, 0, 2,                                                            \
    "pointer outside hakmem's memory given to free: 0 ignore, 1 report once, 2 abort")                       \
  X(CHECK, "HAKMEM_CHECK", 0, 0, 1, "every free walks the free lists; free_sized checks its size")           \
  X(RETAIN_KB, "HAKMEM_RETAIN_KB", 4096, 0, 1048576, "empty memory kept resident for reuse, at least (KiB)") \
  X(RETAIN_SHARE, "HAKMEM_RETAIN_SHARE", 4, 0, 64,                                                           \
    "and up to 1/N of the memory in use (0: the minimum only)")                                              \
  X(ROOM_MB, "HAKMEM_ROOM_MB", 48, 0, 65536,                                                                 \
    "or up to this much for a thread that keeps reusing it, once purging cost refaults (MiB)")               \
  X(PURGE_DELAY_MS, "HAKMEM_PURGE_DELAY_MS", 10, 0, 60000,                                                   \
    "empty memory past the budget is purged once empty this long (ms)")                                      \
  X(UNMAP_DELAY_MS, "HAKMEM_UNMAP_DELAY_MS", 10000, 0, 3600000,                                              \
    "delay before a wholly free reservation is unmapped")                                                    \
  X(MADV_FREE, "HAKMEM_MADV_FREE", 0, 0, 1, "purge with MADV_FREE instead of MADV_DONTNEED")                 \
  X(THP, "HAKMEM_THP", 0, 0, 2,                                                                              \
    "huge pages: 0 for malloc's Large blocks, else system default; 1 request, 2 forbid")                     \
  X(BIGCACHE_MB, "HAKMEM_BIGCACHE_MB", 32, 0, 65536,                                                         \
    "freed Large mappings kept for reuse (MiB), or 1/RETAIN_SHARE of the live Large bytes if more")          \
  X(BIGCACHE_DECAY_MS, "HAKMEM_BIGCACHE_DECAY_MS", 1000, 0, 3600000,                                         \
    "age after which a cached Large mapping is unmapped")                                                    \
  X(ACE, "HAKMEM_ACE", 0, 0, 1,                                                                              \
    "caches that size themselves: memory purged and taken back is kept; BigCache grows on its misses")       \
  X(REFAULT_KEEP_MS, "HAKMEM_REFAULT_KEEP_MS", 100, 1, 3600000,                                              \
    "with HAKMEM_ACE: the memory kept for being taken back after a purge halves in this many ms")            \
  X(ELO, "HAKMEM_ELO", 0, 0, 1,                                                                              \
    "choose the purge and retention policy by its measured cost, epoch by epoch (Elo ratings)")              \
  X(ELO_EPOCH_MS, "HAKMEM_ELO_EPOCH_MS", 100, 4, 60000, "with HAKMEM_ELO: an epoch's length (ms)")           \
  X(ELO_MIB_US, "HAKMEM_ELO_MIB_US", 100, 0, 1000000,                                                        \
    "with HAKMEM_ELO: what a committed MiB costs per second held, in microseconds of work")                  \
  X(ELO_SEED, "HAKMEM_ELO_SEED", 0, 0, 2147483647,                                                           \
    "with HAKMEM_ELO: the seed of its exploration draws (0: from the clock)")                                \
  X(SITES, "HAKMEM_SITES", 1, 0, 1,                                                                          \
    "learn how long each call site's blocks of 32 KiB and up live; place lasting ones apart")                \
  X(QUARANTINE_KB, "HAKMEM_QUARANTINE_KB", 512, 0, 65536,                                                    \
    "secure build: bytes of freed blocks each thread holds back from reuse (KiB)")                           \
  X(TRACE, "HAKMEM_TRACE", 0, 0, 1, "what to trace on stderr: oom (1), each failed allocation and why")      \
  X(CRASH_REPORT, "HAKMEM_CRASH_REPORT", 0, 0, 1,                                                            \
    "on SIGSEGV, SIGBUS, SIGABRT say what the address is in hakmem's terms, then run the program's action")  \
  X(TIMELINE_MS, "HAKMEM_TIMELINE_MS", 100, 1, 3600000, "interval of the memory timeline (ms)")              \
  X(SAMPLE, "HAKMEM_SAMPLE", 64, 0, 1000000, "time 1 in N slow paths for the latency figures (0: none)")     \
  X(PROFILE, "HAKMEM_PROFILE", 0, 0, 1,                                                                      \
    "sample allocations' call stacks; write a heap profile (pprof's format)")                                \
  X(PROFILE_RATE, "HAKMEM_PROFILE_RATE", 524288, 1, 1073741824,                                              \
    "bytes allocated per sample, on average (a random interval)")                                            \
  X(PROFILE_EVERY_MB, "HAKMEM_PROFILE_EVERY_MB", 0, 0, 1048576,                                              \
    "also write a profile each time the memory in use grows this much (MiB; 0: only at exit)")               \
  X(PROFILE_UNWIND, "HAKMEM_PROFILE_UNWIND", 1, 0, 1,                                                        \
    "take stacks with hakmem's unwinder, which keeps each return address's rules: 1; with libgcc's, far "    \
    "slower: 0")

#define HAK_TRACE_OOM 1 /* HAKMEM_TRACE bit: failed allocations */
#define HAK_OPTION_WORDS(X) X(TRACE, "oom", HAK_TRACE_OOM)

#define HAK_TEXT_OPTION_LIST(X)                                                   \
  X(TIMELINE, "HAKMEM_TIMELINE",                                                  \
    "append a JSON line of memory figures every HAKMEM_TIMELINE_MS to this file") \
  X(PROFILE_FILE, "HAKMEM_PROFILE_FILE",                                          \
    "the heap profile's file (default hakmem.PID.heap; dumps after the first add .N)")
#define HAK_TEXT_MAX 256 /* bytes of a text option's value, with its NUL */

enum {
#define HAK_OPTION_ENUM(id, name, def, lo, hi, desc) HAK_OPT_##id,
  HAK_OPTION_LIST(HAK_OPTION_ENUM)
#undef HAK_OPTION_ENUM
      HAK_OPT_COUNT
};

/* The k-th word option id takes, with its bit; NULL past the last. */
static inline const char *hak_option_word(int id, unsigned k, long *bit) {
  static const struct {
    int id;
    const char *word;
    long bit;
  } w[] = {
#define HAK_OPTION_WORD_ROW(id, word, bit) {HAK_OPT_##id, word, bit},
      HAK_OPTION_WORDS(HAK_OPTION_WORD_ROW)
#undef HAK_OPTION_WORD_ROW
  };
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
    if (w[i].id == id && k-- == 0) {
      *bit = w[i].bit;
      return w[i].word;
    }
  return NULL;
}

/* A value of option id: a whole number in [lo, hi] (decimal, no sign, no
 * suffix) or a comma-separated list of its words (their bits); false if
 * neither. */
static inline bool hak_option_parse(int id, const char *s, long lo, long hi, long *out) {
  long v = 0;
  const char *d = s;
  for (; *d >= '0' && *d <= '9' && v <= (hi - (*d - '0')) / 10; d++) v = v * 10 + (*d - '0');
  if (d != s && !*d && v >= lo) {
    *out = v;
    return true;
  }
  if (!*s) return false;
  v = 0;
  for (const char *w = s; *w;) {
    size_t len = strcspn(w, ",");
    long bit = 0;
    const char *word;
    unsigned k = 0;
    while ((word = hak_option_word(id, k++, &bit)) != NULL &&
           (strlen(word) != len || strncmp(word, w, len) != 0))
      ;
    if (!word) return false;
    v |= bit;
    w += len;
    if (*w == ',' && !*++w) return false;
  }
  *out = v;
  return true;
}

#endif
