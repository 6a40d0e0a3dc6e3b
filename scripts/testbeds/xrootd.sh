#!/usr/bin/env bash
# XRootD 5.5 test storage element: root:// on 127.0.0.1:11094 and XrdHttp (http/dav) on 11095,
# one daemon, checksums adler32 and md5, no authentication (host allow-list: localhost).
#
#   xrootd.sh install|start|stop|status|path
#
# `path` prints the folder on disk behind root://127.0.0.1:11094//data (tests use it to
# populate large folders directly).
#
# Where the state lives: $REPO/.testbeds/xrootd when the `xrootd` system user can traverse
# the repo's parents (the daemon drops to that user, it refuses to run as root); otherwise
# (e.g. a clone under a 0700 home) /var/tmp/fedgate-xrootd-<hash of the repo path>, so two
# clones never share data. XRootD listens on all interfaces (it has no bind-address
# option); `xrd.allow host localhost` refuses every other client.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
ROOT_PORT=11094
HTTP_PORT=11095
RUN_USER=xrootd

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "xrootd.sh: must run as root (the daemon is started with -R $RUN_USER)" >&2
    exit 1
  fi
}

state_dir() {
  local preferred="$REPO/.testbeds/xrootd"
  mkdir -p "$REPO/.testbeds"
  if id "$RUN_USER" >/dev/null 2>&1 && runuser -u "$RUN_USER" -- test -x "$REPO/.testbeds"; then
    echo "$preferred"
  else
    local h
    h=$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
    echo "/var/tmp/fedgate-xrootd-$h"
  fi
}

W=""
init_paths() {
  W=$(state_dir)
  CFG="$W/xrootd.cfg"
  ADMIN="$W/xrd-admin"
  PIDFILE="$ADMIN/ci/xrootd.pid"
  DATA="$W/xrd/data"
}

running() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

ready() {
  # XrdHttp answers only once the whole daemon (root:// included) is up.
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/data/" 2>/dev/null \
    | grep -qE '^(200|207|403)$' \
    && xrdfs "127.0.0.1:$ROOT_PORT" stat /data >/dev/null 2>&1
}

cmd_install() {
  local missing=()
  for b in xrootd xrdfs curl; do command -v "$b" >/dev/null || missing+=("$b"); done
  id "$RUN_USER" >/dev/null 2>&1 || missing+=("user:$RUN_USER")
  if [ ${#missing[@]} -gt 0 ]; then
    # Normally done by scripts/install-system-deps.sh; repeated here so the script stands alone.
    echo "xrootd.sh: missing ${missing[*]}; installing Debian packages" >&2
    need_root
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      xrootd-server xrootd-server-plugins xrootd-client xrootd-plugins curl
  fi
}

cmd_start() {
  need_root
  init_paths
  if running; then
    ready && return 0
  fi
  mkdir -p "$W" "$DATA" "$ADMIN"
  chmod 0755 "$W"
  cat > "$CFG" <<CFG
xrd.port $ROOT_PORT
all.export /data
oss.localroot $W/xrd
all.adminpath $ADMIN
all.pidpath $ADMIN
xrootd.chksum max 2 adler32 md5
xrd.allow host localhost
xrd.protocol XrdHttp:$HTTP_PORT libXrdHttp.so
http.listingdeny false
CFG
  chown -R "$RUN_USER:" "$W/xrd" "$ADMIN"
  if ! running; then
    rm -f "$PIDFILE"
    (cd "$ADMIN" && xrootd -R "$RUN_USER" -b -n ci -c "$CFG" -l "$ADMIN/xrootd.log")
  fi
  # Our own daemon must be the one answering (a daemon of another clone could hold the ports).
  for _ in $(seq 1 100); do
    if running && ready; then return 0; fi
    sleep 0.2
  done
  echo "xrootd.sh: daemon not ready after 20 s; log tail:" >&2
  tail -n 30 "$ADMIN/ci/xrootd.log" >&2 || true
  exit 1
}

cmd_stop() {
  init_paths
  if running; then
    local pid
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  fi
  rm -f "$PIDFILE"
}

cmd_status() {
  init_paths
  if running && ready; then
    echo "xrootd: running (pid $(cat "$PIDFILE")), root://127.0.0.1:$ROOT_PORT//data http://127.0.0.1:$HTTP_PORT/data, data in $DATA"
  else
    echo "xrootd: stopped"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_install; cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  path) init_paths; echo "$DATA" ;;
  *) echo "usage: $0 install|start|stop|status|path" >&2; exit 2 ;;
esac
