"""Operating fedgate: ``/healthz``, ``/readyz``, ``/metrics``, request ids and access logs.

* ``/healthz``: the process answers (no database, no backend, no authentication), for a
  liveness probe: restarting the process is the only cure for a failure here.
* ``/readyz``: the database answers and every mount's ``adapter.check()`` passes, each
  within ``readyz_timeout`` seconds (``FEDGATE_READYZ_TIMEOUT``, default 3), with a
  per-check JSON report;
  503 when anything fails. Results are shared for one second, and a check still hanging
  from an earlier probe is not started again, so probes cannot pile threads up on a
  backend that does not answer.
* ``/metrics``: Prometheus exposition (see gateway/metrics.py).

These three live at the root, not under the API prefix, and need no credential: expose
them to the cluster, not to the Internet (they name the mounts and backend errors).

The access middleware is pure ASGI (a ``BaseHTTPMiddleware`` would buffer streamed
bodies) and sits outside Starlette's error handling, so even a 500 carries its request
id. It logs one JSON line per request (request id, user, token id, execution id, method,
path, status, bytes out and in, duration, client address) with the URL *path* only:
query strings (which may carry a token in some clients) and headers are never logged.
The client address is the peer's, or the forwarded one when the peer is one of
``trusted_proxies`` (gateway/forwarded.py).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import anyio
from anyio import to_thread
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import forwarded, metrics
from gateway.datapath.scope import RECEIVED_DIRECT_KEY, SENT_DIRECT_KEY
from gateway.logs import install_record_hooks, mark_logged
from gateway.request_context import (
    EXECUTION_ID_KEY,
    TOKEN_ID_KEY,
    TOKEN_ISSUED_KEY,
    USER_KEY,
    client_var,
    request_id_var,
)
from gateway.startup import describe_error
from gateway.state import Gateway
from tokens.revocation import Revocation

access_log = logging.getLogger("fedgate.access")

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # fullmatch: "$" passes a final "\n"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:[A-Za-z_]+)?\}")
_PROBES = ("/healthz", "/readyz", "/readyz/gateway", "/metrics")


# --- probes ---------------------------------------------------------------------------


class Readiness:
    """The /readyz checks, shared by concurrent probes and cached for ``ttl`` seconds."""

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._lock = anyio.Lock()
        self._at = -1e18
        self._report: dict[str, Any] = {}
        self._hanging: set[str] = set()
        self._own_limiter: anyio.CapacityLimiter | None = None

    async def report(self, gw: Gateway) -> dict[str, Any]:
        async with self._lock:
            if time.monotonic() - self._at > self.ttl:
                self._report = await self._check_all(gw)
                self._at = time.monotonic()
            return self._report

    async def _check_all(self, gw: Gateway) -> dict[str, Any]:
        if self._own_limiter is None:
            # Probes get their own threads: a hung backend must not eat the request pool.
            self._own_limiter = anyio.CapacityLimiter(8)
        timeout = gw.settings.readyz_timeout
        results: dict[str, dict[str, Any]] = {}

        def ping_db() -> None:
            with gw.store.reading() as tx:
                tx.query_one("SELECT 1")

        async def run(key: str, fn: Any) -> None:
            results[key] = await self._timed(key, fn, timeout)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "database", ping_db)
            for mount in gw.settings.mounts:

                def check(m: Any = mount) -> None:
                    gw.mounts.adapter(m).check()

                tg.start_soon(run, "mount:" + mount.name, check)
        mounts = {m.name: results["mount:" + m.name] for m in gw.settings.mounts}
        ready = results["database"]["ok"] and all(r["ok"] for r in mounts.values())
        return {
            "status": "ready" if ready else "not ready",
            "database": results["database"],
            "mounts": mounts,
        }

    async def _timed(self, key: str, fn: Any, timeout: float) -> dict[str, Any]:
        if key in self._hanging:
            return {"ok": False, "error": "the previous check has not returned yet"}
        started = time.perf_counter()

        def tracked() -> None:
            try:
                fn()
            finally:
                self._hanging.discard(key)

        self._hanging.add(key)
        try:
            with anyio.fail_after(timeout):
                await to_thread.run_sync(tracked, abandon_on_cancel=True, limiter=self._own_limiter)
            out: dict[str, Any] = {"ok": True}
        except TimeoutError:
            out = {"ok": False, "error": f"no answer within {timeout:g} s"}
        except Exception as exc:
            out = {"ok": False, "error": describe_error(exc)}
        out["ms"] = round((time.perf_counter() - started) * 1000, 1)
        return out


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})


async def readyz(request: Request) -> Response:
    app = request.app
    readiness: Readiness = app.state.readiness
    report = await readiness.report(app.state.gateway)
    status = 200 if report["status"] == "ready" else 503
    return JSONResponse(report, status_code=status, headers={"Cache-Control": "no-store"})


async def metrics_endpoint(request: Request) -> Response:
    body = await to_thread.run_sync(metrics.render)
    return PlainTextResponse(body, media_type=metrics.CONTENT_TYPE)


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]


# --- middleware -----------------------------------------------------------------------


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if route is None or isinstance(route, Mount) or not isinstance(path, str):
        return "<unmatched>"
    root = str(scope.get("root_path", ""))
    app_root = str(scope.get("app_root_path", root))
    prefix = root[len(app_root) :] if root.startswith(app_root) else ""
    return prefix + _PARAM.sub(r"{\1}", path)


class AccessMiddleware:
    """Request id, access log line, request/byte/transfer metrics; never buffers."""

    def __init__(self, app: ASGIApp, settings_app: Starlette) -> None:
        self.app = app
        self.owner = settings_app
        self._trusted: tuple[forwarded.Network, ...] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})
        reset = request_id_var.set(rid)
        client = self._client(scope)
        reset_client = client_var.set(client)  # for the audit
        started = time.perf_counter()
        status = 0
        sent = received = 0
        mount_cache: list[str] = []
        direction = self._direction(scope)
        if direction:
            metrics.ACTIVE_TRANSFERS.labels(direction).inc()

        def mount() -> str:
            if not mount_cache:
                mount_cache.append(self._mount(scope))
            return mount_cache[0]

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                n = len(message.get("body", b""))
                if n:
                    received += n
                    metrics.BYTES_IN.labels(mount()).inc(n)
            return message

        async def send_counted(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append("X-Request-ID", rid)
            elif message["type"] == "http.response.body":
                n = len(message.get("body", b""))
                if n:
                    sent += n
                    metrics.BYTES_OUT.labels(mount()).inc(n)
            await send(message)

        try:
            await self.app(scope, receive_counted, send_counted)
        except Exception as exc:
            # Starlette's ServerErrorMiddleware has answered 500 (or cut the stream) and
            # gateway/app.py's handler has logged the trace; the exception still goes on
            # to uvicorn, which closes the connection, but must not log it a second time.
            mark_logged(exc)
            status = status or 500
            raise
        finally:
            direct = scope.get(SENT_DIRECT_KEY, 0)  # body bytes written past ASGI
            if direct:
                sent += direct
                metrics.BYTES_OUT.labels(mount()).inc(direct)
            direct = scope.get(RECEIVED_DIRECT_KEY, 0)  # and read past it
            if direct:
                received += direct
                metrics.BYTES_IN.labels(mount()).inc(direct)
            elapsed = time.perf_counter() - started
            if direction:
                metrics.ACTIVE_TRANSFERS.labels(direction).dec()
            self._record(scope, status, elapsed, mount(), rid, (sent, received), client)
            request_id_var.reset(reset)
            client_var.reset(reset_client)

    def _client(self, scope: Scope) -> str | None:
        peer = scope.get("client")
        if self._trusted is None:
            gw: Gateway = self.owner.state.gateway
            self._trusted = forwarded.networks(gw.settings.trusted_proxies)
        return forwarded.client_address(
            str(peer[0]) if peer else None, scope.get("headers", ()), self._trusted
        )

    def _record(
        self,
        scope: Scope,
        status: int,
        elapsed: float,
        mount: str,
        rid: str,
        nbytes: tuple[int, int],
        client: str | None,
    ) -> None:
        route = route_template(scope)
        method = str(scope.get("method", ""))
        metrics.REQUESTS.labels(route, method, str(status), mount).inc()
        metrics.REQUEST_SECONDS.labels(route, method).observe(elapsed)
        issued = scope.get(TOKEN_ISSUED_KEY)
        if status == 200 and method == "POST" and issued:
            metrics.TOKENS_ISSUED.labels(issued).inc()
        path = str(scope.get("path", ""))
        # Probes arrive every few seconds from every kubelet: keep them out of INFO.
        level = logging.DEBUG if path in _PROBES else logging.INFO
        if access_log.isEnabledFor(level):
            access_log.log(
                level,
                "%s %s %s",
                method,
                path,
                status,
                extra={
                    "request_id": rid,
                    "method": method,
                    "path": path,  # never the query string: some clients put tokens there
                    "status": status,
                    "bytes": nbytes[0],
                    "bytes_in": nbytes[1],
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": client,
                    "user": scope.get(USER_KEY),
                    "token_id": scope.get(TOKEN_ID_KEY),
                    "execution_id": scope.get(EXECUTION_ID_KEY),
                },
            )

    def _mount(self, scope: Scope) -> str:
        params = scope.get("path_params") or {}
        complete = params.get("completePath")
        if not isinstance(complete, str):
            return ""
        name = complete.split("/", 1)[0]
        gw: Gateway = self.owner.state.gateway
        return name if gw.settings.mount(name) is not None else ""

    def _direction(self, scope: Scope) -> str | None:
        gw: Gateway = self.owner.state.gateway
        path = str(scope.get("path", ""))
        if not path.startswith(gw.settings.api_prefix + "/path/"):
            return None
        method = scope.get("method")
        if method == "PUT":
            return "upload"
        if method == "GET" and b"action=content" in scope.get("query_string", b""):
            return "download"
        return None

    def _lifespan_send(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                metrics.mark_worker_dead()
            await send(message)

        return wrapped


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if _SANE_ID.fullmatch(text) else None
    return None


class ObservedStarlette(Starlette):
    """Starlette with the access middleware outside everything else (error handling
    included) and the /readyz state."""

    def build_middleware_stack(self) -> ASGIApp:
        return AccessMiddleware(super().build_middleware_stack(), self)


def attach(app: Starlette, gw: Gateway) -> None:
    """Per-app state of the probes, and the revocation counter on the token service."""
    app.state.readiness = Readiness()
    install_record_hooks()
    if not getattr(gw, "_fedgate_metrics_attached", False):
        gw.tokens.on_revoke(_count_revocation)
        gw._fedgate_metrics_attached = True  # type: ignore[attr-defined]


def _count_revocation(event: Revocation) -> None:
    if event.jtis:
        metrics.TOKENS_REVOKED.inc(len(event.jtis))
