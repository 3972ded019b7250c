/*
 * conf.h — run-time configuration from the TIDEMALLOC_CONF environment
 * variable, read once at init without allocating.
 *
 * Syntax: comma-separated key:value pairs, e.g.
 *     TIDEMALLOC_CONF=decay_ms:250,background:false,purge:free
 * Keys:
 *     decay_ms    free memory unused this long goes back to the OS (default
 *                 500; 0: at once)
 *     background  true/false: a background thread does the returning
 *                 (default true); false leaves it to slow paths and
 *                 explicit calls
 *     purge       dontneed (default: pages leave RSS at once) or free
 *                 (MADV_FREE: the kernel takes them under memory pressure)
 *     process_madvise  true/false: give many ranges back with one
 *                 process_madvise call and one TLB flush (default true;
 *                 falls back by itself on kernels before 6.13/6.14); false
 *                 makes one madvise call per range, for sandboxes whose
 *                 seccomp filter kills on unknown system calls
 *     membarrier  true/false: use membarrier(2) (default true): the
 *                 background thread's sleep handshake and the detaching
 *                 of idle threads' slabs; false for sandboxes whose
 *                 seccomp filter kills on it (kicks then fence, and idle
 *                 threads' current slabs are not parked)
 *     thp         auto (default), true or false: ask for transparent huge
 *                 pages for blocks with their own mapping (>= 4 MiB);
 *                 auto does, except on a VM whose balloon reports free
 *                 memory to the host, where a huge page fault after idle
 *                 costs several times the base pages' faults
 * An unknown key or a bad value gives one warning line on stderr naming
 * it, and is ignored.
 */
#ifndef TIDE_CONF_H
#define TIDE_CONF_H

#include "os.h"

typedef struct {
    uint32_t decay_ms;
    bool background;
    bool purge_free;
    bool process_madvise;
    int thp;            /* TD_THP_* (os.h) */
    bool membarrier;
} td_conf_t;

extern td_conf_t td_conf;

/* Parses TIDEMALLOC_CONF into td_conf (defaults for what it omits). */
void td_conf_init(void);
/* The same from a string (NULL: defaults only); for tests. */
void td_conf_parse(const char *s);

#endif
