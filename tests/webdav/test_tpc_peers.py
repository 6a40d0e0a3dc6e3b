"""HTTP third-party copy with the field's real peers: fedgate pulls from and pushes to a
real XRootD's HTTP door (scripts/testbeds/xrootd.sh), and gfal2 drives fedgate in its
"3rd pull" and "3rd push" modes, checking ADLER32 end to end.

XRootD is also the *active* party: a second daemon with TLS and its XrdHttpTPC handler
(scripts/testbeds/xrootd-tpc.sh) pulls from and pushes into fedgate with fedgate tokens."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Running, local_settings, running
from tests.testbeds import run_testbed, running_testbed
from tests.webdav.helpers import door, token

XROOTD_HTTP = "http://127.0.0.1:11095/data"


@pytest.fixture(scope="module")
def se_data() -> Iterator[Path]:
    """XRootD's export folder on disk, to look behind its back."""
    with running_testbed("xrootd"):
        yield Path(run_testbed("xrootd", "path").stdout.strip())


@pytest.fixture(scope="module")
def folder(se_data: Path) -> Iterator[str]:
    name = f"tpc-{uuid.uuid4().hex[:8]}"
    r = httpx.request("MKCOL", f"{XROOTD_HTTP}/{name}")
    assert r.status_code in (200, 201), r.text
    yield name


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    # The tests' XRootD listens on loopback: the SSRF guard must let it through here.
    with running(local_settings(tmp_path, tpc_allow_private=True, tpc_marker_interval=1)) as r:
        yield r


def last_line(body: str) -> str:
    return body.rstrip("\n").rsplit("\n", 1)[-1]


