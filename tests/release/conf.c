/* TIDEMALLOC_CONF: read once at init; bad keys are warned about and ignored.
 *
 * Each case runs a child (a sub of this program) with the variable set and
 * captures its stdout and stderr:
 *
 *   t_conf_three_bad     decay_ms:abc,bogus:1,background:maybe gives exactly
 *                        three lines starting "tidemalloc: TIDEMALLOC_CONF:",
 *                        one naming each key, no other allocator line; the
 *                        child runs normally and exits 0, with the defaults
 *                        (the background thread starts once it frees)
 *   t_conf_each_bad      one malformed or unknown key at a time (empty value,
 *                        negative or trailing junk, unknown purge mode, no
 *                        colon, unknown key): exactly one warning naming it
 *   t_conf_valid         valid settings print nothing, and background
 *                        false/0/true/1 decides whether the thread appears
 *   t_conf_bad_and_good  bogus:1,background:false: one warning, and the
 *                        valid key still applies (no thread)
 *   t_conf_thp           thp:true marks an 8 MiB block's mapping for huge
 *                        pages (VmFlags hg in /proc/self/smaps), thp:false
 *                        does not, and auto (also by default) does unless a
 *                        virtio balloon offers free page reporting
 */
#include "release.h"

#include <sys/mman.h>

#define PREFIX "tidemalloc: TIDEMALLOC_CONF:"

/* The child: allocates and frees, then checks the background thread against
   REL_EXPECT_BG (1: appears within 10 s, 0: absent after 300 ms). */
static int sub_conf_child(void)
{
    static rel_burst_t b;
    rel_burst_init(&b, 8 * MIB);
    rel_burst_alloc(&b, 8 * MIB, 1, true);
    rel_burst_verify(&b);
    rel_burst_free(&b);
    rel_burst_done(&b);
    const char *e = getenv("REL_EXPECT_BG");
    if (e && strcmp(e, "1") == 0)
        CHECKF(rel_wait_bg(10000) == 1, "no tide-release thread 10 s after freeing 8 MiB "
                                        "(background should be on)");
    if (e && strcmp(e, "0") == 0) {
        rel_sleep_ms(300);
        CHECKF(rel_bg_threads() == 0, "a tide-release thread, with background off");
    }
    printf("conf child done\n");
    return 0;
}

/* Whether the mapping holding p has VmFlags "hg" (MADV_HUGEPAGE), from
   /proc/self/smaps; -1 if p is in none. */
static int mapping_hg(const void *p)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    CHECK(f != NULL);
    char line[512];
    int in = 0, hg = -1;
    uintptr_t a = (uintptr_t)p;
    while (hg < 0 && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = a >= lo && a < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0)
            hg = strstr(line, " hg") != NULL;
    }
    fclose(f);
    return hg;
}

/* Whether a virtio balloon here offers free page reporting (feature 5),
   the case in which thp:auto does without huge pages. */
static bool balloon_reports(void)
{
    bool yes = false;
    for (int i = 0; i < 64 && !yes; i++) {
        char path[128], feat[64] = "";
        snprintf(path, sizeof path, "/sys/bus/virtio/drivers/virtio_balloon/virtio%d/features", i);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        yes = fgets(feat, sizeof feat, f) != NULL && strlen(feat) > 5 && feat[5] == '1';
        fclose(f);
    }
    return yes;
}

/* The child: REL_EXPECT_HG is 1 or 0, or "auto" (1 unless the balloon
   reports free pages). */
static int sub_thp_child(void)
{
    const char *e = getenv("REL_EXPECT_HG");
    CHECK(e != NULL);
    int want = strcmp(e, "auto") == 0 ? !balloon_reports() : atoi(e);
    char *p = malloc(8 * MIB);
    CHECK(p != NULL);
    memset(p, 1, 8 * MIB);
    int hg = mapping_hg(p);
    CHECKF(hg == want, "TIDEMALLOC_CONF=%s: an 8 MiB block's mapping %s VmFlags hg, want %s",
           getenv("TIDEMALLOC_CONF") ? getenv("TIDEMALLOC_CONF") : "(unset)",
           hg < 0 ? "was not found, so no" : hg ? "has" : "lacks", want ? "it" : "none");
    free(p);
    printf("conf child done\n");
    return 0;
}

static int count_lines(const char *out, const char *prefix)
{
    int n = 0;
    size_t k = strlen(prefix);
    for (const char *s = out; *s;) {
        if (strncmp(s, prefix, k) == 0)
            n++;
        const char *nl = strchr(s, '\n');
        if (!nl)
            break;
        s = nl + 1;
    }
    return n;
}

/* Whether a line starting with prefix contains word. */
static bool line_names(const char *out, const char *prefix, const char *word)
{
    size_t k = strlen(prefix);
    for (const char *s = out; *s;) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        if (strncmp(s, prefix, k) == 0) {
            char line[512];
            if (len >= sizeof line)
                len = sizeof line - 1;
            memcpy(line, s, len);
            line[len] = '\0';
            if (strstr(line, word))
                return true;
        }
        if (!nl)
            break;
        s = nl + 1;
    }
    return false;
}

