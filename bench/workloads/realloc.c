/*
 * Workload 8b: realloc growth.
 *
 *   realloc ROUNDS [VECTORS=8] [MAX_BYTES=64M]
 *
 * Per round, VECTORS vectors start at 16 B and grow by doubling with
 * realloc, in turn (so their growth interleaves in the heap), each new half
 * written as a vector's push_back would, until all reach MAX_BYTES; then all
 * are freed. Reports how often realloc had to move the block.
 *
 * Prints: rounds= vectors= max_mb= secs= reallocs= moved_pct=
 */
#include "common.h"

int main(int argc, char **argv)
{
    long rounds = (long)arg_num(argc, argv, 1, 4);
    int nvec = (int)arg_num(argc, argv, 2, 8);
    size_t max = (size_t)arg_num(argc, argv, 3, 64.0 * 1024 * 1024);
    if (nvec < 1)
        nvec = 1;
    char *v[nvec];
    size_t len[nvec];
    uint64_t reallocs = 0, moved = 0;
    uint64_t t0 = now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int j = 0; j < nvec; j++) {
            len[j] = 16;
            v[j] = malloc(16);
            memset(v[j], j, 16);
        }
        for (size_t cur = 16; cur < max; cur *= 2) {
            for (int j = 0; j < nvec; j++) {
                size_t nl = cur * 2 > max ? max : cur * 2;
                char *np = realloc(v[j], nl);
                reallocs++;
                moved += np != v[j];
                memset(np + len[j], (int)r, nl - len[j]);
                v[j] = np;
                len[j] = nl;
            }
        }
        for (int j = 0; j < nvec; j++)
            free(v[j]);
    }
    double secs = secs_since(t0);
    printf("rounds=%ld vectors=%d max_mb=%.1f secs=%.4f reallocs=%llu moved_pct=%.1f\n", rounds,
           nvec, (double)max / 1048576.0, secs, (unsigned long long)reallocs,
           reallocs ? 100.0 * (double)moved / (double)reallocs : 0.0);
    return 0;
}
