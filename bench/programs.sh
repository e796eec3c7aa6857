#!/usr/bin/env bash
# Real programs under each allocator: peak RSS and wall time of Debian's own
# binaries (sqlite3, python3, g++, xz, redis-server) running a fixed workload, with the
# allocator swapped in by LD_PRELOAD, allocators alternated run by run as in
# run.sh. Writes bench/results/programs.md. The workloads are generated here
# (nothing is downloaded); a program that is not installed is skipped with a
# line saying so (make bench-programs installs them).
#
# Environment: BENCH_RUNS (default 3), BENCH_ONLY, BENCH_ALLOCATORS,
# BENCH_HAKMEM, BENCH_HAKMEM_SECURE, BENCH_PEERS, BENCH_VARIANTS,
# BENCH_TIMEOUT (default 300 s), BENCH_OUT: as for run.sh (bench/README.md).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin="$here/bin"
out_dir=${BENCH_OUT:-$here/results}
tmp="$here/results/tmp/programs"
runs=${BENCH_RUNS:-3}
timeout=${BENCH_TIMEOUT:-300}

die() { echo "bench-programs: $*" >&2; exit 1; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ -x $bin/measure ]] || die "benchmarks not built: run 'make bench-build'"

rm -rf "$tmp"
mkdir -p "$tmp/runs" "$tmp/work" "$out_dir" || die "cannot create $tmp"
. "$here/allocators.sh"
work="$tmp/work"

# ---- workloads ---------------------------------------------------------------
# sqlite3: a million rows, three indexes, an aggregate, a join, VACUUM; once
# with a 256 MiB page cache (most of the memory is 4 KiB pages and their
# headers, one size), once with the default cache (a small heap).
sqlite_script() { # cache_kib (0: default)
  ((${1} > 0)) && echo "PRAGMA cache_size=-$1;"
  cat <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, a INTEGER, b TEXT, c REAL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO t SELECT i, (i * 7919) % 100003, printf('row-%d-%x', i, (i * 2654435761) % 4294967296), i * 0.5 FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b);
CREATE INDEX tc ON t(c);
CREATE TABLE u AS SELECT a, count(*) AS n, sum(c) AS s FROM t GROUP BY a;
SELECT count(*), sum(u.n) FROM t JOIN u ON t.a = u.a WHERE t.id % 10 = 0;
VACUUM;
EOF
}
sqlite_script 262144 >"$work/cache256.sql"
sqlite_script 0 >"$work/default.sql"

# python3: many small objects (dicts, lists, strings, floats), a JSON round
# trip, half of them deleted, the rest sorted.
cat >"$work/objects.py" <<'EOF'
import json
import random

random.seed(1)
d = {}
for i in range(150000):
    d["key%d" % i] = {"id": i, "name": "n" * (i % 50), "tags": [str(j) for j in range(i % 8)], "v": random.random()}
s = json.dumps(d)
e = json.loads(s)
for k in list(e)[::2]:
    del e[k]
rows = sorted(e.values(), key=lambda x: x["v"])
print(len(s), len(rows), rows[0]["id"])
EOF

# g++: a C++20 file of class templates using the standard library's maps,
# regexes, ranges and variants, compiled with -O2 (cc1plus's own heap).
for i in 1 2 3 4 5 6 7 8; do
  cat <<EOF
template <typename T> struct S$i {
  std::map<std::string, std::vector<T>> m;
  std::unordered_map<T, std::string> u;
  std::variant<T, double, std::string> v{T{}};
  T f(const std::string &s) {
    std::regex r("([a-z]+)$i([0-9]*)");
    std::smatch mt;
    T n{};
    if (std::regex_search(s, mt, r)) n += static_cast<T>(mt.size());
    std::vector<T> w(s.begin(), s.end());
    std::ranges::sort(w, std::greater<>{});
    for (auto x : w | std::views::filter([](T x) { return x % 2; }) | std::views::transform([](T x) { return x * $i; }))
      n += x;
    std::visit([&](auto &&a) { std::ostringstream o; o << a; n += static_cast<T>(o.str().size()); }, v);
    m[s].push_back(n);
    u[n] = s;
    return n;
  }
};
long g$i(const std::string &s) { S$i<int> a; S$i<long> b; return a.f(s) + b.f(s); }
EOF
done | { printf '#include <%s>\n' algorithm functional map ranges regex sstream string unordered_map variant vector; cat; } \
  >"$work/templates.cc"

