#!/usr/bin/env bash
# A step printing MIB MiB (default 1,024) in 1 KB lines through a remote `pipewright runner`
# (confined, as by default), then the whole log read back through the API
# (`pipewright logs`): the peak resident set of the server and of the runner (the kernel's
# high-water mark, `VmHWM`, over each process's life), how long the run took, and the
# compressed log's size on disk. Goal: under 64 MiB each, whatever the log's size.
#
#   bench/log-volume.sh [MIB]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mib="${1:-1024}"
lines=$(( mib * 1024 * 1024 / 1001 ))
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
work="$(mktemp -d -p "${WORK_ROOT:-/tmp}")"
chmod 755 "$work"
server="" runner=""
trap 'kill $runner $server 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
git init -q --bare -b main "$work/app.git"
printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[runner]\nembedded_capacity = 0\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' \
  "$work" "$work" > "$work/cfg.toml"
start_server "$work"
server=$pid
PIPEWRIGHT_LOG=warn "$pw" runner --server "$PIPEWRIGHT_SERVER" --token "$("$pw" runners token)" \
  --name big --work-dir "$work/runner" 2>"$work/runner.log" &
runner=$!
git clone -q "$work/app.git" "$work/src" 2>/dev/null
mkdir -p "$work/src/.github/workflows"
cat > "$work/src/.github/workflows/big.yml" <<YML
on: workflow_dispatch
jobs:
  big:
    runs-on: self-hosted
    steps:
      - run: yes "\$(printf 'x%.0s' \$(seq 1000))" | head -n $lines; echo the last line
      - run: echo second step
YML
git -C "$work/src" add -A
git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm big
git -C "$work/src" push -q origin HEAD:main 2>/dev/null
start=$(date +%s.%N)
out=$("$pw" dispatch bench/app big.yml --wait)
end=$(date +%s.%N)
case "$out" in
  *success) ;;
  *) echo "the run failed: $out" >&2; tail -20 "$work/runner.log" >&2; exit 1 ;;
esac
id=${out%% *}
# Once completed, the run's log moves into compressed files, one per step.
for _ in $(seq 600); do [ -f "$work/data/logs/job-1/0002.zst" ] && break; sleep 0.1; done
on_disk=$(du -sb "$work/data/logs" | cut -f1)
# The whole log read back through the API, streamed.
read_back=$("$pw" logs "$id" | grep -c '^\[big\] xxxxxxxxxx' || true)
[ "$read_back" = "$lines" ] || { echo "read back $read_back lines of $lines" >&2; exit 1; }
hwm() { awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"; }
echo "| a step printing $mib MiB in 1 KB lines, a remote runner, the log read back | run | server peak RSS | runner peak RSS | log on disk |"
echo "|---|---|---|---|---|"
printf '| %s lines | %.1f s | %s | %s | %.1f MiB |\n' "$lines" "$(echo "$end - $start" | bc)" \
  "$(hwm $server)" "$(hwm $runner)" "$(echo "$on_disk / 1048576" | bc -l)"
