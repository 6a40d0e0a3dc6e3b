"""The bytes of http/https/dav/davs gfal mounts: one streamed GET per read, one streamed
PUT per upload, with urllib3. Namespace calls (stat, list, mkdir, rename, delete,
checksums, macaroons) stay with gfal2.

Why not gfal2's file calls: over HTTP, gfal2 (davix) reads with one ranged GET per
``pread`` call, and writes by spooling the whole body to a file under $TMPDIR that it PUTs
when the handle is closed, i.e. after the client has sent its last byte. Through the
gateway that made an upload two transfers one after the other (far slower than gfal2's
own loop: docs/decisions.md) and cost the largest concurrent uploads in local disk. Here a read is
one GET streamed to the client, and an upload one PUT fed while the client sends
(adapters/streamed_body.py), in memory a few blocks per transfer.

Credentials and TLS are the mount's, as gfal2 would use them: the bearer token (user's or
service's) in an ``Authorization`` header, never in a URL; ``insecure`` skips TLS
verification; otherwise certificates are checked against /etc/grid-security/certificates
when that directory exists (the grid's CA layout, davix's default), else the system's.
Mounts with an ``x509_proxy`` keep gfal2's calls: client certificates that are RFC 3820
proxies are gfal2's business.

GET follows redirects (urllib3 drops the Authorization header when one leaves the host).
A PUT is never redirected: its body is consumed as it goes. Some SEs (dCache doors) redirect
every PUT, so a one-byte PUT (:meth:`HttpData.try_put`) is tried once per view; where it is
redirected, uploads go through gfal2 as before.

XrdHttp 5.5 answers an open-ended range (``bytes=0-``) with an empty body, so ranges are
always closed: the size comes from the stat that precedes every read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from adapters.base import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    NotFound,
    PermissionDenied,
    StorageError,
)
from adapters.gfal.options import GfalSettings
from adapters.gfal.urls import path_url

READ_BLOCK = 1024 * 1024
GRID_CA_DIR = "/etc/grid-security/certificates"
_PLAIN = {"dav": "http", "davs": "https"}


class HttpData:
    """The HTTP transfers of one credential's view of a mount (one connection pool)."""

    def __init__(self, base: str, scheme: str, token: str | None, options: GfalSettings) -> None:
        import urllib3

        self._urllib3 = urllib3
        plain = _PLAIN.get(scheme, scheme)
        self._base = plain + "://" + base.split("://", 1)[1]
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        tls: dict[str, Any] = {}
        if plain == "https":
            if options.insecure:
                tls["cert_reqs"] = "CERT_NONE"
            elif os.path.isdir(GRID_CA_DIR):
                tls["ca_cert_dir"] = GRID_CA_DIR
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=16,
            timeout=urllib3.Timeout(connect=options.connect_timeout, read=options.timeout),
            **tls,
        )

    def url(self, path: str) -> str:
        return path_url(self._base, path)

    def close(self) -> None:
        self._pool.clear()

    # --- reads ----------------------------------------------------------------------

    def read(self, path: str, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``[start, stop)`` of ``path``; raises (never ends early) if fewer come."""
        if stop <= start:
            return iter(())
        headers = {**self._auth, "Range": f"bytes={start}-{stop - 1}"}
        response = self._request("GET", path, headers=headers, preload_content=False)
        try:
            self._check(response, path, (200, 206))
            if response.status == 200 and (start != 0 or self._length(response) != stop):
                raise StorageError(f"{path}: the storage element ignored the byte range")
            if response.status == 206 and not str(
                response.headers.get("Content-Range", "")
            ).startswith(f"bytes {start}-{stop - 1}/"):
                raise StorageError(f"{path}: changed while it was being read")
        except BaseException:
            response.close()
            raise
        # Not offered for splicing (adapters/response_socket.py): measured side by side,
        # XrdHttp's GETs came slower spliced than copied (docs/decisions.md).
        return self._stream(response, path, stop - start)

    def _stream(self, response: Any, path: str, size: int) -> Iterator[bytes]:
        done = False
        try:
            left = size
            while left:
                try:
                    data = response.read(min(READ_BLOCK, left))
                except self._urllib3.exceptions.HTTPError as exc:
                    raise self._failure(exc, path) from None
                if not data:
                    raise BackendUnavailable(f"{path}: the storage element stopped sending")
                left -= len(data)
                yield data
            done = True
        finally:
            if done:
                response.release_conn()
            else:
                response.close()  # a connection with unread bytes cannot be reused

    @staticmethod
    def _length(response: Any) -> int:
        try:
            return int(response.headers.get("Content-Length", "-1"))
        except ValueError:
            return -1

    # --- writes ---------------------------------------------------------------------

    def put(self, path: str, body: Any) -> None:
        """PUT ``body`` (an iterable with a ``len``, see streamed_body.Body) at ``path``."""
        headers = {
            **self._auth,
            "Content-Length": str(len(body)),
            "Content-Type": "application/octet-stream",
        }
        response = self._request("PUT", path, headers=headers, body=body, redirect=False)
        if 300 <= response.status < 400:
            raise StorageError(f"{path}: the storage element redirected the upload")
        self._check(response, path, (200, 201, 204))

    def try_put(self, probe: str) -> bool | None:
        """Whether a PUT lands without a redirect, tried with a one-byte file at the
        hidden path ``probe`` (the caller removes it); None when the answer says
        neither (unreachable, refused: gfal2 will say why)."""
        headers = {**self._auth, "Content-Length": "1"}
        try:
            response = self._request("PUT", probe, headers=headers, body=b"p", redirect=False)
        except StorageError:
            return None
        if 200 <= response.status < 300:
            return True
        if 300 <= response.status < 400:
            return False
        return None

    # --- plumbing -------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        retries = self._urllib3.Retry(
            total=None,
            connect=2,  # nothing reached the SE: safe for every method
            read=0,
            status=0,
            other=0,
            redirect=5 if kwargs.get("redirect", True) else 0,
            raise_on_redirect=False,
        )
        try:
            return self._pool.urlopen(method, self.url(path), retries=retries, **kwargs)
        except self._urllib3.exceptions.HTTPError as exc:
            raise self._failure(exc, path) from None

    def _failure(self, exc: Exception, path: str) -> StorageError:
        # urllib3's messages carry the URL: shown only by type, and never chained.
        shown = path or "/"
        errors = self._urllib3.exceptions
        if isinstance(exc, errors.TimeoutError):
            return BackendTimeout(f"{shown}: the storage element did not answer in time")
        if isinstance(exc, errors.MaxRetryError) and isinstance(exc.reason, errors.TimeoutError):
            return BackendTimeout(f"{shown}: the storage element did not answer in time")
        return BackendUnavailable(
            f"{shown}: the storage element cannot be reached ({type(exc).__name__})"
        )

    @staticmethod
    def _check(response: Any, path: str, ok: tuple[int, ...]) -> None:
        status = response.status
        if status in ok:
            return
        shown = path or "/"
        if status == 404:
            raise NotFound(f"{shown}: no such file or directory")
        if status == 401:
            raise AuthenticationFailed(f"{shown}: the storage element rejected the credential")
        if status == 403:
            raise PermissionDenied(f"{shown}: permission denied")
        if status >= 500:
            raise BackendUnavailable(f"{shown}: the storage element failed (HTTP {status})")
        raise StorageError(f"{shown}: the storage element answered HTTP {status}")
