/* reservation.c — the 64 MiB reservations SuperSlabs are carved from, in
 * order, 2 MiB at a time (one mmap per reservation, not per SuperSlab: a
 * mapping costs system calls, a VMA and mmap_lock contention). A
 * reservation whose carved SuperSlabs are all wholly free is unmapped once
 * it has been so for HAKMEM_UNMAP_DELAY_MS (superslab.c forgets its
 * SuperSlabs first). Everything here runs under _hak_ss_lock. */
#include "internal.h"

static hak_list_t reservations;          /* newest first */
static hak_reservation_t *spare_records; /* records of unmapped reservations, through link.next */
static size_t mapped_bytes;
static uint64_t unmapped_total;
static uint32_t pending_unmap; /* reservations with empty_since set */

#define RES_OF(l) HAK_CONTAINER(l, hak_reservation_t, link)

static hak_reservation_t *reservation_map(void) {
  char *base = _hak_os_map(HAK_RESERVATION, HAK_SS_SIZE);
  if (!base) return NULL;
  hak_reservation_t *r = spare_records;
  if (r) spare_records = r->link.next ? RES_OF(r->link.next) : NULL;
  else r = _hak_meta_alloc(sizeof *r);
  if (!r) {
    _hak_os_unmap(base, HAK_RESERVATION);
    return NULL;
  }
  *r = (hak_reservation_t){.base = base};
  hak_list_push(&reservations, &r->link);
  mapped_bytes += HAK_RESERVATION;
  long thp = hak_opt(HAK_OPT_THP);
  if (thp) _hak_os_hugepage(base, HAK_RESERVATION, (int)thp);
  return r;
}

hak_superslab_t *_hak_reservation_carve(void) {
  hak_reservation_t *r = reservations.head ? RES_OF(reservations.head) : NULL;
  if (!r || r->carved == HAK_RES_SUPERSLABS) r = reservation_map();
  if (!r) return NULL;
  hak_superslab_t *ss = (hak_superslab_t *)(r->base + (size_t)r->carved * HAK_SS_SIZE);
  ss->index = r->carved++;
  ss->res = r;
  r->empty++; /* a new SuperSlab is wholly free: the reservation's state is unchanged */
  return ss;
}

void _hak_reservation_note_empty(hak_reservation_t *r, int delta) {
  bool was = r->empty == r->carved;
  r->empty = (uint32_t)((int)r->empty + delta);
  bool is = r->empty == r->carved;
  if (is && !was) {
    r->empty_since = _hak_os_ticks() | 1;
    pending_unmap++;
  } else if (was && !is && r->empty_since) {
    r->empty_since = 0;
    pending_unmap--;
  }
}

hak_reservation_t *_hak_reservation_idle(bool now_all, hak_reservation_t *after) {
  if (!pending_unmap) return NULL;
  hak_tick_t now = _hak_os_ticks(), delay = _hak_os_ms_ticks((uint64_t)hak_opt(HAK_OPT_UNMAP_DELAY_MS));
  for (hak_link_t *l = after ? after->link.next : reservations.head; l; l = l->next) {
    hak_reservation_t *r = RES_OF(l);
    /* The newest is kept unless now_all: the next SuperSlab comes from it. */
    if (!r->empty_since || (l == reservations.head && !now_all)) continue;
    if (now_all || now - r->empty_since >= delay) return r;
  }
  return NULL;
}

void _hak_reservation_unmap(hak_reservation_t *r) {
  hak_list_remove(&reservations, &r->link);
  if (r->empty_since) pending_unmap--;
  _hak_os_unmap(r->base, HAK_RESERVATION);
  mapped_bytes -= HAK_RESERVATION;
  unmapped_total += HAK_RESERVATION;
  r->link.next = spare_records ? &spare_records->link : NULL;
  spare_records = r;
}

hak_reservation_t *_hak_reservation_next(hak_reservation_t *r) {
  hak_link_t *l = r ? r->link.next : reservations.head;
  return l ? RES_OF(l) : NULL;
}

void _hak_reservation_figures(hak_stats_t *st) {
  st->mapped += mapped_bytes;
  st->unmapped += unmapped_total;
}
