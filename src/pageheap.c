/*
 * pageheap.c — TLSF over page runs (see pageheap.h).
 */
#include "pageheap.h"

#include <string.h>

#define SL_BITS  3
#define SL_COUNT (1u << SL_BITS)
#define FL_COUNT 48

typedef struct chunk_s {
    uintptr_t start;
    size_t npages;
    struct chunk_s *next;
} chunk_t;

static struct {
    td_lock_t lock;
    /* Two sets of bins, [0] clean runs and [1] dirty ones, so that a new
       span reuses memory that is still resident before it touches clean
       pages (fresh, or given back): otherwise a program whose working set
       moves around, but never grows, slowly touches every page of its
       chunks until the decay gives them back. */
    uint64_t fl_bitmap[2];              /* bit f: some sl bin of f non-empty */
    uint32_t sl_bitmap[2][FL_COUNT];    /* bit s: bins[f][s] non-empty */
    span_t *bins[2][FL_COUNT][SL_COUNT];
    span_t *dirty, *dirty_tail;         /* FREE runs with ndirty > 0, newest first */
    chunk_t *chunks;
    uint32_t nchunks;
    size_t mapped_pages, free_pages, free_dirty_pages, slab_pages, large_pages;
    size_t huge_bytes, huge_count, released_bytes;
    size_t tables_released;             /* pagemap bytes given back (release_tables) */
    size_t table_runs;                  /* binned runs release_tables would take ... */
    span_t *table_list;                 /* ... linked through dprev/dnext (clean runs only) */
    size_t taken_pages;                 /* in TAKEN runs: free, out of the bins for a while */
} ph;

static inline unsigned log2_floor(size_t n) { return 63u - (unsigned)__builtin_clzll(n); }

/* Bin of a run of n pages: below SL_COUNT pages one bin per length. */
static void mapping(size_t n, unsigned *fl, unsigned *sl)
{
    if (n < SL_COUNT) {
        *fl = 0;
        *sl = (unsigned)n;
        return;
    }
    unsigned l = log2_floor(n);
    *fl = l - SL_BITS + 1;
    *sl = (unsigned)(n >> (l - SL_BITS)) & (SL_COUNT - 1);
}

/* Smallest bin whose every run holds n pages ("good fit": O(1)). */
static bool mapping_search(size_t n, unsigned *fl, unsigned *sl)
{
    if (n >= SL_COUNT)
        n += ((size_t)1 << (log2_floor(n) - SL_BITS)) - 1;
    mapping(n, fl, sl);
    return *fl < FL_COUNT;
}

/* The dirty list is kept in stamp order, newest at the head, so the decay
   takes the oldest from the tail in O(1). A run usually goes in at the
   head (freed now); one that keeps an older stamp (a split remainder) goes
   to the tail if it is the oldest, else to the head, where it waits at
   most one decay time longer. */
static inline bool stamp_older(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }

static void dirty_insert(span_t *s)
{
    span_t *h = ph.dirty;
    if (h != NULL && stamp_older(s->stamp, h->stamp) && !stamp_older(ph.dirty_tail->stamp, s->stamp)) {
        s->dnext = NULL;
        s->dprev = ph.dirty_tail;
        ph.dirty_tail->dnext = s;
        ph.dirty_tail = s;
    } else {
        s->dprev = NULL;
        s->dnext = h;
        if (h)
            h->dprev = s;
        else
            ph.dirty_tail = s;
        ph.dirty = s;
    }
    ph.free_dirty_pages += s->ndirty;
}

/* Unlinks s from a list through dprev/dnext (the dirty list, or the
   table-run list: a run is on at most one), given its head and, if the
   list keeps one, its tail. */
static void dlink_remove(span_t *s, span_t **head, span_t **tail)
{
    if (s->dprev)
        s->dprev->dnext = s->dnext;
    else
        *head = s->dnext;
    if (s->dnext)
        s->dnext->dprev = s->dprev;
    else if (tail != NULL)
        *tail = s->dprev;
    s->dprev = s->dnext = NULL;
}

static void dirty_remove(span_t *s)
{
    dlink_remove(s, &ph.dirty, &ph.dirty_tail);
    ph.free_dirty_pages -= s->ndirty;
}

/* Which set of bins s belongs in; fixed while it is binned (a run changes
   state only out of the bins). */
static inline unsigned bin_set(const span_t *s) { return s->ndirty != 0; }

