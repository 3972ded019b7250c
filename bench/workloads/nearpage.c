/*
 * Workload 4: near-page random sizes (Xen xmalloc / compcache pattern).
 *
 *   nearpage POPULATION OPS [MAX_SIZE=4608]
 *
 * Keeps POPULATION live objects of uniformly random size 1..MAX_SIZE bytes
 * (many just under or over a 4 KiB page), each fully written, and replaces a
 * random one per operation. The free+malloc pair of each operation after the
 * first 10% (warm-up) is timed with the TSC into a log-linear histogram.
 * At the end, with the population live, VmRSS is compared with the sum of
 * requested sizes.
 *
 * Prints: pop= ops= secs= mops= live_mb= rss_mb= rss_over_live= p50_ns= p99_ns=
 *         p999_ns= p9999_ns= max_ns=
 */
#include "common.h"

static hist_t hist;

int main(int argc, char **argv)
{
    size_t pop = (size_t)arg_num(argc, argv, 1, 200000);
    uint64_t ops = (uint64_t)arg_num(argc, argv, 2, 2e6);
    size_t max_size = (size_t)arg_num(argc, argv, 3, 4608);
    if (pop < 1)
        pop = 1;
    double tpn = ticks_per_ns();

    char **slot = malloc(pop * sizeof *slot);
    uint32_t *size = malloc(pop * sizeof *size);
    rng_t r;
    rng_seed(&r, 4096);
    uint64_t live = 0;
    for (size_t i = 0; i < pop; i++) {
        size_t sz = 1 + (size_t)rng_below(&r, max_size);
        slot[i] = malloc(sz);
        memset(slot[i], (int)i, sz);
        size[i] = (uint32_t)sz;
        live += sz;
    }

    uint64_t warm = ops / 10;
    uint64_t t0 = now_ns();
    for (uint64_t k = 0; k < ops; k++) {
        uint64_t x = rng_next(&r);
        size_t i = (size_t)(((unsigned __int128)x * pop) >> 64);
        size_t sz = 1 + (size_t)((x >> 8) % max_size);
        uint64_t a = ticks();
        free(slot[i]);
        char *p = malloc(sz);
        uint64_t b = ticks();
        memset(p, (int)k, sz);
        live += sz - size[i];
        slot[i] = p;
        size[i] = (uint32_t)sz;
        if (k >= warm)
            hist_add(&hist, (uint64_t)((double)(b - a) / tpn));
    }
    double secs = secs_since(t0);
    long rss = rss_kb();

    printf("pop=%zu ops=%llu secs=%.4f mops=%.3f live_mb=%.1f rss_mb=%.1f rss_over_live=%.3f "
           "p50_ns=%llu p99_ns=%llu p999_ns=%llu p9999_ns=%llu max_ns=%llu\n",
           pop, (unsigned long long)ops, secs, (double)ops / secs / 1e6, (double)live / 1048576.0,
           (double)rss / 1024.0, (double)rss * 1024.0 / (double)live,
           (unsigned long long)hist_pct(&hist, 50), (unsigned long long)hist_pct(&hist, 99),
           (unsigned long long)hist_pct(&hist, 99.9), (unsigned long long)hist_pct(&hist, 99.99),
           (unsigned long long)hist.max);
    for (size_t i = 0; i < pop; i++)
        free(slot[i]);
    free(slot);
    free(size);
    return 0;
}
