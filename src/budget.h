/* budget.h — the part of budget.c that runs on every slab or Large block
 * taken and given back, inline: moving bytes between the totals, and
 * where the empty memory stands against the budget. budget.c says what the
 * budget and the working room are; included at the end of internal.h. */
#ifndef HAK_BUDGET_H
#define HAK_BUDGET_H

#define HAK_MEM_BATCH ((int64_t)4 << 20) /* a heap adds its changes in once one passes this */
#define HAK_ROOM_DRAIN 4                 /* the room shrinks by 1/4 of what becomes empty */
#define HAK_ROOM_LAPSE_MS 1000           /* the room lapses after this without reuse */
#define HAK_ROOM_EVIDENCE 4              /* the room is at most this times the refaults that started it */
#define HAK_ROOM_PEAK_MS 100             /* and the memory in use at reuses as recent as this (budget.c) */

typedef struct hak_mem_totals {
  /* Changed by every thread's flush: */
  _Alignas(64) _Atomic size_t total[2]; /* HAK_MEM_USED: slabs and live Large mappings; HAK_MEM_EMPTY */
  /* Changed seldom, read at every budget check: a line of its own. */
  _Alignas(64) _Atomic int64_t room; /* the heaps' working rooms, as they added them */
  _Atomic hak_tick_t room_until;     /* when the room lapses: HAK_ROOM_LAPSE_MS after the last reuse */
  _Atomic uint32_t earners;          /* heaps with a room */
  _Atomic size_t room_evidence;      /* bytes the budget purged and refaulted since the room last lapsed */
  _Atomic size_t room_used[2];       /* the most memory in use at a reuse: this window, the one before */
  _Atomic hak_tick_t room_window;    /* when this window of HAK_ROOM_PEAK_MS started */
  _Atomic hak_tick_t reuse_delay;    /* HAKMEM_ACE: the purge delay the reuse ages ask for (budget.c) */
  _Atomic size_t refaulted;          /* HAKMEM_ACE: bytes purged and taken back (budget.c) ... */
  _Atomic hak_tick_t refaulted_at;   /* ... as of then: the figure halves every REFAULT_KEEP_MS since */
  _Atomic hak_tick_t trimmed_at;     /* the last malloc_trim: memory freed before it proves nothing */
  _Atomic hak_tick_t refault_last;   /* the last refault (to within 1/16 of the room's lapse), 0: none */
  _Atomic bool ace_yields;           /* HAKMEM_ACE: fresh memory went past what it keeps (budget.c) */
  _Atomic size_t fresh;              /* HAKMEM_ACE: committed since the empty memory passed the budget */
  _Atomic uint64_t ace_yielded;      /* HAKMEM_ACE: how many times it yielded */
  _Alignas(64) _Atomic size_t committed, peak;
  _Atomic uint64_t taken; /* bytes taken into use so far, as the heaps added them (HAKMEM_ELO's volume) */
  _Atomic uint64_t reuse[HAK_AGE_BUCKETS]; /* HAKMEM_ACE: KiB of empty memory reused, by age, as added */
} hak_mem_totals_t;
extern hak_mem_totals_t _hak_mem;
void _hak_room_add(hak_budget_local_t *b);     /* b's room change into the total room */
void _hak_room_reused(void);                   /* a reuse: the room does not lapse yet */
void _hak_mem_refaulted(size_t bytes);         /* purged memory taken back (rooms start; HAKMEM_ACE: kept) */
void _hak_mem_refaulted_forget(void);          /* malloc_trim: no room starts, nothing is kept for refaults */
void _hak_budget_taken(hak_budget_local_t *b); /* b's bytes taken into use (and reuse ages) into the totals */
void _hak_reuse_shared(size_t bytes, unsigned k); /* a reuse by a thread without a heap */

