"""The digest store (migrations 5 and 6) on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import pytest

from tokens.digests import DigestStore
from tokens.store import Store

MD5 = "0" * 31 + "1"
SHA = "a" * 64


def test_kept_replaced_and_forgotten(store: Store) -> None:
    digests = DigestStore(store)
    assert digests.get("m", "a/b") is None
    four = {"md5": MD5, "adler32": "0000abcd", "sha256": SHA, "crc32c": "0a72a4df"}
    digests.put("m", "a/b", "posix:1:2:3:4", four)
    kept = digests.get("m", "a/b")
    assert kept is not None and kept.identity == "posix:1:2:3:4"
    assert kept.values == four
    assert digests.get("other", "a/b") is None and digests.get("m", "a") is None
    # A new identity replaces the row whole: no value of the old bytes survives.
    digests.put("m", "a/b", "posix:9:9:9:9", {"sha256": SHA})
    kept = digests.get("m", "a/b")
    assert kept is not None and kept.identity == "posix:9:9:9:9"
    assert kept.values == {"sha256": SHA}
    digests.forget("m", "a/b")
    assert digests.get("m", "a/b") is None


def test_a_path_longer_than_an_index_entry_is_kept(store: Store) -> None:
    # The key is a hash: a 4096-byte path does not meet PostgreSQL's btree entry limit.
    path = "/".join(["x" * 255] * 16)
    DigestStore(store).put("m", path, "stat:1:2.0", {"md5": MD5})
    kept = DigestStore(store).get("m", path)
    assert kept is not None and kept.values == {"md5": MD5}


def test_unknown_algorithms_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        DigestStore(store).put("m", "p", "i", {"sha512": "00" * 64})
