/* unwind.c — the calling thread's call stack, for the heap profiler
 * (HAKMEM_PROFILE). Debian's programs and libraries have no frame
 * pointers, but every function has DWARF call frame information
 * (.eh_frame): for each code address, how to find the caller's stack
 * pointer (the CFA: the stack pointer or rbp plus an offset), the return
 * address (at an offset from the CFA) and the caller's rbp (saved at an
 * offset from the CFA, or left as it is). Those three rules are all a walk
 * up the stack needs. Here they are read once per return address, from
 * the function's FDE (libgcc's _Unwind_Find_FDE finds it: no allocation,
 * no lock with glibc's _dl_find_object), and kept in one table that every
 * thread reads without a lock; after that a frame costs a hash probe and a
 * load or two from the stack.
 *
 * Why not libunwind: its fast path (unw_backtrace) keeps its cache per
 * thread, 256 KiB made and faulted in at a thread's first stack (0.7 ms on
 * the test VM), so that a program whose threads come and go paid more for
 * its threads' first samples than for all the others; and libgcc's own
 * _Unwind_Backtrace interprets every frame's FDE at every call (about
 * 50 us a stack).
 *
 * A walk stops at the outermost frame (its return address rule is
 * "undefined": _start, clone), at code without an FDE, and at a frame whose
 * rules are not of the three shapes above (a signal frame, a CFA computed
 * by a DWARF expression, as in functions that realign the stack): the
 * stack is then cut there. Every read is from the stack between the stack
 * pointer and a CFA above it. A library unloaded and another loaded at its
 * address would leave rules that are not its own: the table is emptied
 * whenever the loader reports an unloading (dl_iterate_phdr's dlpi_subs,
 * looked at once per HAK_UNWIND_RECHECK_MS). */
#include <link.h>
#include <stddef.h>

#include "internal.h"

/* libgcc's (unwind-dw2-fde.h, which is not installed). */
struct dwarf_eh_bases {
  void *tbase, *dbase, *func;
};
extern const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases);

#define RULES (1u << 13)           /* return addresses kept (a power of two) */
#define RULES_FULL (RULES / 4 * 3) /* past this many, a miss is not kept: probes stay short */
#define MAX_FRAME (1u << 24)       /* a CFA more than this above the stack pointer stops the walk */
#define HAK_UNWIND_RECHECK_MS 10

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16

/* What the CFI says at one address, packed in a word: 0 (all fields 0)
 * stops the walk, so that an entry being emptied is safe to read. A rule
 * with an rsp-based CFA is checked when it is made (its reads stay between
 * the stack pointer and the CFA, at most MAX_FRAME above it); one with an
 * rbp-based CFA, at each frame. */
typedef struct rule {
  int32_t cfa_off; /* CFA = (RULE_CFA_RBP ? rbp : rsp) + cfa_off, the flags masked off */
  int16_t ra_off;  /* return address at CFA + ra_off (< 0) */
  int16_t rbp_off; /* caller's rbp at CFA + rbp_off (< 0), or 0: rbp is unchanged */
} rule_t;
#define RULE_OK 1      /* in cfa_off's lowest bit: the CFA is never odd, so it is free */
#define RULE_CFA_RBP 2 /* and the next: the CFA is rbp-based */

typedef struct entry {
  _Atomic uint64_t pc;   /* the address looked up (a return address - 1); 0: empty */
  _Atomic uint64_t rule; /* rule_t's bits; written before pc */
} entry_t;

static entry_t *table;                        /* RULES entries, from meta.c at start-up */
static hak_lock_t table_lock = HAK_LOCK_INIT; /* for writers; readers take none */
static uint32_t table_used;                   /* table_lock */
static _Atomic uint64_t recheck_at;           /* tick of the next look at the loader's unloadings */
static unsigned long long loader_subs;        /* table_lock: dlpi_subs when the table was last emptied */

