"""fedgate's data path against its peers, same machine, same run, same client (curl).

    .venv/bin/python bench/stream.py [--size-mib 1024] [--parallel 16] [--entries 100000]

1. GET of one file: fedgate vs nginx (sendfile: the HTTP ceiling) vs ``rclone serve http``.
2. PUT of the same file through fedgate.
3. Peak RSS of the gateway while ``--parallel`` clients each stream the file.
4. ``exists`` requests/s with API-key auth on one worker (wrk).
5. ``list`` of a folder of ``--entries`` files: time to first byte, total, RSS.
Targets (issue 2): GET ≥ 0.8 × nginx and ≥ 1.5 × rclone; RSS < 150 MB; exists ≥ 3,000/s;
list first byte < 200 ms and whole < 2 s.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    VENV_BIN,
    MiB,
    RssSampler,
    curl_get,
    curl_put,
    fedgate,
    free_port,
    make_file,
    nginx,
    save,
    serving,
    table,
    wrk,
)


@contextmanager
def rclone_http(root: Path) -> Iterator[str]:
    port = free_port()
    cmd = [str(VENV_BIN / "rclone"), "serve", "http", str(root), "--addr", f"127.0.0.1:{port}"]
    with serving(cmd, port, quiet=True) as url:
        yield url


def best(fn, repeat: int = 3) -> dict[str, float]:  # type: ignore[no-untyped-def]
    runs = [fn() for _ in range(repeat)]
    return max(runs, key=lambda r: r["mb_s"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    data = work / "data"
    data.mkdir(mode=0o755)
    size = args.size_mib * MiB
    print(f"making a {args.size_mib} MiB file …", file=sys.stderr)
    big = make_file(data / "big.bin", size)
    many = data / "many"
    many.mkdir()
    for i in range(args.entries):
        (many / f"f{i:06d}").touch()
    results: dict[str, object] = {}
    rows: list[tuple[str, str, str]] = []
    try:
        with (
            fedgate({"local": {"type": "posix", "root": str(data)}}) as fg,
            nginx(data) as ngx,
            rclone_http(data) as rcl,
        ):
            h = {"apikey": fg.key}
            fed = best(lambda: curl_get(f"{fg.url}/path/local/big.bin?action=content", h))
            ngx_r = best(lambda: curl_get(f"{ngx}/big.bin"))
            rcl_r = best(lambda: curl_get(f"{rcl}/big.bin"))
            results.update(get_fedgate=fed, get_nginx=ngx_r, get_rclone=rcl_r)
            rows += [
                ("GET fedgate", f"{fed['mb_s']:.0f} MB/s", ""),
                ("GET nginx sendfile", f"{ngx_r['mb_s']:.0f} MB/s", ""),
                ("GET rclone serve http", f"{rcl_r['mb_s']:.0f} MB/s", ""),
                ("fedgate / nginx", f"{fed['mb_s'] / ngx_r['mb_s']:.2f}", "target ≥ 0.80"),
                ("fedgate / rclone", f"{fed['mb_s'] / rcl_r['mb_s']:.2f}", "target ≥ 1.50"),
            ]
            put = curl_put(f"{fg.url}/path/local/upload.bin", big, h)
            results["put_fedgate"] = put
            rows.append(("PUT fedgate", f"{put['mb_s']:.0f} MB/s", f"{args.size_mib} MiB"))

            with RssSampler(fg.pid) as rss, ThreadPoolExecutor(args.parallel) as pool:
                t0 = time.monotonic()
                list(
                    pool.map(
                        lambda _: curl_get(f"{fg.url}/path/local/big.bin?action=content", h),
                        range(args.parallel),
                    )
                )
                elapsed = time.monotonic() - t0
            agg = args.parallel * size / elapsed / 1e6
            results["parallel"] = {
                "clients": args.parallel,
                "peak_rss_mb": rss.peak,
                "aggregate_mb_s": agg,
            }
            rows.append(
                (
                    f"peak RSS, {args.parallel} parallel GETs",
                    f"{rss.peak:.0f} MB",
                    f"target < 150 MB; aggregate {agg:.0f} MB/s",
                )
            )

            ex = wrk(f"{fg.url}/path/local/big.bin?action=exists", h, seconds=args.seconds)
            results["exists"] = ex
            rows.append(
                (
                    "exists with API key",
                    f"{ex['rps']:.0f} req/s",
                    f"target ≥ 3000; non-2xx {ex['non2xx']:.0f}",
                )
            )

            with RssSampler(fg.pid) as rss:
                lst = curl_get(f"{fg.url}/path/local/many?action=list", h)
            results["list"] = {**lst, "entries": args.entries, "peak_rss_mb": rss.peak}
            rows.append(
                (
                    f"list {args.entries} entries: first byte",
                    f"{lst['ttfb'] * 1000:.0f} ms",
                    "target < 200 ms",
                )
            )
            rows.append(
                (
                    f"list {args.entries} entries: total",
                    f"{lst['total'] * 1000:.0f} ms",
                    f"target < 2000 ms; peak RSS {rss.peak:.0f} MB",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table("bench/stream.py", rows))
    save("stream", results)


if __name__ == "__main__":
    main()
