/*
 * madvise_cost: what one range costs to give back, with madvise (one call,
 * so one TLB flush, per range) and with process_madvise on the process
 * itself (one call per batch of ranges). Another thread of the process
 * spins on its own memory meanwhile, as in a real program: the TLB flush
 * then has to reach the other CPU.
 *
 *   cc -O2 -pthread bench/tools/madvise_cost.c -o madvise_cost
 *   ./madvise_cost [RANGES=16384] [PAGES_PER_RANGE=2]
 *
 * Prints one line per batch size: per=N us_per_call= us_per_range=
 * (per=1 is plain madvise). Needs Linux 6.14 for the batched lines.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "spinner.h"

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 0) : 16384;
    size_t pages = argc > 2 ? strtoul(argv[2], NULL, 0) : 2;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), stride = (pages + 1) * pg;
    static const int per[] = { 1, 16, 64, 256, 1024 };
    char *mem = mmap(NULL, n * stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pthread_t th;
    if (mem == MAP_FAILED || spinner_start(&th) != 0)
        return 1;
    static struct iovec v[1024];
    for (size_t k = 0; k < sizeof per / sizeof *per; k++) {
        memset(mem, 1, n * stride);
        usleep(10000);
        size_t calls = 0, i = 0;
        double t0 = now_s();
        while (i < n) {
            if (per[k] == 1) {
                madvise(mem + i * stride, pages * pg, MADV_DONTNEED);
                i++;
            } else {
                int m = 0;
                for (; m < per[k] && i < n; m++, i++) {
                    v[m].iov_base = mem + i * stride;
                    v[m].iov_len = pages * pg;
                }
                if (syscall(SYS_process_madvise, -10000 /* PIDFD_SELF */, v, (size_t)m,
                            MADV_DONTNEED, 0u) < 0) {
                    printf("per=%d process_madvise: %s\n", per[k], strerror(errno));
                    break;
                }
            }
            calls++;
        }
        double t = now_s() - t0;
        if (i == n)
            printf("per=%d us_per_call=%.1f us_per_range=%.2f\n", per[k], t / (double)calls * 1e6,
                   t / (double)n * 1e6);
    }
    spinner_end(th);
    return 0;
}
