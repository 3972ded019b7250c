/* free_sized, free_aligned_sized (C23) and the glibc extensions: mallinfo,
 * mallinfo2, mallopt, malloc_trim, malloc_stats, malloc_info.
 *
 * glibc 2.36 has no free_sized / free_aligned_sized: those tests run only
 * where the allocator under test defines them (and fail if tidemalloc does
 * not).  glibc's mallinfo2 counts mmapped blocks in hblkhd, not uordblks;
 * tidemalloc is expected to count every block in use in uordblks.
 */
#include "../lib/th.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/stat.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* mallinfo */

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* C23 prototypes, weak: glibc 2.36's headers and library lack them. */
extern void free_sized(void *, size_t) __attribute__((weak));
extern void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));

typedef void free_sized_fn(void *, size_t);
typedef void free_aligned_sized_fn(void *, size_t, size_t);

static void *need_fn(const char *name, void *weak_ref)
{
    void *fn = th_optional_fn(name, weak_ref);
    if (fn == NULL) {
        if (th_is_tide())
            TH_FAIL("tidemalloc does not define %s", name);
        th_skip("%s not provided by %s", name, th_allocator());
    }
    return fn;
}

static void t_free_sized(void)
{
    free_sized_fn *fs = (free_sized_fn *)need_fn("free_sized", (void *)free_sized);
    th_rng_t r = {th_seed(5)};
    enum { N = 5000 };
    static void *p[N];
    static size_t n[N];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            n[i] = i < 300 ? (size_t)i
                           : th_logsize(&r, 1, i % 250 == 0 ? 6 * MIB : 64 * KIB);
            p[i] = round == 1 ? calloc(1, n[i]) : malloc(n[i]);
            CHECK(p[i] != NULL);
            th_fill(p[i], n[i], (uint64_t)i);
        }
        for (int i = 0; i < N; i++) {
            CHECK_PATTERN(p[i], n[i], (uint64_t)i);
            fs(p[i], n[i]);
        }
    }
    fs(NULL, 0);
    fs(NULL, 123);
    /* realloc'd blocks are freed with their latest size. */
    void *q = malloc(10);
    q = realloc(q, 5000);
    CHECK(q != NULL);
    fs(q, 5000);
    /* The memory is reused: a loop does not grow RSS. */
    long before = th_rss_kib();
    for (int i = 0; i < 100000; i++) {
        size_t sz = (size_t)(i % 3000) + 1;
        void *b = malloc(sz);
        CHECK(b != NULL);
        memset(b, 1, sz);
        th_use(b);
        fs(b, sz);
    }
    CHECKF(th_rss_kib() - before < 32 * 1024, "free_sized leaks: RSS %ld -> %ld KiB",
           before, th_rss_kib());
}

static void t_free_aligned_sized(void)
{
    free_aligned_sized_fn *fas = (free_aligned_sized_fn *)need_fn(
        "free_aligned_sized", (void *)free_aligned_sized);
    for (size_t a = 1; a <= 4 * MIB; a *= 2) {
        static const size_t mult[] = {1, 2, 3, 5};
        for (int k = 0; k < 4; k++) {
            size_t n = a * mult[k]; /* aligned_alloc: size a multiple of a */
            void *p = aligned_alloc(a, n);
            CHECKF(p != NULL && (uintptr_t)p % a == 0, "aligned_alloc(%zu, %zu) = %p",
                   a, n, p);
            th_fill(p, n, a + (size_t)k);
            CHECK_PATTERN(p, n, a + (size_t)k);
            fas(p, a, n);
        }
    }
    fas(NULL, 64, 64);
    long before = th_rss_kib();
    for (int i = 0; i < 50000; i++) {
        size_t a = (size_t)64 << (i % 6), n = a * (size_t)(1 + i % 3);
        void *p = aligned_alloc(a, n);
        CHECK(p != NULL);
        memset(p, 1, n);
        th_use(p);
        fas(p, a, n);
    }
    CHECKF(th_rss_kib() - before < 32 * 1024,
           "free_aligned_sized leaks: RSS %ld -> %ld KiB", before, th_rss_kib());
}

/* Bytes in use per mallinfo2: glibc counts mmapped blocks in hblkhd. */
static size_t in_use(const struct mallinfo2 *m)
{
    return th_is_tide() ? m->uordblks : m->uordblks + m->hblkhd;
}

