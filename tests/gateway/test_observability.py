"""/healthz, /readyz, /metrics, request ids and access logs, on a real uvicorn server."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import forwarded
from gateway.app import create_app
from gateway.config import MountConfig
from gateway.datapath.uvicorn_seam import GuardedHttpTools
from gateway.logs import JsonFormatter
from gateway.state import Gateway
from tests.gateway.helpers import scrape, value
from tests.server import Running, ServerThread, local_settings, master_env, running


def test_healthz_needs_nothing(gw: Running) -> None:
    r = httpx.get(gw.url + "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "alive"}
    # At the root, not under the API prefix.
    assert httpx.get(gw.api + "/healthz").status_code == 404


def test_readyz_reports_database_and_each_mount(gw: Running) -> None:
    r = httpx.get(gw.url + "/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["database"]["ok"] is True
    assert body["mounts"]["local"]["ok"] is True
    assert isinstance(body["mounts"]["local"]["ms"], float)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung backend)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_readyz_fails_per_mount_with_a_timeout(tmp_path: Path, silent_port: int) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    mounts = (
        MountConfig("local", "posix", {"root": str(tmp_path / "data")}),
        MountConfig("gone", "posix", {"root": str(gone)}),
        MountConfig(
            "hung",
            "s3",
            {
                "bucket": "b",
                "endpoint_url": f"http://127.0.0.1:{silent_port}",
                "access_key": "k",
                "secret_key": "s",
                "read_timeout": 30,
                "max_attempts": 1,
            },
        ),
    )
    (tmp_path / "data").mkdir()
    with running(local_settings(tmp_path, mounts=mounts, readyz_timeout=1.0)) as r:
        gone.rmdir()  # the mount root disappears after start-up
        started = time.monotonic()
        resp = httpx.get(r.url + "/readyz", timeout=20)
        elapsed = time.monotonic() - started
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "not ready"
        assert body["database"]["ok"] is True
        assert body["mounts"]["local"]["ok"] is True
        assert body["mounts"]["gone"]["ok"] is False
        assert "is not a directory" in body["mounts"]["gone"]["error"]
        assert body["mounts"]["hung"] == {
            "ok": False,
            "error": "no answer within 1 s",
            "ms": body["mounts"]["hung"]["ms"],
        }
        # Each check is bounded by the readiness timeout (1 s), not by the backend's own
        # read timeout (30 s): a bound a loaded machine cannot miss by chance.
        assert elapsed < 20
        # A probe while the hung check is still blocked does not start another one.
        time.sleep(1.1)  # past the shared-result window
        again = httpx.get(r.url + "/readyz", timeout=20).json()
        assert again["mounts"]["hung"]["error"] == "the previous check has not returned yet"
        # /healthz does not care.
        assert httpx.get(r.url + "/healthz").status_code == 200


def test_request_id_is_echoed_or_made(client: httpx.Client, gw: Running) -> None:
    r = client.get("/platform", headers={"X-Request-ID": "job-42.attempt:1"})
    assert r.headers["x-request-id"] == "job-42.attempt:1"
    for insane in ("has space", "x" * 200, "new\\nline", "é"):
        r = httpx.get(gw.url + "/healthz", headers={"X-Request-ID": insane.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), insane
    # Errors carry one too (a 404 from the router, a 401 from the API).
    a = httpx.get(gw.url + "/nothing-here")
    b = httpx.get(gw.api + "/path/local?action=list")
    assert a.status_code == 404 and b.status_code == 401
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


def test_access_log_lines_without_query_strings_or_headers(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "s3cr3t-in-query-" + os.urandom(4).hex()
    caplog.set_level(logging.INFO)
    with gw.client() as c:
        put = c.put(
            f"/path/local/log.txt?signature={secret}",
            content=b"abc",
            headers={"Content-Type": "application/octet-stream", "X-Request-ID": "rid-put"},
        )
        assert put.status_code == 201
        got = c.get(f"/path/local/log.txt?action=content&token={secret}")
        assert got.content == b"abc"
    httpx.get(gw.url + "/healthz")  # probes are logged at DEBUG only
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        access = [r for r in caplog.records if r.name == "fedgate.access"]
        if len(access) >= 2:
            break
        time.sleep(0.05)
    assert len(access) == 2
    first = json.loads(JsonFormatter().format(access[0]))
    assert first["request_id"] == "rid-put"
    assert first["method"] == "PUT"
    assert first["path"] == "/rest/path/local/log.txt"
    assert first["status"] == 201
    assert first["user"] == "admin"
    assert first["duration_ms"] >= 0
    second = json.loads(JsonFormatter().format(access[1]))
    assert second["status"] == 200 and second["request_id"] == got.headers["x-request-id"]
    # Everything the server logged (httpx/httpcore are this test's own client).
    server = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server
    everything = "\n".join(JsonFormatter().format(r) for r in server)
    assert secret not in everything
    assert gw.key not in everything
    assert "signature=" not in everything and "apikey" not in everything.lower()


def _exchange(gw: Running, scope: str) -> str:
    r = httpx.post(
        gw.api + "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token": gw.key,
            "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
            "scope": scope,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_metrics_count_requests_bytes_backend_and_tokens(gw: Running) -> None:
    before = scrape(gw.url)
    body = os.urandom(300_000)
    with gw.client() as c:
        assert (
            c.put(
                "/path/local/m.bin",
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            ).status_code
            == 201
        )
        assert c.get("/path/local/m.bin?action=content").content == body
        assert c.get("/path/local/missing?action=properties").status_code == 404
    token = _exchange(gw, "storage.read:/local")
    revoked = httpx.post(
        gw.api + "/token/revoke", data={"token": token}, headers={"apikey": gw.key}
    )
    assert revoked.json() == {"revoked": 1}
    after = scrape(gw.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/rest/path/{completePath}"
    assert (
        delta("fedgate_http_requests_total", route=route, method="PUT", status="201", mount="local")
        == 1
    )
    assert (
        delta("fedgate_http_requests_total", route=route, method="GET", status="200", mount="local")
        == 1
    )
    assert (
        delta("fedgate_http_requests_total", route=route, method="GET", status="404", mount="local")
        == 1
    )
    assert (
        delta(
            "fedgate_http_requests_total",
            route="/rest/token",
            method="POST",
            status="200",
            mount="",
        )
        == 1
    )
    assert delta("fedgate_http_request_bytes_total", mount="local") == len(body)
    assert delta("fedgate_http_response_bytes_total", mount="local") >= len(body)
    assert (
        delta("fedgate_backend_call_duration_seconds_count", mount="local", operation="open_read")
        == 1
    )
    assert (
        delta("fedgate_backend_call_duration_seconds_count", mount="local", operation="open_write")
        == 1
    )
    assert delta("fedgate_tokens_issued_total", kind="exchange") == 1
    assert delta("fedgate_tokens_revoked_total") == 1
    assert delta("fedgate_http_request_duration_seconds_count", route=route, method="PUT") == 1
    # No label carries a raw path: routes are templates, mounts are configured names.
    assert not any("m.bin" in str(k) for k in after)


def test_active_transfers_and_no_buffering_while_streaming(gw: Running) -> None:
    size = 64 * 1024 * 1024
    with open(gw.data / "big.bin", "wb") as f:
        f.truncate(size)
    with gw.client() as c, c.stream("GET", "/path/local/big.bin?action=content") as r:
        chunks = r.iter_bytes(1024 * 1024)
        first = next(chunks)
        assert first
        # The first MiB arrived while the response is still in progress: the
        # middleware passes chunks through instead of collecting the body.
        during = scrape(gw.url)
        assert value(during, "fedgate_active_transfers", direction="download") == 1
        assert value(during, "fedgate_http_response_bytes_total", mount="local") < size
        total = len(first) + sum(len(x) for x in chunks)
    assert total == size
    assert value(scrape(gw.url), "fedgate_active_transfers", direction="download") == 0


def test_an_error_is_one_json_record_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = "boom-" + os.urandom(4).hex()

    async def boom(request: Request) -> Response:
        raise RuntimeError(marker)

    settings = local_settings(tmp_path)
    gw = Gateway(settings, env=master_env())
    app = create_app(settings, gw)
    app.router.routes.insert(0, Route("/boom", boom))
    caplog.set_level(logging.INFO)
    thread = ServerThread(app, http=GuardedHttpTools)
    # As under `fedgate serve` (log_config=None): uvicorn's records reach the root
    # logger, so a second "Exception in ASGI application" would be seen here.
    monkeypatch.setattr(logging.getLogger("uvicorn"), "propagate", True)
    port = thread.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/boom", headers={"X-Request-ID": "rid-boom"})
        assert r.status_code == 500 and r.json()["errorCode"] == 50001
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            x.name == "fedgate.access" for x in caplog.records
        ):
            time.sleep(0.05)
    finally:
        thread.stop()
        gw.close()
    with_trace = [x for x in caplog.records if x.exc_info and marker in str(x.exc_info[1])]
    assert len(with_trace) == 1, [x.getMessage() for x in with_trace]  # logged once
    record = json.loads(JsonFormatter().format(with_trace[0]))
    assert record["level"] == "error" and record["error"] == f"RuntimeError: {marker}"
    assert "Traceback (most recent call last)" in record["traceback"]
    assert record["request_id"] == "rid-boom"
    assert "\n" not in JsonFormatter().format(with_trace[0])  # one line
    access = [x for x in caplog.records if x.name == "fedgate.access"]
    assert [json.loads(JsonFormatter().format(x))["status"] for x in access] == [500]


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # an untrusted peer's headers are ignored, whatever they say
        ("192.0.2.1", [(b"x-forwarded-for", b"203.0.113.7")], "192.0.2.1"),
        ("192.0.2.1", [(b"forwarded", b"for=203.0.113.7")], "192.0.2.1"),
        # a trusted proxy: the right-most address that is not a trusted proxy
        ("10.0.0.5", [(b"x-forwarded-for", b"203.0.113.7")], "203.0.113.7"),
        ("10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6, 203.0.113.7, 10.0.0.9")], "203.0.113.7"),
        ("10.0.0.5", [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"10.1.1.1")],
         "6.6.6.6"),
        ("10.0.0.5", [(b"forwarded", b'for="[2001:db8::1]:4711";proto=https, for=10.0.0.7')],
         "2001:db8::1"),
        ("10.0.0.5", [(b"forwarded", b"for=198.51.100.1:1234"),
                      (b"x-forwarded-for", b"6.6.6.6")], "198.51.100.1"),
        # garbage ends the walk at the last verifiable hop
        ("10.0.0.5", [(b"x-forwarded-for", b"unknown, 203.0.113.7")], "203.0.113.7"),
        ("10.0.0.5", [(b"x-forwarded-for", b"<script>")], "10.0.0.5"),
        ("10.0.0.5", [], "10.0.0.5"),
    ],
)  # fmt: skip
def test_forwarded_addresses_only_from_trusted_proxies(
    peer: str, headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    trusted = forwarded.networks(["10.0.0.0/8"])
    assert forwarded.client_address(peer, headers, trusted) == expected
    assert forwarded.client_address(peer, headers, ()) == peer  # nothing trusted
