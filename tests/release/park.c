/* Parking: a sweep unbacks the whole pages of partly used slabs that hold
 * only free objects (src/heap.c, slab_park), takes those objects off the
 * slab's free and remote lists, and sends every later free into the slab
 * down the slow path, where a free of a parked object is a double free.
 *
 * The bursts keep as survivors the objects that start in the first KiB of
 * each 64 KiB-aligned window (1 byte in 64, by address): every slab of the
 * small classes keeps a live object or a few in one page and its other pages
 * hold only free objects, so parking, not the page heap, has to give them
 * back.  Blocks carry th_fill patterns, checked before every free and after
 * every release: a live object unbacked, or handed out twice, shows there.
 *
 *   t_park_explicit     an idle owner's burst in six classes (16 .. 20000
 *                       bytes), 63/64 of it freed, a third by another
 *                       thread: tide_release(SIZE_MAX, 0) drops RSS by most
 *                       of the freed bytes and returns about that; the
 *                       survivors are intact; the owner allocates beside
 *                       them, then again after they are freed (contents
 *                       checked, tide_check); all freed, no slab is left
 *                       counted in use
 *   t_park_many_slabs   256 partly used slabs of one class, freed by their
 *                       owner (no remote list, nothing on the notify stack):
 *                       one tide_release parks all of them, not only the
 *                       first slabs of the partial list
 *   t_park_release_count  slabs with parked pages emptied and given back:
 *                       the next tide_release returns about the RSS it
 *                       frees (parked pages are not counted, or unbacked,
 *                       a second time)
 *   t_park_mostly_live  256-byte blocks, 1% of them freed: tide_release reads
 *                       the marks of at most 2% of them (no slab has two
 *                       pages' worth of free objects); then 63/64 freed: it
 *                       reads most of them and RSS falls (tide_stats
 *                       park_scanned)
 *   t_park_head         256 slabs freed by their owner in address order, so
 *                       that each list head lies on a page with nothing else
 *                       live: those pages are parked too (src/heap.c,
 *                       phead); more frees, then the slabs taken back and
 *                       filled again, contents checked
 *   t_park_cur          an idle thread's current slabs (three classes, one
 *                       live page each): the first tide_release only looks
 *                       at them, the second detaches and parks them; the
 *                       thread wakes, takes them back and fills them again
 *   t_park_cur_remote   the same when another thread freed the blocks:
 *                       remote frees into a current slab are not announced
 *                       and stay counted in its `used` until its owner
 *                       collects them, so the sweep must not count them as
 *                       blocks out when it decides whether a slab is worth
 *                       detaching
 *   t_park_cur_first    an idle thread's current slab, detached and parked,
 *                       comes back at the owner's next malloc of its class,
 *                       before two older partial slabs of that class
 *   t_park_cur_forked   the same as t_park_cur in a child forked after the parent ran it:
 *                       the child inherits the heaps and the membarrier
 *                       registration (kernel 6.18 keeps it across fork; the
 *                       re-registration on EPERM in td_os_membarrier is for
 *                       kernels that do not, and is not reached here), gets
 *                       a new owner thread, and detaches and parks as well
 *   t_park_double_free  after parking, a second free of an object in the
 *                       middle of a parked page (16, 512 and 20000 bytes; by
 *                       the owner and by another thread) aborts with one
 *                       "free(): double free of <p>" line; so does one of
 *                       an object in a page the sweep had to keep
 *   t_park_protected    page-aligned blocks of 4096 and 8192 bytes, one of
 *                       them mprotect'ed PROT_NONE by the program, the rest
 *                       freed: malloc_trim(0) and tide_release park around
 *                       it without reading it (a scan of live objects'
 *                       marks once crashed here); its bytes are intact
 *   t_park_decay_remote decay_ms:50, background thread running: an idle
 *                       thread's burst freed by another thread is parked
 *                       with no call (RSS falls within 3 s), survivors intact
 *   t_park_decay_local  the same, the owner freeing its own objects before
 *                       it goes idle
 *   t_park_stress       three threads churn (fill, verify, free locally or
 *                       by another thread, 1/16 kept a while) while the main
 *                       thread calls tide_release(SIZE_MAX, 0) for ~2 s;
 *                       then everything is freed: small_allocated falls back
 *                       to where it started (no slab kept by a wrong count)
 *   t_park_explicit_nobatch, t_park_stress_nobatch  the same two with
 *                       process_madvise:false (one madvise per range)
 */
#include "release.h"

#include <sys/mman.h>
#include <sys/resource.h>

#define QUIET "background:false,decay_ms:600000"
#define DECAY "decay_ms:50"

/* ---- sets of blocks ------------------------------------------------------ */

/* Blocks with their sizes and tags, in mmapped arrays (no allocator call). */
typedef struct {
    void **p;
    uint32_t *n;      /* requested bytes */
    uint64_t tag0;    /* block i carries th_fill tag tag0 + i */
    size_t count, cap, map_bytes;
} set_t;

static void set_init(set_t *s, size_t cap, uint64_t tag0)
{
    s->map_bytes = (cap * (sizeof *s->p + sizeof *s->n) + 4095) & ~(size_t)4095;
    void *m = rel_map(s->map_bytes);
    s->p = m;
    s->n = (uint32_t *)((char *)m + cap * sizeof *s->p);
    s->cap = cap;
    s->count = 0;
    s->tag0 = tag0;
}

static void set_done(set_t *s)
{
    munmap(s->p, s->map_bytes);
    memset(s, 0, sizeof *s);
}

/* Allocates about bytes[c] bytes of blocks of sizes[c] for each class, in
   order, and fills them. */
