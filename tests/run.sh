#!/bin/bash
# tests/run.sh — runs the whole hakmem test suite (make test builds what it
# needs first). Prints one line per test binary or script check, then exactly
# one closing line `N passed, N failed`: the checks of every binary plus one
# per script-level check. Exit status 0 iff nothing failed.
#
#   tests/bin/NAME          linked with -lhakmem (release)
#   tests/bin/debug/NAME    linked with the debug library
#   tests/bin/api-static    linked -static with libhakmem.a
#   tests/bin/glibc/NAME    plain glibc binaries, run with LD_PRELOAD
#   tests/bin/ubsan/libhakmem.so, tests/bin/tsan/tsan, tests/bin/fuzz/alloc
#   and alloc-secure        the sanitizer builds and the fuzzer, of the
#                           default and the secure build (skipped with a line
#                           when clang or its runtimes are missing)
# then the library's TLS segment and exports, the launcher, make install
# (tests/install.sh) and, with TEST_DEB=1, the Debian packages installed
# (tests/deb.sh), and real programs (python3, gcc, git, sort, a build of
# this project) under LD_PRELOAD, whose output must be byte-identical to a
# run without it.
#
# Options get their own runs: stress with HAKMEM_THP=1 and 2, tiers with
# HAKMEM_CHECK=1 and HAKMEM_MADV_FREE=1, rss's trim case with HAKMEM_THP=1.
#
# TEST_TIMEOUT (default 300) bounds each command in seconds. RSS_SECONDS
# (default 30) is the length of rss's mixed workload in the release run; the
# LD_PRELOAD run takes at most 6 s of it and the debug run skips it (0 skips
# it everywhere). FUZZ_SECONDS (default 60) is the length of each fuzzing run.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
REL=$ROOT/libhakmem.so
DBG=$ROOT/debug/libhakmem.so
SEC=$ROOT/libhakmem-secure.so
STA=$ROOT/libhakmem-stats.so
PRO=$ROOT/libhakmem-profile.so
DPRO=$ROOT/debug/libhakmem-profile.so
B=tests/bin
TESTS=$(sed -n 's/^TEST_SUITE *:= *//p' tests/tests.mk)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-tests.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
PASSED=0
FAILED=0
START=$SECONDS

# Settings of the caller must not leak into the tests.
unset LD_PRELOAD
for v in $(env | sed -n 's/^\(HAKMEM_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$v"
done

# run_bin LABEL CMD...: runs one test binary and adds its closing line to the
# totals; a binary that crashes, times out or exits non-zero without
# reporting a failure counts as one failure.
run_bin() {
  local label=$1 out=$TMP/out t=$SECONDS rc line p=0 f=0 why=""
  shift
  timeout -k 10 "${TEST_TIMEOUT:-300}" "$@" >"$out" 2>&1 </dev/null
  rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed}
  fi
  if [ "$rc" -ne 0 ]; then
    case $rc in
    124 | 137) why=" (timed out after ${TEST_TIMEOUT:-300} s)" ;;
    *) if [ "$rc" -gt 128 ]; then why=" (killed by signal $((rc - 128)))"; else why=" (exit status $rc)"; fi ;;
    esac
    [ -z "$line" ] && why="$why, no closing line"
    [ "$f" -eq 0 ] && f=1
  fi
  PASSED=$((PASSED + p))
  FAILED=$((FAILED + f))
  if [ "$f" -eq 0 ]; then
    printf 'ok    %-34s %4d checks %4d s\n' "$label" "$p" $((SECONDS - t))
  else
    printf 'FAIL  %-34s %4d ok, %d bad%s\n' "$label" "$p" "$f" "$why"
    grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$out" | head -n 40 | sed 's/^/        /'
  fi
}

# check LABEL OK [DETAIL-FILE]: one script-level check; OK is 1 or 0.
check() {
  local label=$1 ok=$2 detail=${3:-}
  if [ "$ok" = 1 ]; then
    PASSED=$((PASSED + 1))
    printf 'ok    %s\n' "$label"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s\n' "$label"
    if [ -n "$detail" ] && [ -s "$detail" ]; then
      tail -n 20 "$detail" | sed 's/^/        /'
    fi
  fi
}

