#!/usr/bin/python3
"""bench/report.py: turn bench/run.sh's raw results into tables and charts.

    report.py --raw RAW.tsv --meta META.txt --cmds CMDS.tsv --out DIR [--tmp DIR] [--no-charts]

RAW.tsv has one row per figure of one run: rep, workload, allocator, key,
value. The report takes, for every metric, the median over the repetitions
that finished cleanly, and its ratio to the best of the peers (jemalloc,
tcmalloc, mimalloc) and to glibc. Ratios are oriented so that above 1 is
worse than the reference, whichever way the metric points (for a
higher-is-better metric the ratio is reference / value).

Writes DIR/latest.md, DIR/latest.tsv (medians and ratios) and, with gnuplot,
DIR/*.svg.
"""
import argparse
import collections
import math
import os
import statistics
import subprocess
import sys

ALLOCS = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "tidemalloc"]
PEERS = ["jemalloc", "tcmalloc", "mimalloc"]
COLORS = {"glibc": "#888888", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c",
          "mimalloc": "#9467bd", "tidemalloc": "#d62728"}

# metric: (key, label, better) ; better is "lower", "higher" or None (information)
WALL = ("wall_s", "wall time of the run (s)", "lower")
PEAK = ("peak_rss_mb", "peak RSS (MiB)", "lower")
MINFLT = ("minflt", "minor page faults (whole run)", None)

