/* The background thread exists only when there is something to return.
 *
 *   t_only_malloc        a program that only allocates (small, 64 KiB,
 *                        1 MiB, 8 MiB; no free, no realloc) has no
 *                        tide-release thread and bg_running == 0, even
 *                        after twice the default decay time; once it frees
 *                        a 1 MiB block the thread appears (within 10 s) and
 *                        bg_running == 1
 *   t_small_free         freeing small blocks only (whole slabs emptied)
 *                        starts it too
 *   t_background_false   with background:false the thread never appears,
 *                        whatever the program frees, trims or waits, and
 *                        bg_running and bg_wakeups stay 0
 *   t_sleeps_when_idle   once everything is released (decay_ms:50) the
 *                        thread stops waking up: within 10 s comes a whole
 *                        second (20 decay periods) without a pass
 *                        (bg_wakeups unchanged)
 */
#include "release.h"

enum { WAIT_MS = 10000 };

static void *keep[64];

static int sub_only_malloc(void)
{
    rel_stats_t st;
    rel_stats_try(&st); /* resolves tide_stats now: dlsym may allocate */
    int k = 0;
    for (int i = 0; i < 20000; i++) { /* ~10 MiB of small blocks */
        void *p = malloc(16 + (size_t)(i % 64) * 16);
        CHECK(p != NULL);
        memset(p, 1, 16);
        if (i % 1000 == 0)
            keep[k++] = p;
    }
    size_t big[] = {64 * KIB, 64 * KIB, 300 * KIB, MIB, MIB, 8 * MIB};
    void *blocks[6];
    for (int i = 0; i < 6; i++) {
        blocks[i] = malloc(big[i]);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 2, big[i]);
    }
    void *c = calloc(1000, 1000);
    CHECK(c != NULL);
    th_use(c);
    rel_sleep_ms(1000);
    CHECKF(rel_bg_threads() == 0,
           "a program that never freed anything has %d tide-release threads",
           rel_bg_threads());
    rel_stats(&st);
    CHECKF(st.bg_running == 0, "bg_running %d in a program that never freed",
           st.bg_running);
    CHECKF(rel_bg_threads() == 0, "tide_stats() started the background thread");

    free(blocks[3]); /* 1 MiB: a page run */
    int n = rel_wait_bg(WAIT_MS);
    CHECKF(n == 1, "%d tide-release threads 10 s after freeing a 1 MiB block (want 1)", n);
    rel_stats(&st);
    CHECKF(st.bg_running == 1, "bg_running %d while the thread exists", st.bg_running);
    return 0;
}

static int sub_small_free(void)
{
    enum { N = 64 * 1024 };
    void **p = rel_map(N * sizeof *p);
    for (int i = 0; i < N; i++) { /* 4 MiB of 64-byte blocks */
        p[i] = malloc(64);
        CHECK(p[i] != NULL);
        memset(p[i], 3, 64);
    }
    rel_sleep_ms(200);
    CHECKF(rel_bg_threads() == 0, "a tide-release thread before any free");
    for (int i = 0; i < N; i++)
        free(p[i]);
    int n = rel_wait_bg(WAIT_MS);
    CHECKF(n == 1, "%d tide-release threads 10 s after emptying 4 MiB of slabs (want 1)", n);
    return 0;
}

static int sub_background_false(void)
{
    static rel_burst_t b;
    for (int round = 0; round < 4; round++) {
        rel_burst_init(&b, 16 * MIB);
        rel_burst_alloc(&b, 16 * MIB, th_seed((uint64_t)round), false);
        rel_burst_free(&b);
        rel_burst_done(&b);
        void *big = malloc(3 * MIB);
        CHECK(big != NULL);
        memset(big, 1, 3 * MIB);
        free(big);
        free(malloc(5 * MIB));
        rel_sleep_ms(250);
        CHECKF(rel_bg_threads() == 0, "background:false: a tide-release thread in round %d",
               round);
        if (round == 1)
            malloc_trim(0);
        if (round == 2)
            rel_release(SIZE_MAX, 0);
    }
    rel_stats_t st;
    rel_stats(&st);
    CHECKF(st.bg_running == 0 && st.bg_wakeups == 0,
           "background:false: bg_running %d, bg_wakeups %zu", st.bg_running, st.bg_wakeups);
    CHECKF(rel_bg_threads() == 0, "background:false: a tide-release thread at the end");
    return 0;
}

static int sub_sleeps_when_idle(void)
{
    static rel_burst_t b;
    rel_burst_init(&b, 32 * MIB);
    long rss0 = rel_rss();
    rel_burst_alloc(&b, 32 * MIB, th_seed(9), false);
    rel_burst_free(&b);
    rel_burst_done(&b);
    CHECKF(rel_wait_bg(WAIT_MS) == 1, "no tide-release thread after freeing 32 MiB");
    /* Wait until it has released the burst... */
    uint64_t end = rel_now_ms() + WAIT_MS;
    long rss;
    while ((rss = rel_rss()) > rss0 + (long)(8 * MIB) && rel_now_ms() < end)
        rel_sleep_ms(20);
    CHECKF(rss <= rss0 + (long)(8 * MIB), "RSS still %ld MiB (was %ld before the burst)",
           REL_MIB(rss), REL_MIB(rss0));
    /* ... then it must go quiet: no pass for a whole second (20 decay
       periods), within 10 s. */
    rel_stats_t st;
    rel_stats(&st);
    size_t last = st.bg_wakeups, woke = 0;
    uint64_t quiet_since = rel_now_ms();
    end = quiet_since + WAIT_MS;
    while (rel_now_ms() - quiet_since < 1000 && rel_now_ms() < end) {
        rel_sleep_ms(50);
        rel_stats(&st);
        if (st.bg_wakeups != last) {
            woke = st.bg_wakeups - last;
            last = st.bg_wakeups;
            quiet_since = rel_now_ms();
        }
    }
    CHECKF(rel_now_ms() - quiet_since >= 1000,
           "with nothing left to return the background thread still wakes up 10 s "
           "later (%zu passes in the last 50 ms; decay_ms:50, bg_wakeups %zu)",
           woke, st.bg_wakeups);
    CHECKF(rel_bg_threads() <= 1, "%d tide-release threads", rel_bg_threads());
    return 0;
}

static void t_only_malloc(void)
{
    rel_need_tide();
    rel_run_sub("sub_only_malloc", NULL, 30);
}

static void t_small_free(void)
{
    rel_need_tide();
    rel_run_sub("sub_small_free", NULL, 30);
}

static void t_background_false(void)
{
    rel_need_tide();
    rel_run_sub("sub_background_false", "background:false,decay_ms:10", 30);
}

static void t_sleeps_when_idle(void)
{
    rel_need_tide();
    rel_run_sub("sub_sleeps_when_idle", "decay_ms:50", 30);
}

static const th_test_t tests[] = {
    TH_TEST(t_only_malloc),
    TH_TEST(t_small_free),
    TH_TEST(t_background_false),
    TH_TEST(t_sleeps_when_idle),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_only_malloc),
    REL_SUB(sub_small_free),
    REL_SUB(sub_background_false),
    REL_SUB(sub_sleeps_when_idle),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
