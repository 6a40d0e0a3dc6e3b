"""The WebDAV door over HTTP, against a real uvicorn and a POSIX mount: each method's
statuses and headers as RFC 4918 says, authentication, scopes, and bad input."""

from __future__ import annotations

import base64
import hashlib
import socket
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import pytest

from tests.server import Running, local_settings, running
from tests.webdav.helpers import bearer, door, token

DAV = "{DAV:}"


def key(gw: Running) -> dict[str, str]:
    return {"apikey": gw.key}


def propfind(gw: Running, url: str, depth: str = "1", **kw: object) -> httpx.Response:
    return httpx.request("PROPFIND", url, headers={**key(gw), "Depth": depth}, **kw)  # type: ignore[arg-type]


def responses(r: httpx.Response) -> dict[str, dict[str, str | None]]:
    """href -> {property local name: text} of a 207 answer."""
    assert r.status_code == 207, r.text
    out: dict[str, dict[str, str | None]] = {}
    for resp in ElementTree.fromstring(r.content).iter(DAV + "response"):
        href = resp.findtext(DAV + "href")
        assert href is not None
        props: dict[str, str | None] = {}
        for prop in resp.iter(DAV + "prop"):
            for child in prop:
                name = child.tag.removeprefix(DAV)
                is_collection = child.find(DAV + "collection") is not None
                props[name] = "collection" if is_collection else child.text
        out[href] = props
    return out


# --- OPTIONS, and the door's place ------------------------------------------------------


def test_options_advertises_class_1_without_credentials(gw: Running) -> None:
    r = httpx.request("OPTIONS", door(gw) + "/")
    assert r.status_code == 200
    assert r.headers["DAV"] == "1"
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert {"GET", "HEAD", "PUT", "MKCOL", "DELETE", "PROPFIND", "MOVE", "OPTIONS"} <= allow


def test_door_can_be_turned_off(tmp_path: Path) -> None:
    with running(local_settings(tmp_path, webdav_prefix="")) as gw:
        (gw.data / "f").write_bytes(b"x")
        r = httpx.get(door(gw) + "/f", headers=key(gw))
        assert r.status_code == 404


# --- PUT ------------------------------------------------------------------------------


def test_put_creates_then_replaces(gw: Running) -> None:
    r = httpx.put(door(gw) + "/a.bin", content=b"first", headers=key(gw))
    assert r.status_code == 201
    assert (gw.data / "a.bin").read_bytes() == b"first"
    r = httpx.put(door(gw) + "/a.bin", content=b"second!", headers=key(gw))
    assert r.status_code == 204
    assert (gw.data / "a.bin").read_bytes() == b"second!"


def test_zero_byte_put_is_an_empty_file_not_a_folder(gw: Running) -> None:
    r = httpx.put(door(gw) + "/empty.txt", content=b"", headers=key(gw))
    assert r.status_code == 201
    assert (gw.data / "empty.txt").is_file()
    assert (gw.data / "empty.txt").stat().st_size == 0


def test_put_on_a_collection_or_without_parent(gw: Running) -> None:
    (gw.data / "dir").mkdir()
    assert httpx.put(door(gw) + "/dir", content=b"x", headers=key(gw)).status_code == 405
    assert (gw.data / "dir").is_dir()
    r = httpx.put(door(gw) + "/missing/f", content=b"x", headers=key(gw))
    assert r.status_code == 409
    assert not (gw.data / "missing").exists()
    assert httpx.put(door(gw), content=b"x", headers=key(gw)).status_code == 405


def _staging_empty(gw: Running) -> bool:
    """No temporary upload file (the POSIX adapter stages in a per-process folder)."""
    staging = gw.data / ".fedgate-staging"
    return not any(p.is_file() for p in staging.rglob("*"))


def test_cut_put_leaves_the_old_file(gw: Running) -> None:
    (gw.data / "keep.bin").write_bytes(b"good")
    host, port = urlsplit(gw.url).netloc.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"PUT /webdav/local/keep.bin HTTP/1.1\r\nHost: x\r\napikey: "
            + gw.key.encode()
            + b"\r\nContent-Length: 1000000\r\n\r\n"
            + b"y" * 300_000
        )
        # The writer has started once its temporary file exists: cut the body then.
        deadline = time.monotonic() + 30
        while _staging_empty(gw):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
    # The definite event: the gateway removes its temporary file when it aborts.
    deadline = time.monotonic() + 30
    while not _staging_empty(gw):
        assert time.monotonic() < deadline, "the cut upload was never cleaned up"
        time.sleep(0.01)
    assert (gw.data / "keep.bin").read_bytes() == b"good"


