/* Death tests: a bad free must abort with one line on stderr.
 *
 * tidemalloc's contract: the process is killed by SIGABRT after writing ONE
 * line to stderr such as
 *   tidemalloc: free(): invalid pointer 0x7f12345678: not allocated by tidemalloc
 *   tidemalloc: free(): double free of 0x7f12345678
 * naming the call and printing the pointer as %p does.  Each case runs in a
 * child whose stderr is captured; the parent checks the signal and the line.
 * glibc has its own (different) checks, so the cases are skipped there.
 */
#include "../lib/th.h"

#include <ctype.h>
#include <malloc.h>
#include <sys/resource.h>

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

static char static_buf[256] __attribute__((aligned(64)));

typedef void bad_op_fn(void *arg);

/* Runs op(arg) in a child; checks it dies by SIGABRT with exactly one line
   starting "tidemalloc:" on stderr that names call and shows ptr. */
static void expect_death_msg(bad_op_fn *op, void *arg, const char *call, void *ptr,
                             const char *want)
{
    if (!th_is_tide())
        th_skip("death tests need tidemalloc, allocator is %s", th_allocator());
    char out[8192];
    int status = th_run_in_child(op, arg, "[survived the bad call]", out, sizeof out);

    char hex[32];
    snprintf(hex, sizeof hex, "%p", ptr);
    /* Keep the report on one line for the failure message. */
    char flat[600];
    snprintf(flat, sizeof flat, "%.599s", out);
    for (char *c = flat; *c; c++)
        if (*c == '\n')
            *c = '|';

    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "%s(%s): want death by SIGABRT, got %s %d; stderr: \"%s\"", call, hex,
           WIFSIGNALED(status) ? "signal" : "exit status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), flat);

    int nlines = 0;
    const char *line = NULL;
    for (const char *s = out; (s = strstr(s, "tidemalloc:")) != NULL; s++) {
        if (s == out || s[-1] == '\n') {
            nlines++;
            line = s;
        }
    }
    CHECKF(nlines == 1, "%s(%s): want one line starting \"tidemalloc:\", got %d: \"%s\"",
           call, hex, nlines, flat);
    const char *eol = strchr(line, '\n');
    CHECKF(eol != NULL, "%s(%s): message line not ended by a newline: \"%s\"", call,
           hex, flat);
    char msg[512];
    snprintf(msg, sizeof msg, "%.*s", (int)(eol - line), line);
    char callp[64];
    snprintf(callp, sizeof callp, "%s()", call);
    CHECKF(strstr(msg, callp) != NULL, "message does not name %s: \"%s\"", callp, msg);
    CHECKF(want == NULL || strstr(msg, want) != NULL, "message does not say \"%s\": \"%s\"",
           want, msg);
    /* The pointer, not followed by another hex digit (no prefix match). */
    const char *h = strstr(msg, hex);
    CHECKF(h != NULL && !isxdigit((unsigned char)h[strlen(hex)]),
           "message does not show the pointer %s: \"%s\"", hex, msg);
}

static void expect_death(bad_op_fn *op, void *arg, const char *call, void *ptr)
{
    expect_death_msg(op, arg, call, ptr, NULL);
}

static void do_free(void *p)
{
    free(th_launder(p));
}

static void do_double_free(void *p)
{
    free(th_launder(p));
    free(th_launder(p));
}

static void do_realloc(void *p)
{
    void *q = realloc(th_launder(p), 100);
    th_use(q);
}

static void do_usable_size(void *p)
{
    size_t n = malloc_usable_size(th_launder(p));
    th_use(&n);
}

static void t_free_static(void)
{
    expect_death_msg(do_free, static_buf + 64, "free", static_buf + 64, "not allocated by tidemalloc");
}

static void t_free_stack(void)
{
    char buf[256] __attribute__((aligned(64)));
    memset(buf, 0, sizeof buf);
    th_use(buf);
    expect_death(do_free, buf + 64, "free", buf + 64);
}

/* Interior pointers: the block itself is allocated (in the parent, so the
   child sees the same address) and stays valid. */
static void t_free_interior_small(void)
{
    char *p = malloc(64);
    CHECK(p != NULL);
    expect_death_msg(do_free, p + 16, "free", p + 16, "not the start of a block");
    free(p);
}

static void t_free_interior_large(void)
{
    char *p = malloc(MIB);
    CHECK(p != NULL);
    memset(p, 1, MIB);
    expect_death(do_free, p + 4096, "free", p + 4096);
    free(p);
}

