"""S3 adapter against a real SeaweedFS (scripts/testbeds/seaweedfs.sh): the conformance
suite, plus credentials, outages, multipart, presigned URLs and checksums."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Credential,
    InvalidPath,
    IsADirectory,
    NotFound,
    PermissionDenied,
    Storage,
)
from adapters.s3 import MIB, S3Adapter, S3Storage, S3Writer, create
from tests.adapters.conformance import BINARY, AdapterConformance, names, read, write
from tests.backends import S3Fixtures
from tests.testbeds import running_testbed

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
ADMIN = Credential("access_secret", {"accessKey": "testkey", "secretKey": "testsecret"})
READER = Credential("access_secret", {"accessKey": "readkey", "secretKey": "readsecret"})
LISTER = Credential("access_secret", {"accessKey": "listkey", "secretKey": "listsecret"})
SMALL_PARTS = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[str]:
    with running_testbed("seaweedfs"):
        yield ENDPOINT


def make_adapter(prefix: str = "", **options: Any) -> S3Adapter:
    base: dict[str, Any] = {"endpoint_url": ENDPOINT, "bucket": BUCKET, "prefix": prefix}
    return create({**base, **SMALL_PARTS, **options})


@pytest.fixture(scope="session")
def admin(seaweedfs: str) -> Iterator[S3Storage]:
    """A view at the bucket root, for setup and for looking behind the adapter's back."""
    adapter = make_adapter()
    storage = adapter.bind(ADMIN)
    assert isinstance(storage, S3Storage)
    try:
        storage.client.create_bucket(Bucket=BUCKET)
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        assert code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"), exc
    yield storage
    adapter.close()


def raw_keys(admin: S3Storage, prefix: str) -> list[str]:
    pages = admin.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def wipe(admin: S3Storage, prefix: str) -> None:
    with contextlib.suppress(NotFound):
        admin.delete(prefix)


def leftovers(admin: S3Storage, prefix: str) -> list[str]:
    """Keys and folders (SeaweedFS keeps empty ones) left under prefix."""
    page = admin.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix, Delimiter="/")
    return [o["Key"] for o in page.get("Contents", [])] + [
        p["Prefix"] for p in page.get("CommonPrefixes", [])
    ]


@pytest.fixture
def prefix(admin: S3Storage) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    wipe(admin, name)
    # Every test also checks that the adapter's recursive delete forgets a whole tree.
    assert leftovers(admin, name) == []


@pytest.fixture
def s3(prefix: str) -> Iterator[S3Storage]:
    adapter = make_adapter(prefix)
    storage = adapter.bind(ADMIN)
    assert isinstance(storage, S3Storage)
    yield storage
    adapter.close()


class TestS3Conformance(S3Fixtures, AdapterConformance):
    def populate_many(self, storage: Storage, folder: str, count: int) -> None:
        # Raw parallel PUTs (no adapter checks) to keep the test short; still real objects.
        assert isinstance(storage, S3Storage)
        key = storage._dir_prefix(folder)

        def put(i: int) -> None:
            storage.client.put_object(Bucket=BUCKET, Key=f"{key}f{i:05d}", Body=b"")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(count)))

    def test_large_write_in_many_chunks(self, storage: Storage) -> None:
        super().test_large_write_in_many_chunks(storage)
        assert isinstance(storage, S3Storage)
        etag = storage.client.head_object(Bucket=BUCKET, Key=storage._key("big"))["ETag"]
        assert etag.strip('"').endswith("-3")  # 12 MiB in 5 MiB parts: a multipart upload


# --- directories ------------------------------------------------------------------------


def test_keys_written_by_others_form_implicit_directories(s3: S3Storage) -> None:
    s3.client.put_object(Bucket=BUCKET, Key=s3._key("x/y/z"), Body=b"z")
    assert s3.stat("x").is_dir and s3.stat("x/y").is_dir
    assert names(s3.list("x")) == {"y"}
    write(s3, "x/y/new", b"n")  # an implicit parent is a parent
    assert names(s3.list("x/y")) == {"z", "new"}


def test_mkdir_writes_a_marker_that_list_hides(s3: S3Storage, admin: S3Storage) -> None:
    s3.mkdir("d")
    assert f"{s3._root}d/" in raw_keys(admin, s3._root)
    assert list(s3.list("d")) == []


