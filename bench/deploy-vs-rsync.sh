#!/usr/bin/env bash
# Deploys over a real loopback sshd, side by side with `rsync -a` over an ssh connection to
# the same server:
#   1. first deploy of a 100 MiB, 5,000-file release (goal: at most 1.5x rsync -a);
#   2. redeploy with one file changed (goal: fewer than 1% of the release's bytes sent);
#   3. `pipewright rollback` to the previous release, restart hook `true`, no health check
#      (goal: under 1 s).
# Both tools run over a multiplexed OpenSSH connection: rsync through a ControlMaster started
# beforehand (so its figure has no handshake), pipewright through the master it opens itself
# (so its figure includes one). The agent binary is installed by an untimed warm-up deploy.
# Needs root (it adds a user `pwdeploy` and runs sshd), openssh-server, rsync, python3.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
rounds="${ROUNDS:-3}"
cargo build --release --quiet -p pipewright --manifest-path "$root/Cargo.toml"
pw="$root/target/$(rustc -vV | sed -n 's/^host: //p')/release/pipewright"
user=pwdeploy
id "$user" >/dev/null 2>&1 || { useradd -m -s /bin/sh "$user" && usermod -p '*' "$user"; }
mkdir -p /run/sshd
work="$(mktemp -d /tmp/pw-bench.XXXXXX)"
chmod 755 "$work"
sshd_pid=""
cleanup() {
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  ssh -F "$work/ssh_config" -o ControlPath="$work/rsync.sock" -O exit bench 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"
chmod 644 "$work/authorized_keys"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
UsePAM no
StrictModes no
AllowUsers $user
PidFile $work/sshd.pid
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -D -f "$work/sshd_config" &
sshd_pid=$!
cat >"$work/ssh_config" <<CFG
Host bench
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $work/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CFG
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break; sleep 0.05; done
mkdir -p "$work/srv" && chown "$user" "$work/srv"

# The release: 5,000 files of 20 KiB of random bytes in 50 directories (100 MiB).
python3 - "$work/release" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(50):
    os.makedirs(f"{root}/d{d:02}", exist_ok=True)
    for f in range(100):
        with open(f"{root}/d{d:02}/f{f:03}.bin", "wb") as out:
            out.write(os.urandom(20 * 1024 + 77))
PY
mkdir -p "$work/tiny" && echo tiny >"$work/tiny/README"
total=$(du -sb "$work/release" | cut -f1)

ssh -F "$work/ssh_config" -o ControlMaster=yes -o ControlPath="$work/rsync.sock" -o ControlPersist=300 -N -f bench
rsync_ssh="ssh -F $work/ssh_config -o ControlPath=$work/rsync.sock"

repo() { # repo DIR PATH: an application repository deploying to PATH on `bench`
  mkdir -p "$1/.pipewright"
  cat >"$1/.pipewright/deploy.yml" <<YML
app: bench
environments:
  bench:
    hosts: [bench]
    ssh_config: $work/ssh_config
    path: $2
    keep_releases: 5
    hooks:
      restart: "true"
YML
}
now() { python3 -c 'import time; print(time.monotonic())'; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "### deploy vs rsync -a: $((total / 1048576)) MiB in 5,000 files, $rounds rounds, $(nproc) cores"
printf '%-8s %10s %14s\n' round "rsync -a" "pipewright"
for r in $(seq "$rounds"); do
  t0=$(now); rsync -a -e "$rsync_ssh" "$work/release/" "bench:$work/srv/rsync-$r/"; t1=$(now)
  repo "$work/repo-$r" "$work/srv/app-$r"
  (cd "$work/repo-$r" && "$pw" deploy bench --artifact "$work/tiny" 2>/dev/null)
  t2=$(now); (cd "$work/repo-$r" && "$pw" deploy bench --artifact "$work/release" 2>"$work/deploy-$r.log"); t3=$(now)
  upload=$(grep -o 'UPLOAD *ok ([0-9.]*s)' "$work/deploy-$r.log" | grep -o '[0-9.]*s')
  printf '%-8s %9ss %13ss   (of which the UPLOAD step on the host: %s)\n' "$r" "$(secs "$t0" "$t1")" "$(secs "$t2" "$t3")" "$upload"
done

echo
echo "### redeploy with one file changed"
head -c 20557 /dev/urandom >"$work/release/d07/f042.bin"
out=$(cd "$work/repo-1" && "$pw" deploy bench --artifact "$work/release" 2>&1 | grep '^sent ')
echo "$out"
wire=$(echo "$out" | sed -E 's/.*; ([0-9]+) bytes to the host in all/\1/')
python3 -c "print(f'{$wire} bytes on the wire of a {$total}-byte release: {100 * $wire / $total:.3f}%')"

echo
echo "### rollback to the previous release"
for r in $(seq "$rounds"); do
  t0=$(now); (cd "$work/repo-1" && "$pw" rollback bench --to "$(ls "$work/srv/app-1/releases" | sort | tail -n 2 | head -n 1)" >/dev/null 2>&1); t1=$(now)
  t2=$(now); (cd "$work/repo-1" && "$pw" rollback bench --to "$(ls "$work/srv/app-1/releases" | sort | tail -n 1)" >/dev/null 2>&1); t3=$(now)
  echo "round $r: back $(secs "$t0" "$t1")s, forward again $(secs "$t2" "$t3")s"
done
