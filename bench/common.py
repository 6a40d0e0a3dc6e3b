"""Shared pieces of the benchmarks: start fedgate as a real process, time transfers with
curl (the same client for fedgate and its peer, so the client is never the difference),
sample a process's RSS, and print ratio tables."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MiB = 1024 * 1024
GiB = 1024 * MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def _nginx(server: str) -> Iterator[str]:
    """An nginx on a free port whose one ``server`` block holds ``server``."""
    port = free_port()
    conf_dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    (conf_dir / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {conf_dir}/nginx.pid;
error_log {conf_dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {conf_dir}/body;
  proxy_temp_path {conf_dir}/proxy;
  fastcgi_temp_path {conf_dir}/fastcgi;
  uwsgi_temp_path {conf_dir}/uwsgi;
  scgi_temp_path {conf_dir}/scgi;
  server {{ listen 127.0.0.1:{port}; {server} }}
}}
""")
    try:
        with serving(
            ["nginx", "-c", str(conf_dir / "nginx.conf"), "-p", str(conf_dir)], port
        ) as url:
            yield url
    finally:
        shutil.rmtree(conf_dir, ignore_errors=True)


@contextmanager
def serving(cmd: list[str], port: int, quiet: bool = False) -> Iterator[str]:
    """Run a peer server until the block ends; yields its URL once it listens."""
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL if quiet else None)
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def nginx(root: Path) -> Any:
    """nginx serving ``root`` with sendfile: the HTTP ceiling for local files."""
    return _nginx(f"root {root};")


def nginx_relay(upstream: str) -> Any:
    """nginx as a plain streaming reverse proxy to ``upstream`` (``host:port``): what a
    relay written in C costs on this machine, the scale for a proxied transfer. The Host
    header stays the upstream's, so presigned URLs keep their signature."""
    return _nginx(
        "location / { "
        f"proxy_pass http://{upstream}; proxy_http_version 1.1; "
        'proxy_set_header Connection ""; proxy_request_buffering off; client_max_body_size 0; '
        # Unbuffered, nginx relays through proxy_buffer_size (4 KiB by default: 300 MB/s).
        "proxy_buffering off; proxy_buffer_size 1m; proxy_buffers 4 1m; "
        "proxy_busy_buffers_size 2m; }"
    )


def make_file(path: Path, size: int) -> Path:
    if path.exists() and path.stat().st_size == size:
        return path
    chunk = os.urandom(4 * MiB)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return path


@dataclass
class Fedgate:
    proc: subprocess.Popen[bytes]
    url: str  # with the API prefix
    key: str
    state: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def fedgate(
    mounts: dict[str, dict[str, Any]], workers: int = 1, extra_env: dict[str, str] | None = None
) -> Iterator[Fedgate]:
    """Run ``fedgate serve`` with the given mounts; yields its URL and admin key."""
    state = Path(tempfile.mkdtemp(prefix="fedgate-bench-"))
    port = free_port()
    lines = ["[server]", f'state_dir = "{state}"', 'api_prefix = "/rest"', ""]
    for name, opts in mounts.items():
        lines.append(f"[mounts.{name}]")
        for k, v in opts.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    (state / "fedgate.toml").write_text("\n".join(lines))
    env = dict(os.environ)
    env.update(
        {
            "FEDGATE_CONFIG": str(state / "fedgate.toml"),
            "FEDGATE_PORT": str(port),
            "FEDGATE_WORKERS": str(workers),
            "FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "FEDGATE_LOG_LEVEL": "WARNING",
        }
    )
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [str(VENV_BIN / "fedgate"), "serve"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    key = ""
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while not key and time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        m = re.search(r"API key \(shown once, keep it\): (\S+)", line)
        if m:
            key = m.group(1)
        if not line and proc.poll() is not None:
            raise RuntimeError("fedgate exited at start")
    threading.Thread(target=lambda: proc.stderr and proc.stderr.read(), daemon=True).start()
    wait_port(port)
    try:
        yield Fedgate(proc, f"http://127.0.0.1:{port}/rest", key, state)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(state, ignore_errors=True)


def run_curl(args: list[str], headers: dict[str, str] | None = None) -> str:
    """curl's ``-w`` output. Headers go in on stdin (``-H @-``), so API keys and tokens
    are neither in the process list nor in the error raised when curl fails, which
    carries curl's own message instead of the command line."""
    cmd = ["curl", *args]
    lines = "".join(f"{k}: {v}\n" for k, v in (headers or {}).items())
    if lines:
        cmd[1:1] = ["-H", "@-"]
    res = subprocess.run(cmd, input=lines, capture_output=True, text=True)
    if res.returncode != 0:
        url = args[-1].split("?", 1)[0]
        raise RuntimeError(f"curl {url} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def curl_get(
    url: str, headers: dict[str, str] | None = None, follow: bool = False, out: str = "/dev/null"
) -> dict[str, float]:
    args = ["-s", "-S", "-f", "-o", out, "-w"]
    args.append("%{speed_download} %{time_starttransfer} %{time_total} %{size_download}")
    if follow:
        args.append("-L")
    speed, ttfb, total, size = (float(x) for x in run_curl([*args, url], headers).split())
    return {"mb_s": speed / 1e6, "ttfb": ttfb, "total": total, "bytes": size}


def curl_put(url: str, path: Path, headers: dict[str, str] | None = None) -> dict[str, float]:
    args = ["-s", "-S", "-f", "-o", "/dev/null", "-X", "PUT", "-T", str(path)]
    args += ["-w", "%{speed_upload} %{time_total}"]
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    speed, total = (float(x) for x in run_curl([*args, url], headers).split())
    return {"mb_s": speed / 1e6, "total": total}


def curl_put_hashing(url: str, path: Path) -> dict[str, float]:
    """The same work as a proxied PUT with standard tools: curl sends the file (through
    an nginx relay) while ``openssl`` computes its md5 and sha-256 beside it (fedgate
    hashes md5, sha-256, adler32 and crc32c of every upload; the last two cost ~0.1
    CPU-s per GiB and have no standard tool). Timed until all three are done."""
    t0 = time.monotonic()
    hashers = [
        subprocess.Popen(["openssl", "dgst", f"-{algo}", str(path)], stdout=subprocess.DEVNULL)
        for algo in ("md5", "sha256")
    ]
    sent = curl_put(url, path)
    for proc in hashers:
        if proc.wait() != 0:
            raise RuntimeError("openssl dgst failed")
    total = time.monotonic() - t0
    return {"mb_s": sent["mb_s"] * sent["total"] / total, "total": total}


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def tree_pids(pid: int) -> list[int]:
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for c in children:
        out += tree_pids(int(c))
    return out


@dataclass
class RssSampler:
    pid: int
    interval: float = 0.05
    peak: float = 0.0
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            value = max(rss_mb(p) for p in tree_pids(self.pid))
            self.samples.append(value)
            self.peak = max(self.peak, value)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def wrk(
    url: str, headers: dict[str, str], seconds: int = 10, connections: int = 32
) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    res = subprocess.run(cmd + [url], capture_output=True, text=True, check=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", res.stdout).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", res.stdout)
    errors = re.search(r"Socket errors: .*", res.stdout)
    return {
        "rps": rps,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def table(title: str, rows: list[tuple[str, str, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    out = [f"\n== {title}"]
    for name, value, note in rows:
        out.append(f"  {name.ljust(width)}  {value:>14}  {note}")
    return "\n".join(out)


def save(name: str, results: dict[str, Any]) -> None:
    folder = REPO / "bench" / "results"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(results, indent=2))
