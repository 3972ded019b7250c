/* Randomized model check of the whole API.
 *
 * A table of slots models the heap: each live slot holds a block, its
 * requested size, required alignment and pattern tag.  Random operations
 * (malloc, calloc, realloc, reallocarray, aligned_alloc, posix_memalign,
 * memalign, free, free_sized, free_aligned_sized) run against it; every block
 * is filled with its pattern, verified before it is freed or reallocated
 * (realloc must keep the common prefix), alignment is checked on each
 * allocation, and periodically all live blocks are sorted by address to check
 * that none overlap (using malloc_usable_size).  The model is the reference:
 * any difference is an allocator bug.
 *
 * t_private: several threads, each with its own table, then a global overlap
 * check across all tables.  t_shared: threads share one table under striped
 * locks, so blocks are reallocated and freed by threads other than their
 * allocator; main checks everything between phases.
 */
#include "../lib/th.h"

#include <malloc.h>
#include <pthread.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

extern void free_sized(void *, size_t) __attribute__((weak));
extern void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));
typedef void free_sized_fn(void *, size_t);
typedef void free_aligned_sized_fn(void *, size_t, size_t);
static free_sized_fn *fs_fn;
static free_aligned_sized_fn *fas_fn;

typedef enum {
    K_MALLOC,
    K_ALIGNED_ALLOC, /* size is a multiple of align: free_aligned_sized ok */
    K_OTHER_ALIGNED, /* posix_memalign / memalign */
} kind_t;

typedef struct {
    unsigned char *p; /* NULL: empty */
    size_t n;         /* requested size */
    size_t align;     /* alignment the block was requested with */
    kind_t kind;
    uint64_t tag;
} slot_t;

static size_t rand_size(th_rng_t *r)
{
    unsigned d = (unsigned)th_range(r, 0, 999);
    if (d < 700)
        return th_range(r, 0, 256);
    if (d < 975)
        return th_logsize(r, 256, 64 * KIB);
    if (d < 997)
        return th_logsize(r, 64 * KIB, 1 * MIB);
    return th_logsize(r, 1 * MIB, 6 * MIB);
}

static size_t rand_align(th_rng_t *r)
{
    if (th_range(r, 0, 49) == 0)
        return (size_t)1 << th_range(r, 14, 22); /* 16 KiB - 4 MiB */
    return (size_t)1 << th_range(r, 3, 13);
}

static void check_alignment(const slot_t *s, const char *op)
{
    size_t want = s->align;
    if (s->n >= 16 && want < 16)
        want = 16;
    CHECKF((uintptr_t)s->p % want == 0, "%s(%zu) = %p, not %zu-aligned", op, s->n,
           (void *)s->p, want);
    CHECKF(malloc_usable_size(s->p) >= s->n, "%s(%zu): usable size %zu", op, s->n,
           malloc_usable_size(s->p));
}

static void slot_alloc(slot_t *s, th_rng_t *r, uint64_t tag)
{
    size_t n = rand_size(r);
    unsigned op = (unsigned)th_range(r, 0, 99);
    const char *name;
    s->align = 1;
    s->kind = K_MALLOC;
    if (op < 45) {
        name = "malloc";
        s->p = malloc(n);
    } else if (op < 60) {
        name = "calloc";
        size_t m = th_range(r, 1, 8);
        n = (n + m - 1) / m * m;
        s->p = calloc(n / m ? n / m : 0, m);
        CHECKF(s->p != NULL, "calloc(%zu, %zu) failed", n / m, m);
        CHECKF(th_all_zero(s->p, n), "calloc(%zu, %zu) not zeroed", n / m, m);
    } else if (op < 65) {
        name = "realloc(NULL)";
        s->p = realloc(NULL, n);
    } else if (op < 80) {
        name = "aligned_alloc";
        s->align = rand_align(r);
        n = (n + s->align - 1) / s->align * s->align;
        if (n > 16 * MIB)
            n = s->align;
        s->kind = K_ALIGNED_ALLOC;
        s->p = aligned_alloc(s->align, n);
    } else if (op < 92) {
        name = "posix_memalign";
        s->align = rand_align(r);
        s->kind = K_OTHER_ALIGNED;
        void *p = NULL;
        int rc = posix_memalign(&p, s->align, n);
        CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", s->align, n, rc);
        s->p = p;
    } else {
        name = "memalign";
        s->align = rand_align(r);
        s->kind = K_OTHER_ALIGNED;
        s->p = memalign(s->align, n);
    }
    CHECKF(s->p != NULL, "%s(%zu) failed", name, n);
    s->n = n;
    s->tag = tag;
    check_alignment(s, name);
    th_fill(s->p, n, tag);
}

