from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The real PostgreSQL, once for the whole session (tokens and scale tests share it)."""
    yield from postgres.server()
