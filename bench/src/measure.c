/* measure: runs one benchmark process and reports how it ended, its wall
 * time and its peak RSS (ru_maxrss from wait4), so the runner needs neither
 * /usr/bin/time nor a shell timeout. The preload is set for the child only:
 * the runner and this wrapper never run on the allocator under test.
 *   measure [-p LIB.so] [-t timeout_s] [-c CPU] -o REPORT -- prog args...
 * -p '' (or no -p) runs the child with LD_PRELOAD removed (plain glibc).
 * -c runs the child on that CPU alone, for a single-threaded benchmark:
 * free to move between CPUs, the same program ran at two speeds 1.5x
 * apart, at random from one run to the next (bench/README.md).
 * REPORT gets one line: status=ok|exit:N|signal:NAME|timeout|exec wall_ms=..
 * maxrss_kb=.. user_ms=.. sys_ms=.. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t expired;
static void on_alarm(int sig) {
  (void)sig;
  expired = 1;
}

static double ms(struct timeval tv) { return tv.tv_sec * 1e3 + tv.tv_usec / 1e3; }

int main(int argc, char **argv) {
  const char *preload = NULL, *report = NULL;
  double timeout = 0;
  int opt, cpu = -1;
  while ((opt = getopt(argc, argv, "+p:t:c:o:")) != -1) {
    switch (opt) {
    case 'p': preload = optarg; break;
    case 't': timeout = atof(optarg); break;
    case 'c': cpu = atoi(optarg); break;
    case 'o': report = optarg; break;
    default: goto usage;
    }
  }
  if (!report || optind >= argc) {
  usage:
    fprintf(stderr, "usage: measure [-p LIB.so] [-t timeout_s] [-c CPU] -o REPORT -- prog args...\n");
    return 2;
  }

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  pid_t pid = fork();
  if (pid < 0) {
    perror("measure: fork");
    return 2;
  }
  if (pid == 0) {
    setpgid(0, 0);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore); /* a crashing allocator must not dump cores */
    if (cpu >= 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof one, &one) != 0) {
        fprintf(stderr, "measure: cannot run on CPU %d: %s\n", cpu, strerror(errno));
        _exit(127);
      }
    }
    if (preload && *preload) setenv("LD_PRELOAD", preload, 1);
    else unsetenv("LD_PRELOAD");
    execvp(argv[optind], argv + optind);
    fprintf(stderr, "measure: cannot run %s: %s\n", argv[optind], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  if (timeout > 0) {
    struct itimerval it = {{0, 0}, {(time_t)timeout, (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)}};
    setitimer(ITIMER_REAL, &it, NULL);
  }
  int status = 0, timed_out = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  for (;;) {
    pid_t w = wait4(pid, &status, 0, &ru);
    if (w == pid) break;
    if (w < 0 && errno == EINTR && expired && !timed_out) {
      timed_out = 1;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      continue;
    }
    if (w < 0 && errno != EINTR) {
      perror("measure: wait4");
      return 2;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;

  char st[64];
  if (timed_out) snprintf(st, sizeof st, "timeout");
  else if (WIFSIGNALED(status)) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
    const char *abbrev = sigabbrev_np(WTERMSIG(status));
#else
    const char *abbrev = NULL;
#endif
    snprintf(st, sizeof st, "signal:SIG%s", abbrev ? abbrev : "?");
  } else if (WEXITSTATUS(status) == 127) snprintf(st, sizeof st, "exec");
  else if (WEXITSTATUS(status) != 0) snprintf(st, sizeof st, "exit:%d", WEXITSTATUS(status));
  else snprintf(st, sizeof st, "ok");

  FILE *f = fopen(report, "w");
  if (!f) {
    perror(report);
    return 2;
  }
  fprintf(f, "status=%s wall_ms=%.1f maxrss_kb=%ld user_ms=%.1f sys_ms=%.1f\n", st, wall, ru.ru_maxrss,
          ms(ru.ru_utime), ms(ru.ru_stime));
  fclose(f);
  return 0;
}
