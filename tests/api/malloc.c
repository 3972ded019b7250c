/* malloc, calloc, free, malloc_usable_size: glibc's documented semantics.
 *
 * Observed on glibc 2.36 (the reference these tests were checked against):
 * malloc(0) returns a unique, freeable pointer with 24 usable bytes; failed
 * requests return NULL and set errno to ENOMEM; every block is 16-aligned.
 */
#include "../lib/th.h"

#include <malloc.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* malloc(0) gives distinct non-NULL pointers, each freeable. */
static void t_malloc_zero_unique(void)
{
    enum { N = 1000 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = th_launder(malloc(th_opaque(0)));
        CHECKF(p[i] != NULL, "malloc(0) #%d returned NULL", i);
    }
    /* Unique: sort-free check with a small hash-free O(n^2) pass. */
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            CHECKF(p[i] != p[j], "malloc(0) returned %p twice", p[i]);
    for (int i = 0; i < N; i++)
        free(p[i]);
}

static void t_free_null(void)
{
    free(NULL);
    CHECK_EQ(malloc_usable_size(NULL), 0);
}

/* Failing requests: NULL and th_errno() == ENOMEM, and the heap still works. */
static void check_enomem(const char *what, size_t n)
{
    errno = 0;
    void *p = malloc(th_opaque(n));
    CHECKF(p == NULL, "%s: malloc(%zu) = %p, want NULL", what, n, p);
    CHECKF(th_errno() == ENOMEM, "%s: malloc(%zu): errno %d, want ENOMEM", what, n,
           th_errno());
}

static void t_malloc_enomem(void)
{
    check_enomem("SIZE_MAX", SIZE_MAX);
    check_enomem("PTRDIFF_MAX+1", (size_t)PTRDIFF_MAX + 1);
    /* Sizes whose rounding up to a class, page or hugepage overflows. */
    check_enomem("SIZE_MAX-1", SIZE_MAX - 1);
    check_enomem("SIZE_MAX-15", SIZE_MAX - 15);
    check_enomem("SIZE_MAX-4095", SIZE_MAX - 4095);
    check_enomem("SIZE_MAX-2MiB", SIZE_MAX - 2 * MIB);
    check_enomem("PTRDIFF_MAX", (size_t)PTRDIFF_MAX);
    check_enomem("PTRDIFF_MAX-4095", (size_t)PTRDIFF_MAX - 4095);
    /* Still usable after the failures. */
    char *p = malloc(th_opaque(100));
    CHECK(p != NULL);
    memset(p, 1, 100);
    free(p);
}

static void check_calloc_enomem(size_t n, size_t size)
{
    errno = 0;
    void *p = calloc(th_opaque(n), th_opaque(size));
    CHECKF(p == NULL, "calloc(%zu, %zu) = %p, want NULL", n, size, p);
    CHECKF(th_errno() == ENOMEM, "calloc(%zu, %zu): errno %d, want ENOMEM", n,
           size, th_errno());
}

static void t_calloc_overflow(void)
{
    check_calloc_enomem(SIZE_MAX, 2);
    check_calloc_enomem(2, SIZE_MAX);
    check_calloc_enomem(SIZE_MAX / 16 + 2, 16);
    check_calloc_enomem((size_t)1 << 33, (size_t)1 << 33);
    check_calloc_enomem((size_t)1 << 32, (size_t)1 << 32); /* wraps to 0 */
    check_calloc_enomem(3, SIZE_MAX / 3 + 1);
    check_calloc_enomem(1, SIZE_MAX);
    check_calloc_enomem(1, (size_t)PTRDIFF_MAX + 1);
}

/* Every block of size >= 16 is 16-aligned; smaller ones are aligned for
   any object that fits (the largest power of two <= size). */
static void t_alignment(void)
{
    static void *keep[4096];
    int nk = 0;
    for (size_t n = 1; n <= 2 * MIB + 4096;
         n = n < 512 ? n + 1 : n < 70000 ? n + 61 : n * 5 / 4 + 4093) {
        void *p = malloc(n);
        CHECKF(p != NULL, "malloc(%zu) failed", n);
        size_t want = n >= 16 ? 16 : (size_t)1 << (63 - __builtin_clzll(n));
        CHECKF((uintptr_t)p % want == 0, "malloc(%zu) = %p not %zu-aligned", n,
               p, want);
        memset(p, 0xa5, n);
        th_use(p);
        if (nk < 4096 && n % 3 == 0)
            keep[nk++] = p; /* keep some live so blocks come from fresh slabs */
        else
            free(p);
    }
    for (int i = 0; i < nk; i++)
        free(keep[i]);
}

/* malloc_usable_size >= request; the whole usable size is ours to write and
   neighbouring blocks are untouched by it. */
