/* tests/installed.c — a program built against an installed hakmem with
 * pkg-config (tests/install.sh: a tree make install staged; tests/deb.sh:
 * the Debian packages), linked with -lhakmem, dynamic or -static. It
 * checks that the installed header and library agree on the version and
 * that hakmem is the program's malloc: malloc's blocks are hakmem's (their
 * usable sizes agree, hak_stats counts them, hak_free takes them, where it
 * would stop the program on a block of another allocator). */
#include <hakmem.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define STR2(x) #x
#define STR(x) STR2(x)
#define VERSION STR(HAKMEM_VERSION_MAJOR) "." STR(HAKMEM_VERSION_MINOR) "." STR(HAKMEM_VERSION_PATCH)

int main(void) {
  const char *v = hak_version();
  CHECKV("hak_version() is the installed header's version",
         strncmp(v, "hakmem " VERSION, strlen("hakmem " VERSION)) == 0, "%s, header %s", v, VERSION);

  hak_stats_t before, after;
  hak_stats(&before);
  char *p = malloc(1000);
  if (!CHECK("malloc(1000)", p != NULL)) return th_done();
  memset(p, 0x5a, 1000);
  hak_stats(&after);
  size_t usable = malloc_usable_size(p);
  CHECKV("malloc_usable_size and hak_usable_size agree on malloc's block",
         usable >= 1000 && usable == hak_usable_size(p), "%zu, %zu", usable, hak_usable_size(p));
  CHECKV("hak_stats counts malloc's block in use", after.in_use >= before.in_use + 1000,
         "%zu before, %zu after", before.in_use, after.in_use);
  hak_stats_t freed;
  hak_free(p);
  hak_stats(&freed);
  CHECKV("hak_free takes malloc's block back", freed.in_use + 1000 <= after.in_use, "%zu before, %zu after",
         after.in_use, freed.in_use);
  return th_done();
}
