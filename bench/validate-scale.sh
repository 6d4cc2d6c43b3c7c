#!/usr/bin/env bash
# Parsing and planning stay linear: `pipewright validate` on a workflow with 500 jobs (a chain
# of needs) and a 256-combination matrix, against `true` (process start-up alone).
# Goal: under 50 ms.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${ROUNDS:-20}"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 - "$work/big.yml" <<'PY'
import sys
out = ["on: push", "jobs:"]
out += ["  matrix:", "    runs-on: ubuntu-latest", "    strategy:", "      matrix:",
        "        a: [" + ", ".join(str(i) for i in range(16)) + "]",
        "        b: [" + ", ".join(f"'v{i}'" for i in range(16)) + "]",
        "    steps:", "      - run: echo ${{ matrix.a }} ${{ matrix.b }}"]
for i in range(499):
    out += [f"  job{i}:", "    runs-on: ubuntu-latest"]
    if i:
        out.append(f"    needs: [job{i - 1}]")
    out += ["    if: github.event_name == 'push' && !cancelled()", "    steps:",
            f"      - run: echo ${{{{ github.sha }}}} {i}", "      - uses: actions/checkout@v4"]
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
echo "### pipewright validate, 500 jobs and a 256-combination matrix ($rounds rounds)"
python3 "$root/bench/timeit.py" "$rounds" "true=true" "validate=$pw validate $work/big.yml"
