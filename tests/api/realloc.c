/* realloc and reallocarray.
 *
 * Observed on glibc 2.36: realloc(NULL, n) is malloc(n); realloc(p, 0) with p
 * non-NULL frees p and returns NULL (C23 makes this implementation-defined,
 * so a unique freeable pointer is accepted too); a failed realloc returns
 * NULL with errno ENOMEM and leaves the old block intact and freeable.
 */
#include "../lib/th.h"

#include <malloc.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* One size from each range: tiny, small classes, 1 KiB, page-ish, 100 KiB,
   around the hugepage, 10 MiB, 100 MiB. */
static const size_t ladder[] = {1,        7,        16,       24,      100,
                                1 * KIB,  3000,     4096,     20000,   100 * KIB,
                                1 * MIB,  2 * MIB - 8, 2 * MIB + 8, 10 * MIB,
                                100 * MIB};
#define NLADDER (sizeof ladder / sizeof *ladder)

/* realloc of a LARGE block, of which the program wrote only the first
   word, down to a small class copies the block's unwritten bytes into the
   new object. They may hold what the allocator left there when the pages
   were a slab, a free object's double-free mark included: a mark that
   does not depend on the object's address (a review found one that was
   the slab descriptor's) then makes the correct free below report a
   double free. Each k shifts which descriptor the new slab gets; each run
   is a fresh child. */
#define LS_NOBJ (10 * 4096)
static void *ls_objs[LS_NOBJ];
static void *volatile ls_sink[16];

static void large_to_small(void *arg)
{
    int k = (int)(intptr_t)arg;
    for (int i = 0; i < LS_NOBJ; i++)
        ls_objs[i] = malloc(16);
    for (int i = 0; i < LS_NOBJ; i++)
        free(ls_objs[i]);
    uintptr_t *big = malloc(300000);
    big[0] = 42;
    static const size_t cls[] = {32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208};
    for (int j = 0; j < k; j++)
        ls_sink[j] = malloc(cls[j]);   /* a new slab each */
    for (int i = 0; i < 2 * 4096; i++)
        ls_objs[i] = malloc(16);       /* fill the current and the spare slab */
    uintptr_t *q = realloc(big, 16);
    if (q == NULL || q[0] != 42)
        _exit(3);
    free(q);
}

static void t_realloc_large_to_small_then_free(void)
{
    for (int k = 0; k <= 12; k++) {
        char out[2048];
        int st = th_run_in_child(large_to_small, (void *)(intptr_t)k, "", out, sizeof out);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0,
               "k=%d: a correct realloc+free failed (%s %d): \"%.300s\"", k,
               WIFSIGNALED(st) ? "signal" : "exit status",
               WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), out);
    }
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Grow through every range, then shrink back: contents preserved. */
static void t_grow_shrink_ladder(void)
{
    uint64_t tag = 42;
    size_t n = ladder[0];
    unsigned char *p = malloc(n);
    CHECK(p != NULL);
    th_fill(p, n, tag);
    for (size_t i = 1; i < NLADDER; i++) {
        size_t m = ladder[i];
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu -> %zu) failed", n, m);
        CHECK_OP(malloc_usable_size(q), >=, m);
        size_t bad = th_verify(q, n, tag);
        CHECKF(bad == SIZE_MAX, "realloc grow %zu -> %zu: byte %zu lost", n, m, bad);
        th_fill(q, m, tag);
        p = q, n = m;
    }
    for (size_t i = NLADDER - 1; i-- > 0;) {
        size_t m = ladder[i];
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu -> %zu) failed", n, m);
        CHECK_OP(malloc_usable_size(q), >=, m);
        size_t bad = th_verify(q, m, tag);
        CHECKF(bad == SIZE_MAX, "realloc shrink %zu -> %zu: byte %zu lost", n, m,
               bad);
        p = q, n = m;
    }
    free(p);
}

/* Every pair of ranges, both directions, with other blocks allocated around
   so that in-place growth is sometimes impossible. */
