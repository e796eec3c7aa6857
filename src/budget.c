/* budget.c — how much empty memory hakmem keeps, and when it purges: the
 * totals of memory used and empty, committed memory, the working room, and
 * every decision the purging code acts on (superslab.c, pool.c, heap.c and
 * large.c carry them out).
 *
 * The budget of empty committed memory (spare slabs, free units not yet
 * purged, resident BigCache mappings) is RETAIN_KB, or 1/RETAIN_SHARE of
 * the memory in use, or the working room, whichever is more. So a steady
 * churn keeps its working room, and after a burst is freed the room
 * shrinks with it. Each place that adds empty memory while over the budget
 * purges or gives back its own: what has been empty for PURGE_DELAY_MS
 * (memory the program takes again within that is never purged, and most
 * of a churn's is), and past twice the budget anything, oldest first.
 *
 * The working room is the sum of the rooms the thread heaps earn by reuse:
 * a heap's grows by each byte of empty memory its thread takes back (a
 * dirty unit, a spare slab, a resident BigCache mapping; and units the
 * budget purged, whose refault shows that keeping them would have paid)
 * and shrinks by a quarter of each byte its thread makes empty, within
 * 0..ROOM_MB. A thread that keeps reusing its empty memory (at least a
 * quarter of what it frees comes back before it is purged) keeps up to
 * ROOM_MB of it resident and pays neither purges nor refaults; N such
 * threads keep up to ROOM_MB or N/2 times it, whichever is more (each has
 * holes of its own to refill, and two share what one would keep); a thread
 * that only allocates fresh memory and frees it (a burst) earns none, and
 * what it frees past the budget is purged; one that repeats the burst
 * faults the purged memory in again, which earns the room. The room also
 * lapses once no heap has taken empty memory back for HAK_ROOM_LAPSE_MS,
 * counts for no more than the most memory in use at a reuse in the last
 * HAK_ROOM_PEAK_MS (to twice that), or now: a small program does not keep
 * ROOM_MB for a few MiB of blocks; a burst freed whole keeps its room for
 * its repetition, where the memory in use at the free, none, would drop it
 * (phases: bursts of 64 MiB, 1.3x faster); a program that shrinks for good
 * has its room follow it down within 200 ms (bounded by the most memory in
 * use since the room started instead, fragment/pool kept 29-30 MiB after
 * its drop against 11.6, with the window 11.6-12.8), but what it frees
 * within them stays as long (mem_efficiency's RSS right after its last
 * free: 35-37 -> 58-63 MiB). It leaves with its thread; a thread's
 * malloc_trim empties its own. Threads without a heap earn none. A room
 * starts only on evidence that purging costs: while a heap has none, its
 * reuse earns one only if memory the budget purged was faulted in again,
 * by any thread, within the last HAK_ROOM_LAPSE_MS (hak_refaulted_lately).
 * Reuse that no purge ever disturbed (a program whose frees the budget and
 * the purge delay already cover) proves nothing, and earned a room the
 * size of the memory in use for nothing (CPython: 18 MiB more peak RSS); a
 * churn past the budget pays its first purges and refaults, then keeps its
 * room. The room in force is at most HAK_ROOM_EVIDENCE times the bytes
 * refaulted since it started (since the last lapse): a churn whose room
 * falls short refaults more and so earns more, and a few hundred KiB
 * faulted in again do not prove a room of ROOM_MB (CPython: three refaults
 * of 1.1 MiB in all earned one of 30-46 MiB, which kept the 17 MiB its
 * pool freed as a 16 MiB string mapped fresh pages: 10 MiB more peak RSS).
 *
 * With HAKMEM_ACE, memory that the budget purged (not malloc_trim), freed
 * since the last malloc_trim, and that is taken back (its pages fault in
 * again) is evidence that the purge was wrong: the budget is at
 * least the bytes taken back so, however little is in use, up to the peak
 * of committed memory; the figure halves every HAKMEM_REFAULT_KEEP_MS without
 * a refault (hak_refault_keep). A program that frees a burst of blocks and
 * allocates them again pays the faults of one burst, not of every one;
 * one that stops doing it keeps the memory for a few hundred milliseconds.
 * malloc_trim forgets it all. HAKMEM_ACE also counts how long the empty
 * memory taken again had been empty (hak_mem_reuse_age: units, resident or
 * purged, and BigCache mappings), and the purge delay becomes long enough
 * for 99 % of the bytes reused lately (reuse_delay_update), never shorter
 * than PURGE_DELAY_MS: a program that comes back to its memory after
 * 40 ms finds it resident.
 *
 * Both keep memory past the budget the options give (the static budget)
 * for a program that takes it back. One that commits fresh memory instead
 * shows that what is kept does not fit what it takes now (a burst's small
 * slabs kept while large blocks grow, a phase's freed classes while the
 * next takes others): once the bytes committed since the empty memory
 * passed the static budget pass the excess, HAKMEM_ACE yields (ace_fresh):
 * no keep, the option's purge delay, and the purge passes that the long
 * delay had put off run at the next slow path (hak_purge_due), before a
 * Large block or a one-block run maps fresh pages too (large.c, heap.c). So what ACE keeps
 * never adds to the peak a phase of other shapes reaches (mem_efficiency:
 * 241 -> 226 MiB, the static policy's; tests/rss's mixed load: RSS within
 * its bound at every sample, 27 of 60 over before). It stands again at the
 * next refault, which is new evidence, or once the empty memory is back
 * within the static budget.
 *
 * The policy in force (elo.c; "static" without HAKMEM_ELO) scales the
 * purge delay and the budget, may leave the room out, and may raise the
 * budget to the peak of committed memory (hak_budget, hak_purge_delay).
 *
 * A thread gathers its changes to the totals in its heap and adds them in
 * once one passes HAK_MEM_BATCH, so that threads churning large blocks do not all
 * write one cache line; each total is off by less than that per thread
 * (and may dip below 0 for a moment: readers clamp). A thread reads the
 * totals as they were at its own last flush or look, plus its own changes
 * since: the thread giving memory back flushes as it goes, and so sees it
 * pass the budget, and it looks at the totals again every millisecond
 * (what exiting threads gave back then counts). Threads without a heap add
 * theirs at once. The accounting and the budget checks that run with every
 * slab or block taken and given back are inline, in budget.h. */
