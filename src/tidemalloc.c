/*
 * tidemalloc.c — the whole allocator as one translation unit.
 *
 * Drop this file (with src/ and include/ beside it) into any build:
 *     cc -O2 -pthread -fPIC -c src/tidemalloc.c
 * The project's own libraries are built from it too, which gives the
 * compiler every fast path to inline, as link-time optimisation would.
 */
#include "os.c"
#include "conf.c"
#include "pagemap.c"
#include "pageheap.c"
#include "sizeclass.c"
#include "slab.c"
#include "heap.c"
#include "release.c"
#include "api.c"
