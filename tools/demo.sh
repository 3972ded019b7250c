#!/usr/bin/env bash
# tools/demo.sh — the main job: real programs from Debian, run under the
# system allocator (glibc) and under tidemalloc (LD_PRELOAD) side by side,
# alternating, REPS times each; prints median wall time and peak RSS, and
# checks that both produce the same output.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3}
LIB=$PWD/build/libtidemalloc.so
OUT=build/demo
mkdir -p "$OUT"
[ -f "$LIB" ] || make -s
cc -O2 -o "$OUT/measure" bench/tools/measure.c

# The workloads: a Python program (objects, dicts, JSON, sorting) and a
# SQLite database built and queried in memory.
python_cmd=(/usr/bin/python3 bench/real/pyload.py 100000)
cat > "$OUT/demo.sql" <<'SQL'
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, body TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t SELECT x, x % 977, 'name' || x, printf('%.*c', 20 + x % 200, 'x') FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_name ON t(name);
SELECT k, count(*), sum(length(body)) FROM t GROUP BY k ORDER BY 3 DESC LIMIT 3;
SELECT count(DISTINCT name) FROM t WHERE k BETWEEN 100 AND 500;
SQL
sqlite_cmd=(sqlite3 :memory: ".read $OUT/demo.sql")

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

run_one() {   # name preload -> appends "wall rss" to $OUT/$name.$alloc
  local name=$1 alloc=$2 preload=$3; shift 3
  local line
  line=$("$OUT/measure" -p "$preload" -o "$OUT/$name.$alloc.out" -e "$OUT/$name.$alloc.err" -t 300 -- "$@")
  case "$line" in *status=ok*) ;; *) echo "FAILED: $name under $alloc: $line" >&2; cat "$OUT/$name.$alloc.err" >&2; exit 1 ;; esac
  echo "$(echo "$line" | field wall_s) $(echo "$line" | field maxrss_kb)" >> "$OUT/$name.$alloc"
}

printf '%s\n' "tidemalloc demo: $(uname -m), $(nproc) cores, $REPS runs each, alternating" \
              "library: $LIB" ""
printf '%-8s %-11s %10s %12s\n' workload allocator "time (s)" "peak RSS (MiB)"
for name in python sqlite; do
  rm -f "$OUT/$name.glibc" "$OUT/$name.tidemalloc"
  for ((r = 1; r <= REPS; r++)); do
    if [ $name = python ]; then cmd=("${python_cmd[@]}"); else cmd=("${sqlite_cmd[@]}"); fi
    run_one $name glibc "" "${cmd[@]}"
    run_one $name tidemalloc "$LIB" "${cmd[@]}"
  done
  # Same answers under both allocators (the Python workload prints its
  # own timing, which is dropped before comparing).
  if ! diff <(sed 's/secs=[^ ]*//' "$OUT/$name.glibc.out") \
            <(sed 's/secs=[^ ]*//' "$OUT/$name.tidemalloc.out") >/dev/null; then
    echo "FAILED: $name output differs between glibc and tidemalloc" >&2; exit 1
  fi
  for alloc in glibc tidemalloc; do
    t=$(cut -d' ' -f1 "$OUT/$name.$alloc" | median)
    m=$(cut -d' ' -f2 "$OUT/$name.$alloc" | median)
    printf '%-8s %-11s %10.3f %12.1f\n' $name $alloc "$t" "$(awk -v m="$m" 'BEGIN{print m/1024}')"
  done
done
echo
echo "outputs identical under both allocators; the library was loaded:"
LD_PRELOAD=$LIB /usr/bin/python3 -c 'print([l.split()[-1] for l in open("/proc/self/maps") if "tidemalloc" in l][0])'