# xz: 15 MiB of text-like data (seq's lines), compressed at level 6, one
# thread (a few large buffers: the Large tier).
seq 1 2000000 >"$work/text"

# redis-server: 181,000 keys of 100 bytes set through redis-cli --pipe (the
# redis protocol, generated here), then shut down; redis.sh prints the
# number of keys. Debian's redis-server links jemalloc, which serves it
# unless an allocator is preloaded: for the glibc column the server gets
# libc.so.6 preloaded, so that glibc's malloc comes first.
awk 'BEGIN { v = sprintf("%100s", ""); gsub(/ /, "x", v)
  for (i = 0; i < 181000; i++) { k = "key:" i; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(k), k, v } }' \
  >"$work/redis.txt"
cat >"$work/redis.sh" <<'EOF'
w=$1
sock=$w/redis.sock
LD_PRELOAD=${LD_PRELOAD:-libc.so.6} redis-server --port 0 --unixsocket "$sock" --save "" --appendonly no \
  --dir "$w" --daemonize no >"$w/redis.log" 2>&1 &
server=$!
tries=0
until redis-cli -s "$sock" ping >/dev/null 2>&1; do
  tries=$((tries + 1))
  [ $tries -lt 100 ] || { kill $server; exit 1; }
  sleep 0.1
done
redis-cli -s "$sock" --pipe <"$w/redis.txt" >/dev/null || { kill $server; exit 1; }
redis-cli -s "$sock" dbsize
redis-cli -s "$sock" shutdown nosave >/dev/null 2>&1
wait $server
EOF

# name | program | arguments (@W: the work directory) | files removed before each run | programs it needs besides
specs=(
  "sqlite3/cache256|sqlite3|-bail -init @W/cache256.sql @W/cache256.db .quit|@W/cache256.db|"
  "sqlite3/default|sqlite3|-bail -init @W/default.sql @W/default.db .quit|@W/default.db|"
  "python3/objects|python3|@W/objects.py||"
  "g++/templates|g++|-std=c++20 -O2 -c @W/templates.cc -o @W/templates.o|@W/templates.o|"
  "xz/compress|xz|-6 -T1 -k -f @W/text|@W/text.xz|"
  "redis/set|sh|@W/redis.sh @W|@W/redis.sock|redis-server redis-cli"
)

