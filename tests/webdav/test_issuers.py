"""Tokens from a trusted external issuer (a VO's IAM, here a key set served on loopback):
verified as the WLCG JWT profile says, their storage scopes the only source of rights,
on the WebDAV door and the CARMIN API alike."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from gateway.config import ConfigError, load
from gateway.issuers import JwksCache
from tests.server import Running, local_settings, running
from tests.webdav.helpers import bearer
from tests.webdav.issuer import FakeVO, serving_issuer
from tokens.external import Issuer


@pytest.fixture
def issuer() -> Iterator[FakeVO]:
    with serving_issuer() as i:
        yield i


@pytest.fixture
def gw(tmp_path: Path, issuer: FakeVO) -> Iterator[Running]:
    # No jwks_uri: the keys are found by OIDC discovery from the issuer's URL.
    trusted = Issuer(issuer=issuer.url, base_path="/local/vo", user="vo-robot")
    settings = local_settings(tmp_path, issuers=(trusted,), public_url="https://gw.example.org")
    with running(settings) as r:
        r.gateway.users.add_user("vo-robot")
        (r.data / "vo" / "in").mkdir(parents=True)
        (r.data / "vo" / "in" / "a.txt").write_bytes(b"vo input")
        (r.data / "vo" / "out").mkdir()
        (r.data / "private.txt").write_bytes(b"not the vo's")
        yield r


def dav(gw: Running, path: str) -> str:
    return f"{gw.url}/webdav/local/{path}"


def test_scope_paths_are_relative_to_the_base_path(gw: Running, issuer: FakeVO) -> None:
    h = bearer(issuer.token("openid storage.read:/in"))
    assert httpx.get(dav(gw, "vo/in/a.txt"), headers=h).content == b"vo input"
    r = httpx.get(gw.api + "/path/local/vo/in/a.txt?action=content", headers=h)
    assert r.content == b"vo input"  # the CARMIN API takes the same tokens
    assert httpx.get(dav(gw, "private.txt"), headers=h).status_code == 403
    assert httpx.get(dav(gw, "vo/out"), headers=h).status_code == 403
    # The whole VO area, and nothing above it.
    root = bearer(issuer.token("storage.read:/"))
    assert httpx.get(dav(gw, "vo/in/a.txt"), headers=root).status_code == 200
    assert httpx.get(dav(gw, "private.txt"), headers=root).status_code == 403


def test_wlcg_activities(gw: Running, issuer: FakeVO) -> None:
    modify = bearer(issuer.token("storage.modify:/out"))
    assert httpx.put(dav(gw, "vo/out/r.txt"), content=b"1", headers=modify).status_code == 201
    assert httpx.put(dav(gw, "vo/out/r.txt"), content=b"2", headers=modify).status_code == 204
    # modify does not imply read
    assert httpx.get(dav(gw, "vo/out/r.txt"), headers=modify).status_code == 403
    create = bearer(issuer.token("storage.create:/out"))
    assert httpx.put(dav(gw, "vo/out/new"), content=b"n", headers=create).status_code == 201
    assert httpx.put(dav(gw, "vo/out/r.txt"), content=b"x", headers=create).status_code == 403
    assert httpx.delete(dav(gw, "vo/out/r.txt"), headers=create).status_code == 403
    assert (gw.data / "vo" / "out" / "r.txt").read_bytes() == b"2"
    assert httpx.delete(dav(gw, "vo/out/r.txt"), headers=modify).status_code == 204
    # Authenticated, but no storage scope at all: allowed nothing.
    none = bearer(issuer.token("openid profile"))
    assert httpx.get(dav(gw, "vo/in/a.txt"), headers=none).status_code == 403


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "https://another.example.org"},
        {"aud": None},
        {"lifetime": -3600},
        {"nbf": 4_000_000_000},
        {"wlcg.ver": None},
        {"iss": "https://untrusted.example.org"},
        {"scope": "storage.read:/../../private.txt"},
    ],
    ids=["aud", "no-aud", "expired", "nbf", "no-wlcg-ver", "iss", "dotdot"],
)
def test_refused_tokens(gw: Running, issuer: FakeVO, change: dict[str, object]) -> None:
    claims = {"scope": "storage.read:/", **change}
    tok = issuer.token(**claims)  # type: ignore[arg-type]
    r = httpx.get(dav(gw, "vo/in/a.txt"), headers=bearer(tok))
    assert r.status_code == 401, r.text


def test_audiences_of_the_gateway_and_lists(gw: Running, issuer: FakeVO) -> None:
    for aud in ("https://gw.example.org", ["x", "https://gw.example.org/"]):
        tok = issuer.token("storage.read:/", aud=aud)
        assert httpx.get(dav(gw, "vo/in/a.txt"), headers=bearer(tok)).status_code == 200


def test_forged_algorithms_are_refused(gw: Running, issuer: FakeVO) -> None:
    payload = {"iss": issuer.url, "sub": "x", "aud": "https://wlcg.cern.ch/jwt/v1/any",
               "exp": 4_000_000_000, "scope": "storage.read:/", "wlcg.ver": "1.0"}  # fmt: skip
    # HS256 keyed with the issuer's public modulus, and alg=none.
    public = str(issuer.keys[-1].as_dict(private=False)["n"])
    hs = jwt.encode(
        {"alg": "HS256", "kid": issuer.keys[-1].kid}, payload, OctKey.import_key(public)
    )
    head, body, _ = hs.split(".")
    none = ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in ({"alg": "none"}, payload)
    )
    for forged in (hs, none + ".", f"{head}.{body}."):
        r = httpx.get(dav(gw, "vo/in/a.txt"), headers=bearer(forged))
        assert r.status_code == 401, forged


def test_a_rotated_key_is_fetched_once(gw: Running, issuer: FakeVO) -> None:
    ok = bearer(issuer.token("storage.read:/"))
    assert httpx.get(dav(gw, "vo/in/a.txt"), headers=ok).status_code == 200
    before = issuer.fetches
    new = issuer.rotate()
    rotated = bearer(issuer.token("storage.read:/", key=new))
    for _ in range(3):
        assert httpx.get(dav(gw, "vo/in/a.txt"), headers=rotated).status_code == 200
    assert issuer.fetches == before + 1


def test_made_up_key_ids_do_not_make_the_gateway_fetch(gw: Running, issuer: FakeVO) -> None:
    assert httpx.get(dav(gw, "vo/in/a.txt"), headers=bearer(issuer.token("storage.read:/")))
    before = issuer.fetches
    stranger = FakeVO(url=issuer.url)
    stranger.rotate()
    refused = 0
    for _ in range(20):
        r = httpx.get(dav(gw, "vo/in/a.txt"), headers=bearer(stranger.token("storage.read:/")))
        refused += r.status_code == 401
    assert refused == 20
    assert issuer.fetches <= before + 1  # one refetch per interval, not one per request


def test_jwks_cache_refetches_when_old(issuer: FakeVO) -> None:
    now = [1000.0]
    cache = JwksCache(max_age=60, min_interval=10, clock=lambda: now[0])
    trusted = Issuer(issuer.url, "/x", "u", jwks_uri=issuer.url + "/jwk")
    kid = str(issuer.keys[-1].kid)
    assert cache(trusted, kid) is not None
    assert cache(trusted, kid) is not None
    assert issuer.fetches == 1
    now[0] += 61
    assert cache(trusted, kid) is not None
    assert issuer.fetches == 2


def test_issuers_in_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "fedgate.toml"
    conf.write_text(
        '[[issuers]]\nissuer = "https://iam.example.org/"\nbase_path = "/grid/vo"\n'
        'user = "vo-robot"\njwks_uri = "https://iam.example.org/jwk"\n'
    )
    settings = load(str(conf), env={})
    assert settings.issuers == (
        Issuer("https://iam.example.org/", "/grid/vo", "vo-robot", "https://iam.example.org/jwk"),
    )
    conf.write_text('[[issuers]]\nissuer = "https://iam.example.org/"\nbase_pth = "/x"\n')
    with pytest.raises(ConfigError, match=r"base_pth.*did you mean .base_path."):
        load(str(conf), env={})
    conf.write_text('[[issuers]]\nissuer = "iam"\nbase_path = "/x"\nuser = "u"\n')
    with pytest.raises(ConfigError, match="http"):
        load(str(conf), env={})


def test_grid_clients_with_a_vo_token(gw: Running, issuer: FakeVO, tmp_path: Path) -> None:
    """davix and rclone, unchanged, with a token of the VO's issuer."""
    import os
    import shutil
    import subprocess

    tok = issuer.token("storage.read:/in storage.modify:/out")
    davix = shutil.which("davix-get")
    assert davix, "davix is installed by make test-deps"
    out = tmp_path / "a.txt"
    auth = f"Authorization: Bearer {tok}"
    subprocess.run([davix, "-H", auth, dav(gw, "vo/in/a.txt"), str(out)], check=True, timeout=60)
    assert out.read_bytes() == b"vo input"
    src = tmp_path / "result.bin"
    src.write_bytes(b"job output")
    put = shutil.which("davix-put")
    assert put
    subprocess.run(
        [put, "-H", auth, str(src), dav(gw, "vo/out/result.bin")], check=True, timeout=60
    )
    assert (gw.data / "vo" / "out" / "result.bin").read_bytes() == b"job output"
    # Outside its scope, davix fails and nothing is read or written.
    refused = subprocess.run(
        [davix, "-H", auth, dav(gw, "private.txt"), str(tmp_path / "p")], timeout=60, check=False
    )
    assert refused.returncode != 0
    assert not (tmp_path / "p").exists() or (tmp_path / "p").read_bytes() != b"not the vo's"
    rclone = shutil.which("rclone") or str(Path(__file__).parents[2] / ".venv/bin/rclone")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env.update(
        RCLONE_CONFIG="/dev/null",
        RCLONE_CONFIG_VO_TYPE="webdav",
        RCLONE_CONFIG_VO_URL=f"{gw.url}/webdav/local/vo",
        RCLONE_CONFIG_VO_VENDOR="other",
        RCLONE_CONFIG_VO_BEARER_TOKEN=tok,
    )
    listed = subprocess.run(
        [rclone, "lsjson", "vo:in"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert '"Path":"a.txt"' in listed.stdout