static void t_usable_size(void)
{
    th_rng_t r = {th_seed(1)};
    enum { N = 3000 };
    static unsigned char *p[N];
    static size_t req[N], use[N];
    for (int i = 0; i < N; i++) {
        req[i] = i < 600 ? (size_t)i : th_logsize(&r, 1, i % 97 == 0 ? 8 * MIB : 64 * KIB);
        p[i] = malloc(req[i]);
        CHECKF(p[i] != NULL, "malloc(%zu) failed", req[i]);
        use[i] = malloc_usable_size(p[i]);
        CHECKF(use[i] >= req[i], "malloc_usable_size(malloc(%zu)) = %zu", req[i],
               use[i]);
        /* Not absurdly large either: at most 2x + 4 KiB (slack bound). */
        CHECKF(use[i] <= 2 * req[i] + 4096 || use[i] <= 64,
               "malloc_usable_size(malloc(%zu)) = %zu is implausible", req[i],
               use[i]);
        memset(p[i], (unsigned char)i, use[i]);
    }
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < use[i]; k++)
            CHECKF(p[i][k] == (unsigned char)i,
                   "block %d (%p, usable %zu): byte %zu changed to %#x by a "
                   "neighbour's memset",
                   i, (void *)p[i], use[i], k, p[i][k]);
        CHECK_EQ(malloc_usable_size(p[i]), use[i]);
        free(p[i]);
    }
}

static void check_zero_block(const char *what, size_t n)
{
    unsigned char *p = calloc(1, n);
    CHECKF(p != NULL, "%s: calloc(1, %zu) failed", what, n);
    CHECKF(th_all_zero(p, n), "%s: calloc(1, %zu) not zeroed", what, n);
    size_t u = malloc_usable_size(p);
    CHECKF(u >= n, "calloc: usable %zu < %zu", u, n);
    memset(p, 0xee, u);
    th_use(p);
    free(p);
}

/* calloc on fresh memory, and on memory dirtied and freed just before. */
static void t_calloc_zeroed(void)
{
    static const size_t sizes[] = {1,     8,      16,     24,       48,
                                   100,   1000,   4096,   5000,     16384,
                                   40000, 65536,  100000, 200 * KIB, 1 * MIB,
                                   3 * MIB, 5 * MIB + 123};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        check_zero_block("fresh", sizes[s]);

    /* Dirty: fill many blocks of a size with 0xff, free them, then calloc
       the same size as many times: the reused blocks must be zero. */
    enum { N = 64 };
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        int cnt = n > MIB ? 4 : N;
        void *blk[N];
        for (int i = 0; i < cnt; i++) {
            blk[i] = malloc(n);
            CHECK(blk[i] != NULL);
            memset(blk[i], 0xff, malloc_usable_size(blk[i]));
            th_use(blk[i]);
        }
        for (int i = 0; i < cnt; i++)
            free(blk[i]);
        for (int i = 0; i < cnt; i++) {
            blk[i] = calloc(n, 1);
            CHECKF(blk[i] != NULL, "calloc(%zu, 1) failed", n);
            CHECKF(th_all_zero(blk[i], n),
                   "calloc(%zu, 1) reused dirty memory without zeroing it", n);
            memset(blk[i], 0xff, n);
            th_use(blk[i]);
        }
        for (int i = 0; i < cnt; i++)
            free(blk[i]);
    }

    /* calloc(n, size) as an array. */
    uint32_t *a = calloc(12345, sizeof *a);
    CHECK(a != NULL);
    for (size_t i = 0; i < 12345; i++)
        CHECK_EQ(a[i], 0);
    free(a);

    /* calloc(0, x) and calloc(x, 0) behave as malloc(0). */
    void *z1 = calloc(th_opaque(0), 16), *z2 = calloc(16, th_opaque(0));
    CHECK(z1 != NULL && z2 != NULL && th_launder(z1) != th_launder(z2));
    free(z1);
    free(z2);
}

/* Large calloc: 64 MiB and 256 MiB, fresh and after a dirty block of the
   same size was freed (a cached mapping must not come back dirty). */
static void t_calloc_large(void)
{
    static const size_t sizes[] = {64 * MIB, 128 * MIB + 4096};
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        check_zero_block("large fresh", n);
        unsigned char *d = malloc(n);
        CHECK(d != NULL);
        memset(d, 0x5a, n);
        th_use(d);
        free(d);
        unsigned char *c = calloc(n, 1);
        CHECK(c != NULL);
        CHECKF(th_all_zero(c, n), "calloc(%zu) after a dirty free not zeroed", n);
        free(c);
    }
}

/* Many live blocks of many sizes never overlap (checked by sorting). */
static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void t_no_overlap(void)
{
    th_rng_t r = {th_seed(2)};
    enum { N = 20000 };
    static uintptr_t blk[N][2];
    for (int i = 0; i < N; i++) {
        size_t n = th_logsize(&r, 1, i % 500 == 0 ? 4 * MIB : 32 * KIB);
        void *p = malloc(n);
        CHECK(p != NULL);
        blk[i][0] = (uintptr_t)p;
        blk[i][1] = malloc_usable_size(p);
    }
    qsort(blk, N, sizeof blk[0], cmp_ptr);
    for (int i = 0; i + 1 < N; i++)
        CHECKF(blk[i][0] + blk[i][1] <= blk[i + 1][0],
               "block %#jx (usable %ju) overlaps block %#jx", (uintmax_t)blk[i][0],
               (uintmax_t)blk[i][1], (uintmax_t)blk[i + 1][0]);
    for (int i = 0; i < N; i++)
        free((void *)blk[i][0]);
}