/* A clean run that release_tables would take: entries written since it
   last looked, and a whole page of them inside. Fixed while binned. */
static inline bool table_run(const span_t *s)
{
    return s->tables && s->ndirty == 0 && td_pagemap_has_interior_page(s->start, s->npages);
}

static void bin_insert(span_t *s)
{
    unsigned fl, sl, k = bin_set(s);
    mapping(s->npages, &fl, &sl);
    TIDE_CHECK(fl < FL_COUNT);
    s->kind = TD_SPAN_FREE;
    s->prev = NULL;
    s->next = ph.bins[k][fl][sl];
    if (s->next)
        s->next->prev = s;
    ph.bins[k][fl][sl] = s;
    ph.sl_bitmap[k][fl] |= 1u << sl;
    ph.fl_bitmap[k] |= 1ull << fl;
    ph.free_pages += s->npages;
    if (s->ndirty)
        dirty_insert(s);
    if (table_run(s)) {
        /* Clean: the dirty list's links are free for this one. */
        s->dprev = NULL;
        s->dnext = ph.table_list;
        if (s->dnext)
            s->dnext->dprev = s;
        ph.table_list = s;
        ph.table_runs++;
    }
}

static void bin_remove(span_t *s)
{
    unsigned fl, sl, k = bin_set(s);
    mapping(s->npages, &fl, &sl);
    if (s->prev)
        s->prev->next = s->next;
    else
        ph.bins[k][fl][sl] = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (ph.bins[k][fl][sl] == NULL) {
        ph.sl_bitmap[k][fl] &= ~(1u << sl);
        if (ph.sl_bitmap[k][fl] == 0)
            ph.fl_bitmap[k] &= ~(1ull << fl);
    }
    s->prev = s->next = NULL;
    ph.free_pages -= s->npages;
    if (s->ndirty)
        dirty_remove(s);
    if (table_run(s)) {
        dlink_remove(s, &ph.table_list, NULL);
        ph.table_runs--;
    }
}

static span_t *bin_find_in(unsigned k, unsigned fl, unsigned sl, size_t n)
{
    uint32_t sm = ph.sl_bitmap[k][fl] & (~0u << sl);
    if (sm == 0) {
        uint64_t fm = (fl + 1 < 64) ? ph.fl_bitmap[k] & (~0ull << (fl + 1)) : 0;
        if (fm == 0)
            return NULL;
        fl = (unsigned)__builtin_ctzll(fm);
        sm = ph.sl_bitmap[k][fl];
    }
    sl = (unsigned)__builtin_ctz(sm);
    span_t *s = ph.bins[k][fl][sl];
    TIDE_ASSERT(s != NULL && s->npages >= n);
    return s;
}

/* A run of at least n pages: a dirty one if any fits, else a clean one. */
static span_t *bin_find(size_t n)
{
    unsigned fl, sl;
    if (!mapping_search(n, &fl, &sl))
        return NULL;
    span_t *s = bin_find_in(1, fl, sl, n);
    return s != NULL ? s : bin_find_in(0, fl, sl, n);
}

static inline uintptr_t last_page(const span_t *s)
{
    return s->start + ((s->npages - 1) << TD_PAGE_SHIFT);
}

static void mark_ends(span_t *s)
{
    td_pagemap_set(s->start, s);
    td_pagemap_set(last_page(s), s);
}

/* Splits s (out of the bins) after n pages; returns the tail as a new
   descriptor, not yet binned, or NULL when no descriptor could be had.
   Both parts keep s's state (all dirty or all clean). */
static span_t *split(span_t *s, size_t n)
{
    TIDE_ASSERT(n > 0 && n < s->npages);
    span_t *t = td_span_new();
    if (t == NULL)
        return NULL;
    t->start = s->start + (n << TD_PAGE_SHIFT);
    t->npages = s->npages - n;
    t->chunk = s->chunk;
    t->ndirty = s->ndirty ? t->npages : 0;
    s->ndirty = s->ndirty ? n : 0;
    t->stamp = s->stamp;
    t->tables = s->tables;
    s->npages = n;
    return t;
}

/* Two free runs may merge when they are in the same chunk and in the same
   state: clean (unbacked, reads zero) or dirty (may be resident). Keeping
   the states apart keeps "dirty" exact, so release always makes progress
   and calloc never trusts a page that was only partly released. */
