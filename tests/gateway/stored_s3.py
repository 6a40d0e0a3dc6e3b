"""An S3 mount (the real SeaweedFS) read with a credential the user stored, for the tests
of the master key and of backups: every read through it decrypts that credential, so a
missing or rotated key shows at once. The fresh prefix is the ``stored_s3_prefix``
fixture (tests/gateway/conftest.py)."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import httpx

from adapters.base import Credential, NotFound
from adapters.registry import create_adapter
from tokens.masterkey import MasterKeys

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
S3_KEYS = {"accessKey": "testkey", "secretKey": "testsecret"}
PAYLOAD = os.urandom(64 * 1024)


def ensure_bucket() -> None:
    adapter = create_adapter("s3", {"endpoint_url": ENDPOINT, "bucket": BUCKET})
    client = adapter.bind(Credential("access_secret", dict(S3_KEYS))).client  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):  # already there: fine
        client.create_bucket(Bucket=BUCKET)
    adapter.close()


def remove_prefix(prefix: str) -> None:
    adapter = create_adapter("s3", {"endpoint_url": ENDPOINT, "bucket": BUCKET})
    with contextlib.suppress(NotFound):
        adapter.bind(Credential("access_secret", dict(S3_KEYS))).delete(prefix)
    adapter.close()


def s3_mount(prefix: str) -> dict[str, Any]:
    return {
        "type": "s3",
        "endpoint_url": ENDPOINT,
        "bucket": BUCKET,
        "prefix": prefix,
        "credential_source": "user",  # every read decrypts the user's stored key
        "redirect": False,  # the bytes come through the gateway
    }


def key_id(text: str) -> str:
    return MasterKeys.parse(text).current_id


def store_credential_and_file(api: str, admin: str) -> None:
    body = {
        "storageIdentifier": "s3",
        "credential": {"kind": "access_secret", **S3_KEYS},
    }
    r = httpx.put(api + "/user/externalKeys", json=body, headers={"apikey": admin}, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.put(
        api + "/path/s3/data.bin",
        content=PAYLOAD,
        headers={"apikey": admin, "Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text


def read_back(api: str, admin: str) -> httpx.Response:
    return httpx.get(
        api + "/path/s3/data.bin",
        params={"action": "content"},
        headers={"apikey": admin},
        timeout=30,
    )
