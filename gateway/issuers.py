"""The signing keys of trusted external issuers (tokens/external.py), fetched over HTTP
and cached.

Keys are fetched once when the gateway starts (in the background), then only when a token
names a ``kid`` the cached set lacks (the issuer rotated its keys) or the set is older
than ``max_age`` — never per request. A refetch for an unknown ``kid`` happens at most
once per ``min_interval`` per issuer (the first one at once, so a real rotation is seen
by its first token), so tokens with made-up key ids cost an attacker's request nothing
but a dictionary lookup. A failed fetch keeps the last good set.

Where ``jwks_uri`` is not configured it comes from OIDC discovery
(``<issuer>/.well-known/openid-configuration``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tokens.external import Issuer

log = logging.getLogger("fedgate")
MAX_DOCUMENT = 1024 * 1024  # a key set or discovery document is a few KiB


@dataclass
class _Cached:
    keys: KeySet
    kids: frozenset[str]
    fetched: float


class JwksCache:
    def __init__(
        self,
        timeout: float = 3.0,
        min_interval: float = 30.0,
        max_age: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout
        self._min_interval = min_interval
        self._max_age = max_age
        self._clock = clock
        self._sets: dict[str, _Cached] = {}
        self._tried: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, issuer: Issuer, kid: str) -> KeySet | None:
        cached = self._sets.get(issuer.issuer)
        now = self._clock()
        if cached is not None and kid in cached.kids and now - cached.fetched < self._max_age:
            return cached.keys
        with self._lock:
            cached = self._sets.get(issuer.issuer)
            if cached is not None and kid in cached.kids and now - cached.fetched < self._max_age:
                return cached.keys  # another thread fetched it meanwhile
            last = self._tried.get(issuer.issuer)
            if last is None or now - last >= self._min_interval:
                self._tried[issuer.issuer] = now
                self.refresh(issuer)
        cached = self._sets.get(issuer.issuer)
        return cached.keys if cached is not None else None

    def refresh(self, issuer: Issuer) -> None:
        try:
            keys = KeySet.import_key_set(self._get_json(self._jwks_uri(issuer)))  # type: ignore[arg-type]
        except (httpx.HTTPError, ValueError, JoseError, KeyError, TypeError) as exc:
            # The reason only: an issuer's URL is configuration, never a secret.
            log.warning("issuer %s: cannot fetch its signing keys: %s", issuer.issuer, exc)
            return
        kids = frozenset(str(k.kid) for k in keys.keys if k.kid)
        self._sets[issuer.issuer] = _Cached(keys, kids, self._clock())

    def prefetch(self, issuers: Sequence[Issuer]) -> None:
        """Fetch every issuer's keys in a background thread (start-up)."""
        if not issuers:
            return

        def run() -> None:
            for issuer in issuers:
                # Under the lock: a token arriving meanwhile waits for this fetch
                # rather than finding it "just tried" and no keys.
                with self._lock:
                    self.refresh(issuer)

        threading.Thread(target=run, name="fedgate-jwks", daemon=True).start()

    def _jwks_uri(self, issuer: Issuer) -> str:
        if issuer.jwks_uri:
            return issuer.jwks_uri
        discovery = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
        uri = self._get_json(discovery).get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            raise ValueError("the discovery document names no jwks_uri")
        return uri

    def _get_json(self, url: str) -> dict[str, object]:
        with (
            httpx.Client(timeout=self._timeout, follow_redirects=False) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as r,
        ):
            r.raise_for_status()
            body = bytearray()
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT:
                    raise ValueError(f"document larger than {MAX_DOCUMENT} bytes")
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc
