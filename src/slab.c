/* slab.c — the blocks of one slab and its one ownership transition.
 *
 * Counting: `used` is every carved block not on local_free (blocks with the
 * program, in the holder's fast-path list, or on thread_free), so
 *   used + |local_free| == carved <= capacity,
 * a local free is `used--`, and used reaching 0 means the slab is empty.
 *
 * Ownership: a slab is held by one heap, or detached (HAK_DETACHED set in
 * thread_free; owner 0, or the key | HAK_SET_ASIDE of the live heap that
 * set it aside while full). Whoever clears HAK_DETACHED with one
 * compare-and-swap has claimed it: an allocating thread adopting it, or a
 * thread freeing into it, which takes it back if its own heap set it aside
 * and otherwise releases it if empty or detaches it again. Detaching sets
 * the flag only on an empty thread_free word, so a block pushed while the
 * slab was held is always collected by a holder. */
#include <string.h>

#include "internal.h"

hak_lock_t _hak_abandoned_lock[HAK_CLASSES];
static hak_list_t abandoned[HAK_CLASSES]; /* detached slabs with free space */

/* Appends the list starting at `head` to local_free; returns its length. */
static uint32_t splice_local(hak_slab_t *s, hak_block_t *head) {
  if (!head) return 0;
  uint32_t n = 1;
  hak_block_t *tail = head;
  for (hak_block_t *next; (next = hak_next(tail)) != NULL; tail = next) n++;
  hak_set_next(tail, s->local_free);
  s->local_free = head;
  return n;
}

uint32_t _hak_slab_collect(hak_slab_t *s) {
  if (!atomic_load_explicit(&s->thread_free, memory_order_relaxed)) return 0;
  uintptr_t tf = atomic_exchange_explicit(&s->thread_free, 0, memory_order_acquire);
  HAK_DEBUG_ASSERT(!(tf & HAK_DETACHED));
  uint32_t n = splice_local(s, (hak_block_t *)tf);
  s->used -= n;
  hak_class_event(s->cls, HAK_CSTAT_remote_received, n);
  return n;
}

/* Makes s, an empty slab (or fresh run) its caller holds, a slab of cls
 * holding `capacity` blocks: no block carved yet. */
static void format(hak_slab_t *s, size_t cls, uint32_t capacity) {
  size_t size = hak_class_size(cls);
  HAK_DEBUG_ASSERT(s->used == 0 && capacity >= 1 && capacity * size <= hak_slab_bytes(s) - HAK_SLAB_GUARD &&
                   (size <= HAK_UNIT0_MAX_BLOCK || hak_slab_unit(s) != 0));
  if (s->cls != cls) _hak_class_count(s->cls, cls);
  s->cls = (uint8_t)cls;
  s->block_size = (uint32_t)size;
  s->capacity = capacity;
  s->local_free = NULL;
  s->used = 0;
  s->carved = 0;
  atomic_store_explicit(&s->thread_free, 0, memory_order_relaxed);
  s->link.next = s->link.prev = NULL;
  s->listed = 0;
  s->where = HAK_IN_NONE;
  hak_superslab_of((char *)s + 1)->site[hak_slab_unit(s)] = 0;
}

void _hak_slab_format(hak_slab_t *s, size_t cls) {
  HAK_DEBUG_ASSERT(s->units == _hak_slab_units(cls));
  format(s, cls, (uint32_t)((hak_slab_bytes(s) - HAK_SLAB_GUARD) / hak_class_size(cls)));
}

hak_slab_t *_hak_slab_alloc(size_t cls, uint32_t owner) {
  hak_slab_t *s =
      _hak_ss_take_run((unsigned)_hak_slab_units(cls), hak_class_size(cls) > HAK_UNIT0_MAX_BLOCK, owner);
  if (s) _hak_slab_format(s, cls);
  return s;
}

hak_slab_t *_hak_pool_alloc(hak_pool_t *p, size_t cls, uint32_t owner) {
  hak_slab_t *s = _hak_pool_take_run(p, (unsigned)_hak_slab_units(cls), owner);
  if (s) _hak_slab_format(s, cls);
  return s;
}

unsigned _hak_slab_units_one(size_t cls) {
  return (unsigned)((hak_class_size(cls) + HAK_SLAB_GUARD + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT);
}

void _hak_slab_format_one(hak_slab_t *s, size_t cls) { format(s, cls, 1); }

hak_slab_t *_hak_pool_alloc_one(hak_pool_t *p, size_t cls) {
  hak_slab_t *s = _hak_pool_take_run(p, _hak_slab_units_one(cls), 0);
  if (s) format(s, cls, 1);
  return s;
}

hak_slab_t *_hak_slab_alloc_one(size_t cls) {
  hak_slab_t *s = _hak_ss_take_run(_hak_slab_units_one(cls), hak_class_size(cls) > HAK_UNIT0_MAX_BLOCK, 0);
  if (s) format(s, cls, 1);
  return s;
}

/* The secure build carves k blocks from `first` on into a list in a
 * random order (a shuffle seeded by the secret, the clock and the
 * address), so that where the next block lies cannot be predicted from
 * the last; blocks up to HAK_ZEROED_MAX zeroed, as secure.c hands them out
 * (the units may have held other blocks). */
static hak_block_t *carve_shuffled(hak_slab_t *s, char *first, uint32_t k) {
  uint16_t order[HAK_PAGE / 16];
  HAK_DEBUG_ASSERT(k <= HAK_PAGE / 16);
  if (s->block_size <= HAK_ZEROED_MAX) memset(first, 0, (size_t)k * s->block_size);
  uint64_t r = hak_secret() ^ _hak_os_ticks() ^ (uintptr_t)first;
  for (uint32_t i = 0; i < k; i++) {
    uint32_t j = 0;
    if (i) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      j = (uint32_t)((r >> 33) % (i + 1));
    }
    if (j != i) order[i] = order[j]; /* inside-out Fisher-Yates */
    order[j] = (uint16_t)i;
  }
  hak_block_t *list = NULL;
  for (uint32_t i = k; i-- > 0;) {
    hak_block_t *b = (hak_block_t *)(first + (size_t)order[i] * s->block_size);
    hak_set_next(b, list);
    b->mark = s->mark;
    list = b;
  }
  return list;
}

/* A list of free blocks of s for its holder's fast path: local_free, else
 * the remote frees (taken whole: the list goes out as it is, so neither its
 * length nor its tail is needed, and its blocks, written by other threads,
 * are not walked here), else fresh blocks, about 1 << shift pages of them;
 * NULL if s is full. */
static uint32_t count(const hak_block_t *l);

hak_block_t *_hak_slab_take(hak_slab_t *s, unsigned shift) {
  hak_block_t *list = s->local_free;
  if (!list && atomic_load_explicit(&s->thread_free, memory_order_relaxed)) {
    list = (hak_block_t *)atomic_exchange_explicit(&s->thread_free, 0, memory_order_acquire);
    /* The stats build counts the remote frees a refill takes whole. */
    if (hak_cfg_stats) hak_class_event(s->cls, HAK_CSTAT_remote_received, count(list));
  }
  if (list) {
    s->local_free = NULL;
    s->used = s->carved; /* every carved block is out: none on local_free */
    return list;
  }
  if (s->carved == s->capacity) return NULL;
  /* Carve about 1 << shift pages of fresh blocks, and at least a few:
   * carving writes only each block's first word, so a large block costs a
   * page. */
  uint32_t k = (uint32_t)((HAK_PAGE << shift) / s->block_size);
  if (k < HAK_CARVE_MIN) k = HAK_CARVE_MIN;
  if (k > (uint32_t)(s->capacity - s->carved)) k = (uint32_t)(s->capacity - s->carved);
  char *b = hak_slab_start(s) + (size_t)s->carved * s->block_size;
  if (hak_cfg_secure) {
    list = carve_shuffled(s, b, k);
  } else {
    list = (hak_block_t *)b;
    for (uint32_t i = 1; i < k; i++, b += s->block_size)
      *(hak_block_t *)b = (hak_block_t){(hak_block_t *)(b + s->block_size), s->mark};
    *(hak_block_t *)b = (hak_block_t){NULL, s->mark};
  }
  /* Other threads' frees read it (hak_slab_has_block). */
  __atomic_store_n(&s->carved, (uint16_t)(s->carved + k), __ATOMIC_RELAXED);
  s->used += k;
  return list;
}

static void publish(hak_slab_t *s) {
  if (s->listed) return; /* only the holder changes `listed`, under the lock */
  _hak_lock(&_hak_abandoned_lock[s->cls]);
  hak_list_push(&abandoned[s->cls], &s->link);
  s->listed = 1;
  _hak_unlock(&_hak_abandoned_lock[s->cls]);
}

