"""Girder through fedgate against girder-client directly: same machine, same run, same Girder.

    .venv/bin/python bench/girder.py [--sizes 100,1024] [--repeat 2] [--upload-chunk-mib 64]

Starts the real Girder testbed (scripts/testbeds/girder.sh; stopped again if it was not
running) and ``fedgate serve`` with a girder mount on a fresh folder, the user's Girder
API key stored through ``PUT /user/externalKeys`` as VIP does. For each size (MiB):

- download: girder-client (``downloadFileAsIterator``, bytes discarded: its best case)
  vs curl through fedgate (API key, streamed: fedgate's adapter reads Girder with requests);
  curl straight from Girder's download URL is shown as the HTTP ceiling, and girder-client
  starting from the path (lookup, the item's files, download) as what the path costs;
- upload: girder-client ``uploadFileToFolder`` (64 MiB chunks) vs curl PUT through fedgate.

Best of ``--repeat`` runs each, direct and fedgate alternating; the CPU seconds per GiB
each side spent are printed too (they do not depend on the machine's load the way rates
do). Target (issue 6): through fedgate ≥ 0.9 × girder-client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import girder_client
import httpx

from bench.common import (
    REPO,
    MiB,
    curl_get,
    curl_put,
    fedgate,
    make_file,
    save,
    table,
)

SCRIPT = REPO / "scripts" / "testbeds" / "girder.sh"
ENV = REPO / ".testbeds" / "girder" / "env.json"


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Runner:
    """Runs each transfer ``repeat`` times, direct and fedgate alternating (so a load
    change on the machine hits both), keeping the best rate and the CPU each side used:
    the client's own for girder-client, fedgate's process for fedgate (curl's is small)."""

    def __init__(self, repeat: int, fedgate_pid: int) -> None:
        self.repeat = repeat
        self.pid = fedgate_pid

    def pair(
        self, size: int, direct: Callable[[], None], through: Callable[[], float]
    ) -> dict[str, float]:
        out = {"direct": 0.0, "fedgate": 0.0, "direct_cpu": 1e9, "fedgate_cpu": 1e9}
        gib = size / 1024**3
        for _ in range(self.repeat):
            start, cpu = time.perf_counter(), time.process_time()
            direct()
            rate = size / (time.perf_counter() - start) / 1e6
            out["direct"] = max(out["direct"], rate)
            out["direct_cpu"] = min(out["direct_cpu"], (time.process_time() - cpu) / gib)
            before = cpu_s(self.pid)
            out["fedgate"] = max(out["fedgate"], through())
            out["fedgate_cpu"] = min(out["fedgate_cpu"], (cpu_s(self.pid) - before) / gib)
        out["ratio"] = out["fedgate"] / out["direct"]
        return out


def run_size(
    runner: Runner, fg_url: str, headers: dict[str, str], alice: Any, admin: Any,
    folder_id: str, root: str, api: str, src: Path, mib: int,
) -> dict[str, Any]:  # fmt: skip
    size = mib * MiB

    def direct_up() -> None:
        alice.uploadFileToFolder(folder_id, str(src), filename=f"d{mib}-{uuid.uuid4().hex}")

    def fedgate_up() -> float:
        return curl_put(f"{fg_url}/path/girder/up-{mib}.bin", src, headers)["mb_s"]

    up = runner.pair(size, direct_up, fedgate_up)
    item = admin.resourceLookup(f"{root}/up-{mib}.bin")
    file_id = next(iter(admin.listFile(item["_id"])))["_id"]

    def direct_down() -> None:
        got = sum(len(c) for c in alice.downloadFileAsIterator(file_id))
        assert got == size

    def fedgate_down() -> float:
        r = curl_get(f"{fg_url}/path/girder/up-{mib}.bin?action=content", headers)
        assert r["bytes"] == size
        return r["mb_s"]

    down = runner.pair(size, direct_down, fedgate_down)

    def by_path() -> float:
        # What a path-addressed client pays in Girder: lookup, the item's files, download.
        start = time.perf_counter()
        found = alice.resourceLookup(f"{root}/up-{mib}.bin")
        fid = next(iter(alice.listFile(found["_id"])))["_id"]
        got = sum(len(c) for c in alice.downloadFileAsIterator(fid))
        assert got == size
        return size / (time.perf_counter() - start) / 1e6

    by_path_rate = max(by_path() for _ in range(runner.repeat))
    ceiling = max(
        curl_get(f"{api}/file/{file_id}/download", {"Girder-Token": alice.token})["mb_s"]
        for _ in range(runner.repeat)
    )
    return {
        "download": down,
        "upload": up,
        "download_curl_on_girder": ceiling,
        "download_girder_client_by_path": by_path_rate,
    }


def rows_for(mib: int, r: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for op, name in (("download", "GET"), ("upload", "PUT")):
        m = r[op]
        rows += [
            (f"{mib} MiB {name} girder-client", f"{m['direct']:.0f} MB/s",
             f"client CPU {m['direct_cpu']:.2f} s/GiB"),
            (f"{mib} MiB {name} fedgate (curl)", f"{m['fedgate']:.0f} MB/s",
             f"{m['ratio']:.2f} × girder-client (target ≥ 0.9); "
             f"fedgate CPU {m['fedgate_cpu']:.2f} s/GiB"),
        ]  # fmt: skip
        if op == "download":
            rows.append(
                (f"{mib} MiB GET curl on Girder", f"{r['download_curl_on_girder']:.0f} MB/s",
                 "Girder's own ceiling for one HTTP client")
            )  # fmt: skip
            rows.append(
                (f"{mib} MiB GET girder-client by path",
                 f"{r['download_girder_client_by_path']:.0f} MB/s",
                 "lookup + item files + download: the two calls fedgate's path costs")
            )  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1024", help="MiB, comma-separated")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--upload-chunk-mib", type=float, default=64)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    was_running = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, capture_output=True)
    env = json.loads(ENV.read_text())
    api = env["api_url"]
    admin = girder_client.GirderClient(apiUrl=api)
    admin.authenticate(apiKey=env["admin"]["api_key"])
    name = f"bench-{uuid.uuid4().hex[:8]}"
    folder = admin.createFolder(env["collection_id"], name, parentType="collection")
    alice = girder_client.GirderClient(apiUrl=api)
    alice.authenticate(apiKey=env["alice"]["api_key"])
    tmp = Path(tempfile.mkdtemp(prefix="bench-girder-"))
    root = f"/collection/{env['collection']}/{name}"
    mount = {
        "type": "girder",
        "api_url": api,
        "root": root,
        "credential_source": "user",
        "upload_chunk_mib": args.upload_chunk_mib,
    }
    results: dict[str, Any] = {
        "sizes_mib": sizes,
        "repeat": args.repeat,
        "upload_chunk_mib": args.upload_chunk_mib,
        "load_avg_start": os.getloadavg(),
        "runs": {},
    }
    rows: list[tuple[str, str, str]] = []
    try:
        with fedgate({"girder": mount}) as fg:
            headers = {"apikey": fg.key}
            put = httpx.put(
                fg.url + "/user/externalKeys",
                json={"storageIdentifier": "girder", "apiKey": env["alice"]["api_key"]},
                headers=headers,
            )
            put.raise_for_status()
            runner = Runner(args.repeat, fg.pid)
            for mib in sizes:
                src = make_file(tmp / f"src-{mib}.bin", mib * MiB)
                r = run_size(
                    runner, fg.url, headers, alice, admin, folder["_id"], root, api, src, mib
                )
                results["runs"][str(mib)] = r
                rows += rows_for(mib, r)
                os.remove(src)
    finally:
        try:
            admin.delete(f"folder/{folder['_id']}")
        except girder_client.HttpError:
            print("  (could not delete the benchmark folder; the testbed is shared)")
        shutil.rmtree(tmp, ignore_errors=True)
        if was_running != 0:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True)
    results["load_avg_end"] = os.getloadavg()
    print(table("bench/girder.py (real Girder 5 on SecantusDB, loopback, best of runs)", rows))
    print(
        f"  load average: {results['load_avg_start'][0]:.1f} at start, "
        f"{results['load_avg_end'][0]:.1f} at end (2 cores)"
    )
    save("girder", results)


if __name__ == "__main__":
    main()
