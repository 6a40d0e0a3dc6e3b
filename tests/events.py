"""Definite events to wait for instead of sleeping: the gateway's access log writes one
line per request once the request has been handled to its end (its body read or cut,
its staging cleaned up, its answer sent or abandoned), so a test that waits for that
line knows the request is over, however slow the machine is."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ACCESS_LOGGER = "fedgate.access"


class RequestLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def finished(self, method: str, path: str) -> list[logging.LogRecord]:
        with self._changed:
            return [
                r
                for r in self.records
                if getattr(r, "method", None) == method and getattr(r, "path", None) == path
            ]

    def wait_for(
        self, method: str, path: str, count: int = 1, timeout: float = 60
    ) -> logging.LogRecord:
        """The ``count``-th finished ``method path`` request (raises after ``timeout``
        seconds: a generous bound, the event itself is what the test waits for)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                done = [
                    r
                    for r in self.records
                    if getattr(r, "method", None) == method and getattr(r, "path", None) == path
                ]
                if len(done) >= count:
                    return done[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{method} {path} did not finish in {timeout} s")
                self._changed.wait(left)


@contextmanager
def request_log() -> Iterator[RequestLog]:
    """Every request the gateways of this process finish while the block runs."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = RequestLog()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
