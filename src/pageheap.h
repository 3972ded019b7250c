/*
 * pageheap.h — free page runs and where pages come from.
 *
 * Owns: chunks of address space obtained from the OS (hugepage-aligned,
 * TD_CHUNK_BYTES each, never unmapped), the free runs inside them indexed
 * by a two-level segregated fit (TLSF: first level log2 of the length,
 * second level 8 linear steps), and HUGE spans, each its own mapping.
 *
 * Invariants:
 *  - every page of a chunk is in exactly one span (FREE, SLAB or LARGE);
 *  - no two FREE runs in the same state are adjacent within a chunk (they
 *    are coalesced on free, in O(1) through the pagemap entries of their
 *    first/last pages); a clean run and a dirty run stay apart;
 *  - runs never cross chunk boundaries;
 *  - a FREE run is dirty (ndirty == npages: its pages may be resident) or
 *    clean (ndirty == 0: given back to the OS; with MADV_DONTNEED, the
 *    default, every page reads as zero and calloc skips memset);
 *  - dirty runs are on the dirty list, newest stamp first (nearly: see
 *    dirty_insert), which is what the decay releases from the old end.
 *
 * Locking: one lock (rank after the heap pool lock, before the meta lock)
 * guards bins, chunks and counters. It is never held across mmap or
 * madvise: growth maps outside it, release unbacks outside it.
 *
 * Callers: the heap layer (slabs, LARGE blocks, HUGE blocks) and stats.
 * This is the seam the release engine and the hugepage filler build on.
 */
#ifndef TIDE_PAGEHEAP_H
#define TIDE_PAGEHEAP_H

#include "pagemap.h"

#define TD_CHUNK_BYTES ((size_t)32 << 20)   /* tunable: address space per grow */

void td_pageheap_init(void);

/* A run of npages, aligned to align_pages (a power of two, >= 1), with kind
   set (TD_SPAN_SLAB or TD_SPAN_LARGE) and pagemap entries on its first and
   last page. s->ndirty == 0 iff all of it reads as zero. NULL: no memory. */
span_t *td_pageheap_alloc(size_t npages, size_t align_pages, int kind);

/* A SLAB run of npages_dirty pages (<= npages) if a dirty run of at least
   that many is binned, else one of npages taken as td_pageheap_alloc
   takes it (a clean run, since no dirty one fits). s->ndirty says which
   kind of run it came from, and keeps saying so while the slab lives. */
span_t *td_pageheap_alloc_slab(size_t npages, size_t npages_dirty);

/* Returns s's pages. Requires: s from td_pageheap_alloc, no live object in
   it. unbacked: the caller has already unbacked every page; else the run
   is dirty and stamp (td_os_now_ms() time) says when its memory was last
   used, which the decay measures its age from. */
void td_pageheap_free(span_t *s, bool unbacked, uint32_t stamp);

/* The same for a SLAB s some of whose pages read as zero (bit p of
   parked: page p, for the first 64 * 3 pages): unbacked by parking, or
   never touched since a clean run was handed out. Those become clean runs,
   the others dirty ones stamped stamp. */
void td_pageheap_free_parked(span_t *s, const uint64_t *parked, uint32_t stamp);

/* LARGE s grows or shrinks in place to npages. True on success; on failure
   s is unchanged. A released tail becomes a dirty free run. */
bool td_pageheap_resize(span_t *s, size_t npages);

/* Unbacks dirty free runs, oldest first: at most max_bytes (rounded up to
   a page), only runs unused for at least older_than ms (0: any age), and
   starts no batch after the first once td_os_now_ns() reaches deadline_ns
   (0: no deadline). A batch is at most td_os_unback_cap() runs and
   TD_RELEASE_BATCH_PAGES pages, unbacked with one td_os_unback_flush and
   the lock dropped around it. Returns the bytes unbacked. One caller at a
   time: the release layer calls it under its sweep lock (its batch is
   static, off the caller's stack). */
