/* The background thread does not keep the process alive, nor break exit.
 *
 * Each case runs a child (a sub of this program) that frees memory, waits
 * for its tide-release thread to exist, then ends; the child must exit with
 * status 0 within its 15 s alarm (a hang is killed by SIGALRM) and its
 * atexit handler — which itself allocates and frees, so the allocator is
 * used while the process goes down — must have run.
 *
 *   t_return_from_main   main returns 0 with the thread idle
 *   t_exit_while_busy    decay_ms:0, another thread keeps allocating and
 *                        freeing (the background thread busy) when main
 *                        calls exit(0)
 *   t_exit_from_thread   decay_ms:0, a second thread calls exit(0) while
 *                        main is blocked in pthread_join
 */
#include "release.h"

static void at_exit(void)
{
    void *p = malloc(MIB);
    if (p) {
        memset(p, 1, MIB);
        free(p);
    }
    for (int i = 0; i < 100; i++)
        free(malloc((size_t)i * 24 + 8));
    static const char msg[] = "atexit handler ran\n";
    if (write(1, msg, sizeof msg - 1) < 0)
        _exit(3);
}

static void free_some(void)
{
    static rel_burst_t b;
    rel_burst_init(&b, 16 * MIB);
    rel_burst_alloc(&b, 16 * MIB, 5, true);
    rel_burst_verify(&b);
    rel_burst_free(&b);
    rel_burst_done(&b);
    CHECKF(rel_wait_bg(10000) == 1, "no tide-release thread 10 s after freeing 16 MiB");
    CHECK(atexit(at_exit) == 0);
}

static void *churn(void *arg)
{
    (void)arg;
    for (unsigned i = 0;; i++) {
        void *p = malloc(MIB + (i % 5) * 4096);
        void *q = malloc(64 * KIB);
        void *s[64];
        for (int k = 0; k < 64; k++)
            s[k] = malloc((size_t)k * 32 + 16);
        if (p)
            memset(p, 1, MIB);
        if (q)
            memset(q, 2, 64 * KIB);
        free(p);
        free(q);
        for (int k = 0; k < 64; k++)
            free(s[k]);
    }
    return NULL;
}

static int sub_return_main(void)
{
    free_some();
    return 0;
}

static int sub_exit_while_busy(void)
{
    free_some();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, churn, NULL) == 0);
    rel_sleep_ms(200);
    exit(0);
}

static void *exiter(void *arg)
{
    (void)arg;
    void *p[256];
    for (int k = 0; k < 256; k++)
        p[k] = malloc(4096);
    for (int k = 0; k < 256; k++)
        free(p[k]);
    rel_sleep_ms(100);
    exit(0);
}

static int sub_exit_from_thread(void)
{
    free_some();
    pthread_t c, e;
    CHECK(pthread_create(&c, NULL, churn, NULL) == 0);
    CHECK(pthread_create(&e, NULL, exiter, NULL) == 0);
    pthread_join(e, NULL);
    TH_FAIL("pthread_join returned from a thread that called exit");
}

static void run_exit(const char *name, const char *conf)
{
    rel_need_tide();
    static rel_run_t r;
    rel_spawn(&r, name, conf, 15);
    rel_expect_ok(&r, name, conf);
    char line[300];
    CHECKF(strstr(r.out, "atexit handler ran\n") != NULL,
           "%s exited 0 but its atexit handler did not run: %s", name,
           rel_line(r.out, NULL, line, sizeof line));
    CHECKF(strstr(r.out, "tidemalloc:") == NULL, "%s: %s", name,
           rel_line(r.out, "tidemalloc:", line, sizeof line));
}

static void t_return_from_main(void)
{
    run_exit("sub_return_main", NULL);
}

static void t_exit_while_busy(void)
{
    run_exit("sub_exit_while_busy", "decay_ms:0");
}

static void t_exit_from_thread(void)
{
    run_exit("sub_exit_from_thread", "decay_ms:0");
}

static const th_test_t tests[] = {
    TH_TEST(t_return_from_main),
    TH_TEST(t_exit_while_busy),
    TH_TEST(t_exit_from_thread),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_return_main),
    REL_SUB(sub_exit_while_busy),
    REL_SUB(sub_exit_from_thread),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
