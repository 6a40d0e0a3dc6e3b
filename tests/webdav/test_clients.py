"""The grid's and the desktop's own WebDAV clients against the door, unchanged: curl,
davix, gfal2 (its http plugin, with ADLER32 verification) and rclone's webdav backend.
Each is the real program, installed by `make test` (scripts/install-system-deps.sh,
the dev extras)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import Running
from tests.webdav.helpers import door, token

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    p = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env=env, input=stdin, check=False
    )
    assert p.returncode == 0, f"{cmd[0]} failed ({p.returncode}): {p.stdout}\n{p.stderr}"
    return p.stdout


def program(name: str) -> str:
    found = shutil.which(name) or shutil.which(
        name, path=str(Path(__file__).parents[2] / ".venv/bin")
    )
    assert found, f"{name} is not installed: `make test-deps` installs it"
    return found


@pytest.fixture
def src(tmp_path: Path) -> Path:
    f = tmp_path / "src.bin"
    f.write_bytes(PAYLOAD)
    return f


# --- curl -----------------------------------------------------------------------------


def test_curl(gw: Running, src: Path, tmp_path: Path) -> None:
    curl = program("curl")
    # Headers on stdin: no key in the process list.
    hdr = f"apikey: {gw.key}\n"
    base = door(gw)
    run([curl, "-sSf", "-H", "@-", "-X", "MKCOL", base + "/c"], stdin=hdr)
    run([curl, "-sSf", "-H", "@-", "-T", str(src), base + "/c/up.bin"], stdin=hdr)
    assert (gw.data / "c" / "up.bin").read_bytes() == PAYLOAD
    out = tmp_path / "down.bin"
    run([curl, "-sSf", "-H", "@-", "-o", str(out), base + "/c/up.bin"], stdin=hdr)
    assert out.read_bytes() == PAYLOAD
    listing = run(
        [curl, "-sSf", "-H", "@-", "-H", "Depth: 1", "-X", "PROPFIND", base + "/c/"], stdin=hdr
    )
    assert "<D:href>/webdav/local/c/up.bin</D:href>" in listing
    run([curl, "-sSf", "-H", "@-", "-X", "DELETE", base + "/c"], stdin=hdr)
    assert not (gw.data / "c").exists()


# --- davix ----------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["bearer", "apikey"])
def test_davix(gw: Running, src: Path, tmp_path: Path, auth: str) -> None:
    if auth == "bearer":
        header = f"Authorization: Bearer {token(gw, 'storage.read:/local storage.modify:/local')}"
    else:
        header = f"apikey: {gw.key}"
    base = door(gw)
    run([program("davix-mkdir"), "-H", header, base + "/dv"])
    assert (gw.data / "dv").is_dir()
    run([program("davix-put"), "-H", header, str(src), base + "/dv/f.bin"])
    assert (gw.data / "dv" / "f.bin").read_bytes() == PAYLOAD
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    run([program("davix-put"), "-H", header, str(empty), base + "/dv/empty"])
    assert (gw.data / "dv" / "empty").is_file()
    listing = run([program("davix-ls"), "-l", "-H", header, base + "/dv/"])
    assert "f.bin" in listing
    assert str(len(PAYLOAD)) in listing
    out = tmp_path / "got.bin"
    run([program("davix-get"), "-H", header, base + "/dv/f.bin", str(out)])
    assert out.read_bytes() == PAYLOAD
    run([program("davix-rm"), "-H", header, base + "/dv/f.bin"])
    assert not (gw.data / "dv" / "f.bin").exists()


# --- gfal2 (http plugin) --------------------------------------------------------------


@pytest.fixture
def gfal(gw: Running) -> Iterator[Any]:
    import gfal2  # Debian's module, exposed to the venv by scripts/gfal2-venv.sh

    ctx = gfal2.creat_context()
    ctx.set_opt_boolean("HTTP PLUGIN", "RETRIEVE_BEARER_TOKEN", False)
    tok = token(gw, "storage.read:/local storage.modify:/local")
    prefix = door(gw).replace("http://", "dav://")
    ctx.cred_set(prefix, ctx.cred_new("BEARER", tok))
    yield gfal2, ctx, prefix


def test_gfal2_copy_with_adler32_both_ways(
    gfal: Any, gw: Running, src: Path, tmp_path: Path
) -> None:
    gfal2, ctx, prefix = gfal
    ctx.mkdir(prefix + "/g", 0o755)
    assert (gw.data / "g").is_dir()
    params = ctx.transfer_parameters()
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")
    params.overwrite = True
    ctx.filecopy(params, f"file://{src}", prefix + "/g/up.bin")
    assert (gw.data / "g" / "up.bin").read_bytes() == PAYLOAD
    out = tmp_path / "back.bin"
    ctx.filecopy(params, prefix + "/g/up.bin", f"file://{out}")
    assert out.read_bytes() == PAYLOAD
    want = f"{zlib.adler32(PAYLOAD) & 0xFFFFFFFF:08x}"
    assert ctx.checksum(prefix + "/g/up.bin", "ADLER32").lower() == want
    assert ctx.checksum(prefix + "/g/up.bin", "MD5").lower() == hashlib.md5(PAYLOAD).hexdigest()
    st = ctx.stat(prefix + "/g/up.bin")
    assert st.st_size == len(PAYLOAD)
    assert sorted(ctx.listdir(prefix + "/g")) == ["up.bin"]
    ctx.unlink(prefix + "/g/up.bin")
    ctx.rmdir(prefix + "/g")
    assert not (gw.data / "g").exists()


def test_gfal2_reports_a_wrong_checksum(gfal: Any, gw: Running, src: Path) -> None:
    gfal2, ctx, prefix = gfal
    params = ctx.transfer_parameters()
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "00000001")
    with pytest.raises(gfal2.GError):
        ctx.filecopy(params, f"file://{src}", prefix + "/bad.bin")


# --- rclone ---------------------------------------------------------------------------


def _rclone_env(gw: Running, **auth: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env.update(
        RCLONE_CONFIG_DAV_TYPE="webdav",
        RCLONE_CONFIG_DAV_URL=door(gw),
        RCLONE_CONFIG_DAV_VENDOR="other",
        RCLONE_CONFIG="/dev/null",
    )
    env.update({f"RCLONE_CONFIG_DAV_{k.upper()}": v for k, v in auth.items()})
    return env


@pytest.mark.parametrize("auth", ["bearer", "basic"])
def test_rclone(gw: Running, tmp_path: Path, auth: str) -> None:
    rclone = program("rclone")
    if auth == "bearer":
        env = _rclone_env(gw, bearer_token=token(gw, "storage.read:/local storage.modify:/local"))
    else:
        obscured = run([rclone, "obscure", "-"], stdin=gw.key).strip()
        env = _rclone_env(gw, user="admin", **{"pass": obscured})
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.bin").write_bytes(PAYLOAD)
    (tree / "sub" / "b.txt").write_bytes(b"b" * 1000)
    (tree / "empty").write_bytes(b"")
    run([rclone, "copy", str(tree), "dav:r"], env=env)
    assert (gw.data / "r" / "a.bin").read_bytes() == PAYLOAD
    assert (gw.data / "r" / "sub" / "b.txt").read_bytes() == b"b" * 1000
    assert (gw.data / "r" / "empty").read_bytes() == b""
    listed = run([rclone, "lsjson", "-R", "dav:r"], env=env)
    assert '"Path":"sub/b.txt"' in listed
    run([rclone, "check", str(tree), "dav:r"], env=env)
    back = tmp_path / "back"
    run([rclone, "copy", "dav:r", str(back)], env=env)
    assert (back / "a.bin").read_bytes() == PAYLOAD
    run([rclone, "purge", "dav:r"], env=env)
    assert not (gw.data / "r").exists()