/* HAKMEM_ACE: empty memory reused `age` ticks after it became empty (a
 * slab's units, resident or purged; a BigCache mapping), counted by age:
 * bucket k holds ages of [2^k, 2^(k+1)) ticks >> HAK_AGE_SHIFT (0: below
 * 2), the last all older ones. */
static inline void hak_mem_reuse_age(size_t bytes, hak_tick_t age) {
  if (!hak_opt(HAK_OPT_ACE)) return;
  uint64_t a = age >> HAK_AGE_SHIFT;
  unsigned k = a < 2 ? 0 : 63u - (unsigned)__builtin_clzll(a);
  if (k >= HAK_AGE_BUCKETS) k = HAK_AGE_BUCKETS - 1;
  hak_budget_local_t *b = hak_tls_budget();
  if (b) b->reuse[k] += bytes >> 10;
  else _hak_reuse_shared(bytes, k);
}

/* Whether purged memory that became empty at `freed` (tick >> HAK_AGE_SHIFT)
 * and is taken back now counts as a refault: if it was freed after the
 * last malloc_trim. */
static inline bool hak_refault_counts(uint32_t freed) {
  hak_tick_t trimmed = atomic_load_explicit(&_hak_mem.trimmed_at, memory_order_relaxed);
  return !trimmed || (int32_t)(freed - (uint32_t)(trimmed >> HAK_AGE_SHIFT)) > 0;
}

static inline bool hak_mem_batch_full(int64_t delta) {
  return (uint64_t)(delta + HAK_MEM_BATCH) > (uint64_t)(2 * HAK_MEM_BATCH);
}

/* The room of b (the calling thread's) changes by delta. */
static inline void hak_room_move(hak_budget_local_t *b, int64_t delta) {
  int64_t cap = (int64_t)hak_opt(HAK_OPT_ROOM_MB) << 20, r = b->room + delta;
  r = r < 0 ? 0 : r > cap ? cap : r;
  if ((r > 0) != (b->room > 0))
    atomic_fetch_add_explicit(&_hak_mem.earners, r > 0 ? 1u : (uint32_t)-1, memory_order_relaxed);
  b->room = r;
  if (hak_mem_batch_full(b->room - b->room_added)) _hak_room_add(b);
  else if (delta > 0 && r == cap) _hak_room_reused(); /* reuse at the cap keeps the room too */
}

/* bytes move from one total to another (HAK_MEM_NONE: to or from outside). */
static inline void hak_mem_move(size_t bytes, int from, int to) {
  hak_budget_local_t *b = hak_tls_budget();
  if (!b) {
    if (from != HAK_MEM_NONE) atomic_fetch_sub_explicit(&_hak_mem.total[from], bytes, memory_order_relaxed);
    if (to != HAK_MEM_NONE) atomic_fetch_add_explicit(&_hak_mem.total[to], bytes, memory_order_relaxed);
    return;
  }
  if (to == HAK_MEM_EMPTY) hak_room_move(b, -(int64_t)(bytes / HAK_ROOM_DRAIN));
  if (from != HAK_MEM_NONE) b->delta[from] -= (int64_t)bytes;
  if (to != HAK_MEM_NONE) b->delta[to] += (int64_t)bytes;
  if (to == HAK_MEM_USED && (b->taken += bytes) >= (uint64_t)HAK_MEM_BATCH) _hak_budget_taken(b);
  if (hak_mem_batch_full(b->delta[0]) || hak_mem_batch_full(b->delta[1])) _hak_budget_flush(b);
}

/* Whether memory the budget purged was faulted in again, by any thread,
 * within the last HAK_ROOM_LAPSE_MS (budget.c: a room starts only then). */
static inline bool hak_refaulted_lately(void) {
  hak_tick_t at = atomic_load_explicit(&_hak_mem.refault_last, memory_order_relaxed);
  return at && _hak_os_ticks() - at < _hak_os_ms_ticks(HAK_ROOM_LAPSE_MS);
}

/* Empty memory taken back for reuse (hak_mem_move takes it off the total):
 * the room grows, if the thread has one or purging has lately cost a
 * refault. */
