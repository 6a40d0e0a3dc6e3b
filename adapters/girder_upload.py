"""Atomic streaming uploads into Girder (see the module docstring of adapters/girder.py).

Girder itself gives the atomicity: a new file is uploaded with ``POST /file`` into the
parent *folder*, and Girder creates the item only when the last byte has arrived; an
existing file is replaced with ``PUT /file/{id}/contents``, which keeps serving the old
bytes until the last chunk arrives and then swaps the file record in one update. The last
chunk is only ever sent by ``commit``, so nothing changes at the target before it.
``abort`` cancels the server-side upload (``DELETE /file/upload/{id}``), which removes
its temporary bytes.

Girder needs the total size when an upload starts and chunks of at least 5 MiB (but the
last). With a ``size_hint`` the bytes stream to Girder in chunks as they come; without
one (or once more bytes than announced arrive before anything was sent) they are spooled
to a local temporary file and uploaded at commit. Fewer or more bytes than announced
after chunks were sent is an error (the upload is cancelled).

Streamed chunks are sent by a background thread, one at a time, while the next chunk is
being received: receiving from the client and Girder's ingest overlap instead of taking
turns (bench/girder.py: the upload rate went from ~0.4× to ~0.9× girder-client's). At
most two chunks are held per upload (the one in flight and the one filling up); an error
of the chunk in flight surfaces at the next ``write`` or at ``commit``.
"""

from __future__ import annotations

import contextlib
import mimetypes
import tempfile
import threading
import unicodedata
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from adapters.base import (
    AlreadyExists,
    Entry,
    IsADirectory,
    ParentNotFound,
    StorageError,
)
from adapters.girder_http import GirderError

if TYPE_CHECKING:
    from adapters.girder import GirderStorage


_SENDERS: ThreadPoolExecutor | None = None
_SENDERS_LOCK = threading.Lock()


def _senders() -> ThreadPoolExecutor:
    """Shared by all uploads; each has at most one chunk in flight, so a full pool only
    delays a writer (it waits in ``write``), it never deadlocks."""
    global _SENDERS
    with _SENDERS_LOCK:
        if _SENDERS is None:
            _SENDERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="girder-upload")
        return _SENDERS


class _Chunk:
    """One Girder chunk as the blocks it was received in. requests sends an iterable with
    a ``len`` under Content-Length, one ``sendall`` per block: gluing a 16 MiB chunk into
    one bytes object cost two fresh 16 MiB buffers per chunk (mmap'ed, so page-faulted in
    each time), about 2 CPU-s per GiB (py-spy, bench/girder.py)."""

    __slots__ = ("_parts", "_size")

    def __init__(self, parts: list[memoryview | bytes], size: int) -> None:
        self._parts = parts
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[memoryview | bytes]:
        # Re-iterable: girder-client's session may send the same body again on a retry.
        return iter(self._parts)


