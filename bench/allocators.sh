# allocators.sh — sourced by run.sh and programs.sh: the allocators to run,
# in alloc_names / alloc_libs (the preload; '' for glibc) / alloc_vers (what
# the report says it is) / alloc_shown (the path to print) / alloc_envs
# (options, VAR=VALUE separated by commas), and nalloc. hakmem and its secure
# build run from copies in $tmp (a rebuild during a run must not mix
# versions). Reads root, tmp, die and the BENCH_ALLOCATORS, BENCH_HAKMEM,
# BENCH_HAKMEM_SECURE, BENCH_VARIANTS and BENCH_PEERS settings (run.sh).
alloc_names=()
alloc_libs=()
alloc_vers=()
alloc_shown=() # the path to print (hakmem runs from a snapshot)
alloc_envs=()  # options it runs under (BENCH_VARIANTS), VAR=VALUE separated by commas
declare -A want=()
for a in ${BENCH_ALLOCATORS:-}; do want[$a]=1; done
wanted() { [[ ${#want[@]} -eq 0 || -n ${want[$1]:-} ]]; }

pkg_version() { # library path -> "package version", or ""
  command -v dpkg-query >/dev/null 2>&1 || return 0
  local real pkg
  real=$(readlink -f "$1")
  pkg=$(dpkg-query -S "$real" 2>/dev/null | head -1 | cut -d: -f1)
  [[ -n $pkg ]] || pkg=$(dpkg-query -S "$1" 2>/dev/null | head -1 | cut -d: -f1)
  [[ -n $pkg ]] && echo "$pkg $(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)"
}

add_alloc() { alloc_names+=("$1"); alloc_libs+=("$2"); alloc_vers+=("$3"); alloc_shown+=("${4:-$2}"); alloc_envs+=("${5:-}"); }

hakmem_lib=${BENCH_HAKMEM:-$root/libhakmem.so}
if wanted hakmem; then
  if [[ -f $hakmem_lib ]]; then
    hv=$(sed -n 's/^#define HAKMEM_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$root/include/hakmem.h" 2>/dev/null | paste -sd. -)
    gv=$(git -C "$root" describe --always --dirty 2>/dev/null)
    # Run a copy: a rebuild of the library during the suite must not mix versions.
    cp "$hakmem_lib" "$tmp/libhakmem.so" || die "cannot copy $hakmem_lib"
    sum=$(sha256sum "$tmp/libhakmem.so" 2>/dev/null | cut -c1-12)
    add_alloc hakmem "$tmp/libhakmem.so" "hakmem ${hv:-?}${gv:+ (git $gv)}${sum:+, sha256 $sum}" "$(readlink -f "$hakmem_lib")"
    for v in ${BENCH_VARIANTS:-}; do
      add_alloc "${v%%=*}" "$tmp/libhakmem.so" "hakmem with ${v#*=}" "$(readlink -f "$hakmem_lib")" "${v#*=}"
    done
  else
    echo "skipped: hakmem ($hakmem_lib not found; 'make' builds it)"
  fi
fi
secure_lib=${BENCH_HAKMEM_SECURE:-$root/libhakmem-secure.so}
if wanted hakmem-secure; then
  if [[ -f $secure_lib ]]; then
    cp "$secure_lib" "$tmp/libhakmem-secure.so" || die "cannot copy $secure_lib"
    sum=$(sha256sum "$tmp/libhakmem-secure.so" 2>/dev/null | cut -c1-12)
    add_alloc hakmem-secure "$tmp/libhakmem-secure.so" "hakmem ${hv:-?} secure build${sum:+, sha256 $sum}" \
      "$(readlink -f "$secure_lib")"
  else
    echo "skipped: hakmem-secure ($secure_lib not found; 'make' builds it)"
  fi
fi
if wanted glibc; then
  add_alloc glibc "" "glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
fi
libdirs="/usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/lib /usr/lib"
find_lib() { local d; for d in $libdirs; do [[ -f $d/$1 ]] && { echo "$d/$1"; return; }; done; }
# name soname [quiet if absent]
for peer in "mimalloc libmimalloc.so.2" "jemalloc libjemalloc.so.2" "tcmalloc libtcmalloc_minimal.so.4" \
            "snmalloc libsnmallocshim.so quiet" "rpmalloc librpmalloc.so quiet"; do
  set -- $peer
  wanted "$1" || continue
  lib=$(find_lib "$2")
  if [[ -n $lib ]]; then
    v=$(pkg_version "$lib")
    add_alloc "$1" "$lib" "${v:-$(basename "$(readlink -f "$lib")")}"
  elif [[ -z ${3:-} ]]; then
    echo "skipped: $1 ($2 not installed)"
  fi
done
# scudo (LLVM's hardened allocator) from Debian's libclang-rt-N-dev.
if wanted scudo; then
  lib=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-x86_64.so 2>/dev/null | sort -V | tail -1)
  if [[ -n $lib ]]; then
    v=$(pkg_version "$lib")
    add_alloc scudo "$lib" "${v:-scudo standalone}"
  else
    echo "skipped: scudo (libclang_rt.scudo_standalone-x86_64.so not installed: libclang-rt-14-dev)"
  fi
fi
for p in ${BENCH_PEERS:-}; do
  n=${p%%=*} l=${p#*=}
  if [[ -f $l ]]; then add_alloc "$n" "$(readlink -f "$l")" "$(basename "$(readlink -f "$l")")"
  else echo "skipped: $n ($l not found)"; fi
done
((${#alloc_names[@]})) || die "no allocator to run"
nalloc=${#alloc_names[@]}
