"""Each backend's optional features as adapters/base.py declares them: what the gateway
finds with ``features()`` is what the backend implements, and nothing more (a method
named like a protocol's would make the gateway call it)."""

from __future__ import annotations

from pathlib import Path

from adapters.base import Features, KeepsMd5, LocalFill, SocketHandOff, features
from adapters.irods import IrodsStorage, IrodsWriter
from adapters.irods.tickets import Server
from adapters.posix import PosixStorage, PosixWriter
from adapters.response_socket import ResponseStream
from adapters.s3 import S3Settings, S3Storage, S3Writer


def test_a_local_folder_resolves_links_serves_files_and_renames(tmp_path: Path) -> None:
    storage = PosixStorage(tmp_path)
    assert features(storage) == Features(link_resolver=True, local_files=True, renaming=True)
    assert storage.capabilities.read_ahead == 0 and storage.capabilities.inline_stat


def test_an_s3_bucket_names_its_objects_versions_and_hands_its_socket_over() -> None:
    storage = S3Storage(None, S3Settings.from_options({"bucket": "b"}))  # type: ignore[arg-type]
    assert features(storage) == Features(content_versions=True)
    assert storage.capabilities.read_ahead == 0
    assert issubclass(ResponseStream, SocketHandOff)


def test_irods_delegates_and_revokes_and_reads_ahead() -> None:
    storage = IrodsStorage(None, "/zone/home/a", 500, Server("h", 1247, "zone"))
    assert features(storage) == Features(delegating=True, revocable=True)
    assert storage.capabilities.read_ahead == 1


def test_only_the_local_folder_writer_fills_from_a_local_file() -> None:
    assert issubclass(PosixWriter, LocalFill)
    assert not issubclass(S3Writer, LocalFill) and not issubclass(IrodsWriter, LocalFill)


def test_only_the_local_folder_writer_hashes_md5_itself() -> None:
    # The gateway's digests then take its md5 instead of hashing the bytes a second time.
    assert issubclass(PosixWriter, KeepsMd5)
    assert not issubclass(S3Writer, KeepsMd5) and not issubclass(IrodsWriter, KeepsMd5)
