#!/bin/sh
# Builds the stack's base image, `inner-architect/base:2`, from this machine's own programs,
# without a registry: busybox for the shell, Python 3.11 with Celery, Flower and the Redis
# client (from PyPI), Redis, Nginx and PostgreSQL 15, each with the libraries it links, at
# the same paths. Every role of docker-compose.yml runs on it: the images the deployer builds
# (web, worker, flower, nginx) are thin layers on top, so a release ships only those.
# Needs (Debian): busybox-static python3 python3-pip redis-server nginx-light postgresql-15.
# Usage: base.sh [TAG]
set -eu
tag=${1:-inner-architect/base:2}
here=$(cd "$(dirname "$0")" && pwd)
pg=/usr/lib/postgresql/15
for need in /bin/busybox /usr/bin/python3.11 /usr/bin/redis-server /usr/sbin/nginx "$pg/bin/postgres"; do
  [ -x "$need" ] || { echo "base.sh: $need is missing (see the packages this script needs)" >&2; exit 1; }
done
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root" "$root/usr/bin" "$root/usr/sbin" \
  "$root/usr/lib" "$root/usr/share" "$root/usr/local/bin" "$root/usr/local/lib/python3.11/dist-packages" \
  "$root/var/lib/postgresql" "$root/var/run/postgresql" "$root/var/lib/nginx" "$root/var/log/nginx" \
  "$root/etc/nginx" "$root/data"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$root/bin/$a"; done
# Python: the interpreter, its standard library (without its tests) and its configuration.
cp /usr/bin/python3.11 "$root/usr/bin/"
ln -s python3.11 "$root/usr/bin/python3"
ln -s python3.11 "$root/usr/bin/python"
cp -a /usr/lib/python3.11 "$root/usr/lib/"
rm -rf "$root/usr/lib/python3.11/test" "$root/usr/lib/python3.11/idlelib" "$root/usr/lib/python3.11/tkinter"
cp -a /etc/python3.11 "$root/etc/"
# The system interpreter's pip where it has one; the target is filled whatever is installed.
py=python3.11
/usr/bin/python3.11 -m pip --version >/dev/null 2>&1 && py=/usr/bin/python3.11
"$py" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --ignore-installed \
  --target "$root/usr/local/lib/python3.11/dist-packages" "celery[redis]==5.5.3" "kombu==5.5.4" "flower==2.0.1" "psycopg2-binary==2.9.10" "gunicorn==23.0.0" packaging
rm -rf "$root/usr/local/lib/python3.11/dist-packages/bin"
printf '#!/bin/sh\nexec python3 -m celery "$@"\n' >"$root/usr/local/bin/celery"
chmod 755 "$root/usr/local/bin/celery"
# Redis, Nginx (its MIME types), PostgreSQL (without the JIT, which links all of LLVM).
cp /usr/bin/redis-server /usr/bin/redis-cli "$root/usr/bin/"
cp /usr/sbin/nginx "$root/usr/sbin/"
cp /etc/nginx/mime.types "$root/etc/nginx/"
mkdir -p "$root/usr/lib/postgresql" "$root/usr/share/postgresql"
cp -a "$pg" "$root/usr/lib/postgresql/"
rm -rf "$root$pg/lib/llvmjit"* "$root$pg/lib/bitcode"
cp -a /usr/share/postgresql/15 "$root/usr/share/postgresql/"
cp -a /usr/share/zoneinfo "$root/usr/share/"
# The shared libraries they link, at the same paths.
for lib in $(ldd /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so /usr/bin/redis-server /usr/bin/redis-cli /usr/sbin/nginx \
    "$pg"/bin/* "$root$pg"/lib/*.so $(find "$root/usr/local/lib/python3.11/dist-packages" -name '*.so') 2>/dev/null \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// && $2 ~ /^\(/ {print $1}' | sort -u); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:postgres:/var/lib/postgresql:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\npostgres:x:999:\napp:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
cp "$here/postgres-entrypoint.sh" "$root/usr/local/bin/postgres-entrypoint"
chmod 755 "$root/usr/local/bin/postgres-entrypoint"
tar -C "$root" -cf - . | docker import \
  --change "ENV PATH=$pg/bin:/usr/local/bin:/usr/bin:/usr/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change 'CMD ["sh"]' - "$tag" >/dev/null
echo "built $tag"
