/*
 * release.c — the decay, the background thread and explicit release (see
 * release.h).
 *
 * Sleep protocol (no lost wake-up, no fence on the allocator's hot paths):
 * a thread that makes memory free to return (the heap layer's kick) does
 * its write, a full fence, then reads bg_asleep; the background thread
 * stores bg_asleep (sequentially consistent) and then looks for work once
 * more before it sleeps on bg_seq. One of the two sees the other's write.
 * Where membarrier works, the kicker's fence is only the compiler's
 * (kick_light): the background thread runs a barrier on every running
 * thread of the process (td_os_membarrier) between its store and its look,
 * which orders each kicker's write before its read of bg_asleep as the
 * fence did. A kick comes with every slab that changes state (a full slab
 * getting an object back, a slab emptied); the fence was 3.4% of larson's
 * samples, and 8 paired runs without it gave 3.8% more operations a
 * second. The barrier costs the background thread a system call when it
 * goes to sleep with nothing pending, at most once per 10 ms
 * (sleep_barrier).
 * A kick that finds it asleep bumps bg_seq and wakes it; one that finds no
 * thread at all only raises bg_start_pending, and the next safepoint (a
 * slow path holding no lock) creates the thread, since pthread_create may
 * itself call malloc.
 */
#include "release.h"

#include "conf.h"

enum { BG_NONE = 0, BG_STARTING = 1, BG_RUNNING = 2 };

static td_lock_t sweep_lock;          /* rank 0 */
static int bg_state;                  /* BG_*; __atomic */
static int bg_asleep = 1;             /* 1: a kick must wake or start it; __atomic */
static int kick_light;                /* 1: kicks skip the fence, the sleeper runs a
                                         membarrier (above); set by the background
                                         thread, cleared for good if one fails */
static int bg_seq;                    /* futex word the thread sleeps on */
static int safepoint_work;            /* bit 0: start the thread; bit 1: run an inline pass */
static uint32_t last_inline_pass;     /* td_os_now_ms() of the last inline pass */
static size_t released_decay, released_explicit, passes;   /* __atomic adds; passes: background */
/* Explicit calls under way that release everything (no byte, time or
   keep limit): decay passes give the sweep lock up to them within a slab
   of parking (td_heap_sweep's yield), a heap, or a batch, rather than make
   the caller wait for a whole pass. Only to those: they do all the work
   the pass would have done, where a call with a budget or a pad would
   leave some of it undone, and a program calling those without pause
   would starve the decay. Reset in a forked child, which has none of the
   parent's calls. __atomic. */
static int explicit_calls;

#define WORK_START  1
#define WORK_INLINE 2
#define INLINE_PASS_NS 500000   /* a pass run from a malloc or free: about 0.5 ms */
#define INLINE_PASS_BYTES ((size_t)2 << 20)   /* ... and at most 2 MiB */

/* How long a pass may wait for the next: a quarter of the decay, so memory
   goes back between decay and 1.25 decay after its last use. */
static uint64_t tick_ns(void)
{
    uint64_t ms = td_conf.decay_ms / 4;
    if (ms < 1)
        ms = 1;
    if (ms > 1000)
        ms = 1000;
    return ms * 1000000u;
}

/* One pass: sweep the heaps, then unback what has aged. Returns true if
   something is left that a later pass may give back. */
/* Heaps idle this long get their partly used slabs parked by the decay:
   at least the decay time, and never less than this. */
#define PARK_IDLE_MIN_MS 100

enum { PASS_BACKGROUND, PASS_INLINE, PASS_EXPLICIT };

static bool sweep_take(int mode)
{
    if (mode == PASS_INLINE)
        return td_trylock(&sweep_lock);
    td_lock(&sweep_lock);
    return true;
}

