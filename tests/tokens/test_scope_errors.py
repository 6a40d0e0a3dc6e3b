"""What a refused scope says, and the limits at their exact edge: the message reaches the
caller (``invalid_scope`` in the token answer), so it is part of the contract."""

from __future__ import annotations

import pytest

from tokens.errors import ScopeError
from tokens.scopes import Scope, covers, normalise_path, parse_scopes


@pytest.mark.parametrize(
    "text, message",
    [
        ("storage.read:relative", "a scope path must start with '/'"),
        ("storage.read:/a/../b", "a scope path may not contain '..'"),
        ("storage.read:/a%00b", "a scope path may not hold control characters or '\\'"),
        ("storage.read:/a%5Cb", "a scope path may not hold control characters or '\\'"),
        ("storage.read:/" + "a" * 1024, "a scope path is limited to 1024 characters"),
        ("storage.delete:/a", "unknown storage activity 'delete'"),
        (
            "storage.abcdefghijklmnopqrstuvwxyz:/a",
            "unknown storage activity 'abcdefghijklmnopqrst'",
        ),
        (
            "openid",
            "unsupported scope 'openid': expected storage.read:/path, "
            "storage.create:/path or storage.modify:/path",
        ),
    ],
)
def test_each_refusal_says_why(text: str, message: str) -> None:
    with pytest.raises(ScopeError) as caught:
        parse_scopes(text)
    assert str(caught.value) == message


def test_a_long_bad_scope_is_quoted_in_part() -> None:
    item = "x" * 200
    with pytest.raises(ScopeError) as caught:
        parse_scopes(item)
    assert str(caught.value).startswith(f"unsupported scope {item[:80]!r}:")


def test_not_a_string() -> None:
    with pytest.raises(ScopeError) as caught:
        parse_scopes(b"storage.read:/a")  # type: ignore[arg-type]
    assert str(caught.value) == "scope must be a string"


def test_the_path_limit_is_inclusive() -> None:
    edge = "/" + "a" * 1023  # 1024 characters
    assert normalise_path(edge) == edge
    with pytest.raises(ScopeError):
        normalise_path(edge + "a")


def test_the_scope_count_limit_is_inclusive() -> None:
    sixty_four = " ".join(f"storage.read:/m/{i}" for i in range(64))
    assert len(parse_scopes(sixty_four)) == 64
    with pytest.raises(ScopeError) as caught:
        parse_scopes(sixty_four + " storage.read:/m/64")
    assert str(caught.value) == "at most 64 scopes per token"


def test_a_scope_built_by_hand_must_be_valid() -> None:
    with pytest.raises(ScopeError) as caught:
        Scope("write", "/a")
    assert str(caught.value) == "unknown storage activity 'write'"
    with pytest.raises(ScopeError) as caught:
        Scope("read", "/a/")
    assert str(caught.value) == "scope path must be normalised (use parse_scopes)"


def test_an_unknown_activity_asked_for_is_an_error() -> None:
    with pytest.raises(ScopeError) as caught:
        covers(Scope("read", "/a"), "delete", "/a")
    assert str(caught.value) == "unknown storage activity 'delete'"
