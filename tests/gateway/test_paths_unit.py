"""gateway/api/paths.py on its own: what each refusal says (it is the error message the
caller reads), and the helpers the routes build paths with."""

from __future__ import annotations

import pytest

from gateway.api import paths
from gateway.errors import CarminError


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("local/a//b", "empty, '.' and '..' segments are not allowed"),
        ("local/a/../b", "empty, '.' and '..' segments are not allowed"),
        ("local/a\x01", "control characters and backslashes are not allowed"),
        ("local/a\\b", "control characters and backslashes are not allowed"),
        ("local/dot.", "a name may not end with a dot or a space"),
        ("local/space ", "a name may not end with a dot or a space"),
        ("local/.", "empty, '.' and '..' segments are not allowed"),
        ("local/a\udcff", "not valid UTF-8"),  # a lone surrogate (surrogateescape)
        ("local/" + "n" * 256, "a name is longer than 255 bytes"),
        ("local/e\u0301", "names must be in Unicode NFC form"),
        ("local/" + "/".join(["d"] * 2100), "longer than 4096 bytes"),
    ],
)
def test_each_refusal_says_why(raw: str, reason: str) -> None:
    with pytest.raises(CarminError) as caught:
        paths.parse(raw)
    assert caught.value.message == f"invalid path: {reason}"
    assert caught.value.spec.status == 400


def test_raw_paths() -> None:
    for bad in (b"/local/a%2fb", b"/local/a%5Cb", b"/local/a%00"):
        with pytest.raises(CarminError) as caught:
            paths.check_raw(bad)
        assert caught.value.message == "invalid path: encoded '/', '\\' or NUL is not allowed"
    with pytest.raises(CarminError) as caught:
        paths.check_raw(b"/local/%ff")
    assert caught.value.message == "invalid path: not valid UTF-8"
    paths.check_raw(b"/local/caf%C3%A9")


def test_limits_at_their_edge() -> None:
    assert paths.parse("local/" + "n" * 255).inner == "n" * 255
    edge = "local/" + "/".join(["d"] * 2045)  # 6 + 2 * 2045 - 1 = 4095 bytes
    assert len(edge.encode()) <= paths.MAX_PATH
    assert paths.parse(edge).mount == "local"
    exact = "local/" + "/".join(["d"] * 2044 + ["dd"])  # MAX_PATH bytes exactly: accepted
    assert len(exact.encode()) == paths.MAX_PATH
    assert paths.parse(exact).inner.endswith("/dd")
    with pytest.raises(CarminError):
        paths.parse(exact + "d")


def test_child_and_scope_paths() -> None:
    root = paths.parse("local")
    assert root.inner == "" and root.platform_path == "/local"
    assert root.child("a") == paths.CarminPath("local", "a")
    assert root.child("a").child("b") == paths.CarminPath("local", "a/b")
    assert paths.parse_scope_path("/local/a/") == paths.CarminPath("local", "a")
    assert paths.parse("/") == paths.CarminPath("", "") and paths.parse("/").is_root
