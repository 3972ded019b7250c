/*
 * slab.h — a span carved into objects of one size class.
 *
 * Owns the object lists of a SLAB span:
 *  - free:   objects the owner may hand out; owner-only, no atomics;
 *  - bump..end: objects never handed out, carved onto `free` in batches so
 *    a fresh slab touches memory only as it is used (the bump is start +
 *    ncarved * size);
 *  - remote: objects freed by other threads, a lock-free LIFO pushed with
 *    one CAS and taken whole by the owner with one exchange or CAS
 *    (td_slab_collect, td_slab_collect_own). The list's word holds its
 *    count, the object indices of its head and tail (td_rl_*) and two
 *    flags that decide when the owner is told (TD_RL_WANT), so the owner splices it onto `free` and subtracts it from
 *    `used` without walking it: a walk took a cross-core cache miss per
 *    object, which larson showed as 14% of its samples.
 * Counting invariant (owner's view): used + |free| + (end-bump)/size
 * == capacity, with used the low 31 bits; objects on the remote list (and
 * parked remote frees, parked_remote) are still counted in used until the
 * owner collects them.
 *
 * A free object keeps the next pointer in its first word and, in its second,
 * td_free_key ^ address (the mark): a free that finds that value is a
 * double free (false alarm odds 2^-64 for data that is not adversarial).
 * malloc zeroes the second word, so a live object never carries the mark;
 * objects carved onto the free list get it too, so that a free of one
 * never handed out is reported, and every object on a list has it (the
 * release layer's parking scans for it: heap.c, scan_marks).
 * The mark must depend on the address: bytes the allocator left in memory
 * reach live objects (realloc copies a block's unwritten bytes), and a
 * mark that a copy could carry to another object would report a correct
 * free; and it must not depend on the slab's descriptor, so that a double
 * free still shows after the slab's pages became a new slab under another
 * descriptor. A review found both with the descriptor's address as the mark
 * (tests api/realloc and api/death), which saved two instructions.
 */
#ifndef TIDE_SLAB_H
#define TIDE_SLAB_H

#include "pagemap.h"
#include "sizeclass.h"

extern uintptr_t td_free_key;

/* Makes s (SLAB from the page heap, pagemap ends set) a slab of class c
   owned by h: maps every page, resets the lists. */
void td_slab_init(span_t *s, unsigned c, struct heap_s *h);

/* Moves a batch of never-used objects onto s->free. Returns false if none
   are left. Owner only. */
bool td_slab_extend(span_t *s);

/* Objects moved onto the free list per extend: enough to amortise the slow
   call, few enough that a fresh slab's untouched pages stay untouched. */
#define TD_EXTEND_BYTES 4096
#define TD_EXTEND_MIN   4
static inline size_t td_slab_extend_batch(size_t size)
{
    size_t n = TD_EXTEND_BYTES / size;
    return n < TD_EXTEND_MIN ? TD_EXTEND_MIN : n;
}

/* Takes the remote list onto s->free and returns how many objects it held,
   in O(1); an empty list is left as it is ("want" included), and a list
   with objects becomes 0 ("notified" included: call it for a notified
   slab only when taking it off the notify stack). Owner only, under its
   heap's lock (which keeps the sweep from rewriting the list meanwhile);
   acquire pairs with the release of td_slab_push_remote. */
uint32_t td_slab_collect(span_t *s);

/* The same for a slab its owner takes without taking it off a notify
   stack: false, leaving everything as it is, if s is notified (slab.h,
   TD_RL_NOTIFIED), whose list only the stack's taker may collect;
   otherwise true with the count in *n. */
bool td_slab_collect_own(span_t *s, uint32_t *n);

/* td_slab_index: the index of p in s if p is an object start; for any
   other p (no precondition) a value >= nobjs, so td_slab_is_object tells
   whether p is the start of one of s's carved objects (index < ncarved:
   an object past the bump was never handed out).
   Exact division by multiplication (Granlund and Montgomery 1994; Hacker's
   Delight 10-16): with size = odd << shift and inv * odd == 1 mod 2^64,
   q = rotate_right(off * inv, shift) equals off / size when size divides
   off, and is >= 2^(64 - shift) > nobjs otherwise. So one compare,
   q < nobjs, tests both "object start" and "inside the object area", for
   every 64-bit off (a p below start, or with bits above TD_VA_BITS set,
   included): multiply, rotate, compare, where index-and-multiply-back
   took two multiplies and a separate end test. */
static inline uint64_t td_slab_index(const span_t *s, const void *p)
{
    uint64_t x = ((uintptr_t)p - s->start) * s->div_inv;
    unsigned r = s->div_shift;
    return (x >> r) | (x << (-r & 63));
}

static inline bool td_slab_is_object(const span_t *s, const void *p)
{
    return td_slab_index(s, p) < s->ncarved;
}

/* Bytes per object of slab s. */
static inline size_t td_slab_obj_size(const span_t *s)
{
    return td_class_size[s->sizeclass];
}

/* The first object never carved (owner's view; other threads read a value
   at least as large as when they got any of its objects). */
static inline char *td_slab_bump(const span_t *s)
{
    return (char *)s->start + __atomic_load_n(&s->ncarved, __ATOMIC_RELAXED) * td_slab_obj_size(s);
}

/* Marks p, an object, as free (see the top of this file). */
static inline void td_slab_mark_free(void *p)
{
    ((uintptr_t *)p)[1] = td_free_key ^ (uintptr_t)p;
}

