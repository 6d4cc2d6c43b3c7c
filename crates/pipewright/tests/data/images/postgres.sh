#!/bin/sh
# Builds a PostgreSQL image from this machine's own server binaries, without a registry:
# busybox for the shell, PostgreSQL 15 with the libraries it links, and an entrypoint that
# honours POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB as the official image does.
# Usage: postgres.sh TAG
set -eu
tag=$1
pg=/usr/lib/postgresql/15
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/var/lib/postgresql" "$root/var/run/postgresql" \
  "$root/usr/share/postgresql" "$root/usr/lib/postgresql" "$root/usr/share"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
cp -a "$pg" "$root/usr/lib/postgresql/"
# Without the JIT (it links all of LLVM).
rm -rf "$root$pg/lib/llvmjit"* "$root$pg/lib/bitcode"
cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$root/usr/share/"
# The shared libraries the binaries link, at the same paths.
for lib in $(ldd "$pg"/bin/* "$root$pg"/lib/*.so 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\n' >"$root/etc/group"
cat >"$root/docker-entrypoint.sh" <<'SH'
#!/bin/sh
set -e
export PGDATA=/var/lib/postgresql/data
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" /var/run/postgresql
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >/tmp/pwfile
  chown postgres /tmp/pwfile
  su postgres -c "initdb -D $PGDATA -U $user --pwfile=/tmp/pwfile -E UTF8 --no-locale --auth-local=trust --auth-host=scram-sha-256" >/dev/null
  rm /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    su postgres -c "postgres --single -D $PGDATA -j postgres" <<SQL >/dev/null
CREATE DATABASE "$db" OWNER "$user";
SQL
  fi
  echo "database $db of $user initialised"
fi
exec su postgres -c "exec postgres -D $PGDATA -c listen_addresses=*"
SH
chmod 755 "$root/docker-entrypoint.sh"
tar -C "$root" -cf - . | docker import \
  --change "ENV PATH=$pg/bin:/usr/local/bin:/usr/bin:/bin" \
  --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
  --change 'EXPOSE 5432' - "$tag" >/dev/null
