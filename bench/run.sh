#!/usr/bin/env bash
# bench/run.sh: tidemalloc side by side with glibc, jemalloc, tcmalloc and
# mimalloc, each loaded with LD_PRELOAD.
#
#   bench/run.sh [--quick] [--reps N] [--only LIST] [--allocs LIST]
#                [--timeout SECS] [--no-callgrind] [--no-charts] [--list]
#
#   --quick         small sizes, 1 repetition (a couple of minutes in all)
#   --reps N        repetitions (default 5, quick 1); runs are interleaved:
#                   repetition 1 of every allocator, then repetition 2...
#   --only LIST     comma-separated workload names (see --list); "callgrind"
#                   selects the instruction count of churn under callgrind
#   --allocs LIST   comma-separated subset of glibc,jemalloc,tcmalloc,mimalloc,tidemalloc
#   --timeout SECS  per run (default 300, quick 60); a run over it is killed,
#                   and later repetitions of that workload/allocator are skipped
#
# tidemalloc is build/libtidemalloc.so (or $TIDEMALLOC_SO); if it is absent
# or cannot even run /bin/true, it is skipped and the report says so.
# Each run is measured from outside by bench/tools/measure.c (wall time,
# ru_maxrss); each workload also prints its own figures on one line.
# Output: bench/results/latest.md (medians, ratios), latest.tsv (medians),
# raw.tsv (every run), *.svg (gnuplot); scratch in bench/results/tmp/.
set -u -o pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
RES=$BENCH/results
TMPD=$RES/tmp
BIN=$TMPD/bin
CC=${CC:-cc}

quick=0 reps="" only="" allocs_arg="" timeout="" do_callgrind=1 do_charts=1 list=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1; shift ;;
    --reps) reps=$2; shift 2 ;;
    --reps=*) reps=${1#*=}; shift ;;
    --only) only=$2; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    --allocs) allocs_arg=$2; shift 2 ;;
    --allocs=*) allocs_arg=${1#*=}; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --no-callgrind) do_callgrind=0; shift ;;
    --no-charts) do_charts=0; shift ;;
    --list) list=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$reps" ] || reps=$([ $quick = 1 ] && echo 1 || echo 5)
[ -n "$timeout" ] || timeout=$([ $quick = 1 ] && echo 60 || echo 300)
case "$reps" in ''|*[!0-9]*|0) echo "run.sh: --reps needs a positive integer" >&2; exit 2 ;; esac

say() { printf '%s\n' "$*" >&2; }

# ---- workloads ------------------------------------------------------------
# name | stdin file | full command | quick command   (@BIN@, @TMP@, @BENCH@ substituted)
WORKLOADS=(
    "churn||@BIN@/churn 3e7|@BIN@/churn 1e7"
    "larson||@BIN@/larson 4 2e6|@BIN@/larson 4 3e5"
    "rbd||@BIN@/rbd 2 2 5e5|@BIN@/rbd 2 2 8e4"
    "nearpage||@BIN@/nearpage 200000 2e6|@BIN@/nearpage 30000 3e5"
    "hugetail||@BIN@/hugetail 48 300|@BIN@/hugetail 16 40"
    "idle||@BIN@/idle 4 1G 0,0.5,1,2,5|@BIN@/idle 2 256M 0,0.5,1,2,5"
    "trim||@BIN@/trim 1.2G|@BIN@/trim 256M"
    "threads||@BIN@/threads 1000 4 2000|@BIN@/threads 150 4 1000"
    "realloc||@BIN@/realloc 2 8 64M|@BIN@/realloc 1 4 16M"
    "startup||@BIN@/spawn 200 /bin/true|@BIN@/spawn 60 /bin/true"
    "python||/usr/bin/python3 @BENCH@/real/pyload.py 100000|/usr/bin/python3 @BENCH@/real/pyload.py 15000"
    "sqlite|@TMP@/sqlite.sql|/usr/bin/sqlite3 :memory:|/usr/bin/sqlite3 :memory:"
    "gcc||/usr/bin/gcc -O2 -c @TMP@/gen.c -o @TMP@/gen.o|/usr/bin/gcc -O2 -c @TMP@/gen.c -o @TMP@/gen.o"
)
# sizes of generated inputs: full / quick
SQLITE_ROWS=(300000 40000)
GCC_FUNCS=(150 25)
CALLGRIND_PAIRS=(1000000 200000)

