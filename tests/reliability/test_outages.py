"""Outages: a backend killed (kill -9) during a download and during an upload, the gateway
itself killed during uploads, and the state database surviving kill -9 and outages.

Testbed servers are killed through their pidfile and started again with their own
script before each test ends, so later tests still find them. Every mount must recover
by itself once its backend is back (for gfal that needed XrdCl's stream error window
shortened: adapters/gfal/context.py)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapters.base import BackendUnavailable
from adapters.posix import STAGING
from bench.common import VENV_BIN, free_port, wait_port
from tests.reliability.helpers import Backend
from tests.server import Running, local_settings, running
from tests.testbeds import run_testbed

MiB = 1024 * 1024
PORTS = {"seaweedfs": 8333, "girder": 8080, "xrootd": 11094}


def _listener(port: int) -> int | None:
    """The pid listening on a port: the real server, whatever its pidfile says."""
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None


def kill_backend(backend: Backend) -> None:
    if backend.testbed is None:  # the in-process iRODS server: stop cuts every connection
        backend.extra["server"].stop()
        return
    pid = _listener(PORTS[backend.testbed])
    assert pid is not None, f"{backend.testbed} is not listening"
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _listener(PORTS[backend.testbed]) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def restart_backend(backend: Backend) -> None:
    if backend.testbed is None:
        from tests.irods_server import IrodsTestServer

        old = backend.extra["server"]
        srv = IrodsTestServer(port=old.port, data_dir=old.data_dir)
        srv.catalog = old.catalog  # same catalog and bytes: the server "comes back"
        srv._server.catalog = old.catalog
        backend.extra["server"] = srv.start()
        return
    run_testbed(backend.testbed, "stop")  # forget the killed pid, then start afresh
    started = run_testbed(backend.testbed, "start")
    assert started.returncode == 0, started.stdout + started.stderr


def wait_status(client: httpx.Client, url: str, want: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    got = 0
    while time.monotonic() < deadline:
        try:
            got = client.get(url).status_code
        except httpx.HTTPError:
            got = 0
        if got == want:
            return got
        time.sleep(0.3)
    return got


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, remote_backends: list[Backend]
) -> Iterator[tuple[Running, dict[str, Backend]]]:
    tmp = tmp_path_factory.mktemp("faults")
    backends = {b.name: b for b in remote_backends}
    settings = local_settings(tmp, mounts=[b.mount() for b in backends.values()])
    with running(settings) as gw:
        yield gw, backends


@pytest.mark.parametrize("mount", ["s3", "girder", "gfal", "gfalhttp", "irods"])
def test_backend_killed_during_transfers(
    gateway: tuple[Running, dict[str, Backend]], mount: str
) -> None:
    gw, backends = gateway
    backend = backends[mount]
    size = 32 * MiB
    big, keep = f"big-{uuid.uuid4().hex[:6]}", f"keep-{uuid.uuid4().hex[:6]}"
    v1 = os.urandom(1000)
    octet = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=gw.api, headers={"apikey": gw.key}, timeout=30) as c:
        content = os.urandom(MiB) * 32
        r = c.put(f"/path/{mount}/{big}", content=content, headers=octet)
        assert r.status_code == 201, r.text
        assert c.put(f"/path/{mount}/{keep}", content=v1, headers=octet).status_code == 201
        props = f"/path/{mount}/{keep}?action=properties"
        before = backend.peek()
        try:
            # 1. download: the client must not end up with a complete-looking body
            received, failed = bytearray(), False
            with c.stream("GET", f"/path/{mount}/{big}?action=content&redirect=false") as r:
                assert r.status_code == 200
                assert int(r.headers["content-length"]) == size
                chunks = r.iter_raw(64 * 1024)
                received += next(chunks)
                kill_backend(backend)
                try:
                    for chunk in chunks:
                        received += chunk
                except httpx.HTTPError:
                    failed = True
            # Bytes already in socket buffers when the backend died may still all arrive:
            # then the body must be the real one. What must never happen is a body
            # that ends without an error but is short or wrong.
            assert failed or bytes(received) == content, (
                f"download ended cleanly with {len(received)} of {size} bytes, "
                f"{'matching' if bytes(received) == content[: len(received)] else 'wrong'}"
            )
            # 2. while it is down: 503, and an upload is refused, writing nothing
            assert wait_status(c, props, 503, 20) == 503
            r = c.put(f"/path/{mount}/{keep}", content=b"v2" * 1000, headers=octet)
            assert r.status_code in (502, 503, 504), r.text
            assert r.json()["errorCode"] // 100 == r.status_code
        finally:
            restart_backend(backend)
        # 3. back by itself, no gateway restart
        assert wait_status(c, props, 200, 60) == 200

        # 4. upload cut by a kill halfway: the old version stays, nothing partial appears
        sent = threading.Event()

        def body() -> Iterator[bytes]:
            for i in range(16):
                yield os.urandom(MiB)
                if i == 4:
                    sent.set()
                    time.sleep(1.0)

        result: dict[str, object] = {}

        def upload() -> None:
            try:
                result["r"] = c.put(f"/path/{mount}/{keep}", content=body(), headers=octet)
            except httpx.HTTPError as exc:
                result["error"] = exc

        with httpx.Client(base_url=gw.api, headers={"apikey": gw.key}, timeout=60) as c2:
            c = c2
            t = threading.Thread(target=upload)
            t.start()
            assert sent.wait(30)
            kill_backend(backend)
            t.join(60)
        try:
            outcome = result.get("r")
            assert not (isinstance(outcome, httpx.Response) and outcome.status_code == 201), (
                "an upload that lost its backend halfway was reported as written"
            )
        finally:
            restart_backend(backend)
    with httpx.Client(base_url=gw.api, headers={"apikey": gw.key}, timeout=30) as c:
        assert wait_status(c, props, 200, 60) == 200
    deadline = time.monotonic() + 30  # a restarted SeaweedFS may answer 500 for a moment
    while True:
        try:
            assert backend.read(keep) == v1, "the previous version did not survive"
            break
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert backend.peek() == before, "something partial is visible"


# --- the gateway itself killed -----------------------------------------------------


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def key(self) -> str:
        # Printed once the server answers, after its start-up lines: wait for it.
        deadline = time.monotonic() + 30
        while (m := re.search(r"keep it\): (\S+)", self.log.read_text())) is None:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        return m.group(1)


@contextmanager
def serve(state: Path, env: dict[str, str]) -> Iterator[Served]:
    """``fedgate serve`` on a fixed state dir, so a second run finds the first's state."""
    port = free_port()
    log = state / f"serve-{port}.log"
    full = {**os.environ, **env, "FEDGATE_PORT": str(port), "FEDGATE_STATE_DIR": str(state)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(VENV_BIN / "fedgate"), "serve"], env=full, stderr=out)
    try:
        wait_port(port, 30)
        yield Served(proc, f"http://127.0.0.1:{port}/rest", log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _master() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_gateway_killed_during_uploads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep").write_bytes(b"version 1")
    env = {
        "FEDGATE_MASTER_KEY": _master(),
        "FEDGATE_MOUNT__LOCAL__TYPE": "posix",
        "FEDGATE_MOUNT__LOCAL__ROOT": str(data),
    }
    errors: list[object] = []
    with serve(tmp_path, env) as fg:
        key = fg.key()
        started = threading.Barrier(5)

        def upload(name: str) -> None:
            def body() -> Iterator[bytes]:
                yield os.urandom(MiB)
                started.wait(10)
                for _ in range(30):
                    yield os.urandom(MiB)
                    time.sleep(0.1)

            with suppress(httpx.HTTPError, threading.BrokenBarrierError):
                r = httpx.put(
                    f"{fg.url}/path/local/{name}",
                    content=body(),
                    headers={"apikey": key, "Content-Type": "application/octet-stream"},
                    timeout=30,
                )
                errors.append(r.status_code)

        threads = [
            threading.Thread(target=upload, args=(n,)) for n in ("keep", "new1", "new2", "new3")
        ]
        for t in threads:
            t.start()
        started.wait(10)
        time.sleep(0.5)
        staged = [p for p in (data / STAGING).rglob("*") if p.is_file()]
        assert staged, "uploads were not in flight when the gateway was killed"
        os.kill(fg.proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(30)
    assert 201 not in errors
    with serve(tmp_path, env) as fg2:
        r = httpx.get(f"{fg2.url}/path/local?action=list", headers={"apikey": key}, timeout=10)
        assert r.status_code == 200, r.text
        names = sorted(p["platformPath"] for p in r.json())
        assert names == ["/local/keep"], names
        assert (data / "keep").read_bytes() == b"version 1"
        leftovers = [p for p in (data / STAGING).rglob("*") if p.is_file()]
        assert leftovers == [], "staging leftovers of the killed process were not cleaned"


# --- the state database --------------------------------------------------------------


def _state_round(url: str, key: str, run_cli: Callable[[list[str]], str]) -> dict[str, str]:
    """Create a user, a token and its revocation, and a stored key; return what to check."""
    bob_key = run_cli(["user", "add", f"bob{uuid.uuid4().hex[:6]}"]).strip()
    tok = httpx.post(
        url + "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": key,
            "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
            "scope": "storage.read:/local",
        },
    )
    assert tok.status_code == 200, tok.text
    revoked = tok.json()["access_token"]
    r = httpx.post(url + "/token/revoke", data={"token": revoked}, headers={"apikey": key})
    assert r.status_code == 200 and r.json()["revoked"] == 1, r.text
    r = httpx.put(
        url + "/user/externalKeys",
        json={"storageIdentifier": "local", "apiKey": "stored-secret"},
        headers={"apikey": key},
    )
    assert r.status_code == 200, r.text
    return {"bob": bob_key, "revoked": revoked}


def _state_check(url: str, key: str, made: dict[str, str]) -> None:
    assert httpx.put(url + "/platform", headers={"apikey": key}).status_code == 200
    assert httpx.put(url + "/platform", headers={"apikey": made["bob"]}).status_code == 200
    r = httpx.get(
        url + "/path/local?action=exists",
        headers={"Authorization": f"Bearer {made['revoked']}"},
    )
    assert r.status_code == 401, "a revocation was lost"
    r = httpx.get(url + "/user/externalKeys", headers={"apikey": key})
    assert [k["storageIdentifier"] for k in r.json()] == ["local"], r.text


@pytest.fixture
def postgres_url() -> Iterator[str]:
    was_running = run_testbed("postgres", "status").returncode == 0
    assert run_testbed("postgres", "start").returncode == 0
    import psycopg

    name = f"rel_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:55432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1:55432/{name}"
    assert run_testbed("postgres", "start").returncode == 0
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    if not was_running:
        run_testbed("postgres", "stop")


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_state_survives_kill_9(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {
        "FEDGATE_MASTER_KEY": _master(),
        "FEDGATE_MOUNT__LOCAL__TYPE": "posix",
        "FEDGATE_MOUNT__LOCAL__ROOT": str(data),
    }
    if store == "postgresql":
        env["FEDGATE_DATABASE_URL"] = request.getfixturevalue("postgres_url")

    def run_cli(args: list[str]) -> str:
        full = {**os.environ, **env, "FEDGATE_STATE_DIR": str(tmp_path)}
        res = subprocess.run(
            [str(VENV_BIN / "fedgate"), *args], env=full, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    with serve(tmp_path, env) as fg:
        key = fg.key()
        made = _state_round(fg.url, key, run_cli)
        os.kill(fg.proc.pid, signal.SIGKILL)
        fg.proc.wait(10)
    with serve(tmp_path, env) as fg2:
        _state_check(fg2.url, key, made)
        if store == "postgresql":
            # An outage of the database: 503 while it is down, back by itself after.
            assert run_testbed("postgres", "stop").returncode == 0
            try:
                # (API keys may be answered from a cache; stored keys need the database)
                r = httpx.get(fg2.url + "/user/externalKeys", headers={"apikey": key}, timeout=30)
                assert r.status_code == 503, r.text
                assert r.json()["errorCode"] == 50302
            finally:
                assert run_testbed("postgres", "start").returncode == 0
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline and status != 200:
                status = httpx.get(
                    fg2.url + "/user/externalKeys", headers={"apikey": key}
                ).status_code
                time.sleep(0.2)
            assert status == 200, "the gateway did not reconnect to its database"
            _state_check(fg2.url, key, made)
