"""HTTP session and credentials for the Girder adapter (see adapters/girder/__init__.py).

One :class:`GirderSession` per credential: a girder-client ``GirderClient`` over a pooled
``requests.Session`` (bounded timeouts, connect retries), and an :class:`Auth` that yields
a valid Girder token. API keys are exchanged for short tokens (``POST /api_key/token``,
key sent in the form body so it never appears in a URL or an access log) and cached until
a minute before they expire.

Girder treats an unknown or expired token as *anonymous* on public routes, so a token
killed on the server (its API key was deleted) shows up as "not found" rather than 401.
:meth:`GirderSession.token_is_dead` lets callers check the token on such error paths.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from adapters.base import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    PermissionDenied,
    StorageError,
)
from adapters.girder.errors import GirderError, from_status, install_hint

if TYPE_CHECKING:
    import requests

# Renew a cached token this long before Girder would expire it.
RENEW_MARGIN = dt.timedelta(seconds=60)


def parse_time(value: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires: dt.datetime


class Auth:
    """Yields a Girder token for one credential."""

    description = "credential"

    def token(self, session: GirderSession) -> str:
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget the cached token (it was rejected)."""


class ApiKeyAuth(Auth):
    description = "API key"

    def __init__(self, key: str, max_days: float) -> None:
        self._key = key
        self._max_days = max_days
        self._cached: Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ApiKeyAuth(<hidden>)"

    def token(self, session: GirderSession) -> str:
        with self._lock:
            now = dt.datetime.now(dt.UTC)
            if self._cached is None or self._cached.expires - RENEW_MARGIN <= now:
                self._cached = self._exchange(session, self._max_days)
            return self._cached.value

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None

    def _exchange(self, session: GirderSession, days: float) -> Token:
        try:
            answer = session.request(
                "POST",
                "api_key/token",
                data={"key": self._key, "duration": f"{days:.8f}"},
                authenticated=False,
            )
        except GirderError as exc:
            raise AuthenticationFailed(
                f"Girder refused the API key ({exc.message.rstrip('.')}): it may have been "
                "revoked, deactivated or deleted; store a new key for this mount"
            ) from exc
        auth = answer["authToken"]
        return Token(str(auth["token"]), parse_time(str(auth["expires"])))


class BearerAuth(Auth):
    """An existing Girder token handed to fedgate as the credential."""

    description = "Girder token"

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"

    def token(self, session: GirderSession) -> str:
        return self._token


class GirderSession:
    def __init__(
        self,
        api_url: str,
        auth: Auth,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retries: int = 2,
    ) -> None:
        try:
            import girder_client
            import requests
            from requests.adapters import HTTPAdapter
            from urllib3.util.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise install_hint() from exc
        self.api_url = api_url.rstrip("/")
        self.auth = auth
        self.timeout = (connect_timeout, read_timeout)
        self._http_error: type[Exception] = girder_client.HttpError
        self._requests = requests
        self._host = urlsplit(self.api_url).netloc
        session = requests.Session()
        # Connection failures are retried for every method (nothing reached Girder);
        # read failures only for idempotent ones; no automatic retry on 5xx for writes.
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=frozenset({"GET", "HEAD"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        self._client = girder_client.GirderClient(apiUrl=self.api_url)
        self._client._session = session

    def close(self) -> None:
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        data: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        authenticated: bool = True,
        allow_redirects: bool = True,
    ) -> Any:
        """Send one REST call; JSON answer, or the raw response when ``stream``.

        401 with a cached token → the token is renewed and the call is retried once.
        """
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            if authenticated:
                hdrs["Girder-Token"] = self.auth.token(self)
            try:
                return self._send(method, path, params, data, json, hdrs, stream, allow_redirects)
            except GirderError as exc:
                if exc.status == 401 and authenticated:
                    self.auth.invalidate()
                    if attempt == 0 and isinstance(self.auth, ApiKeyAuth):
                        continue
                    raise AuthenticationFailed(
                        f"Girder rejected the {self.auth.description}"
                    ) from exc
                if exc.status == 403:
                    raise PermissionDenied(f"Girder denied access: {exc.message}") from exc
                raise
        raise AssertionError("unreachable")

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        data: Any,
        json: Any,
        headers: dict[str, str],
        stream: bool,
        allow_redirects: bool = True,
    ) -> Any:
        req = self._requests
        try:
            # girder-client sets its own Girder-Token header from .token; ours wins.
            return self._client.sendRestRequest(
                method,
                path,
                parameters=params,
                data=data,
                json=json,
                headers=headers,
                jsonResp=not stream,
                stream=stream,
                timeout=self.timeout,
                allow_redirects=allow_redirects,
            )
        except self._http_error as exc:
            response = getattr(exc, "response", None)
            status = int(getattr(exc, "status", 0) or 0)
            raise self._translate(status, response) from None
        except req.Timeout as exc:
            raise BackendTimeout(f"Girder at {self._host} did not answer in time") from exc
        except req.ConnectionError as exc:
            raise BackendUnavailable(f"Girder at {self._host} cannot be reached") from exc
        except req.RequestException as exc:
            raise BackendUnavailable(f"Girder at {self._host}: {type(exc).__name__}") from exc

    def _translate(self, status: int, response: requests.Response | None) -> StorageError:
        message = ""
        if response is not None:
            try:
                message = str(response.json().get("message", ""))
            except ValueError:
                message = ""
        return from_status(status, message, self._host)

    def token_is_dead(self) -> bool:
        """True when Girder no longer knows our token (the cached copy is dropped)."""
        try:
            current = self._send(
                "GET",
                "token/current",
                None,
                None,
                None,
                {"Girder-Token": self.auth.token(self)},
                False,
            )
        except GirderError:
            return False
        if current:
            return False
        self.auth.invalidate()
        return True
