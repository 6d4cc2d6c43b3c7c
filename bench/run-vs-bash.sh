#!/usr/bin/env bash
# `pipewright run push` on a two-job workflow (a: two echo steps; b needs a: one echo step)
# against a bash script running the same three commands, each in its own `bash -e -c`, and
# against `wrkflw run --runtime emulation` when wrkflw is installed (`cargo install wrkflw`).
# Timed with `hyperfine -N` (no shell in between). Goal: pipewright's median at most 1.5x
# the bash script's (issue 15).
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
# `name` only because wrkflw's parser requires it (GitHub does not).
cat > .github/workflows/bench.yml <<'YAML'
name: bench
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
args=(-n bash "bash steps.sh" -n pipewright "$pw run push")
if command -v wrkflw >/dev/null; then
  args+=(-n wrkflw "wrkflw run --runtime emulation .github/workflows/bench.yml")
fi
echo "### pipewright run vs bash ($rounds runs each, $(nproc) cores, hyperfine -N)"
hyperfine -N --warmup 3 --runs "$rounds" --export-json "$work/t.json" "${args[@]}" >/dev/null
python3 - "$work/t.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
for name, t in r.items():
    print(f"| {name} | {t*1000:.1f} ms | {t / r['bash']:.2f}x bash |")
PY
