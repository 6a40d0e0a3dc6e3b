"""What is known about the request being served, for code far from the request object.

The access middleware (gateway/observability.py) sets both variables when a request
comes in; everything that runs for that request (route handlers, worker threads started
with ``anyio.to_thread``, which copy the context) reads them, e.g. to put the request id
and the client's address in an audit row. The routes also leave what the access line
and the metrics need in the ASGI scope, under the keys below. A module of its own so
that the routes and the middleware need not import each other.
"""

from __future__ import annotations

import contextvars

# The request's id: its X-Request-ID if sane, else generated; echoed in the response.
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fedgate_request_id", default=None
)
# The client's address as the access log shows it (forwarded headers are honoured only
# from trusted proxies: that is decided where it is set).
client_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fedgate_client", default=None
)

# Set in the scope by gateway/api/auth.py (and the WebDAV door) once a caller is known.
USER_KEY = "fedgate.user"
TOKEN_ID_KEY = "fedgate.token_id"  # noqa: S105 - a scope key; the jti, when the caller used a token
EXECUTION_ID_KEY = "fedgate.execution_id"  # and the execution it was issued for
# Set by a route that issues a token: "exchange" (POST /token) or "native" (POST
# /token/native); counted in fedgate_tokens_issued_total when the answer is a 200.
TOKEN_ISSUED_KEY = "fedgate.token_issued"  # noqa: S105 - a scope key


def request_id() -> str | None:
    return request_id_var.get()


def client_address() -> str | None:
    return client_var.get()
