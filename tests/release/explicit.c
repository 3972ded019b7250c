/* Explicit release: tide_release(max_bytes, max_usec) and malloc_trim(pad).
 *
 * Every sub runs with TIDEMALLOC_CONF=background:false,decay_ms:600000, so
 * that nothing is released behind the test's back (no thread, and nothing is
 * old enough for the slow paths to release): what the calls return can be
 * compared with the RSS drop measured around them.
 *
 *   t_release_all        after ~128 MiB is allocated and freed,
 *                        tide_release(SIZE_MAX, 0) returns within 10% (or
 *                        4 MiB) of the RSS drop, and a second call ~0
 *   t_release_bounded    tide_release(1 MiB, 0) releases something, at most
 *                        2 MiB (one 1 MiB batch of overshoot)
 *   t_release_time_budget  tide_release(SIZE_MAX, 1) in a loop makes
 *                        progress (a call may stop after one batch, but
 *                        not before it) and adds up to the RSS drop, with
 *                        eight idle threads' heaps to sweep too
 *   t_release_idle_thread  objects of an idle thread, freed by another:
 *                        tide_release from a third releases their slabs
 *   t_release_reused_remote  a slab whose remote list was counted by one
 *                        release, then collected, and whose object heads
 *                        the remote list again, is not released while
 *                        another of its objects is live
 *   t_release_own_remote  a thread's current slab whose objects another
 *                        thread freed: tide_release from its owner gives
 *                        it back (its remote frees are nobody's to
 *                        announce, and its free list was not empty)
 *   t_release_tables     after 1 GiB of 1 MiB blocks is freed, a release
 *                        leaves RSS within 1 MiB of where it was before
 *                        them: the pagemap pages their entries were on go
 *                        back too (4 MiB of them stayed before: 2 MiB of
 *                        tree leaves and 2 MiB of flat table); and after
 *                        1 GiB of 4 MiB blocks (own mappings) is freed,
 *                        RSS is within 1 MiB of where it was before them
 *                        with no release at all (their entry pages, 2 MiB,
 *                        stayed before)
 *   t_malloc_trim        malloc_trim(0) returns 1 when something was
 *                        released, 0 when nothing was left; malloc_trim(pad)
 *                        keeps about pad bytes
 *   t_churn_footprint    one thread replaces random blocks of four sizes,
 *                        each size's live blocks a little over a 64 KiB
 *                        slab's worth: anonymous RSS grows by at most 1.5
 *                        times the live bytes (1.35 here: the refill takes
 *                        a partly used slab's free blocks before it carves
 *                        new ones; carving first touched both slabs of each
 *                        size whole, 2.0 times)
 */
#include "release.h"

#include <sys/prctl.h>

#define CONF "background:false,decay_ms:600000"

static long max_l(long a, long b)
{
    return a > b ? a : b;
}

/* |got - want| within 10% of want or 4 MiB. */
static bool near(long got, long want)
{
    long d = got > want ? got - want : want - got;
    return d <= max_l(want / 10, (long)(4 * MIB));
}

/* Allocates and frees about mib MiB in the main thread. */
static void burst(size_t mib, uint64_t salt)
{
    static rel_burst_t b;
    rel_burst_init(&b, mib * MIB);
    rel_burst_alloc(&b, mib * MIB, th_seed(salt), false);
    rel_burst_free(&b);
    rel_burst_done(&b);
}

static int sub_release_all(void)
{
    rel_release(SIZE_MAX, 0);
    long rss0 = rel_rss();
    burst(128, 1);
    long before = rel_rss();
    CHECKF(before - rss0 >= (long)(48 * MIB),
           "128 MiB allocated and freed, RSS %ld -> %ld MiB: freed memory left "
           "RSS though nothing should release it yet",
           REL_MIB(rss0), REL_MIB(before));
    size_t r = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    long drop = before - after;
    CHECKF(drop >= (long)(48 * MIB), "tide_release(SIZE_MAX, 0): RSS %ld -> %ld MiB",
           REL_MIB(before), REL_MIB(after));
    CHECKF(near((long)r, drop),
           "tide_release(SIZE_MAX, 0) = %zu KiB, but RSS fell by %ld KiB", r / KIB,
           drop / (long)KIB);
    size_t r2 = rel_release(SIZE_MAX, 0);
    CHECKF(r2 <= 64 * KIB, "tide_release(SIZE_MAX, 0) right after another = %zu KiB",
           r2 / KIB);
    rel_stats_t st;
    rel_stats(&st);
    CHECKF(st.bg_running == 0 && rel_bg_threads() == 0,
           "background:false: bg_running %d, %d tide-release threads", st.bg_running,
           rel_bg_threads());
    return 0;
}

