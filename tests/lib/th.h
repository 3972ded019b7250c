/* th.h — the test harness shared by tests/api and tests/stress.
 *
 * A test program lists its tests in a table and hands it to th_main():
 *
 *     static void t_zero(void) { CHECK(malloc(0) != NULL); }
 *     static const th_test_t tests[] = { TH_TEST(t_zero), TH_END };
 *     int main(int argc, char **argv) { return th_main(argc, argv, tests); }
 *
 * Each test runs in a forked child (so a crash or a corrupted heap fails one
 * test, not the program) under an alarm().  A failed CHECK stores its message
 * in a shared page and ends the child; the parent prints one line per test:
 *
 *     ok   <prog>/<test>
 *     FAIL <prog>/<test>: <file:line: reason>
 *     skip <prog>/<test>: <reason>
 *
 * tests/run.sh reads these lines.  Run a program by hand with test names as
 * arguments to pick tests, --no-fork to run them in-process (for gdb), and
 * --list to list them.
 *
 * Environment (set by tests/run.sh, all optional):
 *   TIDE_TEST_SEED   base seed of randomized tests (else time-based; printed)
 *   TIDE_TEST_LONG   1: scale iteration counts up (th_scale)
 *   TIDE_TEST_QUICK  1: halve them (tests/run.sh --quick)
 *   TIDE_EXPECT      "tidemalloc" or "glibc": which allocator must be serving
 *                    malloc; a mismatch fails the program (preload not taken).
 *
 * Everything is static: each test program is one translation unit.
 */
#ifndef TH_H
#define TH_H

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn)(void);
    unsigned timeout_s; /* 0: TH_DEFAULT_TIMEOUT_S */
} th_test_t;

#define TH_TEST(fn) { #fn, fn, 0 }
#define TH_TEST_T(fn, secs) { #fn, fn, (secs) }
#define TH_END { NULL, NULL, 0 }

/* Generous: a test is meant to take seconds; this only catches hangs
   (deadlocks after fork, lost wake-ups).  Long mode multiplies it. */
#define TH_DEFAULT_TIMEOUT_S 60
#define TH_SKIP_STATUS 77

/* State shared between the parent and the forked test (MAP_SHARED). */
typedef struct {
    char msg[2048];      /* first failure or skip reason */
    int seed_used;       /* the test called th_seed(): print the seed */
} th_shared_t;

static th_shared_t *th_sh;
static th_shared_t th_sh_local; /* --no-fork */
static bool th_forked = true;
static const char *th_prog = "test";
static uint64_t th_base_seed;

/* ---- failing, skipping ---------------------------------------------- */

static inline void th_vrecord(const char *fmt, va_list ap)
{
    if (th_sh->msg[0] == '\0')
        vsnprintf(th_sh->msg, sizeof th_sh->msg, fmt, ap);
}

__attribute__((noreturn, format(printf, 3, 4))) static inline void
th_fail_at(const char *file, int line, const char *fmt, ...)
{
    char buf[1800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (th_sh->msg[0] == '\0')
        snprintf(th_sh->msg, sizeof th_sh->msg, "%s:%d: %s", base, line, buf);
    fprintf(stderr, "%s:%d: FAILED: %s\n", base, line, buf);
    fflush(stderr);
    _exit(1);
}

__attribute__((noreturn, format(printf, 1, 2))) static inline void
th_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    th_vrecord(fmt, ap);
    va_end(ap);
    _exit(TH_SKIP_STATUS);
}

#define TH_FAIL(...) th_fail_at(__FILE__, __LINE__, __VA_ARGS__)
#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c))                                                            \
            th_fail_at(__FILE__, __LINE__, "%s", #c);                        \
    } while (0)
