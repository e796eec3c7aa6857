/* print.c — formatted output without stdio: a fixed buffer flushed with
 * write(2), so messages and reports never allocate. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

void _hak_buf_flush(hak_buf_t *b) {
  if (b->len && b->file) fwrite(b->data, 1, b->len, b->file);
  else if (b->len) _hak_os_write(b->fd, b->data, b->len);
  b->len = 0;
}

static void put(hak_buf_t *b, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) b->col = s[i] == '\n' ? 0 : b->col + 1;
  while (n) {
    if (b->len == sizeof b->data) _hak_buf_flush(b);
    size_t k = sizeof b->data - b->len;
    if (k > n) k = n;
    memcpy(b->data + b->len, s, k);
    b->len += k;
    s += k;
    n -= k;
  }
}

void _hak_buf_str(hak_buf_t *b, const char *s) { put(b, s, strlen(s)); }

void _hak_buf_dec(hak_buf_t *b, uint64_t v) {
  char t[24];
  size_t i = sizeof t;
  do {
    t[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put(b, t + i, sizeof t - i);
}

void _hak_buf_int(hak_buf_t *b, int64_t v) {
  if (v < 0) put(b, "-", 1);
  _hak_buf_dec(b, v < 0 ? -(uint64_t)v : (uint64_t)v);
}

void _hak_buf_hex(hak_buf_t *b, uint64_t v) {
  char t[18];
  size_t i = sizeof t;
  do {
    t[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  t[--i] = 'x';
  t[--i] = '0';
  put(b, t + i, sizeof t - i);
}

void _hak_buf_pad(hak_buf_t *b, size_t width) {
  while (b->col < width) put(b, " ", 1);
}

/* n bytes in the largest binary unit they reach, with one decimal unless
 * it is 0: "64 GiB", "1.5 MiB", "4096 bytes" below 4 KiB... */
void _hak_buf_bytes(hak_buf_t *b, size_t n) {
  static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 4096) {
    _hak_buf_dec(b, n);
    _hak_buf_str(b, " bytes");
    return;
  }
  unsigned u = 0;
  while (u + 1 < sizeof units / sizeof units[0] && n >> (10 * (u + 2)) != 0) u++;
  unsigned shift = 10 * (u + 1);
  uint64_t whole = n >> shift,
           tenth = (uint64_t)(((unsigned __int128)(n & (((size_t)1 << shift) - 1)) * 10) >> shift);
  _hak_buf_dec(b, whole);
  if (tenth) {
    _hak_buf_str(b, ".");
    _hak_buf_dec(b, tenth);
  }
  _hak_buf_str(b, " ");
  _hak_buf_str(b, units[u]);
}

void _hak_assert_fail(const char *expr, const char *file, int line) {
  hak_buf_t buf = {.fd = 2};
  _hak_buf_str(&buf, "hakmem: internal check failed: ");
  _hak_buf_str(&buf, expr);
  _hak_buf_str(&buf, " at ");
  _hak_buf_str(&buf, file);
  _hak_buf_str(&buf, ":");
  _hak_buf_dec(&buf, (uint64_t)line);
  _hak_buf_str(&buf, "\n");
  _hak_buf_flush(&buf);
  _hak_os_abort();
  __builtin_unreachable();
}