WORKLOADS = collections.OrderedDict([
    ("churn", dict(
        title="1. Small-object churn, one thread",
        text="Random sizes 8–256 B, a window of 4096 live objects, each operation frees a "
             "random slot and mallocs a new object there.",
        primary="ns_per_pair",
        metrics=[("ns_per_pair", "time per free+malloc (ns)", "lower"),
                 ("mops", "throughput (M pairs/s)", "higher"), WALL, PEAK])),
    ("larson", dict(
        title="2. Larson-style server",
        text="4 threads each replace random objects (16–1024 B) in a window of 2000; 10% of "
             "replaced objects are handed to another thread, which frees them.",
        primary="mops",
        metrics=[("mops", "throughput (M ops/s)", "higher"), ("secs", "loop time (s)", "lower"),
                 WALL, PEAK])),
    ("rbd", dict(
        title="3. librbd-style I/O",
        text="2 submitter threads allocate a burst of 7–13 request objects (16–1024 B) per I/O "
             "and pass it to 2 completion threads, which free it: every free is cross-thread. "
             "On 2 CPUs the rate is bimodal from run to run (threads sharing a CPU and taking "
             "turns vs. running at once on two CPUs): judge it by the spread and several "
             "repetitions.",
        primary="kiops",
        metrics=[("kiops", "I/O rate (k I/O per s)", "higher"), ("secs", "loop time (s)", "lower"),
                 WALL, PEAK])),
    ("nearpage", dict(
        title="4. Near-page random sizes (Xen / compcache)",
        text="A population of objects of random size 1 B–4.5 KiB, fully written, replaced at "
             "random. Latency of one free+malloc pair after warm-up (TSC, histogram).",
        primary="rss_over_live",
        metrics=[("secs", "churn time (s)", "lower"),
                 ("rss_over_live", "VmRSS / live requested bytes", "lower"),
                 ("p50_ns", "free+malloc p50 (ns)", "lower"),
                 ("p99_ns", "free+malloc p99 (ns)", "lower"),
                 ("p999_ns", "free+malloc p99.9 (ns)", "lower"),
                 ("p9999_ns", "free+malloc p99.99 (ns)", "lower"),
                 ("max_ns", "free+malloc max (ns)", None), WALL, PEAK])),
    ("hugetail", dict(
        title="5. Hugepage tails",
        text="A heap of 2.1 MiB, 5 MiB and 10.1 MiB objects, fully written, churned by random "
             "replacement. THP share = AnonHugePages / Rss (smaps_rollup); THP mode on this "
             "machine is in the header.",
        primary="rss_over_req",
        metrics=[("secs", "time incl. writing (s)", "lower"),
                 ("alloc_ms", "time inside malloc+free (ms)", "lower"),
                 ("rss_over_req", "RSS / requested bytes", "lower"),
                 ("thp_share", "share of RSS in hugepages", "higher"), WALL, PEAK])),
    ("idle", dict(
        title="6. Burst then idle (VM backup)",
        text="Threads allocate ~1 GiB (quick: 256 MiB) of 4 MiB, 64 KiB and small objects, free "
             "it (half from another thread; 1 small object in 64 survives), then make no "
             "allocator call at all while VmRSS is sampled.",
        primary="rss_idle_5s_mb",
        metrics=[("rss_before_mb", "VmRSS before burst (MiB)", None),
                 ("rss_peak_mb", "VmRSS at peak (MiB)", "lower"),
                 ("rss_idle_0s_mb", "VmRSS idle 0 s (MiB)", "lower"),
                 ("rss_idle_0.5s_mb", "VmRSS idle 0.5 s (MiB)", "lower"),
                 ("rss_idle_1s_mb", "VmRSS idle 1 s (MiB)", "lower"),
                 ("rss_idle_2s_mb", "VmRSS idle 2 s (MiB)", "lower"),
                 ("rss_idle_5s_mb", "VmRSS idle 5 s (MiB)", "lower"),
                 ("live_after_mb", "still live after the frees (MiB)", None),
                 ("burst_secs", "burst time (s)", "lower"),
                 ("free_secs", "free time (s)", "lower"), WALL])),
    ("trim", dict(
        title="7. malloc_trim(0) on a fragmented heap",
        text="~1.2 GiB (quick: 256 MiB) in mixed sizes, all but every 16th object freed, then "
             "malloc_trim(0) while a bystander thread keeps allocating. trim_impl shows whose "
             "malloc_trim ran: libc.so.6 means the allocator has none and glibc's (empty) heap "
             "was trimmed instead.",
        primary="rss_after_mb",
        metrics=[("trim_ms", "malloc_trim wall time (ms)", "lower"),
                 ("rss_before_mb", "VmRSS before trim (MiB)", "lower"),
                 ("rss_after_mb", "VmRSS after trim (MiB)", "lower"),
                 ("live_mb", "live requested (MiB)", None),
                 ("stall_max_us", "bystander's longest gap during trim (µs)", "lower"),
                 ("base_gap_max_us", "bystander's longest gap before trim (µs)", None),
                 ("stalls_1ms", "bystander's gaps over 1 ms during trim", "lower"),
                 ("base_stalls_1ms_per_s", "bystander's gaps over 1 ms per s before trim", None),
                 ("trim_impl", "malloc_trim provided by", None), WALL, PEAK])),
    ("threads", dict(
        title="8a. Thread churn",
        text="Short-lived threads, 4 at a time, each allocating 16 B–4 KiB objects; each frees "
             "the quarter its predecessor left alive.",
        primary="secs",
        metrics=[("secs", "time (s)", "lower"), ("threads_per_s", "threads per second", "higher"),
                 WALL, PEAK])),
    ("realloc", dict(
        title="8b. realloc growth",
        text="Vectors grown by doubling with realloc up to 64 MiB (quick: 16 MiB), interleaved, "
             "each new half written.",
        primary="secs",
        metrics=[("secs", "time (s)", "lower"), ("moved_pct", "reallocs that moved (%)", None),
                 WALL, PEAK])),
    ("startup", dict(
        title="9. Start-up",
        text="/bin/true run many times in a row under the preload.",
        primary="us_per_run",
        metrics=[("us_per_run", "per run of /bin/true (µs)", "lower"),
                 ("secs", "total (s)", "lower"), WALL])),
    ("python", dict(
        title="10a. Python (/usr/bin/python3)",
        text="Objects, dicts, JSON round trip, sorting, string building (bench/real/pyload.py).",
        primary="wall_s",
        metrics=[("secs", "script's own time (s)", "lower"), WALL, PEAK])),
    ("sqlite", dict(
        title="10b. sqlite3",
        text="In-memory database: bulk insert, two indexes, group-by, sort, self-join, update, "
             "delete (bench/real/sqlite.sql.in).",
        primary="wall_s",
        metrics=[WALL, PEAK])),
    ("gcc", dict(
        title="10c. gcc -O2 (driver, cc1 and as under the preload)",
        text="Compiling a generated C file (bench/real/gen_c.py).",
        primary="wall_s",
        metrics=[WALL, PEAK])),
])


