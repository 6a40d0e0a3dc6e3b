"""Entry point for uvicorn workers: ``uvicorn --factory gateway.asgi:create``.

Each worker process builds its own Gateway from the same configuration (file + env)."""

from __future__ import annotations

from starlette.applications import Starlette

from gateway import config
from gateway.app import create_app


def create() -> Starlette:
    return create_app(config.load())
