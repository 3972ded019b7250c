/*
 * pagemap.h — from any address to the span that holds it, and the memory
 * all metadata lives in.
 *
 * Owns: span_t (the out-of-band descriptor of a run of pages), the radix
 * tree page -> span_t*, and the metadata allocator (td_meta_alloc,
 * td_span_new/delete) that serves every descriptor the allocator needs from
 * its own mappings. Nothing here is ever unmapped, so a stale span_t
 * pointer read by a buggy caller never faults; the only memory given back
 * is pages of the tree and of the flat table under the interior of a free
 * run, whose own entries there are all NULL and read as NULL again
 * (td_pagemap_unback_interior; a flat-table page may also hold hints of
 * pages 2^44 bytes away, which are only hints).
 *
 * Which pages have an entry (the pagemap invariant):
 *  - every page of a SLAB span (a free may point anywhere inside it);
 *  - the first and the last page of FREE and LARGE spans;
 *  - the first page of HUGE spans;
 *  - no other page: an entry is cleared before its span_t is reused, so a
 *    lookup never returns a descriptor that no longer describes that page.
 *
 * Lookups take no lock. Leaves are created once and published with a CAS;
 * entries are written by the layer that owns the span (page heap under its
 * lock, slab by its owner) and read with relaxed loads: a caller that holds
 * a live pointer learned of it through some synchronisation that also
 * orders the entry's store before it.
 */
#ifndef TIDE_PAGEMAP_H
#define TIDE_PAGEMAP_H

#include "os.h"

struct heap_s;

/* TAKEN: a free run out of the bins while the release layer unbacks its
   pages or its entries (pageheap.c) with no lock held: no neighbour merges
   into it, nothing allocates from it, and to everything else (stats, bad
   frees) it is free memory. */
enum { TD_SPAN_FREE = 0, TD_SPAN_SLAB = 1, TD_SPAN_LARGE = 2, TD_SPAN_HUGE = 3, TD_SPAN_TAKEN = 4 };
/* Slab states, owner-only (heap layer). */
enum { TD_SLAB_CUR = 1, TD_SLAB_PARTIAL = 2, TD_SLAB_FULL = 3, TD_SLAB_SPARE = 4 };

/* used: objects handed out and not yet back on `free`. Bit 31 is set while
   the slab is FULL (in no list), so that the free fast path catches both
   "slab became empty" and "slab was full" with one signed compare. */
#define TD_SLAB_FULL_BIT ((int32_t)INT32_MIN)

