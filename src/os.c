/*
 * os.c — system calls and machine facts (see os.h for the contract).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static size_t os_page = 4096;
static size_t os_hugepage = 0;
static unsigned os_ncpu = 1;
static uint64_t os_random_key;
static size_t os_reserve_cap = SIZE_MAX;

/* Reads a small decimal file with raw openat/read/close: no stdio, which
   allocates, and no thread cancellation point (the libc wrappers are, and
   this runs inside a program's first malloc). */
static uint64_t read_number(const char *path)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[32];
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    uint64_t v = 0;
    for (long i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(buf[i] - '0');
    return v;
}

void td_os_init(void)
{
    long pg = (long)getauxval(AT_PAGESZ);
    if (pg <= 0)
        pg = sysconf(_SC_PAGESIZE);
    if (pg > 0)
        os_page = (size_t)pg;
    os_hugepage = (size_t)read_number("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    /* Strict overcommit commits NORESERVE mappings too; under RLIMIT_AS a
       large reservation would take the program's own address space. */
    if (read_number("/proc/sys/vm/overcommit_memory") == 2)
        os_reserve_cap = (size_t)16 << 20;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur / 16 < os_reserve_cap)
        os_reserve_cap = (size_t)(rl.rlim_cur / 16);

    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        os_ncpu = (unsigned)CPU_COUNT(&set);

    /* AT_RANDOM: 16 bytes the kernel gave this process; no syscall needed.
       Mixed with the clock and an address so that a missing auxv entry
       still gives a per-process key. */
    uint64_t k = 0x9e3779b97f4a7c15ull ^ td_os_now_ns() ^ (uint64_t)(uintptr_t)&k;
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (r != NULL) {
        uint64_t a, b;
        memcpy(&a, r, 8);
        memcpy(&b, r + 8, 8);
        k ^= a * 0xff51afd7ed558ccdull ^ b;
    }
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 29;
    os_random_key = k | 1;
}

size_t td_os_page_size(void) { return os_page; }
size_t td_os_reserve_cap(void) { return os_reserve_cap; }
size_t td_os_hugepage_size(void) { return os_hugepage; }
unsigned td_os_ncpu(void) { return os_ncpu; }
uint64_t td_os_random(void) { return os_random_key; }

uint64_t td_os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint32_t td_os_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* mmap keeps errno unchanged on success; on failure we restore it, since
   malloc reports ENOMEM itself and must not leak other errno values. */
void *td_os_map(size_t bytes, size_t align)
{
    int saved = errno;
    if (align < os_page)
        align = os_page;
    size_t total = bytes + (align > os_page ? align - os_page : 0);
    if (total < bytes) {
        errno = saved;
        return NULL;
    }
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        errno = saved;
        return NULL;
    }
    uintptr_t a = (uintptr_t)p;
    uintptr_t aligned = (a + align - 1) & ~(uintptr_t)(align - 1);
    if (aligned > a)
        munmap(p, aligned - a);
    size_t tail = (a + total) - (aligned + bytes);
    if (tail > 0)
        munmap((void *)(aligned + bytes), tail);
    errno = saved;
    return (void *)aligned;
}

void td_os_unmap(void *p, size_t bytes)
{
    int saved = errno;
    munmap(p, bytes);
    errno = saved;
}

static int purge_advice = MADV_DONTNEED;

void td_os_set_purge_free(bool on) { purge_advice = on ? MADV_FREE : MADV_DONTNEED; }
bool td_os_unback_zeroes(void) { return purge_advice == MADV_DONTNEED; }

/* Rounds [p, p + bytes) inward to kernel pages; false if nothing is left. */
static bool page_inward(void *p, size_t bytes, uintptr_t *a, uintptr_t *e)
{
    *a = ((uintptr_t)p + os_page - 1) & ~(uintptr_t)(os_page - 1);
    *e = ((uintptr_t)p + bytes) & ~(uintptr_t)(os_page - 1);
    return *e > *a;
}

static void unback_one(uintptr_t a, uintptr_t e)
{
    if (madvise((void *)a, e - a, purge_advice) != 0 && purge_advice != MADV_DONTNEED)
        madvise((void *)a, e - a, MADV_DONTNEED);   /* kernel without MADV_FREE */
}

