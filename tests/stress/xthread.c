/* Cross-thread frees: producers allocate, consumers verify and free.
 *
 * Producer threads malloc blocks of random sizes (8 B - 64 KiB, log-uniform,
 * and about 1% large: 64 KiB - 4 MiB), fill them with a per-block pattern and
 * pass them through a queue to consumer threads, which check the pattern and
 * free them, so nearly every free is remote.  Consumers also allocate and
 * free locally, mixing local and remote frees on the same slabs.  A second
 * test passes blocks around a ring of threads, so each is freed by a thread
 * two hops away from its allocator, while that allocator keeps allocating.
 * A third runs short-lived producers one after another, each adopting the
 * heap the previous one left in the pool, while three consumers free what
 * they made, some of it after the producer exited: remote frees racing the
 * thread exit that arms a pooled heap's slabs, and the adoption after it
 * (a review widened the window of such a race with a delay loop: the
 * slab was given back while its notifying free was still on its way).
 * A fourth has threads realloc, allocate and free blocks of 4-8 MiB (own
 * mappings) at once, each checking its live blocks: a realloc that moved
 * a block cleared the old address's pagemap entry after mremap had freed
 * that range, and so the entry of another thread's block just mapped there
 * (found by a review's stress program: "invalid pointer" on a live block;
 * this test catches that code in about 1 run of 5, by chance of timing).
 */
#include "../lib/th.h"

#include <malloc.h>
#include <pthread.h>
#include <sched.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

typedef struct {
    void *p;
    size_t n;
    uint64_t tag;
} item_t;

/* Bounded MPMC queue under one mutex: the allocator is under test, not the
   queue. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    item_t *buf;
    size_t cap, head, len;
    int producers_left;
} queue_t;

static void q_init(queue_t *q, size_t cap, int producers)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->buf = calloc(cap, sizeof *q->buf);
    CHECK(q->buf != NULL);
    q->cap = cap;
    q->head = q->len = 0;
    q->producers_left = producers;
}

static void q_destroy(queue_t *q)
{
    free(q->buf);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
}

static void q_push(queue_t *q, item_t it)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap)
        pthread_cond_wait(&q->not_full, &q->mu);
    q->buf[(q->head + q->len) % q->cap] = it;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

/* false when all producers are done and the queue is empty. */
static bool q_pop(queue_t *q, item_t *out)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && q->producers_left > 0)
        pthread_cond_wait(&q->not_empty, &q->mu);
    if (q->len == 0) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    *out = q->buf[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->mu);
    return true;
}

static void q_producer_done(queue_t *q)
{
    pthread_mutex_lock(&q->mu);
    q->producers_left--;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
}

static size_t random_size(th_rng_t *r)
{
    if (th_range(r, 0, 99) == 0)
        return th_logsize(r, 64 * KIB, 4 * MIB);
    return th_logsize(r, 8, 64 * KIB);
}

/* The whole block is patterned (th_fill: memset-fast, position-dependent). */
static void fill(item_t *it)
{
    th_fill(it->p, it->n, it->tag);
}

static void verify(const item_t *it)
{
    CHECK_PATTERN(it->p, it->n, it->tag);
    CHECKF(malloc_usable_size(it->p) >= it->n, "usable size of %p shrank below %zu",
           it->p, it->n);
}

typedef struct {
    queue_t *q;
    int id;
    size_t count;
    uint64_t seed;
} worker_t;

static void *producer(void *arg)
{
    worker_t *w = arg;
    th_rng_t r = {w->seed};
    for (size_t i = 0; i < w->count; i++) {
        item_t it;
        it.n = random_size(&r);
        it.tag = ((uint64_t)w->id << 40) | i;
        int how = (int)th_range(&r, 0, 9);
        if (how == 0)
            it.p = calloc(1, it.n);
        else if (how == 1)
            it.p = aligned_alloc(64, (it.n + 63) & ~(size_t)63);
        else
            it.p = malloc(it.n);
        CHECKF(it.p != NULL, "producer %d: allocation of %zu failed", w->id, it.n);
        if (how == 0)
            CHECKF(th_all_zero(it.p, it.n), "calloc(%zu) not zeroed", it.n);
        fill(&it);
        q_push(w->q, it);
    }
    q_producer_done(w->q);
    return NULL;
}

static void *consumer(void *arg)
{
    worker_t *w = arg;
    th_rng_t r = {w->seed};
    void *local[16] = {0};
    item_t it;
    while (q_pop(w->q, &it)) {
        verify(&it);
        free(it.p);
        /* Local traffic on the same size classes. */
        int k = (int)th_range(&r, 0, 15);
        free(local[k]);
        size_t n = random_size(&r);
        local[k] = malloc(n);
        CHECK(local[k] != NULL);
        memset(local[k], k, n < 256 ? n : 256);
        w->count++;
    }
    for (int k = 0; k < 16; k++)
        free(local[k]);
    return NULL;
}

