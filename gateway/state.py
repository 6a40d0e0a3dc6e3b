"""The services one gateway process holds: store, users, vault, tokens, audit, mounts."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import Adapter, AuthenticationFailed, Credential, Storage
from adapters.options import OPTIONS
from adapters.registry import BackendLoadError, create_adapter
from gateway.config import ConfigError, MountConfig, Settings
from gateway.errors import CarminError, E
from gateway.issuers import JwksCache
from gateway.native_grants import NativeGrants
from tokens.audit import AuditLog
from tokens.errors import AlreadyExistsError, MissingMasterKeyError
from tokens.external import ExternalVerifier
from tokens.masterkey import DEFAULT_FILE, SOURCES, MasterKeys
from tokens.service import TokenService
from tokens.store import Store
from tokens.users import UserService, is_api_key
from tokens.vault import KeyVault, wrapped_key_usage

log = logging.getLogger("fedgate")
ADMIN_KEY_FILE_ENV = "FEDGATE_ADMIN_KEY_FILE"


@dataclass
class Mounts:
    """Mount configs and their adapters, created on first use (a backend that is down
    at start-up must not stop the gateway from serving the others)."""

    settings: Settings
    vault: KeyVault
    _adapters: dict[str, Adapter] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self, name: str) -> MountConfig:
        mount = self.settings.mount(name)
        if mount is None:
            raise CarminError(E.NO_MOUNT, f"no mount named {name!r}")
        return mount

    def adapter(self, mount: MountConfig) -> Adapter:
        with self._lock:
            adapter = self._adapters.get(mount.name)
            if adapter is None:
                try:
                    adapter = create_adapter(mount.type, mount.options)
                except BackendLoadError as exc:
                    log.error("mount %s cannot be loaded: %s", mount.name, exc)
                    raise CarminError(
                        E.UNAVAILABLE, f"{mount.name}: backend not available"
                    ) from None
                self._adapters[mount.name] = adapter
            return adapter

    def credential(self, mount: MountConfig, user: str) -> Credential | None:
        if mount.credential_source in ("none", "service"):
            return None
        stored = self.vault.get(user, mount.name)
        if stored is None:
            if mount.credential_source == "user":
                raise CarminError(
                    E.NO_STORAGE_KEY,
                    f"no credential stored for {mount.name!r}: PUT /user/externalKeys first",
                )
            return None
        # The vault keeps its own record type (tokens/ knows no adapter): converted here.
        return Credential(stored.kind, dict(stored.fields))

    def storage(self, mount: MountConfig, user: str) -> Storage:
        """Blocking (vault read, maybe a backend login): call from a worker thread."""
        return self.bind(mount, user)[0]

    def bind(self, mount: MountConfig, user: str) -> tuple[Storage, bool]:
        """The storage for ``user``, and whether it runs on the mount's own (service)
        credential. A service credential that is missing or refused is the operator's
        to fix, never the caller's: 503 naming the mount's options, not a 401."""
        adapter = self.adapter(mount)
        if not adapter.uses_credentials:
            return adapter.bind(None), False
        credential = self.credential(mount, user)
        try:
            return adapter.bind(credential), credential is None
        except AuthenticationFailed:
            if credential is not None:
                raise
            raise no_service_credential(mount) from None

    def storage_without_blocking(self, mount: MountConfig) -> Storage | None:
        """The storage, when getting it needs no I/O (adapter built, no credential).

        Saves a thread hop per request on credential-less mounts (the local folder)."""
        adapter = self._adapters.get(mount.name)
        if adapter is None or adapter.uses_credentials:
            return None
        return adapter.bind(None)

    def close(self) -> None:
        with self._lock:
            for adapter in self._adapters.values():
                try:
                    adapter.close()
                except Exception:
                    log.warning("closing a mount failed", exc_info=True)
            self._adapters.clear()


def no_service_credential(mount: MountConfig, refused: bool = False) -> CarminError:
    """The 503 of a mount whose service credential is missing (or refused)."""
    names = getattr(OPTIONS.get(mount.type), "service_credential", ())
    options = " / ".join(names) or "its credential options"
    what = "refused the mount's service credential" if refused else "has no service credential"
    fix = f"the gateway's operator must set {options} in [mounts.{mount.name}]"
    if mount.credential_source == "user-or-service" and not refused:
        fix = "store your own credential for it (PUT /user/externalKeys) or " + fix.replace(
            "must", "can"
        )
    storage = "the storage" if refused else "the mount"
    return CarminError(E.UNAVAILABLE, f"{mount.name}: {storage} {what}: {fix}")


def load_keyring(store: Store, env: dict[str, str], state_dir: Path) -> MasterKeys:
    """The master keyring, checked against what the state holds.

    A new key is only ever made on a state that holds no secret; a state whose secrets
    are wrapped under a key the keyring lacks is refused (MissingMasterKeyError, one
    line naming the key ids and where keys are read from) instead of serving 500s, and
    nothing is written, so restoring the key brings everything back."""
    usage = wrapped_key_usage(store)
    try:
        keys = MasterKeys.load(env, state_dir / DEFAULT_FILE, create=not usage)
    except MissingMasterKeyError as exc:
        ids = ", ".join(sorted(usage))
        raise MissingMasterKeyError(
            f"the state holds secrets wrapped under master key {ids}, but {exc}; restore "
            f"that key (keys are read from {SOURCES})"
        ) from None
    missing = sorted(set(usage) - set(keys.ids))
    if missing:
        raise MissingMasterKeyError(
            f"the state holds {sum(usage[k] for k in missing)} secrets wrapped under master "
            f"key {', '.join(missing)}, which the keyring read from {keys.source} lacks "
            f"(it has {', '.join(keys.ids)}); restore that key, current first or after it "
            f"(keys are read from {SOURCES})"
        )
    return keys


def _admin_key_from(env: dict[str, str]) -> tuple[str, str | None] | None:
    """``FEDGATE_ADMIN_KEY_FILE``: None if unset, else (path, its key or None if there
    is no such file); ConfigError, never echoing the file, if it is unreadable or not
    an API key."""
    name = env.get(ADMIN_KEY_FILE_ENV, "").strip()
    if not name:
        return None
    what = f"{name} ({ADMIN_KEY_FILE_ENV})"
    try:
        given = Path(name).read_text().strip()
    except FileNotFoundError:
        return name, None
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}") from None
    if not is_api_key(given):
        raise ConfigError(f"{what} does not hold an API key (fgk_<16 hex>_<20-128 of A-Za-z0-9_->)")
    return name, given


class Gateway:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        env = dict(os.environ if env is None else env)
        state_dir = Path(settings.state_dir)
        if not settings.database_url:
            state_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(state_dir, 0o700)
        self.store = Store.open(settings.database)
        self.store.upgrade()
        self.master_keys = load_keyring(self.store, env, state_dir)
        self.users = UserService(self.store)
        # Read (and checked) now, so that a bad file stops a start before anything else.
        self._admin_key = _admin_key_from(env) if self.users.count() == 0 else None
        self.vault = KeyVault(self.store, self.master_keys)
        self.tokens = TokenService(
            self.store,
            self.master_keys,
            issuer=settings.token_issuer,
            default_lifetime=settings.token_default_lifetime,
            max_lifetime=settings.token_max_lifetime,
            leeway=settings.token_leeway,
            audiences=settings.audiences,
        )
        self.audit = AuditLog(self.store, retention_days=settings.audit_retention_days)
        self.mounts = Mounts(settings, self.vault)
        self.grants = NativeGrants(self.store, self.master_keys, self.mounts, self.tokens)
        self._stopping = threading.Event()  # ends the background sweep (close)
        # Tokens of trusted external issuers (a VO's IAM): keys fetched in the background.
        self.jwks = JwksCache()
        self.external = (
            ExternalVerifier(settings.issuers, self.jwks, settings.audiences, settings.token_leeway)
            if settings.issuers
            else None
        )

    def start_background(self) -> None:
        """Work that may touch backends and must not delay start-up: a daemon thread
        retries native-grant deletions that failed and deletes expired grants, at start
        and then once a minute until ``close``."""
        threading.Thread(
            target=self.grants.sweep_forever, args=(self._stopping,), name="grant-sweep",
            daemon=True,
        ).start()  # fmt: skip
        self.jwks.prefetch(self.settings.issuers)

    def first_start(self) -> str | None:
        """With no user at all, create ``admin``; returns its key if it must be shown.

        With ``FEDGATE_ADMIN_KEY_FILE`` the key never reaches a log (a pod's log is kept
        and shipped): the admin gets the key in that file (an operator's Secret), and
        if there is no such file no admin is made at all, for the operator to run
        ``fedgate user add admin --admin`` where only they see the key."""
        if self.users.count() > 0:
            return None
        if self._admin_key is None:
            _, key = self.users.add_user("admin", admin=True)
            return key
        path, given = self._admin_key
        if given is None:
            log.info(
                "no user exists and %s names no file: create the first admin with "
                "`fedgate user add admin --admin`",
                ADMIN_KEY_FILE_ENV,
            )
            return None
        try:
            self.users.add_user("admin", admin=True, key=given)
        except AlreadyExistsError:  # another replica's first start won the race
            return None
        log.info("no user existed: user 'admin' was created with the API key in %s", path)
        return None

    def close(self) -> None:
        self._stopping.set()
        self.mounts.close()
        self.audit.close()
        self.store.close()