/* ---- reading the CFI -------------------------------------------------- */
static uint64_t uleb(const uint8_t **p, const uint8_t *end) {
  uint64_t v = 0;
  for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return v;
}

static int64_t sleb(const uint8_t **p, const uint8_t *end) {
  int64_t v = 0;
  unsigned shift = 0;
  uint8_t b = 0;
  while (*p < end && shift < 64) {
    b = *(*p)++;
    v |= (int64_t)((uint64_t)(b & 0x7f) << shift);
    shift += 7;
    if (!(b & 0x80)) break;
  }
  if (shift < 64 && (b & 0x40)) v |= -((int64_t)1 << shift);
  return v;
}

/* The size of a pointer in encoding `enc` (DW_EH_PE_*), 0 for the
 * variable-length ones (which are skipped as LEB128), -1 if unknown. */
static int enc_size(uint8_t enc) {
  switch (enc & 0x0f) {
    case 0x00:
      return 8; /* absptr */
    case 0x01:
    case 0x09:
      return 0; /* uleb128, sleb128 */
    case 0x02:
    case 0x0a:
      return 2;
    case 0x03:
    case 0x0b:
      return 4;
    case 0x04:
    case 0x0c:
      return 8;
    default:
      return -1;
  }
}

static bool skip_encoded(const uint8_t **p, const uint8_t *end, uint8_t enc) {
  if (enc == 0xff) return true; /* DW_EH_PE_omit */
  int n = enc_size(enc);
  if (n < 0) return false;
  if (n == 0) uleb(p, end);
  else *p += n;
  return *p <= end;
}

/* The rules for the registers a walk needs, as the CFI program sets them. */
typedef struct state {
  uint64_t cfa_reg;
  int64_t cfa_off;
  int64_t off[2]; /* REG_RBP's and REG_RA's: CFA + off; INT64_MIN: unchanged; INT64_MAX: undefined */
} state_t;
#define SAME INT64_MIN
#define UNDEFINED INT64_MAX

typedef struct cie {
  const uint8_t *insn, *end;
  uint64_t code_align;
  int64_t data_align;
  uint64_t ra_reg;
  uint8_t fde_enc;
  bool augmented; /* 'z': FDEs carry an augmentation length */
  bool signal;    /* 'S': a signal frame */
} cie_t;

/* The length field at p: the entry's contents in *body, *end. */
static bool entry_bounds(const uint8_t *p, const uint8_t **body, const uint8_t **end) {
  uint64_t len = *(const uint32_t *)p;
  p += 4;
  if (len == 0xffffffffu) {
    len = *(const uint64_t *)p;
    p += 8;
  }
  if (!len) return false;
  *body = p;
  *end = p + len;
  return true;
}

static bool read_cie(const uint8_t *p, cie_t *c) {
  const uint8_t *end;
  if (!entry_bounds(p, &p, &end)) return false;
  p += 4; /* CIE id */
  uint8_t version = *p++;
  const char *aug = (const char *)p;
  while (p < end && *p) p++;
  p++;
  if (aug[0] && aug[0] != 'z') return false; /* an augmentation we cannot skip */
  c->code_align = uleb(&p, end);
  c->data_align = sleb(&p, end);
  c->ra_reg = version == 1 ? *p++ : uleb(&p, end);
  c->fde_enc = 0;
  c->augmented = aug[0] == 'z';
  c->signal = false;
  if (c->augmented) {
    uint64_t n = uleb(&p, end);
    const uint8_t *data = p;
    for (const char *a = aug + 1; *a; a++) {
      if (*a == 'R') c->fde_enc = *p++;
      else if (*a == 'L') p++;
      else if (*a == 'P') {
        uint8_t enc = *p++;
        if (!skip_encoded(&p, end, enc)) return false;
      } else if (*a == 'S') c->signal = true;
      else return false;
    }
    p = data + n;
  }
  c->insn = p;
  c->end = end;
  return p <= end;
}