#define CHECKF(c, ...)                                                       \
    do {                                                                     \
        if (!(c))                                                            \
            th_fail_at(__FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)
/* Unsigned comparison printing both sides. */
#define CHECK_OP(a, op, b)                                                   \
    do {                                                                     \
        uintmax_t th_a_ = (uintmax_t)(a), th_b_ = (uintmax_t)(b);            \
        if (!(th_a_ op th_b_))                                               \
            th_fail_at(__FILE__, __LINE__, "%s %s %s (%ju vs %ju)", #a, #op, \
                       #b, th_a_, th_b_);                                    \
    } while (0)
#define CHECK_EQ(a, b) CHECK_OP(a, ==, b)

/* ---- helpers -------------------------------------------------------- */

/* Hide a pointer's origin from the compiler, so it cannot fold comparisons
   of malloc results, drop malloc/free pairs, or warn on deliberate misuse. */
static inline void *th_launder(void *p)
{
    __asm__ volatile("" : "+r"(p) : : "memory");
    return p;
}

/* Make the compiler believe p's memory is read here: stores before it
   (a memset before free) cannot be dropped as dead. */
static inline void th_use(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* errno, reloaded: clang assumes the allocation functions leave errno alone
   and would otherwise reuse the value stored before the call. */
static inline int th_errno(void)
{
    __asm__ volatile("" : : : "memory");
    return errno;
}

/* Hide a size from the compiler (no -Walloc-size-larger-than on purpose). */
static inline size_t th_opaque(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

static inline bool th_long(void)
{
    const char *s = getenv("TIDE_TEST_LONG");
    return s && *s && strcmp(s, "0") != 0;
}

static inline bool th_quick(void)
{
    const char *s = getenv("TIDE_TEST_QUICK");
    return s && *s && strcmp(s, "0") != 0;
}

/* n in a normal run, n * factor with TIDE_TEST_LONG, n / 2 with
   TIDE_TEST_QUICK (the sanitizer run). */
static inline size_t th_scale(size_t n, size_t factor)
{
    if (th_long())
        return n * factor;
    if (th_quick())
        return n / 2 ? n / 2 : 1;
    return n;
}

/* Seeds: th_seed() marks the running test as randomized (its seed is
   printed with its result) and returns the base seed mixed with salt. */
static inline uint64_t th_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t th_seed(uint64_t salt)
{
    th_sh->seed_used = 1;
    return th_mix(th_base_seed ^ th_mix(salt));
}

typedef struct {
    uint64_t s;
} th_rng_t;

static inline uint64_t th_rand(th_rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline size_t th_range(th_rng_t *r, size_t lo, size_t hi)
{
    return lo + (size_t)(th_rand(r) % (uint64_t)(hi - lo + 1));
}

/* Log-uniform in [lo, hi], lo >= 1: as many small sizes as large ones. */
static inline size_t th_logsize(th_rng_t *r, size_t lo, size_t hi)
{
    int lb = 63 - __builtin_clzll(lo), hb = 63 - __builtin_clzll(hi);
    int b = (int)th_range(r, (size_t)lb, (size_t)hb);
    size_t base = (size_t)1 << b, top = base * 2 - 1;
    if (base < lo)
        base = lo;
    if (top > hi)
        top = hi;
    return th_range(r, base, top);
}

/* Which allocator serves malloc in this process: "tidemalloc", "glibc" or
   the path of whatever object defines it.  TH_STATIC_TIDE is defined by
   tests/run.sh when the program is linked with libtidemalloc.a. */
static inline const char *th_allocator(void)
{
#ifdef TH_STATIC_TIDE
    return "tidemalloc";
#else
    static char name[512];
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    Dl_info info;
    if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL)
        return "unknown";
    if (strstr(info.dli_fname, "tidemalloc"))
        return "tidemalloc";
    if (strstr(info.dli_fname, "libc.so"))
        return "glibc";
    snprintf(name, sizeof name, "%s", info.dli_fname);
    return name;
#endif
}

static inline bool th_is_tide(void)
{
    return strcmp(th_allocator(), "tidemalloc") == 0;
}

/* Resolve an allocator function that libc may lack (free_sized...):
   the preloaded or linked definition, else NULL. */
static inline void *th_optional_fn(const char *name, void *weak_ref)
{
    if (weak_ref)
        return weak_ref;
    return dlsym(RTLD_DEFAULT, name);
}

/* The pattern: byte i of a block tagged tag is a function of (tag, i) only,
   so any prefix of a filled block can be checked (realloc).  It varies with
   position in the first 64 bytes, by 256-byte chunk after, and holds the word
   tag ^ offset at each 4 KiB boundary, so a block copied to the wrong place,
   shifted, or overlapping another is detected.  Filling is memset-fast, even
   for 100 MiB blocks. */
static inline unsigned char th_pat_base(uint64_t tag)
{
    return (unsigned char)(th_mix(tag) | 1);
}

static inline void th_fill(void *p, size_t n, uint64_t tag)
{
    unsigned char *c = p, b = th_pat_base(tag);
    for (size_t s = 0; s < n; s += 256)
        memset(c + s, b ^ (unsigned char)(s >> 8), n - s < 256 ? n - s : 256);
    for (size_t i = 0; i < n && i < 64; i++)
        c[i] = (unsigned char)(b + i * 7);
    for (size_t off = 4096; off < n; off += 4096) {
        uint64_t w = tag ^ off;
        memcpy(c + off, &w, n - off < 8 ? n - off : 8);
    }
}

/* First offset in [from, to) whose byte is not b, or SIZE_MAX. */
static inline size_t th_find_ne(const unsigned char *c, size_t from, size_t to,
                                unsigned char b)
{
    uint64_t w = 0x0101010101010101ull * b;
    size_t i = from;
    for (; i < to && (i & 7); i++)
        if (c[i] != b)
            return i;
    for (; i + 8 <= to; i += 8) {
        uint64_t v;
        memcpy(&v, c + i, 8);
        if (v != w)
            break;
    }
    for (; i < to; i++)
        if (c[i] != b)
            return i;
    return SIZE_MAX;
}

/* Checks p[0..n) against the pattern of tag: the offset of the first wrong
   byte, or SIZE_MAX if all match. */
static inline size_t th_verify(const void *p, size_t n, uint64_t tag)
{
    const unsigned char *c = p, b = th_pat_base(tag);
    for (size_t i = 0; i < n && i < 64; i++)
        if (c[i] != (unsigned char)(b + i * 7))
            return i;
    for (size_t s = 0; s < n; s += 256) {
        size_t lo = s < 64 ? 64 : s, hi = n - s < 256 ? n : s + 256;
        if (s >= 4096 && s % 4096 == 0) {
            uint64_t w = tag ^ s;
            for (size_t k = 0; k < 8 && s + k < n; k++)
                if (c[s + k] != ((unsigned char *)&w)[k])
                    return s + k;
            lo = s + 8;
        }
        if (lo < hi) {
            size_t bad = th_find_ne(c, lo, hi, b ^ (unsigned char)(s >> 8));
            if (bad != SIZE_MAX)
                return bad;
        }
    }
    return SIZE_MAX;
}

#define CHECK_PATTERN(p, n, tag)                                             \
    do {                                                                     \
        size_t th_bad_ = th_verify((p), (n), (tag));                         \
        if (th_bad_ != SIZE_MAX)                                             \
            th_fail_at(__FILE__, __LINE__,                                   \
                       "block %p size %zu: byte %zu overwritten",            \
                       (void *)(p), (size_t)(n), th_bad_);                   \
    } while (0)

static inline bool th_all_zero(const void *p, size_t n)
{
    return th_find_ne(p, 0, n, 0) == SIZE_MAX;
}

/* VmRSS of this process in KiB, from /proc/self/status. */
static inline long th_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* ---- running -------------------------------------------------------- */

/* Runs op(arg) in a forked child whose stderr (and no core dump) is
   captured: if op returns, the child writes survived_note and exits 0.
   Fills out (NUL-terminated, at most cap-1 bytes) and returns the child's
   wait status. For death tests. */
static inline int th_run_in_child(void (*op)(void *), void *arg, const char *survived_note,
                                  char *out, size_t cap)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        op(arg);
        fprintf(stderr, "%s\n", survived_note);
        _exit(0);
    }
    close(pfd[1]);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(pfd[0], out + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap - 1)
            break;
    }
    out[len] = '\0';
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        CHECK(errno == EINTR);
    return status;
}

static inline const char *th_signame(int sig)
{
    switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGKILL: return "SIGKILL";
    case SIGALRM: return "SIGALRM";
    case SIGTERM: return "SIGTERM";
    default: return "signal";
    }
}

