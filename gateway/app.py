"""The ASGI application: routes under the API prefix, CARMIN errors everywhere."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gateway import api, observability, readiness, ui, webdav
from gateway.config import Settings
from gateway.errors import CarminError, E, error_response
from gateway.limits import TimeLimits
from gateway.state import Gateway
from tokens.errors import StoreError, VaultError

log = logging.getLogger("fedgate")

_HTTP_TO_SPEC = {404: E.NO_RESOURCE, 405: E.METHOD, 413: E.TOO_LARGE, 400: E.BAD_REQUEST}


async def carmin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CarminError)
    return exc.response()


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    spec = _HTTP_TO_SPEC.get(exc.status_code, E.BAD_REQUEST)
    headers = dict(exc.headers or {})
    return error_response(spec, str(exc.detail) or spec.title, headers=headers)


async def store_error(request: Request, exc: Exception) -> Response:
    # The database behind users, keys and tokens is down or failing: a temporary
    # condition the client may retry, and the store reconnects by itself.
    log.error("state database error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(E.STATE_UNAVAILABLE, "the gateway's state database is unavailable")


async def vault_error(request: Request, exc: Exception) -> Response:
    # A stored secret the master keyring cannot open (a key dropped too early, a wrong
    # key file): the operator's to fix, not the caller's, and /readyz/gateway says so.
    # The message names key ids and where keys are read from, never a key.
    log.error("master keyring error on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        E.STATE_UNAVAILABLE,
        "the gateway cannot decrypt its stored secrets (master keyring): see /readyz/gateway",
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    # The trace goes to the log (no secret is ever put in an exception message); the
    # client gets an id to quote, not the trace.
    incident = uuid.uuid4().hex[:12]
    log.error(
        "internal error %s on %s %s", incident, request.method, request.url.path, exc_info=exc
    )
    return error_response(E.INTERNAL, f"internal error (incident {incident})")


def create_app(settings: Settings, gateway: Gateway | None = None) -> Starlette:
    gw = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gw.start_background()
        yield
        if gateway is None:
            gw.close()

    routes: list[BaseRoute] = [
        *observability.routes(),  # /healthz, /readyz, /metrics
        *readiness.routes(),  # /readyz/gateway: the pods' readiness probe
        *webdav.routes(settings.webdav_prefix),  # the WebDAV door (gateway/webdav)
        *ui.routes(settings.api_prefix),  # the web page at / (gateway/ui)
        *api.routes(settings),  # CARMIN (gateway/api)
    ]
    middleware = [
        Middleware(
            TimeLimits,
            body_idle_timeout=settings.body_idle_timeout,
            body_min_rate=settings.body_min_rate,
            send_idle_timeout=settings.send_idle_timeout,
        )
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "PUT", "DELETE", "POST", "OPTIONS"],
                allow_headers=[
                    "apikey",
                    "authorization",
                    "content-type",
                    "range",
                    "if-range",
                    "x-fedgate-redirect",
                ],
                expose_headers=[
                    "Location",
                    "Content-Range",
                    "Content-Length",
                    "ETag",
                    "Accept-Ranges",
                    "Content-Disposition",
                ],
                max_age=600,
            )
        )
    app = observability.ObservedStarlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            CarminError: carmin_error,
            HTTPException: http_error,
            StoreError: store_error,
            VaultError: vault_error,
            Exception: internal_error,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.gateway = gw
    observability.attach(app, gw)
    return app
