"""``fedgate get`` against curl on the same URL, same run (issues 8 and 21).

    .venv/bin/python bench/client.py [--size-mib 1024] [--runs 5] [--before REV]

Issue 21: the client verifies with sha-256 (the gateway's Repr-Digest, hashed beside the
receive) instead of md5. ``fedgate get (before)`` is the client of ``--before`` (a git
revision, default the last one verifying by md5; exported with ``git archive`` and put
first on PYTHONPATH) against the same gateway, in the same rounds.

One file on a posix mount of a real ``fedgate serve``; each client downloads it to a file
in the same folder (curl with ``-o``, ``fedgate get`` with its temporary file, md5
check and rename). ``fedgate get --no-checksum`` (no md5 at all) is measured too, to show
what the md5 check costs; "client body + md5" is the client's own part of a verified get
(body into the file, md5 in its thread) without the gateway's md5 next to it; "md5
alone" is hashlib over 1 GiB already in memory on one core: no verified download can go
faster than that. Runs alternate between the
clients; ``curl | tee | openssl sha256`` is the same work done with standard tools (a
download hashed beside the write), and ``openssl sha256, then curl -T`` the same for an
upload whose digest is sent ahead of the body: the peers that show what this machine
allows; every
number carries the 1-minute load average taken just before it (the
machine may be shared), and the best of ``--runs`` counts. Target: fedgate get ≥ 0.9 ×
curl.

The file is written outside fedgate: in the first ``fedgate get`` the gateway hashes it
(a HEAD beside the download) at the same time, on the same machine; it keeps the digests,
so the later runs get the sha-256 with the answer's headers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import VENV_BIN, MiB, curl_get, curl_put, fedgate, make_file, save, table


def load() -> float:
    return round(os.getloadavg()[0], 2)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fedgate_get(
    url: str, key: str, dest: Path, *extra: str, tree: Path | None = None
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the client process); ``tree``: another source tree."""
    env = {**os.environ, "FEDGATE_APIKEY": key}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cpu = children_cpu()
    started = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "fedgate"), "get", url, str(dest), "--quiet", *extra],
        env=env,
        check=True,
    )
    return time.monotonic() - started, children_cpu() - cpu


def fedgate_put(url: str, key: str, src: Path, dest: str, tree: Path | None) -> float:
    """Wall seconds of ``fedgate put`` (verified: Content-Digest, the 201's Repr-Digest)."""
    env = {**os.environ, "FEDGATE_APIKEY": key}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    started = time.monotonic()
    subprocess.run(
        [str(VENV_BIN / "fedgate"), "put", str(src), dest, "--gateway", url, "--quiet"],
        env=env,
        check=True,
    )
    return time.monotonic() - started


def client_body(url: str, key: str, dest: Path) -> float:
    """The client's own part of a verified download, in process: the body over
    http.client into the file with the md5 thread, without the gateway's md5 (which it
    computes for the client at the same time, on this same machine, in a real get)."""
    from gateway.client.discovery import Credential
    from gateway.client.http import Http
    from gateway.client.pipe import pump

    http = Http(url.split("/path/", 1)[0], Credential("apikey", key, "bench"))
    md5 = hashlib.md5(usedforsecurity=False)
    started = time.monotonic()
    body, _ = http.stream(url, params={"action": "content"})
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pump(body, fd, md5, lambda n: None, expected=body.length)
    finally:
        os.close(fd)
        body.close()
        http.close()
    md5.hexdigest()
    return time.monotonic() - started


def same_work(url: str, key: str, dest: Path) -> float:
    """A verified download done with standard tools: curl's body written to the file and
    hashed with sha-256 beside it (OpenSSL, which uses the CPU's SHA instructions as
    hashlib does; coreutils' sha256sum does not, and runs 5 x slower here)."""
    started = time.monotonic()
    subprocess.run(
        f"curl -sf -H 'apikey: {key}' '{url}' | tee '{dest}' | openssl dgst -sha256 >/dev/null",
        shell=True,
        check=True,
    )
    return time.monotonic() - started


