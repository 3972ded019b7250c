/*
 * api.c — the exported entry points, and the only file that exports.
 *
 * Each is a thin call into the heap layer; malloc and free inline its fast
 * paths, so an exported call reaches the slab with no further call or PLT
 * jump. Error semantics follow glibc: failures set errno to ENOMEM (EINVAL
 * for bad alignments) and return NULL; a failed realloc leaves the block.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "release.h"
#include "../include/tidemalloc.h"

#define EXPORT TIDE_EXPORT

EXPORT void *malloc(size_t n)
{
    return td_heap_malloc(n);
}

EXPORT void free(void *p)
{
    td_heap_free(p, "free()");
}

EXPORT void *calloc(size_t n, size_t size)
{
    size_t total;
    if (TIDE_UNLIKELY(__builtin_mul_overflow(n, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    return td_heap_calloc(total);
}

EXPORT void *realloc(void *p, size_t n)
{
    return td_heap_realloc(p, n);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (TIDE_UNLIKELY(__builtin_mul_overflow(n, size, &total))) {
        errno = ENOMEM;
        return NULL;
    }
    return td_heap_realloc(p, total);
}

EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (TIDE_UNLIKELY(!td_is_pow2(align))) {
        errno = EINVAL;
        return NULL;
    }
    return td_heap_malloc_aligned(align, n);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (TIDE_UNLIKELY(!td_is_pow2(align) || align % sizeof(void *) != 0))
        return EINVAL;
    int saved = errno;
    void *p = td_heap_malloc_aligned(align, n);
    errno = saved;
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

EXPORT void *memalign(size_t align, size_t n)
{
    /* glibc rounds a non-power-of-two alignment up. */
    if (!td_is_pow2(align)) {
        if (align > ((size_t)1 << 62)) {
            errno = EINVAL;
            return NULL;
        }
        size_t a = 1;
        while (a < align)
            a <<= 1;
        align = a;
    }
    return td_heap_malloc_aligned(align, n);
}

EXPORT void *valloc(size_t n)
{
    td_global_init();
    return td_heap_malloc_aligned(td_os_page_size(), n);
}

EXPORT void *pvalloc(size_t n)
{
    td_global_init();
    size_t page = td_os_page_size();
    size_t r = td_align_up(n ? n : 1, page);
    if (r < n) {
        errno = ENOMEM;
        return NULL;
    }
    return td_heap_malloc_aligned(page, r);
}

EXPORT size_t malloc_usable_size(void *p)
{
    if (p == NULL)
        return 0;
    return td_heap_usable_size(p, "malloc_usable_size()");
}

EXPORT void free_sized(void *p, size_t size)
{
    if (p != NULL && TIDE_UNLIKELY(size > td_heap_usable_size(p, "free_sized()")))
        td_fatal("free_sized(): size %zu larger than the block at %p", size, p);
    td_heap_free(p, "free_sized()");
}

EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    if (p != NULL) {
        if (TIDE_UNLIKELY(size > td_heap_usable_size(p, "free_aligned_sized()")))
            td_fatal("free_aligned_sized(): size %zu larger than the block at %p", size, p);
        if (TIDE_UNLIKELY(!td_is_pow2(align) || ((uintptr_t)p & (align - 1)) != 0))
            td_fatal("free_aligned_sized(): %p is not aligned to %zu", p, align);
    }
    td_heap_free(p, "free_aligned_sized()");
}

/* ---- glibc extensions ----------------------------------------------- */

EXPORT size_t tide_release(size_t max_bytes, unsigned long max_usec)
{
    return td_release_now(max_bytes, max_usec, 0);
}

EXPORT int malloc_trim(size_t pad)
{
    /* glibc keeps pad bytes at the top of its heap; the nearest thing here
       is to leave that much free memory resident, for reuse. */
    return td_release_now(SIZE_MAX, 0, pad) > 0;
}

EXPORT int tide_stats(tide_stats_t *out, size_t size)
{
    tide_stats_t st;
    td_heap_stats_t hs;
    td_pageheap_stats_t ps;
    memset(&st, 0, sizeof st);
    td_heap_stats(&hs);
    td_pageheap_stats(&ps);
    st.small_allocated = hs.slab_used_bytes;
    st.small_free = hs.slab_free_bytes;
    st.large_allocated = hs.large_bytes;
    st.huge_allocated = ps.huge;
    st.huge_count = ps.huge_count;
    st.allocated = st.small_allocated + st.large_allocated + st.huge_allocated;
    st.mapped = ps.mapped;
    st.pageheap_free = ps.free;
    st.pageheap_dirty = ps.free_dirty;
    st.released = ps.released;
    st.metadata = td_meta_bytes();
    st.heaps = hs.heaps;
    st.heaps_pooled = hs.pooled_heaps;
    td_release_stats_t rs;
    td_release_stats(&rs);
    st.released_decay = rs.released_decay;
    st.bg_wakeups = rs.passes;
    st.bg_running = rs.bg_running;
    st.park_scanned = hs.park_scanned;
    memcpy(out, &st, size < sizeof st ? size : sizeof st);
    return 0;
}

EXPORT struct mallinfo2 mallinfo2(void)
{
    tide_stats_t st;
    tide_stats(&st, sizeof st);
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    mi.arena = st.mapped;                 /* non-mmapped space: our chunks */
    mi.ordblks = 1;
    mi.hblks = st.huge_count;             /* blocks with their own mapping */
    mi.hblkhd = st.huge_allocated;
    mi.uordblks = st.small_allocated + st.large_allocated;
    mi.fsmblks = st.small_free;           /* free bytes inside slabs */
    mi.fordblks = st.small_free + st.pageheap_free;
    mi.keepcost = st.pageheap_dirty;      /* free but possibly resident */
    return mi;
}