static inline bool mergeable(const span_t *a, const span_t *b)
{
    return a->kind == TD_SPAN_FREE && a->chunk == b->chunk &&
           (a->ndirty == 0) == (b->ndirty == 0);
}

/* Coalesces the free run s with its mergeable neighbours and bins it.
   Requires: lock held; s not in the bins; s's old pagemap entries
   other than its first/last page already cleared. */
static void free_locked(span_t *s)
{
    if (s->start >= TD_PAGE) {
        span_t *p = td_pagemap_get((void *)(s->start - TD_PAGE));
        if (p != NULL && mergeable(p, s)) {
            TIDE_ASSERT(last_page(p) == s->start - TD_PAGE);
            bin_remove(p);
            td_pagemap_set(last_page(p), NULL);
            td_pagemap_set(s->start, NULL);
            s->start = p->start;
            s->npages += p->npages;
            s->ndirty += p->ndirty;
            s->tables |= p->tables;
            if (stamp_older(s->stamp, p->stamp))
                s->stamp = p->stamp;
            td_span_delete(p);
        }
    }
    span_t *n = td_pagemap_get((void *)(s->start + (s->npages << TD_PAGE_SHIFT)));
    if (n != NULL && mergeable(n, s) &&
        n->start == s->start + (s->npages << TD_PAGE_SHIFT)) {
        bin_remove(n);
        td_pagemap_set(last_page(s), NULL);
        td_pagemap_set(n->start, NULL);
        s->npages += n->npages;
        s->ndirty += n->ndirty;
        s->tables |= n->tables;
        if (stamp_older(s->stamp, n->stamp))
            s->stamp = n->stamp;
        td_span_delete(n);
    }
    mark_ends(s);
    bin_insert(s);
}

void td_pageheap_init(void) {}

/* Maps a new chunk and bins it. Called without the lock. */
static bool grow(size_t npages)
{
    size_t huge = td_os_hugepage_size();
    size_t align = huge >= TD_PAGE && huge <= ((size_t)64 << 20) ? huge : TD_PAGE;
    /* Cover the good-fit rounding of bin_find, so the new run is found. */
    size_t bytes = td_align_up((npages + (npages >> SL_BITS) + 1) << TD_PAGE_SHIFT, align);
    if (bytes < TD_CHUNK_BYTES)
        bytes = TD_CHUNK_BYTES;
    void *mem = td_os_map(bytes, align);
    if (mem == NULL)
        return false;
    span_t *s = td_span_new();
    chunk_t *c = td_meta_alloc(sizeof *c);
    if (s == NULL || c == NULL || !td_pagemap_ensure((uintptr_t)mem, bytes)) {
        td_os_unmap(mem, bytes);
        if (s)
            td_span_delete(s);
        return false;
    }
    c->start = (uintptr_t)mem;
    c->npages = bytes >> TD_PAGE_SHIFT;
    s->start = c->start;
    s->npages = c->npages;
    s->ndirty = 0;   /* fresh mapping: reads as zero */
    td_lock(&ph.lock);
    c->next = ph.chunks;
    ph.chunks = c;
    s->chunk = ph.nchunks++;
    ph.mapped_pages += c->npages;
    mark_ends(s);
    bin_insert(s);
    td_unlock(&ph.lock);
    return true;
}

static span_t *alloc_run(size_t npages, size_t align_pages, int kind, size_t npages_dirty);

span_t *td_pageheap_alloc(size_t npages, size_t align_pages, int kind)
{
    return alloc_run(npages, align_pages, kind, 0);
}

span_t *td_pageheap_alloc_slab(size_t npages, size_t npages_dirty)
{
    return alloc_run(npages, 1, TD_SPAN_SLAB, npages_dirty < npages ? npages_dirty : 0);
}

/* npages_dirty (0: none): the length to take instead if a dirty run of
   that many pages is binned (align_pages must then be 1). */
