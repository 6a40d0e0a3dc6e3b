"""``fedgate serve --workers 2``: /metrics sums every worker (prometheus multiprocess
mode in a directory fedgate makes and removes)."""

from __future__ import annotations

import base64
import glob
import os
import tempfile
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.scale.procs import cli, serve, write_config


def platform_count(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "fedgate_http_requests_total" and s.labels["route"] == "/rest/platform":
                total += s.value
    return total


def test_metrics_add_up_over_workers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(
        tmp_path / "fedgate.toml",
        tmp_path / "state",
        {"local": {"type": "posix", "root": str(data)}},
    )
    env = {"FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    key = cli(config, env, "user", "add", "admin", "--admin").strip()
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "fedgate-metrics-*")))
    server = serve(config, env, tmp_path / "serve.log", "--workers", "2")
    try:
        made = set(glob.glob(os.path.join(tempfile.gettempdir(), "fedgate-metrics-*"))) - before
        assert len(made) == 1
        n = 60
        # Fresh connections, so the kernel spreads them over both workers.
        for _ in range(n):
            r = httpx.get(server.api + "/platform", headers={"apikey": key})
            assert r.status_code == 200
        for _ in range(5):  # whichever worker answers the scrape reports the sum
            assert platform_count(server.url) == n
        pids = {p.name.split("_")[-1] for p in Path(next(iter(made))).glob("counter_*.db")}
        assert len(pids) == 2, pids  # both workers answered some of the requests
    finally:
        server.stop()
    assert not Path(next(iter(made))).exists()  # removed at exit
