#!/bin/bash
# tests/fuzz/corpus.sh — writes the seed inputs of tests/fuzz/corpus/: one
# per tier or pattern, and the inputs that found bugs (the encoding is at
# the top of tests/fuzz/alloc.c). Run it after changing the encoding:
# bash tests/fuzz/corpus.sh
set -eu
cd "$(dirname "$0")"
rm -rf corpus
mkdir corpus

# Operations (alloc.c's OP_*) and size tiers (size_of).
MALLOC=0 CALLOC=1 REALLOC=2 ALIGNED=3 MEMALIGN=4 FREE=5 MISC=7
ZERO=0 TINY=1 MID=3 POOL=4 LARGE=5 EDGE=6 LOG=7

# op OP SLOT [TIER R [ALIGN-EXPONENT [VARIANT]]]: one 4-byte operation.
op() {
  local w=$((${3:-0} << 13 | ${4:-0}))
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 | ${5:-0} << 3)) $(($2 | ${6:-0} << 6)) \
    $((w & 255)) $((w >> 8)))"
}

# Tiny: blocks of several classes, some freed and allocated again, realloc
# within Tiny.
{
  for s in 0 1 2 3 4 5 6 7; do op $MALLOC $s $TINY $((s * 130 + 7)); done
  op $FREE 2
  op $FREE 5
  op $MALLOC 2 $TINY 40
  op $REALLOC 3 $TINY 900
  op $CALLOC 5 $TINY 300 0 2
} >corpus/tiny

# Mid and pool: calloc of each, realloc from Mid up into the pool.
{
  op $MALLOC 0 $MID 100
  op $CALLOC 1 $MID 8000 0 1
  op $MALLOC 2 $POOL 50
  op $CALLOC 3 $POOL 4000
  op $REALLOC 0 $POOL 6000
  op $FREE 2
  op $MALLOC 2 $POOL 51
} >corpus/mid-pool

# Large: blocks freed and asked for again (BigCache), calloc from it, realloc
# growing and shrinking.
{
  op $MALLOC 0 $LARGE 1000
  op $MALLOC 1 $LARGE 8000
  op $FREE 0
  op $CALLOC 0 $LARGE 900
  op $REALLOC 1 $LARGE 100
  op $REALLOC 0 $LARGE 8191
  op $FREE 1
  op $MALLOC 1 $LARGE 8000
} >corpus/large

# Aligned: aligned_alloc and posix_memalign from 16 bytes to 4 MiB, and
# alignments that are refused (0, 3, 24, 48, 2^62; posix_memalign below 8).
{
  for x in 4 6 12 16 17 21 22; do op $ALIGNED $x $TINY $((x * 50)) $x; done
  for x in 3 8 13 16 18; do op $MEMALIGN $((x + 10)) $MID $((x * 300)) $x; done
  for x in 23 24 25 26 27; do op $ALIGNED 30 $TINY 64 $x; done
  op $MEMALIGN 31 $TINY 64 2
} >corpus/aligned

# One block through realloc across every tier and back, then to 0.
{
  op $MALLOC 0 $TINY 15
  op $REALLOC 0 $TINY 1000
  op $REALLOC 0 $MID 8191
  op $REALLOC 0 $POOL 8191
  op $REALLOC 0 $LARGE 4000
  op $REALLOC 0 $POOL 10
  op $REALLOC 0 $TINY 3
  op $REALLOC 0 0 0 0 3
} >corpus/realloc-walk

# Class and tier boundaries, and log-uniform sizes.
{
  for r in 0 7 8 39 40 79 80 82 86 88 90 95; do op $MALLOC $((r % 64)) $EDGE $((r + 96 * 2)); done
  for e in 4 10 16 21; do op $MALLOC $((e + 20)) $LOG $((e + 22 * 100)); done
} >corpus/edges

# Zero sizes: malloc(0), calloc of 0 bytes, realloc(NULL, 0), realloc(p, 0).
{
  op $MALLOC 0 $ZERO 0
  op $CALLOC 1 $ZERO 0
  op $REALLOC 2 $ZERO 0 0 3
  op $MALLOC 3 $TINY 10
  op $REALLOC 3 $ZERO 0 0 3
} >corpus/zero

# The rest: every error path (huge sizes, calloc overflow, realloc to
# SIZE_MAX), statistics, trim, a full check.
{
  op $MALLOC 0 $MID 10
  op $MALLOC 1 $LARGE 10
  for r in 0 1 2 3 4 5 6 7 15; do op $MISC $((r % 2)) 0 $r 0 2; done
  op $MISC 0 0 0 0 1
  op $FREE 1
  op $MISC 0 0 0 0 0
  op $MISC 0 0 0 0 3
} >corpus/misc

# Inputs that found bugs in src/, kept so that every run replays them.
# aligned_alloc and posix_memalign of 0 bytes at an alignment of 128 KiB or
# more (a Large block) gave a block with no usable byte, which realloc then
# refused as a bad pointer (EINVAL).
{
  op $ALIGNED 0 $ZERO 0 17
  op $REALLOC 0 $TINY 99
} >corpus/large-aligned-size0-realloc
{
  op $MEMALIGN 0 $ZERO 0 18
  op $REALLOC 0 $EDGE 800
} >corpus/large-memalign-size0-realloc
# 62 blocks of the last Mid class fill SuperSlabs to their last unit; the
# trim at the end purged a dirty run reaching unit 31, whose length was
# counted with ctz(0) (undefined).
{
  op $MALLOC 0 $TINY 15
  op $MALLOC 1 $TINY 1023
  for s in $(seq 2 63); do op $MALLOC $s $EDGE 327; done
} >corpus/purge-run-to-unit31
