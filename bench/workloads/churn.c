/*
 * Workload 1: small-object churn on one thread.
 *
 *   churn OPS [WINDOW=4096] [MODE=malloc|dry]
 *
 * Fills a window of WINDOW live objects (random sizes 8..256 B), then does
 * OPS replacements: free a random slot, malloc a new random size there and
 * write to it. Then frees everything. Deterministic (fixed xorshift seed), so
 * under callgrind the instruction count of a run is reproducible: the
 * difference between two runs with different OPS divided by the difference
 * in OPS is the cost of one malloc+free pair plus the loop. MODE=dry runs the
 * same loop without calling the allocator, to measure the loop alone.
 *
 * Prints: ops= window= secs= mops= ns_per_pair=
 */
#include "common.h"

#define MIN_SIZE 8
#define MAX_SIZE 256

static char dry_arena[MAX_SIZE * 64];

static inline __attribute__((always_inline)) void run(void **slot, size_t window, uint64_t ops,
                                                       rng_t *r, int dry)
{
    for (uint64_t k = 0; k < ops; k++) {
        uint64_t x = rng_next(r);
        size_t i = (size_t)(((unsigned __int128)x * window) >> 64);
        size_t sz = MIN_SIZE + (size_t)((x >> 8) % (MAX_SIZE - MIN_SIZE + 1));
        char *p;
        if (dry) {
            p = dry_arena + (sz & ~(size_t)7);
            escape(slot[i]);
        } else {
            free(slot[i]);
            p = malloc(sz);
        }
        p[0] = (char)k;
        slot[i] = p;
    }
}

int main(int argc, char **argv)
{
    uint64_t ops = (uint64_t)arg_num(argc, argv, 1, 1e7);
    size_t window = (size_t)arg_num(argc, argv, 2, 4096);
    int dry = argc > 3 && strcmp(argv[3], "dry") == 0;
    if (window < 1)
        window = 1;

    void **slot = calloc(window, sizeof *slot);
    rng_t r;
    rng_seed(&r, 42);
    for (size_t i = 0; i < window; i++) {
        size_t sz = MIN_SIZE + (size_t)rng_below(&r, MAX_SIZE - MIN_SIZE + 1);
        char *p = dry ? dry_arena : malloc(sz);
        p[0] = 1;
        slot[i] = p;
    }

    uint64_t t0 = now_ns();
    if (dry)
        run(slot, window, ops, &r, 1);
    else
        run(slot, window, ops, &r, 0);
    double secs = secs_since(t0);

    if (!dry)
        for (size_t i = 0; i < window; i++)
            free(slot[i]);
    free(slot);

    printf("ops=%llu window=%zu secs=%.4f mops=%.2f ns_per_pair=%.2f\n", (unsigned long long)ops,
           window, secs, secs > 0 ? (double)ops / secs / 1e6 : 0.0,
           ops ? secs * 1e9 / (double)ops : 0.0);
    return 0;
}
