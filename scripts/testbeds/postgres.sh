#!/usr/bin/env bash
# A private PostgreSQL cluster for the tokens/ tests (shared state of several replicas).
#
#   postgres.sh install|start|stop|status
#
# Listens on 127.0.0.1:55432 only, trust auth, superuser `postgres`, database `fedgate`:
#   postgresql://postgres@127.0.0.1:55432/fedgate
# initdb refuses to run as root, so as root the cluster runs as the `postgres` system user.
# Data lives under <repo>/.testbeds/postgres/ when that user can reach it, else under
# /var/tmp/fedgate-postgres-<hash of the repo path>/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
HOST=127.0.0.1
PORT=55432
DB=fedgate

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# Run a command as the cluster owner (postgres when we are root, else ourselves).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    # From /: the caller's directory may be unreadable to postgres (e.g. a clone in /root).
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

workdir() {
  local w=$REPO/.testbeds/postgres
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$w"
    chown postgres: "$w"
    if ! runuser -u postgres -- test -w "$w"; then
      w=/var/tmp/fedgate-postgres-$(echo -n "$REPO" | sha256sum | cut -c1-12)
      mkdir -p "$w"
      chown postgres: "$w"
    fi
  else
    mkdir -p "$w"
  fi
  echo "$w"
}

ready() {
  local bin
  bin=$(pg_bin) || return 1
  "$bin/pg_isready" -q -h "$HOST" -p "$PORT" -U postgres -d postgres
}

cmd_install() {
  if [ -z "$(pg_bin)" ]; then
    command -v apt-get >/dev/null || { echo "postgres: no PostgreSQL and no apt-get" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  fi
  echo "postgres: $("$(pg_bin)/postgres" --version)"
}

cmd_start() {
  local bin w
  bin=$(pg_bin) || { echo "postgres: not installed (run: $0 install)" >&2; exit 1; }
  w=$(workdir)
  if ready; then
    if as_owner "$bin/pg_ctl" -D "$w/data" status >/dev/null 2>&1; then
      echo "postgres: already running on $HOST:$PORT"
      return 0
    fi
    echo "postgres: port $PORT is taken by another server" >&2
    exit 1
  fi
  if [ ! -f "$w/data/PG_VERSION" ]; then
    rm -rf "$w/data"
    as_owner "$bin/initdb" -D "$w/data" -U postgres -A trust -E UTF8 --no-sync >"$w/initdb.log" 2>&1 \
      || { cat "$w/initdb.log" >&2; exit 1; }
  fi
  as_owner mkdir -p "$w/run"
  # fsync off: this cluster holds throw-away test data only.
  if ! as_owner "$bin/pg_ctl" -D "$w/data" -l "$w/postgres.log" -w -t 60 \
      -o "-c listen_addresses=$HOST -p $PORT -k $w/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null; then
    echo "postgres: did not start; last log lines:" >&2
    tail -n 30 "$w/postgres.log" >&2
    exit 1
  fi
  for _ in $(seq 1 100); do ready && break; sleep 0.1; done
  ready || { echo "postgres: not accepting connections" >&2; exit 1; }
  if ! "$bin/psql" -h "$HOST" -p "$PORT" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
    "$bin/createdb" -h "$HOST" -p "$PORT" -U postgres "$DB"
  fi
  echo "postgres: ready on postgresql://postgres@$HOST:$PORT/$DB (data in $w/data)"
}

cmd_stop() {
  local bin w
  bin=$(pg_bin) || { echo "postgres: not installed"; return 0; }
  w=$(workdir)
  if [ -f "$w/data/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$w/data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$w/data" -m fast -w stop >/dev/null
    echo "postgres: stopped"
  else
    echo "postgres: not running"
  fi
}

cmd_status() {
  local bin w
  bin=$(pg_bin) || { echo "postgres: not installed"; return 3; }
  w=$(workdir)
  if ready && as_owner "$bin/pg_ctl" -D "$w/data" status >/dev/null 2>&1; then
    echo "postgres: running on $HOST:$PORT (data in $w/data)"
  else
    echo "postgres: stopped"
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
