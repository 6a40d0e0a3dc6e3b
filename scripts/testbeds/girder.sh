#!/usr/bin/env bash
# Real Girder 5 on SecantusDB (a MongoDB wire-protocol server from PyPI) for the tests.
#   girder.sh install   venv under .testbeds/girder/venv (idempotent)
#   girder.sh start     database on 127.0.0.1:27117, Girder on 127.0.0.1:8080, bootstrap
#                       (admin, assetstore, user alice + API key, collection); facts go to
#                       .testbeds/girder/env.json. Idempotent.
#   girder.sh stop | status
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))"
W="$REPO/.testbeds/girder"
VENV="$W/venv"
DB_PORT=27117
PORT=8080
API="http://127.0.0.1:$PORT/api/v1"
PY="${PYTHON:-python3}"

pkgs=("girder==5.0.21" "girder-client==5.0.21" "SecantusDB==0.7.0b3")

installed() {
    [ -x "$VENV/bin/girder" ] && [ -x "$VENV/bin/secantusd-py" ] &&
        [ -f "$VENV/.fedgate-installed" ] && [ "$(cat "$VENV/.fedgate-installed")" = "${pkgs[*]}" ]
}

install() {
    if installed; then return 0; fi
    mkdir -p "$W"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}" 2>&1 |
        grep -v "^WARNING: Location .* is ignored" || true
    "$VENV/bin/python" -c "import girder, girder_client, secantus" ||
        { echo "girder testbed install failed" >&2; exit 1; }
    echo "${pkgs[*]}" >"$VENV/.fedgate-installed"
}

alive() { # pidfile
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

ready() { # no curl needed: the testbed venv has python
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import sys, urllib.request
try: urllib.request.urlopen(sys.argv[1], timeout=2).read()
except Exception: sys.exit(1)" "$API/system/version" 2>/dev/null
}

port_taken() { # port: something other than our own server listens there
    "$VENV/bin/python" -c "import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 1)" "$1"
}

start() {
    install
    mkdir -p "$W/db" "$W/assets" "$W/log"
    # A server we did not start (another checkout's) must not be mistaken for ours,
    # nor make us record the pid of a process that failed to bind.
    for pair in "db.pid:$DB_PORT" "girder.pid:$PORT"; do
        if ! alive "$W/${pair%%:*}" && port_taken "${pair##*:}"; then
            echo "girder testbed: port ${pair##*:} is used by a process this script did not start" >&2
            exit 1
        fi
    done
    if ! alive "$W/db.pid"; then
        # setsid: the servers must outlive the shell (and pytest) that started them.
        setsid "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$DB_PORT" \
            --storage-path "$W/db" --standalone --log-level WARNING \
            >"$W/log/db.log" 2>&1 </dev/null &
        echo $! >"$W/db.pid"
    fi
    if ! alive "$W/girder.pid"; then
        # Girder reads its config from $GIRDER_* / girder.cfg; keep it inside $W.
        # exec: the recorded pid is Girder's own, and no wrapper shell keeps our caller's
        # stdout open (a caller capturing it would wait forever).
        (cd "$W" && exec env GIRDER_WORKER_TASK_ALWAYS_EAGER=true setsid "$VENV/bin/girder" \
            serve --mode production --database "mongodb://127.0.0.1:$DB_PORT/girder" \
            --host 127.0.0.1 --port "$PORT" >"$W/log/girder.log" 2>&1 </dev/null) &
        echo $! >"$W/girder.pid"
    fi
    for _ in $(seq 1 300); do
        if ready; then break; fi
        if ! alive "$W/girder.pid"; then
            echo "girder exited; see $W/log/girder.log" >&2
            tail -20 "$W/log/girder.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    ready || { echo "girder not ready after 60 s" >&2; exit 1; }
    "$VENV/bin/python" "$HERE/girder_bootstrap.py" --api-url "$API" \
        --assets "$W/assets" --out "$W/env.json"
}

stop_one() { # pidfile
    local f="$1"
    if alive "$f"; then
        local pid
        pid="$(cat "$f")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

stop() {
    stop_one "$W/girder.pid"
    stop_one "$W/db.pid"
    # A pidfile can miss a server (a start that raced another, a wrapper's pid): also
    # end every process running this checkout's own testbed binaries, and nothing else.
    pkill -f "^$VENV/bin/python[0-9.]* $VENV/bin/(girder|secantusd-py) " 2>/dev/null || true
    for _ in $(seq 1 50); do
        pgrep -f "^$VENV/bin/python[0-9.]* $VENV/bin/(girder|secantusd-py) " >/dev/null || break
        sleep 0.1
    done
    pkill -9 -f "^$VENV/bin/python[0-9.]* $VENV/bin/(girder|secantusd-py) " 2>/dev/null || true
}

status() {
    if alive "$W/girder.pid" && ready; then
        echo "girder running at $API"
    else
        echo "girder stopped"
        return 3
    fi
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