# --- GET / HEAD -----------------------------------------------------------------------


def test_get_range_etag_and_digests(gw: Running) -> None:
    data = bytes(range(256)) * 1000
    (gw.data / "f.bin").write_bytes(data)
    r = httpx.get(door(gw) + "/f.bin", headers=key(gw))
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"].startswith('"')
    assert r.headers["Last-Modified"].endswith("GMT")
    r = httpx.get(door(gw) + "/f.bin", headers={**key(gw), "Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    r = httpx.get(door(gw) + "/f.bin", headers={**key(gw), "Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    # A file written outside the gateway: a GET does not wait for its digests to be
    # computed (docs/decisions.md), a HEAD does, and keeps them for the GETs after it.
    asked = {**key(gw), "Want-Digest": "adler32, md5;q=0.5, sha-256"}
    assert "Digest" not in httpx.get(door(gw) + "/f.bin", headers=asked).headers
    assert httpx.head(door(gw) + "/f.bin", headers=asked).status_code == 200
    r = httpx.get(door(gw) + "/f.bin", headers=asked)
    want = {
        "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
        "md5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        "sha-256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }
    got = dict(part.split("=", 1) for part in r.headers["Digest"].split(","))
    assert got == want
    # Best first: adler32 and sha-256 at q=1 before md5 at q=0.5.
    assert r.headers["Digest"].split(",")[-1].startswith("md5=")


def test_head_has_the_get_headers_and_no_body(gw: Running) -> None:
    (gw.data / "h.txt").write_bytes(b"0123456789")
    r = httpx.head(door(gw) + "/h.txt", headers={**key(gw), "Want-Digest": "ADLER32"})
    assert r.status_code == 200
    assert r.headers["Content-Length"] == "10"
    assert r.content == b""
    assert r.headers["Digest"] == f"adler32={zlib.adler32(b'0123456789'):08x}"
    get = httpx.get(door(gw) + "/h.txt", headers=key(gw))
    assert get.headers["ETag"] == r.headers["ETag"]
    assert httpx.head(door(gw) + "/nope", headers=key(gw)).status_code == 404


def test_get_of_a_folder_is_an_html_index(gw: Running) -> None:
    (gw.data / "d").mkdir()
    (gw.data / "d" / "a <b>.txt").write_bytes(b"x")
    r = httpx.get(door(gw) + "/d/", headers=key(gw))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "a &lt;b&gt;.txt" in r.text
    assert 'href="/webdav/local/d/a%20%3Cb%3E.txt"' in r.text


# --- MKCOL, DELETE --------------------------------------------------------------------


def test_mkcol(gw: Running) -> None:
    assert httpx.request("MKCOL", door(gw) + "/new", headers=key(gw)).status_code == 201
    assert (gw.data / "new").is_dir()
    assert httpx.request("MKCOL", door(gw) + "/new", headers=key(gw)).status_code == 405
    r = httpx.request("MKCOL", door(gw) + "/no/parent", headers=key(gw))
    assert r.status_code == 409
    assert not (gw.data / "no").exists()
    r = httpx.request("MKCOL", door(gw) + "/withbody", content=b"<x/>", headers=key(gw))
    assert r.status_code == 415
    assert not (gw.data / "withbody").exists()


def test_delete_is_recursive(gw: Running) -> None:
    (gw.data / "t" / "u").mkdir(parents=True)
    (gw.data / "t" / "u" / "f").write_bytes(b"x")
    assert httpx.delete(door(gw) + "/t", headers=key(gw)).status_code == 204
    assert not (gw.data / "t").exists()
    assert httpx.delete(door(gw) + "/t", headers=key(gw)).status_code == 404
    assert httpx.delete(door(gw), headers=key(gw)).status_code == 403


# --- PROPFIND -------------------------------------------------------------------------


def test_propfind_depth_0_and_1(gw: Running) -> None:
    (gw.data / "p").mkdir()
    (gw.data / "p" / "é x.txt").write_bytes(b"12345")
    (gw.data / "p" / "sub").mkdir()
    one = responses(propfind(gw, door(gw) + "/p/", "1"))
    assert set(one) == {
        "/webdav/local/p/",
        "/webdav/local/p/%C3%A9%20x.txt",
        "/webdav/local/p/sub/",
    }
    f = one["/webdav/local/p/%C3%A9%20x.txt"]
    assert f["getcontentlength"] == "5"
    assert f["getcontenttype"] == "text/plain"
    assert f["getetag"] and f["getlastmodified"]
    assert f["resourcetype"] is None
    assert one["/webdav/local/p/sub/"]["resourcetype"] == "collection"
    zero = responses(propfind(gw, door(gw) + "/p", "0"))
    assert list(zero) == ["/webdav/local/p/"]
    file_zero = responses(propfind(gw, door(gw) + "/p/%C3%A9%20x.txt", "1"))
    assert list(file_zero) == ["/webdav/local/p/%C3%A9%20x.txt"]


def test_propfind_lists_past_the_internal_batch(gw: Running) -> None:
    (gw.data / "many").mkdir()
    for i in range(1201):
        (gw.data / "many" / f"f{i:05}").write_bytes(b"")
    found = responses(propfind(gw, door(gw) + "/many/", "1"))
    assert len(found) == 1202


@pytest.mark.parametrize("depth", ["infinity", None])
def test_propfind_infinity_is_refused(gw: Running, depth: str | None) -> None:
    headers = key(gw) if depth is None else {**key(gw), "Depth": depth}
    r = httpx.request("PROPFIND", door(gw) + "/", headers=headers)
    assert r.status_code == 403
    assert b"propfind-finite-depth" in r.content


def test_propfind_bodies(gw: Running) -> None:
    ask = (
        b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:">'
        b"<D:prop><D:getetag/></D:prop></D:propfind>"
    )
    assert propfind(gw, door(gw) + "/", "0", content=ask).status_code == 207
    assert propfind(gw, door(gw) + "/", "0", content=b"<D:propfind").status_code == 400
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><propfind>&b;</propfind>'
    )
    assert propfind(gw, door(gw) + "/", "0", content=laughs).status_code == 400
    assert propfind(gw, door(gw) + "/", "0", content=b" " * 70_000).status_code == 413


def test_propfind_root_lists_the_mounts(gw: Running) -> None:
    found = responses(propfind(gw, f"{gw.url}/webdav/", "1"))
    assert set(found) == {"/webdav/", "/webdav/local/"}


# --- MOVE -----------------------------------------------------------------------------


def test_move_within_a_mount(gw: Running) -> None:
    (gw.data / "m.txt").write_bytes(b"moving")
    (gw.data / "dst").mkdir()
    dest = {"Destination": door(gw) + "/dst/m2.txt"}
    r = httpx.request("MOVE", door(gw) + "/m.txt", headers={**key(gw), **dest})
    assert r.status_code == 201
    assert not (gw.data / "m.txt").exists()
    assert (gw.data / "dst" / "m2.txt").read_bytes() == b"moving"
    (gw.data / "n.txt").write_bytes(b"new")
    no = {**key(gw), **dest, "Overwrite": "F"}
    assert httpx.request("MOVE", door(gw) + "/n.txt", headers=no).status_code == 412
    assert (gw.data / "dst" / "m2.txt").read_bytes() == b"moving"
    r = httpx.request("MOVE", door(gw) + "/n.txt", headers={**key(gw), **dest})
    assert r.status_code == 204
    assert (gw.data / "dst" / "m2.txt").read_bytes() == b"new"


def test_move_a_folder_and_bad_destinations(gw: Running) -> None:
    (gw.data / "src" / "in").mkdir(parents=True)
    (gw.data / "src" / "in" / "f").write_bytes(b"deep")
    r = httpx.request(
        "MOVE", door(gw) + "/src", headers={**key(gw), "Destination": "/webdav/local/moved"}
    )
    assert r.status_code == 201
    assert (gw.data / "moved" / "in" / "f").read_bytes() == b"deep"
    assert not (gw.data / "src").exists()
    for dest, status in [
        # Another server: RFC 4918's 502 (COPY pushes to one; MOVE does not).
        ("http://elsewhere.example/webdav/local/x", 502),
        ("/rest/path/local/x", 403),
        ("/webdav/other/x", 502),
        ("/webdav/local/moved/in/x", 409),
        ("/webdav/local/%2e%2e/x", 400),
    ]:
        r = httpx.request("MOVE", door(gw) + "/moved", headers={**key(gw), "Destination": dest})
        assert r.status_code == status, (dest, r.text)
    assert (gw.data / "moved" / "in" / "f").read_bytes() == b"deep"
    r = httpx.request("MOVE", door(gw) + "/moved", headers=key(gw))
    assert r.status_code == 400


# --- who may come in ------------------------------------------------------------------


def test_unauthenticated_gets_both_challenges(gw: Running) -> None:
    (gw.data / "f").write_bytes(b"x")
    r = httpx.get(door(gw) + "/f")
    assert r.status_code == 401
    challenges = r.headers.get_list("www-authenticate")
    assert any(c.startswith("Basic ") for c in challenges)
    assert any(c.startswith("Bearer ") for c in challenges)
    assert r.headers["content-type"].startswith("text/plain")


def test_basic_auth_takes_the_api_key_of_the_named_user(gw: Running) -> None:
    (gw.data / "f").write_bytes(b"secret")
    assert httpx.get(door(gw) + "/f", auth=("admin", gw.key)).content == b"secret"
    for user, password in [("someone", gw.key), ("admin", gw.key + "x"), ("admin", "")]:
        r = httpx.get(door(gw) + "/f", auth=(user, password))
        assert r.status_code == 401, (user, r.text)
        assert gw.key not in r.text
    bad = {"Authorization": "Basic !!!notbase64"}
    assert httpx.get(door(gw) + "/f", headers=bad).status_code == 401


def test_a_read_token_reads_and_nothing_more(gw: Running) -> None:
    (gw.data / "a").mkdir()
    (gw.data / "a" / "in.txt").write_bytes(b"input")
    (gw.data / "ab").mkdir()
    (gw.data / "ab" / "other.txt").write_bytes(b"other")
    h = bearer(token(gw, "storage.read:/local/a"))
    assert httpx.get(door(gw) + "/a/in.txt", headers=h).content == b"input"
    assert (
        httpx.request("PROPFIND", door(gw) + "/a/", headers={**h, "Depth": "1"}).status_code == 207
    )
    # /a does not cover /ab, and reading is all it may do.
    assert httpx.get(door(gw) + "/ab/other.txt", headers=h).status_code == 403
    pf = httpx.request("PROPFIND", door(gw) + "/ab/", headers={**h, "Depth": "1"})
    assert pf.status_code == 403
    assert httpx.put(door(gw) + "/a/new", content=b"x", headers=h).status_code == 403
    assert httpx.request("MKCOL", door(gw) + "/a/d", headers=h).status_code == 403
    assert httpx.delete(door(gw) + "/a/in.txt", headers=h).status_code == 403
    mv = {**h, "Destination": "/webdav/local/a/moved.txt"}
    assert httpx.request("MOVE", door(gw) + "/a/in.txt", headers=mv).status_code == 403
    assert sorted(p.name for p in (gw.data / "a").iterdir()) == ["in.txt"]


def test_a_create_token_never_overwrites_or_deletes(gw: Running) -> None:
    (gw.data / "out").mkdir()
    (gw.data / "out" / "old.txt").write_bytes(b"old")
    h = bearer(token(gw, "storage.create:/local/out"))
    assert httpx.put(door(gw) + "/out/new.txt", content=b"new", headers=h).status_code == 201
    assert httpx.request("MKCOL", door(gw) + "/out/d", headers=h).status_code == 201
    assert httpx.put(door(gw) + "/out/old.txt", content=b"evil", headers=h).status_code == 403
    assert httpx.delete(door(gw) + "/out/old.txt", headers=h).status_code == 403
    mv = {**h, "Destination": "/webdav/local/out/x.txt"}
    assert httpx.request("MOVE", door(gw) + "/out/old.txt", headers=mv).status_code == 403
    assert (gw.data / "out" / "old.txt").read_bytes() == b"old"
    assert (gw.data / "out" / "new.txt").read_bytes() == b"new"


def test_move_needs_rights_on_both_ends(gw: Running) -> None:
    (gw.data / "a").mkdir()
    (gw.data / "b").mkdir()
    (gw.data / "a" / "f").write_bytes(b"f")
    h = bearer(token(gw, "storage.modify:/local/a"))
    mv = {**h, "Destination": "/webdav/local/b/f"}
    assert httpx.request("MOVE", door(gw) + "/a/f", headers=mv).status_code == 403
    assert (gw.data / "a" / "f").exists()
    assert not (gw.data / "b" / "f").exists()


@pytest.mark.parametrize(
    "path", ["/webdav/local/%2e%2e/etc/passwd", "/webdav/local/a%2fb", "/webdav/local/a/../../x"]
)
def test_paths_cannot_climb_out(gw: Running, path: str) -> None:
    host, port = urlsplit(gw.url).netloc.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n\r\n".encode())
        head = s.recv(200)
    assert head.split(b" ")[1] in (b"400", b"404"), head
