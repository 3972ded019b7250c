/* fake_os.c — the os layer for unit tests: "maps" from one reserved arena
   so tests see exactly which memory the layers above ask for, and counts
   the bytes they unback. Implements what os.h declares. */
#define _GNU_SOURCE
#include "../../src/os.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_BYTES ((size_t)1 << 30)   /* address space only */
static char *arena, *arena_cur;
size_t fake_os_unbacked, fake_os_mapped;
int fake_os_fail_maps;   /* > 0: refuse that many maps (out of memory) */

void td_os_init(void) {}

void *td_os_map(size_t bytes, size_t align)
{
    if (fake_os_fail_maps > 0) {
        fake_os_fail_maps--;
        return NULL;
    }
    if (arena == NULL) {
        arena = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (arena == MAP_FAILED)
            abort();
        arena_cur = arena;
    }
    if (align < 4096)
        align = 4096;
    char *p = (char *)(((uintptr_t)arena_cur + align - 1) & ~(uintptr_t)(align - 1));
    if (p + bytes > arena + ARENA_BYTES)
        return NULL;
    arena_cur = p + bytes;
    fake_os_mapped += bytes;
    return p;
}
void td_os_unmap(void *p, size_t bytes) { (void)p; fake_os_mapped -= bytes; }
void td_os_unback(void *p, size_t bytes)
{
    /* Like MADV_DONTNEED: the pages read as zero afterwards. */
    memset(p, 0, bytes);
    fake_os_unbacked += bytes;
}
/* Batches as the real layer keeps them: nothing happens until the flush,
   so a layer that lets go of pages before flushing shows up in its tests. */
void td_os_unback_add(td_unback_batch_t *b, void *p, size_t bytes)
{
    if (bytes == 0)
        return;
    if (b->n > 0 && (char *)b->v[b->n - 1].iov_base + b->v[b->n - 1].iov_len == (char *)p) {
        b->v[b->n - 1].iov_len += bytes;
        b->bytes += bytes;
        return;
    }
    if (b->n == TD_UNBACK_MAX)
        td_os_unback_flush(b);
    b->v[b->n].iov_base = p;
    b->v[b->n].iov_len = bytes;
    b->n++;
    b->bytes += bytes;
}
void td_os_unback_flush(td_unback_batch_t *b)
{
    for (int i = 0; i < b->n; i++)
        td_os_unback(b->v[i].iov_base, b->v[i].iov_len);
    b->n = 0;
    b->bytes = 0;
}
void td_os_unback_vec(struct iovec *v, int n)
{
    for (int i = 0; i < n; i++)
        td_os_unback(v[i].iov_base, v[i].iov_len);
}
void td_os_set_unback_batch(bool on) { (void)on; }
int td_os_unback_cap(void) { return TD_UNBACK_MAX; }
void td_os_advise_huge(void *p, size_t bytes) { (void)p; (void)bytes; }
void *td_os_remap(void *p, size_t o, size_t n, bool m) { (void)p; (void)o; (void)n; (void)m; return NULL; }
size_t td_os_page_size(void) { return 4096; }
size_t td_os_reserve_cap(void) { return (size_t)16 << 20; }   /* the arena is small */
size_t td_os_hugepage_size(void) { return 2u << 20; }
unsigned td_os_ncpu(void) { return 1; }
uint64_t td_os_now_ns(void) { return 0; }
uint32_t fake_os_ms;   /* the clock tests set */
uint32_t td_os_now_ms(void) { return fake_os_ms; }
uint64_t td_os_random(void) { return 0x5eed; }
void td_lock_slow(td_lock_t *l) { while (__atomic_exchange_n(&l->state, 1, __ATOMIC_ACQUIRE)) {} }
void td_unlock_slow(td_lock_t *l) { (void)l; }
void td_os_write(int fd, const char *s, size_t n) { (void)!write(fd, s, n); }
void td_fatal(const char *fmt, ...)
{
    fprintf(stderr, "tidemalloc (fake os): fatal: %s\n", fmt);
    abort();
}
void td_warn(const char *fmt, ...) { fprintf(stderr, "warn: %s\n", fmt); }
void td_panic(const char *file, int line, const char *cond)
{
    fprintf(stderr, "PANIC %s:%d: %s\n", file, line, cond);
    abort();
}
