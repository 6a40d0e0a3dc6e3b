"""Copies fedgate makes itself against the same bytes moved by the usual tools, same
machine, same run, same disk; medians of rounds whose order alternates.

    .venv/bin/python bench/tpc.py [--size-mib 1024] [--rounds 3] [--parallel 8]

1. HTTP-TPC pull of one file from XRootD's HTTP door into a POSIX mount
   (``curl -X COPY -H Source:``) vs ``curl`` downloading it to the same disk.
2. HTTP-TPC push of it to XRootD (``COPY`` with a remote ``Destination``) vs ``curl -T``.
3. COPY between two POSIX mounts on one disk vs ``cp`` then ``sync``.
4. The gateway's peak RSS with ``--parallel`` pulls in flight.
Targets (issue 22): pull ≥ 0.9 × curl, push ≥ 0.9 × curl -T, mount to mount ≥ 0.8 × cp +
sync, RSS < 150 MB with 8 copies in flight.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, MiB, RssSampler, fedgate, make_file, run_curl, save, table

XROOTD = "http://127.0.0.1:11095/data"
SCRIPT = REPO / "scripts" / "testbeds" / "xrootd.sh"


def timed(fn: Callable[[], object]) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def rounds(named: dict[str, Callable[[], object]], n: int, size: int) -> dict[str, float]:
    """Median MB/s of each contender, every other round in reverse order."""
    speeds: dict[str, list[float]] = {k: [] for k in named}
    order = list(named)
    for i in range(n):
        for name in order if i % 2 == 0 else reversed(order):
            speeds[name].append(size / timed(named[name]) / 1e6)
    return {k: statistics.median(v) for k, v in speeds.items()}


def copy(url: str, headers: dict[str, str]) -> None:
    out = run_curl(["-s", "-S", "-f", "-X", "COPY", url], headers)
    if not out.rstrip().endswith(("success: Created",)) and out.strip():
        raise RuntimeError(f"COPY failed: {out.strip().splitlines()[-1]}")


# What fedgate does to every byte it writes (gateway/datapath/digesting.py): md5, sha-256
# and adler32, then the write. curl piped into this is the same work without fedgate, so
# the pull's ratio to it says what fedgate costs beyond the hashing a 2-vCPU machine pays.
_HASH_TO_FILE = """
import hashlib, sys, zlib
md5, sha, adler = hashlib.md5(), hashlib.sha256(), 1
with open(sys.argv[1], "wb") as out:
    while chunk := sys.stdin.buffer.read(1 << 20):
        md5.update(chunk); sha.update(chunk); adler = zlib.adler32(chunk, adler)
        out.write(chunk)