static void t_double_free_small(void)
{
    void *p = malloc(64);
    void *keep = malloc(64); /* so the slab stays live */
    CHECK(p != NULL && keep != NULL);
    expect_death_msg(do_double_free, p, "free", p, "double free");
    free(p);
    free(keep);
}

/* A free of an object that was never handed out: the next object of p's
   slab, which the slab carved onto its free list with p (a size no other
   test here uses, so it is free, not another test's block). It is on the
   free list, so a push would link it twice. */
static void t_free_never_allocated(void)
{
    char *p = malloc(3500);
    CHECK(p != NULL);
    char *q = p + malloc_usable_size(p);
    expect_death_msg(do_free, q, "free", q, "double free");
    free(p);
}

/* A free of an object of p's slab that was never carved: the slab carves
   4 objects of this size at a time, so the one 8 places on is past the
   bump (a size no other test here uses). It was pushed onto the free list
   and later handed out twice, until free's object test compared with the
   carved count. */
static void t_free_never_carved(void)
{
    char *p = malloc(5000);
    CHECK(p != NULL);
    char *q = p + 8 * malloc_usable_size(p);
    expect_death_msg(do_free, q, "free", q, "never allocated");
    free(p);
}

static void t_double_free_large(void)
{
    void *p = malloc(MIB);
    CHECK(p != NULL);
    memset(p, 1, MIB);
    expect_death(do_double_free, p, "free", p);
    free(p);
}

static void t_double_free_huge(void)
{
    void *p = malloc(64 * MIB);
    CHECK(p != NULL);
    expect_death(do_double_free, p, "free", p);
    free(p);
}

/* A double free after the object's slab went back to the page heap and its
   pages became a new slab of the same class, likely under another
   descriptor: the object was never handed out again, so its free is a bad
   free and must be reported (as a double free while the mark, which
   depends on the address and not on the descriptor, is still there). A
   review found a descriptor-address mark missing it. 16-byte objects,
   4096 to a slab. */
#define RS_PER 4096
static void *rs_objs[10 * RS_PER], *rs_live[2 * RS_PER];

static void t_double_free_recycled_slab(void)
{
    if (!th_is_tide())
        th_skip("death tests need tidemalloc, allocator is %s", th_allocator());
    for (size_t i = 0; i < 10 * RS_PER; i++)
        CHECK((rs_objs[i] = malloc(16)) != NULL);
    for (size_t i = 0; i < 10 * RS_PER; i++)
        free(rs_objs[i]);
    for (size_t i = 0; i < 2 * RS_PER; i++)   /* the current and the spare slab */
        CHECK((rs_live[i] = malloc(16)) != NULL);
    void *first = malloc(16);                 /* a new slab */
    void *victim = rs_objs[RS_PER + 300];
    bool handed = victim == first;
    for (size_t i = 0; i < 2 * RS_PER && !handed; i++)
        handed = rs_live[i] == victim;
    if (!handed)
        expect_death_msg(do_free, victim, "free", victim, "double free");
    free(first);
    for (size_t i = 0; i < 2 * RS_PER; i++)
        free(rs_live[i]);
    if (handed)
        th_skip("the layout changed: %p was handed out again", victim);
}

static void t_realloc_invalid(void)
{
    expect_death(do_realloc, static_buf + 64, "realloc", static_buf + 64);
    char *p = malloc(200);
    CHECK(p != NULL);
    expect_death(do_realloc, p + 32, "realloc", p + 32);
    free(p);
}

/* A pointer into memory the allocator never mapped (our own mmap). */
static void t_free_foreign_mapping(void)
{
    char *m = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    expect_death(do_free, m + 2 * MIB, "free", m + 2 * MIB);
    expect_death(do_free, m, "free", m);
    munmap(m, 4 * MIB);
}

static void t_usable_size_invalid(void)
{
    expect_death(do_usable_size, static_buf + 64, "malloc_usable_size",
                 static_buf + 64);
}

static const th_test_t tests[] = {
    TH_TEST(t_free_static),
    TH_TEST(t_free_stack),
    TH_TEST(t_free_interior_small),
    TH_TEST(t_free_interior_large),
    TH_TEST(t_double_free_small),
    TH_TEST(t_free_never_allocated),
    TH_TEST(t_free_never_carved),
    TH_TEST(t_double_free_large),
    TH_TEST(t_double_free_huge),
    TH_TEST(t_double_free_recycled_slab),
    TH_TEST(t_realloc_invalid),
    TH_TEST(t_free_foreign_mapping),
    TH_TEST(t_usable_size_invalid),
    TH_END,
};

int main(int argc, char **argv)
{
    return th_main(argc, argv, tests);
}
