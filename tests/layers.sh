#!/bin/bash
# tests/layers.sh — checks the layering of src/: every file, header and
# header section calls only functions (and reads only globals) defined in
# its own layer or a layer below it, in the order the layer list of
# src/README.md gives. Prints each call that goes up, and one closing line
# "layers: N files and sections, M calls up"; exit status 0 iff none.
#
# Layers: the files of the list, bottom up; headers by src/README.md's
# rules (units.h: superslab.c, budget.h: budget.c, size_class.h:
# size_class.c, alloc.h: api.c, options.h: options.c), and internal.h and
# heap.h by section
# ("/* ---- FILE..." opens FILE's section; internal.h's sections before
# os.c's, and "the thread's own parts", belong to no layer, below all).
# Definitions: non-static functions and globals at column 0 of a .c file,
# and the static inline functions of headers (not their prototypes: a
# lower section may declare what a higher one defines). Comments are stripped first
# (gcc -fpreprocessed), so a comment may name anything.
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-layers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

order=$(sed -n '/^## Layers/,/^Headers belong/p' src/README.md | grep -oE '^[a-z_]+\.c ')
[ -n "$order" ] || { echo "layers: no layer list in src/README.md"; exit 1; }

# rank FILE: its layer's position (1 = bottom), 0 for none.
declare -A rank=()
i=0
for f in $order; do i=$((i + 1)); rank[$f]=$i; done
rank[units.h]=${rank[superslab.c]}
rank[budget.h]=${rank[budget.c]}
rank[size_class.h]=${rank[size_class.c]}
rank[alloc.h]=${rank[api.c]}
rank[options.h]=${rank[options.c]}

# The text of a part without its comments; conditionals go first (a
# section may hold an #ifndef whose #endif is in another).
strip() {
  grep -vE '^[ \t]*#[ \t]*(if|ifdef|ifndef|elif|else|endif)\b' "$1" >"$1.nc"
  gcc -x c -fpreprocessed -dD -E -P "$1.nc" 2>/dev/null || echo "layers: cannot read $1" >&2
}

# Split internal.h and heap.h into their sections: HEADER@FILE (or
# HEADER@ for the layer-less ones), comments kept until each part is
# stripped.
for h in internal.h heap.h; do
  awk -v dir="$tmp" -v h="$h" '
    /^\/\* ---- / {
      name = ""
      if (match($0, /^\/\* ---- [a-z_]+\.c/)) name = substr($0, 9, RLENGTH - 8)
      if ($0 ~ /^\/\* ---- the thread.s own parts/) name = ""
    }
    { f = dir "/" h "@" name; print > f }
  ' "src/$h"
done
for f in src/*.c src/*.h; do
  b=${f#src/}
  [ "$b" = internal.h ] || [ "$b" = heap.h ] && continue
  [ -n "${rank[$b]:-}" ] || { echo "layers: $f is in no layer (add it to the list in src/README.md)"; exit 1; }
  cp "$f" "$tmp/$b"
done
for f in "$tmp"/*; do strip "$f" >"$f.s"; done

# Definitions: NAME PART, one per line.
: >"$tmp/defs"
for s in "$tmp"/*.s; do
  part=$(basename "$s" .s)
  case $part in
  *.h@* | *.h) kind=header ;;
  *) kind=source ;;
  esac
  case $kind in
  source)
    awk -v part="$part" '
      /^(static|extern|typedef|#)/ { next }
      /^[A-Za-z_][A-Za-z0-9_ \*]*[ \*](_hak_|hak_)[a-z0-9_]+ *\(/ && !/\);[ \t]*$/ {
        match($0, /(_hak_|hak_)[a-z0-9_]+ *\(/); n = substr($0, RSTART, RLENGTH); sub(/ *\($/, "", n)
        print n, part; next }
      /^[A-Za-z_][A-Za-z0-9_ \*]*[ \*](_hak_)[a-z0-9_]+( *\[[^]]*\])* *(=|;|\[)/ {
        match($0, /_hak_[a-z0-9_]+/); print substr($0, RSTART, RLENGTH), part }
    ' "$s" >>"$tmp/defs" ;;
  header)
    awk -v part="$part" '
      /^static inline/ && !/\);[ \t]*$/ && match($0, /(_hak_|hak_)[a-z0-9_]+\(/) {
        print substr($0, RSTART, RLENGTH - 1), part }
    ' "$s" >>"$tmp/defs" ;;
  esac
done

# layer_of PART: HEADER@FILE takes FILE's layer.
layer_of() {
  local p=$1
  case $p in
  *.h@) echo 0 ;;
  *.h@*) echo "${rank[${p#*@}]:-0}" ;;
  *) echo "${rank[$p]:-0}" ;;
  esac
}

# where PART: how a part is named in a report.
where() {
  case $1 in
  *.h@) echo "${1%@}, the sections of no layer" ;;
  *.h@*) echo "${1%@*}, section ${1#*@}" ;;
  *) echo "$1" ;;
  esac
}

declare -A def_layer=() def_part=()
while read -r name part; do
  def_layer[$name]=$(layer_of "$part")
  def_part[$name]=$part
done <"$tmp/defs"

up=0
n=0
for s in "$tmp"/*.s; do
  part=$(basename "$s" .s)
  me=$(layer_of "$part")
  n=$((n + 1))
  for name in $(grep -oE '\b(_hak_|hak_)[a-z0-9_]+\b' "$s" | sort -u); do
    l=${def_layer[$name]:-}
    [ -n "$l" ] || continue
    if [ "$l" -gt "$me" ]; then
      echo "up: $(where "$part") uses $name ($(where "${def_part[$name]}"))"
      up=$((up + 1))
    fi
  done
done
echo "layers: $n files and sections, $up calls up"
[ "$up" -eq 0 ]
