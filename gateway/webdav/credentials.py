"""Who is calling the door: the CARMIN API's two ways in, plus HTTP Basic.

Desktop file managers, cadaver and rclone know only user name + password: the password
is the user's fedgate API key (never their login password, so a stolen door password
can be revoked like any key). The user name must be the key's owner, compared in
constant time, so a key pasted under someone else's name is refused rather than
silently acting as its owner.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.auth import Principal, authenticate
from gateway.errors import CarminError, E
from gateway.request_context import USER_KEY

_CHALLENGES = (b'Basic realm="fedgate", charset="UTF-8"', b'Bearer realm="fedgate"')


def challenge(response: Response) -> None:
    """Offer both schemes on a 401 (RFC 9110: one WWW-Authenticate per scheme)."""
    response.raw_headers = [h for h in response.raw_headers if h[0] != b"www-authenticate"]
    response.raw_headers += [(b"www-authenticate", c) for c in _CHALLENGES]


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CarminError(E.BAD_CREDENTIALS, "malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user or not password:
        raise CarminError(E.BAD_CREDENTIALS, "Basic credentials need a user name and API key")
    return user, password


def authenticate_dav(request: Request) -> Principal:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return authenticate(request)
    name, key = _basic(value)
    state = request.app.state.gateway
    user = state.users.authenticate_key(key)
    if user is None or not hmac.compare_digest(user.name.encode(), name.encode()):
        raise CarminError(E.BAD_CREDENTIALS, "invalid user name or API key")
    request.scope[USER_KEY] = user.name  # for the access log line
    return Principal(user)
