/*
 * spinner.h — for the tools that time a system call while another thread
 * of the process runs on the other CPU (as in a real program, so that TLB
 * flushes have to reach it): a thread that writes its own 1 MiB over and
 * over, and a monotonic clock in seconds.
 */
#ifndef BENCH_SPINNER_H
#define BENCH_SPINNER_H

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

static volatile int spinner_stop;

static void *spinner_main(void *arg)
{
    char *q = arg;
    while (!spinner_stop)
        for (int i = 0; i < (1 << 20); i += 64)
            q[i]++;
    return NULL;
}

/* Starts the spinner; returns 0, or -1 if it could not. */
static inline int spinner_start(pthread_t *t)
{
    char *own = malloc((size_t)1 << 20);
    spinner_stop = 0;
    return own != NULL && pthread_create(t, NULL, spinner_main, own) == 0 ? 0 : -1;
}

static inline void spinner_end(pthread_t t)
{
    spinner_stop = 1;
    pthread_join(t, NULL);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
