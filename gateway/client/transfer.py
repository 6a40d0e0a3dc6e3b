"""Downloads and uploads of single files, safe against broken connections.

Download: the bytes go to ``.<name>.fedgate-part`` next to DEST (with a small
``.fedgate-part.json`` recording the validator), are md5-hashed as they arrive, and a
broken connection is resumed with ``Range`` + ``If-Range`` from the bytes already there —
also by a later run. When the resource changed meanwhile the server answers 200 and the
download restarts from zero. DEST appears (one rename) only once the size and the md5
given by the gateway (``?action=md5``) both match; on a mismatch the part file is removed
and nothing is left at DEST. A gateway that cannot give the md5 leaves the size check
alone, and the result says so (``checksum = "size-only"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Protocol

from gateway.client.errors import ChecksumMismatch, ConflictError, FedgateError, NetworkError
from gateway.client.fetch import Body
from gateway.client.http import Http, Retryable
from gateway.client.pipe import pump
from gateway.client.uris import Resolved

CHUNK = 1024 * 1024


class Bar(Protocol):
    def update(self, n: int) -> object: ...
    def close(self) -> None: ...


BarFactory = Callable[[str, int | None, int], Bar]


class NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def no_bar(desc: str, total: int | None, initial: int) -> Bar:
    return NullBar()


@dataclass
class FileResult:
    operation: str  # "get" | "put" | "mkdir"
    path: str  # platform path
    local: str
    bytes: int = 0
    md5: str | None = None
    checksum: str = "md5"  # "md5" verified, "size-only" (gateway gave no md5), "none"
    resumed_from: int = 0  # bytes already there when the last attempt started
    redirected: bool = False  # served by the storage itself (307), not through fedgate
    seconds: float = 0.0
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def part_paths(dest: Path) -> tuple[Path, Path]:
    part = dest.with_name(f".{dest.name}.fedgate-part")
    return part, part.with_name(part.name + ".json")


def _validator(headers: Message) -> str | None:
    etag = str(headers.get("etag", ""))
    if etag and not etag.startswith("W/"):
        return etag  # If-Range needs a strong validator
    return str(headers.get("last-modified", "")) or None


def _load_state(meta: Path, part: Path, path: str) -> tuple[int, str | None]:
    try:
        state = json.loads(meta.read_text())
        size = part.stat().st_size
    except (OSError, ValueError):
        return 0, None
    if state.get("path") != path or not state.get("validator"):
        return 0, None
    return size, str(state["validator"])


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _new_md5() -> Any:
    return hashlib.md5(usedforsecurity=False)  # an integrity check, not security


def _hash_file(path: Path, limit: int) -> Any:
    md5 = _new_md5()
    with open(path, "rb") as f:
        left = limit
        while left > 0:
            block = f.read(min(CHUNK, left))
            if not block:
                break
            md5.update(block)
            left -= len(block)
    return md5


def remote_md5(http: Http, target: Resolved) -> tuple[str | None, str]:
    """(md5, note): None with the reason when the gateway cannot give it."""
    try:
        answer = http.json("GET", target.url, f"md5 of {target.path}", {"action": "md5"})
    except FedgateError as exc:
        return None, f"the gateway gave no md5 ({exc.message}): size checked only"
    md5 = answer.get("md5") if isinstance(answer, dict) else None
    if not isinstance(md5, str) or len(md5) != 32:
        return None, "the gateway gave no md5: size checked only"
    return md5.lower(), ""


class _Download:
    def __init__(
        self, http: Http, target: Resolved, dest: Path, bar: BarFactory, hashing: bool
    ) -> None:
        self.http, self.target, self.dest, self.bar_factory = http, target, dest, bar
        self.part, self.meta = part_paths(dest)
        self.offset, self.validator = _load_state(self.meta, self.part, target.path)
        if self.offset == 0:
            _remove(self.part, self.meta)
        # Without a check to make, no md5: it would cost a core at network speed.
        self.hashing = hashing
        self.md5: Any | None = None
        if hashing:
            self.md5 = _hash_file(self.part, self.offset) if self.offset else _new_md5()
        self.total: int | None = None
        self.redirected = False
        self.started_at = 0

    def _restart(self) -> None:
        self.offset, self.validator = 0, None
        self.md5 = _new_md5() if self.hashing else None
        _remove(self.part, self.meta)

    def _save_state(self) -> None:
        self.meta.write_text(json.dumps({"path": self.target.path, "validator": self.validator}))

    def attempt(self) -> None:
        headers = {}
        if self.offset and self.validator:
            headers = {"Range": f"bytes={self.offset}-", "If-Range": self.validator}
        elif self.offset:
            self._restart()
        response, self.redirected = self.http.stream(
            self.target.url, params={"action": "content"}, headers=headers
        )
        try:
            self._receive(response)
        finally:
            response.close()

    def _receive(self, response: Body) -> None:
        what = f"download of {self.target.path}"
        if response.status == 416 and self.offset:
            self._restart()  # the part is not a prefix of the current file
            raise Retryable("the partial download no longer fits the file")
        self.http.check(response, what)
        if response.status == 206 and self.offset:
            first, _, total = response.headers.get("content-range", "").partition("/")
            if not first.startswith(f"bytes {self.offset}-"):
                self._restart()
                raise Retryable("the server answered another range")
            self.total = int(total) if total.isdigit() else None
        elif response.status == 200:
            if self.offset:
                self._restart()  # the file changed (If-Range failed): start again
            self.total = response.length
        else:
            raise FedgateError(f"{what}: unexpected HTTP {response.status}")
        self.started_at = self.offset  # what this answer continues (0 after a restart)
        self.validator = _validator(response.headers) or None
        if self.validator:
            self._save_state()
        bar = self.bar_factory(self.dest.name, self.total, self.offset)

        def advance(n: int) -> None:
            self.offset += n
            bar.update(n)

        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            pump(response, fd, self.md5, advance, expected=response.length)
        finally:
            os.close(fd)
            bar.close()
        if self.total is not None and self.offset != self.total:
            raise Retryable(f"the connection ended after {self.offset} of {self.total} bytes")


def download(
    http: Http,
    target: Resolved,
    dest: Path,
    *,
    expected_size: int | None = None,
    verify: bool = True,
    bar: BarFactory = no_bar,
) -> FileResult:
    started = time.monotonic()
    job = _Download(http, target, dest, bar, hashing=verify)
    checksum: Future[tuple[str | None, str]] | None = None
    pool = ThreadPoolExecutor(1) if verify else None
    try:
        if pool is not None:  # the gateway hashes while we download
            checksum = pool.submit(remote_md5, http, target)
        try:
            http.retrying(f"download of {target.path}", job.attempt, lambda: job.offset)
        except NetworkError:
            raise  # the part file stays: the next run resumes it
        except FedgateError:
            _remove(job.part, job.meta)
            raise
        size = job.offset
        local = job.md5.hexdigest() if job.md5 is not None else None
        result = FileResult("get", target.path, str(dest), size, local)
        result.resumed_from, result.redirected = job.started_at, job.redirected
        if expected_size is not None and size != expected_size:
            _remove(job.part, job.meta)
            raise ChecksumMismatch(
                f"{target.path}: received {size} bytes, the gateway announced {expected_size}; "
                f"nothing written to {dest}"
            )
        if checksum is not None:
            remote, result.note = checksum.result()
            if remote is None:
                result.checksum = "size-only"
            elif remote != local:
                _remove(job.part, job.meta)
                raise ChecksumMismatch(
                    f"{target.path}: md5 of the bytes received ({local}) differs from the "
                    f"gateway's ({remote}); nothing written to {dest}"
                )
        else:
            result.checksum = "none"
        os.replace(job.part, dest)
        _remove(job.meta)
        result.seconds = round(time.monotonic() - started, 3)
        return result
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _file_body(src: Path, md5: Any, bar: Bar) -> Iterator[bytes]:
    with open(src, "rb") as f:
        while block := f.read(CHUNK):
            md5.update(block)
            bar.update(len(block))
            yield block


def upload(
    http: Http, src: Path, target: Resolved, *, verify: bool = True, bar: BarFactory = no_bar
) -> FileResult:
    started = time.monotonic()
    size = src.stat().st_size
    what = f"upload to {target.path}"
    state: dict[str, Any] = {}

    def attempt() -> Any:
        md5 = _new_md5()
        progress = bar(src.name, size, 0)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            response, _ = http.send(
                "PUT", target.url, headers=headers, content=lambda: _file_body(src, md5, progress)
            )
        finally:
            progress.close()
        http.check(response, what)
        state["md5"] = md5.hexdigest()
        return response.json()

    entry = http.retrying(what, attempt)
    result = FileResult("put", target.path, str(src), size, state["md5"])
    stored = entry.get("size") if isinstance(entry, dict) else None
    if isinstance(stored, int) and stored != size:
        raise ChecksumMismatch(f"{target.path}: the storage holds {stored} bytes, sent {size}")
    if verify:
        remote, result.note = remote_md5(http, target)
        if remote is None:
            result.checksum = "size-only"
        elif remote != result.md5:
            raise ChecksumMismatch(
                f"{target.path}: the storage's md5 ({remote}) differs from the file sent "
                f"({result.md5})"
            )
    else:
        result.checksum = "none"
    result.seconds = round(time.monotonic() - started, 3)
    return result


def mkdir(http: Http, target: Resolved, exist_ok: bool = True) -> bool:
    """Create a directory; False if it was there already (and ``exist_ok``)."""

    def attempt() -> bool:
        response, _ = http.send("PUT", target.url + "/")
        try:
            http.check(response, f"mkdir {target.path}")
        except ConflictError as exc:
            if exist_ok and exc.code == 40901:
                return False
            raise
        return True

    return http.retrying(f"mkdir {target.path}", attempt)
