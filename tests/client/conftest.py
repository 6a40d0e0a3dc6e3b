"""The client tests' gateway: a real uvicorn on a local folder (helpers.py has the
client's test servers and the ``fedgate`` command)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Running, local_settings, running


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path)) as r:
        yield r