static void unpublish(hak_slab_t *s) {
  if (!s->listed) return;
  _hak_lock(&_hak_abandoned_lock[s->cls]);
  hak_list_remove(&abandoned[s->cls], &s->link);
  s->listed = 0;
  _hak_unlock(&_hak_abandoned_lock[s->cls]);
}

/* The holder lets go of s (owner already 0): release it if empty, else put
 * it on the abandoned list if it has free space, and set HAK_DETACHED. */
static void let_go(hak_slab_t *s) {
  for (;;) {
    _hak_slab_collect(s);
    if (s->used == 0) {
      unpublish(s);
      _hak_slab_release(s);
      return;
    }
    if (s->used < s->capacity) publish(s);
    uintptr_t expect = 0;
    if (atomic_compare_exchange_strong_explicit(&s->thread_free, &expect, HAK_DETACHED, memory_order_release,
                                                memory_order_relaxed))
      return;
  }
}

void _hak_slab_detach(hak_slab_t *s, uint32_t mark) {
  atomic_store_explicit(&s->owner, mark, memory_order_relaxed);
  let_go(s);
}

hak_slab_t *_hak_slab_adopt(size_t cls, uint32_t key) {
  hak_slab_t *s = NULL;
  /* An empty list is the common case: a glance first (a slab published
   * just now is found next time). */
  if (!__atomic_load_n(&abandoned[cls].head, __ATOMIC_RELAXED)) return NULL;
  _hak_lock(&_hak_abandoned_lock[cls]);
  for (hak_link_t *l = abandoned[cls].head; l && !s; l = l->next) {
    hak_slab_t *c = HAK_SLAB_OF_LINK(l);
    uintptr_t tf = atomic_load_explicit(&c->thread_free, memory_order_relaxed);
    if ((tf & HAK_DETACHED) &&
        atomic_compare_exchange_strong_explicit(&c->thread_free, &tf, tf & ~HAK_DETACHED,
                                                memory_order_acquire, memory_order_relaxed))
      s = c;
  }
  if (s) {
    hak_list_remove(&abandoned[cls], &s->link);
    s->listed = 0;
    s->where = HAK_IN_NONE;
  }
  _hak_unlock(&_hak_abandoned_lock[cls]);
  if (s) atomic_store_explicit(&s->owner, key, memory_order_relaxed);
  return s;
}

/* Frees b into s, which the caller does not hold: a push on thread_free
 * while s is held. If s is detached the caller claims it; if `mine` (the
 * caller's heap key | HAK_SET_ASIDE) is its owner word, the caller's heap
 * set it aside and takes it back: it then holds s, with b on local_free
 * and thread_free collected, and true is returned. Otherwise the caller
 * gives s back if that was its last block or detaches it again, exactly
 * as a holder would: no other free keeps a slab, so a slab whose blocks
 * all come back after its holder let go of it (a thread that exited) is
 * given back at the last free, whoever frees it. */
bool _hak_slab_free_remote(hak_slab_t *s, hak_block_t *b, uint32_t mine) {
  /* Marked for its holder (a holder that changed meanwhile, rarely, makes
   * the mark stale: a double free of the block may then go unseen). */
  b->mark = __atomic_load_n(&s->mark, __ATOMIC_RELAXED);
  uintptr_t tf = atomic_load_explicit(&s->thread_free, memory_order_relaxed);
  for (;;) {
    if (tf & HAK_DETACHED) {
      if (atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, tf & ~HAK_DETACHED,
                                                memory_order_acquire, memory_order_relaxed))
        break;
      continue;
    }
    hak_set_next(b, (hak_block_t *)tf);
    if (atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, (uintptr_t)b, memory_order_release,
                                              memory_order_relaxed))
      return false;
  }
  /* Claimed: the owner word is the one its last detach wrote. */
  hak_set_next(b, s->local_free);
  s->local_free = b;
  s->used--;
  if (!mine || atomic_load_explicit(&s->owner, memory_order_relaxed) != mine) {
    let_go(s);
    return false;
  }
  unpublish(s);
  s->where = HAK_IN_NONE;
  atomic_store_explicit(&s->owner, mine & ~HAK_SET_ASIDE, memory_order_relaxed);
  _hak_slab_collect(s);
  return true;
}

/* Why p, in s's units (or in a free unit, whose descriptor s is), is not
 * a block of s: inside one, past those carved, or in a free unit, where
 * the start of a one-block run just given back is that block freed again
 * (superslab.c keeps its size). */
