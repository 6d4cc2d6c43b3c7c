#!/bin/sh
# Stops the running server (its PID is in shared/app.pid) and starts this release's, in the
# background with its output in shared/app.log, so the hook itself returns at once.
set -e
pidfile="$PIPEWRIGHT_SHARED_DIR/app.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fi
refuse=$(cat "$PIPEWRIGHT_SHARED_DIR/refuse-version" 2>/dev/null || true)
if [ -n "$refuse" ] && grep -q "\"$refuse\"" inner_architect/__init__.py; then
  echo "not starting: this host refuses version $refuse"
  exit 0
fi
if [ -e "$PIPEWRIGHT_SHARED_DIR/do-not-start" ]; then
  echo "not starting: shared/do-not-start exists"
  exit 0
fi
nohup /usr/bin/python3 -m inner_architect >>"$PIPEWRIGHT_SHARED_DIR/app.log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "started $PIPEWRIGHT_RELEASE (pid $!)"
