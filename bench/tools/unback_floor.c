/*
 * unback_floor: the least the kernel takes to give back a given amount of
 * memory: one madvise(MADV_DONTNEED) over one contiguous, fully written
 * range, while another thread of the process spins on its own memory (so
 * the TLB flush has to reach the other CPU, as in a real program). No
 * allocator can release that many bytes faster with that page size; a
 * fragmented heap pays more, per range.
 *
 *   cc -O2 -pthread bench/tools/unback_floor.c -o unback_floor
 *   ./unback_floor [MIB=950] [HUGE=0]
 *
 * HUGE=1 asks for transparent hugepages first (MADV_HUGEPAGE; THP must be
 * in madvise or always mode). Prints: mib= huge= ms= us_per_4k_page=
 * anon_huge_kb= (AnonHugePages of the range before it is given back).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "spinner.h"

static long anon_huge_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 950;
    int huge = argc > 2 ? atoi(argv[2]) : 0;
    size_t len = mib << 20, align = (size_t)2 << 20;
    char *m = mmap(NULL, len + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    char *p = (char *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
    if (huge)
        madvise(p, len, MADV_HUGEPAGE);
    memset(p, 1, len);
    long ahp = anon_huge_kb();
    pthread_t th;
    if (spinner_start(&th) != 0)
        return 1;
    double t0 = now_s();
    if (madvise(p, len, MADV_DONTNEED) != 0)
        perror("madvise");
    double t1 = now_s();
    spinner_end(th);
    printf("mib=%zu huge=%d ms=%.1f us_per_4k_page=%.3f anon_huge_kb=%ld\n", mib, huge,
           (t1 - t0) * 1e3, (t1 - t0) * 1e6 / (double)(len >> 12), ahp);
    return 0;
}
