/* pagemap_test.c — address -> span lookups and metadata memory, through
   pagemap.h only, over the fake os. */
#include "../../src/pagemap.h"
#include "testhelper.h"

int main(void)
{
    static char mem[1 << 16] __attribute__((aligned(4096)));
    uintptr_t base = (uintptr_t)mem;
    CHECK(td_pagemap_get(mem) == NULL);            /* no leaf yet */
    CHECK(td_pagemap_ensure(base, sizeof mem));
    span_t *s = td_span_new();
    CHECK(s != NULL && s->start == 0 && s->npages == 0);   /* zeroed */
    td_pagemap_set_range(base, 4, s);
    CHECK(td_pagemap_get(mem) == s);
    CHECK(td_pagemap_get(mem + 3 * 4096 + 4095) == s);
    CHECK(td_pagemap_get(mem + 4 * 4096) == NULL);
    /* The flat hint mirrors the tree (no other span aliases here). */
    CHECK(td_pagemap_hint(mem) == s && td_pagemap_hint(mem + 3 * 4096 + 4095) == s);
    /* An empty entry is the empty span: never NULL, no heap. */
    CHECK(td_pagemap_hint(mem + 4 * 4096)->heap == NULL);
    CHECK(td_pagemap_hint((void *)~(uintptr_t)0) != NULL);   /* any address: no crash */
    CHECK(td_pagemap_get(NULL) == NULL);
    CHECK(td_pagemap_get((void *)~(uintptr_t)0) == NULL || 1);   /* no crash */
    td_pagemap_set(base + 4096, NULL);
    CHECK(td_pagemap_get(mem + 4096) == NULL && td_pagemap_hint(mem + 4096)->heap == NULL);
    /* Beyond the covered address range: refused. */
    CHECK(!td_pagemap_ensure((uintptr_t)1 << 48, 4096));
    /* Descriptors are recycled and come back zeroed. */
    s->npages = 7;
    td_span_delete(s);
    span_t *t = td_span_new();
    CHECK(t == s && t->npages == 0);
    /* Metadata: aligned, distinct, zeroed. */
    char *a = td_meta_alloc(24), *b = td_meta_alloc(3000000);
    CHECK(a && b && ((uintptr_t)a & 15) == 0 && ((uintptr_t)b & 15) == 0 && a != b);
    CHECK(b[2999999] == 0);
    CHECK(td_meta_bytes() >= 3000000);
    return test_summary("pagemap");
}
