"""Idempotent bootstrap of the Girder testbed (run with the testbed venv's python).

Creates, if missing: the admin (first user), a filesystem assetstore, the normal user
``alice`` with an API key, and the collection ``fedgate-tests`` where alice is admin. Writes
the facts tests need to ``env.json`` (mode 0600: it holds local test keys).
"""

from __future__ import annotations

import argparse
import json
import os

import girder_client

ADMIN = ("admin", "admin@example.org", "fedgate-admin-pw1")
ALICE = ("alice", "alice@example.org", "fedgate-alice-pw1")
COLLECTION = "fedgate-tests"
KEY_NAME = "fedgate-tests"


def login_or_create(api: str, login: str, email: str, password: str) -> girder_client.GirderClient:
    gc = girder_client.GirderClient(apiUrl=api)
    try:
        gc.authenticate(login, password)
    except girder_client.AuthenticationError:
        gc.post(
            "user",
            parameters={
                "login": login,
                "email": email,
                "firstName": login,
                "lastName": "Test",
                "password": password,
            },
        )
        gc.authenticate(login, password)
    return gc


def api_key(gc: girder_client.GirderClient) -> dict[str, str]:
    for key in gc.get("api_key", parameters={"limit": 0}):
        if key["name"] == KEY_NAME and key.get("active", True):
            return {"key_id": key["_id"], "api_key": key["key"]}
    key = gc.post("api_key", parameters={"name": KEY_NAME, "active": "true"})
    return {"key_id": key["_id"], "api_key": key["key"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--api-url", required=True)
    p.add_argument("--assets", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    admin = login_or_create(a.api_url, *ADMIN)
    if not admin.get("assetstore"):
        admin.post(
            "assetstore",
            parameters={"name": "fs", "type": 0, "root": os.path.abspath(a.assets)},
        )
    alice = login_or_create(a.api_url, *ALICE)
    alice_id = alice.get("user/me")["_id"]

    found = [c for c in admin.get("collection", parameters={"limit": 0}) if c["name"] == COLLECTION]
    coll = found[0] if found else admin.createCollection(COLLECTION, public=False)
    access = admin.get(f"collection/{coll['_id']}/access")
    if not any(u["id"] == alice_id and u["level"] == 2 for u in access["users"]):
        access["users"].append({"id": alice_id, "level": 2})
        admin.put(
            f"collection/{coll['_id']}/access",
            parameters={"access": json.dumps(access), "public": "false"},
        )

    facts = {
        "api_url": a.api_url,
        "collection": COLLECTION,
        "collection_id": coll["_id"],
        "admin": {"login": ADMIN[0], "password": ADMIN[2], **api_key(admin)},
        "alice": {"login": ALICE[0], "password": ALICE[2], "id": alice_id, **api_key(alice)},
    }
    fd = os.open(a.out + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(facts, f, indent=2)
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
