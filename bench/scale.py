"""fedgate with 1, 2 and 3 worker processes, and under a long mixed load.

    .venv/bin/python bench/scale.py [--seconds 10] [--mixed-seconds 60] [--no-postgres]

1. ``exists`` and 64 KiB content GET requests/s (wrk, 32 connections, API-key auth) with
   ``fedgate serve --workers 1|2|3``, on SQLite and on PostgreSQL (the testbed of
   scripts/testbeds/postgres.sh, a fresh schema per run).
2. 64 connections for ``--mixed-seconds`` of mixed load with 2 workers (PostgreSQL when
   available): 50% exists, 25% 64 KiB GET, 15% properties, 10% 64 KiB PUT (wrk + Lua).
   Errors (target 0), p50/p99 latency, and the RSS of every process sampled each second:
   the first and last quarter of the run are compared (target: flat).

The machine has 2 cores, shared by wrk and the gateway: absolute numbers are lower than
on a dedicated host; the ratios between worker counts are the point.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, fedgate, rss_mb, save, table, tree_pids

PG_SCRIPT = REPO / "scripts" / "testbeds" / "postgres.sh"
PG_URL = "postgresql://postgres@127.0.0.1:55432/fedgate"
KiB = 1024

MIXED_LUA = r"""
local key = os.getenv("FEDGATE_KEY")
local prefix = "/rest/path/local"
local body = string.rep("x", 65536)
local n = 0
request = function()
  n = n + 1
  local r = n % 20
  local h = {["apikey"] = key}
  if r < 10 then
    return wrk.format("GET", prefix .. "/f64k?action=exists", h)
  elseif r < 15 then
    return wrk.format("GET", prefix .. "/f64k?action=content", h)
  elseif r < 18 then
    return wrk.format("GET", prefix .. "/f64k?action=properties", h)
  else
    h["Content-Type"] = "application/octet-stream"
    return wrk.format("PUT", prefix .. "/mix/" .. (n % 64) .. ".bin", h, body)
  end
end
"""


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        return float("nan")
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]
    return float(m.group(1)) * factor


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script:
        cmd += ["-s", str(script)]
    import os

    res = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
    )
    out = res.stdout
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lat = dict(re.findall(r"^\s*(50|75|90|99)(?:\.0+)?%\s+([\d.]+[a-z]+)\s*$", out, re.M))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(total.group(1)) if total else 0.0,
        "errors": float(non2xx.group(1) if non2xx else 0)
        + (sum(float(x) for x in sock.groups()) if sock else 0.0),
        "p50_ms": _ms(lat.get("50", "nan")),
        "p99_ms": _ms(lat.get("99", "nan")),
    }


def postgres_available() -> bool:
    res = subprocess.run(["bash", str(PG_SCRIPT), "start"], capture_output=True, text=True)
    return res.returncode == 0


@contextmanager
def pg_schema() -> Iterator[str]:
    import psycopg

    schema = "bench_" + secrets.token_hex(5)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def gateway(data: Path, workers: int, db: str) -> Iterator[Any]:
    mounts = {"local": {"type": "posix", "root": str(data)}}
    if db == "postgres":
        with pg_schema() as url, fedgate(mounts, workers, {"FEDGATE_DATABASE_URL": url}) as fg:
            yield fg
    else:
        with fedgate(mounts, workers) as fg:
            yield fg


def wait_workers(pid: int, workers: int) -> None:
    """uvicorn's workers start after the port is bound: wait until all are there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # the supervisor, its workers (plus multiprocessing's resource tracker when N > 1)
        if len(tree_pids(pid)) >= (1 if workers == 1 else workers + 1):
            time.sleep(1.0)  # let each worker finish importing
            return
        time.sleep(0.1)