static bool release_pass(uint32_t older_than, size_t max_bytes, uint64_t deadline,
                         size_t keep_bytes, int mode, size_t *released)
{
    bool explicit_call = mode == PASS_EXPLICIT;
    size_t swept = 0, parked = 0;
    /* An explicit release of everything (no keep) parks in busy heaps too. */
    uint32_t park_after = explicit_call && keep_bytes == 0 ? 0
                        : older_than > PARK_IDLE_MIN_MS ? older_than : PARK_IDLE_MIN_MS;
    /* A pass run from some caller's malloc or free never waits for the
       sweep lock: another pass (an explicit release parking a big heap)
       may hold it for long. It leaves the work for later instead. */
    if (!sweep_take(mode)) {
        *released = 0;
        return true;
    }
    const int *yield = explicit_call ? NULL : &explicit_calls;
    bool pending = td_heap_sweep(older_than, UINT32_MAX, 0, deadline, yield, &swept, &parked);
    td_unlock(&sweep_lock);

    size_t done = 0;
    size_t budget = max_bytes;
    if (keep_bytes != 0) {
        size_t dirty = td_pageheap_dirty(NULL);
        size_t room = dirty > keep_bytes ? dirty - keep_bytes : 0;
        if (room < budget)
            budget = room;
    }
    size_t batch = td_release_batch_pages(deadline) << TD_PAGE_SHIFT;
    while (done < budget) {
        size_t want = budget - done < batch ? budget - done : batch;
        if (yield != NULL && __atomic_load_n(yield, __ATOMIC_RELAXED) > 0) {
            pending = true;   /* an explicit call does it now */
            break;
        }
        if (!sweep_take(mode)) {
            pending = true;
            break;
        }
        size_t r = td_pageheap_release(want, older_than, deadline);
        td_unlock(&sweep_lock);
        done += r;
        if (r < want)
            break;   /* nothing old enough left, or out of time */
        if (deadline != 0 && td_os_now_ns() >= deadline)
            break;
    }
    /* Parking last: page-heap runs give back the most bytes per madvise.
       Past the deadline only if nothing was released yet (progress). */
    if (yield != NULL && __atomic_load_n(yield, __ATOMIC_RELAXED) > 0) {
        pending = true;   /* an explicit call parks now: do not queue behind it */
    } else if (done < max_bytes &&
               (deadline == 0 || done == 0 || td_os_now_ns() < deadline)) {
        /* Bounded like the rest: a pass run from some caller's malloc has
           a small budget, so it parks a slab or two, not a whole heap. */
        if (sweep_take(mode)) {
            pending |= td_heap_sweep(older_than, park_after, max_bytes - done, deadline,
                                     yield, &swept, &parked);
            td_unlock(&sweep_lock);
        } else {
            pending = true;
        }
    }
    /* Then the pagemap pages under the clean runs all this made (not
       counted in *released, which is heap bytes): 4 KiB of tree and 4 KiB
       of flat table per 2 MiB of heap that held data, 4 MiB for a 1 GiB
       burst. Cheap (the big runs only, one call a batch), so every pass
       with time left does it. */
    if (yield != NULL && __atomic_load_n(yield, __ATOMIC_RELAXED) > 0) {
        pending = true;
    } else if (deadline == 0 || td_os_now_ns() < deadline) {
        if (sweep_take(mode)) {
            td_pageheap_release_tables(deadline);
            td_unlock(&sweep_lock);
        }
    }
    pending |= td_pageheap_tables_pending();   /* out of time, or runs freed meanwhile */
    *released = parked + done;
    return pending || td_pageheap_dirty(NULL) != 0;
}

/* Anything a pass could give back? Reads racily: used after announcing
   sleep, where the kick protocol covers what it misses. */
static bool work_exists(void)
{
    return td_pageheap_dirty(NULL) != 0 || td_heap_sweep_pending();
}

/* Called by the background thread after it stored bg_asleep = 1 and
   before it looks for work: with light kicks, the barrier they rely on.
   False if there was none: kicks that skipped their fence may go unseen,
   so the caller must not sleep without a timeout this time. That is the
   case when the barrier failed (the kernel or a filter refused it; kicks
   fence from then on), and when the last one was less than
   BARRIER_MIN_NS ago: a program whose kicks wake the thread again and
   again (short decays) gets at most one barrier, an interrupt of each CPU
   running the process, per BARRIER_MIN_NS, and a kick lost meanwhile
   waits at most that long. */
#define BARRIER_MIN_NS 10000000u   /* 10 ms */
static uint64_t last_barrier_ns;   /* background thread only */

static bool sleep_barrier(void)
{
    if (!__atomic_load_n(&kick_light, __ATOMIC_RELAXED))
        return true;
    uint64_t now = td_os_now_ns();
    if (last_barrier_ns != 0 && now - last_barrier_ns < BARRIER_MIN_NS)
        return false;
    last_barrier_ns = now;
    if (td_os_membarrier())
        return true;
    __atomic_store_n(&kick_light, 0, __ATOMIC_SEQ_CST);
    return false;
}