static void set_alloc(set_t *s, const size_t *sizes, const size_t *bytes, int nclasses)
{
    for (int c = 0; c < nclasses; c++) {
        for (size_t k = 0; k < bytes[c] / sizes[c]; k++) {
            CHECK(s->count < s->cap);
            void *p = malloc(sizes[c]);
            CHECKF(p != NULL, "malloc(%zu) failed", sizes[c]);
            th_fill(p, sizes[c], s->tag0 + s->count);
            s->p[s->count] = p;
            s->n[s->count] = (uint32_t)sizes[c];
            s->count++;
        }
    }
}

static void set_verify_one(const set_t *s, size_t i)
{
    size_t bad = th_verify(s->p[i], s->n[i], s->tag0 + i);
    CHECKF(bad == SIZE_MAX,
           "live block %p (%u bytes, #%zu) lost its contents: byte %zu reads %02x "
           "(its page unbacked, or the block handed out twice)",
           s->p[i], s->n[i], i, bad, ((unsigned char *)s->p[i])[bad]);
}

/* Frees block i after checking it. */
static void set_free_one(set_t *s, size_t i)
{
    set_verify_one(s, i);
    free(s->p[i]);
    s->p[i] = NULL;
}

/* The survivors of a burst: blocks starting in the first KiB of a 64 KiB
   window. */
static bool survivor(const void *p)
{
    return ((uintptr_t)p & 0xffff) < 1024;
}

/* Which blocks a call works on. */
enum { SEL_ALL, SEL_SURVIVORS, SEL_DEAD, SEL_DEAD_REMOTE, SEL_DEAD_LOCAL, SEL_EVEN, SEL_ODD,
       SEL_HUNDREDTH };

static bool selected(const set_t *s, size_t i, int sel)
{
    if (s->p[i] == NULL)
        return false;
    switch (sel) {
    case SEL_SURVIVORS: return survivor(s->p[i]);
    case SEL_DEAD: return !survivor(s->p[i]);
    case SEL_DEAD_REMOTE: return !survivor(s->p[i]) && i % 3 == 0;
    case SEL_DEAD_LOCAL: return !survivor(s->p[i]) && i % 3 != 0;
    case SEL_EVEN: return i % 2 == 0;
    case SEL_ODD: return i % 2 == 1;
    case SEL_HUNDREDTH: return i % 100 == 37;
    default: return true;
    }
}

static void set_free(set_t *s, int sel)
{
    for (size_t i = 0; i < s->count; i++)
        if (selected(s, i, sel))
            set_free_one(s, i);
}

static void set_verify(const set_t *s, int sel)
{
    for (size_t i = 0; i < s->count; i++)
        if (selected(s, i, sel))
            set_verify_one(s, i);
}

/* Usable bytes of the selected blocks (calls the allocator). */
static size_t set_bytes(const set_t *s, int sel)
{
    size_t sum = 0;
    for (size_t i = 0; i < s->count; i++)
        if (selected(s, i, sel))
            sum += malloc_usable_size(s->p[i]);
    return sum;
}

/* ---- an owner thread that runs commands, then waits without a call ----- */

static size_t small_allocated(void)
{
    rel_stats_t st;
    rel_stats(&st);
    return st.small_allocated;
}

static long max_l(long a, long b)
{
    return a > b ? a : b;
}

/* ---- explicit release of an idle owner's burst ------------------------- */

static const size_t six_sizes[] = {16, 48, 512, 3000, 6000, 20000};
static const size_t six_bytes[] = {8 * MIB, 8 * MIB, 8 * MIB, 4 * MIB, 4 * MIB, 4 * MIB};
static const size_t six_more[] = {2 * MIB, 2 * MIB, 2 * MIB, MIB, MIB, MIB};
enum { NSIX = 6 };
static set_t A, B, C;

static void own_alloc_a(void) { set_alloc(&A, six_sizes, six_bytes, NSIX); }
static void own_free_a_local(void) { set_free(&A, SEL_DEAD_LOCAL); }
static void own_alloc_b(void) { set_alloc(&B, six_sizes, six_more, NSIX); }
static void own_free_even(void)
{
    set_free(&A, SEL_EVEN);
    set_free(&B, SEL_EVEN);
}
static void own_alloc_c(void) { set_alloc(&C, six_sizes, six_bytes, NSIX); }
static void own_free_c_even(void) { set_free(&C, SEL_EVEN); }
static void own_check(void) { rel_check(); }
/* The owner's own release: it collects its remote frees and gives back its
   empty current slabs. */
static void own_release(void) { rel_release(SIZE_MAX, 0); }