static void check_plausible(const char *when, const struct mallinfo2 *m)
{
    const size_t lim = (size_t)1 << 46; /* 64 TiB: a negative count wrapped */
    CHECKF(m->arena < lim && m->uordblks < lim && m->fordblks < lim &&
               m->hblkhd < lim && m->ordblks < lim && m->keepcost < lim,
           "%s: implausible mallinfo2 arena %zu uordblks %zu fordblks %zu "
           "hblkhd %zu",
           when, m->arena, m->uordblks, m->fordblks, m->hblkhd);
    /* What the allocator got from the system covers what is in use. */
    CHECKF(m->arena + m->hblkhd >= m->uordblks,
           "%s: arena %zu + hblkhd %zu < uordblks %zu", when, m->arena, m->hblkhd,
           m->uordblks);
    CHECKF(m->fordblks <= m->arena + m->hblkhd,
           "%s: fordblks %zu > arena %zu + hblkhd %zu", when, m->fordblks,
           m->arena, m->hblkhd);
}

static void t_mallinfo2(void)
{
    enum { NSMALL = 32 * 1024, NLARGE = 32 };
    static void *small[NSMALL], *large[NLARGE];
    struct mallinfo2 m0 = mallinfo2();
    check_plausible("start", &m0);
    size_t total = 0;
    /* 32 MiB of small blocks (1 KiB average) and 32 MiB of 1 MiB blocks. */
    for (int i = 0; i < NSMALL; i++) {
        size_t n = 16 + (size_t)(i % 127) * 16;
        small[i] = malloc(n);
        CHECK(small[i] != NULL);
        memset(small[i], 1, n);
        total += n;
    }
    for (int i = 0; i < NLARGE; i++) {
        large[i] = malloc(MIB);
        CHECK(large[i] != NULL);
        memset(large[i], 2, MIB);
        total += MIB;
    }
    struct mallinfo2 m1 = mallinfo2();
    check_plausible("after allocating", &m1);
    CHECKF(in_use(&m1) >= in_use(&m0) + total,
           "in use grew by %zd after allocating %zu bytes (uordblks %zu -> %zu, "
           "hblkhd %zu -> %zu)",
           (ssize_t)(in_use(&m1) - in_use(&m0)), total, m0.uordblks, m1.uordblks,
           m0.hblkhd, m1.hblkhd);
    CHECKF(in_use(&m1) <= in_use(&m0) + 2 * total + 16 * MIB,
           "in use grew by %zu, far more than the %zu bytes allocated",
           in_use(&m1) - in_use(&m0), total);
    for (int i = 0; i < NSMALL; i++)
        free(small[i]);
    for (int i = 0; i < NLARGE; i++)
        free(large[i]);
    struct mallinfo2 m2 = mallinfo2();
    check_plausible("after freeing", &m2);
    CHECKF(in_use(&m2) < in_use(&m0) + total / 4,
           "in use did not shrink after freeing: %zu at start, %zu allocated, %zu "
           "after freeing",
           in_use(&m0), in_use(&m1), in_use(&m2));
}

/* Blocks allocated and freed by another thread show up in mallinfo2 too. */
static void *thread_alloc(void *arg)
{
    void **blk = arg;
    for (int i = 0; i < 1024; i++) {
        blk[i] = malloc(4096);
        memset(blk[i], 3, 4096);
    }
    return NULL;
}

static void t_mallinfo2_threads(void)
{
    static void *blk[1024];
    struct mallinfo2 m0 = mallinfo2();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_alloc, blk) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    struct mallinfo2 m1 = mallinfo2();
    CHECKF(in_use(&m1) >= in_use(&m0) + 1024 * 4096,
           "4 MiB allocated by an exited thread: in use %zu -> %zu", in_use(&m0),
           in_use(&m1));
    for (int i = 0; i < 1024; i++)
        free(blk[i]);
    struct mallinfo2 m2 = mallinfo2();
    CHECKF(in_use(&m2) + 1024 * 4096 / 2 <= in_use(&m1),
           "freeing 4 MiB from main: in use %zu -> %zu", in_use(&m1), in_use(&m2));
}

static void t_mallinfo(void)
{
    enum { N = 4096 };
    static void *p[N];
    struct mallinfo m0 = mallinfo();
    for (int i = 0; i < N; i++) {
        p[i] = malloc(1000);
        CHECK(p[i] != NULL);
    }
    struct mallinfo m1 = mallinfo();
    /* ints: compare the difference, which is small even if the totals wrap. */
    int grew = m1.uordblks - m0.uordblks;
    CHECKF(grew >= N * 1000, "mallinfo uordblks grew by %d after %d bytes", grew,
           N * 1000);
    for (int i = 0; i < N; i++)
        free(p[i]);
    struct mallinfo m2 = mallinfo();
    CHECKF(m1.uordblks - m2.uordblks >= N * 1000 / 2,
           "mallinfo uordblks did not shrink: %d -> %d", m1.uordblks, m2.uordblks);
}

