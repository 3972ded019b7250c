/*
 * heap.h — per-thread heaps and the malloc/free fast paths.
 *
 * Owns heap_t: for each size class the current slab (`cur`), a list of
 * partly free slabs, and one spare empty slab; and the notify stack through
 * which other threads tell this heap which of its armed slabs (full ones,
 * and every slab of a pooled heap: slab.h, TD_RL_WANT) got remote frees.
 * Also owns LARGE blocks (page runs, > TD_SMALL_MAX) and HUGE blocks (own
 * mapping, >= TD_HUGE_MIN), and the process-wide init.
 *
 * Threads: td_tls_heap (initial-exec TLS) points at the thread's heap, or
 * at the static td_heap_empty whose every `cur` is an empty slab: the fast
 * path fails on it and the slow path attaches a heap, so a new thread needs
 * no check of its own. A heap outlives its thread: at thread exit it goes
 * to a pool and the next new thread adopts it, slabs and all, so memory of
 * exited threads is reused. A slab's heap never changes; frees from any
 * thread other than the attached one are remote frees. A pooled heap has
 * no thread: pool_lock stands in for its owner, and the remote free that
 * notifies it collects it under that lock, so memory freed after its
 * thread exited goes back to the page heap instead of waiting for a new
 * thread to adopt the heap.
 *
 * Heap lock: the owner's slow paths hold h->lock while they change the
 * slab lists, spares and states or collect remote frees; the release
 * layer's sweep takes it with a trylock (skipping a busy heap) to give back
 * what an idle owner cannot: spare slabs that have aged, slabs whose every
 * object was freed by other threads ("dead" slabs), free pages inside
 * partly used slabs (parking), and an idle owner's current slabs, which it
 * detaches (look_at_cur in heap.c) so that they can be parked. The fast
 * paths never take it. They touch only the current slabs (malloc) and
 * slabs in which the caller holds a live object (free). The sweep never
 * gives either back: a dead slab has no live object, and a detached slab,
 * from which the owner may still be finishing one pop, is left to its
 * owner; parking leaves alone the list heads the owner may still move.
 * (Free finds its slab through a hint that may name a slab the sweep is
 * giving back at that moment; td_heap_free reads it in an order that
 * cannot mistake such a slab for p's.) The free fast path stores `used`
 * with release order, so a sweep that reads the count (acquire) also sees
 * the free-list write before it.
 *
 * Locks: the release layer's sweep lock (rank 0), pool_lock (rank 1, heap
 * registry and pool), a heap's lock (rank 2), then the page heap's (rank
 * 3), then the meta lock (rank 4). A heap lock may be held across the page
 * heap's growth (mmap): only its owner and trylocks contend for it. The
 * fast paths take none and use no atomic read-modify-write.
 */
#ifndef TIDE_HEAP_H
#define TIDE_HEAP_H

#include "pageheap.h"
#include "slab.h"

#define TD_HUGE_MIN ((size_t)4 << 20)   /* tunable: blocks this big get their own mapping */

#define TD_DIRECT_LEN (TD_LUT_MAX + 1)

typedef struct heap_s {
    /* owner: direct[n] == cur[class of n], so that malloc of at most
       TD_LUT_MAX bytes finds its slab without the class table (one load
       less) and without rounding n (two instructions less): an entry per
       byte, 8 KiB, all written when the heap is made (heap_init_fresh:
       every entry must name a span). td_heap_empty's 1025 entries are relocated by the loader in
       every process: no difference in start-up time measured (spawn, ~3 ms
       a run here). Entries holding span minus heap would need no
       relocation, but gcc then spends two instructions more in malloc.
       Written only by heap_set_cur. */
    span_t *direct[TD_DIRECT_LEN];
    span_t *cur[TD_NCLASSES];       /* owner: current slab, &td_span_empty if none */
    span_t *partial[TD_NCLASSES];   /* owner: slabs with free objects or an uncarved
                                       rest (prev/next); sweeps under lock */
    span_t *spare[TD_NCLASSES];     /* lock: one empty slab kept per class */
    td_lock_t lock;                 /* owner's slow paths; sweeps (trylock) */
    uint32_t refills;               /* lock: slab refills so far (activity) */
    uint32_t swept_refills;         /* lock: refills when a sweep last looked */
    uint32_t active_stamp;          /* lock: when a sweep last saw refills change */
    /* Own cache line: other threads write it, the owner reads cur[] a lot. */
    span_t *notify __attribute__((aligned(64)));  /* any thread pushes, lock holder takes; __atomic only */
    uint32_t notify_stamp;          /* td_os_now_ms() of the push that found notify empty */
    int remote_seen;                /* 1: a remote free went to a slab that is not armed
                                       (slab.h, TD_RL_WANT) since a sweep last looked;
                                       __atomic only */
    struct heap_s *all_next;        /* pool_lock: registry of every heap */
    struct heap_s *pool_next;       /* pool_lock: free-heap pool */
    int pooled;                     /* written under pool_lock; read with __atomic */
    int attached;                   /* pool_lock: a thread uses it */
} __attribute__((aligned(64))) heap_t;