static span_t *alloc_run(size_t npages, size_t align_pages, int kind, size_t npages_dirty)
{
    TIDE_ASSERT(npages > 0 && td_is_pow2(align_pages));
    TIDE_ASSERT(npages_dirty == 0 || align_pages == 1);
    size_t need = npages + align_pages - 1;
    if (need < npages || need > ((size_t)1 << (TD_VA_BITS - TD_PAGE_SHIFT)))
        return NULL;
    td_lock(&ph.lock);
    span_t *s = NULL;
    unsigned fl, sl;
    if (npages_dirty != 0 && mapping_search(npages_dirty, &fl, &sl)
        && (s = bin_find_in(1, fl, sl, npages_dirty)) != NULL)
        npages = need = npages_dirty;
    if (s == NULL)
        s = bin_find(need);
    while (s == NULL) {
        td_unlock(&ph.lock);
        if (!grow(need))
            return NULL;
        td_lock(&ph.lock);
        s = bin_find(need);
    }
    bin_remove(s);
    td_pagemap_set(s->start, NULL);
    td_pagemap_set(last_page(s), NULL);
    uintptr_t amask = (align_pages << TD_PAGE_SHIFT) - 1;
    size_t front = ((((s->start + amask) & ~amask) - s->start) >> TD_PAGE_SHIFT);
    if (front > 0) {
        span_t *t = split(s, front);
        if (t == NULL)
            goto fail;
        mark_ends(s);
        bin_insert(s);
        s = t;
    }
    if (s->npages > npages) {
        span_t *t = split(s, npages);
        if (t == NULL)
            goto fail;
        mark_ends(t);
        bin_insert(t);
    }
    s->kind = (uint8_t)kind;
    mark_ends(s);
    if (kind == TD_SPAN_SLAB)
        ph.slab_pages += s->npages;
    else
        ph.large_pages += s->npages;
    td_unlock(&ph.lock);
    return s;
fail:
    mark_ends(s);
    bin_insert(s);
    td_unlock(&ph.lock);
    return NULL;
}

void td_pageheap_free(span_t *s, bool unbacked, uint32_t stamp)
{
    /* Clear the interior entries a slab had (see pagemap.h invariant);
       nobody else can reach this span any more. */
    if (s->kind == TD_SPAN_SLAB && s->npages > 2)
        td_pagemap_set_range(s->start + TD_PAGE, s->npages - 2, NULL);
    td_lock(&ph.lock);
    if (s->kind == TD_SPAN_SLAB)
        ph.slab_pages -= s->npages;
    else
        ph.large_pages -= s->npages;
    if (unbacked)
        ph.released_bytes += s->npages << TD_PAGE_SHIFT;
    s->ndirty = unbacked ? 0 : s->npages;
    s->stamp = stamp;
    s->tables = 1;   /* its entries were written while it was handed out */
    s->heap = NULL;
    /* Before free_locked may merge s away and the descriptor be reused
       (new start, new geometry): the free fast path, reading s through a
       stale hint, relies on seeing this NULL once it sees any of that
       (heap.h, td_heap_free). */
    s->fast_heap = NULL;
    s->kind = TD_SPAN_FREE;
    free_locked(s);
    td_unlock(&ph.lock);
}

void td_pageheap_free_parked(span_t *s, const uint64_t *parked, uint32_t stamp)
{
    if (s->npages > 2)
        td_pagemap_set_range(s->start + TD_PAGE, s->npages - 2, NULL);
    td_lock(&ph.lock);
    ph.slab_pages -= s->npages;
    s->heap = NULL;
    s->fast_heap = NULL;   /* before any split or merge: see td_pageheap_free */
    s->tables = 1;         /* every page had an entry; the pieces inherit it */
    /* Runs of pages in one state, each freed on its own: parked ones are
       already given back (counted then), the rest are dirty. */
    span_t *cur = s;
    size_t at = 0;   /* page index of cur in the slab */
    while (cur != NULL) {
        bool clean = (parked[at >> 6] >> (at & 63)) & 1;
        size_t run = 1;
        while (run < cur->npages && (((parked[(at + run) >> 6] >> ((at + run) & 63)) & 1) == clean))
            run++;
        span_t *next = NULL;
        if (run < cur->npages) {
            next = split(cur, run);
            if (next == NULL)
                clean = false;   /* no descriptor: all the rest as dirty, released again later */
        }
        cur->ndirty = clean ? 0 : cur->npages;
        cur->stamp = stamp;
        cur->kind = TD_SPAN_FREE;
        free_locked(cur);
        at += run;
        cur = next;
    }
    td_unlock(&ph.lock);
}