/* Runs one test; prints its line; returns 0 ok, 1 failed, 2 skipped. */
static inline int th_run_one(const th_test_t *t)
{
    unsigned timeout = t->timeout_s ? t->timeout_s : TH_DEFAULT_TIMEOUT_S;
    if (th_long())
        timeout *= 10;
    memset(th_sh, 0, sizeof *th_sh);
    int status = 0;

    fflush(NULL);
    if (!th_forked) {
        t->fn();
        status = 0;
    } else {
        pid_t pid = fork();
        if (pid < 0) {
            printf("FAIL %s/%s: fork: %s\n", th_prog, t->name, strerror(errno));
            return 1;
        }
        if (pid == 0) {
            alarm(timeout);
            t->fn();
            fflush(NULL);
            _exit(0);
        }
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                printf("FAIL %s/%s: waitpid: %s\n", th_prog, t->name,
                       strerror(errno));
                return 1;
            }
        }
    }

    char seed[64] = "";
    if (th_sh->seed_used)
        snprintf(seed, sizeof seed, " [seed %" PRIu64 "]", th_base_seed);
    const char *msg = th_sh->msg;
    int rc;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok %s/%s%s\n", th_prog, t->name, seed);
        rc = 0;
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_STATUS) {
        printf("skip %s/%s: %s\n", th_prog, t->name, msg[0] ? msg : "skipped");
        rc = 2;
    } else if (WIFEXITED(status)) {
        if (msg[0])
            printf("FAIL %s/%s: %s%s\n", th_prog, t->name, msg, seed);
        else
            printf("FAIL %s/%s: exited with status %d%s\n", th_prog, t->name,
                   WEXITSTATUS(status), seed);
        rc = 1;
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
        printf("FAIL %s/%s: timed out after %us (hang or deadlock)%s%s%s\n",
               th_prog, t->name, timeout, msg[0] ? ": " : "", msg, seed);
        rc = 1;
    } else {
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        printf("FAIL %s/%s: killed by %s (%d)%s%s%s\n", th_prog, t->name,
               th_signame(sig), sig, msg[0] ? ": " : "", msg, seed);
        rc = 1;
    }
    fflush(stdout);
    return rc;
}

