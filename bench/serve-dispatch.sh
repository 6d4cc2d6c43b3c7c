#!/usr/bin/env bash
# `pipewright serve` on the embedded defaults: 20 trivial jobs (one `true` step each)
# dispatched one after another through the CLI, each waited for (`dispatch --wait`), against
# 20 runs of the same step as a bare process (`bash -e -c true`), in interleaved rounds; the
# same 20 jobs dispatched and followed over the HTTP API from one process (the server's own
# path, without a CLI process started for each); `pipewright --version` 20 times in the same
# rounds (the CLI's start alone: what every `dispatch --wait` pays before its first request,
# whatever the server does); and the idle server's RSS. Reports the ratios. Goals: at most
# 3x bash (through the CLI); idle RSS under 15 MiB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
bench_repo "$work"
start_server "$work"
push_one_step_workflow "$work"
idle_kib=$(ps -o rss= -p $pid | tr -d ' ')
"$pw" dispatch bench/app t.yml --wait >/dev/null   # warm-up
python3 - "$pw" <<'PY'
import http.client, json, os, subprocess, sys, time, urllib.parse
pw = sys.argv[1]
def total(cmd):
    start = time.perf_counter()
    for _ in range(20):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start
# The same jobs dispatched and followed over the API from this one process, on one
# connection: the server's own path, without a CLI process started for each job.
url = urllib.parse.urlparse(os.environ["PIPEWRIGHT_SERVER"])
headers = {"Content-Type": "application/json"}
if os.environ.get("PIPEWRIGHT_TOKEN"):
    headers["Authorization"] = "Bearer " + os.environ["PIPEWRIGHT_TOKEN"]
conn = http.client.HTTPConnection(url.hostname, url.port)
def api_job():
    body = json.dumps({"workflow": "t.yml", "ref": None, "inputs": {}})
    conn.request("POST", "/api/v1/repos/bench%2Fapp/dispatch", body=body, headers=headers)
    resp = conn.getresponse()
    if resp.status != 201:
        sys.exit(f"dispatch: {resp.status} {resp.read()!r}")
    for run in json.loads(resp.read())["runs"]:
        conn.request("GET", f"/api/v1/runs/{run}/logs?follow=true", headers=headers)
        resp = conn.getresponse()
        event = b""
        while True:
            line = resp.readline()
            if not line:
                sys.exit(f"run {run}: the log ended without the run's end")
            line = line.rstrip(b"\r\n")
            if line.startswith(b"event:"):
                event = line[6:].strip()
            elif line.startswith(b"data:") and event == b"done":
                if line[5:].strip() != b"success":
                    sys.exit(f"run {run}: {line!r}")
                break
        resp.read()
def api_total():
    start = time.perf_counter()
    for _ in range(20):
        api_job()
    return time.perf_counter() - start
api_job()  # warm-up
rounds = [
    (
        total([pw, "dispatch", "bench/app", "t.yml", "--wait"]),
        api_total(),
        total(["bash", "-e", "-c", "true"]),
        total([pw, "--version"]),
    )
    for _ in range(5)
]
median = lambda xs: sorted(xs)[len(xs) // 2]
d, a, b, v = (median([r[i] for r in rounds]) for i in range(4))
print("| 20 jobs, each dispatched and waited for | pipewright serve | bare `bash -e -c true` x 20 | ratio (median of the rounds') |")
print("|---|---|---|---|")
print(f"| `pipewright dispatch --wait` x 20, median of 5 interleaved rounds | {d * 1000:.0f} ms | {b * 1000:.0f} ms | {median([r[0] / r[2] for r in rounds]):.1f}x (goal: at most 3x) |")
print(f"| the same over the API from one process (no CLI process a job) | {a * 1000:.0f} ms | {b * 1000:.0f} ms | {median([r[1] / r[2] for r in rounds]):.1f}x |")
print(f"| `pipewright --version` x 20: the CLI's start alone, no request | {v * 1000:.0f} ms | {b * 1000:.0f} ms | {median([r[3] / r[2] for r in rounds]):.1f}x |")
PY
echo
echo "idle server RSS (embedded SQLite, in-process runner): $((idle_kib / 1024)) MiB ($idle_kib KiB)"
