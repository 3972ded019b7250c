/*
 * tidemalloc.h — tidemalloc's extensions to the standard allocator API.
 *
 * The standard and glibc entry points (malloc, free, calloc, realloc,
 * reallocarray, aligned_alloc, posix_memalign, memalign, valloc, pvalloc,
 * malloc_usable_size, malloc_trim, mallinfo, mallinfo2, mallopt,
 * malloc_stats, malloc_info) are declared by <stdlib.h> and <malloc.h>;
 * this header adds the C23 sized frees (which glibc before 2.39 does not
 * declare) and the tide_* calls. Link with -ltidemalloc, or pkg-config
 * --libs tidemalloc, or LD_PRELOAD the shared library.
 */
#ifndef TIDEMALLOC_H
#define TIDEMALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDE_VERSION_MAJOR 0
#define TIDE_VERSION_MINOR 1
#define TIDE_VERSION_PATCH 0

/* C23. size must be the size asked for (or up to malloc_usable_size);
   alignment the one given to aligned_alloc. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* "tidemalloc X.Y.Z". */
const char *tide_version(void);

/* Returns free memory the allocator holds to the operating system now and
   reports the bytes released: free page runs, every thread heap's cached
   empty slabs, and slabs whose objects other threads freed, also of
   threads that are idle, and whole free pages inside partly used slabs.
   Stops after max_bytes (SIZE_MAX: all it can; rounded up to a page) or
   once max_usec microseconds have passed (0: no limit; checked between
   batches, so a call may overrun either by one batch of up to 2 MiB or
   one slab's pages). Works in batches, each given back
   with one system call, so other threads' malloc and free go on
   meanwhile; the one lock held across such a call is, while free pages
   inside a heap's slabs go back, that heap's own, for one batch (the
   calling thread's own heap for its whole walk): only its owner thread
   may wait, in a slow path. Without this call, free memory
   goes back by itself after the decay time (TIDEMALLOC_CONF decay_ms,
   default 500). malloc_trim(pad) is this call keeping pad bytes. */
size_t tide_release(size_t max_bytes, unsigned long max_usec);

/* A snapshot of the allocator's counters, in bytes unless named otherwise.
   Figures of slabs owned by other threads are read without stopping them,
   so they may lag by the objects those threads are handing out. */
typedef struct tide_stats_s {
    size_t allocated;       /* handed out and not freed: small + large + huge */
    size_t small_allocated; /* in slab objects */
    size_t small_free;      /* in slabs, not handed out */
    size_t large_allocated; /* page-run blocks (256 KiB < size < 4 MiB) */
    size_t huge_allocated;  /* own-mapping blocks (>= 4 MiB) */
    size_t huge_count;      /* number of them */
    size_t mapped;          /* address space in chunks (not all resident) */
    size_t pageheap_free;   /* free page runs in chunks */
    size_t pageheap_dirty;  /* of which may still be resident */
    size_t released;        /* bytes given back to the OS so far */
    size_t metadata;        /* bytes mapped for the allocator's own use */
    size_t heaps;           /* thread heaps created */
    size_t heaps_pooled;    /* of which waiting for a new thread */
    size_t released_decay;  /* of released: by the decay (background or slow paths) */
    size_t bg_wakeups;      /* decay passes run so far */
    int bg_running;         /* 1 while the background thread exists */
    size_t park_scanned;    /* objects whose free mark parking has read so far (live
                               ones too: the cost of finding free pages in partly
                               used slabs) */
} tide_stats_t;

/* Fills *st (at most size bytes of it, for ABI growth). Returns 0. */
int tide_stats(tide_stats_t *st, size_t size);

/* Checks the allocator's invariants (page heap, size classes, the calling
   thread's heap); aborts with a message if one is broken. Returns 0. O(n):
   for tests and debugging. */
int tide_check(void);

#ifdef __cplusplus
}
#endif

#endif
