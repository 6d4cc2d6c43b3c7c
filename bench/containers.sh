#!/usr/bin/env bash
# The cost of a container job: `pipewright run` of a one-step job in a container, against
# `docker run --rm IMAGE true` (the floor: one container made, started and removed), and the
# cost of each further step (started by the job container's agent, not an `exec` of the
# engine each), from the same job with 21 steps. Timed with
# `hyperfine -N` (no shell in between), side by side in one run.
# Goals: a container job at most 1.5x the floor; under 20 ms per step.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${RUNS:-20}"
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
command -v hyperfine >/dev/null || { echo "hyperfine is needed (apt-get install hyperfine)" >&2; exit 1; }
image=pipewright-bench/busybox:1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The image, built here from busybox-static (nothing is pulled).
if ! docker image inspect "$image" >/dev/null 2>&1; then
  mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp"
  cp /bin/busybox "$work/rootfs/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
  tar -C "$work/rootfs" -cf - . | docker import --change 'ENV PATH=/bin' - "$image" >/dev/null
fi
repo() { # DIR STEPS
  mkdir -p "$1/.github/workflows"
  {
    echo "on: push"
    echo "jobs:"
    echo "  a:"
    echo "    runs-on: ubuntu-latest"
    echo "    container: $image"
    echo "    steps:"
    for _ in $(seq "$2"); do echo "      - run: 'true'"; done
  } >"$1/.github/workflows/bench.yml"
  git -C "$1" init -q -b main
  git -C "$1" add -A
  git -C "$1" -c user.name=b -c user.email=b@example.invalid commit -qm bench
}
repo "$work/one" 1
repo "$work/many" 21
# Docker's own `exec` of one command in a running container, for the per-step figure.
cid=$(docker run -d --rm "$image" sleep 3600)
trap 'docker rm -f "$cid" >/dev/null; rm -rf "$work"' EXIT
echo "### container jobs ($runs runs each, $(nproc) cores)"
hyperfine -N --warmup 2 --runs "$runs" --export-json "$work/t.json" \
  -n floor "docker run --rm $image true" \
  -n exec "docker exec $cid true" \
  -n "1-step job" "$pw run push -C $work/one" \
  -n "21-step job" "$pw run push -C $work/many" >/dev/null
python3 - "$work/t.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = lambda n: r[n]["median"]
floor, one, many = med("floor"), med("1-step job"), med("21-step job")
print(f"| docker run --rm (floor) | {floor*1000:.0f} ms |")
print(f"| 1-step container job | {one*1000:.0f} ms ({one/floor:.2f}x the floor; goal 1.5x) |")
print(f"| each further step | {(many-one)/20*1000:.1f} ms (goal 20 ms; `docker exec CONTAINER true`: {med('exec')*1000:.0f} ms) |")
PY