static int sub_release_bounded(void)
{
    rel_release(SIZE_MAX, 0);
    burst(64, 2);
    long before = rel_rss();
    size_t r = rel_release(MIB, 0);
    long after = rel_rss();
    CHECKF(r > 0, "tide_release(1 MiB, 0) released nothing with ~64 MiB free");
    CHECKF(r <= 2 * MIB, "tide_release(1 MiB, 0) = %zu KiB, want <= 2048", r / KIB);
    CHECKF(before - after <= (long)(2 * MIB + 512 * KIB),
           "tide_release(1 MiB, 0): RSS fell by %ld KiB", (before - after) / (long)KIB);
    /* Small steps too. */
    for (int i = 0; i < 20; i++) {
        size_t s = rel_release(4096, 0);
        CHECKF(s <= MIB + 4096, "tide_release(4096, 0) = %zu KiB", s / KIB);
    }
    size_t rest = rel_release(SIZE_MAX, 0);
    CHECKF(rest >= 8 * MIB, "the rest after small releases: %zu KiB", rest / KIB);
    CHECKF(rel_release(SIZE_MAX, 0) <= 64 * KIB, "tide_release found more after all");
    return 0;
}

/* Threads that allocated in many size classes, then wait idle: their heaps
   make each sweep of the heaps take a while. */
static pthread_mutex_t idle_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle_cv = PTHREAD_COND_INITIALIZER;
static int idle_go, idle_ready;

static void *idle_heap(void *arg)
{
    (void)arg;
    void *p[64];
    for (int i = 0; i < 64; i++)
        p[i] = malloc((size_t)i * 256 + 8);
    for (int i = 0; i < 64; i += 2)
        free(p[i]);
    pthread_mutex_lock(&idle_mu);
    idle_ready++;
    pthread_cond_broadcast(&idle_cv);
    while (!idle_go)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    for (int i = 1; i < 64; i += 2)
        free(p[i]);
    return NULL;
}

