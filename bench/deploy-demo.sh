#!/usr/bin/env bash
# The README's deploy and rollback of examples/inner-architect, for real: a loopback sshd
# with a test user, `pipewright deploy` of 1.0.0, of a broken 1.1.0 (rolled back by itself,
# exit 3), of 1.2.0, then `pipewright releases` and `pipewright rollback`. Needs root.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pw="${PIPEWRIGHT:-$root/target/$(rustc -vV | sed -n 's/^host: //p')/release/pipewright}"
user=pwdeploy
id "$user" >/dev/null 2>&1 || { useradd -m -s /bin/sh "$user" && usermod -p '*' "$user"; }
mkdir -p /run/sshd
work="$(mktemp -d /tmp/pw-demo.XXXXXX)"
chmod 755 "$work"
sshd_pid=""
cleanup() {
  [ -f "$work/srv/app/shared/app.pid" ] && kill "$(cat "$work/srv/app/shared/app.pid")" 2>/dev/null
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys" && chmod 644 "$work/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
app_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'Port %s\nListenAddress 127.0.0.1\nHostKey %s/host_key\nAuthorizedKeysFile %s/authorized_keys\nPasswordAuthentication no\nUsePAM no\nStrictModes no\nAllowUsers %s\nPidFile %s/sshd.pid\n' \
  "$port" "$work" "$work" "$user" "$work" >"$work/sshd_config"
/usr/sbin/sshd -D -f "$work/sshd_config" &
sshd_pid=$!
sleep 0.5
mkdir -p "$work/srv" && chown "$user" "$work/srv"
repo="$work/repo" && mkdir -p "$repo/.pipewright" "$repo/deploy"
printf 'Host staging-1\n  HostName 127.0.0.1\n  Port %s\n  User %s\n  IdentityFile %s/id\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
  "$port" "$user" "$work" >"$repo/deploy/ssh_config"
cat >"$repo/.pipewright/deploy.yml" <<YML
app: inner-architect
environments:
  staging:
    hosts: [staging-1]
    ssh_config: deploy/ssh_config
    path: $work/srv/app
    keep_releases: 5
    shared: [data]
    env: {PORT: "$app_port"}
    hooks:
      restart: sh serve.sh
    backup:
      paths: [data]
    health:
      url: http://127.0.0.1:$app_port/health
      contains: '"status": "ok"'
      interval: 200ms
      deadline: 5s
      successes: 2
YML
build() { # build VERSION [broken]
  rm -rf "$work/build-$1" && mkdir -p "$work/build-$1"
  cp -a "$root/examples/inner-architect/inner_architect" "$work/build-$1/"
  echo "__version__ = \"$1\"" >"$work/build-$1/inner_architect/__init__.py"
  # The app's WSGI callable under the standard library's server (no virtualenv to build).
  cat >"$work/build-$1/serve.sh" <<'SH'
pidfile="$PIPEWRIGHT_SHARED_DIR/app.pid"
[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && sleep 0.3
nohup python3 -c 'import os; from wsgiref.simple_server import make_server; from inner_architect.app import application; make_server("127.0.0.1", int(os.environ["PORT"]), application).serve_forever()' >>"$PIPEWRIGHT_SHARED_DIR/app.log" 2>&1 </dev/null &
echo $! >"$pidfile"
SH
  if [ "${2:-}" = broken ]; then echo 'raise SystemExit("missing setting")' >>"$work/build-$1/inner_architect/app.py"; fi
}
run() { echo "\$ pipewright $*"; (cd "$repo" && PIPEWRIGHT_DEPLOYER=alice@laptop "$pw" "$@" 2>&1); echo "(exit $?)"; echo; }
build 1.0.0 && build 1.1.0 broken && build 1.2.0
run deploy staging --artifact "$work/build-1.0.0" --version 1.0.0
run deploy staging --artifact "$work/build-1.1.0" --version 1.1.0
run deploy staging --artifact "$work/build-1.2.0" --version 1.2.0
run releases staging
run rollback staging
echo "\$ curl -s http://127.0.0.1:$app_port/health" && curl -s "http://127.0.0.1:$app_port/health" && echo