static int sub_park_explicit(void)
{
    size_t cap = 0;
    for (int c = 0; c < NSIX; c++)
        cap += six_bytes[c] / six_sizes[c];
    set_init(&A, cap, 1);
    set_init(&B, cap, 1u << 24);
    set_init(&C, cap, 2u << 24);
    rel_owner_start();
    rel_release(SIZE_MAX, 0);
    rel_on_owner(own_release);
    size_t small0 = small_allocated();

    rel_on_owner(own_alloc_a);
    size_t freed = set_bytes(&A, SEL_DEAD), kept = set_bytes(&A, SEL_SURVIVORS);
    CHECKF(kept * 20 < freed && kept * 100 > freed,
           "survivors: %zu KiB of %zu KiB (want about 1 in 64)", kept / KIB,
           (kept + freed) / KIB);
    rel_on_owner(own_free_a_local);
    set_free(&A, SEL_DEAD_REMOTE); /* remote frees: the owner is idle */
    long before = rel_rss();
    size_t r = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    long drop = before - after;
    CHECKF(drop >= (long)freed * 3 / 4,
           "%zu MiB freed in slabs that keep 1/64 live: tide_release(SIZE_MAX, 0) "
           "dropped RSS by %ld MiB only (%ld -> %ld MiB), returned %zu MiB",
           freed / MIB, REL_MIB(drop), REL_MIB(before), REL_MIB(after), r / MIB);
    CHECKF(labs((long)r - drop) <= max_l(drop / 10, (long)(4 * MIB)),
           "tide_release(SIZE_MAX, 0) = %zu KiB, but RSS fell by %ld KiB", r / KIB,
           drop / (long)KIB);
    printf("parking: %zu MiB freed, tide_release = %zu KiB, RSS %ld -> %ld KiB\n",
           freed / MIB, r / KIB, before / (long)KIB, after / (long)KIB);
    set_verify(&A, SEL_ALL);

    /* Beside the survivors: the owner collects the remote frees (parked
       ones included) and allocates from the parked slabs' lists. */
    rel_on_owner(own_alloc_b);
    set_verify(&A, SEL_ALL);
    set_verify(&B, SEL_ALL);
    rel_on_owner(own_check);
    rel_check();

    /* After them: every block freed, half by the owner (the slow path now,
       for parked slabs), half by this thread; allocate again. */
    rel_on_owner(own_free_even);
    set_free(&A, SEL_ODD);
    set_free(&B, SEL_ODD);
    before = rel_rss();
    r = rel_release(SIZE_MAX, 0);
    after = rel_rss();
    printf("slabs emptied after parking: tide_release = %zu KiB, RSS %ld -> %ld KiB\n",
           r / KIB, before / (long)KIB, after / (long)KIB);
    rel_on_owner(own_alloc_c);
    set_verify(&C, SEL_ALL);
    rel_on_owner(own_check);
    rel_check();

    /* All freed: no slab may stay counted in use. */
    rel_on_owner(own_free_c_even);
    set_free(&C, SEL_ODD);
    rel_release(SIZE_MAX, 0);
    rel_on_owner(own_release);
    rel_release(SIZE_MAX, 0);
    size_t small1 = small_allocated();
    CHECKF(small1 <= small0 + 128 * KIB,
           "every block freed, but small_allocated is %zu KiB (was %zu KiB before "
           "the bursts): slabs kept counted in use",
           small1 / KIB, small0 / KIB);
    rel_on_owner(own_check);
    rel_owner_stop();
    rel_check();
    set_done(&A);
    set_done(&B);
    set_done(&C);
    return 0;
}

/* ---- many partly used slabs of one class, local frees only ------------ */

static int sub_park_many_slabs(void)
{
    static const size_t sz[] = {64}, by[] = {16 * MIB};
    set_init(&A, by[0] / sz[0], 7);
    rel_release(SIZE_MAX, 0);
    set_alloc(&A, sz, by, 1);
    size_t freed = set_bytes(&A, SEL_DEAD);
    set_free(&A, SEL_DEAD);
    long before = rel_rss();
    size_t r = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    CHECKF(before - after >= (long)freed * 3 / 4,
           "%zu MiB freed by their owner in 256 slabs of 64-byte blocks: "
           "tide_release(SIZE_MAX, 0) dropped RSS by %ld MiB only (returned %zu MiB)",
           freed / MIB, REL_MIB(before - after), r / MIB);
    set_verify(&A, SEL_ALL);
    set_free(&A, SEL_ALL);
    rel_check();
    set_done(&A);
    return 0;
}

/* ---- parking reads objects for the free memory it may find ------------ */

static int sub_park_mostly_live(void)
{
    static const size_t sz[] = {256}, by[] = {32 * MIB};
    set_init(&A, by[0] / sz[0], 13);
    rel_release(SIZE_MAX, 0);
    set_alloc(&A, sz, by, 1);
    set_free(&A, SEL_HUNDREDTH);   /* 1% of each slab: no page to park */
    rel_stats_t s0, s1, s2;
    rel_stats(&s0);
    rel_release(SIZE_MAX, 0);
    rel_stats(&s1);
    size_t read = s1.park_scanned - s0.park_scanned;
    printf("1%% freed: parking read %zu marks of %zu blocks\n", read, A.count);
    CHECKF(read <= A.count / 50,
           "%zu blocks of 256 bytes, 1%% of them freed: tide_release read the marks of %zu "
           "(parking should read objects only in slabs with two pages' worth free)",
           A.count, read);
    /* The control: slabs with most objects free are read, and parked. */
    size_t freed = set_bytes(&A, SEL_DEAD);
    set_free(&A, SEL_DEAD);
    long before = rel_rss();
    rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    rel_stats(&s2);
    read = s2.park_scanned - s1.park_scanned;
    printf("63/64 freed: parking read %zu marks, RSS fell by %ld MiB\n", read,
           REL_MIB(before - after));
    CHECKF(read >= A.count / 2, "63/64 of %zu blocks freed: parking read %zu marks only",
           A.count, read);
    CHECKF(before - after >= (long)freed / 2, "%zu MiB freed: RSS fell by %ld MiB only",
           freed / MIB, REL_MIB(before - after));
    set_verify(&A, SEL_ALL);
    set_free(&A, SEL_ALL);
    rel_check();
    set_done(&A);
    return 0;
}

/* ---- the owner list's head page parked too ---------------------------- */

/* Distinct pages under the selected blocks of s. */
static size_t set_pages(const set_t *s, int sel)
{
    size_t n = 0;
    uintptr_t last = 0;
    for (size_t i = 0; i < s->count; i++) {   /* a page shared by neighbours once */
        if (!selected(s, i, sel))
            continue;
        uintptr_t a = (uintptr_t)s->p[i] >> 12, b = ((uintptr_t)s->p[i] + s->n[i] - 1) >> 12;
        for (uintptr_t pg = a; pg <= b; pg++)
            if (pg != last) {
                n++;
                last = pg;
            }
    }
    return n;
}

