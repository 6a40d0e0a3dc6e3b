"""Shared pieces of the token-route tests: a gateway on SQLite or on the real PostgreSQL
(scripts/testbeds/postgres.sh), users with keys, exchanges and revocations over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import postgres
from tests.server import Running, local_settings, running

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(params=["sqlite", "postgres"])
def gw_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    """A real gateway whose state is in SQLite or in a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        with running(local_settings(tmp_path)) as r:
            yield r
        return
    urls = postgres.schema_url(request.getfixturevalue("pg_server"))
    url = next(urls)
    try:
        with running(local_settings(tmp_path, database_url=url)) as r:
            yield r
    finally:
        next(urls, None)  # drops the schema


def send(url: str, body: dict[str, Any], as_json: bool, **kw: Any) -> httpx.Response:
    """POST ``body`` as JSON or as a form (every value a string, as a form has it)."""
    if as_json:
        return httpx.post(url, json=body, timeout=30, **kw)
    return httpx.post(url, data={k: str(v) for k, v in body.items()}, timeout=30, **kw)


def exchange(gw: Running, subject: str, scope: str, **extra: Any) -> httpx.Response:
    subject_type = extra.pop("subject_type", API_KEY_TYPE)
    body = {
        "grant_type": GRANT,
        "subject_token": subject,
        "subject_token_type": subject_type,
        "scope": scope,
        **extra,
    }
    return httpx.post(gw.api + "/token", data={k: str(v) for k, v in body.items()}, timeout=30)


def token(gw: Running, subject: str, scope: str = "storage.read:/local", **extra: Any) -> str:
    r = exchange(gw, subject, scope, **extra)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def narrow(gw: Running, parent: str, scope: str = "storage.read:/local", **extra: Any) -> str:
    return token(gw, parent, scope, subject_type=ACCESS, **extra)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def status(gw: Running, headers: dict[str, str], path: str = "local") -> int:
    """The status of a storage request made with ``headers`` (200 while they are good)."""
    r = httpx.get(f"{gw.api}/path/{path}?action=exists", headers=headers, timeout=30)
    return r.status_code


def jti_of(gw: Running, tok: str) -> str:
    return gw.gateway.tokens.decode(tok).jti
