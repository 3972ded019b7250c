/*
 * os.h — the only layer that makes system calls.
 *
 * Owns: address-space mapping, backing and unbacking of pages, machine facts
 * (kernel page size, transparent hugepage size, CPU count), a monotonic
 * clock, a futex-based lock, the process's random key, and message output
 * through a formatter that never allocates.
 *
 * Contract with the layers above:
 *  - td_os_map returns zeroed, read-write memory aligned as asked, or NULL;
 *  - td_os_unback makes the pages read as zero and leave RSS (MADV_DONTNEED),
 *    rounding inward to kernel pages;
 *  - no function here calls malloc; td_os_init may run before main, inside
 *    the first malloc of the process.
 * Callers never hold a td_lock_t across td_os_map/unmap/unback/remap.
 */
#ifndef TIDE_OS_H
#define TIDE_OS_H

#include <stdarg.h>
#include <sys/uio.h>
#include "internal.h"

void td_os_init(void);
void *td_os_map(size_t bytes, size_t align);
void td_os_unmap(void *p, size_t bytes);
void td_os_unback(void *p, size_t bytes);
/* How td_os_unback gives pages back: MADV_DONTNEED (default; the pages
   leave RSS at once and read as zero) or MADV_FREE (the kernel takes them
   when it needs memory; until then they stay in RSS and keep their bytes). */
void td_os_set_purge_free(bool on);
bool td_os_unback_zeroes(void);    /* true while MADV_DONTNEED is used */

/* Ranges unbacked together, with one system call and one TLB flush where
   the kernel allows it (process_madvise on self), else one madvise each.
   td_os_unback_add merges a range that starts where the last one ended,
   and flushes first when the batch is full; td_os_unback_flush unbacks
   what is pending and empties the batch. Zero-initialise before use. */
#define TD_UNBACK_MAX 512
typedef struct {
    int n;
    size_t bytes;   /* pending */
    struct iovec v[TD_UNBACK_MAX];
} td_unback_batch_t;
void td_os_unback_add(td_unback_batch_t *b, void *p, size_t bytes);
/* Ranges a batch takes before it is flushed: TD_UNBACK_MAX with
   process_madvise, 64 when every range is its own madvise (so that one
   flush stays about as long either way). */
int td_os_unback_cap(void);
void td_os_unback_flush(td_unback_batch_t *b);
/* Unbacks n page-aligned ranges now, as one batch. */
void td_os_unback_vec(struct iovec *v, int n);
/* false: one madvise per range always (TIDEMALLOC_CONF process_madvise). */
void td_os_set_unback_batch(bool on);
/* Asks for transparent huge pages on [p, p + bytes) (MADV_HUGEPAGE), as
   td_os_set_thp decides: on, off, or auto (the default): on unless the
   machine is a VM that reports free memory to its host (os.c). */
void td_os_advise_huge(void *p, size_t bytes);
enum { TD_THP_AUTO, TD_THP_ON, TD_THP_OFF };
void td_os_set_thp(int mode);
/* True if an entry virtio* of dir (virtio_balloon's sysfs directory) has
   a features file whose bit 5 (free page reporting) is set. */
bool td_os_balloon_reports(const char *dir);

/* A full memory barrier on every thread of the process that is running
   now (membarrier, private expedited; registered on first use and again
   in a forked child): when it returns, each other thread's stores from
   before the barrier are visible, and its loads after it see the
   caller's earlier stores. False if the kernel lacks it (Linux < 4.14,
   seccomp, valgrind): callers then do without what it would allow.
   td_os_membarrier_ready registers the process (once) and tells whether
   barriers can be had, without one. */
bool td_os_membarrier(void);
bool td_os_membarrier_ready(void);
void td_os_set_membarrier(bool on);
/* Requires: p, old_bytes from td_os_map. Resizes in place, or with
   may_move anywhere (the old range is then unmapped, and free for any
   other mapping, as soon as it returns). Returns the new address, or NULL:
   the old mapping is then intact. */
void *td_os_remap(void *p, size_t old_bytes, size_t new_bytes, bool may_move);

/* Most bytes of address space an index that is mostly never touched may
   take with td_os_map: unlimited unless strict overcommit (mode 2, where
   MAP_NORESERVE is ignored and every byte is committed) or RLIMIT_AS make
   untouched address space costly. Read at init. */
size_t td_os_reserve_cap(void);
size_t td_os_page_size(void);      /* kernel page, read at init */
size_t td_os_hugepage_size(void);  /* THP PMD size, 0 if unknown */
unsigned td_os_ncpu(void);
uint64_t td_os_now_ns(void);       /* CLOCK_MONOTONIC */
/* Coarse milliseconds (CLOCK_MONOTONIC_COARSE, a few ms resolution, no
   system call), as a 32-bit stamp: compare with td_ms_since(). */
uint32_t td_os_now_ms(void);
static inline uint32_t td_ms_since(uint32_t stamp, uint32_t now)
{
    int32_t d = (int32_t)(now - stamp);   /* wraps after 24 days: fine for ages */
    return d > 0 ? (uint32_t)d : 0;
}

/* Futex on a private word: sleep while *w == val, at most timeout_ns
   (0: no limit); wake up to n sleepers. */
void td_os_wait(int *w, int val, uint64_t timeout_ns);
void td_os_wake(int *w, int n);

/* Starts a detached thread running fn(NULL) with every signal blocked, a
   small stack and the given name (at most 15 characters, shown by top -H).
   May call malloc (glibc allocates thread-local storage vectors): call it
   with no allocator lock held. False if the thread could not be made. */
bool td_os_thread_start(void *(*fn)(void *), const char *name);
uint64_t td_os_random(void);       /* from the kernel's AT_RANDOM bytes */

/* Lock: one word, uncontended acquire is one CAS; a contended waiter
   sleeps on a futex. Zero-initialised is unlocked. */
typedef struct { int state; } td_lock_t;   /* only via __atomic builtins */
void td_lock_slow(td_lock_t *l);
void td_unlock_slow(td_lock_t *l);
static inline void td_lock(td_lock_t *l)
{
    int z = 0;
    if (TIDE_UNLIKELY(!__atomic_compare_exchange_n(&l->state, &z, 1, false,
                                                   __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        td_lock_slow(l);
}
static inline void td_unlock(td_lock_t *l)
{
    if (TIDE_UNLIKELY(__atomic_exchange_n(&l->state, 0, __ATOMIC_RELEASE) != 1))
        td_unlock_slow(l);
}
static inline bool td_trylock(td_lock_t *l)
{
    int z = 0;
    return __atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0 &&
           __atomic_compare_exchange_n(&l->state, &z, 1, false,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}
static inline void td_lock_reset(td_lock_t *l) { __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED); }

/* Formatter: %s %c %d %u %ld %lu %zu %zd %x %lx %zx %p %%, width digits and
   '-' flag; writes at most cap-1 bytes and a NUL; returns the length. */
size_t td_vfmt(char *buf, size_t cap, const char *fmt, va_list ap);
size_t td_fmt(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void td_os_write(int fd, const char *s, size_t n);
/* One line to stderr, prefixed "tidemalloc: ", then abort(). */
void td_fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2))) TIDE_COLD;
/* One line to stderr, prefixed "tidemalloc: ". */
void td_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2))) TIDE_COLD;

#endif