if [ $list = 1 ]; then
    for w in "${WORKLOADS[@]}"; do
        IFS='|' read -r n _ f q <<<"$w"
        printf '%-9s full: %s\n%-9s quick: %s\n' "$n" "$f" "" "$q"
    done
    echo "callgrind  churn under valgrind --tool=callgrind (instructions per malloc+free)"
    exit 0
fi

# ---- allocators -----------------------------------------------------------
MA=$($CC -print-multiarch 2>/dev/null)
LIBDIR=/usr/lib/${MA:-x86_64-linux-gnu}
TIDE_SO=${TIDEMALLOC_SO:-$ROOT/build/libtidemalloc.so}
TIDE_SUM="" TIDE_DATE=""
ALL_ALLOCS=(glibc jemalloc tcmalloc mimalloc tidemalloc)
declare -A LIB=(
    [glibc]=""
    [jemalloc]=$LIBDIR/libjemalloc.so.2
    [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4
    [mimalloc]=$LIBDIR/libmimalloc.so.2
    [tidemalloc]=$TIDE_SO
)
declare -A PKG=(
    [jemalloc]=libjemalloc2 [tcmalloc]=libtcmalloc-minimal4 [mimalloc]=libmimalloc2.0
)

mkdir -p "$RES" "$TMPD" "$BIN" "$TMPD/runs"
META=$TMPD/meta.txt
RAW=$TMPD/raw.tsv
CMDS=$TMPD/cmds.tsv
: >"$META"
: >"$RAW"
: >"$CMDS"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
note() { meta note "$*"; say "note: $*"; }

# ---- dependencies ------------------------------------------------------------
ensure_deps() {
    local missing=()
    local a
    for a in jemalloc tcmalloc mimalloc; do
        [ -e "${LIB[$a]}" ] || missing+=("${PKG[$a]}")
    done
    command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
    command -v valgrind >/dev/null || missing+=(valgrind)
    [ -x /usr/bin/sqlite3 ] || missing+=(sqlite3)
    [ -x /usr/bin/python3 ] || missing+=(python3)
    [ -x /usr/bin/gcc ] || missing+=(gcc)
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing missing packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update >&2 &&
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
            say "warning: could not install ${missing[*]}; what needs them is skipped"
    fi
}
ensure_deps
[ -x /usr/bin/python3 ] || { say "run.sh: /usr/bin/python3 is needed for the report"; exit 1; }

# ---- build ---------------------------------------------------------------
build() {
    local src=$1 out=$2
    if [ ! -x "$out" ] || [ "$src" -nt "$out" ] || [ "$BENCH/workloads/common.h" -nt "$out" ]; then
        $CC -O2 -g -Wall -Wextra -pthread -o "$out" "$src" || { say "run.sh: build of $src failed"; exit 1; }
    fi
}
say "building workloads in $BIN"
build "$BENCH/tools/measure.c" "$BIN/measure"
for src in "$BENCH"/workloads/*.c; do
    n=$(basename "$src" .c)
    build "$src" "$BIN/$n"
done

# ---- selection -----------------------------------------------------------------
contains() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

sel_allocs=()
if [ -n "$allocs_arg" ]; then
    IFS=',' read -r -a want <<<"$allocs_arg"
    for a in "${want[@]}"; do
        contains "$a" "${ALL_ALLOCS[@]}" || { say "run.sh: unknown allocator $a"; exit 2; }
    done
else
    want=("${ALL_ALLOCS[@]}")
fi
for a in "${ALL_ALLOCS[@]}"; do
    contains "$a" "${want[@]}" || continue
    lib=${LIB[$a]}
    if [ -n "$lib" ] && [ ! -e "$lib" ]; then
        if [ "$a" = tidemalloc ]; then
            note "tidemalloc skipped: $lib does not exist (run make first)"
        else
            note "$a skipped: $lib not found"
        fi
        continue
    fi
    if [ "$a" = tidemalloc ]; then
        # run a snapshot: the .so may be rebuilt while the benchmark runs
        cp "$lib" "$TMPD/libtidemalloc.so" || { note "tidemalloc skipped: cannot copy $lib"; continue; }
        TIDE_SUM=$(sha256sum "$lib" | cut -c1-12)
        TIDE_DATE=$(date -u -r "$lib" '+%Y-%m-%d %H:%M:%S UTC')
        lib=$TMPD/libtidemalloc.so
        LIB[tidemalloc]=$lib
        chk=$("$BIN/measure" -p "$lib" -o "$TMPD/sanity.out" -e "$TMPD/sanity.err" -t 20 -- /bin/true)
        case "$chk" in
        *status=ok*) ;;
        *)
            note "tidemalloc skipped: LD_PRELOAD=$lib /bin/true failed (${chk##*status=}): $(head -c 300 "$TMPD/sanity.err" | tr '\n' ' ')"
            continue ;;
        esac
    fi
    sel_allocs+=("$a")
done
[ ${#sel_allocs[@]} -gt 0 ] || { say "run.sh: no allocator to run"; exit 1; }

sel_wl=()
run_cg=0
if [ -n "$only" ]; then
    IFS=',' read -r -a want_wl <<<"$only"
else
    want_wl=()
    for w in "${WORKLOADS[@]}"; do want_wl+=("${w%%|*}"); done
    want_wl+=(callgrind)
fi
for n in "${want_wl[@]}"; do
    if [ "$n" = callgrind ]; then
        run_cg=$do_callgrind
        continue
    fi
    found=""
    for w in "${WORKLOADS[@]}"; do [ "${w%%|*}" = "$n" ] && found=$w; done
    [ -n "$found" ] || { say "run.sh: unknown workload $n (see --list)"; exit 2; }
    sel_wl+=("$found")
done
if [ $run_cg = 1 ] && ! command -v valgrind >/dev/null; then
    note "callgrind skipped: valgrind not installed"
    run_cg=0
fi

# ---- generated inputs ---------------------------------------------------------
qi=$quick
if contains sqlite "${want_wl[@]}"; then
    sed "s/@ROWS@/${SQLITE_ROWS[$qi]}/" "$BENCH/real/sqlite.sql.in" >"$TMPD/sqlite.sql"
fi
if contains gcc "${want_wl[@]}"; then
    /usr/bin/python3 "$BENCH/real/gen_c.py" "${GCC_FUNCS[$qi]}" >"$TMPD/gen.c"
fi

# ---- metadata ---------------------------------------------------------------
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo "?"; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta mode "$([ $quick = 1 ] && echo quick || echo full)"
meta reps "$reps"
meta cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
meta cores "$(nproc)"
meta kernel "$(uname -r)"
meta thp "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
meta libc "$(ldd --version 2>/dev/null | head -1 | sed 's/.* //')"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
for a in "${sel_allocs[@]}"; do
    case "$a" in
    glibc) v=$(pkgver libc6) ;;
    tidemalloc)
        v="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo uncommitted)"
        v="$v, built $TIDE_DATE, sha256 $TIDE_SUM; run from a copy in $TMPD" ;;
    *) v=$(pkgver "${PKG[$a]}") ;;
    esac
    shown=${LIB[$a]:-(none: glibc malloc)}
    [ "$a" = tidemalloc ] && shown=$TIDE_SO
    meta "alloc.$a" "$shown $v"
done
meta allocs "${sel_allocs[*]}"
wl_names=()
for w in "${sel_wl[@]}"; do
    IFS='|' read -r n stdin_f full_c quick_c <<<"$w"
    wl_names+=("$n")
done
meta workloads "${wl_names[*]}"

# ---- runs -----------------------------------------------------------------
subst() {
    local s=$1
    s=${s//@BIN@/$BIN}
    s=${s//@TMP@/$TMPD}
    s=${s//@BENCH@/$BENCH}
    printf '%s' "$s"
}

total=$((reps * ${#sel_wl[@]} * ${#sel_allocs[@]}))
done_n=0
t_start=$(date +%s)
say "running ${#sel_wl[@]} workloads x ${#sel_allocs[@]} allocators x $reps reps ($total runs)$([ $run_cg = 1 ] && echo ' + callgrind')"

declare -A TIMED_OUT=()
run_one() { # rep workload-entry allocator
    local rep=$1 entry=$2 a=$3
    local n stdin_f full_c quick_c cmd
    IFS='|' read -r n stdin_f full_c quick_c <<<"$entry"
    if [ -n "${TIMED_OUT[$n.$a]:-}" ]; then
        printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$n" "$a" status skipped-after-timeout >>"$RAW"
        done_n=$((done_n + 1))
        printf '[%3d/%d] rep %d/%d  %-9s %-10s  skipped (timed out in an earlier repetition)\n' \
            "$done_n" "$total" "$rep" "$reps" "$n" "$a" >&2
        return
    fi
    cmd=$(subst "$([ $quick = 1 ] && echo "$quick_c" || echo "$full_c")")
    stdin_f=$(subst "$stdin_f")
    local -a argv
    read -r -a argv <<<"$cmd"
    local out=$TMPD/runs/$n.$a.$rep.out err=$TMPD/runs/$n.$a.$rep.err
    local lib=${LIB[$a]}
    local -a inopt=()
    [ -n "$stdin_f" ] && inopt=(-i "$stdin_f")
    local m
    m=$("$BIN/measure" -p "$lib" -o "$out" -e "$err" "${inopt[@]}" -t "$timeout" -- "${argv[@]}")
    local figures
    figures=$(grep -E '^[A-Za-z_][A-Za-z0-9_.]*=' "$out" 2>/dev/null | tail -1)
    local kv
    for kv in $m $figures; do
        [[ "$kv" == *=* ]] || continue
        printf '%s\t%s\t%s\t%s\t%s\n' "$rep" "$n" "$a" "${kv%%=*}" "${kv#*=}" >>"$RAW"
    done
    local shown=$lib
    [ "$a" = tidemalloc ] && shown=$TIDE_SO
    printf '%s\t%s\t%s\t%s\n' "$n" "$a" "$rep" \
        "$([ -n "$lib" ] && echo "LD_PRELOAD=$shown ")$cmd$([ -n "$stdin_f" ] && echo " < $stdin_f")" >>"$CMDS"
    done_n=$((done_n + 1))
    local st=${m##*status=} wall=${m#wall_s=}
    wall=${wall%% *}
    printf '[%3d/%d] rep %d/%d  %-9s %-10s %7.2fs  %s\n' "$done_n" "$total" "$rep" "$reps" "$n" "$a" \
        "$wall" "$st" >&2
    [ "$st" = timeout ] && TIMED_OUT[$n.$a]=1
    if [ "$st" != ok ]; then
        sed 's/^/    | /' "$err" 2>/dev/null | tail -3 >&2
    fi
}

for ((rep = 1; rep <= reps; rep++)); do
    # rotate the allocator order each repetition, so none always runs first
    k=$(((rep - 1) % ${#sel_allocs[@]}))
    order=("${sel_allocs[@]:k}" "${sel_allocs[@]:0:k}")
    for entry in "${sel_wl[@]}"; do
        for a in "${order[@]}"; do
            run_one "$rep" "$entry" "$a"
        done
    done
done

if [ $run_cg = 1 ]; then
    pairs=${CALLGRIND_PAIRS[$qi]}
    for a in "${sel_allocs[@]}"; do
        say "callgrind: churn, $pairs pairs, $a"
        line=$("$BENCH/callgrind.sh" --pairs "$pairs" --bin "$BIN/churn" "${LIB[$a]:-glibc}" 2>"$TMPD/runs/callgrind.$a.err")
        for kv in $line; do
            printf '%s\t%s\t%s\t%s\t%s\n' 1 callgrind "$a" "${kv%%=*}" "${kv#*=}" >>"$RAW"
        done
        shown=${LIB[$a]:-glibc}
        [ "$a" = tidemalloc ] && shown=$TIDE_SO
        printf '%s\t%s\t%s\t%s\n' callgrind "$a" 1 "bench/callgrind.sh --pairs $pairs $shown" >>"$CMDS"
        say "    $line"
    done
fi

meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta duration_s "$(($(date +%s) - t_start))"

# ---- report --------------------------------------------------------------
cp "$RAW" "$RES/raw.tsv"
rm -f "$RES"/*.svg # charts of workloads not in this run would be stale
charts_opt=()
if [ $do_charts = 0 ] || ! command -v gnuplot >/dev/null; then
    charts_opt=(--no-charts)
    [ $do_charts = 1 ] && note "charts skipped: gnuplot not installed"
fi
/usr/bin/python3 "$BENCH/report.py" --raw "$RAW" --meta "$META" --cmds "$CMDS" --out "$RES" \
    --tmp "$TMPD" "${charts_opt[@]}" || exit 1
say "report: $RES/latest.md"
