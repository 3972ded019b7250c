/* release.h — helpers shared by the release-engine tests (tests/release).
 *
 * These tests are tidemalloc-only: each one skips under glibc (tests/run.sh
 * --lib glibc) and fails on a tidemalloc without the release engine.
 *
 * They are built without tidemalloc.h, so that they compile against any
 * revision: tide_release and tide_stats are looked up with dlsym, and
 * rel_stats_t repeats tide_stats_t with the fields the release engine adds.
 * tide_stats copies at most sizeof *st bytes and leaves the rest alone, so a
 * sentinel left in bg_running tells a library without those fields.
 *
 * TIDEMALLOC_CONF is read once, at the allocator's init, before main: a test
 * that needs a configuration runs a "sub" — this same program re-executed
 * (/proc/self/exe --sub NAME) with the variable set — and fails with the
 * sub's first failure line.  A sub is a function returning main's status; it
 * uses CHECK as tests do (a failure prints "file:line: FAILED: reason" on
 * stderr and exits 1).  The sub's stdout and stderr are captured together.
 *
 * While a test measures what the allocator does on its own, it must not call
 * the allocator: RSS comes from /proc/self/statm and the background thread is
 * found in /proc/self/task/<tid>/comm, both with open/read into stack
 * buffers (stdio and opendir allocate), and the bookkeeping arrays of a burst
 * are mmapped, not malloc'd.
 */
#ifndef REL_H
#define REL_H

#include "../lib/th.h"

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/syscall.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* ---- the API under test, looked up at run time ------------------------ */

/* tide_stats_t as of the release engine (include/tidemalloc.h): the core
   fields, then the three it appends. */
typedef struct {
    size_t allocated, small_allocated, small_free, large_allocated;
    size_t huge_allocated, huge_count, mapped, pageheap_free, pageheap_dirty;
    size_t released, metadata, heaps, heaps_pooled;
    size_t released_decay; /* bytes released by decay / background so far */
    size_t bg_wakeups;     /* passes of the background thread */
    int bg_running;        /* 1 while the background thread exists */
    size_t park_scanned;   /* objects whose free mark parking has read, so far;
                              SIZE_MAX: the library predates the field */
} rel_stats_t;

#define REL_SENTINEL 0x5a5a5a5a

typedef size_t rel_release_fn(size_t max_bytes, unsigned long max_usec);
typedef int rel_stats_fn(void *st, size_t size);
typedef int rel_check_fn(void);

static inline void *rel_sym(const char *name)
{
    void *f = dlsym(RTLD_DEFAULT, name);
    CHECKF(f != NULL, "tidemalloc does not export %s", name);
    return f;
}

/* Every test starts here: skips unless tidemalloc serves malloc. */
static inline void rel_need_tide(void)
{
    if (!th_is_tide())
        th_skip("release-engine tests need tidemalloc, allocator is %s",
                th_allocator());
}

/* tide_release(max_bytes, max_usec). */
static inline size_t rel_release(size_t max_bytes, unsigned long max_usec)
{
    static rel_release_fn *fn;
    if (fn == NULL)
        fn = (rel_release_fn *)rel_sym("tide_release");
    return fn(max_bytes, max_usec);
}

/* Fills *st; false if the library predates the release engine's fields
   (they are then left zero). Calls the allocator: not while measuring. */
static inline bool rel_stats_try(rel_stats_t *st)
{
    static rel_stats_fn *fn;
    if (fn == NULL)
        fn = (rel_stats_fn *)rel_sym("tide_stats");
    memset(st, 0, sizeof *st);
    st->bg_running = REL_SENTINEL;
    st->park_scanned = SIZE_MAX;
    CHECK(fn(st, sizeof *st) == 0);
    if (st->bg_running == REL_SENTINEL) {
        st->bg_running = 0;
        return false;
    }
    return true;
}

/* The same, failing the test if the fields are missing. */
static inline void rel_stats(rel_stats_t *st)
{
    CHECKF(rel_stats_try(st),
           "tide_stats() does not fill released_decay/bg_wakeups/bg_running "
           "(no release engine in this library)");
    CHECKF(st->bg_running == 0 || st->bg_running == 1,
           "tide_stats: bg_running = %d, want 0 or 1", st->bg_running);
}

static inline void rel_check(void)
{
    rel_check_fn *fn = (rel_check_fn *)rel_sym("tide_check");
    CHECK(fn() == 0);
}

/* ---- measuring without allocating ------------------------------------ */