static inline bool td_slab_marked_free(const void *p)
{
    return ((const uintptr_t *)p)[1] == (td_free_key ^ (uintptr_t)p);
}

/* --s->used; true if the result is <= 0: the slab became empty, or it is
   FULL (bit 31 set, negative). Owner only. On x86-64 this is one
   `subl $1, mem` whose flags feed the branch (2 instructions, where gcc
   and clang emit load, sub, store, test for the C form): a plain aligned
   32-bit store, so a racy reader (stats) sees the old or the new value;
   with the "memory" clobber the compiler keeps earlier stores (the push)
   before it, so on x86-64 (TSO) it is also a release store. */
static inline bool td_slab_used_dec(span_t *s)
{
#if defined(__x86_64__) && defined(__GCC_ASM_FLAG_OUTPUTS__)
    bool le;
    __asm__("subl $1, %0" : "+m"(s->used), "=@ccle"(le) : : "memory");
    return le;
#else
    int32_t u = s->used - 1;
    __atomic_store_n(&s->used, u, __ATOMIC_RELEASE);
    return u <= 0;
#endif
}

static inline void *td_slab_pop(span_t *s)
{
    void *p = s->free;
    if (TIDE_LIKELY(p != NULL)) {
        s->free = *(void **)p;
        s->used++;
        ((uintptr_t *)p)[1] = 0;
    }
    return p;
}

/* The remote list's word: bits 0-19 its length (0: empty, the word is
   then 0 or TD_RL_WANT), 20-39 the object index of its head, 40-59 that of
   its tail (the object whose link is NULL), and two flags (below). Pushes change head and length and copy
   the tail; the sweep may move the head past parked objects and unlink
   some below it (heap.c, slab_park), and rewrites the word to match. */
#define TD_RL_BITS 20
#define TD_RL_MASK (((uint64_t)1 << TD_RL_BITS) - 1)

static inline uint64_t td_rl_make(uint64_t head, uint64_t tail, uint64_t n)
{
    return n | head << TD_RL_BITS | tail << (2 * TD_RL_BITS);
}

static inline uint32_t td_rl_count(uint64_t w) { return (uint32_t)(w & TD_RL_MASK); }
static inline uint64_t td_rl_head_index(uint64_t w) { return (w >> TD_RL_BITS) & TD_RL_MASK; }
static inline uint64_t td_rl_tail_index(uint64_t w) { return (w >> (2 * TD_RL_BITS)) & TD_RL_MASK; }

/* Object i of s. */
static inline void *td_slab_object(const span_t *s, uint64_t i)
{
    return (char *)s->start + i * td_slab_obj_size(s);
}

/* The head object of remote word w of s, NULL if the list is empty. */
static inline void *td_rl_head(const span_t *s, uint64_t w)
{
    return td_rl_count(w) == 0 ? NULL : td_slab_object(s, td_rl_head_index(w));
}

/* Bit 63 of the remote word, "want": the owning heap would not find s by
   itself, so the remote free that finds the bit tells it (pushes s onto
   its notify stack). Only the owner (or pool_lock for a pooled heap) sets
   it ("arms" s), under the heap's lock, on an empty list with no flag
   (word 0 becomes TD_RL_WANT): when s leaves every list the owner looks
   at (it is FULL), or when the heap loses its thread (pooled). The push
   that finds it replaces it with bit 62, "notified", in the same CAS, and
   later pushes keep that bit, until whoever takes s off the stack takes
   the list too (td_slab_collect clears the word). So exactly one remote
   free notifies per arming, a slab is on a notify stack (or about to be:
   the pusher may not have pushed it yet) exactly while its word has
   "notified", and such a slab's list is left to the stack's taker: a
   collect from anywhere else could empty the slab and give it back before
   its pusher has pushed it. A slab that is current or on the partial list
   is not announced: its owner collects its remote list when it takes it
   (heap_refill), and the release layer's sweep finds dead ones on the
   partial lists. Announcing every slab whose list became non-empty cost
   larson a notify-stack CAS, a collect and a list move per remote batch
   (0.6 of each per remote free). */
#define TD_RL_WANT ((uint64_t)1 << 63)
#define TD_RL_NOTIFIED ((uint64_t)1 << 62)

enum { TD_PUSH_QUIET = 0,    /* the list had objects */
       TD_PUSH_FIRST = 1,    /* the list was empty, nobody wanted to know */
       TD_PUSH_NOTIFY = 2 }; /* the owner wanted to know: tell it (td_heap_notify) */

/* Pushes p, an object of s, onto s's remote list; says what the caller
   must do (above). */
static inline int td_slab_push_remote(span_t *s, void *p)
{
    td_slab_mark_free(p);
    uint64_t i = td_slab_index(s, p);
    uint64_t old = __atomic_load_n(&s->remote, __ATOMIC_RELAXED), w;
    do {
        uint64_t flag = old == TD_RL_WANT ? TD_RL_NOTIFIED : old & TD_RL_NOTIFIED;
        if (td_rl_count(old) == 0) {
            *(void **)p = NULL;
            w = td_rl_make(i, i, 1) | flag;
        } else {
            *(void **)p = td_rl_head(s, old);
            w = td_rl_make(i, td_rl_tail_index(old), td_rl_count(old) + 1) | flag;
        }
        /* Release: p's words are written before p is published. */
    } while (!__atomic_compare_exchange_n(&s->remote, &old, w, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    return old == TD_RL_WANT ? TD_PUSH_NOTIFY : old == 0 ? TD_PUSH_FIRST : TD_PUSH_QUIET;
}

#endif
