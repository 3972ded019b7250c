#!/bin/bash
# Python under the allocator: dicts, lists, strings, json, threads
# (workload.py), with PYTHONMALLOC=malloc so that every object, not just the
# large ones, comes from malloc.  Output must match a run without preload.
# Also checks that the preload really took: the library is in the maps.
. "$(dirname "$0")/../lib/th.sh"

PY=/usr/bin/python3 # not the PATH one: that may be a pyenv shim script
HERE=$(cd "$(dirname "$0")" && pwd)

if [ ! -x "$PY" ]; then
    th_skip workload "$PY not installed"
    th_exit
fi

export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
th_run "$TH_TMP/ref.out" "$TH_TMP/ref.err" "$PY" "$HERE/workload.py"
st=$?
if [ $st -ne 0 ]; then
    th_fail workload "reference run without preload failed: $(th_status_text $st): $(th_first_line "$TH_TMP/ref.err")"
else
    th_run_tide "$TH_TMP/tide.out" "$TH_TMP/tide.err" "$PY" "$HERE/workload.py"
    st=$?
    if th_check_run workload $st "$TH_TMP/tide.err" &&
        th_same workload "$TH_TMP/ref.out" "$TH_TMP/tide.out"; then
        th_ok workload
    fi
fi

# The library is mapped into the process (the preload was not ignored).
if [ -z "$TIDE_PRELOAD" ]; then
    th_skip loaded "no library preloaded (running against glibc)"
else
    th_run_tide "$TH_TMP/maps.out" "$TH_TMP/maps.err" "$PY" -c \
        'import sys; sys.stdout.write(open("/proc/self/maps").read())'
    st=$?
    lib=$(basename "$TIDE_PRELOAD")
    if ! th_check_run loaded $st "$TH_TMP/maps.err"; then
        :
    elif grep -qF "/$lib" "$TH_TMP/maps.out" && grep -q 'libtidemalloc' "$TH_TMP/maps.out"; then
        th_ok loaded
    else
        th_fail loaded "$lib not in /proc/self/maps of python3 run with LD_PRELOAD=$TIDE_PRELOAD"
    fi
fi
th_exit