hak_misuse_t _hak_slab_problem(const hak_slab_t *s, const void *p) {
  const char *start = hak_slab_start(s);
  if (!s->units) {
    if (s->capacity == 1 && (const char *)p == start)
      return (hak_misuse_t){.kind = HAK_MISUSE_DOUBLE_FREE, .block = p, .size = s->block_size};
    return (hak_misuse_t){.kind = HAK_MISUSE_NO_BLOCK};
  }
  size_t k = (const char *)p < start ? SIZE_MAX : (size_t)((const char *)p - start) / s->block_size;
  if (k >= s->carved) return (hak_misuse_t){.kind = HAK_MISUSE_NO_BLOCK};
  return (hak_misuse_t){.kind = HAK_MISUSE_INSIDE, .block = start + k * s->block_size, .size = s->block_size};
}

static bool on_list(const hak_block_t *l, const hak_block_t *b) {
  for (; l; l = hak_next(l))
    if (l == b) return true;
  return false;
}

/* Whether b is already free (checking mode and debug build), for a slab
 * the caller's heap holds, whose list of s's class is `list`: only the
 * holder may walk its lists (the nodes of thread_free below a loaded head
 * change only when the holder collects them). */
bool _hak_slab_block_is_free(hak_slab_t *s, const hak_block_t *b, const hak_block_t *list) {
  const hak_block_t *tf =
      (const hak_block_t *)(atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~HAK_DETACHED);
  return on_list(tf, b) || on_list(s->local_free, b) || on_list(list, b);
}

static uint32_t count(const hak_block_t *l) {
  uint32_t n = 0;
  for (; l; l = hak_next(l)) n++;
  return n;
}

static bool in_slab(const hak_slab_t *s, const void *p) {
  const char *start = hak_slab_start(s);
  return (const char *)p >= start && (const char *)p < start + (size_t)s->capacity * s->block_size;
}

/* Blocks of s on a heap's list of its class (which holds blocks of its
 * current slab and of its partial ones). */
static uint32_t count_in(const hak_slab_t *s, const hak_block_t *l) {
  uint32_t n = 0;
  for (; l; l = hak_next(l)) n += in_slab(s, l);
  return n;
}

/* Gives the blocks of a heap's list back to their slabs' local lists. */
void _hak_slab_return_blocks(hak_block_t *list) {
  while (list) {
    hak_block_t *next = hak_next(list);
    hak_slab_t *s = hak_slab_of(hak_superslab_of(list), (uintptr_t)list);
    hak_set_next(list, s->local_free);
    s->local_free = list;
    s->used--;
    list = next;
  }
}

/* Blocks of s with the program. Exact for slabs held by the heap whose key
 * is my_key (the calling thread's) and whose list of s's class is my_list;
 * for the others, blocks on their holder's fast-path list and on
 * thread_free count too, since only the holder may walk those. */
uint32_t _hak_slab_live(hak_slab_t *s, uint32_t my_key, const hak_block_t *my_list) {
  uint32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED); /* a statistic */
  uint32_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
  if (!owner || (owner & ~3u) != (my_key & ~3u)) return used;
  uint32_t idle = count(
      (const hak_block_t *)(atomic_load_explicit(&s->thread_free, memory_order_acquire) & ~HAK_DETACHED));
  return used - idle - count_in(s, my_list);
}

static uint32_t list_length(const hak_slab_t *s, const hak_block_t *l) {
  uint32_t n = 0;
  for (; l; l = hak_next(l), n++) {
    HAK_ASSERT(hak_superslab_of(l) == hak_superslab_of(s) && hak_slab_has_block(s, l));
    HAK_ASSERT(n <= s->capacity);
  }
  return n;
}

/* After fork, for a slab of a heap whose thread is gone: the lists are
 * consistent (the fast paths publish a block before moving a head), but
 * `used` may be off by the one free that was in flight. */
void _hak_slab_recount(hak_slab_t *s) { s->used = s->carved - list_length(s, s->local_free); }

void _hak_slab_check(hak_slab_t *s, const hak_block_t *list) {
  HAK_ASSERT(s->units && s->carved <= s->capacity);
  HAK_ASSERT(s->block_size == hak_class_size(s->cls));
  uint32_t local = list_length(s, s->local_free);
  HAK_ASSERT(s->used + local == s->carved);
  uintptr_t tfw = atomic_load_explicit(&s->thread_free, memory_order_acquire);
  uint32_t remote = list_length(s, (const hak_block_t *)(tfw & ~HAK_DETACHED));
  uint32_t in_heap = count_in(s, list);
  HAK_ASSERT(remote + in_heap <= s->used);
}
