/* tests/crash-handler.c — a library that installs a SIGSEGV handler when
 * it starts (tests/crash.c preloads it after hakmem, so that it starts
 * first): the handler says so on stderr and exits 42. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_segv(int sig) {
  static const char line[] = "crash-handler: SIGSEGV\n";
  (void)sig;
  if (write(2, line, sizeof line - 1) < 0) _exit(43);
  _exit(42);
}

__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, NULL);
}
