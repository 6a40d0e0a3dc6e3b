"""Entry point for uvicorn workers: ``uvicorn --factory gateway.asgi:create``.

Each worker process builds its own Gateway from the same configuration (file + env)."""

from __future__ import annotations

from starlette.applications import Starlette

from gateway import config
from gateway.app import create_app
from gateway.memory_tuning import tune_malloc


def create() -> Starlette:
    tune_malloc()
    return create_app(config.load())