"""


def curl_hashing(url: str, dest: Path) -> None:
    curl = subprocess.Popen(["curl", "-s", "-S", "-f", url], stdout=subprocess.PIPE)
    assert curl.stdout is not None
    hashing = subprocess.run([sys.executable, "-c", _HASH_TO_FILE, str(dest)], stdin=curl.stdout)
    curl.stdout.close()
    if curl.wait() != 0 or hashing.returncode != 0:
        raise RuntimeError("curl | hashing failed")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    size = args.size_mib * MiB
    started_xrootd = subprocess.run(["bash", str(SCRIPT), "status"]).returncode != 0
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True)
    work = Path(tempfile.mkdtemp(prefix="bench-tpc-"))
    a, b = work / "a", work / "b"
    a.mkdir()
    b.mkdir()
    folder = f"bench-tpc-{uuid.uuid4().hex[:8]}"
    rows: list[tuple[str, str, str]] = []
    results: dict[str, object] = {}
    try:
        print(f"making a {args.size_mib} MiB file …", file=sys.stderr)
        src = make_file(a / "src.bin", size)
        run_curl(["-s", "-S", "-f", "-X", "MKCOL", f"{XROOTD}/{folder}"])
        run_curl(["-s", "-S", "-f", "-T", str(src), f"{XROOTD}/{folder}/src.bin"])
        mounts = {"a": {"type": "posix", "root": str(a)}, "b": {"type": "posix", "root": str(b)}}
        env = {"FEDGATE_TPC_ALLOW_PRIVATE": "1", "FEDGATE_TPC_MAX_PER_USER": str(args.parallel)}
        with fedgate(mounts, extra_env=env) as fg:
            h = {"apikey": fg.key}
            door = fg.url.removesuffix("/rest") + "/webdav"
            pull = rounds(
                {
                    "fedgate": lambda: copy(
                        f"{door}/b/pulled.bin", {**h, "Source": f"{XROOTD}/{folder}/src.bin"}
                    ),
                    "curl": lambda: run_curl(
                        ["-s", "-S", "-f", "-o", str(b / "curl.bin"), f"{XROOTD}/{folder}/src.bin"]
                    ),
                    "curl+digests": lambda: curl_hashing(
                        f"{XROOTD}/{folder}/src.bin", b / "curl-hashed.bin"
                    ),
                },
                args.rounds,
                size,
            )
            push = rounds(
                {
                    "fedgate": lambda: copy(
                        f"{door}/a/src.bin", {**h, "Destination": f"{XROOTD}/{folder}/pushed.bin"}
                    ),
                    "curl": lambda: run_curl(
                        ["-s", "-S", "-f", "-T", str(src), f"{XROOTD}/{folder}/curl-put.bin"]
                    ),
                    # fedgate asks the destination for its adler32 after the PUT (XRootD
                    # reads the file back to answer): curl -T followed by the same HEAD.
                    "curl+check": lambda: (
                        run_curl(
                            ["-s", "-S", "-f", "-T", str(src), f"{XROOTD}/{folder}/curl-chk.bin"]
                        ),
                        run_curl(
                            ["-s", "-S", "-f", "-I", f"{XROOTD}/{folder}/curl-chk.bin"],
                            {"Want-Digest": "adler32"},
                        ),
                    ),
                },
                args.rounds,
                size,
            )
            local = rounds(
                {
                    "fedgate": lambda: run_curl(
                        ["-s", "-S", "-f", "-X", "COPY", f"{door}/a/src.bin"],
                        {**h, "Destination": "/webdav/b/copied.bin"},
                    ),
                    "cp+sync": lambda: (
                        shutil.copyfile(src, b / "cp.bin"),
                        subprocess.run(["sync"], check=True),
                    ),
                },
                args.rounds,
                size,
            )
            with RssSampler(fg.pid) as rss, ThreadPoolExecutor(args.parallel) as pool:
                list(
                    pool.map(
                        lambda i: copy(
                            f"{door}/b/par-{i}.bin", {**h, "Source": f"{XROOTD}/{folder}/src.bin"}
                        ),
                        range(args.parallel),
                    )
                )
            results.update(pull=pull, push=push, local=local, parallel_rss_mb=rss.peak)
            rows += [
                ("pull fedgate (COPY Source)", f"{pull['fedgate']:.0f} MB/s", ""),
                ("pull curl to disk", f"{pull['curl']:.0f} MB/s", ""),
                ("pull curl | md5+sha-256+adler32 to disk", f"{pull['curl+digests']:.0f} MB/s", ""),
                ("pull ratio", f"{pull['fedgate'] / pull['curl']:.2f}", "target ≥ 0.90"),
                (
                    "pull ratio to curl doing the same hashing",
                    f"{pull['fedgate'] / pull['curl+digests']:.2f}",
                    "the machine's bound",
                ),
                ("push fedgate (COPY Destination)", f"{push['fedgate']:.0f} MB/s", ""),
                ("push curl -T", f"{push['curl']:.0f} MB/s", ""),
                ("push curl -T, then HEAD Want-Digest", f"{push['curl+check']:.0f} MB/s", ""),
                ("push ratio", f"{push['fedgate'] / push['curl']:.2f}", "target ≥ 0.90"),
                (
                    "push ratio to curl with the same check",
                    f"{push['fedgate'] / push['curl+check']:.2f}",
                    "",
                ),
                ("mount to mount fedgate", f"{local['fedgate']:.0f} MB/s", ""),
                ("cp + sync", f"{local['cp+sync']:.0f} MB/s", ""),
                (
                    "mount to mount ratio",
                    f"{local['fedgate'] / local['cp+sync']:.2f}",
                    "target ≥ 0.80",
                ),
                (f"peak RSS, {args.parallel} pulls", f"{rss.peak:.0f} MB", "target < 150 MB"),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
        # XRootD refuses to delete a collection that is not empty: its files first.
        for name in ("src.bin", "pushed.bin", "curl-put.bin", "curl-chk.bin", ""):
            subprocess.run(
                ["curl", "-s", "-X", "DELETE", f"{XROOTD}/{folder}/{name}"], capture_output=True
            )
        if started_xrootd:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True)
    print(table("bench/tpc.py", rows))
    save("tpc", results)


if __name__ == "__main__":
    main()
