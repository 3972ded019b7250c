/*
 * conf.c — TIDEMALLOC_CONF (see conf.h). No allocation: the string is read
 * in place, one key at a time, and warnings go through td_warn.
 */
#include "conf.h"

#include <stdlib.h>
#include <string.h>

td_conf_t td_conf = { .decay_ms = 500, .background = true, .purge_free = false,
                     .process_madvise = true, .thp = TD_THP_AUTO, .membarrier = true };

static bool token_is(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

static bool parse_bool(const char *s, size_t n, bool *out)
{
    if (token_is(s, n, "true") || token_is(s, n, "1") || token_is(s, n, "yes")) {
        *out = true;
        return true;
    }
    if (token_is(s, n, "false") || token_is(s, n, "0") || token_is(s, n, "no")) {
        *out = false;
        return true;
    }
    return false;
}

static bool parse_u32(const char *s, size_t n, uint32_t *out)
{
    if (n == 0 || n > 9)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* %s needs a terminated string: copy the token into a small buffer. */
static const char *clip(char *buf, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

static void apply(const char *key, size_t klen, const char *val, size_t vlen, bool has_val)
{
    char kb[48], vb[48];
    bool ok = has_val;
    if (token_is(key, klen, "decay_ms")) {
        uint32_t v;
        if (ok && (ok = parse_u32(val, vlen, &v)))
            td_conf.decay_ms = v;
    } else if (token_is(key, klen, "background")) {
        bool v;
        if (ok && (ok = parse_bool(val, vlen, &v)))
            td_conf.background = v;
    } else if (token_is(key, klen, "purge")) {
        if (ok && token_is(val, vlen, "dontneed"))
            td_conf.purge_free = false;
        else if (ok && token_is(val, vlen, "free"))
            td_conf.purge_free = true;
        else
            ok = false;
    } else if (token_is(key, klen, "process_madvise")) {
        bool v;
        if (ok && (ok = parse_bool(val, vlen, &v)))
            td_conf.process_madvise = v;
    } else if (token_is(key, klen, "membarrier")) {
        bool v;
        if (ok && (ok = parse_bool(val, vlen, &v)))
            td_conf.membarrier = v;
    } else if (token_is(key, klen, "thp")) {
        bool v;
        if (ok && token_is(val, vlen, "auto"))
            td_conf.thp = TD_THP_AUTO;
        else if (ok && (ok = parse_bool(val, vlen, &v)))
            td_conf.thp = v ? TD_THP_ON : TD_THP_OFF;
    } else {
        td_warn("TIDEMALLOC_CONF: unknown key '%s' ignored "
                "(keys: decay_ms, background, purge, process_madvise, membarrier, thp)",
                clip(kb, sizeof kb, key, klen));
        return;
    }
    if (!ok)
        td_warn("TIDEMALLOC_CONF: bad value '%s' for key '%s' ignored",
                clip(vb, sizeof vb, val, has_val ? vlen : 0), clip(kb, sizeof kb, key, klen));
}

void td_conf_parse(const char *s)
{
    if (s == NULL)
        return;
    while (*s) {
        const char *item = s;
        while (*s && *s != ',')
            s++;
        size_t len = (size_t)(s - item);
        if (*s == ',')
            s++;
        while (len > 0 && (*item == ' ' || *item == '\t')) {
            item++;
            len--;
        }
        while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t'))
            len--;
        if (len == 0)
            continue;
        size_t k = 0;
        while (k < len && item[k] != ':' && item[k] != '=')
            k++;
        bool has_val = k < len;
        apply(item, k, item + k + (has_val ? 1 : 0), has_val ? len - k - 1 : 0, has_val);
    }
}

void td_conf_init(void)
{
    /* getenv only reads environ: no allocation. */
    td_conf_parse(getenv("TIDEMALLOC_CONF"));
    td_os_set_purge_free(td_conf.purge_free);
    td_os_set_thp(td_conf.thp);
    /* Valgrind (3.19 at least) does not know process_madvise and prints a
       warning on the first call before failing it; its preloaded core
       library gives it away. */
    const char *pre = getenv("LD_PRELOAD");
    bool valgrind = pre != NULL && strstr(pre, "/vgpreload_") != NULL;
    if (valgrind)
        td_conf.process_madvise = false;
    /* Nor, for all we know, membarrier; without it idle threads' current
       slabs are not detached (heap.c, look_at_cur). */
    td_os_set_membarrier(!valgrind && td_conf.membarrier);
    td_os_set_unback_batch(td_conf.process_madvise);
}
