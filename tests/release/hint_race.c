/* Owner frees against sweeps: the free fast path's hint must never send an
 * object to a slab that a sweep is giving back and another heap reusing.
 *
 * free finds its span through a direct-mapped hint table (src/pagemap.h)
 * whose entry may name another span: any that ever covered a page sharing
 * the entry, possibly a slab the release layer's sweep is giving back at
 * that moment, its descriptor taken for a new slab of another heap. The
 * fast path must then fall to the slow path, never push the object onto
 * the reused slab's owner-only list (src/heap.h, td_heap_free).
 *
 * Four workers (more threads than cores, so frees are preempted midway)
 * each churn small blocks of their own (local frees: the fast path), and
 * in between make the slabs sweeps give back: a batch of several slabs'
 * worth of one class sent to the next worker, which frees it all (remote
 * frees: the full slabs die), and a batch freed at once by its owner (an
 * emptied slab becomes a spare). With decay_ms:0 the background thread
 * sweeps every millisecond, and the main thread releases everything (parking
 * included) in a loop. Every block carries a pattern, checked before each
 * free and at the end (a block handed out twice is overwritten); any false
 * double-free report or free-list check aborts the sub; tide_check runs in
 * every worker and in main.
 *
 * Built normally the table has 2^32 entries and hints are nearly always
 * right; `make test` also runs this against a build with a 64-entry table
 * (-DTD_PM_FLAT_BITS=6), where nearly every hint names another span.
 */
#include "release.h"

enum { WORKERS = 4, RING = 256, BATCH_MAX = 1536, MIN_OPS = 20000 };

static const size_t churn_sizes[] = {16, 24, 32, 48, 64, 100, 128, 200, 256, 512, 1000};
static const size_t batch_sizes[] = {128, 256, 512, 1024, 2048, 4096};
#define NELEM(a) (sizeof(a) / sizeof *(a))

typedef struct {
    void *p;
    size_t n;
    uint64_t tag;
} blk_t;

/* One batch in flight to each worker, under its own lock. */
static struct {
    pthread_mutex_t mu;
    size_t count;
    blk_t b[BATCH_MAX];
} inbox[WORKERS];

static int stop;
static size_t ops_live;   /* all workers' operations so far (relaxed) */
static size_t frees_local[WORKERS], frees_remote[WORKERS];

static void check_blk(const blk_t *b)
{
    size_t bad = th_verify(b->p, b->n, b->tag);
    if (bad != SIZE_MAX)
        TH_FAIL("block %p size %zu (tag %" PRIx64 "): byte %zu overwritten (reads %02x): "
                "handed out twice?",
                b->p, b->n, b->tag, bad, ((const unsigned char *)b->p)[bad]);
}

static void new_blk(blk_t *b, size_t n, uint64_t tag)
{
    void *p = malloc(n);
    CHECKF(p != NULL, "malloc(%zu) failed", n);
    b->p = p;
    b->n = n;
    b->tag = tag;
    th_fill(p, n, tag);
}

static void free_blk(blk_t *b)
{
    check_blk(b);
    free(b->p);
    b->p = NULL;
}

/* Frees whatever batch was sent to worker id (remote frees, mostly). */
static void drain_inbox(int id, blk_t *tmp)
{
    pthread_mutex_lock(&inbox[id].mu);
    size_t n = inbox[id].count;
    memcpy(tmp, inbox[id].b, n * sizeof *tmp);
    inbox[id].count = 0;
    pthread_mutex_unlock(&inbox[id].mu);
    for (size_t i = 0; i < n; i++)
        free_blk(&tmp[i]);
    frees_remote[id] += n;
}

static void *worker(void *arg)
{
    int id = (int)(uintptr_t)arg;
    th_rng_t r = {th_seed((uint64_t)id + 40)};
    static blk_t rings[WORKERS][RING], batches[WORKERS][BATCH_MAX], tmps[WORKERS][BATCH_MAX];
    blk_t *ring = rings[id], *batch = batches[id], *tmp = tmps[id];
    uint64_t tag = (uint64_t)(id + 1) << 48;
    size_t local = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        /* Churn: local frees into this heap's current and partial slabs. */
        for (int k = 0; k < 64; k++) {
            blk_t *b = &ring[th_range(&r, 0, RING - 1)];
            if (b->p) {
                free_blk(b);
                local++;
            }
            new_blk(b, churn_sizes[th_range(&r, 0, NELEM(churn_sizes) - 1)], tag++);
        }
        drain_inbox(id, tmp);
        /* Three slabs' worth (of 64 KiB) of one class: the first ones fill
           up and leave the current slot. */
        size_t size = batch_sizes[th_range(&r, 0, NELEM(batch_sizes) - 1)];
        size_t n = 3 * 64 * KIB / size;
        if (n > BATCH_MAX)
            n = BATCH_MAX;
        for (size_t i = 0; i < n; i++)
            new_blk(&batch[i], size, tag++);
        int to = (id + 1) % WORKERS;
        bool sent = false;
        if (th_range(&r, 0, 1) == 0) {
            /* Remote: the next worker frees them all; full slabs die. */
            pthread_mutex_lock(&inbox[to].mu);
            if (inbox[to].count == 0) {
                memcpy(inbox[to].b, batch, n * sizeof *batch);
                inbox[to].count = n;
                sent = true;
            }
            pthread_mutex_unlock(&inbox[to].mu);
        }
        if (!sent) {
            /* Local, all at once: emptied slabs, one kept as a spare. */
            for (size_t i = 0; i < n; i++)
                free_blk(&batch[i]);
            local += n;
        }
        __atomic_fetch_add(&ops_live, 64 + n, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < RING; i++)
        if (ring[i].p)
            check_blk(&ring[i]);
    rel_check();
    for (int i = 0; i < RING; i++)
        if (ring[i].p) {
            free_blk(&ring[i]);
            local++;
        }
    frees_local[id] = local;
    return NULL;
}

static int sub_hint_race(void)
{
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        pthread_mutex_init(&inbox[i].mu, NULL);
    rel_start_workers(t, WORKERS, worker);
    uint64_t end = rel_loop_end();
    size_t calls = 0, released = 0;
    while (rel_loop_more(end, &ops_live, MIN_OPS)) {
        released += rel_release(SIZE_MAX, 0);
        calls++;
        struct timespec ts = {0, 200000};   /* let the background passes in too */
        nanosleep(&ts, NULL);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < WORKERS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    static blk_t tmp[BATCH_MAX];
    size_t local = 0, remote = 0;
    for (int i = 0; i < WORKERS; i++) {
        drain_inbox(i, tmp);
        local += frees_local[i];
        remote += frees_remote[i];
    }
    rel_check();
    rel_stats_t st;
    rel_stats(&st);
    printf("%zu local and %zu remote frees; %zu explicit releases (%zu MiB), "
           "%zu background passes\n",
           local, remote, calls, released / MIB, st.bg_wakeups);
    return 0;
}

static void t_hint_race_decay0(void)
{
    rel_need_tide();
    rel_run_sub("sub_hint_race", "decay_ms:0", 60);
}

static const th_test_t tests[] = {
    TH_TEST(t_hint_race_decay0),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_hint_race),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
