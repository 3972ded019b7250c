# th.sh — helpers for the shell tests (tests/real, tests/abi); sourced.
#
# A shell test prints the same lines as the C harness (tests/lib/th.h):
#   ok <prog>/<test>  |  FAIL <prog>/<test>: <reason>  |  skip <prog>/<test>: <reason>
# and exits non-zero if any test failed.
#
# Environment from tests/run.sh:
#   TH_PROG_NAME   group/name of this script (e.g. real/python)
#   TIDE_PRELOAD   library to LD_PRELOAD into the programs under test; empty
#                  when the suite runs against glibc
#   TIDE_LIB       the tidemalloc shared library (exports test)
#   TIDE_STATIC    the tidemalloc static library, may be empty
#   TH_TMP         a scratch directory of this script's own
#   TH_TIMEOUT     seconds allowed to each program run (default 120)

TH_FAILED=0
: "${TH_PROG_NAME:=$(basename "$0" .sh)}"
: "${TH_TMP:=$(mktemp -d)}"
: "${TH_TIMEOUT:=120}"
: "${TIDE_PRELOAD:=}"

th_ok() { echo "ok $TH_PROG_NAME/$1"; }
th_skip() { echo "skip $TH_PROG_NAME/$1: $2"; }
th_fail() {
    echo "FAIL $TH_PROG_NAME/$1: $2"
    TH_FAILED=1
}

# th_run OUT ERR CMD...: runs CMD without preload; stdout to OUT, stderr to
# ERR; returns its exit status (124 on timeout).
th_run() {
    local out=$1 err=$2
    shift 2
    env -u LD_PRELOAD timeout -k 5 "$TH_TIMEOUT" "$@" >"$out" 2>"$err" </dev/null
}

# th_run_tide OUT ERR CMD...: the same with the allocator under test preloaded
# into CMD and everything it starts.
th_run_tide() {
    local out=$1 err=$2
    shift 2
    if [ -n "$TIDE_PRELOAD" ]; then
        env LD_PRELOAD="$TIDE_PRELOAD" timeout -k 5 "$TH_TIMEOUT" "$@" >"$out" 2>"$err" </dev/null
    else
        th_run "$out" "$err" "$@"
    fi
}

# th_status_text STATUS: a word for an exit status.
th_status_text() {
    case $1 in
    124) echo "timed out after ${TH_TIMEOUT}s" ;;
    134) echo "killed by SIGABRT" ;;
    139) echo "killed by SIGSEGV" ;;
    135) echo "killed by SIGBUS" ;;
    137) echo "killed by SIGKILL" ;;
    *) echo "exit status $1" ;;
    esac
}

# th_first_line FILE: the first non-empty line of FILE, for a failure reason.
th_first_line() {
    grep -m1 -v '^[[:space:]]*$' "$1" 2>/dev/null | cut -c1-200
}

# th_stderr_complaint FILE: prints the first allocator or sanitizer report
# in FILE and succeeds if there is one.
th_stderr_complaint() {
    grep -m1 -E 'tidemalloc:|runtime error:|AddressSanitizer|double free|invalid pointer|corrupt' "$1" 2>/dev/null |
        cut -c1-200
}

# th_check_run NAME STATUS ERR: fails NAME unless STATUS is 0 and ERR holds
# no allocator complaint; returns non-zero if it failed.
th_check_run() {
    local name=$1 st=$2 err=$3 c
    if [ "$st" -ne 0 ]; then
        th_fail "$name" "$(th_status_text "$st") under preload: $(th_first_line "$err")"
        return 1
    fi
    if c=$(th_stderr_complaint "$err") && [ -n "$c" ]; then
        th_fail "$name" "stderr under preload: $c"
        return 1
    fi
    return 0
}

# th_same NAME REF TIDE: fails NAME unless files REF and TIDE are equal.
th_same() {
    local name=$1 ref=$2 tide=$3
    if ! cmp -s "$ref" "$tide"; then
        local d
        d=$(diff "$ref" "$tide" | grep -m1 '^[<>]' | cut -c1-160)
        th_fail "$name" "output differs from the run without preload: $d"
        return 1
    fi
    return 0
}

th_exit() {
    exit "$TH_FAILED"
}
