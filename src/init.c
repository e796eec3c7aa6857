/* init.c — the library's constructor (start-up, thread.c's _hak_init) and
 * destructor (the exit report), its version, and the glibc hooks a static
 * link must find defined. */
#include "internal.h"

/* The profiler starts here, not at the first malloc: a program's first
 * malloc may come from the loader itself, before the objects whose code
 * the profiler looks up (dl_iterate_phdr) are all there. */
__attribute__((constructor)) static void hak_constructor(void) {
  _hak_init();
  if (hak_opt(HAK_OPT_PROFILE)) _hak_profile_start();
  if (_hak_profile_on) _hak_heap_profile_start();
  if (hak_opt(HAK_OPT_CRASH_REPORT)) _hak_crash_install();
  _hak_timeline_start();
}

/* At exit: the secure build checks what the exiting thread's quarantine
 * holds (the blocks freed last), then the exit report and the heap
 * profile. */
__attribute__((destructor)) static void hak_destructor(void) {
  if (hak_cfg_secure) _hak_secure_check_quarantine("exit");
  if (hak_opt(HAK_OPT_STATS)) _hak_stats_exit_report();
  _hak_profile_exit();
  _hak_timeline_end();
}

/* Static glibc calls these around fork and at thread exit; hakmem's own
 * handlers are registered with pthread_atfork, so they have nothing to do.
 * Defining them keeps glibc's malloc.o out of a -static link. */
void __malloc_fork_lock_parent(void);
void __malloc_fork_unlock_parent(void);
void __malloc_fork_unlock_child(void);
void __malloc_arena_thread_freeres(void);
void __malloc_fork_lock_parent(void) {}
void __malloc_fork_unlock_parent(void) {}
void __malloc_fork_unlock_child(void) {}
void __malloc_arena_thread_freeres(void) {}

HAK_API const char *hak_version(void) {
  return hak_cfg_secure    ? HAK_VERSION_TEXT " (secure build)"
         : hak_cfg_stats   ? HAK_VERSION_TEXT " (stats build)"
         : hak_cfg_profile ? HAK_VERSION_TEXT " (profile build)"
                           : HAK_VERSION_TEXT;
}
