from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway import stored_s3
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path)) as r:
        yield r


@pytest.fixture
def client(gw: Running) -> Iterator[httpx.Client]:
    with gw.client() as c:
        yield c


@pytest.fixture(scope="module")
def stored_s3_bucket() -> Iterator[None]:
    with running_testbed("seaweedfs"):
        stored_s3.ensure_bucket()
        yield


@pytest.fixture
def stored_s3_prefix(stored_s3_bucket: None) -> Iterator[str]:
    """A fresh prefix for ``stored_s3.s3_mount``, removed afterwards."""
    name = f"mk-{uuid.uuid4().hex[:10]}"
    yield name
    stored_s3.remove_prefix(name)