def md5_speed(size: int) -> float:
    block = os.urandom(MiB)
    md5 = hashlib.md5(usedforsecurity=False)
    started = time.perf_counter()
    for _ in range(size // MiB):
        md5.update(block)
    return size / (time.perf_counter() - started) / 1e6


def sha256_speed(size: int) -> float:
    block = os.urandom(MiB)
    sha = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(size // MiB):
        sha.update(block)
    return size / (time.perf_counter() - started) / 1e6


PEER = "curl | tee | openssl sha256"
PEER_PUT = "openssl sha256, then curl -T"
NAMES = (
    "curl",
    PEER,
    "fedgate get",
    "fedgate get (before)",
    "fedgate get --no-checksum",
    "client body + md5",
    "md5 alone",
    "sha-256 alone",
    "curl -T",
    PEER_PUT,
    "fedgate put",
    "fedgate put (before)",
)
BEFORE = "fd104a9^"  # the client before issue 21: md5 from ?action=md5


def export(rev: str) -> Path:
    into = Path(tempfile.mkdtemp(prefix="fedgate-before-"))
    archive = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent.parent), "archive", rev],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(work: Path, size: int, count: int, old_tree: Path) -> dict[str, list[dict[str, float]]]:
    data = work / "data"
    data.mkdir()
    make_file(data / "blob.bin", size)
    out = work / "out"
    out.mkdir()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in NAMES}
    with fedgate({"local": {"type": "posix", "root": str(data)}}) as fg:
        url = f"{fg.url}/path/local/blob.bin"
        for _ in range(count):
            before = load()
            dest = out / "curl.bin"
            t = curl_get(url + "?action=content", {"apikey": fg.key}, out=str(dest))["total"]
            runs["curl"].append({"mb_s": size / t / 1e6, "load": before})
            dest.unlink()
            before = load()
            t = same_work(url + "?action=content", fg.key, dest)
            runs[PEER].append({"mb_s": size / t / 1e6, "load": before})
            dest.unlink()
            for name, extra, tree in (
                ("fedgate get", (), None),
                ("fedgate get (before)", (), old_tree),
                ("fedgate get --no-checksum", ("--no-checksum",), None),
            ):
                loaded = load()
                dest = out / "fedgate.bin"
                t, cpu = fedgate_get(url, fg.key, dest, *extra, tree=tree)
                assert dest.stat().st_size == size
                runs[name].append({"mb_s": size / t / 1e6, "load": loaded, "cpu_s": cpu})
                dest.unlink()
            before = load()
            dest = out / "body.bin"
            t = client_body(url, fg.key, dest)
            runs["client body + md5"].append({"mb_s": size / t / 1e6, "load": before})
            dest.unlink()
            before = load()
            runs["md5 alone"].append({"mb_s": md5_speed(size), "load": before})
            before_sha = load()
            runs["sha-256 alone"].append({"mb_s": sha256_speed(size), "load": before_sha})
            # Uploads of the same file to the same mount, replacing one target.
            loaded = load()
            put = curl_put(f"{fg.url}/path/local/up.bin", data / "blob.bin", {"apikey": fg.key})
            runs["curl -T"].append({"mb_s": size / put["total"] / 1e6, "load": loaded})
            loaded = load()
            started = time.monotonic()
            subprocess.run(
                ["openssl", "dgst", "-sha256", str(data / "blob.bin")],
                check=True,
                capture_output=True,
            )
            curl_put(f"{fg.url}/path/local/up.bin", data / "blob.bin", {"apikey": fg.key})
            t_peer = time.monotonic() - started
            runs[PEER_PUT].append({"mb_s": size / t_peer / 1e6, "load": loaded})
            for name, tree in (("fedgate put", None), ("fedgate put (before)", old_tree)):
                loaded = load()
                t_put = fedgate_put(fg.url, fg.key, data / "blob.bin", "/local/up.bin", tree)
                runs[name].append({"mb_s": size / t_put / 1e6, "load": loaded})
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", default=BEFORE)
    args = ap.parse_args()
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="bench-client-"))
    try:
        runs = measure(work, size, args.runs, export(args.before))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a GiB or more per run
    for name in NAMES:
        for r in runs[name]:
            cpu = f"  client CPU {r['cpu_s']:.2f} s" if "cpu_s" in r else ""
            print(f"  {name:<27} {r['mb_s']:7.0f} MB/s  (load {r['load']:.2f}){cpu}")
    best = {k: max(v, key=lambda r: r["mb_s"]) for k, v in runs.items()}
    curl = best["curl"]["mb_s"]
    rows = []
    for name in NAMES:
        b = best[name]
        note = f"load {b['load']:.2f}"
        if name.endswith("put") or name.endswith("put (before)") or name == PEER_PUT:
            note = f"{b['mb_s'] / best['curl -T']['mb_s']:.2f} × curl -T; {note}"
        elif name not in ("curl", "curl -T"):
            note = f"{b['mb_s'] / curl:.2f} × curl; {note}"
        if name == "fedgate get":
            note = f"{note}; {b['mb_s'] / best[PEER]['mb_s']:.2f} × the same work"
        if name == "fedgate put":
            note = f"{note}; {b['mb_s'] / best[PEER_PUT]['mb_s']:.2f} × the same work"
        rows.append((name, f"{b['mb_s']:.0f}", note))
    print(table(f"GET / PUT {args.size_mib} MiB, local file, best of {args.runs} (MB/s)", rows))
    save(
        "client",
        {
            "size_mib": args.size_mib,
            "runs": runs,
            "best": {k: v["mb_s"] for k, v in best.items()},
            "ratio": best["fedgate get"]["mb_s"] / curl,
            "ratio_same_work": best["fedgate get"]["mb_s"] / best[PEER]["mb_s"],
            "ratio_no_checksum": best["fedgate get --no-checksum"]["mb_s"] / curl,
            "ratio_before": best["fedgate get (before)"]["mb_s"] / curl,
            "put_ratio": best["fedgate put"]["mb_s"] / best["curl -T"]["mb_s"],
            "put_ratio_same_work": best["fedgate put"]["mb_s"] / best[PEER_PUT]["mb_s"],
            "put_ratio_before": best["fedgate put (before)"]["mb_s"] / best["curl -T"]["mb_s"],
        },
    )


if __name__ == "__main__":
    main()
