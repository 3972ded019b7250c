"""Generate a C translation unit for workload 10c (gcc -O2 under the preload).

    gen_c.py NFUNCS > out.c

Many functions with structs, loops, switches and inlinable helpers, so that
cc1 builds large trees and RTL (a lot of malloc traffic besides its GC heap).
"""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
out = ["#include <stddef.h>", "#include <string.h>", ""]
for i in range(n):
    out.append("struct s%d { int a[%d]; double d; const char *name; struct s%d *next; };" % (i, 4 + i % 9, i))
    out.append("static inline int h%d(int x) { return (x * %d) ^ (x >> %d); }" % (i, 2 * i + 3, i % 7 + 1))
    body = ["int f%d(struct s%d *p, int n, const char *str)" % (i, i), "{", "    int acc = %d;" % i]
    body.append("    for (int k = 0; k < n; k++) {")
    body.append("        switch ((k + acc) %% %d) {" % (5 + i % 6))
    for c in range(5 + i % 6):
        body.append("        case %d: acc += h%d(p->a[k %% %d]) * %d; break;" % (c, i, 4 + i % 9, c + 1))
    body.append("        default: acc ^= k;")
    body.append("        }")
    body.append("        if (p->next && (acc & %d)) acc -= p->next->a[0];" % (1 << (i % 5)))
    body.append("    }")
    body.append("    for (size_t j = 0; str && j < strlen(str); j++) acc = acc * 31 + str[j];")
    body.append("    p->d = acc * %d.5;" % i)
    body.append("    return acc;")
    body.append("}")
    out.extend(body)
out.append("int all(void *v, int n) { int t = 0;")
for i in range(n):
    out.append("    t += f%d((struct s%d *)v, n, \"x%d\");" % (i, i, i))
out.append("    return t; }")
print("\n".join(out))