void td_os_unback(void *p, size_t bytes)
{
    uintptr_t a, e;
    if (!page_inward(p, bytes, &a, &e))
        return;
    int saved = errno;
    unback_one(a, e);
    errno = saved;
}

/* process_madvise on our own address space: PIDFD_SELF (Linux 6.14) names
   the caller without an fd, so nothing can be closed under us and a forked
   child names itself. Since Linux 6.13 any advice is allowed on self, and
   the kernel flushes the TLB once for the whole vector instead of once per
   range: with another thread running on this 2-core VM a 4 KiB range costs
   about 1 us this way against about 50 us with madvise. Older kernels
   answer EBADF or EINVAL, and then plain madvise is used for good. */
#define TD_PIDFD_SELF (-10000)
static int batch_state = 1;   /* 1: try process_madvise; 0: plain madvise */

void td_os_set_unback_batch(bool on) { __atomic_store_n(&batch_state, on ? 1 : 0, __ATOMIC_RELAXED); }

int td_os_unback_cap(void)
{
    return __atomic_load_n(&batch_state, __ATOMIC_RELAXED) ? TD_UNBACK_MAX : 64;
}

void td_os_unback_add(td_unback_batch_t *b, void *p, size_t bytes)
{
    uintptr_t a, e;
    if (!page_inward(p, bytes, &a, &e))
        return;
    if (b->n > 0) {
        struct iovec *last = &b->v[b->n - 1];
        if ((uintptr_t)last->iov_base + last->iov_len == a) {
            last->iov_len += e - a;   /* neighbours: one range */
            b->bytes += e - a;
            return;
        }
    }
    if (b->n >= td_os_unback_cap())
        td_os_unback_flush(b);
    b->v[b->n].iov_base = (void *)a;
    b->v[b->n].iov_len = e - a;
    b->n++;
    b->bytes += e - a;
}

void td_os_unback_flush(td_unback_batch_t *b)
{
    td_os_unback_vec(b->v, b->n);
    b->n = 0;
    b->bytes = 0;
}

void td_os_unback_vec(struct iovec *v, int n)
{
    int i = 0;
    if (n == 0)
        return;
    int saved = errno;
    if (n > 1 && __atomic_load_n(&batch_state, __ATOMIC_RELAXED)) {
        long got = syscall(SYS_process_madvise, TD_PIDFD_SELF, v, (size_t)n, purge_advice, 0u);
        if (got < 0) {
            if (errno == EBADF || errno == EINVAL || errno == ENOSYS || errno == EPERM)
                __atomic_store_n(&batch_state, 0, __ATOMIC_RELAXED);
        } else {
            /* It stops at the first range it could not advise: skip the
               whole ranges done and do the rest one by one. */
            size_t left = (size_t)got;
            while (i < n && left >= v[i].iov_len)
                left -= v[i++].iov_len;
        }
    }
    for (; i < n; i++)
        unback_one((uintptr_t)v[i].iov_base, (uintptr_t)v[i].iov_base + v[i].iov_len);
    errno = saved;
}

#ifndef SYS_membarrier
#define SYS_membarrier 324
#endif
#define TD_MB_PRIVATE_EXPEDITED          (1 << 3)
#define TD_MB_REGISTER_PRIVATE_EXPEDITED (1 << 4)

static int membarrier_off;   /* 1: the kernel refused it for good, or valgrind */

static int membarrier_registered;

void td_os_set_membarrier(bool on) { __atomic_store_n(&membarrier_off, !on, __ATOMIC_RELAXED); }

bool td_os_membarrier_ready(void)
{
    if (__atomic_load_n(&membarrier_off, __ATOMIC_RELAXED))
        return false;
    if (__atomic_load_n(&membarrier_registered, __ATOMIC_RELAXED))
        return true;
    int saved = errno;
    bool ok = syscall(SYS_membarrier, TD_MB_REGISTER_PRIVATE_EXPEDITED, 0u, 0) == 0;
    errno = saved;
    __atomic_store_n(ok ? &membarrier_registered : &membarrier_off, 1, __ATOMIC_RELAXED);
    return ok;
}

