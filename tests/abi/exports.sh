#!/bin/bash
# Symbols: the shared library exports exactly the API (the malloc family,
# the glibc extensions, C23 sized frees, and tide_* extensions), nothing
# internal; every API function is there.  The static library defines no
# global symbol outside the API, tide_* and td_* (STYLE.md: a prefix keeps a
# static archive from clashing with a user's own names).
. "$(dirname "$0")/../lib/th.sh"

API="malloc free calloc realloc reallocarray aligned_alloc posix_memalign memalign
valloc pvalloc malloc_usable_size free_sized free_aligned_sized malloc_trim mallinfo
mallinfo2 mallopt malloc_stats malloc_info"

is_api() {
    case " $(echo $API) " in *" $1 "*) return 0 ;; esac
    return 1
}

if [ -z "$TIDE_LIB" ] || [ ! -f "$TIDE_LIB" ]; then
    th_skip shared_exports "no tidemalloc library (running against glibc)"
    th_skip static_globals "no tidemalloc library (running against glibc)"
    th_exit
fi

# --- shared library ---------------------------------------------------
if ! nm -D --defined-only "$TIDE_LIB" >"$TH_TMP/dyn.txt" 2>"$TH_TMP/dyn.err"; then
    th_fail shared_exports "nm -D failed: $(th_first_line "$TH_TMP/dyn.err")"
else
    extra=""
    missing=""
    while read -r _addr type name; do
        [ -n "$name" ] || continue
        # Version nodes of a version script show as absolute symbols.
        if [ "$type" = A ] && [[ $name =~ ^[A-Z0-9_.]+$ ]]; then
            continue
        fi
        name=${name%%@*}
        is_api "$name" || [[ $name == tide_* ]] || extra="$extra $name"
    done <"$TH_TMP/dyn.txt"
    for f in $API; do
        grep -qE "[[:space:]]T[[:space:]]+$f(@.*)?\$" "$TH_TMP/dyn.txt" || missing="$missing $f"
    done
    if [ -n "$extra" ]; then
        th_fail shared_exports "non-API symbols exported:$(echo $extra | cut -c1-160)"
    elif [ -n "$missing" ]; then
        th_fail shared_exports "API functions not exported as code (T):$missing"
    else
        th_ok shared_exports
    fi
fi

# --- static library ---------------------------------------------------
if [ -z "$TIDE_STATIC" ] || [ ! -f "$TIDE_STATIC" ]; then
    th_skip static_globals "no static library beside $TIDE_LIB"
elif ! nm -g --defined-only "$TIDE_STATIC" >"$TH_TMP/static.txt" 2>"$TH_TMP/static.err"; then
    th_fail static_globals "nm failed: $(th_first_line "$TH_TMP/static.err")"
else
    extra=""
    while read -r a b c; do
        # Lines are "ADDR TYPE NAME"; member headers ("x.o:") and blanks skip.
        [ -n "$c" ] || continue
        name=$c
        is_api "$name" || [[ $name == tide_* || $name == td_* ]] || extra="$extra $name"
    done <"$TH_TMP/static.txt"
    missing=""
    for f in $API; do
        grep -qE "[[:space:]][TW][[:space:]]+$f\$" "$TH_TMP/static.txt" || missing="$missing $f"
    done
    if [ -n "$extra" ]; then
        th_fail static_globals "global symbols outside the API, tide_* and td_*:$(echo $extra | cut -c1-160)"
    elif [ -n "$missing" ]; then
        th_fail static_globals "API functions not defined:$missing"
    else
        th_ok static_globals
    fi
fi
th_exit
