/* Thread churn: thousands of short-lived threads must not grow the heap.
 *
 * 3,000 threads (long mode: 30,000) are created a few at a time; each
 * allocates and frees a mix of sizes and leaves a few blocks behind, which
 * main verifies and frees after joining it (frees into the heap of a thread
 * that has exited).  VmRSS after all threads must stay within 32 MiB of
 * VmRSS after the first 300: memory of exited threads is reused, not leaked
 * with its thread cache.
 */
#include "../lib/th.h"

#include <malloc.h>
#include <pthread.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

enum { BATCH = 4, LEFT = 4 };

typedef struct {
    uint64_t seed;
    size_t id;
    void *left[LEFT]; /* blocks left for main to free */
    size_t left_n[LEFT];
    size_t left_tag[LEFT];
} churn_arg_t;

static void *churn_thread(void *arg)
{
    churn_arg_t *a = arg;
    th_rng_t r = {a->seed};
    enum { N = 120 };
    void *p[N];
    size_t n[N];
    for (int i = 0; i < N; i++) {
        unsigned d = (unsigned)th_range(&r, 0, 99);
        n[i] = d < 85 ? th_logsize(&r, 1, 1024)
             : d < 99 ? th_logsize(&r, 1024, 32 * KIB)
                      : th_logsize(&r, 64 * KIB, 512 * KIB);
        p[i] = malloc(n[i]);
        CHECK(p[i] != NULL);
        th_fill(p[i], n[i], a->id * N + (size_t)i);
        if (i % 3 == 2) { /* free some early: reuse within the thread */
            int k = (int)th_range(&r, 0, (uint64_t)i);
            if (p[k]) {
                CHECK_PATTERN(p[k], n[k], a->id * N + (size_t)k);
                free(p[k]);
                p[k] = NULL;
            }
        }
    }
    int kept = 0;
    for (int i = 0; i < N; i++) {
        if (!p[i])
            continue;
        CHECK_PATTERN(p[i], n[i], a->id * N + (size_t)i);
        if (kept < LEFT && n[i] <= 32 * KIB) {
            a->left[kept] = p[i];
            a->left_n[kept] = n[i];
            a->left_tag[kept] = a->id * N + (size_t)i;
            kept++;
        } else {
            free(p[i]);
        }
    }
    return NULL;
}

static void t_thread_churn(void)
{
    size_t total = th_long() ? 30000 : 3000, first = 300;
    uint64_t seed = th_seed(7);
    churn_arg_t args[BATCH];
    long rss_first = -1;
    for (size_t done = 0; done < total; done += BATCH) {
        pthread_t t[BATCH];
        for (int i = 0; i < BATCH; i++) {
            memset(&args[i], 0, sizeof args[i]);
            args[i].seed = seed + done + (size_t)i;
            args[i].id = done + (size_t)i;
            CHECKF(pthread_create(&t[i], NULL, churn_thread, &args[i]) == 0,
                   "pthread_create #%zu failed", done + (size_t)i);
        }
        for (int i = 0; i < BATCH; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
        for (int i = 0; i < BATCH; i++)
            for (int k = 0; k < LEFT; k++) {
                if (!args[i].left[k])
                    continue;
                CHECK_PATTERN(args[i].left[k], args[i].left_n[k],
                              args[i].left_tag[k]);
                free(args[i].left[k]);
            }
        if (done + BATCH == first)
            rss_first = th_rss_kib();
    }
    long rss_end = th_rss_kib();
    CHECK(rss_first > 0 && rss_end > 0);
    printf("# churn: VmRSS %ld KiB after %zu threads, %ld KiB after %zu\n", rss_first,
           first, rss_end, total);
    CHECKF(rss_end - rss_first < 32 * 1024,
           "VmRSS grew from %ld KiB after %zu threads to %ld KiB after %zu threads",
           rss_first, first, rss_end, total);
}

/* Threads that exit while other threads still free their blocks. */
static void *alloc_and_exit(void *arg)
{
    void **out = arg;
    for (int i = 0; i < 256; i++) {
        out[i] = malloc((size_t)(i % 64 + 1) * 16);
        CHECK(out[i] != NULL);
        memset(out[i], 0xab, (size_t)(i % 64 + 1) * 16);
    }
    return NULL;
}

static void *free_list(void *arg)
{
    void **in = arg;
    for (int i = 0; i < 256; i++) {
        unsigned char *c = in[i];
        CHECK(c[0] == 0xab && c[(i % 64 + 1) * 16 - 1] == 0xab);
        free(in[i]);
    }
    return NULL;
}

static void t_exit_with_remote_frees(void)
{
    static void *blocks[2][256];
    size_t rounds = th_scale(500, 10);
    long rss_first = 0;
    for (size_t r = 0; r < rounds; r++) {
        pthread_t a, b;
        CHECK(pthread_create(&a, NULL, alloc_and_exit, blocks[r % 2]) == 0);
        CHECK(pthread_join(a, NULL) == 0);
        /* b frees a's blocks while the next a allocates. */
        CHECK(pthread_create(&b, NULL, free_list, blocks[r % 2]) == 0);
        CHECK(pthread_create(&a, NULL, alloc_and_exit, blocks[(r + 1) % 2]) == 0);
        CHECK(pthread_join(a, NULL) == 0);
        CHECK(pthread_join(b, NULL) == 0);
        for (int i = 0; i < 256; i++)
            free(blocks[(r + 1) % 2][i]);
        if (r == 50)
            rss_first = th_rss_kib();
    }
    long rss_end = th_rss_kib();
    CHECKF(rss_end - rss_first < 32 * 1024, "VmRSS grew from %ld to %ld KiB",
           rss_first, rss_end);
}

static const th_test_t tests[] = {
    TH_TEST(t_thread_churn),
    TH_TEST(t_exit_with_remote_frees),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