static void t_all_pairs(void)
{
    for (size_t i = 0; i < NLADDER; i++) {
        for (size_t j = 0; j < NLADDER; j++) {
            size_t n = ladder[i], m = ladder[j];
            if ((n >= 100 * MIB || m >= 100 * MIB) && !th_long())
                continue; /* 100 MiB is covered by the ladder test */
            uint64_t tag = i * 100 + j;
            unsigned char *p = malloc(n);
            void *neighbour = malloc(n); /* likely right after p */
            CHECK(p != NULL && neighbour != NULL);
            th_fill(p, n, tag);
            th_fill(neighbour, n, tag + 7);
            unsigned char *q = realloc(p, m);
            CHECKF(q != NULL, "realloc(%zu -> %zu) failed", n, m);
            size_t bad = th_verify(q, min_sz(n, m), tag);
            CHECKF(bad == SIZE_MAX, "realloc %zu -> %zu: byte %zu lost", n, m, bad);
            CHECK_OP(malloc_usable_size(q), >=, m);
            memset(q, 0x77, m); /* the whole new size is ours */
            CHECK_PATTERN(neighbour, n, tag + 7);
            free(q);
            free(neighbour);
        }
    }
}

/* Small steps: grow 1 byte at a time through the small classes and by
   ~1/8 through the large ones; in-place growth must not lose the tail. */
static void t_small_steps(void)
{
    unsigned char *p = NULL;
    size_t n = 0;
    uint64_t tag = 9;
    for (size_t m = 1; m <= 12 * MIB; m = m < 5000 ? m + 1 : m + m / 8 + 1) {
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu) failed", m);
        size_t bad = th_verify(q, n, tag);
        CHECKF(bad == SIZE_MAX, "realloc %zu -> %zu: byte %zu lost", n, m, bad);
        th_fill(q, m, tag);
        p = q, n = m;
    }
    while (n > 1) {
        size_t m = n / 3 + 1;
        unsigned char *q = realloc(p, m);
        CHECKF(q != NULL, "realloc(%zu) failed", m);
        size_t bad = th_verify(q, m, tag);
        CHECKF(bad == SIZE_MAX, "realloc %zu -> %zu: byte %zu lost", n, m, bad);
        p = q, n = m;
        if (n == 2)
            break;
    }
    free(p);
}

static void t_realloc_null_is_malloc(void)
{
    for (size_t i = 0; i < NLADDER - 1; i++) {
        unsigned char *p = realloc(NULL, ladder[i]);
        CHECKF(p != NULL, "realloc(NULL, %zu) = NULL", ladder[i]);
        CHECK_OP(malloc_usable_size(p), >=, ladder[i]);
        memset(p, 0x11, ladder[i]);
        th_use(p);
        free(p);
    }
    void *z = realloc(NULL, th_opaque(0)); /* malloc(0): non-NULL */
    CHECK(z != NULL);
    free(z);
}

/* realloc(p, 0): glibc frees p and returns NULL.  Accept that, or a unique
   pointer that can be freed; either way p must not be used again, and a
   loop of it must not leak. */
static void t_realloc_zero(void)
{
    void *other = malloc(16);
    for (size_t i = 0; i < NLADDER - 1; i++) {
        void *p = malloc(ladder[i]);
        CHECK(p != NULL);
        void *q = th_launder(realloc(p, th_opaque(0)));
        if (q != NULL) {
            CHECK(q != th_launder(other));
            free(q);
        }
    }
    long before = th_rss_kib();
    for (int i = 0; i < 100000; i++) {
        void *p = malloc(300);
        CHECK(p != NULL);
        free(realloc(p, th_opaque(0)));
    }
    for (int i = 0; i < 200; i++) {
        void *p = malloc(1 * MIB);
        memset(p, 1, MIB);
        th_use(p);
        free(realloc(p, th_opaque(0)));
    }
    long after = th_rss_kib();
    CHECKF(after - before < 32 * 1024, "realloc(p, 0) leaks: RSS %ld -> %ld KiB",
           before, after);
    free(other);
}

