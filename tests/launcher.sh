#!/bin/bash
# tests/launcher.sh — the launcher (./hakmem) and the memory timeline.
#
# Every command and its error paths: --version, --help, no command, an
# unknown command; options (the table of src/options.h, the same names as
# the library's HAKMEM_VERBOSE=1 table); run with each of its flags (the
# library preloaded before what LD_PRELOAD held, the options set in the
# program's environment, the secure build, --lib), and its errors (a bad
# option name or value: exit 2 and the valid range; no program; a program
# that cannot run: 127); the timeline a program writes under run
# --timeline (one JSON line per interval, each with every field, time
# rising, and a last line at exit; an unwritable file is reported and the
# program runs on); plot (an SVG from a timeline; a missing file, a file
# with no timeline line). Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
H=./hakmem
pass=0 failn=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-launcher.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME CONDITION-STATUS [DETAIL]
  if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else
    failn=$((failn + 1))
    echo "FAIL $1${3:+ ($3)}"
  fi
}
# run_h ARGS...: the launcher's exit status, stdout and stderr into $rc $out $err.
run_h() {
  "$H" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  out=$(cat "$tmp/out")
  err=$(cat "$tmp/err")
}
is() { [ "$1" = "$2" ]; }

version=$(sed -n 's/^#define HAKMEM_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' include/hakmem.h | paste -sd.)
run_h --version
is "$rc:$out" "0:hakmem $version"
check "--version prints 'hakmem $version'" $? "$rc: $out"
run_h --help
[[ $rc -eq 0 && $out == "usage: hakmem run "* && $out == *"hakmem plot FILE"* && $out == *"hakmem options"* ]]
check "--help prints the usage on stdout, exit 0" $? "$rc"
run_h
[[ $rc -eq 2 && -z $out && $err == "usage: hakmem run "* ]]
check "no command: the usage on stderr, exit 2" $? "$rc"
run_h frobnicate
is "$rc:$err" "2:hakmem: frobnicate: unknown command ('hakmem --help' shows the usage)"
check "an unknown command: exit 2 and says so" $? "$rc: $err"

# ---- options ------------------------------------------------------------------
run_h options
names=$(echo "$out" | awk 'NR > 1 { print $1 }' | sort)
lib_names=$(HAKMEM_VERBOSE=1 LD_PRELOAD=./libhakmem.so /bin/true 2>&1 | awk 'NR > 1 { print $1 }' | sort)
[[ $rc -eq 0 && -n $names && $names == "$lib_names" ]]
check "options lists exactly the library's options" $? "$(diff <(echo "$names") <(echo "$lib_names") | head -5)"
[[ $out == *"HAKMEM_BIGCACHE_MB           32         0..65536"* ]]
check "options gives each default and range" $? "$(echo "$out" | grep BIGCACHE_MB)"

