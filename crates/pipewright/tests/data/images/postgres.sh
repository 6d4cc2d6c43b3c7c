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
# The entrypoint the example stack uses too.
cp "$(dirname "$0")/../../../../../examples/inner-architect/docker/postgres-entrypoint.sh" "$root/docker-entrypoint.sh"
chmod 755 "$root/docker-entrypoint.sh"
tar -C "$root" -cf - . | docker import \
  --change "ENV PATH=$pg/bin:/usr/local/bin:/usr/bin:/bin" \
  --change 'ENTRYPOINT ["/docker-entrypoint.sh"]' \
  --change 'EXPOSE 5432' - "$tag" >/dev/null