bool td_pageheap_resize(span_t *s, size_t npages)
{
    TIDE_ASSERT(s->kind == TD_SPAN_LARGE && npages > 0);
    if (npages == s->npages)
        return true;
    if (npages < s->npages) {
        /* The tail becomes a dirty free run: the decay gives it back. */
        size_t tail_pages = s->npages - npages;
        td_lock(&ph.lock);
        span_t *t = split(s, npages);
        if (t == NULL) {
            td_unlock(&ph.lock);
            return false;
        }
        td_pagemap_set(last_page(t), NULL);   /* was s's old last page */
        mark_ends(s);
        ph.large_pages -= tail_pages;
        t->ndirty = t->npages;
        t->stamp = td_os_now_ms();
        t->tables = 1;   /* s's old last entry was on its pages */
        t->kind = TD_SPAN_FREE;
        free_locked(t);
        td_unlock(&ph.lock);
        return true;
    }
    /* Grow: absorb the free runs that follow, clean or dirty (a bounded
       few, so the call stays O(1)), if together they are long enough. */
    size_t extra = npages - s->npages;
    enum { MAX_RUNS = 8 };
    span_t *runs[MAX_RUNS];
    int nr = 0;
    size_t have = 0;
    td_lock(&ph.lock);
    uintptr_t at = s->start + (s->npages << TD_PAGE_SHIFT);
    while (have < extra && nr < MAX_RUNS) {
        span_t *n = td_pagemap_get((void *)at);
        if (n == NULL || n->kind != TD_SPAN_FREE || n->chunk != s->chunk || n->start != at)
            break;
        runs[nr++] = n;
        have += n->npages;
        at += n->npages << TD_PAGE_SHIFT;
    }
    if (have < extra) {
        td_unlock(&ph.lock);
        return false;
    }
    span_t *last = runs[nr - 1];
    size_t keep = last->npages - (have - extra);   /* pages taken from the last run */
    span_t *tail = NULL;
    if (keep < last->npages) {
        /* Split the last run first, so that failure leaves all unchanged. */
        bin_remove(last);
        td_pagemap_set(last->start, NULL);
        td_pagemap_set(last_page(last), NULL);
        tail = split(last, keep);
        if (tail == NULL) {
            mark_ends(last);
            bin_insert(last);
            td_unlock(&ph.lock);
            return false;
        }
        mark_ends(tail);
        bin_insert(tail);
        mark_ends(last);
        bin_insert(last);
    }
    for (int i = 0; i < nr; i++) {
        bin_remove(runs[i]);
        td_pagemap_set(runs[i]->start, NULL);
        td_pagemap_set(last_page(runs[i]), NULL);
        td_span_delete(runs[i]);
    }
    td_pagemap_set(last_page(s), NULL);
    s->npages = npages;
    mark_ends(s);
    ph.large_pages += extra;
    td_unlock(&ph.lock);
    return true;
}

/* Bins again the nt runs a release took out (TAKEN, pages in all), lock
   held: unbacked (their pages read zero now), or with their entry pages
   given back (tables). They merge with their neighbours as usual. */
static void rebin_taken(span_t **taken, int nt, size_t pages, bool unbacked)
{
    ph.taken_pages -= pages;
    for (int i = 0; i < nt; i++) {
        if (unbacked)
            taken[i]->ndirty = 0;
        else
            taken[i]->tables = 0;
        taken[i]->kind = TD_SPAN_FREE;
        free_locked(taken[i]);
    }
}

