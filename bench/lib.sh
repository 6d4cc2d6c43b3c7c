# What the benchmarks that run `pipewright serve` share; sourced by them (after
# `set -euo pipefail`), never run.

# The binary measured: `$PW`, else the release build, built first. Sets `pw`.
bench_binary() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [ -z "${PW:-}" ]; then
    cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  fi
  pw="${PW:-$root/target/$(rustc -vV | sed -n 's/^host: //p')/release/pipewright}"
}

# start_server WORK [VAR=value...]: `pipewright serve -c WORK/cfg.toml` (whose `data_dir` is
# WORK/data) in the background with its log in WORK/serve.log, given the variables; waits
# until it listens. Sets `pid`; exports PIPEWRIGHT_SERVER and PIPEWRIGHT_TOKEN, the admin
# token the server made on its first start (empty for an older build, whose API is open).
start_server() {
  local work="$1"
  shift
  env PIPEWRIGHT_LOG=warn "$@" "$pw" serve -c "$work/cfg.toml" 2>"$work/serve.log" &
  pid=$!
  for _ in $(seq 200); do [ -f "$work/data/listen-url" ] && break; sleep 0.05; done
  PIPEWRIGHT_SERVER="$(cat "$work/data/listen-url")"
  PIPEWRIGHT_TOKEN="$("$pw" token show -c "$work/cfg.toml" 2>/dev/null || true)"
  export PIPEWRIGHT_SERVER PIPEWRIGHT_TOKEN
}
