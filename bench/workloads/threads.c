/*
 * Workload 8a: thread churn.
 *
 *   threads NTHREADS [CONCURRENT=4] [ALLOCS=2000]
 *
 * Starts NTHREADS short-lived threads, CONCURRENT at a time. Each allocates
 * ALLOCS objects (16..4096 B), frees three quarters of them, frees the
 * quarter its predecessor left behind, and leaves its own last quarter for
 * its successor: a thread cache that dies with live objects, freed later by
 * a thread that did not allocate them.
 *
 * Prints: threads= concurrent= allocs= secs= threads_per_s=
 */
#include "common.h"
#include <pthread.h>

static size_t allocs;
static pthread_mutex_t hand_lock = PTHREAD_MUTEX_INITIALIZER;
static char **handoff; /* objects left by the last thread to finish */
static size_t handoff_n;

static void *worker(void *arg)
{
    rng_t r;
    rng_seed(&r, (uint64_t)(intptr_t)arg);
    char **p = malloc(allocs * sizeof *p);
    for (size_t i = 0; i < allocs; i++) {
        size_t sz = 16 + (size_t)rng_below(&r, 4096 - 16 + 1);
        p[i] = malloc(sz);
        p[i][0] = (char)i;
    }
    size_t keep = allocs / 4;
    for (size_t i = keep; i < allocs; i++)
        free(p[i]);
    pthread_mutex_lock(&hand_lock);
    char **prev = handoff;
    size_t prev_n = handoff_n;
    handoff = p;
    handoff_n = keep;
    pthread_mutex_unlock(&hand_lock);
    if (prev) {
        for (size_t i = 0; i < prev_n; i++)
            free(prev[i]);
        free(prev);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long nthreads = (long)arg_num(argc, argv, 1, 2000);
    int conc = (int)arg_num(argc, argv, 2, 4);
    allocs = (size_t)arg_num(argc, argv, 3, 2000);
    if (conc < 1)
        conc = 1;
    pthread_t th[conc];
    uint64_t t0 = now_ns();
    long started = 0;
    while (started < nthreads) {
        int n = 0;
        for (; n < conc && started < nthreads; n++, started++)
            pthread_create(&th[n], NULL, worker, (void *)(intptr_t)started);
        for (int i = 0; i < n; i++)
            pthread_join(th[i], NULL);
    }
    double secs = secs_since(t0);
    if (handoff) {
        for (size_t i = 0; i < handoff_n; i++)
            free(handoff[i]);
        free(handoff);
    }
    printf("threads=%ld concurrent=%d allocs=%zu secs=%.4f threads_per_s=%.0f\n", nthreads, conc,
           allocs, secs, (double)nthreads / secs);
    return 0;
}