extern __thread heap_t *td_tls_heap __attribute__((tls_model("initial-exec")));
extern heap_t td_heap_empty;
extern span_t td_span_empty;

void *td_heap_malloc_slow(size_t n) TIDE_NOINLINE;
void td_heap_free_slow(void *p, const char *who) TIDE_NOINLINE;
void td_heap_free_local_slow(heap_t *h, span_t *s) TIDE_NOINLINE;
void td_heap_bad_free(void *p, span_t *s, const char *who) __attribute__((noreturn)) TIDE_COLD;

static inline void *td_heap_malloc(size_t n)
{
    /* Only table-mapped sizes inline; larger ones compute their class in
       the slow function (one call more, on a copy of >1 KiB anyway). */
    if (TIDE_LIKELY(n <= TD_LUT_MAX)) {
        heap_t *h = td_tls_heap;
        /* Relaxed atomic (a plain move): a sweep may detach the slab, and
           each call must load the slot afresh (heap.c, look_at_cur). */
        void *p = td_slab_pop(__atomic_load_n(&h->direct[n], __ATOMIC_RELAXED));
        if (TIDE_LIKELY(p != NULL))
            return p;
    }
    return td_heap_malloc_slow(n);
}

/* Pushes p, an object of s (a slab of h, h the caller's heap), after the
   double-free test. */
TIDE_INLINE void td_heap_free_local(heap_t *h, span_t *s, void *p, const char *who)
{
    if (TIDE_UNLIKELY(td_slab_marked_free(p)))
        td_heap_bad_free(p, s, who);
    td_slab_mark_free(p);
    *(void **)p = s->free;
    /* Release (a plain store): a sweep reading the head sees the link. */
    __atomic_store_n(&s->free, p, __ATOMIC_RELEASE);
    /* Signed: also negative while the slab is FULL (bit 31). A release
       store of the count, so a sweep that reads it (acquire) sees the list
       write above (see td_slab_used_dec). */
    if (TIDE_UNLIKELY(td_slab_used_dec(s)))
        td_heap_free_local_slow(h, s);
}

/* The hint (pagemap.h) is any span that ever covered a page sharing p's
   entry, or the empty span, and another thread may be giving it back and
   reusing its descriptor right now: the release layer's sweep releases
   this heap's dead and spare slabs under h->lock, which free does not
   take. So the fast path reads s's geometry (start, divisor, count) FIRST
   and fast_heap LAST, and trusts s only if that last read is h. Why that
   is enough (docs/design.md, "Hint and descriptor reuse"):
   - fast_heap becomes h only in td_slab_init or slab_reclaim (which
     restores it on a slab of h whose geometry never changed), on h's
     thread (this one, or
     a thread whose heap this was before the pool handed it over under
     pool_lock): so a slab that reads as h's was made before this call,
     with its geometry, and no other thread can make a slab h's meanwhile;
   - its geometry does not change while it is h's, but for the carved
     count (ncarved), which only h's thread writes, and only raises (so
     this thread, if it is h's, reads its own latest value); whatever ends that
     (td_pageheap_free, td_pageheap_free_parked, slab_park) stores
     fast_heap NULL before the page heap can merge, split or hand out the
     descriptor again, under its lock;
   - x86-64 keeps loads in order and stores in one causal order (TSO):
     if a geometry load below saw any write of a reuse, the fast_heap load
     after it sees that NULL, or a later store of another heap. The acquire
     fence is what keeps the compiler from moving the fast_heap load up
     (on x86-64 it emits nothing). A weakly ordered port would also need
     release fences where a descriptor is rekeyed.
   So a last read of h means s was h's slab with exactly the geometry
   tested, and p one of its objects, at that moment: p's own span, as the
   tree would say. p is live, so no sweep gives s back before the push
   (dead slabs have no live object, spares none out) and, as before the
   hint, parking may only clear fast_heap, leaving p's page alone. A first
   read of fast_heap, as a seqlock makes, would add nothing: only this
   thread could write h between the two.
   Anything else (the empty span, foreign, LARGE, HUGE, remote, parked, a
   wrong or stale hint, an interior pointer) goes to the slow path, which
   asks the radix tree. */
