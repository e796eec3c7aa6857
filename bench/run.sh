#!/usr/bin/env bash
# Benchmark runner: runs every benchmark under hakmem (./libhakmem.so), glibc
# and each installed peer allocator, alternating allocators run by run, and
# writes bench/results/latest.md (medians and ratios) and latest.svg (chart).
# Only bash, awk (mawk is enough) and coreutils; gnuplot for the chart.
#
# Environment (all optional):
#   BENCH_QUICK=1        short arguments and 3 runs (about 12 minutes on 2 cores)
#   BENCH_RUNS=N         runs per allocator and benchmark (default 5, quick 3)
#   BENCH_THREADS=N      threads for the multi-threaded benchmarks (default: CPUs)
#   BENCH_PIN=N          the CPU the single-threaded benchmarks run on (default:
#                        the last; 'none': wherever the scheduler puts them)
#   BENCH_ONLY='a b'     only benchmarks whose name matches one of these globs
#   BENCH_ALLOCATORS='hakmem glibc'  only these allocators
#   BENCH_HAKMEM=path    the hakmem library (default ./libhakmem.so)
#   BENCH_HAKMEM_SECURE=path  its secure build (default ./libhakmem-secure.so;
#                        allocator name hakmem-secure)
#   BENCH_PEERS='name=/path/lib.so ...'  extra allocators to compare
#   BENCH_VARIANTS='name=VAR=VALUE[,VAR=VALUE...] ...'  hakmem again under other
#                        options, as allocators of their own, alternated with the
#                        rest (e.g. 'hakmem-ace=HAKMEM_ACE=1'); the ratio column
#                        counts them among the peers
#   BENCH_TIMEOUT=s      per-run limit in seconds (default 60, quick 30)
#   BENCH_OUT=dir        where latest.md / latest.svg go (default bench/results)
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$here/bin"
out_dir=${BENCH_OUT:-$here/results}
tmp="$here/results/tmp/run" # bench-instr uses tmp/instr: the two may run at once
quick=${BENCH_QUICK:-0}
[[ $quick == 0 || $quick == "" ]] && quick=0 || quick=1
runs=${BENCH_RUNS:-}
[[ -n $runs ]] || { ((quick)) && runs=3 || runs=5; }
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || echo 1)
threads=${BENCH_THREADS:-$ncpu}
pin=${BENCH_PIN:-$((ncpu - 1))}
timeout=${BENCH_TIMEOUT:-}
[[ -n $timeout ]] || { ((quick)) && timeout=30 || timeout=60; }
export BENCH_THREADS=$threads

