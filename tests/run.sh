#!/bin/bash
# tests/run.sh — build and run the tidemalloc test suite.
#
# Usage: tests/run.sh [--lib PATH | --lib glibc] [--quick | --long] [--seed N] [-v]
#                     [PATTERN...]
#
#   --lib PATH   the shared library under test (default: $TIDE_LIB, else
#                $BUILD/libtidemalloc.so).  Every test program runs with it
#                LD_PRELOADed; the programs marked STATIC below are also linked
#                with the .a beside it (PATH with .so replaced by .a).
#   --lib glibc  no preload: run the suite against glibc's malloc, to check
#                the tests themselves (tidemalloc-only tests are skipped).
#   --quick      skip the static-link runs and halve the stress loops
#                (TIDE_TEST_QUICK=1): for the second, sanitized run.
#   --long       longer stress runs (TIDE_TEST_LONG=1): ~10-20x iterations.
#   --seed N     base seed of the randomized tests (TIDE_TEST_SEED); else one
#                is chosen and printed.
#   -v           print every test's result line, not only failures.
#   PATTERN      run only programs whose name (e.g. api/malloc, real/git)
#                matches one of these extended regexes.
#
# Environment: BUILD (default build) — test binaries go to $BUILD/tests;
# CC (default cc); TEST_CFLAGS (extra flags); TIDE_STATIC_LIBS (extra libraries
# for the static link).
#
# Output: one line per failing test ("FAIL group/prog/test: reason"), one per
# program ("  group/prog: N passed ..."), then "N passed, N failed, N skipped".
# Full output of each program: $BUILD/tests/logs-<lib>/<group>-<prog>.log.
# Exit status: 0 if nothing failed.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

LIB=${TIDE_LIB:-}
LONG=${TIDE_TEST_LONG:-0}
QUICK=${TIDE_TEST_QUICK:-0}
SEED=${TIDE_TEST_SEED:-}
VERBOSE=0
PATTERNS=()
while [ $# -gt 0 ]; do
    case $1 in
    --lib) LIB=${2:?--lib needs a path}; shift ;;
    --lib=*) LIB=${1#--lib=} ;;
    --long) LONG=1 ;;
    --quick) QUICK=1 ;;
    --seed) SEED=${2:?--seed needs a number}; shift ;;
    --seed=*) SEED=${1#--seed=} ;;
    -v | --verbose) VERBOSE=1 ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//; /^set -u/d'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) PATTERNS+=("$1") ;;
    esac
    shift
done

BUILD=${BUILD:-build}
CC=${CC:-cc}
CFLAGS="-O1 -g -Wall -Wextra -Werror -pthread ${TEST_CFLAGS:-}"
: "${LIB:=$BUILD/libtidemalloc.so}"
: "${SEED:=$(( $(date +%s) % 1000000007 ))}"
[ "$LONG" = 0 ] && LONG=""
[ "$QUICK" = 0 ] && QUICK=""
[ -n "$LONG" ] && QUICK=""

# Programs also linked statically with libtidemalloc.a.
STATIC_PROGS="api/malloc api/align api/realloc api/extras stress/xthread stress/early"
# Seconds allowed to one program (its tests also have their own alarms).
PROG_TIMEOUT=${LONG:+3000}
PROG_TIMEOUT=${PROG_TIMEOUT:-300}

passed=0
failed=0
skipped=0

fail_line() { # the one line for a failure that no program reported itself
    echo "FAIL $1: $2"
    failed=$((failed + 1))
}

# ---- what is under test ----------------------------------------------
STATIC=""   # the .a the STATIC_PROGS are linked with (none in quick mode)
STATIC_A="" # the .a beside the .so, for the symbol test
if [ "$LIB" = glibc ] || [ "$LIB" = none ]; then
    MODE=glibc
    PRELOAD=""
    EXPECT=glibc
    TAG=glibc
    LIB=""