def test_delete_tree_leaves_no_key_and_no_empty_folder(s3: S3Storage, admin: S3Storage) -> None:
    s3.mkdir("t")
    s3.mkdir("t/u")
    write(s3, "t/u/v", b"v")
    s3.client.put_object(Bucket=BUCKET, Key=s3._key("t/implicit/deep/file"), Body=b"x")
    s3.delete("t")
    assert raw_keys(admin, s3._root + "t/") == []
    listing = s3.client.list_objects_v2(Bucket=BUCKET, Prefix=s3._root, Delimiter="/")
    assert listing.get("CommonPrefixes", []) == []  # SeaweedFS would keep empty folders
    with pytest.raises(NotFound):
        s3.stat("t")


def test_delete_forgets_empty_folders_left_by_others(s3: S3Storage, admin: S3Storage) -> None:
    s3.mkdir("t")
    key = s3._key("t/a/b/c")
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.client.delete_object(Bucket=BUCKET, Key=key)  # SeaweedFS keeps t/a/ and t/a/b/
    assert s3.stat("t/a").is_dir and names(s3.list("t/a")) == {"b"}
    s3.delete("t")
    assert leftovers(admin, s3._root + "t") == []


def test_paths_cannot_leave_the_prefix(s3: S3Storage) -> None:
    for bad in ["..", "../x", "a/../../x", "/etc", "a\\b", "a\x00b", "a//b"]:
        with pytest.raises(InvalidPath):
            s3.stat(bad)


def test_prefix_confines_the_view(admin: S3Storage, prefix: str) -> None:
    admin.client.put_object(Bucket=BUCKET, Key=f"{prefix}-sibling/secret", Body=b"s")
    try:
        view = make_adapter(prefix).bind(ADMIN)
        write(view, "mine", b"m")
        assert names(view.list("")) == {"mine"}
        assert raw_keys(admin, prefix + "/") == [f"{prefix}/mine"]
    finally:
        wipe(admin, f"{prefix}-sibling")


# --- credentials and outages ------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"accessKey": "testkey", "secretKey": "not-the-secret"},
        {"accessKey": "nobody", "secretKey": "whatever"},
    ],
)
def test_wrong_credentials_fail_authentication(
    s3: S3Storage, prefix: str, fields: dict[str, str]
) -> None:
    write(s3, "f", b"x")
    bad = make_adapter(prefix).bind(Credential("access_secret", fields))
    with pytest.raises(AuthenticationFailed) as info:
        bad.stat("f")  # HEAD: 403 without a body, resolved by a LIST
    assert fields["secretKey"] not in str(info.value)
    with pytest.raises(AuthenticationFailed):
        list(bad.list(""))
    with pytest.raises(AuthenticationFailed):
        read(bad, "f")


def test_read_only_identity_gets_permission_denied(s3: S3Storage, prefix: str) -> None:
    write(s3, "f", b"readable")
    s3.mkdir("d")
    ro = make_adapter(prefix).bind(READER)
    assert read(ro, "f") == b"readable"
    assert names(ro.list("")) == {"f", "d"}
    with pytest.raises(PermissionDenied):
        write(ro, "g", b"no")
    with pytest.raises(PermissionDenied):
        ro.mkdir("e")
    with pytest.raises(PermissionDenied):
        ro.delete("f")
    with pytest.raises(PermissionDenied):
        ro.delete("d")
    assert read(s3, "f") == b"readable"


def test_list_only_identity_sees_directories_but_not_content(s3: S3Storage, prefix: str) -> None:
    s3.mkdir("d")
    write(s3, "f", b"hidden")
    lister = make_adapter(prefix).bind(LISTER)
    assert names(lister.list("")) == {"d", "f"}
    assert lister.stat("d").is_dir  # HEAD d answers 403, the listing finds the folder
    with pytest.raises(PermissionDenied):
        lister.stat("f")
    with pytest.raises(PermissionDenied):
        read(lister, "f")


def test_bind_needs_a_usable_credential(prefix: str) -> None:
    adapter = make_adapter(prefix)
    with pytest.raises(AuthenticationFailed):
        adapter.bind(None)
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("apikey", {"apiKey": "k"}))
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("access_secret", {"accessKey": "testkey"}))
    assert adapter.bind(ADMIN) is adapter.bind(Credential("access_secret", dict(ADMIN.fields)))


