/* aligned_alloc, memalign, posix_memalign, valloc, pvalloc.
 *
 * Observed on glibc 2.36: posix_memalign returns EINVAL for an alignment that
 * is not a power of two or not a multiple of sizeof(void *), and leaves
 * *memptr alone; aligned_alloc and memalign accept any power of two
 * (alignment 1, 2, 4 give 16-aligned blocks); pvalloc(n) returns a page-aligned
 * block of at least n rounded up to a page.
 */
#include "../lib/th.h"

#include <malloc.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void t_posix_memalign_einval(void)
{
    static const size_t bad[] = {0, 1, 2, 3, 4, 6, 12, 24, 40, 48, 100, 4097,
                                 3 * 4096, (size_t)1 << 63 | 8, SIZE_MAX,
                                 SIZE_MAX - 7};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *sentinel = (void *)0x1234;
        void *p = sentinel;
        int rc = posix_memalign(&p, th_opaque(bad[i]), 64);
        CHECKF(rc == EINVAL, "posix_memalign(align %zu) = %d, want EINVAL",
               bad[i], rc);
        CHECKF(p == sentinel, "posix_memalign(align %zu) wrote *memptr = %p",
               bad[i], p);
    }
}

/* posix_memalign reports ENOMEM by return value and leaves *memptr alone;
   aligned_alloc and memalign return NULL with errno ENOMEM. */
static void t_aligned_enomem(void)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 64, (size_t)PTRDIFF_MAX + 1,
                                   SIZE_MAX - 4 * MIB};
    static const size_t aligns[] = {16, 64, 4096, 2 * MIB, 4 * MIB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t j = 0; j < sizeof aligns / sizeof *aligns; j++) {
            size_t n = th_opaque(sizes[i]), a = th_opaque(aligns[j]);
            void *sentinel = (void *)0x1234, *p = sentinel;
            int rc = posix_memalign(&p, a, n);
            CHECKF(rc == ENOMEM, "posix_memalign(align %zu, %zu) = %d, want ENOMEM",
                   a, n, rc);
            CHECKF(p == sentinel, "posix_memalign failure wrote *memptr");
            errno = 0;
            p = aligned_alloc(a, n);
            CHECKF(p == NULL && th_errno() == ENOMEM,
                   "aligned_alloc(%zu, %zu) = %p errno %d", a, n, p, th_errno());
            errno = 0;
            p = memalign(a, n);
            CHECKF(p == NULL && th_errno() == ENOMEM, "memalign(%zu, %zu) = %p errno %d",
                   a, n, p, th_errno());
        }
    /* Huge alignment: 2^62 cannot be satisfied. */
    void *p = (void *)0x1234;
    int rc = posix_memalign(&p, th_opaque((size_t)1 << 62), 64);
    CHECKF(rc == ENOMEM, "posix_memalign(align 2^62) = %d, want ENOMEM", rc);
    errno = 0;
    p = valloc(th_opaque(SIZE_MAX - 100));
    CHECKF(p == NULL && th_errno() == ENOMEM, "valloc(SIZE_MAX-100) = %p errno %d", p, th_errno());
    errno = 0;
    p = pvalloc(th_opaque(SIZE_MAX - 100)); /* rounding up to a page overflows */
    CHECKF(p == NULL && th_errno() == ENOMEM, "pvalloc(SIZE_MAX-100) = %p errno %d", p, th_errno());
}

/* For every power-of-two alignment from 1 to 4 MiB (past the 2 MiB
   hugepage), sizes below, at and above the alignment, from all three
   functions, all live at once: aligned, usable >= size, the whole usable
   size writable, no two blocks overlapping. */
enum { FN_ALIGNED_ALLOC, FN_MEMALIGN, FN_POSIX_MEMALIGN, NFN };
static const char *const fn_name[NFN] = {"aligned_alloc", "memalign",
                                         "posix_memalign"};

