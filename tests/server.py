"""A real uvicorn server in a thread, for tests that talk HTTP (as httpx's own suite does)."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import MountConfig, Settings
from gateway.datapath.uvicorn_seam import GuardedHttpTools
from gateway.state import Gateway


class ServerThread:
    def __init__(self, app: Any, http: Any = "auto", lifespan: str = "on") -> None:
        """``http``: uvicorn's protocol, a name or a class (``fedgate serve`` runs
        gateway.datapath.uvicorn_seam.GuardedHttpTools)."""
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan=lifespan,
            timeout_keep_alive=5,
            http=http,
            proxy_headers=False,  # as `fedgate serve`: trusted_proxies alone decide
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Running:
    url: str  # base URL, no prefix
    api: str  # base URL + API prefix
    key: str  # admin API key
    gateway: Gateway
    data: Path
    settings: Settings

    def client(self, key: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"apikey": key or self.key}
        return httpx.Client(base_url=self.api, headers=headers, timeout=30, **kw)


def master_env() -> dict[str, str]:
    return {"FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}


def local_settings(tmp: Path, **overrides: Any) -> Settings:
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    mounts = overrides.pop("mounts", None) or (
        MountConfig(name="local", type="posix", options={"root": str(data)}),
    )
    return replace(Settings(state_dir=str(tmp / "state")), mounts=tuple(mounts), **overrides)


@contextmanager
def running(
    settings: Settings, env: dict[str, str] | None = None, http: Any = GuardedHttpTools
) -> Iterator[Running]:
    """The gateway on a real uvicorn, with the protocol class `fedgate serve` runs (so
    downloads take the same path as in production: gateway/datapath/socket_send.py)."""
    gw = Gateway(settings, env=env or master_env())
    key = gw.first_start()
    assert key is not None
    thread = ServerThread(create_app(settings, gw), http=http)
    port = thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        data_root = (
            Path(str(settings.mounts[0].options.get("root", "."))) if settings.mounts else Path()
        )
        yield Running(url, url + settings.api_prefix, key, gw, data_root, settings)
    finally:
        thread.stop()
        gw.close()
