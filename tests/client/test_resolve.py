"""URI → mount mapping: the pure functions (adapters/uris.py) and ``GET /resolve``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.uris import Match, NoMount, UriError, match_uri, parse_vip, redact
from gateway.client import Client, NotFoundError
from gateway.config import MountConfig
from tests.gateway.helpers import token
from tests.server import Running, local_settings, running

MOUNTS = (
    MountConfig("local", "posix", {"root": "/srv"}),
    MountConfig("bucket", "s3", {"bucket": "data", "endpoint_url": "http://127.0.0.1:8333"}),
    MountConfig(
        "inputs",
        "s3",
        {"bucket": "data", "prefix": "/in/puts/", "endpoint_url": "http://127.0.0.1:8333/"},
    ),
    MountConfig("xrd", "gfal", {"base_url": "root://se.example.org:1094//store/data"}),
    MountConfig("dav", "gfal", {"base_url": "davs://se.example.org/dav/data/"}),
    MountConfig("web", "gfal", {"base_url": "http://web.example.org:8080/files"}),
    MountConfig("ir", "irods", {"host": "iRODS.example.org", "zone": "z", "root": "/z/home/al"}),
    MountConfig(
        "gi", "girder", {"api_url": "https://g.example.org/api/v1", "root": "/collection/c/f"}
    ),
    MountConfig(
        "gi2", "girder", {"api_url": "https://h.example.org/api/v1", "root": "/collection/c"}
    ),
    MountConfig("private", "posix", {"root": "/p"}, read_users=("bob",), write_users=("bob",)),
)

CASES = [
    ("s3://data/x/y.txt", "bucket", "x/y.txt"),
    ("s3://data/in/puts/subj/1.nii", "inputs", "subj/1.nii"),  # deepest root wins
    ("s3://data", "bucket", ""),
    ("http://127.0.0.1:8333/data/in/puts/a", "inputs", "a"),  # path-style endpoint URL
    ("http://127.0.0.1:8333/data/k", "bucket", "k"),
    ("root://se.example.org//store/data/run/f.root", "xrd", "run/f.root"),
    ("xroot://SE.example.org:1094/store//data/f", "xrd", "f"),
    ("davs://se.example.org:443/dav/data/a%20b/c", "dav", "a b/c"),
    ("https://se.example.org/dav/data/a", "dav", "a"),
    ("dav://web.example.org:8080/files/x", "web", "x"),
    ("irods://alice@irods.example.org:1247/z/home/al/d/f", "ir", "d/f"),
    ("irods://irods.example.org/z/home/al", "ir", ""),
    ("girder:/collection/c/f/a\\-b/c", "gi", "a\u2215b/c"),
    ("girder:/collection/c/f/x?apiurl=https://h.example.org/api/v1", "gi2", "f/x"),
    ("/local/a/b", "local", "a/b"),
]


@pytest.mark.parametrize(("uri", "mount", "inner"), CASES)
def test_native_uris_map_to_their_mount(uri: str, mount: str, inner: str) -> None:
    m = match_uri(uri, MOUNTS)
    assert (m.mount, m.inner) == (mount, inner)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://other/x",
        "root://se.example.org:1095//store/data/f",  # another port
        "root://se.example.org//store/database/f",  # /store/data is not above it
        "http://se.example.org/dav/data/a",  # http is not https
        "irods://irods.example.org:1248/z/home/al/x",
        "irods://irods.example.org/z/home/bob/x",
        "girder:/collection/d/x",
        "/nomount/x",
    ],
)
def test_uris_no_mount_covers(uri: str) -> None:
    with pytest.raises(NoMount):
        match_uri(uri, MOUNTS)


@pytest.mark.parametrize(
    "uri", ["ftp://x/y", "s3:///key", "root://host:notaport//x", "girder:/nothing/x", "x/y"]
)
def test_unparsable_uris(uri: str) -> None:
    with pytest.raises(UriError):
        match_uri(uri, MOUNTS)


def test_vip_reference_keeps_its_token_secret() -> None:
    uri = "girder:/in.nii?apiurl=https://g.example.org/api/v1&fileId=abc&token=SECRET"
    ref = parse_vip(uri)
    assert ref is not None and (ref.file_id, ref.name, ref.token) == ("abc", "in.nii", "SECRET")
    assert "SECRET" not in repr(ref) and "SECRET" not in redact(uri)
    assert parse_vip("girder:/collection/c/f/x") is None
    assert Match("a", "b") == Match("a", "b")


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    (tmp_path / "data").mkdir()
    local = MountConfig("local", "posix", {"root": str(tmp_path / "data")})
    with running(local_settings(tmp_path, mounts=(local, *MOUNTS[1:]))) as r:
        yield r


def test_resolve_endpoint(gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    c = gw.client()
    r = c.get("/resolve", params={"uri": "s3://data/in/puts/a b"})
    assert r.status_code == 200
    assert r.json() == {
        "mount": "inputs",
        "path": "/inputs/a b",
        "url": gw.api + "/path/inputs/a%20b",
    }
    r = c.get("/resolve", params={"uri": gw.api + "/path/local/q"})
    assert r.json()["path"] == "/local/q"
    for uri, status, code in [
        ("s3://nope/x", 404, 40402),
        ("ftp://x/y", 400, 40001),
        ("s3://data/a/../b", 400, 40003),  # mapped, then refused by the path rules
        (gw.api + "/path/nomount/x", 404, 40402),
        ("", 400, 40001),
    ]:
        r = c.get("/resolve", params={"uri": uri})
        assert (r.status_code, r.json()["errorCode"]) == (status, code), uri
    assert httpx.get(gw.api + "/resolve", params={"uri": "/local"}).status_code == 401
    _, carol = gw.gateway.users.add_user("carol")
    for uri in ("/private/x", "/local/x"):  # bob's mount is invisible to others
        r = gw.client(carol).get("/resolve", params={"uri": uri})
        assert r.status_code == (404 if uri.startswith("/private") else 200)
    tok = token(gw, "storage.read:/local/x")
    r = httpx.get(
        gw.api + "/resolve",
        params={"uri": "root://se.example.org//store/data/f"},
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert r.json()["path"] == "/xrd/f"
    with caplog.at_level(logging.DEBUG):
        secret = "girder:/x?apiurl=https://nowhere.example/api/v1&fileId=1&token=TOPSECRET"
        r = c.get("/resolve", params={"uri": secret})
    assert (r.status_code, r.json()["errorCode"]) == (404, 40402)
    assert "TOPSECRET" not in r.text
    with caplog.at_level(logging.DEBUG), Client(gw.api, apikey=gw.key) as client:
        with pytest.raises(NotFoundError):
            client.resolve(secret)
        assert "TOPSECRET" not in caplog.text  # neither the gateway's log nor httpx's
