#!/bin/sh
# The restart hook of `pipewright deploy`: stops the running server (PID in shared/app.pid)
# and starts this release's in the background, its output in shared/app.log.
set -e
pidfile="$PIPEWRIGHT_SHARED_DIR/app.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
fi
nohup python3 -m inner_architect >>"$PIPEWRIGHT_SHARED_DIR/app.log" 2>&1 </dev/null &
echo $! >"$pidfile"
echo "started release $PIPEWRIGHT_RELEASE (pid $!)"
