/* Allocation before main, and from the dynamic loader's paths.
 *
 * A constructor (the earliest priority there is) allocates, reallocates and
 * frees before main, and keeps one block for main to check.  dlsym(RTLD_NEXT,
 * "malloc") must give a working malloc whose blocks free() accepts (with
 * LD_PRELOAD the next object after the program is the allocator).  dlopen
 * failures make dlerror() build its message with malloc, and libc frees it
 * with free(), also at thread exit; dlopen of a real library runs its
 * constructors, which allocate.
 */
#include "../lib/th.h"

#include <malloc.h>
#include <pthread.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

static char *ctor_block;       /* kept for main */
static size_t ctor_block_n;
static const char *ctor_error; /* NULL: the constructor's checks passed */

__attribute__((constructor(101))) static void early_ctor(void)
{
    void *p[64];
    for (int i = 0; i < 64; i++) {
        size_t n = (size_t)1 << (i % 22); /* 1 B .. 2 MiB */
        p[i] = malloc(n);
        if (!p[i]) {
            ctor_error = "malloc failed in constructor";
            return;
        }
        memset(p[i], i, n);
    }
    for (int i = 0; i < 64; i += 2)
        free(p[i]);
    for (int i = 1; i < 64; i += 2) {
        p[i] = realloc(p[i], 3000);
        if (!p[i]) {
            ctor_error = "realloc failed in constructor";
            return;
        }
        if (((unsigned char *)p[i])[0] != i) {
            ctor_error = "realloc lost contents in constructor";
            return;
        }
        free(p[i]);
    }
    void *a = aligned_alloc(64 * KIB, 64 * KIB);
    char *c = calloc(100, 100);
    if (!a || (uintptr_t)a % (64 * KIB) || !c || !th_all_zero(c, 10000)) {
        ctor_error = "aligned_alloc/calloc failed in constructor";
        return;
    }
    free(a);
    free(c);
    ctor_block_n = 12345;
    ctor_block = malloc(ctor_block_n);
    if (!ctor_block) {
        ctor_error = "malloc of the kept block failed";
        return;
    }
    th_fill(ctor_block, ctor_block_n, 77);
}

static void t_constructor(void)
{
    CHECKF(ctor_error == NULL, "%s", ctor_error);
    CHECK(ctor_block != NULL);
    CHECK_PATTERN(ctor_block, ctor_block_n, 77);
    ctor_block = realloc(ctor_block, 2 * MIB);
    CHECK(ctor_block != NULL);
    CHECK_PATTERN(ctor_block, ctor_block_n, 77);
    free(ctor_block);
    ctor_block = NULL;
}

typedef void *malloc_fn(size_t);

static void t_dlsym_next_malloc(void)
{
    malloc_fn *next = (malloc_fn *)dlsym(RTLD_NEXT, "malloc");
    malloc_fn *dflt = (malloc_fn *)dlsym(RTLD_DEFAULT, "malloc");
    CHECK(next != NULL && dflt != NULL);
#ifndef TH_STATIC_TIDE
    /* With LD_PRELOAD (or none) the object after the program defines the
       malloc everyone uses.  (Linked statically, the program itself does,
       and RTLD_NEXT is libc's: not comparable.) */
    CHECKF(next == dflt, "dlsym(RTLD_NEXT, \"malloc\") %p != RTLD_DEFAULT %p",
           (void *)next, (void *)dflt);
    for (int i = 0; i < 100; i++) {
        size_t n = (size_t)i * 997 + 1;
        char *p = next(n);
        CHECK(p != NULL);
        memset(p, 1, n);
        char *q = realloc(p, n * 3);
        CHECK(q != NULL && q[n - 1] == 1);
        free(q);
    }
#endif
    /* dlsym of the other entry points works too. */
    static const char *const names[] = {"free", "calloc", "realloc", "aligned_alloc",
                                        "posix_memalign", "malloc_usable_size"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        CHECKF(dlsym(RTLD_DEFAULT, names[i]) != NULL, "dlsym(%s) = NULL", names[i]);
}

static void dl_errors(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        void *h = dlopen("libtide-test-does-not-exist.so.9", RTLD_NOW);
        CHECK(h == NULL);
        const char *e = dlerror();
        CHECKF(e != NULL && strstr(e, "libtide-test-does-not-exist"),
               "dlerror() = %s", e ? e : "(null)");
        CHECK(dlerror() == NULL); /* cleared (and freed) */
        void *s = dlsym(RTLD_DEFAULT, "tide_test_no_such_symbol");
        CHECK(s == NULL);
        e = dlerror();
        CHECK(e != NULL && strstr(e, "tide_test_no_such_symbol"));
    }
}

static void *dl_thread(void *arg)
{
    (void)arg;
    dl_errors(50);
    /* Leave an error pending: libc frees its buffer at thread exit. */
    dlopen("libtide-test-does-not-exist.so.9", RTLD_NOW);
    return NULL;
}

static void t_dlopen_dlerror(void)
{
    dl_errors(200);
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, dl_thread, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    }
    /* A real library, loaded and unloaded repeatedly. */
    for (int i = 0; i < 20; i++) {
        void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
        CHECKF(h != NULL, "dlopen(libm.so.6): %s", dlerror());
        double (*cosf)(double) = (double (*)(double))dlsym(h, "cos");
        CHECK(cosf != NULL && cosf(0.0) == 1.0);
        CHECK(dlclose(h) == 0);
    }
    void *h = dlopen("libz.so.1", RTLD_NOW);
    if (h)
        dlclose(h);
    else
        dlerror();
}

static const th_test_t tests[] = {
    TH_TEST(t_constructor),
    TH_TEST(t_dlsym_next_malloc),
    TH_TEST(t_dlopen_dlerror),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