/* Pages in one batch. 8 MiB when the call has no deadline (malloc_trim,
   background passes): each call ends in a TLB flush, an interrupt to the
   other CPU when another thread runs there, and on this project's VM 512
   runs or 8 MiB a call made malloc_trim(0) of the bench heap 8% faster
   than 128 runs or 2 MiB (medians of 18 interleaved pairs, 139 against
   151 ms, and of 8 more, 127 against 141), with no more gaps of over 1 ms
   in the bystander thread (1 run of 26 against 4). 2 MiB when the caller
   gave a deadline: about 0.6 ms of page freeing, the most a batch runs
   past it (docs/memory-return.md, "One system call per batch"). */
#define TD_RELEASE_BATCH_PAGES       2048
#define TD_RELEASE_TIMED_BATCH_PAGES 512
static inline size_t td_release_batch_pages(uint64_t deadline_ns)
{
    return deadline_ns != 0 ? TD_RELEASE_TIMED_BATCH_PAGES : TD_RELEASE_BATCH_PAGES;
}
size_t td_pageheap_release(size_t max_bytes, uint32_t older_than, uint64_t deadline_ns);

/* Gives back the pages of pagemap entries (tree and flat table) under the
   interiors of clean free runs that hold a whole page of them besides
   their first and last page (td_pagemap_has_interior_page: 514 pages or
   more) and were handed out since this last looked at them
   (span_t.tables): those entries are all NULL, and every page of them
   kept resident costs 4 KiB per 2 MiB of heap that once held data
   (td_pagemap_unback_interior). Such runs are kept on a list (through
   the dirty list's links, unused in clean runs), so the call looks at
   no other run. Takes them out of the bins as TAKEN spans, up to
   td_os_unback_cap() runs or 64 MiB (at least one run) at a time, and
   unbacks with the lock dropped, as td_pageheap_release does: an
   allocation meanwhile takes another run or maps a new chunk. Same
   one-caller rule; stops between batches once the deadline (0: none) has
   passed. Returns the bytes of entries unbacked. */
size_t td_pageheap_release_tables(uint64_t deadline_ns);
/* True if runs are left for td_pageheap_release_tables. */
bool td_pageheap_tables_pending(void);
/* Bytes td_pageheap_release_tables gave back so far. */
size_t td_pageheap_tables_released(void);

/* Counts bytes the layer above unbacked itself (parked slab pages) into
   the released total. */
void td_pageheap_note_released(size_t bytes);

/* Bytes in dirty free runs; *oldest_stamp (if not NULL and any) gets the
   stamp of the oldest. */
size_t td_pageheap_dirty(uint32_t *oldest_stamp);

/* HUGE spans: one mapping each, pagemap entry on the first page. */
span_t *td_pageheap_alloc_huge(size_t bytes, size_t align);
void td_pageheap_free_huge(span_t *s);
/* Grows or shrinks a HUGE span with mremap; the block may move. */
bool td_pageheap_remap_huge(span_t *s, size_t bytes);

typedef struct {
    size_t mapped;        /* bytes of chunks */
    size_t free;          /* bytes in FREE runs */
    size_t free_dirty;    /* of which may be resident (upper bound) */
    size_t slab;          /* bytes in SLAB spans */
    size_t large;         /* bytes in LARGE spans */
    size_t huge;          /* bytes in HUGE mappings */
    size_t huge_count;
    size_t released;      /* bytes unbacked so far (cumulative) */
} td_pageheap_stats_t;
void td_pageheap_stats(td_pageheap_stats_t *st);

/* Calls fn on every SLAB and LARGE span of every chunk, under the lock;
   fn must not call into the page heap. For statistics. */
void td_pageheap_walk(void (*fn)(span_t *s, void *arg), void *arg);

/* Debug: checks the invariants above; panics with a message if broken. */
void td_pageheap_validate(void);

void td_pageheap_fork_prepare(void);
void td_pageheap_fork_parent(void);
void td_pageheap_fork_child(void);

#endif
