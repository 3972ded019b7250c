#!/bin/bash
# Fast-path cost gate: instructions per malloc+free pair of the churn
# workload, counted by callgrind (bench/fastpath.sh), must not rise more
# than 3% above bench/fastpath.golden. Instruction counts are exact and
# repeatable, so this may fail a build; timings never do (they belong to
# make bench). Only the default build (build/libtidemalloc.so) made by the
# compiler named in the golden file is held to it: the sanitizer and
# small-hint-table builds run other code, other compilers emit other code.
# After a change that makes the fast path cheaper, bench/fastpath.sh
# --update records the new figure.
. "$(dirname "$0")/../lib/th.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ -z "$TIDE_LIB" ] || [ ! -f "$TIDE_LIB" ]; then
    th_skip instructions_per_pair "no tidemalloc library (running against glibc)"
    th_exit
fi
if [ "$(cd "$(dirname "$TIDE_LIB")" && pwd)/$(basename "$TIDE_LIB")" != "$ROOT/build/libtidemalloc.so" ]; then
    th_skip instructions_per_pair "golden figure is for build/libtidemalloc.so, not $TIDE_LIB"
    th_exit
fi
if ! command -v valgrind >/dev/null 2>&1; then
    th_skip instructions_per_pair "valgrind not installed"
    th_exit
fi
"$ROOT/bench/fastpath.sh" "$TIDE_LIB" >"$TH_TMP/out" 2>&1
case $? in
0) th_ok instructions_per_pair; cat "$TH_TMP/out" ;;
3) th_skip instructions_per_pair "$(tr "\n" " " <"$TH_TMP/out")" ;;
*) th_fail instructions_per_pair "$(tr "\n" " " <"$TH_TMP/out")" ;;
esac
th_exit
