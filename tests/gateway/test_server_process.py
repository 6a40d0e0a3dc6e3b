"""What the gateway's server process adds under the app: request bodies gathered into
block-sized messages by our uvicorn protocol (gateway/datapath/uvicorn_seam.py) without
holding back a slow client's bytes, the malloc settings of
gateway/datapath/memory_tuning.py, and the JSON logs of a real ``fedgate serve`` with two
workers (gateway/logs.py, gateway/startup.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from bench.common import REPO
from gateway.datapath.uvicorn_seam import BODY_BLOCK, BODY_FLUSH, GuardedHttpTools
from tests.scale.procs import cli, serve, write_config
from tests.server import ServerThread, master_env
from tests.testbeds import running_testbed


class BodyRecorder:
    """ASGI app: records each body message (size, arrival time), answers the total."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, float]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        total = 0
        while True:
            message: Message = await receive()
            data = message.get("body", b"")
            total += len(data)
            self.messages.append((len(data), time.monotonic()))
            if not message.get("more_body"):
                break
        answer = str(total).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@contextmanager
def serving(app: BodyRecorder) -> Iterator[int]:
    thread = ServerThread(app, http=GuardedHttpTools, lifespan="off")  # as `fedgate serve`
    port = thread.start()
    try:
        yield port
    finally:
        thread.stop()


