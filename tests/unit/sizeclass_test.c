/* sizeclass_test.c — size -> class mapping and slab geometry, through
   sizeclass.h only. */
#include "../../src/sizeclass.h"
#include "testhelper.h"

int main(void)
{
    td_sizeclass_init();
    td_sizeclass_validate();   /* panics on a broken table */

    /* Every size maps to the smallest class that holds it. */
    for (size_t n = 0; n <= TD_SMALL_MAX; n++) {
        unsigned c = td_sizeclass_of(n);
        if (!(c < TD_NCLASSES && td_class_size[c] >= n &&
              (c == 0 || td_class_size[c - 1] < n))) {
            CHECK_MSG(0, "size %zu -> class %u (%u bytes)", n, c,
                      c < TD_NCLASSES ? td_class_size[c] : 0);
            break;
        }
    }
    CHECK(td_sizeclass_of(0) == 0 && td_class_size[0] == 16);
    /* A page-sized request takes exactly a page. */
    CHECK(td_class_size[td_sizeclass_of(4096)] == 4096);
    CHECK(td_class_size[td_sizeclass_of(64 << 10)] == (64 << 10));
    /* Rounding waste at most 12.5% from 128 bytes up. */
    for (size_t n = 129; n <= TD_SMALL_MAX; n += 7)
        if ((td_class_size[td_sizeclass_of(n)] - n) * 8 > n) {
            CHECK_MSG(0, "size %zu wastes %zu", n, td_class_size[td_sizeclass_of(n)] - n);
            break;
        }
    /* Slab tail waste at most 1/64, slabs hold >= 1 object. */
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        size_t slab = (size_t)td_class_npages[c] * 4096;
        CHECK_MSG(slab / td_class_size[c] >= 1 && (slab % td_class_size[c]) * 64 <= slab,
                  "class %u", c);
    }
    /* Exact division (td_slab_is_object): rotate_right(off * inv, shift)
       < nobjs for the object starts and for no other offset, past the
       object area, below it (wrapped) or with high address bits set. */
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        uint64_t sz = td_class_size[c], inv = td_class_inv[c];
        unsigned sh = td_class_shift[c];
        CHECK_MSG(sh >= 4 && ((sz >> sh) & 1) && (sz >> sh) * inv == 1, "class %u: inverse", c);
        size_t slab = (size_t)td_class_npages[c] * 4096;
        uint64_t nobjs = slab / sz;
        int bad = 0;
        for (uint64_t k = 0; k < slab + 4096 + 2 * sz; k += (sz > 64 ? 8 : 1)) {
            const uint64_t base[] = { 0, (uint64_t)0 - slab - 4096 - 2 * sz,
                                      (uint64_t)1 << 47, (uint64_t)1 << 50, (uint64_t)1 << 63 };
            for (unsigned b = 0; b < sizeof base / sizeof base[0]; b++) {
                uint64_t off = base[b] + k;
                uint64_t x = off * inv;
                uint64_t q = (x >> sh) | (x << (-sh & 63));
                bool is_start = off % sz == 0 && off / sz < nobjs;
                if ((q < nobjs) != is_start)
                    bad++;
            }
        }
        CHECK_MSG(bad == 0, "class %u: %d offsets misjudged", c, bad);
    }
    /* Aligned classes: size a multiple of the alignment, >= the request. */
    for (size_t a = 16; a <= 4096; a *= 2)
        for (size_t n = 1; n < 20000; n += 97) {
            unsigned c = td_sizeclass_aligned(n, a);
            CHECK_MSG(c < TD_NCLASSES && td_class_size[c] >= n && td_class_size[c] % a == 0,
                      "n=%zu a=%zu", n, a);
        }
    CHECK(td_sizeclass_aligned(TD_SMALL_MAX + 1, 64) == TD_NCLASSES);
    return test_summary("sizeclass");
}
