"""Girder tokens handed to jobs (``/token/native``, VIP input URIs), never wider than a read.

Girder gives a token the scope of the API key it is made from, and a user's key (or
login token) holds every scope: the token could write and delete everything the account
reaches. So each delegation is minted from an API key of its own, created with the
user's credential for that one delegation: scope ``core.data.read`` only, token duration
the delegation's lifetime. Its id is kept with the recorded grant (``revoke_ref``):
deleting the key deletes its token (Girder clears a deleted key's tokens), which is how
revocation and the expiry sweep remove both. If the key cannot be deleted any more (the
user's credential is gone), the token deletes itself (``DELETE /token/session`` with the
token), and the key, whose value fedgate never stored, stays inactive in all but name
until the user deletes it.

A Girder token cannot be narrowed to paths: it reads everything the account can read.
That is why a mount hands such tokens out only with ``native_tokens = true``, and never
from the mount's own service credential (see adapters/girder/__init__.py).

Girder has no write scope that stops short of overwriting and deleting
(``core.data.write`` allows both), so no write token is ever handed out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

from adapters.base import AuthenticationFailed, NotFound, PermissionDenied, StorageError
from adapters.girder.errors import GirderError
from adapters.girder.session import GirderSession, Token, parse_time

READ_SCOPE = "core.data.read"
# Girder computes the expiry from its own clock, a moment after ours: ask a few seconds
# short so the token never outlives what was asked.
SLACK_S = 5


def mint_read_token(session: GirderSession, expires_at: dt.datetime) -> tuple[Token, str]:
    """A ``core.data.read`` token dying by ``expires_at``, and the id of the API key made
    for it (delete that to delete the token)."""
    seconds = (expires_at - dt.datetime.now(dt.UTC)).total_seconds() - SLACK_S
    if seconds < 1:
        raise StorageError("the requested expiry is already past")
    days = f"{seconds / 86400:.8f}"
    name = f"fedgate read-only delegation until {expires_at:%Y-%m-%dT%H:%M:%SZ}"
    try:
        key = session.request(
            "POST",
            "api_key",
            data={"name": name, "scope": json.dumps([READ_SCOPE]), "tokenDuration": days},
        )
    except (GirderError, PermissionDenied) as exc:
        # A stored key that is itself scoped (no core.user_auth) cannot make keys.
        raise PermissionDenied(
            "Girder refused to create a read-only API key with the stored credential "
            f"({exc}); store a full API key, or read through fedgate"
        ) from exc
    key_id = str(key["_id"])
    try:
        answer = session.request(
            "POST",
            "api_key/token",
            data={"key": key["key"], "duration": days},
            authenticated=False,
        )
        auth: dict[str, Any] = answer["authToken"]
        if list(auth.get("scope") or ()) != [READ_SCOPE]:
            # Never hand out a token wider than a read, whatever this Girder did.
            delete_key(session, key_id)
            raise StorageError("Girder minted a token wider than the read-only scope asked")
    except BaseException:
        with contextlib.suppress(StorageError):
            delete_key(session, key_id)
        raise
    token = Token(str(auth["token"]), parse_time(str(auth["expires"])))
    return Token(token.value, min(token.expires, expires_at)), key_id


def delete_key(session: GirderSession, key_id: str) -> None:
    session.request("DELETE", f"api_key/{key_id}")


def revoke(session: GirderSession, token: str, key_id: str, *, via_key: bool = True) -> None:
    """Delete a delegated token: through its API key when the session's credential may
    (which removes the key too), else by the token itself. NotFound when it is gone.
    ``via_key=False``: the session has no credential, only the token can be used."""
    if key_id and via_key:
        try:
            delete_key(session, key_id)
            return
        except (GirderError, PermissionDenied, AuthenticationFailed):
            pass  # the key is gone, or this credential may not delete it: try the token
    if not token:
        raise NotFound("no Girder token to delete")
    try:
        session.request(
            "DELETE", "token/session", headers={"Girder-Token": token}, authenticated=False
        )
    except (GirderError, AuthenticationFailed) as exc:
        raise NotFound("the Girder token is already gone") from exc
