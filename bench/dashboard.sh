#!/usr/bin/env bash
# The dashboard of `pipewright serve` (embedded defaults), side by side with the JSON API
# that serves the same data:
# - the runs page with 100,000 runs in the database (p50 and p95 of 200 requests each,
#   first page, a filtered page and an older page), against `GET /api/v1/runs`;
# - a run whose step printed 10 MB: its page's HTML, its log as the page's event stream
#   (all of it, until `done`), against the API's plain-text log, and in headless Chromium
#   the time from navigation to the last line on screen;
# - a live log: a step prints its clock every 100 ms; the page in Chromium records when
#   each line appears (median and p95 of the delays, same machine, same clock);
# - the server's RSS, idle, after all that.
# Goals (issue 13): runs page p95 < 50 ms, the 10 MB run page < 200 ms, a line in the
# browser < 100 ms after it is printed, idle RSS < 20 MiB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
command -v chromedriver >/dev/null || { echo "needs chromedriver (apt-get install chromium chromium-driver)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "needs sqlite3 (apt-get install sqlite3)" >&2; exit 2; }
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
git init -q --bare -b main "$work/app.git"
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' "$work" "$work" > "$work/cfg.toml"
start_server "$work" PIPEWRIGHT_ADMIN_PASSWORD=bench-password-1
git clone -q "$work/app.git" "$work/src" 2>/dev/null
mkdir -p "$work/src/.github/workflows"
cat > "$work/src/.github/workflows/big.yml" <<'YML'
on: workflow_dispatch
jobs:
  big:
    runs-on: x
    steps:
      - name: Ten megabytes
        run: python3 -c "import sys; [sys.stdout.write('line %06d %s\n' % (i, 'x' * 88)) for i in range(100000)]"
YML
cat > "$work/src/.github/workflows/live.yml" <<'YML'
on: workflow_dispatch
jobs:
  live:
    runs-on: x
    steps:
      - name: Clock
        run: python3 -u -c "import time; [print('tick', time.time_ns() // 1000000, flush=True) or time.sleep(0.1) for _ in range(250)]"
YML
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm bench
git -C "$work/src" push -q origin HEAD:main
sleep 0.5
big=$("$pw" dispatch bench/app big.yml --wait 2>/dev/null | grep -o '[0-9]\+' | head -1)
# 100,000 more runs, as the store writes them (one transaction).
sqlite3 "$work/data/pipewright.db" >/dev/null <<'SQL'
PRAGMA busy_timeout = 10000;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO runs (repo, workflow, event, git_ref, sha, status, conclusion, attempt, created_at,
                  started_at, finished_at, event_json, workflow_text)
SELECT 'bench/app', '.github/workflows/ci.yml',
       CASE WHEN i % 5 = 0 THEN 'pull_request' ELSE 'push' END,
       CASE WHEN i % 3 = 0 THEN 'refs/heads/development' ELSE 'refs/heads/main' END,
       printf('%040x', i), 'completed',
       CASE WHEN i % 17 = 0 THEN 'failure' ELSE 'success' END, 1,
       1700000000000 + i * 60000, 1700000000000 + i * 60000, 1700000000000 + i * 60000 + 42000,
       '{"name":"push"}', 'on: push'
FROM n;
SQL
python3 "${DASHBOARD_PY:-$root/bench/dashboard.py}" "$PIPEWRIGHT_SERVER" "$PIPEWRIGHT_TOKEN" "$big" "$pw" "$pid"
