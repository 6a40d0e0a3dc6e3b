"""VIP's own Python client (vip-client from PyPI), unchanged, against a real fedgate."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.server import Running


@pytest.fixture
def vip(gw: Running):  # type: ignore[no-untyped-def]
    from vip_client.utils import vip as module

    module = importlib.reload(module)  # the client keeps its URL and key in module globals
    module.set_vip_url(gw.url)  # it appends "/rest/" itself, as on VIP
    return module


def test_vip_client_end_to_end(vip, gw: Running, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert vip.setApiKey("not-a-key") is False
    assert vip.setApiKey(gw.key) is True
    assert vip.platform_info()["supportedAPIVersion"] == "0.3.1"

    assert vip.create_dir("/local/project") is True
    assert vip.exists("/local/project") is True
    assert vip.exists("/local/absent") is False
    assert vip.is_dir("/local/project") is True

    src = tmp_path / "input.bin"
    payload = bytes(range(256)) * 4096
    src.write_bytes(payload)
    assert vip.upload(str(src), "/local/project/input.bin") is True
    assert (gw.data / "project" / "input.bin").read_bytes() == payload

    names = [e["platformPath"] for e in vip.list_elements("/local/project")]
    assert names == ["/local/project/input.bin"]
    assert vip.list_directory("/local") == [
        e for e in vip.list_content("/local") if e["isDirectory"]
    ]
    props = vip.get_path_properties("/local/project/input.bin")
    assert props["size"] == len(payload) and props["isDirectory"] is False

    dest = tmp_path / "out.bin"
    assert vip.download("/local/project/input.bin", str(dest)) is True
    assert dest.read_bytes() == payload

    assert vip.create_dir("/local/project") is False  # already exists → CARMIN error
    assert vip.delete_path("/local/project") is True
    assert vip.exists("/local/project") is False
    assert vip.delete_path("/local/project") is False