def test_an_evicted_view_is_closed_and_still_serves_a_request_holding_it(
    s3: S3Storage, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cache's bound the least recently used credential's client is closed (its
    idle sockets go), yet a download already streaming from it ends whole and the view
    still answers: botocore reopens its pools."""
    import adapters.s3.adapter

    data = os.urandom(3 * MIB)
    write(s3, "big", data)
    monkeypatch.setattr(adapters.s3.adapter, "_CACHE_SIZE", 1)
    adapter = make_adapter(prefix)
    first = adapter.bind(ADMIN)
    assert isinstance(first, S3Storage)
    closed: list[bool] = []
    real_close = first.client.close

    def close() -> None:
        closed.append(True)
        real_close()

    monkeypatch.setattr(first.client, "close", close)
    stream = iter(first.open_read("big"))
    head = next(stream)
    assert adapter.bind(READER) is not first  # the second credential evicts the first
    assert closed == [True]
    assert head + b"".join(stream) == data
    assert first.stat("big").size == len(data)
    assert adapter.bind(ADMIN) is not first  # evicted means built again
    adapter.close()


def test_service_credential_is_used_without_user_credential(s3: S3Storage, prefix: str) -> None:
    write(s3, "f", b"svc")
    adapter = make_adapter(prefix, access_key="testkey", secret_key="testsecret")
    assert read(adapter.bind(None), "f") == b"svc"
    adapter.check()
    assert "testsecret" not in repr(adapter.settings)


def test_endpoint_down_is_backend_unavailable_quickly(seaweedfs: str) -> None:
    adapter = make_adapter("x", endpoint_url="http://127.0.0.1:1")
    storage = adapter.bind(ADMIN)
    began = time.monotonic()
    with pytest.raises(BackendUnavailable):
        storage.stat("f")
    with pytest.raises(BackendUnavailable):
        list(storage.list(""))
    with pytest.raises(BackendUnavailable):
        adapter.check()
    assert time.monotonic() - began < 5


def test_silent_server_is_backend_timeout(seaweedfs: str) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # accepts connections (kernel backlog), never answers
        port = server.getsockname()[1]
        adapter = make_adapter(
            "x", endpoint_url=f"http://127.0.0.1:{port}", read_timeout=0.5, max_attempts=1
        )
        began = time.monotonic()
        with pytest.raises(BackendTimeout):
            adapter.bind(ADMIN).stat("f")
        assert time.monotonic() - began < 3


def test_missing_bucket_is_backend_unavailable(seaweedfs: str) -> None:
    adapter = make_adapter(
        "",
        bucket="no-such-bucket-" + uuid.uuid4().hex[:8],
        access_key="testkey",
        secret_key="testsecret",
    )
    storage = adapter.bind(ADMIN)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        storage.stat("f")
    with pytest.raises(BackendUnavailable):
        list(storage.list(""))
    with pytest.raises(BackendUnavailable):
        adapter.check()


def test_check_passes_against_the_server(seaweedfs: str, admin: S3Storage) -> None:
    make_adapter().check()  # anonymous: any answer means the server is up
    make_adapter(access_key="testkey", secret_key="testsecret").check()


# --- multipart writes -------------------------------------------------------------------


def test_aborted_multipart_write_leaves_no_object_and_no_upload(s3: S3Storage) -> None:
    key = s3._key("big")
    writer = s3.open_write("big")
    assert isinstance(writer, S3Writer)
    writer.write(os.urandom(6 * MIB))
    assert writer.multipart
    uploads = s3.client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [key]
    with pytest.raises(NotFound):
        s3.stat("big")
    writer.abort()
    writer.abort()
    assert s3.client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []) == []
    with pytest.raises(NotFound):
        s3.stat("big")
    assert names(s3.list("")) == set()


def test_small_write_is_a_single_put(s3: S3Storage) -> None:
    writer = s3.open_write("small")
    assert isinstance(writer, S3Writer)
    writer.write(b"s" * (5 * MIB - 1))
    assert not writer.multipart
    assert writer.commit().size == 5 * MIB - 1


def test_write_into_missing_parent_is_refused_at_open(s3: S3Storage) -> None:
    from adapters.base import ParentNotFound

    with pytest.raises(ParentNotFound):
        s3.open_write("missing/f")
    write(s3, "file", b"x")
    with pytest.raises(ParentNotFound):
        s3.open_write("file/f")


# --- checksums --------------------------------------------------------------------------


def _count_reads(monkeypatch: pytest.MonkeyPatch, s3: S3Storage) -> list[str]:
    calls: list[str] = []
    original = s3.open_read

    def counting(path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        calls.append(path)
        return original(path, start, end)

    monkeypatch.setattr(s3, "open_read", counting)
    return calls


def test_md5_of_single_part_object_comes_from_the_etag(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(s3, "c", BINARY)
    etag = s3.client.head_object(Bucket=BUCKET, Key=s3._key("c"))["ETag"].strip('"')
    assert etag == hashlib.md5(BINARY).hexdigest()  # SeaweedFS: single-part ETag is the md5
    reads = _count_reads(monkeypatch, s3)
    assert s3.checksum("c", "md5") == hashlib.md5(BINARY).hexdigest()
    assert reads == []


def test_md5_of_multipart_object_is_streamed(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(11 * MIB + 7)
    write(s3, "m", data, chunk=MIB)
    etag = s3.client.head_object(Bucket=BUCKET, Key=s3._key("m"))["ETag"].strip('"')
    assert "-" in etag and etag != hashlib.md5(data).hexdigest()
    reads = _count_reads(monkeypatch, s3)
    assert s3.checksum("m", "md5") == hashlib.md5(data).hexdigest()
    assert reads == ["m"]
    assert s3.checksum("m", "sha256") == hashlib.sha256(data).hexdigest()


def test_checksum_of_directory_is_refused(s3: S3Storage) -> None:
    s3.mkdir("d")
    with pytest.raises(IsADirectory):
        s3.checksum("d", "md5")


# --- presigned URLs ---------------------------------------------------------------------


def _in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_presigned_get_and_put_work_with_plain_http(s3: S3Storage) -> None:
    write(s3, "f", BINARY)
    expires = _in(300)
    get = s3.presign("f", "GET", expires)
    assert get.kind == "url" and get.method == "GET" and get.expires_at <= expires
    assert 290 <= int(parse_qs(urlsplit(get.value).query)["X-Amz-Expires"][0]) <= 300
    assert "testsecret" not in get.value
    response = httpx.get(get.value)
    assert response.status_code == 200 and response.content == BINARY

    put = s3.presign("uploaded", "PUT", expires)
    assert put.method == "PUT"
    assert httpx.put(put.value, content=b"via presigned PUT").status_code == 200
    assert read(s3, "uploaded") == b"via presigned PUT"


def test_presigned_url_with_bad_signature_is_refused(s3: S3Storage) -> None:
    write(s3, "f", b"secret data")
    url = s3.presign("f", "GET", _in(300)).value
    query = parse_qs(urlsplit(url).query)
    signature = query["X-Amz-Signature"][0]
    forged = url.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    response = httpx.get(forged)
    assert response.status_code == 403 and b"secret data" not in response.content
    other_key = url.replace("/f?", "/g?")
    assert httpx.get(other_key).status_code == 403


def test_presigned_url_expires(s3: S3Storage) -> None:
    write(s3, "f", b"short-lived")
    wanted = _in(2.9)
    delegation = s3.presign("f", "GET", wanted)
    url = delegation.value
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["2"]
    signed = dt.datetime.strptime(parse_qs(urlsplit(url).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    assert delegation.expires_at == signed.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=2)
    assert delegation.expires_at <= wanted
    assert httpx.get(url).status_code == 200  # the URL lives 1 to 2 s
    time.sleep((delegation.expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 1.1)
    assert httpx.get(url).status_code == 403


def test_presign_clamps_to_seven_days(s3: S3Storage) -> None:
    url = s3.presign("f", "GET", _in(30 * 24 * 3600)).value
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(7 * 24 * 3600)]


def test_exclusive_multipart_commit_keeps_an_object_that_appeared(s3: S3Storage) -> None:
    """CompleteMultipartUpload carries If-None-Match: * too (SeaweedFS refuses it with 412
    when the key exists): the object that appeared mid-upload stays, the upload is gone."""
    writer = s3.open_write("big", exclusive=True)
    assert isinstance(writer, S3Writer)
    writer.write(os.urandom(6 * MIB))
    assert writer.multipart
    s3.client.put_object(Bucket=BUCKET, Key=s3._key("big"), Body=b"first come")
    writer.write(b"tail")
    with pytest.raises(AlreadyExists):
        writer.commit()
    assert read(s3, "big") == b"first come"
    key = s3._key("big")
    assert s3.client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", []) == []


def test_mkdir_that_loses_a_race_answers_already_exists(
    s3: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder appears between mkdir's look and its marker PUT: the marker is put with
    If-None-Match: *, so the server's 412 (not the look) makes it AlreadyExists."""
    s3.client.put_object(Bucket=BUCKET, Key=s3._key("d") + "/", Body=b"")
    monkeypatch.setattr(s3, "_head", lambda path: None)  # the look saw nothing yet
    monkeypatch.setattr(s3, "_is_dir", lambda path: path != "d")
    with pytest.raises(AlreadyExists):
        s3.mkdir("d")