size_t td_pageheap_release(size_t max_bytes, uint32_t older_than, uint64_t deadline_ns)
{
    size_t done = 0;
    bool more = true;
    /* Static, not on the stack (12 KiB): a release may run inside some
       caller's malloc, on a thread with a small stack. One caller at a
       time (see pageheap.h). */
    static span_t *taken[TD_UNBACK_MAX];
    static td_unback_batch_t batch;
    batch.n = 0;
    batch.bytes = 0;
    while (more && done < max_bytes) {
        if (deadline_ns != 0 && done != 0 && td_os_now_ns() >= deadline_ns)
            break;   /* between batches: a call always makes progress */
        /* Take up to TD_UNBACK_MAX runs, oldest first, out of the bins,
           then unback them all with one call and no lock held. */
        int nt = 0, cap = td_os_unback_cap();   /* per batch: a failed call lowers it */
        size_t pages = 0;
        size_t rest = max_bytes - done;   /* > 0 */
        size_t limit = (rest >> TD_PAGE_SHIFT) + ((rest & (TD_PAGE - 1)) != 0);
        if (limit > td_release_batch_pages(deadline_ns))
            limit = td_release_batch_pages(deadline_ns);
        td_lock(&ph.lock);
        uint32_t now = td_os_now_ms();
        while (nt < cap && pages < limit) {
            span_t *s = ph.dirty_tail;   /* the oldest */
            if (s == NULL || (older_than != 0 && td_ms_since(s->stamp, now) < older_than)) {
                more = false;
                break;
            }
            bin_remove(s);
            td_pagemap_set(s->start, NULL);
            td_pagemap_set(last_page(s), NULL);
            size_t want = limit - pages;   /* at least one page */
            if (s->npages > want) {
                span_t *t = split(s, s->npages - want);   /* release the tail end */
                if (t != NULL) {
                    mark_ends(s);
                    bin_insert(s);
                    s = t;
                }
            }
            /* Out of the bins and TAKEN while unbacked, so that a
               neighbour freed meanwhile does not coalesce into it. */
            s->kind = TD_SPAN_TAKEN;
            mark_ends(s);
            taken[nt++] = s;
            pages += s->npages;
        }
        ph.taken_pages += pages;
        td_unlock(&ph.lock);
        if (nt == 0)
            break;

        for (int i = 0; i < nt; i++)
            td_os_unback_add(&batch, (void *)taken[i]->start, taken[i]->npages << TD_PAGE_SHIFT);
        td_os_unback_flush(&batch);
        done += pages << TD_PAGE_SHIFT;

        td_lock(&ph.lock);
        ph.released_bytes += pages << TD_PAGE_SHIFT;
        rebin_taken(taken, nt, pages, true);
        td_unlock(&ph.lock);
    }
    return done;
}

/* Pages of runs release_tables takes out of the bins at a time (at least
   one run, whatever its length): free memory an allocation meanwhile
   cannot have, and would map a new chunk for if nothing else fits. */
#define TABLE_BATCH_PAGES ((size_t)16384)   /* 64 MiB */

size_t td_pageheap_release_tables(uint64_t deadline_ns)
{
    /* Static like td_pageheap_release's, and under the same one-caller rule. */
    static span_t *taken[TD_UNBACK_MAX];
    static td_unback_batch_t batch;
    batch.n = 0;
    batch.bytes = 0;
    size_t done = 0;
    /* Until no run is left (the count), but bounded: a run binned again
       may merge with one freed meanwhile and carry its flag, and a
       program freeing big blocks all the time could keep that going. */
    for (int round = 0; round < 1024; round++) {
        if (deadline_ns != 0 && done != 0 && td_os_now_ns() >= deadline_ns)
            break;
        int nt = 0, cap = td_os_unback_cap();
        size_t pages = 0;
        td_lock(&ph.lock);
        /* From the list of such runs: no walk over runs with nothing to do. */
        while (ph.table_list != NULL && nt < cap && pages < TABLE_BATCH_PAGES) {
            span_t *s = ph.table_list;
            bin_remove(s);   /* off the list too */
            /* Out of the bins and TAKEN while its entries are given back,
               as in td_pageheap_release: nobody allocates from it, and a
               neighbour freed meanwhile does not merge into it (which
               would write its entries). */
            s->kind = TD_SPAN_TAKEN;
            taken[nt++] = s;
            pages += s->npages;
        }
        ph.taken_pages += pages;
        td_unlock(&ph.lock);
        if (nt == 0)
            break;
        size_t bytes = 0;
        for (int i = 0; i < nt; i++)
            bytes += td_pagemap_unback_interior(&batch, taken[i]->start, taken[i]->npages);
        td_os_unback_flush(&batch);
        done += bytes;
        td_lock(&ph.lock);
        ph.tables_released += bytes;
        rebin_taken(taken, nt, pages, false);
        td_unlock(&ph.lock);
    }
    return done;
}

bool td_pageheap_tables_pending(void)
{
    td_lock(&ph.lock);
    bool any = ph.table_list != NULL;
    td_unlock(&ph.lock);
    return any;
}

size_t td_pageheap_tables_released(void)
{
    td_lock(&ph.lock);
    size_t b = ph.tables_released;
    td_unlock(&ph.lock);
    return b;
}

void td_pageheap_note_released(size_t bytes)
{
    td_lock(&ph.lock);
    ph.released_bytes += bytes;
    td_unlock(&ph.lock);
}

