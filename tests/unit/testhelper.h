/* testhelper.h — the few macros the unit tests share. A failed CHECK
   prints file:line and the condition and counts; main returns
   test_summary(), which prints "N passed, N failed" and the exit status. */
#ifndef TEST_HELPER_H
#define TEST_HELPER_H
#include <stdio.h>
#include <stdlib.h>

static int test_pass, test_fail;
#define CHECK(c) do { if (c) test_pass++; else { test_fail++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); } } while (0)
#define CHECK_MSG(c, ...) do { if (c) test_pass++; else { test_fail++; \
    fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static inline int test_summary(const char *name)
{
    printf("%s: %d checks passed, %d failed\n", name, test_pass, test_fail);
    return test_fail ? 1 : 0;
}

/* xorshift64*: deterministic, seed printed by each test. */
static inline unsigned long long test_rand(unsigned long long *s)
{
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
#endif