typedef struct span_s {
    /* Line 0: what the owner's fast paths touch (free/used written on every
       call; the rest written once per slab). */
    void *free;                 /* owner-only list of free objects */
    int32_t used;               /* see above; owner-only */
    uint8_t sizeclass;          /* class of the slab (td_slab_obj_size) */
    uint8_t kind;               /* TD_SPAN_* */
    uint8_t state;              /* TD_SLAB_* (slab) */
    uint8_t div_shift;          /* slab: object size == odd part << div_shift (>= 4) */
    uint64_t div_inv;           /* slab: inverse mod 2^64 of the object size's odd part */
    uint64_t ncarved;           /* slab: objects carved so far (the bump is start +
                                   ncarved*size); free's object test compares with it,
                                   so a free of one never carved takes the slow path,
                                   which reports it. 64 bits so that free compares
                                   with it in memory; written only by the owner
                                   (td_slab_extend, relaxed atomic) */
    uintptr_t start;            /* address of the first page */
    struct heap_s *heap;        /* slab: owning heap, fixed for the slab's life */
    uint64_t nobjs;             /* slab: objects the slab holds (end = start + nobjs*size) */
    struct heap_s *fast_heap;   /* slab: what the free fast path compares with the
                                   caller's heap: heap, or NULL once pages are parked
                                   or the slab is given back; set only by td_slab_init
                                   and slab_reclaim, on heap's thread (td_heap_free
                                   relies on both) */

    /* Line 1: written by other threads. Apart from line 0 so that remote
       frees do not bounce the owner's hot line (false sharing). */
    uint64_t remote __attribute__((aligned(64)));  /* objects freed by other threads (LIFO):
                                   head, tail and count in one word (slab.h); __atomic only */
    struct span_s *notify_next; /* SLAB: link in the heap's notify stack */
    uint64_t swept_remote;      /* SLAB: remote word when the sweeper last looked */
    uint32_t parked_remote;     /* SLAB: remote-freed objects parked, not yet taken off used */
    uint16_t nparked;           /* SLAB: pages unbacked under live objects' neighbours */
    uint8_t detached;           /* SLAB: taken from an idle owner's cur by a sweep; the
                                   owner may still be inside one pop from it (heap.c) */
    uint8_t tables;             /* FREE: 1 if pagemap pages under its interior may be
                                   resident (it was handed out since they were last
                                   given back: td_pageheap_release_tables); set when a
                                   span is freed, inherited by split pieces, ORed by
                                   merges; meaningless while handed out */
    uint32_t park_memo;         /* SLAB: hash of both list heads when parking last
                                   looked (0: never): unchanged, nothing new to park */
    uint64_t parked[3];         /* SLAB: bit p: page p is parked (slabs of <= 192 pages) */

    /* Line 2: run fields, page heap (under its lock) and owner lists. */
    size_t npages __attribute__((aligned(64)));  /* length of the run, in TD_PAGE units */
    size_t bytes;               /* HUGE: mapping length; LARGE: usable bytes */
    struct span_s *prev, *next; /* FREE: TLSF bin; SLAB: heap's partial list */
    union {
        struct {                  /* FREE with ndirty>0: the dirty list; clean FREE
                                     runs with entry pages to give back: the
                                     page heap's table list */
            struct span_s *dprev, *dnext;
        };
        struct {                  /* SLAB, sweeper under the heap lock (heap.c) */
            void *phead;          /* parked object the owner list may still lead
                                     through (its page is unbacked), or NULL */
            void *phead_next;     /* the link phead's own first word would hold */
        };
    };
    size_t ndirty;              /* FREE: npages if dirty (may be resident), 0 if clean;
                                   SLAB: as the run was when handed out (so 0: the
                                   slab's pages past its bump were never touched);
                                   LARGE: not kept up to date (resize), unused */
    uint32_t chunk;             /* FREE/SLAB/LARGE: chunk id; runs never merge across */
    uint32_t stamp;             /* td_os_now_ms() when it last held data: FREE dirty
                                   runs (page heap), SPARE slabs (heap) */
} span_t;
_Static_assert(offsetof(span_t, remote) == 64, "span_t: fast-path fields in line 0");
_Static_assert(sizeof(span_t) == 192, "span_t: three cache lines");
_Static_assert(offsetof(span_t, npages) == 128, "span_t: line 1 full");

#define TD_VA_BITS       47
#define TD_PM_LEAF_BITS  18     /* a leaf covers 2^18 pages = 1 GiB, 2 MiB of entries */
#define TD_PM_ROOT_BITS  (TD_VA_BITS - TD_PAGE_SHIFT - TD_PM_LEAF_BITS)
#define TD_PM_ROOT_LEN   ((size_t)1 << TD_PM_ROOT_BITS)
#define TD_PM_LEAF_LEN   ((size_t)1 << TD_PM_LEAF_BITS)

extern span_t **td_pagemap_root[TD_PM_ROOT_LEN];

/* The span whose pagemap entry covers p, or NULL. O(1), no lock.
   Address bits above TD_VA_BITS are masked off rather than tested: an
   address with them set aliases a lower one, and every caller checks that
   p lies inside the span it gets (slab: p < end; others: p == start). */
static inline span_t *td_pagemap_get(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    uintptr_t i = (a >> (TD_PAGE_SHIFT + TD_PM_LEAF_BITS)) & (TD_PM_ROOT_LEN - 1);
    span_t **leaf = __atomic_load_n(&td_pagemap_root[i], __ATOMIC_ACQUIRE);
    if (TIDE_UNLIKELY(leaf == NULL))
        return NULL;
    return __atomic_load_n(&leaf[(a >> TD_PAGE_SHIFT) & (TD_PM_LEAF_LEN - 1)],
                           __ATOMIC_RELAXED);
}

/* The free fast path's lookup: a flat, direct-mapped mirror of the tree,
   entry (page number & mask), mask in the word before entry 0. Written with
   the tree by td_pagemap_set. Up to 2^TD_PM_FLAT_BITS entries (32 GiB of
   address space reserved with MAP_NORESERVE, touched only where the tree
   has entries: 64 KiB per 32 MiB chunk), covering 2^44 bytes; pages that
   many bytes apart share an entry, and a smaller table (td_os_reserve_cap,
   or mmap refused) shares more. Until the first td_pagemap_ensure it is
   the reserved entries with mask 0. So the result is only a HINT: it may be
   an empty span (never NULL, see below) or another span. A caller trusts
   it only after checks that hold whatever span it got (the free fast path:
   s->fast_heap is the caller's own heap, and p is an object of s by an
   exact test), and otherwise asks td_pagemap_get. The span may be in the
   middle of being given back and reused by another thread while the caller
   reads it: descriptors are never unmapped, so the reads are safe, and
   td_heap_free says in which order they make the answer exact. Two
   dependent loads and an add, no branch: 6 instructions where the tree
   takes 9 and two tests. */
