#!/usr/bin/env bash
# `pipewright run push` on a two-job workflow (a: two echo steps; b needs a: one echo step)
# against a bash script running the same three commands, each in its own `bash -e -c`, and
# against `wrkflw run --runtime emulation` when wrkflw is installed (`cargo install wrkflw`).
# Timed with `hyperfine -N` (no shell in between), in groups (below). Goal: pipewright's
# median at most 1.5x the bash script's (issue 15).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${ROUNDS:-30}"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
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
# This machine's speed drifts (a virtual machine's stolen time): GROUPS hyperfine runs one
# after another, each timing every command ROUNDS times; the ratio is the median of the
# groups' ratios, each taken from medians measured side by side within a minute.
groups="${GROUPS_OF_ROUNDS:-5}"
echo "### pipewright run vs bash ($groups groups of $rounds runs each, $(nproc) cores, hyperfine -N)"
for g in $(seq "$groups"); do
  hyperfine -N --warmup 3 --runs "$rounds" --export-json "$work/t$g.json" "${args[@]}" >/dev/null
done
python3 - "$work"/t*.json <<'PY'
import json, statistics, sys
groups = [{x["command"]: x["median"] for x in json.load(open(f))["results"]} for f in sys.argv[1:]]
for name in groups[0]:
    t = statistics.median(g[name] for g in groups)
    ratio = statistics.median(g[name] / g["bash"] for g in groups)
    spread = ", ".join(f"{g[name] / g['bash']:.2f}" for g in groups)
    print(f"| {name} | {t*1000:.1f} ms | {ratio:.2f}x bash (groups: {spread}) |")
PY