#include "internal.h"

hak_mem_totals_t _hak_mem;

/* HAKMEM_ACE: `bytes` committed (fresh pages, or purged ones taken back);
 * whether it yields now, or stands again (the top). Threads committing at
 * once may lose one another's bytes: the count is an estimate. */
static void ace_fresh(size_t bytes) {
  hak_budget_local_t *b = hak_tls_budget();
  size_t empty = hak_mem_total(b, HAK_MEM_EMPTY), budget = hak_budget_of(b, _hak_os_ticks(), false);
  if (empty <= budget) {
    if (atomic_load_explicit(&_hak_mem.fresh, memory_order_relaxed))
      atomic_store_explicit(&_hak_mem.fresh, 0, memory_order_relaxed);
    if (hak_ace_yields()) atomic_store_explicit(&_hak_mem.ace_yields, false, memory_order_relaxed);
    return;
  }
  size_t fresh = atomic_fetch_add_explicit(&_hak_mem.fresh, bytes, memory_order_relaxed) + bytes;
  if (fresh <= empty - budget || hak_ace_yields()) return;
  atomic_store_explicit(&_hak_mem.ace_yields, true, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_mem.ace_yielded, 1, memory_order_relaxed);
}

void _hak_committed_add(ptrdiff_t bytes) {
  size_t now =
      atomic_fetch_add_explicit(&_hak_mem.committed, (size_t)bytes, memory_order_relaxed) + (size_t)bytes;
  if (bytes <= 0) return;
  hak_atomic_max(&_hak_mem.peak, now);
  if (hak_opt(HAK_OPT_ACE)) ace_fresh((size_t)bytes);
}

/* A reuse keeps the room from lapsing (to within 1/16 of the lapse: a
 * shared line written rarely), and the memory in use now bounds the room
 * for the next HAK_ROOM_PEAK_MS to twice that (hak_room_used_lately). */