static void t_alignments(void)
{
    for (size_t a = 1; a <= 4 * MIB; a *= 2) {
        size_t sizes[8];
        int ns = 0;
        sizes[ns++] = 1;
        if (a / 2 > 1)
            sizes[ns++] = a / 2;
        if (a > 2)
            sizes[ns++] = a - 1;
        sizes[ns++] = a;
        sizes[ns++] = a + 1;
        sizes[ns++] = 3 * a + 5;
        sizes[ns++] = 100;
        uintptr_t live[NFN * 8 * 2][2];
        int nl = 0;
        for (int f = 0; f < NFN; f++) {
            for (int s = 0; s < ns; s++) {
                for (int rep = 0; rep < 2; rep++) {
                    size_t n = sizes[s];
                    void *p = NULL;
                    if (f == FN_ALIGNED_ALLOC) {
                        p = aligned_alloc(a, n);
                    } else if (f == FN_MEMALIGN) {
                        p = memalign(a, n);
                    } else {
                        size_t pa = a < sizeof(void *) ? sizeof(void *) : a;
                        int rc = posix_memalign(&p, pa, n);
                        CHECKF(rc == 0, "posix_memalign(%zu, %zu) = %d", pa, n, rc);
                    }
                    CHECKF(p != NULL, "%s(%zu, %zu) = NULL", fn_name[f], a, n);
                    CHECKF((uintptr_t)p % a == 0, "%s(%zu, %zu) = %p misaligned",
                           fn_name[f], a, n, p);
                    size_t u = malloc_usable_size(p);
                    CHECKF(u >= n, "%s(%zu, %zu): usable size %zu", fn_name[f], a,
                           n, u);
                    memset(p, 0x3c, u);
                    live[nl][0] = (uintptr_t)p;
                    live[nl][1] = u;
                    nl++;
                }
            }
        }
        qsort(live, (size_t)nl, sizeof live[0], cmp_ptr);
        for (int i = 0; i + 1 < nl; i++)
            CHECKF(live[i][0] + live[i][1] <= live[i + 1][0],
                   "align %zu: block %#jx (usable %ju) overlaps %#jx", a,
                   (uintmax_t)live[i][0], (uintmax_t)live[i][1],
                   (uintmax_t)live[i + 1][0]);
        for (int i = 0; i < nl; i++) {
            unsigned char *c = (unsigned char *)live[i][0];
            CHECKF(th_find_ne(c, 0, live[i][1], 0x3c) == SIZE_MAX,
                   "align %zu: block %p overwritten", a, (void *)c);
            free(c);
        }
    }
}

/* Interleaving aligned and plain allocations of one size class must not
   confuse free() (an aligned block may sit inside a larger span). */
static void t_aligned_mixed(void)
{
    th_rng_t r = {th_seed(3)};
    enum { N = 4000 };
    static void *p[N];
    static size_t al[N];
    for (int i = 0; i < N; i++) {
        size_t n = th_logsize(&r, 1, i % 200 == 0 ? 3 * MIB : 20000);
        al[i] = (size_t)1 << th_range(&r, 0, i % 300 == 0 ? 22 : 13);
        if (i % 3 == 0)
            al[i] = 0, p[i] = malloc(n);
        else
            p[i] = aligned_alloc(al[i], n);
        CHECK(p[i] != NULL);
        if (al[i])
            CHECKF((uintptr_t)p[i] % al[i] == 0, "aligned_alloc(%zu, %zu) = %p",
                   al[i], n, p[i]);
        th_fill(p[i], n < 64 ? n : 64, (uint64_t)i);
    }
    for (int i = 0; i < N; i += 2)
        free(p[i]);
    for (int i = 1; i < N; i += 2) {
        CHECK_PATTERN(p[i], 1, (uint64_t)i);
        free(p[i]);
    }
}

static void t_valloc_pvalloc(void)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 5000, 65536 + 1,
                                   1024 * 1024, 2 * 1024 * 1024 + 7};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        void *v = valloc(n);
        CHECKF(v != NULL && (uintptr_t)v % pg == 0, "valloc(%zu) = %p", n, v);
        CHECK_OP(malloc_usable_size(v), >=, n);
        memset(v, 1, malloc_usable_size(v));
        void *q = pvalloc(n);
        size_t rounded = (n + pg - 1) / pg * pg;
        CHECKF(q != NULL && (uintptr_t)q % pg == 0, "pvalloc(%zu) = %p", n, q);
        CHECKF(malloc_usable_size(q) >= rounded,
               "pvalloc(%zu): usable %zu < size rounded to a page %zu", n,
               malloc_usable_size(q), rounded);
        memset(q, 2, rounded);
        th_use(q);
        free(v);
        free(q);
    }
    /* pvalloc(0): glibc returns a freeable block; accept NULL or a block. */
    void *z = pvalloc(th_opaque(0));
    free(z);
    z = valloc(th_opaque(0));
    free(z);
}

static const th_test_t tests[] = {
    TH_TEST(t_posix_memalign_einval),
    TH_TEST(t_aligned_enomem),
    TH_TEST(t_alignments),
    TH_TEST(t_aligned_mixed),
    TH_TEST(t_valloc_pvalloc),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