/* Resident bytes of this process, from /proc/self/statm; with anon_only,
   less the file-backed and shared ones (code pages the test first runs
   count there). */
static inline long rel_rss_of(bool anon_only)
{
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    const char *s = buf;
    while (*s && *s != ' ') /* size */
        s++;
    while (*s == ' ')
        s++;
    long pages = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        pages = pages * 10 + (*s - '0');
    if (anon_only) {
        while (*s == ' ')
            s++;
        long shared = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            shared = shared * 10 + (*s - '0');
        pages -= shared;
    }
    return pages * sysconf(_SC_PAGESIZE);
}

static inline long rel_rss(void)
{
    return rel_rss_of(false);
}

#define REL_MIB(bytes) ((long)(bytes) / (long)MIB)

static inline uint64_t rel_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Worker-against-releaser tests: start n threads running fn((void *)i). */
static inline void rel_start_workers(pthread_t *t, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)i) == 0);
}

/* The deadline of such a test's release loop: 1.5 s (quick: 1 s, long:
   20 s) from now. */
static inline uint64_t rel_loop_end(void)
{
    return rel_now_ms() + (th_quick() ? 1000 : th_long() ? 20000 : 1500);
}

/* True while the loop must go on: until end, and until the workers have
   made min_ops operations (*ops, relaxed): a slow or loaded machine takes
   longer, it does not fail. */
static inline bool rel_loop_more(uint64_t end, const size_t *ops, size_t min_ops)
{
    return rel_now_ms() < end || __atomic_load_n(ops, __ATOMIC_RELAXED) < min_ops;
}

static inline void rel_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

struct rel_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Threads of this process named "tide-release" (-1: /proc unreadable). */
static inline int rel_bg_threads(void)
{
    int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[4096] __attribute__((aligned(8)));
    int count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct rel_dirent64 *d = (struct rel_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            char path[80] = "/proc/self/task/";
            size_t len = strlen(path), k = strlen(d->d_name);
            if (len + k + 6 >= sizeof path)
                continue;
            memcpy(path + len, d->d_name, k);
            memcpy(path + len + k, "/comm", 6);
            int cfd = open(path, O_RDONLY | O_CLOEXEC);
            if (cfd < 0)
                continue; /* the thread just exited */
            char comm[32];
            ssize_t r = read(cfd, comm, sizeof comm - 1);
            close(cfd);
            if (r <= 0)
                continue;
            comm[r] = '\0';
            if (strcmp(comm, "tide-release\n") == 0 || strcmp(comm, "tide-release") == 0)
                count++;
        }
    }
    close(fd);
    return count;
}

/* Waits up to deadline_ms for the background thread to exist; returns the
   number of tide-release threads last seen. No allocator call. */
static inline int rel_wait_bg(unsigned deadline_ms)
{
    uint64_t end = rel_now_ms() + deadline_ms;
    int n;
    while ((n = rel_bg_threads()) == 0 && rel_now_ms() < end)
        rel_sleep_ms(10);
    return n;
}

/* ---- bursts ----------------------------------------------------------- */

/* A burst: blocks of mixed sizes, recorded in mmapped arrays. Each round
   allocates one 1 MiB block, six of 64 KiB and ~512 KiB of small blocks
   (16..1024 bytes): about 45% of the bytes small, 20% in 64 KiB slabs, 35%
   in page runs. */
typedef struct {
    void **p;
    size_t *n;
    size_t count, cap, bytes, map_bytes;
} rel_burst_t;

enum { REL_SMALL_PER_ROUND = 1000 };

static inline void *rel_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    CHECKF(p != MAP_FAILED, "mmap(%zu): %s", bytes, strerror(errno));
    return p;
}

/* Reserves the arrays for about total bytes (call before measuring the
   baseline: they are only touched by rel_burst_alloc). */
static inline void rel_burst_init(rel_burst_t *b, size_t total)
{
    /* 520 is the mean small size: a seed whose sizes run low needs more
       rounds than the mean gives (room for 1/8 more, and two rounds). */
    size_t rounds = total / (MIB + 6 * 64 * KIB + REL_SMALL_PER_ROUND * 520) * 9 / 8 + 2;
    b->cap = rounds * (7 + REL_SMALL_PER_ROUND);
    b->map_bytes = (b->cap * (sizeof *b->p + sizeof *b->n) + 4095) & ~(size_t)4095;
    void *m = rel_map(b->map_bytes);
    b->p = m;
    b->n = (size_t *)((char *)m + b->cap * sizeof *b->p);
    b->count = b->bytes = 0;
}

