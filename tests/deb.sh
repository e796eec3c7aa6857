#!/bin/bash
# tests/deb.sh — the Debian packages, installed on this machine. Run by make
# test when TEST_DEB=1 (.ci/run sets it; it needs root, and changes the
# system's packages for the time of the test).
#
# make deb (dpkg-buildpackage; lintian, whose warnings fail it), then dpkg
# -i libhakmem0, libhakmem-dev and hakmem; then programs on the installed
# files: the api test preloaded as LD_PRELOAD=libhakmem.so.0 (the dynamic
# loader finds it in the multiarch directory) and by its full path, the
# installed launcher (which must find its libraries there) with the default
# and the secure build, tests/installed.c built with pkg-config against
# libhakmem-dev, the man pages; dpkg -r must remove every file and the
# libraries from the loader's cache. Needs the test binaries (make
# test-build). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
unset MAKEFLAGS MAKELEVEL MFLAGS
. tests/checks.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-deb.XXXXXX") || exit 1
packages=(libhakmem0 libhakmem-dev hakmem)
# Whatever happens, the packages do not outlive the test.
trap 'dpkg -r "${packages[@]}" >/dev/null 2>&1; rm -rf "$tmp"' EXIT

if [ "$(id -u)" != 0 ]; then
  check "tests/deb.sh runs as root (it installs packages)" 1
  finish
fi
libdir=/usr/lib/x86_64-linux-gnu
out=$tmp/out

t=$SECONDS
make -s --no-print-directory deb >"$out" 2>&1
check "make deb: the packages built, lintian clean ($((SECONDS - t)) s)" $? "$(cat "$out")"
debs=()
for p in "${packages[@]}"; do debs+=("build/deb/${p}_${version}_amd64.deb"); done
ls "${debs[@]}" >"$out" 2>&1
check "make deb wrote ${packages[*]} into build/deb/" $? "$(cat "$out")"

dpkg -i "${debs[@]}" >"$out" 2>&1
check "dpkg -i ${packages[*]}" $? "$(cat "$out")"
dpkg -L "${packages[@]}" 2>/dev/null | while read -r f; do [ -d "$f" ] || echo "$f"; done >"$tmp/files"

B=tests/bin
env LD_PRELOAD="libhakmem.so.$so" "$B/glibc/api" >"$out" 2>&1
check "api under LD_PRELOAD=libhakmem.so.$so (the installed library, by its soname)" $? "$(cat "$out")"
env LD_PRELOAD="$libdir/libhakmem.so.$so" HAKMEM_STATS=1 /bin/true 2>"$out"
grep -q '^hakmem: pid=' "$out"
check "a program under LD_PRELOAD=$libdir/libhakmem.so.$so prints hakmem's line at exit" $? "$(cat "$out")"

got=$(/usr/bin/hakmem run -- sh -c 'echo "$LD_PRELOAD"' 2>&1)
[ "$got" = "$libdir/libhakmem.so.$version" ]
check "the installed launcher preloads $libdir/libhakmem.so.$version" $? "$got"
/usr/bin/hakmem run -- "$B/glibc/api" >"$out" 2>&1
check "api run by the installed launcher" $? "$(cat "$out")"
/usr/bin/hakmem run --secure --option QUARANTINE_KB=0 -- "$B/glibc/api" >"$out" 2>&1 &&
  /usr/bin/hakmem run --secure -- sh -c 'echo "$LD_PRELOAD"' | grep -qx "$libdir/libhakmem-secure.so.$version"
check "api run by the installed launcher on the secure build" $? "$(cat "$out")"

flags=$(pkg-config --cflags --libs hakmem 2>&1)
# shellcheck disable=SC2086  # pkg-config's flags are words
cc -std=gnu11 -o "$tmp/prog" tests/installed.c $flags >"$out" 2>&1 && "$tmp/prog" >>"$out" 2>&1
check "a program built with pkg-config against libhakmem-dev ($flags) runs" $? "$(cat "$out")"

if grep -qs '^path-exclude.*/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
  echo "note: dpkg is told not to install man pages here (/etc/dpkg/dpkg.cfg.d); they are not looked for"
else
  man -w 1 hakmem >"$out" 2>&1 && man -w 3 hakmem >>"$out" 2>&1 &&
    [ "$(cat "$out")" = "/usr/share/man/man1/hakmem.1.gz
/usr/share/man/man3/hakmem.3.gz" ]
  check "man 1 hakmem and man 3 hakmem find the installed pages" $? "$(cat "$out")"
fi

dpkg -r "${packages[@]}" >"$out" 2>&1
check "dpkg -r ${packages[*]}" $? "$(cat "$out")"
left=$(while read -r f; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done <"$tmp/files")
[ -s "$tmp/files" ] && [ -z "$left" ] && ! ldconfig -p | grep -q libhakmem
check "dpkg -r leaves none of the packages' $(wc -l <"$tmp/files") files, and no libhakmem in the loader's cache" $? \
  "$left$(ldconfig -p | grep libhakmem)"
finish
