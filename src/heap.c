/*
 * heap.c — thread heaps: slow paths, slab lifecycle, adoption, LARGE and
 * HUGE blocks, process init (see heap.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "heap.h"

#include "conf.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

span_t td_span_empty;   /* free == NULL: every pop from it fails */
heap_t td_heap_empty = { .direct = { [0 ... TD_DIRECT_LEN - 1] = &td_span_empty },
                         .cur = { [0 ... TD_NCLASSES - 1] = &td_span_empty } };
__thread heap_t *td_tls_heap __attribute__((tls_model("initial-exec"))) = &td_heap_empty;

void (*td_heap_kick)(void);
void (*td_heap_safepoint)(bool freeing);
void (*td_heap_fork_hook)(int phase);

static inline void kick(void)
{
    void (*k)(void) = td_heap_kick;
    if (k != NULL)
        k();
}

static inline void safepoint(bool freeing)
{
    void (*f)(bool) = td_heap_safepoint;
    if (f != NULL)
        f(freeing);
}

static td_lock_t pool_lock;        /* rank 1 */
static heap_t *heap_all;           /* pool_lock */
static heap_t *heap_pool;          /* pool_lock */
static size_t heap_count, pool_count, attached_count;

static td_lock_t init_lock;
static int init_done;              /* 0, then 1 once (release/acquire) */
static int key_state;              /* 0 none, 1 creating, 2 ready */
static pthread_key_t heap_key;

static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

void td_global_init(void)
{
    if (TIDE_LIKELY(__atomic_load_n(&init_done, __ATOMIC_ACQUIRE)))
        return;
    td_lock(&init_lock);
    if (!init_done) {
        td_os_init();
        td_conf_init();
        td_sizeclass_init();
        td_pageheap_init();
        td_free_key = (uintptr_t)td_os_random();
        __atomic_store_n(&init_done, 1, __ATOMIC_RELEASE);
    }
    td_unlock(&init_lock);
}

/* ---- slab lists (owner only) --------------------------------------- */

/* The partial list of a class is a queue: a slab that gets objects back
   joins at the tail, a refill takes the head. Most join when they were
   FULL and their first object came back (locally, or in a collected batch
   of remote frees), holding few free objects; the oldest has had the
   longest to gather more. Taken last in first out (as before), larson's
   refills found ~10 objects each: 10% of its mallocs took the heap lock,
   against 2% first in first out (8M operations: 800k locked refills
   against 130-180k; cachegrind of `larson 4 5e5`: 367 against 299
   million instructions in all). One exception joins at the head: an idle
   thread's current slab that a sweep detached (look_at_cur), so that the
   owner gets it back at its next refill of the class rather than after
   every older partial slab (found in review). And one slab may join
   without a free object: a current slab whose refill takes the head
   instead of carving its untouched rest (heap_refill, partial_worth)
   waits at the tail with that rest.
   Links: next towards the tail (NULL at the tail), prev towards the head,
   and the head's prev is the tail, so pushing at the tail is O(1) with no
   tail pointer in the heap. */
static void partial_push(heap_t *h, span_t *s)
{
    unsigned c = s->sizeclass;
    span_t *head = h->partial[c];
    s->state = TD_SLAB_PARTIAL;
    s->next = NULL;
    if (head == NULL) {
        s->prev = s;
        __atomic_store_n(&h->partial[c], s, __ATOMIC_RELAXED);
    } else {
        span_t *tail = head->prev;
        tail->next = s;
        s->prev = tail;
        head->prev = s;
    }
}

static void partial_push_head(heap_t *h, span_t *s)
{
    unsigned c = s->sizeclass;
    span_t *head = h->partial[c];
    s->state = TD_SLAB_PARTIAL;
    s->next = head;
    if (head == NULL) {
        s->prev = s;
    } else {
        s->prev = head->prev;   /* the tail */
        head->prev = s;
    }
    __atomic_store_n(&h->partial[c], s, __ATOMIC_RELAXED);
}

static void partial_remove(heap_t *h, span_t *s)
{
    span_t *head = h->partial[s->sizeclass];
    if (s == head) {
        __atomic_store_n(&h->partial[s->sizeclass], s->next, __ATOMIC_RELAXED);
        if (s->next)
            s->next->prev = s->prev;   /* the tail */
    } else {
        s->prev->next = s->next;
        if (s->next)
            s->next->prev = s->prev;
        else
            head->prev = s->prev;      /* s was the tail */
    }
    s->prev = s->next = NULL;
}

/* ---- a parked owner-list head ------------------------------------------
   Parking (below) may unback the page under the head of a partly used
   slab's owner list, s->free, but cannot move the head: the owner's free
   fast path writes it without a lock, and one such free may still be in
   flight after parking cleared fast_heap (it read fast_heap before). So
   the head object stays where it is as s->phead, off the list in meaning,
   and the link its first word held moves into the descriptor,
   s->phead_next. Every walker of the list (all hold h->lock) follows and
   rewrites links through link_of, so none reads or writes the parked page;
   the owner's pushes and collects only prepend, so phead stays in the
   chain. Before the slab becomes current, where the owner pops through
   raw links, heap_refill splices phead out (unpark_head). */
static inline void **link_of(span_t *s, void *p)
{
    return p == s->phead ? &s->phead_next : (void **)p;
}

/* Takes phead out of the chain that starts at head (h->lock held). The
   owner may also move the head itself; a sweeper leaves a head that is
   phead where it is (the owner may be pushing onto it) and splices only
   below it: a head that is not phead was pushed or collected after
   parking cleared fast_heap, and no further lock-free push can follow. */
static void unpark_head(span_t *s, void *head, bool owner)
{
    void *parked = s->phead;
    if (parked == NULL)
        return;
    if (head == parked) {
        if (!owner)
            return;
        s->free = s->phead_next;
    } else {
        uint32_t n = 0;
        void **link = (void **)head;
        while (*link != parked) {
            TIDE_CHECK(*link != NULL && ++n <= s->nobjs && "parked head not on the owner list");
            link = (void **)*link;
        }
        *link = s->phead_next;
    }
    s->phead = s->phead_next = NULL;
}

/* True while h's owner may still be inside a pop from s that began
   before a sweep detached s (look_at_cur): until the owner's next refill,
   which holds h->lock, so that any pop of its before has finished. The
   mark is the refill count at the detach, mod 255, plus one. */
static inline bool pop_may_be_pending(const heap_t *h, const span_t *s)
{
    return s->detached != 0 && s->detached == 1 + h->refills % 255;
}

static void slab_release_at(span_t *s, uint32_t stamp)
{
    s->phead = s->phead_next = NULL;   /* the page heap reuses the fields */
    /* A slab cut from a clean run has touched only the pages up to its
       bump; the rest go back clean, not dirty: the page heap hands out
       dirty runs first because their pages are resident, so a run that
       only claimed to be would take the place of one that is (the threads
       workload's peak RSS: 25.9 -> 20.5 MiB median with the short slabs
       of td_class_npages_dirty). The dirty part is rounded up to a whole
       number of short slabs of the class: a dirty run shorter than any
       request would stay resident, unused, until the decay (review: a
       program of short-lived threads peaked 30-60% higher). */
    size_t nd = td_class_npages_dirty[s->sizeclass];
    size_t touched = td_align_up((size_t)(td_slab_bump(s) - (char *)s->start), TD_PAGE) >> TD_PAGE_SHIFT;
    size_t dirty = (touched + nd - 1) / nd * nd;   /* nd need not be a power of two */
    if (dirty == 0)
        dirty = nd;
    if (s->ndirty == 0 && dirty < s->npages && s->npages <= 64 * 3) {
        uint64_t clean[3] = { s->parked[0], s->parked[1], s->parked[2] };
        for (size_t pg = dirty; pg < s->npages; pg++)
            clean[pg >> 6] |= (uint64_t)1 << (pg & 63);
        td_pageheap_free_parked(s, clean, stamp);
    } else if (TIDE_UNLIKELY(s->nparked != 0)) {
        td_pageheap_free_parked(s, s->parked, stamp);   /* parked pages stay clean */
    } else {
        td_pageheap_free(s, false, stamp);
    }
    kick();
}

/* Sets cur[c] and the direct[] entries of the sizes that map to c: up to
   64 of them (the classes from 512 bytes to 1 KiB are 64 bytes wide).
   Only the owner's fast path reads direct[] without the heap's lock, so
   the owner's own writes (and a pooled heap's, which has no owner) may be
   plain stores, two entries per 16-byte store: the refill path wrote 64
   atomic stores one by one, 16% of larson's instructions once slabs cut
   from resident memory became short. A sweep detaching an idle thread's
   slab (look_at_cur) writes while that owner may be reading: shared, so
   relaxed atomic stores, one entry each. */
static void heap_set_cur_as(heap_t *h, unsigned c, span_t *s, bool shared)
{
    __atomic_store_n(&h->cur[c], s, __ATOMIC_RELAXED);
    if (td_class_size[c] > TD_LUT_MAX)
        return;
    /* Sizes (prev class size, class size] map to c; size 0 to class 0. */
    size_t first = c == 0 ? 0 : td_class_size[c - 1] + 1;
    size_t last = td_class_size[c];
    if (shared) {
        for (size_t i = first; i <= last; i++)
            __atomic_store_n(&h->direct[i], s, __ATOMIC_RELAXED);
        return;
    }
    typedef uintptr_t pair_t __attribute__((vector_size(16)));
    pair_t two = { (uintptr_t)s, (uintptr_t)s };
    span_t **d = &h->direct[first];
    size_t n = last - first + 1, i = 0;   /* 16, 32 or 64 (17 for class 0) */
    for (; i + 8 <= n; i += 8) {
        memcpy(&d[i], &two, sizeof two);
        memcpy(&d[i + 2], &two, sizeof two);
        memcpy(&d[i + 4], &two, sizeof two);
        memcpy(&d[i + 6], &two, sizeof two);
    }
    for (; i < n; i++)
        d[i] = s;
}