static inline void rel_burst_add(rel_burst_t *b, size_t n, uint64_t tag, bool fill)
{
    CHECK(b->count < b->cap);
    void *p = malloc(n);
    CHECKF(p != NULL, "malloc(%zu) failed", n);
    if (fill)
        th_fill(p, n, tag);
    else
        memset(p, (int)(tag | 1), n); /* touch every page */
    b->p[b->count] = p;
    b->n[b->count] = n;
    b->count++;
    b->bytes += n;
}

/* Allocates and touches about total bytes. fill: th_fill patterns (tag =
   index), checked by rel_burst_verify; else a plain memset. */
static inline void rel_burst_alloc(rel_burst_t *b, size_t total, uint64_t seed,
                                   bool fill)
{
    th_rng_t r = {seed};
    while (b->bytes < total) {
        rel_burst_add(b, MIB, b->count, fill);
        for (int i = 0; i < 6; i++)
            rel_burst_add(b, 64 * KIB, b->count, fill);
        for (int i = 0; i < REL_SMALL_PER_ROUND; i++)
            rel_burst_add(b, th_range(&r, 16, 1024), b->count, fill);
    }
}

static inline void rel_burst_verify(const rel_burst_t *b)
{
    for (size_t i = 0; i < b->count; i++)
        CHECK_PATTERN(b->p[i], b->n[i], (uint64_t)i);
}

/* Frees every block (in allocation order: every slab ends empty). */
static inline void rel_burst_free(rel_burst_t *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->p[i]);
    b->count = b->bytes = 0;
}

/* Unmaps the arrays (no allocator call). */
static inline void rel_burst_done(rel_burst_t *b)
{
    munmap(b->p, b->map_bytes);
    b->p = NULL;
    b->n = NULL;
}

/* ---- subs: this program re-executed with TIDEMALLOC_CONF ------------- */

typedef struct {
    const char *name;
    int (*fn)(void); /* main's return value */
} rel_sub_t;

#define REL_SUB(fn) { #fn, fn }
#define REL_SUB_END { NULL, NULL }

typedef struct {
    int status;     /* waitpid status */
    char out[32768]; /* stdout and stderr, NUL-terminated (truncated) */
    size_t len;
    uint64_t ms;    /* wall time from fork to reap */
} rel_run_t;

/* Runs sub NAME of this program with TIDEMALLOC_CONF=conf (NULL: unset)
   under an alarm of alarm_s seconds (kept across exec); captures its
   output. */
