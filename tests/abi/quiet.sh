#!/bin/bash
# A program that loads tidemalloc prints nothing of its own on stderr: the
# loader has nothing to say about the library (a review found glibc's
# "Relink ... for IFUNC symbol `free'" line on every program while free
# was an ifunc), and the allocator writes nothing on a clean run.
#   preload      /bin/true, and ls with LD_BIND_NOW=1 (every library bound
#                at start), under LD_PRELOAD
#   linked       a program linked with -L<dir> -ltidemalloc (the linker
#                takes the .so, as the README and pkg-config tell users to)
#                and run with LD_LIBRARY_PATH: nothing on stderr, and it is
#                tidemalloc's malloc that runs
. "$(dirname "$0")/../lib/th.sh"

if [ -z "$TIDE_LIB" ] || [ ! -f "$TIDE_LIB" ]; then
    th_skip preload "no tidemalloc library (running against glibc)"
    th_skip linked "no tidemalloc library (running against glibc)"
    th_exit
fi

bad=""
for cmd in "/bin/true" "env LD_BIND_NOW=1 ls /"; do
    # shellcheck disable=SC2086
    env LD_PRELOAD="$TIDE_LIB" timeout -k 5 "$TH_TIMEOUT" $cmd >"$TH_TMP/out" 2>"$TH_TMP/err" </dev/null
    st=$?
    if [ $st -ne 0 ] || [ -s "$TH_TMP/err" ]; then
        bad="$bad [$cmd: status $st, stderr: $(head -c 200 "$TH_TMP/err" | tr '\n' '|')]"
    fi
done
if [ -n "$bad" ]; then
    th_fail preload "not quiet:$bad"
else
    th_ok preload
fi

dir=$(dirname "$TIDE_LIB")
cat >"$TH_TMP/app.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <tidemalloc.h>
int main(void)
{
    void *p = malloc(100);
    free(p);
    printf("%s\n", tide_version());
    return 0;
}
C
if ! cc -O1 -I"$(dirname "$0")/../../include" -o "$TH_TMP/app" "$TH_TMP/app.c" \
        -L"$dir" -ltidemalloc -pthread 2>"$TH_TMP/cc.err"; then
    th_fail linked "does not link with -L$dir -ltidemalloc: $(th_first_line "$TH_TMP/cc.err")"
else
    env -u LD_PRELOAD LD_LIBRARY_PATH="$dir" timeout -k 5 "$TH_TIMEOUT" "$TH_TMP/app" \
        >"$TH_TMP/out" 2>"$TH_TMP/err" </dev/null
    st=$?
    if [ $st -ne 0 ] || [ -s "$TH_TMP/err" ] || ! [ -s "$TH_TMP/out" ]; then
        th_fail linked "status $st, stdout '$(head -c 100 "$TH_TMP/out")', stderr: $(head -c 200 "$TH_TMP/err" | tr '\n' '|')"
    else
        th_ok linked
    fi
fi
th_exit
