#!/usr/bin/env bash
# One `pipewright serve` on the embedded defaults (SQLite, in-process runner) running
# thousands of one-step jobs: ROUNDS runs of a 256-job matrix (default 12: 3,072 jobs),
# dispatched one after another and waited for. Prints the server's resident set (RSS)
# before, as each run ends and 1.5 s later, and once idle again. Goal: under 20 MiB, and
# flat after the first thousand jobs (what grows with the number of jobs run is a leak).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
rounds="${ROUNDS:-12}"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
git init -q --bare -b main "$work/app.git"
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' "$work" "$work" > "$work/cfg.toml"
start_server "$work"
git clone -q "$work/app.git" "$work/src" 2>/dev/null
mkdir -p "$work/src/.github/workflows"
cat > "$work/src/.github/workflows/m.yml" <<'YML'
on: workflow_dispatch
jobs:
  t:
    runs-on: x
    strategy:
      matrix:
        a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
        b: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    steps:
      - run: "true"
YML
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm m
git -C "$work/src" push -q origin HEAD:main
sleep 0.5
mib() { ps -o rss= -p $pid | awk '{printf "%.1f MiB", $1 / 1024}'; }
# Each run's end asks the server to give its free pages back (`malloc_trim`, at most once a
# second): RSS is read as the run ends, and again 1.5 s later, once that is done.
echo "| jobs run | server RSS as the run ends | 1.5 s later |"
echo "|---|---|---|"
echo "| 0 (idle) | $(mib) | |"
for r in $(seq "$rounds"); do
  "$pw" dispatch bench/app m.yml --wait >/dev/null || { echo "run $r failed" >&2; exit 1; }
  at_end=$(mib)
  sleep 1.5
  echo "| $((r * 256)) | $at_end | $(mib) |"
done
sleep 5
echo "| $((rounds * 256)), 5 s idle | $(mib) | |"
# SMAPS=1: what the resident set is made of (code pages are file-backed; the heap is anonymous).
if [ -n "${SMAPS:-}" ]; then
  awk '/^[0-9a-f]+-[0-9a-f]+ /{n=($6==""?"[anon]":$6)" "$2} /^Rss:/{r[n]+=$2} END{for(k in r) if (r[k]>=256) print r[k]" kB "k}' "/proc/$pid/smaps" | sort -rn
  grep -E "^(Rss|Anonymous|Private_Clean|Private_Dirty|Shared_Clean)" "/proc/$pid/smaps_rollup"
fi
