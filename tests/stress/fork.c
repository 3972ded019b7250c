/* fork() while other threads allocate.
 *
 * Threads hammer malloc/free (taking and releasing every lock the allocator
 * has) while main forks 50 times (long mode: 500).  Each child allocates and
 * frees in several size classes and large sizes, creates a thread that does
 * the same, and exits 0.  A lock held by another thread at fork time and not
 * reset in the child shows up as a child that hangs (killed by its alarm) or
 * crashes.  The parent waits for all children under its own alarm.
 */
#include "../lib/th.h"

#include <malloc.h>
#include <pthread.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

enum { HAMMERS = 3, CHILD_TIMEOUT_S = 20, PARENT_TIMEOUT_S = 50 };

static volatile int stop;

static void *hammer(void *arg)
{
    th_rng_t r = {(uint64_t)(uintptr_t)arg};
    void *slots[64] = {0};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int k = (int)th_range(&r, 0, 63);
        free(slots[k]);
        unsigned d = (unsigned)th_range(&r, 0, 99);
        size_t n = d < 97 ? th_logsize(&r, 1, 32 * KIB) : th_logsize(&r, 64 * KIB, 2 * MIB);
        slots[k] = d % 7 == 0 ? calloc(1, n) : malloc(n);
        if (slots[k])
            memset(slots[k], k, n < 512 ? n : 512);
        if (d == 0)
            malloc_trim(0);
    }
    for (int k = 0; k < 64; k++)
        free(slots[k]);
    return NULL;
}

/* Work done in each child, and in a thread the child creates. */
static void child_work(uint64_t seed)
{
    th_rng_t r = {seed};
    enum { N = 200 };
    void *p[N];
    size_t n[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            n[i] = i % 50 == 0 ? th_logsize(&r, 64 * KIB, 4 * MIB)
                               : th_logsize(&r, 1, 16 * KIB);
            p[i] = malloc(n[i]);
            if (!p[i])
                _exit(3);
            th_fill(p[i], n[i], seed + (uint64_t)i);
        }
        for (int i = 0; i < N; i++) {
            if (th_verify(p[i], n[i], seed + (uint64_t)i) != SIZE_MAX)
                _exit(4);
            free(p[i]);
        }
    }
    void *a = aligned_alloc(4096, 3 * 4096);
    void *c = calloc(1000, 10);
    if (!a || !c || !th_all_zero(c, 10000))
        _exit(5);
    c = realloc(c, 3 * MIB);
    if (!c)
        _exit(6);
    free(a);
    free(c);
}

static void *child_thread(void *arg)
{
    child_work((uint64_t)(uintptr_t)arg);
    return NULL;
}

static volatile sig_atomic_t parent_alarm;

static void on_alarm(int sig)
{
    (void)sig;
    parent_alarm = 1;
}

static void t_fork_while_threads_allocate(void)
{
    size_t nforks = th_long() ? 500 : 50;
    uint64_t seed = th_seed(8);
    pthread_t h[HAMMERS];
    for (int i = 0; i < HAMMERS; i++)
        CHECK(pthread_create(&h[i], NULL, hammer, (void *)(uintptr_t)(seed + (uint64_t)i)) == 0);

    pid_t *kids = calloc(nforks, sizeof *kids);
    CHECK(kids != NULL);
    for (size_t i = 0; i < nforks; i++) {
        /* Let the hammers run a little between forks, allocating in main
           too, so forks land at varied points of their work. */
        for (int k = 0; k < 200; k++)
            free(th_launder(malloc(th_opaque((size_t)k * 40 + 1))));
        usleep(2000);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            alarm(CHILD_TIMEOUT_S);
            child_work(seed + i * 1000);
            pthread_t t;
            if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(seed + i)) != 0)
                _exit(7);
            if (pthread_join(t, NULL) != 0)
                _exit(8);
            _exit(0);
        }
        kids[i] = pid;
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < HAMMERS; i++)
        CHECK(pthread_join(h[i], NULL) == 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: waitpid returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    unsigned limit = th_long() ? PARENT_TIMEOUT_S * 10 : PARENT_TIMEOUT_S;
    alarm(limit);
    size_t bad = 0;
    char first[256] = "";
    for (size_t i = 0; i < nforks; i++) {
        int status;
        pid_t r;
        while ((r = waitpid(kids[i], &status, 0)) < 0 && errno == EINTR && !parent_alarm)
            ;
        if (r < 0) {
            for (size_t j = i; j < nforks; j++)
                kill(kids[j], SIGKILL);
            TH_FAIL("children still running after %us (deadlock after fork?)",
                    limit);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        if (bad++ == 0) {
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
                snprintf(first, sizeof first, "child %zu hung (killed by its alarm)", i);
            else if (WIFSIGNALED(status))
                snprintf(first, sizeof first, "child %zu killed by signal %d", i,
                         WTERMSIG(status));
            else
                snprintf(first, sizeof first, "child %zu exited with status %d", i,
                         WEXITSTATUS(status));
        }
    }
    alarm(0);
    free(kids);
    CHECKF(bad == 0, "%zu of %zu children failed; first: %s", bad, nforks, first);
}

/* fork from a thread other than main, while main allocates. */
static void *forker(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            alarm(CHILD_TIMEOUT_S);
            child_work(i);
            _exit(0);
        }
        if (pid < 0)
            return (void *)1;
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            return (void *)2;
    }
    return NULL;
}

static void t_fork_from_thread(void)
{
    pthread_t t;
    size_t n = th_scale(20, 10);
    CHECK(pthread_create(&t, NULL, forker, (void *)(uintptr_t)n) == 0);
    void *res = (void *)1;
    /* Allocate until the forker is done. */
    for (;;) {
        void *p[32];
        for (int i = 0; i < 32; i++)
            p[i] = malloc((size_t)i * 100 + 1);
        for (int i = 0; i < 32; i++)
            free(p[i]);
        if (pthread_tryjoin_np(t, &res) == 0)
            break;
    }
    CHECKF(res == NULL, "a child forked from a thread failed (%s)",
           res == (void *)1 ? "fork" : "bad exit");
}

static const th_test_t tests[] = {
    TH_TEST(t_fork_while_threads_allocate),
    TH_TEST(t_fork_from_thread),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
