"""The master keyring (tokens/masterkey.py): the stored format other versions must read,
the key file's creation, and what its messages say."""

from __future__ import annotations

import base64
import os
import pathlib
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokens import masterkey
from tokens.errors import MissingMasterKeyError, VaultError
from tokens.masterkey import (
    MasterKeys,
    key_id_of,
    native_grant_aad,
    signing_key_aad,
    vault_aad,
)

RAW = bytes(range(32))
KEY = base64.b64encode(RAW).decode()


def _sealed(associated: bytes, plaintext: bytes) -> tuple[str, bytes]:
    """A ciphertext made by hand the way the module docstring and decisions describe
    it: AES-256-GCM, ``nonce || ciphertext``, associated data ``<purpose> \\0 key id``."""
    kid = key_id_of(RAW)
    nonce = b"\x01" * 12
    return kid, nonce + AESGCM(RAW).encrypt(nonce, plaintext, associated + b"\0" + kid.encode())


@pytest.mark.parametrize(
    ("make", "args", "written"),
    [
        (vault_aad, ("alice", "s3"), b"fedgate-vault/v1\0alice\0s3"),
        (signing_key_aad, ("kid-1",), b"fedgate-signing-key/v1\0kid-1"),
        (native_grant_aad, ("jti-1", "irods"), b"fedgate-native-grant/v1\0jti-1\0irods"),
    ],
)
def test_stored_format_is_stable(
    make: Callable[..., bytes], args: tuple[str, ...], written: bytes
) -> None:
    """Every vault, signing key and grant already stored was sealed with these bytes:
    a change here makes them all unreadable. (The associated data is made inside the
    test, not in its parameters: those are built once, at collection.)"""
    kid, blob = _sealed(written, b"secret")
    assert MasterKeys.parse(KEY).decrypt(kid, blob, make(*args)) == b"secret"
    assert key_id_of(RAW) == "630dcd29"  # sha-256 of bytes 0..31, first 8 hex digits


def test_associated_data_keeps_its_parts_apart() -> None:
    # User and storage are separated by NUL, which neither may contain (the vault
    # refuses a storage id with NUL; user names are [A-Za-z0-9._@-]).
    assert vault_aad("ab", "c") != vault_aad("a", "bc")
    assert native_grant_aad("ab", "c") != native_grant_aad("a", "bc")


def test_generated_keys_are_32_random_bytes() -> None:
    a, b = MasterKeys.generate(), MasterKeys.generate()
    assert len(base64.b64decode(a)) == 32 and a != b


def test_messages_name_where_a_bad_key_came_from(tmp_path: Path) -> None:
    with pytest.raises(VaultError) as parsed:
        MasterKeys.parse("not a key")
    assert str(parsed.value) == (
        "master key #1 from configuration is not base64 of 32 bytes "
        "(make one with `fedgate vault genkey`)"
    )
    bad_file = tmp_path / "keys"
    bad_file.write_text(f"{KEY}\nnot a key\n")
    with pytest.raises(VaultError, match=rf"^master key #2 from {bad_file} is not base64"):
        MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(bad_file)}, None)
    with pytest.raises(VaultError, match=rf"^cannot read master key file {tmp_path}: "):
        MasterKeys.load({}, tmp_path)  # a folder where the key file should be


def test_missing_key_message_names_the_keyring_source() -> None:
    other = MasterKeys.parse(MasterKeys.generate(), "the test's keyring")
    kid, blob = other.encrypt(b"x", b"aad")
    with pytest.raises(MissingMasterKeyError, match="read from the test's keyring"):
        MasterKeys.parse(KEY, "the test's keyring").decrypt(kid, blob, b"aad")
    merged = MasterKeys.parse(KEY, "the new keyring").merged(MasterKeys.parse(KEY))
    with pytest.raises(MissingMasterKeyError, match="read from the new keyring"):
        merged.decrypt(kid, blob, b"aad")


def test_merged_keyring_lists_both_current_first() -> None:
    new, old = MasterKeys.generate(), MasterKeys.generate()
    mine, theirs = MasterKeys.parse(new), MasterKeys.parse(f"{old},{new}")
    merged = mine.merged(theirs)
    assert merged.ids == [mine.current_id, theirs.current_id]
    assert merged.path is None and not merged.refresh()
    kid, blob = theirs.encrypt(b"old secret", b"aad")
    assert merged.decrypt(kid, blob, b"aad") == b"old secret"
    assert merged.encrypt(b"x", b"aad")[0] == mine.current_id


def test_default_file_made_in_a_new_folder(tmp_path: Path) -> None:
    default = tmp_path / "state" / "deeper" / "master.key"
    keys = MasterKeys.load({}, default)
    assert default.read_text().strip() and keys.path == default


def test_a_creator_that_loses_the_race_reads_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways start on the same empty state: both see no file, both write one
    aside, one link wins; the other must take the winner's key, not fail or keep its
    own, and leave no temporary file."""
    default = tmp_path / "master.key"
    default.write_text(KEY + "\n")  # the winner's, linked in after our first look
    real_read = pathlib.Path.read_text
    looked: list[Path] = []

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == default and not looked:
            looked.append(self)
            raise FileNotFoundError(self)
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    assert masterkey._read_or_create(default) == KEY + "\n"
    assert looked == [default]
    assert sorted(os.listdir(tmp_path)) == ["master.key"]
