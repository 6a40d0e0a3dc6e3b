"""Downloads and uploads of single files, safe against broken connections.

Download: the bytes go to ``.<name>.fedgate-part`` next to DEST (with a small
``.fedgate-part.json`` recording the validator), are hashed as they arrive by a thread
beside the receive (gateway/client/pipe.py), and a broken connection is resumed with
``Range`` + ``If-Range`` from the bytes already there — also by a later run. When the
resource changed meanwhile the server answers 200 and the download restarts from zero.

The request asks ``Want-Repr-Digest: sha-256``: the gateway answers ``Repr-Digest`` with
the file's sha-256 from its digest store (on a 307 to a storage too), and sha-256 is what
is hashed (it uses the CPU's SHA instructions: about twice md5's speed). A gateway that
sends no sha-256 gets the md5 check as before (``?action=md5``, asked once the bytes
are in). DEST appears (one rename) only once the size and the digest both match; on a
mismatch the part file is removed and nothing is left at DEST. A gateway that can give
neither leaves the size check alone, and the result says so (``checksum = "size-only"``).

Upload: the file's sha-256 is computed first and sent as ``Content-Digest``: the gateway
refuses (400, nothing written) bytes that do not match it, and answers the sha-256 it
stored in ``Repr-Digest``, compared here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
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
    sha256: str | None = None
    # "sha-256" or "md5": verified with that; "size-only" (the gateway gave no digest);
    # "none" (not asked to verify).
    checksum: str = "sha-256"
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


def _new_hash(algorithm: str) -> Any:
    return hashlib.sha256() if algorithm == "sha256" else _new_md5()


_SHA256_MEMBER = re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):")


def sha256_from(header: str | None) -> str | None:
    """The sha-256 (hex) in a ``Repr-Digest`` value, if it holds a well-formed one."""
    found = _SHA256_MEMBER.search(header or "")
    if found is None:
        return None
    try:
        raw = base64.b64decode(found.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _hash_file(path: Path, limit: int, algorithm: str = "md5") -> Any:
    md5 = _new_hash(algorithm)
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
        # Without a check to make, no hash: it would cost a core at network speed.
        self.hashing = hashing
        self.hash: Any | None = None  # sha-256 of the bytes in the part file
        self.expected: str | None = None  # the gateway's sha-256 of the file
        # Asked beside the download when the answer carried no sha-256 (a file the
        # gateway has not hashed yet: its HEAD hashes it while we receive).
        self.asked: Future[tuple[str | None, str]] | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.total: int | None = None
        self.redirected = False
        self.started_at = 0

    def _restart(self) -> None:
        self.offset, self.validator = 0, None
        self.hash = None
        _remove(self.part, self.meta)

    def _choose_hash(self, response: Body, seen: dict[str, str]) -> None:
        """The gateway's sha-256, from this answer or the redirect that led to it (else
        asked beside the download); the hash of the bytes already in the part file."""
        if not self.hashing:
            return
        own = response.headers.get("repr-digest") if not self.redirected else None
        announced = sha256_from(seen.get("repr-digest") or own)
        if announced:
            self.expected = announced  # a 200 after a change brings the new file's
        elif self.expected is None and self.asked is None:
            self.pool = ThreadPoolExecutor(1)
            self.asked = self.pool.submit(remote_sha256, self.http, self.target)
        if self.hash is None:
            self.hash = (
                _hash_file(self.part, self.offset, "sha256") if self.offset else hashlib.sha256()
            )

    def _save_state(self) -> None:
        self.meta.write_text(json.dumps({"path": self.target.path, "validator": self.validator}))

    def attempt(self) -> None:
        headers = {"Want-Repr-Digest": "sha-256=10"} if self.hashing else {}
        if self.offset and self.validator:
            headers |= {"Range": f"bytes={self.offset}-", "If-Range": self.validator}
        elif self.offset:
            self._restart()
        seen: dict[str, str] = {}
        response, self.redirected = self.http.stream(
            self.target.url, params={"action": "content"}, headers=headers, seen=seen
        )
        try:
            self._receive(response, seen)
        finally:
            response.close()

    def _receive(self, response: Body, seen: dict[str, str]) -> None:
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
        self._choose_hash(response, seen)
        self.validator = _validator(response.headers) or None
        if self.validator:
            self._save_state()
        bar = self.bar_factory(self.dest.name, self.total, self.offset)

        def advance(n: int) -> None:
            self.offset += n
            bar.update(n)

        fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            pump(response, fd, self.hash, advance, expected=response.length)
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
    try:
        return _finish(http, target, dest, job, expected_size, verify, started)
    finally:
        if job.pool is not None:
            job.pool.shutdown(wait=False, cancel_futures=True)


def _finish(
    http: Http,
    target: Resolved,
    dest: Path,
    job: _Download,
    expected_size: int | None,
    verify: bool,
    started: float,
) -> FileResult:
    try:
        http.retrying(f"download of {target.path}", job.attempt, lambda: job.offset)
    except NetworkError:
        raise  # the part file stays: the next run resumes it
    except FedgateError:
        _remove(job.part, job.meta)
        raise
    size = job.offset
    result = FileResult("get", target.path, str(dest), size)
    result.resumed_from, result.redirected = job.started_at, job.redirected
    if expected_size is not None and size != expected_size:
        _remove(job.part, job.meta)
        raise ChecksumMismatch(
            f"{target.path}: received {size} bytes, the gateway announced {expected_size}; "
            f"nothing written to {dest}"
        )
    if not verify:
        result.checksum = "none"
    else:
        local = (job.hash or hashlib.sha256()).hexdigest()
        result.sha256, result.checksum = local, "sha-256"
        remote = job.expected
        if remote is None and job.asked is not None:
            remote, result.note = job.asked.result()
        if remote is None:  # a gateway that gives no sha-256: md5, at the cost of a reread
            local = _hash_file(job.part, size, "md5").hexdigest()
            result.sha256, result.md5, result.checksum = None, local, "md5"
            remote, result.note = remote_md5(http, target)
        if remote is None:
            result.checksum = "size-only"
        elif not hmac.compare_digest(remote, local):
            _remove(job.part, job.meta)
            name = "sha-256" if result.sha256 else "md5"
            raise ChecksumMismatch(
                f"{target.path}: {name} of the bytes received ({local}) differs from the "
                f"gateway's ({remote}); nothing written to {dest}"
            )
    os.replace(job.part, dest)
    _remove(job.meta)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def file_sha256(src: Path) -> str:
    """The sha-256 of a local file, for the ``Content-Digest`` of its upload."""
    with open(src, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file_body(src: Path, bar: Bar) -> Iterator[bytes]:
    with open(src, "rb") as f:
        while block := f.read(CHUNK):
            bar.update(len(block))
            yield block


def remote_sha256(http: Http, target: Resolved) -> tuple[str | None, str]:
    """(sha-256, note) as the gateway has it kept, from a HEAD with Want-Repr-Digest."""
    try:
        # Answered by the gateway itself (never a 307): a storage's word is not its own.
        response, redirected = http.send(
            "HEAD",
            target.url,
            params={"action": "content"},
            headers={"Want-Repr-Digest": "sha-256=10", "X-Fedgate-Redirect": "never"},
        )
        http.check(response, f"digest of {target.path}")
    except FedgateError as exc:
        return None, f"the gateway gave no sha-256 ({exc.message}): size checked only"
    found = None if redirected else sha256_from(response.headers.get("repr-digest"))
    return found, "" if found else "the gateway gave no sha-256: size checked only"


def upload(
    http: Http, src: Path, target: Resolved, *, verify: bool = True, bar: BarFactory = no_bar
) -> FileResult:
    started = time.monotonic()
    size = src.stat().st_size
    what = f"upload to {target.path}"
    state: dict[str, Any] = {}
    # Hashed before the first byte leaves (a header precedes the body): the gateway then
    # refuses bytes that do not match, and nothing wrong is ever stored.
    local = file_sha256(src) if verify else None

    def attempt() -> Any:
        progress = bar(src.name, size, 0)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if local is not None:
            digest = base64.b64encode(bytes.fromhex(local)).decode()
            headers["Content-Digest"] = f"sha-256=:{digest}:"
        try:
            response, redirected = http.send(
                "PUT", target.url, headers=headers, content=lambda: _file_body(src, progress)
            )
        finally:
            progress.close()
        http.check(response, what)
        if not redirected:
            state["stored"] = sha256_from(response.headers.get("repr-digest"))
        return response.json()

    entry = http.retrying(what, attempt)
    result = FileResult("put", target.path, str(src), size, sha256=local)
    stored = entry.get("size") if isinstance(entry, dict) else None
    if isinstance(stored, int) and stored != size:
        raise ChecksumMismatch(f"{target.path}: the storage holds {stored} bytes, sent {size}")
    if local is not None:
        remote = state.get("stored")
        if remote is None:  # an older gateway, or a PUT sent to the storage itself
            remote, result.note = remote_sha256(http, target)
        if remote is None:
            result.checksum = "size-only"
        elif not hmac.compare_digest(remote, local):
            raise ChecksumMismatch(
                f"{target.path}: the storage's sha-256 ({remote}) differs from the file sent "
                f"({local})"
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
