"""Gateway users, their passwords and their API keys.

An API key reads ``fgk_<id>_<secret>``: the id (16 hex) finds the row, and only the
SHA-256 of the secret is stored, compared with ``hmac.compare_digest``. The secret has
256 bits of entropy, so a fast hash is enough; passwords, which people choose, get
scrypt. Key checks are cached per process for ``cache_ttl`` seconds (keyed by the
SHA-256 of the whole key, never the key itself), which makes a hot key cost a dict
lookup; a key revoked in another process stops working within ``cache_ttl`` (0.5 s).

Each key records when it was last used, written at most once a minute per key (a
write per request would make every authenticated request a database write).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from .errors import AlreadyExistsError, NotFoundError
from .store import Row, Store

KEY_PREFIX = "fgk_"
# Validators are applied with fullmatch: ``$`` would also match before a final "\n".
_KEY_RE = re.compile(r"fgk_([0-9a-f]{16})_([A-Za-z0-9_-]{20,128})")
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_LAST_USED_EVERY_S = 60.0
_MAX_PASSWORD = 1024
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_CACHE_MAX = 50_000
# Hashed for unknown users so that "no such user" takes as long as "wrong password".
_DUMMY_HASH = f"scrypt$16384$8$1${'A' * 22}==${'A' * 43}="


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool = False


@dataclass(frozen=True)
class ApiKeyInfo:
    """What can be shown about an API key: never the secret."""

    id: str
    label: str
    created: float
    expires: float | None
    last_used: float | None = None
    user: str = ""


def validate_user_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            "user name must be 1-64 characters of letters, digits, '.', '_', '@', '-' "
            "and start with a letter or digit"
        )
    return name


def hash_password(password: str) -> str:
    _check_password(password)
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if algo != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = _scrypt(password, salt, int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"), salt=salt, n=n, r=r, p=p, dklen=dklen
    )


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not password or len(password) > _MAX_PASSWORD:
        raise ValueError(f"password must be 1-{_MAX_PASSWORD} characters")


def is_api_key(text: str) -> bool:
    """Whether ``text`` has the form of a fedgate API key (not whether it is valid)."""
    return isinstance(text, str) and _KEY_RE.fullmatch(text) is not None


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserService:
    """Users and API keys in the store; thread-safe."""

    def __init__(self, store: Store, cache_ttl: float = 0.5) -> None:
        self._store = store
        self._cache_ttl = cache_ttl
        self._cache: dict[bytes, tuple[User | None, float]] = {}
        self._cache_lock = threading.Lock()

    # -- users -------------------------------------------------------------------------

    def add_user(
        self, name: str, password: str | None = None, admin: bool = False, key: str | None = None
    ) -> tuple[User, str]:
        """Create a user and a first API key, returned once (only its hash is kept).

        ``key``: that first key, made by the operator (``fgk_<16 hex>_<20-128 url-safe
        characters>``), instead of a new random one."""
        validate_user_name(name)
        pw_hash = hash_password(password) if password is not None else None
        if key is None:
            key_id, secret, key = _new_key()
        else:
            m = _KEY_RE.fullmatch(key)
            if m is None:  # never echo the key
                raise ValueError("an API key reads fgk_<16 hex digits>_<20-128 of A-Za-z0-9_->")
            key_id, secret = m.group(1), m.group(2)
        now = time.time()
        with self._store.transaction() as tx:
            n = tx.execute(
                "INSERT INTO users (name, is_admin, password_hash, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, 1 if admin else 0, pw_hash, now),
            )
            if n == 0:
                raise AlreadyExistsError(f"user {name!r} already exists")
            tx.execute(
                "INSERT INTO api_keys (id, user_name, secret_sha256, label, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, _secret_digest(secret), "initial", now, None),
            )
        self._clear_cache()  # a cached "no such user" must not outlive the user's creation
        return User(name, admin), key

    def get_user(self, name: str) -> User | None:
        """Cached for ``cache_ttl`` seconds: every Bearer request looks its user up."""
        cache_key = b"user\0" + name.encode("utf-8", "surrogatepass")
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        with self._store.reading() as tx:
            row = tx.query_one("SELECT name, is_admin FROM users WHERE name = ?", (name,))
        user = User(row[0], bool(row[1])) if row else None
        with self._cache_lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[cache_key] = (user, now + self._cache_ttl)
        return user

    def count(self) -> int:
        with self._store.reading() as tx:
            row = tx.query_one("SELECT COUNT(*) FROM users")
        return int(row[0]) if row else 0

    def list_users(self) -> list[User]:
        with self._store.reading() as tx:
            rows = tx.query("SELECT name, is_admin FROM users ORDER BY name")
        return [User(r[0], bool(r[1])) for r in rows]

    def delete_user(self, name: str) -> bool:
        """Delete a user with their API keys and stored credentials.

        Their delegated tokens stay valid until revoked: call
        ``TokenService.revoke(user=name)`` as well.
        """
        with self._store.transaction() as tx:
            tx.execute("DELETE FROM api_keys WHERE user_name = ?", (name,))
            tx.execute("DELETE FROM vault WHERE user_name = ?", (name,))
            n = tx.execute("DELETE FROM users WHERE name = ?", (name,))
        self._clear_cache()
        return n > 0

    def set_password(self, name: str, password: str) -> None:
        pw_hash = hash_password(password)
        with self._store.transaction() as tx:
            n = tx.execute("UPDATE users SET password_hash = ? WHERE name = ?", (pw_hash, name))
        if n == 0:
            raise NotFoundError(f"no user {name!r}")

    def set_admin(self, name: str, admin: bool) -> None:
        with self._store.transaction() as tx:
            n = tx.execute("UPDATE users SET is_admin = ? WHERE name = ?", (int(admin), name))
        if n == 0:
            raise NotFoundError(f"no user {name!r}")
        self._clear_cache()

    def authenticate_password(self, name: str, password: str) -> User | None:
        """The user if the password matches; as slow for unknown users as for known ones."""
        if not isinstance(password, str) or len(password) > _MAX_PASSWORD:
            return None
        row = None
        if isinstance(name, str) and _NAME_RE.fullmatch(name):
            with self._store.reading() as tx:
                row = tx.query_one(
                    "SELECT name, is_admin, password_hash FROM users WHERE name = ?", (name,)
                )
        stored = row[2] if row and row[2] else _DUMMY_HASH
        ok = verify_password(password, stored)
        if row is None or not row[2] or not ok:
            return None
        return User(row[0], bool(row[1]))

    # -- API keys ----------------------------------------------------------------------

    def new_api_key(self, name: str, label: str = "", ttl: dt.timedelta | None = None) -> str:
        key_id, secret, key = _new_key()
        now = time.time()
        expires = now + ttl.total_seconds() if ttl is not None else None
        with self._store.transaction() as tx:
            if tx.query_one("SELECT 1 FROM users WHERE name = ?", (name,)) is None:
                raise NotFoundError(f"no user {name!r}")
            tx.execute(
                "INSERT INTO api_keys (id, user_name, secret_sha256, label, created, expires) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, name, _secret_digest(secret), label[:200], now, expires),
            )
        return key

    def list_keys(self, name: str) -> list[ApiKeyInfo]:
        """The user's keys, oldest first (expired ones included, so they can be removed)."""
        with self._store.reading() as tx:
            rows = tx.query(
                "SELECT id, label, created, expires, last_used, user_name FROM api_keys "
                "WHERE user_name = ? ORDER BY created, id",
                (name,),
            )
        return [_key_info(r) for r in rows]

    def get_key(self, key_id: str) -> ApiKeyInfo | None:
        """A key by its id (the public part of ``fgk_<id>_<secret>``), or None."""
        if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
            return None
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT id, label, created, expires, last_used, user_name FROM api_keys "
                "WHERE id = ?",
                (key_id,),
            )
        return _key_info(row) if row else None

    def find_key(self, api_key: str) -> ApiKeyInfo | None:
        """The key ``api_key`` is, when its secret matches (expired or not): whoever holds
        a key may revoke it. Same work whether or not the id exists."""
        m = _KEY_RE.fullmatch(api_key) if isinstance(api_key, str) else None
        if m is None:
            return None
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT id, label, created, expires, last_used, user_name, secret_sha256 "
                "FROM api_keys WHERE id = ?",
                (m.group(1),),
            )
        digest = _secret_digest(m.group(2))
        if row is None:
            hmac.compare_digest(digest, digest)
            return None
        return _key_info(row) if hmac.compare_digest(digest, row[6]) else None

    def revoke_keys(self, name: str) -> int:
        with self._store.transaction() as tx:
            n = tx.execute("DELETE FROM api_keys WHERE user_name = ?", (name,))
        self._clear_cache()
        return n

    def revoke_key(self, name: str, key_id: str) -> bool:
        """Delete one of ``name``'s keys. The tokens exchanged from it are revoked by
        ``TokenService.revoke_api_key``: call both (the gateway's routes and CLI do)."""
        with self._store.transaction() as tx:
            n = tx.execute("DELETE FROM api_keys WHERE user_name = ? AND id = ?", (name, key_id))
        self._clear_cache()
        return n > 0

    def authenticate_key(self, api_key: str) -> User | None:
        """The key's user, or None for a malformed, unknown, expired or revoked key."""
        if not isinstance(api_key, str) or len(api_key) > 200:
            return None
        cache_key = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        m = _KEY_RE.fullmatch(api_key)
        if m is None:
            return None
        user, valid_for = self._lookup_key(m.group(1), m.group(2))
        with self._cache_lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[cache_key] = (user, now + min(self._cache_ttl, valid_for))
        return user

    def _lookup_key(self, key_id: str, secret: str) -> tuple[User | None, float]:
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT k.secret_sha256, k.expires, u.name, u.is_admin, k.last_used "
                "FROM api_keys k JOIN users u ON u.name = k.user_name WHERE k.id = ?",
                (key_id,),
            )
        digest = _secret_digest(secret)
        if row is None:
            hmac.compare_digest(digest, digest)  # same work whether or not the id exists
            return None, self._cache_ttl
        if not hmac.compare_digest(digest, row[0]):
            return None, self._cache_ttl
        now = time.time()
        if row[1] is not None and float(row[1]) <= now:
            return None, self._cache_ttl
        if row[4] is None or now - float(row[4]) >= _LAST_USED_EVERY_S:
            with self._store.transaction() as tx:
                tx.execute("UPDATE api_keys SET last_used = ? WHERE id = ?", (now, key_id))
        valid_for = float(row[1]) - now if row[1] is not None else self._cache_ttl
        return User(row[2], bool(row[3])), valid_for

    def _clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()


def key_id_of(api_key: str) -> str | None:
    """The id part of a well-formed API key (not a proof that the key is valid)."""
    m = _KEY_RE.fullmatch(api_key) if isinstance(api_key, str) else None
    return m.group(1) if m else None


def _key_info(r: Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=r[0],
        label=r[1],
        created=float(r[2]),
        expires=float(r[3]) if r[3] is not None else None,
        last_used=float(r[4]) if r[4] is not None else None,
        user=r[5],
    )


def _new_key() -> tuple[str, str, str]:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"