#ifndef TD_PM_FLAT_BITS
#define TD_PM_FLAT_BITS 32      /* tunable: 35 would cover 47 bits exactly; small
                                   (6): most hints wrong (tests the hint checks) */
#endif
extern uintptr_t *td_pagemap_flat;
/* Entries hold the span's address minus the table's address. The first
   TD_PM_FLAT_RESERVED entries are never written: they stay zero and, read
   as a span_t, are an empty span (no heap) at the table's address, which
   an empty entry (0) decodes to. So the caller needs no NULL test, and the
   table pointer it already holds is the base. */
#define TD_PM_FLAT_RESERVED (sizeof(span_t) / sizeof(uintptr_t))
static inline span_t *td_pagemap_hint(const void *p)
{
    /* Acquire: the table's mask and zeroed entries before its pointer. */
    const uintptr_t *t = __atomic_load_n(&td_pagemap_flat, __ATOMIC_ACQUIRE);
    uintptr_t i = ((uintptr_t)p >> TD_PAGE_SHIFT) & t[-1];
    uintptr_t e = __atomic_load_n(&t[i], __ATOMIC_RELAXED);
    return (span_t *)((uintptr_t)t + e);
}

/* Creates the leaves covering [start, start+bytes). False if out of memory
   or outside the covered address range. Call before any set in that range. */
bool td_pagemap_ensure(uintptr_t start, size_t bytes);
/* For a caller that must create addr's leaf after a step it cannot undo
   (a huge block moved by mremap): td_pagemap_leaf_take gets a zeroed leaf
   first (a kept spare, or a new mapping; NULL if the OS refuses), and
   td_pagemap_ensure_with makes addr's leaf exist with it if none does, or
   gives it back (td_pagemap_leaf_give: kept as the spare, or unmapped).
   ensure_with fails only for an address above the tree's 47 bits. */
void *td_pagemap_leaf_take(void);
void td_pagemap_leaf_give(void *leaf);
bool td_pagemap_ensure_with(uintptr_t addr, void *leaf);
/* Requires: td_pagemap_ensure covered addr. */
void td_pagemap_set(uintptr_t addr, span_t *s);
void td_pagemap_set_range(uintptr_t addr, size_t npages, span_t *s);

/* Adds to b the whole pages of the tree's leaves, and of the flat table
   when it has its full size, that hold only entries of pages strictly
   inside the run [start, start + npages pages): a page of entries covers
   512 pages (2 MiB) of address, so a run needs more than that. The
   caller must own the run's interior until b is flushed: its entries are
   NULL (the pagemap invariant) and nobody writes them meanwhile, so
   unbacked they read as NULL again and no lookup changes. A flat-table
   page may also hold the hint of a page 2^44 bytes away; losing one only
   sends that page's frees to the tree. Returns the bytes added. */
size_t td_pagemap_unback_interior(td_unback_batch_t *b, uintptr_t start, size_t npages);
/* For a huge block about to be unmapped, whose only entry (its first
   page's) is cleared: if it starts on a 2 MiB boundary and is at least
   that long, the page of tree entries and the page of flat-table entries
   that hold that entry hold no other (the rest of those 2 MiB is the
   block's own), and they are unbacked now, before the range can be
   another mapping's. Otherwise nothing. */
void td_pagemap_unback_block(uintptr_t start, size_t npages);
/* True if td_pagemap_unback_interior would find a whole page of entries
   in that run. */
static inline bool td_pagemap_has_interior_page(uintptr_t start, size_t npages)
{
    const uintptr_t per = TD_PAGE / sizeof(uintptr_t);
    if (npages < 2 + per)
        return false;
    uintptr_t first = (start >> TD_PAGE_SHIFT) + 1, end = (start >> TD_PAGE_SHIFT) + npages - 1;
    return ((first + per - 1) & ~(per - 1)) < (end & ~(per - 1));
}

/* Metadata memory: zeroed, 64-byte aligned, never freed. NULL when the OS
   refuses. Takes the meta lock (never held across mmap). */
void *td_meta_alloc(size_t bytes);
span_t *td_span_new(void);          /* zeroed descriptor */
void td_span_delete(span_t *s);
size_t td_meta_bytes(void);         /* metadata mapped so far */

void td_pagemap_fork_prepare(void);
void td_pagemap_fork_parent(void);
void td_pagemap_fork_child(void);

#endif
