#!/usr/bin/env bash
# bench/callgrind.sh: instructions per malloc+free pair, counted by callgrind.
#
#   bench/callgrind.sh [--pairs N] [--window W] [--bin CHURN] [LIB]
#
# Runs the churn workload (bench/workloads/churn.c) under
# `valgrind --tool=callgrind` twice, with N and N/10 replacement pairs, with
# LIB preloaded (none, or "glibc", for glibc's malloc), and divides the
# difference in total instructions (Ir) by the difference in pairs: start-up,
# the window fill and the final frees cancel out. The same difference for the
# loop without allocator calls (churn's "dry" mode) is the loop's own cost,
# subtracted to give the allocator's share. Everything is deterministic
# (xorshift with a fixed seed, ASLR off where setarch allows).
#
# Prints one line: ir_per_pair= raw_ir_per_pair= loop_ir_per_pair= pairs= status=
set -u -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
pairs=1000000
window=4096
bin=""
lib=""
while [ $# -gt 0 ]; do
    case "$1" in
    --pairs) pairs=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) lib=$1; shift ;;
    esac
done
[ "$lib" = glibc ] && lib=""
pairs=$(printf '%.0f' "$pairs")
small=$((pairs / 10))

if [ -z "$bin" ]; then
    bin=$BENCH/results/tmp/bin/churn
    if [ ! -x "$bin" ] || [ "$BENCH/workloads/churn.c" -nt "$bin" ]; then
        mkdir -p "$(dirname "$bin")"
        cc -O2 -pthread -o "$bin" "$BENCH/workloads/churn.c" || exit 1
    fi
fi
command -v valgrind >/dev/null || { echo "status=no-valgrind"; exit 0; }

norand=()
if setarch "$(uname -m)" -R true 2>/dev/null; then
    norand=(setarch "$(uname -m)" -R)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tide-cg.XXXXXX")
trap 'rm -rf "$work"' EXIT

# total_ir PRELOAD ARGS... -> prints the run's total Ir, or nothing on failure
total_ir() {
    local pre=$1; shift
    local out
    out=$(mktemp "$work/cg.XXXXXX") || return 1
    if [ -n "$pre" ]; then
        env LD_PRELOAD="$pre" "${norand[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$bin" "$@" >"$work/stdout" 2>"$work/stderr" || return 1
    else
        env -u LD_PRELOAD "${norand[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$bin" "$@" >"$work/stdout" 2>"$work/stderr" || return 1
    fi
    # the "totals:" line (older formats: "summary:")
    awk '$1 == "totals:" { t = $2 } $1 == "summary:" { s = $2 }
         END { if (t != "") print t; else if (s != "") print s }' "$out"
}

fail() {
    echo "ir_per_pair=nan raw_ir_per_pair=nan loop_ir_per_pair=nan pairs=$pairs status=$1"
    tail -5 "$work/stderr" >&2 2>/dev/null
    exit 0
}

big=$(total_ir "$lib" "$pairs" "$window") || fail "valgrind-failed"
[ -n "$big" ] || fail "no-totals"
lit=$(total_ir "$lib" "$small" "$window") || fail "valgrind-failed"
dbig=$(total_ir "" "$pairs" "$window" dry) || fail "valgrind-failed-dry"
dlit=$(total_ir "" "$small" "$window" dry) || fail "valgrind-failed-dry"

awk -v b="$big" -v l="$lit" -v db="$dbig" -v dl="$dlit" -v n="$pairs" -v m="$small" 'BEGIN {
    raw = (b - l) / (n - m); loop = (db - dl) / (n - m);
    printf "ir_per_pair=%.2f raw_ir_per_pair=%.2f loop_ir_per_pair=%.2f pairs=%d status=ok\n",
           raw - loop, raw, loop, n
}'
