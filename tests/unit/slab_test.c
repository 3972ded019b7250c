/* slab_test.c — a slab's remote list over a fake os (fake_os.c), through
   slab.h: what each push asks its caller to do (nothing, a kick, a notify),
   the "want" and "notified" flags of the remote word (slab.h, TD_RL_WANT),
   the owner's collect that refuses a notified list, and the stack taker's
   collect that clears it, with the objects back on the free list in LIFO
   order and counted. Single-threaded: the races are the stress tests'. */
#include "../../src/pageheap.h"
#include "../../src/slab.h"
#include "testhelper.h"

static uint32_t list_len(const span_t *s)
{
    uint32_t n = 0;
    for (void *p = s->free; p != NULL; p = *(void **)p)
        n++;
    return n;
}

int main(void)
{
    td_sizeclass_init();
    td_pageheap_init();
    unsigned c = td_sizeclass_of(64);
    span_t *s = td_pageheap_alloc_slab(td_class_npages[c], td_class_npages_dirty[c]);
    CHECK(s != NULL);
    if (s == NULL)
        return test_summary("slab");
    static char owner;   /* a heap address; the slab layer never reads it */
    td_slab_init(s, c, (struct heap_s *)&owner);
    void *o[6];
    for (int i = 0; i < 6; i++) {
        if (s->free == NULL)
            td_slab_extend(s);
        o[i] = td_slab_pop(s);
        CHECK(o[i] != NULL);
    }
    while (s->free != NULL)
        (void)td_slab_pop(s);   /* nothing free: only collects refill it */
    int32_t used = s->used;

    /* Unarmed: the first push into an empty list asks for a kick only. */
    CHECK(td_slab_push_remote(s, o[0]) == TD_PUSH_FIRST);
    CHECK(td_slab_push_remote(s, o[1]) == TD_PUSH_QUIET);
    uint64_t w = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
    CHECK(td_rl_count(w) == 2 && !(w & (TD_RL_WANT | TD_RL_NOTIFIED)));
    CHECK(td_rl_head(s, w) == o[1] && td_rl_tail_index(w) == td_slab_index(s, o[0]));
    uint32_t n = 99;
    CHECK(td_slab_collect_own(s, &n) && n == 2);
    CHECK(__atomic_load_n(&s->remote, __ATOMIC_RELAXED) == 0);
    CHECK(s->free == o[1] && list_len(s) == 2);
    s->used -= (int32_t)n;
    CHECK(td_slab_collect_own(s, &n) && n == 0);   /* empty: nothing */
    CHECK(td_slab_pop(s) == o[1] && td_slab_pop(s) == o[0]);
    CHECK(s->used == used);

    /* Armed: exactly one push notifies, and the flag it leaves stays. */
    __atomic_store_n(&s->remote, TD_RL_WANT, __ATOMIC_RELAXED);
    CHECK(td_slab_collect(s) == 0);   /* an armed empty list stays armed */
    CHECK(td_slab_collect_own(s, &n) && n == 0);
    CHECK(__atomic_load_n(&s->remote, __ATOMIC_RELAXED) == TD_RL_WANT);
    CHECK(td_slab_push_remote(s, o[2]) == TD_PUSH_NOTIFY);
    w = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
    CHECK(td_rl_count(w) == 1 && (w & TD_RL_NOTIFIED) && !(w & TD_RL_WANT));
    CHECK(td_slab_push_remote(s, o[3]) == TD_PUSH_QUIET);
    CHECK(td_slab_push_remote(s, o[4]) == TD_PUSH_QUIET);
    w = __atomic_load_n(&s->remote, __ATOMIC_RELAXED);
    CHECK(td_rl_count(w) == 3 && (w & TD_RL_NOTIFIED));
    CHECK(td_rl_head(s, w) == o[4] && td_rl_tail_index(w) == td_slab_index(s, o[2]));
    /* The owner leaves a notified list to the notify stack's taker. */
    n = 99;
    CHECK(!td_slab_collect_own(s, &n) && n == 99);
    CHECK(__atomic_load_n(&s->remote, __ATOMIC_RELAXED) == w && s->free == NULL);
    /* The taker's collect takes all three and clears both flags. */
    CHECK(td_slab_collect(s) == 3);
    s->used -= 3;
    CHECK(__atomic_load_n(&s->remote, __ATOMIC_RELAXED) == 0);
    CHECK(list_len(s) == 3 && s->free == o[4]);
    for (int i = 4; i >= 2; i--) {
        CHECK(td_slab_marked_free(o[i]));
        CHECK(td_slab_pop(s) == o[i]);
    }
    /* Once taken, the next push is a plain first one again. */
    CHECK(td_slab_push_remote(s, o[5]) == TD_PUSH_FIRST);
    CHECK(td_slab_collect(s) == 1);
    s->used -= 1;
    CHECK(s->used == used - 1 && s->free == o[5]);   /* o[5] waits on the free list */
    return test_summary("slab");
}
