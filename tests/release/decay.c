/* Decay: free memory goes back to the OS on its own, with no allocator call.
 *
 * Each test runs a sub with TIDEMALLOC_CONF=decay_ms:100.  The sub allocates
 * about 256 MiB (small 16..1024 B, 64 KiB, 1 MiB), touches all of it, frees
 * it all, then makes no allocator call at all while it polls RSS
 * (/proc/self/statm): RSS must fall back to within 32 MiB of its value
 * before the burst within 10 s (the spec: within decay_ms + decay_ms/4).
 *
 *   t_decay_main         the burst is allocated and freed by the main thread
 *   t_decay_idle_owner   thread A allocates, then blocks on a condition
 *                        variable; thread B frees every block (all frees
 *                        remote) and blocks too: nobody calls the allocator
 *   t_decay_remote_partial  thread A allocates 64 MiB of 256-byte blocks and
 *                        frees every other one itself, so that its slabs
 *                        are partly used (on its partial lists); thread B
 *                        frees the rest (remote frees into slabs that are
 *                        not full, which nobody announces to A), then both
 *                        block: within 10 s small_allocated must fall
 *                        below 4 MiB, which only a sweep that finds the
 *                        slabs those remote frees emptied can do (parking
 *                        would bring RSS down but keep them counted)
 *   t_decay_slow_path    background:false: no thread, so nothing is
 *                        released while the program sleeps; allocator slow
 *                        paths (1 MiB malloc/free) then release it
 *   t_decay_rekick       decay_ms:1, 150 rounds: 1 MiB of 512-byte blocks
 *                        allocated, touched and freed, then no allocator
 *                        call until RSS is back within 512 KiB of where it
 *                        started (2 s allowed a round): the background
 *                        thread, asleep between rounds, is woken by the
 *                        kicks of each round. It fails when kicks do not
 *                        wake it (a review's mutant); the race of a kick
 *                        with the thread's announcing sleep is too narrow
 *                        to provoke here, and the thread's ticks while
 *                        memory is young would cover a kick lost there.
 */
#include "release.h"

enum { BURST_MIB = 256, SLACK_MIB = 32, DEADLINE_MS = 10000 };

/* Polls RSS without calling the allocator until it is at most target;
   returns the last value. */
static long wait_rss_below(long target, unsigned deadline_ms)
{
    uint64_t end = rel_now_ms() + deadline_ms;
    long rss;
    while ((rss = rel_rss()) > target && rel_now_ms() < end)
        rel_sleep_ms(20);
    return rss;
}

static void report_stuck(const char *what, long rss0, long peak, long rss)
{
    rel_stats_t st;
    bool have = rel_stats_try(&st);
    TH_FAIL("%s: RSS %ld MiB before the burst, %ld MiB at its peak, still %ld MiB "
            "%u s after freeing everything (want <= %ld MiB); pageheap_dirty %zu MiB, "
            "small_free %zu MiB, released %zu MiB%s released_decay %zu MiB, "
            "bg_wakeups %zu, bg_running %d, tide-release threads %d",
            what, REL_MIB(rss0), REL_MIB(peak), REL_MIB(rss), DEADLINE_MS / 1000,
            REL_MIB(rss0) + SLACK_MIB, REL_MIB(st.pageheap_dirty), REL_MIB(st.small_free),
            REL_MIB(st.released), have ? "," : " (no release-engine stats),",
            REL_MIB(st.released_decay), st.bg_wakeups, st.bg_running, rel_bg_threads());
}

static int sub_main_thread(void)
{
    static rel_burst_t b;
    free(th_launder(malloc(100))); /* init */
    rel_burst_init(&b, BURST_MIB * MIB);
    long rss0 = rel_rss();
    rel_burst_alloc(&b, BURST_MIB * MIB, th_seed(1), false);
    long peak = rel_rss();
    CHECKF(peak - rss0 >= (long)(BURST_MIB * MIB) * 3 / 4,
           "the burst did not raise RSS: %ld -> %ld MiB", REL_MIB(rss0), REL_MIB(peak));
    rel_burst_free(&b);
    rel_burst_done(&b);
    /* From here: no allocator call until the verdict. */
    long rss = wait_rss_below(rss0 + (long)(SLACK_MIB * MIB), DEADLINE_MS);
    if (rss > rss0 + (long)(SLACK_MIB * MIB))
        report_stuck("freed by the main thread", rss0, peak, rss);
    return 0;
}

