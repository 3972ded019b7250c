#!/bin/bash
# gcc under the allocator: the driver, cc1, as and ld all run with the
# library preloaded, compiling a small three-file C program.  The object
# files must be byte-identical to those compiled without preload, and the
# program must print the known result.
. "$(dirname "$0")/../lib/th.sh"

if ! command -v gcc >/dev/null; then
    th_skip compile "gcc not installed"
    th_exit
fi

mkdir -p "$TH_TMP/src"
cat >"$TH_TMP/src/words.h" <<'C'
#include <stddef.h>
char **split_words(const char *text, size_t *n);
void sort_words(char **w, size_t n);
unsigned long checksum(char **w, size_t n);
C
cat >"$TH_TMP/src/words.c" <<'C'
#include "words.h"
#include <stdlib.h>
#include <string.h>
char **split_words(const char *text, size_t *n)
{
    size_t cap = 4, len = 0;
    char **w = malloc(cap * sizeof *w);
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *s = p;
        while (*p && *p != ' ')
            p++;
        if (p > s) {
            if (len == cap)
                w = realloc(w, (cap *= 2) * sizeof *w);
            w[len++] = strndup(s, (size_t)(p - s));
        }
    }
    *n = len;
    return w;
}
static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}
void sort_words(char **w, size_t n) { qsort(w, n, sizeof *w, cmp); }
unsigned long checksum(char **w, size_t n)
{
    unsigned long h = 5381;
    for (size_t i = 0; i < n; i++)
        for (const char *c = w[i]; *c; c++)
            h = h * 33 + (unsigned char)*c;
    return h;
}
C
cat >"$TH_TMP/src/main.c" <<'C'
#include "words.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void)
{
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 20000; i++) {
        char buf[32];
        int k = snprintf(buf, sizeof buf, "w%d ", (i * 7919) % 5003);
        if (len + (size_t)k + 1 > cap)
            text = realloc(text, cap *= 2);
        memcpy(text + len, buf, (size_t)k + 1);
        len += (size_t)k;
    }
    size_t n;
    char **w = split_words(text, &n);
    sort_words(w, n);
    printf("%zu words, first %s, last %s, checksum %lu\n", n, w[0], w[n - 1],
           checksum(w, n));
    for (size_t i = 0; i < n; i++)
        free(w[i]);
    free(w);
    free(text);
    return 0;
}
C

# Each build in its own copy of the sources; objects carry no paths (no -g).
build() { # NAME RUNNER
    cp -r "$TH_TMP/src" "$TH_TMP/$1"
    (cd "$TH_TMP/$1" &&
        "$2" "$TH_TMP/$1.cc.out" "$TH_TMP/$1.cc.err" gcc -O2 -Wall -c main.c words.c &&
        "$2" "$TH_TMP/$1.ld.out" "$TH_TMP/$1.ld.err" gcc -O2 -o prog main.o words.o)
}

build ref th_run
st=$?
if [ $st -ne 0 ]; then
    th_fail compile "reference build without preload failed: $(th_status_text $st): $(th_first_line "$TH_TMP/ref.cc.err")"
    th_exit
fi
build tide th_run_tide
st=$?
cat "$TH_TMP/tide.cc.err" "$TH_TMP/tide.ld.err" >"$TH_TMP/tide.err" 2>/dev/null
if th_check_run compile $st "$TH_TMP/tide.err"; then
    if ! cmp -s "$TH_TMP/ref/main.o" "$TH_TMP/tide/main.o" ||
        ! cmp -s "$TH_TMP/ref/words.o" "$TH_TMP/tide/words.o"; then
        th_fail compile "object files differ from those compiled without preload"
    else
        th_ok compile
    fi
fi

# The program gcc built under preload, run under preload.
want='20000 words, first w0, last w999, checksum 7125233450836750548'
if [ -x "$TH_TMP/tide/prog" ]; then
    th_run "$TH_TMP/ref.run" "$TH_TMP/ref.run.err" "$TH_TMP/ref/prog"
    th_run_tide "$TH_TMP/tide.run" "$TH_TMP/tide.run.err" "$TH_TMP/tide/prog"
    st=$?
    if th_check_run run $st "$TH_TMP/tide.run.err" &&
        th_same run "$TH_TMP/ref.run" "$TH_TMP/tide.run"; then
        if grep -q "^$want" "$TH_TMP/tide.run"; then
            th_ok run
        else
            th_fail run "unexpected output: $(th_first_line "$TH_TMP/tide.run")"
        fi
    fi
else
    th_fail run "no program was built under preload"
fi
th_exit
