/*
 * Workload 7: malloc_trim(0) on a fragmented heap, with a bystander thread.
 *
 *   trim TOTAL_BYTES [KEEP_EVERY=16]
 *
 * Allocates TOTAL_BYTES (default 1.2 GiB) in mixed sizes (by bytes: 30%
 * small 16..512 B, 40% medium 1..32 KiB, 30% large 64 KiB..1 MiB), all
 * written, then frees all but every KEEP_EVERY-th object in allocation order,
 * so survivors are scattered over the whole heap. A bystander thread keeps
 * replacing small objects in its own window throughout. The main thread
 * calls malloc_trim(0) and times it; the bystander records the longest gap
 * between two of its loop iterations that overlaps the trim (and, for
 * comparison, the longest gap before it), and how many gaps of over 1 ms
 * it saw during the trim and per second before it: on a noisy machine the
 * longest gap is mostly the scheduler's, and the counts show whether the
 * trim adds any. trim_impl names the object that
 * provides malloc_trim (libc.so.6 when the preloaded allocator has none, in
 * which case the call reaches glibc's empty heap and releases nothing).
 *
 * Prints: total_mb= live_mb= trim_ms= rss_before_mb= rss_after_mb=
 *         stall_max_us= base_gap_max_us= stalls_1ms= base_stalls_1ms_per_s=
 *         bystander_iters= trim_impl=
 */
#include "common.h"
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

static atomic_int phase; /* 0 before trim, 1 trimming, 2 after, 3 stop */
static uint64_t gap_trim_ns, gap_base_ns, iters;
static uint64_t stalls_trim, stalls_base, base_ns;   /* gaps over 1 ms; time counted as base */
static atomic_int ready;
static atomic_int base_on;   /* the baseline window: after the frees, before the trim */

static void *bystander(void *arg)
{
    (void)arg;
    enum { W = 256 };
    char *slot[W];
    rng_t r;
    rng_seed(&r, 7);
    for (int i = 0; i < W; i++)
        slot[i] = malloc(64);
    atomic_store(&ready, 1);
    uint64_t last = now_ns();
    int last_phase = atomic_load(&phase);
    for (;;) {
        uint64_t x = rng_next(&r);
        size_t i = (size_t)(x % W);
        size_t sz = 16 + (size_t)((x >> 16) % 497);
        free(slot[i]);
        slot[i] = malloc(sz);
        slot[i][0] = (char)x;
        uint64_t now = now_ns();
        int ph = atomic_load_explicit(&phase, memory_order_acquire);
        uint64_t gap = now - last;
        if (last_phase == 1 || ph == 1 || (last_phase == 0 && ph == 2)) {
            if (gap > gap_trim_ns)
                gap_trim_ns = gap;
            stalls_trim += gap > 1000000;
        } else if (ph == 0 && atomic_load_explicit(&base_on, memory_order_relaxed)) {
            if (gap > gap_base_ns)
                gap_base_ns = gap;
            stalls_base += gap > 1000000;
            base_ns += gap;
        }
        iters++;
        last = now;
        last_phase = ph;
        if (ph == 3)
            break;
    }
    for (int i = 0; i < W; i++)
        free(slot[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    uint64_t total = (uint64_t)arg_num(argc, argv, 1, 1.2 * 1024 * 1024 * 1024);
    size_t keep_every = (size_t)arg_num(argc, argv, 2, 16);
    if (keep_every < 1)
        keep_every = 1;

    /* class by byte share: probability proportional to share / mean size */
    const double share[3] = { 0.3, 0.4, 0.3 };
    const double mean[3] = { 264.0, 16.5 * 1024, 544.0 * 1024 };
    double w[3], wsum = 0;
    for (int c = 0; c < 3; c++)
        wsum += (w[c] = share[c] / mean[c]);
    size_t cap = (size_t)((double)total * wsum * 1.3) + 64;
    char **p = malloc(cap * sizeof *p);
    uint32_t *size = malloc(cap * sizeof *size);
    rng_t r;
    rng_seed(&r, 1200);
    size_t n = 0;
    uint64_t done = 0;
    while (done < total && n < cap) {
        double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0 * wsum;
        size_t sz;
        if (u < w[0])
            sz = 16 + (size_t)rng_below(&r, 497);
        else if (u < w[0] + w[1])
            sz = 1024 + (size_t)rng_below(&r, 31 * 1024 + 1);
        else
            sz = (64u << 10) + (size_t)rng_below(&r, (960u << 10) + 1);
        p[n] = malloc(sz);
        if (sz > 4096)
            touch_pages(p[n], sz);
        else
            memset(p[n], 3, sz);
        size[n++] = (uint32_t)sz;
        done += sz;
    }

    pthread_t th;
    pthread_create(&th, NULL, bystander, NULL);
    while (!atomic_load(&ready))
        sleep_ns(100000);

    uint64_t live = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % keep_every == 0)
            live += size[i];
        else
            free(p[i]);
    }
    atomic_store(&base_on, 1);
    sleep_ns(200 * 1000000ull); /* bystander baseline */
    long before = rss_kb();
    atomic_store_explicit(&phase, 1, memory_order_release);
    uint64_t t0 = now_ns();
    malloc_trim(0);
    uint64_t t1 = now_ns();
    atomic_store_explicit(&phase, 2, memory_order_release);
    long after = rss_kb();
    sleep_ns(50 * 1000000ull);
    atomic_store(&phase, 3);
    pthread_join(th, NULL);

    const char *impl = "?";
    Dl_info di;
    void *sym = dlsym(RTLD_DEFAULT, "malloc_trim");
    if (sym && dladdr(sym, &di) && di.dli_fname) {
        impl = strrchr(di.dli_fname, '/');
        impl = impl ? impl + 1 : di.dli_fname;
    }
    printf("total_mb=%.0f live_mb=%.1f trim_ms=%.3f rss_before_mb=%.1f rss_after_mb=%.1f "
           "stall_max_us=%.1f base_gap_max_us=%.1f stalls_1ms=%llu base_stalls_1ms_per_s=%.1f "
           "bystander_iters=%llu trim_impl=%s\n",
           (double)done / 1048576.0, (double)live / 1048576.0, (double)(t1 - t0) / 1e6,
           before / 1024.0, after / 1024.0, (double)gap_trim_ns / 1e3, (double)gap_base_ns / 1e3,
           (unsigned long long)stalls_trim,
           base_ns ? (double)stalls_base * 1e9 / (double)base_ns : 0.0,
           (unsigned long long)iters, impl);
    for (size_t i = 0; i < n; i += keep_every)
        free(p[i]);
    free(p);
    free(size);
    return 0;
}