skip() { printf 'skip  %s\n' "$*"; }

# ---- the libraries --------------------------------------------------------------
libs_ok=1
for lib in "$REL" "$DBG" "$SEC" "$STA" "$PRO" "$DPRO" "$ROOT/libhakmem.a" "$ROOT/debug/libhakmem.a" \
  "$ROOT/libhakmem-secure.a" "$ROOT/libhakmem-stats.a" "$ROOT/libhakmem-profile.a" "$ROOT/hakmem"; do
  [ -f "$lib" ] || libs_ok=0
done
check "libraries built (libhakmem.so/.a, debug/, -secure, -stats, -profile; the launcher)" $libs_ok

# Exactly one thread-local in the library: one TLS program header, MemSiz 16
# (hak_tls: the heap pointer and the profile build's countdown).
for lib in "$REL" "$DBG" "$SEC" "$STA" "$PRO"; do
  name=${lib#"$ROOT"/}
  readelf -lW "$lib" >"$TMP/phdr" 2>&1
  tls=$(awk '$1 == "TLS"' "$TMP/phdr")
  n=$(printf '%s' "$tls" | grep -c TLS)
  memsz=$(printf '%s' "$tls" | awk '{print $6}')
  ok=0
  [ "$n" = 1 ] && [ $((memsz)) -eq 16 ] && ok=1
  printf '%s\n' "TLS program headers: $n; MemSiz ${memsz:-none}" >"$TMP/tlsinfo"
  check "$name has one TLS segment of MemSiz 0x10 (the heap pointer, the countdown)" $ok "$TMP/tlsinfo"
done

# The whole malloc API is exported; internal _hak_ names are not.
# The names: tests/bin/exports.h, made from src/exports.map and hakmem.h.
need="$(sed -n 's/^#define HAK_LIBC_EXPORTS(X)//p' tests/bin/exports.h | grep -oE '[_a-z0-9]+\)' | tr -d ')')
$(sed -n 's/^#define HAK_API_EXPORTS(X)//p' tests/bin/exports.h | grep -oE '[_a-z0-9]+\)' | tr -d ')' | sed 's/^/hak_/')"
for lib in "$REL" "$DBG" "$SEC" "$STA" "$PRO"; do
  name=${lib#"$ROOT"/}
  nm -D --defined-only "$lib" 2>/dev/null | awk '{print $NF}' | sed 's/@.*//' | sort -u >"$TMP/syms"
  : >"$TMP/missing"
  for s in $need; do
    grep -qx "$s" "$TMP/syms" || echo "missing: $s" >>"$TMP/missing"
  done
  grep '^_hak_' "$TMP/syms" | sed 's/^/exported internal: /' >>"$TMP/missing"
  ok=0
  [ -s "$TMP/syms" ] && [ ! -s "$TMP/missing" ] && ok=1
  check "$name exports the malloc API and hak_*, no _hak_ internals" $ok "$TMP/missing"
done
# C++'s operators (src/cxx.c): weak, in the shared libraries, not the archives.
for lib in "$REL" "$SEC"; do
  n=$(nm -D --defined-only "$lib" | awk '$2 == "W" && $3 ~ /^_Z(nwm|nam|dlPv|daPv|dlPvm|daPvm)$/' | wc -l)
  a=$(nm "${lib%.so}.a" 2>/dev/null | grep -c ' T _Znwm$')
  ok=0
  [ "$n" -eq 6 ] && [ "$a" -eq 0 ] && ok=1
  echo "$n of 6 exported; $a in the archive" >"$TMP/cxx"
  check "${lib#"$ROOT"/} exports C++'s six operators, weak; the archive none" $ok "$TMP/cxx"
done

# One code style (.clang-format) over src/, include/ and tests/.
if command -v clang-format >/dev/null 2>&1; then
  clang-format --dry-run --Werror src/*.c src/*.h include/*.h tests/*.c tests/*.h tests/*.cc tests/fuzz/*.c \
    >"$TMP/format" 2>&1
  ok=$?
  [ "$ok" = 0 ] && ok=1 || ok=0
  check "src/, include/ and tests/ are formatted as .clang-format says (clang-format -i fixes it)" $ok "$TMP/format"
else
  skip "the format check: clang-format is not installed (.ci/run installs it)"
fi

# The layers of src/ call only down (the list at the top of src/internal.h).
bash tests/layers.sh >"$TMP/layers" 2>&1
ok=$?
[ "$ok" = 0 ] && ok=1 || ok=0
check "src/ calls only down its layers ($(tail -n 1 "$TMP/layers"))" $ok "$TMP/layers"

# ---- test binaries ---------------------------------------------------------------
for t in $TESTS; do
  run_bin "$t" "$B/$t"
  run_bin "$t (debug)" "$B/debug/$t"
done
run_bin "api (static, libhakmem.a)" "$B/api-static"
run_bin "dlopen" "$B/glibc/dlopen" "$REL"
run_bin "dlopen (debug)" "$B/glibc/dlopen" "$DBG"
for t in $TESTS; do
  run_bin "$t (LD_PRELOAD)" env LD_PRELOAD="$REL" "$B/glibc/$t"
done
run_bin "stress (LD_PRELOAD debug)" env LD_PRELOAD="$DBG" "$B/glibc/stress"
# The heap profiler samples in the profile build only (the runs above:
# the other builds refuse HAKMEM_PROFILE=1).
run_bin "profile (LD_PRELOAD profile)" env LD_PRELOAD="$PRO" "$B/glibc/profile"
run_bin "profile (LD_PRELOAD debug profile)" env LD_PRELOAD="$DPRO" "$B/glibc/profile"
run_bin "profile (LD_PRELOAD profile, HAKMEM_PROFILE_UNWIND=0: libgcc's unwinder)" \
  env LD_PRELOAD="$PRO" HAKMEM_PROFILE_UNWIND=0 "$B/glibc/profile"
run_bin "stress (LD_PRELOAD debug profile, HAKMEM_PROFILE=1, one sample per 4 KiB)" \
  env LD_PRELOAD="$DPRO" HAKMEM_PROFILE=1 HAKMEM_PROFILE_RATE=4096 HAKMEM_PROFILE_FILE="$TMP/stress.heap" \
  "$B/glibc/stress"
run_bin "fork (LD_PRELOAD debug)" env LD_PRELOAD="$DBG" "$B/glibc/fork"
# The secure build: its death tests, stress and a short soak as they are;
# the tests that count bytes in use, with no quarantine (which holds freed
# blocks that count as in use). tiers and bigcache test BigCache, which the
# secure build does not use.
run_bin "misuse (LD_PRELOAD secure)" env LD_PRELOAD="$SEC" "$B/glibc/misuse"
run_bin "cxx-own (LD_PRELOAD)" env LD_PRELOAD="$REL" "$B/glibc/cxx-own"
run_bin "cxx-own (LD_PRELOAD secure)" env LD_PRELOAD="$SEC" "$B/glibc/cxx-own"
run_bin "stress (LD_PRELOAD secure)" env LD_PRELOAD="$SEC" "$B/glibc/stress"
run_bin "soak (LD_PRELOAD secure, 10 s)" env LD_PRELOAD="$SEC" "$B/glibc/soak" 10
for t in api cxx fork churn transfer foreign tdtor options trace crash; do
  run_bin "$t (LD_PRELOAD secure, HAKMEM_QUARANTINE_KB=0)" env LD_PRELOAD="$SEC" HAKMEM_QUARANTINE_KB=0 "$B/glibc/$t"
done
# The stats build: every allocation and free counted on the fast paths.
run_bin "telemetry (LD_PRELOAD stats)" env LD_PRELOAD="$STA" "$B/glibc/telemetry"
run_bin "stress (LD_PRELOAD stats)" env LD_PRELOAD="$STA" "$B/glibc/stress"
run_bin "transfer (LD_PRELOAD stats)" env LD_PRELOAD="$STA" "$B/glibc/transfer"
# The size-class arithmetic (no allocator linked: built once), and the
# unit tests of internals (the debug library's objects).
run_bin "classes" "$B/classes"
run_bin "units" "$B/units"

# ---- options ------------------------------------------------------------------
run_bin "stress (HAKMEM_THP=1)" env HAKMEM_THP=1 "$B/stress"
run_bin "stress (HAKMEM_THP=2)" env HAKMEM_THP=2 "$B/stress"
run_bin "tiers (HAKMEM_CHECK=1)" env HAKMEM_CHECK=1 "$B/tiers"
run_bin "tiers (HAKMEM_MADV_FREE=1)" env HAKMEM_MADV_FREE=1 "$B/tiers"

# ---- the launcher (./hakmem) and the memory timeline -----------------------------
run_bin "launcher" bash tests/launcher.sh

# ---- make install into a temporary DESTDIR; the Debian packages -----------------
run_bin "install (make install, make uninstall)" bash tests/install.sh
if [ "${TEST_DEB:-0}" = 1 ]; then
  run_bin "deb (make deb, dpkg -i, dpkg -r)" bash tests/deb.sh
else
  skip "the Debian packages: TEST_DEB=1 runs tests/deb.sh (as root: it installs them; .ci/run sets it)"
fi

# ---- placement by lifetime on the fragmentation benchmark ---------------------
# bench/bin/fragment's buffers mix: sessions and requests of 32-128 KiB from
# call sites of their own, interleaved, the sessions turning over during the
# peak, then a drop (no tail). With the call-site rules (HAKMEM_SITES, on by
# default) the free memory that live blocks pin in their runs after the drop
# (slab_free in the exit line; the same every run: 3.3 MiB without, 2.1
# with, here) must be at least a fifth less than without them.
for s in 0 1; do
  env HAKMEM_SITES=$s HAKMEM_STATS=1 LD_PRELOAD="$REL" bench/bin/fragment buffers 32 4 24 1 0 1 32 \
    >"$TMP/frag$s.out" 2>&1
done
pinned() { grep -o 'slab_free=[0-9]*' "$TMP/frag$1.out" | cut -d= -f2; }
f0=$(pinned 0)
f1=$(pinned 1)
ok=$(awk -v a="${f0:-0}" -v b="${f1:-0}" 'BEGIN { print (a > 0 && b > 0 && b * 5 <= a * 4) ? 1 : 0 }')
check "fragment buffers: the call-site rules leave less free memory pinned after the drop (${f0:-?} -> ${f1:-?} bytes)" \
  "$ok" "$TMP/frag1.out"

# ---- the heap profile, as google-pprof reads it ------------------------------
# profile's `sites` case writes FILE.sites while its two sites' blocks are
# live: alloc70 allocated 70 % of the bytes, alloc30 30 %. google-pprof
# (google-perftools) must name both, with their shares within 10 %; and the
# launcher's --profile writes a profile google-pprof reads.
if command -v google-pprof >/dev/null 2>&1; then
  PF=$TMP/sites.heap
  env LD_PRELOAD="$PRO" HAKMEM_PROFILE=1 HAKMEM_PROFILE_RATE=4096 HAKMEM_PROFILE_FILE="$PF" "$B/glibc/profile" sites \
    >"$TMP/prof.out" 2>&1
  google-pprof --text --alloc_space "$B/glibc/profile" "$PF.sites" >"$TMP/pprof.txt" 2>&1
  share() { awk -v f="$1" '$NF == f { sub(/%/, "", $5); print $5 }' "$TMP/pprof.txt"; }
  s70=$(share alloc70)
  s30=$(share alloc30)
  ok=$(awk -v a="${s70:-0}" -v b="${s30:-0}" 'BEGIN { print (a >= 63 && a <= 77 && b >= 27 && b <= 33) ? 1 : 0 }')
  check "google-pprof --text names alloc70 and alloc30, 70 % and 30 % of the bytes (${s70:-?} %, ${s30:-?} %)" \
    "$ok" "$TMP/pprof.txt"
  google-pprof --text --inuse_space "$B/glibc/profile" "$PF.sites" >"$TMP/pprof.txt" 2>&1
  ok=$(grep -c ' alloc[73]0$' "$TMP/pprof.txt")
  check "google-pprof --text --inuse_space names both" "$([ "$ok" = 2 ] && echo 1 || echo 0)" "$TMP/pprof.txt"
  ./hakmem run --profile "$TMP/launcher.heap" --option PROFILE_RATE=4096 -- "$B/glibc/profile" sites >/dev/null 2>&1
  google-pprof --text --alloc_space "$B/glibc/profile" "$TMP/launcher.heap" >"$TMP/pprof.txt" 2>&1
  check "hakmem run --profile FILE: google-pprof reads FILE" "$(grep -qc ' alloc70$' "$TMP/pprof.txt" && echo 1 || echo 0)" \
    "$TMP/pprof.txt"
else
  skip "google-pprof (google-perftools) not installed: the heap profile is not read with it"
fi

# ---- the profiler's cost on the fast paths, in instructions ---------------------
# callgrind counts the fast-path probe (bench/bin/fastpath: 256 live blocks,
# free + malloc of a random size a round) deterministically; a round's count
# is (instructions at 300 k rounds - at 100 k) / 200 k, so that start-up
# cancels out. The default build has no profiler on its fast paths: its
# counts are the same with HAKMEM_PROFILE=1 (which it refuses) as without.
# The profile build's countdown costs at most 2 instructions a round, whether it
# samples (at a rate of 1 GiB, the largest: a few samples in the 1-32 KiB
# probe, about 1300 instructions each) or not. The margins (0.1) hold the
# slow paths that run by the clock (the budget's look every millisecond),
# which a slower or busier machine runs a little more or less often.
if command -v valgrind >/dev/null 2>&1; then
  probe_round() { # LIB LO HI [VAR=VALUE ...]: instructions a round
    local lib=$1 lo=$2 hi=$3 n a b
    shift 3
    for n in 100000 300000; do
      valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null \
        env LD_PRELOAD="$lib" "$@" HAKMEM_PROFILE_FILE="$TMP/probe.heap" bench/bin/fastpath "$n" "$lo" "$hi" 2>&1 \
        >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -1
    done | { read -r a; read -r b; awk -v a="${a:-0}" -v b="${b:-0}" 'BEGIN { printf "%.2f", (b - a) / 200000 }'; }
  }
  for r in 16-512 1024-32768; do
    lo=${r%-*} hi=${r#*-}
    d0=$(probe_round "$REL" "$lo" "$hi")
    d1=$(probe_round "$REL" "$lo" "$hi" HAKMEM_PROFILE=1)
    p0=$(probe_round "$PRO" "$lo" "$hi")
    p1=$(probe_round "$PRO" "$lo" "$hi" HAKMEM_PROFILE=1 HAKMEM_PROFILE_RATE=1073741824)
    ok=$(awk -v a="$d0" -v b="$d1" 'BEGIN { print (a > 0 && b - a <= 0.1 && a - b <= 0.1) ? 1 : 0 }')
    check "probe $r B: the default build's count is the same with HAKMEM_PROFILE=1 ($d0, $d1 instructions a round)" "$ok"
    ok=$(awk -v a="$d0" -v p="$p0" -v q="$p1" 'BEGIN { print (a > 0 && p - a <= 2.1 && q - a <= 2.2) ? 1 : 0 }')
    check "probe $r B: the profile build's countdown costs at most 2 instructions a round ($d0 -> $p0 unset, $p1 sampling)" "$ok"
  done
else
  skip "valgrind not installed: the fast paths' instruction counts are not checked"
fi

# ---- memory back to the OS (rss runs its cases in fresh processes) -----------
RSS_S=${RSS_SECONDS:-30}
RSS_PRE=$(awk -v s="$RSS_S" 'BEGIN { print (s + 0 < 6 ? s + 0 : 6) }')
run_bin "rss (mixed workload ${RSS_S} s)" env RSS_SECONDS="$RSS_S" "$B/rss"
run_bin "rss (debug, no mixed workload)" env RSS_SECONDS=0 "$B/debug/rss"
run_bin "rss (LD_PRELOAD, mixed workload ${RSS_PRE} s)" \
  env LD_PRELOAD="$REL" RSS_SECONDS="$RSS_PRE" "$B/glibc/rss"
# Huge pages requested for hakmem's regions: malloc_trim still gives it all
# back. Only the trim case: with 2 MiB pages a SuperSlab that keeps any slab
# may be wholly resident, so the idle case's bound is not meant for it.
run_bin "rss trim (HAKMEM_THP=1)" env HAKMEM_THP=1 "$B/rss" trim

# ---- the soak run, short (make soak runs it for 10 minutes) ---------------------
run_bin "soak (${SOAK_SECONDS:-20} s)" "$B/soak" "${SOAK_SECONDS:-20}"

# ---- sanitizers (tests/sanitize.mk; built when clang has the runtimes) ----------
# The UBSan build of the library under the glibc binaries, with less work
# (stress for 1 s, transfer 40 rounds).
UBSAN_LIB=$B/ubsan/libhakmem.so
if [ -f "$UBSAN_LIB" ]; then
  UB=(env LD_PRELOAD="$ROOT/$UBSAN_LIB" UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
  run_bin "api (LD_PRELOAD UBSan)" "${UB[@]}" "$B/glibc/api"
  run_bin "stress (LD_PRELOAD UBSan, 1 s)" "${UB[@]}" STRESS_SECONDS=1 "$B/glibc/stress"
  run_bin "churn (LD_PRELOAD UBSan)" "${UB[@]}" "$B/glibc/churn"
  run_bin "transfer (LD_PRELOAD UBSan)" "${UB[@]}" TRANSFER_ROUNDS=40 "$B/glibc/transfer"
else
  skip "the UBSan runs: $UBSAN_LIB is not built (clang's UBSan runtime: apt-get install clang libclang-rt-14-dev)"
fi

# The hak_* API from many threads under TSan. Its suppressions name
# functions, which only a symbolizer can read from the binary.
if [ ! -x "$B/tsan/tsan" ]; then
  skip "the TSan run: $B/tsan/tsan is not built (clang's TSan runtime: apt-get install clang libclang-rt-14-dev)"
elif ! compgen -c llvm-symbolizer | grep -q .; then
  skip "the TSan run: no llvm-symbolizer to name the frames tests/tsan.supp matches (apt-get install llvm-14)"
else
  run_bin "tsan (TSan)" \
    env TSAN_OPTIONS="halt_on_error=1 suppressions=$ROOT/tests/tsan.supp" "$B/tsan/tsan"
fi

# ---- the fuzzer (tests/fuzz.mk; built when clang has libFuzzer) -----------------
# For the default build and the secure one: each seed of the corpus once
# (the inputs that found bugs among them), then FUZZ_SECONDS (default 60) of
# fuzzing from a copy of it with make fuzz's flags; a crash is saved in
# tests/fuzz/crashes/.
# fuzz_output FILE: libFuzzer's output without the frames of its own and
# libc's in a crash's stack, so that the tail shows what failed.
fuzz_output() { awk '!/^ *#[0-9]+ / || /(src|tests)\/[^ (]*\.c:[0-9]/' "$1"; }
FUZZ_S=${FUZZ_SECONDS:-60}
read -r -a fuzz_flags <<<"$(sed -n 's/^FUZZ_FLAGS *:= *//p' tests/fuzz.mk)"
for FUZZER in $B/fuzz/alloc $B/fuzz/alloc-secure; do
  if [ ! -x "$FUZZER" ]; then
    skip "the fuzzer: $FUZZER is not built (clang with libFuzzer: apt-get install clang libclang-rt-14-dev)"
    continue
  fi
  for seed in tests/fuzz/corpus/*; do
    "$FUZZER" -artifact_prefix="$TMP/replay-" "$seed" >"$TMP/replay" 2>&1
    ok=$?
    [ "$ok" = 0 ] && ok=1 || ok=0
    fuzz_output "$TMP/replay" >"$TMP/replay.why"
    check "fuzz: corpus/${seed##*/} replays (${FUZZER##*/})" $ok "$TMP/replay.why"
  done
  rm -rf "$TMP/corpus"
  mkdir -p "$TMP/corpus" tests/fuzz/crashes && cp tests/fuzz/corpus/* "$TMP/corpus/"
  t=$SECONDS
  timeout -k 10 $((FUZZ_S + ${TEST_TIMEOUT:-300})) "$FUZZER" "${fuzz_flags[@]}" -max_total_time="$FUZZ_S" \
    -artifact_prefix=tests/fuzz/crashes/ "$TMP/corpus" >"$TMP/fuzz" 2>&1 </dev/null
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$TMP/fuzz" | tail -n 1)
  ok=1
  fuzz_output "$TMP/fuzz" >"$TMP/fuzz.why"
  if [ "$rc" != 0 ]; then
    ok=0
    crash=$(sed -n 's/.*Test unit written to //p' "$TMP/fuzz" | tail -n 1)
    echo "exit status $rc; the input: ${crash:-none saved}; replay: $FUZZER ${crash:-FILE}" >>"$TMP/fuzz.why"
  fi
  check "fuzz: $FUZZER for $FUZZ_S s, ${runs:-no} inputs run ($((SECONDS - t)) s)" $ok "$TMP/fuzz.why"
done

# ---- real programs under LD_PRELOAD ---------------------------------------------
# same_output LABEL PLAIN PRELOADED ERRFILE PATTERN: one check that both runs
# succeeded (status files hold their exit codes), gave identical output, and
# that the preloaded run's stderr shows hakmem was in use (PATTERN).
same_output() {
  local label=$1 a=$2 b=$3 err=$4 pat=$5 ok=0
  : >"$TMP/why"
  if [ "$(cat "$a.rc")" != 0 ]; then
    echo "the run without LD_PRELOAD failed (exit $(cat "$a.rc"))" >>"$TMP/why"
  elif [ "$(cat "$b.rc")" != 0 ]; then
    echo "the run with LD_PRELOAD failed (exit $(cat "$b.rc")); its stderr:" >>"$TMP/why"
    tail -n 15 "$err" >>"$TMP/why"
  elif ! cmp -s "$a" "$b"; then
    echo "output differs with LD_PRELOAD: $(cmp "$a" "$b" 2>&1)" >>"$TMP/why"
  elif ! grep -q "$pat" "$err"; then
    echo "hakmem was not in use: no line matching '$pat' on stderr:" >>"$TMP/why"
    tail -n 15 "$err" >>"$TMP/why"
  else
    ok=1
  fi
  check "$label" $ok "$TMP/why"
}

# run_to OUT CMD...: runs CMD with stdout to OUT, its exit code to OUT.rc.
run_to() {
  local out=$1
  shift
  timeout -k 10 "${TEST_TIMEOUT:-300}" "$@" >"$out" </dev/null
  echo $? >"$out.rc"
}

PRE=(env LD_PRELOAD="$REL" HAKMEM_STATS=1)

if command -v python3 >/dev/null 2>&1; then
  cat >"$TMP/dict.py" <<'EOF'
import hashlib, os, sys
d = {}
for i in range(400000):
    d["k%d" % (i * 7919 % 1000003)] = [i, str(i) * 3, (i, i * 2)]
items = sorted(d.items(), key=lambda kv: (kv[1][0] % 977, kv[0]))
values = sorted((v[1] for v in d.values()), reverse=True)
h = hashlib.sha256()
for k, v in items:
    h.update(k.encode())
    h.update(v[1].encode())
for s in values:
    h.update(s.encode())
print(len(d), len(values), h.hexdigest())
if os.environ.get("HAK_CHECK"):
    import ctypes
    f = ctypes.CDLL(None).hak_version
    f.restype = ctypes.c_char_p
    sys.stderr.write("hak_version=%s\n" % f().decode())
EOF
  run_to "$TMP/py.plain" python3 "$TMP/dict.py"
  run_to "$TMP/py.pre" env LD_PRELOAD="$REL" HAK_CHECK=1 python3 "$TMP/dict.py" 2>"$TMP/py.err"
  same_output "python3 dict/sort digest identical under LD_PRELOAD (ctypes sees hak_version)" \
    "$TMP/py.plain" "$TMP/py.pre" "$TMP/py.err" '^hak_version=hakmem '
  run_to "$TMP/py.sec" env LD_PRELOAD="$SEC" HAK_CHECK=1 python3 "$TMP/dict.py" 2>"$TMP/py.sec.err"
  same_output "python3 dict/sort digest identical under the secure build" \
    "$TMP/py.plain" "$TMP/py.sec" "$TMP/py.sec.err" '^hak_version=hakmem .* (secure build)$'
else
  skip "python3 under LD_PRELOAD: python3 is not installed"
fi

if command -v gcc >/dev/null 2>&1; then
  GCC_ARGS=(-O2 -g -std=gnu11 -D_GNU_SOURCE -Iinclude -Itests/bin -c tests/api.c)
  run_to "$TMP/gcc.plain.log" gcc "${GCC_ARGS[@]}" -o "$TMP/plain.o"
  run_to "$TMP/gcc.pre.log" "${PRE[@]}" gcc "${GCC_ARGS[@]}" -o "$TMP/pre.o" 2>"$TMP/gcc.err"
  cp "$TMP/plain.o" "$TMP/gcc.plain" 2>/dev/null || : >"$TMP/gcc.plain"
  cp "$TMP/pre.o" "$TMP/gcc.pre" 2>/dev/null || : >"$TMP/gcc.pre"
  cp "$TMP/gcc.plain.log.rc" "$TMP/gcc.plain.rc"
  cp "$TMP/gcc.pre.log.rc" "$TMP/gcc.pre.rc"
  same_output "gcc -O2 -g builds an identical .o under LD_PRELOAD" \
    "$TMP/gcc.plain" "$TMP/gcc.pre" "$TMP/gcc.err" '^hakmem: '
else
  skip "gcc under LD_PRELOAD: gcc is not installed"
fi

if command -v git >/dev/null 2>&1 && head=$(git rev-parse -q --verify HEAD 2>/dev/null); then
  run_to "$TMP/git.plain" git --no-pager log --max-count=100 --stat -p "$head"
  run_to "$TMP/git.pre" "${PRE[@]}" git --no-pager log --max-count=100 --stat -p "$head" 2>"$TMP/git.err"
  same_output "git log --stat -p (100 commits) identical under LD_PRELOAD" \
    "$TMP/git.plain" "$TMP/git.pre" "$TMP/git.err" '^hakmem: '
else
  skip "git log under LD_PRELOAD: git is not installed or this is not a git checkout"
fi

awk 'BEGIN { x = 12345
  for (i = 0; i < 300000; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    printf "%010d %d line-%d\n", x, i % 1000, i
  } }' >"$TMP/sort.in"
SORT_ARGS=(-S 2M -T "$TMP" --parallel=2 -k2,2n -k1,1 "$TMP/sort.in")
run_to "$TMP/sort.plain" env LC_ALL=C sort "${SORT_ARGS[@]}"
# sort closes stderr before it exits (gnulib's close_stdout), so hakmem's
# at-exit line cannot appear: HAKMEM_VERBOSE=1 shows hakmem at start-up.
run_to "$TMP/sort.pre" "${PRE[@]}" HAKMEM_VERBOSE=1 LC_ALL=C sort "${SORT_ARGS[@]}" 2>"$TMP/sort.err"
same_output "sort of a $(($(wc -c <"$TMP/sort.in") / 1048576)) MB file identical under LD_PRELOAD" \
  "$TMP/sort.plain" "$TMP/sort.pre" "$TMP/sort.err" '^hakmem: '

# A full build of the library (make all) in a copy of the tree, without and
# with LD_PRELOAD (make, gcc, cc1, as, ld, ar all on hakmem), in the same
# directory so that paths match: identical libhakmem.so and libhakmem.a.
BD=$TMP/build
mkdir -p "$BD/tests" "$BD/bench"
cp -r src include launcher Makefile "$BD/" && cp tests/tests.mk "$BD/tests/"
cp bench/*.mk "$BD/bench/" 2>/dev/null
run_to "$TMP/build1.log" make -C "$BD" -j2 all
cat "$BD/libhakmem.so" "$BD/libhakmem.a" >"$TMP/build.plain" 2>/dev/null
cp "$TMP/build1.log.rc" "$TMP/build.plain.rc"
rm -rf "$BD/build" "$BD/libhakmem.so" "$BD/libhakmem.a"
run_to "$TMP/build2.log" "${PRE[@]}" make -C "$BD" -j2 all 2>"$TMP/build.err"
cat "$BD/libhakmem.so" "$BD/libhakmem.a" >"$TMP/build.pre" 2>/dev/null
cp "$TMP/build2.log.rc" "$TMP/build.pre.rc"
same_output "make all of this project under LD_PRELOAD gives identical libhakmem.so and .a" \
  "$TMP/build.plain" "$TMP/build.pre" "$TMP/build.err" '^hakmem: '

printf 'time: %d s\n' $((SECONDS - START))
printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
