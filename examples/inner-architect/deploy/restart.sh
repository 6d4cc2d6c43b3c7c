#!/bin/sh
# The restart hook of `pipewright deploy` (shipped in each release): stops the gunicorn that
# serves (its master's PID in shared/app.pid) and starts this release's from its own
# virtualenv, in the background, its log in shared/app.log.
set -e
pidfile="$PIPEWRIGHT_SHARED_DIR/app.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  rm -f "$pidfile"
fi
.venv/bin/gunicorn --daemon --pid "$pidfile" --bind "${HOST:-127.0.0.1}:${PORT:-8000}" \
  --workers "${WEB_CONCURRENCY:-2}" --chdir "$PIPEWRIGHT_RELEASE_DIR" \
  --access-logfile "$PIPEWRIGHT_SHARED_DIR/access.log" --error-logfile "$PIPEWRIGHT_SHARED_DIR/app.log" \
  inner_architect.app:application
echo "started release $PIPEWRIGHT_RELEASE on ${HOST:-127.0.0.1}:${PORT:-8000}"
