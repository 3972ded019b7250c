/*
 * pagemap.c — radix tree over the address space, and metadata memory.
 */
#include "pagemap.h"

#include <string.h>

span_t **td_pagemap_root[TD_PM_ROOT_LEN];

/* Mask 0 (word 7), then the reserved entries (the empty span, from word
   8: 64-byte aligned, as a span_t must be): every hint is the empty span
   until flat_init. */
static uintptr_t flat_none[8 + TD_PM_FLAT_RESERVED] __attribute__((aligned(64)));
uintptr_t *td_pagemap_flat = &flat_none[8];
static int flat_tried;

/* Reserves the largest flat table the os allows, once. Racing callers may
   both map; the CAS keeps one. */
static void flat_init(void)
{
    if (__atomic_load_n(&flat_tried, __ATOMIC_ACQUIRE))
        return;
    size_t cap = td_os_reserve_cap();
    for (unsigned bits = TD_PM_FLAT_BITS; bits >= 6; bits--) {
        size_t bytes = TD_PAGE + (sizeof(uintptr_t) << bits);
        if (bytes > cap)
            continue;
        uintptr_t *m = td_os_map(bytes, 0);
        if (m == NULL)
            continue;
        uintptr_t *t = m + TD_PAGE / sizeof *m;
        t[-1] = ((uintptr_t)1 << bits) - 1;
        uintptr_t *expect = &flat_none[8];
        if (!__atomic_compare_exchange_n(&td_pagemap_flat, &expect, t, false,
                                         __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            td_os_unmap(m, bytes);
        break;
    }
    __atomic_store_n(&flat_tried, 1, __ATOMIC_RELEASE);
}

/* Metadata is carved from 1 MiB blocks; span descriptors are recycled
   through a free list. One lock for both, held only for pointer work. */
#define META_BLOCK ((size_t)1 << 20)

static td_lock_t meta_lock;
static char *meta_cur, *meta_end;
static span_t *span_free_list;
static size_t meta_mapped;

bool td_pagemap_ensure(uintptr_t start, size_t bytes)
{
    uintptr_t first = start >> (TD_PAGE_SHIFT + TD_PM_LEAF_BITS);
    uintptr_t last = (start + bytes - 1) >> (TD_PAGE_SHIFT + TD_PM_LEAF_BITS);
    if (last >= TD_PM_ROOT_LEN)
        return false;
    flat_init();
    for (uintptr_t i = first; i <= last; i++) {
        if (__atomic_load_n(&td_pagemap_root[i], __ATOMIC_ACQUIRE) != NULL)
            continue;
        size_t leaf_bytes = TD_PM_LEAF_LEN * sizeof(span_t *);
        span_t **leaf = td_os_map(leaf_bytes, 0);
        if (leaf == NULL)
            return false;
        span_t **expect = NULL;
        /* Release: the leaf's zero contents are visible before the leaf. */
        if (!__atomic_compare_exchange_n(&td_pagemap_root[i], &expect, leaf, false,
                                         __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
            td_os_unmap(leaf, leaf_bytes);   /* another thread won */
    }
    return true;
}

#define LEAF_BYTES (TD_PM_LEAF_LEN * sizeof(span_t *))
static void *spare_leaf;   /* zeroed, never published; __atomic */

void *td_pagemap_leaf_take(void)
{
    void *l = __atomic_exchange_n(&spare_leaf, NULL, __ATOMIC_ACQUIRE);
    return l != NULL ? l : td_os_map(LEAF_BYTES, 0);
}

void td_pagemap_leaf_give(void *leaf)
{
    void *expect = NULL;
    if (!__atomic_compare_exchange_n(&spare_leaf, &expect, leaf, false, __ATOMIC_RELEASE,
                                     __ATOMIC_RELAXED))
        td_os_unmap(leaf, LEAF_BYTES);
}

bool td_pagemap_ensure_with(uintptr_t addr, void *leaf)
{
    uintptr_t i = addr >> (TD_PAGE_SHIFT + TD_PM_LEAF_BITS);
    if (i >= TD_PM_ROOT_LEN) {
        td_pagemap_leaf_give(leaf);
        return false;
    }
    flat_init();   /* may find no table: hints then stay empty */
    span_t **expect = NULL;
    /* Release: the leaf's zero contents are visible before the leaf. */
    if (__atomic_load_n(&td_pagemap_root[i], __ATOMIC_ACQUIRE) != NULL ||
        !__atomic_compare_exchange_n(&td_pagemap_root[i], &expect, (span_t **)leaf, false,
                                     __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
        td_pagemap_leaf_give(leaf);
    return true;
}

void td_pagemap_set(uintptr_t addr, span_t *s)
{
    span_t **leaf = td_pagemap_root[addr >> (TD_PAGE_SHIFT + TD_PM_LEAF_BITS)];
    TIDE_ASSERT(leaf != NULL);
    __atomic_store_n(&leaf[(addr >> TD_PAGE_SHIFT) & (TD_PM_LEAF_LEN - 1)], s,
                     __ATOMIC_RELAXED);
    /* Acquire: the mask before the table (flat_init's CAS). A writer that
       still sees flat_none writes nothing: a missing hint only costs the
       slow path. */
    uintptr_t *t = __atomic_load_n(&td_pagemap_flat, __ATOMIC_ACQUIRE);
    uintptr_t i = (addr >> TD_PAGE_SHIFT) & t[-1];
    if (i >= TD_PM_FLAT_RESERVED)   /* else the page is left to the tree */
        __atomic_store_n(&t[i], s != NULL ? (uintptr_t)s - (uintptr_t)t : 0, __ATOMIC_RELAXED);
}

void td_pagemap_set_range(uintptr_t addr, size_t npages, span_t *s)
{
    for (size_t i = 0; i < npages; i++)
        td_pagemap_set(addr + (i << TD_PAGE_SHIFT), s);
}

size_t td_pagemap_unback_interior(td_unback_batch_t *b, uintptr_t start, size_t npages)
{
    const uintptr_t per = TD_PAGE / sizeof(uintptr_t);   /* entries in a page of them */
    if (!td_pagemap_has_interior_page(start, npages))
        return 0;
    uintptr_t first = (start >> TD_PAGE_SHIFT) + 1;          /* page numbers */
    uintptr_t end = (start >> TD_PAGE_SHIFT) + npages - 1;   /* the last page keeps its entry */
    uintptr_t a = (first + per - 1) & ~(per - 1), e = end & ~(per - 1);
    if (a >= e)
        return 0;
    size_t bytes = 0;
    /* The tree: leaves are page-aligned mappings, a leaf covers 2^18 pages. */
    for (uintptr_t pg = a; pg < e;) {
        uintptr_t li = pg >> TD_PM_LEAF_BITS;
        uintptr_t stop = (li + 1) << TD_PM_LEAF_BITS;
        if (stop > e)
            stop = e;
        span_t **leaf = li < TD_PM_ROOT_LEN ? __atomic_load_n(&td_pagemap_root[li], __ATOMIC_ACQUIRE)
                                            : NULL;
        if (leaf != NULL) {
            td_os_unback_add(b, &leaf[pg & (TD_PM_LEAF_LEN - 1)], (stop - pg) * sizeof(span_t *));
            bytes += (stop - pg) * sizeof(span_t *);
        }
        pg = stop;
    }
    /* The flat table, page-aligned too (flat_init), only at its full size:
       a smaller one mirrors more address space in each entry, where live
       spans' hints would be lost more often. */
    uintptr_t *t = __atomic_load_n(&td_pagemap_flat, __ATOMIC_ACQUIRE);
    uintptr_t mask = t[-1];
    if (mask != ((uintptr_t)1 << TD_PM_FLAT_BITS) - 1 || mask < per - 1 || e - a > mask)
        return bytes;
    for (uintptr_t pg = a; pg < e;) {
        uintptr_t i = pg & mask;
        uintptr_t n = e - pg;
        if (n > mask + 1 - i)
            n = mask + 1 - i;   /* up to the table's end; the rest from entry 0 */
        td_os_unback_add(b, &t[i], n * sizeof(uintptr_t));
        bytes += n * sizeof(uintptr_t);
        pg += n;
    }
    return bytes;
}

void td_pagemap_unback_block(uintptr_t start, size_t npages)
{
    const uintptr_t per = TD_PAGE / sizeof(uintptr_t);
    uintptr_t pg = start >> TD_PAGE_SHIFT;
    if ((pg & (per - 1)) != 0 || npages < per)
        return;
    struct iovec v[2];
    int n = 0;
    uintptr_t li = pg >> TD_PM_LEAF_BITS;
    span_t **leaf = li < TD_PM_ROOT_LEN ? __atomic_load_n(&td_pagemap_root[li], __ATOMIC_ACQUIRE)
                                        : NULL;
    if (leaf != NULL)
        v[n++] = (struct iovec){ &leaf[pg & (TD_PM_LEAF_LEN - 1)], TD_PAGE };
    uintptr_t *t = __atomic_load_n(&td_pagemap_flat, __ATOMIC_ACQUIRE);
    uintptr_t mask = t[-1];
    if (mask == ((uintptr_t)1 << TD_PM_FLAT_BITS) - 1 && mask >= per - 1)
        v[n++] = (struct iovec){ &t[pg & mask], TD_PAGE };
    td_os_unback_vec(v, n);
}

void *td_meta_alloc(size_t bytes)
{
    /* 64-byte granules: descriptors and heaps start on a cache line, as
       their layouts assume. */
    bytes = td_align_up(bytes, 64);
    td_lock(&meta_lock);
    while ((size_t)(meta_end - meta_cur) < bytes) {
        td_unlock(&meta_lock);
        size_t want = bytes > META_BLOCK ? td_align_up(bytes, META_BLOCK) : META_BLOCK;
        char *blk = td_os_map(want, 0);
        if (blk == NULL)
            return NULL;
        td_lock(&meta_lock);
        if ((size_t)(meta_end - meta_cur) >= bytes) {
            /* Another thread refilled meanwhile: keep theirs, drop ours. */
            td_unlock(&meta_lock);
            td_os_unmap(blk, want);
            td_lock(&meta_lock);
            continue;
        }
        meta_cur = blk;   /* the old block's tail (< bytes) is abandoned */
        meta_end = blk + want;
        meta_mapped += want;
    }
    void *p = meta_cur;
    meta_cur += bytes;
    td_unlock(&meta_lock);
    return p;
}

span_t *td_span_new(void)
{
    td_lock(&meta_lock);
    span_t *s = span_free_list;
    if (s != NULL)
        span_free_list = s->next;
    td_unlock(&meta_lock);
    if (s == NULL)
        return td_meta_alloc(sizeof(span_t));   /* 192: keeps 64-byte alignment */
    memset(s, 0, sizeof *s);
    return s;
}

void td_span_delete(span_t *s)
{
    s->kind = TD_SPAN_FREE;
    s->heap = NULL;
    td_lock(&meta_lock);
    s->next = span_free_list;
    span_free_list = s;
    td_unlock(&meta_lock);
}

size_t td_meta_bytes(void)
{
    return __atomic_load_n(&meta_mapped, __ATOMIC_RELAXED);
}

void td_pagemap_fork_prepare(void) { td_lock(&meta_lock); }
void td_pagemap_fork_parent(void) { td_unlock(&meta_lock); }
void td_pagemap_fork_child(void) { td_lock_reset(&meta_lock); }
