/*
 * Workload 2: larson-style server.
 *
 *   larson THREADS OPS_PER_THREAD [WINDOW=2000] [XFER_PCT=10]
 *
 * Each thread keeps WINDOW live objects (random sizes 16..1024 B) and
 * replaces a random one per operation. XFER_PCT percent of the replaced
 * objects are not freed by their thread but handed to another, random thread
 * (a lock-free inbox per thread), which frees them the next time it drains
 * its inbox (every 64 operations): the producer/consumer mix of a server
 * whose requests are finished on another thread.
 *
 * Prints: threads= ops= secs= mops= xfer_pct=
 */
#include "common.h"
#include <pthread.h>
#include <stdatomic.h>

typedef struct node {
    struct node *next;
} node_t;

typedef struct {
    _Atomic(node_t *) inbox;
    char pad[64 - sizeof(void *)];
} inbox_t;

static int nthreads;
static uint64_t ops_per_thread;
static size_t window;
static unsigned xfer_pct;
static inbox_t *inboxes;
static pthread_barrier_t start_bar, end_bar;

static void inbox_push(inbox_t *b, node_t *n)
{
    node_t *head = atomic_load_explicit(&b->inbox, memory_order_relaxed);
    do
        n->next = head;
    while (!atomic_compare_exchange_weak_explicit(&b->inbox, &head, n, memory_order_release,
                                                  memory_order_relaxed));
}

static void inbox_drain(inbox_t *b)
{
    node_t *n = atomic_exchange_explicit(&b->inbox, NULL, memory_order_acquire);
    while (n) {
        node_t *next = n->next;
        free(n);
        n = next;
    }
}

static inline size_t pick_size(rng_t *r) { return 16 + (size_t)rng_below(r, 1024 - 16 + 1); }

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    rng_t r;
    rng_seed(&r, 1000 + (uint64_t)id);
    char **slot = malloc(window * sizeof *slot);
    for (size_t i = 0; i < window; i++) {
        slot[i] = malloc(pick_size(&r));
        slot[i][8] = 1;
    }
    pthread_barrier_wait(&start_bar);
    for (uint64_t k = 0; k < ops_per_thread; k++) {
        uint64_t x = rng_next(&r);
        size_t i = (size_t)(((unsigned __int128)x * window) >> 64);
        char *old = slot[i];
        if (nthreads > 1 && (x >> 8) % 100 < xfer_pct) {
            int to = (int)((x >> 20) % (uint64_t)(nthreads - 1));
            if (to >= id)
                to++;
            inbox_push(&inboxes[to], (node_t *)old);
        } else {
            free(old);
        }
        size_t sz = pick_size(&r);
        char *p = malloc(sz);
        p[8] = (char)k;
        p[sz - 1] = 0;
        slot[i] = p;
        if ((k & 63) == 0)
            inbox_drain(&inboxes[id]);
    }
    pthread_barrier_wait(&end_bar);
    inbox_drain(&inboxes[id]);
    for (size_t i = 0; i < window; i++)
        free(slot[i]);
    free(slot);
    return NULL;
}

int main(int argc, char **argv)
{
    nthreads = (int)arg_num(argc, argv, 1, 4);
    ops_per_thread = (uint64_t)arg_num(argc, argv, 2, 5e6);
    window = (size_t)arg_num(argc, argv, 3, 2000);
    xfer_pct = (unsigned)arg_num(argc, argv, 4, 10);
    if (nthreads < 1)
        nthreads = 1;
    inboxes = aligned_alloc(64, sizeof(inbox_t) * (size_t)nthreads);
    memset(inboxes, 0, sizeof(inbox_t) * (size_t)nthreads);
    pthread_barrier_init(&start_bar, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&end_bar, NULL, (unsigned)nthreads + 1);
    pthread_t *th = malloc(sizeof *th * (size_t)nthreads);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
    pthread_barrier_wait(&start_bar);
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&end_bar);
    double secs = secs_since(t0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    uint64_t ops = ops_per_thread * (uint64_t)nthreads;
    printf("threads=%d ops=%llu secs=%.4f mops=%.2f xfer_pct=%u\n", nthreads,
           (unsigned long long)ops, secs, (double)ops / secs / 1e6, xfer_pct);
    free(th);
    free(inboxes);
    return 0;
}
