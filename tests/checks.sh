# tests/checks.sh — sourced by tests/install.sh and tests/deb.sh, run from
# the top of the tree: $version, include/hakmem.h's, and $so, its major
# number (the soname's); check NAME STATUS [DETAIL] counts a check (STATUS
# 0: passed; a failure prints NAME and the last lines of DETAIL); finish
# prints the closing line "N passed, N failed" and exits, with status 0 iff
# nothing failed.
pass=0 failn=0
check() {
  if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else
    failn=$((failn + 1))
    echo "FAIL $1"
    [ -n "${3:-}" ] && printf '%s\n' "$3" | tail -n 20 | sed 's/^/    /'
  fi
}
finish() {
  echo "$pass passed, $failn failed"
  [ "$failn" -eq 0 ]
  exit
}
version=$(sed -n 's/^#define HAKMEM_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' include/hakmem.h | paste -sd.)
so=${version%%.*}