def fnum(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3g" % v


def fmt_ratio(r):
    if r is None:
        return "–"
    if r == math.inf:
        return "∞"
    if r >= 100:
        return "%.0f×" % r
    return "%.2f×" % r


def ratio(v, ref, better):
    """> 1 means v is worse than ref."""
    if v is None or ref is None or better is None:
        return None
    if better == "lower":
        if ref == 0:
            return 1.0 if v == 0 else math.inf
        return v / ref
    if v == 0:
        return None if ref == 0 else math.inf
    return ref / v


def best_of(vals, better):
    vals = [v for v in vals if v is not None]
    if not vals or better is None:
        return None
    return min(vals) if better == "lower" else max(vals)


def read_meta(path):
    meta = collections.OrderedDict()
    notes = []
    if path and os.path.exists(path):
        for line in open(path, encoding="utf-8", errors="replace"):
            k, _, v = line.rstrip("\n").partition("\t")
            if k == "note":
                notes.append(v)
            else:
                meta[k] = v
    return meta, notes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta")
    ap.add_argument("--cmds")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmp")
    ap.add_argument("--no-charts", action="store_true")
    args = ap.parse_args()
    meta, notes = read_meta(args.meta)
    tmp = args.tmp or os.path.join(args.out, "tmp")

    # runs[(wl, alloc, rep)] = {key: value}
    runs = collections.OrderedDict()
    for line in open(args.raw, encoding="utf-8", errors="replace"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 5:
            continue
        rep, wl, alloc, k, v = parts
        runs.setdefault((wl, alloc, int(rep)), {})[k] = v
    cmds = {}
    if args.cmds and os.path.exists(args.cmds):
        for line in open(args.cmds, encoding="utf-8", errors="replace"):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                cmds[(parts[0], parts[1], int(parts[2]))] = parts[3]

    allocs_present = meta.get("allocs", "").split() or sorted(
        {a for (_, a, _) in runs}, key=lambda a: ALLOCS.index(a) if a in ALLOCS else 99)
    allocs = [a for a in ALLOCS if a in allocs_present] + \
             [a for a in allocs_present if a not in ALLOCS]
    wls = [w for w in WORKLOADS if any(k[0] == w for k in runs)] + \
          sorted({k[0] for k in runs if k[0] not in WORKLOADS and k[0] != "callgrind"})

    # statuses and per-metric samples from clean runs
    status = collections.defaultdict(list)  # (wl, alloc) -> [(rep, status)]
    samples = collections.defaultdict(list)  # (wl, alloc, key) -> [values]
    for (wl, alloc, rep), kv in runs.items():
        if wl == "callgrind":
            continue
        st = kv.get("status", "missing")
        status[(wl, alloc)].append((rep, st))
        if "maxrss_kb" in kv and fnum(kv["maxrss_kb"]) is not None:
            kv["peak_rss_mb"] = str(fnum(kv["maxrss_kb"]) / 1024.0)
        if st != "ok":
            continue
        for k, v in kv.items():
            samples[(wl, alloc, k)].append(v)

    def median(wl, alloc, key):
        vals = samples.get((wl, alloc, key), [])
        nums = [fnum(v) for v in vals]
        if not vals:
            return None, None
        if any(n is None for n in nums):  # text: most common value
            return collections.Counter(vals).most_common(1)[0][0], None
        med = statistics.median(nums)
        spread = (max(nums) - min(nums)) / abs(med) if len(nums) > 1 and med else None
        return med, spread

    # table rows: wl -> list of dict(metric, label, better, med{alloc}, spread{alloc}, rp{}, rg{})
    table = collections.OrderedDict()
    tsv = ["workload\tmetric\tbetter\tallocator\tmedian\truns\tspread\tratio_best_peer\tratio_glibc"]
    for wl in wls:
        spec = WORKLOADS.get(wl)
        if spec:
            metrics = list(spec["metrics"])
            if not any(m[0] == "minflt" for m in metrics):
                metrics.append(MINFLT)
        else:
            keys = sorted({k for (w, a, k) in samples if w == wl} - {"status"})
            metrics = [(k, k, None) for k in keys]
        rows = []
        for key, label, better in metrics:
            med, spr = {}, {}
            for a in allocs:
                med[a], spr[a] = median(wl, a, key)
            if all(v is None for v in med.values()):
                continue
            numeric = all(v is None or isinstance(v, float) for v in med.values())
            b = better if numeric else None
            bp = best_of([med.get(p) for p in PEERS if p in med], b)
            rp = {a: ratio(med[a], bp, b) for a in allocs}
            rg = {a: ratio(med[a], med.get("glibc"), b) for a in allocs}
            rows.append(dict(key=key, label=label, better=b, med=med, spr=spr, rp=rp, rg=rg))
            for a in allocs:
                n = len(samples.get((wl, a, key), []))
                tsv.append("\t".join([wl, key, b or "", a, fmt(med[a]) if med[a] is not None else "",
                                      str(n), "%.3f" % spr[a] if spr[a] is not None else "",
                                      "%.4g" % rp[a] if rp[a] is not None else "",
                                      "%.4g" % rg[a] if rg[a] is not None else ""]))
        table[wl] = rows

    # callgrind
    cg = {}
    for (wl, alloc, rep), kv in runs.items():
        if wl == "callgrind":
            cg[alloc] = kv
            for k in ("ir_per_pair", "raw_ir_per_pair", "loop_ir_per_pair"):
                tsv.append("\t".join(["callgrind", k, "lower", alloc, kv.get(k, ""), "1", "", "", ""]))

    out = []
    w = out.append
    w("# tidemalloc benchmark results")
    w("")
    w("Generated by `bench/run.sh%s` on %s. Every figure is the median of the clean runs; "
      "runs of different allocators were interleaved." % (" --quick" if meta.get("mode") == "quick" else "",
                                                           meta.get("date", "?")))
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in [("mode", "mode"), ("reps", "repetitions"), ("cpu", "CPU"), ("cores", "cores"),
                     ("kernel", "kernel"), ("libc", "glibc"), ("thp", "transparent hugepages"),
                     ("load_start", "load average at start"), ("load_end", "load average at end"),
                     ("duration_s", "duration (s)")]:
        if k in meta:
            w("| %s | %s |" % (label, meta[k].replace("|", "\\|")))
    for a in allocs:
        if "alloc." + a in meta:
            w("| %s | `%s` |" % (a, meta["alloc." + a]))
    w("")
    for n in notes:
        w("> **Note:** %s" % n)
        w("")
    w("Ratios: **×best peer** = this allocator's median / the best median of jemalloc, tcmalloc "
      "and mimalloc; **×glibc** = / glibc's. Oriented so that **above 1.00 is worse**, also for "
      "higher-is-better metrics (there the ratio is reference / value). ± is the spread "
      "(max − min) / median over the repetitions.")
    w("")

    # summary
    w("## Summary: primary metric of each workload")
    w("")
    w("| workload | metric | " + " | ".join(allocs) + " |")
    w("|---|---|" + "---:|" * len(allocs))
    geo = collections.defaultdict(list)
    geo_g = collections.defaultdict(list)
    summary_rows = []
    for wl in wls:
        spec = WORKLOADS.get(wl, {})
        prim = spec.get("primary")
        row = next((r for r in table[wl] if r["key"] == prim), None)
        if row is None:
            continue
        cells = []
        for a in allocs:
            if row["med"][a] is None:
                cells.append(fail_cell(status.get((wl, a), [])))
                continue
            cells.append("%s (%s)" % (fmt(row["med"][a]), fmt_ratio(row["rp"][a])))
            if row["rp"][a] not in (None, math.inf) and row["rp"][a] > 0:
                geo[a].append(row["rp"][a])
            if row["rg"][a] not in (None, math.inf) and row["rg"][a] > 0:
                geo_g[a].append(row["rg"][a])
        summary_rows.append((wl, row))
        w("| %s | %s | %s |" % (wl, row["label"], " | ".join(cells)))
    w("| **geometric mean ×best peer** | | %s |" % " | ".join(
        fmt_ratio(math.exp(sum(map(math.log, geo[a])) / len(geo[a]))) if geo[a] else "–" for a in allocs))
    w("| **geometric mean ×glibc** | | %s |" % " | ".join(
        fmt_ratio(math.exp(sum(map(math.log, geo_g[a])) / len(geo_g[a]))) if geo_g[a] else "–"
        for a in allocs))
    w("")
    w("Cells: median (×best peer).")
    w("")

    if cg:
        w("## Instructions per malloc+free pair (callgrind, workload 1)")
        w("")
        w("`bench/callgrind.sh`: total instructions of churn with N and N/10 pairs, difference / "
          "(0.9 N): start-up, window fill and teardown cancel out. *loop* is the same for the "
          "loop without allocator calls; *allocator* = raw − loop.")
        w("")
        w("| | " + " | ".join(a for a in allocs if a in cg) + " |")
        w("|---|" + "---:|" * len([a for a in allocs if a in cg]))
        for k, label in [("ir_per_pair", "allocator Ir per free+malloc"),
                         ("raw_ir_per_pair", "raw Ir per iteration"),
                         ("loop_ir_per_pair", "loop Ir per iteration"), ("pairs", "pairs (N)"),
                         ("status", "status")]:
            w("| %s | %s |" % (label, " | ".join(
                fmt(fnum(cg[a].get(k))) if fnum(cg[a].get(k)) is not None else cg[a].get(k, "–")
                for a in allocs if a in cg)))
        # Ratios to the leanest peer: the allocator's share, and the whole
        # program's (loop included), which dilutes the same gap.
        for k, label in [("ir_per_pair", "allocator Ir ÷ leanest peer's"),
                         ("raw_ir_per_pair", "raw Ir ÷ leanest peer's (whole program)")]:
            peer = [fnum(cg[p].get(k)) for p in PEERS if p in cg and fnum(cg[p].get(k)) is not None]
            if not peer:
                continue
            lean = min(peer)
            w("| %s | %s |" % (label, " | ".join(
                "%.3f" % (fnum(cg[a].get(k)) / lean) if fnum(cg[a].get(k)) is not None else "–"
                for a in allocs if a in cg)))
        w("")

    # per workload
    w("## Workloads")
    w("")
    for wl in wls:
        spec = WORKLOADS.get(wl, {})
        w("### %s (`%s`)" % (spec.get("title", wl), wl))
        w("")
        if spec.get("text"):
            w(spec["text"])
            w("")
        c = next((cmds[k] for k in cmds if k[0] == wl), None)
        if c:
            w("Command: `%s` (LD_PRELOAD varies)" % strip_preload(c))
            w("")
        rows = table[wl]
        w("| metric | better | " + " | ".join(allocs) + " |")
        w("|---|---|" + "---:|" * len(allocs))
        for r in rows:
            cells = []
            for a in allocs:
                v = r["med"][a]
                if v is None:
                    cells.append(fail_cell(status.get((wl, a), [])))
                    continue
                s = fmt(v)
                if r["spr"][a] is not None and r["spr"][a] >= 0.005:
                    s += " ±%.0f%%" % (100 * r["spr"][a]) if r["spr"][a] < 10 else " ±>999%"
                cells.append(s)
            w("| %s | %s | %s |" % (r["label"], r["better"] or "", " | ".join(cells)))
        scored = [r for r in rows if r["better"]]
        if scored:
            w("")
            w("| ratio ×best peer / ×glibc | " + " | ".join(allocs) + " |")
            w("|---|" + "---:|" * len(allocs))
            for r in scored:
                w("| %s | %s |" % (r["label"], " | ".join(
                    "%s / %s" % (fmt_ratio(r["rp"][a]), fmt_ratio(r["rg"][a])) if r["med"][a] is not None
                    else "–" for a in allocs)))
        bad = [(a, rep, st) for a in allocs for rep, st in status.get((wl, a), []) if st != "ok"]
        if bad:
            w("")
            w("Failed runs: " + ", ".join("%s rep %d: %s" % (a, rep, st) for a, rep, st in bad))
        w("")
        if not args.no_charts:
            w("![%s](%s)" % (wl, "wl_%s.svg" % wl))
            w("")

    # failures
    fails = []
    for (wl, a), sts in status.items():
        for rep, st in sts:
            if st != "ok" and not st.startswith("skipped"):
                fails.append((wl, a, rep, st))
    for a, kv in cg.items():
        if kv.get("status", "ok") != "ok":
            fails.append(("callgrind", a, 1, kv.get("status")))
    if fails:
        w("## Failures and how to reproduce them")
        w("")
        for wl, a, rep, st in fails:
            c = cmds.get((wl, a, rep), "?")
            w("- **%s / %s (rep %d): %s**  " % (wl, a, rep, st))
            w("  `%s`" % c)
            errf = os.path.join(tmp, "runs", "%s.%s.%d.err" % (wl, a, rep))
            if wl == "callgrind":
                errf = os.path.join(tmp, "runs", "callgrind.%s.err" % a)
            if os.path.exists(errf):
                tail = open(errf, errors="replace").read().strip().splitlines()[-4:]
                if tail:
                    w("")
                    w("  ```")
                    for t in tail:
                        w("  " + t[:200])
                    w("  ```")
        w("")

    charts = []
    if not args.no_charts:
        try:
            charts = draw_charts(args.out, tmp, allocs, wls, table, summary_rows, cg)
        except (OSError, subprocess.SubprocessError) as e:
            print("report.py: charts failed: %s" % e, file=sys.stderr)
            w("> charts failed: %s" % e)
        if charts:
            w("## Charts")
            w("")
            for f, title in charts:
                if not f.startswith("wl_"):
                    w("![%s](%s)" % (title, f))
                    w("")

    with open(os.path.join(args.out, "latest.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    with open(os.path.join(args.out, "latest.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(tsv) + "\n")
    return 0


def strip_preload(c):
    if c.startswith("LD_PRELOAD="):
        return c.split(" ", 1)[1] if " " in c else c
    return c


def fail_cell(sts):
    bad = [st for _, st in sts if st != "ok"]
    if bad:
        return "**FAIL** (%s)" % ", ".join(sorted(set(bad)))
    return "–"


# ---- charts --------------------------------------------------------------

def gp_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_gnuplot(script_path):
    r = subprocess.run(["gnuplot", script_path], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise OSError("gnuplot %s: %s" % (os.path.basename(script_path),
                                          r.stderr.decode(errors="replace").strip()[-300:]))


def bar_chart(out_dir, tmp, name, title, ylabel, labels, series, allocs, logscale=True):
    """labels: x categories; series[alloc] = list of values (None = missing)."""
    dat = os.path.join(tmp, "plot", name + ".dat")
    gp = os.path.join(tmp, "plot", name + ".gp")
    svg = os.path.join(out_dir, name + ".svg")
    with open(dat, "w") as f:
        for i, lab in enumerate(labels):
            vals = []
            for a in allocs:
                v = series[a][i]
                vals.append("NaN" if v is None or v <= 0 or v == math.inf else "%.6g" % v)
            f.write("%s %s\n" % (gp_quote(lab), " ".join(vals)))
    width = max(640, 160 + 16 * len(labels) * (len(allocs) + 1))
    lines = [
        "set terminal svg size %d,420 dynamic font 'sans,11' background '#ffffff'" % width,
        "set output %s" % gp_quote(svg),
        "set title %s" % gp_quote(title),
        "set ylabel %s" % gp_quote(ylabel),
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.9 border -1",
        "set boxwidth 0.9",
        "set key outside right top vertical",
        "set grid ytics",
        "set xtics rotate by 30 right noenhanced nomirror",
        "set bmargin 7",
        "set datafile missing 'NaN'",
    ]
    if logscale:
        lines.append("set logscale y")
        lines.append("set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc rgb '#000000'")
    plots = []
    for i, a in enumerate(allocs):
        plots.append("%s using %d%s title %s lc rgb %s" % (
            gp_quote(dat) if i == 0 else "''", i + 2, ":xtic(1)" if i == 0 else "",
            gp_quote(a), gp_quote(COLORS.get(a, "#444444"))))
    lines.append("plot " + ", ".join(plots))
    with open(gp, "w") as f:
        f.write("\n".join(lines) + "\n")
    run_gnuplot(gp)
    return os.path.basename(svg)


def draw_charts(out_dir, tmp, allocs, wls, table, summary_rows, cg):
    os.makedirs(os.path.join(tmp, "plot"), exist_ok=True)
    charts = []
    if summary_rows:
        labels = [wl for wl, r in summary_rows]
        series = {a: [r["rp"][a] for _, r in summary_rows] for a in allocs}
        if any(v for s in series.values() for v in s):
            charts.append((bar_chart(out_dir, tmp, "summary",
                                     "Primary metric per workload, ratio to best peer (lower is better)",
                                     "× best of jemalloc/tcmalloc/mimalloc", labels, series, allocs),
                           "summary"))
    for wl in wls:
        rows = [r for r in table[wl] if r["better"]]
        if not rows:
            continue
        labels = [r["key"] for r in rows]
        series = {a: [r["rp"][a] for r in rows] for a in allocs}
        if not any(v for s in series.values() for v in s):
            continue
        charts.append((bar_chart(out_dir, tmp, "wl_" + wl,
                                 "%s: ratio to best peer (lower is better)" % wl,
                                 "× best peer", labels, series, allocs), wl))
    # idle RSS over time
    if "idle" in table:
        pts = [("rss_before_mb", "before"), ("rss_peak_mb", "peak"), ("rss_idle_0s_mb", "idle 0s"),
               ("rss_idle_0.5s_mb", "0.5s"), ("rss_idle_1s_mb", "1s"), ("rss_idle_2s_mb", "2s"),
               ("rss_idle_5s_mb", "5s")]
        rows = {r["key"]: r for r in table["idle"]}
        pts = [p for p in pts if p[0] in rows]
        if pts:
            dat = os.path.join(tmp, "plot", "idle_rss.dat")
            gp = os.path.join(tmp, "plot", "idle_rss.gp")
            with open(dat, "w") as f:
                for i, (k, lab) in enumerate(pts):
                    vals = [rows[k]["med"][a] for a in allocs]
                    f.write("%d %s %s\n" % (i, gp_quote(lab), " ".join(
                        "NaN" if v is None else "%.3f" % v for v in vals)))
            plots = ["%s using 1:%d:xtic(2) with linespoints lc rgb %s lw 2 pt 7 title %s" % (
                gp_quote(dat) if i == 0 else "''", i + 3, gp_quote(COLORS.get(a, "#444")), gp_quote(a))
                for i, a in enumerate(allocs)]
            with open(gp, "w") as f:
                f.write("\n".join([
                    "set terminal svg size 760,420 dynamic font 'sans,11' background '#ffffff'",
                    "set output %s" % gp_quote(os.path.join(out_dir, "idle_rss.svg")),
                    "set title 'Burst then idle: VmRSS (MiB); no allocator calls after the frees'",
                    "set ylabel 'VmRSS (MiB)'", "set grid", "set key outside right top",
                    "set datafile missing 'NaN'", "set yrange [0:*]",
                    "plot " + ", ".join(plots)]) + "\n")
            run_gnuplot(gp)
            charts.append(("idle_rss.svg", "idle RSS"))
    if cg:
        have = [a for a in allocs if a in cg and fnum(cg[a].get("ir_per_pair")) is not None]
        if have:
            dat = os.path.join(tmp, "plot", "callgrind.dat")
            gp = os.path.join(tmp, "plot", "callgrind.gp")
            with open(dat, "w") as f:
                for i, a in enumerate(have):
                    f.write("%d %s %s %d\n" % (i, a, cg[a]["ir_per_pair"],
                                               int(COLORS.get(a, "#444444")[1:], 16)))
            with open(gp, "w") as f:
                f.write("\n".join([
                    "set terminal svg size 640,380 dynamic font 'sans,11' background '#ffffff'",
                    "set output %s" % gp_quote(os.path.join(out_dir, "callgrind.svg")),
                    "set title 'Instructions per free+malloc pair (callgrind, loop subtracted)'",
                    "set style fill solid 0.9 border -1", "set boxwidth 0.6", "set grid ytics",
                    "set yrange [0:*]", "unset key",
                    "plot %s using 1:3:4:xtic(2) with boxes lc rgb variable, '' using 1:3:(sprintf('%%.0f',$3)) with labels offset 0,0.7" % gp_quote(dat)]) + "\n")
            run_gnuplot(gp)
            charts.append(("callgrind.svg", "instructions per pair"))
    return charts


if __name__ == "__main__":
    sys.exit(main())