static int sub_park_head(void)
{
    static const size_t sz[] = {256}, by[] = {16 * MIB};
    set_init(&A, by[0] / sz[0], 11);
    set_init(&B, by[0] / sz[0], 1u << 24);
    rel_release(SIZE_MAX, 0);
    size_t small0 = small_allocated();
    set_alloc(&A, sz, by, 1);
    /* Freed in address order by their owner: the last object freed in
       each slab, the head of its owner list, lies in the slab's top page,
       which holds nothing else live. */
    size_t all = set_pages(&A, SEL_ALL), live = set_pages(&A, SEL_SURVIVORS);
    set_free(&A, SEL_DEAD);
    size_t r = rel_release(SIZE_MAX, 0);
    size_t want = (all - live) * 4096;
    printf("head pages: %zu pages free of %zu, tide_release = %zu KiB\n", all - live, all,
           r / KIB);
    /* 256 slabs: keeping each head's page would miss 1 MiB. The current
       slab is detached only at the second look, so it may miss 64 KiB. */
    CHECKF(r + 256 * KIB >= want,
           "%zu KiB of whole free pages in 256 slabs whose list heads lie on free "
           "pages: tide_release(SIZE_MAX, 0) = %zu KiB (head pages kept?)",
           want / KIB, r / KIB);
    set_verify(&A, SEL_ALL);

    /* Some more freed (the slow path now), then the slabs taken back: the
       parked heads are spliced out and parked objects handed out again. */
    for (size_t i = 0; i < A.count; i += 97)
        if (A.p[i] != NULL)
            set_free_one(&A, i);
    set_alloc(&B, sz, by, 1);
    set_verify(&A, SEL_ALL);
    set_verify(&B, SEL_ALL);
    rel_check();
    set_free(&A, SEL_ALL);
    set_free(&B, SEL_ALL);
    rel_release(SIZE_MAX, 0);
    size_t small1 = small_allocated();
    CHECKF(small1 <= small0 + 128 * KIB, "all freed, small_allocated %zu KiB (was %zu KiB)",
           small1 / KIB, small0 / KIB);
    rel_check();
    set_done(&A);
    set_done(&B);
    return 0;
}

/* ---- an idle thread's current slabs ------------------------------------ */

static const size_t cur_sizes[] = {256, 512, 1024};
#define NCUR 3
static set_t cur_set[NCUR];

/* Fills most of one fresh slab per class (64 KiB each), then frees all
   but the two blocks in its first page, in address order. */
static void own_cur_fill(void)
{
    for (int c = 0; c < NCUR; c++) {
        size_t nb[] = {(64 * KIB / cur_sizes[c] - 4) * cur_sizes[c]};
        set_alloc(&cur_set[c], &cur_sizes[c], nb, 1);
        for (size_t i = 2; i < cur_set[c].count; i++)
            set_free_one(&cur_set[c], i);
    }
}

static set_t cur_again[NCUR];

static void own_cur_again(void)
{
    for (int c = 0; c < NCUR; c++) {
        size_t nb[] = {(64 * KIB / cur_sizes[c] - 8) * cur_sizes[c]};
        set_alloc(&cur_again[c], &cur_sizes[c], nb, 1);
        set_verify(&cur_set[c], SEL_ALL);
        set_verify(&cur_again[c], SEL_ALL);
    }
    rel_check();
    for (int c = 0; c < NCUR; c++) {
        set_free(&cur_again[c], SEL_ALL);
        set_free(&cur_set[c], SEL_ALL);
    }
    rel_check();
}

/* The sets, an owner thread, and nothing left for a release to find. */
static void cur_start(void)
{
    for (int c = 0; c < NCUR; c++) {
        set_init(&cur_set[c], 64 * KIB / cur_sizes[c], (uint64_t)(c + 1) << 20);
        set_init(&cur_again[c], 64 * KIB / cur_sizes[c], (uint64_t)(c + 1) << 24);
    }
    rel_owner_start();
    rel_release(SIZE_MAX, 0);
    rel_release(SIZE_MAX, 0);
}

/* Survivors intact; the owner wakes, takes its slabs back and fills them
   again; all freed and checked. */
static void cur_finish(void)
{
    for (int c = 0; c < NCUR; c++)
        set_verify(&cur_set[c], SEL_ALL);
    rel_on_owner(own_cur_again);
    rel_owner_stop();
    rel_check();
    for (int c = 0; c < NCUR; c++) {
        set_done(&cur_set[c]);
        set_done(&cur_again[c]);
    }
}

static int sub_park_cur(void)
{
    cur_start();
    rel_on_owner(own_cur_fill);
    /* One look at the owner's current slabs remembers them; the next finds
       them unchanged and parks them. Each keeps its first page (live
       blocks) and the page of its list head. */
    size_t r1 = rel_release(SIZE_MAX, 0);
    long before = rel_rss();
    size_t r2 = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    printf("idle thread's current slabs: first look %zu KiB, second %zu KiB, RSS %ld -> %ld KiB\n",
           r1 / KIB, r2 / KIB, before / (long)KIB, after / (long)KIB);
    CHECKF(r1 <= 32 * KIB, "the first look at an idle thread's current slabs parked "
           "%zu KiB: it should only remember them", r1 / KIB);
    /* The return value, not RSS: a few hundred KiB are within RSS noise
       (the UBSan runtime touches pages of its own between the reads);
       t_park_release_count holds the return value to what RSS does. */
    CHECKF(r2 >= NCUR * 13 * 4 * KIB,
           "three current slabs of an idle thread, 14 free pages each: the second "
           "look parked %zu KiB, RSS fell by %ld KiB", r2 / KIB, (before - after) / (long)KIB);
    cur_finish();
    return 0;
}

