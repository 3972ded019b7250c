/* os_test.c — the os layer's batched unbacking (td_os_unback_add/flush),
   linked with the real src/os.c: ranges merge when adjacent, every range
   in a batch is unbacked and nothing next to it, a batch larger than
   TD_UNBACK_MAX flushes by itself, and a range the kernel refuses (a hole
   unmapped under it) does not keep the ranges after it from going back.
   Each case runs with process_madvise batching on and off. */
#define _GNU_SOURCE
#include "../../src/os.h"
#include "testhelper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096u

static int resident(const char *p)
{
    unsigned char v = 0;
    if (mincore((void *)p, PG, &v) != 0)
        return -1;
    return v & 1;
}

/* Pages 0..n-1, each filled with its number + 1 (never zero). */
static char *fresh(size_t n)
{
    char *m = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        abort();
    for (size_t i = 0; i < n; i++)
        memset(m + i * PG, (int)(i % 250) + 1, PG);
    return m;
}

/* Page i was unbacked iff want[i]: zero and not resident, else intact. */
static void expect(const char *what, const char *m, size_t n, const unsigned char *want)
{
    int bad = 0;
    for (size_t i = 0; i < n && bad < 3; i++) {
        const char *p = m + i * PG;
        if (want[i]) {
            /* mincore first: reading maps the zero page, which counts. */
            int r = resident(p);
            if (r != 0 || p[0] != 0 || p[PG - 1] != 0) {
                CHECK_MSG(0, "%s: page %zu should be unbacked (byte %d)", what, i, p[0]);
                bad++;
            }
        } else if (p[0] != (char)((i % 250) + 1) || p[PG - 1] != p[0]) {
            CHECK_MSG(0, "%s: page %zu should be intact (byte %d)", what, i, p[0]);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s", what);
}

static void t_merge_and_scatter(void)
{
    enum { N = 64 };
    char *m = fresh(N);
    unsigned char want[N] = { 0 };
    td_unback_batch_t b = { 0 };
    /* 3, 4, 5 as three adds: one range. */
    for (int i = 3; i <= 5; i++) {
        td_os_unback_add(&b, m + (size_t)i * PG, PG);
        want[i] = 1;
    }
    CHECK_MSG(b.n == 1 && b.bytes == 3 * PG, "adjacent adds merge: n %d bytes %zu", b.n, b.bytes);
    /* Every third page from 10: separate ranges. */
    for (int i = 10; i < N; i += 3) {
        td_os_unback_add(&b, m + (size_t)i * PG, PG);
        want[i] = 1;
    }
    CHECK(b.n == 1 + (N - 10 + 2) / 3);
    /* Nothing happens before the flush. */
    CHECK(resident(m + 3 * PG) == 1 && m[3 * PG] == 4);
    td_os_unback_flush(&b);
    CHECK(b.n == 0 && b.bytes == 0);
    expect("scattered batch", m, N, want);
    /* A range not on page bounds is rounded inward. */
    td_os_unback_add(&b, m + 1 * PG + 1, 2 * PG);   /* covers only page 2 whole */
    td_os_unback_flush(&b);
    CHECK_MSG(resident(m + 2 * PG) == 0 && m[2 * PG] == 0, "inward rounding: page 2 kept");
    CHECK_MSG(m[1 * PG] == 2 && m[2 * PG - 1] == 2, "inward rounding: page 1 touched");
    munmap(m, N * PG);
}

static void t_overflow(void)
{
    enum { N = 3 * TD_UNBACK_MAX + 7 };
    char *m = fresh(2 * N);
    unsigned char want[2 * N] = { 0 };
    td_unback_batch_t b = { 0 };
    for (int i = 0; i < N; i++) {
        td_os_unback_add(&b, m + (size_t)(2 * i) * PG, PG);
        want[2 * i] = 1;
        CHECK(b.n >= 1 && b.n <= TD_UNBACK_MAX);
    }
    td_os_unback_flush(&b);
    expect("more ranges than a batch holds", m, 2 * N, want);
    munmap(m, 2 * N * PG);
}

static void t_hole(void)
{
    enum { N = 40 };
    char *m = fresh(N);
    unsigned char want[N] = { 0 };
    td_unback_batch_t b = { 0 };
    for (int i = 0; i < N; i += 2) {
        td_os_unback_add(&b, m + (size_t)i * PG, PG);
        want[i] = 1;
    }
    /* The kernel refuses the range at page 10: it is no longer mapped. */
    munmap(m + 10 * PG, PG);
    td_os_unback_flush(&b);
    for (int i = 0; i < N; i++) {
        if (i == 10)
            continue;
        const char *p = m + (size_t)i * PG;
        if (want[i])
            CHECK_MSG(resident(p) == 0 && p[0] == 0, "page %d after the hole not unbacked", i);
        else
            CHECK_MSG(p[0] == (char)((i % 250) + 1), "page %d not intact", i);
    }
    munmap(m, N * PG);
}

/* td_os_balloon_reports on fake sysfs trees: bit 5 of a virtio* entry's
   features decides, other entries and entries without the file are
   skipped, and a directory longer than one getdents64 buffer is read to
   its end. */
static void put(const char *dir, const char *name, const char *features)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(mkdir(path, 0700) == 0);
    if (features == NULL)
        return;
    snprintf(path, sizeof path, "%s/%s/features", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "%s\n", features);
    fclose(f);
}

static void t_balloon_reports(void)
{
    char dir[] = "/tmp/tide-balloon.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK_MSG(!td_os_balloon_reports("/nonexistent/virtio_balloon"), "a missing directory reports");
    CHECK_MSG(!td_os_balloon_reports(dir), "an empty directory reports");
    put(dir, "virtio0", "0110010000000000");   /* REPORTING is bit 5: set */
    CHECK_MSG(td_os_balloon_reports(dir), "bit 5 set, not seen");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s/virtio0", dir);
    CHECK(system(cmd) == 0);
    put(dir, "virtio1", "0110000000000000");   /* bit 5 clear */
    put(dir, "bind", NULL);
    put(dir, "module", "0000010000");          /* not virtio*: ignored */
    put(dir, "virtio2", NULL);                 /* no features file */
    put(dir, "virtio3", "01100");              /* too short for bit 5 */
    CHECK_MSG(!td_os_balloon_reports(dir), "reports without a virtio* entry with bit 5");
    /* Enough entries to need several getdents64 calls, the one that
       counts made last. */
    for (int i = 0; i < 150; i++) {
        char name[64];
        snprintf(name, sizeof name, "virtio_padding_entry_%03d", i);
        put(dir, name, "0000000000");
    }
    CHECK_MSG(!td_os_balloon_reports(dir), "reports with 150 entries of bit 5 clear");
    put(dir, "virtio99", "0000011111");
    CHECK_MSG(td_os_balloon_reports(dir), "bit 5 in one of 155 entries, not seen");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    td_os_init();
    t_balloon_reports();
    for (int batch = 1; batch >= 0; batch--) {
        td_os_set_unback_batch(batch != 0);
        printf("os: process_madvise batching %s\n", batch ? "on" : "off");
        t_merge_and_scatter();
        t_overflow();
        t_hole();
    }
    td_os_set_purge_free(true);
    td_os_set_unback_batch(true);
    {
        /* MADV_FREE: the contents may stay until memory is short, so only
           check that the calls succeed and leave the neighbours alone. */
        char *m = fresh(8);
        td_unback_batch_t b;
        memset(&b, 0, sizeof b);
        td_os_unback_add(&b, m + PG, PG);
        td_os_unback_add(&b, m + 4 * PG, PG);
        td_os_unback_flush(&b);
        CHECK(m[0] == 1 && m[2 * PG] == 3 && m[3 * PG] == 4 && m[5 * PG] == 6);
        munmap(m, 8 * PG);
    }
    return test_summary("os");
}
