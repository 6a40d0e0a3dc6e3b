"""Helpers the WebDAV door's tests share."""

from __future__ import annotations

import httpx

from tests.server import Running

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"


def door(gw: Running, mount: str = "local") -> str:
    return f"{gw.url}/webdav/{mount}"


def token(gw: Running, scope: str, **extra: object) -> str:
    form = {
        "grant_type": GRANT,
        "subject_token": gw.key,
        "subject_token_type": API_KEY_TYPE,
        "scope": scope,
    }
    form.update({k: str(v) for k, v in extra.items()})
    r = httpx.post(gw.api + "/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}
