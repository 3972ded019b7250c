/*
 * sizeclass.h — request size -> size class, and each class's slab geometry.
 *
 * Classes: 16..128 bytes in steps of 16, then 8 classes per doubling up to
 * TD_SMALL_MAX, so from 128 bytes up two neighbours are at most 12.5%
 * apart, and every power of two is a class (a 4096-byte request takes one
 * 4096-byte slot: one page, not two). All classes are multiples of 16:
 * every block of 16 bytes or more is 16-byte aligned.
 *
 * Slab length: the fewest pages, at least TD_SLAB_MIN_PAGES and at least
 * one object, whose unusable tail is at most 1/64 of the slab.
 *
 * Tables are filled by td_sizeclass_init() (called once, before the first
 * heap exists). The malloc fast path does not read them: it reads the
 * heap's direct[] table, which in the empty heap of a thread without a
 * heap (before init, too) names only the empty slab, so it takes the slow
 * path that runs init.
 */
#ifndef TIDE_SIZECLASS_H
#define TIDE_SIZECLASS_H

#include "internal.h"

#define TD_NCLASSES       96
#define TD_SMALL_MAX      ((size_t)256 << 10)  /* largest slab class; tunable with TD_NCLASSES */
#define TD_LUT_MAX        1024                 /* sizes served by the lookup table */
#define TD_SLAB_MIN_PAGES 16                   /* 64 KiB: amortises the page-heap lock */
#define TD_SLAB_DIRTY_PAGES 4                  /* classes up to TD_LUT_MAX, from dirty runs */

_Static_assert(TD_NCLASSES == 8 + 8 * 11, "8 classes to 128, 8 per doubling to 256 KiB");
_Static_assert(TD_SMALL_MAX == ((size_t)128 << 11), "last class is 128 << 11");

extern uint8_t td_sizeclass_lut[TD_LUT_MAX / 16 + 1];
extern uint32_t td_class_size[TD_NCLASSES];
/* size == odd << shift; inv * odd == 1 mod 2^64 (td_slab_is_object). */
extern uint64_t td_class_inv[TD_NCLASSES];
extern uint8_t td_class_shift[TD_NCLASSES];
extern uint16_t td_class_npages[TD_NCLASSES];
/* Slab length when the page heap has a dirty run (resident memory) to
   carve it from: TD_SLAB_DIRTY_PAGES for classes up to TD_LUT_MAX (grown
   to keep the 1/64 tail rule), td_class_npages for the others. A slab
   touches only the pages it carves, and small classes often carve few:
   a 64 KiB slab cut from resident memory kept its uncarved pages resident
   and out of everyone else's reach (the threads workload: 3-5 MiB of
   such pages at its peak). From clean memory uncarved pages cost nothing,
   so those slabs keep the long length and its fewer refills. */
extern uint16_t td_class_npages_dirty[TD_NCLASSES];

void td_sizeclass_init(void);

/* Requires: n <= TD_SMALL_MAX. */
static inline unsigned td_sizeclass_compute(size_t n)
{
    if (n <= 128)
        return n == 0 ? 0 : (unsigned)((n + 15) >> 4) - 1;
    size_t m = n - 1;
    unsigned e = 63u - (unsigned)__builtin_clzll(m);   /* >= 7 */
    return 8 + (e - 7) * 8 + (unsigned)((m >> (e - 3)) & 7);
}

/* Requires: n <= TD_SMALL_MAX and td_sizeclass_init() has run. */
static inline unsigned td_sizeclass_of(size_t n)
{
    if (TIDE_LIKELY(n <= TD_LUT_MAX))
        return td_sizeclass_lut[(n + 15) >> 4];
    return td_sizeclass_compute(n);
}

/* Smallest class >= n whose size is a multiple of align (a power of two
   <= TD_PAGE), or TD_NCLASSES if none. */
unsigned td_sizeclass_aligned(size_t n, size_t align);

/* Debug: checks the tables against their definition. */
void td_sizeclass_validate(void);

#endif