/* ---- idle owner --------------------------------------------------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase; /* 0 start, 1 A allocated, 2 B freed, 3 all may exit */
static rel_burst_t shared_burst;

static void wait_phase(int want)
{
    pthread_mutex_lock(&mu);
    while (phase < want)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void set_phase(int p)
{
    pthread_mutex_lock(&mu);
    phase = p;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void *owner_a(void *arg)
{
    (void)arg;
    rel_burst_alloc(&shared_burst, BURST_MIB * MIB, th_seed(2), false);
    set_phase(1);
    wait_phase(3); /* idle: blocked, no allocator call, until the end */
    return NULL;
}

static void *freer_b(void *arg)
{
    (void)arg;
    wait_phase(1);
    rel_burst_free(&shared_burst);
    set_phase(2);
    wait_phase(3);
    return NULL;
}

static int sub_idle_owner(void)
{
    free(th_launder(malloc(100)));
    rel_burst_init(&shared_burst, BURST_MIB * MIB);
    pthread_t a, bt;
    long rss0 = rel_rss();
    /* Threads first: creating one may allocate (its TLS). */
    CHECK(pthread_create(&bt, NULL, freer_b, NULL) == 0);
    CHECK(pthread_create(&a, NULL, owner_a, NULL) == 0);
    wait_phase(1);
    long peak = rel_rss();
    CHECKF(peak - rss0 >= (long)(BURST_MIB * MIB) * 3 / 4,
           "the burst did not raise RSS: %ld -> %ld MiB", REL_MIB(rss0), REL_MIB(peak));
    wait_phase(2);
    rel_burst_done(&shared_burst);
    long rss = wait_rss_below(rss0 + (long)(SLACK_MIB * MIB), DEADLINE_MS);
    if (rss > rss0 + (long)(SLACK_MIB * MIB))
        report_stuck("allocated by A, freed by B, both idle", rss0, peak, rss);
    set_phase(3);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(pthread_join(bt, NULL) == 0);
    return 0;
}

/* ---- remote frees empty partly used slabs ------------------------------ */

enum { RP_SIZE = 256, RP_N = (int)(64 * MIB / RP_SIZE) };
static void **rp_blocks;

static void *rp_owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < RP_N; i++) {
        rp_blocks[i] = malloc(RP_SIZE);
        CHECK(rp_blocks[i] != NULL);
        memset(rp_blocks[i], i, RP_SIZE);
    }
    for (int i = 1; i < RP_N; i += 2)
        free(rp_blocks[i]);   /* local frees: full slabs become partly used */
    set_phase(1);
    wait_phase(3);
    return NULL;
}

static void *rp_freer(void *arg)
{
    (void)arg;
    wait_phase(1);
    for (int i = 0; i < RP_N; i += 2)
        free(rp_blocks[i]);   /* remote frees into partly used slabs */
    set_phase(2);
    wait_phase(3);
    return NULL;
}

static int sub_remote_partial(void)
{
    free(th_launder(malloc(100)));
    rp_blocks = rel_map(RP_N * sizeof *rp_blocks);
    pthread_t a, bt;
    CHECK(pthread_create(&bt, NULL, rp_freer, NULL) == 0);
    CHECK(pthread_create(&a, NULL, rp_owner, NULL) == 0);
    wait_phase(1);
    rel_stats_t st;
    rel_stats(&st);
    CHECKF(st.small_allocated >= 24 * MIB, "half the blocks live, yet small_allocated is %ld MiB",
           REL_MIB(st.small_allocated));
    wait_phase(2);
    /* From here: no allocator call until the verdict (tide_stats makes none). */
    uint64_t end = rel_now_ms() + DEADLINE_MS;
    while (rel_stats(&st), st.small_allocated >= 4 * MIB && rel_now_ms() < end)
        rel_sleep_ms(20);
    CHECKF(st.small_allocated < 4 * MIB,
           "A's blocks all freed (half by A, half by B), both idle, yet small_allocated is "
           "%ld MiB after %u s: slabs emptied by remote frees not found (bg_wakeups %zu)",
           REL_MIB(st.small_allocated), DEADLINE_MS / 1000, st.bg_wakeups);
    set_phase(3);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(pthread_join(bt, NULL) == 0);
    return 0;
}

