/* fork() while the background thread works; each child gets its own.
 *
 * The sub runs with TIDEMALLOC_CONF=decay_ms:20.  A churning thread
 * allocates and frees (1 MiB blocks, 64 KiB and small batches) so that the
 * background thread keeps waking up and releasing, while the main thread
 * forks 20 times (quick: 10).  Each child:
 *   - checks that it has no tide-release thread (threads do not survive
 *     fork) and that tide_stats does not claim one (bg_running == 0);
 *   - allocates and frees ~8 MiB, then waits (up to 10 s) for its own
 *     tide-release thread to appear, with bg_running == 1, and for
 *     released_decay to grow (the new thread does release);
 *   - ends with _exit(0) or, every other child, exit(0) (which must return
 *     normally although the thread runs).
 * A deadlock at fork (a lock of the release engine held by the parent's
 * background thread) shows as a child killed by its alarm.  The parent then
 * checks that its own background thread still works and calls tide_check().
 *
 * t_fork_while_trimming: the same children, forked while another thread of
 * the parent calls tide_release(SIZE_MAX, 0) without pause, so that most
 * forks land inside such a call. Decay passes give way to those calls
 * (src/release.c, explicit_calls); a child that inherited the count of
 * the call in flight would give way for ever and never release (found in
 * review: 11 of 12 children stuck before the fix).
 */
#include "release.h"

enum { CHILD_ALARM_S = 20, WAIT_MS = 10000 };

static int stop;

static void *churn(void *arg)
{
    th_rng_t r = {(uint64_t)(uintptr_t)arg};
    void *small[256];
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        void *big = malloc(MIB);
        void *mid = malloc(64 * KIB);
        if (!big || !mid)
            abort();
        memset(big, 1, MIB);
        memset(mid, 2, 64 * KIB);
        for (int i = 0; i < 256; i++) {
            size_t n = th_range(&r, 16, 2048);
            small[i] = malloc(n);
            if (!small[i])
                abort();
            memset(small[i], 3, n);
        }
        free(big);
        free(mid);
        for (int i = 0; i < 256; i++)
            free(small[i]);
        rel_sleep_ms((unsigned)th_range(&r, 0, 3)); /* let some of it age */
    }
    return NULL;
}

/* Child exit codes, decoded by the parent. */
enum {
    C_OK = 0,
    C_THREAD_AT_FORK = 10,
    C_STATS_AT_FORK = 11,
    C_NO_THREAD = 12,
    C_STATS_WRONG = 13,
    C_NO_DECAY = 14,
    C_NOMEM = 15,
    C_PATTERN = 16,
    C_NO_STATS = 17,
};

static const char *child_error(int code)
{
    switch (code) {
    case C_THREAD_AT_FORK: return "a tide-release thread existed right after fork";
    case C_STATS_AT_FORK: return "tide_stats: bg_running == 1 right after fork, no thread exists";
    case C_NO_THREAD: return "no tide-release thread within 10 s of freeing memory";
    case C_STATS_WRONG: return "tide-release thread exists but bg_running != 1";
    case C_NO_DECAY: return "released_decay did not grow within 10 s";
    case C_NOMEM: return "malloc failed";
    case C_PATTERN: return "a block lost its contents";
    case C_NO_STATS: return "tide_stats lacks the release-engine fields";
    default: return "unexpected exit status";
    }
}

static void child(size_t i, uint64_t seed)
{
    alarm(CHILD_ALARM_S);
    if (rel_bg_threads() != 0)
        _exit(C_THREAD_AT_FORK);
    rel_stats_t st0;
    if (!rel_stats_try(&st0))
        _exit(C_NO_STATS);
    if (st0.bg_running != 0)
        _exit(C_STATS_AT_FORK);
    th_rng_t r = {seed};
    enum { N = 2000 };
    static void *p[N];
    static size_t n[N];
    for (int k = 0; k < N; k++) {
        n[k] = k % 100 == 0 ? MIB : k % 20 == 0 ? 64 * KIB : th_range(&r, 16, 2048);
        p[k] = malloc(n[k]);
        if (!p[k])
            _exit(C_NOMEM);
        th_fill(p[k], n[k], seed + (uint64_t)k);
    }
    for (int k = 0; k < N; k++) {
        if (th_verify(p[k], n[k], seed + (uint64_t)k) != SIZE_MAX)
            _exit(C_PATTERN);
        free(p[k]);
    }
    if (rel_wait_bg(WAIT_MS) < 1)
        _exit(C_NO_THREAD);
    rel_stats_t st;
    rel_stats_try(&st);
    if (st.bg_running != 1)
        _exit(C_STATS_WRONG);
    uint64_t end = rel_now_ms() + WAIT_MS;
    while (st.released_decay <= st0.released_decay && rel_now_ms() < end) {
        rel_sleep_ms(10);
        rel_stats_try(&st);
    }
    if (st.released_decay <= st0.released_decay)
        _exit(C_NO_DECAY);
    if (i % 2)
        exit(0);
    _exit(0);
}

