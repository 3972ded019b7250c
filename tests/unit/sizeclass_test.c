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
    /* The reciprocal finds the index of every object start exactly, and
       no offset that is not an object start passes the product check. */
    for (unsigned c = 0; c < TD_NCLASSES; c++) {
        uint64_t sz = td_class_size[c], r = td_class_recip[c];
        size_t slab = (size_t)td_class_npages[c] * 4096;
        int bad = 0;
        for (uint64_t off = 0; off < slab; off += (sz > 64 ? 8 : 1)) {
            uint64_t idx = (off * r) >> 32;
            bool is_start = idx * sz == off;
            if (is_start != (off % sz == 0))
                bad++;
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
