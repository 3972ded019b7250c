"""Workload 10a: a Python program's allocation mix (run by /usr/bin/python3).

    pyload.py SCALE

Objects with instance dicts, a name index, JSON round trip, string building,
sorting tuples, and a rolling window of short lists: the small-object churn
of CPython's object allocator (pymalloc arenas come from malloc/mmap; every
object above 512 B, every dict resize and list growth goes to malloc).
Prints one line: n= secs=
"""
import json
import random
import sys
import time


class Rec:
    def __init__(self, i):
        self.id = i
        self.name = "rec%07d" % i
        self.tags = ["t%d" % (i % 13), "u%d" % (i % 7)]
        self.attrs = {"a": i, "b": str(i) * 3, "c": [i, i + 1, i + 2]}


def main():
    n = int(float(sys.argv[1])) if len(sys.argv) > 1 else 200000
    rnd = random.Random(10)
    t0 = time.perf_counter()
    recs = [Rec(i) for i in range(n)]
    index = {r.name: r for r in recs}
    blob = json.dumps([r.__dict__ for r in recs])
    back = json.loads(blob)
    assert len(back) == n and len(index) == n
    words = ["".join(rnd.choices("abcdefghijklmnop", k=rnd.randint(3, 40))) for _ in range(n)]
    counts = {}
    for w in words:
        counts[w[:3]] = counts.get(w[:3], 0) + 1
    words.sort()
    pairs = sorted((r.attrs["a"] % 97, r.name) for r in recs)
    window = [None] * 4096
    for i in range(n * 4):
        window[i & 4095] = [i] * (i % 64) if i % 3 else {"k": i, "v": str(i)}
    text = "\n".join("%s,%d,%s" % (r.name, r.id, ";".join(r.tags)) for r in recs)
    rows = [line.split(",") for line in text.splitlines()]
    del recs, index, blob, back, words, pairs, window, text
    secs = time.perf_counter() - t0
    print("n=%d secs=%.4f groups=%d rows=%d" % (n, secs, len(counts), len(rows)))


main()
