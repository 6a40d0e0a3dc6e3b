"""What is known about the request being served, for code far from the request object.

The access middleware (gateway/observability.py) sets both variables when a request
comes in; everything that runs for that request (route handlers, worker threads started
with ``anyio.to_thread``, which copy the context) reads them, e.g. to put the request id
and the client's address in an audit row. A module of its own so that the routes can
read them without importing the middleware (which imports the routes).
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


def request_id() -> str | None:
    return request_id_var.get()


def client_address() -> str | None:
    return client_var.get()