/* Fills most of one fresh slab per class, frees nothing. */
static void own_cur_fill_only(void)
{
    for (int c = 0; c < NCUR; c++) {
        size_t nb[] = {(64 * KIB / cur_sizes[c] - 4) * cur_sizes[c]};
        set_alloc(&cur_set[c], &cur_sizes[c], nb, 1);
    }
}

static int sub_park_cur_remote(void)
{
    cur_start();
    rel_on_owner(own_cur_fill_only);
    for (int c = 0; c < NCUR; c++)   /* by this thread: remote frees */
        for (size_t i = 2; i < cur_set[c].count; i++)
            set_free_one(&cur_set[c], i);
    size_t r1 = rel_release(SIZE_MAX, 0);
    long before = rel_rss();
    size_t r2 = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    printf("idle thread's current slabs, freed by another thread: first look %zu KiB, "
           "second %zu KiB, RSS %ld -> %ld KiB\n",
           r1 / KIB, r2 / KIB, before / (long)KIB, after / (long)KIB);
    CHECKF(r1 + r2 >= NCUR * 13 * 4 * KIB,
           "three current slabs of an idle thread, 14 pages of each freed by another "
           "thread: two looks parked %zu + %zu KiB, RSS fell by %ld KiB",
           r1 / KIB, r2 / KIB, (before - after) / (long)KIB);
    cur_finish();
    return 0;
}

static int sub_park_cur_forked(void)
{
    if (sub_park_cur() != 0)
        return 1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        printf("in the forked child:\n");
        int rc = sub_park_cur();
        fflush(stdout);
        _exit(rc);
    }
    int st = 0;
    CHECKF(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "the forked child's run of the idle-current-slab test failed (status %#x)", st);
    return 0;
}

/* ---- a detached current slab comes back first ------------------------- */

/* The partial list is a queue (src/heap.c, partial_push), but a current
   slab detached from an idle thread joins it at the head: the owner's next
   malloc of that class must get that slab back, not the older partial
   slabs queued before it. Slabs A and B (full) get one object back each,
   oldest first, then the current slab D, which keeps a few live objects,
   is detached and parked by two explicit calls. */
enum { PQ_SIZE = 250, PQ_MAX = 4096 };
static void *pq_obj[PQ_MAX];
static uintptr_t pq_freed_d[PQ_MAX];
static size_t pq_n, pq_nd;
static uintptr_t pq_got;

static void own_pq_fill(void)
{
    void *m = th_launder(malloc(PQ_SIZE));
    size_t per = 64 * KIB / malloc_usable_size(m);
    free(m);
    pq_n = 4 * per - 6;   /* three full slabs, and the current one nearly */
    CHECK(pq_n <= PQ_MAX);
    for (size_t i = 0; i < pq_n; i++) {
        pq_obj[i] = malloc(PQ_SIZE);
        CHECK(pq_obj[i] != NULL);
        th_fill(pq_obj[i], PQ_SIZE, i);
    }
    for (size_t i = 3 * per + 10; i < pq_n; i++) {   /* most of D */
        pq_freed_d[pq_nd++] = (uintptr_t)pq_obj[i];
        free(pq_obj[i]);
        pq_obj[i] = NULL;
    }
    free(pq_obj[5]);   /* A, then B, join the queue */
    pq_obj[5] = NULL;
    free(pq_obj[per + 5]);
    pq_obj[per + 5] = NULL;
}

static void own_pq_wake(void)
{
    void *x = malloc(PQ_SIZE);
    CHECK(x != NULL);
    pq_got = (uintptr_t)x;
    free(x);
    for (size_t i = 0; i < pq_n; i++)
        if (pq_obj[i] != NULL) {
            CHECK_PATTERN(pq_obj[i], PQ_SIZE, i);
            free(pq_obj[i]);
        }
}

static int sub_park_cur_first(void)
{
    rel_owner_start();
    rel_release(SIZE_MAX, 0);
    rel_release(SIZE_MAX, 0);
    rel_on_owner(own_pq_fill);
    /* Detached at the first look or the second: an explicit call may
       sweep twice (spares and dead slabs, then parking). */
    size_t r1 = rel_release(SIZE_MAX, 0);
    size_t r2 = rel_release(SIZE_MAX, 0);
    printf("the idle thread's current slab: %zu KiB parked, then %zu KiB\n", r1 / KIB,
           r2 / KIB);
    CHECKF(r1 + r2 >= 8 * 4 * KIB, "the idle thread's current slab was not parked "
           "(%zu + %zu KiB)", r1 / KIB, r2 / KIB);
    rel_on_owner(own_pq_wake);
    rel_owner_stop();
    bool from_d = false;
    for (size_t i = 0; i < pq_nd; i++)
        from_d |= pq_got == pq_freed_d[i];
    CHECKF(from_d, "the owner's first malloc after waking returned %#jx, not an object of "
           "its detached current slab: it queued behind older partial slabs",
           (uintmax_t)pq_got);
    rel_check();
    return 0;
}

/* ---- parked pages counted once ---------------------------------------- */

static int sub_park_release_count(void)
{
    static const size_t sz[] = {512}, by[] = {8 * MIB};
    set_init(&A, by[0] / sz[0], 9);
    rel_release(SIZE_MAX, 0);
    set_alloc(&A, sz, by, 1);
    set_free(&A, SEL_DEAD);
    long before = rel_rss();
    size_t r = rel_release(SIZE_MAX, 0);
    long after = rel_rss();
    CHECKF(before - after >= (long)(5 * MIB), "parking 8 MiB of 512-byte blocks, 1/64 "
           "live: RSS fell by %ld KiB only", (before - after) / (long)KIB);
    CHECKF(labs((long)r - (before - after)) <= max_l((before - after) / 10, (long)MIB),
           "parking: tide_release = %zu KiB, RSS fell by %ld KiB", r / KIB,
           (before - after) / (long)KIB);
    /* The survivors freed: each slab empties and goes back whole. */
    set_free(&A, SEL_ALL);
    before = rel_rss();
    r = rel_release(SIZE_MAX, 0);
    after = rel_rss();
    CHECKF(labs((long)r - (before - after)) <= max_l((before - after) / 10, (long)MIB),
           "slabs with parked pages emptied: tide_release = %zu KiB, but RSS fell by "
           "%ld KiB (%ld -> %ld KiB): parked pages counted twice",
           r / KIB, (before - after) / (long)KIB, before / (long)KIB, after / (long)KIB);
    rel_check();
    set_done(&A);
    return 0;
}