bool td_os_membarrier(void)
{
    if (__atomic_load_n(&membarrier_off, __ATOMIC_RELAXED))
        return false;
    if (!td_os_membarrier_ready())
        return false;
    int saved = errno;
    bool ok = syscall(SYS_membarrier, TD_MB_PRIVATE_EXPEDITED, 0u, 0) == 0;
    /* EPERM: this mm is not registered. Kernel 6.18 keeps the parent's
       registration across fork (tests/release/park.c, t_park_cur_forked);
       should one not, register here and try once more. */
    if (!ok && errno == EPERM)
        ok = syscall(SYS_membarrier, TD_MB_REGISTER_PRIVATE_EXPEDITED, 0u, 0) == 0 &&
             syscall(SYS_membarrier, TD_MB_PRIVATE_EXPEDITED, 0u, 0) == 0;
    if (!ok)
        __atomic_store_n(&membarrier_off, 1, __ATOMIC_RELAXED);
    errno = saved;
    return ok;
}

/* 0: not decided yet (auto), 1: advise, 2: do not. */
static int thp_state;

void td_os_set_thp(int mode)
{
    __atomic_store_n(&thp_state, mode == TD_THP_ON ? 1 : mode == TD_THP_OFF ? 2 : 0,
                     __ATOMIC_RELAXED);
}

/* True if a virtio balloon device offers free page reporting (feature bit
   5, VIRTIO_BALLOON_F_REPORTING, the sixth character of sysfs' features
   string): the guest then hands free blocks of 2 MiB (page_reporting_order
   9) back to the host, and a huge page fault on one makes the host fault
   its memory in again while the guest zeroes it. Measured on such a VM
   (bench realloc, 512 MiB faulted): 1.1-1.2 s after a few seconds idle
   against 0.18 s right after another run, and 0.44 s every time with base
   pages. Raw system calls: nothing allocates, and none is a thread
   cancellation point (open, read and close are, and this runs inside
   malloc). dir is the driver's sysfs directory (a parameter for tests). */