/* Runs CFI instructions [p, end) from `loc`, up to the one that would
 * move past `target`. `init`: the rules after the CIE's (DW_CFA_restore
 * goes back to them). False: an instruction whose effect a walk cannot
 * follow, or that this reader does not know. */
static bool run_cfi(const uint8_t *p, const uint8_t *end, const cie_t *c, uint64_t loc, uint64_t target,
                    state_t *s, const state_t *init) {
  state_t saved[4];
  unsigned depth = 0;
  while (p < end) {
    uint8_t op = *p++, low = op & 0x3f;
    uint64_t reg = 0, delta = 0;
    int64_t off = 0;
    switch (op >> 6) {
      case 1: /* DW_CFA_advance_loc */
        delta = low * c->code_align;
        goto advance;
      case 2: /* DW_CFA_offset */
        reg = low;
        off = (int64_t)uleb(&p, end) * c->data_align;
        goto set_offset;
      case 3: /* DW_CFA_restore */
        reg = low;
        goto restore;
      default:
        break;
    }
    switch (op) {
      case 0x00:
        continue; /* nop */
      case 0x02:
        delta = *p * c->code_align;
        p += 1;
        goto advance;
      case 0x03:
        delta = *(const uint16_t *)p * c->code_align;
        p += 2;
        goto advance;
      case 0x04:
        delta = *(const uint32_t *)p * c->code_align;
        p += 4;
        goto advance;
      case 0x05: /* offset_extended */
        reg = uleb(&p, end);
        off = (int64_t)uleb(&p, end) * c->data_align;
        goto set_offset;
      case 0x11: /* offset_extended_sf */
        reg = uleb(&p, end);
        off = sleb(&p, end) * c->data_align;
        goto set_offset;
      case 0x2f: /* GNU_negative_offset_extended */
        reg = uleb(&p, end);
        off = -(int64_t)uleb(&p, end) * c->data_align;
        goto set_offset;
      case 0x06: /* restore_extended */
        reg = uleb(&p, end);
        goto restore;
      case 0x07: /* undefined */
        reg = uleb(&p, end);
        if (reg == REG_RBP || reg == c->ra_reg) s->off[reg == REG_RBP ? 0 : 1] = UNDEFINED;
        continue;
      case 0x08: /* same_value */
        reg = uleb(&p, end);
        if (reg == REG_RBP || reg == c->ra_reg) s->off[reg == REG_RBP ? 0 : 1] = SAME;
        continue;
      case 0x09: /* register: the value is in another register */
        reg = uleb(&p, end);
        uleb(&p, end);
        if (reg == REG_RBP || reg == c->ra_reg) return false;
        continue;
      case 0x0a: /* remember_state */
        if (depth == 4) return false;
        saved[depth++] = *s;
        continue;
      case 0x0b: /* restore_state */
        if (!depth) return false;
        *s = saved[--depth];
        continue;
      case 0x0c: /* def_cfa */
        s->cfa_reg = uleb(&p, end);
        s->cfa_off = (int64_t)uleb(&p, end);
        continue;
      case 0x12: /* def_cfa_sf */
        s->cfa_reg = uleb(&p, end);
        s->cfa_off = sleb(&p, end) * c->data_align;
        continue;
      case 0x0d:
        s->cfa_reg = uleb(&p, end);
        continue; /* def_cfa_register */
      case 0x0e:
        s->cfa_off = (int64_t)uleb(&p, end);
        continue; /* def_cfa_offset */
      case 0x13:
        s->cfa_off = sleb(&p, end) * c->data_align;
        continue; /* def_cfa_offset_sf */
      case 0x10:  /* expression */
      case 0x16:  /* val_expression */
        reg = uleb(&p, end);
        delta = uleb(&p, end);
        p += delta;
        if (reg == REG_RBP || reg == c->ra_reg) return false;
        continue;
      case 0x14: /* val_offset */
      case 0x15: /* val_offset_sf */
        reg = uleb(&p, end);
        if (op == 0x14) uleb(&p, end);
        else sleb(&p, end);
        if (reg == REG_RBP || reg == c->ra_reg) return false;
        continue;
      case 0x2e:
        uleb(&p, end);
        continue; /* GNU_args_size */
      default:
        return false; /* def_cfa_expression, set_loc, and the rest */
    }
  advance:
    if (loc + delta > target) return true;
    loc += delta;
    continue;
  set_offset:
    if (reg == REG_RBP || reg == c->ra_reg) s->off[reg == REG_RBP ? 0 : 1] = off;
    continue;
  restore:
    if (!init) return false; /* in the CIE itself */
    if (reg == REG_RBP || reg == c->ra_reg)
      s->off[reg == REG_RBP ? 0 : 1] = init->off[reg == REG_RBP ? 0 : 1];
  }
  return p == end;
}

