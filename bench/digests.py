"""Uploads with all digests vs uploads before digests, side by side; HEAD from the store.

    .venv/bin/python bench/digests.py [--size-mib 1024] [--rounds 5] [--before REV]

Two gateways run at once on the same disk: this tree, and ``--before`` (a git revision,
default the commit before digests were computed on upload; its tree is exported with
``git archive`` and put first on PYTHONPATH). Each round PUTs the same file (curl -T)
to both, the order alternating; medians are compared. Then ``HEAD`` with
``Want-Repr-Digest: sha-256`` on the file just uploaded, timed by curl over many rounds.
The gateway's CPU seconds per PUT are reported too: on a shared machine MB/s follow the
other load, CPU seconds do not. Targets (issue 21): PUT with digests >= 0.9 x PUT
before; HEAD < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MiB, curl_put, fedgate, make_file, run_curl, save, table, tree_pids

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "fd104a9^"


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a gateway and its workers so far: a figure the machine's
    other load does not change, unlike MB/s on a shared box."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def head_ms(url: str, key: str, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        out = run_curl(
            ["-s", "-S", "-f", "-I", "-o", "/dev/null", "-w", "%{time_total}", url],
            {"apikey": key, "Want-Repr-Digest": "sha-256=10"},
        )
        times.append(float(out) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", default=BEFORE)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fedgate-bench-digests-"))
    src = make_file(work / "src.bin", args.size_mib * MiB)
    old_tree = export(args.before, Path(tempfile.mkdtemp(prefix="fedgate-before-")))
    (work / "before").mkdir()
    (work / "after").mkdir()
    try:
        results = run(args, work, src, old_tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # three GiB per run
        shutil.rmtree(old_tree, ignore_errors=True)
    report(args, results)


def run(args: argparse.Namespace, work: Path, src: Path, old_tree: Path) -> dict[str, Any]:
    before_env = {"PYTHONPATH": str(old_tree)}
    speeds: dict[str, list[float]] = {"before": [], "after": []}
    cpu: dict[str, list[float]] = {"before": [], "after": []}
    with (
        fedgate(
            {"data": {"type": "posix", "root": str(work / "before")}}, extra_env=before_env
        ) as before,
        fedgate({"data": {"type": "posix", "root": str(work / "after")}}) as after,
    ):
        ends = {"before": before, "after": after}
        for i in range(args.rounds):
            order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
            for name in order:
                gw = ends[name]
                used = cpu_seconds(gw.pid)
                r = curl_put(f"{gw.url}/path/data/f.bin", src, {"apikey": gw.key})
                speeds[name].append(r["mb_s"])
                cpu[name].append(cpu_seconds(gw.pid) - used)
        head = head_ms(f"{after.url}/path/data/f.bin?action=content", after.key, 20)
    results = {
        "size_mib": args.size_mib,
        "rounds": args.rounds,
        "put_before_mb_s": statistics.median(speeds["before"]),
        "put_after_mb_s": statistics.median(speeds["after"]),
        "put_runs": speeds,
        "put_cpu_s_before": statistics.median(cpu["before"]),
        "put_cpu_s_after": statistics.median(cpu["after"]),
        "put_cpu_runs": cpu,
        "head_want_repr_digest_ms": head,
    }
    results["ratio"] = results["put_after_mb_s"] / results["put_before_mb_s"]
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    head = results["head_want_repr_digest_ms"]
    print(
        table(
            f"PUT {args.size_mib} MiB, medians of {args.rounds} alternating rounds",
            [
                ("PUT before digests", f"{results['put_before_mb_s']:.0f} MB/s", ""),
                (
                    "PUT with all four digests",
                    f"{results['put_after_mb_s']:.0f} MB/s",
                    f"{results['ratio']:.2f} x (target >= 0.9)",
                ),
                ("gateway CPU per PUT, before", f"{results['put_cpu_s_before']:.2f} s", ""),
                ("gateway CPU per PUT, digests", f"{results['put_cpu_s_after']:.2f} s", ""),
                ("HEAD Want-Repr-Digest", f"{head:.1f} ms", "target < 50 ms"),
            ],
        )
    )
    save("digests", results)


if __name__ == "__main__":
    main()
