"""HTTP for the client: credentials only to the gateway, redirects by hand, retries.

Redirects are followed here, not by httpx, so that the credential can never leave the
gateway's origin: a request to any other (scheme, host, port) — a presigned storage URL
— goes through a second connection pool that never had the credential, carries no
cookie, and whose errors are reported by host only (a presigned URL is itself a secret).
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from gateway.client.discovery import Credential
from gateway.client.errors import FedgateError, NetworkError, from_response
from gateway.client.fetch import Body, Pool, TransportFailure
from gateway.client.uris import origin

T = TypeVar("T")
REDIRECTS = (301, 302, 303, 307, 308)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "fedgate-client/0.1"


class _RedactQueries(logging.Filter):
    """httpx logs every request URL at INFO: a presigned URL, or a ``/resolve?uri=``
    carrying VIP's Girder token, would land in an application's logs. Keep the
    parameter names, drop their values."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                a.copy_with(query=_mask(a.query)) if isinstance(a, httpx.URL) and a.query else a
                for a in record.args
            )
        return True


def _mask(query: bytes) -> bytes:
    return b"&".join(p.split(b"=", 1)[0] + b"=..." for p in query.split(b"&") if p) or b""


if not any(isinstance(f, _RedactQueries) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_RedactQueries())


class Retryable(Exception):
    """A failure worth another attempt (5xx, cut connection, short body)."""

    def __init__(self, reason: str, final: FedgateError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.final = final  # what to raise when the attempts run out


class Http:
    def __init__(
        self,
        gateway: str,
        credential: Credential,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 15.0,
        timeout: float = 60.0,
        verify: bool = True,
        redirect: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.origin = origin(self.gateway)
        self.credential = credential
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.redirect = redirect
        self.sleep = sleep
        limits = httpx.Limits(max_keepalive_connections=4, max_connections=8)
        tmo = httpx.Timeout(timeout, connect=min(timeout, 15.0))
        # One TLS configuration for both stacks: httpx's (certifi, no environment).
        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        common: dict[str, Any] = {
            "timeout": tmo,
            "verify": context,
            "follow_redirects": False,
            "limits": limits,
            "headers": {"User-Agent": USER_AGENT},
            "trust_env": False,
        }
        self._own = httpx.Client(**common)
        self._foreign = httpx.Client(**common)
        # Download bodies go over http.client (see fetch.py), with the same split: the
        # storage hosts a redirect points to never share a connection with the gateway.
        self._own_bodies = Pool(context, timeout, min(timeout, 15.0), USER_AGENT)
        self._foreign_bodies = Pool(context, timeout, min(timeout, 15.0), USER_AGENT)

    def close(self) -> None:
        self._own.close()
        self._foreign.close()
        self._own_bodies.close()
        self._foreign_bodies.close()

    def is_gateway(self, url: str) -> bool:
        return origin(url) == self.origin

    def send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        stream: bool = False,
        hops: int = 5,
    ) -> tuple[httpx.Response, bool]:
        """One request, redirects followed; (response, redirected to another origin).

        ``content`` is a factory, so that a redirected PUT can send its body again."""
        target = str(httpx.URL(url, params=params)) if params else url
        left_gateway = False
        for _ in range(hops + 1):
            h, own = self._headers_for(target, headers)
            client = self._own if own else self._foreign
            left_gateway = left_gateway or not own
            body = content() if content is not None else None
            request = client.build_request(method, target, headers=h, content=body)
            response = client.send(request, stream=stream)
            if response.status_code not in REDIRECTS or "location" not in response.headers:
                return response, left_gateway
            location = str(response.url.join(response.headers["location"]))
            response.close()
            if response.status_code == 303 or (
                response.status_code in (301, 302) and method not in ("GET", "HEAD")
            ):
                method, content = "GET", None
            target = location
        raise NetworkError(f"more than {hops} redirects")

    def _headers_for(self, url: str, headers: dict[str, str] | None) -> tuple[dict[str, str], bool]:
        h = dict(headers or {})
        own = self.is_gateway(url)
        if own:
            h.update(self.credential.headers())
            if self.redirect is not None:
                h["X-Fedgate-Redirect"] = "always" if self.redirect else "never"
        return h, own

    def stream(
        self,
        url: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        hops: int = 5,
        seen: dict[str, str] | None = None,
    ) -> tuple[Body, bool]:
        """A GET whose body is read with ``readinto`` (a download), redirects followed
        with the same credential rule as :meth:`send`; (body, redirected elsewhere).

        ``seen`` gets the gateway's own ``Repr-Digest`` when it redirects to a storage:
        the digest the bytes fetched there must have."""
        target = str(httpx.URL(url, params=params)) if params else url
        left_gateway = False
        for _ in range(hops + 1):
            h, own = self._headers_for(target, headers)
            left_gateway = left_gateway or not own
            pool = self._own_bodies if own else self._foreign_bodies
            body = pool.request("GET", target, h)
            location = body.headers.get("location")
            if body.status not in REDIRECTS or not location:
                return body, left_gateway
            digest = body.headers.get("repr-digest")
            if seen is not None and own and digest:
                seen["repr-digest"] = str(digest)
            body.read_small()
            body.close()
            target = urljoin(target, location)
        raise NetworkError(f"more than {hops} redirects")

    def retrying(
        self, what: str, attempt: Callable[[], T], progress: Callable[[], int] | None = None
    ) -> T:
        """Run ``attempt`` until it succeeds, with bounded exponential backoff (jittered)
        on connection errors, timeouts and :class:`Retryable`. With ``progress`` (e.g.
        bytes received so far), an attempt that moved it forward resets the count: a long
        transfer over a flaky link is not failed for breaks it recovered from."""
        failures = 0
        mark = progress() if progress else 0
        while True:
            try:
                return attempt()
            except (httpx.TransportError, Retryable, TransportFailure) as exc:
                if progress is not None and progress() > mark:
                    mark, failures = progress(), 0
                failures += 1
                reason = _describe(exc) if isinstance(exc, httpx.TransportError) else exc.reason
                if failures > self.retries:
                    if isinstance(exc, Retryable) and exc.final is not None:
                        raise exc.final from None
                    raise NetworkError(
                        f"{what}: {reason} (gave up after {failures} attempts)"
                    ) from None
                self.pause(failures)

    def pause(self, failures: int) -> None:
        delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
        self.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto

    def check(self, response: httpx.Response | Body, what: str) -> None:
        """Raise the typed error of a gateway error answer; Retryable for 5xx/429."""
        status = response.status if isinstance(response, Body) else response.status_code
        if status < 400:
            return
        try:
            if isinstance(response, Body):
                body = json.loads(response.read_small())
            else:
                response.read()
                body = response.json()
        except Exception:
            body = None
        error = from_response(status, body, what)
        if status in RETRY_STATUS:
            raise Retryable(error.message, error)
        raise error

    def json(self, method: str, url: str, what: str, params: dict[str, str]) -> Any:
        def attempt() -> Any:
            response, _ = self.send(method, url, params=params)
            self.check(response, what)
            try:
                return response.json()
            except ValueError:
                raise Retryable(f"{what}: the gateway's answer is not JSON") from None

        return self.retrying(what, attempt)


def _describe(exc: httpx.TransportError) -> str:
    """A transport error without the URL (a presigned URL carries its signature)."""
    host = ""
    with contextlib.suppress(RuntimeError):  # no request attached
        host = exc.request.url.host
    kind = type(exc).__name__
    text = str(exc).split(" for url", 1)[0]
    if "?" in text or "://" in text:
        text = ""
    return f"{kind}{' ' + text if text else ''}{' (' + host + ')' if host else ''}"
