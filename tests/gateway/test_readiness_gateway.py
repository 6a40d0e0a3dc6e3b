"""``/readyz/gateway``, the pods' readiness probe: ready while a backend is down (that
mount's health is ``fedgate_mount_up{mount}`` and ``/readyz``'s report), not ready when
the keyring lacks a key the stored secrets need; on a real uvicorn."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import MountConfig
from tests.server import local_settings, running
from tokens.masterkey import MasterKeys
from tokens.vault import StoredCredential

K1, K2 = MasterKeys.generate(), MasterKeys.generate()


def mount_up(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {
        s.labels["mount"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "fedgate_mount_up"
    }


def wait_for_mount_up(url: str, expected: dict[str, float], deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        httpx.get(url + "/readyz/gateway", timeout=10)  # what the kubelet sends
        seen = mount_up(url)
        if seen == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"fedgate_mount_up is {seen}, expected {expected}")


def test_ready_with_a_backend_down_unready_without_a_needed_key(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    data = tmp_path / "data"
    data.mkdir()
    mounts = (
        MountConfig(name="local", type="posix", options={"root": str(data)}),
        MountConfig(
            name="down",
            type="s3",
            options={
                "endpoint_url": f"http://127.0.0.1:{dead}",
                "bucket": "b",
                "max_attempts": 1,
                "connect_timeout": 1,
                "access_key": "a",
                "secret_key": "b",
            },
            credential_source="service",
        ),
        MountConfig(  # every request decrypts the caller's credential before anything
            name="peruser",
            type="s3",
            options={
                "endpoint_url": f"http://127.0.0.1:{dead}",
                "bucket": "b",
                "max_attempts": 1,
                "connect_timeout": 1,
            },
            credential_source="user",
        ),
    )
    key_file = tmp_path / "master-key"
    key_file.write_text(K1 + "\n")
    env = {"FEDGATE_MASTER_KEY_FILE": str(key_file)}
    with running(local_settings(tmp_path, mounts=mounts), env=env) as gw:
        assert httpx.get(gw.url + "/readyz", timeout=30).status_code == 503  # the alert
        r = httpx.get(gw.url + "/readyz/gateway", timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and body["database"]["ok"]
        assert body["keyring"]["current"] == MasterKeys.parse(K1).current_id
        assert K1 not in r.text
        wait_for_mount_up(gw.url, {"local": 1.0, "down": 0.0, "peruser": 0.0})

        stored = StoredCredential("access_secret", {"accessKey": "a", "secretKey": "s3cr3t-v"})
        gw.gateway.vault.put("admin", "peruser", stored)
        listing = gw.api + "/path/peruser?action=list"
        headers = {"apikey": gw.key}
        assert httpx.get(listing, headers=headers).json()["errorCode"] == 50301  # unreachable
        # The key file now lacks the key the credential is wrapped under.
        tmp = tmp_path / "next"
        tmp.write_text(K2 + "\n")
        tmp.replace(key_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = httpx.get(gw.url + "/readyz/gateway", timeout=30)
            if r.status_code == 503:
                break
            time.sleep(0.1)
        assert r.status_code == 503, r.text
        keyring = r.json()["keyring"]
        assert not keyring["ok"] and MasterKeys.parse(K1).current_id in keyring["error"]
        assert K1 not in r.text and K2 not in r.text
        # A request needing the credential: 503, the operator's error, not a 500.
        r = httpx.get(listing, headers=headers)
        assert r.status_code == 503 and r.json()["errorCode"] == 50302, r.text
        assert "master keyring" in r.text and "s3cr3t-v" not in r.text
        # Restored (the old key after the new one): ready again, the credential readable.
        tmp.write_text(f"{K2}\n{K1}\n")
        tmp.replace(key_file)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = httpx.get(gw.url + "/readyz/gateway", timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert gw.gateway.vault.get("admin", "peruser") == stored
        assert httpx.get(listing, headers=headers).json()["errorCode"] == 50301