/* ---- double free of a parked object ----------------------------------- */

typedef void bad_op_fn(void *p);

static void do_free(void *p)
{
    free(th_launder(p));
}

static void *free_thread(void *p)
{
    free(th_launder(p));
    return NULL;
}

static void do_free_other_thread(void *p)
{
    pthread_t t;
    if (pthread_create(&t, NULL, free_thread, p) == 0)
        pthread_join(t, NULL);
}

/* Runs op(p) in a child: it must die by SIGABRT after one line starting
   "tidemalloc:" that says "free(): double free of <p>". */
static void expect_double_free(bad_op_fn *op, void *p, const char *what)
{
    char out[4096];
    int status = th_run_in_child(op, p, "[survived the double free]", out, sizeof out);
    for (char *c = out; *c; c++)
        if (*c == '\n' && c[1] != '\0')
            *c = '|';
    char want[96];
    snprintf(want, sizeof want, "free(): double free of %p", p);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
           "%s: a second free of %p: want death by SIGABRT, got %s %d; stderr: \"%s\"",
           what, p, WIFSIGNALED(status) ? "signal" : "exit status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
    const char *line = strstr(out, "tidemalloc:");
    CHECKF(line != NULL && strstr(line + 1, "tidemalloc:") == NULL,
           "%s: want one line starting \"tidemalloc:\": \"%s\"", what, out);
    const char *at = strstr(line, want);
    CHECKF(at != NULL && strchr("|\n", at[strlen(want)]) != NULL,
           "%s: want \"%s\": \"%s\"", what, want, out);
}

static bool resident(const void *p)
{
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
    CHECKF(mincore(page, 4096, &v) == 0, "mincore(%p): %s", page, strerror(errno));
    return v & 1;
}

static int sub_park_double_free(void)
{
    static const size_t sz[] = {16, 512, 20000}, by[] = {MIB, MIB, 2 * MIB};
    size_t cap = MIB / 16 + MIB / 512 + 2 * MIB / 20000;
    set_init(&A, cap, 11);
    set_init(&B, cap, 11); /* B: the addresses of A, kept after the frees */
    set_alloc(&A, sz, by, 3);
    memcpy(B.p, A.p, A.count * sizeof *A.p);
    memcpy(B.n, A.n, A.count * sizeof *A.n);
    B.count = A.count;
    void *last512 = NULL;
    for (size_t i = 0; i < A.count; i++)
        if (A.n[i] == 512 && !survivor(A.p[i]))
            last512 = A.p[i];
    set_free(&A, SEL_DEAD);
    rel_release(SIZE_MAX, 0);

    for (int c = 0; c < 3; c++) {
        void *victim = NULL;
        for (size_t i = 0; i < B.count && victim == NULL; i++) {
            uintptr_t off = (uintptr_t)B.p[i] & 4095;
            if (B.n[i] != sz[c] || A.p[i] != NULL)
                continue;   /* another class, or a survivor */
            if (sz[c] < 4096 && (off < 1024 || off >= 3072))
                continue;
            if (!resident(B.p[i]))
                victim = B.p[i];
        }
        CHECKF(victim != NULL,
               "no freed %zu-byte block in a page tide_release unbacked: nothing "
               "parked in slabs that keep 1/64 live", sz[c]);
        char what[64];
        snprintf(what, sizeof what, "%zu-byte block in a parked page", sz[c]);
        expect_double_free(do_free, victim, what);
        /* Not for 20000 bytes: with four objects a slab, a victim's slab
           may have no survivor and go back whole instead of being parked;
           the UBSan runtime then allocates when the second thread starts,
           can be handed those very pages, and the "double free" frees its
           live block (a free after reuse, which no allocator can tell).
           The same-thread case above still checks it. */
        if (sz[c] > 4096)
            continue;
        snprintf(what, sizeof what, "%zu-byte block in a parked page, other thread", sz[c]);
        expect_double_free(do_free_other_thread, victim, what);
    }
    /* The last 512-byte block freed heads its slab's free list: its page is
       kept, the block keeps its free mark. */
    CHECKF(last512 != NULL && resident(last512),
           "the head of a parked slab's free list (%p) was unbacked", last512);
    expect_double_free(do_free, last512, "512-byte list head in a parked slab");
    expect_double_free(do_free_other_thread, last512,
                       "512-byte list head in a parked slab, other thread");

    set_verify(&A, SEL_ALL);
    set_free(&A, SEL_ALL);
    rel_check();
    set_done(&A);
    set_done(&B);
    return 0;
}

/* ---- parking by the decay, with no call -------------------------------- */

static const size_t idle_sizes[] = {16, 48, 512, 3000};
static const size_t idle_bytes[] = {6 * MIB, 6 * MIB, 6 * MIB, 6 * MIB};

static void own_alloc_idle(void) { set_alloc(&A, idle_sizes, idle_bytes, 4); }
static void own_free_dead(void) { set_free(&A, SEL_DEAD); }