void _hak_room_reused(void) {
  hak_tick_t now = _hak_os_ticks(), w = _hak_os_ms_ticks(HAK_ROOM_PEAK_MS),
             since = now - atomic_load_explicit(&_hak_mem.room_window, memory_order_relaxed);
  size_t used = hak_mem_total(hak_tls_budget(), HAK_MEM_USED);
  if (since >= w) { /* a window starts; the one that ended counts if it ended within one's length */
    size_t ended = since < 2 * w ? atomic_load_explicit(&_hak_mem.room_used[0], memory_order_relaxed) : 0;
    atomic_store_explicit(&_hak_mem.room_used[1], ended, memory_order_relaxed);
    atomic_store_explicit(&_hak_mem.room_used[0], used, memory_order_relaxed);
    atomic_store_explicit(&_hak_mem.room_window, now, memory_order_relaxed);
  } else if (used > atomic_load_explicit(&_hak_mem.room_used[0], memory_order_relaxed) / 8 * 9) {
    hak_atomic_max(&_hak_mem.room_used[0], used); /* to within 1/8: a line every budget check reads */
  }
  hak_tick_t lapse = _hak_os_ms_ticks(HAK_ROOM_LAPSE_MS), until = now + lapse;
  if (until - atomic_load_explicit(&_hak_mem.room_until, memory_order_relaxed) > lapse / 16)
    atomic_store_explicit(&_hak_mem.room_until, until, memory_order_relaxed);
}

/* Threads refaulting at once may lose one another's bytes: the figure is
 * an estimate, and the next refault corrects it. */
void _hak_mem_refaulted(size_t bytes) {
  if (!bytes) return;
  hak_tick_t now = _hak_os_ticks(), lapse = _hak_os_ms_ticks(HAK_ROOM_LAPSE_MS),
             last = atomic_load_explicit(&_hak_mem.refault_last, memory_order_relaxed);
  /* The evidence starts afresh once the room has lapsed and no refault
   * came within the lapse (the last is recorded to within 1/16 of it). */
  if (now >= atomic_load_explicit(&_hak_mem.room_until, memory_order_relaxed) &&
      (!last || now - last > lapse))
    atomic_store_explicit(&_hak_mem.room_evidence, bytes, memory_order_relaxed);
  else atomic_fetch_add_explicit(&_hak_mem.room_evidence, bytes, memory_order_relaxed);
  if (now - last > lapse / 16) atomic_store_explicit(&_hak_mem.refault_last, now, memory_order_relaxed);
  if (!hak_opt(HAK_OPT_ACE)) return;
  if (hak_ace_yields()) { /* new evidence: it stands again */
    atomic_store_explicit(&_hak_mem.fresh, 0, memory_order_relaxed);
    atomic_store_explicit(&_hak_mem.ace_yields, false, memory_order_relaxed);
  }
  size_t keep = hak_refault_keep(now) + bytes,
         peak = atomic_load_explicit(&_hak_mem.peak, memory_order_relaxed);
  atomic_store_explicit(&_hak_mem.refaulted, keep < peak ? keep : peak, memory_order_relaxed);
  atomic_store_explicit(&_hak_mem.refaulted_at, now, memory_order_relaxed);
}

void _hak_mem_refaulted_forget(void) {
  atomic_store_explicit(&_hak_mem.refaulted, 0, memory_order_relaxed);
  atomic_store_explicit(&_hak_mem.room_evidence, 0, memory_order_relaxed);
  for (int i = 0; i < 2; i++) atomic_store_explicit(&_hak_mem.room_used[i], 0, memory_order_relaxed);
  atomic_store_explicit(&_hak_mem.refault_last, 0, memory_order_relaxed);
  atomic_store_explicit(&_hak_mem.trimmed_at, _hak_os_ticks(), memory_order_relaxed);
}

void _hak_room_add(hak_budget_local_t *b) {
  int64_t d = b->room - b->room_added;
  atomic_fetch_add_explicit(&_hak_mem.room, d, memory_order_relaxed);
  b->room_added = b->room;
  if (d > 0) _hak_room_reused();
}

void _hak_budget_start(hak_budget_local_t *b) {
  for (int w = 0; w < 2; w++) {
    b->delta[w] = 0;
    b->seen[w] = (int64_t)atomic_load_explicit(&_hak_mem.total[w], memory_order_relaxed);
  }
  b->look_at = 0;
  b->taken = 0;
  memset(b->reuse, 0, sizeof b->reuse);
}

void _hak_budget_flush(hak_budget_local_t *b) {
  for (int w = 0; w < 2; w++) {
    b->seen[w] =
        (int64_t)atomic_fetch_add_explicit(&_hak_mem.total[w], (size_t)b->delta[w], memory_order_relaxed) +
        b->delta[w];
    b->delta[w] = 0;
  }
}

