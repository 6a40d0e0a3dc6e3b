"""The master keyring that encrypts every secret fedgate stores (vault, signing keys).

A keyring is the *current* key, which encrypts, followed by older keys, which only
decrypt what has not been re-wrapped yet. Each key is 32 random bytes (AES-256-GCM),
written in base64 and identified by the first 8 hex digits of its SHA-256, which is
stored next to each ciphertext and bound into its associated data.

The keyring comes from the environment or a file, never from the database: stealing
the database alone yields nothing. Rotation with running replicas: give every replica
``new,old`` (new current, old still readable), run ``KeyVault.rotate``, then drop ``old``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import VaultError

ENV_KEY = "FEDGATE_MASTER_KEY"
ENV_KEY_FILE = "FEDGATE_MASTER_KEY_FILE"
_NONCE = 12


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def vault_aad(user: str, storage_id: str) -> bytes:
    return b"fedgate-vault/v1\0" + user.encode() + b"\0" + storage_id.encode()


def signing_key_aad(kid: str) -> bytes:
    return b"fedgate-signing-key/v1\0" + kid.encode()


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


class MasterKeys:
    """An ordered keyring: ``keys[0]`` encrypts, all of them decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        unique: list[bytes] = []
        for k in keys:
            if len(k) != 32:
                raise VaultError("a master key must be 32 bytes")
            if k not in unique:
                unique.append(k)
        if not unique:
            raise VaultError("the master keyring is empty")
        self._by_id = {key_id_of(k): AESGCM(k) for k in unique}
        self._ids = [key_id_of(k) for k in unique]

    def __repr__(self) -> str:
        return f"MasterKeys(current={self.current_id}, ids={self._ids})"

    @property
    def current_id(self) -> str:
        return self._ids[0]

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    def merged(self, other: MasterKeys) -> MasterKeys:
        """A keyring encrypting with ``self``'s current key and decrypting with both."""
        merged = MasterKeys.__new__(MasterKeys)
        merged._ids = self._ids + [i for i in other._ids if i not in self._ids]
        merged._by_id = {**other._by_id, **self._by_id}
        return merged

    # -- loading -----------------------------------------------------------------------

    @staticmethod
    def generate() -> str:
        return base64.b64encode(secrets.token_bytes(32)).decode()

    @staticmethod
    def parse(text: str, where: str = "configuration") -> MasterKeys:
        """Keys separated by commas or newlines, current first; ``#`` starts a comment."""
        entries: list[str] = []
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            entries.extend(e for e in line.split(",") if e.strip())
        return MasterKeys([_decode_key(e, where, i) for i, e in enumerate(entries)])

    @staticmethod
    def load(env: Mapping[str, str], default_file: Path | None) -> MasterKeys:
        """From ``FEDGATE_MASTER_KEY``, else ``FEDGATE_MASTER_KEY_FILE``, else ``default_file``.

        ``default_file`` is created (mode 0600, one random key) if it does not exist,
        which suits a single embedded gateway; replicas must all get the same keys.
        """
        if env.get(ENV_KEY, "").strip():
            return MasterKeys.parse(env[ENV_KEY], ENV_KEY)
        if env.get(ENV_KEY_FILE, "").strip():
            path = Path(env[ENV_KEY_FILE])
            try:
                return MasterKeys.parse(path.read_text(), str(path))
            except OSError as e:
                raise VaultError(f"cannot read master key file {path}: {e.strerror}") from e
        if default_file is None:
            raise VaultError(f"no master key: set {ENV_KEY} or {ENV_KEY_FILE}")
        return MasterKeys.parse(_read_or_create(default_file), str(default_file))

    # -- AEAD --------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[str, bytes]:
        """AES-256-GCM under the current key; returns (key id, nonce || ciphertext)."""
        kid = self._ids[0]
        nonce = secrets.token_bytes(_NONCE)
        return kid, nonce + self._by_id[kid].encrypt(nonce, plaintext, aad + b"\0" + kid.encode())

    def decrypt(self, key_id: str, blob: bytes, aad: bytes, what: str = "a secret") -> bytes:
        aead = self._by_id.get(key_id)
        if aead is None:
            raise VaultError(
                f"{what} is encrypted with master key {key_id}, which is not in the "
                f"loaded keyring ({', '.join(self._ids)}): configure that key "
                f"(as an old key after the current one) in {ENV_KEY}"
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
