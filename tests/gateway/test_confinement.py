"""Confinement, property-tested: whatever path hypothesis makes up (names, ``.`` and ``..``,
empty segments, symlinks in and out, the sibling folder whose name starts with the mount
root's, Unicode look-alikes of ``.`` and ``/``, percent-encodings), no request reads or
writes outside the mount root. Checked on the file system (every byte outside the root
is unchanged, nothing appears there) and on what comes back (the secret outside never
does), not on status codes.

Layout: ``x/data`` is the mount root; ``x/data2`` is a sibling sharing its prefix;
``x/secret.txt`` sits beside them; links inside the root point out (``../data2``, an
absolute path, ``..``) and in (``sub``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.base import StorageError
from adapters.posix import PosixStorage
from tests.server import Running, local_settings, running

SECRET = b"SECRET-OUTSIDE-THE-MOUNT"
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SEGMENTS = st.sampled_from(
    [
        "..",
        ".",
        "",
        "sub",
        "file.txt",
        "data2",
        "data",
        "secret.txt",
        "link_out",  # -> ../data2
        "link_abs",  # -> /…/x/secret.txt
        "link_up",  # -> ..
        "link_in",  # -> sub (stays inside)
        "link_loop",  # -> link_loop
        "\u2024\u2024",  # ONE DOT LEADER twice: looks like ..
        "\uff0e\uff0e",  # FULLWIDTH FULL STOP twice
        "a\u2215..",  # DIVISION SLASH
        "a\uff0f..",  # FULLWIDTH SOLIDUS
        "e\u0301",  # NFD é
        "%2e%2e",
        "..%2f",
        "x" * 300,
    ]
)
# The traps, which hypothesis draws often (then anything: names, look-alikes, text).
TRAPS = ["link_out", "link_abs", "link_up", "link_in", "link_loop", "..", "data2", "sub"]
HEADS = st.lists(
    st.one_of(st.sampled_from(TRAPS), SEGMENTS, st.text(min_size=1, max_size=8)),
    min_size=1,
    max_size=3,
)
TAILS = st.lists(
    st.one_of(st.sampled_from(["secret.txt", "file.txt"]), st.text(min_size=1, max_size=8)),
    max_size=1,
)
# Every trap followed by every name to reach for, always (not left to the draw).
PAIRS = [[a, b] for a in TRAPS for b in ("secret.txt", "file.txt", "data2")] + [[a] for a in TRAPS]
PATHS = st.builds(lambda head, tail: head + tail, HEADS, TAILS)


def outside_state(x: Path, root: Path) -> dict[str, bytes | None]:
    """Everything under ``x`` that is not under the mount root (links not followed)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(x):
        d = Path(dirpath)
        if d == root or root in d.parents:
            dirnames[:] = []
            continue
        for name in dirnames:
            out[str((d / name).relative_to(x))] = None
        for name in filenames:
            p = d / name
            if p != root:
                out[str(p.relative_to(x))] = p.read_bytes()
    return out


