/* timeline.c — HAKMEM_TIMELINE=FILE: a helper thread, started only when the
 * option is set, appends one JSON line of memory figures to FILE every
 * HAKMEM_TIMELINE_MS (100 ms), and the process one more at exit:
 *   {"pid":4242,"start":1764766800123,"t_ms":100,"rss":4321280,
 *    "committed":...,"in_use":...,"empty":...,"slab_free":...,"purged":...,
 *    "room":...,"keep":...,"policy":"static","minflt":...,"majflt":...,
 *    "tiny":...,"mid":...,"pool":...,"large":...}
 * pid and start (Unix time in ms) name the program that wrote it: a
 * program's children append to the same file when they inherit the
 * variable, and an exec keeps the pid; t_ms counts from start-up; rss is
 * the process's resident bytes; committed, in_use, empty, slab_free (the
 * free bytes of the slabs held: fragmentation) and purged are
 * hak_stats_t's; room is the working room in force, keep the memory
 * HAKMEM_ACE keeps for refaults, policy the one HAKMEM_ELO has in force;
 * minflt and majflt the process's page faults so far (getrusage); tiny,
 * mid, pool and large the bytes of live blocks in each tier. A line is
 * one write to a file opened to append, so lines from several processes
 * do not mix; a fork child writes none (an exec'd one starts its own).
 * `hakmem plot FILE` draws the timeline. */
#include <pthread.h>

#include "internal.h"

static int timeline_fd = -1;
static int timeline_pid;
static uint64_t timeline_wall; /* when the process (its program) started, Unix ms */
static hak_tick_t timeline_start;

static void field(hak_buf_t *b, const char *name, uint64_t v) {
  _hak_buf_str(b, name);
  _hak_buf_dec(b, v);
}

static void write_line(void) {
  hak_stats_t st;
  size_t tier[4];
  hak_usage_t u;
  _hak_stats_tiers(&st, tier);
  _hak_os_usage(&u);
  hak_buf_t b = {.fd = timeline_fd};
  field(&b, "{\"pid\":", (uint64_t)timeline_pid);
  field(&b, ",\"start\":", timeline_wall);
  field(&b, ",\"t_ms\":", (_hak_os_ticks() - timeline_start) / _hak_os_ms_ticks(1));
  field(&b, ",\"rss\":", _hak_os_rss());
  field(&b, ",\"committed\":", st.committed);
  field(&b, ",\"in_use\":", st.in_use);
  field(&b, ",\"empty\":", st.empty);
  field(&b, ",\"slab_free\":", st.slab_free);
  field(&b, ",\"purged\":", st.purged);
  field(&b, ",\"room\":", st.room);
  field(&b, ",\"keep\":", hak_refault_keep(_hak_os_ticks()));
  _hak_buf_str(&b, ",\"policy\":\"");
  _hak_buf_str(&b, hak_policy()->name);
  _hak_buf_str(&b, "\"");
  field(&b, ",\"minflt\":", u.minor_faults);
  field(&b, ",\"majflt\":", u.major_faults);
  field(&b, ",\"tiny\":", tier[0]);
  field(&b, ",\"mid\":", tier[1]);
  field(&b, ",\"pool\":", tier[2]);
  field(&b, ",\"large\":", tier[3]);
  _hak_buf_str(&b, "}\n");
  _hak_buf_flush(&b);
}

static void *timeline_run(void *arg) {
  (void)arg;
  for (;;) {
    _hak_os_sleep_ms((uint64_t)hak_opt(HAK_OPT_TIMELINE_MS));
    write_line();
  }
  return NULL;
}

/* A failure to start says why on stderr; the program runs on without. */
void _hak_timeline_start(void) {
  const char *path = hak_opt_text(HAK_TEXT_TIMELINE);
  if (!path) return;
  timeline_start = _hak_os_ticks();
  timeline_pid = _hak_os_getpid();
  timeline_wall = _hak_os_wall_ms();
  timeline_fd = _hak_os_open_append(path);
  int err = timeline_fd < 0 ? -timeline_fd : 0;
  pthread_attr_t attr;
  pthread_t t;
  if (!err && !(err = pthread_attr_init(&attr))) {
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create(&t, &attr, timeline_run, NULL);
    pthread_attr_destroy(&attr);
  }
  if (!err) return;
  hak_buf_t b = {.fd = 2};
  _hak_buf_str(&b, "hakmem: HAKMEM_TIMELINE=");
  _hak_buf_str(&b, path);
  _hak_buf_str(&b,
               timeline_fd < 0 ? ": the file cannot be opened (errno " : ": no thread to write it (errno ");
  _hak_buf_dec(&b, (uint64_t)err);
  _hak_buf_str(&b, "); no timeline\n");
  _hak_buf_flush(&b);
  if (timeline_fd >= 0) _hak_os_close(timeline_fd);
  timeline_fd = -1;
}

void _hak_timeline_end(void) {
  if (timeline_fd >= 0 && _hak_os_getpid() == timeline_pid) write_line();
}