# ---- run ----------------------------------------------------------------------
lib=$(readlink -f ./libhakmem.so)
run_h run -- sh -c 'echo "$LD_PRELOAD"'
is "$rc:$out" "0:$lib"
check "run preloads the library beside the launcher, by its full path" $? "$rc: $out"
LD_PRELOAD=tests/bin/crash-handler.so "$H" run -- sh -c 'echo "$LD_PRELOAD"' >"$tmp/out" 2>&1
is "$(cat "$tmp/out")" "$lib tests/bin/crash-handler.so"
check "run keeps what LD_PRELOAD held, after the library" $? "$(cat "$tmp/out")"
run_h run --secure -- sh -c 'echo "$LD_PRELOAD"'
is "$rc:$out" "0:$(readlink -f ./libhakmem-secure.so)"
check "run --secure preloads the secure build" $? "$rc: $out"
run_h run --count-all -- sh -c 'echo "$LD_PRELOAD"'
is "$rc:$out" "0:$(readlink -f ./libhakmem-stats.so)"
check "run --count-all preloads the stats build" $? "$rc: $out"
run_h run --profile "$tmp/p.heap" -- sh -c 'echo "$LD_PRELOAD"'
is "$rc:$out" "0:$(readlink -f ./libhakmem-profile.so)"
check "run --profile preloads the profile build" $? "$rc: $out"
HAKMEM_PROFILE=1 "$H" run -- sh -c 'echo "$LD_PRELOAD"' >"$tmp/out" 2>&1
is "$(cat "$tmp/out")" "$(readlink -f ./libhakmem-profile.so)"
check "run with HAKMEM_PROFILE=1 set preloads the profile build" $? "$(cat "$tmp/out")"
run_h run --secure --profile "$tmp/p.heap" -- true
is "$rc:$err" "2:hakmem: run: HAKMEM_PROFILE=1 samples in the profile build only, not with --secure"
check "run --secure --profile: exit 2, with the reason" $? "$rc: $err"
run_h run --lib debug/libhakmem.so -- sh -c 'echo "$LD_PRELOAD"'
is "$rc:$out" "0:$(readlink -f debug/libhakmem.so)"
check "run --lib PATH preloads that library" $? "$rc: $out"
run_h run --lib /nonexistent/libhakmem.so -- true
is "$rc:$err" "2:hakmem: /nonexistent/libhakmem.so: No such file or directory"
check "run --lib with a missing file: exit 2" $? "$rc: $err"
run_h run --stats=line --trace oom --crash-report --option RETAIN_KB=1024 --option HAKMEM_THP=2 -- \
  sh -c 'echo "$HAKMEM_STATS $HAKMEM_TRACE $HAKMEM_CRASH_REPORT $HAKMEM_RETAIN_KB $HAKMEM_THP"'
[[ $rc -eq 0 && $out == "1 oom 1 1024 2" ]]
check "run sets the options in the program's environment (NAME with or without HAKMEM_)" $? "$rc: $out: $err"
run_h run --stats=line -- /bin/true
[[ $rc -eq 0 && $err == "hakmem: pid="*" mapped="* ]]
check "run --stats=line: the line at exit" $? "$rc: $err"
run_h run --stats=json -- /bin/true
echo "$err" | python3 -c 'import json, sys; json.loads(sys.stdin.read())' 2>/dev/null
check "run --stats=json: the report at exit is JSON" $? "$err"
run_h run --stats -- /bin/true
[[ $rc -eq 0 && $err == "hakmem statistics"* ]]
check "run --stats: the text report" $? "$(echo "$err" | head -2)"
run_h run --option BIGCACHE_MB=999999 -- true
is "$rc:$err" "2:hakmem: HAKMEM_BIGCACHE_MB=999999: not a whole number in [0, 65536]"
check "a value out of range: exit 2 with the range" $? "$rc: $err"
run_h run --option RETAIN_KB=-5 -- true
is "$rc:$err" "2:hakmem: HAKMEM_RETAIN_KB=-5: not a whole number in [0, 1048576]"
check "a negative value: exit 2 with the range" $? "$rc: $err"
run_h run --trace banana -- true
is "$rc:$err" "2:hakmem: HAKMEM_TRACE=banana: not a whole number in [0, 1] or a list of oom"
check "a bad word: exit 2 with the words" $? "$rc: $err"
run_h run --option FROB=1 -- true
is "$rc:$err" "2:hakmem: unknown option HAKMEM_FROB ('hakmem options' lists them)"
check "an unknown option: exit 2" $? "$rc: $err"
run_h run --option RETAIN_KB -- true
is "$rc:$err" "2:hakmem: --option RETAIN_KB: not NAME=VALUE"
check "--option without a value: exit 2" $? "$rc: $err"
run_h run --frob -- true
is "$rc:$err" "2:hakmem: run: --frob: unknown, or its value is missing ('hakmem --help' shows the usage)"
check "an unknown flag: exit 2" $? "$rc: $err"
run_h run --stats
is "$rc:$err" "2:hakmem: run: no program (hakmem run [OPTIONS] -- PROGRAM [ARGS...])"
check "run without a program: exit 2" $? "$rc: $err"
run_h run -- /nonexistent/program
is "$rc:$err" "127:hakmem: cannot run /nonexistent/program: No such file or directory"
check "a program that cannot run: exit 127" $? "$rc: $err"
run_h run -- sh -c 'exit 7'
is "$rc" 7
check "run exits with the program's status" $? "$rc"