static void slot_verify(const slot_t *s)
{
    size_t bad = th_verify(s->p, s->n, s->tag);
    CHECKF(bad == SIZE_MAX, "live block %p (size %zu, align %zu): byte %zu changed",
           (void *)s->p, s->n, s->align, bad);
}

static void slot_free(slot_t *s, th_rng_t *r)
{
    slot_verify(s);
    unsigned how = (unsigned)th_range(r, 0, 3);
    if (how == 0 && s->kind == K_MALLOC && fs_fn)
        fs_fn(s->p, s->n);
    else if (how == 0 && s->kind == K_ALIGNED_ALLOC && fas_fn)
        fas_fn(s->p, s->align, s->n);
    else
        free(s->p);
    s->p = NULL;
}

static void slot_realloc(slot_t *s, th_rng_t *r, uint64_t tag)
{
    slot_verify(s);
    size_t n = th_range(r, 0, 3) == 0 ? s->n + th_range(r, 0, 64) : rand_size(r);
    unsigned char *q;
    if (th_range(r, 0, 4) == 0) {
        size_t m = th_range(r, 1, 16);
        n = (n + m - 1) / m * m;
        q = reallocarray(s->p, n / m, m);
    } else {
        q = realloc(s->p, n);
    }
    if (n == 0 && q == NULL) { /* glibc: realloc(p, 0) frees p */
        s->p = NULL;
        return;
    }
    CHECKF(q != NULL, "realloc(%p, %zu) failed", (void *)s->p, n);
    size_t keep = s->n < n ? s->n : n;
    size_t bad = th_verify(q, keep, s->tag);
    CHECKF(bad == SIZE_MAX, "realloc(%zu -> %zu): byte %zu of the kept prefix lost",
           s->n, n, bad);
    s->p = q;
    s->n = n;
    s->align = 1; /* realloc keeps only the fundamental alignment */
    s->kind = K_MALLOC;
    s->tag = tag;
    check_alignment(s, "realloc");
    th_fill(q, n, tag);
}

typedef struct {
    uintptr_t start, end;
} range_t;

