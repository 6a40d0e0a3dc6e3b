"""A real PostgreSQL (scripts/testbeds/postgres.sh) and a fresh schema per use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import postgres


@pytest.fixture
def pg_schema(pg_server: str) -> Iterator[str]:
    yield from postgres.schema_url(pg_server, "scale_")


@pytest.fixture(scope="module")
def pg_schema_module(pg_server: str) -> Iterator[str]:
    yield from postgres.schema_url(pg_server, "scale_")
