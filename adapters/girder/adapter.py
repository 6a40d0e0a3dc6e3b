"""The Girder adapter: one per mount, a view per credential (see adapters/girder/__init__.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.base import AuthenticationFailed, Credential, Delegation, Storage
from adapters.common import ViewCache, credential_key
from adapters.girder.delegation import revoke as revoke_token
from adapters.girder.options import GirderSettings
from adapters.girder.session import ApiKeyAuth, Auth, BearerAuth, GirderSession
from adapters.girder.storage import GirderStorage

MAX_VIEWS = 256  # credentials whose views (HTTP sessions) are kept


class GirderAdapter:
    type_name = "girder"
    uses_credentials = True  # the requests act with a user's or the mount's credential

    def __init__(self, settings: GirderSettings) -> None:
        self.settings = settings
        self.api_url = settings.api_url.rstrip("/")
        self.root = settings.root
        # One view (and its HTTP session) per credential; the least recently used of
        # more than MAX_VIEWS goes.
        self._views: ViewCache[GirderStorage] = ViewCache(
            GirderStorage.close, max_entries=MAX_VIEWS
        )

    def _auth(self, credential: Credential | None) -> tuple[str, Auth]:
        if credential is None:
            if not self.settings.api_key:
                raise AuthenticationFailed("no credential for this mount")
            credential = Credential("apikey", {"apiKey": self.settings.api_key})
        if credential.kind == "apikey" and credential.fields.get("apiKey"):
            secret = credential.fields["apiKey"]
            auth: Auth = ApiKeyAuth(secret, self.settings.token_duration_days)
        elif credential.kind == "bearer" and credential.fields.get("token"):
            secret = credential.fields["token"]
            auth = BearerAuth(secret)
        else:
            raise AuthenticationFailed(
                "a Girder mount needs an API key (apikey/apiKey) or a Girder token (bearer/token)"
            )
        return credential_key(credential.kind, secret), auth

    def bind(self, credential: Credential | None) -> Storage:
        key, auth = self._auth(credential)
        return self._views.get(key, lambda: self._view(auth, service=credential is None))

    def _view(self, auth: Auth, service: bool) -> GirderStorage:
        s = self.settings
        return GirderStorage(
            GirderSession(self.api_url, auth, *s.http),
            self.root,
            s.page_size,
            s.chunk_size,
            native_tokens=s.native_tokens,
            service=service,
        )

    def check(self) -> None:
        session = GirderSession(self.api_url, BearerAuth(""), *self.settings.http)
        try:
            session.request("GET", "system/version", authenticated=False)
        finally:
            session.close()

    def revoke_delegation(self, delegation: Delegation) -> None:
        """Delete a delegated token with no credential at all (the token deletes itself):
        for grants whose user's credential is gone and a mount without a service key."""
        session = GirderSession(self.api_url, BearerAuth(""), *self.settings.http)
        try:
            value = delegation.headers.get("Girder-Token") or delegation.value
            revoke_token(session, value, delegation.revoke_ref, via_key=False)
        finally:
            session.close()

    def close(self) -> None:
        self._views.close_all()


def create(options: Mapping[str, Any]) -> GirderAdapter:
    return GirderAdapter(GirderSettings.from_options(options))