static void run_pc(int nprod, int ncons, size_t per_producer, uint64_t salt)
{
    queue_t q;
    q_init(&q, 1024, nprod);
    pthread_t tp[8], tc[8];
    worker_t wp[8], wc[8];
    for (int i = 0; i < ncons; i++) {
        wc[i] = (worker_t){&q, 100 + i, 0, th_seed(salt + 100 + (uint64_t)i)};
        CHECK(pthread_create(&tc[i], NULL, consumer, &wc[i]) == 0);
    }
    for (int i = 0; i < nprod; i++) {
        wp[i] = (worker_t){&q, i, per_producer, th_seed(salt + (uint64_t)i)};
        CHECK(pthread_create(&tp[i], NULL, producer, &wp[i]) == 0);
    }
    for (int i = 0; i < nprod; i++)
        CHECK(pthread_join(tp[i], NULL) == 0);
    size_t consumed = 0;
    for (int i = 0; i < ncons; i++) {
        CHECK(pthread_join(tc[i], NULL) == 0);
        consumed += wc[i].count;
    }
    CHECK_EQ(consumed, (size_t)nprod * per_producer);
    q_destroy(&q);
}

static void t_producer_consumer(void)
{
    run_pc(2, 2, th_scale(60000, 30), 1);
}

static void t_many_producers_one_consumer(void)
{
    run_pc(6, 1, th_scale(12000, 30), 2);
}

/* Ring: thread i allocates, thread i+1 verifies and forwards the block to
   thread i+2, which frees it.  Queues never block (capacity >= all items);
   each thread keeps at most RING_INFLIGHT of its blocks in flight. */
enum { RING = 4, RING_INFLIGHT = 512 };
static queue_t ring_q[RING];    /* blocks to verify and forward */
static queue_t ring_free[RING]; /* blocks to free */
static size_t ring_inflight[RING];

typedef struct {
    int id;
    size_t count;
    uint64_t seed;
} ring_arg_t;

