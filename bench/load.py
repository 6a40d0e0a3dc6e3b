"""Mixed load: 64 concurrent clients (asyncio + httpx, in this process) against a real
``fedgate serve`` (another process), with scoped Bearer tokens, mixing exists / list /
properties / small GET / small PUT. Reports requests, errors, p50/p99, and the gateway's
RSS and open file descriptors at the start and the end.

    .venv/bin/python bench/load.py                      # embedded default (posix), 60 s
    .venv/bin/python bench/load.py --seconds 20 --mounts posix,s3,irods,gfal

s3 needs scripts/testbeds/seaweedfs.sh start, gfal scripts/testbeds/xrootd.sh start;
irods runs the protocol test server inside this process."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

# The repo root replaces this script's folder: bench/irods.py would shadow the irods package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.common import fedgate, rss_mb, save, table  # noqa: E402

SMALL = 4096


def mount_options(name: str, stack: ExitStack) -> dict[str, Any]:
    tag = f"load-{uuid.uuid4().hex[:8]}"
    if name == "posix":
        root = Path(os.environ.get("TMPDIR", "/tmp")) / tag
        root.mkdir()
        return {"type": "posix", "root": str(root)}
    if name == "s3":
        return {
            "type": "s3",
            "endpoint_url": "http://127.0.0.1:8333",
            "bucket": "fedgate-tests",
            "prefix": tag,
            "access_key": "testkey",
            "secret_key": "testsecret",
            "credential_source": "service",
        }
    if name == "gfal":
        from adapters.registry import create_adapter

        base = "root://127.0.0.1:11094//data"
        create_adapter("gfal", {"base_url": base, "anonymous": True}).bind(None).mkdir(tag)
        return {"type": "gfal", "base_url": f"{base}/{tag}", "anonymous": True}
    if name == "irods":
        from tests.irods_server import IrodsTestServer

        srv = stack.enter_context(IrodsTestServer())
        root = f"{srv.home('alice')}/{tag}"
        with srv.catalog.lock:
            srv.catalog._new_coll(root, "alice")
        return {
            "type": "irods",
            "host": srv.host,
            "port": srv.port,
            "zone": srv.zone,
            "root": root,
            "user": "alice",
            "password": srv.users["alice"],
            "credential_source": "service",
        }
    raise SystemExit(f"unknown mount {name!r}")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def token(url: str, key: str, mount: str) -> str:
    async with httpx.AsyncClient() as c:
        r = await c.post(
            url + "/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": key,
                "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
                "scope": f"storage.read:/{mount} storage.modify:/{mount}",
                "lifetime": 3600,
            },
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


async def run_load(url: str, key: str, mount: str, clients: int, seconds: float) -> dict[str, Any]:
    tok = await token(url, key, mount)
    headers = {"Authorization": f"Bearer {tok}", "X-Fedgate-Redirect": "never"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        octet = {"Content-Type": "application/octet-stream"}
        await c.put(f"/path/{mount}/dir", headers={})
        for i in range(20):
            await c.put(f"/path/{mount}/dir/f{i}", content=os.urandom(SMALL), headers=octet)
        deadline = time.monotonic() + seconds

        async def client(n: int) -> None:
            rnd = random.Random(n)
            while time.monotonic() < deadline:
                op = rnd.choice(["exists", "list", "properties", "get", "get", "put"])
                i = rnd.randrange(20)
                t = time.monotonic()
                try:
                    if op == "put":
                        r = await c.put(
                            f"/path/{mount}/dir/w{n}", content=os.urandom(SMALL), headers=octet
                        )
                        ok = r.status_code == 201
                    elif op == "get":
                        r = await c.get(f"/path/{mount}/dir/f{i}?action=content")
                        ok = r.status_code == 200 and len(r.content) == SMALL
                    else:
                        target = "dir" if op == "list" else f"dir/f{i}"
                        r = await c.get(f"/path/{mount}/{target}?action={op}")
                        ok = r.status_code == 200
                    if not ok:
                        errors[f"{op}:{r.status_code}"] = errors.get(f"{op}:{r.status_code}", 0) + 1
                except httpx.HTTPError as exc:
                    name = f"{op}:{type(exc).__name__}"
                    errors[name] = errors.get(name, 0) + 1
                latencies.append(time.monotonic() - t)

        await asyncio.gather(*(client(n) for n in range(clients)))
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": len(latencies) / seconds,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--mounts", default="posix", help="comma list: posix,s3,irods,gfal")
    args = p.parse_args()
    results: dict[str, Any] = {}
    failed = False
    for name in args.mounts.split(","):
        with ExitStack() as stack:
            opts = mount_options(name, stack)
            with fedgate({name: opts}) as fg:
                # Warm up at full concurrency: connection pools reach their working size.
                warm = asyncio.run(run_load(fg.url, fg.key, name, args.clients, 3))
                time.sleep(0.5)
                rss0, fd0 = rss_mb(fg.pid), fds(fg.pid)
                res = asyncio.run(run_load(fg.url, fg.key, name, args.clients, args.seconds))
                time.sleep(1.0)  # keep-alive connections close, buffers drain
                rss1, fd1 = rss_mb(fg.pid), fds(fg.pid)
        growth = 100 * (rss1 - rss0) / rss0
        res.update(rss_start_mb=rss0, rss_end_mb=rss1, rss_growth_pct=growth)
        res.update(fds_start=fd0, fds_end=fd1, warmup_errors=warm["errors"])
        results[name] = res
        ok = res["errors"] == 0 and growth < 10 and fd1 <= fd0
        failed |= not ok
        print(
            table(
                f"{name}: {args.clients} clients, {args.seconds:g} s",
                [
                    ("requests", f"{res['requests']}", f"{res['rps']:.0f} req/s"),
                    ("errors", f"{res['errors']}", str(res["error_kinds"] or "")),
                    ("p50 / p99", f"{res['p50_ms']:.1f} / {res['p99_ms']:.1f}", "ms"),
                    ("RSS", f"{rss0:.1f} -> {rss1:.1f}", f"MB ({growth:+.1f} %)"),
                    ("open fds", f"{fd0} -> {fd1}", "" if fd1 <= fd0 else "LEAK?"),
                ],
            )
        )
    save("load", results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
