"""``/readyz/gateway``: is *this gateway* able to serve, whatever its backends do.

``/readyz`` (gateway/observability.py) fails when any mount fails, which is the right
alert but the wrong readiness probe: one backend down would take every replica out of
the Service, and the mounts that work with it. This probe checks only what a request
to any mount needs from the gateway itself:

* the state database answers;
* the master keyring is loaded, follows its file (a rotation is picked up here too),
  and holds every key id the stored secrets are wrapped under (a key dropped too early
  makes the pod unready instead of answering 500 to every credential use).

It also refreshes the per-mount report of ``/readyz`` in the background, after its own
answer has gone, and publishes it as the gauge ``fedgate_mount_up{mount}``: the probe
the kubelet sends every few seconds keeps the mount health metric current, and a hung
backend never delays the probe's answer. Results are shared for ``ttl`` seconds, like
``/readyz``'s.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
from anyio import to_thread
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway import metrics
from gateway.state import Gateway
from tokens.vault import wrapped_key_usage

PATH = "/readyz/gateway"
log = logging.getLogger("fedgate.readiness")


class GatewayReadiness:
    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._at = -1e18
        self._report: dict[str, Any] = {}
        self._lock = anyio.Lock()

    async def report(self, gw: Gateway) -> dict[str, Any]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._report = await to_thread.run_sync(self._check, gw)
                self._at = time.monotonic()
            return self._report

    @staticmethod
    def _check(gw: Gateway) -> dict[str, Any]:
        started = time.perf_counter()
        database: dict[str, Any] = {"ok": True}
        keyring: dict[str, Any] = {"ok": True}
        keys = gw.master_keys
        keys.refresh()
        keyring.update(current=keys.current_id, ids=keys.ids)
        try:
            usage = wrapped_key_usage(gw.store)
        except Exception as exc:  # the store's messages carry no secret
            database = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            usage = {}
        missing = sorted(set(usage) - set(keys.ids))
        if missing:
            keyring.update(
                ok=False,
                error=f"secrets are wrapped under master key {', '.join(missing)}, "
                f"which the keyring read from {keys.source} lacks",
            )
        database["ms"] = round((time.perf_counter() - started) * 1000, 1)
        ready = database["ok"] and keyring["ok"]
        return {
            "status": "ready" if ready else "not ready",
            "database": database,
            "keyring": keyring,
        }


def record_mounts(report: dict[str, Any]) -> None:
    """``fedgate_mount_up{mount}`` from a ``/readyz`` report (1 up, 0 down)."""
    for name, result in (report.get("mounts") or {}).items():
        metrics.MOUNT_UP.labels(name).set(1 if result.get("ok") else 0)


async def _refresh_mounts(request: Request) -> None:
    app = request.app
    try:
        record_mounts(await app.state.readiness.report(app.state.gateway))
    except Exception:  # after the answer: nobody to tell but the log
        log.warning("refreshing the mount report failed", exc_info=True)


async def readyz_gateway(request: Request) -> Response:
    app = request.app
    if not hasattr(app.state, "gateway_readiness"):
        app.state.gateway_readiness = GatewayReadiness()
    report = await app.state.gateway_readiness.report(app.state.gateway)
    return JSONResponse(
        report,
        status_code=200 if report["status"] == "ready" else 503,
        headers={"Cache-Control": "no-store"},
        background=BackgroundTask(_refresh_mounts, request),
    )


def routes() -> list[BaseRoute]:
    return [Route(PATH, readyz_gateway, methods=["GET"])]