bool td_os_balloon_reports(const char *dir)
{
    int d = (int)syscall(SYS_openat, AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return false;
    bool found = false;
    char buf[1024] __attribute__((aligned(8)));
    long n;
    while (!found && (n = syscall(SYS_getdents64, d, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n && !found;) {
            const char *ent = buf + off;
            unsigned short reclen;
            memcpy(&reclen, ent + 16, sizeof reclen);   /* d_reclen */
            const char *name = ent + 19;                 /* d_name */
            off += reclen;
            if (strncmp(name, "virtio", 6) != 0)
                continue;
            char path[64];
            size_t k = strlen(name);
            if (k + sizeof "/features" > sizeof path)
                continue;
            memcpy(path, name, k);
            memcpy(path + k, "/features", sizeof "/features");
            int fd = (int)syscall(SYS_openat, d, path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            char f[16];
            long r = syscall(SYS_read, fd, f, sizeof f);
            syscall(SYS_close, fd);
            found = r > 5 && f[5] == '1';
        }
    }
    syscall(SYS_close, d);
    return found;
}

void td_os_advise_huge(void *p, size_t bytes)
{
    int saved = errno;
    int st = __atomic_load_n(&thp_state, __ATOMIC_RELAXED);
    if (st == 0) {
        /* Two threads may both decide: the same answer, stored twice. */
        st = td_os_balloon_reports("/sys/bus/virtio/drivers/virtio_balloon") ? 2 : 1;
        __atomic_store_n(&thp_state, st, __ATOMIC_RELAXED);
    }
    if (st == 1)
        madvise(p, bytes, MADV_HUGEPAGE);
    errno = saved;
}

void *td_os_remap(void *p, size_t old_bytes, size_t new_bytes, bool may_move)
{
    int saved = errno;
    void *q = mremap(p, old_bytes, new_bytes, may_move ? MREMAP_MAYMOVE : 0);
    errno = saved;
    return q == MAP_FAILED ? NULL : q;
}

/* ---- lock ------------------------------------------------------------ */
/* state: 0 free, 1 held, 2 held with (possible) sleepers. */

void td_lock_slow(td_lock_t *l)
{
    for (int spin = 0; spin < 100; spin++) {
        int z = 0;
        if (__atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&l->state, &z, 1, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
        __builtin_ia32_pause();
    }
    while (__atomic_exchange_n(&l->state, 2, __ATOMIC_ACQUIRE) != 0) {
        int saved = errno;
        syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        errno = saved;
    }
}

void td_unlock_slow(td_lock_t *l)
{
    int saved = errno;
    syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

void td_os_wait(int *w, int val, uint64_t timeout_ns)
{
    struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
    int saved = errno;
    syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, val, timeout_ns ? &ts : NULL, NULL, 0);
    errno = saved;
}

void td_os_wake(int *w, int n)
{
    int saved = errno;
    syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    errno = saved;
}

/* ---- threads --------------------------------------------------------- */

typedef struct {
    void *(*fn)(void *);
    char name[16];
} thread_arg_t;

static thread_arg_t thread_args[4];   /* one per distinct start; never freed */
static int thread_args_used;

static void *thread_entry(void *arg)
{
    thread_arg_t *a = arg;
    prctl(PR_SET_NAME, a->name, 0, 0, 0);   /* no allocation, unlike /proc writes */
    return a->fn(NULL);
}

bool td_os_thread_start(void *(*fn)(void *), const char *name)
{
    int saved = errno;
    int slot = __atomic_fetch_add(&thread_args_used, 1, __ATOMIC_RELAXED) % 4;
    thread_arg_t *a = &thread_args[slot];
    a->fn = fn;
    size_t i = 0;
    for (; name[i] && i < sizeof a->name - 1; i++)
        a->name[i] = name[i];
    a->name[i] = 0;

    pthread_attr_t attr;
    bool ok = false;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, (size_t)256 << 10);
        /* The thread inherits a full signal mask: the process's signals
           must go to the program's threads, not to ours. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        ok = pthread_create(&t, &attr, thread_entry, a) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&attr);
    }
    errno = saved;
    return ok;
}

/* ---- messages -------------------------------------------------------- */

static size_t put_num(char *out, uint64_t v, unsigned base)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

size_t td_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
    size_t len = 0;
#define PUT(c) do { if (len + 1 < cap) buf[len] = (c); len++; } while (0)
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            PUT(*f);
            continue;
        }
        f++;
        bool left = false;
        if (*f == '-') {
            left = true;
            f++;
        }
        size_t width = 0;
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (size_t)(*f++ - '0');
        int lng = 0;
        while (*f == 'l' || *f == 'z') {
            lng = 1;
            f++;
        }
        char tmp[32];
        const char *s = tmp;
        size_t n = 0;
        switch (*f) {
        case 's':
            s = va_arg(ap, const char *);
            if (s == NULL)
                s = "(null)";
            n = strlen(s);
            break;
        case 'c':
            tmp[0] = (char)va_arg(ap, int);
            n = 1;
            break;
        case 'd': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            if (v < 0) {
                tmp[n++] = '-';
                n += put_num(tmp + n, (uint64_t)0 - (uint64_t)v, 10);
            } else {
                n = put_num(tmp, (uint64_t)v, 10);
            }
            break;
        }
        case 'u':
            n = put_num(tmp, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            n = put_num(tmp, lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16);
            break;
        case 'p':
            tmp[0] = '0';
            tmp[1] = 'x';
            n = 2 + put_num(tmp + 2, (uint64_t)(uintptr_t)va_arg(ap, void *), 16);
            break;
        case '%':
            tmp[0] = '%';
            n = 1;
            break;
        default:
            tmp[0] = '?';
            n = 1;
            if (*f == 0)
                f--;
            break;
        }
        size_t pad = width > n ? width - n : 0;
        if (!left)
            while (pad--) PUT(' ');
        for (size_t i = 0; i < n; i++)
            PUT(s[i]);
        if (left)
            while (pad--) PUT(' ');
    }
    if (cap > 0)
        buf[len < cap ? len : cap - 1] = 0;
#undef PUT
    return len < cap ? len : (cap ? cap - 1 : 0);
}

size_t td_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = td_vfmt(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

void td_os_write(int fd, const char *s, size_t n)
{
    int saved = errno;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        s += w;
        n -= (size_t)w;
    }
    errno = saved;
}

static void vline(const char *fmt, va_list ap)
{
    char buf[512];
    size_t n = td_fmt(buf, sizeof buf, "tidemalloc: ");
    n += td_vfmt(buf + n, sizeof buf - n - 1, fmt, ap);
    buf[n++] = '\n';
    td_os_write(2, buf, n);
}

void td_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void td_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
    abort();
}

void td_panic(const char *file, int line, const char *cond)
{
    td_fatal("internal check failed at %s:%d: %s", file, line, cond);
}