static inline void td_heap_free(void *p, const char *who)
{
    span_t *s = td_pagemap_hint(p);
    heap_t *h = td_tls_heap;
    if (TIDE_LIKELY(td_slab_is_object(s, p))) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        /* A plain load: gcc folds it into the compare, not an __atomic one
           (one instruction more); the fence above keeps it in place. */
        if (TIDE_LIKELY(s->fast_heap == h)) {
            td_heap_free_local(h, s, p, who);
            return;
        }
    }
    td_heap_free_slow(p, who);
}

void td_global_init(void);
void *td_heap_calloc(size_t n);
void *td_heap_realloc(void *p, size_t n);
void *td_heap_malloc_aligned(size_t align, size_t n);
/* Writable bytes of p; reports and aborts if p is not a live block. */
size_t td_heap_usable_size(const void *p, const char *who);
/* Collects the calling thread's remote frees and returns its spare slabs
   and empty current slabs to the page heap. */
void td_heap_trim_local(void);

/* Hooks the release layer sets once (NULL before): kick is called when
   memory became free to return (may be under any lock: it must not block
   or allocate); safepoint where the caller holds no allocator lock (and
   may allocate), with freeing set when the caller is about to free a
   block (the release layer may then start its thread first). */
extern void (*td_heap_kick)(void);
extern void (*td_heap_safepoint)(bool freeing);
/* Called by the fork handlers: 0 before fork (first, before any heap
   layer lock), 1 in the parent after, 2 in the child after (last). */
extern void (*td_heap_fork_hook)(int phase);

/* One sweep of every heap, each under a trylock (a busy heap is left for
   the next sweep): gives back spare slabs unused for older_than ms (0: all
   of them) and dead slabs (every object freed by other threads), whatever
   their owner thread is doing. *released += bytes given to the page heap.
   It also parks memory: in partly used slabs of heaps that made no refill
   for park_after ms (0: every heap), the whole pages holding only free
   objects are unbacked and their objects kept off the free lists until
   the slab is empty or its owner takes it back as current (*unbacked +=
   bytes), until *unbacked reaches park_budget or td_os_now_ns() the
   deadline (0: none; past it, a call that parked nothing walks up to 8
   slabs more). Idle heaps' unchanged current slabs are detached first so
   that they can be parked (look_at_cur in heap.c). A heap lock is
   held across the unbacking of one batch of parked pages (32 ranges or
   512 KiB), so only that heap's owner can wait; in the sweeping thread's
   own heap, where nobody else can wait, across the whole walk, with
   batches of 512 ranges or 8 MiB (2 MiB with a deadline: pageheap.h,
   td_release_batch_pages). Call with the release
   layer's sweep lock held (one sweep at a time: the batch is shared).
   While *yield (NULL: never) is positive the sweep stops at the next slab
   it looks at (on a notify stack or a partial list), leaving the rest and
   the heaps it has not reached to a later sweep: a caller waiting for the
   sweep lock to release everything itself gets it within one slab.
   Returns true if a heap still holds something a later sweep may give
   back (a young spare, remote frees not yet collected, a busy heap). */
bool td_heap_sweep(uint32_t older_than, uint32_t park_after, size_t park_budget,
                   uint64_t deadline, const int *yield, size_t *released, size_t *unbacked);
/* A racy look for anything td_heap_sweep could give back (for deciding
   to sleep; the kick protocol covers what it misses). */
bool td_heap_sweep_pending(void);
/* Heaps that have a thread now. */
size_t td_heap_attached(void);

typedef struct {
    size_t slab_used_bytes;   /* bytes in objects handed out */
    size_t slab_free_bytes;   /* bytes in slabs not handed out */
    size_t large_bytes;       /* bytes in LARGE blocks */
    size_t nslabs, nlarge;
    size_t heaps, pooled_heaps;
    size_t park_scanned;      /* objects whose mark parking's scan read, so far */
} td_heap_stats_t;
void td_heap_stats(td_heap_stats_t *st);

void td_heap_validate(void);

#endif
