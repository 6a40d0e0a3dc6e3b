from __future__ import annotations

import pytest

from tokens.errors import ScopeError
from tokens.scopes import (
    Scope,
    covers,
    find_match,
    format_scopes,
    is_subset,
    normalise_path,
    parse_scopes,
    touches,
)


def test_parse_and_format_round_trip() -> None:
    text = "storage.read:/a storage.create:/b/c  storage.modify:/"
    scopes = parse_scopes(text)
    assert scopes == [Scope("read", "/a"), Scope("create", "/b/c"), Scope("modify", "/")]
    assert format_scopes(scopes) == "storage.read:/a storage.create:/b/c storage.modify:/"
    assert parse_scopes(format_scopes(scopes)) == scopes
    assert parse_scopes("") == []
    assert parse_scopes("storage.read:/a storage.read:/a/") == [Scope("read", "/a")]


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("/a/", "/a"), ("//a//b", "/a/b"), ("/a/./b", "/a/b"), ("/", "/"), ("///", "/")],
)
def test_normalisation(raw: str, norm: str) -> None:
    assert normalise_path(raw) == norm
    assert parse_scopes(f"storage.read:{raw}") == [Scope("read", norm)]


@pytest.mark.parametrize(
    "bad",
    [
        "storage.read:/a/../b",
        "storage.read:/..",
        "storage.read:a",
        "storage.read:",
        "storage.read",
        "storage.write:/a",
        "storage.stage:/a",
        "openid",
        "storage.READ:/a",
        "compute.read:/a",
        "storage.read:/a\\b",
        "storage.read:/a\x00b",
        "storage.read:/" + "x" * 2000,
    ],
)
def test_bad_grammar(bad: str) -> None:
    with pytest.raises(ScopeError):
        parse_scopes(bad)


def test_scope_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        parse_scopes("nope")


def test_scope_constructor_refuses_unnormalised() -> None:
    with pytest.raises(ScopeError):
        Scope("read", "/a/")
    with pytest.raises(ScopeError):
        Scope("write", "/a")


def test_path_prefix_rules() -> None:
    s = Scope("read", "/a")
    assert covers(s, "read", "/a")
    assert covers(s, "read", "/a/x")
    assert covers(s, "read", "/a/x/y")
    assert covers(s, "read", "/a/")
    assert covers(s, "read", "//a//x")
    assert not covers(s, "read", "/ab")
    assert not covers(s, "read", "/")
    assert not covers(s, "read", "/b")
    assert not covers(s, "read", "/a/../b")
    assert not covers(s, "read", "/a/..")
    assert not covers(s, "read", "a/x")
    assert covers(Scope("read", "/"), "read", "/anything/below")


def test_activity_rules() -> None:
    create, modify, read = Scope("create", "/a"), Scope("modify", "/a"), Scope("read", "/a")
    assert covers(create, "create", "/a/f")
    assert not covers(create, "modify", "/a/f")
    assert not covers(create, "read", "/a/f")
    assert covers(modify, "modify", "/a/f")
    assert covers(modify, "create", "/a/f")
    assert not covers(modify, "read", "/a/f")
    assert not covers(read, "create", "/a/f")
    assert not covers(read, "modify", "/a/f")
    with pytest.raises(ScopeError):
        covers(read, "delete", "/a")


def test_find_match() -> None:
    scopes = parse_scopes("storage.read:/a storage.modify:/b")
    assert find_match(scopes, "read", "/a/x") == Scope("read", "/a")
    assert find_match(scopes, "create", "/b/new") == Scope("modify", "/b")
    assert find_match(scopes, "read", "/b/x") is None
    assert find_match(scopes, "create", "/ab") is None


def test_is_subset_never_widens() -> None:
    held = parse_scopes("storage.read:/a storage.modify:/b/c")
    assert is_subset(parse_scopes("storage.read:/a/x"), held)
    assert is_subset(parse_scopes("storage.read:/a storage.create:/b/c/d"), held)
    assert is_subset(parse_scopes("storage.modify:/b/c"), held)
    assert is_subset([], held)
    assert not is_subset(parse_scopes("storage.read:/"), held)  # wider path
    assert not is_subset(parse_scopes("storage.read:/ab"), held)
    assert not is_subset(parse_scopes("storage.create:/a"), held)  # other activity
    assert not is_subset(parse_scopes("storage.modify:/b"), held)  # wider path
    assert not is_subset(parse_scopes("storage.read:/b/c"), held)  # modify ⊉ read
    assert not is_subset(parse_scopes("storage.modify:/a/x"), parse_scopes("storage.create:/a"))


def test_touches_and_mount() -> None:
    assert touches(Scope("read", "/s3/x"), "/s3")
    assert touches(Scope("read", "/"), "/s3")
    assert touches(Scope("read", "/s3"), "/s3/")
    assert not touches(Scope("read", "/s3x"), "/s3")
    assert Scope("read", "/s3/x").mount == "s3"
    assert Scope("read", "/").mount is None


def test_paths_with_spaces_round_trip_percent_encoded() -> None:
    scopes = parse_scopes("storage.read:/local/my%20data storage.create:/local/100%25")
    assert [s.path for s in scopes] == ["/local/my data", "/local/100%"]
    assert format_scopes(scopes) == "storage.read:/local/my%20data storage.create:/local/100%25"
    assert parse_scopes(format_scopes(scopes)) == scopes
    assert covers(scopes[0], "read", "/local/my data/file name.txt")
    assert not covers(scopes[0], "read", "/local/my datas")
    assert parse_scopes("storage.read:/a/%E3%80%80b")[0].path == "/a/\u3000b"
    assert str(parse_scopes("storage.read:/a/%E3%80%80b")[0]) == "storage.read:/a/%E3%80%80b"
    with pytest.raises(ScopeError):
        parse_scopes("storage.read:/local/%2e%2e/etc")
