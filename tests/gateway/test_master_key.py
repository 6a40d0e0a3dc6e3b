"""The master key as an operator lives with it, on real ``fedgate serve`` processes reading
through a real SeaweedFS S3 mount with a credential each user stored (credential_source
"user", so every read decrypts that credential):

* a gateway started on a state whose secrets are wrapped under a key it does not have
  refuses to start (one line naming the key id and where keys are read from), writes no
  new key, and serves everything again once the key is restored;
* ``fedgate vault rotate`` in place, and the several-replica procedure of
  docs/operations.md (new keyring in the key file, re-wrap, drop the old key), with 16
  clients reading through two workers all along: zero failed requests, no restart.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests import postgres
from tests.gateway.stored_s3 import (
    PAYLOAD,
    S3_KEYS,
    key_id,
    read_back,
    s3_mount,
    store_credential_and_file,
)
from tests.scale.procs import FEDGATE, cli, free_port, serve, write_config
from tokens.masterkey import MasterKeys

CLIENTS = 16


def refused(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``fedgate serve`` that must not start: it exits on its own."""
    res = subprocess.run(
        [FEDGATE, "--config", str(config), "serve", "--port", str(free_port())],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0, res.stderr
    return res


def assert_one_line_naming(res: subprocess.CompletedProcess[str], kid: str, *secrets: str) -> None:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    (line,) = lines
    assert "Traceback" not in line and kid in line, line
    for where in ("FEDGATE_MASTER_KEY", "FEDGATE_MASTER_KEY_FILE", "master.key"):
        assert where in line, line
    for secret in secrets:
        assert secret not in res.stdout + res.stderr


def test_missing_master_key_refuses_start_and_restoring_it_loses_nothing(
    tmp_path: Path, stored_s3_prefix: str
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "fedgate.toml", state, {"s3": s3_mount(stored_s3_prefix)})
    env: dict[str, str] = {}  # the embedded default: <state_dir>/master.key
    admin = cli(config, env, "user", "add", "admin", "--admin").strip()
    key_file = state / "master.key"
    original = key_file.read_text()
    kid = key_id(original)
    server = serve(config, env, tmp_path / "serve.log")
    try:
        store_credential_and_file(server.api, admin)
        assert read_back(server.api, admin).content == PAYLOAD
    finally:
        server.stop()
    db_before = (state / "state.db").read_bytes()
    secrets = (admin, S3_KEYS["secretKey"], original.strip())

    # 1. The key file is lost: refused, and no new key is written in its place.
    key_file.rename(tmp_path / "master.key.saved")
    res = refused(config, env)
    assert_one_line_naming(res, kid, *secrets)
    assert not key_file.exists()

    # 2. Another key in its place (a new one made by hand): refused, the file untouched.
    other = MasterKeys.generate() + "\n"
    key_file.write_text(other)
    res = refused(config, env)
    assert_one_line_naming(res, kid, *secrets, other.strip())
    assert key_id(other) in res.stderr  # what it has, so the operator sees the mismatch
    assert key_file.read_text() == other

    # 3. A wrong key given in the environment wins over the file: refused too.
    res = refused(config, {"FEDGATE_MASTER_KEY": MasterKeys.generate()})
    assert_one_line_naming(res, kid, *secrets)

    # 4. The other user commands refuse the same way (nothing written either).
    res = subprocess.run(
        [FEDGATE, "--config", str(config), "user", "list"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert_one_line_naming(res, kid, *secrets)
    # Nothing was re-wrapped or replaced while refusing (the WAL is checkpointed on close).
    assert (state / "state.db").read_bytes() == db_before

    # Restored: the stored credential opens the bucket again, and so does the admin key.
    (tmp_path / "master.key.saved").replace(key_file)
    server = serve(config, env, tmp_path / "serve.log")
    try:
        r = read_back(server.api, admin)
        assert r.status_code == 200 and r.content == PAYLOAD
        listed = httpx.get(server.api + "/user/externalKeys", headers={"apikey": admin})
        assert [k["storageIdentifier"] for k in listed.json()] == ["s3"]
    finally:
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    for secret in secrets:
        assert secret not in log


def test_empty_state_gets_a_key_and_a_state_without_secrets_may_too(tmp_path: Path) -> None:
    """A new key only on a state with no secret: users alone wrap nothing."""
    state = tmp_path / "state"
    config = write_config(tmp_path / "fedgate.toml", state, {"s3": s3_mount("unused")})
    cli(config, {}, "user", "add", "bob")
    first = (state / "master.key").read_text()
    (state / "master.key").unlink()
    cli(config, {}, "user", "list")  # still no secret stored: a new key is harmless
    assert (state / "master.key").read_text() != first


# --- rotation under load ------------------------------------------------------------


@dataclass
class Load:
    """CLIENTS threads reading the file through the gateways until stopped."""

    apis: list[str]
    key: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, api: str) -> None:
        with httpx.Client(timeout=30, headers={"apikey": self.key}) as client:
            while not self.stop.is_set():
                try:
                    r = client.get(api + "/path/s3/data.bin", params={"action": "content"})
                    good = r.status_code == 200 and r.content == PAYLOAD
                    what = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    good, what = False, repr(exc)
                with self.lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failures.append(what)

    def wait_for(self, n: int, deadline_s: float = 120) -> None:
        """Until ``n`` more reads have succeeded: the load is really running."""
        with self.lock:
            target = self.ok + n
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            with self.lock:
                if self.ok >= target:
                    return
            time.sleep(0.02)
        raise AssertionError(f"the load made no progress ({self.ok} reads, {self.failures[:3]})")


@contextlib.contextmanager
def under_load(apis: list[str], key: str) -> Iterator[Load]:
    load = Load(apis, key)
    threads = [
        threading.Thread(target=load.run, args=(apis[i % len(apis)],), daemon=True)
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        load.wait_for(CLIENTS * 2)
        yield load
        load.wait_for(CLIENTS * 2)  # reads still work after the last change
    finally:
        load.stop.set()
        for t in threads:
            t.join(30)


def vault_status(config: Path, env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """``fedgate vault status`` parsed: key id -> (role, secrets it wraps)."""
    out = cli(config, env, "vault", "status")
    rows = re.findall(r"^([0-9a-f]{8}) (current|old|MISSING)\s+(\d+) secrets$", out, re.M)
    return {kid: (role, int(n)) for kid, role, n in rows}


def replace_atomically(path: Path, text: str) -> None:
    """As a deployment tool (or the kubelet) updates a key file: aside, then renamed."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_rotate_in_place_under_load_with_two_workers(tmp_path: Path, stored_s3_prefix: str) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "fedgate.toml", state, {"s3": s3_mount(stored_s3_prefix)})
    env: dict[str, str] = {}
    admin = cli(config, env, "user", "add", "admin", "--admin").strip()
    server = serve(config, env, tmp_path / "serve.log", "--workers", "2")
    try:
        store_credential_and_file(server.api, admin)
        kids = [key_id((state / "master.key").read_text())]
        with under_load([server.api], admin) as load:
            for _ in range(3):
                res = subprocess.run(
                    [FEDGATE, "--config", str(config), "vault", "rotate"],
                    env={**os.environ, **env},
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert res.returncode == 0, res.stderr
                assert "FEDGATE_MASTER_KEY" not in res.stderr  # not the fix: nothing to set
                assert "no restart" in res.stderr
                kids.insert(0, key_id((state / "master.key").read_text()))
                assert kids[0] in res.stderr
                load.wait_for(CLIENTS)
                # A credential stored now, by a worker, is wrapped under the new key.
                store_credential_and_file(server.api, admin)
        assert load.failures == [], load.failures[:5]
        assert load.ok > CLIENTS * 10
    finally:
        server.stop()
    status = vault_status(config, env)
    assert list(status) == kids  # the new key first, the older ones after it
    assert status[kids[0]] == ("current", 1)  # the stored credential
    assert all(status[k][1] == 0 for k in kids[1:])  # nothing left under an old key
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log
    for secret in (admin, S3_KEYS["secretKey"]):
        assert secret not in log


def test_replica_procedure_of_the_docs_under_load(
    tmp_path: Path, stored_s3_prefix: str, pg_server: str
) -> None:
    """docs/operations.md, "Master key rotation with several replicas": two replicas on
    one PostgreSQL, each with its own copy of the key file (as each pod has its own
    Secret volume, updated at its own time)."""
    db = postgres.schema_url(pg_server, "mk_")
    database_url = next(db)
    try:
        _replica_procedure(tmp_path, stored_s3_prefix, database_url)
    finally:
        next(db, None)


def _replica_procedure(tmp_path: Path, stored_s3_prefix: str, database_url: str) -> None:
    old = MasterKeys.generate()
    files = [tmp_path / "a" / "master-key", tmp_path / "b" / "master-key"]
    for f in files:
        f.parent.mkdir()
        f.write_text(old + "\n")
    envs = [{"FEDGATE_MASTER_KEY_FILE": str(f)} for f in files]
    configs = [
        write_config(
            tmp_path / f"fedgate-{i}.toml",
            tmp_path / f"state-{i}",
            {"s3": s3_mount(stored_s3_prefix)},
            database_url=database_url,
        )
        for i in range(2)
    ]
    admin = cli(configs[0], envs[0], "user", "add", "admin", "--admin").strip()
    servers = [
        serve(c, e, tmp_path / f"serve-{i}.log")
        for i, (c, e) in enumerate(zip(configs, envs, strict=True))
    ]
    try:
        store_credential_and_file(servers[0].api, admin)
        new = MasterKeys.generate()
        new_keyring = tmp_path / "keyring.next"
        new_keyring.write_text(f"{new}\n{old}\n")
        with under_load([s.api for s in servers], admin) as load:
            # Re-wrapping before the gateways' key file holds the new key is refused.
            with pytest.raises(RuntimeError, match="does not hold the new key"):
                cli(configs[0], envs[0], "vault", "rotate", "--new-key-file", str(new_keyring))
            assert vault_status(configs[0], envs[0])[key_id(old)] == ("current", 1)
            # 1. every replica's key file gets new,old (the new key current)
            for f in files:
                replace_atomically(f, new_keyring.read_text())
                load.wait_for(CLIENTS)
            # 2. re-wrap, from any one place that reads the same keyring
            cli(configs[1], envs[1], "vault", "rotate", "--new-key-file", str(files[1]))
            load.wait_for(CLIENTS)
            status = vault_status(configs[0], envs[0])
            assert status[key_id(old)] == ("old", 0)
            # A credential stored now is wrapped under the new key, by either replica.
            store_credential_and_file(servers[1].api, admin)
            # 3. drop the old key from every replica's key file
            for f in files:
                replace_atomically(f, new + "\n")
                load.wait_for(CLIENTS)
        assert load.failures == [], load.failures[:5]
        assert vault_status(configs[0], envs[0]) == {
            key_id(new): ("current", status[key_id(new)][1])
        }
    finally:
        for s in servers:
            s.stop()
    for i in range(2):
        assert "Traceback" not in (tmp_path / f"serve-{i}.log").read_text()
    # On PostgreSQL too, a replica given a keyring without the key is refused, not started.
    wrong = tmp_path / "wrong-key"
    wrong.write_text(MasterKeys.generate() + "\n")
    res = refused(configs[0], {"FEDGATE_MASTER_KEY_FILE": str(wrong)})
    assert_one_line_naming(res, key_id(new), admin, S3_KEYS["secretKey"], new, old)
