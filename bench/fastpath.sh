#!/usr/bin/env bash
# bench/fastpath.sh: check tidemalloc's fast-path cost against bench/fastpath.golden.
#
#   bench/fastpath.sh [--update] [--tolerance PCT] [LIB]
#
# Counts instructions per malloc+free pair with bench/callgrind.sh (churn
# workload, 1e6 pairs, loop cost subtracted) for LIB (default
# build/libtidemalloc.so). Without a golden file, or with --update, writes
# the figure to bench/fastpath.golden, with the compiler that built LIB
# (its .comment section). Otherwise compares: exits 1 if the count rose by
# more than PCT percent (default 3), and says so if it fell by more (time
# to update the golden); exits 3 without comparing if LIB was built by
# another compiler (clang, a newer gcc), whose count is its own.
set -u -o pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
GOLDEN=$BENCH/fastpath.golden
update=0 tol=3 lib=$ROOT/build/libtidemalloc.so
while [ $# -gt 0 ]; do
    case "$1" in
    --update) update=1; shift ;;
    --tolerance) tol=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) lib=$1; shift ;;
    esac
done
[ -e "$lib" ] || { echo "fastpath: $lib not found (run make)" >&2; exit 2; }
# The last compiler named in .comment is the one that built the library
# (crt objects name the system gcc first).
compiler=$(readelf -p .comment "$lib" 2>/dev/null | sed -n 's/^ *\[ *[0-9a-f]*\] *//p' | tail -n 1)
if [ $update = 0 ] && [ -e "$GOLDEN" ]; then
    gold_cc=$(sed -n 's/^# compiler: //p' "$GOLDEN")
    if [ "$gold_cc" != "$compiler" ]; then
        echo "fastpath: golden is for '$gold_cc', $lib was built by '$compiler': not compared"
        exit 3
    fi
fi
line=$("$BENCH/callgrind.sh" --pairs 1000000 "$lib")
case "$line" in *status=ok*) ;; *) echo "fastpath: callgrind failed: $line" >&2; exit 2 ;; esac
ir=${line#ir_per_pair=}; ir=${ir%% *}
if [ $update = 1 ] || [ ! -e "$GOLDEN" ]; then
    {
        echo "# instructions per malloc+free pair (bench/callgrind.sh, churn, 1e6 pairs, loop subtracted)"
        echo "# written by bench/fastpath.sh --update on $(date -u '+%Y-%m-%d'); $line"
        echo "# compiler: $compiler"
        echo "$ir"
    } >"$GOLDEN"
    echo "fastpath: $ir instructions per pair written to $GOLDEN"
    exit 0
fi
gold=$(grep -v '^#' "$GOLDEN" | head -1)
awk -v ir="$ir" -v g="$gold" -v tol="$tol" 'BEGIN {
    d = (ir - g) / g * 100
    printf "fastpath: %.2f instructions per pair, golden %.2f (%+.1f%%)\n", ir, g, d
    if (d > tol) { print "fastpath: REGRESSION beyond " tol "%"; exit 1 }
    if (d < -tol) print "fastpath: improved beyond " tol "%: run bench/fastpath.sh --update"
}'
