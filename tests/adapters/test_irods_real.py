"""The iRODS conformance suite against a REAL iRODS server.

Runs only when IRODS_HOST, IRODS_PORT, IRODS_ZONE, IRODS_USER and IRODS_PASSWORD are set
(no iRODS can be installed on the CI machines; ``test_irods.py`` covers the same suite
against the protocol test server). Each test works in a fresh collection
``/<zone>/home/<user>/fedgate-test-<random>`` that is removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from adapters.base import Credential, Storage
from adapters.irods import IrodsStorage, create
from tests.adapters.conformance import AdapterConformance

_VARS = ("IRODS_HOST", "IRODS_PORT", "IRODS_ZONE", "IRODS_USER", "IRODS_PASSWORD")
_MISSING = [v for v in _VARS if not os.environ.get(v)]

pytestmark = [
    pytest.mark.real_irods,
    pytest.mark.skipif(
        bool(_MISSING), reason=f"no real iRODS configured (set {', '.join(_MISSING)})"
    ),
]


class TestRealIrodsConformance(AdapterConformance):
    many_entries = 600  # more than one GenQuery page (500), without thousands of uploads

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        env = os.environ
        zone, user = env["IRODS_ZONE"], env["IRODS_USER"]
        home = f"/{zone}/home/{user}"
        root = f"{home}/fedgate-test-{uuid.uuid4().hex[:12]}"
        options = {
            "host": env["IRODS_HOST"],
            "port": int(env["IRODS_PORT"]),
            "zone": zone,
            "root": home,
            "timeout": 30,
        }
        credential = Credential("user_password", {"user": user, "password": env["IRODS_PASSWORD"]})
        home_adapter = create(options)
        home_storage = home_adapter.bind(credential)
        home_storage.mkdir(root.rsplit("/", 1)[1])
        adapter = create({**options, "root": root})
        storage = adapter.bind(credential)
        assert isinstance(storage, IrodsStorage)
        try:
            yield storage
        finally:
            adapter.close()
            home_storage.delete(root.rsplit("/", 1)[1])
            home_adapter.close()
