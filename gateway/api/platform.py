"""``/platform`` and ``/authenticate``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.api.auth import authenticate
from gateway.api.fields import Fields
from gateway.api.web import read_capped
from gateway.errors import CarminError, E
from gateway.state import Gateway

API_VERSION = "0.3.1"


def platform_json(gw: Gateway) -> dict[str, Any]:
    s = gw.settings
    return {
        "platformName": s.platform_name,
        "platformDescription": s.platform_description,
        "supportedModules": ["Data"],
        "supportedAPIVersion": API_VERSION,
        "supportedTransferProtocols": ["https", "http"],
        "APIErrorCodesAndMessages": [
            {"errorCode": spec.code, "errorMessage": spec.title} for spec in E.all()
        ],
        "unsupportedMethods": [],
        "defaultLimitListExecutions": 0,
        "email": "",
        "supportedArchiveExtensions": ["zip", "tar.gz", "tgz"],
        "defaultStudy": "",
    }


async def get_platform(request: Request) -> Response:
    return JSONResponse(platform_json(request.app.state.gateway))


async def put_platform(request: Request) -> Response:
    # VIP's client validates a key by PUT /platform: a bad key must answer 40101 and a
    # good one must not answer an error-shaped body. The platform is read-only, so a
    # valid key simply gets the platform description back.
    authenticate(request, allow_token=False)
    return JSONResponse(platform_json(request.app.state.gateway))


async def post_authenticate(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    body = await read_capped(request, 64 * 1024, "authentication body")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CarminError(E.BAD_BODY, "body must be JSON {username, password}") from None
    if not isinstance(data, dict):
        raise CarminError(E.BAD_BODY, "body must be JSON {username, password}")
    f = Fields(data)
    username = f.text("username", required=True, max_len=64)
    password = f.text("password", required=True, max_len=1024)
    assert username is not None and password is not None
    user = await to_thread.run_sync(gw.users.authenticate_password, username, password)
    if user is None:
        raise CarminError(E.BAD_CREDENTIALS, "invalid username or password")
    ttl_days = gw.settings.api_key_ttl_days
    ttl = dt.timedelta(days=ttl_days) if ttl_days > 0 else None
    key = await to_thread.run_sync(gw.users.new_api_key, user.name, "authenticate", ttl)
    return JSONResponse(
        {"httpHeader": "apikey", "httpHeaderValue": key},
        headers={"Cache-Control": "no-store"},
    )