static void t_mallopt(void)
{
    /* Any return value is fine; none of these may crash or break malloc. */
    static const int params[][2] = {
        {M_TRIM_THRESHOLD, 128 * 1024}, {M_TOP_PAD, 0},
        {M_MMAP_THRESHOLD, 256 * 1024}, {M_MMAP_MAX, 65536},
        {M_CHECK_ACTION, 3},            {M_PERTURB, 0},
        {M_ARENA_TEST, 8},              {M_ARENA_MAX, 4},
        {M_MXFAST, 64},                 {12345, 1},
        {-1, -1},                       {M_TRIM_THRESHOLD, -1},
    };
    for (size_t i = 0; i < sizeof params / sizeof *params; i++) {
        int rc = mallopt(params[i][0], params[i][1]);
        (void)rc;
        void *p = malloc(1000 + i * 100000);
        CHECKF(p != NULL, "malloc failed after mallopt(%d, %d)", params[i][0],
               params[i][1]);
        memset(p, 1, 1000 + i * 100000);
        th_use(p);
        free(p);
    }
}

static void t_malloc_trim(void)
{
    enum { N = 4000 };
    static void *p[N];
    static size_t n[N];
    th_rng_t r = {th_seed(6)};
    for (int i = 0; i < N; i++) {
        n[i] = th_logsize(&r, 1, i % 100 == 0 ? 8 * MIB : 32 * KIB);
        p[i] = malloc(n[i]);
        CHECK(p[i] != NULL);
        th_fill(p[i], n[i], (uint64_t)i);
    }
    for (int i = 0; i < N; i += 2)
        free(p[i]);
    static const size_t pads[] = {0, 4 * MIB, 0, 64, SIZE_MAX / 2};
    int rc;
    for (size_t k = 0; k < sizeof pads / sizeof *pads; k++) {
        rc = malloc_trim(pads[k]);
        CHECKF(rc == 0 || rc == 1, "malloc_trim(%zu) = %d", pads[k], rc);
    }
    for (int i = 1; i < N; i += 2)
        CHECK_PATTERN(p[i], n[i], (uint64_t)i);
    /* Allocate again into the trimmed space, then check everything. */
    for (int i = 0; i < N; i += 2) {
        p[i] = malloc(n[i]);
        CHECK(p[i] != NULL);
        th_fill(p[i], n[i], (uint64_t)i + 1000000);
    }
    rc = malloc_trim(0);
    CHECKF(rc == 0 || rc == 1, "malloc_trim(0) = %d with blocks live", rc);
    for (int i = 0; i < N; i++) {
        CHECK_PATTERN(p[i], n[i], (uint64_t)i + (i % 2 ? 0 : 1000000));
        free(p[i]);
    }
    rc = malloc_trim(0);
    CHECKF(rc == 0 || rc == 1, "malloc_trim(0) = %d", rc);
}

/* Runs fn with fd `which` (1 or 2) sent to a temporary file; returns the
   number of bytes written there. */
static size_t capture_fd(int which, void (*fn)(void))
{
    char path[] = "/tmp/tide-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    fflush(NULL);
    int saved = dup(which);
    CHECK(saved >= 0);
    CHECK(dup2(fd, which) == which);
    fn();
    fflush(NULL);
    CHECK(dup2(saved, which) == which);
    close(saved);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    close(fd);
    return (size_t)st.st_size;
}

static void call_malloc_stats(void)
{
    malloc_stats();
}

static void call_malloc_info(void)
{
    int rc = malloc_info(0, stdout);
    CHECKF(rc == 0, "malloc_info(0, stdout) = %d", rc);
}

static void t_malloc_stats(void)
{
    void *p = malloc(12345);
    size_t n = capture_fd(2, call_malloc_stats);
    CHECKF(n > 0, "malloc_stats printed nothing on stderr");
    free(p);
}

static void t_malloc_info(void)
{
    void *p = malloc(12345);
    size_t n = capture_fd(1, call_malloc_info);
    CHECKF(n > 0, "malloc_info(0, stdout) printed nothing");
    /* Also into a memory stream (which itself mallocs while written). */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    CHECK(malloc_info(0, f) == 0);
    CHECK(fclose(f) == 0);
    CHECKF(len > 0 && buf != NULL && strlen(buf) == len,
           "malloc_info into a memstream: %zu bytes", len);
    free(buf);
    free(p);
}

static const th_test_t tests[] = {
    TH_TEST(t_free_sized),
    TH_TEST(t_free_aligned_sized),
    TH_TEST(t_mallinfo2),
    TH_TEST(t_mallinfo2_threads),
    TH_TEST(t_mallinfo),
    TH_TEST(t_mallopt),
    TH_TEST(t_malloc_trim),
    TH_TEST(t_malloc_stats),
    TH_TEST(t_malloc_info),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
