#!/usr/bin/env bash
# XRootD 5.5 test storage element: root:// on 127.0.0.1:11094 and XrdHttp (http/dav) on 11095,
# one daemon, checksums adler32 and md5, no authentication (host allow-list: localhost).
#
#   xrootd.sh install|start|stop|status|path|ca
#
# `path` prints the folder on disk behind root://127.0.0.1:11094//data (tests use it to
# populate large folders directly).
#
# XROOTD_FLAVOUR=tpc (scripts/testbeds/xrootd-tpc.sh) runs a second daemon for HTTP
# third-party copy: root:// on 11096, its HTTP door on 11097 with TLS and the XrdHttpTPC
# handler, so it answers COPY itself (TLS is what makes XrdHttpTPC take COPY requests; the
# door then serves both https and plain http). A self-signed certificate for localhost and
# 127.0.0.1 is made at start; `ca` prints the folder holding it (X509_CERT_DIR).
#
# Where the state lives: $REPO/.testbeds/xrootd when the `xrootd` system user can traverse
# the repo's parents (the daemon drops to that user, it refuses to run as root); otherwise
# (e.g. a clone under a 0700 home) /var/tmp/fedgate-xrootd-<hash of the repo path>, so two
# clones never share data. XRootD listens on all interfaces (it has no bind-address
# option); `xrd.allow host localhost` refuses every other client.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
FLAVOUR=${XROOTD_FLAVOUR:-}
case "$FLAVOUR" in
  "") NAME=xrootd; INSTANCE=ci; ROOT_PORT=11094; HTTP_PORT=11095; SCHEME=http ;;
  tpc) NAME=xrootd-tpc; INSTANCE=tpc; ROOT_PORT=11096; HTTP_PORT=11097; SCHEME=https ;;
  *) echo "xrootd.sh: unknown XROOTD_FLAVOUR=$FLAVOUR" >&2; exit 2 ;;
esac
RUN_USER=xrootd

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "xrootd.sh: must run as root (the daemon is started with -R $RUN_USER)" >&2
    exit 1
  fi
}

state_dir() {
  local preferred="$REPO/.testbeds/$NAME"
  mkdir -p "$REPO/.testbeds"
  if id "$RUN_USER" >/dev/null 2>&1 && runuser -u "$RUN_USER" -- test -x "$REPO/.testbeds"; then
    echo "$preferred"
  else
    local h
    h=$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
    echo "/var/tmp/fedgate-$NAME-$h"
  fi
}

W=""
init_paths() {
  W=$(state_dir)
  CFG="$W/xrootd.cfg"
  ADMIN="$W/xrd-admin"
  PIDFILE="$ADMIN/$INSTANCE/xrootd.pid"
  CA="$W/ca"
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
  curl -sk -o /dev/null -m 2 -w '%{http_code}' "$SCHEME://127.0.0.1:$HTTP_PORT/data/" 2>/dev/null \
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

tls_files() {
  mkdir -p "$CA"
  if [ ! -f "$W/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/key.pem" -out "$W/cert.pem" -days 7 \
      -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
    cp "$W/cert.pem" "$CA/"
    (cd "$CA" && ln -sf cert.pem "$(openssl x509 -hash -noout -in cert.pem).0")
  fi
  chown "$RUN_USER:" "$W/key.pem" "$W/cert.pem"
  chmod 600 "$W/key.pem"
}

cmd_start() {
  need_root
  init_paths
  if running; then
    ready && return 0
  fi
  mkdir -p "$W" "$DATA" "$ADMIN"
  chmod 0755 "$W"
  [ "$FLAVOUR" = tpc ] && tls_files
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
  if [ "$FLAVOUR" = tpc ]; then
    cat >> "$CFG" <<CFG
http.exthandler xrdtpc libXrdHttpTPC.so
xrd.tls $W/cert.pem $W/key.pem
xrd.tlsca certdir $CA
CFG
  fi
  chown -R "$RUN_USER:" "$W/xrd" "$ADMIN"
  if ! running; then
    rm -f "$PIDFILE"
    (cd "$ADMIN" && xrootd -R "$RUN_USER" -b -n "$INSTANCE" -c "$CFG" -l "$ADMIN/xrootd.log")
  fi
  # Our own daemon must be the one answering (a daemon of another clone could hold the ports).
  for _ in $(seq 1 100); do
    if running && ready; then return 0; fi
    sleep 0.2
  done
  echo "xrootd.sh: daemon not ready after 20 s; log tail:" >&2
  tail -n 30 "$ADMIN/$INSTANCE/xrootd.log" >&2 || true
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
    echo "$NAME: running (pid $(cat "$PIDFILE")), root://127.0.0.1:$ROOT_PORT//data $SCHEME://127.0.0.1:$HTTP_PORT/data, data in $DATA"
  else
    echo "$NAME: stopped"
    return 1
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_install; cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  path) init_paths; echo "$DATA" ;;
  ca) init_paths; echo "$CA" ;;
  *) echo "usage: $0 install|start|stop|status|path|ca" >&2; exit 2 ;;
esac