die() { echo "bench: $*" >&2; exit 1; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS must be a positive integer"
[[ $pin == none || ($pin =~ ^[0-9]+$ && $pin -lt $ncpu) ]] || die "BENCH_PIN must be a CPU below $ncpu, or none"
[[ -x $bin/measure ]] || die "benchmarks not built: run 'make bench-build'"

# ---- benchmarks: name | program | full arguments | quick arguments | 1 if
# single-threaded (run on the CPU BENCH_PIN says) -----------------------------
# @T stands for the thread count.
specs=(
  "fixed_size/64|fixed_size|64 150M 1000|64 40M 1000|1"
  "fixed_size/8192|fixed_size|8192 60M 1000|8192 15M 1000|1"
  "random_mixed|random_mixed|40M 8192|12M 8192|1"
  "random_mixed/log|random_mixed|30M 16384 16 16384 1 log|10M 16384 16 16384 1 log|1"
  "mid_large_mt|mid_large_mt|@T 4M 256|@T 1M 256"
  "comprehensive/lifo|comprehensive|lifo 40M @T|lifo 10M @T"
  "comprehensive/fifo|comprehensive|fifo 40M @T|fifo 10M @T"
  "comprehensive/random|comprehensive|random 40M @T|random 10M @T"
  "comprehensive/realloc|comprehensive|realloc 2M @T|realloc 600k @T"
  "comprehensive/calloc|comprehensive|calloc 4M @T|calloc 1M @T"
  "comprehensive/aligned|comprehensive|aligned 10M @T|aligned 3M @T"
  "comprehensive/prodcons|comprehensive|prodcons 10M @T|prodcons 3M @T"
  "prodcons/64|prodcons|1 1 20M 64 64|1 1 6M 64 64"
  "prodcons/mixed|prodcons|@T @T 4M 16 32768|@T @T 1.2M 16 32768"
  "false_sharing/active|false_sharing|active @T 2000 20000 8|active @T 600 20000 8"
  "false_sharing/passive|false_sharing|passive @T 2000 20000 8|passive @T 600 20000 8"
  "larson|larson|1.5 8 1000 5000 100 4141 @T|0.4 8 1000 5000 100 4141 @T"
  "xthread_churn|xthread_churn|@T 10000 2000|@T 3000 2000"
  "large_churn|large_churn|20 5 25 600|12 2 10 200|1"
  "mem_efficiency|mem_efficiency|64 8|32 6|1"
  "fragment/small|fragment|small 96 12 8 1 1000|small 32 4 4 1 500|1"
  "fragment/mid|fragment|mid 96 12 8 1 1000|mid 32 4 4 1 500|1"
  "fragment/pool|fragment|pool 96 12 8 1 1000|pool 32 4 4 1 500|1"
  "fragment/mixed|fragment|mixed 96 12 8 1 1000|mixed 32 4 4 1 500|1"
  "fragment/buffers|fragment|buffers 96 12 24 1 1000 1 32|buffers 32 4 8 1 500 1 32|1"
  "fragment/mt|fragment|mixed 96 12 8 @T 1000|mixed 32 4 4 @T 500"
  "phases|phases|3 64 32 1M 4 12 300|2 32 16 400k 3 3 150|1"
)

# ---- allocators --------------------------------------------------------------
rm -rf "$tmp"
mkdir -p "$tmp/runs" "$out_dir" || die "cannot create $tmp"
. "$here/allocators.sh"

# ---- run ---------------------------------------------------------------------
raw="$tmp/raw.tsv"
: >"$raw"
bench_list=()
bench_args=()
start_all=$(date +%s)
load_start=$(cut -d" " -f1-3 /proc/loadavg 2>/dev/null)
if awk -v l="${load_start%% *}" -v n="$ncpu" 'BEGIN { exit !(l > n / 2) }'; then
  echo "bench: warning: load average $load_start on $ncpu CPUs before starting; other work skews the multi-threaded results"
fi
echo "bench: $( ((quick)) && echo quick || echo full) run, $runs runs each, $threads threads," \
     "allocators: ${alloc_names[*]}"

field() { # key line -> value of key=value in line
  local kv
  for kv in $2; do [[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return; }; done
}

for spec in "${specs[@]}"; do
  IFS='|' read -r name prog full_args quick_args single <<<"$spec"
  if [[ -n ${BENCH_ONLY:-} ]]; then
    match=0
    for g in $BENCH_ONLY; do [[ $name == $g ]] && match=1; done
    ((match)) || continue
  fi
  args=$full_args
  ((quick)) && args=$quick_args
  args=${args//@T/$threads}
  on_cpu=()
  [[ ${single:-} == 1 && $pin != none ]] && on_cpu=(-c "$pin")
  bench_list+=("$name")
  bench_args+=("$prog $args")
  declare -A failed=()
  for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < nalloc; k++)); do
      i=$(((k + r) % nalloc)) # rotate the order each repetition
      a=${alloc_names[$i]}
      [[ -n ${failed[$a]:-} ]] && continue
      base="$tmp/runs/${name//\//_}.$a.$r"
      # shellcheck disable=SC2086
      env ${alloc_envs[$i]//,/ } "$bin/measure" -p "${alloc_libs[$i]}" -t "$timeout" "${on_cpu[@]}" -o "$base.m" -- "$bin/$prog" $args \
        >"$base.out" 2>"$base.err" </dev/null
      m=$(cat "$base.m" 2>/dev/null)
      res=$(grep -m1 '^RESULT ' "$base.out" 2>/dev/null)
      status=$(field status "$m")
      ops=$(field ops_per_sec "$res")
      rss=$(field maxrss_kb "$m")
      if [[ $status != ok || -z $ops ]]; then
        [[ -z $status ]] && status="no report"
        [[ $status == ok ]] && status="no RESULT line"
        echo "FAILED: $name with $a (run $((r + 1))): $status; remaining runs of $a skipped"
        echo "  command: ${alloc_envs[$i]:+${alloc_envs[$i]//,/ } }LD_PRELOAD=${alloc_shown[$i]} bench/bin/$prog $args"
        for f in "$base.err" "$base.out"; do [[ -s $f ]] && tail -n 5 "$f" | sed "s/^/  | /"; done
        failed[$a]=1
        printf '%s\t%s\t%d\tFAILED\t%s\t\t\t\t%s\n' "$name" "$a" "$r" "${rss:-}" "${status// /_}" >>"$raw"
        continue
      fi
      frag=$(field frag_ratio "$res")
      after=$(field rss_after_free_kb "$res")
      drop=$(field rss_after_drop_kb "$res")
      live=$(field live_after_drop_kb "$res")
      idle=$(field idle_rss_mib "$res")
      printf '%s\t%s\t%d\tok\t%s\t%s\t%s\t%s\t\t%s\t%s\t%s\n' "$name" "$a" "$r" "$rss" "$ops" "${frag:-}" "${after:-}" \
        "${drop:-}" "${live:-}" "${idle:-}" >>"$raw"
    done
  done
  unset failed
  # progress line: median throughput (M ops/s) per allocator
  awk -F'\t' -v b="$name" -v order="${alloc_names[*]}" '
    function med(s, n,  a, i, j, t, c) { c = split(s, a, " ");
      for (i = 2; i <= c; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2 }
    $1 == b && $4 == "ok" { v[$2] = v[$2] " " $6 } $1 == b && $4 == "FAILED" { f[$2] = 1 }
    END { line = sprintf("%-24s", b); n = split(order, o, " ")
      for (i = 1; i <= n; i++) line = line sprintf("  %s %s", o[i], f[o[i]] ? "FAILED" : v[o[i]] == "" ? "-" : sprintf("%.1fM", med(v[o[i]]) / 1e6))
      print line }' "$raw"
done
elapsed=$(($(date +%s) - start_all))
load_end=$(cut -d" " -f1-3 /proc/loadavg 2>/dev/null)

# ---- report ------------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
md="$out_dir/latest.md"
{
  echo "# hakmem benchmarks"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(uname -m), ${cpu:-unknown CPU}, $ncpu cores, Linux $(uname -r), THP ${thp:-?}"
  echo "- mode: $( ((quick)) && echo 'quick (BENCH_QUICK=1)' || echo full), $runs runs per allocator," \
       "allocators alternated run by run; $threads threads for multi-threaded benchmarks;" \
       "$([[ $pin == none ]] && echo "single-threaded ones unpinned" || echo "single-threaded ones on CPU $pin");" \
       "took ${elapsed}s"
  echo "- load average (1, 5, 15 min): ${load_start:-?} before, ${load_end:-?} after (the suite itself adds up to $threads)"
  echo "- allocators:"
  for ((i = 0; i < nalloc; i++)); do
    echo "  - ${alloc_names[$i]}: ${alloc_vers[$i]}${alloc_shown[$i]:+ (\`${alloc_shown[$i]/#$root/.}\`)}"
  done
  echo
  awk -F'\t' -v order="${alloc_names[*]}" -v benches="${bench_list[*]}" -v runs="$runs" -v dat="$tmp/chart.dat" '
    function med(s,  a, i, j, t, c) { c = split(s, a, " ");
      for (i = 2; i <= c; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return c % 2 ? a[(c + 1) / 2] + 0 : (a[c / 2] + a[c / 2 + 1]) / 2 }
    function fmt_ops(x) { return x >= 1e8 ? sprintf("%.0f", x / 1e6) : x >= 1e7 ? sprintf("%.1f", x / 1e6) : x >= 1e5 ? sprintf("%.2f", x / 1e6) : sprintf("%.3g", x / 1e6) }
    function fmt_mib(kb) { return kb >= 102400 ? sprintf("%.0f", kb / 1024) : sprintf("%.1f", kb / 1024) }
    $4 == "ok" { k = $1 SUBSEP $2; rss[k] = rss[k] " " $5; ops[k] = ops[k] " " $6
                 if ($7 != "") frag[k] = frag[k] " " $7; if ($8 != "") aft[k] = aft[k] " " $8
                 if ($10 != "") drop[k] = drop[k] " " $10; if ($11 != "") live[$1] = live[$1] " " $11
                 if ($12 != "") { idle[k] = idle[k] " " ($12 * 1024); has_idle[$1] = 1 } }
    $4 == "FAILED" { bad[$1 SUBSEP $2] = $9 }
    # one markdown row: metric m ("ops" higher is better, "rss"/"frag"/"aft"/"drop"/"idle" lower is better)
    function row(b, m, label,  i, a, k, v, have, best, bestv, hv, line, cell, higher, peer, pv, r) {
      higher = (m == "ops"); have = 0
      for (i = 1; i <= na; i++) { a = al[i]; k = b SUBSEP a
        s = (m == "ops") ? ops[k] : (m == "rss") ? rss[k] : (m == "frag") ? frag[k] : (m == "drop") ? drop[k] : \
            (m == "idle") ? idle[k] : aft[k]
        if (!(k in bad) && s != "") { v[a] = med(s); if (!have || (higher ? v[a] > bestv : v[a] < bestv)) { bestv = v[a]; best = a }; have = 1 } }
      line = "| " label " |"
      for (i = 1; i <= na; i++) { a = al[i]; k = b SUBSEP a
        if (k in bad) cell = "FAILED"
        else if (!(a in v)) cell = "–"
        else { cell = (m == "ops") ? fmt_ops(v[a]) : (m == "frag") ? sprintf("%.2f", v[a]) : fmt_mib(v[a])
               if (a == best && na > 1) cell = "**" cell "**" }
        line = line " " cell " |" }
      if (has_hak) {
        peer = ""; pv = 0
        for (i = 1; i <= na; i++) { a = al[i]; if (a !~ /^hakmem/ && (a in v) && (peer == "" || (higher ? v[a] > pv : v[a] < pv))) { peer = a; pv = v[a] } }
        k = b SUBSEP "hakmem"
        if (k in bad) r = "hakmem FAILED"
        else if (!("hakmem" in v) || peer == "" || pv == 0) r = "–"
        else r = sprintf("%.2f (%s)", v["hakmem"] / pv, peer)
        line = line " " r " |" }
      print line
      if ((m == "ops" || m == "rss") && dat != "") {
        f = (m == "ops") ? dat : dat ".rss"
        g = ("glibc" in v) ? v["glibc"] : 0
        cell = "\"" b "\""
        for (i = 1; i <= na; i++) { a = al[i]
          cell = cell " " ((g > 0 && (a in v)) ? sprintf("%.4f", v[a] / g) : "NaN")
          if (m == "ops" && g > 0 && (a in v) && v[a] > 0) { lg[a] += log(v[a] / g); ng[a]++ } }
        print cell > f }
    }
    function header(title, note,  i, line, sep) {
      print "## " title; print ""; if (note != "") { print note; print "" }
      line = "| benchmark |"; sep = "|---|"
      for (i = 1; i <= na; i++) { line = line " " al[i] " |"; sep = sep "---:|" }
      if (has_hak) { line = line " hakmem / best peer |"; sep = sep "---:|" }
      print line; print sep }
    END {
      na = split(order, al, " "); nb = split(benches, bl, " ")
      for (i = 1; i <= na; i++) if (al[i] == "hakmem") has_hak = 1
      header("Throughput: median million operations per second (higher is better)",
             "One operation is one allocation-API call (see bench/README.md per benchmark). Bold: best. The last column is hakmem divided by the best other allocator: above 1.00 hakmem is faster.")
      for (j = 1; j <= nb; j++) if (bl[j] != "mem_efficiency") row(bl[j], "ops", bl[j])
      if (nb > 1) {
        line = "| geometric mean vs glibc |"
        for (i = 1; i <= na; i++) line = line " " (ng[al[i]] ? sprintf("%.2f", exp(lg[al[i]] / ng[al[i]])) : "–") " |"
        if (has_hak) line = line " |"
        print line }
      print ""
      header("Peak RSS: median MiB (lower is better)",
             "Peak resident set size of the whole benchmark process (ru_maxrss). The last column is hakmem divided by the lowest other allocator: below 1.00 hakmem uses less.")
      for (j = 1; j <= nb; j++) row(bl[j], "rss", bl[j])
      print ""
      for (j = 1; j <= nb; j++) if (bl[j] == "mem_efficiency") {
        header("Memory efficiency (lower is better)",
               "mem_efficiency: fragmentation ratio = (peak RSS - baseline RSS) / peak live bytes (1.00 is perfect); RSS after free = VmRSS once every block is freed (memory given back).")
        row("mem_efficiency", "frag", "fragmentation ratio")
        row("mem_efficiency", "aft", "RSS after free, MiB")
        print "" }
      nd = 0
      for (j = 1; j <= nb; j++) if (bl[j] in live) {
        if (!nd++) header("RSS after the drop: median MiB (lower is better)",
                          "fragment: resident set size once the short-lived blocks of the peak are freed and the server has gone on at low activity for a while (see bench/README.md); live: the bytes the program still holds then. The last column is hakmem divided by the lowest other allocator: below 1.00 hakmem kept less.")
        row(bl[j], "drop", bl[j] " (live " fmt_mib(med(live[bl[j]])) " MiB)") }
      if (nd) print ""
      ni = 0
      for (j = 1; j <= nb; j++) if (bl[j] in has_idle) {
        if (!ni++) header("RSS while idle: median MiB (lower is better)",
                          "phases: median resident set size sampled during the idle phases, once everything is freed (see bench/README.md). The last column is hakmem divided by the lowest other allocator: below 1.00 hakmem kept less.")
        row(bl[j], "idle", bl[j]) }
      if (ni) print ""
    }' "$raw"
  if grep -q $'\tFAILED\t' "$raw"; then
    echo "## Failures"
    echo
    awk -F"\t" -v OFS="" '$4 == "FAILED" { print "- ", $1, " with ", $2, ", run ", $3 + 1, ": ", $9 }' "$raw"
    echo
  fi
  echo "## Benchmarks run"
  echo
  echo "| benchmark | command (under each allocator, LD_PRELOAD) |"
  echo "|---|---|"
  for ((j = 0; j < ${#bench_list[@]}; j++)); do echo "| ${bench_list[$j]} | \`bench/bin/${bench_args[$j]}\` |"; done
  echo
  echo "Cells say FAILED when a run crashed, timed out (${timeout} s), exited non-zero or printed no RESULT line;"
  echo "the runner then skips that allocator's remaining runs of that benchmark. Raw data: bench/results/tmp/run/raw.tsv."
} >"$md"

# ---- chart ---------------------------------------------------------------------
svg="$out_dir/latest.svg"
if command -v gnuplot >/dev/null 2>&1 && [[ -s $tmp/chart.dat ]]; then
  nb=$(wc -l <"$tmp/chart.dat.rss")
  # horizontal two-line labels ("comprehensive\nlifo"): rotated text renders badly in some viewers
  xtics() { awk '{ gsub(/"/, "", $1); sub("/", "\\n", $1); printf "%s\"%s\" %d", (NR > 1 ? ", " : ""), $1, NR - 1 }' "$1"; }
  {
    echo "set terminal svg size $((260 + nb * (40 + 12 * nalloc))),900 dynamic noenhanced font 'sans,11' background '#ffffff'"
    echo "set output '$svg'"
    echo "set datafile missing 'NaN'"
    echo "set style data histograms"
    echo "set style histogram clustered gap 1"
    echo "set style fill solid 0.85 border -1"
    echo "set boxwidth 0.9"
    echo "set grid ytics"
    echo "set key outside right top vertical"
    echo "set xtics nomirror font 'sans,10'"
    echo "set yrange [0:*]"
    echo "set bmargin 4"
    echo "set lmargin 10"
    echo "set multiplot layout 2,1 title 'hakmem benchmarks: median of $runs runs, $(uname -m), $ncpu cores ($(date -u +%Y-%m-%d))'"
    echo "set title 'Throughput relative to glibc (higher is better)'"
    echo "set xtics ($(xtics "$tmp/chart.dat"))"
    echo "set xrange [-0.6:$(($(wc -l <"$tmp/chart.dat") - 1)).6]"
    echo "set ylabel 'x glibc' norotate offset 1,0"
    printf "plot 1 with lines lc rgb '#888888' dt 2 notitle"
    for ((i = 0; i < nalloc; i++)); do printf ", '%s' using %d title '%s'" "$tmp/chart.dat" $((i + 2)) "${alloc_names[$i]}"; done
    echo
    echo "set title 'Peak RSS relative to glibc (lower is better)'"
    echo "set xtics ($(xtics "$tmp/chart.dat.rss"))"
    echo "set xrange [-0.6:$((nb - 1)).6]"
    printf "plot 1 with lines lc rgb '#888888' dt 2 notitle"
    for ((i = 0; i < nalloc; i++)); do printf ", '%s' using %d title '%s'" "$tmp/chart.dat.rss" $((i + 2)) "${alloc_names[$i]}"; done
    echo
    echo "unset multiplot"
  } >"$tmp/chart.gp"
  if gnuplot "$tmp/chart.gp" 2>"$tmp/gnuplot.err"; then
    echo "chart: ${svg/#$root\//}"
  else
    echo "chart: gnuplot failed, no chart:"; sed 's/^/  /' "$tmp/gnuplot.err"
  fi
else
  command -v gnuplot >/dev/null 2>&1 || echo "chart: skipped (gnuplot not installed)"
fi

echo
cat "$md"
echo
echo "report: ${md/#$root\//} (${elapsed}s)"