static int cmp_range(const void *a, const void *b)
{
    const range_t *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Sorts live blocks by address and checks no two overlap.  ranges must
   have room for every live slot. */
static void check_no_overlap(slot_t *const *tables, const size_t *sizes,
                             int ntables, range_t *ranges)
{
    size_t nr = 0;
    for (int t = 0; t < ntables; t++)
        for (size_t i = 0; i < sizes[t]; i++) {
            const slot_t *s = &tables[t][i];
            if (!s->p)
                continue;
            size_t u = malloc_usable_size(s->p);
            CHECKF(u >= s->n, "usable size of %p is %zu < %zu", (void *)s->p, u, s->n);
            ranges[nr].start = (uintptr_t)s->p;
            ranges[nr].end = (uintptr_t)s->p + (u ? u : 1);
            nr++;
        }
    qsort(ranges, nr, sizeof *ranges, cmp_range);
    for (size_t i = 0; i + 1 < nr; i++)
        CHECKF(ranges[i].end <= ranges[i + 1].start,
               "live blocks overlap: [%#jx, %#jx) and [%#jx, %#jx)",
               (uintmax_t)ranges[i].start, (uintmax_t)ranges[i].end,
               (uintmax_t)ranges[i + 1].start, (uintmax_t)ranges[i + 1].end);
}

/* One random step on slot s. */
static void step(slot_t *s, th_rng_t *r, uint64_t tag)
{
    if (!s->p) {
        slot_alloc(s, r, tag);
        return;
    }
    unsigned op = (unsigned)th_range(r, 0, 9);
    if (op < 5)
        slot_free(s, r);
    else if (op < 8)
        slot_realloc(s, r, tag);
    else
        slot_verify(s);
}

/* ---- private tables ------------------------------------------------- */

enum { NTHREADS = 4, PRIVATE_SLOTS = 1000 };
static slot_t priv[NTHREADS][PRIVATE_SLOTS];

typedef struct {
    int id;
    size_t ops;
    uint64_t seed;
} targ_t;

static void *private_worker(void *arg)
{
    targ_t *a = arg;
    th_rng_t r = {a->seed};
    slot_t *tab = priv[a->id];
    range_t ranges[PRIVATE_SLOTS];
    size_t sizes[1] = {PRIVATE_SLOTS};
    for (size_t i = 0; i < a->ops; i++) {
        size_t k = th_range(&r, 0, PRIVATE_SLOTS - 1);
        step(&tab[k], &r, ((uint64_t)a->id << 48) | i);
        if (i % 20000 == 19999)
            check_no_overlap(&tab, sizes, 1, ranges);
    }
    return NULL;
}

static void t_private(void)
{
    fs_fn = (free_sized_fn *)th_optional_fn("free_sized", (void *)free_sized);
    fas_fn = (free_aligned_sized_fn *)th_optional_fn("free_aligned_sized",
                                                     (void *)free_aligned_sized);
    pthread_t t[NTHREADS];
    targ_t a[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        a[i] = (targ_t){i, th_scale(40000, 30), th_seed(10 + (uint64_t)i)};
        CHECK(pthread_create(&t[i], NULL, private_worker, &a[i]) == 0);
    }
    for (int i = 0; i < NTHREADS; i++)
        CHECK(pthread_join(t[i], NULL) == 0);
    /* Blocks of all threads, together, must not overlap. */
    static range_t ranges[NTHREADS * PRIVATE_SLOTS];
    slot_t *tables[NTHREADS];
    size_t sizes[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        tables[i] = priv[i], sizes[i] = PRIVATE_SLOTS;
    check_no_overlap(tables, sizes, NTHREADS, ranges);
    /* Main frees the exited threads' blocks. */
    th_rng_t r = {th_seed(99)};
    for (int i = 0; i < NTHREADS; i++)
        for (int k = 0; k < PRIVATE_SLOTS; k++)
            if (priv[i][k].p)
                slot_free(&priv[i][k], &r);
}

/* ---- one shared table ----------------------------------------------- */

enum { SHARED_SLOTS = 2048, STRIPES = 64 };
static slot_t shared[SHARED_SLOTS];
static pthread_mutex_t stripe[STRIPES];

static void *shared_worker(void *arg)
{
    targ_t *a = arg;
    th_rng_t r = {a->seed};
    for (size_t i = 0; i < a->ops; i++) {
        size_t k = th_range(&r, 0, SHARED_SLOTS - 1);
        pthread_mutex_lock(&stripe[k % STRIPES]);
        step(&shared[k], &r, a->seed ^ ((uint64_t)a->id << 48) ^ i);
        pthread_mutex_unlock(&stripe[k % STRIPES]);
    }
    return NULL;
}

static void t_shared(void)
{
    fs_fn = (free_sized_fn *)th_optional_fn("free_sized", (void *)free_sized);
    fas_fn = (free_aligned_sized_fn *)th_optional_fn("free_aligned_sized",
                                                     (void *)free_aligned_sized);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripe[i], NULL);
    static range_t ranges[SHARED_SLOTS];
    slot_t *tables[1] = {shared};
    size_t sizes[1] = {SHARED_SLOTS};
    size_t phases = th_scale(4, 20);
    for (size_t ph = 0; ph < phases; ph++) {
        pthread_t t[NTHREADS];
        targ_t a[NTHREADS];
        for (int i = 0; i < NTHREADS; i++) {
            a[i] = (targ_t){i, 20000, th_seed(1000 * ph + (uint64_t)i)};
            CHECK(pthread_create(&t[i], NULL, shared_worker, &a[i]) == 0);
        }
        for (int i = 0; i < NTHREADS; i++)
            CHECK(pthread_join(t[i], NULL) == 0);
        check_no_overlap(tables, sizes, 1, ranges);
        for (int k = 0; k < SHARED_SLOTS; k++)
            if (shared[k].p)
                slot_verify(&shared[k]);
    }
    th_rng_t r = {th_seed(98)};
    for (int k = 0; k < SHARED_SLOTS; k++)
        if (shared[k].p)
            slot_free(&shared[k], &r);
}

static const th_test_t tests[] = {
    TH_TEST(t_private),
    TH_TEST(t_shared),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
