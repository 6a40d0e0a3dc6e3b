"""Issue, narrow, verify and revoke fedgate's delegated tokens (signed JWTs).

A token is an ES256 JWT following the WLCG profile (``scope``, ``wlcg.ver``) with
fedgate extras: ``fedgate.execution_id``, ``fedgate.uses``, ``fedgate.parent`` (the
token it was narrowed from) and ``fedgate.chain`` (all its ancestors, so revoking any
ancestor kills it without a database walk). Every issued token has a row in the
store, which holds its use counter and lets revocation find tokens by user, execution
or storage.

Speed: a verified signature is cached (keyed by the SHA-256 of the token), so a hot
token costs a hash, a dict lookup and set checks; time and revocation are checked on
every call. The revocation set is reloaded from the store at most every
``revocation_poll`` seconds, which is how another replica's revocation arrives.

Audience: every token names one (``aud``); by default the first of the service's own
``audiences`` (the gateway's public URL). ``verify`` refuses a token whose audience is
none of the service's, unless it is the WLCG "any" value, so a token minted for another
service that trusts fedgate's keys cannot be replayed here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from .claims import IssuedToken, TokenClaims, b64json, from_payload, to_payload
from .errors import TokenError
from .masterkey import MasterKeys
from .revocation import Revocation, RevocationSet
from .scopes import Scope, format_scopes, is_subset
from .signing import ALG, SigningKeys
from .store import Store

log = logging.getLogger(__name__)

MAX_TOKEN = 8192
MAX_USES = 1_000_000
MAX_LEEWAY = 60
WLCG_ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
_MAX_CHAIN = 16
_CACHE_MAX = 100_000
# Applied with fullmatch: with ``$``, "exec-1\n" would pass and escape a revocation of
# "exec-1".
LABEL_RE = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces
JTI_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PURGE_EVERY_S = 60.0

__all__ = ["IssuedToken", "Revocation", "TokenClaims", "TokenError", "TokenService"]


def is_label(value: object) -> bool:
    """Whether ``value`` may be an execution id or an audience: 1-200 printable ASCII."""
    return isinstance(value, str) and LABEL_RE.fullmatch(value) is not None


def _check_label(value: str | None, what: str) -> None:
    if value is not None and not is_label(value):
        raise TokenError("invalid_request", f"{what} must be 1-200 printable characters")


def _same_audience(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class TokenService:
    """See the module docstring; thread-safe, one per process."""

    def __init__(
        self,
        store: Store,
        keys: MasterKeys,
        issuer: str,
        default_lifetime: int = 1200,
        max_lifetime: int = 21600,
        leeway: int = 10,
        revocation_poll: float = 0.5,
        audiences: Sequence[str] = (),
    ) -> None:
        if not 0 < default_lifetime <= max_lifetime:
            raise ValueError("need 0 < default_lifetime <= max_lifetime")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be 0-{MAX_LEEWAY} seconds")
        audiences = tuple(audiences) or (issuer,)
        for aud in audiences:
            if not is_label(aud):
                raise ValueError("an audience must be 1-200 printable characters, no spaces")
        self._store = store
        self.issuer = issuer
        # The first one is the audience of the tokens this service mints by default.
        self.audiences = audiences
        self.default_lifetime = default_lifetime
        self.max_lifetime = max_lifetime
        self.leeway = leeway
        self._signing = SigningKeys(store, keys, retire_after=max_lifetime + leeway)
        self._revoked = RevocationSet(store, revocation_poll, max_lifetime + leeway, leeway)
        self._cache: dict[bytes, TokenClaims] = {}
        self._cache_lock = threading.Lock()
        self._callbacks: list[Callable[[Revocation], None]] = []
        self._purged_at = time.monotonic()

    # -- issuing -----------------------------------------------------------------------

    def issue(
        self,
        user: str,
        scopes: Sequence[Scope],
        *,
        lifetime: int | None = None,
        audience: str | None = None,
        execution_id: str | None = None,
        uses: int | None = None,
        parent: TokenClaims | None = None,
        key_id: str | None = None,
    ) -> IssuedToken:
        """Mint a token; with ``parent``, a narrowing of it that can never be wider.

        A narrowed token's scopes must be covered by the parent's; its expiry is capped
        at the parent's (a longer lifetime is shortened, as RFC 8693 allows); its uses
        default to, and may not exceed, the parent's remaining uses; it inherits the
        parent's audience, execution id and API key id. Consuming a use of a narrowed
        token also consumes one of each ancestor that has a use count.

        ``audience`` defaults to the service's first audience; another value makes a
        token for another service, which this one refuses. ``key_id``: the API key the
        token is exchanged from (revoking the key revokes the token).
        """
        scopes = tuple(scopes)
        if not scopes or not all(isinstance(s, Scope) for s in scopes):
            raise TokenError("invalid_scope", "at least one storage scope is required")
        if lifetime is None:
            lifetime = self.default_lifetime
        if (
            not isinstance(lifetime, int)
            or isinstance(lifetime, bool)
            or not 0 < lifetime <= self.max_lifetime
        ):
            raise TokenError("invalid_request", f"lifetime must be 1-{self.max_lifetime} seconds")
        _check_label(audience, "audience")
        _check_label(execution_id, "execution id")
        if key_id is not None and not JTI_RE.fullmatch(key_id):
            raise TokenError("invalid_request", "malformed API key id")
        if uses is not None and (
            not isinstance(uses, int) or isinstance(uses, bool) or not 0 < uses <= MAX_USES
        ):
            raise TokenError("invalid_request", f"uses must be an integer from 1 to {MAX_USES}")
        now = int(time.time())
        exp = now + lifetime
        chain: tuple[str, ...] = ()
        if parent is not None:
            self._check_parent_alive(parent, now)
            if parent.sub != user:
                raise TokenError("invalid_request", "a token can only be narrowed by its owner")
            if not is_subset(scopes, parent.scopes):
                raise TokenError("invalid_scope", "requested scopes exceed the subject token's")
            exp = min(exp, parent.exp)
            if parent.aud is not None:
                if audience is not None and audience != parent.aud:
                    raise TokenError("invalid_target", "audience differs from the subject token's")
                audience = parent.aud
            if parent.execution_id is not None:
                if execution_id is not None and execution_id != parent.execution_id:
                    raise TokenError(
                        "invalid_request", "execution id differs from the subject token's"
                    )
                execution_id = parent.execution_id
            if parent.uses is not None:
                left = self.remaining_uses(parent)
                if not left:
                    raise TokenError("exhausted", "the subject token has no uses left")
                if uses is not None and uses > left:
                    raise TokenError("invalid_request", f"at most {left} uses can be delegated")
                uses = left if uses is None else uses
            if parent.key_id is not None:
                key_id = parent.key_id
            chain = (*parent.chain, parent.jti)
            if len(chain) > _MAX_CHAIN:
                raise TokenError("invalid_request", "delegation chain too long")
        if audience is None:
            audience = self.audiences[0]
        kid, private = self._signing.current()
        claims = TokenClaims(
            jti=secrets.token_urlsafe(16),
            sub=user,
            scopes=scopes,
            exp=exp,
            iat=now,
            nbf=now,
            aud=audience,
            execution_id=execution_id,
            uses=uses,
            parent=parent.jti if parent is not None else None,
            kid=kid,
            chain=chain,
            iss=self.issuer,
            key_id=key_id,
        )
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO issued_tokens (jti, sub, parent, execution_id, scope, iat, exp, "
                "uses_left, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    claims.jti,
                    user,
                    claims.parent,
                    execution_id,
                    format_scopes(scopes),
                    now,
                    exp,
                    uses,
                    key_id,
                ),
            )
        token = jwt.encode({"alg": ALG, "kid": kid, "typ": "at+jwt"}, to_payload(claims), private)
        self._maybe_purge()
        return IssuedToken(token, exp - now, claims)

    def _check_parent_alive(self, parent: TokenClaims, now: int) -> None:
        if now >= parent.exp:
            raise TokenError("expired", "the subject token has expired")
        self._revoked.refresh_if_due()
        if self._revoked.is_revoked(parent):
            raise TokenError("revoked", "the subject token has been revoked")

    # -- verifying ---------------------------------------------------------------------

    def verify(self, token: str, audience: str | None = None) -> TokenClaims:
        """The token's claims if it is valid now; TokenError with a reason otherwise.

        The token's ``aud`` must be one of the service's audiences (or ``audience``,
        when given: a verifier naming itself), or the WLCG "any" value. A token without
        ``aud`` (minted before audiences existed) names no audience and is refused.
        """
        claims = self.decode(token)
        now = time.time()
        if now > claims.exp + self.leeway:
            raise TokenError("expired", "token has expired")
        if claims.nbf > now + self.leeway:
            raise TokenError("not_yet_valid", "token is not valid yet (nbf)")
        if not self.accepts_audience(claims.aud, audience):
            raise TokenError("invalid_token", "token is meant for another audience (aud)")
        self._revoked.refresh_if_due()
        if self._revoked.is_revoked(claims):
            raise TokenError("revoked", "token has been revoked")
        return claims

    def accepts_audience(self, aud: str | None, audience: str | None = None) -> bool:
        if aud is None:
            return False
        if aud == WLCG_ANY_AUDIENCE:
            return True
        names = (audience,) if audience is not None else self.audiences
        return any(_same_audience(aud, n) for n in names)

    def decode(self, token: str) -> TokenClaims:
        """Check the signature and shape only (not time, audience or revocation)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN:
            raise TokenError("invalid_token", "malformed token")
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        claims = self._cache.get(digest)
        if claims is None:
            claims = self._decode_uncached(token)
            with self._cache_lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[digest] = claims
        return claims

    def _decode_uncached(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("invalid_token", "malformed token")
        try:
            header = b64json(parts[0])
        except ValueError as e:
            raise TokenError("invalid_token", "malformed token header") from e
        # Only our algorithm: this is what stops alg=none and HS256-with-the-public-key.
        if not isinstance(header, dict) or header.get("alg") != ALG:
            raise TokenError("invalid_token", f"token algorithm must be {ALG}")
        kid = header.get("kid")
        key = self._signing.verification_key(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise TokenError("invalid_token", "unknown or retired signing key id")
        try:
            p = jwt.decode(token, key, algorithms=[ALG]).claims
        except (JoseError, ValueError) as e:
            raise TokenError("invalid_token", "bad token signature") from e
        try:
            return from_payload(p, kid, self.issuer)
        except (KeyError, TypeError, ValueError) as e:
            raise TokenError("invalid_token", "token claims are malformed") from e

    def lookup(self, jti: str) -> tuple[TokenClaims, str] | None:
        """A token still on record, by id, and its state now: "valid", "revoked",
        "expired" or "exhausted"; None once its row is gone (purged soon after expiry).

        For explaining a token by the id the audit shows, never for authorising: the
        claims are rebuilt from the token's row, which keeps no audience nor key id."""
        if not isinstance(jti, str) or not 0 < len(jti) <= 200:
            return None
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT sub, parent, execution_id, scope, iat, exp, uses_left, key_id "
                "FROM issued_tokens WHERE jti = ?",
                (jti,),
            )
            if row is None:
                return None
            ancestors: list[str] = []
            up = row[1]
            while up is not None and len(ancestors) < _MAX_CHAIN:
                ancestors.append(up)
                found = tx.query_one("SELECT parent FROM issued_tokens WHERE jti = ?", (up,))
                up = found[0] if found else None
        sub, parent, execution_id, scope, iat, exp, uses_left, key_id = row
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "jti": jti,
            "scope": scope,
            "exp": int(exp),
            "iat": int(iat),
            "nbf": int(iat),
        }
        if execution_id is not None:
            payload["fedgate.execution_id"] = execution_id
        if parent is not None:
            payload["fedgate.parent"] = parent
            payload["fedgate.chain"] = ancestors[::-1]  # root first, like the claim
        if key_id is not None:
            payload["fedgate.key"] = key_id
        claims = from_payload(payload, "", self.issuer)
        self._revoked.refresh_if_due()
        if self._revoked.is_revoked(claims):
            state = "revoked"
        elif time.time() > claims.exp + self.leeway:
            state = "expired"
        elif uses_left is not None and int(uses_left) <= 0:
            state = "exhausted"
        else:
            state = "valid"
        return claims, state

    # -- uses --------------------------------------------------------------------------

    def remaining_uses(self, claims: TokenClaims) -> int | None:
        """Uses left for a counted token (None when it is not counted)."""
        if claims.uses is None:
            return None
        with self._store.reading() as tx:
            row = tx.query_one("SELECT uses_left FROM issued_tokens WHERE jti = ?", (claims.jti,))
        return int(row[0]) if row and row[0] is not None else 0

    def consume_use(self, claims: TokenClaims) -> None:
        """Take one use of a counted token (and of its counted ancestors), atomically."""
        if claims.uses is None:
            return
        ids = sorted({claims.jti, *claims.chain})
        marks = ", ".join("?" for _ in ids)
        # Rows are locked in jti order, so two consumers never deadlock.
        lock = " ORDER BY jti FOR UPDATE" if self._store.is_postgres else ""
        with self._store.transaction() as tx:
            found = tx.query(
                f"SELECT jti, uses_left FROM issued_tokens WHERE jti IN ({marks}){lock}",  # noqa: S608
                ids,
            )
            left = {j: int(n) for j, n in found if n is not None}
            if claims.jti not in left or any(n <= 0 for n in left.values()):
                raise TokenError("exhausted", "token has no uses left")
            tx.executemany(
                "UPDATE issued_tokens SET uses_left = uses_left - 1 WHERE jti = ?",
                [(j,) for j in sorted(left)],
            )

    # -- revocation --------------------------------------------------------------------

    def on_revoke(self, callback: Callable[[Revocation], None]) -> None:
        """Call ``callback`` after each revocation made by this process (not replicas')."""
        self._callbacks.append(callback)

    def revoke(
        self,
        *,
        token: str | None = None,
        jti: str | None = None,
        execution_id: str | None = None,
        user: str | None = None,
    ) -> int:
        """Revoke by token, by token id, by execution id, or every token of ``user``.

        With ``token``, ``jti`` or ``execution_id``, ``user`` restricts the revocation to
        that user's tokens (the caller checks who may revoke what). An invalid token
        revokes nothing (RFC 7009). Returns how many live tokens this made invalid,
        counting the tokens narrowed from them.
        """
        if token is None and jti is None and execution_id is None and user is None:
            raise TokenError("invalid_request", "nothing to revoke")
        jtis: list[str] = []
        if token is not None:
            try:
                claims = self.decode(token)
            except TokenError:
                claims = None
            if claims is not None and (user is None or claims.sub == user):
                jtis.append(claims.jti)
        if jti is not None:
            jtis.append(jti)
        only_user = token is None and jti is None and execution_id is None
        event = self._revoked.revoke(
            jtis=jtis,
            execution_id=execution_id,
            user=user,
            all_of_user=only_user,
        )
        self._notify(event)
        return len(event.jtis)

    def revoke_api_key(self, key_id: str) -> int:
        """Revoke every token exchanged from API key ``key_id`` (on every replica within
        ``revocation_poll``); the key itself is deleted by ``UserService.revoke_key``."""
        if not isinstance(key_id, str) or not JTI_RE.fullmatch(key_id):
            raise TokenError("invalid_request", "malformed API key id")
        event = self._revoked.revoke_key(key_id)
        self._notify(event)
        return len(event.jtis)

    def is_narrowed_from(self, jti: str, ancestor: str) -> bool:
        """Whether token ``jti`` is ``ancestor`` or was narrowed from it (at any depth)."""
        current: str | None = jti
        with self._store.reading() as tx:
            for _ in range(_MAX_CHAIN + 2):
                if current is None:
                    return False
                if current == ancestor:
                    return True
                row = tx.query_one("SELECT parent FROM issued_tokens WHERE jti = ?", (current,))
                current = row[0] if row else None
        return False

    def revoke_for_storage(self, user: str, storage_id: str) -> int:
        """Revoke ``user``'s live tokens whose scopes reach into ``/<storage_id>``."""
        event = self._revoked.revoke_storage(user, storage_id)
        self._notify(event)
        return len(event.jtis)

    def _notify(self, event: Revocation) -> None:
        if not event.jtis and event.execution_id is None and event.key_id is None:
            return
        for cb in list(self._callbacks):
            try:
                cb(event)
            except Exception:  # a backend clean-up must not undo or block the revocation
                log.exception("revocation callback failed")

    # -- keys --------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return self._signing.jwks()

    def rotate_signing_key(self) -> str:
        return self._signing.rotate()

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._purged_at < _PURGE_EVERY_S:
            return
        self._purged_at = time.monotonic()
        self._revoked.purge(time.time() - self.leeway)