/* HAKMEM_ACE: the purge delay the reuse ages ask for. Twice the age
 * below which 99 % of the reused bytes were reused (the upper end of its
 * bucket), if that is longer than PURGE_DELAY_MS, up to 100 times it;
 * else 0. The counts halve once they pass HAK_REUSE_WINDOW, so the last
 * few hundred MiB reused decide. Threads adding at once may lose one
 * another's counts: an estimate. */
#define HAK_REUSE_WINDOW ((uint64_t)256 << 10) /* KiB */
static void reuse_delay_update(void) {
  uint64_t n[HAK_AGE_BUCKETS], sum = 0, below = 0;
  for (int k = 0; k < HAK_AGE_BUCKETS; k++)
    sum += n[k] = atomic_load_explicit(&_hak_mem.reuse[k], memory_order_relaxed);
  if (sum > HAK_REUSE_WINDOW)
    for (int k = 0; k < HAK_AGE_BUCKETS; k++)
      atomic_store_explicit(&_hak_mem.reuse[k], n[k] / 2, memory_order_relaxed);
  int k = 0;
  while (k < HAK_AGE_BUCKETS - 1 && (below += n[k]) * 100 < sum * 99) k++;
  hak_tick_t opt = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_PURGE_DELAY_MS));
  hak_tick_t want = (hak_tick_t)4 << k << HAK_AGE_SHIFT; /* twice 2^(k+1) */
  if (want > 100 * opt) want = 100 * opt;
  atomic_store_explicit(&_hak_mem.reuse_delay, want > opt ? want : 0, memory_order_relaxed);
}

void _hak_reuse_shared(size_t bytes, unsigned k) {
  atomic_fetch_add_explicit(&_hak_mem.reuse[k], bytes >> 10, memory_order_relaxed);
}

/* HAKMEM_ELO's epoch may end by volume (elo.c; the shared total is kept
 * only for it); HAKMEM_ACE's reuse ages count. */
void _hak_budget_taken(hak_budget_local_t *b) {
  uint64_t taken = hak_opt(HAK_OPT_ELO)
                       ? atomic_fetch_add_explicit(&_hak_mem.taken, b->taken, memory_order_relaxed) + b->taken
                       : 0;
  b->taken = 0;
  if (hak_opt(HAK_OPT_ACE)) {
    for (int k = 0; k < HAK_AGE_BUCKETS; k++) {
      if (b->reuse[k]) atomic_fetch_add_explicit(&_hak_mem.reuse[k], b->reuse[k], memory_order_relaxed);
      b->reuse[k] = 0;
    }
    reuse_delay_update();
  }
  if (taken >= atomic_load_explicit(&_hak_elo_due_taken, memory_order_relaxed))
    _hak_elo_tick(_hak_os_ticks(), atomic_load_explicit(&_hak_mem.committed, memory_order_relaxed), taken,
                  atomic_load_explicit(&_hak_mem.reuse_delay, memory_order_relaxed));
}

void _hak_budget_drop_room(hak_budget_local_t *b) {
  if (b->room) atomic_fetch_sub_explicit(&_hak_mem.earners, 1, memory_order_relaxed);
  b->room = 0;
  _hak_room_add(b);
}

/* A pass that left the memory over the budget sets when the next may look
 * again: when the next unit ages (soonest), and no sooner than a quarter of
 * the delay, so that a churn over the budget does not scan its units at
 * every free. */
hak_tick_t _hak_purge_next(hak_tick_t now, hak_tick_t soonest) {
  hak_tick_t quarter = hak_purge_delay() / 4;
  return now + (soonest > quarter ? soonest : quarter);
}

void _hak_budget_figures(size_t *used, size_t *empty, size_t *committed, size_t *peak, size_t *room) {
  hak_budget_local_t *b = hak_tls_budget();
  int64_t v[2];
  for (int w = 0; w < 2; w++)
    v[w] = (int64_t)atomic_load_explicit(&_hak_mem.total[w], memory_order_relaxed) + (b ? b->delta[w] : 0);
  *used = v[0] < 0 ? 0 : (size_t)v[0];
  *empty = v[1] < 0 ? 0 : (size_t)v[1];
  *committed = atomic_load_explicit(&_hak_mem.committed, memory_order_relaxed);
  *peak = atomic_load_explicit(&_hak_mem.peak, memory_order_relaxed);
  if (*peak < *committed) *peak = *committed; /* read between another thread's add and its raising the peak */
  *room = hak_room_in_force(b, *used, _hak_os_ticks());
}