static inline int th_main(int argc, char **argv, const th_test_t *tests)
{
    const char *slash = strrchr(argv[0], '/');
    th_prog = slash ? slash + 1 : argv[0];
    const char *p = getenv("TH_PROG_NAME"); /* group/name, from run.sh */
    if (p && *p)
        th_prog = p;

    bool list = false;
    int nsel = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-fork") == 0)
            th_forked = false;
        else if (strcmp(argv[i], "--list") == 0)
            list = true;
        else if (strcmp(argv[i], "--long") == 0)
            setenv("TIDE_TEST_LONG", "1", 1);
        else
            nsel++;
    }
    if (list) {
        for (const th_test_t *t = tests; t->name; t++)
            printf("%s\n", t->name);
        return 0;
    }

    const char *s = getenv("TIDE_TEST_SEED");
    th_base_seed = s && *s ? strtoull(s, NULL, 0)
                           : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);

    if (th_forked) {
        th_sh = mmap(NULL, sizeof *th_sh, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (th_sh == MAP_FAILED) {
            printf("FAIL %s: mmap: %s\n", th_prog, strerror(errno));
            return 1;
        }
    } else {
        th_sh = &th_sh_local;
    }

    int failed = 0;
    /* The allocator under test must be the one serving this process:
       a silently ignored LD_PRELOAD would make every test pass on glibc. */
    const char *want = getenv("TIDE_EXPECT");
    if (want && *want && strcmp(want, th_allocator()) != 0) {
        printf("FAIL %s/allocator: expected %s to serve malloc, found %s\n",
               th_prog, want, th_allocator());
        failed++;
    }
    printf("# %s: allocator %s, seed %" PRIu64 "%s\n", th_prog, th_allocator(),
           th_base_seed, th_long() ? ", long" : th_quick() ? ", quick" : "");
    fflush(stdout);

    for (const th_test_t *t = tests; t->name; t++) {
        if (nsel) {
            bool hit = false;
            for (int i = 1; i < argc; i++)
                if (argv[i][0] != '-' && strcmp(argv[i], t->name) == 0)
                    hit = true;
            if (!hit)
                continue;
        }
        if (th_run_one(t) == 1)
            failed++;
    }
    return failed ? 1 : 0;
}

#endif /* TH_H */
