"""The gfal adapter: one per mount, a view per credential (see adapters/gfal/__init__.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import (
    AuthenticationFailed,
    BackendUnavailable,
    Credential,
    Storage,
    StorageError,
)
from adapters.common import ViewCache, credential_key
from adapters.gfal.options import GfalSettings
from adapters.gfal.storage import GfalStorage
from adapters.gfal.urls import normalise_base_url

MAX_BOUND = 64  # credentials whose views (context pools) are kept


class GfalAdapter:
    type_name = "gfal"
    uses_credentials = True  # the requests act with a user's or the mount's credential

    def __init__(self, options: GfalSettings) -> None:
        normalise_base_url(options.base_url)  # fail at configuration time
        self.options = options
        # One view (its gfal2 contexts and connection pools) per credential. An evicted
        # view still works for requests holding it; it just stops keeping idle contexts.
        self._bound: ViewCache[GfalStorage] = ViewCache(GfalStorage.close, max_entries=MAX_BOUND)

    def _storage(self, token: str | None) -> GfalStorage:
        return self._bound.get(
            credential_key(token or ""), lambda: GfalStorage(self.options, token)
        )

    def bind(self, credential: Credential | None) -> Storage:
        o = self.options
        if credential is None:
            if o.token or o.x509_proxy or o.anonymous:
                return self._storage(o.token)
            raise AuthenticationFailed("no credential for this mount")
        if credential.kind != "bearer":
            raise AuthenticationFailed(
                f"a {credential.kind!r} credential cannot be used on a gfal mount (use 'bearer')"
            )
        token = (credential.fields.get("token") or "").strip()
        if not token:
            raise AuthenticationFailed("the bearer credential has no token")
        return self._storage(token)

    def check(self) -> None:
        try:
            self._storage(self.options.token).stat("")
        except BackendUnavailable:
            raise
        except StorageError:
            pass  # it answered: reachable, whatever it thinks of our credential

    def close(self) -> None:
        self._bound.close_all()


def create(options: Mapping[str, Any]) -> GfalAdapter:
    return GfalAdapter(GfalSettings.from_options(options))
