/*
 * Workload 6: burst then idle (a VM backup job).
 *
 *   idle THREADS TOTAL_BYTES [IDLE_SCHEDULE=0,0.5,1,2,5]
 *
 * THREADS threads together allocate TOTAL_BYTES (default 1 GiB): by bytes
 * about half in 4 MiB buffers, 30% in 64 KiB buffers and 20% in small
 * objects (16..1024 B), interleaved and written. Then each thread frees half
 * of its own objects and half of its neighbour's (cross-thread frees); one
 * small object in 64 survives, scattered. Then nobody calls the allocator:
 * the workers block on a barrier and the main thread only reads
 * /proc/self/status at the idle times of the schedule (seconds after the
 * last free). An allocator that returns memory only when called keeps it.
 *
 * Prints: threads= total_mb= burst_secs= free_secs= live_after_mb= rss_before_mb=
 *         rss_peak_mb= rss_idle_<t>s_mb=... (one per schedule entry)
 */
#include "common.h"
#include <pthread.h>

#define SMALL_KEEP 64 /* one small object in this many survives */

typedef struct {
    char **p;
    uint32_t *size;
    size_t n;
    uint64_t survivors_bytes;
} tstate_t;

static int nthreads;
static uint64_t per_thread_bytes;
static tstate_t *ts;
static pthread_barrier_t bar;

static void free_part(tstate_t *t, int parity, uint64_t *kept)
{
    for (size_t i = (size_t)parity; i < t->n; i += 2) {
        if (t->size[i] <= 1024 && (i / 2) % SMALL_KEEP == 0) {
            *kept += t->size[i];
            continue;
        }
        free(t->p[i]);
    }
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    tstate_t *t = &ts[id];
    rng_t r;
    rng_seed(&r, 600 + (uint64_t)id);
    /* expected bytes per object drawn: 0.5*4M/4M... choose by byte weight:
       class chosen with probability proportional to share / size */
    const double share[3] = { 0.5, 0.3, 0.2 };
    const double csize[3] = { 4194304.0, 65536.0, 520.0 };
    double w[3], wsum = 0;
    for (int c = 0; c < 3; c++)
        wsum += (w[c] = share[c] / csize[c]);
    size_t cap = (size_t)((double)per_thread_bytes * wsum * 1.2) + 64;
    t->p = malloc(cap * sizeof *t->p);
    t->size = malloc(cap * sizeof *t->size);
    uint64_t done = 0;
    pthread_barrier_wait(&bar); /* 1: start burst */
    while (done < per_thread_bytes && t->n < cap) {
        double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0 * wsum;
        size_t sz;
        if (u < w[0])
            sz = 4u << 20;
        else if (u < w[0] + w[1])
            sz = 64u << 10;
        else
            sz = 16 + (size_t)rng_below(&r, 1024 - 16 + 1);
        char *p = malloc(sz);
        if (sz > 4096)
            touch_pages(p, sz);
        else
            memset(p, 7, sz);
        t->p[t->n] = p;
        t->size[t->n++] = (uint32_t)sz;
        done += sz;
    }
    pthread_barrier_wait(&bar); /* 2: burst done */
    pthread_barrier_wait(&bar); /* 3: start freeing */
    uint64_t kept = 0;
    free_part(t, 0, &kept);                          /* own even slots */
    free_part(&ts[(id + 1) % nthreads], 1, &kept); /* neighbour's odd slots */
    t->survivors_bytes = kept;
    pthread_barrier_wait(&bar); /* 4: frees done */
    pthread_barrier_wait(&bar); /* 5: idle over (no allocator calls until then) */
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = (int)arg_num(argc, argv, 1, 4);
    uint64_t total = (uint64_t)arg_num(argc, argv, 2, 1024.0 * 1024 * 1024);
    const char *sched = argc > 3 ? argv[3] : "0,0.5,1,2,5";
    if (nthreads < 1)
        nthreads = 1;
    per_thread_bytes = total / (uint64_t)nthreads;

    double at[16];
    int nat = 0;
    for (const char *s = sched; *s && nat < 16;) {
        char *end;
        at[nat++] = strtod(s, &end);
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s)
            break;
    }
    long idle_kb[16];

    ts = calloc((size_t)nthreads, sizeof *ts);
    pthread_barrier_init(&bar, NULL, (unsigned)nthreads + 1);
    pthread_t th[nthreads];
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    long before = rss_kb();
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&bar); /* 1 */
    pthread_barrier_wait(&bar); /* 2 */
    double burst = secs_since(t0);
    long peak = rss_kb();
    t0 = now_ns();
    pthread_barrier_wait(&bar); /* 3 */
    pthread_barrier_wait(&bar); /* 4 */
    uint64_t idle0 = now_ns();
    double free_secs = (double)(idle0 - t0) / 1e9;
    for (int k = 0; k < nat; k++) {
        uint64_t when = idle0 + (uint64_t)(at[k] * 1e9);
        uint64_t now = now_ns();
        if (when > now)
            sleep_ns(when - now);
        idle_kb[k] = rss_kb();
    }
    pthread_barrier_wait(&bar); /* 5 */
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);

    uint64_t kept = 0;
    for (int i = 0; i < nthreads; i++)
        kept += ts[i].survivors_bytes;
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "threads=%d total_mb=%.0f burst_secs=%.3f free_secs=%.3f live_after_mb=%.1f "
                     "rss_before_mb=%.1f rss_peak_mb=%.1f",
                     nthreads, (double)total / 1048576.0, burst, free_secs,
                     (double)kept / 1048576.0, before / 1024.0, peak / 1024.0);
    for (int k = 0; k < nat && n < (int)sizeof line - 64; k++)
        n += snprintf(line + n, sizeof line - (size_t)n, " rss_idle_%gs_mb=%.1f", at[k],
                      idle_kb[k] / 1024.0);
    puts(line);
    return 0;
}
