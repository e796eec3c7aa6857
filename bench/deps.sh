#!/bin/sh
# deps.sh bench|instr|programs: installs what the benchmarks need when it is missing,
# with apt-get (root, or sudo without a password). Never fails: whatever
# cannot be installed is reported and skipped later (a missing peer allocator
# is skipped by the runner, a missing gnuplot means no chart, a missing
# valgrind means no instruction counts, a missing program is skipped by
# programs.sh). BENCH_NO_INSTALL=1 installs nothing.
what=${1:-bench}
missing=""
have_lib() {
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/lib /usr/lib; do
    [ -f "$d/$1" ] && return 0
  done
  return 1
}
if [ "$what" = instr ]; then
  command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
elif [ "$what" = programs ]; then
  command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
  command -v python3 >/dev/null 2>&1 || missing="$missing python3"
  command -v g++ >/dev/null 2>&1 || missing="$missing g++"
  command -v xz >/dev/null 2>&1 || missing="$missing xz-utils"
  command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
  command -v redis-cli >/dev/null 2>&1 || missing="$missing redis-tools"
else
  command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
fi
have_lib libmimalloc.so.2 || missing="$missing libmimalloc2.0"
have_lib libjemalloc.so.2 || missing="$missing libjemalloc2"
have_lib libtcmalloc_minimal.so.4 || missing="$missing libtcmalloc-minimal4"
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so >/dev/null 2>&1 ||
  missing="$missing libclang-rt-14-dev"
[ -n "$missing" ] || exit 0

if [ -n "${BENCH_NO_INSTALL:-}" ]; then
  echo "bench: not installing (BENCH_NO_INSTALL set):$missing"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "bench: no apt-get; not installed:$missing"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "bench: not root; not installed:$missing"
  exit 0
fi
echo "bench: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null 2>&1 || echo "bench: apt-get update failed"
# One at a time, so that a package the archive lacks does not stop the others.
for p in $missing; do
  $sudo apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
    echo "bench: could not install $p (skipped)"
done
exit 0
