"""COPY on the WebDAV door: between two paths of the gateway, and HTTP third-party copy
(pull with Source, push with a remote Destination) against a peer on loopback that
misbehaves on demand (tests/webdav/remote.py) — statuses, markers, the last line, what
reached the storage and what did not, scopes and the SSRF guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.base import Entry, StorageError
from gateway.webdav import tpc
from tests.server import Running, local_settings, running
from tests.webdav.helpers import bearer, door, token
from tests.webdav.remote import Remote, serving_remote


@pytest.fixture
def remote() -> Iterator[Remote]:
    with serving_remote() as r:
        yield r


@pytest.fixture
def tpc_gw(tmp_path: Path) -> Iterator[Running]:
    """A gateway that may reach loopback peers (the tests' own), with fast markers and
    one copy in flight per user."""
    settings = local_settings(
        tmp_path, tpc_allow_private=True, tpc_marker_interval=1, tpc_max_per_user=1,
        tpc_stall_timeout=5,
    )  # fmt: skip
    with running(settings) as r:
        (r.data / "in").mkdir()
        yield r


def key(gw: Running) -> dict[str, str]:
    return {"apikey": gw.key}


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def last_line(body: str) -> str:
    return body.rstrip("\n").rsplit("\n", 1)[-1]


# --- between two paths of the gateway -------------------------------------------------


def test_copy_a_file_and_a_folder(gw: Running) -> None:
    (gw.data / "src" / "sub").mkdir(parents=True)
    (gw.data / "src" / "a.bin").write_bytes(os.urandom(300_000))
    (gw.data / "src" / "sub" / "b.txt").write_bytes(b"b")
    r = httpx.request(
        "COPY", door(gw) + "/src/a.bin", headers={**key(gw), "Destination": "/webdav/local/c.bin"}
    )
    assert r.status_code == 201
    assert (gw.data / "c.bin").read_bytes() == (gw.data / "src" / "a.bin").read_bytes()
    r = httpx.request(
        "COPY", door(gw) + "/src", headers={**key(gw), "Destination": "/webdav/local/copy"}
    )
    assert r.status_code == 201
    assert (gw.data / "copy" / "sub" / "b.txt").read_bytes() == b"b"
    assert (gw.data / "src" / "sub" / "b.txt").exists()  # a copy, not a move
    shallow = {**key(gw), "Destination": "/webdav/local/shallow", "Depth": "0"}
    assert httpx.request("COPY", door(gw) + "/src", headers=shallow).status_code == 201
    assert list((gw.data / "shallow").iterdir()) == []
    over = {**key(gw), "Destination": "/webdav/local/c.bin", "Overwrite": "F"}
    assert httpx.request("COPY", door(gw) + "/src/sub/b.txt", headers=over).status_code == 412
    again = {**key(gw), "Destination": "/webdav/local/c.bin"}
    assert httpx.request("COPY", door(gw) + "/src/sub/b.txt", headers=again).status_code == 204
    assert (gw.data / "c.bin").read_bytes() == b"b"
    into = {**key(gw), "Destination": "/webdav/local/src/sub/x"}
    assert httpx.request("COPY", door(gw) + "/src", headers=into).status_code == 409


def test_copy_needs_read_at_the_source_and_create_or_modify_at_the_destination(
    gw: Running,
) -> None:
    for name in ("a", "b"):
        (gw.data / name).mkdir()
    (gw.data / "a" / "f").write_bytes(b"source")
    (gw.data / "b" / "old").write_bytes(b"old")

    def copy(scope: str, src: str, dst: str) -> int:
        h = {**bearer(token(gw, scope)), "Destination": f"/webdav/local/{dst}"}
        return httpx.request("COPY", f"{door(gw)}/{src}", headers=h).status_code

    assert copy("storage.create:/local/b", "a/f", "b/new") == 403  # no read at the source
    assert copy("storage.read:/local/a", "a/f", "b/new") == 403  # no create at the destination
    assert copy("storage.read:/local/a storage.create:/local/b", "a/f", "b/old") == 403
    assert (gw.data / "b" / "old").read_bytes() == b"old"
    assert copy("storage.read:/local/a storage.create:/local/b", "a/f", "b/new") == 201
    assert copy("storage.read:/local/a storage.modify:/local/b", "a/f", "b/old") == 204
    assert (gw.data / "b" / "old").read_bytes() == b"source"


def test_copy_skips_links_out_of_scope(gw: Running) -> None:
    (gw.data / "a").mkdir()
    (gw.data / "secret").mkdir()
    (gw.data / "secret" / "s.txt").write_bytes(b"secret")
    (gw.data / "a" / "mine.txt").write_bytes(b"mine")
    os.symlink("../secret", gw.data / "a" / "link")
    h = {
        **bearer(token(gw, "storage.read:/local/a storage.create:/local/out")),
        "Destination": "/webdav/local/out",
    }
    assert httpx.request("COPY", door(gw) + "/a", headers=h).status_code == 201
    assert sorted(p.name for p in (gw.data / "out").iterdir()) == ["mine.txt"]


def test_copy_is_audited_once_with_both_ends(gw: Running) -> None:
    (gw.data / "f").write_bytes(b"12345")
    h = {**key(gw), "Destination": "/webdav/local/g"}
    r = httpx.request("COPY", door(gw) + "/f", headers=h)
    assert r.status_code == 201
    rows = httpx.get(
        gw.api + "/audit", params={"request_id": r.headers["x-request-id"]}, headers=key(gw)
    ).json()
    copies = [row for row in rows if row.get("operation") == "copy"]
    assert len(copies) == 1
    assert copies[0]["path"] == "/local/f"
    assert copies[0]["detail"] == "to /local/g"
    assert copies[0]["bytes"] == 5


# --- HTTP third-party copy: pull ------------------------------------------------------


def test_pull_with_markers_and_forwarded_headers(tpc_gw: Running, remote: Remote) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    remote.files["/data/in.bin"] = data
    r = httpx.request(
        "COPY",
        door(tpc_gw) + "/in/pulled.bin",
        headers={
            **key(tpc_gw),
            "Source": remote.url + "/data/in.bin",
            "Credential": "none",
            "TransferHeaderAuthorization": "Bearer remote-token-123",
        },
    )
    assert r.status_code == 202
    assert r.text.startswith("Perf Marker\n\tTimestamp: ")
    assert "\tStripe Bytes Transferred: " in r.text
    assert last_line(r.text) == "success: Created"
    assert (tpc_gw.data / "in" / "pulled.bin").read_bytes() == data
    sent = [h for m, p, h in remote.requests if m == "GET"]
    assert sent[0]["authorization"] == "Bearer remote-token-123"
    assert "apikey" not in {k.lower() for k in sent[0]}  # our credentials stay with us
    audit = httpx.get(tpc_gw.api + "/audit", headers=key(tpc_gw)).text
    assert "remote-token-123" not in audit


@pytest.mark.parametrize(
    "fault",
    ["missing", "wrong-digest", "cut"],
)
def test_a_failed_pull_leaves_nothing(tpc_gw: Running, remote: Remote, fault: str) -> None:
    (tpc_gw.data / "in" / "keep.bin").write_bytes(b"good")
    remote.files["/f"] = os.urandom(1024 * 1024)
    remote.wrong_digest = fault == "wrong-digest"
    remote.cut_after = 300_000 if fault == "cut" else None
    source = remote.url + ("/nope" if fault == "missing" else "/f")
    for target in ("keep.bin", "new.bin"):
        r = httpx.request(
            "COPY", f"{door(tpc_gw)}/in/{target}", headers={**key(tpc_gw), "Source": source}
        )
        assert r.status_code == 202
        assert last_line(r.text).startswith("failure: "), r.text
    assert (tpc_gw.data / "in" / "keep.bin").read_bytes() == b"good"
    assert not (tpc_gw.data / "in" / "new.bin").exists()


def test_a_client_gone_mid_pull_cancels_it(tpc_gw: Running, remote: Remote) -> None:
    remote.files["/slow"] = os.urandom(4 * 1024 * 1024)
    remote.slow = 0.2
    with httpx.stream(
        "COPY",
        door(tpc_gw) + "/in/slow.bin",
        headers={**key(tpc_gw), "Source": remote.url + "/slow"},
    ) as r:
        assert r.status_code == 202
        next(r.iter_bytes())  # the first marker: the copy is under way; then hang up

    def cancelled() -> bool:
        rows = httpx.get(tpc_gw.api + "/audit", headers=key(tpc_gw)).json()
        return any(row.get("result") == "error:tpc" for row in rows)

    wait_for(cancelled, "the cancelled copy's audit row")
    assert not (tpc_gw.data / "in" / "slow.bin").exists()


def test_pull_scopes(tpc_gw: Running, remote: Remote) -> None:
    remote.files["/f"] = b"remote"
    (tpc_gw.data / "in" / "old").write_bytes(b"old")
    reader = bearer(token(tpc_gw, "storage.read:/local/in"))
    r = httpx.request(
        "COPY", door(tpc_gw) + "/in/new", headers={**reader, "Source": remote.url + "/f"}
    )
    assert r.status_code == 403
    creator = bearer(token(tpc_gw, "storage.create:/local/in"))
    r = httpx.request(
        "COPY", door(tpc_gw) + "/in/old", headers={**creator, "Source": remote.url + "/f"}
    )
    assert r.status_code == 403
    assert (tpc_gw.data / "in" / "old").read_bytes() == b"old"
    assert remote.requests == []  # refused before anything reached the peer


def test_copies_in_flight_are_capped(tpc_gw: Running, remote: Remote) -> None:
    remote.files["/slow"] = os.urandom(2 * 1024 * 1024)
    remote.slow = 30
    with httpx.stream(
        "COPY", door(tpc_gw) + "/in/a", headers={**key(tpc_gw), "Source": remote.url + "/slow"}
    ) as first:
        next(first.iter_bytes())
        second = httpx.request(
            "COPY", door(tpc_gw) + "/in/b", headers={**key(tpc_gw), "Source": remote.url + "/slow"}
        )
        assert second.status_code == 429
        assert second.headers["Retry-After"].isdigit()
        remote.release.set()


def test_only_credential_none(tpc_gw: Running, remote: Remote) -> None:
    h = {**key(tpc_gw), "Source": remote.url + "/f", "Credential": "gridsite"}
    assert httpx.request("COPY", door(tpc_gw) + "/in/x", headers=h).status_code == 400


# --- the SSRF guard -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "LOCAL",
        "http://127.0.0.1:9/x",
        "http://[::1]:9/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://localhost:9/x",
        "ftp://example.org/x",
        "file:///etc/passwd",
        "http://user:pw@example.org/x",
    ],
)
def test_no_copy_from_or_to_private_addresses_by_default(
    gw: Running, remote: Remote, url: str
) -> None:
    url = remote.url + "/f" if url == "LOCAL" else url
    remote.files["/f"] = b"x"
    (gw.data / "f").write_bytes(b"mine")
    pull = httpx.request("COPY", door(gw) + "/new", headers={**key(gw), "Source": url})
    assert pull.status_code in (400, 403), pull.text
    push = httpx.request("COPY", door(gw) + "/f", headers={**key(gw), "Destination": url})
    assert push.status_code in (400, 403), push.text
    assert remote.requests == []
    assert not (gw.data / "new").exists()


# --- push -----------------------------------------------------------------------------


def test_push(tpc_gw: Running, remote: Remote) -> None:
    data = os.urandom(1024 * 1024 + 3)
    (tpc_gw.data / "in" / "out.bin").write_bytes(data)
    r = httpx.request(
        "COPY",
        door(tpc_gw) + "/in/out.bin",
        headers={
            **key(tpc_gw),
            "Destination": remote.url + "/data/pushed.bin",
            "TransferHeaderAuthorization": "Bearer remote-token-456",
        },
    )
    assert r.status_code == 202
    assert last_line(r.text) == "success: Created"
    assert remote.files["/data/pushed.bin"] == data
    put = next(h for m, p, h in remote.requests if m == "PUT")
    assert put["authorization"] == "Bearer remote-token-456"


def test_push_refused_by_the_destination_or_out_of_scope(tpc_gw: Running, remote: Remote) -> None:
    (tpc_gw.data / "in" / "f").write_bytes(b"f")
    h = {**key(tpc_gw), "Destination": remote.url + "/readonly/f"}
    r = httpx.request("COPY", door(tpc_gw) + "/in/f", headers=h)
    assert last_line(r.text) == "failure: the destination answered 403"
    writer = bearer(token(tpc_gw, "storage.modify:/local/in"))  # modify does not read
    h = {**writer, "Destination": remote.url + "/data/f"}
    assert httpx.request("COPY", door(tpc_gw) + "/in/f", headers=h).status_code == 403
    assert "/data/f" not in remote.files


# --- the job client: fedgate cp -------------------------------------------------------


def fedgate_cp(gw: Running, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDGATE_URL": gw.api, "FEDGATE_APIKEY": gw.key}
    env.pop("BEARER_TOKEN", None)
    cmd = [sys.executable, "-m", "gateway.client.cli", "cp", *args, "--json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_fedgate_cp_between_paths_and_by_tpc(
    tpc_gw: Running, remote: Remote, tmp_path: Path
) -> None:
    (tpc_gw.data / "in" / "a.txt").write_bytes(b"alpha")
    done = fedgate_cp(tpc_gw, "/local/in/a.txt", "/local/in/b.txt")
    assert done.returncode == 0, done.stderr
    assert (tpc_gw.data / "in" / "b.txt").read_bytes() == b"alpha"
    remote.files["/r.bin"] = data = os.urandom(1024 * 1024)
    token_file = tmp_path / "remote-token"
    token_file.write_text("remote-secret-789\n")
    pulled = fedgate_cp(
        tpc_gw, remote.url + "/r.bin", "/local/in/r.bin", "--remote-token-file", str(token_file)
    )
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["bytes"] == len(data)
    assert (tpc_gw.data / "in" / "r.bin").read_bytes() == data
    assert remote.requests[-1][2]["authorization"] == "Bearer remote-secret-789"
    pushed = fedgate_cp(tpc_gw, "/local/in/a.txt", remote.url + "/pushed.txt")
    assert pushed.returncode == 0, pushed.stderr
    assert remote.files["/pushed.txt"] == b"alpha"
    missing = fedgate_cp(tpc_gw, remote.url + "/nope", "/local/in/n.bin")
    assert missing.returncode == 3, missing.stderr  # not found
    assert not (tpc_gw.data / "in" / "n.bin").exists()
    assert "remote-secret-789" not in pulled.stderr + missing.stderr


def test_local_to_local_copy_in_the_kernel_keeps_md5_right(gw: Running) -> None:
    """Between two local folders the bytes are copied by the kernel, without the writer
    seeing them: the md5 the gateway then gives must still be the file's."""
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 9)
    (gw.data / "k.bin").write_bytes(data)
    h = {**key(gw), "Destination": "/webdav/local/k2.bin"}
    assert httpx.request("COPY", door(gw) + "/k.bin", headers=h).status_code == 201
    assert (gw.data / "k2.bin").read_bytes() == data
    md5 = httpx.get(gw.api + "/path/local/k2.bin?action=md5", headers=key(gw)).json()["md5"]
    assert md5 == hashlib.md5(data).hexdigest()


