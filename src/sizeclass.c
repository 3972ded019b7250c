/*
 * sizeclass.c — class tables (see sizeclass.h).
 */
#include "sizeclass.h"

uint8_t td_sizeclass_lut[TD_LUT_MAX / 16 + 1];
uint32_t td_class_size[TD_NCLASSES];
uint64_t td_class_inv[TD_NCLASSES];
uint8_t td_class_shift[TD_NCLASSES];
uint16_t td_class_npages[TD_NCLASSES];
uint16_t td_class_npages_dirty[TD_NCLASSES];

static size_t class_bytes(unsigned c)
{
    if (c < 8)
        return 16u * (c + 1);
    unsigned g = (c - 8) / 8, j = (c - 8) % 8;
    return ((size_t)128 << g) + (size_t)(j + 1) * ((size_t)16 << g);
}

void td_sizeclass_init(void)
{
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        size_t sz = class_bytes(c);
        td_class_size[c] = (uint32_t)sz;
        /* Inverse of the odd part by Newton's iteration: each step doubles
           the correct low bits (odd * odd == 1 mod 8 to start: 3 bits). */
        unsigned sh = (unsigned)__builtin_ctzll(sz);
        uint64_t odd = sz >> sh, inv = odd;
        for (int i = 0; i < 5; i++)
            inv *= 2 - odd * inv;
        td_class_inv[c] = inv;
        td_class_shift[c] = (uint8_t)sh;
        size_t np = td_align_up(sz, TD_PAGE) >> TD_PAGE_SHIFT;
        if (np < TD_SLAB_MIN_PAGES)
            np = TD_SLAB_MIN_PAGES;
        while (np < 512 && ((np << TD_PAGE_SHIFT) % sz) * 64 > (np << TD_PAGE_SHIFT))
            np++;
        td_class_npages[c] = (uint16_t)np;
        size_t nd = np;
        if (sz <= TD_LUT_MAX) {
            nd = TD_SLAB_DIRTY_PAGES;
            while (nd < np && ((nd << TD_PAGE_SHIFT) % sz) * 64 > (nd << TD_PAGE_SHIFT))
                nd++;
        }
        td_class_npages_dirty[c] = (uint16_t)nd;
    }
    for (size_t i = 0; i <= TD_LUT_MAX / 16; i++)
        td_sizeclass_lut[i] = (uint8_t)td_sizeclass_compute(i * 16);
}

unsigned td_sizeclass_aligned(size_t n, size_t align)
{
    if (n > TD_SMALL_MAX)
        return TD_NCLASSES;
    unsigned c = td_sizeclass_compute(n < align ? align : n);
    while (c < TD_NCLASSES && (td_class_size[c] & (align - 1)) != 0)
        c++;
    return c;
}

void td_sizeclass_validate(void)
{
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        size_t sz = td_class_size[c];
        TIDE_CHECK(sz % 16 == 0 && "class not 16-byte multiple");
        TIDE_CHECK(td_sizeclass_compute(sz) == c && "class of its own size");
        TIDE_CHECK((c == 0 || td_sizeclass_compute(td_class_size[c - 1] + 1) == c) &&
                   "first size above the previous class");
        if (c > 0 && sz > 128)
            TIDE_CHECK((sz - td_class_size[c - 1]) * 8 <= td_class_size[c - 1] &&
                       "classes more than 12.5% apart");
        size_t slab = (size_t)td_class_npages[c] << TD_PAGE_SHIFT;
        TIDE_CHECK(slab >= sz && (slab % sz) * 64 <= slab && "slab tail over 1/64");
        size_t dslab = (size_t)td_class_npages_dirty[c] << TD_PAGE_SHIFT;
        TIDE_CHECK(dslab >= sz && dslab <= slab && (dslab % sz) * 64 <= dslab &&
                   "dirty-run slab length");
    }
    TIDE_CHECK(td_class_size[TD_NCLASSES - 1] == TD_SMALL_MAX);
}