static inline void hak_mem_reused(size_t bytes) {
  hak_budget_local_t *b = hak_tls_budget();
  if (b && (b->room || hak_refaulted_lately())) hak_room_move(b, (int64_t)bytes);
}

/* A total as this thread sees it: with a heap, as of its last flush or
 * look plus its own changes since (reading it touches no line other
 * threads write); without, the shared total. */
static inline size_t hak_mem_total(hak_budget_local_t *b, int w) {
  int64_t v =
      b ? b->seen[w] + b->delta[w] : (int64_t)atomic_load_explicit(&_hak_mem.total[w], memory_order_relaxed);
  return v < 0 ? 0 : (size_t)v;
}

/* The most memory in use at a reuse within the last HAK_ROOM_PEAK_MS (to
 * twice that): the window that started at room_window counts until a
 * window's length after its end, the one before until its end. */
static inline size_t hak_room_used_lately(hak_tick_t now) {
  hak_tick_t w = _hak_os_ms_ticks(HAK_ROOM_PEAK_MS),
             since = now - atomic_load_explicit(&_hak_mem.room_window, memory_order_relaxed);
  size_t lately = since < 2 * w ? atomic_load_explicit(&_hak_mem.room_used[0], memory_order_relaxed) : 0;
  if (since < w) {
    size_t before = atomic_load_explicit(&_hak_mem.room_used[1], memory_order_relaxed);
    if (before > lately) lately = before;
  }
  return lately;
}

/* The working room in force: earned, not lapsed, at most the most memory
 * in use at a reuse lately, or now (so a small program does not keep
 * ROOM_MB for a few MiB of blocks), and HAK_ROOM_EVIDENCE times the
 * refaults since it started (budget.c); none under a policy without it
 * (elo.c). */
static inline size_t hak_room_in_force(hak_budget_local_t *b, size_t used, hak_tick_t now) {
  if (!hak_policy()->room || now >= atomic_load_explicit(&_hak_mem.room_until, memory_order_relaxed))
    return 0;
  int64_t room = atomic_load_explicit(&_hak_mem.room, memory_order_relaxed);
  if (b) room += b->room - b->room_added; /* with this thread's own room as it is */
  uint32_t earners = atomic_load_explicit(&_hak_mem.earners, memory_order_relaxed);
  int64_t one = (int64_t)hak_opt(HAK_OPT_ROOM_MB) << 20, cap = earners > 2 ? one / 2 * earners : one;
  int64_t proven =
      (int64_t)atomic_load_explicit(&_hak_mem.room_evidence, memory_order_relaxed) * HAK_ROOM_EVIDENCE;
  if (cap > proven) cap = proven;
  size_t lately = hak_room_used_lately(now);
  if (lately < used) lately = used;
  room = room < 0 ? 0 : room > cap ? cap : room;
  return (size_t)room < lately ? (size_t)room : lately;
}

/* HAKMEM_ACE: whether it yields, its keep and purge delay off (budget.c). */
static inline bool hak_ace_yields(void) {
  return atomic_load_explicit(&_hak_mem.ace_yields, memory_order_relaxed);
}

/* HAKMEM_ACE: the memory kept for refaults as of `now` (budget.c); none
 * while it yields. */
static inline size_t hak_refault_keep(hak_tick_t now) {
  size_t r = atomic_load_explicit(&_hak_mem.refaulted, memory_order_relaxed);
  if (!r || hak_ace_yields()) return 0;
  hak_tick_t since = now - atomic_load_explicit(&_hak_mem.refaulted_at, memory_order_relaxed);
  uint64_t halves = since / _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_REFAULT_KEEP_MS));
  return halves >= 64 ? 0 : r >> halves;
}

/* The budget as of `now`, as the policy in force scales it (elo.c); with
 * HAKMEM_ACE's keep if `ace`. */
