"""The WebDAV door against the CARMIN path and nginx, same machine, same run, same client
(curl), medians of rounds whose order alternates.

    .venv/bin/python bench/webdav.py [--size-mib 1024] [--rounds 5] [--entries 100000]

1. GET of one file: the door vs the CARMIN API vs nginx (sendfile: the HTTP ceiling).
2. PUT of the same file: the door vs the CARMIN API.
3. PROPFIND Depth: 1 of a folder of ``--entries`` files: time to first byte, total, and
   the gateway's peak RSS while it streams.
Targets (issue 20): the door as fast as the CARMIN path on the same file; PROPFIND of
100,000 entries first byte < 200 ms, whole < 3 s, memory flat.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    MiB,
    RssSampler,
    curl_get,
    curl_put,
    fedgate,
    make_file,
    nginx,
    run_curl,
    save,
    table,
)


def rounds(named: dict[str, Callable[[], dict[str, float]]], n: int) -> dict[str, float]:
    """Median MB/s of each contender over ``n`` rounds, every other round reversed."""
    speeds: dict[str, list[float]] = {name: [] for name in named}
    order = list(named)
    for i in range(n):
        for name in order if i % 2 == 0 else reversed(order):
            speeds[name].append(named[name]()["mb_s"])
    return {name: statistics.median(v) for name, v in speeds.items()}


def propfind(url: str, headers: dict[str, str]) -> dict[str, float]:
    args = ["-s", "-S", "-f", "-o", "/dev/null", "-X", "PROPFIND", "-w"]
    args.append("%{time_starttransfer} %{time_total} %{size_download}")
    ttfb, total, size = (
        float(x) for x in run_curl([*args, url], {**headers, "Depth": "1"}).split()
    )
    return {"ttfb": ttfb, "total": total, "bytes": size}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--entries", type=int, default=100_000)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-webdav-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    data = work / "data"
    data.mkdir(mode=0o755)
    print(f"making a {args.size_mib} MiB file and {args.entries} entries …", file=sys.stderr)
    big = make_file(data / "big.bin", args.size_mib * MiB)
    many = data / "many"
    many.mkdir()
    for i in range(args.entries):
        (many / f"f{i:06d}").touch()
    results: dict[str, object] = {}
    rows: list[tuple[str, str, str]] = []
    try:
        with fedgate({"local": {"type": "posix", "root": str(data)}}) as fg, nginx(data) as ngx:
            h = {"apikey": fg.key}
            base = fg.url.removesuffix("/rest")
            door = f"{base}/webdav/local"
            carmin = f"{fg.url}/path/local"
            get = rounds(
                {
                    "door": lambda: curl_get(f"{door}/big.bin", h),
                    "carmin": lambda: curl_get(f"{carmin}/big.bin?action=content", h),
                    "nginx": lambda: curl_get(f"{ngx}/big.bin"),
                },
                args.rounds,
            )
            put = rounds(
                {
                    "door": lambda: curl_put(f"{door}/up-door.bin", big, h),
                    "carmin": lambda: curl_put(f"{carmin}/up-carmin.bin", big, h),
                },
                args.rounds,
            )
            results.update(get=get, put=put)
            rows += [
                ("GET door", f"{get['door']:.0f} MB/s", ""),
                ("GET CARMIN", f"{get['carmin']:.0f} MB/s", ""),
                ("GET nginx sendfile", f"{get['nginx']:.0f} MB/s", ""),
                ("GET door / CARMIN", f"{get['door'] / get['carmin']:.2f}", "target ≈ 1.0"),
                ("GET door / nginx", f"{get['door'] / get['nginx']:.2f}", ""),
                ("PUT door", f"{put['door']:.0f} MB/s", ""),
                ("PUT CARMIN", f"{put['carmin']:.0f} MB/s", ""),
                ("PUT door / CARMIN", f"{put['door'] / put['carmin']:.2f}", "target ≈ 1.0"),
            ]
            idle = RssSampler(fg.pid)
            with idle:
                pass
            with RssSampler(fg.pid) as rss:
                pf = propfind(f"{door}/many/", h)
            results["propfind"] = {**pf, "entries": args.entries, "peak_rss_mb": rss.peak}
            rows += [
                (
                    f"PROPFIND {args.entries}: first byte",
                    f"{pf['ttfb'] * 1000:.0f} ms",
                    "target < 200 ms",
                ),
                (
                    f"PROPFIND {args.entries}: total",
                    f"{pf['total'] * 1000:.0f} ms",
                    "target < 3000 ms",
                ),
                (
                    "PROPFIND peak RSS",
                    f"{rss.peak:.0f} MB",
                    f"idle {idle.peak:.0f} MB; {pf['bytes'] / 1e6:.0f} MB sent",
                ),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table("bench/webdav.py", rows))
    save("webdav", results)


if __name__ == "__main__":
    main()