static void heap_set_cur(heap_t *h, unsigned c, span_t *s)
{
    heap_set_cur_as(h, c, s, false);
}

static void slab_release(span_t *s)
{
    slab_release_at(s, td_os_now_ms());
}

/* s has no object out. Keeps it as current or spare, or gives it back. */
static void slab_emptied(heap_t *h, span_t *s)
{
    TIDE_ASSERT(s->used == 0);
    if (TIDE_UNLIKELY(s->nparked != 0)) {
        /* Parked pages: its parked objects are on no list and its frees
           all take the slow path. Empty, it goes back whole, which is
           what brings those pages back into use. */
        if (s->state == TD_SLAB_CUR)
            heap_set_cur(h, s->sizeclass, &td_span_empty);
        else if (s->state == TD_SLAB_PARTIAL)
            partial_remove(h, s);
        slab_release(s);
        return;
    }
    if (s->state == TD_SLAB_CUR)
        return;
    if (s->state == TD_SLAB_PARTIAL)
        partial_remove(h, s);
    unsigned c = s->sizeclass;
    if (h->spare[c] == NULL && td_class_npages[c] <= 2 * TD_SLAB_MIN_PAGES) {
        s->state = TD_SLAB_SPARE;
        s->stamp = td_os_now_ms();
        h->spare[c] = s;
        kick();   /* it ages: the release layer gives it back if unused */
        return;
    }
    slab_release(s);
}

/* A slab that was FULL got objects back: it joins the partial list,
   where its owner finds it, so it need not be armed any more (slab.h,
   TD_RL_WANT): a notify later would cost more than this CAS. It fails
   only if a remote free took the arming meanwhile, which is then
   announced as usual. A pooled heap's collect arms it again. */
