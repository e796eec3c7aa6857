#!/usr/bin/env bash
# instr.sh: callgrind instructions per free+malloc round, for hakmem, glibc
# and each installed peer, at three size ranges. The probe (bench/src/
# fastpath.c, the same program as ../shared/probes/fastpath.c) keeps 256 live
# blocks and does N rounds of free + malloc of a random size in lo..hi; the
# count is (instructions at 1.2 M rounds - at 0.2 M rounds) / 1 M, so start-up
# cost cancels out. Deterministic: no noise, no repetitions needed. The probe
# loop itself costs about 34 instructions per round.
# Environment: BENCH_HAKMEM (default ./libhakmem.so), BENCH_ALLOCATORS,
# BENCH_INSTR_RANGES (default "16-512 1024-32768 65536-4194304"),
# BENCH_INSTR_ROUNDS (default "200000 1200000"), BENCH_OUT (bench/results).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
probe="$here/bin/fastpath"
tmp="$here/results/tmp/instr"
out_dir=${BENCH_OUT:-$here/results}
ranges=${BENCH_INSTR_RANGES:-16-512 1024-32768 65536-4194304}
read -r lo_n hi_n <<<"${BENCH_INSTR_ROUNDS:-200000 1200000}"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench-instr: skipped (valgrind not installed)"
  exit 0
fi
[[ -x $probe ]] || { echo "bench-instr: $probe missing: run 'make bench-build'" >&2; exit 1; }

names=() libs=()
declare -A want=()
for a in ${BENCH_ALLOCATORS:-}; do want[$a]=1; done
wanted() { [[ ${#want[@]} -eq 0 || -n ${want[$1]:-} ]]; }
rm -rf "$tmp"
mkdir -p "$tmp" "$out_dir"
hakmem_lib=${BENCH_HAKMEM:-$root/libhakmem.so}
if wanted hakmem; then
  # count a copy, so that a rebuild meanwhile cannot mix versions
  if [[ -f $hakmem_lib ]] && cp "$hakmem_lib" "$tmp/libhakmem.so"; then names+=(hakmem); libs+=("$tmp/libhakmem.so")
  else echo "skipped: hakmem ($hakmem_lib not found; 'make' builds it)"; fi
fi
wanted glibc && { names+=(glibc); libs+=(""); }
for peer in "mimalloc libmimalloc.so.2" "jemalloc libjemalloc.so.2" "tcmalloc libtcmalloc_minimal.so.4"; do
  set -- $peer
  wanted "$1" || continue
  lib=""
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/lib /usr/lib; do [[ -f $d/$2 ]] && { lib=$d/$2; break; }; done
  if [[ -n $lib ]]; then names+=("$1"); libs+=("$lib"); else echo "skipped: $1 ($2 not installed)"; fi
done

# count LIB N LO HI: instructions of the probe process (the last "Collected"
# line: the first one is env's).
count() {
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=/dev/null \
    env LD_PRELOAD="$1" "$probe" "$2" "$3" "$4" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -1
}
job() { # name lib lo hi
  local a b
  a=$(count "$2" "$lo_n" "$3" "$4")
  b=$(count "$2" "$hi_n" "$3" "$4")
  if [[ -n $a && -n $b ]]; then
    awk -v a="$a" -v b="$b" -v n=$((hi_n - lo_n)) 'BEGIN { printf "%.1f\n", (b - a) / n }' >"$tmp/$1.$3-$4"
  else
    echo "FAILED" >"$tmp/$1.$3-$4"
  fi
}

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
echo "bench-instr: ${names[*]} over $ranges (callgrind, $ncpu at a time)"
start=$(date +%s)
running=0
for ((i = 0; i < ${#names[@]}; i++)); do
  for r in $ranges; do
    job "${names[$i]}" "${libs[$i]}" "${r%-*}" "${r#*-}" &
    running=$((running + 1))
    if ((running >= ncpu)); then wait -n; running=$((running - 1)); fi
  done
done
wait

md="$out_dir/instr.md"
{
  echo "# Instructions per free+malloc round (callgrind)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m); (count at $hi_n rounds - count at $lo_n) / $((hi_n - lo_n));"
  echo "256 live blocks, sizes uniform in the range; the probe loop itself is about 34. Lower is better."
  [[ -f $tmp/libhakmem.so ]] && echo "hakmem: git $(git -C "$root" describe --always --dirty 2>/dev/null), sha256 $(sha256sum "$tmp/libhakmem.so" | cut -c1-12)."
  echo
  line="| allocator |" sep="|---|"
  for r in $ranges; do line="$line $r B |"; sep="$sep---:|"; done
  echo "$line"; echo "$sep"
  for n in "${names[@]}"; do
    line="| $n |"
    for r in $ranges; do line="$line $(cat "$tmp/$n.$r" 2>/dev/null || echo '–') |"; done
    echo "$line"
  done
} >"$md"
cat "$md"
echo
echo "report: ${md/#$root\//} ($(($(date +%s) - start))s)"
