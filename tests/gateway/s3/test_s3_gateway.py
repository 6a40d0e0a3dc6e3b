"""The gateway over HTTP on S3 mounts (SeaweedFS from scripts/testbeds/seaweedfs.sh): CARMIN
actions with per-user and service credentials, direct transfers (307 to presigned GET and
PUT URLs), native credentials, and the failures a job must see clearly."""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.datapath_helpers import record_splices
from tests.gateway.helpers import bearer, is_error, token
from tests.gateway.s3.helpers import (
    BUCKET,
    ENDPOINT,
    MIB,
    OCTET,
    audit,
    claims_of,
    url_expiry,
)
from tests.server import Running

# --- CARMIN actions -----------------------------------------------------------------------


def test_carmin_actions_with_the_users_own_s3_key(
    gw: Running, client: httpx.Client, folder: str, s3: Any, prefix: str
) -> None:
    data = bytes(range(256)) * 40
    base = f"/path/s3/{folder}"
    assert client.put(f"{base}/a.bin", content=data, headers=OCTET).status_code == 201
    assert s3.head_object(Bucket=BUCKET, Key=f"{prefix}/{folder}/a.bin")["ContentLength"] == len(
        data
    )
    assert client.put(f"{base}/sub").status_code == 201  # mkdir still means mkdir
    listed = client.get(f"{base}?action=list").json()
    assert {(e["platformPath"], e["isDirectory"]) for e in listed} == {
        (f"/s3/{folder}/a.bin", False),
        (f"/s3/{folder}/sub", True),
    }
    props = client.get(f"{base}/a.bin?action=properties").json()
    assert props["size"] == len(data) and props["isDirectory"] is False
    assert client.get(f"{base}?action=properties").json()["isDirectory"] is True
    assert client.get(f"{base}/a.bin?action=md5").json() == {"md5": hashlib.md5(data).hexdigest()}
    assert client.get(f"{base}/a.bin?action=content").content == data
    part = client.get(f"{base}/a.bin?action=content", headers={"Range": "bytes=100-299"})
    assert part.status_code == 206 and part.content == data[100:300]
    assert part.headers["content-range"] == f"bytes 100-299/{len(data)}"

    upload = {
        "type": "File",
        "base64Content": base64.b64encode(b"json!").decode(),
        "md5": hashlib.md5(b"json!").hexdigest(),
    }
    carmin = {"Content-Type": "application/carmin+json"}
    assert client.put(f"{base}/sub/j.txt", json=upload, headers=carmin).status_code == 201
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x/y.txt", "from a zip")
    archive = {"type": "Archive", "base64Content": base64.b64encode(buf.getvalue()).decode()}
    assert client.put(f"{base}/unz", json=archive, headers=carmin).status_code == 201
    assert client.get(f"{base}/unz/x/y.txt?action=content").content == b"from a zip"

    tgz = client.get(f"{base}?action=content")
    assert tgz.status_code == 200 and tgz.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(tgz.content), mode="r:gz") as tf:
        names = set(tf.getnames())
        member = tf.extractfile(f"{folder}/sub/j.txt")
        assert member is not None and member.read() == b"json!"
    assert f"{folder}/a.bin" in names and f"{folder}/unz/x/y.txt" in names

    assert client.delete(f"{base}/a.bin").status_code == 204
    assert client.get(f"{base}/a.bin?action=exists").json() == {"exists": False}
    assert client.delete(base).status_code == 204
    assert client.get(f"{base}?action=exists").json() == {"exists": False}
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{folder}/").get("KeyCount") == 0


def test_mount_with_service_credentials(
    gw: Running, client: httpx.Client, s3: Any, prefix: str
) -> None:
    assert client.put("/path/svc/f.txt", content=b"svc", headers=OCTET).status_code == 201
    assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}-svc/f.txt")["Body"].read() == b"svc"
    assert client.get("/path/svc/f.txt?action=content").content == b"svc"
    tok = token(gw, "storage.read:/svc")
    r = httpx.get(gw.api + "/path/svc/f.txt?action=content", headers=bearer(tok))
    assert r.status_code == 307 and httpx.get(r.headers["location"]).content == b"svc"


# --- direct GET ---------------------------------------------------------------------------


