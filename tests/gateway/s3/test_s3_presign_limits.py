"""Presigned S3 URLs never give a job more than its token, tried as an attacker would
against the real SeaweedFS (scripts/testbeds/seaweedfs.sh): what the storage itself
accepts with each URL fedgate hands out (307 redirects and ``/token/native``).

- a URL lives ``presign_lifetime`` seconds (default 300), whatever the token's lifetime,
  and the storage refuses it afterwards, revoked token or not;
- a token with a use count never gets a reusable URL: its GET is streamed, one use each;
- a create-only token cannot replace an existing object through any URL it gets: its
  upload URLs have ``If-None-Match: *`` signed in, which SeaweedFS enforces.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.gateway.helpers import bearer, is_error, token
from tests.gateway.s3.helpers import OCTET, audit, s3_mount
from tests.server import Running, local_settings, running

SHORT = 3  # presign_lifetime of the second gateway, in seconds


@pytest.fixture(scope="module")
def short_gw(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A gateway whose presigned URLs live SHORT seconds, on the same bucket and prefix."""
    service = {"access_key": "testkey", "secret_key": "testsecret"}
    settings = local_settings(
        tmp_path_factory.mktemp("s3short"),
        mounts=(s3_mount("s3", prefix, credential_source="service", **service),),
        presign_lifetime=SHORT,
    )
    with running(settings) as r:
        yield r


