"""Grid storage (gfal2) through fedgate against gfal2 directly: same machine, same run,
same XRootD daemon, over root:// and over http:// (XrdHttp).

    .venv/bin/python bench/grid.py [--size-mib 1024] [--repeat 2] [--chunk-mib 4]

Starts XRootD with scripts/testbeds/xrootd.sh (and stops it again if it was not running),
then for one ``--size-mib`` file, per protocol:

(a) direct gfal2 (Python binding, in this process): read = ``open`` + ``pread_bytes``
    loop of ``--chunk-mib``; write = ``filecopy`` from ``file://`` (gfal-copy's way) and,
    for reference, an ``open("w")`` + ``write`` loop (what the adapter does);
(b) through fedgate: curl with an API key against ``fedgate serve`` with gfal mounts
    (``?action=content`` to /dev/null; ``PUT`` of the local file), the stored file's
    md5 checked against the local one.
Best of ``--repeat`` runs each. Target (issue 5): proxied ≥ 0.9 × direct gfal2.
Results go to bench/results/grid.json.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, MiB, RssSampler, curl_get, curl_put, fedgate, make_file, save, table

SCRIPT = REPO / "scripts" / "testbeds" / "xrootd.sh"
BASES = {"root": "root://127.0.0.1:11094//data", "http": "http://127.0.0.1:11095/data"}


def xrootd(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True)


def timed(size: int, fn: Callable[[], object]) -> dict[str, float]:
    t0 = time.monotonic()
    fn()
    total = time.monotonic() - t0
    return {"mb_s": size / total / 1e6, "total": total}


def best(fn: Callable[[], dict[str, float]], repeat: int) -> dict[str, float]:
    return max((fn() for _ in range(repeat)), key=lambda r: r["mb_s"])


class Direct:
    """gfal2 used the way a grid job would, without fedgate."""

    def __init__(self) -> None:
        import gfal2  # type: ignore[import-not-found,unused-ignore]

        self.gfal2 = gfal2
        self.ctx = gfal2.creat_context()

    def read(self, url: str, size: int, chunk: int) -> None:
        handle = self.ctx.open(url, "r")
        offset = 0
        while offset < size:
            data = handle.pread_bytes(offset, min(chunk, size - offset))
            if not data:
                raise RuntimeError(f"short read at {offset}")
            offset += len(data)
        del handle

    def copy(self, local: Path, url: str) -> None:
        params = self.ctx.transfer_parameters()
        params.overwrite = True
        params.create_parent = False
        self.ctx.filecopy(params, f"file://{local}", url)

    def write_loop(self, local: Path, url: str, chunk: int) -> None:
        handle = self.ctx.open(url, "w")
        with open(local, "rb") as f:
            while data := f.read(chunk):
                handle.write(data)
        del handle  # closing sends the PUT over http

    def size(self, url: str) -> int:
        return int(self.ctx.stat(url).st_size)

    def mkdir(self, url: str) -> None:
        self.ctx.mkdir_rec(url, 0o755)

    def remove_tree(self, url: str) -> None:
        for name in self.ctx.listdir(url):
            if name not in (".", ".."):
                self.ctx.unlink(f"{url}/{name}")
        self.ctx.rmdir(url)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while data := f.read(8 * MiB):
            digest.update(data)
    return digest.hexdigest()


def fedgate_md5(url: str, key: str) -> str:
    import json

    request = urllib.request.Request(url + "?action=md5", headers={"apikey": key})
    with urllib.request.urlopen(request, timeout=600) as answer:
        return str(json.load(answer)["md5"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--chunk-mib", type=int, default=4, help="direct gfal2 read/write chunk")
    args = ap.parse_args()
    size = args.size_mib * MiB
    chunk = args.chunk_mib * MiB
    was_running = xrootd("status").returncode == 0
    started = xrootd("start")
    if started.returncode != 0:
        sys.exit(f"bench/grid.py: XRootD did not start\n{started.stderr}")
    work = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    folder = f"bench-{uuid.uuid4().hex[:8]}"
    direct = Direct()
    results: dict[str, Any] = {"size_mib": args.size_mib, "direct_chunk_mib": args.chunk_mib}
    try:
        print(f"making a {args.size_mib} MiB file …", file=sys.stderr)
        big = make_file(work / "big.bin", size)
        local_md5 = md5_of(big)
        direct.mkdir(f"{BASES['root']}/{folder}")
        mounts = {
            f"grid-{proto}": {
                "type": "gfal",
                "base_url": f"{base}/{folder}",
                "anonymous": True,
                "credential_source": "service",
                "timeout": 600,
            }
            for proto, base in BASES.items()
        }
        with fedgate(mounts) as fg:
            h = {"apikey": fg.key}
            for proto, base in BASES.items():
                print(f"{proto}:// …", file=sys.stderr)
                src = f"{base}/{folder}/src-{proto}.bin"
                res: dict[str, Any] = {}
                res["direct_write_copy"] = best(
                    lambda src=src: timed(size, lambda: direct.copy(big, src)), args.repeat
                )
                loop_url = f"{base}/{folder}/loop-{proto}.bin"
                res["direct_write_loop"] = best(
                    lambda u=loop_url: timed(size, lambda: direct.write_loop(big, u, chunk)),
                    args.repeat,
                )
                assert direct.size(src) == size and direct.size(loop_url) == size
                res["direct_read"] = best(
                    lambda src=src: timed(size, lambda: direct.read(src, size, chunk)),
                    args.repeat,
                )
                mount_url = f"{fg.url}/path/grid-{proto}"
                get_url = f"{mount_url}/src-{proto}.bin?action=content"
                with RssSampler(fg.pid) as rss:
                    res["fedgate_read"] = best(lambda u=get_url: curl_get(u, h), args.repeat)
                    put_url = f"{mount_url}/put-{proto}.bin"
                    res["fedgate_write"] = best(lambda u=put_url: curl_put(u, big, h), args.repeat)
                res["fedgate_peak_rss_mb"] = rss.peak
                assert res["fedgate_read"]["bytes"] == size, "fedgate returned a short body"
                stored_md5 = fedgate_md5(put_url, fg.key)
                assert stored_md5 == local_md5, "the file written through fedgate differs"
                results[proto] = res
    finally:
        try:
            direct.remove_tree(f"{BASES['root']}/{folder}")
        except Exception as exc:  # cleanup must not hide the run's own error
            print(f"bench/grid.py: cleanup failed: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
        if not was_running:
            xrootd("stop")

    def mbs(r: dict[str, float]) -> str:
        return f"{r['mb_s']:.0f} MB/s"

    rows: list[tuple[str, str, str]] = []
    for proto in BASES:
        r = results[proto]
        read_ratio = r["fedgate_read"]["mb_s"] / r["direct_read"]["mb_s"]
        write_ratio = r["fedgate_write"]["mb_s"] / r["direct_write_copy"]["mb_s"]
        loop_ratio = r["fedgate_write"]["mb_s"] / r["direct_write_loop"]["mb_s"]
        r["ratios"] = {
            "read": read_ratio,
            "write_vs_copy": write_ratio,
            "write_vs_loop": loop_ratio,
        }
        rows += [
            (
                f"{proto}:// read  gfal2 direct",
                mbs(r["direct_read"]),
                f"pread {args.chunk_mib} MiB",
            ),
            (f"{proto}:// read  fedgate", mbs(r["fedgate_read"]), "curl + API key"),
            (f"{proto}:// read  fedgate / direct", f"{read_ratio:.2f}", "target ≥ 0.90"),
            (f"{proto}:// write gfal2 copy", mbs(r["direct_write_copy"]), "filecopy file://"),
            (f"{proto}:// write gfal2 loop", mbs(r["direct_write_loop"]), "open(w)+write"),
            (f"{proto}:// write fedgate", mbs(r["fedgate_write"]), "curl -T + API key"),
            (f"{proto}:// write fedgate / copy", f"{write_ratio:.2f}", "target ≥ 0.90"),
            (f"{proto}:// write fedgate / loop", f"{loop_ratio:.2f}", ""),
            (f"{proto}:// fedgate peak RSS", f"{r['fedgate_peak_rss_mb']:.0f} MB", ""),
        ]
    print(table(f"bench/grid.py ({args.size_mib} MiB file, XRootD 127.0.0.1)", rows))
    save("grid", results)


if __name__ == "__main__":
    main()
