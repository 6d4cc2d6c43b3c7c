#!/usr/bin/env bash
# 10,000 queued jobs handed to 50 `pipewright runner` processes on this machine: jobs per
# second from the first lease to the last report, on SQLite and on PostgreSQL.
# Goal: at least 500 jobs/s dispatched on each.
#
#   bench/runner-throughput.sh [sqlite|postgres|both] [JOBS] [RUNNERS]
#   RUNNER_ARGS="--isolation none" bench/runner-throughput.sh   # jobs unconfined
#
# One run of one workflow: 40 jobs with a 250-entry matrix each (10,000 job instances, one
# `true` step each). The server has no in-process runner; the jobs are all queued before
# the runners start, so what is measured is leasing, running and reporting.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
which_db="${1:-both}"
jobs="${2:-10000}"
runners="${3:-50}"
per=250
groups=$(( (jobs + per - 1) / per ))
# PW=path/to/pipewright measures that binary instead of building the release one.
. "$root/bench/lib.sh"
bench_binary
PG_BIN=/usr/lib/postgresql/15/bin

# Clock ticks of CPU used by every `postgres` process so far.
pg_ticks() {
  local t=0 f
  for f in /proc/[0-9]*/stat; do
    read -r line < "$f" 2>/dev/null || continue
    case "$line" in
      *"(postgres)"*)
        set -- ${line##*) }
        t=$(( t + ${12} + ${13} + ${14} + ${15} ))
        ;;
    esac
  done
  echo "$t"
}