def _expires_param(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


def _until_refused(url: str, deadline_s: float) -> int:
    """Poll the URL until the storage refuses it; the status it then answers."""
    end = time.monotonic() + deadline_s
    while True:
        status = httpx.get(url).status_code
        if status != 200 or time.monotonic() > end:
            return status
        time.sleep(0.5)


def test_redirect_and_native_urls_live_minutes_not_the_tokens_hour(
    gw: Running,
    client: httpx.Client,
    folder: str,
) -> None:
    client.put(f"/path/s3/{folder}/in.dat", content=b"input", headers=OCTET)
    tok = token(gw, f"storage.read:/s3/{folder}", lifetime=3600)
    r = httpx.get(f"{gw.api}/path/s3/{folder}/in.dat?action=content", headers=bearer(tok))
    assert r.status_code == 307
    native = httpx.post(
        gw.api + "/token/native", json={"path": f"/s3/{folder}/in.dat"}, headers=bearer(tok)
    )
    assert native.status_code == 200, native.text
    for url in (r.headers["location"], native.json()["value"]):
        assert _expires_param(url) <= gw.settings.presign_lifetime == 300
        assert httpx.get(url).content == b"input"
    assert native.json()["expiresAt"] <= time.time() + 300
    # Handing the URL out is audited once, with the kind of credential it is.
    jti = gw.gateway.tokens.decode(tok).jti
    events = httpx.get(
        gw.api + "/audit", params={"token_id": jti}, headers={"apikey": gw.key}
    ).json()
    [granted] = [e for e in events if e["event"] == "native"]
    assert (granted["result"], granted["operation"]) == ("ok", "content")
    assert granted["path"] == f"/s3/{folder}/in.dat" and granted["detail"] == "url"
    # A token that dies sooner shortens the URL too.
    brief = token(gw, f"storage.read:/s3/{folder}", lifetime=60)
    r = httpx.get(f"{gw.api}/path/s3/{folder}/in.dat?action=content", headers=bearer(brief))
    assert _expires_param(r.headers["location"]) <= 60


def test_a_url_dies_after_its_lifetime_even_after_revocation(
    short_gw: Running,
    folder: str,
) -> None:
    put = httpx.put(
        f"{short_gw.api}/path/s3/{folder}/in.dat",
        content=b"input",
        headers={"apikey": short_gw.key, **OCTET},
    )
    assert put.status_code == 201, put.text
    tok = token(short_gw, f"storage.read:/s3/{folder}", lifetime=3600)
    r = httpx.get(f"{short_gw.api}/path/s3/{folder}/in.dat?action=content", headers=bearer(tok))
    assert r.status_code == 307
    url = r.headers["location"]
    assert httpx.get(url).content == b"input"
    revoked = httpx.post(short_gw.api + "/token/revoke", data={"token": tok})
    assert revoked.status_code == 200
    # Nothing can recall a presigned URL: the revoked token's URL still works until its
    # short lifetime ends, then SeaweedFS refuses it.
    assert _until_refused(url, SHORT + 30) == 403
    again = httpx.get(f"{short_gw.api}/path/s3/{folder}/in.dat?action=content", headers=bearer(tok))
    is_error(again, 401, 40102)


def test_a_counted_token_never_gets_a_reusable_url(
    gw: Running,
    client: httpx.Client,
    folder: str,
) -> None:
    client.put(f"/path/s3/{folder}/once.dat", content=b"once", headers=OCTET)
    tok = token(gw, f"storage.read:/s3/{folder} storage.modify:/s3/{folder}/out", uses=3)
    url = f"{gw.api}/path/s3/{folder}/once.dat?action=content"
    # Asked for a redirect or not, a counted token's GET is streamed (no URL to reuse).
    for headers in ({}, {"X-Fedgate-Redirect": "always"}):
        got = httpx.get(url, headers={**bearer(tok), **headers})
        assert got.status_code == 200 and got.content == b"once"
        assert "location" not in got.headers
    native = httpx.post(
        gw.api + "/token/native", json={"path": f"/s3/{folder}/once.dat"}, headers=bearer(tok)
    )
    is_error(native, 403, 40303)
    assert "use count" in native.json()["errorMessage"] and "X-Amz" not in native.text
    jti = gw.gateway.tokens.decode(tok).jti
    events = httpx.get(
        gw.api + "/audit", params={"token_id": jti}, headers={"apikey": gw.key}
    ).json()
    [denied] = [e for e in events if e["event"] == "native"]
    assert denied["result"] == "denied" and "use count" in denied["reason"]
    # Three uses, three requests: the token is spent, and no URL outlives it.
    is_error(httpx.get(url, headers=bearer(tok)), 401, 40102)
    assert [e["result"] for e in audit(gw, tok)][:2] == ["ok", "ok"]
    # uses=1: one streamed GET, then nothing; no URL was ever handed out.
    once = token(gw, f"storage.read:/s3/{folder}", uses=1)
    got = httpx.get(url, headers={**bearer(once), "X-Fedgate-Redirect": "always"})
    assert got.status_code == 200 and "location" not in got.headers
    is_error(httpx.get(url, headers=bearer(once)), 401, 40102)
    # A counted token may replace files: no reusable upload URL either, only one that
    # creates once (the storage refuses it afterwards).
    tok = token(gw, f"storage.modify:/s3/{folder}/out", uses=2)
    client.put(f"/path/s3/{folder}/out")
    put = httpx.put(f"{gw.api}/path/s3/{folder}/out/r.dat?redirect=true", headers=bearer(tok))
    is_error(put, 403, 40303)
    put = httpx.put(
        f"{gw.api}/path/s3/{folder}/out/r.dat?redirect=true",
        headers={**bearer(tok), "If-None-Match": "*"},
    )
    assert put.status_code == 307, put.text
    location, condition = put.headers["location"], {"If-None-Match": "*"}
    assert httpx.put(location, content=b"1", headers=condition).status_code == 200
    assert httpx.put(location, content=b"2", headers=condition).status_code == 412
    assert httpx.put(location, content=b"3").status_code == 403
    assert client.get(f"/path/s3/{folder}/out/r.dat?action=content").content == b"1"


def test_a_create_only_token_cannot_replace_an_object_through_any_url(
    gw: Running,
    client: httpx.Client,
    folder: str,
) -> None:
    client.put(f"/path/s3/{folder}/out")
    client.put(f"/path/s3/{folder}/out/old.dat", content=b"precious", headers=OCTET)
    tok = token(gw, f"storage.create:/s3/{folder}/out")
    native = gw.api + "/token/native"
    # 1. Existing objects: no URL at all, native or redirect.
    for r in (
        httpx.post(
            native, json={"path": f"/s3/{folder}/out/old.dat", "method": "PUT"}, headers=bearer(tok)
        ),
        httpx.put(
            f"{gw.api}/path/s3/{folder}/out/old.dat?redirect=true",
            headers={**bearer(tok), "If-None-Match": "*"},
        ),
    ):
        is_error(r, 403, 40301)
    # 2. A URL for a new object, native and redirected: the condition is signed in.
    got = httpx.post(
        native, json={"path": f"/s3/{folder}/out/r.dat", "method": "PUT"}, headers=bearer(tok)
    )
    assert got.status_code == 200, got.text
    native_url, headers = got.json()["value"], got.json()["headers"]
    assert headers == {"If-None-Match": "*"}
    redirect = httpx.put(
        f"{gw.api}/path/s3/{folder}/out/r.dat?redirect=true",
        headers={**bearer(tok), "If-None-Match": "*"},
    )
    assert redirect.status_code == 307
    for url in (native_url, redirect.headers["location"]):
        # Dropping the header breaks the signature; another value too.
        assert httpx.put(url, content=b"evil").status_code == 403
        assert httpx.put(url, content=b"evil", headers={"If-None-Match": "x"}).status_code == 403
    # Someone else creates the object first: the job's URLs cannot replace it.
    client.put(f"/path/s3/{folder}/out/r.dat", content=b"theirs", headers=OCTET)
    for url in (native_url, redirect.headers["location"]):
        assert httpx.put(url, content=b"evil", headers=headers).status_code == 412
    assert client.get(f"/path/s3/{folder}/out/r.dat?action=content").content == b"theirs"
    # 3. A URL that created its object cannot replace it afterwards.
    got = httpx.post(
        native, json={"path": f"/s3/{folder}/out/n.dat", "method": "PUT"}, headers=bearer(tok)
    )
    url = got.json()["value"]
    assert httpx.put(url, content=b"first", headers=headers).status_code == 200
    assert httpx.put(url, content=b"second", headers=headers).status_code == 412
    assert client.get(f"/path/s3/{folder}/out/n.dat?action=content").content == b"first"
    assert client.get(f"/path/s3/{folder}/out/old.dat?action=content").content == b"precious"