static int clamp_int(size_t v) { return v > 0x7fffffff ? 0x7fffffff : (int)v; }

EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo mi;
    mi.arena = clamp_int(m2.arena);
    mi.ordblks = clamp_int(m2.ordblks);
    mi.smblks = clamp_int(m2.smblks);
    mi.hblks = clamp_int(m2.hblks);
    mi.hblkhd = clamp_int(m2.hblkhd);
    mi.usmblks = clamp_int(m2.usmblks);
    mi.fsmblks = clamp_int(m2.fsmblks);
    mi.uordblks = clamp_int(m2.uordblks);
    mi.fordblks = clamp_int(m2.fordblks);
    mi.keepcost = clamp_int(m2.keepcost);
    return mi;
}

EXPORT int mallopt(int param, int value)
{
    (void)value;
    /* glibc's tunables describe its arenas and heap top; none maps onto
       this design. Known ones are accepted (1) and ignored, so programs
       that set them keep working; unknown ones are refused (0). */
    switch (param) {
    case M_MXFAST: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD:
    case M_MMAP_MAX: case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST:
    case M_ARENA_MAX:
        return 1;
    default:
        return 0;
    }
}

static size_t stats_text(char *buf, size_t cap)
{
    tide_stats_t st;
    tide_stats(&st, sizeof st);
    return td_fmt(buf, cap,
                  "Arena 0:\n"
                  "system bytes     = %10zu\n"
                  "in use bytes     = %10zu\n"
                  "Total (incl. mmap):\n"
                  "system bytes     = %10zu\n"
                  "in use bytes     = %10zu\n"
                  "max mmap regions = %10zu\n"
                  "max mmap bytes   = %10zu\n"
                  "tidemalloc:\n"
                  "small allocated  = %10zu\n"
                  "small free       = %10zu\n"
                  "large allocated  = %10zu\n"
                  "huge allocated   = %10zu\n"
                  "page heap free   = %10zu (%zu maybe resident)\n"
                  "released to OS   = %10zu\n"
                  "metadata         = %10zu\n"
                  "thread heaps     = %10zu (%zu pooled)\n",
                  st.mapped, st.small_allocated + st.large_allocated,
                  st.mapped + st.huge_allocated, st.allocated,
                  st.huge_count, st.huge_allocated,
                  st.small_allocated, st.small_free, st.large_allocated,
                  st.huge_allocated, st.pageheap_free, st.pageheap_dirty,
                  st.released, st.metadata, st.heaps, st.heaps_pooled);
}

EXPORT void malloc_stats(void)
{
    char buf[1024];
    size_t n = stats_text(buf, sizeof buf);
    td_os_write(2, buf, n);
}

EXPORT int malloc_info(int options, FILE *fp)
{
    if (options != 0 || fp == NULL) {
        errno = EINVAL;
        return -1;
    }
    tide_stats_t st;
    tide_stats(&st, sizeof st);
    char buf[1024];
    size_t n = td_fmt(buf, sizeof buf,
        "<malloc version=\"1\">\n"
        "<heap nr=\"0\">\n"
        "<sizes>\n</sizes>\n"
        "<total type=\"fast\" count=\"0\" size=\"%zu\"/>\n"
        "<total type=\"rest\" count=\"1\" size=\"%zu\"/>\n"
        "<system type=\"current\" size=\"%zu\"/>\n"
        "<system type=\"max\" size=\"%zu\"/>\n"
        "<aspace type=\"total\" size=\"%zu\"/>\n"
        "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
        "</heap>\n"
        "<total type=\"fast\" count=\"0\" size=\"%zu\"/>\n"
        "<total type=\"rest\" count=\"1\" size=\"%zu\"/>\n"
        "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
        "<system type=\"current\" size=\"%zu\"/>\n"
        "<system type=\"max\" size=\"%zu\"/>\n"
        "<aspace type=\"total\" size=\"%zu\"/>\n"
        "<aspace type=\"mprotect\" size=\"%zu\"/>\n"
        "</malloc>\n",
        st.small_free, st.pageheap_free, st.mapped, st.mapped, st.mapped, st.mapped,
        st.small_free, st.pageheap_free, st.huge_count, st.huge_allocated,
        st.mapped + st.huge_allocated, st.mapped + st.huge_allocated,
        st.mapped + st.huge_allocated, st.mapped + st.huge_allocated);
    /* Write straight to the descriptor after flushing the stream, so no
       stdio buffer is allocated from inside the allocator; streams without
       one (fmemopen, open_memstream) take the text through fwrite. */
    int fd = fileno(fp);
    if (fd >= 0 && fflush(fp) == 0) {
        td_os_write(fd, buf, n);
        return 0;
    }
    return fwrite(buf, 1, n, fp) == n ? 0 : -1;
}

/* ---- tide_* ----------------------------------------------------------- */

EXPORT const char *tide_version(void)
{
#define STR2(x) #x
#define STR(x) STR2(x)
    return "tidemalloc " STR(TIDE_VERSION_MAJOR) "." STR(TIDE_VERSION_MINOR) "." STR(TIDE_VERSION_PATCH);
}

EXPORT int tide_check(void)
{
    td_global_init();
    td_sizeclass_validate();
    td_pageheap_validate();
    td_heap_validate();
    return 0;
}
