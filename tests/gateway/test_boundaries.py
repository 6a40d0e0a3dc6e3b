"""Boundaries end to end: listings around the gateway's internal batch, through the HTTP
API and the job client, and byte ranges at every edge, compared with nginx serving the
same files (the same status, the headers that matter and the same bytes)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.client import Client
from gateway.datapath.transfer import batches_in_thread
from tests.server import Running, local_settings, running

BATCH = batches_in_thread.__defaults__[0]  # type: ignore[index]  # entries per hop
SIZES = [0, 1, BATCH - 1, BATCH, BATCH + 1, 10 * BATCH]


def test_the_batch_is_what_these_sizes_straddle() -> None:
    assert BATCH == 500


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("boundaries")
    with running(local_settings(tmp)) as r:
        yield r


def fill(folder: Path, n: int) -> dict[str, int]:
    """``n`` entries, one in ten a folder, the files of distinct sizes."""
    folder.mkdir(exist_ok=True)
    made = {}
    for i in range(n):
        name = f"e{i:05d}"
        if i % 10 == 9:
            (folder / name).mkdir()
            made[name] = -1
        else:
            (folder / name).write_bytes(b"x" * (i % 7))
            made[name] = i % 7
    return made


@pytest.mark.parametrize("n", SIZES)
def test_listing_through_http(gw: Running, n: int) -> None:
    made = fill(gw.data / f"http-{n}", n)
    with gw.client() as c:
        r = c.get(f"/path/local/http-{n}?action=list")
    assert r.status_code == 200
    got = {
        e["platformPath"].rsplit("/", 1)[1]: (-1 if e["isDirectory"] else e["size"])
        for e in r.json()
    }
    assert len(r.json()) == n  # no entry twice, none lost at a batch's edge
    assert got == made


@pytest.mark.parametrize("n", SIZES)
def test_listing_through_the_job_client(gw: Running, n: int) -> None:
    made = fill(gw.data / f"client-{n}", n)
    with Client(gw.api, apikey=gw.key, retries=0) as c:
        entries = c.ls(f"/local/client-{n}")
    assert len(entries) == n
    assert {e.path.rsplit("/", 1)[1]: (-1 if e.is_dir else e.size) for e in entries} == made


@pytest.mark.parametrize("n", [BATCH, BATCH + 1])
def test_a_token_lists_a_long_folder_it_may_read(gw: Running, n: int) -> None:
    made = fill(gw.data / f"scoped-{n}", n)
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": gw.key,
        "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
        "scope": f"storage.read:/local/scoped-{n}",
    }
    token = httpx.post(gw.api + "/token", data=form).json()["access_token"]
    with Client(gw.api, token=token, retries=0) as c:
        assert len(c.ls(f"/local/scoped-{n}")) == len(made)


# --- ranges against nginx ----------------------------------------------------------------

FILES = {"empty": b"", "one": b"A", "small": bytes(range(256)) * 4}  # 0, 1 and 1024 bytes
RANGES = [
    "bytes=0-0",
    "bytes=0-",
    "bytes=1-",
    "bytes=0-1023",
    "bytes=0-1024",  # last past the end: clipped
    "bytes=0-99999",
    "bytes=1023-",  # the last byte
    "bytes=1024-",  # start at the size
    "bytes=1025-2000",  # start past the size
    "bytes=-1",
    "bytes=-1024",  # suffix as long as the file
    "bytes=-5000",  # suffix longer than the file
    "bytes=-0",
    "bytes=5-3",  # last before first: invalid, ignored
    "bytes=abc",
    "bytes=",
    "items=0-1",
    "bytes = 2-4",
]
# Where fedgate answers differently from nginx on purpose (gateway/api/ranges.py):
MULTI = ["bytes=0-1,5-6", "bytes=0-0,-1"]  # nginx: 206 multipart; fedgate: 200, the whole
HEADERS = ("content-range", "content-length")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def nginx() -> Iterator[tuple[str, Path]]:
    """nginx (scripts/install-system-deps.sh) serving a folder of its own on a free port."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx is not installed: run scripts/install-system-deps.sh")
    conf = Path(tempfile.mkdtemp(prefix="fedgate-nginx-"))
    conf.chmod(0o755)  # its workers may run as another user
    root = conf / "www"
    root.mkdir()
    root.chmod(0o755)
    for name, data in FILES.items():
        (root / name).write_bytes(data)
        (root / name).chmod(0o644)
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (conf / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {conf}/nginx.pid;
error_log {conf}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {conf}/body;
  proxy_temp_path {conf}/proxy;
  fastcgi_temp_path {conf}/fastcgi;
  uwsgi_temp_path {conf}/uwsgi;
  scgi_temp_path {conf}/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    proc = subprocess.Popen([binary, "-c", str(conf / "nginx.conf"), "-p", str(conf)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None, (conf / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", root
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(conf, ignore_errors=True)


@pytest.fixture(scope="module")
def served(gw: Running, nginx: tuple[str, Path]) -> tuple[str, str]:
    (gw.data / "r").mkdir(exist_ok=True)
    for name, data in FILES.items():
        (gw.data / "r" / name).write_bytes(data)
    return gw.api, nginx[0]


def _both(gw: Running, nginx_url: str, name: str, rng: str) -> tuple[httpx.Response, ...]:
    fed = httpx.get(
        f"{gw.api}/path/local/r/{name}?action=content",
        headers={"apikey": gw.key, "Range": rng},
    )
    ngx = httpx.get(f"{nginx_url}/{name}", headers={"Range": rng})
    return fed, ngx


_FIRST_POS = ("bytes=0-0", "bytes=0-", "bytes=0-1023", "bytes=0-1024", "bytes=0-99999")
# Where fedgate answers otherwise than nginx, on purpose: (file, range) -> (fedgate's status,
# why). Everything else must match nginx exactly.
DIFFERENCES: dict[tuple[str, str], tuple[int, str]] = {
    **{
        ("empty", r): (416, "RFC 9110 14.1.1: a first byte at or past the end is unsatisfiable")
        for r in (*_FIRST_POS, "bytes=-0")
    },
    **{
        (f, r): (200, "RFC 9110 14.2: an invalid Range is ignored (nginx answers 416)")
        for f in FILES
        for r in ("bytes=5-3", "bytes=abc")
    },
    **{
        (f, "bytes = 2-4"): (
            {"empty": 416, "one": 416, "small": 206}[f],
            "fedgate reads spaces around '=' (nginx ignores such a header)",
        )
        for f in FILES
    },
}


def _cases() -> list[object]:
    return [
        pytest.param(
            name,
            rng,
            id=f"{name}-{rng}",
        )
        for name in FILES
        for rng in RANGES
    ]


@pytest.mark.parametrize("name, rng", _cases())
def test_ranges_answer_as_nginx_does(
    gw: Running, served: tuple[str, str], name: str, rng: str
) -> None:
    fed, ngx = _both(gw, served[1], name, rng)
    size = len(FILES[name])
    if (name, rng) in DIFFERENCES:
        status, why = DIFFERENCES[name, rng]
        assert ngx.status_code != status, f"nginx agrees now: drop the difference ({why})"
        assert fed.status_code == status, (fed.status_code, why)
        if status == 200:
            assert fed.content == FILES[name] and "content-range" not in fed.headers
        elif status == 416:
            assert fed.headers["content-range"] == f"bytes */{size}"
        return
    assert fed.status_code == ngx.status_code, (fed.text[:200], ngx.headers)
    if ngx.status_code == 416:
        assert fed.headers["content-range"] == ngx.headers["content-range"]
        assert fed.json()["errorCode"] == 41601  # CARMIN-shaped, where nginx sends HTML
        return
    for h in HEADERS:
        assert fed.headers.get(h) == ngx.headers.get(h), h
    assert fed.content == ngx.content


@pytest.mark.parametrize("rng", MULTI)
def test_several_ranges_get_the_whole_file(gw: Running, served: tuple[str, str], rng: str) -> None:
    """nginx answers 206 multipart/byteranges; fedgate sends the whole file with 200, as
    RFC 9110 allows (docs/decisions.md): same bytes in the end for a client that asked."""
    fed, ngx = _both(gw, served[1], "small", rng)
    assert ngx.status_code == 206 and "multipart/byteranges" in ngx.headers["content-type"]
    assert fed.status_code == 200 and fed.content == FILES["small"]
    assert "content-range" not in fed.headers


def test_if_range_with_a_stale_validator_gets_the_whole_file(
    gw: Running, served: tuple[str, str]
) -> None:
    url = f"{gw.api}/path/local/r/small?action=content"
    first = httpx.get(url, headers={"apikey": gw.key})
    etag = first.headers["etag"]
    fresh = httpx.get(url, headers={"apikey": gw.key, "Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == FILES["small"][:10]
    stale = httpx.get(url, headers={"apikey": gw.key, "Range": "bytes=0-9", "If-Range": '"x"'})
    assert stale.status_code == 200 and stale.content == FILES["small"]
    weak = httpx.get(url, headers={"apikey": gw.key, "Range": "bytes=0-9", "If-Range": "W/" + etag})
    assert weak.status_code == 200
    dated = first.headers["last-modified"]
    by_date = httpx.get(url, headers={"apikey": gw.key, "Range": "bytes=0-9", "If-Range": dated})
    assert by_date.status_code == 206


def test_a_suffix_range_on_an_empty_file_is_never_a_206(
    gw: Running, served: tuple[str, str]
) -> None:
    """Whatever the fix for the deviation above: no byte range of nothing, and a
    Content-Range, if any, names the real size."""
    for rng in ("bytes=-1", "bytes=-5000"):
        fed, _ = _both(gw, served[1], "empty", rng)
        assert fed.status_code in (200, 416), fed.headers
        assert fed.headers.get("content-range") in (None, "bytes */0")