static inline size_t hak_budget_of(hak_budget_local_t *b, hak_tick_t now, bool ace) {
  const hak_policy_t *pol = hak_policy();
  size_t min = (size_t)hak_opt(HAK_OPT_RETAIN_KB) << 10, used = hak_mem_total(b, HAK_MEM_USED);
  long share = hak_opt(HAK_OPT_RETAIN_SHARE);
  size_t dyn = share ? used / (size_t)share : 0, room = hak_room_in_force(b, used, now);
  size_t budget = (dyn > min ? dyn : min) * pol->budget_x4 / 4, keep = ace ? hak_refault_keep(now) : 0;
  if (keep > budget) budget = keep;
  if (pol->to_peak) {
    size_t peak = atomic_load_explicit(&_hak_mem.peak, memory_order_relaxed);
    if (peak > budget) budget = peak;
  }
  return room > budget ? room : budget;
}

static inline size_t hak_budget(hak_budget_local_t *b, hak_tick_t now) { return hak_budget_of(b, now, true); }

/* Where the empty memory stands against the budget (past twice it, it is
 * purged at once, however young). A heap looks at the shared totals again
 * once a millisecond has passed since it last did: what other threads
 * changed meanwhile, above all what exiting threads gave back, then counts
 * in its decisions (a line other threads write is read at most once a
 * millisecond per thread); HAKMEM_ELO's epoch ends then if its time is up. */
static inline int hak_budget_excess(hak_tick_t now) {
  hak_budget_local_t *b = hak_tls_budget();
  if (b && now >= b->look_at) {
    b->look_at = now + _hak_os_ms_ticks(1);
    for (int w = 0; w < 2; w++)
      b->seen[w] = (int64_t)atomic_load_explicit(&_hak_mem.total[w], memory_order_relaxed);
    if (now >= atomic_load_explicit(&_hak_elo_due, memory_order_relaxed))
      _hak_elo_tick(now, atomic_load_explicit(&_hak_mem.committed, memory_order_relaxed),
                    atomic_load_explicit(&_hak_mem.taken, memory_order_relaxed),
                    atomic_load_explicit(&_hak_mem.reuse_delay, memory_order_relaxed));
  }
  size_t empty = hak_mem_total(b, HAK_MEM_EMPTY), budget = hak_budget(b, now);
  return empty > 2 * budget ? HAK_MEM_FAR_OVER : empty > budget ? HAK_MEM_OVER : HAK_MEM_WITHIN;
}

static inline bool hak_budget_over(void) { return hak_budget_excess(_hak_os_ticks()) != HAK_MEM_WITHIN; }

/* Once over, purging goes down to three quarters of the budget, so it runs
 * in batches and keeps most of the room. */
static inline bool hak_budget_above_target(void) {
  hak_budget_local_t *b = hak_tls_budget();
  return hak_mem_total(b, HAK_MEM_EMPTY) > hak_budget(b, _hak_os_ticks()) / 4 * 3;
}

/* PURGE_DELAY_MS in ticks, or longer if the reuse ages ask for it
 * (HAKMEM_ACE, budget.c, unless it yields), as the policy in force scales
 * it: memory empty for less is not purged (unless far over the budget). */
static inline hak_tick_t hak_purge_delay(void) {
  hak_tick_t d = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_PURGE_DELAY_MS)),
             reuse = atomic_load_explicit(&_hak_mem.reuse_delay, memory_order_relaxed);
  if (reuse > d && !hak_ace_yields()) d = reuse;
  return d * hak_policy()->delay_x4 / 4;
}

/* Whether a purge pass that set `at` for its next look (_hak_purge_next:
 * at most the purge delay ahead) is due: at or past it, or if `at` lies
 * further ahead than the delay in force, which a longer one set
 * (HAKMEM_ACE yielded, or HAKMEM_ELO's policy changed). */
static inline bool hak_purge_due(hak_tick_t now, hak_tick_t at) {
  return now >= at || at - now > hak_purge_delay();
}

#endif
