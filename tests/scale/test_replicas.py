"""Three real ``fedgate serve`` replicas on one PostgreSQL and one shared folder, driven
alternately: keys, tokens, revocation, signing-key rotation, concurrent uploads, audit."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.scale.procs import Server, cli, serve, write_config

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"


@dataclass
class Cluster:
    replicas: list[Server]
    config: Path
    env: dict[str, str]
    admin: str
    data: Path

    def api(self, i: int) -> str:
        return self.replicas[i % len(self.replicas)].api


@pytest.fixture(scope="module")
def cluster(pg_schema_module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("replicas")
    data = tmp / "shared"
    data.mkdir()
    config = write_config(
        tmp / "fedgate.toml",
        tmp / "state",
        {"shared": {"type": "posix", "root": str(data)}},
        pg_schema_module,
    )
    env = {
        "FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "FEDGATE_LOG_LEVEL": "WARNING",
    }
    cli(config, env, "db", "upgrade")
    admin = cli(config, env, "user", "add", "admin", "--admin").strip()
    replicas: list[Server] = []
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(serve, config, env, tmp / f"replica{i}.log", "--graceful-timeout", "5")
                for i in range(3)
            ]
            replicas = [f.result() for f in futures]
        yield Cluster(replicas, config, env, admin, data)
    finally:
        codes = [r.stop() for r in replicas]
    assert all(c in (0, -15) for c in codes), codes


def exchange(api: str, subject: str, scope: str, **extra: str) -> str:
    r = httpx.post(
        api + "/token",
        data={
            "grant_type": EXCHANGE,
            "subject_token": subject,
            "subject_token_type": API_KEY_TYPE,
            "scope": scope,
            **extra,
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def exists(api: str, headers: dict[str, str], path: str = "shared") -> int:
    return httpx.get(f"{api}/path/{path}?action=exists", headers=headers, timeout=10).status_code


def kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def test_a_user_key_minted_by_one_works_on_all(cluster: Cluster) -> None:
    cli(cluster.config, cluster.env, "user", "add", "alice", "--password-stdin", stdin="pw-alice\n")
    r = httpx.post(
        cluster.api(1) + "/authenticate", json={"username": "alice", "password": "pw-alice"}
    )
    assert r.status_code == 200, r.text
    key = r.json()["httpHeaderValue"]
    for i in range(3):
        assert exists(cluster.api(i), {"apikey": key}) == 200
    assert exists(cluster.api(2), {"apikey": key + "x"}) == 401


def test_tokens_and_revocation_across_replicas(cluster: Cluster) -> None:
    token = exchange(cluster.api(0), cluster.admin, "storage.read:/shared")
    bearer = {"Authorization": f"Bearer {token}"}
    for i in (1, 2, 0):  # verified (and cached) by every replica
        assert exists(cluster.api(i), bearer) == 200
    revoked = httpx.post(
        cluster.api(1) + "/token/revoke", data={"token": token}, headers={"apikey": cluster.admin}
    )
    assert revoked.json() == {"revoked": 1}
    # Every replica refuses it once its revocation poll has passed (0.5 s; bounded with
    # an injected clock in tests/tokens/test_service.py): here, poll with a deadline a
    # loaded machine cannot miss, and keep the wall-clock bound out of the assertion.
    deadline = time.monotonic() + 30
    pending = {0, 1, 2}
    while pending and time.monotonic() < deadline:
        for i in sorted(pending):
            if exists(cluster.api(i), bearer) == 401:
                pending.discard(i)
        time.sleep(0.02)
    assert not pending, f"replicas {pending} still accept a revoked token"


def test_concurrent_uploads_through_different_replicas(cluster: Cluster) -> None:
    blobs = {f"up/{i:02d}.bin": os.urandom(1000 + i * 37_000) for i in range(24)}
    httpx.put(cluster.api(0) + "/path/shared/up", headers={"apikey": cluster.admin})

    def upload(item: tuple[int, tuple[str, bytes]]) -> int:
        i, (path, body) = item
        return httpx.put(
            f"{cluster.api(i)}/path/shared/{path}",
            content=body,
            headers={"apikey": cluster.admin, "Content-Type": "application/octet-stream"},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(upload, enumerate(blobs.items())))
    assert codes == [201] * len(blobs)
    for i, (path, body) in enumerate(blobs.items()):
        assert (cluster.data / path).read_bytes() == body
        got = httpx.get(
            f"{cluster.api(i + 1)}/path/shared/{path}?action=md5",
            headers={"apikey": cluster.admin},
        )
        assert got.json()["md5"] == hashlib.md5(body).hexdigest()
    listed = httpx.get(
        cluster.api(2) + "/path/shared/up?action=list", headers={"apikey": cluster.admin}
    ).json()
    assert sorted(e["platformPath"] for e in listed) == sorted(f"/shared/{p}" for p in blobs)


def test_audit_is_complete_and_readable_from_any_replica(cluster: Cluster) -> None:
    key = cli(cluster.config, cluster.env, "user", "add", "auditee").strip()
    paths = [f"audit/{i:03d}" for i in range(45)]
    with ThreadPoolExecutor(9) as pool:
        codes = list(
            pool.map(
                lambda ip: exists(cluster.api(ip[0]), {"apikey": key}, f"shared/{ip[1]}"),
                enumerate(paths),
            )
        )
    assert codes == [200] * len(paths)
    wanted = {f"/shared/{p}" for p in paths}
    deadline = time.monotonic() + 5  # each replica flushes its audit buffer every 0.5 s
    seen: list[str] = []
    while time.monotonic() < deadline:
        events = httpx.get(
            cluster.api(1) + "/audit",
            params={"user": "auditee", "limit": "1000"},
            headers={"apikey": cluster.admin},
        ).json()
        seen = [e["path"] for e in events if e.get("operation") == "exists"]
        if set(seen) >= wanted:
            break
        time.sleep(0.1)
    assert sorted(seen) == sorted(wanted)  # every request once, none twice


def test_signing_key_rotation_with_replicas_running(cluster: Cluster) -> None:
    old = exchange(cluster.api(2), cluster.admin, "storage.read:/shared")
    old_kid = kid(old)
    out = cli(cluster.config, cluster.env, "signing-key", "rotate")
    new_kid = out.strip().rsplit(" ", 1)[-1]
    assert new_kid != old_kid
    # Every replica switches to the new key (within its key refresh period)...
    deadline = time.monotonic() + 8
    switched: set[int] = set()
    fresh: dict[int, str] = {}
    while len(switched) < 3 and time.monotonic() < deadline:
        for i in set(range(3)) - switched:
            token = exchange(cluster.api(i), cluster.admin, "storage.read:/shared")
            if kid(token) == new_kid:
                switched.add(i)
                fresh[i] = token
        time.sleep(0.2)
    assert switched == {0, 1, 2}
    # ...and every token, old or new, from whichever replica, is valid on all of them.
    for token in (old, *fresh.values()):
        for i in range(3):
            assert exists(cluster.api(i), {"Authorization": f"Bearer {token}"}) == 200
    jwks = httpx.get(cluster.replicas[0].url + "/.well-known/jwks.json").json()
    assert {old_kid, new_kid} <= {k["kid"] for k in jwks["keys"]}


def test_replicas_still_healthy_and_metrics_per_replica(cluster: Cluster) -> None:
    for r in cluster.replicas:
        assert r.proc.poll() is None
        ready = httpx.get(r.url + "/readyz").json()
        assert ready["status"] == "ready"
        text = httpx.get(r.url + "/metrics").text
        assert 'fedgate_http_requests_total{method="GET"' in text
