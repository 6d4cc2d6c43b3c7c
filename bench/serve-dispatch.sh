#!/usr/bin/env bash
# `pipewright serve` on the embedded defaults: 20 trivial jobs (one `true` step each)
# dispatched one after another through the CLI, each waited for (`dispatch --wait`), against
# 20 runs of the same step as a bare process (`bash -e -c true`), in interleaved rounds; and
# the idle server's RSS. Reports the ratio. Goals: at most 3x bash; idle RSS under 15 MiB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# PW=path/to/pipewright measures that binary instead of building the release one.
if [ -z "${PW:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
pw="${PW:-$root/target/release/pipewright}"
work="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$work"' EXIT
git init -q --bare -b main "$work/app.git"
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' "$work" "$work" > "$work/cfg.toml"
PIPEWRIGHT_LOG=warn "$pw" serve -c "$work/cfg.toml" 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do [ -f "$work/data/listen-url" ] && break; sleep 0.05; done
export PIPEWRIGHT_SERVER="$(cat "$work/data/listen-url")"
# The API is closed: the admin token the server made on its first start.
export PIPEWRIGHT_TOKEN="$("$pw" token show -c "$work/cfg.toml" 2>/dev/null || true)"  # (none: an older build, open)
git clone -q "$work/app.git" "$work/src" 2>/dev/null
mkdir -p "$work/src/.github/workflows"
printf 'on: workflow_dispatch\njobs:\n  t:\n    runs-on: x\n    steps:\n      - run: "true"\n' > "$work/src/.github/workflows/t.yml"
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm t
git -C "$work/src" push -q origin HEAD:main
sleep 0.5
idle_kib=$(ps -o rss= -p $pid | tr -d ' ')
"$pw" dispatch bench/app t.yml --wait >/dev/null   # warm-up
python3 - "$pw" <<'PY'
import subprocess, sys, time
pw = sys.argv[1]
def total(cmd):
    start = time.perf_counter()
    for _ in range(20):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start
rounds = [(total([pw, "dispatch", "bench/app", "t.yml", "--wait"]), total(["bash", "-e", "-c", "true"])) for _ in range(5)]
ratios = sorted(d / b for d, b in rounds)
d = sorted(r[0] for r in rounds)[len(rounds) // 2]
b = sorted(r[1] for r in rounds)[len(rounds) // 2]
print("| 20 jobs, each dispatched and waited for | pipewright serve | bare `bash -e -c true` x 20 | ratio (median of the rounds') |")
print("|---|---|---|---|")
print(f"| median of 5 interleaved rounds | {d * 1000:.0f} ms | {b * 1000:.0f} ms | {ratios[len(ratios) // 2]:.1f}x (goal: at most 3x) |")
PY
echo
echo "idle server RSS (embedded SQLite, in-process runner): $((idle_kib / 1024)) MiB ($idle_kib KiB)"