def test_fedgate_pulls_from_xrootd(gw: Running, se_data: Path, folder: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    assert httpx.put(f"{XROOTD_HTTP}/{folder}/src.bin", content=data).status_code in (200, 201)
    r = httpx.request(
        "COPY",
        door(gw) + "/pulled.bin",
        headers={"apikey": gw.key, "Source": f"{XROOTD_HTTP}/{folder}/src.bin"},
    )
    assert r.status_code == 202
    assert last_line(r.text) == "success: Created"
    assert (gw.data / "pulled.bin").read_bytes() == data


def test_fedgate_pushes_to_xrootd(gw: Running, se_data: Path, folder: str) -> None:
    data = os.urandom(2 * 1024 * 1024 + 7)
    (gw.data / "out.bin").write_bytes(data)
    r = httpx.request(
        "COPY",
        door(gw) + "/out.bin",
        headers={"apikey": gw.key, "Destination": f"{XROOTD_HTTP}/{folder}/pushed.bin"},
    )
    assert r.status_code == 202
    assert last_line(r.text) == "success: Created"
    assert (se_data / folder / "pushed.bin").read_bytes() == data


@pytest.fixture
def gfal(gw: Running) -> Any:
    import gfal2  # Debian's module, exposed to the venv by scripts/gfal2-venv.sh

    ctx = gfal2.creat_context()
    ctx.set_opt_boolean("HTTP PLUGIN", "RETRIEVE_BEARER_TOKEN", False)
    tok = token(gw, "storage.read:/local storage.modify:/local")
    ctx.cred_set(door(gw).replace("http://", "dav://"), ctx.cred_new("BEARER", tok))
    return gfal2, ctx


@pytest.mark.parametrize("mode", ["3rd pull", "3rd push"])
def test_gfal2_drives_a_third_party_copy(
    gfal: Any, gw: Running, se_data: Path, folder: str, mode: str
) -> None:
    gfal2, ctx = gfal
    ctx.set_opt_string("HTTP PLUGIN", "DEFAULT_COPY_MODE", mode)
    # No quiet fallback to streaming the bytes through gfal2: the copy must be third-party.
    ctx.set_opt_boolean("HTTP PLUGIN", "ENABLE_FALLBACK_TPC_COPY", False)
    params = ctx.transfer_parameters()
    # gfal2 compares the source's and the destination's ADLER32 (Want-Digest on both).
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")
    params.overwrite = True
    data = os.urandom(1024 * 1024 + 11)
    fedgate = door(gw).replace("http://", "dav://")
    xrootd = XROOTD_HTTP.replace("http://", "dav://") + f"/{folder}"
    name = mode.replace(" ", "-")
    if mode == "3rd pull":  # XRootD -> fedgate: gfal2 asks fedgate to pull
        (se_data / folder / f"{name}.bin").write_bytes(data)
        ctx.filecopy(params, f"{xrootd}/{name}.bin", f"{fedgate}/{name}.bin")
        assert (gw.data / f"{name}.bin").read_bytes() == data
    else:  # fedgate -> XRootD: gfal2 asks fedgate to push
        (gw.data / f"{name}.bin").write_bytes(data)
        ctx.filecopy(params, f"{fedgate}/{name}.bin", f"{xrootd}/{name}.bin")
        assert (se_data / folder / f"{name}.bin").read_bytes() == data
    # fedgate moved the bytes itself: its audit has the copy with the other end.
    rows = httpx.get(gw.api + "/audit", headers={"apikey": gw.key}).json()
    ends = [row.get("detail", "") for row in rows if row.get("bytes") == len(data)]
    assert any(
        d.startswith(("from http://127.0.0.1:11095/", "to http://127.0.0.1:11095/")) for d in ends
    )


XROOTD_TPC = "https://127.0.0.1:11097/data"


@pytest.fixture(scope="module")
def tpc_se() -> Iterator[Path]:
    with running_testbed("xrootd-tpc"):
        yield Path(run_testbed("xrootd-tpc", "path").stdout.strip())


def xrootd_copy(target: str, **headers: str) -> httpx.Response:
    """A COPY sent to XRootD: it is the one moving the bytes (its test certificate is
    self-signed, hence verify=False on this one call)."""
    return httpx.request(
        "COPY", f"{XROOTD_TPC}/{target}", headers={"Credential": "none", **headers},
        verify=False, timeout=60,
    )  # fmt: skip


def test_xrootd_pulls_from_and_pushes_into_fedgate(gw: Running, tpc_se: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    (gw.data / "for-xrootd.bin").write_bytes(data)
    name = f"x-{uuid.uuid4().hex[:8]}"
    tok = token(gw, "storage.read:/local storage.create:/local")
    bearer_hdr = {"TransferHeaderAuthorization": f"Bearer {tok}"}
    r = xrootd_copy(name, Source=f"{door(gw)}/for-xrootd.bin", **bearer_hdr)
    assert r.status_code == 201, r.text
    assert last_line(r.text) == "success: Created"
    assert (tpc_se / name).read_bytes() == data
    r = xrootd_copy(name, Destination=f"{door(gw)}/from-xrootd.bin", **bearer_hdr)
    assert r.status_code == 201, r.text
    assert last_line(r.text) == "success: Created"
    assert (gw.data / "from-xrootd.bin").read_bytes() == data


def test_xrootd_with_a_narrow_token_gets_only_what_it_grants(gw: Running, tpc_se: Path) -> None:
    (gw.data / "secret.bin").write_bytes(b"secret")
    (gw.data / "pub").mkdir()
    (gw.data / "pub" / "old.bin").write_bytes(b"old")
    name = f"y-{uuid.uuid4().hex[:8]}"
    src = f"{XROOTD_TPC}/{name}"
    assert httpx.put(src, content=b"from the SE", verify=False).status_code in (200, 201)
    narrow = {"TransferHeaderAuthorization": f"Bearer {token(gw, 'storage.create:/local/pub')}"}
    # Not readable with it: XRootD's pull fails and no byte of it reaches the SE (XRootD
    # itself leaves an empty file behind a failed pull: its behaviour, not fedgate's).
    r = xrootd_copy(f"{name}-stolen", Source=f"{door(gw)}/secret.bin", **narrow)
    assert "success" not in r.text
    stolen = tpc_se / f"{name}-stolen"
    assert not stolen.exists() or stolen.read_bytes() == b""
    # Creating is allowed, replacing is not.
    r = xrootd_copy(name, Destination=f"{door(gw)}/pub/old.bin", **narrow)
    assert "success" not in r.text
    assert (gw.data / "pub" / "old.bin").read_bytes() == b"old"
    r = xrootd_copy(name, Destination=f"{door(gw)}/pub/new.bin", **narrow)
    assert last_line(r.text) == "success: Created", r.text
    assert (gw.data / "pub" / "new.bin").read_bytes() == b"from the SE"