def reset_root(x: Path) -> None:
    """Put the inside of the mount back as make_layout left it (requests may write there)."""
    import shutil

    root = x / "data"
    for child in list(root.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    _fill_root(x, root)


def make_layout(x: Path) -> Path:
    root = x / "data"
    root.mkdir()
    (x / "data2").mkdir()
    (x / "data2" / "secret.txt").write_bytes(SECRET)
    (x / "data2" / "file.txt").write_bytes(SECRET)
    (x / "secret.txt").write_bytes(SECRET)
    _fill_root(x, root)
    return root


def _fill_root(x: Path, root: Path) -> None:
    (root / "sub").mkdir()
    (root / "file.txt").write_bytes(b"inside")
    (root / "sub" / "file.txt").write_bytes(b"inside sub")
    os.symlink("../data2", root / "link_out")
    os.symlink(str(x / "secret.txt"), root / "link_abs")
    os.symlink("..", root / "link_up")
    os.symlink("sub", root / "link_in")
    os.symlink("link_loop", root / "link_loop")


# --- the adapter alone ------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    x = tmp_path_factory.mktemp("x")
    return x, make_layout(x)


ADAPTER_OPS = ["read", "stat", "list", "write", "mkdir", "delete"]


@pytest.mark.parametrize("op", ADAPTER_OPS)
def test_the_adapter_never_leaves_its_root_through_a_trap(
    layout: tuple[Path, Path], op: str
) -> None:
    for parts in PAIRS:
        adapter_request(layout, parts, op)


@SETTINGS
@given(parts=PATHS, op=st.sampled_from(ADAPTER_OPS))
def test_the_adapter_never_leaves_its_root(
    layout: tuple[Path, Path], parts: list[str], op: str
) -> None:
    adapter_request(layout, parts, op)


def adapter_request(layout: tuple[Path, Path], parts: list[str], op: str) -> None:
    x, root = layout
    reset_root(x)
    before = outside_state(x, root)
    storage = PosixStorage(root)
    path = "/".join(parts)
    got = b""
    try:
        if op == "read":
            got = b"".join(storage.open_read(path, 0, None))
        elif op == "stat":
            got = repr(storage.stat(path)).encode()
        elif op == "list":
            got = repr(list(storage.list(path))).encode()
        elif op == "write":
            w = storage.open_write(path, 3)
            try:
                w.write(b"new")
                w.commit()
            except BaseException:
                w.abort()
                raise
        elif op == "mkdir":
            storage.mkdir(path)
        else:
            storage.delete(path)
    except (StorageError, OSError, ValueError):
        pass
    assert SECRET not in got
    assert outside_state(x, root) == before
    assert (x / "secret.txt").read_bytes() == SECRET, parts


# --- through HTTP -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path, Path]]:
    tmp = tmp_path_factory.mktemp("gw")
    x = tmp / "x"
    x.mkdir()
    root = make_layout(x)
    settings_ = local_settings(tmp)
    mount = settings_.mounts[0]
    from dataclasses import replace

    settings_ = replace(
        settings_, mounts=(replace(mount, options={**mount.options, "root": str(root)}),)
    )
    with running(settings_) as r:
        yield r, x, root


def _url_path(parts: list[str], encode: bool) -> str:
    if encode:
        return "/".join(quote(p, safe="") for p in parts)
    return "/".join(parts)


HTTP_OPS = ["content", "list", "properties", "md5", "put", "mkdir", "delete"]


@pytest.mark.parametrize("op", HTTP_OPS)
def test_no_request_leaves_the_mount_through_a_trap(
    gw: tuple[Running, Path, Path], op: str
) -> None:
    for parts in PAIRS:
        http_request(gw, parts, False, op)


@SETTINGS
@given(parts=PATHS, encode=st.booleans(), op=st.sampled_from(HTTP_OPS))
def test_no_request_leaves_the_mount(
    gw: tuple[Running, Path, Path], parts: list[str], encode: bool, op: str
) -> None:
    http_request(gw, parts, encode, op)


def http_request(gw: tuple[Running, Path, Path], parts: list[str], encode: bool, op: str) -> None:
    r, x, root = gw
    reset_root(x)
    before = outside_state(x, root)
    target = f"{r.api}/path/local/{_url_path(parts, encode)}"
    headers = {"apikey": r.key}
    with httpx.Client(timeout=30) as c:
        try:
            if op in ("content", "list", "properties", "md5"):
                resp = c.get(target, params={"action": op}, headers=headers)
            elif op == "put":
                resp = c.put(target, content=b"new", headers={**headers, "Content-Type": "x/y"})
            elif op == "mkdir":
                resp = c.put(target, headers=headers)
            else:
                resp = c.delete(target, headers=headers)
        except httpx.InvalidURL:
            return  # the client would not send it
    assert resp.status_code < 500, (parts, resp.text)
    assert SECRET not in resp.content, parts
    assert outside_state(x, root) == before
    assert (x / "secret.txt").read_bytes() == SECRET


def test_the_sibling_sharing_the_prefix_is_out_of_reach(gw: tuple[Running, Path, Path]) -> None:
    """The one case spelled out: ``x/data2`` starts with the root's name ``x/data``."""
    r, x, root = gw
    reset_root(x)
    storage = PosixStorage(root)
    with pytest.raises(StorageError):
        b"".join(storage.open_read("link_out/secret.txt", 0, None))
    with httpx.Client(headers={"apikey": r.key}) as c:
        resp = c.get(f"{r.api}/path/local/link_out/secret.txt?action=content")
        assert resp.status_code in (403, 404) and SECRET not in resp.content
        listing = c.get(f"{r.api}/path/local/link_out?action=list")
        assert SECRET not in listing.content and b"secret.txt" not in listing.content


@pytest.mark.parametrize("action", ["content", "properties", "list", "md5", "exists"])
def test_a_link_loop_is_a_client_error(gw: tuple[Running, Path, Path], action: str) -> None:
    """Nothing is there to serve: a 4xx, and ``exists`` (the one action allowed on a
    missing path) says false — never a gateway error."""
    r, x, _ = gw
    reset_root(x)
    with httpx.Client(headers={"apikey": r.key}) as c:
        for _ in range(2):
            resp = c.get(f"{r.api}/path/local/link_loop?action={action}")
            if action == "exists":
                assert resp.status_code == 200 and resp.json() == {"exists": False}, resp.text
            else:
                assert 400 <= resp.status_code < 500, resp.text