/* Freed memory is reused: a malloc/free loop does not grow RSS. */
static void t_reuse(void)
{
    for (int i = 0; i < 1000; i++) {
        free(th_launder(malloc(th_opaque(1000))));
        free(th_launder(malloc(th_opaque(300 * KIB))));
    }
    long before = th_rss_kib();
    for (int i = 0; i < 200000; i++) {
        void *p = th_launder(malloc(th_opaque((size_t)(i % 4096) + 1)));
        CHECK(p != NULL);
        *(volatile char *)p = 1;
        free(p);
        if (i % 64 == 0) {
            p = th_launder(malloc(th_opaque(300 * KIB + (size_t)i % 8192)));
            CHECK(p != NULL);
            memset(p, 1, 300 * KIB);
            th_use(p);
            free(p);
        }
    }
    long after = th_rss_kib();
    CHECKF(after - before < 64 * 1024,
           "RSS grew from %ld to %ld KiB over a malloc/free loop", before, after);
}

/* A slab that gets objects back after being full queues behind the ones
   that did so before it: the oldest, having had the longest to gather
   frees, is taken first when the current slab runs dry (heap.c,
   partial_push). Three full slabs get one object back each, oldest first;
   the mallocs that follow must hand those three back in the same order. */
static void t_partial_queue_order(void)
{
    if (!th_is_tide())
        th_skip("the order of reuse is tidemalloc's policy");
    enum { N = 2048 };
    static void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(th_opaque(250));
        CHECK(p[i] != NULL);
    }
    /* 16-page slabs hold at most 256 of these: 0, 512 and 1024 lie in three
       different full slabs, none of them current (the last one is). */
    uintptr_t want[3] = { (uintptr_t)p[0], (uintptr_t)p[512], (uintptr_t)p[1024] };
    free(p[0]);
    free(p[512]);
    free(p[1024]);
    int seen = 0;
    enum { M = 4096 };
    static void *q[M];
    int nq = 0;
    while (seen < 3 && nq < M) {
        void *x = malloc(th_opaque(250));
        CHECK(x != NULL);
        q[nq++] = x;
        for (int k = 0; k < 3; k++)
            if ((uintptr_t)x == want[k]) {
                CHECKF(k == seen, "freed object %d of 3 came back as number %d", k + 1, seen + 1);
                seen++;
            }
    }
    CHECKF(seen == 3, "only %d of 3 freed objects came back in %d mallocs", seen, M);
    for (int i = 0; i < nq; i++)
        free(q[i]);
    for (int i = 1; i < N; i++)
        if (i != 512 && i != 1024)
            free(p[i]);
}

/* Random frees and mallocs of one size over a dozen slabs: slabs join the
   partial queue and leave it from the head, the middle and the tail (when
   they empty); tide_check() walks the queue's links in between. */
static void t_partial_queue_churn(void)
{
    typedef int check_fn(void);
    check_fn *check = (check_fn *)th_optional_fn("tide_check", NULL);
    enum { N = 3000 };
    static void *p[N];
    th_rng_t r = {th_seed(11)};
    for (int i = 0; i < N; i++) {
        p[i] = malloc(th_opaque(700));
        CHECK(p[i] != NULL);
        th_fill(p[i], 700, (uint64_t)i);
    }
    for (int round = 0; round < (int)th_scale(200, 5); round++) {
        /* free a random stretch (whole slabs empty), then scattered ones */
        int from = (int)(th_rand(&r) % N), len = (int)(th_rand(&r) % 200);
        for (int i = from; i < from + len && i < N; i++)
            if (p[i] != NULL) {
                CHECK_PATTERN(p[i], 700, (uint64_t)i);
                free(p[i]);
                p[i] = NULL;
            }
        for (int k = 0; k < 50; k++) {
            int i = (int)(th_rand(&r) % N);
            if (p[i] != NULL) {
                CHECK_PATTERN(p[i], 700, (uint64_t)i);
                free(p[i]);
                p[i] = NULL;
            }
        }
        if (check != NULL && round % 8 == 0)
            check();
        for (int i = 0; i < N; i++)
            if (p[i] == NULL && th_rand(&r) % 2 == 0) {
                p[i] = malloc(th_opaque(700));
                CHECK(p[i] != NULL);
                th_fill(p[i], 700, (uint64_t)i);
            }
    }
    if (check != NULL)
        check();
    for (int i = 0; i < N; i++)
        free(p[i]);
}

static const th_test_t tests[] = {
    TH_TEST(t_malloc_zero_unique),
    TH_TEST(t_free_null),
    TH_TEST(t_malloc_enomem),
    TH_TEST(t_calloc_overflow),
    TH_TEST(t_alignment),
    TH_TEST(t_usable_size),
    TH_TEST(t_calloc_zeroed),
    TH_TEST(t_calloc_large),
    TH_TEST(t_no_overlap),
    TH_TEST(t_reuse),
    TH_TEST(t_partial_queue_order),
    TH_TEST(t_partial_queue_churn),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
