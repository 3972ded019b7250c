#!/bin/bash
# sqlite3 under the allocator: a 100,000-row table, two indexes, GROUP BY,
# updates, deletes, VACUUM and an integrity check.  Output must match a run
# without preload, and the known counts.
. "$(dirname "$0")/../lib/th.sh"

if ! command -v sqlite3 >/dev/null; then
    th_skip sql "sqlite3 not installed"
    th_exit
fi

cat >"$TH_TMP/work.sql" <<'SQL'
PRAGMA cache_size = -20000;
CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, x % 97, 'name-' || (x * 7919 % 100003), x * 0.5,
                     zeroblob(x % 300) FROM c;
CREATE INDEX t_grp ON t(grp);
CREATE INDEX t_name ON t(name, val);
SELECT count(*), sum(length(blob)) FROM t;
SELECT grp, count(*), sum(val), min(name), max(name) FROM t GROUP BY grp ORDER BY grp;
SELECT count(*) FROM t WHERE name LIKE 'name-1%';
UPDATE t SET name = name || '-' || grp WHERE id % 5 = 0;
DELETE FROM t WHERE id % 3 = 0;
SELECT count(*), count(DISTINCT name), group_concat(id, ',') IS NOT NULL FROM t;
SELECT substr(group_concat(name, ''), 1, 64), length(group_concat(name, '')) FROM
    (SELECT name FROM t ORDER BY name LIMIT 5000);
VACUUM;
PRAGMA integrity_check;
SQL

run_one() { # DIR RUNNER
    mkdir -p "$TH_TMP/$1"
    "$2" "$TH_TMP/$1.out" "$TH_TMP/$1.err" sqlite3 -batch -bail "$TH_TMP/$1/db.sqlite" \
        ".read $TH_TMP/work.sql"
}

run_one ref th_run
st=$?
if [ $st -ne 0 ]; then
    th_fail sql "reference run without preload failed: $(th_status_text $st): $(th_first_line "$TH_TMP/ref.err")"
    th_exit
fi
run_one tide th_run_tide
st=$?
if th_check_run sql $st "$TH_TMP/tide.err" && th_same sql "$TH_TMP/ref.out" "$TH_TMP/tide.out"; then
    if head -1 "$TH_TMP/tide.out" | grep -qx '100000|14940100' &&
        tail -1 "$TH_TMP/tide.out" | grep -qx 'ok'; then
        th_ok sql
    else
        th_fail sql "unexpected results: $(head -1 "$TH_TMP/tide.out") ... $(tail -1 "$TH_TMP/tide.out")"
    fi
fi
th_exit
