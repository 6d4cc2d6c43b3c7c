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

# bench_repo WORK: a bare repository `bench/app` (WORK/app.git) and WORK/cfg.toml serving
# it on the embedded defaults (data in WORK/data), for start_server.
bench_repo() {
  local work="$1"
  git init -q --bare -b main "$work/app.git"
  printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' "$work" "$work" > "$work/cfg.toml"
}

# push_one_step_workflow WORK: pushes to WORK/app.git a commit whose one workflow, t.yml, is
# a dispatchable job of one `true` step (through WORK/src), then lets the server see it.
push_one_step_workflow() {
  local work="$1"
  git clone -q "$work/app.git" "$work/src" 2>/dev/null
  mkdir -p "$work/src/.github/workflows"
  printf 'on: workflow_dispatch\njobs:\n  t:\n    runs-on: x\n    steps:\n      - run: "true"\n' > "$work/src/.github/workflows/t.yml"
  git -C "$work/src" add -A
  git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm t
  git -C "$work/src" push -q origin HEAD:main 2>/dev/null
  sleep 0.5
}
