"""Helpers the gateway's tests share: the CARMIN error shape, the token exchange, raw
requests on the socket, request bodies, waiting for an event, the metrics page and the
``fedgate`` command. Test modules import from here, never from each other."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway import config
from gateway.config import MountConfig
from gateway.state import Gateway
from tests.backends import Space
from tests.server import Running, local_settings, running

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
FEDGATE = str(Path(sys.executable).parent / "fedgate")

# --- CARMIN answers ------------------------------------------------------------------


def is_error(r: httpx.Response, status: int, code: int | None = None) -> None:
    """``r`` is a CARMIN error: the status, and a body of errorCode and errorMessage
    (errorDetails at most besides), whose code starts with the status."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body)[:2] == ["errorCode", "errorMessage"]
    assert set(body) <= {"errorCode", "errorMessage", "errorDetails"}
    assert isinstance(body["errorMessage"], str) and body["errorMessage"]
    assert body["errorCode"] // 100 == status
    if code is not None:
        assert body["errorCode"] == code


# --- a gateway on one backend ------------------------------------------------------


@contextmanager
def gateway_on(space: Space, tmp: Path) -> Iterator[Running]:
    """A real gateway whose one mount, named after its type, is ``space`` (a fresh folder
    of tests/backends.py). A user credential is stored the way VIP stores it (``PUT
    /user/externalKeys``), so every request goes through the key vault to the adapter."""
    source = "none" if space.credential is None else "user"
    mount = MountConfig(space.type, space.type, space.options, credential_source=source)
    with running(local_settings(tmp, mounts=(mount,))) as gw:
        if space.credential is not None:
            credential = {"kind": space.credential.kind, **space.credential.fields}
            stored = httpx.put(
                gw.api + "/user/externalKeys",
                json={"storageIdentifier": space.type, "credential": credential},
                headers={"apikey": gw.key},
            )
            assert stored.status_code == 200, stored.text
        yield gw


# --- tokens --------------------------------------------------------------------------


def exchange(
    gw: Running,
    scope: str,
    subject: str | None = None,
    subject_type: str = API_KEY_TYPE,
    **extra: object,
) -> httpx.Response:
    """An RFC 8693 exchange of ``subject`` (the gateway's admin API key by default)."""
    form = {
        "grant_type": GRANT,
        "subject_token": subject or gw.key,
        "subject_token_type": subject_type,
        "scope": scope,
    }
    form.update({k: str(v) for k, v in extra.items()})
    return httpx.post(gw.api + "/token", data=form)


def token(gw: Running, scope: str, **extra: object) -> str:
    r = exchange(gw, scope, **extra)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


# --- raw requests and bodies ---------------------------------------------------------


def raw_request(gw: Running, request: bytes, read: bool = True) -> bytes:
    """``request`` written as is on a new connection; what came back until it closed
    (or went quiet for 10 s)."""
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def upload_data(data: bytes, kind: str = "File") -> bytes:
    """A CARMIN UploadData body (application/carmin+json)."""
    body = {"type": kind, "base64Content": base64.b64encode(data).decode()}
    return json.dumps(body).encode()


def tar_gz(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=1) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


# --- waiting for an event ------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.0005)


class When:
    """Run ``action`` in a thread as soon as ``condition`` holds (while the request that
    makes it hold is still being served); ``check`` re-raises what went wrong there."""

    def __init__(self, condition: Callable[[], bool], action: Callable[[], None], what: str):
        self.error: BaseException | None = None
        self.fired = False
        self.raced = True  # what the action saw: set by actions that can tell

        def run() -> None:
            try:
                wait_for(condition, what)
                action()
                self.fired = True
            except BaseException as exc:  # handed to the test's thread
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def check(self) -> None:
        self._thread.join(30)
        if self.error is not None:
            raise self.error
        assert self.fired


# --- metrics -------------------------------------------------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``/metrics``, keyed by name and sorted labels."""
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- the fedgate command on an embedded default --------------------------------------


def run_cli(tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``fedgate ARGS`` with its state in ``tmp/state`` and ``tmp/data`` mounted as local."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_")}
    env["FEDGATE_STATE_DIR"] = str(tmp / "state")
    env["FEDGATE_MOUNT__LOCAL__TYPE"] = "posix"
    env["FEDGATE_MOUNT__LOCAL__ROOT"] = str(tmp / "data")
    env["FEDGATE_MOUNT__LOCAL__CREATE"] = "true"
    return subprocess.run(
        [FEDGATE, *args], env=env, cwd=tmp, input=stdin, capture_output=True, text=True, timeout=60
    )


def gateway_at(tmp: Path) -> Gateway:
    """The services of the gateway ``run_cli(tmp, ...)`` runs, in this process."""
    env = {
        "FEDGATE_STATE_DIR": str(tmp / "state"),
        "FEDGATE_MOUNT__LOCAL__TYPE": "posix",
        "FEDGATE_MOUNT__LOCAL__ROOT": str(tmp / "data"),
    }
    return Gateway(config.load(env=env), env=env)