else
    MODE=tide
    if [ ! -f "$LIB" ]; then
        echo "run.sh: library $LIB not found (build it with make, or use --lib glibc)"
        fail_line setup "library $LIB not found"
        echo "0 passed, 1 failed"
        exit 1
    fi
    LIB=$(cd "$(dirname "$LIB")" && pwd)/$(basename "$LIB")
    PRELOAD=$LIB
    EXPECT=tidemalloc
    [ -f "${LIB%.so}.a" ] && STATIC_A=${LIB%.so}.a
    [ -z "$QUICK" ] && STATIC=$STATIC_A
    TAG=$(basename "$(dirname "$LIB")")
fi

OUT=$BUILD/tests
BIN=$OUT/bin
SBIN=$OUT/static-$TAG
LOGS=$OUT/logs-$TAG
mkdir -p "$BIN" "$LOGS" || exit 2
rm -f "$LOGS"/*.log
[ -n "$STATIC" ] && mkdir -p "$SBIN"

# The static library of a sanitized build needs the sanitizer runtime.
STATIC_LDFLAGS=""
if [ -n "$STATIC" ] && nm -u "$STATIC" 2>/dev/null | grep -q '__ubsan_'; then
    STATIC_LDFLAGS="-fsanitize=undefined"
fi
if [ -n "$STATIC" ] && nm -u "$STATIC" 2>/dev/null | grep -q '__asan_'; then
    STATIC_LDFLAGS="$STATIC_LDFLAGS -fsanitize=address"
fi

ulimit -c 0 2>/dev/null
export TIDE_TEST_SEED=$SEED
export TIDE_TEST_LONG=${LONG:-0}
export TIDE_TEST_QUICK=${QUICK:-0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

echo "tidemalloc tests: ${PRELOAD:-glibc malloc (no preload)}${STATIC:+, static $STATIC}"
echo "seed $SEED (repeat with: tests/run.sh --seed $SEED${LIB:+ --lib $LIB})${LONG:+, long mode}${QUICK:+, quick mode}"

selected() { # NAME
    [ ${#PATTERNS[@]} -eq 0 ] && return 0
    local p
    for p in "${PATTERNS[@]}"; do
        [[ $1 =~ $p ]] && return 0
    done
    return 1
}

# ---- building ----------------------------------------------------------
# newer_than_headers BIN DIR: BIN is newer than every header in DIR (the
# helpers a group shares, e.g. tests/release/release.h).
newer_than_headers() {
    local h
    for h in "$2"/*.h; do
        [ -e "$h" ] || continue
        [ "$1" -nt "$h" ] || return 1
    done
    return 0
}

# compile SRC BIN [extra args...]: builds BIN when missing or out of date;
# compiler output goes to the log.  Returns non-zero on failure.
compile() {
    local src=$1 bin=$2 log=$3
    shift 3
    if [ -x "$bin" ] && [ "$bin" -nt "$src" ] && [ "$bin" -nt tests/lib/th.h ] &&
        [ "$bin" -nt "$ROOT/tests/run.sh" ] && { [ $# -eq 0 ] || [ "$bin" -nt "$STATIC" ]; } &&
        newer_than_headers "$bin" "$(dirname "$src")"; then
        return 0
    fi
    # shellcheck disable=SC2086
    echo "+ $CC $CFLAGS -o $bin $src $*" >>"$log"
    $CC $CFLAGS -o "$bin" "$src" "$@" >>"$log" 2>&1
}

# ---- running -----------------------------------------------------------
th_status() { # a word for an exit status
    case $1 in
    134) echo "killed by SIGABRT" ;;
    139) echo "killed by SIGSEGV" ;;
    135) echo "killed by SIGBUS" ;;
    *) echo "exit status $1" ;;
    esac
}

# report NAME LOG STATUS [START]: counts the result lines of one program, prints its
# failures and a summary line.
report() {
    local name=$1 log=$2 st=$3 start=${4:-$SECONDS}
    local p f s
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^FAIL ' "$log")
    s=$(grep -c '^skip ' "$log")
    grep '^FAIL ' "$log" | cut -c1-400
    if [ "$VERBOSE" = 1 ]; then
        grep -E '^(ok|skip) ' "$log" | sed 's/^/  /'
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
    if [ "$st" -eq 124 ] || [ "$st" -eq 137 ]; then
        fail_line "$name" "timed out after ${PROG_TIMEOUT}s (log: $log)"
        f=$((f + 1))
    elif [ "$st" -ne 0 ] && [ "$f" -eq 0 ]; then
        fail_line "$name" "exited with status $st without reporting a failed test (log: $log)"
        f=$((f + 1))
    elif [ $((p + f + s)) -eq 0 ]; then
        fail_line "$name" "ran no test (log: $log)"
        f=$((f + 1))
    fi
    local line="  $name: $p passed"
    [ "$f" -gt 0 ] && line="$line, $f failed (log: $log)"
    [ "$s" -gt 0 ] && line="$line, $s skipped"
    echo "$line ($((SECONDS - start))s)"
}

# run_c NAME BIN PRELOAD: runs a C test program.
run_c() {
    local name=$1 bin=$2 preload=$3 log=$4 expect=${5:-$EXPECT} st start=$SECONDS
    env -u LD_PRELOAD TH_PROG_NAME="$name" TIDE_EXPECT="$expect" \
        ${preload:+LD_PRELOAD="$preload"} \
        timeout -k 10 "$PROG_TIMEOUT" "$bin" >>"$log" 2>&1 </dev/null
    st=$?
    report "$name" "$log" "$st" "$start"
}

# run_sh NAME SCRIPT: runs a shell test (tests/real, tests/abi).
run_sh() {
    local name=$1 script=$2 log=$3 tmp st start=$SECONDS
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/tide-test.XXXXXX")
    env -u LD_PRELOAD TH_PROG_NAME="$name" TIDE_PRELOAD="$PRELOAD" TIDE_LIB="$LIB" \
        TIDE_STATIC="$STATIC_A" TH_TMP="$tmp" \
        timeout -k 10 "$PROG_TIMEOUT" bash "$script" >>"$log" 2>&1 </dev/null
    st=$?
    report "$name" "$log" "$st" "$start"
    if grep -q '^FAIL ' "$log" || [ "$st" -ne 0 ]; then
        echo "# scratch files kept in $tmp" >>"$log"
    else
        rm -rf "$tmp"
    fi
}

# Layer unit tests (tests/unit/<layer>_test.c, helpers testhelper.h and
# fake_os.c): each (but os_test, linked with src/os.c alone) is linked with fake_os.c and an archive of the layers in
# src/ (all but os.c, api.c and the single-file tidemalloc.c), built
# debug-full (-DTIDE_DEBUG=2), with the sanitizer of the library under test.
# Run without preload; one test each, passed if it exits 0.
build_layers() { # DIR LOG: builds DIR/layers.a; non-zero on failure
    local dir=$1 log=$2 f objs=()
    mkdir -p "$dir"
    for f in src/*.c; do
        case $(basename "$f") in os.c | api.c | tidemalloc.c) continue ;; esac
        local o=$dir/$(basename "$f" .c).o
        echo "+ $CC $UNIT_CFLAGS -c $f -o $o" >>"$log"
        # shellcheck disable=SC2086
        $CC $UNIT_CFLAGS -c "$f" -o "$o" >>"$log" 2>&1 || return 1
        objs+=("$o")
    done
    rm -f "$dir/layers.a"
    ar rcs "$dir/layers.a" "${objs[@]}" >>"$log" 2>&1
}

UNIT_SAN=""
if [ -n "$LIB" ] && nm -u "$LIB" 2>/dev/null | grep -q '__ubsan_'; then
    UNIT_SAN="-fsanitize=undefined -fno-sanitize-recover=all"
fi
UNIT_CFLAGS="$CFLAGS -std=gnu11 -DTIDE_DEBUG=2 -Isrc -Iinclude $UNIT_SAN"
UNIT_DIR=$OUT/unit-$TAG
unit_tests=()
for src in tests/unit/*_test.c; do
    [ -f "$src" ] || continue
    selected "unit/$(basename "$src" .c)" && unit_tests+=("$src")
done
if [ ${#unit_tests[@]} -gt 0 ]; then
    if ! build_layers "$UNIT_DIR" "$LOGS/unit-layers.log"; then
        fail_line unit "src/ does not compile for the unit tests: $(grep -m1 'error' "$LOGS/unit-layers.log" | cut -c1-200)"
        unit_tests=()
    fi
fi
for src in "${unit_tests[@]}"; do
    prog=$(basename "$src" .c)
    name=unit/$prog
    log=$LOGS/unit-$prog.log
    # os_test is the os layer's own test: the real os.c, no fake.
    link=(tests/unit/fake_os.c "$UNIT_DIR/layers.a")
    [ "$prog" = os_test ] && link=(src/os.c)
    echo "+ $CC $UNIT_CFLAGS -o $UNIT_DIR/$prog $src ${link[*]}" >"$log"
    # shellcheck disable=SC2086
    if $CC $UNIT_CFLAGS -o "$UNIT_DIR/$prog" "$src" "${link[@]}" >>"$log" 2>&1; then
        start=$SECONDS
        env -u LD_PRELOAD timeout -k 10 "$PROG_TIMEOUT" "$UNIT_DIR/$prog" >>"$log" 2>&1 </dev/null
        st=$?
        if [ "$st" -eq 0 ]; then
            echo "ok $name" >>"$log"
        elif [ "$st" -eq 124 ]; then
            : # report() says it timed out
        else
            echo "FAIL $name: $(th_status "$st"): $(grep -m1 -E '^FAIL|runtime error|panic|assert' "$log" | cut -c1-200)" >>"$log"
        fi
        report "$name" "$log" "$st" "$start"
    else
        fail_line "$name" "does not compile: $(grep -m1 'error' "$log" | cut -c1-200)"
    fi
done

for src in tests/api/*.c tests/stress/*.c tests/release/*.c; do
    group=$(basename "$(dirname "$src")")
    prog=$(basename "$src" .c)
    name=$group/$prog
    selected "$name" || continue
    log=$LOGS/$group-$prog.log
    if compile "$src" "$BIN/$group-$prog" "$log"; then
        run_c "$name" "$BIN/$group-$prog" "$PRELOAD" "$log"
    else
        fail_line "$name" "does not compile: $(grep -m1 'error' "$log" | cut -c1-200)"
    fi
    if [ -n "$STATIC" ] && [[ " $STATIC_PROGS " == *" $name "* ]]; then
        slog=$LOGS/$group-$prog-static.log
        # shellcheck disable=SC2086
        if compile "$src" "$SBIN/$group-$prog" "$slog" -DTH_STATIC_TIDE \
            "$STATIC" $STATIC_LDFLAGS ${TIDE_STATIC_LIBS:-} -lpthread; then
            run_c "$name[static]" "$SBIN/$group-$prog" "" "$slog"
        else
            fail_line "$name[static]" "does not link with $STATIC: $(grep -m1 -E 'error|undefined' "$slog" | cut -c1-200)"
        fi
    fi
done

for script in tests/abi/*.sh tests/perf/*.sh tests/real/*.sh; do
    group=$(basename "$(dirname "$script")")
    prog=$(basename "$script" .sh)
    name=$group/$prog
    selected "$name" || continue
    run_sh "$name" "$script" "$LOGS/$group-$prog.log"
done

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