/* Non-blocking pop; *closed tells an empty queue will stay empty. */
static bool q_try_pop(queue_t *q, item_t *out, bool *closed)
{
    pthread_mutex_lock(&q->mu);
    bool got = q->len > 0;
    if (got) {
        *out = q->buf[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    *closed = !got && q->producers_left == 0;
    pthread_mutex_unlock(&q->mu);
    return got;
}

static void *ring_thread(void *arg)
{
    ring_arg_t *a = arg;
    th_rng_t r = {a->seed};
    int next = (a->id + 1) % RING;
    size_t produced = 0;
    bool prod_done = false, fwd_done = false, free_done = false;
    while (!(prod_done && fwd_done && free_done)) {
        bool progress = false, closed;
        item_t it;
        for (int k = 0; k < 8 && produced < a->count &&
                        __atomic_load_n(&ring_inflight[a->id], __ATOMIC_ACQUIRE) <
                            RING_INFLIGHT;
             k++, produced++) {
            it.n = random_size(&r);
            it.tag = ((uint64_t)a->id << 40) | produced;
            it.p = malloc(it.n);
            CHECK(it.p != NULL);
            fill(&it);
            __atomic_add_fetch(&ring_inflight[a->id], 1, __ATOMIC_RELAXED);
            q_push(&ring_q[next], it);
            progress = true;
        }
        if (produced == a->count && !prod_done) {
            prod_done = true;
            q_producer_done(&ring_q[next]);
        }
        while (q_try_pop(&ring_q[a->id], &it, &closed)) {
            verify(&it);
            q_push(&ring_free[next], it);
            progress = true;
        }
        if (closed && !fwd_done) {
            fwd_done = true;
            q_producer_done(&ring_free[next]);
        }
        while (q_try_pop(&ring_free[a->id], &it, &closed)) {
            verify(&it);
            int owner = (int)(it.tag >> 40);
            free(it.p);
            __atomic_sub_fetch(&ring_inflight[owner], 1, __ATOMIC_RELEASE);
            progress = true;
        }
        if (closed)
            free_done = true;
        if (!progress)
            sched_yield();
    }
    return NULL;
}

static void t_ring(void)
{
    pthread_t t[RING];
    ring_arg_t a[RING];
    size_t count = th_scale(20000, 30);
    for (int i = 0; i < RING; i++) {
        q_init(&ring_q[i], count + 1, 1);
        q_init(&ring_free[i], count + 1, 1);
    }
    for (int i = 0; i < RING; i++) {
        a[i] = (ring_arg_t){i, count, th_seed(300 + (uint64_t)i)};
        CHECK(pthread_create(&t[i], NULL, ring_thread, &a[i]) == 0);
    }
    for (int i = 0; i < RING; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < RING; i++) {
        CHECK_EQ(ring_q[i].len, 0);
        CHECK_EQ(ring_free[i].len, 0);
        CHECK_EQ(ring_inflight[i], 0);
        q_destroy(&ring_q[i]);
        q_destroy(&ring_free[i]);
    }
}

/* ---- short-lived producers -------------------------------------------- */

static queue_t churn_q;

static void *churn_producer(void *arg)
{
    worker_t *w = arg;
    th_rng_t r = {w->seed};
    enum { KEEP = 64 };
    item_t keep[KEEP];
    size_t nkeep = 0;
    for (size_t i = 0; i < w->count; i++) {
        item_t it = { .n = 16 + 16 * (size_t)th_range(&r, 0, 5), .tag = w->seed * 1000003 + i };
        it.p = malloc(it.n);
        CHECK(it.p != NULL);
        fill(&it);
        if (i % 50 == 0 && nkeep < KEEP)
            keep[nkeep++] = it;   /* freed by others after this thread exits */
        else
            q_push(&churn_q, it);
    }
    /* The queue keeps them until after the exit below, mostly. */
    for (size_t i = 0; i < nkeep; i++)
        q_push(&churn_q, keep[i]);
    return NULL;
}

static void t_short_lived_producers(void)
{
    enum { NCONS = 3 };
    size_t rounds = th_scale(400, 10);
    q_init(&churn_q, 4096, 1);
    pthread_t tc[NCONS];
    worker_t wc[NCONS];
    for (int i = 0; i < NCONS; i++) {
        wc[i] = (worker_t){ .q = &churn_q, .id = i, .seed = th_seed(400 + (uint64_t)i) };
        CHECK(pthread_create(&tc[i], NULL, consumer, &wc[i]) == 0);
    }
    for (size_t k = 0; k < rounds; k++) {
        worker_t w = { .q = &churn_q, .count = 3000, .seed = th_seed(500 + k) };
        pthread_t t;
        CHECK(pthread_create(&t, NULL, churn_producer, &w) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    q_producer_done(&churn_q);
    size_t consumed = 0;
    for (int i = 0; i < NCONS; i++) {
        CHECK(pthread_join(tc[i], NULL) == 0);
        consumed += wc[i].count;
    }
    CHECK_EQ(consumed, rounds * 3000);
    q_destroy(&churn_q);
}

enum { HUGE_SLOTS = 6 };
static volatile int huge_stop;

static void *huge_worker(void *arg)
{
    th_rng_t r = { *(uint64_t *)arg };
    unsigned char *p[HUGE_SLOTS] = { 0 };
    size_t n[HUGE_SLOTS];
    unsigned char tag[HUGE_SLOTS];
    long ops = 0;
    while (!huge_stop || ops < 200) {
        ops++;
        int k = (int)(th_rand(&r) % HUGE_SLOTS);
        if (p[k] == NULL) {
            n[k] = th_range(&r, 4 * MIB, 8 * MIB);
            tag[k] = (unsigned char)(th_rand(&r) | 1);
            p[k] = malloc(n[k]);
            CHECK(p[k] != NULL);
            p[k][0] = p[k][n[k] - 1] = tag[k];
            continue;
        }
        CHECKF(malloc_usable_size(p[k]) >= n[k], "a live block of %zu bytes", n[k]);
        CHECK(p[k][0] == tag[k] && p[k][n[k] - 1] == tag[k]);
        if (th_rand(&r) % 3 != 0) {
            size_t m = th_range(&r, 4 * MIB, 8 * MIB);
            unsigned char *q = realloc(p[k], m);
            CHECK(q != NULL && q[0] == tag[k]);
            q[m - 1] = tag[k];
            p[k] = q;
            n[k] = m;
        } else {
            free(p[k]);
            p[k] = NULL;
        }
    }
    for (int k = 0; k < HUGE_SLOTS; k++)
        free(p[k]);
    return NULL;
}

/* More runnable threads than CPUs, so that a thread is often preempted
   inside a realloc: what made the race show within seconds. */
static void *huge_trimmer(void *arg)
{
    (void)arg;
    while (!huge_stop)
        malloc_trim(0);
    return NULL;
}

static void t_huge_realloc_race(void)
{
    enum { NT = 4 };
    pthread_t t[NT + 1];
    uint64_t seeds[NT];
    huge_stop = 0;
    for (int i = 0; i < NT; i++) {
        seeds[i] = th_seed(600 + (uint64_t)i);
        CHECK(pthread_create(&t[i], NULL, huge_worker, &seeds[i]) == 0);
    }
    CHECK(pthread_create(&t[NT], NULL, huge_trimmer, NULL) == 0);
    struct timespec d = { 3, 0 };
    nanosleep(&d, NULL);
    huge_stop = 1;
    for (int i = 0; i <= NT; i++)
        pthread_join(t[i], NULL);
}

static const th_test_t tests[] = {
    TH_TEST(t_producer_consumer),
    TH_TEST(t_many_producers_one_consumer),
    TH_TEST(t_ring),
    TH_TEST(t_short_lived_producers),
    TH_TEST(t_huge_realloc_race),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