/* The rules at address pc (a return address - 1, or an address inside the
 * caller's function for the first frame), packed; 0 if none a walk can
 * follow. */
static uint64_t rule_at(uintptr_t pc) {
  struct dwarf_eh_bases bases;
  const uint8_t *fde = _Unwind_Find_FDE((void *)pc, &bases);
  if (!fde) return 0;
  const uint8_t *p, *end;
  if (!entry_bounds(fde, &p, &end)) return 0;
  cie_t c;
  if (!read_cie(p - *(const int32_t *)p, &c) || c.signal || c.ra_reg != REG_RA) return 0;
  p += 4;
  if (!skip_encoded(&p, end, c.fde_enc) || !skip_encoded(&p, end, c.fde_enc & 0x0f))
    return 0; /* begin, range */
  if (c.augmented) {
    uint64_t n = uleb(&p, end);
    p += n;
  }
  state_t s = {.cfa_reg = REG_RSP, .cfa_off = 8, .off = {SAME, UNDEFINED}}, init;
  if (!run_cfi(c.insn, c.end, &c, 0, 0, &s, NULL)) return 0;
  init = s;
  if (!run_cfi(p, end, &c, 0, pc - (uintptr_t)bases.func, &s, &init)) return 0;
  int64_t ra = s.off[1], rbp = s.off[0];
  if ((s.cfa_reg != REG_RSP && s.cfa_reg != REG_RBP) || s.cfa_off <= 0 || s.cfa_off >= (1 << 30) ||
      (s.cfa_off & 7))
    return 0;
  /* ra undefined: the outermost frame, where the walk ends */
  if (ra >= 0 || ra < INT16_MIN || ra == SAME || ra == UNDEFINED) return 0;
  if (rbp == SAME || rbp == UNDEFINED) rbp = 0;
  else if (rbp >= 0 || rbp < INT16_MIN) return 0;
  if (s.cfa_reg == REG_RSP && (s.cfa_off > MAX_FRAME || s.cfa_off < -ra || s.cfa_off < -rbp)) return 0;
  rule_t r = {.cfa_off = (int32_t)(s.cfa_off | RULE_OK | (s.cfa_reg == REG_RBP ? RULE_CFA_RBP : 0)),
              .ra_off = (int16_t)ra,
              .rbp_off = (int16_t)rbp};
  uint64_t bits;
  _Static_assert(sizeof r == sizeof bits, "a rule is a word");
  __builtin_memcpy(&bits, &r, sizeof bits);
  return bits;
}

/* ---- the table -------------------------------------------------------- */
static uint32_t home_of(uintptr_t pc) { return (uint32_t)((pc * 0x9e3779b97f4a7c15ull) >> 51) & (RULES - 1); }

static int read_subs(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  *(unsigned long long *)arg = info->dlpi_subs;
  return 1;
}

/* Empties the table if a library was unloaded since it was last emptied
 * (at most every HAK_UNWIND_RECHECK_MS). */
