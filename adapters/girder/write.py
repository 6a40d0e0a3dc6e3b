"""Atomic streaming uploads into Girder (see adapters/girder/__init__.py).

Girder itself gives the atomicity: a new file is uploaded with ``POST /file`` into the
parent *folder*, and Girder creates the item only when the last byte has arrived; an
existing file is replaced with ``PUT /file/{id}/contents``, which keeps serving the old
bytes until the last chunk arrives and then swaps the file record in one update. The last
byte is only ever sent by ``commit``, so nothing changes at the target before it.
An exclusive (create-only) upload relies on Girder's own uniqueness rule: an item created
under a name already taken in the folder is renamed "name (1)", so the upload that lost a
race finds its item renamed, deletes it and reports AlreadyExists, leaving the other file
as it is (a non-exclusive upload replaces it instead: last writer wins).
``abort`` cancels the server-side upload (``DELETE /file/upload/{id}``), which removes
its temporary bytes.

Girder needs the total size when an upload starts and chunks of at least 5 MiB (but the
last). With a ``size_hint`` the upload is opened at the first write and the bytes stream
on to Girder as they arrive; without one (or when more bytes than announced arrive in the
first write) they are spooled to a local temporary file and uploaded at commit. Fewer or
more bytes than announced once the upload is open is an error (the upload is cancelled).

Each upload has one sender thread that sends the chunks one after the other, each as one
``POST file/chunk`` whose body (Content-Length: the chunk's size) is fed block by block
from a short queue as the client's bytes arrive. Nothing is gathered into chunk-sized
buffers, so a chunk can be as large as girder-client's (64 MiB, the default here) at a
memory cost of a few blocks per upload; fewer chunks means fewer of Girder's per-chunk
round trips and database updates (measured: docs/decisions.md). The queue also gives
back-pressure: a slow Girder slows the client down instead of filling memory.
"""

from __future__ import annotations

import contextlib
import tempfile
from concurrent.futures import Future
from typing import Any

from adapters.base import AlreadyExists, Entry, IsADirectory, StorageError
from adapters.common import mime_type
from adapters.girder.entries import file_entry
from adapters.girder.errors import GirderError, write_error
from adapters.girder.names import servable_file_name, unservable
from adapters.girder.session import GirderSession
from adapters.streamed_body import Block, Feed, check_sender, in_thread

SPOOL_BLOCK = 1024 * 1024  # read size when a spooled upload is sent at commit
SPOOL_IN_MEMORY = 1024 * 1024  # a spooled upload moves to a disk file beyond this