/* Forks child number i (which never returns) and gives its pid. */
static pid_t fork_child(size_t i, uint64_t seed)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        child(i, seed + i * 7919);
    return pid;
}

/* Waits for the n children; returns how many did not exit with 0, and
   puts a description of the first of those in first. */
static size_t wait_children(const pid_t *kids, size_t n, char *first, size_t first_len)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int status;
        while (waitpid(kids[i], &status, 0) < 0)
            CHECK(errno == EINTR);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        if (bad++ == 0) {
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                snprintf(first, first_len,
                         "child %zu hung (killed by its %u s alarm: deadlock after fork?)",
                         i, (unsigned)CHILD_ALARM_S);
            else if (WIFSIGNALED(status))
                snprintf(first, first_len, "child %zu killed by signal %d", i,
                         WTERMSIG(status));
            else
                snprintf(first, first_len, "child %zu: %s (status %d)", i,
                         child_error(WEXITSTATUS(status)), WEXITSTATUS(status));
        }
    }
    return bad;
}

static int sub_fork_bg(void)
{
    uint64_t seed = th_seed(7);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, churn, (void *)(uintptr_t)seed) == 0);
    CHECKF(rel_wait_bg(WAIT_MS) >= 1, "the churning parent has no tide-release thread");
    rel_stats_t st;
    rel_stats(&st);
    CHECKF(st.bg_running == 1, "bg_running %d with the thread running", st.bg_running);

    size_t nforks = th_quick() ? 10 : th_long() ? 200 : 20;
    pid_t kids[200];
    for (size_t i = 0; i < nforks; i++) {
        rel_sleep_ms((unsigned)(i % 7)); /* fork at varied points of a pass */
        kids[i] = fork_child(i, seed);
    }
    char first[256] = "";
    size_t bad = wait_children(kids, nforks, first, sizeof first);
    CHECKF(bad == 0, "%zu of %zu children failed; first: %s", bad, nforks, first);

    /* The parent's thread survived the forks and still releases. */
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    CHECK(pthread_join(t, NULL) == 0);
    CHECKF(rel_bg_threads() == 1, "%d tide-release threads in the parent after the forks",
           rel_bg_threads());
    rel_stats(&st);
    size_t before = st.released_decay;
    void *big = malloc(2 * MIB);
    CHECK(big != NULL);
    memset(big, 1, 2 * MIB);
    free(big);
    uint64_t end = rel_now_ms() + WAIT_MS;
    do {
        rel_sleep_ms(10);
        rel_stats(&st);
    } while (st.released_decay <= before && rel_now_ms() < end);
    CHECKF(st.released_decay > before,
           "after the forks the parent's background thread released nothing in 10 s "
           "(released_decay %zu, bg_wakeups %zu)",
           st.released_decay, st.bg_wakeups);
    rel_check();
    return 0;
}

static void *trimmer(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED))
        rel_release(SIZE_MAX, 0);
    return NULL;
}

static int sub_fork_while_trimming(void)
{
    uint64_t seed = th_seed(11);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, trimmer, NULL) == 0);
    size_t nforks = th_quick() ? 6 : 12;
    pid_t kids[12];
    for (size_t i = 0; i < nforks; i++) {
        void *junk = malloc(MIB);   /* something for the trimmer to give back */
        CHECK(junk != NULL);
        memset(junk, 1, MIB);
        free(junk);
        rel_sleep_ms(1);
        kids[i] = fork_child(i, seed);
    }
    char first[256] = "";
    size_t bad = wait_children(kids, nforks, first, sizeof first);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    CHECK(pthread_join(t, NULL) == 0);
    CHECKF(bad == 0, "%zu of %zu children forked during tide_release failed; first: %s", bad,
           nforks, first);
    rel_check();
    return 0;
}

static void t_fork_while_trimming(void)
{
    rel_need_tide();
    rel_run_sub("sub_fork_while_trimming", "decay_ms:20", 55);
}

static void t_fork_bg(void)
{
    rel_need_tide();
    rel_run_sub("sub_fork_bg", "decay_ms:20", 55);
}

static const th_test_t tests[] = {
    TH_TEST(t_fork_bg),
    TH_TEST(t_fork_while_trimming),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_fork_bg),
    REL_SUB(sub_fork_while_trimming),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