size_t td_pageheap_dirty(uint32_t *oldest_stamp)
{
    td_lock(&ph.lock);
    size_t bytes = ph.free_dirty_pages << TD_PAGE_SHIFT;
    if (oldest_stamp != NULL && ph.dirty_tail != NULL)
        *oldest_stamp = ph.dirty_tail->stamp;
    td_unlock(&ph.lock);
    return bytes;
}

span_t *td_pageheap_alloc_huge(size_t bytes, size_t align)
{
    size_t len = td_align_up(bytes, TD_PAGE);
    if (len < bytes)
        return NULL;
    /* On a boundary of the 2 MiB a page of entries covers, so that its
       entry pages can go back when it is freed (td_pagemap_unback_block);
       also where transparent huge pages can back it from its first byte. */
    size_t cover = (TD_PAGE / sizeof(uintptr_t)) << TD_PAGE_SHIFT;
    void *mem = td_os_map(len, align > cover ? align : cover);
    if (mem == NULL)
        return NULL;
    td_os_advise_huge(mem, len);
    span_t *s = td_span_new();
    if (s == NULL || !td_pagemap_ensure((uintptr_t)mem, len)) {
        td_os_unmap(mem, len);
        if (s)
            td_span_delete(s);
        return NULL;
    }
    s->kind = TD_SPAN_HUGE;
    s->start = (uintptr_t)mem;
    s->bytes = len;
    s->npages = len >> TD_PAGE_SHIFT;
    td_pagemap_set(s->start, s);
    td_lock(&ph.lock);
    ph.huge_bytes += len;
    ph.huge_count++;
    td_unlock(&ph.lock);
    return s;
}

void td_pageheap_free_huge(span_t *s)
{
    td_pagemap_set(s->start, NULL);
    td_pagemap_unback_block(s->start, s->npages);   /* while the range is still ours */
    td_lock(&ph.lock);
    ph.huge_bytes -= s->bytes;
    ph.huge_count--;
    ph.released_bytes += s->bytes;
    td_unlock(&ph.lock);
    td_os_unmap((void *)s->start, s->bytes);
    td_span_delete(s);
}

bool td_pageheap_remap_huge(span_t *s, size_t bytes)
{
    size_t len = td_align_up(bytes, TD_PAGE);
    if (len < bytes)
        return false;
    if (len == s->bytes)
        return true;
    /* In place first (a shrink always is): the start and its entry stay. */
    void *q = td_os_remap((void *)s->start, s->bytes, len, false);
    if (q == NULL) {
        /* Moving. The old entry goes before the move: once mremap
           returns, the old range can be another thread's new mapping,
           whose entry a clear would wipe (found in review: a live huge
           block of another thread became "invalid pointer"). A leaf is
           had first, so that nothing can fail once the block has moved.
           (Moving onto a range mapped first, MREMAP_FIXED, was a second
           review's catch: Linux 6.10 and older unmap that range before
           checks that can still fail, and another thread can map there.) */
        void *leaf = td_pagemap_leaf_take();
        if (leaf == NULL)
            return false;
        td_pagemap_set(s->start, NULL);
        q = td_os_remap((void *)s->start, s->bytes, len, true);
        if (q == NULL) {
            td_pagemap_set(s->start, s);   /* still ours: nothing moved */
            td_pagemap_leaf_give(leaf);
            return false;
        }
        if (!td_pagemap_ensure_with((uintptr_t)q, leaf))
            td_fatal("realloc: mremap moved a block to %p, outside the address range "
                     "tidemalloc maps", q);
    }
    td_lock(&ph.lock);
    ph.huge_bytes = ph.huge_bytes - s->bytes + len;
    td_unlock(&ph.lock);
    s->start = (uintptr_t)q;
    s->bytes = len;
    s->npages = len >> TD_PAGE_SHIFT;
    td_pagemap_set(s->start, s);
    return true;
}

void td_pageheap_stats(td_pageheap_stats_t *st)
{
    td_lock(&ph.lock);
    st->mapped = ph.mapped_pages << TD_PAGE_SHIFT;
    st->free = (ph.free_pages + ph.taken_pages) << TD_PAGE_SHIFT;   /* taken: free too */
    st->free_dirty = ph.free_dirty_pages << TD_PAGE_SHIFT;
    st->slab = ph.slab_pages << TD_PAGE_SHIFT;
    st->large = ph.large_pages << TD_PAGE_SHIFT;
    st->huge = ph.huge_bytes;
    st->huge_count = ph.huge_count;
    st->released = ph.released_bytes;
    td_unlock(&ph.lock);
}

