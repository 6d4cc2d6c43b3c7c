#!/usr/bin/env bash
# `pipewright run push` on a two-job workflow (a: two echo steps; b needs a: one echo step)
# against a bash script running the same three commands, each in its own `bash -e -c`, and
# against `wrkflw run --runtime emulation` when wrkflw is installed (`cargo install wrkflw`).
# Goal: pipewright's median at most 2x the bash script's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${ROUNDS:-30}"
# PW=path/to/pipewright measures that binary instead of building the release one.
if [ -z "${PW:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
fi
pw="${PW:-$root/target/release/pipewright}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q -b main
mkdir -p .github/workflows
cat > .github/workflows/bench.yml <<'YAML'
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo one
      - run: echo two
  b:
    needs: a
    runs-on: ubuntu-latest
    steps:
      - run: echo three
YAML
cat > steps.sh <<'SH'
bash -e -c 'echo one'
bash -e -c 'echo two'
bash -e -c 'echo three'
SH
git add -A && git -c user.name=b -c user.email=b@example.invalid commit -qm bench
args=("bash=bash steps.sh" "pipewright=$pw run push")
if command -v wrkflw >/dev/null; then
  args+=("wrkflw=wrkflw run --runtime emulation .github/workflows/bench.yml")
fi
echo "### pipewright run vs bash ($rounds rounds, $(nproc) cores)"
python3 "$root/bench/timeit.py" "$rounds" "${args[@]}"