# ---- the timeline ------------------------------------------------------------
tl=$tmp/timeline.jsonl
run_h run --timeline "$tl" --option TIMELINE_MS=20 -- \
  python3 -c 'import time
x = [bytes(500) for i in range(20000)]
y = [bytearray(100000) for i in range(40)]
time.sleep(0.4)'
check "a program runs under run --timeline" "$rc" "$rc: $err"
python3 - "$tl" <<'EOF'
import json, sys
keys = ["pid", "start", "t_ms", "rss", "committed", "in_use", "empty", "slab_free", "purged", "room", "keep", "policy", "minflt", "majflt", "tiny", "mid", "pool", "large"]
lines = [json.loads(l) for l in open(sys.argv[1])]
runs = {}
for l in lines:
    runs[(l["pid"], l["start"])] = runs.get((l["pid"], l["start"]), 0) + 1
main = max(runs, key=runs.get)  # python's children write too
lines = [l for l in lines if (l["pid"], l["start"]) == main]
assert len(lines) >= 6, f"{len(lines)} lines in 0.4 s at 20 ms"
for l in lines:
    assert list(l) == keys, list(l)
    assert all(isinstance(l[k], int) and l[k] >= 0 for k in keys if k != "policy"), l
    assert l["policy"] == "static", l  # without HAKMEM_ELO
    assert l["in_use"] == l["tiny"] + l["mid"] + l["pool"] + l["large"], l
    assert l["committed"] >= l["in_use"] and l["rss"] > 0, l
assert all(a["t_ms"] <= b["t_ms"] for a, b in zip(lines, lines[1:])), "time goes back"
assert max(l["tiny"] for l in lines) >= 20000 * 500 // 2, "the bytes objects are tiny blocks"
assert max(l["pool"] for l in lines) >= 40 * 100000 // 2, "the bytearrays are pool blocks"
EOF
check "the timeline: JSON lines of every field, time rising, tiers as the program allocated" $? "$(head -c 600 "$tl")"
run_h run --timeline /nonexistent/dir/timeline.jsonl -- sh -c 'exit 0'
[[ $rc -eq 0 && $err == "hakmem: HAKMEM_TIMELINE=/nonexistent/dir/timeline.jsonl: the file cannot be opened (errno 2); no timeline"* ]]
check "an unwritable timeline file is reported and the program runs" $? "$rc: $err"

# ---- plot ---------------------------------------------------------------------
if command -v gnuplot >/dev/null; then
  run_h plot "$tl" -o "$tmp/t.svg"
  [[ $rc -eq 0 && $out == "$tmp/t.svg: "*" points of process "* ]] && grep -q '<svg' "$tmp/t.svg" &&
    grep -q 'RSS' "$tmp/t.svg"
  check "plot draws the timeline as SVG" $? "$rc: $out $err"
  cp "$tl" "$tmp/copy.jsonl"
  run_h plot "$tmp/copy.jsonl"
  [[ $rc -eq 0 && -s $tmp/copy.jsonl.svg ]]
  check "plot without -o writes FILE.svg" $? "$rc: $err"
else
  echo "note: no gnuplot; plot's drawing is not checked"
fi
run_h plot /nonexistent/timeline.jsonl
is "$rc:$err" "1:hakmem: plot: /nonexistent/timeline.jsonl: No such file or directory"
check "plot of a missing file: exit 1" $? "$rc: $err"
printf 'not a timeline\n' >"$tmp/bad.jsonl"
run_h plot "$tmp/bad.jsonl"
is "$rc:$err" "1:hakmem: plot: $tmp/bad.jsonl: no timeline line in it (1 other lines)"
check "plot of a file with no timeline line: exit 1" $? "$rc: $err"
run_h plot
is "$rc:$err" "2:hakmem: plot: no timeline file (hakmem plot FILE [-o OUT.svg])"
check "plot without a file: exit 2" $? "$rc: $err"

echo "$pass passed, $failn failed"
[ "$failn" -eq 0 ]
