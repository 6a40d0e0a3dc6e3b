"""The helpers every backend shares (adapters/common.py) and the feature detection of
adapters/base.py."""

from __future__ import annotations

import errno
import threading

import pytest

from adapters.base import (
    AlreadyExists,
    Delegation,
    Features,
    InvalidPath,
    NotFound,
    PermissionDenied,
    Revocable,
    features,
)
from adapters.common import ViewCache, credential_key, errno_error, mime_type


def test_mime_type_guesses_from_the_extension_and_falls_back_to_octet_stream() -> None:
    assert mime_type("a/b/notes.txt") == "text/plain"
    assert mime_type("scan.nii") == "application/octet-stream"
    assert mime_type("README") == "application/octet-stream"


def test_errno_error_maps_the_table_and_leaves_the_rest_to_the_caller() -> None:
    err = errno_error(errno.ENOENT, "a/b")
    assert isinstance(err, NotFound) and str(err) == "a/b: no such file or directory"
    assert isinstance(errno_error(errno.EEXIST, ""), AlreadyExists)
    assert str(errno_error(errno.EEXIST, "")) == "/: already exists"
    for code in (errno.EACCES, errno.EPERM, errno.EROFS):
        assert isinstance(errno_error(code, "x"), PermissionDenied)
    assert isinstance(errno_error(errno.ENAMETOOLONG, "x"), InvalidPath)
    assert errno_error(errno.ETIMEDOUT, "x") is None
    assert errno_error(None, "x") is None


def test_credential_key_is_a_digest_that_separates_the_parts() -> None:
    key = credential_key("access", "secret")
    assert "secret" not in key and len(key) == 64
    assert credential_key("ab", "c") != credential_key("a", "bc")


class View:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False
        self.busy = False


def test_the_least_recently_used_view_is_evicted_and_closed() -> None:
    cache: ViewCache[View] = ViewCache(lambda v: setattr(v, "closed", True), max_entries=2)
    a, b, c = View("a"), View("b"), View("c")
    assert cache.get("a", lambda: a) is a
    assert cache.get("b", lambda: b) is b
    assert cache.get("a", lambda: View("again")) is a  # a is now the most recent
    assert cache.get("c", lambda: c) is c
    assert b.closed and not a.closed and not c.closed
    assert len(cache) == 2 and cache.newest() is c


def test_a_busy_view_is_dropped_without_being_closed() -> None:
    cache: ViewCache[View] = ViewCache(
        lambda v: setattr(v, "closed", True), max_entries=1, busy=lambda v: v.busy
    )
    a = cache.get("a", lambda: View("a"))
    a.busy = True
    cache.get("b", lambda: View("b"))
    assert not a.closed and len(cache) == 1


def test_idle_views_expire_unless_busy() -> None:
    now = [0.0]
    cache: ViewCache[View] = ViewCache(
        lambda v: setattr(v, "closed", True),
        idle_timeout=10,
        busy=lambda v: v.busy,
        clock=lambda: now[0],
    )
    idle, streaming = cache.get("idle", lambda: View("i")), cache.get("s", lambda: View("s"))
    streaming.busy = True
    now[0] = 11
    fresh = cache.get("idle", lambda: View("fresh"))
    assert fresh is not idle and idle.closed
    assert not streaming.closed and cache.get("s", lambda: View("new")) is streaming


def test_two_threads_building_the_same_view_share_one_and_close_the_other() -> None:
    cache: ViewCache[View] = ViewCache(lambda v: setattr(v, "closed", True))
    both_building = threading.Barrier(2)
    built: list[View] = []

    def make() -> View:
        view = View("v")
        built.append(view)
        both_building.wait(timeout=10)
        return view

    got: list[View] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", make))) for _ in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got[0] is got[1] and len(built) == 2
    loser = built[0] if built[1] is got[0] else built[1]
    assert loser.closed and not got[0].closed


def test_close_all_closes_every_view_and_a_failing_close_does_not_stop_it() -> None:
    closed: list[str] = []

    def close(v: View) -> None:
        closed.append(v.name)
        if v.name == "a":
            raise OSError("already gone")

    cache: ViewCache[View] = ViewCache(close)
    cache.get("a", lambda: View("a"))
    cache.get("b", lambda: View("b"))
    cache.close_all()
    assert sorted(closed) == ["a", "b"] and len(cache) == 0


class Plain:
    pass


class Revoking:
    def revoke_delegation(self, delegation: Delegation) -> None:
        pass


def test_features_are_found_per_class() -> None:
    assert features(Plain()) == Features()
    assert features(Revoking()) == Features(revocable=True)
    assert isinstance(Revoking(), Revocable)


@pytest.mark.parametrize("bad", [0, -1])
def test_a_cache_holds_at_least_one_view(bad: int) -> None:
    with pytest.raises(ValueError):
        ViewCache(lambda v: None, max_entries=bad)
