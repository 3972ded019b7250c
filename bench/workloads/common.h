/*
 * bench/workloads/common.h: helpers shared by the benchmark workloads.
 *
 * Everything here avoids calling malloc itself (no stdio on the measuring
 * paths, /proc read with open/read into stack buffers), so the figures a
 * workload prints are about its own allocation pattern and nothing else.
 * Each workload prints exactly one line of `key=value` pairs on stdout;
 * bench/run.sh parses it.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- deterministic PRNG (xorshift64*) ------------------------------- */

typedef struct {
    uint64_t s;
} rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed)
{
    /* splitmix64 step so that small seeds give well-mixed states */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    r->s = (z ^ (z >> 31)) | 1;
}

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* uniform in [0, n) without division (Lemire's multiply-shift) */
static inline uint64_t rng_below(rng_t *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* ---- time ------------------------------------------------------------ */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double secs_since(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e9;
}

static inline void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- /proc readers (no malloc) ---------------------------------------- */

/* Value in kB of field `key` (e.g. "VmRSS:") of a /proc file, or -1. */
static inline long proc_field_kb(const char *path, const char *key)
{
    char buf[8192];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = 0, r;
    while (n < (ssize_t)sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += r;
    close(fd);
    buf[n < 0 ? 0 : n] = 0;
    size_t klen = strlen(key);
    for (char *p = buf; p && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, key, klen) == 0)
            return strtol(p + klen, NULL, 10);
    }
    return -1;
}

static inline long rss_kb(void) { return proc_field_kb("/proc/self/status", "VmRSS:"); }

/* ---- argument helpers ------------------------------------------------- */

/* Accepts plain integers and forms like 1e6, 200k, 64M, 1G (binary k/M/G). */
static inline double arg_num(int argc, char **argv, int i, double dflt)
{
    if (i >= argc)
        return dflt;
    char *end;
    double v = strtod(argv[i], &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    default: break;
    }
    return v;
}

/* ---- touching memory -------------------------------------------------- */

/* Write one byte per 4 KiB page (and the last byte): commits the pages
   without the cost of a full memset. */
static inline void touch_pages(void *p, size_t n)
{
    volatile char *c = p;
    for (size_t i = 0; i < n; i += 4096)
        c[i] = (char)i;
    if (n)
        c[n - 1] = 1;
}

/* ---- latency histogram (log-linear, in ns) ----------------------------- */
/*
 * Bucket b covers values whose top bit is e = b / SUB + (SUB_BITS) ... kept
 * simple: values < SUB are exact; above, each power of two is split into SUB
 * linear sub-buckets, so the relative error is below 1/SUB (3%).
 */
#define HIST_SUB_BITS 5
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (64 * HIST_SUB)

typedef struct {
    uint64_t count[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} hist_t;

static inline unsigned hist_bucket(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned e = 63 - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return (e - HIST_SUB_BITS + 1) * HIST_SUB + sub;
}

/* upper bound of a bucket's range */
static inline uint64_t hist_bucket_hi(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned e = b / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t sub = b % HIST_SUB;
    return ((HIST_SUB + sub + 1) << (e - HIST_SUB_BITS)) - 1;
}

static inline void hist_add(hist_t *h, uint64_t v)
{
    h->count[hist_bucket(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static inline uint64_t hist_pct(const hist_t *h, double pct)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)((double)h->total * pct / 100.0);
    if (want >= h->total)
        want = h->total - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h->count[b];
        if (seen > want) {
            uint64_t hi = hist_bucket_hi(b);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

/* ---- cycle counter calibrated to ns ----------------------------------- */

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
static inline uint64_t ticks(void) { return __rdtsc(); }
#else
static inline uint64_t ticks(void) { return now_ns(); }
#endif

/* ticks per ns, measured over ~20 ms */
static inline double ticks_per_ns(void)
{
    uint64_t n0 = now_ns(), t0 = ticks();
    sleep_ns(20 * 1000 * 1000);
    uint64_t n1 = now_ns(), t1 = ticks();
    double r = (double)(t1 - t0) / (double)(n1 - n0);
    return r > 0 ? r : 1.0;
}

/* Keep the compiler from removing stores into objects we never read. */
static inline void escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

#endif
