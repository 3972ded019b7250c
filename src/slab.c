/*
 * slab.c — carving and collecting (see slab.h).
 */
#include "slab.h"

uintptr_t td_free_key;

/* Object indices and counts fit the remote list's fields: a slab has at
   most 512 pages (td_sizeclass_init) of objects of at least 16 bytes. */
_Static_assert(((size_t)512 << TD_PAGE_SHIFT) / 16 < TD_RL_MASK, "remote-list fields");
_Static_assert(TD_SMALL_MAX <= ((size_t)512 << TD_PAGE_SHIFT), "remote-list fields");


void td_slab_init(span_t *s, unsigned c, struct heap_s *h)
{
    size_t size = td_class_size[c];
    size_t cap = (s->npages << TD_PAGE_SHIFT) / size;
    s->free = NULL;
    s->used = 0;
    s->div_inv = td_class_inv[c];
    s->div_shift = td_class_shift[c];
    s->nobjs = cap;
    s->sizeclass = (uint8_t)c;
    s->state = 0;
    s->heap = h;
    __atomic_store_n(&s->remote, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->ncarved, 0, __ATOMIC_RELAXED);
    s->prev = s->next = s->notify_next = NULL;
    s->swept_remote = 0;
    s->phead = s->phead_next = NULL;
    /* Only here does a span become h's, and only on h's thread (heap_refill):
       the free fast path's hint check relies on it (heap.h, td_heap_free). */
    s->fast_heap = h;
    s->parked_remote = 0;
    s->nparked = 0;
    s->detached = 0;
    s->park_memo = 0;
    s->parked[0] = s->parked[1] = s->parked[2] = 0;
    /* Interior pages; the page heap set the first and the last. */
    if (s->npages > 2)
        td_pagemap_set_range(s->start + TD_PAGE, s->npages - 2, s);
}

bool td_slab_extend(span_t *s)
{
    size_t size = td_slab_obj_size(s);
    char *p = (char *)s->start + s->ncarved * size;
    char *end = (char *)s->start + s->nobjs * size;
    if (p >= end)
        return false;
    size_t n = td_slab_extend_batch(size);
    size_t left = (size_t)(end - p) / size;
    if (n > left)
        n = left;
    /* Link in address order so consecutive mallocs walk memory forward. */
    void *head = s->free;
    for (size_t i = n; i-- > 0;) {
        void *o = p + i * size;
        td_slab_mark_free(o);
        *(void **)o = head;
        head = o;
    }
    s->free = head;
    /* Relaxed atomic: the free fast path of another thread may read it
       (and discard it: the slab is not its own). */
    __atomic_store_n(&s->ncarved, s->ncarved + n, __ATOMIC_RELAXED);
    return true;
}

static uint32_t splice_remote(span_t *s, uint64_t w);

uint32_t td_slab_collect(span_t *s)
{
    /* A list with objects has no "want", and only pushes change it until
       the exchange (arming and the sweep's rewrites need h->lock), so the
       exchange takes objects and leaves 0. */
    if (td_rl_count(__atomic_load_n(&s->remote, __ATOMIC_RELAXED)) == 0)
        return 0;
    return splice_remote(s, __atomic_exchange_n(&s->remote, 0, __ATOMIC_ACQ_REL));
}

bool td_slab_collect_own(span_t *s, uint32_t *n)
{
    /* One CAS both tests and takes: with a load first and an exchange
       after, a push could turn "want" into "notified" between them (found
       in review: the slab was then given back with its pusher still on
       the way to the notify stack). */
    uint64_t w = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
    do {
        if (w & TD_RL_NOTIFIED)
            return false;
        if (td_rl_count(w) == 0) {
            *n = 0;
            return true;
        }
    } while (!__atomic_compare_exchange_n(&s->remote, &w, 0, true,
                                          __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    *n = splice_remote(s, w);
    return true;
}

/* Puts list w (taken from s->remote) in front of s->free. */
static uint32_t splice_remote(span_t *s, uint64_t w)
{
    /* The same word may come back (one object reused and freed again):
       the sweeper must see it as new. */
    s->swept_remote = 0;
    void **tail = (void **)td_slab_object(s, td_rl_tail_index(w));
    TIDE_CHECK(*tail == NULL && "remote list's tail is not its last object");
#if TIDE_DEBUG >= 2
    {   /* A stale tail on a parked (zeroed) page would pass the test above. */
        uint32_t n = 1;
        void *p = td_slab_object(s, td_rl_head_index(w));
        for (; *(void **)p != NULL; p = *(void **)p)
            TIDE_ASSERT_SLOW(++n <= s->nobjs && "remote list longer than its slab");
        TIDE_ASSERT_SLOW(p == (void *)tail && "remote list's tail index is stale");
        TIDE_ASSERT_SLOW(n == td_rl_count(w) && "remote list's count is not its length");
    }
#endif
    *tail = s->free;
    s->free = td_slab_object(s, td_rl_head_index(w));
    return td_rl_count(w);
}
