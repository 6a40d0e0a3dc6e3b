"""Prometheus metrics of one gateway process (or of all its uvicorn workers).

With ``fedgate serve --workers N`` (N > 1) every worker answers on the same port, so a
scrape lands on one worker at random: per-process scraping cannot work. fedgate then uses
prometheus_client's multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` must be set *before*
prometheus_client is imported, which ``fedgate serve`` does for its workers (a fresh
temporary directory, or the one given in the environment, emptied at start), and
``/metrics`` sums the files of every worker. With one worker the plain in-process
registry is used (it also exports the process_* metrics: RSS, CPU, open files).

Label values are bounded: routes are templates (``/rest/path/{completePath}``), mounts
are configured mount names only, statuses are HTTP codes.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# The *_created series double the output for little use.
disable_created_metrics()  # type: ignore[no-untyped-call]
_REGISTRY = CollectorRegistry(auto_describe=True)
_MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))
if not _MULTIPROCESS:
    from prometheus_client import PlatformCollector, ProcessCollector

    ProcessCollector(registry=_REGISTRY)
    PlatformCollector(registry=_REGISTRY)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "fedgate_http_requests",
    "HTTP requests answered, by route template, method, status and mount",
    ("route", "method", "status", "mount"),
    registry=_REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "fedgate_http_request_duration_seconds",
    "Time from the request's arrival to the last byte of its response",
    ("route", "method"),
    buckets=_LATENCY_BUCKETS,
    registry=_REGISTRY,
)
BYTES_IN = Counter(
    "fedgate_http_request_bytes",
    "Request body bytes received, by mount",
    ("mount",),
    registry=_REGISTRY,
)
BYTES_OUT = Counter(
    "fedgate_http_response_bytes",
    "Response body bytes sent, by mount",
    ("mount",),
    registry=_REGISTRY,
)
BACKEND_SECONDS = Histogram(
    "fedgate_backend_call_duration_seconds",
    "Duration of calls into a storage backend (a read stream is timed until it is open)",
    ("mount", "operation"),
    buckets=_LATENCY_BUCKETS,
    registry=_REGISTRY,
)
TOKENS_ISSUED = Counter(
    "fedgate_tokens_issued",
    "Delegated credentials issued: kind=exchange (JWT, RFC 8693) or native (presigned URL)",
    ("kind",),
    registry=_REGISTRY,
)
TOKENS_REVOKED = Counter(
    "fedgate_tokens_revoked",
    "Live tokens made invalid by revocations made on this gateway",
    registry=_REGISTRY,
)
MOUNT_UP = Gauge(
    "fedgate_mount_up",
    "1 if the mount's backend passed its last check (GET /readyz, or in the background "
    "of GET /readyz/gateway), else 0",
    ("mount",),
    multiprocess_mode="livemostrecent",
    registry=_REGISTRY,
)
ACTIVE_TRANSFERS = Gauge(
    "fedgate_active_transfers",
    "Content downloads and uploads in progress, by direction",
    ("direction",),
    multiprocess_mode="livesum",
    registry=_REGISTRY,
)


def multiprocess() -> bool:
    return _MULTIPROCESS


def render() -> bytes:
    """The exposition text of this process, or of every worker in multiprocess mode."""
    if _MULTIPROCESS:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(registry))
    return bytes(generate_latest(_REGISTRY))


@contextmanager
def backend_timer(mount: str, operation: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        BACKEND_SECONDS.labels(mount, operation).observe(time.perf_counter() - started)


def prepare_multiprocess(workers: int) -> str | None:
    """Before starting N > 1 workers: a clean directory for their metric files, exported
    in the environment the workers inherit. Returns the directory to remove at exit when
    fedgate made it (None when there is nothing to clean up)."""
    if workers <= 1:
        return None
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        # Files left by a previous run would be summed with this run's.
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.unlink(stale)
        return None
    made = tempfile.mkdtemp(prefix="fedgate-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def cleanup_multiprocess(made: str | None) -> None:
    if made:
        shutil.rmtree(made, ignore_errors=True)


def mark_worker_dead() -> None:
    """A worker stops: its live gauges must stop counting in the sum."""
    if _MULTIPROCESS:
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