/* ---- background:false ----------------------------------------------- */

static int sub_slow_path(void)
{
    static rel_burst_t b;
    free(th_launder(malloc(100)));
    rel_burst_init(&b, 128 * MIB);
    long rss0 = rel_rss();
    rel_burst_alloc(&b, 128 * MIB, th_seed(3), false);
    long peak = rel_rss();
    rel_burst_free(&b);
    rel_burst_done(&b);
    /* No thread may exist, at any point. */
    rel_sleep_ms(300);
    CHECKF(rel_bg_threads() == 0, "background:false, yet a tide-release thread exists");
    /* Slow-path calls: large blocks (page heap), after the decay time. */
    uint64_t end = rel_now_ms() + DEADLINE_MS;
    long rss;
    while ((rss = rel_rss()) > rss0 + (long)(SLACK_MIB * MIB) && rel_now_ms() < end) {
        for (int i = 0; i < 4; i++) {
            void *p = malloc(th_opaque(MIB + (size_t)i * 8192));
            CHECK(p != NULL);
            memset(p, 1, 4096);
            th_use(p);
            free(p);
        }
        rel_sleep_ms(20);
    }
    CHECKF(rel_bg_threads() == 0, "background:false, yet a tide-release thread exists");
    if (rss > rss0 + (long)(SLACK_MIB * MIB))
        report_stuck("background:false, slow paths for 10 s", rss0, peak, rss);
    return 0;
}

static int sub_rekick(void)
{
    enum { N = 2048, SIZE = 512, ROUNDS = 150 };
    static void *v[N];
    free(th_launder(malloc(100))); /* init */
    long rss0 = rel_rss();
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            v[i] = malloc(SIZE);
            CHECK(v[i] != NULL);
            memset(v[i], r, SIZE);
        }
        for (int i = 0; i < N; i++)
            free(v[i]);
        if (r % 3 == 1)
            rel_sleep_ms(1);   /* vary where the kicks fall in the thread's cycle */
        long target = rss0 + 512 * 1024, rss;
        uint64_t end = rel_now_ms() + 2000;
        while ((rss = rel_rss()) > target && rel_now_ms() < end)
            rel_sleep_ms(1);
        CHECKF(rss <= target, "round %d: RSS %ld KiB 2 s after freeing 1 MiB, want <= %ld KiB "
               "(a kick lost?)", r, rss / 1024, target / 1024);
    }
    return 0;
}

static void t_decay_rekick(void)
{
    rel_need_tide();
    rel_run_sub("sub_rekick", "decay_ms:1", 330);
}

static void t_decay_main(void)
{
    rel_need_tide();
    rel_run_sub("sub_main_thread", "decay_ms:100", 40);
}

static void t_decay_idle_owner(void)
{
    rel_need_tide();
    rel_run_sub("sub_idle_owner", "decay_ms:100", 40);
}

static void t_decay_remote_partial(void)
{
    rel_need_tide();
    rel_run_sub("sub_remote_partial", "decay_ms:100", 40);
}

static void t_decay_slow_path(void)
{
    rel_need_tide();
    rel_run_sub("sub_slow_path", "decay_ms:100,background:false", 40);
}

static const th_test_t tests[] = {
    TH_TEST(t_decay_main),
    TH_TEST(t_decay_idle_owner),
    TH_TEST(t_decay_remote_partial),
    TH_TEST(t_decay_slow_path),
    TH_TEST(t_decay_rekick),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_main_thread),
    REL_SUB(sub_idle_owner),
    REL_SUB(sub_remote_partial),
    REL_SUB(sub_slow_path),
    REL_SUB(sub_rekick),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