static int park_decay(bool remote)
{
    /* The background thread first: a large free starts it. */
    free(th_launder(malloc(MIB)));
    CHECKF(rel_wait_bg(5000) == 1, "no tide-release thread 5 s after a 1 MiB free");
    size_t cap = 0;
    for (int c = 0; c < 4; c++)
        cap += idle_bytes[c] / idle_sizes[c];
    set_init(&A, cap, 21);
    rel_owner_start();
    rel_on_owner(own_alloc_idle);
    size_t freed = set_bytes(&A, SEL_DEAD);
    /* Before the frees: with decay_ms:50 the decay may give back much of
       it while a slow (debug, loaded) free loop is still running. */
    long before = rel_rss();
    if (remote)
        set_free(&A, SEL_DEAD);
    else
        rel_on_owner(own_free_dead);
    /* From here on no allocator call until the verdict. */
    long target = before - (long)freed * 3 / 4, rss;
    uint64_t t0 = rel_now_ms();
    while ((rss = rel_rss()) > target && rel_now_ms() - t0 < 3000)
        rel_sleep_ms(20);
    if (rss > target) {
        rel_stats_t st;
        rel_stats(&st);
        TH_FAIL("%s: %zu MiB of an idle thread's blocks freed, 1/64 live in each "
                "slab: RSS %ld -> %ld MiB after 3 s of decay_ms:50 (want a %zu MiB "
                "drop); released_decay %zu MiB, bg_wakeups %zu, bg_running %d",
                remote ? "freed by another thread" : "freed by the owner", freed / MIB,
                REL_MIB(before), REL_MIB(rss), freed * 3 / 4 / MIB,
                REL_MIB(st.released_decay), st.bg_wakeups, st.bg_running);
    }
    printf("RSS %ld -> %ld MiB in %" PRIu64 " ms\n", REL_MIB(before), REL_MIB(rss),
           rel_now_ms() - t0);
    set_verify(&A, SEL_ALL);
    rel_owner_stop();
    set_free(&A, SEL_ALL);
    rel_check();
    set_done(&A);
    return 0;
}

static int sub_park_protected(void)
{
    static const size_t sizes[] = { 4096, 8192 };
    for (size_t k = 0; k < 2; k++) {
        enum { N = 64 };
        void *b[N];
        size_t sz = sizes[k];
        for (int i = 0; i < N; i++) {
            CHECK(posix_memalign(&b[i], 4096, sz) == 0);
            memset(b[i], 0x5a, sz);
        }
        CHECK(mprotect(b[1], 4096, PROT_NONE) == 0);
        for (int i = 2; i < N; i++)
            free(b[i]);
        malloc_trim(0);
        rel_release(SIZE_MAX, 0);
        CHECK(mprotect(b[1], 4096, PROT_READ | PROT_WRITE) == 0);
        for (size_t j = 0; j < sz; j++)
            CHECKF(((unsigned char *)b[1])[j] == 0x5a, "%zu-byte block: byte %zu changed", sz, j);
        free(b[0]);
        free(b[1]);
    }
    return 0;
}

static int sub_park_decay_remote(void) { return park_decay(true); }
static int sub_park_decay_local(void) { return park_decay(false); }

/* ---- churn while the main thread releases ------------------------------ */

enum { NW = 3, BURST = 256, KEEP = 2048, BOX = 4096 };

typedef struct {
    void *p;
    uint32_t n;
    uint64_t tag;
} blk_t;

typedef struct {
    pthread_mutex_t mu;
    blk_t b[BOX];
    size_t len;
} box_t;

static box_t boxes[NW];
static volatile int stop_churn;
static pthread_barrier_t churn_bar;
static size_t churn_ops[NW];

static void blk_free(const blk_t *b)
{
    size_t bad = th_verify(b->p, b->n, b->tag);
    CHECKF(bad == SIZE_MAX,
           "live block %p (%u bytes) lost its contents under concurrent "
           "tide_release: byte %zu reads %02x",
           b->p, b->n, bad, ((unsigned char *)b->p)[bad]);
    free(b->p);
}

/* Frees what other threads sent to w. */
static void box_drain(int w, blk_t *tmp)
{
    pthread_mutex_lock(&boxes[w].mu);
    size_t n = boxes[w].len;
    memcpy(tmp, boxes[w].b, n * sizeof *tmp);
    boxes[w].len = 0;
    pthread_mutex_unlock(&boxes[w].mu);
    for (size_t i = 0; i < n; i++)
        blk_free(&tmp[i]);
}

/* Sends b to thread w to free; false if its box is full. */
static bool box_send(int w, const blk_t *b)
{
    pthread_mutex_lock(&boxes[w].mu);
    bool ok = boxes[w].len < BOX;
    if (ok)
        boxes[w].b[boxes[w].len++] = *b;
    pthread_mutex_unlock(&boxes[w].mu);
    return ok;
}

static void *churn(void *arg)
{
    int w = (int)(intptr_t)arg;
    static const size_t sizes[] = {16, 16, 48, 48, 512, 512, 3000, 6000, 20000};
    /* Mapped, not malloc'd or static TLS: BOX + KEEP + BURST blocks. */
    blk_t *tmp = rel_map((BOX + KEEP + BURST) * sizeof(blk_t));
    blk_t *keep = tmp + BOX, *burst = keep + KEEP;
    size_t nkeep = 0, head = 0, ops = 0;
    th_rng_t r = {th_seed(100 + (uint64_t)w)};
    uint64_t tag = (uint64_t)(w + 1) << 40;
    while (!stop_churn) {
        size_t sz = sizes[th_range(&r, 0, sizeof sizes / sizeof *sizes - 1)];
        for (int i = 0; i < BURST; i++) {
            blk_t *b = &burst[i];
            b->n = (uint32_t)sz;
            b->tag = tag++;
            b->p = malloc(sz);
            CHECKF(b->p != NULL, "malloc(%zu) failed", sz);
            th_fill(b->p, sz, b->tag);
        }
        for (int i = 0; i < BURST; i++) {
            blk_t *b = &burst[i];
            if (i % 16 == 0) { /* kept a while, in a ring */
                if (nkeep == KEEP) {
                    blk_free(&keep[head]);
                    keep[head] = *b;
                    head = (head + 1) % KEEP;
                } else {
                    keep[nkeep++] = *b;
                }
            } else if (i % 3 == 0 && box_send((w + 1 + i % 2) % NW, b)) {
                /* freed by another thread */
            } else {
                blk_free(b);
            }
        }
        box_drain(w, tmp);
        ops += BURST;
    }
    churn_ops[w] = ops;
    /* Nobody sends after this barrier: one drain then empties the box. */
    pthread_barrier_wait(&churn_bar);
    box_drain(w, tmp);
    for (size_t i = 0; i < nkeep; i++)
        blk_free(&keep[i]);
    munmap(tmp, (BOX + KEEP + BURST) * sizeof(blk_t));
    return NULL;
}

