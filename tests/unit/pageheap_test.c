/* pageheap_test.c — the TLSF page heap over a fake os (fake_os.c), through
   pageheap.h and pagemap.h only: random alloc/free with alignment, the
   layer's own validator after every step, no overlap, full coalescing,
   release accounting, resize, and out-of-memory. */
#include "../../src/pageheap.h"
#include "testhelper.h"

#include <string.h>

extern size_t fake_os_unbacked;
extern int fake_os_fail_maps;
extern uint32_t fake_os_ms;

#define LIVE 512
static span_t *live[LIVE];

static int overlaps(span_t *s)
{
    for (int i = 0; i < LIVE; i++) {
        span_t *t = live[i];
        if (t == NULL || t == s)
            continue;
        uintptr_t a0 = s->start, a1 = a0 + (s->npages << 12);
        uintptr_t b0 = t->start, b1 = b0 + (t->npages << 12);
        if (a0 < b1 && b0 < a1)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long long seed = argc > 1 ? strtoull(argv[1], 0, 0) : 0x1234567ull;
    int steps = argc > 2 ? atoi(argv[2]) : 20000;
    printf("pageheap: seed %#llx, %d steps\n", seed, steps);
    td_pageheap_init();

    int bad_overlap = 0, bad_align = 0, bad_map = 0, bad_zero = 0;
    for (int i = 0; i < steps; i++) {
        int k = (int)(test_rand(&seed) % LIVE);
        if (live[k]) {
            span_t *s = live[k];
            memset((void *)s->start, 0xab, 64);   /* dirty it */
            bool unback = test_rand(&seed) % 2;
            if (unback)
                memset((void *)s->start, 0, s->npages << 12);
            td_pageheap_free(s, unback, 0);
            live[k] = NULL;
        } else {
            size_t np = 1 + test_rand(&seed) % (test_rand(&seed) % 8 ? 16 : 600);
            size_t ap = (size_t)1 << (test_rand(&seed) % 4 ? 0 : test_rand(&seed) % 10);
            span_t *s = td_pageheap_alloc(np, ap, TD_SPAN_LARGE);
            CHECK(s != NULL);
            if (s == NULL)
                continue;
            if (s->npages != np || s->start % (ap << 12))
                bad_align++;
            if (td_pagemap_get((void *)s->start) != s ||
                td_pagemap_get((void *)(s->start + ((np - 1) << 12))) != s)
                bad_map++;
            if (s->ndirty == 0) {   /* promised all-zero */
                const unsigned char *b = (const unsigned char *)s->start;
                for (size_t j = 0; j < (np << 12); j += 512)
                    if (b[j]) { bad_zero++; break; }
            }
            live[k] = s;
            if (overlaps(s))
                bad_overlap++;
        }
        if (i % 64 == 0)
            td_pageheap_validate();
    }
    CHECK_MSG(bad_overlap == 0, "%d overlapping runs", bad_overlap);
    CHECK_MSG(bad_align == 0, "%d misaligned or mis-sized runs", bad_align);
    CHECK_MSG(bad_map == 0, "%d runs without pagemap ends", bad_map);
    CHECK_MSG(bad_zero == 0, "%d runs promised zero but dirty", bad_zero);

    /* Resize in place: shrink gives a tail back, grow takes the neighbour. */
    for (int k = 0; k < LIVE; k++)
        if (live[k]) { td_pageheap_free(live[k], false, 0); live[k] = NULL; }
    span_t *a = td_pageheap_alloc(64, 1, TD_SPAN_LARGE);
    CHECK(a && td_pageheap_resize(a, 16) && a->npages == 16);
    CHECK(td_pageheap_resize(a, 80) && a->npages == 80);
    CHECK(td_pagemap_get((void *)(a->start + (79 << 12))) == a);
    td_pageheap_validate();
    td_pageheap_free(a, false, 0);

    /* Everything freed: each chunk is one free run again. */
    td_pageheap_stats_t st;
    td_pageheap_stats(&st);
    CHECK_MSG(st.free == st.mapped, "free %zu of mapped %zu", st.free, st.mapped);
    CHECK(st.slab == 0 && st.large == 0);
    td_pageheap_validate();

    /* Release unbacks exactly the dirty bound it reports, in batches. */
    size_t before = fake_os_unbacked;
    size_t r = td_pageheap_release(SIZE_MAX, 0, 0);
    CHECK(r == fake_os_unbacked - before);
    CHECK(r >= st.free_dirty);
    td_pageheap_stats(&st);
    CHECK(st.free_dirty == 0 && td_pageheap_release(SIZE_MAX, 0, 0) == 0);
    td_pageheap_validate();

    /* The pagemap's pages under clean runs' interiors go back, and only
       those: a live slab amid them keeps an entry for every page, every
       run keeps its end entries (validate), and the run is found and
       split again afterwards. */
    {
        span_t *pre = td_pageheap_alloc(700, 1, TD_SPAN_LARGE);
        span_t *sl = td_pageheap_alloc_slab(16, 4);
        span_t *post = td_pageheap_alloc(1500, 1, TD_SPAN_LARGE);
        CHECK(pre && sl && post);
        td_pagemap_set_range(sl->start + 4096, sl->npages - 2, sl);   /* as slab.c does */
        td_pageheap_free(pre, false, 0);
        td_pageheap_free(post, false, 0);
        td_pageheap_release(SIZE_MAX, 0, 0);   /* clean, as the release pass leaves them */
        size_t b0 = fake_os_unbacked, t0 = td_pageheap_tables_released();
        size_t t = td_pageheap_release_tables(0);
        CHECK_MSG(t >= 2 * 4096, "release_tables gave back %zu bytes of entries", t);
        CHECK(t == fake_os_unbacked - b0 && t == td_pageheap_tables_released() - t0);
        CHECK_MSG(td_pageheap_release_tables(0) == 0, "a second release_tables found work");
        for (size_t pg = 0; pg < sl->npages; pg++)
            CHECK(td_pagemap_get((void *)(sl->start + (pg << 12))) == sl);
        td_pageheap_validate();
        span_t *again = td_pageheap_alloc(600, 1, TD_SPAN_LARGE);
        CHECK(again != NULL && td_pagemap_get((void *)again->start) == again &&
              td_pagemap_get((void *)(again->start + (599 << 12))) == again);
        td_pageheap_validate();
        td_pageheap_free(again, false, 0);
        td_pagemap_set_range(sl->start + 4096, sl->npages - 2, NULL);
        td_pageheap_free(sl, false, 0);
        td_pageheap_release(SIZE_MAX, 0, 0);   /* no dirty run left for the decay test */
        td_pageheap_validate();
    }

    /* A huge block starts on a 2 MiB boundary, and freeing it gives back
       the page of tree entries that held its entry, and no other. */
    {
        span_t *h1 = td_pageheap_alloc_huge((size_t)4 << 20, 16);
        span_t *h2 = td_pageheap_alloc_huge((size_t)5 << 20, 16);
        CHECK(h1 && h2 && h1->start % ((size_t)2 << 20) == 0 && h2->start % ((size_t)2 << 20) == 0);
        CHECK(td_pagemap_get((void *)h1->start) == h1 && td_pagemap_get((void *)h2->start) == h2);
        size_t b0 = fake_os_unbacked;
        td_pageheap_free_huge(h1);
        CHECK_MSG(fake_os_unbacked - b0 == 4096, "freeing a huge block unbacked %zu bytes of "
                  "entries", fake_os_unbacked - b0);
        CHECK(td_pagemap_get((void *)h2->start) == h2);
        td_pageheap_free_huge(h2);
        td_pageheap_validate();
    }

    /* Decay: dirty runs go back oldest first, only once old enough, and a
       byte budget stops it. Runs are kept apart by live spacers. */
    {
        span_t *run[4], *spacer[4];
        for (int k = 0; k < 4; k++) {
            run[k] = td_pageheap_alloc(8, 1, TD_SPAN_LARGE);
            spacer[k] = td_pageheap_alloc(1, 1, TD_SPAN_LARGE);
            CHECK(run[k] && spacer[k]);
        }
        uint32_t stamps[4] = { 2000, 3000, 1000, 4000 };   /* the oldest freed late */
        for (int k = 0; k < 4; k++)
            td_pageheap_free(run[k], false, stamps[k]);
        td_pageheap_validate();
        uint32_t oldest = 0;
        CHECK(td_pageheap_dirty(&oldest) == (size_t)32 << 12 && oldest == 1000);
        fake_os_ms = 3500;
        /* Older than 1000 ms at 3500: the runs of 1000 and 2000 only. */
        CHECK(td_pageheap_release(SIZE_MAX, 1000, 0) == (size_t)16 << 12);
        CHECK(td_pageheap_dirty(&oldest) == (size_t)16 << 12 && oldest == 3000);
        /* A budget of one page releases one page, from the oldest run. */
        CHECK(td_pageheap_release(4096, 0, 0) == 4096);
        CHECK(td_pageheap_dirty(&oldest) == (size_t)15 << 12 && oldest == 3000);
        td_pageheap_validate();
        CHECK(td_pageheap_release(SIZE_MAX, 0, 0) == (size_t)15 << 12);
        CHECK(td_pageheap_dirty(NULL) == 0);
        for (int k = 0; k < 4; k++)
            td_pageheap_free(spacer[k], false, 0);
        td_pageheap_validate();
        fake_os_ms = 0;
    }

    /* Resident memory first: a dirty run that fits is taken before a
       clean one that fits better, so that a working set that moves does
       not touch fresh pages. */
    {
        span_t *x = td_pageheap_alloc(8, 1, TD_SPAN_LARGE);
        span_t *sp1 = td_pageheap_alloc(1, 1, TD_SPAN_LARGE);
        span_t *y = td_pageheap_alloc(16, 1, TD_SPAN_LARGE);
        span_t *sp2 = td_pageheap_alloc(1, 1, TD_SPAN_LARGE);
        CHECK(x && sp1 && y && sp2);
        uintptr_t ys = y->start;
        memset((void *)x->start, 0, (size_t)8 << 12);
        td_pageheap_free(x, true, 0);    /* clean, exactly 8 pages */
        td_pageheap_free(y, false, 0);   /* dirty, 16 pages */
        td_pageheap_validate();
        span_t *z = td_pageheap_alloc(8, 1, TD_SPAN_LARGE);
        CHECK_MSG(z != NULL && z->start == ys && z->ndirty != 0,
                  "an 8-page request took the clean exact fit, not the dirty 16-page run");
        td_pageheap_validate();
        td_pageheap_free(z, false, 0);
        td_pageheap_free(sp1, false, 0);
        td_pageheap_free(sp2, false, 0);
        td_pageheap_validate();
    }

    /* Slab runs: short from a dirty run that fits, long from a clean one;
       a clean slab's untouched tail goes back clean (free_parked with a
       bitmap of never-touched pages, as heap.c's slab_release_at does). */
    {
        td_pageheap_release(SIZE_MAX, 0, 0);   /* no dirty run left */
        span_t *s = td_pageheap_alloc_slab(16, 4);
        CHECK_MSG(s != NULL && s->npages == 16 && s->ndirty == 0,
                  "no dirty run: a long slab from clean memory");
        uintptr_t at = s->start;
        memset((void *)at, 0xab, (size_t)4 << 12);   /* carved: 4 pages */
        uint64_t clean[3] = { 0xfff0, 0, 0 };        /* pages 4..15 untouched */
        td_pageheap_free_parked(s, clean, 0);
        td_pageheap_validate();
        td_pageheap_stats_t ps;
        td_pageheap_stats(&ps);
        CHECK_MSG(ps.free_dirty == (size_t)4 << 12, "dirty after a clean slab's release: %zu",
                  ps.free_dirty);
        span_t *t2 = td_pageheap_alloc_slab(16, 4);
        CHECK_MSG(t2 != NULL && t2->start == at && t2->npages == 4 && t2->ndirty != 0,
                  "a short slab did not take the 4 dirty pages");
        span_t *t3 = td_pageheap_alloc_slab(16, 4);
        CHECK_MSG(t3 != NULL && t3->npages == 16 && t3->ndirty == 0,
                  "the next slab did not get a long clean run");
        const unsigned char *b = (const unsigned char *)t3->start;
        int nonzero = 0;
        for (size_t j = 0; j < ((size_t)16 << 12); j += 256)
            nonzero += b[j] != 0;
        CHECK_MSG(nonzero == 0, "a clean slab run is not zero");
        td_pageheap_free(t2, false, 0);
        td_pageheap_free(t3, false, 0);
        td_pageheap_validate();

        /* Random: slab runs released with random clean tails and parked
           pages, among LARGE runs; clean runs read zero, lengths are 4 or
           16, and everything adds up at the end. */
        unsigned long long sseed = seed ^ 0x5151;
        int bad_len = 0, bad_zero2 = 0;
        static size_t touched[LIVE];
        for (int i = 0; i < steps; i++) {
            int k = (int)(test_rand(&sseed) % LIVE);
            span_t *x = live[k];
            if (x != NULL && x->kind == TD_SPAN_SLAB) {
                uint64_t bm[3] = { 0, 0, 0 };
                for (size_t pg = 0; pg < touched[k]; pg++)
                    if (test_rand(&sseed) % 5 == 0) {   /* parked */
                        memset((void *)(x->start + (pg << 12)), 0, 4096);
                        bm[0] |= (uint64_t)1 << pg;
                    }
                if (x->ndirty == 0)
                    for (size_t pg = touched[k]; pg < x->npages; pg++)
                        bm[0] |= (uint64_t)1 << pg;
                td_pageheap_free_parked(x, bm, 0);
                live[k] = NULL;
            } else if (x != NULL) {
                memset((void *)x->start, 0xcd, x->npages << 12);
                td_pageheap_free(x, false, 0);
                live[k] = NULL;
            } else if (test_rand(&sseed) % 3) {
                x = td_pageheap_alloc_slab(16, 4);
                CHECK(x != NULL);
                if (x == NULL)
                    continue;
                bad_len += x->npages != (x->ndirty ? 4u : 16u);
                if (x->ndirty == 0) {
                    b = (const unsigned char *)x->start;
                    for (size_t j = 0; j < (x->npages << 12); j += 256)
                        if (b[j]) { bad_zero2++; break; }
                }
                touched[k] = 1 + test_rand(&sseed) % x->npages;
                memset((void *)x->start, 0xab, touched[k] << 12);
                live[k] = x;
            } else {
                x = td_pageheap_alloc(1 + test_rand(&sseed) % 100, 1, TD_SPAN_LARGE);
                CHECK(x != NULL);
                live[k] = x;
            }
            if (i % 64 == 0)
                td_pageheap_validate();
            if (i % 4096 == 0)
                td_pageheap_release(SIZE_MAX, 0, 0);
            if (i % 4096 == 2048)
                td_pageheap_release_tables(0);   /* entry pages zeroed by the fake */
        }
        CHECK_MSG(bad_len == 0, "%d slab runs of the wrong length for their state", bad_len);
        CHECK_MSG(bad_zero2 == 0, "%d clean slab runs not zero", bad_zero2);
        for (int k = 0; k < LIVE; k++)
            if (live[k] != NULL) {
                td_pageheap_free(live[k], false, 0);
                live[k] = NULL;
            }
        td_pageheap_stats(&ps);
        CHECK(ps.slab == 0 && ps.large == 0 && ps.free == ps.mapped);
        td_pageheap_validate();
    }

    /* Out of memory: NULL, and the heap still consistent. */
    fake_os_fail_maps = 1000;
    CHECK(td_pageheap_alloc((size_t)1 << 20, 1, TD_SPAN_LARGE) == NULL);
    fake_os_fail_maps = 0;
    td_pageheap_validate();
    return test_summary("pageheap");
}