static void flat(const char *out, char *buf, size_t size)
{
    size_t k = 0;
    for (; out[k] && k + 1 < size; k++)
        buf[k] = out[k];
    buf[k] = '\0';
    for (char *c = buf; *c; c++)
        if (*c == '\n')
            *c = '|';
}

/* Runs the child with conf; checks exit 0, the number of warnings and that
   each of keys is named by one. expect_bg: "1", "0" or NULL. */
static void run_conf(const char *conf, int nwarn, const char *const *keys,
                     const char *expect_bg)
{
    static rel_run_t r;
    if (expect_bg)
        setenv("REL_EXPECT_BG", expect_bg, 1);
    else
        unsetenv("REL_EXPECT_BG");
    rel_spawn(&r, "sub_conf_child", conf, 30);
    rel_expect_ok(&r, "sub_conf_child", conf);
    char out[700];
    flat(r.out, out, sizeof out);
    CHECKF(strstr(r.out, "conf child done\n") != NULL,
           "TIDEMALLOC_CONF=%s: the child did not run to its end: \"%s\"", conf, out);
    int n = count_lines(r.out, PREFIX);
    CHECKF(n == nwarn, "TIDEMALLOC_CONF=%s: %d lines starting \"" PREFIX "\", want %d: \"%s\"",
           conf, n, nwarn, out);
    int all = count_lines(r.out, "tidemalloc:");
    CHECKF(all == nwarn, "TIDEMALLOC_CONF=%s: %d lines starting \"tidemalloc:\", want %d: \"%s\"",
           conf, all, nwarn, out);
    for (int i = 0; keys && keys[i]; i++)
        CHECKF(line_names(r.out, PREFIX, keys[i]),
               "TIDEMALLOC_CONF=%s: no warning names the key \"%s\": \"%s\"", conf, keys[i],
               out);
}

static void t_conf_three_bad(void)
{
    rel_need_tide();
    static const char *const keys[] = {"decay_ms", "bogus", "background", NULL};
    run_conf("decay_ms:abc,bogus:1,background:maybe", 3, keys, "1");
}

static void t_conf_each_bad(void)
{
    rel_need_tide();
    static const struct {
        const char *conf, *key;
    } cases[] = {
        {"decay_ms:", "decay_ms"},          {"decay_ms:-5", "decay_ms"},
        {"decay_ms:12abc", "decay_ms"},     {"purge:madvise", "purge"},
        {"background:yes please", "background"}, {"background", "background"},
        {"nosuchkey:0", "nosuchkey"},       {"decay_ms:100,colour:red", "colour"},
        {"process_madvise:maybe", "process_madvise"}, {"thp:always", "thp"},
        {"membarrier:sometimes", "membarrier"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *keys[] = {cases[i].key, NULL};
        run_conf(cases[i].conf, 1, keys, NULL);
    }
}

static void t_conf_valid(void)
{
    rel_need_tide();
    static const struct {
        const char *conf, *bg;
    } cases[] = {
        {"decay_ms:100,background:false,purge:free", "0"},
        {"decay_ms:0", "1"},
        {"background:true,purge:dontneed", "1"},
        {"background:1", "1"},
        {"background:0", "0"},
        {"decay_ms:500,purge:free", "1"},
        {"process_madvise:false,background:false", "0"},
        {"membarrier:false", "1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_conf(cases[i].conf, 0, NULL, cases[i].bg);
    run_conf(NULL, 0, NULL, "1");
}

static void t_conf_bad_and_good(void)
{
    rel_need_tide();
    static const char *const keys[] = {"bogus", NULL};
    run_conf("bogus:1,background:false", 1, keys, "0");
}

static void t_conf_thp(void)
{
    rel_need_tide();
    /* The kernel must mark a mapping advised MADV_HUGEPAGE (no THP, or no
       VmFlags in smaps, and there is nothing to see). */
    size_t len = 4 * MIB;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    int adv = madvise(m, len, MADV_HUGEPAGE);
    int hg = mapping_hg(m);
    munmap(m, len);
    if (adv != 0 || hg != 1)
        th_skip("madvise(MADV_HUGEPAGE) leaves no VmFlags hg here (THP off or absent)");
    static const struct {
        const char *conf, *hg;
    } cases[] = {
        {"thp:true", "1"}, {"thp:1", "1"}, {"thp:false", "0"},
        {"thp:auto", "auto"}, {NULL, "auto"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        static rel_run_t r;
        setenv("REL_EXPECT_HG", cases[i].hg, 1);
        rel_spawn(&r, "sub_thp_child", cases[i].conf, 30);
        rel_expect_ok(&r, "sub_thp_child", cases[i].conf);
        CHECKF(strstr(r.out, "conf child done\n") != NULL && count_lines(r.out, "tidemalloc:") == 0,
               "TIDEMALLOC_CONF=%s: the child did not end cleanly or warned", cases[i].conf);
    }
    unsetenv("REL_EXPECT_HG");
}

static const th_test_t tests[] = {
    TH_TEST(t_conf_three_bad),
    TH_TEST(t_conf_each_bad),
    TH_TEST(t_conf_valid),
    TH_TEST(t_conf_bad_and_good),
    TH_TEST(t_conf_thp),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_conf_child),
    REL_SUB(sub_thp_child),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