class _FailingWriter:
    """A storage writer that refuses the block that completes the file, as a full disk
    or a storage answering 5xx at the end of an upload would (the last block is the
    case a write running behind the receive could lose)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.written = 0
        self.committed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.written >= self.size:
            raise StorageError("no space left on the storage")

    def commit(self) -> Entry:
        self.committed = True
        return Entry(path="x", is_dir=False, size=self.written)

    def abort(self) -> None:
        self.aborted = True


class _Destination:
    def __init__(self, size: int) -> None:
        self.writer = _FailingWriter(size)

    def open_write(self, path: str, length: int | None, exclusive: bool = False) -> _FailingWriter:
        return self.writer


def test_a_pull_whose_storage_write_fails_is_aborted_not_committed(remote: Remote) -> None:
    # The writer runs one block behind the receive, in its own thread: its failure must
    # still end the pull and abort the write (a commit would publish a truncated file).
    remote.files["/f"] = os.urandom(8 * 1024 * 1024)
    destination = _Destination(8 * 1024 * 1024)
    limits = tpc.Limits(allow_private=True, stall_timeout=5, max_bytes=1 << 30)
    with pytest.raises(StorageError, match="no space left"):
        tpc.pull(
            remote.url + "/f",
            {},
            destination,
            "in/f",
            False,
            limits,
            tpc.Progress(),  # type: ignore[arg-type]
        )
    assert destination.writer.aborted and not destination.writer.committed