static int sub_park_stress(void)
{
    free(th_launder(malloc(100)));
    rel_release(SIZE_MAX, 0);
    size_t small0 = small_allocated();
    for (int w = 0; w < NW; w++)
        CHECK(pthread_mutex_init(&boxes[w].mu, NULL) == 0);
    CHECK(pthread_barrier_init(&churn_bar, NULL, NW) == 0);
    pthread_t t[NW];
    for (int w = 0; w < NW; w++)
        CHECK(pthread_create(&t[w], NULL, churn, (void *)(intptr_t)w) == 0);
    uint64_t t0 = rel_now_ms();
    size_t calls = 0, bytes = 0;
    while (rel_now_ms() - t0 < 2000) {
        bytes += rel_release(SIZE_MAX, 0);
        calls++;
    }
    stop_churn = 1;
    for (int w = 0; w < NW; w++)
        CHECK(pthread_join(t[w], NULL) == 0);
    printf("%zu tide_release calls, %zu MiB released, %zu + %zu + %zu blocks churned\n",
           calls, bytes / MIB, churn_ops[0], churn_ops[1], churn_ops[2]);
    rel_release(SIZE_MAX, 0);
    size_t small1 = small_allocated();
    CHECKF(small1 <= small0 + 256 * KIB,
           "three threads freed every block they allocated, but small_allocated is "
           "%zu KiB (%zu KiB before): slabs kept counted in use",
           small1 / KIB, small0 / KIB);
    rel_check();
    return 0;
}

/* ---- the tests ---------------------------------------------------------- */

static void t_park_explicit(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_explicit", QUIET, 40);
}

static void t_park_many_slabs(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_many_slabs", QUIET, 40);
}

static void t_park_mostly_live(void)
{
    rel_need_tide();
    rel_stats_t st;
    rel_stats_try(&st);
    if (st.park_scanned == SIZE_MAX)
        th_skip("tide_stats has no park_scanned in this library");
    rel_run_sub("sub_park_mostly_live", QUIET, 40);
}

static void t_park_head(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_head", QUIET, 40);
}

static void t_park_cur(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_cur", QUIET, 40);
}

static void t_park_cur_remote(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_cur_remote", QUIET, 40);
}

static void t_park_cur_first(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_cur_first", QUIET, 40);
}

static void t_park_cur_forked(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_cur_forked", QUIET, 60);
}

static void t_park_release_count(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_release_count", QUIET, 40);
}

static void t_park_double_free(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_double_free", QUIET, 40);
}

static void t_park_decay_remote(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_decay_remote", DECAY, 40);
}

static void t_park_decay_local(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_decay_local", DECAY, 40);
}

static void t_park_stress(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_stress", DECAY, 40);
}

/* The same two with one madvise per range instead of batched
   process_madvise calls (TIDEMALLOC_CONF process_madvise:false). */
static void t_park_explicit_nobatch(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_explicit", QUIET ",process_madvise:false", 40);
}

static void t_park_stress_nobatch(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_stress", DECAY ",process_madvise:false", 40);
}

static void t_park_protected(void)
{
    rel_need_tide();
    rel_run_sub("sub_park_protected", QUIET, 40);
}

static const th_test_t tests[] = {
    TH_TEST(t_park_explicit),
    TH_TEST(t_park_protected),
    TH_TEST(t_park_explicit_nobatch),
    TH_TEST(t_park_stress_nobatch),
    TH_TEST(t_park_many_slabs),
    TH_TEST(t_park_release_count),
    TH_TEST(t_park_mostly_live),
    TH_TEST(t_park_head),
    TH_TEST(t_park_cur),
    TH_TEST(t_park_cur_remote),
    TH_TEST(t_park_cur_first),
    TH_TEST(t_park_cur_forked),
    TH_TEST(t_park_double_free),
    TH_TEST(t_park_decay_remote),
    TH_TEST(t_park_decay_local),
    TH_TEST(t_park_stress),
    TH_END,
};

static const rel_sub_t subs[] = {
    REL_SUB(sub_park_explicit),
    REL_SUB(sub_park_protected),
    REL_SUB(sub_park_many_slabs),
    REL_SUB(sub_park_release_count),
    REL_SUB(sub_park_mostly_live),
    REL_SUB(sub_park_head),
    REL_SUB(sub_park_cur),
    REL_SUB(sub_park_cur_remote),
    REL_SUB(sub_park_cur_first),
    REL_SUB(sub_park_cur_forked),
    REL_SUB(sub_park_double_free),
    REL_SUB(sub_park_decay_remote),
    REL_SUB(sub_park_decay_local),
    REL_SUB(sub_park_stress),
    REL_SUB_END,
};

int main(int argc, char **argv)
{
    return rel_main(argc, argv, tests, subs);
}
