"""Operator errors are 503 with a message saying what the operator must fix, never a 401 or
404 that blames the caller: a missing POSIX root, a missing or refused service credential,
a missing bucket (per-user mounts too); /readyz of a per-user mount checks what it can.
Against the real SeaweedFS (scripts/testbeds/seaweedfs.sh) and a real folder."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import Credential
from adapters.s3 import create
from gateway.config import MountConfig
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
MISSING_BUCKET = "fedgate-never-created"
KEYS = {"accessKey": "testkey", "secretKey": "testsecret"}


def s3_mount(name: str, bucket: str, source: str, **options: Any) -> MountConfig:
    return MountConfig(
        name=name,
        type="s3",
        options={"endpoint_url": ENDPOINT, "bucket": bucket, "max_attempts": 1, **options},
        credential_source=source,
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with running_testbed("seaweedfs"):
        adapter = create({"endpoint_url": ENDPOINT, "bucket": BUCKET})
        client = adapter.bind(Credential("access_secret", dict(KEYS))).client  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):  # already there: fine
            client.create_bucket(Bucket=BUCKET)
        adapter.close()
        tmp = tmp_path_factory.mktemp("operr")
        (tmp / "data").mkdir()
        (tmp / "later").mkdir()
        mounts = (
            MountConfig("local", "posix", {"root": str(tmp / "data")}),
            MountConfig("noroot", "posix", {"root": str(tmp / "never-made")}),
            MountConfig("later", "posix", {"root": str(tmp / "later")}),
            s3_mount("nosecret", BUCKET, "service"),
            s3_mount("fallback", BUCKET, "user-or-service"),
            s3_mount("wrongsecret", BUCKET, "service", access_key="testkey", secret_key="nope"),
            s3_mount("nobucket", MISSING_BUCKET, "user"),
            s3_mount("peruser", BUCKET, "user", prefix=f"op-{uuid.uuid4().hex[:8]}"),
            s3_mount("badkey", BUCKET, "user"),
        )
        with running(local_settings(tmp, mounts=mounts)) as r:
            for mount, secret in (
                ("nobucket", "testsecret"),
                ("peruser", "testsecret"),
                ("badkey", "not-the-secret"),
            ):
                body = {
                    "storageIdentifier": mount,
                    "credential": {"kind": "access_secret", "accessKey": "testkey",
                                   "secretKey": secret},
                }  # fmt: skip
                stored = httpx.put(
                    r.api + "/user/externalKeys", json=body, headers={"apikey": r.key}
                )
                assert stored.status_code == 200, stored.text
            yield r


def operator_error(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["errorCode"] == 50301
    for word in words:
        assert word in body["errorMessage"], body["errorMessage"]


def test_a_missing_posix_root_is_503_not_404(gw: Running) -> None:
    with gw.client() as c:
        for action in ("list", "exists", "properties"):
            operator_error(c.get(f"/path/noroot?action={action}"), "is not a directory")
        operator_error(c.put("/path/noroot/f.txt", content=b"x"), "is not a directory")
        # A path that is really missing in a mount that is there stays the caller's 404.
        assert c.get("/path/local/no-such-file?action=properties").status_code == 404


def test_a_posix_root_removed_while_serving_is_503(gw: Running) -> None:
    with gw.client() as c:
        assert c.put("/path/later/f.txt", content=b"x").status_code == 201
        root = Path(str(gw.settings.mount("later").options["root"]))  # type: ignore[union-attr]
        shutil.rmtree(root)  # unmounted, or deleted by mistake
        try:
            operator_error(c.get("/path/later/f.txt?action=properties"), "root folder is missing")
            operator_error(c.get("/path/later?action=list"), "root folder is missing")
        finally:
            root.mkdir()
        assert c.get("/path/later/f.txt?action=properties").status_code == 404


def test_a_missing_service_credential_is_503_naming_the_options(gw: Running) -> None:
    with gw.client() as c:
        operator_error(
            c.get("/path/nosecret?action=list"),
            "has no service credential",
            "operator must set access_key / secret_key in [mounts.nosecret]",
        )
        # user-or-service, and this user stored nothing: both ways out are named.
        operator_error(
            c.get("/path/fallback?action=list"),
            "PUT /user/externalKeys",
            "operator can set access_key / secret_key",
        )


def test_a_refused_service_credential_is_503(gw: Running) -> None:
    with gw.client() as c:
        operator_error(
            c.get("/path/wrongsecret?action=list"),
            "the storage refused the mount's service credential",
        )


def test_a_refused_user_key_is_still_the_users_401(gw: Running) -> None:
    with gw.client() as c:
        r = c.get("/path/badkey?action=list")
    assert r.status_code == 401 and r.json()["errorCode"] == 40103


def test_a_missing_bucket_is_503_in_per_user_mode(gw: Running) -> None:
    with gw.client() as c:
        operator_error(
            c.get("/path/nobucket?action=list"), f"bucket {MISSING_BUCKET!r} does not exist"
        )
        operator_error(c.put("/path/nobucket/f.txt", content=b"x"), "does not exist")


def test_readyz_of_per_user_mounts_checks_the_bucket(gw: Running) -> None:
    with gw.client() as c:  # users came by: their clients can tell whether buckets exist
        c.get("/path/nobucket?action=list")
        assert c.get("/path/peruser?action=list").status_code == 200
    report = httpx.get(gw.url + "/readyz", timeout=30).json()
    mounts = report["mounts"]
    assert mounts["peruser"]["ok"] is True
    assert mounts["nobucket"]["ok"] is False
    assert f"bucket {MISSING_BUCKET!r} does not exist" in mounts["nobucket"]["error"]
    assert mounts["noroot"]["ok"] is False
