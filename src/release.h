/*
 * release.h — giving free memory back to the OS (see release.c).
 *
 * Free-but-resident memory lives in two places: dirty free runs of the page
 * heap, each stamped with when it last held data, and the thread heaps'
 * caches (spare slabs; slabs whose objects other threads freed, waiting
 * for their owner to collect them). The release layer ages both: a pass
 * sweeps the heaps (td_heap_sweep: spares older than the decay, dead slabs
 * of any heap, idle or not) into the page heap, then unbacks page-heap
 * runs unused for the decay time, oldest first, in batches (up to 512 runs,
 * 8 MiB; 2 MiB for a call with a deadline) given back with one system call
 * each.
 *
 * Passes run on a background thread ("tide-release"), started lazily at
 * the first kick (the first time some memory becomes free to return), that
 * sleeps on a futex when nothing is left and exits when no thread heap is
 * attached, so it never keeps a process alive. With background:false in
 * TIDEMALLOC_CONF the allocator's slow paths run small passes instead.
 *
 * Locks: the sweep lock (rank 0, before every other allocator lock) is held
 * by a pass while it sweeps and around each batch of the page heap's
 * release; fork takes it first, so a child never inherits a heap lock held
 * by a sweeper or a half-released batch.
 */
#ifndef TIDE_RELEASE_H
#define TIDE_RELEASE_H

#include "heap.h"

/* Installs the hooks into the heap layer; idempotent. Runs as a
   constructor, and from td_release_now and the statistics. */
void td_release_init(void);

/* Releases free memory now: sweeps every heap (all spares, dead slabs),
   then unbacks dirty page-heap runs oldest first until max_bytes are
   released, or all but keep_bytes of dirty memory are, or max_usec have
   passed (0: no limit; checked between batches). Returns the bytes
   unbacked. The one allocator lock it holds across a system call is a
   heap's own while that heap's parked pages go back (one batch; the
   caller's own heap, which nobody else waits for, for its whole walk). */
size_t td_release_now(size_t max_bytes, uint64_t max_usec, size_t keep_bytes);

typedef struct {
    size_t released_decay;   /* bytes unbacked by decay passes */
    size_t released_explicit;/* bytes unbacked by td_release_now */
    size_t passes;           /* passes the background thread ran */
    int bg_running;          /* the background thread exists */
} td_release_stats_t;
void td_release_stats(td_release_stats_t *st);

#endif
