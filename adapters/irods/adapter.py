"""The iRODS adapter: one per mount, a pooled python-irodsclient session per credential
(see adapters/irods/__init__.py)."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Mapping
from typing import Any

from adapters.base import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Credential,
    Storage,
)
from adapters.common import ViewCache, credential_key
from adapters.irods.client import irods_library
from adapters.irods.storage import IrodsStorage
from adapters.irods.tickets import Server

# Users with a pooled session per mount; past it the least recently used goes (closed
# unless a request is still streaming with it).
MAX_SESSIONS = 256


def _session_busy(session: Any) -> bool:
    # A session still streaming (an active connection) is never closed under it.
    return bool(session.pool.active)


def _close_session(session: Any) -> None:
    session.cleanup()


class IrodsAdapter:
    type_name = "irods"
    uses_credentials = True  # the requests act with a user's or the mount's credential

    def __init__(
        self,
        host: str,
        zone: str,
        root: str,
        port: int = 1247,
        auth_scheme: str = "native",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
        idle_timeout: float = 300.0,
        ssl_ca_file: str | None = None,
        default_resource: str | None = None,
    ) -> None:
        if not root.startswith("/") or "/.." in root or "\x00" in root:
            raise ValueError("root must be an absolute iRODS collection path")
        if auth_scheme not in ("native", "pam"):
            raise ValueError("auth_scheme must be 'native' or 'pam'")
        self.host, self.port, self.zone = host, int(port), zone
        self.root = root.rstrip("/") or "/"
        self.auth_scheme = auth_scheme
        self._service = (user, password) if user else None
        self.timeout = float(timeout)
        self.page_size = max(1, min(int(page_size), 500))
        self.idle_timeout = float(idle_timeout)
        self.ssl_ca_file = ssl_ca_file
        self.default_resource = default_resource
        self._server = Server(self.host, self.port, self.zone)
        self._sessions: ViewCache[Any] = ViewCache(
            _close_session,
            max_entries=MAX_SESSIONS,
            idle_timeout=self.idle_timeout,
            busy=_session_busy,
        )

    def _session(self, user: str, password: str) -> Any:
        key = credential_key(self.auth_scheme, user, password)
        return self._sessions.get(key, lambda: self._new_session(user, password))

    def _new_session(self, user: str, password: str) -> Any:
        """A python-irodsclient session for one user of the mount (connects lazily)."""
        irods = irods_library()
        kwargs: dict[str, Any] = dict(
            host=self.host,
            port=self.port,
            zone=self.zone,
            user=user,
            password=password,
            connection_timeout=self.timeout,
        )
        if self.auth_scheme == "pam":
            kwargs["authentication_scheme"] = "pam_password"
        if self.ssl_ca_file:
            kwargs.update(
                client_server_negotiation="request_server_negotiation",
                client_server_policy="CS_NEG_REQUIRE",
                ssl_ca_certificate_file=self.ssl_ca_file,
                encryption_algorithm="AES-256-CBC",
                encryption_key_size=32,
                encryption_num_hash_rounds=16,
                encryption_salt_size=8,
            )
        session = irods.session.iRODSSession(**kwargs)
        if self.default_resource:
            session.default_resource = self.default_resource
        return session

    def bind(self, credential: Credential | None) -> Storage:
        if credential is None:
            if self._service is None:
                raise AuthenticationFailed("no credential for this mount")
            user, password = self._service[0] or "", self._service[1] or ""
        else:
            if credential.kind != "user_password":
                raise AuthenticationFailed(
                    f"iRODS needs a user_password credential, not {credential.kind}"
                )
            user = credential.fields.get("user", "")
            password = credential.fields.get("password", "")
            if not user:
                raise AuthenticationFailed("credential has no user")
        session = self._session(user, password)
        return IrodsStorage(session, self.root, self.page_size, self._server)

    def check(self) -> None:
        """Reachability only: open a TCP connection to the iRODS port."""
        try:
            socket.create_connection((self.host, self.port), timeout=min(self.timeout, 5)).close()
        except TimeoutError as exc:
            raise BackendTimeout("iRODS server did not answer in time") from exc
        except OSError as exc:
            raise BackendUnavailable("iRODS server unreachable") from exc

    def close(self) -> None:
        self._sessions.close_all()


def create(options: Mapping[str, Any]) -> IrodsAdapter:
    known = set(inspect.signature(IrodsAdapter).parameters)  # the documented options
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown iRODS mount options: {sorted(unknown)}")
    for required in ("host", "zone", "root"):
        if not options.get(required):
            raise ValueError(f"iRODS mount option {required!r} is required")
    return IrodsAdapter(**dict(options))
