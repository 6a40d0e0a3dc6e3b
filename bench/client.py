"""``fedgate get`` against curl on the same URL, same run (issue 8).

    .venv/bin/python bench/client.py [--size-mib 1024] [--runs 3]

One file on a posix mount of a real ``fedgate serve``; each client downloads it to a file
in the same folder (curl with ``-o``, ``fedgate get`` with its temporary file, md5
check and rename). ``fedgate get --no-checksum`` is measured too, to show what the md5
check costs. Runs alternate between the clients; the best of ``--runs`` counts.
Target: fedgate get ≥ 0.9 × curl.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import VENV_BIN, MiB, curl_get, fedgate, make_file, save, table


def fedgate_get(url: str, key: str, dest: Path, *extra: str) -> float:
    env = {**os.environ, "FEDGATE_APIKEY": key}
    started = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "fedgate"), "get", url, str(dest), "--quiet", *extra],
        env=env,
        check=True,
    )
    return time.monotonic() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="bench-client-"))
    data = work / "data"
    data.mkdir()
    make_file(data / "blob.bin", size)
    out = work / "out"
    out.mkdir()
    results: dict[str, list[float]] = {
        "curl": [],
        "fedgate get": [],
        "fedgate get --no-checksum": [],
    }
    with fedgate({"local": {"type": "posix", "root": str(data)}}) as fg:
        url = f"{fg.url}/path/local/blob.bin"
        for _ in range(args.runs):
            dest = out / "curl.bin"
            t = curl_get(url + "?action=content", {"apikey": fg.key}, out=str(dest))["total"]
            results["curl"].append(size / t / 1e6)
            dest.unlink()
            for name, extra in (
                ("fedgate get", ()),
                ("fedgate get --no-checksum", ("--no-checksum",)),
            ):
                dest = out / "fedgate.bin"
                t = fedgate_get(url, fg.key, dest, *extra)
                assert dest.stat().st_size == size
                results[name].append(size / t / 1e6)
                dest.unlink()
    best = {k: max(v) for k, v in results.items()}
    ratio = best["fedgate get"] / best["curl"]
    ratio_nock = best["fedgate get --no-checksum"] / best["curl"]
    print(
        table(
            f"GET {args.size_mib} MiB to a local file, best of {args.runs} (MB/s)",
            [
                ("curl", f"{best['curl']:.0f}", ""),
                ("fedgate get", f"{best['fedgate get']:.0f}", f"{ratio:.2f} × curl (target ≥ 0.9)"),
                (
                    "fedgate get --no-checksum",
                    f"{best['fedgate get --no-checksum']:.0f}",
                    f"{ratio_nock:.2f} × curl",
                ),
            ],
        )
    )
    save(
        "client",
        {
            "size_mib": args.size_mib,
            "runs": results,
            "best": best,
            "ratio": ratio,
            "ratio_no_checksum": ratio_nock,
        },
    )


if __name__ == "__main__":
    main()
