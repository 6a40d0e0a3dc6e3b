"""Every CARMIN-Data action and body form, over real HTTP against a real uvicorn."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile

import httpx
import pytest

from tests.gateway.helpers import is_error
from tests.server import Running

BINARY = bytes(range(256)) * 1000 + b"\x00\r\n\xff"


# --- platform & authentication ---------------------------------------------------------


def test_platform_needs_no_auth(gw: Running) -> None:
    r = httpx.get(gw.api + "/platform")
    assert r.status_code == 200
    body = r.json()
    assert "Data" in body["supportedModules"]
    assert body["supportedAPIVersion"] == "0.3.1"
    assert "https" in body["supportedTransferProtocols"]
    codes = {e["errorCode"] for e in body["APIErrorCodesAndMessages"]}
    assert 40101 in codes and 40401 in codes


def test_put_platform_checks_the_key(gw: Running) -> None:
    is_error(httpx.put(gw.api + "/platform", headers={"apikey": "nope"}), 401, 40101)
    r = httpx.put(gw.api + "/platform", headers={"apikey": gw.key})
    assert r.status_code == 200 and "errorCode" not in r.json()


def test_missing_and_invalid_keys_answer_40101(gw: Running) -> None:
    is_error(httpx.get(gw.api + "/path/local?action=list"), 401, 40101)
    is_error(
        httpx.get(gw.api + "/path/local?action=list", headers={"apikey": "fgk_x_y"}), 401, 40101
    )
    # header name is case-insensitive
    r = httpx.get(gw.api + "/path/local?action=exists", headers={"APIKEY": gw.key})
    assert r.status_code == 200


def test_authenticate_with_password(gw: Running) -> None:
    gw.gateway.users.add_user("bob", password="correct horse battery")
    r = httpx.post(
        gw.api + "/authenticate", json={"username": "bob", "password": "correct horse battery"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["httpHeader"] == "apikey"
    r2 = httpx.get(
        gw.api + "/path/local?action=exists", headers={"apikey": body["httpHeaderValue"]}
    )
    assert r2.json() == {"exists": True}
    is_error(
        httpx.post(gw.api + "/authenticate", json={"username": "bob", "password": "wrong"}),
        401,
        40101,
    )
    is_error(
        httpx.post(gw.api + "/authenticate", json={"username": "nobody", "password": "x"}),
        401,
        40101,
    )
    is_error(httpx.post(gw.api + "/authenticate", content=b"{not json"), 400)


# --- GET actions -----------------------------------------------------------------------


def test_action_is_required(client: httpx.Client) -> None:
    is_error(client.get("/path/local"), 400, 40002)
    is_error(client.get("/path/local?action=bogus"), 400, 40002)


def test_exists(client: httpx.Client, gw: Running) -> None:
    (gw.data / "f.txt").write_text("hi")
    assert client.get("/path/local/f.txt?action=exists").json() == {"exists": True}
    assert client.get("/path/local/nope?action=exists").json() == {"exists": False}
    assert client.get("/path/local/nope/deeper?action=exists").json() == {"exists": False}
    assert client.get("/path/unknown-mount/x?action=exists").json() == {"exists": False}


def test_properties_of_file_and_directory(client: httpx.Client, gw: Running) -> None:
    (gw.data / "d").mkdir()
    (gw.data / "d" / "x.json").write_bytes(b"{}")
    f = client.get("/path/local/d/x.json?action=properties").json()
    assert f["platformPath"] == "/local/d/x.json"
    assert f["isDirectory"] is False and f["size"] == 2
    assert isinstance(f["lastModificationDate"], int) and f["lastModificationDate"] > 1_600_000_000
    assert f["mimeType"] == "application/json"
    d = client.get("/path/local/d?action=properties").json()
    assert d["isDirectory"] is True and "size" not in d and "mimeType" not in d
    assert all(v is not None for v in d.values())
    is_error(client.get("/path/local/missing?action=properties"), 404, 40401)
    is_error(client.get("/path/nomount/x?action=properties"), 404, 40402)


def test_list(client: httpx.Client, gw: Running) -> None:
    (gw.data / "d" / "sub").mkdir(parents=True)
    (gw.data / "d" / "a.txt").write_text("aaa")
    listing = client.get("/path/local/d?action=list").json()
    by_path = {e["platformPath"]: e for e in listing}
    assert set(by_path) == {"/local/d/a.txt", "/local/d/sub"}
    assert by_path["/local/d/sub"]["isDirectory"] is True
    assert by_path["/local/d/a.txt"]["size"] == 3
    assert client.get("/path/local/d/sub?action=list").json() == []
    is_error(client.get("/path/local/d/a.txt?action=list"), 409, 40902)
    is_error(client.get("/path/local/none?action=list"), 404, 40401)


def test_root_lists_mounts(client: httpx.Client) -> None:
    listing = client.get("/path/?action=list").json()
    assert [e["platformPath"] for e in listing] == ["/local"]
    assert client.get("/path/?action=exists").json() == {"exists": True}


def test_md5(client: httpx.Client, gw: Running) -> None:
    (gw.data / "b").write_bytes(BINARY)
    assert client.get("/path/local/b?action=md5").json() == {"md5": hashlib.md5(BINARY).hexdigest()}
    is_error(client.get("/path/local/missing?action=md5"), 404, 40401)


def test_content_binary_exact(client: httpx.Client, gw: Running) -> None:
    (gw.data / "b.bin").write_bytes(BINARY)
    r = client.get("/path/local/b.bin?action=content")
    assert r.status_code == 200
    assert r.content == BINARY
    assert r.headers["content-length"] == str(len(BINARY))
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["accept-ranges"] == "bytes"
    (gw.data / "t.txt").write_text("text")
    assert (
        client.get("/path/local/t.txt?action=content")
        .headers["content-type"]
        .startswith("text/plain")
    )


def test_ranges(client: httpx.Client, gw: Running) -> None:
    (gw.data / "r").write_bytes(BINARY)
    size = len(BINARY)
    r = client.get("/path/local/r?action=content", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == BINARY[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{size}"
    r = client.get("/path/local/r?action=content", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == BINARY[-5:]
    r = client.get("/path/local/r?action=content", headers={"Range": f"bytes={size - 3}-"})
    assert r.content == BINARY[-3:]
    r = client.get("/path/local/r?action=content", headers={"Range": f"bytes=0-{size * 2}"})
    assert r.status_code == 206 and r.content == BINARY
    r = client.get("/path/local/r?action=content", headers={"Range": f"bytes={size}-"})
    is_error(r, 416, 41601)
    assert r.headers["content-range"] == f"bytes */{size}"
    # If-Range with a stale validator → the whole file
    r = client.get(
        "/path/local/r?action=content", headers={"Range": "bytes=0-0", "If-Range": '"stale"'}
    )
    assert r.status_code == 200 and r.content == BINARY
    etag = client.get("/path/local/r?action=content").headers["etag"]
    r = client.get("/path/local/r?action=content", headers={"Range": "bytes=0-0", "If-Range": etag})
    assert r.status_code == 206 and r.content == BINARY[:1]


def test_directory_content_is_a_tar_gz(client: httpx.Client, gw: Running) -> None:
    (gw.data / "d" / "sub").mkdir(parents=True)
    (gw.data / "d" / "a.bin").write_bytes(BINARY)
    (gw.data / "d" / "sub" / "b.txt").write_text("bbb")
    r = client.get("/path/local/d?action=content")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tf:
        names = set(tf.getnames())
        assert {"d", "d/a.bin", "d/sub", "d/sub/b.txt"} <= names
        member = tf.extractfile("d/a.bin")
        assert member is not None and member.read() == BINARY


# --- PUT -------------------------------------------------------------------------------


def test_mkdir(client: httpx.Client, gw: Running) -> None:
    r = client.put("/path/local/newdir")
    assert r.status_code == 201
    assert r.headers["location"].endswith("/rest/path/local/newdir")
    assert r.json()["isDirectory"] is True and r.json()["platformPath"] == "/local/newdir"
    assert (gw.data / "newdir").is_dir()
    is_error(client.put("/path/local/newdir"), 409, 40901)
    is_error(client.put("/path/local/missing/child"), 409, 40904)
    assert not (gw.data / "missing").exists()


def test_raw_upload_and_overwrite(client: httpx.Client, gw: Running) -> None:
    r = client.put(
        "/path/local/up.bin", content=BINARY, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 201
    assert r.json()["size"] == len(BINARY)
    assert "/rest/path/local/up.bin" in r.headers["location"]
    assert (gw.data / "up.bin").read_bytes() == BINARY
    client.put(
        "/path/local/up.bin", content=b"v2", headers={"Content-Type": "application/octet-stream"}
    )
    assert (gw.data / "up.bin").read_bytes() == b"v2"


def test_raw_upload_chunked_stream(client: httpx.Client, gw: Running) -> None:
    def gen():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield os.urandom(100_000)

    r = client.put(
        "/path/local/chunked", content=gen(), headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 201 and r.json()["size"] == 1_000_000


def test_empty_file_upload_with_content_type(client: httpx.Client, gw: Running) -> None:
    r = client.put("/path/local/empty.txt", content=b"", headers={"Content-Type": "text/plain"})
    assert r.status_code == 201 and r.json()["isDirectory"] is False
    assert (gw.data / "empty.txt").read_bytes() == b""


def test_upload_errors(client: httpx.Client, gw: Running) -> None:
    octet = {"Content-Type": "application/octet-stream"}
    is_error(client.put("/path/local/nodir/f", content=b"x", headers=octet), 409, 40904)
    (gw.data / "d").mkdir()
    is_error(client.put("/path/local/d", content=b"x", headers=octet), 409, 40903)
    assert (gw.data / "d").is_dir()


def test_carmin_json_file(client: httpx.Client, gw: Running) -> None:
    body = {
        "base64Content": base64.b64encode(BINARY).decode(),
        "type": "File",
        "md5": hashlib.md5(BINARY).hexdigest(),
    }
    r = client.put(
        "/path/local/j.bin", json=body, headers={"Content-Type": "application/carmin+json"}
    )
    assert r.status_code == 201, r.text
    assert (gw.data / "j.bin").read_bytes() == BINARY


def test_carmin_json_md5_mismatch_writes_nothing(client: httpx.Client, gw: Running) -> None:
    (gw.data / "keep").write_bytes(b"good")
    body = {"base64Content": base64.b64encode(b"evil").decode(), "type": "File", "md5": "0" * 32}
    ct = {"Content-Type": "application/carmin+json"}
    is_error(client.put("/path/local/keep", json=body, headers=ct), 400, 40005)
    is_error(client.put("/path/local/new", json=body, headers=ct), 400, 40005)
    assert (gw.data / "keep").read_bytes() == b"good"
    assert not (gw.data / "new").exists()


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"type": "File"}',
        b'{"base64Content": "@@@notbase64", "type": "File"}',
        b'{"base64Content": "aGk=", "type": "Folder"}',
    ],
)
def test_carmin_json_bad_bodies(client: httpx.Client, gw: Running, body: bytes) -> None:
    r = client.put(
        "/path/local/bad", content=body, headers={"Content-Type": "application/carmin+json"}
    )
    is_error(r, 400)
    assert not (gw.data / "bad").exists()


def _zip(entries: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tgz(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo("link")
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tf.addfile(info)
    return buf.getvalue()


def _archive_body(data: bytes, md5: bool = True) -> dict[str, str]:
    body = {"base64Content": base64.b64encode(data).decode(), "type": "Archive"}
    if md5:
        body["md5"] = hashlib.md5(data).hexdigest()
    return body


@pytest.mark.parametrize("maker", [_zip, _tgz])
def test_archive_unpacks(client: httpx.Client, gw: Running, maker) -> None:  # type: ignore[no-untyped-def]
    data = maker({"a.txt": b"A", "sub/b.bin": BINARY})
    r = client.put(
        "/path/local/unpacked",
        json=_archive_body(data),
        headers={"Content-Type": "application/carmin+json"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["isDirectory"] is True
    assert (gw.data / "unpacked" / "a.txt").read_bytes() == b"A"
    assert (gw.data / "unpacked" / "sub" / "b.bin").read_bytes() == BINARY


@pytest.mark.parametrize(
    "data",
    [
        _zip({"ok.txt": b"fine", "../escape.txt": b"evil"}),
        _tgz({"ok.txt": b"fine", "../../escape.txt": b"evil"}),
        _zip({"ok.txt": b"fine", "/abs.txt": b"evil"}),
        _tgz({"ok.txt": b"fine"}, symlink="/etc/passwd"),
        _zip({"ok.txt": b"fine", "a\\..\\..\\escape.txt": b"evil"}),
        b"this is not an archive",
    ],
)
def test_unsafe_archives_write_nothing(client: httpx.Client, gw: Running, data: bytes) -> None:
    r = client.put(
        "/path/local/target",
        json=_archive_body(data),
        headers={"Content-Type": "application/carmin+json"},
    )
    is_error(r, 400, 40006)
    assert not (gw.data / "target").exists()
    assert not (gw.data.parent / "escape.txt").exists()
    assert sorted(p.name for p in gw.data.iterdir() if not p.name.startswith(".fedgate")) == []


def test_zip_bomb_refused_before_writing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.server import local_settings, running

    with running(local_settings(tmp_path, max_archive_bytes=1_000_000)) as gw, gw.client() as c:
        bomb = _zip({"zeros.bin": b"\0" * 5_000_000})
        assert len(bomb) < 50_000
        r = c.put(
            "/path/local/bomb",
            json=_archive_body(bomb),
            headers={"Content-Type": "application/carmin+json"},
        )
        is_error(r, 400, 40006)
        assert not (gw.data / "bomb").exists()


# --- DELETE ----------------------------------------------------------------------------


def test_delete_recursive(client: httpx.Client, gw: Running) -> None:
    (gw.data / "t" / "u").mkdir(parents=True)
    (gw.data / "t" / "u" / "f").write_text("x")
    r = client.delete("/path/local/t")
    assert r.status_code == 204 and r.content == b""
    assert not (gw.data / "t").exists()
    is_error(client.delete("/path/local/t"), 404, 40401)
    is_error(client.delete("/path/local"), 403)


# --- misc ------------------------------------------------------------------------------


def test_unknown_route_is_carmin_shaped(client: httpx.Client) -> None:
    is_error(client.get("/nope"), 404)
    is_error(client.post("/path/local/x"), 405)


def test_openapi_document_is_served(gw: Running) -> None:
    doc = httpx.get(gw.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/rest/path/{completePath}" in doc["paths"]
    assert "urn:fedgate:params:oauth:token-type:api-key" in str(doc)


def test_a_path_below_a_file_does_not_exist(client: httpx.Client, gw: Running) -> None:
    (gw.data / "f.txt").write_text("x")
    assert client.get("/path/local/f.txt/x?action=exists").json() == {"exists": False}
    is_error(client.get("/path/local/f.txt/x?action=properties"), 404, 40401)
    is_error(client.get("/path/local/f.txt/x?action=content"), 404, 40401)
    r = client.put("/path/local/f.txt/x", content=b"y", headers={"Content-Type": "text/plain"})
    is_error(r, 409, 40904)
    is_error(client.put("/path/local/f.txt/d"), 409)
    assert (gw.data / "f.txt").read_text() == "x"
