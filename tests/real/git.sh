#!/bin/bash
# git under the allocator: init, add and commit a generated tree of 400
# files, a second commit, log --stat, gc (pack-objects with threads), fsck.
# With fixed names and dates, commit ids are deterministic: they and the
# logs must match a run without preload.
. "$(dirname "$0")/../lib/th.sh"

if ! command -v git >/dev/null; then
    th_skip repo "git not installed"
    th_exit
fi

cat >"$TH_TMP/work.sh" <<'SH'
set -e
export HOME=$PWD GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=Tide GIT_AUTHOR_EMAIL=tide@example.invalid
export GIT_COMMITTER_NAME=Tide GIT_COMMITTER_EMAIL=tide@example.invalid
export GIT_AUTHOR_DATE='2024-01-02T03:04:05Z' GIT_COMMITTER_DATE='2024-01-02T03:04:05Z'
cp -r "$SRC" tree && cd tree
git init -q -b main .
git -c user.name=Tide -c user.email=tide@example.invalid add .
git -c user.name=Tide -c user.email=tide@example.invalid commit -q -m 'first tree'
sed -i 's/^1/one/' dir1/sub/f*.txt dir3/sub/f*.txt dir5/sub/f*.txt
git rm -q -r dir7
git -c user.name=Tide -c user.email=tide@example.invalid commit -q -a -m 'second'
git log --stat --format='%H %an %s'
git rev-parse 'HEAD^{tree}'
git gc -q
git fsck --full --strict
git count-objects -v | grep -v size
git diff --stat HEAD~1 HEAD | tail -1
SH

# The tree: 8 directories of 50 files each, of 13 to 650 lines (one awk,
# shared by both runs).
export SRC=$TH_TMP/src
awk -v root="$SRC" 'BEGIN {
    for (d = 0; d < 8; d++) {
        system("mkdir -p " root "/dir" d "/sub")
        for (f = 1; f <= 50; f++) {
            path = root "/dir" d "/sub/f" f ".txt"
            printf "file %d/%d\n", d, f > path
            for (i = 1; i <= f * 13 + d; i++) print i > path
            close(path)
        }
    }
}'

run_one() { # NAME RUNNER
    mkdir -p "$TH_TMP/$1"
    (cd "$TH_TMP/$1" && "$2" "$TH_TMP/$1.out" "$TH_TMP/$1.err" bash "$TH_TMP/work.sh")
}

run_one ref th_run
st=$?
if [ $st -ne 0 ]; then
    th_fail repo "reference run without preload failed: $(th_status_text $st): $(th_first_line "$TH_TMP/ref.err")"
    th_exit
fi
run_one tide th_run_tide
st=$?
if th_check_run repo $st "$TH_TMP/tide.err" && th_same repo "$TH_TMP/ref.out" "$TH_TMP/tide.out"; then
    if grep -q 'second' "$TH_TMP/tide.out" && grep -q '400 files changed\|50 files changed' "$TH_TMP/tide.out"; then
        th_ok repo
    else
        th_fail repo "unexpected log: $(th_first_line "$TH_TMP/tide.out")"
    fi
fi
th_exit