class GirderWriter:
    """One upload of ``name`` into the folder ``folder_id`` (replacing ``file_id`` when
    set), sent through ``session`` in chunks of ``chunk_size`` bytes."""

    def __init__(
        self,
        session: GirderSession,
        path: str,
        folder_id: str,
        name: str,
        file_id: str | None,
        size_hint: int | None,
        chunk_size: int,
        exclusive: bool = False,
    ) -> None:
        self._exclusive = exclusive
        self._session = session
        self._path = path
        self._folder_id = folder_id
        self._name = name  # the Girder name (display escapes undone)
        self._file_id = file_id  # set when replacing an existing file
        self._size = size_hint
        self._chunk = chunk_size
        # Without a size Girder cannot start an upload: spool to local disk until commit.
        self._spool: Any = None
        self._written = 0
        self._upload_id: str | None = None
        self._feed = Feed()
        self._sender: Future[Any] | None = None
        self._held: Block = b""  # the upload's last byte: only commit sends it
        self._closed = False

    # --- Writer ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            raise StorageError(f"{self._path}: write after commit or abort")
        if not data:
            return
        self._written += len(data)
        if self._size is not None and self._written > self._size and self._sender is not None:
            raise StorageError(f"{self._path}: more bytes than the announced size")
        if self._size is None or self._written > self._size:
            if self._spool is None:
                self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
                self._size = None
            self._spool.write(data)
            return
        if self._sender is None:
            # Opened here, not in the sender: a refusal (parent gone, no permission) is
            # this write's error.
            self._open(self._size)
        block: Block = data
        if self._written == self._size:
            view = memoryview(data)
            block, self._held = view[:-1], bytes(view[-1:])  # held past this call: a copy
        if block:
            self._feed.put(block, self._alive)

    def commit(self) -> Entry:
        if self._closed:
            raise StorageError(f"{self._path}: writer already closed")
        try:
            if self._spool is not None:
                return self._finish(self._send_spool())
            if self._sender is None:  # nothing was written
                return self._finish(self._create_empty())
            if self._written != self._size:
                raise StorageError(f"{self._path}: fewer bytes than the announced size")
            self._feed.put(self._held, self._alive)
            return self._finish(self._sender.result())
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self._closed = True
        sender, self._sender = self._sender, None
        if sender is not None:
            # Break off the chunk being sent and let the sender end, so the cancel
            # below is the last word.
            self._feed.cancel()
            with contextlib.suppress(BaseException):
                sender.result()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        upload_id, self._upload_id = self._upload_id, None
        if upload_id:
            # Already finalized or gone: nothing left to cancel.
            with contextlib.suppress(StorageError):
                self._session.request("DELETE", f"file/upload/{upload_id}")

    # --- internals ------------------------------------------------------------------

    def _open(self, total: int) -> None:
        """Open the upload of ``total`` (> 0) bytes and start the sender."""
        try:
            if self._file_id is not None:
                answer = self._session.request(
                    "PUT", f"file/{self._file_id}/contents", params={"size": total}
                )
            else:
                answer = self._session.request("POST", "file", params=self._new_file(total))
        except GirderError as exc:
            raise write_error(self._path, exc) from exc
        self._upload_id = str(answer["_id"])
        self._sender = in_thread(lambda: self._send_chunks(total), "girder-upload")

    def _new_file(self, total: int) -> dict[str, Any]:
        return {
            "parentType": "folder",
            "parentId": self._folder_id,
            "name": self._name,
            "size": total,
            "mimeType": mime_type(self._name),
        }

    def _send_chunks(self, total: int) -> Any:
        """The sender: every chunk in order; the last answer is the finished file."""
        answer: Any = None
        offset = 0
        while offset < total:
            size = min(self._chunk, total - offset)
            try:
                answer = self._session.request(
                    "POST",
                    "file/chunk",
                    params={"uploadId": self._upload_id, "offset": offset},
                    data=self._feed.chunk(size),
                    headers={"Content-Type": "application/octet-stream"},
                )
            except GirderError as exc:
                raise write_error(self._path, exc) from exc
            offset += size
        if isinstance(answer, dict) and "itemId" in answer:
            self._upload_id = None  # finalized: nothing left to cancel
        return answer

    def _alive(self) -> None:
        check_sender(self._sender, f"{self._path}: Girder ended the upload before its end")

    def _send_spool(self) -> Any:
        total = self._written
        if total == 0:
            return self._create_empty()
        self._open(total)
        self._spool.seek(0)
        while block := self._spool.read(SPOOL_BLOCK):
            self._feed.put(block, self._alive)
        assert self._sender is not None
        return self._sender.result()

    def _create_empty(self) -> Any:
        try:
            if self._file_id is not None:
                return self._session.request(
                    "PUT", f"file/{self._file_id}/contents", params={"size": 0}
                )
            return self._session.request("POST", "file", params=self._new_file(0))
        except GirderError as exc:
            raise write_error(self._path, exc) from exc

    def _finish(self, answer: Any) -> Entry:
        self._closed = True
        if not isinstance(answer, dict) or "itemId" not in answer:
            raise StorageError(f"{self._path}: Girder did not complete the upload")
        if self._file_id is None:
            self._settle_name(str(answer["itemId"]))
            if unservable(self._name):
                # Only the item name is shown; an ASCII file name keeps it downloadable.
                answer = self._session.request(
                    "PUT", f"file/{answer['_id']}", params={"name": servable_file_name(self._name)}
                )
        return file_entry(self._path, answer)

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
        if self._exclusive:
            # Created by someone else while this upload streamed: keep theirs.
            self._session.request("DELETE", f"item/{item_id}")
            raise AlreadyExists(f"{self._path}: already exists (created during the upload)")
        # Another writer created the file concurrently: last writer wins, as on POSIX.
        self._session.request("DELETE", f"item/{found[0]['_id']}")
        try:
            self._session.request("PUT", f"item/{item_id}", params={"name": self._name})
        except GirderError as exc:
            raise AlreadyExists(f"{self._path}: name taken during the upload") from exc
