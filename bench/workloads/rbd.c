/*
 * Workload 3: librbd-style I/O path.
 *
 *   rbd SUBMITTERS COMPLETERS IOS_PER_SUBMITTER [INFLIGHT=128] [PIN=0]
 *
 * Each submitter thread, per I/O, allocates a burst of 6..12 small request
 * objects (sizes drawn from 16..1024 B, weighted to the small end, like the
 * completion, context, extent-vector and buffer-list nodes librbd creates),
 * links them and hands the request to a completion thread, which walks and
 * frees it. Every free is a cross-thread free. A submitter keeps at most
 * INFLIGHT requests outstanding, as a queue depth would.
 *
 * Left to the scheduler (PIN=0, the default), with more threads than CPUs a
 * submitter and a completer sometimes share a CPU and take turns (frees find
 * the objects in cache, in batches) and sometimes run at once on two CPUs
 * (every object crosses caches): the rate differs several-fold between the
 * two, so single runs are bimodal; look at the spread over repetitions.
 * PIN=1 pins thread i to CPU i mod ncpu (submitters first), which removes the
 * bimodality but suffers more from other load on the machine.
 *
 * Prints: submitters= completers= ios= secs= kiops= objs_per_io=
 */
#include "common.h"
#include <pthread.h>
#include <sched.h>
#include <sys/sysinfo.h>
#include <stdatomic.h>

typedef struct obj {
    struct obj *next; /* next object of the same request */
    uint32_t size;
    uint32_t owner; /* submitter id, in the request's head object */
} obj_t;

typedef struct req {
    obj_t head;
    struct req *qnext; /* completion queue link */
} req_t;

typedef struct {
    _Atomic(req_t *) q;
    char pad[64 - sizeof(void *)];
} queue_t;

typedef struct {
    atomic_long inflight;
    char pad[64 - sizeof(long)];
} sub_state_t;

static const uint32_t sizes[] = { 16, 24, 32, 48, 48, 64, 64, 96, 128, 128, 192, 256, 320, 512, 1024 };
#define NSIZES (sizeof sizes / sizeof sizes[0])

static int nsub, ncomp;
static uint64_t ios_per_sub;
static long max_inflight;
static queue_t *queues;
static sub_state_t *subs;
static atomic_int subs_done;
static atomic_ullong objs_total;

static void *submitter(void *arg)
{
    int id = (int)(intptr_t)arg;
    rng_t r;
    rng_seed(&r, 77 + (uint64_t)id);
    uint64_t nobj = 0;
    for (uint64_t k = 0; k < ios_per_sub; k++) {
        while (atomic_load_explicit(&subs[id].inflight, memory_order_acquire) >= max_inflight)
            sched_yield();
        uint64_t x = rng_next(&r);
        req_t *rq = malloc(sizeof(req_t) + 200); /* the "AioCompletion" */
        rq->head.size = sizeof(req_t) + 200;
        rq->head.owner = (uint32_t)id;
        rq->head.next = NULL;
        unsigned n = 6 + (unsigned)(x % 7);
        for (unsigned j = 0; j < n; j++) {
            uint32_t sz = sizes[rng_below(&r, NSIZES)];
            obj_t *o = malloc(sz);
            o->size = sz;
            ((char *)o)[sz - 1] = (char)j;
            o->next = rq->head.next;
            rq->head.next = o;
        }
        nobj += n + 1;
        atomic_fetch_add_explicit(&subs[id].inflight, 1, memory_order_relaxed);
        queue_t *q = &queues[(x >> 32) % (uint64_t)ncomp];
        req_t *h = atomic_load_explicit(&q->q, memory_order_relaxed);
        do
            rq->qnext = h;
        while (!atomic_compare_exchange_weak_explicit(&q->q, &h, rq, memory_order_release,
                                                      memory_order_relaxed));
    }
    atomic_fetch_add(&objs_total, nobj);
    atomic_fetch_add(&subs_done, 1);
    return NULL;
}

static void *completer(void *arg)
{
    queue_t *q = &queues[(intptr_t)arg];
    for (;;) {
        req_t *rq = atomic_exchange_explicit(&q->q, NULL, memory_order_acquire);
        if (!rq) {
            if (atomic_load(&subs_done) == nsub &&
                atomic_load_explicit(&q->q, memory_order_acquire) == NULL)
                break;
            sched_yield();
            continue;
        }
        while (rq) {
            req_t *next = rq->qnext;
            uint32_t owner = rq->head.owner;
            obj_t *o = rq->head.next;
            unsigned sum = 0;
            while (o) {
                obj_t *on = o->next;
                sum += (unsigned char)((char *)o)[o->size - 1];
                free(o);
                o = on;
            }
            escape(&sum);
            free(rq);
            atomic_fetch_sub_explicit(&subs[owner].inflight, 1, memory_order_release);
            rq = next;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    nsub = (int)arg_num(argc, argv, 1, 2);
    ncomp = (int)arg_num(argc, argv, 2, 2);
    ios_per_sub = (uint64_t)arg_num(argc, argv, 3, 1e6);
    max_inflight = (long)arg_num(argc, argv, 4, 128);
    int pin = (int)arg_num(argc, argv, 5, 0);
    int ncpu = get_nprocs();
    if (nsub < 1)
        nsub = 1;
    if (ncomp < 1)
        ncomp = 1;
    queues = aligned_alloc(64, sizeof(queue_t) * (size_t)ncomp);
    memset(queues, 0, sizeof(queue_t) * (size_t)ncomp);
    subs = aligned_alloc(64, sizeof(sub_state_t) * (size_t)nsub);
    memset(subs, 0, sizeof(sub_state_t) * (size_t)nsub);

    pthread_t th[nsub + ncomp];
    uint64_t t0 = now_ns();
    for (int i = 0; i < ncomp; i++)
        pthread_create(&th[nsub + i], NULL, completer, (void *)(intptr_t)i);
    for (int i = 0; i < nsub; i++)
        pthread_create(&th[i], NULL, submitter, (void *)(intptr_t)i);
    for (int i = 0; pin && ncpu > 1 && i < nsub + ncomp; i++) {
        cpu_set_t set; /* th[] holds the submitters, then the completers */
        CPU_ZERO(&set);
        CPU_SET(i % ncpu, &set);
        pthread_setaffinity_np(th[i], sizeof set, &set);
    }
    for (int i = 0; i < nsub + ncomp; i++)
        pthread_join(th[i], NULL);
    double secs = secs_since(t0);
    uint64_t ios = ios_per_sub * (uint64_t)nsub;
    printf("submitters=%d completers=%d ios=%llu secs=%.4f kiops=%.1f objs_per_io=%.2f\n", nsub,
           ncomp, (unsigned long long)ios, secs, (double)ios / secs / 1e3,
           (double)atomic_load(&objs_total) / (double)ios);
    free(queues);
    free(subs);
    return 0;
}