def head(size: int) -> bytes:
    return (
        f"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()


def answer(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_fast_body_reaches_the_app_in_block_sized_messages() -> None:
    app = BodyRecorder()
    size = 16 * BODY_BLOCK
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head(size))
        block = os.urandom(64 * 1024)
        for _ in range(size // len(block)):
            sock.sendall(block)
        reply = answer(sock)
    assert reply.endswith(str(size).encode())
    sizes = [n for n, _ in app.messages]
    assert sum(sizes) == size
    # uvicorn alone hands over one message per socket read (~64 KiB on loopback): 128+.
    assert len(sizes) <= 16 + 8, sizes
    assert max(sizes) < 2 * BODY_BLOCK  # reading pauses at a block: memory stays bounded


def test_a_slow_clients_bytes_are_not_held_back() -> None:
    app = BodyRecorder()
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head(3000))
        for _ in range(3):
            sent = time.monotonic()
            sock.sendall(b"a" * 1000)
            time.sleep(0.3)
            # The piece reached the app long before the next one, and well within a
            # body-idle timeout, although it is far from a full block.
            delivered = [t for n, t in app.messages if n and t >= sent]
            assert delivered and delivered[0] - sent < BODY_FLUSH + 0.2
        reply = answer(sock)
    assert reply.endswith(b"3000")
    assert [n for n, _ in app.messages if n] == [1000, 1000, 1000]


FAULTS = """
import resource, sys
from gateway.datapath.memory_tuning import tune_malloc
tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2000):  # two socket-read-sized buffers, allocated and freed per message
    a = bytes(300 * 1024); b = bytes(300 * 1024)
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_malloc_settings_stop_the_page_fault_per_message() -> None:
    tuned = _faults({})
    untuned = _faults({"FEDGATE_MALLOC_TUNING": "0"})
    assert tuned * 10 < untuned, (tuned, untuned)


def test_an_operators_malloc_variable_wins() -> None:
    from gateway.datapath.memory_tuning import tune_malloc

    assert tune_malloc({"FEDGATE_MALLOC_TUNING": "0"}) == []
    applied = tune_malloc({"MALLOC_ARENA_MAX": "4"})
    assert "MALLOC_ARENA_MAX" not in applied
    if sys.platform.startswith("linux"):
        assert "MALLOC_MMAP_THRESHOLD_" in applied


# --- logs of a real `fedgate serve` with two workers ---------------------------------


def _log_records(log: Path) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be one JSON object."""
    records = []
    for line in log.read_text().splitlines():
        if line.strip():
            records.append(json.loads(line))  # a plain-text line fails here
    return records


def test_two_workers_log_one_json_access_line_per_request(tmp_path: Path) -> None:
    with running_testbed("seaweedfs"):
        _two_workers(tmp_path)


def _two_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    query_secret = "qs-" + os.urandom(8).hex()
    config = write_config(
        tmp_path / "fedgate.toml",
        tmp_path / "state",
        {
            "local": {"type": "posix", "root": str(data)},
            "gone": {"type": "posix", "root": str(tmp_path / "no-such-folder")},
            "nobucket": {
                "type": "s3",
                "endpoint_url": "http://127.0.0.1:8333",
                "bucket": "fedgate-no-such-bucket",
                "access_key": "testkey",
                "secret_key": "testsecret",
            },
        },
    )
    config.write_text(
        config.read_text().replace(
            "[server]\n", '[server]\nworkers = 2\ntrusted_proxies = ["127.0.0.1/32"]\n', 1
        )
    )
    env = {**master_env(), "FEDGATE_PROT": "9999", "FEDGATE_LOG_LEVEL": "info"}
    key = cli(config, env, "user", "add", "alice").strip()
    log = tmp_path / "serve.log"
    server = serve(config, env, log)
    sent: dict[str, int] = {}
    try:
        token = httpx.post(
            server.api + "/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": key,
                "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
                "scope": "storage.read:/local",
                "execution_id": "exec-42",
            },
        ).json()["access_token"]
        with httpx.Client(headers={"Connection": "close"}, timeout=30) as c:
            r = c.get(
                server.api + "/path/local?action=list",
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "rid-token"},
            )
            assert r.status_code == 200
            sent["rid-token"] = 200
            r = c.get(
                server.api + f"/path/local?action=exists&authz={query_secret}",
                headers={"apikey": key, "X-Request-ID": "rid-fwd", "X-Forwarded-For":
                         "198.51.100.9, 203.0.113.7"},
            )  # fmt: skip
            sent["rid-fwd"] = r.status_code
            r = c.get(server.api + "/path/gone?action=list", headers={"apikey": key,
                      "X-Request-ID": "rid-gone"})  # fmt: skip
            sent["rid-gone"] = r.status_code
        # Many short connections until both workers have answered some.
        pids: set[int] = set()
        deadline = time.monotonic() + 60
        n = 0
        while len(pids) < 2 and time.monotonic() < deadline:
            batch = [f"rid-{n + i}" for i in range(16)]
            n += len(batch)

            def one(rid: str) -> None:
                with httpx.Client(headers={"Connection": "close"}, timeout=30) as c:
                    resp = c.get(
                        server.api + f"/path/local?action=exists&token={query_secret}",
                        headers={"apikey": key, "X-Request-ID": rid},
                    )
                    sent[rid] = resp.status_code

            threads = [threading.Thread(target=one, args=(rid,)) for rid in batch]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            pids = {
                r["pid"]
                for r in _log_records(log)
                if r.get("logger") == "fedgate.access" and r["request_id"].startswith("rid-")
            }
        assert len(pids) == 2, "only one worker answered in 60 s"
    finally:
        assert server.stop() == 0
    records = _log_records(log)
    access = [rec for rec in records if rec.get("logger") == "fedgate.access"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for rec in access:
        by_id.setdefault(rec["request_id"], []).append(rec)
    for rid, status in sent.items():
        assert len(by_id.get(rid, [])) == 1, (rid, by_id.get(rid))
        line = by_id[rid][0]
        assert line["status"] == status and line["method"] == "GET"
        assert "?" not in line["path"] and line["path"].startswith("/rest/path/")
        assert line["user"] == "alice"
        assert isinstance(line["bytes"], int) and line["duration_ms"] >= 0
    assert by_id["rid-fwd"][0]["client"] == "203.0.113.7"  # from a trusted proxy
    assert by_id["rid-1"][0]["client"] == "127.0.0.1"
    assert by_id["rid-token"][0]["execution_id"] == "exec-42"
    assert by_id["rid-token"][0]["token_id"]
    assert sent["rid-gone"] == 503  # the operator's missing root, not the user's 404
    # Start-up: the unknown variable, then one line per mount with its state.
    start = [r for r in records if r.get("logger") == "fedgate.start"]
    assert any(
        "FEDGATE_PROT" in r["message"] and "did you mean FEDGATE_PORT?" in r["message"]
        for r in start
    )
    mounts = {r["mount"]: r for r in start if "mount" in r}
    assert mounts["local"]["state"] == "ok"
    assert mounts["gone"]["state"] == "unavailable"
    assert mounts["nobucket"]["state"] == "unavailable"
    assert "bucket 'fedgate-no-such-bucket' does not exist" in mounts["nobucket"]["reason"]
    # Both workers started with the same logging.
    started = {r["pid"] for r in records if r["message"].startswith("Started server process")}
    assert len(started) == 2
    text = log.read_text()
    for secret in (key, token, query_secret, "testsecret", env["FEDGATE_MASTER_KEY"]):
        assert secret not in text


def test_the_first_admin_key_is_the_last_line_of_the_start(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "fedgate.toml",
        tmp_path / "state",
        {"local": {"type": "posix", "root": str(tmp_path / "data"), "create": True}},
    )
    log = tmp_path / "serve.log"
    server = serve(config, master_env(), log)
    try:
        deadline = time.monotonic() + 30
        while "its API key" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = log.read_text().splitlines()
        assert lines[-1].startswith("fedgate: its API key (shown once, keep it): fgk_"), lines
        key = lines[-1].rsplit(" ", 1)[1]
        exists = httpx.get(server.api + "/path/local?action=exists", headers={"apikey": key})
        assert exists.json() == {"exists": True}
    finally:
        server.stop()
    assert lines[-2] == "fedgate: no user existed, so user 'admin' was created."
    started = [json.loads(line)["message"] for line in lines[:-2]]  # all JSON before it
    assert "Application startup complete." in started
    assert any(m.startswith("Uvicorn running on") for m in started)