bench() {
  local db="$1" work pids=() pgdir="" url=""
  work="$(mktemp -d -p "${WORK_ROOT:-/tmp}")"
  chmod 755 "$work"
  if [ "$db" = postgres ]; then
    pgdir="$work/pg"
    mkdir -p "$pgdir" && chown postgres "$pgdir"
    local port=$(( 20000 + RANDOM % 20000 ))
    local opts="${PG_OPTS:-}"
    # PG_REPORT=1: the statements that took longest, with their planning, at the end.
    [ -n "${PG_REPORT:-}" ] && opts="$opts -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
    runuser -u postgres -- "$PG_BIN/initdb" -A trust -U postgres -D "$pgdir/data" >/dev/null
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $pgdir -c fsync=on $opts" start >/dev/null
    runuser -u postgres -- "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" pw
    [ -n "${PG_REPORT:-}" ] && psql -q -h 127.0.0.1 -p "$port" -U postgres pw -c "CREATE EXTENSION pg_stat_statements"
    url="postgres://postgres@127.0.0.1:$port/pw"
  fi
  git init -q --bare -b main "$work/app.git"
  {
    printf 'listen = "127.0.0.1:0"\ndata_dir = "%s/data"\n' "$work"
    [ -n "$url" ] && printf 'database_url = "%s"\n' "$url"
    printf '[runner]\nembedded_capacity = 0\n[[repos]]\nname = "bench/app"\npath = "%s/app.git"\n' "$work/app.git" | sed "s#$work/app.git/app.git#$work/app.git#"
  } > "$work/cfg.toml"
  sed -i "s#path = \".*\"#path = \"$work/app.git\"#" "$work/cfg.toml"
  start_server "$work"
  local server=$pid
  git clone -q "$work/app.git" "$work/src" 2>/dev/null
  mkdir -p "$work/src/.github/workflows"
  {
    printf 'on: workflow_dispatch\njobs:\n'
    for g in $(seq "$groups"); do
      printf '  j%s:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        i: [%s]\n    steps:\n      - run: "true"\n' \
        "$g" "$(seq -s, 1 "$per")"
    done
  } > "$work/src/.github/workflows/t.yml"
  git -C "$work/src" add -A
  git -C "$work/src" -c user.name=b -c user.email=b@example.invalid commit -qm t
  git -C "$work/src" push -q origin HEAD:main 2>/dev/null
  "$pw" dispatch bench/app t.yml >/dev/null
  local total=$(( groups * per ))
  # Wait until every job instance is queued.
  for _ in $(seq 600); do
    depth=$(curl -s "$PIPEWRIGHT_SERVER/metrics" | awk '/^pipewright_queue_depth/ {print $2}')
    [ "${depth:-0}" -ge "$total" ] && break
    sleep 0.1
  done
  # PostgreSQL's own CPU (its backends' and the postmaster's, in clock ticks) from here on.
  local pg_before=0
  [ -n "$pgdir" ] && pg_before=$(pg_ticks)
  for i in $(seq "$runners"); do
    tok=$("$pw" runners token)
    # RUNNER_ARGS: more arguments for each runner (`--isolation none`: jobs in the runner's
    # own process, unconfined, as a runner of trusted jobs only may run them).
    # shellcheck disable=SC2086
    PIPEWRIGHT_LOG=${RUNNER_LOG:-warn} "$pw" runner --server "$PIPEWRIGHT_SERVER" --token "$tok" --name "r$i" --work-dir "$work/r$i" ${RUNNER_ARGS:-} 2>"$work/r$i.log" &
    pids+=($!)
  done
  "$pw" dispatch --help >/dev/null
  # The run ends when its last job has reported.
  python3 - "$pw" "$total" "$db" "$runners" "$pg_before" "$server" "${pids[@]}" <<'PY'
import json, os, subprocess, sys, time
pw, total, db, runners = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
pg_before = int(sys.argv[5])
server, runner_pids = int(sys.argv[6]), [int(p) for p in sys.argv[7:]]
# Polled through the run list (no jobs), so that watching costs the server little.
while True:
    out = subprocess.run([pw, "runs", "list", "--json"], capture_output=True, text=True).stdout
    try:
        run = next(r for r in json.loads(out) if r["id"] == 1)
    except (json.JSONDecodeError, StopIteration):
        time.sleep(0.2); continue
    if run["status"] == "completed":
        break
    time.sleep(0.5)
def cpu(pid):
    # utime, stime, and the reaped children's (the jobs' bash processes).
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, (int(f[13]) + int(f[14])) / tick
server_cpu = sum(cpu(server))
own = sum(cpu(p)[0] for p in runner_pids)
children = sum(cpu(p)[1] for p in runner_pids)
run = json.loads(subprocess.run([pw, "runs", "show", "--json", "1"], capture_output=True, text=True).stdout)
jobs = run.get("jobs", [])
first = min(j["started_at"] for j in jobs if j.get("started_at"))
last = max(j["finished_at"] for j in jobs if j.get("finished_at"))
ok = sum(1 for j in jobs if j["conclusion"] == "success")
secs = (last - first) / 1000
print(f"| {db} | {total} jobs, {runners} runners | {secs:.1f} s | {total / secs:.0f} jobs/s | {ok} succeeded, run {run['conclusion']} |")
def pg_ticks():
    t = 0
    for p in os.listdir("/proc"):
        try:
            f = open(f"/proc/{p}/stat").read()
        except (OSError, ValueError):
            continue
        name, rest = f.split("(", 1)[1].rsplit(")", 1)
        if name == "postgres":
            v = rest.split()
            t += int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])
    return t
pg = ""
if db == "postgres":
    pg = f", PostgreSQL {1000 * (pg_ticks() - pg_before) / os.sysconf('SC_CLK_TCK') / total:.2f} ms"
print(f"CPU per job: server {1000 * server_cpu / total:.2f} ms, runners {1000 * own / total:.2f} ms, the jobs' processes {1000 * children / total:.2f} ms{pg}", file=sys.stderr)
PY
  kill "${pids[@]}" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  if [ -n "${PG_REPORT:-}" ] && [ -n "$url" ]; then
    psql -q "$url" -c "SELECT calls, plans, round(total_exec_time::numeric, 1) AS ms, round(total_plan_time::numeric, 1) AS plan_ms, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15" || true
  fi
  wait 2>/dev/null || true
  if [ -n "$pgdir" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null || true
  fi
  [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}

echo "| database | load | first lease to last report | dispatched | result |"
echo "|---|---|---|---|---|"
case "$which_db" in
  sqlite) bench sqlite ;;
  postgres) bench postgres ;;
  *) bench sqlite; bench postgres ;;
esac