def test_job_get_is_redirected_to_a_presigned_url_that_dies_with_the_token(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    data = b"payload " * 1000
    client.put(f"/path/s3/{folder}/in.dat", content=data, headers=OCTET)
    tok = token(gw, f"storage.read:/s3/{folder}", lifetime=120)
    r = httpx.get(f"{gw.api}/path/s3/{folder}/in.dat?action=content", headers=bearer(tok))
    assert r.status_code == 307, r.text
    location = r.headers["location"]
    assert location.startswith(ENDPOINT + "/") and r.headers["cache-control"] == "no-store"
    assert tok not in location and "testsecret" not in location
    assert url_expiry(location) <= claims_of(tok)["exp"]
    assert url_expiry(location) >= time.time() + 100
    assert httpx.get(location).content == data  # plain httpx: no header, no fedgate
    ranged = httpx.get(
        f"{gw.api}/path/s3/{folder}/in.dat?action=content",
        headers={**bearer(tok), "Range": "bytes=8-15"},
        follow_redirects=True,
    )
    assert ranged.status_code == 206 and ranged.content == data[8:16]
    events = audit(gw, tok)
    assert [e["result"] for e in events] == ["redirect", "redirect"]
    assert all(e.get("bytes", 0) == 0 for e in events)  # nothing went through fedgate


def test_job_can_ask_to_stream(gw: Running, client: httpx.Client, folder: str) -> None:
    client.put(f"/path/s3/{folder}/in.dat", content=b"streamed", headers=OCTET)
    tok = token(gw, f"storage.read:/s3/{folder}")
    url = f"{gw.api}/path/s3/{folder}/in.dat?action=content"
    for r in (
        httpx.get(url + "&redirect=false", headers=bearer(tok)),
        httpx.get(url, headers={**bearer(tok), "X-Fedgate-Redirect": "never"}),
    ):
        assert r.status_code == 200 and r.content == b"streamed"
    assert [e["bytes"] for e in audit(gw, tok)] == [8, 8]


def test_token_outside_its_scope_gets_403_and_no_url(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/s3/{folder}/secret", content=b"no", headers=OCTET)
    tok = token(gw, "storage.read:/s3/elsewhere")
    r = httpx.get(f"{gw.api}/path/s3/{folder}/secret?action=content", headers=bearer(tok))
    is_error(r, 403, 40301)
    assert "location" not in r.headers and "X-Amz" not in r.text


def test_api_key_streams_unless_it_asks_for_a_redirect(client: httpx.Client, folder: str) -> None:
    client.put(f"/path/s3/{folder}/k", content=b"by key", headers=OCTET)
    r = client.get(f"/path/s3/{folder}/k?action=content")
    assert r.status_code == 200 and r.content == b"by key"
    r = client.get(f"/path/s3/{folder}/k?action=content&redirect=true")
    assert r.status_code == 307 and httpx.get(r.headers["location"]).content == b"by key"


def test_mount_without_redirects_streams_to_jobs(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/s3/{folder}/n", content=b"n", headers=OCTET)
    tok = token(gw, "storage.read:/noredir")
    r = httpx.get(f"{gw.api}/path/noredir/{folder}/n?action=content", headers=bearer(tok))
    assert r.status_code == 200 and r.content == b"n"


# --- direct PUT ---------------------------------------------------------------------------


def test_job_put_redirect_uploads_straight_to_s3(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    tok = token(gw, f"storage.create:/s3/{folder} storage.read:/s3/{folder}", lifetime=300)
    url = f"{gw.api}/path/s3/{folder}/out.dat"
    # A create-only token gets only a URL that cannot replace: it must ask for one.
    refused = httpx.put(url + "?redirect=true", headers=bearer(tok))  # empty body, no type
    is_error(refused, 403, 40303)
    assert "If-None-Match" in refused.json()["errorMessage"]
    create_only = {**bearer(tok), "If-None-Match": "*"}
    r = httpx.put(url + "?redirect=true", headers=create_only)
    assert r.status_code == 307, r.text
    location = r.headers["location"]
    assert url_expiry(location) <= claims_of(tok)["exp"]
    assert client.get(f"/path/s3/{folder}/out.dat?action=exists").json() == {"exists": False}
    data = b"result " * 5000
    assert httpx.put(location, content=data, headers={"If-None-Match": "*"}).status_code == 200
    assert client.get(f"/path/s3/{folder}/out.dat?action=content").content == data
    props = client.get(f"/path/s3/{folder}/out.dat?action=properties").json()
    assert props["isDirectory"] is False and props["size"] == len(data)
    # The create-only rule holds: overwriting needs modify, redirect or not.
    again = httpx.put(url, headers={**create_only, "X-Fedgate-Redirect": "always"})
    is_error(again, 403, 40301)
    modify = token(gw, f"storage.modify:/s3/{folder}")
    again = httpx.put(url, headers={**bearer(modify), "X-Fedgate-Redirect": "always"})
    assert again.status_code == 307
    results = [e["result"] for e in audit(gw, tok)]  # newest first
    assert results == ["denied", "redirect", "error:40303"]


def test_put_redirect_checks_the_target_like_a_write(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    tok = token(gw, f"storage.modify:/s3/{folder}")
    base = f"{gw.api}/path/s3/{folder}"
    client.put(f"/path/s3/{folder}/dir")
    is_error(httpx.put(f"{base}/dir?redirect=true", headers=bearer(tok)), 409, 40903)
    is_error(httpx.put(f"{base}/nodir/f?redirect=true", headers=bearer(tok)), 409, 40904)
    # Without the explicit ask an empty PUT is still a mkdir, token or not.
    assert httpx.put(f"{base}/made", headers=bearer(tok)).status_code == 201
    assert client.get(f"/path/s3/{folder}/made?action=properties").json()["isDirectory"] is True
    # A body already on its way is streamed through fedgate, not bounced.
    r = httpx.put(f"{base}/sent?redirect=true", content=b"body", headers={**bearer(tok), **OCTET})
    assert (
        r.status_code == 201
        and client.get(f"/path/s3/{folder}/sent?action=content").content == b"body"
    )
    # No presigned URL possible and no body to stream: a clear error, not an empty file.
    nr = httpx.put(f"{gw.api}/path/noredir/{folder}/x?redirect=true", headers={"apikey": gw.key})
    is_error(nr, 501, 50101)
    assert client.get(f"/path/s3/{folder}/x?action=exists").json() == {"exists": False}


def test_curl_expect_100_continue_put_goes_straight_to_s3(
    gw: Running, client: httpx.Client, folder: str, tmp_path: Path
) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(b"c" * (2 * MIB))
    tok = token(gw, f"storage.create:/s3/{folder}")
    out = subprocess.run(
        ["curl", "-sS", "-f", "-L", "-T", str(src), "-H", f"Authorization: Bearer {tok}",
         "-H", "X-Fedgate-Redirect: always", "-H", "Expect: 100-continue",
         "-H", "If-None-Match: *",  # create-only: curl sends it to S3 too
         "-o", "/dev/null", "-w", "%{http_code} %{num_redirects}",
         f"{gw.api}/path/s3/{folder}/up.bin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout == "200 1", out.stdout + out.stderr
    assert (
        client.get(f"/path/s3/{folder}/up.bin?action=md5").json()["md5"]
        == hashlib.md5(src.read_bytes()).hexdigest()
    )
    assert [(e["result"], e.get("bytes")) for e in audit(gw, tok)] == [("redirect", 0)]


# --- native credentials -------------------------------------------------------------------


def test_native_presigned_urls_for_covered_paths_only(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/s3/{folder}/n.txt", content=b"native", headers=OCTET)
    tok = token(gw, f"storage.read:/s3/{folder} storage.create:/s3/{folder}/new", lifetime=200)
    native = gw.api + "/token/native"
    got = httpx.post(native, json={"path": f"/s3/{folder}/n.txt"}, headers=bearer(tok))
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["kind"] == "url" and body["method"] == "GET" and body["headers"] == {}
    assert (
        body["expiresAt"] <= claims_of(tok)["exp"]
        and url_expiry(body["value"]) <= claims_of(tok)["exp"]
    )
    assert httpx.get(body["value"]).content == b"native"
    put = httpx.post(
        native, json={"path": f"/s3/{folder}/new/r.txt", "method": "PUT"}, headers=bearer(tok)
    )
    assert put.status_code == 200, put.text
    assert put.json()["headers"] == {"If-None-Match": "*"}  # create-only: part of the URL
    assert httpx.put(put.json()["value"], content=b"written").status_code == 403
    written = httpx.put(put.json()["value"], content=b"written", headers=put.json()["headers"])
    assert written.status_code == 200
    assert client.get(f"/path/s3/{folder}/new/r.txt?action=content").content == b"written"
    for path, method in ((f"/s3/{folder}-other/n.txt", "GET"), (f"/s3/{folder}/n.txt", "PUT")):
        denied = httpx.post(native, json={"path": path, "method": method}, headers=bearer(tok))
        is_error(denied, 403, 40301)
        assert "X-Amz" not in denied.text


# --- failures -----------------------------------------------------------------------------


def test_wrong_s3_credentials_are_a_clear_401(gw: Running, client: httpx.Client) -> None:
    for r in (
        client.get("/path/bad/anything?action=properties"),
        client.get("/path/bad?action=list"),
        client.put("/path/bad/f", content=b"x", headers=OCTET),
        httpx.get(
            gw.api + "/path/bad/f?action=content", headers=bearer(token(gw, "storage.read:/bad"))
        ),
    ):
        is_error(r, 401, 40103)
        assert "credential" in r.json()["errorMessage"] and "not-the-secret" not in r.text


def test_endpoint_down_is_a_clear_503(client: httpx.Client) -> None:
    started = time.monotonic()
    r = client.get("/path/down/f?action=properties")
    is_error(r, 503, 50301)
    assert "cannot reach the S3 server" in r.json()["errorMessage"]
    assert time.monotonic() - started < 10
    is_error(client.put("/path/down/f", content=b"x", headers=OCTET), 503, 50301)


def test_cut_upload_leaves_nothing_behind(
    gw: Running, client: httpx.Client, folder: str, s3: Any, prefix: str
) -> None:
    key = f"{prefix}/{folder}/cut.bin"
    host, port = gw.url.removeprefix("http://").split(":")
    head = (
        f"PUT /rest/path/s3/{folder}/cut.bin HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {40 * MIB}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        chunk = b"z" * MIB
        for _ in range(16):
            sock.sendall(chunk)
        # Wait until the multipart upload has really started, so the abort is exercised.
        deadline = time.monotonic() + 10
        while not s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads"):
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.1)
    deadline = time.monotonic() + 10
    while s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads"):
        assert time.monotonic() < deadline, "multipart upload left dangling"
        time.sleep(0.1)
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount") == 0
    assert client.get(f"/path/s3/{folder}/cut.bin?action=exists").json() == {"exists": False}


def test_upload_past_the_memory_budget_spills_to_disk(
    client: httpx.Client, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapters.s3 import buffer as s3_buffer

    reader = s3_buffer.ChunksReader([b"abc", b"", b"defg", b"h"])
    assert len(reader) == 8 and reader.read(2) == b"ab" and reader.read(3) == b"cde"
    assert reader.seek(-2, 2) == 6 and reader.read() == b"gh" and reader.read(5) == b""
    assert reader.seek(0) == 0 and reader.read() == b"abcdefgh"
    monkeypatch.setattr(s3_buffer.BUDGET, "free", 1 * MIB)  # fits one chunk, then spills
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: multipart in 5 MiB parts
    r = client.put(f"/path/s3/{folder}/spilled.bin", content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert s3_buffer.BUDGET.free == 1 * MIB  # every part gave its memory back
    got = client.get(f"/path/s3/{folder}/spilled.bin?action=content").content
    assert hashlib.md5(got).hexdigest() == hashlib.md5(data).hexdigest()


def test_a_proxied_get_is_spliced_from_seaweedfs(
    client: httpx.Client, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3's response socket goes to the kernel (gateway/datapath/socket_splice.py): whole
    bodies and ranges arrive exact."""
    spliced = record_splices(monkeypatch)
    data = bytes(range(256)) * (12 * MIB // 256) + b"tail"
    assert client.put(f"/path/s3/{folder}/big", content=data, headers=OCTET).status_code == 201
    r = client.get(f"/path/s3/{folder}/big?action=content")
    assert r.status_code == 200 and r.content == data
    r = client.get(f"/path/s3/{folder}/big?action=content", headers={"Range": "bytes=1000-5000999"})
    assert r.status_code == 206 and r.content == data[1000:5001000]
    assert spliced == [len(data), 5_000_000]