static void *bg_main(void *arg)
{
    (void)arg;
    /* Before the first sleep: from here on every sleep runs the barrier. */
    if (td_os_membarrier_ready())
        __atomic_store_n(&kick_light, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        if (td_heap_attached() == 0) {
            /* No thread of the program uses the allocator: do not be the
               thread that keeps the process alive. A later kick restarts. */
            __atomic_store_n(&bg_asleep, 1, __ATOMIC_SEQ_CST);
            __atomic_store_n(&bg_state, BG_NONE, __ATOMIC_SEQ_CST);
            /* Without a barrier the work check may miss a kick: then let
               the next safepoint start a thread, which looks for itself. */
            bool sure = sleep_barrier();
            if (!sure || work_exists())
                __atomic_or_fetch(&safepoint_work, WORK_START, __ATOMIC_RELAXED);
            return NULL;
        }
        size_t r = 0;
        bool pending = release_pass(td_conf.decay_ms, SIZE_MAX, 0, 0, PASS_BACKGROUND, &r);
        __atomic_add_fetch(&released_decay, r, __ATOMIC_RELAXED);
        __atomic_add_fetch(&passes, 1, __ATOMIC_RELAXED);
        int seq = __atomic_load_n(&bg_seq, __ATOMIC_SEQ_CST);
        if (!pending) {
            __atomic_store_n(&bg_asleep, 1, __ATOMIC_SEQ_CST);
            bool sure = sleep_barrier();
            if (!work_exists()) {
                uint64_t t = tick_ns() > BARRIER_MIN_NS ? tick_ns() : BARRIER_MIN_NS;
                td_os_wait(&bg_seq, seq, sure ? 0 : t);   /* until a kick */
                __atomic_store_n(&bg_asleep, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            __atomic_store_n(&bg_asleep, 0, __ATOMIC_SEQ_CST);
        }
        td_os_wait(&bg_seq, seq, tick_ns());   /* kicks do not cut this short */
    }
}

static void bg_start(void)
{
    int none = BG_NONE;
    if (!__atomic_compare_exchange_n(&bg_state, &none, BG_STARTING, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;   /* running, or another thread (or this one, re-entered
                     through pthread_create's own malloc) is starting it */
    __atomic_store_n(&bg_asleep, 0, __ATOMIC_SEQ_CST);
    if (td_os_thread_start(bg_main, "tide-release")) {
        __atomic_store_n(&bg_state, BG_RUNNING, __ATOMIC_RELEASE);
        return;
    }
    /* No thread (resource limits): slow paths do the work instead, and
       every kick must reach kick_slow to ask for them (a review found
       bg_asleep left 0 here, after which kicks asked for nothing). */
    td_conf.background = false;
    __atomic_store_n(&bg_asleep, 1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&bg_state, BG_NONE, __ATOMIC_RELEASE);
    __atomic_or_fetch(&safepoint_work, WORK_INLINE, __ATOMIC_RELAXED);
}

static TIDE_NOINLINE void kick_slow(void)
{
    if (!td_conf.background) {
        if (!(__atomic_load_n(&safepoint_work, __ATOMIC_RELAXED) & WORK_INLINE))
            __atomic_or_fetch(&safepoint_work, WORK_INLINE, __ATOMIC_RELAXED);
        return;
    }
    /* One kicker acts; the rest see bg_asleep already cleared. */
    if (__atomic_exchange_n(&bg_asleep, 0, __ATOMIC_SEQ_CST) == 0)
        return;
    int st = __atomic_load_n(&bg_state, __ATOMIC_SEQ_CST);
    if (st == BG_RUNNING) {
        __atomic_add_fetch(&bg_seq, 1, __ATOMIC_SEQ_CST);
        td_os_wake(&bg_seq, 1);
    } else if (st == BG_NONE) {
        __atomic_or_fetch(&safepoint_work, WORK_START, __ATOMIC_RELAXED);
    }
}

static void release_kick(void)
{
    if (TIDE_LIKELY(__atomic_load_n(&kick_light, __ATOMIC_RELAXED)))
        __atomic_signal_fence(__ATOMIC_SEQ_CST);   /* the sleeper's membarrier orders */
    else
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (TIDE_UNLIKELY(__atomic_load_n(&bg_asleep, __ATOMIC_RELAXED)))
        kick_slow();
}

static TIDE_NOINLINE void safepoint_slow(int work)
{
    if (work & WORK_START) {
        __atomic_and_fetch(&safepoint_work, ~WORK_START, __ATOMIC_RELAXED);
        if (td_conf.background)
            bg_start();
    }
    if (work & WORK_INLINE) {
        uint32_t now = td_os_now_ms();
        uint32_t last = __atomic_load_n(&last_inline_pass, __ATOMIC_RELAXED);
        if (td_ms_since(last, now) * (uint64_t)1000000 < tick_ns())
            return;
        if (!__atomic_compare_exchange_n(&last_inline_pass, &last, now, false,
                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return;   /* another thread runs this one */
        __atomic_and_fetch(&safepoint_work, ~WORK_INLINE, __ATOMIC_RELAXED);
        size_t r = 0;
        /* A small budget: this is some caller's malloc or free. */
        bool pending = release_pass(td_conf.decay_ms, INLINE_PASS_BYTES,
                                    td_os_now_ns() + INLINE_PASS_NS, 0, PASS_INLINE, &r);
        __atomic_add_fetch(&released_decay, r, __ATOMIC_RELAXED);
        if (pending)
            __atomic_or_fetch(&safepoint_work, WORK_INLINE, __ATOMIC_RELAXED);
    }
}

static void release_safepoint(bool freeing)
{
    int work = __atomic_load_n(&safepoint_work, __ATOMIC_RELAXED);
    if (TIDE_UNLIKELY(freeing) && td_conf.background &&
        __atomic_load_n(&bg_state, __ATOMIC_RELAXED) == BG_NONE)
        work |= WORK_START;   /* this free is about to give it work */
    if (TIDE_UNLIKELY(work != 0))
        safepoint_slow(work);
}

static void release_fork(int phase)
{
    if (phase == 0) {
        td_lock(&sweep_lock);
    } else if (phase == 1) {
        td_unlock(&sweep_lock);
    } else {
        /* The child has no background thread; it gets one when it has
           something to return (the inherited free memory counts). */
        td_lock_reset(&sweep_lock);
        /* Calls that were under way in other threads of the parent do not
           exist here: left counted, every decay pass would yield to them
           for good. */
        __atomic_store_n(&explicit_calls, 0, __ATOMIC_RELAXED);
        bool had = __atomic_load_n(&bg_state, __ATOMIC_RELAXED) != BG_NONE;
        __atomic_store_n(&bg_state, BG_NONE, __ATOMIC_RELAXED);
        __atomic_store_n(&bg_asleep, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&bg_seq, 0, __ATOMIC_RELAXED);
        if (had)
            __atomic_or_fetch(&safepoint_work, WORK_START, __ATOMIC_RELAXED);
    }
}

__attribute__((constructor)) void td_release_init(void)
{
    td_heap_kick = release_kick;
    td_heap_safepoint = release_safepoint;
    td_heap_fork_hook = release_fork;
}

size_t td_release_now(size_t max_bytes, uint64_t max_usec, size_t keep_bytes)
{
    td_release_init();
    td_global_init();
    uint64_t deadline = max_usec ? td_os_now_ns() + max_usec * 1000u : 0;
    /* Announced first: a decay pass sweeping this thread's heap holds its
       lock, which td_heap_trim_local takes. */
    bool all = max_bytes == SIZE_MAX && max_usec == 0 && keep_bytes == 0;
    if (all)
        __atomic_add_fetch(&explicit_calls, 1, __ATOMIC_RELAXED);
    td_heap_trim_local();
    size_t r = 0;
    release_pass(0, max_bytes, deadline, keep_bytes, PASS_EXPLICIT, &r);
    if (all)
        __atomic_sub_fetch(&explicit_calls, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&released_explicit, r, __ATOMIC_RELAXED);
    release_safepoint(false);
    return r;
}

void td_release_stats(td_release_stats_t *st)
{
    td_release_init();
    st->released_decay = __atomic_load_n(&released_decay, __ATOMIC_RELAXED);
    st->released_explicit = __atomic_load_n(&released_explicit, __ATOMIC_RELAXED);
    st->passes = __atomic_load_n(&passes, __ATOMIC_RELAXED);
    st->bg_running = __atomic_load_n(&bg_state, __ATOMIC_RELAXED) != BG_NONE;
}
