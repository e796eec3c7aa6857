#!/bin/bash
# tests/install.sh — make install and make uninstall (install.mk).
#
# Installs into a temporary DESTDIR in two layouts, the default (PREFIX
# /usr/local) and Debian's (PREFIX /usr, LIBDIR /usr/lib/x86_64-linux-gnu),
# and checks each tree: the exact list of files with their modes and links,
# the libraries' sonames, the pkg-config file; builds tests/installed.c
# with pkg-config against the tree, dynamic and -static, and runs it (the
# installed library is its malloc); runs the installed launcher, which must
# find the installed libraries; reads the man pages (no warning, no
# placeholder left, every hak_* call of hakmem.h, every option, statistic
# and launcher flag in them); then make uninstall must leave no file. Also
# that debian/changelog is at the header's version. Run from make test
# (the libraries built); ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
unset MAKEFLAGS MAKELEVEL MFLAGS
. tests/checks.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

changelog=$(sed -n '1s/^hakmem (\([^)]*\)).*/\1/p' debian/changelog)
[ "$changelog" = "$version" ]
check "debian/changelog is at the header's version ($version)" $? "debian/changelog: $changelog"

# The files make install must write, relative to DESTDIR, with their modes
# (a link: where it points); the layout is PREFIX LIBDIR.
expected() {
  local p=${1#/} l=${2#/} lib
  {
    echo "$p/bin/hakmem 755"
    echo "$p/include/hakmem.h 644"
    for lib in libhakmem libhakmem-secure libhakmem-stats libhakmem-profile; do
      echo "$l/$lib.a 644"
      echo "$l/$lib.so -> $lib.so.$so"
      echo "$l/$lib.so.$so -> $lib.so.$version"
      echo "$l/$lib.so.$version 644"
    done
    echo "$l/pkgconfig/hakmem.pc 644"
    echo "$p/share/man/man1/hakmem.1 644"
    echo "$p/share/man/man3/hakmem.3 644"
  } | sort
}

# The names a page must hold: the hak_* calls of hakmem.h, the fields of
# hak_stats_t, the options the launcher knows, the flags of its usage.
hak_calls=$(grep -vE '^ *(/\*|\*)' include/hakmem.h | grep -oE '\bhak_[a-z0-9_]+\(' | tr -d '(' | sort -u)
stat_fields=$(sed -n 's/^ *X([a-z0-9_]*, \([a-z0-9_]*\),.*/\1/p' include/hakmem.h)

# layout LABEL PREFIX LIBDIR: install, check, uninstall.
layout() {
  local label=$1 prefix=$2 libdir=$3 d=$tmp/$1 out=$tmp/out
  local vars=(PREFIX="$prefix" LIBDIR="$libdir")
  make -s --no-print-directory install DESTDIR="$d" "${vars[@]}" >"$out" 2>&1
  check "$label: make install" $? "$(tail -n 15 "$out")"

  (cd "$d" && find . -type l -printf '%P -> %l\n' -o ! -type d -printf '%P %m\n') | sort >"$tmp/got"
  expected "$prefix" "$libdir" >"$tmp/want"
  cmp -s "$tmp/want" "$tmp/got"
  check "$label: exactly the expected files, modes and links" $? "$(diff "$tmp/want" "$tmp/got")"

  local lib bad=""
  for lib in libhakmem libhakmem-secure libhakmem-stats libhakmem-profile; do
    s=$(readelf -d "$d$libdir/$lib.so.$version" 2>&1 | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
    [ "$s" = "$lib.so.$so" ] || bad="$bad $lib.so.$version: soname '$s';"
    [ -e "$d$libdir/$lib.so" ] || bad="$bad $lib.so leads nowhere;"
  done
  [ -z "$bad" ]
  check "$label: each library's soname is NAME.so.$so, and the links resolve" $? "$bad"

  local pc=(env PKG_CONFIG_LIBDIR="$d$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$d" pkg-config)
  local flags
  flags=$("${pc[@]}" --cflags --libs hakmem 2>&1 | sed "s/ *$//")
  [ "$flags" = "-I$d$prefix/include -L$d$libdir -lhakmem" ] && [ "$("${pc[@]}" --modversion hakmem)" = "$version" ]
  check "$label: pkg-config --cflags --libs hakmem" $? "$flags"

  # shellcheck disable=SC2046  # pkg-config's flags are words
  cc -std=gnu11 -o "$tmp/prog" tests/installed.c $("${pc[@]}" --cflags --libs hakmem) -Wl,-rpath,"$d$libdir" \
    >"$out" 2>&1 && "$tmp/prog" >>"$out" 2>&1
  check "$label: a program built with pkg-config runs on the installed library" $? "$(tail -n 15 "$out")"
  readelf -d "$tmp/prog" | grep -q "(NEEDED).*\[libhakmem.so.$so\]" &&
    LD_TRACE_LOADED_OBJECTS=1 "$tmp/prog" | grep -qF "libhakmem.so.$so => $d$libdir/libhakmem.so.$so ("
  check "$label: the program needs libhakmem.so.$so and loads it from the tree" $? \
    "$(readelf -d "$tmp/prog" | grep NEEDED; LD_TRACE_LOADED_OBJECTS=1 "$tmp/prog")"
  # shellcheck disable=SC2046
  cc -std=gnu11 -static -o "$tmp/prog-static" tests/installed.c $("${pc[@]}" --static --cflags --libs hakmem) \
    >"$out" 2>&1 && "$tmp/prog-static" >>"$out" 2>&1
  check "$label: the program linked -static with libhakmem.a runs" $? "$(tail -n 15 "$out")"

  local h=$d$prefix/bin/hakmem got want
  got=$("$h" run -- sh -c 'echo "$LD_PRELOAD"' 2>&1)$("$h" run --secure -- sh -c 'echo " $LD_PRELOAD"' 2>&1)
  got=$got$("$h" run --count-all -- sh -c 'echo " $LD_PRELOAD"' 2>&1)
  got=$got$("$h" run --profile "$tmp/p.heap" -- sh -c 'echo " $LD_PRELOAD"' 2>&1)
  want="$d$libdir/libhakmem.so.$version $d$libdir/libhakmem-secure.so.$version $d$libdir/libhakmem-stats.so.$version"
  want="$want $d$libdir/libhakmem-profile.so.$version"
  [ "$got" = "$want" ]
  check "$label: the installed launcher preloads the installed libraries" $? "$got"
  got=$("$h" run --stats=line -- /bin/true 2>&1)
  [[ $got == "hakmem: pid="* ]]
  check "$label: a program run by the installed launcher is on hakmem" $? "$got"

  if command -v man >/dev/null 2>&1; then
    local page text missing
    for page in 1/hakmem.1 3/hakmem.3; do
      LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$d$prefix/share/man/man$page" \
        2>"$out" >/dev/null
      ! grep -q . "$out" && ! grep -q '@[A-Z]*@' "$d$prefix/share/man/man$page"
      check "$label: man page $page renders without a warning, every placeholder filled" $? "$(cat "$out")"
    done
    text=$(MANWIDTH=200 MANROFFOPT=-rHY=0 man -l "$d$prefix/share/man/man3/hakmem.3" 2>/dev/null)
    missing=""
    for name in $hak_calls $stat_fields $("$h" options | awk 'NR > 1 { print $1 }'); do
      grep -qw -- "$name" <<<"$text" || missing="$missing $name"
    done
    [ -z "$missing" ] && [ -n "$hak_calls" ] && [ -n "$stat_fields" ]
    check "$label: hakmem(3) has every hak_* call, statistic and option" $? "missing:$missing"
    text=$(MANWIDTH=200 MANROFFOPT=-rHY=0 man -l "$d$prefix/share/man/man1/hakmem.1" 2>/dev/null)
    missing=""
    flags=$("$h" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
    for name in $flags; do
      grep -q -- "$name" <<<"$text" || missing="$missing $name"
    done
    [ -z "$missing" ] && [ -n "$flags" ]
    check "$label: hakmem(1) has every flag of the launcher's usage" $? "missing:$missing"
  else
    echo "note: no man; the man pages are not read (apt-get install man-db)"
  fi

  make -s --no-print-directory uninstall DESTDIR="$d" "${vars[@]}" >"$out" 2>&1
  check "$label: make uninstall" $? "$(tail -n 15 "$out")"
  left=$(cd "$d" && find . ! -type d)
  [ -z "$left" ]
  check "$label: make uninstall leaves no file" $? "$left"
}

layout default /usr/local /usr/local/lib
layout debian /usr /usr/lib/x86_64-linux-gnu

finish