static void slab_unfull(heap_t *h, span_t *s)
{
    uint64_t want = TD_RL_WANT;
    if (__atomic_load_n(&s->remote, __ATOMIC_RELAXED) == want)
        (void)__atomic_compare_exchange_n(&s->remote, &want, 0, false,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    s->used &= ~TD_SLAB_FULL_BIT;
    partial_push(h, s);
    kick();   /* free objects in a partly used slab: something to park later */
}

void td_heap_free_local_slow(heap_t *h, span_t *s)
{
    td_lock(&h->lock);
    if (s->used & TD_SLAB_FULL_BIT)
        slab_unfull(h, s);
    if (s->used == 0)
        slab_emptied(h, s);
    td_unlock(&h->lock);
    safepoint(false);
}

/* s has no object out and h no thread: s goes back to the page heap even
   if current (the spare slot stays empty, as heap_shed leaves it). */
static void slab_drop(heap_t *h, span_t *s)
{
    if (s->state == TD_SLAB_CUR)
        heap_set_cur(h, s->sizeclass, &td_span_empty);
    else if (s->state == TD_SLAB_PARTIAL)
        partial_remove(h, s);
    slab_release(s);
}

/* Arms s (h->lock held, the caller its owner): its next remote free
   notifies the heap (TD_RL_WANT in slab.h). False if remote frees came in
   first: the caller collects them and decides again. */
static bool slab_arm(span_t *s)
{
    uint64_t w = 0;
    if (__atomic_compare_exchange_n(&s->remote, &w, TD_RL_WANT, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return true;
    /* Armed already, or notified: on its way to the notify stack, whose
       taker collects it. */
    return w == TD_RL_WANT || (w & TD_RL_NOTIFIED);
}

/* Moves s's remote frees onto its free list (h->lock held, the caller its
   owner), unless s is notified: then the notify stack's taker does. */
static void slab_take_remote(span_t *s)
{
    uint32_t n;
    if (!td_slab_collect_own(s, &n))
        return;
    /* Parked remote frees left the list but are still counted in used. */
    s->used -= (int32_t)(n + s->parked_remote);
    s->parked_remote = 0;
}

/* s (h->lock held) has no free object and leaves every list the owner
   looks at: arms it so that the first remote free brings it back. False
   if remote frees came in first: they are on s->free now, and s is not
   full. */
static bool slab_make_full(span_t *s)
{
    while (!slab_arm(s)) {
        slab_take_remote(s);
        if (s->free != NULL)
            return false;
    }
    s->state = TD_SLAB_FULL;
    s->used |= TD_SLAB_FULL_BIT;
    return true;
}

/* Takes the notify stack: merges each listed slab's remote frees.
   Requires h->lock. With pooled (h has no thread, the caller holds
   pool_lock), emptied slabs are given back at once instead of kept as
   current or spare. */
static void heap_collect(heap_t *h, bool pooled)
{
    if (__atomic_load_n(&h->notify, __ATOMIC_RELAXED) == NULL)
        return;
    span_t *list = __atomic_exchange_n(&h->notify, NULL, __ATOMIC_ACQUIRE);
    while (list != NULL) {
        span_t *s = list;
        /* Read the link before anything can arm s again (below, or the
           owner later): the remote free that finds the arming pushes s
           onto a notify stack, rewriting it. */
        list = s->notify_next;
        for (;;) {
            /* Off the stack: its list is ours (slab_take_remote would leave
               a notified one alone). */
            s->used -= (int32_t)(td_slab_collect(s) + s->parked_remote);
            s->parked_remote = 0;
            if (s->used & TD_SLAB_FULL_BIT)
                slab_unfull(h, s);
            if (s->used == 0) {
                if (pooled)
                    slab_drop(h, s);
                else
                    slab_emptied(h, s);
                break;
            }
            /* A pooled heap has no owner to take its slabs: the next remote
               free into s must tell it again. */
            if (!pooled || slab_arm(s))
                break;
        }
    }
}

/* Pushes s onto h's notify stack. Sequentially consistent (the lock
   cmpxchg it is anyway on x86): the release layer's sleep protocol reads
   the stacks after announcing it sleeps, and the kick below reads that. */
static void heap_notify(heap_t *h, span_t *s)
{
    span_t *old = __atomic_load_n(&h->notify, __ATOMIC_RELAXED);
    do {
        s->notify_next = old;
    } while (!__atomic_compare_exchange_n(&h->notify, &old, s, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    if (old == NULL) {
        __atomic_store_n(&h->notify_stamp, td_os_now_ms(), __ATOMIC_RELAXED);
        kick();
    }
}

static span_t *slab_new(heap_t *h, unsigned c)
{
    span_t *s = td_pageheap_alloc_slab(td_class_npages[c], td_class_npages_dirty[c]);
    if (s == NULL)
        return NULL;
    td_slab_init(s, c, h);
    return s;
}

static void slab_reclaim(heap_t *h, span_t *s);

/* True if the refill should take h's first partly used slab of class c
   and leave cur's uncarved rest for later, which keeps a churning heap's
   touched memory close to its live memory: the slab has no parked pages
   (its reclaim would fault them all in), and at least two extends' worth
   of free objects and an eighth of its capacity (the same count below
   1 KiB). Each such refill takes the lock (and rewrites direct[] for
   classes up to 1 KiB), where a carve took neither, so a lower bar costs
   time where a class's live objects fill a little over one slab
   (single-class churn at 1.1 slabs, against carving first: an extend's
   worth, 1 KiB objects 5 times the refills and 13% slower; with the
   eighth, 3.8 times and 6%; 2-4 KiB objects at one extend's worth 2.5-2.9
   times and 14-17%, at two 6-10%; touched memory 1.25-1.6 slabs' worth
   against 2.0). Owner only; without h->lock the answer is a guess (a
   sweep may be giving the slab back and its descriptor being reused: the
   reads are of memory never unmapped, racy like the free fast path's
   hint), which costs at most a refill under the lock that carves after
   all. */
static bool partial_worth(heap_t *h, unsigned c)
{
    span_t *p = __atomic_load_n(&h->partial[c], __ATOMIC_RELAXED);
    if (p == NULL || __atomic_load_n(&p->nparked, __ATOMIC_RELAXED) != 0)
        return false;
    uint64_t nfree = __atomic_load_n(&p->ncarved, __ATOMIC_RELAXED) -
                     (uint32_t)__atomic_load_n(&p->used, __ATOMIC_RELAXED) +
                     td_rl_count(__atomic_load_n(&p->remote, __ATOMIC_RELAXED));
    uint64_t want = 2 * td_slab_extend_batch(td_class_size[c]);
    uint64_t eighth = __atomic_load_n(&p->nobjs, __ATOMIC_RELAXED) / 8;
    return nfree >= (want > eighth ? want : eighth);
}

/* cur[c] is exhausted: refill it. Returns an object or NULL (no memory). */
static void *heap_refill(heap_t *h, unsigned c)
{
    span_t *s = __atomic_load_n(&h->cur[c], __ATOMIC_RELAXED);   /* a sweep may detach it */
    /* Objects that came back first, then fresh ones: carving while remote
       frees wait touches new memory (rbd's peak RSS: 3.5 MiB against 2.8
       when the remote list was only taken after carving). Likewise a
       partly used slab with enough free objects (partial_worth) goes before
       cur's uncarved rest, and cur waits at the partial list's tail: churn
       of random sizes otherwise carves every slab of a class whole, twice
       the live memory where a class needs a little over one slab (churn's
       peak RSS: 2.68 MiB against 2.47, mimalloc's 2.60). */
    if (s != &td_span_empty && td_rl_count(__atomic_load_n(&s->remote, __ATOMIC_RELAXED)) == 0 &&
        !partial_worth(h, c) && td_slab_extend(s))
        return td_slab_pop(s);
    td_lock(&h->lock);
    h->refills++;
    heap_collect(h, false);
    s = h->cur[c];
    if (s != &td_span_empty && s->free == NULL) {
        slab_take_remote(s);   /* not announced (unless adopted armed) */
        if (s->free == NULL && (s->used == 0 || !partial_worth(h, c)))
            td_slab_extend(s);
    }
    if (s->free != NULL) {
        td_unlock(&h->lock);
        return td_slab_pop(s);
    }
    if (s != &td_span_empty) {
        if (s->ncarved < s->nobjs) {
            s->park_memo = 0;   /* look_at_cur's, from its time as cur */
            partial_push(h, s);
        } else if (!slab_make_full(s)) {
            /* Remote frees came back before it could be armed: they
               are its free objects now. */
            td_unlock(&h->lock);
            return td_slab_pop(s);
        }
    }
    while ((s = h->partial[c]) != NULL) {
        partial_remove(h, s);
        slab_reclaim(h, s);   /* pops follow raw links; frees fast again */
        slab_take_remote(s);
        if (s->free != NULL || s->ncarved < s->nobjs)
            break;
        /* Every object out: a pop in flight when a sweep detached this
           slab took its last one (look_at_cur), or the objects are on its
           remote list and it is notified (their collect is the notify
           stack's taker's: slab_make_full then marks it full). */
        if (!slab_make_full(s))
            break;
    }
    if (s == NULL && (s = h->spare[c]) != NULL) {
        h->spare[c] = NULL;
    } else if (s == NULL && (s = slab_new(h, c)) == NULL) {
        heap_set_cur(h, c, &td_span_empty);
        td_unlock(&h->lock);
        return NULL;
    }
    s->state = TD_SLAB_CUR;
    heap_set_cur(h, c, s);
    td_unlock(&h->lock);
    if (s->free == NULL)
        td_slab_extend(s);
    return td_slab_pop(s);
}

/* ---- attach / detach ------------------------------------------------ */

static void heap_thread_exit(void *arg);

static void heap_init_fresh(heap_t *h)
{
    for (unsigned c = 0; c < TD_NCLASSES; c++)
        heap_set_cur_as(h, c, &td_span_empty, true);   /* before any sweep's lock */
}

/* Takes s's remote frees (h->lock held, the caller its owner) and arms
   it, so that later ones reach a heap losing its thread (slab.h,
   TD_RL_WANT). False if s is empty now (nothing armed). */
static bool slab_arm_pooled(span_t *s)
{
    do {
        slab_take_remote(s);
        if (s->used == 0)
            return false;
    } while (!slab_arm(s));
    return true;
}

/* Returns empty cur and spare slabs to the page heap. Owner only. With
   arm (the thread exits), the remaining current and partial slabs are
   armed: a pooled heap has nobody to take them. */
static void heap_shed(heap_t *h, bool arm)
{
    td_lock(&h->lock);
    heap_collect(h, false);
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        span_t *s = h->spare[c];
        if (s != NULL) {
            h->spare[c] = NULL;
            slab_release(s);
        }
        s = h->cur[c];
        if (s != &td_span_empty && !arm)
            slab_take_remote(s);   /* remote frees may have emptied it */
        if (s != &td_span_empty && arm && slab_arm_pooled(s))   /* takes them too */
            s = &td_span_empty;   /* stays */
        if (s != &td_span_empty && s->used == 0) {
            heap_set_cur(h, c, &td_span_empty);
            slab_release(s);
        }
        for (span_t *p = arm ? h->partial[c] : NULL, *next; p != NULL; p = next) {
            next = p->next;
            if (!slab_arm_pooled(p))
                slab_drop(h, p);
        }
    }
    td_unlock(&h->lock);
}

static void register_thread(heap_t *h)
{
    int st = __atomic_load_n(&key_state, __ATOMIC_ACQUIRE);
    if (st == 0) {
        int z = 0;
        if (__atomic_compare_exchange_n(&key_state, &z, 1, false,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            /* Neither call allocates in glibc; both run after init, with no
               lock held, so a malloc they might make would still work. */
            pthread_key_create(&heap_key, heap_thread_exit);
            pthread_atfork(fork_prepare, fork_parent, fork_child);
            __atomic_store_n(&key_state, 2, __ATOMIC_RELEASE);
            st = 2;
        }
    }
    /* A thread racing the creator waits for it: two calls that allocate
       nothing, so the wait is short and cannot recurse into us. */
    while (st == 1) {
        __builtin_ia32_pause();
        st = __atomic_load_n(&key_state, __ATOMIC_ACQUIRE);
    }
    pthread_setspecific(heap_key, h);
}

static heap_t *heap_attach(void)
{
    td_global_init();
    td_lock(&pool_lock);
    heap_t *h = heap_pool;
    if (h != NULL) {
        heap_pool = h->pool_next;
        h->pool_next = NULL;
        __atomic_store_n(&h->pooled, 0, __ATOMIC_RELAXED);
        pool_count--;
        h->attached = 1;
        attached_count++;
    }
    td_unlock(&pool_lock);
    if (h == NULL) {
        h = td_meta_alloc(sizeof *h);
        if (h == NULL)
            return NULL;
        heap_init_fresh(h);
        td_lock(&pool_lock);
        h->all_next = heap_all;
        h->attached = 1;
        attached_count++;
        /* Release: sweeps walk the registry without the lock; links of
           listed heaps never change (heaps are never freed). */
        __atomic_store_n(&heap_all, h, __ATOMIC_RELEASE);
        heap_count++;
        td_unlock(&pool_lock);
    }
    td_tls_heap = h;
    register_thread(h);
    return h;
}

static void heap_thread_exit(void *arg)
{
    heap_t *h = arg;
    if (td_tls_heap != h)
        return;
    heap_shed(h, true);
    /* Later frees from this thread (other TLS destructors) become remote
       frees; a later malloc attaches a heap again. */
    td_tls_heap = &td_heap_empty;
    td_lock(&pool_lock);
    h->pool_next = heap_pool;
    heap_pool = h;
    __atomic_store_n(&h->pooled, 1, __ATOMIC_RELAXED);
    pool_count++;
    h->attached = 0;
    attached_count--;
    /* A remote free may have notified h after heap_shed above but before
       it saw pooled: collect once more. The fence pairs with the one in
       the remote free path (store pooled / load notify here, push notify /
       load pooled there): at least one side sees the other. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    heap_shed(h, true);
    td_unlock(&pool_lock);
}

/* Remote frees reached a pooled heap: collect them as its owner would.
   pool_lock is what owns a pooled heap (adoption takes it too), so holding
   it makes this thread the owner for the duration. Runs once per slab per
   batch of remote frees (only the push that notifies calls it), so it
   collects only the notified slabs: heap_thread_exit already shed the
   rest, and a full heap_shed (a walk of every class) here cost ~1,000
   instructions per remote batch under pool_lock. */
static TIDE_NOINLINE void heap_collect_pooled(heap_t *h)
{
    td_lock(&pool_lock);
    if (h->pooled) {
        td_lock(&h->lock);       /* rank order: pool_lock, heap lock, page heap */
        heap_collect(h, true);
        td_unlock(&h->lock);
    }
    td_unlock(&pool_lock);
}

void td_heap_trim_local(void)
{
    heap_t *h = td_tls_heap;
    if (h != &td_heap_empty)
        heap_shed(h, false);
}

size_t td_heap_attached(void)
{
    td_lock(&pool_lock);
    size_t n = attached_count;
    td_unlock(&pool_lock);
    return n;
}

/* ---- sweep (release layer) ------------------------------------------ */

/* True if s (FULL or PARTIAL, h->lock held) has no live object: every
   object out is on its remote list. Then nothing can touch it any more:
   the owner's malloc only pops current slabs, and a free needs a live
   object. Reads the count first (acquire, pairs with the free fast path's
   release), then the list: a local free between the two makes the count
   drop below the list length, never match it. */
static bool slab_dead(span_t *s)
{
    /* A detached slab's owner may still be inside a pop from it. */
    if (pop_may_be_pending(s->heap, s))
        return false;
    int32_t used = __atomic_load_n(&s->used, __ATOMIC_ACQUIRE) & ~TD_SLAB_FULL_BIT;
    /* A local free into a FULL slab always goes on to the slow path, which
       waits for h->lock to move the slab to the partial list: if one has
       happened (the free list is no longer empty), the owner is on its way
       and the slab is not ours to take, even if that was its last object. */
    if (s->state == TD_SLAB_FULL && __atomic_load_n(&s->free, __ATOMIC_RELAXED) != NULL)
        return false;
    uint64_t w = __atomic_load_n(&s->remote, __ATOMIC_ACQUIRE);
    s->swept_remote = w;
    if (td_rl_count(w) == 0)
        return false;
    return (int32_t)(td_rl_count(w) + s->parked_remote) == used;
}

/* ---- parking: unbacking free pages inside partly used slabs ----------- */

#define PARK_MAX_OBJS 4096                 /* 16-byte objects in 16 pages */
#define PARK_MAX_PAGES (64 * 3)            /* bits in span_t.parked */

static inline bool page_parked(const span_t *s, size_t pg)
{
    return (__atomic_load_n(&s->parked[pg >> 6], __ATOMIC_RELAXED) >> (pg & 63)) & 1;
}

/* Walks a chain from head marking objects free in bits; returns its length.
   The chain below head is stable: h->lock keeps the owner from popping or
   collecting, and pushes only prepend. */
static uint32_t mark_chain(span_t *s, void *head, uint64_t *bits, uint32_t cap)
{
    uint32_t n = 0;
    for (void *p = head; p != NULL; p = *link_of(s, p)) {
        if (p == s->phead)
            continue;   /* parked already: not free to hand out */
        uint64_t i = td_slab_index(s, p);
        TIDE_CHECK(i < cap && ++n <= cap && "free chain leaves its slab");
        bits[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    return n;
}

/* Objects that parking took off s's lists: every object overlapping a
   parked page (phead among them). Counted from the bitmap, O(pages). */
static uint64_t parked_objects(const span_t *s)
{
    if (__atomic_load_n(&s->nparked, __ATOMIC_RELAXED) == 0)
        return 0;
    size_t size = td_slab_obj_size(s);
    uint64_t carved = __atomic_load_n(&s->ncarved, __ATOMIC_RELAXED), n = 0, next = 0;
    for (size_t pg = 0; pg < s->npages && pg < PARK_MAX_PAGES; pg++) {
        if (!page_parked(s, pg))
            continue;
        uint64_t first = (pg << TD_PAGE_SHIFT) / size;
        uint64_t end = (((pg + 1) << TD_PAGE_SHIFT) - 1) / size + 1;   /* objects [first, end) */
        if (first < next)
            first = next;   /* one spanning two parked pages counts once */
        if (end > carved)
            end = carved;   /* parked pages hold carved objects only */
        if (first >= end)
            continue;
        n += end - first;
        next = end;
    }
    return n;
}

/* An upper bound on the objects on s's two lists, counted without
   reading an object; park_may_pay: false if they cannot fill two pages
   (the least slab_park's walks act on). Carved objects are handed out (used: live ones and remote frees not yet
   collected, parked ones among these counted in parked_remote), on the
   owner list, on the remote list, or parked; so the owner list holds
   carved - used - parked + parked_remote, one more if a free is in flight
   (used read after the list heads: a free pushes, then decrements), and
   the remote word w holds the remote list's length. Without this the scan
   (and the prefetch before it) read a word of every object of any partly
   used slab, live ones included: a heap of 8 million 256-byte objects
   with 1% of them freed took 118-130 ms to trim for nothing (glibc: 27).
   With it, parking reads objects in proportion to the free memory it may
   find. h->lock held (parked pages and parked_remote). */
static uint64_t park_listed_bound(const span_t *s, int32_t used, uint64_t w)
{
    uint64_t carved = __atomic_load_n(&s->ncarved, __ATOMIC_RELAXED);
    uint64_t have = carved + __atomic_load_n(&s->parked_remote, __ATOMIC_RELAXED) + 1;
    uint64_t gone = ((uint32_t)used & ~(uint32_t)TD_SLAB_FULL_BIT) + parked_objects(s);
    return (have > gone ? have - gone : 0) + td_rl_count(w);
}

static bool park_may_pay(const span_t *s, int32_t used, uint64_t w)
{
    return park_listed_bound(s, used, w) * td_slab_obj_size(s) >= 2 * TD_PAGE;
}

/* Prefetches the lines holding the marks of every carved object of s
   outside its parked pages, for the scan_marks to come (heap_sweep_one
   calls it for the next slab on a list before it looks at the current
   one). Left to the hardware, that scan ran one page's prefetcher warm-up
   at a time, about 25 ns an object; asked for all at once (at most 1024
   lines: slabs of classes under a page hold at most 64 KiB of lines),
   the lines come in side by side: malloc_trim(0) of the trim workload
   took 100-106 ms where it took 120-126 (six interleaved pairs). Parked
   pages are skipped: a prefetch does not fault, but its page walk could
   mark a page freed with MADV_FREE as used again. */
static void prefetch_marks(const span_t *s)
{
    size_t size = td_slab_obj_size(s);
    if (size >= TD_PAGE)
        return;   /* scan_marks does not read them */
    size_t end = __atomic_load_n(&s->ncarved, __ATOMIC_RELAXED) * size;
    bool parked = __atomic_load_n(&s->nparked, __ATOMIC_RELAXED) != 0;
    size_t step = size <= 64 ? 64 : size;
    size_t off = size <= 64 ? 0 : sizeof(void *);   /* the mark's line */
    for (size_t pg = 0; pg << TD_PAGE_SHIFT < end; pg++) {
        if (parked && page_parked(s, pg))
            continue;
        size_t lo = pg << TD_PAGE_SHIFT, hi = lo + TD_PAGE;
        if (hi > end)
            hi = end;
        for (size_t o = (lo + step - 1) / step * step; o < hi; o += step)
            __builtin_prefetch((const void *)(s->start + o + off));
    }
}

/* True if some page of s could be parked: a page below the bump, not
   parked, whose every overlapping object carries the free mark. Every
   object on either list carries it (slab.h), and one that starts on a
   parked page is never on a list, so a page that the walks below would
   park always passes; the converse is not needed, as the walks decide.
   It reads the mark of every carved object in address order, which the
   hardware prefetches, and so also brings the lines of the free objects
   into the cache for the walks, which follow the lists' links in the
   order of the frees: a cache miss per object otherwise, 43% of a
   malloc_trim(0) of the trim workload (158 -> 127 ms with this scan; as
   a test that stopped at the first page found, 146 ms). A slab with
   nothing to park costs the scan only. Reads objects the owner may be
   writing (relaxed loads); a mark read while its object is popped only
   makes this say no (the slab is looked at again once a free changes
   its lists). It reads live objects too, so only in classes smaller than
   a page: an object of a page or more may hold a whole page that its
   program protected (mprotect PROT_NONE on a page-aligned block: a
   review's reproducer crashed the sweep), and those classes have few
   objects to walk anyway. */
static bool scan_marks(const span_t *s, size_t *read)
{
    size_t size = td_slab_obj_size(s);
    if (size >= TD_PAGE)
        return true;   /* no pre-filter: the walks read free objects only */
    size_t carved = __atomic_load_n(&s->ncarved, __ATOMIC_RELAXED);
    size_t objs_end = (size_t)s->nobjs * size;
    bool found = false;
    for (size_t pg = 0; pg < s->npages; pg++) {
        size_t lo = pg << TD_PAGE_SHIFT, hi = lo + TD_PAGE;
        if (lo >= objs_end)
            break;
        if (hi > objs_end)
            hi = objs_end;   /* the slack past the last object, as select_pages */
        size_t first = lo / size, last = (hi - 1) / size;
        if (last >= carved)
            break;   /* this page and the rest hold uncarved objects */
        if (page_parked(s, pg))
            continue;
        bool all = true;
        for (size_t i = first; i <= last; i++) {
            uintptr_t o = s->start + i * size;
            /* An object starting on a parked page is parked: not free,
               and reading it would fault in a zero page. */
            if (page_parked(s, (i * size) >> TD_PAGE_SHIFT)) {
                all = false;
            } else {
                all &= __atomic_load_n((uintptr_t *)o + 1, __ATOMIC_RELAXED) == (td_free_key ^ o);
                (*read)++;
            }
        }
        found |= all;
    }
    return found;
}

/* Drops from the chain after head (kept) every object that starts in a
   page of newly parked; returns how many, and the chain's last object in
   *last (NULL: none). */
static uint32_t unlink_parked(span_t *s, void *head, const uint64_t *unl, void **last)
{
    uint32_t removed = 0;
    void *prev = head;
    *last = NULL;
    if (prev == NULL)
        return 0;
    for (void *p = *link_of(s, prev); p != NULL;) {
        void *next = *link_of(s, p);
        uint64_t i = td_slab_index(s, p);
        if (p != s->phead && ((unl[i >> 6] >> (i & 63)) & 1)) {
            removed++;
        } else {
            if (*link_of(s, prev) != p)
                *link_of(s, prev) = p;
            prev = p;
        }
        p = next;
    }
    if (*link_of(s, prev) != NULL)
        *link_of(s, prev) = NULL;
    *last = prev;
    return removed;
}

static void keep_pages(const span_t *s, const void *obj, uint64_t *keep)
{
    if (obj == NULL)
        return;
    size_t a = ((uintptr_t)obj - s->start) >> TD_PAGE_SHIFT;
    size_t b = ((uintptr_t)obj - s->start + td_slab_obj_size(s) - 1) >> TD_PAGE_SHIFT;
    for (size_t pg = a; pg <= b && pg < 64 * 3; pg++)
        keep[pg >> 6] |= (uint64_t)1 << (pg & 63);
}

static inline bool bit_set(const uint64_t *b, size_t i)
{
    return (b[i >> 6] >> (i & 63)) & 1;
}

/* The pages of s that can be parked given the free objects in bits and
   the pages to keep; fills newly (pages) and unl (objects overlapping
   them, *nunl of them). Returns the number of pages. */
static unsigned select_pages(const span_t *s, const uint64_t *bits, const uint64_t *keep,
                             uint64_t *unl, uint64_t *newly, uint32_t *nunl)
{
    size_t size = td_slab_obj_size(s), objs_end = (size_t)s->nobjs * size;
    memset(unl, 0, (s->nobjs + 63) / 64 * sizeof unl[0]);
    newly[0] = newly[1] = newly[2] = 0;
    *nunl = 0;
    unsigned nnew = 0;
    for (size_t pg = 0; pg < s->npages; pg++) {
        size_t lo = pg << TD_PAGE_SHIFT, hi = lo + TD_PAGE;
        if (lo >= objs_end || bit_set(keep, pg) || page_parked(s, pg))
            continue;
        if (hi > objs_end)
            hi = objs_end;
        size_t first = lo / size, last = (hi - 1) / size;
        bool all = true;
        for (size_t i = first; i <= last && all; i++)
            all = bit_set(bits, i);
        if (!all)
            continue;
        newly[pg >> 6] |= (uint64_t)1 << (pg & 63);
        nnew++;
        for (size_t i = first; i <= last; i++) {
            if (!bit_set(unl, i)) {
                unl[i >> 6] |= (uint64_t)1 << (i & 63);
                (*nunl)++;
            }
        }
    }
    return nnew;
}

static inline uint32_t park_memo(const void *f, uint64_t r)
{
    uint64_t x = (uint64_t)(uintptr_t)f * 0x9e3779b97f4a7c15ull ^ r;
    return (uint32_t)(x >> 32 ^ x) | 1;
}

/* Parked pages waiting to be unbacked. Only sweeps add to it, and they
   run under the release layer's sweep lock. It is flushed before the
   heap's lock is let go (park_flush): until then the slab cannot empty
   and go back to the page heap, so no page in it can have been reused. */
static td_unback_batch_t park_batch;
/* Objects whose marks scan_marks has read, ever (tide_stats; written by
   sweeps only, under the sweep lock). */
static size_t park_scanned;
/* Slab walks by parking in this td_heap_sweep call (sweep lock too). */
static unsigned sweep_walks;
#define PARK_GRACE_WALKS 8
#define PARK_FLUSH_RANGES 32                       /* ~40 us of calls */
#define PARK_FLUSH_BYTES  ((size_t)512 << 10)      /* ~60 us of page freeing */
/* When the sweeping thread owns the heap, nobody else waits for its lock
   (only the owner takes it, besides sweeps, which hold the sweep lock):
   batches as large as the page heap's, fewer calls and TLB flushes. */
#define PARK_OWN_FLUSH_RANGES TD_UNBACK_MAX
/* Set per heap by heap_sweep_one (sweep lock); the bytes as the page
   heap's batch for the sweep's deadline (td_release_batch_pages). */
static bool park_own;
static size_t park_own_flush_bytes;
/* Set by td_heap_sweep: while *sweep_yield is positive (a caller waits to
   release everything itself) this sweep stops at the next slab. */
static const int *sweep_yield;

static bool yielding(void)
{
    /* > 0: a fork from a signal handler inside such a call resets the
       count in the child, where the call's own decrement takes it below 0. */
    return sweep_yield != NULL && __atomic_load_n(sweep_yield, __ATOMIC_RELAXED) > 0;
}

static bool park_batch_full(void)
{
    if (park_own)
        return park_batch.n >= PARK_OWN_FLUSH_RANGES || park_batch.bytes >= park_own_flush_bytes;
    return park_batch.n >= PARK_FLUSH_RANGES || park_batch.bytes >= PARK_FLUSH_BYTES;
}

static void park_flush(void) { td_os_unback_flush(&park_batch); }

/* Unbacks the whole pages of s (PARTIAL or FULL, h->lock held) that hold
   only free objects; the owner list's head stays in place as phead (see
   link_of), the remote list's moves past them with a CAS. Their objects
   leave the lists ("parked") until the slab is empty and goes back whole,
   or its owner takes it back as current (slab_reclaim); fast_heap is
   cleared so that every free into s takes the slow path, where a free of a
   parked object is reported as the double free it is. The pages go into
   park_batch, which the caller flushes before it lets h->lock go. Returns
   bytes. */
static size_t slab_park(span_t *s)
{
    (void)__atomic_load_n(&s->used, __ATOMIC_ACQUIRE);   /* the owner's earlier list writes */
    void *f0 = __atomic_load_n(&s->free, __ATOMIC_ACQUIRE);
    uint64_t w0 = __atomic_load_n(&s->remote, __ATOMIC_ACQUIRE);
    void *r0 = td_rl_head(s, w0);
    uint32_t memo = park_memo(f0, w0);
    if (memo == s->park_memo)
        return 0;   /* no object freed since the last look (a collision only skips) */
    if (s->state == TD_SLAB_FULL && f0 != NULL)
        return 0;   /* a local free is on its way to the slow path: look again */
    s->park_memo = memo;
    sweep_walks++;
    if (s->npages > PARK_MAX_PAGES)
        return 0;
    uint32_t cap = s->nobjs;
    if (cap > PARK_MAX_OBJS)
        return 0;
    /* used read again after the heads: a free they show has at most its
       decrement still to come (review: read before them, a burst of frees
       in between left the bound short, and the memo kept the slab from
       being looked at again). */
    if (!park_may_pay(s, __atomic_load_n(&s->used, __ATOMIC_ACQUIRE), w0))
        return 0;
    unpark_head(s, f0, false);   /* a head parked earlier, now below a push */
    /* The walk of the owner list starts at its head, or below it in a
       detached slab: a pop in flight there (look_at_cur) may hand f0 out,
       after which its first word is the program's. Its link, read while
       the head is still f0, is the pop's own view; below it nothing moves. */
    void *fw = f0;
    bool pend = pop_may_be_pending(s->heap, s);
    if (pend && !td_os_membarrier_ready())
        return 0;   /* the detach's barrier failed: only one op is not proven */
    if (pend && f0 != NULL) {
        fw = __atomic_load_n((void **)f0, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->free, __ATOMIC_ACQUIRE) != f0) {
            s->park_memo = 0;   /* it moved: look again next time */
            return 0;
        }
    }
    size_t read = 0;
    bool found = scan_marks(s, &read);
    /* Sweeps only, under the sweep lock: one writer. */
    __atomic_store_n(&park_scanned, park_scanned + read, __ATOMIC_RELAXED);
    if (!found)
        return 0;
    size_t words = (cap + 63) / 64;
    uint64_t bits[PARK_MAX_OBJS / 64], fbits[PARK_MAX_OBJS / 64];
    memset(bits, 0, words * sizeof bits[0]);
    memset(fbits, 0, words * sizeof fbits[0]);
    uint32_t nf = mark_chain(s, fw, fbits, cap);
    uint32_t nr = mark_chain(s, r0, bits, cap);
    for (size_t w = 0; w < words; w++)
        bits[w] |= fbits[w];
    TIDE_CHECK(nr == td_rl_count(w0) && "remote list's count is not its length");
    /* used read now: later frees only raise the bound, and a pop in
       flight (detached slab) takes an object the walk left out. */
    TIDE_ASSERT(nf + nr <= park_listed_bound(s, __atomic_load_n(&s->used, __ATOMIC_ACQUIRE), w0) &&
                "park_may_pay's bound is below the lists' length");
    if ((size_t)(nf + nr) * td_slab_obj_size(s) < 2 * TD_PAGE)
        return 0;

    /* The owner list's head may lie on a parked page and become phead, as long
       as another object stays on that list: a partly used slab must have one
       to hand out when it becomes current (or an uncarved rest). The remote
       list's head can be moved past parked objects with a CAS (pushes only
       ever replace it), as long as a kept object is left to head the list: a
       notified slab (slab.h, TD_RL_NOTIFIED) must keep objects on it until the
       notify stack's taker collects it. Every object overlapping a parked page
       leaves the lists, also one that starts on a kept page (its header stays
       resident, and so does its double-free mark), or reusing it would write
       to the parked page. */
    uint64_t keep[3] = { 0, 0, 0 };
    if (fw != f0) {
        /* The pop in flight may still take f0 and make fw the head: both
           stay resident and linked as they are (no phead: f0 is kept). */
        keep_pages(s, f0, keep);
        keep_pages(s, fw, keep);
    }
    uint64_t unl[PARK_MAX_OBJS / 64];
    uint64_t newly[3];
    uint32_t nunl;
    unsigned nnew = select_pages(s, bits, keep, unl, newly, &nunl);
    void *lead = f0 == s->phead ? s->phead_next : f0;   /* first object on it */
    if (nnew != 0 && lead != NULL && bit_set(unl, td_slab_index(s, lead))) {
        bool left = false;
        for (size_t w = 0; w < words && !left; w++)
            left = (fbits[w] & ~unl[w]) != 0;
        if (!left) {
            keep_pages(s, lead, keep);
            nnew = select_pages(s, bits, keep, unl, newly, &nunl);
        }
    }
    void *rh = r0;   /* the remote head after parking */
    uint64_t wh = w0;   /* the remote word that made it head */
    uint32_t rr = 0;
    if (nnew != 0 && r0 != NULL && bit_set(unl, td_slab_index(s, r0))) {
        void *rk = *(void **)r0;
        uint32_t skipped = 1;
        while (rk != NULL && bit_set(unl, td_slab_index(s, rk))) {
            rk = *(void **)rk;
            skipped++;
        }
        uint64_t expect = w0;
        if (rk != NULL)
            wh = td_rl_make(td_slab_index(s, rk), td_rl_tail_index(w0), td_rl_count(w0) - skipped) |
                 (w0 & TD_RL_NOTIFIED);
        if (rk != NULL && __atomic_compare_exchange_n(&s->remote, &expect, wh, false,
                                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            rh = rk;
            rr = skipped;
        } else {
            /* All remote objects parkable, or a push came first: keep the
               pages of the head as it was. */
            wh = w0;
            keep_pages(s, r0, keep);
            nnew = select_pages(s, bits, keep, unl, newly, &nunl);
        }
    }
    if (nnew == 0)
        return 0;
    /* A reselect above only shrinks unl, so f0 in it still leaves another
       object on the owner list. Its page is not unbacked before the batch
       is flushed, so its link can still be read here. */
    uint32_t rf = 0;
    if (f0 != NULL && f0 != s->phead && bit_set(unl, td_slab_index(s, f0))) {
        s->phead_next = *(void **)f0;
        s->phead = f0;
        rf = 1;
    }
    void *last;
    rf += unlink_parked(s, fw, unl, &last);   /* fw is kept */
    uint32_t below = unlink_parked(s, rh, unl, &last);
    rr += below;
    TIDE_CHECK(rf + rr == nunl && "parked objects not all on the lists");
    if (below != 0) {
        /* The list lost objects below its head, maybe its tail: pushes
           since only changed the head and the count, so rewrite the tail
           and the count under them. The owner cannot collect meanwhile
           (h->lock). */
        uint64_t w = __atomic_load_n(&s->remote, __ATOMIC_RELAXED), nw;
        do {
            nw = td_rl_make(td_rl_head_index(w), td_slab_index(s, last), td_rl_count(w) - below) |
                 (w & TD_RL_NOTIFIED);
        } while (!__atomic_compare_exchange_n(&s->remote, &w, nw, true,
                                              __ATOMIC_RELAXED, __ATOMIC_RELAXED));
        if (w == wh)
            wh = nw;
    }
    s->park_memo = park_memo(f0, wh);
    s->parked_remote += rr;
    s->swept_remote = wh;
    /* Read without the lock by the free slow path's double-free check. */
    for (int w = 0; w < 3; w++)
        __atomic_store_n(&s->parked[w], s->parked[w] | newly[w], __ATOMIC_RELAXED);
    __atomic_store_n(&s->nparked, (uint16_t)(s->nparked + nnew), __ATOMIC_RELAXED);
    __atomic_store_n(&s->fast_heap, NULL, __ATOMIC_RELAXED);
    for (size_t pg = 0; pg < s->npages;) {
        if (!((newly[pg >> 6] >> (pg & 63)) & 1)) {
            pg++;
            continue;
        }
        size_t run = 1;
        while (pg + run < s->npages && ((newly[(pg + run) >> 6] >> ((pg + run) & 63)) & 1))
            run++;
        td_os_unback_add(&park_batch, (void *)(s->start + (pg << TD_PAGE_SHIFT)),
                         run << TD_PAGE_SHIFT);
        pg += run;
    }
    td_pageheap_note_released((size_t)nnew << TD_PAGE_SHIFT);
    return (size_t)nnew << TD_PAGE_SHIFT;
}

/* s, partly used (h->lock held, on h's thread), is about to become h's
   current slab again: puts the objects of its parked pages back on the
   owner list and makes its frees fast again. Without this every free into
   a slab that was ever parked would take the slow path for as long as the
   slab lives, and an idle thread that wakes up would not get its fast path
   back. Linking writes to every parked page, so those pages come back into
   use now (at most the slab's size, once); what the owner leaves unused
   is parked again when it is idle. */
static void slab_reclaim(heap_t *h, span_t *s)
{
    unpark_head(s, s->free, true);
    s->detached = 0;   /* the owner takes it itself: none of its pops is in flight */
    if (s->nparked == 0)
        return;
    size_t size = td_slab_obj_size(s);
    uint32_t n = s->nobjs;   /* <= PARK_MAX_OBJS: it was parked */
    uint64_t objs[PARK_MAX_OBJS / 64];
    memset(objs, 0, (n + 63) / 64 * sizeof objs[0]);
    for (size_t pg = 0; pg < s->npages; pg++) {
        if (!page_parked(s, pg))
            continue;
        /* Every object overlapping a parked page was parked with it. */
        size_t lo = pg << TD_PAGE_SHIFT, first = lo / size, last = (lo + TD_PAGE - 1) / size;
        if (last >= n)
            last = n - 1;
        for (size_t i = first; i <= last; i++)
            objs[i >> 6] |= (uint64_t)1 << (i & 63);
    }
    void *head = s->free;
    for (size_t i = n; i-- > 0;) {   /* linked in address order */
        if (!bit_set(objs, i))
            continue;
        void *o = (char *)s->start + i * size;
        td_slab_mark_free(o);
        *(void **)o = head;
        head = o;
    }
    s->free = head;
    /* Parked remote frees not yet taken off the count: on the list now. */
    s->used -= (int32_t)s->parked_remote;
    s->parked_remote = 0;
    for (int w = 0; w < 3; w++)
        __atomic_store_n(&s->parked[w], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->nparked, 0, __ATOMIC_RELAXED);
    s->park_memo = 0;
    /* Only h's thread makes a slab h's (td_heap_free relies on it); its
       geometry never changed. */
    __atomic_store_n(&s->fast_heap, h, __ATOMIC_RELAXED);
}

/* Takes one slab off h's notify stack. h->lock held: the only other
   takers (the owner's collect) hold it too, so pushes are the only race
   and a CAS pop has no ABA. */
static span_t *notify_pop(heap_t *h)
{
    span_t *s = __atomic_load_n(&h->notify, __ATOMIC_ACQUIRE);
    while (s != NULL && !__atomic_compare_exchange_n(&h->notify, &s, s->notify_next, true,
                                                     __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
        ;
    return s;
}

static void notify_splice(heap_t *h, span_t *first, span_t *last)
{
    span_t *old = __atomic_load_n(&h->notify, __ATOMIC_RELAXED);
    do {
        last->notify_next = old;
    } while (!__atomic_compare_exchange_n(&h->notify, &old, first, true,
                                          __ATOMIC_RELEASE, __ATOMIC_RELAXED));
}

#define SWEEP_ROUND 64   /* slabs examined per hold of a heap lock */

/* park_memo of a listed slab's heads as they are now (the owner pushes
   onto free without the lock). */
static inline uint32_t list_memo(const span_t *s)
{
    return park_memo(__atomic_load_n(&s->free, __ATOMIC_RELAXED),
                     __atomic_load_n(&s->remote, __ATOMIC_RELAXED));
}

/* What a look at a current slab remembers: its owner list and count. */
static inline uint32_t cur_memo(const span_t *s)
{
    return park_memo(__atomic_load_n(&s->free, __ATOMIC_RELAXED),
                     0x9e37u ^ (uint32_t)__atomic_load_n(&s->used, __ATOMIC_RELAXED));
}

/* An idle thread's current slabs (h->lock held, once per pass): one whose
   list and count did not change since the previous pass looked, in a heap
   idle for park_after and while this sweep still parks, is detached: it
   becomes a partly used slab at the head of the partial list, which the
   parking below can unback, and the owner's next malloc of that class
   takes it back (heap_refill, slab_reclaim). Only slabs with at least two pages' worth of touched
   objects not out are worth it.
   The owner's malloc and free reach a current slab without a lock, so the
   sweep empties the slots and clears fast_heap, then makes every thread
   of the process pass a full barrier (td_os_membarrier): an operation of
   the owner's that started after that barrier sees the empty slot or the
   cleared fast_heap, one that ended before it is visible, and so at most
   one pop or push, the one under way at the barrier, can still move the
   slab's head, once. Until the owner's next refill proves it finished
   (pop_may_be_pending), parking keeps the head and its successor
   resident and linked as they are and walks only below them, and the
   sweep never gives the slab back as dead. Without membarrier nothing is
   detached. An empty current slab is left alone (it cannot be given back
   while a pop may be in flight; the owner sheds it). Returns true if a
   later pass may detach something. */
static bool look_at_cur(heap_t *h, bool idle, bool park)
{
    bool pending = false, any = false;
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        span_t *s = h->cur[c];
        if (s == &td_span_empty)
            continue;
        int32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
        /* Touched bytes not out: whole pages of them may be parked. Remote
           frees wait on the list, unannounced, still counted in used
           (slab.h, TD_RL_WANT): they are not out (test release/park
           t_park_cur_remote). */
        int32_t live = used - (int32_t)td_rl_count(__atomic_load_n(&s->remote, __ATOMIC_RELAXED));
        size_t touched = (size_t)(td_slab_bump(s) - (char *)s->start);
        size_t out = live > 0 ? (size_t)live * td_slab_obj_size(s) : 0;
        if (used <= 0 || touched < out + 2 * TD_PAGE)
            continue;
        uint32_t look = cur_memo(s);
        if (look != s->park_memo) {
            s->park_memo = look;   /* unused in a current slab otherwise */
            pending |= idle;
            continue;
        }
        if (!idle || !park || !td_os_membarrier_ready())
            continue;
        heap_set_cur_as(h, c, &td_span_empty, true);
        __atomic_store_n(&s->fast_heap, NULL, __ATOMIC_RELAXED);
        s->detached = (uint8_t)(1 + h->refills % 255);
        s->park_memo = 0;
        partial_push_head(h, s);   /* the owner's next refill takes it */
        any = true;
    }
    /* On failure pop_may_be_pending slabs are not parked (slab_park). */
    if (any)
        (void)td_os_membarrier();
    return pending;
}

/* Parking stops once *unbacked reaches park_budget or the deadline
   (td_os_now_ns(); 0: none) has passed; past it, a call that has parked
   nothing yet may still walk PARK_GRACE_WALKS slabs, so that a call with a
   tiny budget makes progress and one that finds nothing stays bounded. */
static bool park_done(const size_t *unbacked, size_t park_budget, uint64_t deadline)
{
    return *unbacked >= park_budget ||
           (deadline != 0 && (*unbacked != 0 || sweep_walks >= PARK_GRACE_WALKS) &&
            td_os_now_ns() >= deadline);
}

static bool heap_sweep_one(heap_t *h, uint32_t older_than, uint32_t park_after,
                           size_t park_budget, uint64_t deadline,
                           size_t *released, size_t *unbacked)
{
    if (__atomic_load_n(&h->pooled, __ATOMIC_RELAXED) &&
        __atomic_load_n(&h->notify, __ATOMIC_RELAXED) != NULL)
        heap_collect_pooled(h);   /* no owner: collect as the owner would */
    if (!td_trylock(&h->lock))
        return true;
    park_own = h == td_tls_heap;
    park_own_flush_bytes = td_release_batch_pages(deadline) << TD_PAGE_SHIFT;
    /* Before the walk below: a remote free after this sets it again, and
       one before it is on a list the walk reads (acquire: the push came
       before the pusher's store). The walk sets it again if it leaves
       remote frees behind (remote_left). */
    bool remote_left = false;
    if (__atomic_load_n(&h->remote_seen, __ATOMIC_RELAXED))
        (void)__atomic_exchange_n(&h->remote_seen, 0, __ATOMIC_ACQ_REL);
    uint32_t now = td_os_now_ms();
    uint32_t stamp = __atomic_load_n(&h->notify_stamp, __ATOMIC_RELAXED);
    bool pending = false;
    if (h->refills != h->swept_refills) {
        h->swept_refills = h->refills;
        h->active_stamp = now;
    }
    /* Parking costs the owner page faults and slab capacity: only in
       heaps idle for the decay time, or when the caller asks for all. */
    bool idle = td_ms_since(h->active_stamp, now) >= park_after;
    bool park = idle && !park_done(unbacked, park_budget, deadline);
    span_t *first = NULL, *last = NULL;
    for (int round = 1;; round++) {
        if (yielding()) {
            pending = true;   /* the rest stays on the stack for later */
            break;
        }
        span_t *s = notify_pop(h);
        if (s == NULL)
            break;
        bool yield = round % SWEEP_ROUND == 0;
        uint64_t seen = s->swept_remote;
        if ((s->state == TD_SLAB_FULL || s->state == TD_SLAB_PARTIAL) && slab_dead(s)) {
            if (s->state == TD_SLAB_PARTIAL)
                partial_remove(h, s);
            __atomic_store_n(&s->remote, 0, __ATOMIC_RELAXED);
            *released += s->npages << TD_PAGE_SHIFT;
            /* Unused since about the first remote free of the batch. */
            slab_release_at(s, stamp);
        } else {
            /* Frees still coming in: worth another look later. A quiet
               slab is left to its owner or to a later kick. */
            if (s->swept_remote != seen)
                pending = true;
            if (park && (s->state == TD_SLAB_FULL || s->state == TD_SLAB_PARTIAL)) {
                size_t got = slab_park(s);
                *unbacked += got;
                yield |= park_batch_full();
                if (got != 0 && park_done(unbacked, park_budget, deadline))
                    park = false;
            }
            s->notify_next = NULL;
            if (last == NULL)
                first = s;
            else
                last->notify_next = s;
            last = s;
        }
        if (yield) {
            /* Let the owner in: at most one batch of parked pages or one
               round of checks between its chances. The slabs kept aside
               are not lost to it: with remote frees pending, it cannot
               empty them. */
            park_flush();
            td_unlock(&h->lock);
            td_lock(&h->lock);
        }
    }
    if (first != NULL)
        notify_splice(h, first, last);
    if (park && yielding()) {
        park = false;
        pending = true;
    }
    if (park_after != UINT32_MAX)
        pending |= look_at_cur(h, idle, park);
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        unsigned n = 0;
        if (yielding()) {
            pending = true;   /* a waiting caller sweeps this heap itself */
            remote_left = true;   /* not looked at */
            break;
        }
    restart:
        for (span_t *s = h->partial[c], *next; s != NULL; s = next) {
            next = s->next;
            /* Remote frees into a partly used slab are not announced
               (slab.h, TD_RL_WANT): here is where a slab they emptied
               is found if its owner does not take it first. */
            uint64_t rw = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
            if (td_rl_count(rw) != 0 && !(rw & TD_RL_NOTIFIED)) {
                uint64_t seen = s->swept_remote;
                if (slab_dead(s)) {
                    partial_remove(h, s);
                    __atomic_store_n(&s->remote, 0, __ATOMIC_RELAXED);
                    *released += s->npages << TD_PAGE_SHIFT;
                    slab_release_at(s, now);
                    continue;
                }
                /* Left for its owner: keep watching it, as the notify
                   stack's slabs are watched (td_heap_sweep_pending). */
                remote_left = true;
                if (s->swept_remote != seen)
                    pending = true;   /* frees still coming in */
            }
            if (!park) {
                /* Not idle long enough yet: stay awake to look again if
                   there is anything new for parking. */
                if (s->park_memo != list_memo(s))
                    pending = true;
                continue;
            }
            if (s->park_memo == list_memo(s))
                continue;   /* looked at already, nothing new */
            if (yielding()) {
                park = false;
                pending = true;
                remote_left = true;   /* the rest of the list not looked at */
                break;
            }
            if (next != NULL && next->park_memo != list_memo(next) &&
                park_may_pay(next, __atomic_load_n(&next->used, __ATOMIC_RELAXED),
                             __atomic_load_n(&next->remote, __ATOMIC_RELAXED)))
                prefetch_marks(next);   /* looked at next */
            size_t got = slab_park(s);
            *unbacked += got;
            if (got != 0 && park_done(unbacked, park_budget, deadline)) {
                park = false;
                pending = true;   /* more may be left for a later pass */
                remote_left = true;
                break;
            }
            if (park_own) {
                if (park_batch_full())
                    park_flush();   /* nobody to let in: keep going */
                continue;
            }
            if (park_batch_full() || ++n % SWEEP_ROUND == 0) {
                /* The owner may change the list meanwhile: start the class
                   over; slabs already looked at are skipped by their memo. */
                park_flush();
                td_unlock(&h->lock);
                td_lock(&h->lock);
                goto restart;
            }
        }
    }
    if (remote_left)
        __atomic_store_n(&h->remote_seen, 1, __ATOMIC_RELAXED);
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        span_t *s = h->spare[c];
        if (s == NULL)
            continue;
        if (older_than == 0 || td_ms_since(s->stamp, now) >= older_than) {
            h->spare[c] = NULL;
            *released += s->npages << TD_PAGE_SHIFT;
            slab_release_at(s, s->stamp);
        } else {
            pending = true;
        }
    }
    park_flush();
    td_unlock(&h->lock);
    return pending;
}

bool td_heap_sweep_pending(void)
{
    for (heap_t *h = __atomic_load_n(&heap_all, __ATOMIC_ACQUIRE); h != NULL; h = h->all_next) {
        if (__atomic_load_n(&h->notify, __ATOMIC_SEQ_CST) != NULL ||
            __atomic_load_n(&h->remote_seen, __ATOMIC_RELAXED))
            return true;
        for (unsigned c = 0; c < TD_NCLASSES; c++)
            if (__atomic_load_n(&h->spare[c], __ATOMIC_RELAXED) != NULL)
                return true;
    }
    return false;
}

bool td_heap_sweep(uint32_t older_than, uint32_t park_after, size_t park_budget,
                   uint64_t deadline, const int *yield, size_t *released, size_t *unbacked)
{
    bool pending = false;
    sweep_walks = 0;
    sweep_yield = yield;
    for (heap_t *h = __atomic_load_n(&heap_all, __ATOMIC_ACQUIRE); h != NULL; h = h->all_next) {
        if (yielding())
            return true;   /* the waiting caller sweeps them itself */
        pending |= heap_sweep_one(h, older_than, park_after, park_budget, deadline,
                                  released, unbacked);
    }
    return pending;
}

/* ---- fork ----------------------------------------------------------- */
/* Locks in rank order; the child resets them. Heaps of threads that do not
   exist in the child stay attached to nobody and are not reused: one of
   them may have been mid-update when fork copied it. */

static void fork_prepare(void)
{
    if (td_heap_fork_hook)
        td_heap_fork_hook(0);   /* the release layer's sweep lock: rank 0 */
    td_lock(&init_lock);
    td_lock(&pool_lock);
    td_pageheap_fork_prepare();
    td_pagemap_fork_prepare();
}

static void fork_parent(void)
{
    td_pagemap_fork_parent();
    td_pageheap_fork_parent();
    td_unlock(&pool_lock);
    td_unlock(&init_lock);
    if (td_heap_fork_hook)
        td_heap_fork_hook(1);
}

static void fork_child(void)
{
    td_pagemap_fork_child();
    td_pageheap_fork_child();
    td_lock_reset(&pool_lock);
    td_lock_reset(&init_lock);
    if (td_heap_fork_hook)
        td_heap_fork_hook(2);
}

/* ---- large and huge ------------------------------------------------- */

static void *large_alloc(size_t n, size_t align, bool zero)
{
    if (n >= TD_HUGE_MIN || align > TD_HUGE_MIN) {
        span_t *s = td_pageheap_alloc_huge(n, align);
        return s ? (void *)s->start : NULL;   /* fresh mapping: zero */
    }
    size_t np = td_align_up(n ? n : 1, TD_PAGE) >> TD_PAGE_SHIFT;
    size_t ap = align > TD_PAGE ? align >> TD_PAGE_SHIFT : 1;
    span_t *s = td_pageheap_alloc(np, ap, TD_SPAN_LARGE);
    if (s == NULL)
        return NULL;
    s->bytes = np << TD_PAGE_SHIFT;
    /* Clean runs read as zero unless released with MADV_FREE. */
    if (zero && (s->ndirty != 0 || !td_os_unback_zeroes()))
        memset((void *)s->start, 0, s->bytes);
    return (void *)s->start;
}

static void large_free(span_t *s)
{
    td_pageheap_free(s, false, td_os_now_ms());   /* the decay gives it back */
    kick();
}

/* ---- slow paths ----------------------------------------------------- */

static void *fail_nomem(void)
{
    errno = ENOMEM;
    return NULL;
}

void *td_heap_malloc_slow(size_t n)
{
    safepoint(false);
    heap_t *h = td_tls_heap;
    if (TIDE_UNLIKELY(h == &td_heap_empty)) {
        h = heap_attach();
        if (h == NULL)
            return fail_nomem();
    }
    if (n > TD_SMALL_MAX) {
        if (n > PTRDIFF_MAX)
            return fail_nomem();
        void *p = large_alloc(n, TD_PAGE, false);
        return p ? p : fail_nomem();
    }
    unsigned c = td_sizeclass_of(n);
    void *p = td_slab_pop(h->cur[c]);
    if (p == NULL)
        p = heap_refill(h, c);
    return p ? p : fail_nomem();
}

static void *malloc_class(unsigned c)
{
    heap_t *h = td_tls_heap;
    void *p = td_slab_pop(__atomic_load_n(&h->cur[c], __ATOMIC_RELAXED));
    if (TIDE_LIKELY(p != NULL))
        return p;
    if (h == &td_heap_empty && (h = heap_attach()) == NULL)
        return fail_nomem();
    p = td_slab_pop(__atomic_load_n(&h->cur[c], __ATOMIC_RELAXED));
    if (p == NULL)
        p = heap_refill(h, c);
    return p ? p : fail_nomem();
}

void td_heap_bad_free(void *p, span_t *s, const char *who)
{
    /* Against the capacity, not the carved count: after a slab's pages
       became a new slab of the same class, a double free of an old object
       past the new bump still finds its mark (the pages stay mapped). */
    if (s != NULL && s->kind == TD_SPAN_SLAB && td_slab_index(s, p) < s->nobjs &&
        td_slab_marked_free(p))
        td_fatal("%s: double free of %p", who, p);
    if (s != NULL && (s->kind == TD_SPAN_FREE || s->kind == TD_SPAN_TAKEN) &&
        s->start == (uintptr_t)p)
        td_fatal("%s: double free of %p", who, p);
    if (s != NULL && s->kind == TD_SPAN_SLAB && td_slab_index(s, p) < s->nobjs)
        td_fatal("%s: invalid pointer %p: never allocated", who, p);   /* past the bump */
    if (s != NULL && s->kind != TD_SPAN_FREE && s->kind != TD_SPAN_TAKEN)
        td_fatal("%s: invalid pointer %p: not the start of a block", who, p);
    td_fatal("%s: invalid pointer %p: not allocated by tidemalloc (or already freed)", who, p);
}

void td_heap_free_slow(void *p, const char *who)
{
    if (p == NULL)
        return;
    span_t *s = td_pagemap_get(p);
    if (TIDE_UNLIKELY(s == NULL))
        td_heap_bad_free(p, s, who);
    switch (s->kind) {
    case TD_SPAN_SLAB:
        if (TIDE_UNLIKELY(!td_slab_is_object(s, p)))
            td_heap_bad_free(p, s, who);
        if (s->heap == td_tls_heap && s->fast_heap == s->heap) {
            /* Ours, but the fast path's hint was another span. */
            td_heap_free_local(s->heap, s, p, who);
            return;
        }
        /* Owned by another heap (or by a pooled one), or a slab with
           parked pages: a remote free. */
        if (TIDE_UNLIKELY(td_slab_marked_free(p)))
            td_heap_bad_free(p, s, who);
        if (TIDE_UNLIKELY(__atomic_load_n(&s->nparked, __ATOMIC_RELAXED) != 0) &&
            page_parked(s, ((uintptr_t)p - s->start) >> TD_PAGE_SHIFT))
            td_fatal("%s: double free of %p", who, p);   /* it was parked: free */
        heap_t *owner = s->heap;   /* before the push: s may be given back after it */
        int push = td_slab_push_remote(s, p);
        if (push == TD_PUSH_FIRST) {
            /* Its owner collects it when it takes the slab; a sweep finds
               it if the owner never does (heap_sweep_one). Skipping the
               store when the flag is set relies on the push's locked CAS
               ordering the push before this load (x86-64); a weakly
               ordered port needs a full fence here. */
            if (!__atomic_load_n(&owner->remote_seen, __ATOMIC_RELAXED))
                __atomic_store_n(&owner->remote_seen, 1, __ATOMIC_RELEASE);
            kick();
        } else if (push == TD_PUSH_NOTIFY) {
            heap_notify(owner, s);
            /* s may be given back by the collect below: not touched after. */
            __atomic_thread_fence(__ATOMIC_SEQ_CST);   /* see heap_thread_exit */
            if (TIDE_UNLIKELY(__atomic_load_n(&owner->pooled, __ATOMIC_RELAXED)))
                heap_collect_pooled(owner);
        }
        return;
    case TD_SPAN_LARGE:
        if (TIDE_UNLIKELY(s->start != (uintptr_t)p))
            td_heap_bad_free(p, s, who);
        /* Before the block is free: starting the background thread may
           allocate, and must not be handed this block's pages, or a
           double free right after would free someone else's object. */
        safepoint(true);
        large_free(s);
        return;
    case TD_SPAN_HUGE:
        if (TIDE_UNLIKELY(s->start != (uintptr_t)p))
            td_heap_bad_free(p, s, who);
        td_pageheap_free_huge(s);
        return;
    default:
        td_heap_bad_free(p, s, who);
    }
}

size_t td_heap_usable_size(const void *p, const char *who)
{
    span_t *s = td_pagemap_get(p);
    if (s != NULL) {
        if (s->kind == TD_SPAN_SLAB && td_slab_is_object(s, p))
            return td_slab_obj_size(s);
        if (s->kind == TD_SPAN_LARGE && s->start == (uintptr_t)p)
            return s->npages << TD_PAGE_SHIFT;
        if (s->kind == TD_SPAN_HUGE && s->start == (uintptr_t)p)
            return s->bytes;
    }
    td_heap_bad_free((void *)p, s, who);
}

void *td_heap_calloc(size_t n)
{
    if (n <= TD_SMALL_MAX) {
        void *p = td_heap_malloc(n);
        if (p != NULL)
            memset(p, 0, n);
        return p;
    }
    if (TIDE_UNLIKELY(td_tls_heap == &td_heap_empty))
        td_global_init();
    if (n > PTRDIFF_MAX)
        return fail_nomem();
    void *p = large_alloc(n, TD_PAGE, true);
    return p ? p : fail_nomem();
}

void *td_heap_malloc_aligned(size_t align, size_t n)
{
    if (align <= 16)
        return td_heap_malloc(n);
    if (n > PTRDIFF_MAX || align > ((size_t)1 << (TD_VA_BITS - 2)))
        return fail_nomem();
    if (align <= TD_PAGE) {
        unsigned c = td_sizeclass_aligned(n, align);
        if (c < TD_NCLASSES) {
            if (TIDE_UNLIKELY(td_tls_heap == &td_heap_empty))
                td_global_init();   /* class tables before the lookup */
            c = td_sizeclass_aligned(n, align);
            return malloc_class(c);
        }
    }
    td_global_init();
    void *p = large_alloc(n, align, false);
    return p ? p : fail_nomem();
}

static void *realloc_move(void *p, size_t old, size_t n, const char *who)
{
    void *q = td_heap_malloc(n);
    if (q == NULL)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    td_heap_free(p, who);
    return q;
}

void *td_heap_realloc(void *p, size_t n)
{
    static const char who[] = "realloc()";
    if (p == NULL)
        return td_heap_malloc(n);
    if (n == 0) {   /* glibc: frees and returns NULL */
        td_heap_free(p, who);
        return NULL;
    }
    span_t *s = td_pagemap_get(p);
    if (TIDE_UNLIKELY(s == NULL))
        td_heap_bad_free(p, s, who);
    if (n > PTRDIFF_MAX)
        return fail_nomem();
    switch (s->kind) {
    case TD_SPAN_SLAB: {
        if (TIDE_UNLIKELY(!td_slab_is_object(s, p) || td_slab_marked_free(p)))
            td_heap_bad_free(p, s, who);
        size_t old = td_slab_obj_size(s);
        /* Stay while it fits and would not fit a class half the size. */
        if (n <= old && (n > old / 2 || old <= 32))
            return p;
        return realloc_move(p, old, n, who);
    }
    case TD_SPAN_LARGE: {
        if (TIDE_UNLIKELY(s->start != (uintptr_t)p))
            td_heap_bad_free(p, s, who);
        size_t old = s->npages << TD_PAGE_SHIFT;
        if (n > TD_SMALL_MAX && n < TD_HUGE_MIN) {
            size_t np = td_align_up(n, TD_PAGE) >> TD_PAGE_SHIFT;
            if (np <= s->npages && np * 2 > s->npages)
                return p;    /* shrinking a little: keep the pages */
            bool shrink = np < s->npages;
            if (td_pageheap_resize(s, np)) {
                s->bytes = np << TD_PAGE_SHIFT;
                if (shrink)
                    kick();
                return p;
            }
        }
        return realloc_move(p, old, n, who);
    }
    case TD_SPAN_HUGE: {
        if (TIDE_UNLIKELY(s->start != (uintptr_t)p))
            td_heap_bad_free(p, s, who);
        if (n >= TD_HUGE_MIN / 2 && td_pageheap_remap_huge(s, n))
            return (void *)s->start;   /* mremap: no copy */
        return realloc_move(p, s->bytes, n, who);
    }
    default:
        td_heap_bad_free(p, s, who);
    }
}

/* ---- statistics and checks ------------------------------------------ */

static void stats_span(span_t *s, void *arg)
{
    td_heap_stats_t *st = arg;
    if (s->kind == TD_SPAN_SLAB) {
        /* Racy read of an owner-written count: a snapshot, not a sum. */
        int32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED) & ~TD_SLAB_FULL_BIT;
        size_t bytes = s->npages << TD_PAGE_SHIFT;
        size_t inuse = (size_t)used * td_slab_obj_size(s);
        if (inuse > bytes)
            inuse = bytes;
        st->slab_used_bytes += inuse;
        st->slab_free_bytes += bytes - inuse;
        st->nslabs++;
    } else if (s->kind == TD_SPAN_LARGE) {
        st->large_bytes += s->npages << TD_PAGE_SHIFT;
        st->nlarge++;
    }
}

void td_heap_stats(td_heap_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (!__atomic_load_n(&init_done, __ATOMIC_ACQUIRE))
        return;
    td_pageheap_walk(stats_span, st);
    td_lock(&pool_lock);
    st->heaps = heap_count;
    st->pooled_heaps = pool_count;
    td_unlock(&pool_lock);
    st->park_scanned = __atomic_load_n(&park_scanned, __ATOMIC_RELAXED);
}

void td_heap_validate(void)
{
    heap_t *h = td_tls_heap;
    if (h == &td_heap_empty)
        return;
    td_lock(&h->lock);   /* a sweep may be detaching a current slab */
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        span_t *s = h->cur[c];
        if (s != &td_span_empty) {
            TIDE_CHECK(s->state == TD_SLAB_CUR && s->sizeclass == c && s->heap == h);
            TIDE_CHECK(!(s->used & TD_SLAB_FULL_BIT));
        }
        span_t *last = NULL;
        for (span_t *p = h->partial[c]; p; last = p, p = p->next) {
            TIDE_CHECK(p->prev != NULL && (last == NULL || p->prev == last) && "partial links");
            TIDE_CHECK(p->state == TD_SLAB_PARTIAL && p->sizeclass == c && p->heap == h);
            TIDE_CHECK(p->used > 0 && !(p->used & TD_SLAB_FULL_BIT)
                       && "partial slab empty or full");
        }
        if (last != NULL)
            TIDE_CHECK(h->partial[c]->prev == last && "partial head's prev is not the tail");
        if (h->spare[c])
            TIDE_CHECK(h->spare[c]->used == 0 && h->spare[c]->state == TD_SLAB_SPARE);
    }
    for (size_t i = 0; i < TD_DIRECT_LEN; i++)
        TIDE_CHECK(h->direct[i] == h->cur[td_sizeclass_of(i)] && "direct[] out of step");
    td_unlock(&h->lock);
}
