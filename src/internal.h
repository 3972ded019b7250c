/*
 * internal.h — what every layer of tidemalloc shares: the build switches,
 * branch hints, assertions, fixed-width types and the page geometry.
 *
 * Layer order, bottom up. A file includes only the headers of layers below
 * it (and this one); nothing calls up except through a callback the layer
 * above handed down.
 *
 *     os        system calls and machine facts, locks, message output
 *     conf      TIDEMALLOC_CONF, parsed without allocating
 *     pagemap   address -> span metadata; the metadata allocator
 *     pageheap  free page runs, two-level segregated fit (TLSF)
 *     sizeclass size -> class, class geometry
 *     slab      carving a span into objects of one class; remote frees
 *     heap      per-thread heaps: fast paths, adoption, large and huge blocks
 *     release   decay, the background thread, explicit release and trim
 *     api       exported entry points (the only file that exports symbols)
 *
 * Invariants every layer keeps:
 *  - nothing here calls malloc or a libc function that may allocate;
 *  - no lock is held across a system call that can be slow;
 *  - all metadata lives out of band, in memory from td_meta_alloc().
 */
#ifndef TIDE_INTERNAL_H
#define TIDE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TIDE_DEBUG: 0 release, 1 debug (TIDE_ASSERT on), 2 debug-full (also the
   O(n) walks of TIDE_ASSERT_SLOW and the per-layer validators). Asserted
   code stays compiled in every build so that it cannot rot. */
#ifndef TIDE_DEBUG
#define TIDE_DEBUG 0
#endif

#define TIDE_LIKELY(x)   __builtin_expect(!!(x), 1)
#define TIDE_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define TIDE_NOINLINE    __attribute__((noinline))
#define TIDE_INLINE      static inline __attribute__((always_inline))
#define TIDE_COLD        __attribute__((cold, noinline))
#define TIDE_HIDDEN      __attribute__((visibility("hidden")))
#define TIDE_EXPORT      __attribute__((visibility("default")))

void td_panic(const char *file, int line, const char *cond)
    __attribute__((noreturn)) TIDE_COLD;

#define TIDE_ASSERT(c) \
    do { if (TIDE_DEBUG >= 1 && !(c)) td_panic(__FILE__, __LINE__, #c); } while (0)
#define TIDE_ASSERT_SLOW(c) \
    do { if (TIDE_DEBUG >= 2 && !(c)) td_panic(__FILE__, __LINE__, #c); } while (0)
/* Always on: conditions whose failure means the heap can no longer be
   trusted. Cheap, and only on slow paths. */
#define TIDE_CHECK(c) \
    do { if (TIDE_UNLIKELY(!(c))) td_panic(__FILE__, __LINE__, #c); } while (0)

/* The allocator's page: the unit of the pagemap and the page heap. It is
   fixed at 4 KiB so shifts are constants; the kernel's page size is read at
   run time (td_os_page_size) and every system call that needs kernel-page
   alignment (unback) rounds inward to it, so a 16 KiB or 64 KiB kernel
   page is handled, at the cost of releasing less. */
#define TD_PAGE_SHIFT 12
#define TD_PAGE       ((size_t)1 << TD_PAGE_SHIFT)

static inline size_t td_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline bool td_is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

#endif