/* A failed realloc leaves the old block intact, readable and freeable. */
static void t_realloc_enomem_keeps_block(void)
{
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 15, SIZE_MAX - 4095,
                                  (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX};
    static const size_t olds[] = {10, 1000, 100 * KIB, 10 * MIB};
    for (size_t i = 0; i < sizeof olds / sizeof *olds; i++) {
        for (size_t j = 0; j < sizeof huge / sizeof *huge; j++) {
            size_t n = olds[i];
            unsigned char *p = malloc(n);
            CHECK(p != NULL);
            th_fill(p, n, i * 10 + j);
            errno = 0;
            void *q = realloc(p, th_opaque(huge[j]));
            CHECKF(q == NULL, "realloc(%zu -> %zu) = %p, want NULL", n, huge[j], q);
            CHECKF(th_errno() == ENOMEM, "realloc(%zu -> %zu): errno %d, want ENOMEM",
                   n, huge[j], th_errno());
            size_t bad = th_verify(p, n, i * 10 + j);
            CHECKF(bad == SIZE_MAX, "failed realloc(%zu -> %zu) changed byte %zu",
                   n, huge[j], bad);
            /* Still a live block of its old size. */
            CHECK_OP(malloc_usable_size(p), >=, n);
            unsigned char *r = realloc(p, n * 2);
            CHECK(r != NULL);
            CHECK_PATTERN(r, n, i * 10 + j);
            free(r);
        }
    }
}

static void t_reallocarray(void)
{
    uint32_t *a = reallocarray(NULL, 100, sizeof *a);
    CHECK(a != NULL);
    for (uint32_t i = 0; i < 100; i++)
        a[i] = i * 3;
    uint32_t *b = reallocarray(a, 100000, sizeof *b);
    CHECK(b != NULL);
    for (uint32_t i = 0; i < 100; i++)
        CHECK_EQ(b[i], i * 3);
    /* Overflow: NULL, ENOMEM, old block untouched. */
    errno = 0;
    void *c = reallocarray(b, th_opaque(SIZE_MAX / 2), 3);
    CHECKF(c == NULL && th_errno() == ENOMEM, "reallocarray overflow = %p errno %d", c,
           th_errno());
    errno = 0;
    c = reallocarray(b, th_opaque((size_t)1 << 32), (size_t)1 << 32);
    CHECKF(c == NULL && th_errno() == ENOMEM, "reallocarray 2^64 = %p errno %d", c,
           th_errno());
    errno = 0;
    c = reallocarray(NULL, th_opaque(SIZE_MAX), 2);
    CHECKF(c == NULL && th_errno() == ENOMEM, "reallocarray(NULL) overflow = %p", c);
    for (uint32_t i = 0; i < 100; i++)
        CHECK_EQ(b[i], i * 3);
    free(b);
}

/* Random realloc chains over several live blocks. */
static void t_random_chains(void)
{
    th_rng_t r = {th_seed(4)};
    enum { N = 64 };
    unsigned char *p[N] = {0};
    size_t n[N] = {0};
    size_t iters = th_scale(20000, 20);
    for (size_t it = 0; it < iters; it++) {
        int k = (int)th_range(&r, 0, N - 1);
        size_t lim = th_range(&r, 0, 99) == 0 ? 4 * MIB : th_range(&r, 0, 9) == 0 ? 200 * KIB : 2000;
        size_t m = th_logsize(&r, 1, lim);
        unsigned char *q = realloc(p[k], m);
        CHECKF(q != NULL, "realloc(%zu) failed", m);
        size_t bad = th_verify(q, min_sz(n[k], m), (uint64_t)k);
        CHECKF(bad == SIZE_MAX, "realloc %zu -> %zu: byte %zu lost", n[k], m, bad);
        th_fill(q, m, (uint64_t)k);
        p[k] = q, n[k] = m;
    }
    for (int k = 0; k < N; k++) {
        CHECK_PATTERN(p[k], n[k], (uint64_t)k);
        free(p[k]);
    }
}

static const th_test_t tests[] = {
    TH_TEST(t_grow_shrink_ladder),
    TH_TEST(t_all_pairs),
    TH_TEST(t_small_steps),
    TH_TEST(t_realloc_null_is_malloc),
    TH_TEST(t_realloc_zero),
    TH_TEST(t_realloc_enomem_keeps_block),
    TH_TEST(t_reallocarray),
    TH_TEST(t_random_chains),
    TH_TEST(t_realloc_large_to_small_then_free),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