static inline void rel_spawn(rel_run_t *r, const char *name, const char *conf,
                             unsigned alarm_s)
{
    int pfd[2];
    CHECK(pipe2(pfd, O_CLOEXEC) == 0);
    fflush(NULL);
    uint64_t t0 = rel_now_ms();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        if (conf)
            setenv("TIDEMALLOC_CONF", conf, 1);
        else
            unsetenv("TIDEMALLOC_CONF");
        alarm(alarm_s);
        execl("/proc/self/exe", "release-sub", "--sub", name, (char *)NULL);
        fprintf(stderr, "exec /proc/self/exe: %s\n", strerror(errno));
        _exit(126);
    }
    close(pfd[1]);
    r->len = 0;
    for (;;) {
        char tmp[4096];
        ssize_t n = read(pfd[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t room = sizeof r->out - 1 - r->len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(r->out + r->len, tmp, take);
        r->len += take;
    }
    r->out[r->len] = '\0';
    close(pfd[0]);
    while (waitpid(pid, &r->status, 0) < 0)
        CHECK(errno == EINTR);
    r->ms = rel_now_ms() - t0;
    /* The whole output goes to this program's log, for debugging. */
    fprintf(stderr, "--- sub %s, TIDEMALLOC_CONF=%s: status 0x%x, %" PRIu64 " ms\n%s",
            name, conf ? conf : "(unset)", r->status, r->ms, r->out);
    if (r->len && r->out[r->len - 1] != '\n')
        fputc('\n', stderr);
    fprintf(stderr, "--- end of sub %s\n", name);
}

/* The first line of s containing needle (or the first line), flattened into
   buf. */
static inline const char *rel_line(const char *s, const char *needle, char *buf,
                                   size_t size)
{
    const char *at = needle ? strstr(s, needle) : NULL;
    if (at) {
        while (at > s && at[-1] != '\n')
            at--;
    } else {
        at = s;
    }
    size_t k = 0;
    while (at[k] && at[k] != '\n' && k + 1 < size) {
        buf[k] = at[k];
        k++;
    }
    buf[k] = '\0';
    return buf;
}

/* Fails the test unless the run exited 0; the reason is the sub's first
   FAILED line. */
static inline void rel_expect_ok(const rel_run_t *r, const char *name,
                                 const char *conf)
{
    char line[600];
    if (WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
        return;
    if (WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGALRM)
        TH_FAIL("%s [TIDEMALLOC_CONF=%s]: hung, killed by its alarm after %" PRIu64
                " ms; last output: %s",
                name, conf ? conf : "", r->ms, rel_line(r->out, "FAILED:", line, sizeof line));
    if (WIFSIGNALED(r->status))
        TH_FAIL("%s [TIDEMALLOC_CONF=%s]: killed by %s (%d): %s", name,
                conf ? conf : "", th_signame(WTERMSIG(r->status)), WTERMSIG(r->status),
                rel_line(r->out, "FAILED:", line, sizeof line));
    TH_FAIL("%s [TIDEMALLOC_CONF=%s]: exit status %d: %s", name, conf ? conf : "",
            WEXITSTATUS(r->status), rel_line(r->out, "FAILED:", line, sizeof line));
}

/* Runs a sub and fails with its failure. */
static inline void rel_run_sub(const char *name, const char *conf, unsigned alarm_s)
{
    static rel_run_t r;
    rel_spawn(&r, name, conf, alarm_s);
    rel_expect_ok(&r, name, conf);
}

/* main(): runs a sub when asked to (--sub NAME), else the tests. */
static inline int rel_main(int argc, char **argv, const th_test_t *tests,
                           const rel_sub_t *subs)
{
    if (argc == 3 && strcmp(argv[1], "--sub") == 0) {
        th_sh = &th_sh_local;
        th_forked = false;
        const char *s = getenv("TIDE_TEST_SEED");
        th_base_seed = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL);
        const char *p = getenv("TH_PROG_NAME");
        th_prog = p && *p ? p : "sub";
        for (const rel_sub_t *sub = subs; sub->name; sub++)
            if (strcmp(sub->name, argv[2]) == 0)
                return sub->fn();
        fprintf(stderr, "FAILED: no sub named %s\n", argv[2]);
        return 2;
    }
    return th_main(argc, argv, tests);
}


/* A thread that runs commands for a test: the heap owner of the blocks the
   test allocates there, idle (blocked) between commands. */
static pthread_mutex_t rel_owner_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rel_owner_cv = PTHREAD_COND_INITIALIZER;
static void (*rel_owner_cmd)(void);
static int rel_owner_seq, rel_owner_done, rel_owner_quit;
static pthread_t rel_owner_tid;

static void *rel_owner_loop(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rel_owner_mu);
    for (;;) {
        while (rel_owner_seq == rel_owner_done && !rel_owner_quit)
            pthread_cond_wait(&rel_owner_cv, &rel_owner_mu);
        if (rel_owner_quit)
            break;
        void (*fn)(void) = rel_owner_cmd;
        pthread_mutex_unlock(&rel_owner_mu);
        fn();
        pthread_mutex_lock(&rel_owner_mu);
        rel_owner_done = rel_owner_seq;
        pthread_cond_broadcast(&rel_owner_cv);
    }
    pthread_mutex_unlock(&rel_owner_mu);
    return NULL;
}

static inline void rel_owner_start(void)
{
    rel_owner_quit = 0;   /* a second owner in the same process (a forked child) */
    CHECK(pthread_create(&rel_owner_tid, NULL, rel_owner_loop, NULL) == 0);
}

/* Runs fn on the owner thread and waits for it. */
static inline void rel_on_owner(void (*fn)(void))
{
    pthread_mutex_lock(&rel_owner_mu);
    rel_owner_cmd = fn;
    rel_owner_seq++;
    pthread_cond_broadcast(&rel_owner_cv);
    while (rel_owner_done != rel_owner_seq)
        pthread_cond_wait(&rel_owner_cv, &rel_owner_mu);
    pthread_mutex_unlock(&rel_owner_mu);
}

static inline void rel_owner_stop(void)
{
    pthread_mutex_lock(&rel_owner_mu);
    rel_owner_quit = 1;
    pthread_cond_broadcast(&rel_owner_cv);
    pthread_mutex_unlock(&rel_owner_mu);
    CHECK(pthread_join(rel_owner_tid, NULL) == 0);
}

#endif /* REL_H */
