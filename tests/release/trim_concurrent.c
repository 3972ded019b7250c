/* Releasing while other threads allocate: no block may lose its contents.
 *
 * Three workers malloc and free blocks of the same size classes (24 B ..
 * 1 MiB, small, slab-sized and page runs), fill each with a pattern and
 * check it before freeing; a quarter of their frees are remote (blocks are
 * swapped through a shared mailbox), every 1024 operations a worker
 * frees all it holds (emptying whole slabs for the releaser), and one block
 * in eight comes from calloc and must read zero — also when it reuses pages
 * that were released with MADV_FREE (purge:free), which may still hold old
 * data.  Meanwhile the main thread calls malloc_trim(0) and tide_release
 * (everything, 1 MiB, under a time budget) in a loop for 1.5 s and at least
 * 3000 worker operations (a loaded machine takes longer).  At the end
 * every block is checked and tide_check() runs in each worker and in main.
 *
 * One test per configuration: default, decay_ms:0 (the background thread
 * releases at once, racing the workers too), purge:free with a short decay,
 * and decay_ms:0 with process_madvise:false (one madvise per range).
 */
#include "release.h"

enum { WORKERS = 3, SLOTS = 512, MAILBOX = 64, MIN_OPS = 3000 };

static const size_t sizes[] = {24,   48,    100,   256,       1000,      4000,
                               9000, 16000, 40000, 64 * 1024, 300 * 1024, 1024 * 1024};
enum { NSIZES = sizeof sizes / sizeof *sizes };

typedef struct {
    void *p;
    size_t n;
    uint64_t tag;
} blk_t;

/* Blocks in transit between workers, each slot under its own lock. */
static struct {
    pthread_mutex_t mu;
    blk_t b;
} mailbox[MAILBOX];
static int stop;
static size_t ops_done[WORKERS];
static size_t ops_live; /* all workers' operations so far (relaxed) */

static void check_blk(const blk_t *b)
{
    size_t bad = th_verify(b->p, b->n, b->tag);
    if (bad == SIZE_MAX)
        return;
    /* What is there instead: zeros (pages released while in use) or
       another block's pattern (handed out twice)? */
    const unsigned char *c = b->p;
    size_t page_end = (((uintptr_t)(c + bad) | 4095) + 1) - (uintptr_t)c;
    if (page_end > b->n)
        page_end = b->n;
    bool zero = th_all_zero(c + bad, page_end - bad);
    TH_FAIL("block %p size %zu (tag %" PRIx64 "): byte %zu overwritten: reads "
            "%02x %02x %02x %02x, the rest of its page %s",
            b->p, b->n, b->tag, bad, c[bad], bad + 1 < b->n ? c[bad + 1] : 0,
            bad + 2 < b->n ? c[bad + 2] : 0, bad + 3 < b->n ? c[bad + 3] : 0,
            zero ? "reads zero" : "is not zero");
}

static void new_blk(blk_t *b, th_rng_t *r, uint64_t tag)
{
    size_t n = sizes[th_range(r, 0, NSIZES - 1)];
    n -= th_range(r, 0, n / 8); /* not always the class size */
    bool zero = th_range(r, 0, 7) == 0;
    void *p = zero ? calloc(1, n) : malloc(n);
    CHECKF(p != NULL, "%s(%zu) failed", zero ? "calloc" : "malloc", n);
    if (zero)
        CHECKF(th_all_zero(p, n), "calloc(1, %zu) = %p is not zeroed (byte %zu)", n, p,
               th_find_ne(p, 0, n, 0));
    b->p = p;
    b->n = n;
    b->tag = tag;
    th_fill(p, n, tag);
}

/* Swaps *b with a mailbox slot's block; checks and frees what came out. */
static void mail(blk_t *b, th_rng_t *r)
{
    int i = (int)th_range(r, 0, MAILBOX - 1);
    pthread_mutex_lock(&mailbox[i].mu);
    blk_t got = mailbox[i].b;
    mailbox[i].b = *b;
    pthread_mutex_unlock(&mailbox[i].mu);
    b->p = NULL;
    if (got.p) {
        check_blk(&got);
        free(got.p); /* most likely allocated by another worker */
    }
}

static void *worker(void *arg)
{
    int id = (int)(uintptr_t)arg;
    th_rng_t r = {th_seed((uint64_t)id + 10)};
    static blk_t slots_all[WORKERS][SLOTS];
    blk_t *slots = slots_all[id];
    uint64_t tag = (uint64_t)id << 48;
    size_t ops = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        blk_t *b = &slots[th_range(&r, 0, SLOTS - 1)];
        if (b->p) {
            check_blk(b);
            if (th_range(&r, 0, 3) == 0) {
                mail(b, &r);
            } else {
                free(b->p);
                b->p = NULL;
            }
        }
        new_blk(b, &r, tag++);
        __atomic_fetch_add(&ops_live, 1, __ATOMIC_RELAXED);
        if (++ops % 1024 == 0) {
            for (int i = 0; i < SLOTS; i++) {
                if (slots[i].p) {
                    check_blk(&slots[i]);
                    free(slots[i].p);
                    slots[i].p = NULL;
                }
            }
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p)
            check_blk(&slots[i]);
    rel_check();
    for (int i = 0; i < SLOTS; i++) {
        free(slots[i].p);
        slots[i].p = NULL;
    }
    ops_done[id] = ops;
    return NULL;
}

static int sub_trim_loop(void)
{
    pthread_t t[WORKERS];
    for (int i = 0; i < MAILBOX; i++)
        pthread_mutex_init(&mailbox[i].mu, NULL);
    rel_start_workers(t, WORKERS, worker);
    uint64_t end = rel_loop_end();
    size_t calls = 0, released = 0;
    int trims = 0;
    while (rel_loop_more(end, &ops_live, MIN_OPS)) {
        trims += malloc_trim(0);
        released += rel_release(SIZE_MAX, 0);
        released += rel_release(MIB, 0);
        released += rel_release(SIZE_MAX, 100);
        calls++;
        if (calls % 16 == 0) {
            rel_stats_t st;
            rel_stats_try(&st);
            CHECKF(st.allocated < ((size_t)1 << 40), "tide_stats: allocated %zu",
                   st.allocated);
        }
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < MAILBOX; i++) {
        if (mailbox[i].b.p) {
            check_blk(&mailbox[i].b);
            free(mailbox[i].b.p);
        }
    }
    rel_check();
    size_t ops = 0;
    for (int i = 0; i < WORKERS; i++)
        ops += ops_done[i];
    printf("%zu release rounds (%d trims released something, %zu MiB), %zu worker ops\n",
           calls, trims, released / MIB, ops);
    return 0;
}

static void t_trim_default(void)
{
    rel_need_tide();
    rel_run_sub("sub_trim_loop", NULL, 50);
}

static void t_trim_decay0(void)
{
    rel_need_tide();
    rel_run_sub("sub_trim_loop", "decay_ms:0", 50);
}

static void t_trim_purge_free(void)
{
    rel_need_tide();
    rel_run_sub("sub_trim_loop", "purge:free,decay_ms:5", 50);
}

static void t_trim_nobatch(void)
{
    rel_need_tide();
    rel_run_sub("sub_trim_loop", "decay_ms:0,process_madvise:false", 50);
}

static const th_test_t tests[] = {
    TH_TEST(t_trim_default),
    TH_TEST(t_trim_nobatch),
    TH_TEST(t_trim_decay0),
    TH_TEST(t_trim_purge_free),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_trim_loop),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