def throughput(data: Path, db: str, workers: int, seconds: int) -> dict[str, float]:
    with gateway(data, workers, db) as fg:
        wait_workers(fg.pid, workers)
        headers = {"apikey": fg.key}
        run_wrk(f"{fg.url}/path/local/f64k?action=exists", 2, 32, headers)  # warm-up
        exists = run_wrk(f"{fg.url}/path/local/f64k?action=exists", seconds, 32, headers)
        get = run_wrk(f"{fg.url}/path/local/f64k?action=content", seconds, 32, headers)
    return {
        "exists_rps": exists["rps"],
        "exists_errors": exists["errors"],
        "get64k_rps": get["rps"],
        "get64k_errors": get["errors"],
        "get64k_p99_ms": get["p99_ms"],
    }


def mixed(data: Path, db: str, workers: int, seconds: int) -> dict[str, Any]:
    with gateway(data, workers, db) as fg, tempfile.TemporaryDirectory() as tmp:
        wait_workers(fg.pid, workers)
        (data / "mix").mkdir(exist_ok=True)
        script = Path(tmp) / "mixed.lua"
        script.write_text(MIXED_LUA)
        samples: dict[int, list[float]] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for pid in tree_pids(fg.pid):
                    samples.setdefault(pid, []).append(rss_mb(pid))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = run_wrk(
                fg.url.removesuffix("/rest"),
                seconds,
                64,
                script=script,
                env={"FEDGATE_KEY": fg.key},
            )
        finally:
            stop.set()
            sampler.join()
    rss = {}
    for pid, values in samples.items():
        values = [v for v in values if v > 0]
        if len(values) < 4:
            continue
        q = max(1, len(values) // 4)
        first, last = sum(values[:q]) / q, sum(values[-q:]) / q
        rss[pid] = {"first_quarter_mb": first, "last_quarter_mb": last, "max_mb": max(values)}
    return {**result, "rss": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=int, default=10, help="each requests/s measurement")
    p.add_argument("--mixed-seconds", type=int, default=60, help="the mixed-load run")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = p.parse_args()

    data = Path(tempfile.mkdtemp(prefix="fedgate-scale-"))
    (data / "f64k").write_bytes(b"\x5a" * (64 * KiB))
    dbs = ["sqlite"]
    if not args.no_postgres and postgres_available():
        dbs.append("postgres")
    results: dict[str, Any] = {"throughput": {}, "mixed": {}}
    rows: list[tuple[str, str, str]] = []
    for db in dbs:
        for workers in (1, 2, 3):
            r = throughput(data, db, workers, args.seconds)
            results["throughput"][f"{db}/{workers}"] = r
            errors = int(r["exists_errors"] + r["get64k_errors"])
            rows.append((f"{db}, {workers} worker(s): exists", f"{r['exists_rps']:,.0f} req/s", ""))
            rows.append(
                (
                    f"{db}, {workers} worker(s): GET 64 KiB",
                    f"{r['get64k_rps']:,.0f} req/s",
                    f"p99 {r['get64k_p99_ms']:.1f} ms, errors {errors}",
                )
            )
    print(table(f"requests/s, wrk 32 connections, {args.seconds} s each, 2 cores", rows))

    db = dbs[-1]
    m = mixed(data, db, 2, args.mixed_seconds)
    results["mixed"] = {db: m}
    rows = [
        ("requests", f"{m['requests']:,.0f}", f"{m['rps']:,.0f} req/s"),
        ("errors", f"{m['errors']:.0f}", "target 0"),
        ("latency p50", f"{m['p50_ms']:.1f} ms", ""),
        ("latency p99", f"{m['p99_ms']:.1f} ms", ""),
    ]
    for pid, r in sorted(m["rss"].items()):
        growth = r["last_quarter_mb"] - r["first_quarter_mb"]
        rows.append(
            (
                f"RSS pid {pid}",
                f"{r['last_quarter_mb']:.1f} MB",
                f"first quarter {r['first_quarter_mb']:.1f} MB, growth {growth:+.1f} MB, "
                f"max {r['max_mb']:.1f} MB",
            )
        )
    print(
        table(
            f"mixed load: 64 connections, {args.mixed_seconds} s, 2 workers, {db} "
            "(50% exists, 25% GET 64 KiB, 15% properties, 10% PUT 64 KiB)",
            rows,
        )
    )
    save("scale", results)


if __name__ == "__main__":
    main()
