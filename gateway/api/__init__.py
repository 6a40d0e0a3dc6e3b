"""The CARMIN API: one module per resource, and :func:`routes`, the whole route table.

Resources: ``platform`` (``/platform``, ``/authenticate``), ``data`` (GET and DELETE
``/path``), ``upload`` (PUT ``/path``), ``token`` (the token exchange, the signing keys),
``live_tokens`` (a caller's live tokens), ``revoke``, ``native`` (native credentials),
``keys`` (API keys and storage keys), ``admin`` (``/explain``, ``/audit``), ``resolve``
and ``openapi``. What they share: ``operation`` (authorise, audit and run one storage
operation), ``auth`` (who is calling), ``paths``, ``ranges``, ``redirects``, ``archive``
(+ ``archive_limits``), ``digests``, ``fields`` (field checks) and ``web`` (JSON route
helpers). Bytes are moved by gateway/datapath; the WebDAV door (gateway/webdav) runs the
same operations with DAV framing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from gateway.api import (
    admin,
    data,
    keys,
    live_tokens,
    native,
    platform,
    resolve,
    revoke,
    token,
    upload,
)
from gateway.api.openapi import openapi_document
from gateway.config import Settings


def routes(settings: Settings) -> list[BaseRoute]:
    """Every CARMIN route: the API under ``settings.api_prefix``, and at the root the
    OpenAPI document and the signing keys (where clients look for them)."""

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(settings))

    api: list[BaseRoute] = [
        Route("/platform", platform.get_platform, methods=["GET"]),
        Route("/platform", platform.put_platform, methods=["PUT"]),
        Route("/authenticate", platform.post_authenticate, methods=["POST"]),
        Route("/path", data.get_path, methods=["GET"]),
        Route("/path/{completePath:path}", data.get_path, methods=["GET"]),
        Route("/path/{completePath:path}", upload.put_path, methods=["PUT"]),
        Route("/path/{completePath:path}", data.delete_path, methods=["DELETE"]),
        Route("/token", token.post_token, methods=["POST"]),
        Route("/token/revoke", revoke.post_revoke, methods=["POST"]),
        Route("/token/native", native.post_native, methods=["POST"]),
        Route("/user/apiKeys", keys.get_api_keys, methods=["GET"]),
        Route("/user/apiKeys/{keyId}", keys.delete_api_key, methods=["DELETE"]),
        Route("/user/externalKeys", keys.put_external_key, methods=["PUT", "POST"]),
        Route("/user/externalKeys", keys.get_external_keys, methods=["GET"]),
        Route(
            "/user/externalKeys/{storageIdentifier}", keys.delete_external_key, methods=["DELETE"]
        ),
        Route("/externalPlatforms", keys.get_external_platforms, methods=["GET"]),
        Route("/explain", admin.post_explain, methods=["POST"]),
        Route("/audit", admin.get_audit, methods=["GET"]),
        Route("/.well-known/jwks.json", token.get_jwks, methods=["GET"]),
        Route("/token", live_tokens.get_tokens, methods=["GET"]),
        Route("/resolve", resolve.get_resolve, methods=["GET"]),
    ]
    table: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/.well-known/jwks.json", token.get_jwks, methods=["GET"]),
    ]
    if settings.api_prefix:
        table.append(Route(settings.api_prefix + "/openapi.json", openapi, methods=["GET"]))
        table.append(Mount(settings.api_prefix, routes=api))
    else:
        table += api
    return table
