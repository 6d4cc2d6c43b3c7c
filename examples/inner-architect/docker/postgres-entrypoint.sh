#!/bin/sh
# PostgreSQL in a container, as the official image starts it: a data directory initialised
# on first start with POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB, then the server.
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
