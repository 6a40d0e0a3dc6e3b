from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Running, local_settings, running


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path)) as r:
        yield r
