"""Logging: one JSON object per line, so logs can be shipped and queried as they are.

``configure_logging`` must run in every process that serves: with ``workers > 1``
uvicorn *spawns* its workers, fresh interpreters that inherit no logging set-up, so
``gateway.asgi.create`` (run in each worker) calls it as ``fedgate serve`` does in the
supervisor. A worker without it writes nothing below WARNING and prints plain-text
tracebacks through Python's last-resort handler.

Each record carries the process id (which worker wrote it) and every ``extra=`` field
its caller gave (the access line's request id, user, status...). An error's traceback is
one field of its one record (``traceback``); an exception the application has already
logged (``mark_logged``) is not logged again when uvicorn sees it propagate.

Messages never carry secrets: credentials, keys and tokens are never formatted into a
log call anywhere in fedgate (tests scan captured logs to make sure)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from typing import Any

from gateway.request_context import request_id_var

# The attributes every LogRecord has: anything else on a record came from ``extra=``.
# uvicorn adds color_message, an ANSI-coloured copy of the message.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}
_LOGGED = "_fedgate_logged"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and value is not None:
                out[key] = value
        rid = getattr(record, "_request_id", None)
        if rid is not None and "request_id" not in out:
            out["request_id"] = rid
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def mark_logged(exc: BaseException) -> None:
    """Note that ``exc`` and its traceback are in the log already."""
    with contextlib.suppress(AttributeError):  # an exception class with __slots__
        setattr(exc, _LOGGED, True)


class _NotTwice(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" for an exception already logged
    (gateway/app.py's handler logs it with its incident id, then Starlette re-raises)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and getattr(exc, _LOGGED, False))


_NOT_TWICE = _NotTwice()


def install_record_hooks() -> None:
    """Every record made while a request is served carries its ``request_id``, and
    uvicorn does not log an exception already logged (idempotent; gateway/observability.py
    calls it for every app)."""
    for name in ("uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        if _NOT_TWICE not in logger.filters:
            logger.addFilter(_NOT_TWICE)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_fedgate", False):

        def with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            # Not ``request_id`` itself: an ``extra=`` of that name (the access line's)
            # must not collide with it.
            record._request_id = request_id_var.get()  # type: ignore[attr-defined]
            return record

        with_request_id._fedgate = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(with_request_id)


def configure_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("FEDGATE_LOG_LEVEL", "INFO")).upper())
    install_record_hooks()
