"""Helpers the S3 gateway tests share: the mounts on the test bucket, and what a token
and a presigned URL say."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from gateway.config import MountConfig
from tests.server import Running

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
KEYS = {"accessKey": "testkey", "secretKey": "testsecret"}
MIB = 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


def s3_mount(name: str, prefix: str, **extra: Any) -> MountConfig:
    options = {
        "endpoint_url": ENDPOINT,
        "bucket": BUCKET,
        "prefix": prefix,
        "multipart_threshold": 5 * MIB,
        "part_size": 5 * MIB,
    }
    fields = {k: extra.pop(k) for k in ("credential_source", "redirect") if k in extra}
    return MountConfig(name=name, type="s3", options={**options, **extra}, **fields)


def claims_of(tok: str) -> dict[str, Any]:
    payload = tok.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def url_expiry(url: str) -> float:
    query = parse_qs(urlsplit(url).query)
    signed = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    return signed.replace(tzinfo=dt.UTC).timestamp() + int(query["X-Amz-Expires"][0])


def audit(gw: Running, tok: str) -> list[dict[str, Any]]:
    r = httpx.get(
        gw.api + "/audit", params={"token_id": claims_of(tok)["jti"]}, headers={"apikey": gw.key}
    )
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["event"] == "access"]