static int sub_release_time_budget(void)
{
    enum { NIDLE = 8 };
    pthread_t t[NIDLE];
    for (int i = 0; i < NIDLE; i++)
        CHECK(pthread_create(&t[i], NULL, idle_heap, NULL) == 0);
    pthread_mutex_lock(&idle_mu);
    while (idle_ready < NIDLE)
        pthread_cond_wait(&idle_cv, &idle_mu);
    pthread_mutex_unlock(&idle_mu);
    rel_release(SIZE_MAX, 0);
    burst(96, 3);
    long before = rel_rss();
    size_t sum = 0, calls = 0;
    int zeros = 0;
    while (zeros < 5 && calls < 100000) {
        size_t r = rel_release(SIZE_MAX, 1);
        sum += r;
        calls++;
        zeros = r ? 0 : zeros + 1;
    }
    long after = rel_rss();
    size_t left = rel_release(SIZE_MAX, 0);
    CHECKF(left <= 64 * KIB,
           "tide_release(SIZE_MAX, 1) returned 0 five times in a row (after %zu "
           "calls, %zu KiB) while %zu KiB were left to release",
           calls, sum / KIB, left / KIB);
    CHECKF(before - after >= (long)(32 * MIB), "RSS %ld -> %ld MiB", REL_MIB(before),
           REL_MIB(after));
    CHECKF(near((long)sum, before - after),
           "%zu calls of tide_release(SIZE_MAX, 1) returned %zu KiB in all, RSS fell "
           "by %ld KiB",
           calls, sum / KIB, (before - after) / (long)KIB);
    pthread_mutex_lock(&idle_mu);
    idle_go = 1;
    pthread_cond_broadcast(&idle_cv);
    pthread_mutex_unlock(&idle_mu);
    for (int i = 0; i < NIDLE; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    return 0;
}

/* ---- an idle owner ------------------------------------------------------- */

enum { IDLE_N = 64 * 1024, IDLE_SIZE = 1024 }; /* 64 MiB of small blocks */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int phase;
static void **idle_blocks;

static void set_phase(int p)
{
    pthread_mutex_lock(&mu);
    phase = p;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void wait_phase(int p)
{
    pthread_mutex_lock(&mu);
    while (phase < p)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void *idle_owner(void *arg)
{
    (void)arg;
    for (int i = 0; i < IDLE_N; i++) {
        idle_blocks[i] = malloc(IDLE_SIZE);
        if (idle_blocks[i] == NULL)
            abort();
        memset(idle_blocks[i], i, IDLE_SIZE);
    }
    set_phase(1);
    wait_phase(2); /* no allocator call until the test is over */
    return NULL;
}

static int sub_release_idle_thread(void)
{
    idle_blocks = rel_map(IDLE_N * sizeof *idle_blocks);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, idle_owner, NULL) == 0);
    wait_phase(1);
    rel_release(SIZE_MAX, 0);
    for (int i = 0; i < IDLE_N; i++) /* every free remote */
        free(idle_blocks[i]);
    long before = rel_rss();
    size_t r = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    CHECKF(before - after >= (long)(48 * MIB) && r >= 48 * MIB,
           "64 MiB of an idle thread's blocks freed by another thread: "
           "tide_release(SIZE_MAX, 0) = %zu KiB, RSS %ld -> %ld MiB",
           r / KIB, REL_MIB(before), REL_MIB(after));
    CHECKF(near((long)r, before - after), "tide_release = %zu KiB, RSS fell by %ld KiB",
           r / KIB, (before - after) / (long)KIB);
    set_phase(2);
    CHECK(pthread_join(t, NULL) == 0);
    rel_check();
    return 0;
}

/* ---- the caller's own current slab, emptied by remote frees ------------ */

enum { OWN_N = 5, OWN_SIZE = 512 };
static void *own_blocks[OWN_N];
static size_t own_before, own_after;

static size_t small_allocated(void)
{
    rel_stats_t st;
    rel_stats(&st);
    return st.small_allocated;
}

static void own_alloc(void)
{
    for (int i = 0; i < OWN_N; i++) {
        own_blocks[i] = malloc(OWN_SIZE);
        CHECK(own_blocks[i] != NULL);
        memset(own_blocks[i], i, OWN_SIZE);
    }
}

static void own_release(void)
{
    own_before = small_allocated();
    rel_release(SIZE_MAX, 0);
    own_after = small_allocated();
}

static int sub_release_own_remote(void)
{
    rel_owner_start();
    rel_on_owner(own_alloc);
    for (int i = 0; i < OWN_N; i++)
        free(own_blocks[i]);   /* remote: main is not the owner */
    rel_on_owner(own_release);
    CHECKF(own_before >= own_after + (OWN_N - 1) * OWN_SIZE,
           "the owner's %d blocks of %d bytes all freed by another thread, yet the "
           "owner's tide_release left small_allocated at %zu (was %zu)",
           OWN_N, OWN_SIZE, own_after, own_before);
    rel_owner_stop();
    rel_check();
    return 0;
}

/* ---- a slab's remote list reused ---------------------------------------- */
/* The sweep must not take a slab with a live object for an abandoned one.
   Owner O allocates a slab's worth and more of one class, keeps X, Y, Z of
   the first slab and frees the rest; main frees Y then X (remote list
   [X, Y]) and releases (the sweep sees 2 remote frees, 3 out: alive). O
   allocates again: it collects X and Y and hands X out first; it frees all
   but X; main frees X again (remote list [X] — the same head as before)
   and releases. Z is still live: its slab must not be released. */

enum { ABA_N = 4096, ABA_SIZE = 1000 };
static void *aba_a[ABA_N], *aba_b[ABA_N];
static void *aba_x, *aba_y, *aba_z;
static int aba_found;
static void aba_step1(void)
{
    for (int i = 0; i < ABA_N; i++) {
        aba_a[i] = malloc(ABA_SIZE);
        CHECK(aba_a[i] != NULL);
        th_fill(aba_a[i], ABA_SIZE, (uint64_t)i);
    }
    aba_x = aba_a[0];
    aba_y = aba_a[1];
    aba_z = aba_a[2];
    for (int i = 3; i < ABA_N; i++)
        free(aba_a[i]);
}

static void aba_step2(void)
{
    for (int i = 0; i < ABA_N; i++) {
        aba_b[i] = malloc(ABA_SIZE);
        CHECK(aba_b[i] != NULL);
        if (aba_b[i] == aba_x)
            aba_found = 1;
        th_fill(aba_b[i], ABA_SIZE, (uint64_t)i + ABA_N);
    }
    for (int i = 0; i < ABA_N; i++)
        if (aba_b[i] != aba_x)
            free(aba_b[i]);
}

static int sub_release_reused_remote(void)
{
    rel_owner_start();
    rel_on_owner(aba_step1);
    free(aba_y);
    free(aba_x);
    rel_release(SIZE_MAX, 0);
    CHECK_PATTERN(aba_z, ABA_SIZE, 2);
    rel_on_owner(aba_step2);
    if (aba_found) {
        free(aba_x); /* the same object heads the remote list again */
        rel_release(SIZE_MAX, 0);
    } else {
        printf("(the owner did not hand the collected object out again first)\n");
    }
    size_t bad = th_verify(aba_z, ABA_SIZE, 2);
    CHECKF(bad == SIZE_MAX,
           "a live block lost its contents (byte %zu reads %02x) after tide_release: "
           "its slab was released while the object was out",
           bad, ((unsigned char *)aba_z)[bad]);
    rel_owner_stop();
    free(aba_z);
    if (!aba_found)
        free(aba_x);
    rel_check();
    return 0;
}

/* Pointers in .bss: the test must not malloc its bookkeeping. */
enum { TABLES_N = 1024 };
static void *tables_blocks[TABLES_N];

static int sub_release_tables(void)
{
    rel_release(SIZE_MAX, 0);
    long rss0 = rel_rss();
    for (int i = 0; i < TABLES_N; i++) {
        tables_blocks[i] = malloc(MIB);   /* page-run blocks: entries at both ends */
        CHECK(tables_blocks[i] != NULL);
        *(volatile char *)tables_blocks[i] = 1;   /* one page of data each */
    }
    for (int i = 0; i < TABLES_N; i++)
        free(tables_blocks[i]);
    long before = rel_rss();
    CHECKF(before - rss0 >= (long)(3 * MIB),
           "1024 blocks of 1 MiB, a page of each written, then freed: RSS %ld -> %ld KiB",
           rss0 / (long)KIB, before / (long)KIB);
    rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    CHECKF(after - rss0 <= (long)MIB,
           "1 GiB of 1 MiB blocks freed and released: RSS %ld KiB before them, %ld KiB "
           "after (the pagemap's pages under the freed runs stayed resident?)",
           rss0 / (long)KIB, after / (long)KIB);

    rss0 = rel_rss();
    for (int i = 0; i < TABLES_N / 4; i++) {
        tables_blocks[i] = malloc(4 * MIB);   /* own mappings: one entry each */
        CHECK(tables_blocks[i] != NULL);
        *(volatile char *)tables_blocks[i] = 1;
    }
    before = rel_rss();
    CHECKF(before - rss0 >= (long)(2 * MIB), "256 blocks of 4 MiB, a page of each written: "
           "RSS %ld -> %ld KiB", rss0 / (long)KIB, before / (long)KIB);
    for (int i = 0; i < TABLES_N / 4; i++)
        free(tables_blocks[i]);
    after = rel_rss();
    CHECKF(after - rss0 <= (long)MIB,
           "1 GiB of 4 MiB blocks freed: RSS %ld KiB before them, %ld KiB after (the pages "
           "of their pagemap entries stayed resident?)",
           rss0 / (long)KIB, after / (long)KIB);
    return 0;
}

static int sub_malloc_trim(void)
{
    rel_release(SIZE_MAX, 0);
    CHECKF(malloc_trim(0) == 0, "malloc_trim(0) = 1 with nothing to release");
    burst(32, 4);
    CHECKF(malloc_trim(0) == 1, "malloc_trim(0) = 0 after freeing 32 MiB");
    CHECKF(malloc_trim(0) == 0, "malloc_trim(0) = 1 right after another");

    /* pad: keep that much free memory resident. */
    burst(96, 5);
    long before = rel_rss();
    int rc = malloc_trim((size_t)1 << 40);
    long after = rel_rss();
    CHECKF(rc == 0, "malloc_trim(1 TiB) = %d with ~96 MiB free", rc);
    CHECKF(before - after <= (long)(4 * MIB),
           "malloc_trim(1 TiB) with ~96 MiB free: RSS %ld -> %ld MiB", REL_MIB(before),
           REL_MIB(after));
    before = rel_rss();
    rc = malloc_trim(32 * MIB);
    after = rel_rss();
    CHECKF(rc == 1, "malloc_trim(32 MiB) = %d with ~96 MiB free", rc);
    CHECKF(before - after >= (long)(40 * MIB) && before - after <= (long)(88 * MIB),
           "malloc_trim(32 MiB) with ~96 MiB free: RSS %ld -> %ld MiB (want a ~64 MiB "
           "drop)",
           REL_MIB(before), REL_MIB(after));
    CHECKF(malloc_trim(0) == 1, "malloc_trim(0) = 0 with the 32 MiB pad left");
    CHECKF(malloc_trim(0) == 0, "malloc_trim(0) = 1 right after another");
    return 0;
}

/* Four sizes, each a class of its own; per size, live blocks 9/8 of what a
   64 KiB slab holds. The slot arrays are mmapped and touched first, and
   only anonymous memory is counted: the allocator's footprint alone is
   measured. */
#define FOOT_NSIZES 4
#define FOOT_ROUNDS 200

static int sub_churn_footprint(void)
{
    /* Base pages only: where transparent huge pages are "always", a first
       touch could make 2 MiB resident at once. */
    (void)prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    static const size_t sizes[FOOT_NSIZES] = { 160, 192, 224, 256 };
    size_t win[FOOT_NSIZES], total = 0, live = 0;
    for (int k = 0; k < FOOT_NSIZES; k++) {
        win[k] = 64 * KIB / sizes[k] * 9 / 8;
        total += win[k];
        live += win[k] * sizes[k];
    }
    void **slot = mmap(NULL, total * sizeof *slot, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(slot != MAP_FAILED);
    uint8_t *cls = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(cls != MAP_FAILED);
    memset(slot, 0, total * sizeof *slot);
    memset(cls, 0, total);
    for (int k = 0; k < FOOT_NSIZES; k++)   /* the heap and its tables, touched */
        free(malloc(sizes[k]));
    long rss0 = rel_rss_of(true);
    size_t n = 0;
    for (int k = 0; k < FOOT_NSIZES; k++)
        for (size_t i = 0; i < win[k]; i++, n++) {
            cls[n] = (uint8_t)k;
            slot[n] = malloc(sizes[k]);
            CHECK(slot[n] != NULL);
            memset(slot[n], 0x5a, sizes[k]);
        }
    th_rng_t r = { th_seed(7) };
    for (size_t j = 0; j < FOOT_ROUNDS * total; j++) {
        size_t i = th_range(&r, 0, total - 1);
        free(slot[i]);
        slot[i] = malloc(sizes[cls[i]]);
        CHECK(slot[i] != NULL);
        memset(slot[i], 0x5a, sizes[cls[i]]);
    }
    long grown = rel_rss_of(true) - rss0;
    CHECKF(grown <= (long)live * 15 / 10,
           "%zu KiB live in blocks of 160-256 bytes, replaced at random: RSS grew by "
           "%ld KiB, over 1.5 times the live bytes",
           live / KIB, grown / (long)KIB);
    for (size_t i = 0; i < total; i++)
        free(slot[i]);
    munmap(slot, total * sizeof *slot);
    munmap(cls, total);
    return 0;
}

static void t_release_all(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_all", CONF, 40);
}

static void t_release_bounded(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_bounded", CONF, 40);
}

static void t_release_time_budget(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_time_budget", CONF, 40);
}

static void t_release_idle_thread(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_idle_thread", CONF, 40);
}

static void t_release_reused_remote(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_reused_remote", CONF, 40);
}

static void t_release_own_remote(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_own_remote", CONF, 40);
}

static void t_release_tables(void)
{
    rel_need_tide();
    rel_run_sub("sub_release_tables", CONF, 40);
}

static void t_malloc_trim(void)
{
    rel_need_tide();
    rel_run_sub("sub_malloc_trim", CONF, 40);
}

static void t_churn_footprint(void)
{
    rel_need_tide();
    rel_run_sub("sub_churn_footprint", CONF, 40);
}

static const th_test_t tests[] = {
    TH_TEST(t_release_all),
    TH_TEST(t_release_bounded),
    TH_TEST(t_release_time_budget),
    TH_TEST(t_release_idle_thread),
    TH_TEST(t_release_reused_remote),
    TH_TEST(t_release_own_remote),
    TH_TEST(t_release_tables),
    TH_TEST(t_malloc_trim),
    TH_TEST(t_churn_footprint),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_release_all),
    REL_SUB(sub_release_bounded),
    REL_SUB(sub_release_time_budget),
    REL_SUB(sub_release_idle_thread),
    REL_SUB(sub_release_reused_remote),
    REL_SUB(sub_release_own_remote),
    REL_SUB(sub_release_tables),
    REL_SUB(sub_malloc_trim),
    REL_SUB(sub_churn_footprint),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
