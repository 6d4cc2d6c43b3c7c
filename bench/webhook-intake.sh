#!/usr/bin/env bash
# Webhook intake of `pipewright serve` (embedded SQLite) on loopback, loaded by wrk: signed
# GitHub push deliveries (a 3 KiB payload, each with its own delivery id; every tenth one a
# redelivery of the one before), as many as wrk's connections can send for DURATION seconds.
# Reports deliveries per second and latency percentiles, then waits until the server has
# turned every delivery into runs and checks that each delivery it accepted queued exactly
# one run (redeliveries none).
# Goal: at least 5,000 deliveries per second with p99 under 20 ms, every one queued once.
#
#   bench/webhook-intake.sh [DURATION] [CONNECTIONS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
duration="${1:-10}"
conns="${2:-16}"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
secret=bench-secret
git init -q --bare -b main "$work/app.git"
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[runner]\nembedded_capacity = 0\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\nwebhook_secret = "%s"\n' \
  "$work" "$work" "$secret" > "$work/cfg.toml"
start_server "$work"
url="$PIPEWRIGHT_SERVER"
git clone -q "$work/app.git" "$work/src" 2>/dev/null
mkdir -p "$work/src/.github/workflows"
# Fires on every push to main; its one job is skipped, so what is measured is the intake
# (and the orchestration of the runs it queues), not jobs.
printf 'on:\n  push:\n    branches: [main]\njobs:\n  t:\n    if: false\n    runs-on: x\n    steps:\n      - run: "true"\n' \
  > "$work/src/.github/workflows/t.yml"
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm t
git -C "$work/src" push -q origin HEAD:main
before=$(git -C "$work/src" rev-parse --verify -q "HEAD^" || echo 0000000000000000000000000000000000000000)
sha=$(git -C "$work/src" rev-parse HEAD)
sleep 0.5 # the push's own run
# A GitHub-shaped push payload, and its signature.
python3 - "$work" "$secret" "$before" "$sha" <<'PY'
import hashlib, hmac, json, sys
work, secret, before, sha = sys.argv[1:5]
user = {"name": "Bench", "email": "bench@example.invalid", "username": "bench"}
commit = {"id": sha, "tree_id": sha, "distinct": True, "message": "t " * 40,
          "timestamp": "2026-11-28T12:00:00Z", "url": f"https://example.invalid/bench/app/commit/{sha}",
          "author": user, "committer": user, "added": [".github/workflows/t.yml"], "removed": [], "modified": []}
body = json.dumps({
    "ref": "refs/heads/main", "before": before, "after": sha, "created": False, "deleted": False,
    "forced": False, "compare": "https://example.invalid/compare", "commits": [commit] * 3, "head_commit": commit,
    "repository": {"id": 1, "name": "app", "full_name": "bench/app", "private": True,
                   "owner": {"login": "bench", "id": 1}, "default_branch": "main",
                   "html_url": "https://example.invalid/bench/app"},
    "pusher": {"name": "bench", "email": "bench@example.invalid"}, "sender": {"login": "bench", "id": 1},
}).encode()
open(f"{work}/body.json", "wb").write(body)
sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
open(f"{work}/sig", "w").write(sig)
print(f"payload: {len(body)} bytes")
PY
cat > "$work/deliver.lua" <<'LUA'
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  local f = io.open(args[1], "rb"); body = f:read("*a"); f:close()
  f = io.open(args[2], "r"); sig = f:read("*l"); f:close()
  prefix = args[3]
  n, accepted, duplicate, other = 0, 0, 0, 0
end
function request()
  n = n + 1
  -- every tenth delivery is a redelivery of the one before (same delivery id)
  local id = (n % 10 == 0) and (n - 1) or n
  return wrk.format("POST", "/hooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = string.format("%s-%d-%d", prefix, tid, id),
    ["X-Hub-Signature-256"] = sig,
  }, body)
end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1
  elseif status == 200 then duplicate = duplicate + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, d, o = 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted"); d = d + t:get("duplicate"); o = o + t:get("other")
  end
  io.write(string.format("RESULT %d %d %d %d %.2f %.2f %.2f %.2f %.3f\n", a, d, o,
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA
# A short warm-up (connections, caches), then the measured run.
wrk -t2 -c"$conns" -d2s -s "$work/deliver.lua" "$url" -- "$work/body.json" "$work/sig" warm >/dev/null
wrk -t2 -c"$conns" -d"${duration}s" --latency -s "$work/deliver.lua" "$url" -- "$work/body.json" "$work/sig" run > "$work/wrk.out"
read -r _ accepted duplicate other total secs p50 p99 max errors < <(grep '^RESULT' "$work/wrk.out")
# Every accepted delivery becomes runs: wait for the intake to drain.
for _ in $(seq 1200); do
  curl -s "$url/metrics" | grep -q '^pipewright_webhook_deliveries_pending 0$' && break
  sleep 0.1
done
python3 - "$work/data/pipewright.db" "$accepted" "$duplicate" "$other" "$total" "$secs" "$p50" "$p99" "$max" "$errors" "$conns" <<'PY'
import sqlite3, sys
db, accepted, duplicate, other, total = sys.argv[1], *map(int, sys.argv[2:6])
secs, p50, p99, mx, errors = map(float, sys.argv[6:11])
conns = int(sys.argv[11])
c = sqlite3.connect(db)
deliveries = c.execute("SELECT count(*) FROM deliveries").fetchone()[0]
pending = c.execute("SELECT count(*) FROM pending_deliveries").fetchone()[0]
# The warm-up's deliveries are in the database too: count the runs per delivery overall.
runs = c.execute("SELECT count(*) FROM runs WHERE event = 'push'").fetchone()[0] - 1  # minus the push's own run
print(f"| deliveries/s | p50 | p99 | max | accepted (202) | redeliveries (200) | other statuses | socket errors |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {total / secs:,.0f} | {p50:.2f} ms | {p99:.2f} ms | {mx:.1f} ms | {accepted} | {duplicate} | {other} | {errors:.0f} |")
print()
print(f"delivery ids stored: {deliveries}; still pending: {pending}; runs queued by deliveries: {runs}")
ok = pending == 0 and runs == deliveries and other == 0
print("every accepted delivery queued exactly one run: " + ("yes" if ok else "NO"))
sys.exit(0 if ok else 1)
PY
