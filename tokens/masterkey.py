"""The master keyring that encrypts every secret fedgate stores (vault, signing keys).

A keyring is the *current* key, which encrypts, followed by older keys, which only
decrypt what has not been re-wrapped yet. Each key is 32 random bytes (AES-256-GCM),
written in base64 and identified by the first 8 hex digits of its SHA-256, which is
stored next to each ciphertext and bound into its associated data.

The keyring comes from the environment or a file, never from the database: stealing
the database alone yields nothing. Rotation with running replicas: give every replica
``new,old`` (new current, old still readable), run ``KeyVault.rotate``, then drop ``old``.

A keyring read from a file follows that file without a restart: before encrypting, and
when a ciphertext names a key id it does not hold, it compares the file's identity
(device, inode, size, mtime) with what it last read and re-reads it if it changed. A
rotation therefore reaches every process and worker by rewriting the file (atomically:
write aside, rename over), and the hot path costs nothing while the key ids match.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import MissingMasterKeyError, VaultError

ENV_KEY = "FEDGATE_MASTER_KEY"
ENV_KEY_FILE = "FEDGATE_MASTER_KEY_FILE"
DEFAULT_FILE = "master.key"  # under state_dir
# For messages: where a keyring is looked for, in order.
SOURCES = f"{ENV_KEY}, else the file {ENV_KEY_FILE} names, else <state_dir>/{DEFAULT_FILE}"
_NONCE = 12

log = logging.getLogger("fedgate.masterkey")


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def vault_aad(user: str, storage_id: str) -> bytes:
    return b"fedgate-vault/v1\0" + user.encode() + b"\0" + storage_id.encode()


def signing_key_aad(kid: str) -> bytes:
    return b"fedgate-signing-key/v1\0" + kid.encode()


def native_grant_aad(jti: str, mount: str) -> bytes:
    return b"fedgate-native-grant/v1\0" + jti.encode() + b"\0" + mount.encode()


def _decode_key(text: str, where: str, index: int) -> bytes:
    text = text.strip()
    try:
        std = text.replace("-", "+").replace("_", "/")
        raw = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        # Say which entry is wrong, never what it holds.
        raise VaultError(
            f"master key #{index + 1} from {where} is not base64 of 32 bytes "
            "(make one with `fedgate vault genkey`)"
        )
    return raw


@dataclass(frozen=True)
class _Ring:
    ids: tuple[str, ...]
    by_id: Mapping[str, AESGCM]


def _ring(keys: Sequence[bytes]) -> _Ring:
    unique: list[bytes] = []
    for k in keys:
        if len(k) != 32:
            raise VaultError("a master key must be 32 bytes")
        if k not in unique:
            unique.append(k)
    if not unique:
        raise VaultError("the master keyring is empty")
    return _Ring(tuple(key_id_of(k) for k in unique), {key_id_of(k): AESGCM(k) for k in unique})


def _file_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)  # follows symlinks: a Kubernetes Secret volume swaps one
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _parse_entries(text: str, where: str) -> list[bytes]:
    entries: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        entries.extend(e for e in line.split(",") if e.strip())
    return [_decode_key(e, where, i) for i, e in enumerate(entries)]


class MasterKeys:
    """An ordered keyring: the first key encrypts, all of them decrypt; thread-safe.

    ``source`` says where the keys came from (for messages); with ``path`` the keyring
    follows that file (see the module docstring)."""

    def __init__(
        self, keys: Sequence[bytes], *, source: str = "configuration", path: Path | None = None
    ) -> None:
        self._ring = _ring(keys)
        self.source = source
        self._path = path
        self._identity = _file_identity(path) if path is not None else None
        self._reload_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MasterKeys(current={self.current_id}, ids={list(self._ring.ids)})"

    @property
    def current_id(self) -> str:
        return self._ring.ids[0]

    @property
    def ids(self) -> list[str]:
        return list(self._ring.ids)

    @property
    def path(self) -> Path | None:
        return self._path

    def merged(self, other: MasterKeys) -> MasterKeys:
        """A fixed keyring encrypting with ``self``'s current key and decrypting with both."""
        mine, theirs = self._ring, other._ring
        merged = MasterKeys.__new__(MasterKeys)
        merged._ring = _Ring(
            mine.ids + tuple(i for i in theirs.ids if i not in mine.ids),
            {**theirs.by_id, **mine.by_id},
        )
        merged.source = self.source
        merged._path = None
        merged._identity = None
        merged._reload_lock = threading.Lock()
        return merged

    def refresh(self) -> bool:
        """Re-read the key file if it changed since it was read; True if the keys changed.

        A file that cannot be read or parsed leaves the loaded keys in place (an operator
        may be halfway through replacing it by hand): the failure is logged, never the
        file's content, and the next change is tried again."""
        path = self._path
        if path is None:
            return False
        identity = _file_identity(path)
        if identity == self._identity:
            return False
        with self._reload_lock:
            if identity == self._identity:
                return False
            try:
                ring = _ring(_parse_entries(path.read_text(), str(path)))
            except (OSError, VaultError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                log.warning("master key file %s changed but was not loaded: %s", path, reason)
                self._identity = identity
                return False
            self._identity = identity
            changed = ring.ids != self._ring.ids
            self._ring = ring
        if changed:
            log.info("master keyring reloaded from %s: current key %s", path, ring.ids[0])
        return changed

    # -- loading -----------------------------------------------------------------------

    @staticmethod
    def generate() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    @staticmethod
    def parse(text: str, where: str = "configuration") -> MasterKeys:
        """Keys separated by commas or newlines, current first; ``#`` starts a comment."""
        return MasterKeys(_parse_entries(text, where), source=where)

    @staticmethod
    def load(
        env: Mapping[str, str], default_file: Path | None, *, create: bool = True
    ) -> MasterKeys:
        """From ``FEDGATE_MASTER_KEY``, else ``FEDGATE_MASTER_KEY_FILE``, else ``default_file``.

        ``default_file`` is created (mode 0600, one random key) if it does not exist and
        ``create`` is true, which suits a single embedded gateway on empty state; replicas
        must all get the same keys. A keyring read from a file follows that file.
        """
        if env.get(ENV_KEY, "").strip():
            return MasterKeys(_parse_entries(env[ENV_KEY], ENV_KEY), source=ENV_KEY)
        if env.get(ENV_KEY_FILE, "").strip():
            path = Path(env[ENV_KEY_FILE])
            return MasterKeys._from_file(path, f"{path} ({ENV_KEY_FILE})")
        if default_file is None:
            raise VaultError(f"no master key: set {ENV_KEY} or {ENV_KEY_FILE}")
        if not create and not default_file.exists():
            raise MissingMasterKeyError(
                f"{default_file} does not exist and neither {ENV_KEY} nor {ENV_KEY_FILE} is set"
            )
        _read_or_create(default_file)
        return MasterKeys._from_file(default_file, str(default_file))

    @staticmethod
    def _from_file(path: Path, source: str) -> MasterKeys:
        identity = _file_identity(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise VaultError(f"cannot read master key file {path}: {e.strerror}") from e
        keys = MasterKeys(_parse_entries(text, str(path)), source=source, path=path)
        # The identity from before the read: a change during the read is seen next time.
        keys._identity = identity
        return keys

    # -- AEAD --------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """AES-256-GCM under the current key; returns (key id, nonce || ciphertext)."""
        self.refresh()  # a rotation elsewhere may have made another key current
        ring = self._ring
        kid = ring.ids[0]
        nonce = secrets.token_bytes(_NONCE)
        return kid, nonce + ring.by_id[kid].encrypt(nonce, plaintext, aad + b"\0" + kid.encode())

    def decrypt(self, key_id: str, blob: bytes, aad: bytes, what: str = "a secret") -> bytes:
        aead = self._ring.by_id.get(key_id)
        if aead is None:
            # Look again whatever refresh() answers: another thread may have loaded the
            # changed file between our lookup and this call (then refresh() sees nothing
            # new and returns False, yet the ring now holds the key).
            self.refresh()
            aead = self._ring.by_id.get(key_id)
        if aead is None:
            raise MissingMasterKeyError(
                f"{what} is encrypted with master key {key_id}, which is not in the keyring "
                f"read from {self.source} ({', '.join(self._ring.ids)}): add that key after "
                f"the current one (keys are read from {SOURCES})"
            )
        blob = bytes(blob)
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad + b"\0" + key_id.encode())
        except InvalidTag as e:
            raise VaultError(
                f"cannot decrypt {what} with master key {key_id}: the key is wrong or "
                "the stored data was altered"
            ) from e


def _read_or_create(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        pass
    except OSError as e:
        raise VaultError(f"cannot read master key file {path}: {e.strerror}") from e
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then hard-linked into place: a concurrent reader sees either no
    # file or a complete one, and of two racing creators exactly one wins.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(MasterKeys.generate() + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text()