# ---- run ---------------------------------------------------------------------
raw="$tmp/raw.tsv"
: >"$raw"
names=()
cmds=()
start_all=$(date +%s)
echo "bench-programs: $runs runs each, allocators: ${alloc_names[*]}"
field() { # key line -> value of key=value in line
  local kv
  for kv in $2; do [[ ${kv%%=*} == "$1" ]] && { echo "${kv#*=}"; return; }; done
}
for spec in "${specs[@]}"; do
  IFS='|' read -r name prog args clean needs <<<"$spec"
  if [[ -n ${BENCH_ONLY:-} ]]; then
    match=0
    for g in $BENCH_ONLY; do [[ $name == $g ]] && match=1; done
    ((match)) || continue
  fi
  absent=""
  for p in $prog $needs; do command -v "$p" >/dev/null 2>&1 || absent="$absent $p"; done
  if [[ -n $absent ]]; then
    echo "skipped: $name (not installed:$absent)"
    continue
  fi
  args=${args//@W/$work}
  clean=${clean//@W/$work}
  names+=("$name")
  cmds+=("$prog ${args//$work/<work>}")
  for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < nalloc; k++)); do
      i=$(((k + r) % nalloc))
      a=${alloc_names[$i]}
      base="$tmp/runs/${name//\//_}.$a.$r"
      [[ -n $clean ]] && rm -f $clean
      # shellcheck disable=SC2086
      env ${alloc_envs[$i]//,/ } "$bin/measure" -p "${alloc_libs[$i]}" -t "$timeout" -o "$base.m" -- "$prog" $args \
        >"$base.out" 2>"$base.err" </dev/null
      m=$(cat "$base.m" 2>/dev/null)
      status=$(field status "$m")
      if [[ $status != ok ]]; then
        echo "FAILED: $name with $a (run $((r + 1))): ${status:-no report}"
        tail -n 3 "$base.err" | sed "s/^/  | /"
        printf '%s\t%s\t%d\tFAILED\t\t\n' "$name" "$a" "$r" >>"$raw"
        continue
      fi
      printf '%s\t%s\t%d\tok\t%s\t%s\n' "$name" "$a" "$r" "$(field maxrss_kb "$m")" "$(field wall_ms "$m")" >>"$raw"
    done
  done
  # Every allocator must produce the same output (the workloads print a
  # result): one that differs from glibc's is reported.
  for ((i = 0; i < nalloc; i++)); do
    a=${alloc_names[$i]}
    ref="$tmp/runs/${name//\//_}.glibc.0.out"
    [[ -f $ref && $a != glibc ]] && ! cmp -s "$ref" "$tmp/runs/${name//\//_}.$a.0.out" &&
      echo "WRONG OUTPUT: $name with $a differs from glibc's"
  done
  awk -F'\t' -v b="$name" -v order="${alloc_names[*]}" '$1 == b && $4 == "ok" { r[$2] = r[$2] " " int($5 / 1024) "M" }
    END { line = sprintf("%-18s", b); n = split(order, o, " "); for (i = 1; i <= n; i++) line = line "  " o[i] (r[o[i]] == "" ? " -" : r[o[i]]); print line }' "$raw"
done
((${#names[@]})) || die "no program to run"
elapsed=$(($(date +%s) - start_all))

# ---- report ------------------------------------------------------------------
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
md="$out_dir/programs.md"
{
  echo "# hakmem under real programs"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(uname -m), ${cpu:-unknown CPU}, $(getconf _NPROCESSORS_ONLN) cores, Linux $(uname -r)"
  echo "- $runs runs per allocator, alternated run by run; medians; took ${elapsed}s"
  echo "- allocators:"
  for ((i = 0; i < nalloc; i++)); do
    echo "  - ${alloc_names[$i]}: ${alloc_vers[$i]}${alloc_shown[$i]:+ (\`${alloc_shown[$i]/#$root/.}\`)}"
  done
  echo "- programs (bench/programs.sh generates their input):"
  for ((j = 0; j < ${#names[@]}; j++)); do echo "  - ${names[$j]}: \`${cmds[$j]}\`"; done
  echo
  awk -F'\t' -v order="${alloc_names[*]}" -v progs="${names[*]}" '
    function med(s,  a, i, j, t, c) { c = split(s, a, " ");
      for (i = 2; i <= c; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return c % 2 ? a[(c + 1) / 2] + 0 : (a[c / 2] + a[c / 2 + 1]) / 2 }
    $4 == "ok" { k = $1 SUBSEP $2; rss[k] = rss[k] " " $5; ms[k] = ms[k] " " $6 }
    $4 == "FAILED" { bad[$1 SUBSEP $2] = 1 }
    function table(m, title, unit,  i, j, b, a, k, v, line, best, bestv, g) {
      print "## " title; print ""
      line = "| program |"; for (i = 1; i <= na; i++) line = line " " al[i] " |"
      print line " hakmem / glibc | hakmem / best peer |"
      line = "|---|"; for (i = 1; i <= na + 2; i++) line = line "---:|"; print line
      for (j = 1; j <= np; j++) { b = pl[j]; line = "| " b " |"; best = ""; delete v
        for (i = 1; i <= na; i++) { a = al[i]; k = b SUBSEP a
          if (!(k in bad) && ((m == "rss" ? rss[k] : ms[k]) != "")) {
            v[a] = med(m == "rss" ? rss[k] : ms[k])
            if (a !~ /^hakmem/ && (best == "" || v[a] < bestv)) { best = a; bestv = v[a] } } }
        for (i = 1; i <= na; i++) { a = al[i]
          line = line " " ((b SUBSEP a) in bad ? "FAILED" : (a in v) ? (m == "rss" ? sprintf("%.1f", v[a] / 1024) : sprintf("%.2f", v[a] / 1000)) : "–") " |" }
        g = ("hakmem" in v) && ("glibc" in v) && v["glibc"] > 0 ? sprintf("%.2f", v["hakmem"] / v["glibc"]) : "–"
        line = line " " g " | " (("hakmem" in v) && best != "" && bestv > 0 ? sprintf("%.2f (%s)", v["hakmem"] / bestv, best) : "–") " |"
        print line }
      print ""; print unit; print "" }
    BEGIN { na = split(order, al, " "); np = split(progs, pl, " ") }
    END {
      table("rss", "Peak RSS: median MiB (lower is better)", "The peak resident set of the program and the processes it waits for (ru_maxrss from wait4). The ratios: below 1.00 hakmem uses less.")
      table("ms", "Wall time: median seconds (lower is better)", "Below 1.00 hakmem is faster.") }' "$raw"
} >"$md"
echo "bench-programs: wrote ${md#$root/}"