class _Blocks:
    """The bytes received but not yet sent, kept as the blocks they arrived in."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: deque[memoryview | bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        if data:
            # Held past this call: a caller's reusable buffer must not change under us.
            self._parts.append(data if type(data) is bytes else bytes(data))
            self._size += len(data)

    def take(self, size: int) -> _Chunk:
        """The first ``size`` bytes (a block split at the boundary is sliced, not copied)."""
        taken: list[memoryview | bytes] = []
        need = size
        while need:
            part = self._parts.popleft()
            if len(part) > need:
                view = memoryview(part)
                taken.append(view[:need])
                self._parts.appendleft(view[need:])
                break
            taken.append(part)
            need -= len(part)
        self._size -= size
        return _Chunk(taken, size)


def unservable(name: str) -> bool:
    """Girder 5 answers 500 to a download whose *file* name it cannot put in the
    Content-Disposition header (its latin-1 fallback is not valid UTF-8, e.g. "ø")."""
    latin = unicodedata.normalize("NFKD", name).encode("iso8859-1", "ignore")
    try:
        latin.decode("utf8")
    except UnicodeDecodeError:
        return True
    return False


def mime_of(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


class GirderWriter:
    def __init__(
        self,
        storage: GirderStorage,
        path: str,
        folder_id: str,
        name: str,
        file_id: str | None,
        size_hint: int | None,
    ) -> None:
        self._storage = storage
        self._session = storage.session
        self._path = path
        self._folder_id = folder_id
        self._name = name  # the Girder name (display escapes undone)
        self._file_id = file_id  # set when replacing an existing file
        self._size = size_hint
        self._chunk = storage.upload_chunk_size
        self._buffer = _Blocks()
        # Without a size Girder cannot start an upload: spool to local disk until commit.
        self._spool: Any = None
        self._written = 0
        self._sent = 0
        self._upload_id: str | None = None
        self._closed = False
        self._inflight: Future[Any] | None = None

    # --- Writer ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError(f"{self._path}: write after commit or abort")
        self._written += len(data)
        started = self._upload_id is not None or self._inflight is not None
        if self._size is not None and self._written > self._size and started:
            raise StorageError(f"{self._path}: more bytes than the announced size")
        if self._size is None or self._written > self._size:
            if self._spool is None:
                self._spool = tempfile.SpooledTemporaryFile(max_size=self._chunk)  # noqa: SIM115
                for part in self._buffer.take(len(self._buffer)):
                    self._spool.write(part)
                self._size = None
            self._spool.write(data)
            return
        self._buffer.append(data)
        # Keep at least one byte back: the chunk that completes the upload is commit's.
        while len(self._buffer) > self._chunk:
            block = self._buffer.take(self._chunk)
            self._wait()  # chunks go in order, one at a time: offsets depend on it
            if self._upload_id is None:
                # The first chunk opens the upload: send it here, so a refusal (parent
                # gone, no permission) is this write's error and the upload id is known.
                self._send(block, self._size)
            else:
                self._inflight = _senders().submit(self._send, block, self._size)

    def _wait(self) -> None:
        """Wait for the chunk in flight; its error (if any) is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def commit(self) -> Entry:
        if self._closed:
            raise StorageError(f"{self._path}: writer already closed")
        try:
            self._wait()
            if self._spool is not None:
                total = self._written
                self._spool.seek(0)
                while True:
                    block = self._spool.read(self._chunk)
                    if not block:
                        break
                    self._send(block, total)
                if total == 0:
                    self._send(b"", 0)
            else:
                if self._written != self._size and self._upload_id is not None:
                    raise StorageError(f"{self._path}: fewer bytes than the announced size")
                result = self._send(self._buffer.take(len(self._buffer)), self._written)
                return self._finish(result)
            return self._finish(self._last)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._closed = True
        # Let the chunk in flight land first, so the cancel below is the last word.
        with contextlib.suppress(BaseException):
            self._wait()
        self._buffer = _Blocks()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        upload_id, self._upload_id = self._upload_id, None
        if upload_id:
            # Already finalized or gone: nothing left to cancel.
            with contextlib.suppress(StorageError):
                self._session.request("DELETE", f"file/upload/{upload_id}")

    # --- internals ------------------------------------------------------------------

    _last: Any = None

    def _send(self, block: _Chunk | bytes, total: int) -> Any:
        """Start the upload (with this block as first chunk) or append a chunk."""
        if not block:
            block = b""  # an empty iterable would go out chunk-encoded, not as length 0
        headers = {"Content-Type": "application/octet-stream"}
        try:
            if self._upload_id is None:
                if self._file_id is not None:
                    answer = self._session.request(
                        "PUT", f"file/{self._file_id}/contents", params={"size": total}
                    )
                    if "itemId" not in answer:  # an upload record, not the finished file
                        self._upload_id = str(answer["_id"])
                        answer = self._chunk_request(block, headers)
                else:
                    params = {
                        "parentType": "folder",
                        "parentId": self._folder_id,
                        "name": self._name,
                        "size": total,
                        "mimeType": mime_of(self._name),
                    }
                    answer = self._session.request(
                        "POST", "file", params=params, data=block or None, headers=headers
                    )
                    if "itemId" not in answer:
                        self._upload_id = str(answer["_id"])
            else:
                answer = self._chunk_request(block, headers)
        except GirderError as exc:
            raise self._storage.write_error(self._path, exc) from exc
        self._sent += len(block)
        if "itemId" in answer:
            self._upload_id = None  # finalized: nothing left to cancel
        self._last = answer
        return answer

    def _chunk_request(self, block: _Chunk | bytes, headers: dict[str, str]) -> Any:
        return self._session.request(
            "POST",
            "file/chunk",
            params={"uploadId": self._upload_id, "offset": self._sent},
            data=block,
            headers=headers,
        )

    def _finish(self, answer: Any) -> Entry:
        self._closed = True
        if not isinstance(answer, dict) or "itemId" not in answer:
            raise StorageError(f"{self._path}: Girder did not complete the upload")
        if self._file_id is None:
            self._settle_name(str(answer["itemId"]))
            if unservable(self._name):
                # Only the item name is shown; an ASCII file name keeps it downloadable.
                safe = unicodedata.normalize("NFKD", self._name).encode("ascii", "ignore")
                answer = self._session.request(
                    "PUT", f"file/{answer['_id']}", params={"name": safe.decode() or "data"}
                )
        return self._storage.file_entry(self._path, answer)

    def _settle_name(self, item_id: str) -> None:
        """Girder renames a new item to "name (1)" when the name got taken meanwhile."""
        item = self._session.request("GET", f"item/{item_id}")
        if item["name"] == self._name:
            return
        found = self._session.request(
            "GET", "item", params={"folderId": self._folder_id, "name": self._name, "limit": 1}
        )
        if not found:
            # A folder took the name while we uploaded: the target is a directory now.
            self._session.request("DELETE", f"item/{item_id}")
            raise IsADirectory(f"{self._path}: is a directory")
        # Another writer created the file concurrently: last writer wins, as on POSIX.
        self._session.request("DELETE", f"item/{found[0]['_id']}")
        try:
            self._session.request("PUT", f"item/{item_id}", params={"name": self._name})
        except GirderError as exc:
            raise AlreadyExists(f"{self._path}: name taken during the upload") from exc


def parent_missing(path: str) -> ParentNotFound:
    parent = path.rsplit("/", 1)[0] if "/" in path else "/"
    return ParentNotFound(f"{parent}: parent directory does not exist")