void td_pageheap_walk(void (*fn)(span_t *s, void *arg), void *arg)
{
    td_lock(&ph.lock);
    for (chunk_t *c = ph.chunks; c != NULL; c = c->next) {
        uintptr_t end = c->start + (c->npages << TD_PAGE_SHIFT);
        for (uintptr_t p = c->start; p < end;) {
            span_t *s = td_pagemap_get((void *)p);
            TIDE_CHECK(s != NULL && s->start == p && "chunk not tiled by spans");
            if (s->kind != TD_SPAN_FREE)
                fn(s, arg);
            p += s->npages << TD_PAGE_SHIFT;
        }
    }
    td_unlock(&ph.lock);
}

void td_pageheap_validate(void)
{
    td_lock(&ph.lock);
    size_t free_pages = 0, dirty = 0, table_runs = 0;
    for (unsigned k = 0; k < 2; k++)
    for (unsigned f = 0; f < FL_COUNT; f++)
        for (unsigned l = 0; l < SL_COUNT; l++) {
            TIDE_CHECK(!!ph.bins[k][f][l] == !!(ph.sl_bitmap[k][f] & (1u << l)) && "bitmap out of step");
            for (span_t *s = ph.bins[k][f][l]; s; s = s->next) {
                TIDE_CHECK(bin_set(s) == k && "run in the wrong set of bins");
                unsigned ff, ll;
                mapping(s->npages, &ff, &ll);
                TIDE_CHECK(ff == f && ll == l && "run in wrong bin");
                TIDE_CHECK(s->kind == TD_SPAN_FREE);
                TIDE_CHECK(td_pagemap_get((void *)s->start) == s && "first page not mapped");
                TIDE_CHECK(td_pagemap_get((void *)last_page(s)) == s && "last page not mapped");
                span_t *n = td_pagemap_get((void *)(s->start + (s->npages << TD_PAGE_SHIFT)));
                TIDE_CHECK(!(n && mergeable(n, s) &&
                             n->start == s->start + (s->npages << TD_PAGE_SHIFT)) &&
                           "free runs not coalesced");
                TIDE_CHECK((s->ndirty == 0 || s->ndirty == s->npages) && "dirty not all-or-none");
                free_pages += s->npages;
                table_runs += table_run(s);
            }
        }
    for (unsigned k = 0; k < 2; k++)
        for (unsigned f = 0; f < FL_COUNT; f++)
            TIDE_CHECK(!!(ph.fl_bitmap[k] & (1ull << f)) == !!ph.sl_bitmap[k][f]);
    span_t *last = NULL;
    for (span_t *s = ph.dirty; s; s = s->dnext) {
        TIDE_CHECK(s->ndirty > 0 && s->ndirty <= s->npages);
        TIDE_CHECK(s->dprev == last && "dirty list links");
        dirty += s->ndirty;
        last = s;
    }
    TIDE_CHECK(ph.dirty_tail == last && "dirty list tail");
    TIDE_CHECK(free_pages == ph.free_pages && "free page count");
    TIDE_CHECK(table_runs == ph.table_runs && "count of runs with entry pages to give back");
    size_t listed = 0;
    for (span_t *s = ph.table_list; s != NULL; s = s->dnext) {
        TIDE_CHECK(s->kind == TD_SPAN_FREE && table_run(s) && "table list holds a run it should not");
        TIDE_CHECK((s->dnext == NULL || s->dnext->dprev == s) && "table list links");
        TIDE_CHECK(++listed <= table_runs && "table list longer than its count");
    }
    TIDE_CHECK(listed == table_runs && "table list shorter than its count");
    size_t binned_dirty = 0;
    for (unsigned f = 0; f < FL_COUNT; f++)
        for (unsigned l = 0; l < SL_COUNT; l++)
            for (span_t *s = ph.bins[1][f][l]; s; s = s->next)
                binned_dirty += s->ndirty;
    TIDE_CHECK(binned_dirty == dirty && "dirty bins and dirty list disagree");
    TIDE_CHECK(dirty == ph.free_dirty_pages && "dirty page count");
    td_unlock(&ph.lock);
}

void td_pageheap_fork_prepare(void) { td_lock(&ph.lock); }
void td_pageheap_fork_parent(void) { td_unlock(&ph.lock); }
void td_pageheap_fork_child(void) { td_lock_reset(&ph.lock); }
