"""Entry point for uvicorn workers: ``uvicorn --factory gateway.asgi:create``.

Each worker process builds its own Gateway from the same configuration (file + env), and
sets up its own logging: uvicorn spawns workers as fresh interpreters, which inherit
nothing of the supervisor's (gateway/logs.py)."""

from __future__ import annotations

from starlette.applications import Starlette

from gateway import config
from gateway.app import create_app
from gateway.datapath.memory_tuning import tune_malloc
from gateway.logs import configure_logging


def create() -> Starlette:
    tune_malloc()
    settings = config.load()
    configure_logging(settings.log_level)
    return create_app(settings)
