/*
 * Workload 5: hugepage tails.
 *
 *   hugetail NOBJ OPS
 *
 * A heap of NOBJ objects of 2.1 MiB, 5 MiB and 10.1 MiB (chosen at random),
 * each fully written when allocated, churned by OPS random replacements.
 * Sizes just over a multiple of the 2 MiB hugepage are the worst case for a
 * hugepage-backed heap that rounds each request up to whole hugepages.
 * At the end, with the heap live: VmRSS over requested bytes, and the share
 * of RSS backed by transparent hugepages (AnonHugePages in smaps_rollup).
 *
 * Prints: nobj= ops= secs= alloc_ms= req_mb= rss_mb= rss_over_req= thp_mb= thp_share=
 */
#include "common.h"

#define MiB (1024.0 * 1024.0)
static const size_t sizes[] = { (size_t)(2.1 * MiB), (size_t)(5 * MiB), (size_t)(10.1 * MiB) };

int main(int argc, char **argv)
{
    size_t nobj = (size_t)arg_num(argc, argv, 1, 48);
    uint64_t ops = (uint64_t)arg_num(argc, argv, 2, 300);
    if (nobj < 1)
        nobj = 1;
    double tpn = ticks_per_ns();
    char **slot = malloc(nobj * sizeof *slot);
    size_t *size = malloc(nobj * sizeof *size);
    rng_t r;
    rng_seed(&r, 2101);
    uint64_t req = 0, alloc_ticks = 0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < nobj; i++) {
        size_t sz = sizes[rng_below(&r, 3)];
        uint64_t a = ticks();
        slot[i] = malloc(sz);
        alloc_ticks += ticks() - a;
        memset(slot[i], 1, sz);
        size[i] = sz;
        req += sz;
    }
    for (uint64_t k = 0; k < ops; k++) {
        size_t i = (size_t)rng_below(&r, nobj);
        size_t sz = sizes[rng_below(&r, 3)];
        uint64_t a = ticks();
        free(slot[i]);
        char *p = malloc(sz);
        alloc_ticks += ticks() - a;
        memset(p, (int)k, sz);
        req += sz - size[i];
        slot[i] = p;
        size[i] = sz;
    }
    double secs = secs_since(t0);
    long rss = proc_field_kb("/proc/self/smaps_rollup", "Rss:");
    long thp = proc_field_kb("/proc/self/smaps_rollup", "AnonHugePages:");
    if (rss < 0)
        rss = rss_kb();
    printf("nobj=%zu ops=%llu secs=%.4f alloc_ms=%.2f req_mb=%.1f rss_mb=%.1f rss_over_req=%.3f "
           "thp_mb=%.1f thp_share=%.3f\n",
           nobj, (unsigned long long)ops, secs, (double)alloc_ticks / tpn / 1e6, (double)req / MiB,
           (double)rss / 1024.0, (double)rss * 1024.0 / (double)req, (double)thp / 1024.0,
           rss > 0 && thp >= 0 ? (double)thp / (double)rss : 0.0);
    for (size_t i = 0; i < nobj; i++)
        free(slot[i]);
    free(slot);
    free(size);
    return 0;
}