static void recheck(hak_tick_t now) {
  if (now < atomic_load_explicit(&recheck_at, memory_order_relaxed)) return;
  atomic_store_explicit(&recheck_at, now + _hak_os_ms_ticks(HAK_UNWIND_RECHECK_MS), memory_order_relaxed);
  unsigned long long subs = 0;
  dl_iterate_phdr(read_subs, &subs);
  _hak_lock(&table_lock);
  if (subs != loader_subs) {
    loader_subs = subs;
    for (uint32_t i = 0; i < RULES; i++) {
      atomic_store_explicit(&table[i].pc, 0, memory_order_relaxed);
      atomic_store_explicit(&table[i].rule, 0, memory_order_relaxed);
    }
    table_used = 0;
  }
  _hak_unlock(&table_lock);
}

static uint64_t rule_of(uintptr_t pc) {
  entry_t *t = table; /* set at start-up: read once, not again after each acquire */
  uint32_t i = home_of(pc);
  for (;;) {
    uint64_t at = atomic_load_explicit(&t[i].pc, memory_order_acquire);
    if (at == pc) {
      uint64_t rule = atomic_load_explicit(&t[i].rule, memory_order_relaxed);
      atomic_thread_fence(memory_order_acquire);
      /* still pc's: an entry emptied (recheck) and taken again meanwhile
       * would hold another address's rule */
      return atomic_load_explicit(&t[i].pc, memory_order_relaxed) == pc ? rule : 0;
    }
    if (!at) break;
    i = (i + 1) & (RULES - 1);
  }
  uint64_t rule = rule_at(pc);
  _hak_lock(&table_lock);
  if (table_used < RULES_FULL) {
    for (i = home_of(pc);; i = (i + 1) & (RULES - 1)) {
      uint64_t at = atomic_load_explicit(&table[i].pc, memory_order_relaxed);
      if (at == pc) break; /* another thread kept it */
      if (!at) {
        atomic_store_explicit(&table[i].rule, rule, memory_order_relaxed);
        atomic_store_explicit(&table[i].pc, pc, memory_order_release);
        table_used++;
        break;
      }
    }
  }
  _hak_unlock(&table_lock);
  return rule;
}

/* ---- the interface ---------------------------------------------------- */
bool _hak_unwind_start(void) {
  table = _hak_meta_alloc(RULES * sizeof *table);
  if (!table) return false;
  unsigned long long subs = 0;
  dl_iterate_phdr(read_subs, &subs);
  loader_subs = subs;
  return true;
}

__attribute__((noinline)) unsigned _hak_unwind(uintptr_t *pc, unsigned max, hak_tick_t now,
                                               const hak_frame_t *from) {
  uintptr_t ip, sp, bp;
  unsigned n = 0;
  if (from) {
    ip = from->ip;
    sp = from->sp;
    bp = from->bp;
    if (max) pc[n++] = ip;
  } else {
    __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2" : "=r"(ip), "=r"(sp), "=r"(bp));
  }
  recheck(now);
  for (;;) {
    uint64_t bits = rule_of(ip - 1);
    rule_t r;
    __builtin_memcpy(&r, &bits, sizeof r);
    if (!(r.cfa_off & RULE_OK)) break;
    uintptr_t off = (uintptr_t)(r.cfa_off & ~(RULE_OK | RULE_CFA_RBP)), cfa = sp + off;
    if (r.cfa_off & RULE_CFA_RBP) {
      cfa = bp + off;
      /* the reads below stay between sp and the CFA */
      uintptr_t room = cfa - sp, need = (uintptr_t) - (r.ra_off < r.rbp_off ? r.ra_off : r.rbp_off);
      if (room - 1 >= MAX_FRAME || room < need) break;
    }
    uintptr_t ra = *(const uintptr_t *)(cfa + (intptr_t)r.ra_off);
    if (r.rbp_off) bp = *(const uintptr_t *)(cfa + (intptr_t)r.rbp_off);
    sp = cfa;
    if (!ra || n == max) break;
    pc[n++] = ra;
    ip = ra;
  }
  return n;
}
