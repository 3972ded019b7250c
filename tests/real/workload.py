"""Allocation-heavy Python workload for tests/real/python.sh.

Prints deterministic results; the test compares them between a run without
the allocator preloaded and a run with it, and the script asserts its own
invariants (json round trip, dict contents) as it goes.
"""
import hashlib
import json
import random
import sys
import threading
import queue


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def dicts():
    d = {str(i): i * i for i in range(150000)}
    for i in range(0, 150000, 2):
        del d[str(i)]
    for i in range(0, 150000, 3):
        d["x" + str(i)] = [i] * (i % 7)
    assert d["149999"] == 149999 ** 2 and "2" not in d
    s = sum(v for v in d.values() if isinstance(v, int))
    return ["dicts", len(d), s, digest(sorted(d)[:1000])]


def lists():
    rnd = random.Random(1)
    a = [rnd.random() for _ in range(100000)]
    a.sort()
    b = [[j for j in range(i % 50)] for i in range(20000)]
    t = tuple(x for row in b for x in row)
    return ["lists", len(a), round(a[1000], 12), len(t), sum(t)]


def strings():
    parts = ["%d:%s" % (i, "ab" * (i % 40)) for i in range(100000)]
    s = ",".join(parts)
    s2 = s.replace("ab", "xyz")
    words = s2.split(",")
    ba = bytearray()
    for w in words[:50000]:
        ba += w.encode()  # realloc-heavy growth
    return ["strings", len(s), len(s2), len(words), hashlib.sha256(ba).hexdigest()[:16]]


def json_round_trip():
    rnd = random.Random(2)
    doc = {
        "items": [
            {"id": i, "name": "n%d" % i, "tags": ["t%d" % (i % 13)] * (i % 5),
             "score": rnd.randint(0, 10 ** 9), "nested": {"a": [i, str(i), None, True]}}
            for i in range(30000)
        ],
        "meta": {"count": 30000, "text": "\u00e9\u4e2d" * 1000},
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    assert back == doc, "json round trip changed the document"
    text2 = json.dumps(back, sort_keys=True, indent=1)
    return ["json", len(text), len(text2), hashlib.sha256(text.encode()).hexdigest()[:16]]


def threads():
    q = queue.Queue()

    def worker(k):
        rnd = random.Random(100 + k)
        acc = {}
        for i in range(20000):
            key = rnd.randint(0, 5000)
            acc.setdefault(key, []).append("v%d" % i)
            if i % 1000 == 0:
                acc = {k2: v[-3:] for k2, v in acc.items()}
        q.put((k, sum(len(v) for v in acc.values()), len(acc)))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    res = sorted(q.get() for _ in ts)
    return ["threads", res]


def main():
    for fn in (dicts, lists, strings, json_round_trip, threads):
        print(*fn())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
