"""One credential's view of a Girder mount: the Storage protocol over Girder's REST API
(the mapping is described in adapters/girder/__init__.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendUnavailable,
    Capabilities,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    join,
    parent_of,
    streamed_checksum,
)
from adapters.girder.delegation import mint_read_token
from adapters.girder.delegation import revoke as revoke_token
from adapters.girder.entries import Doc, Node, file_entry, folder_entry
from adapters.girder.errors import GirderError, parent_missing, write_error
from adapters.girder.names import encode, girder_name, shown_name, unservable
from adapters.girder.session import BearerAuth, GirderSession, Token
from adapters.girder.vip import format_vip_uri
from adapters.girder.write import GirderWriter

# Download read size, in bytes (docs/decisions.md: what it costs and saves).
CHUNK = 4 * 1024 * 1024
# A read reuses the file its request's stat just resolved (two Girder calls saved) if
# that is at most this old (docs/decisions.md).
STAT_REUSE_S = 2.0
_STAT_REUSE_MAX = 128
Page = list[Doc]  # GirderStorage.list shadows the builtin inside the class body
MD5_KEY = "fedgateMd5"
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _list_pool() -> ThreadPoolExecutor:
    """Shared by all views: listing asks Girder for each item's files in parallel."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="girder-list")
        return _POOL


class _Changed(StorageError):
    """The file's size is not the one its document said (replaced in the meantime)."""


def _total_size(response: Any) -> int | None:
    """The whole file's size as a download answer states it (None when it does not)."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    if response.status_code == 200:
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None
    return None


class GirderStorage:
    def __init__(
        self,
        session: GirderSession,
        root: str,
        page_size: int,
        chunk: int,
        native_tokens: bool = False,
        service: bool = False,
    ) -> None:
        # A "presigned" download is the file's URL plus a Girder-Token header: never a
        # redirect, and the token reads all the account can (not path bound).
        self.capabilities = Capabilities(
            native_checksums=frozenset(),
            presign_read=native_tokens,
            native_delegation=native_tokens,
            delegation_path_bound=False,
            presign_needs_headers=True,
        )
        self.native_tokens = native_tokens
        # Bound with the mount's own service key: that account's tokens never leave.
        self.service = service
        self.session = session
        self.root = "/" + root.strip("/")
        self.page_size = page_size
        self.upload_chunk_size = chunk
        self._stated: dict[str, tuple[float, Doc]] = {}  # path -> (when, file doc)
        self._stated_lock = threading.Lock()

    # --- resolution -----------------------------------------------------------------

    def _lookup(self, segments: list[str]) -> dict[str, Any] | None:
        girder_path = self.root + "".join("/" + encode(s) for s in segments)
        try:
            return dict(self.session.request("GET", "resource/lookup", {"path": girder_path}))
        except GirderError as exc:
            if exc.status == 400:
                return None
            raise

    def resolve(self, path: str, _retried: bool = False) -> Node:
        segments = path.split("/") if path else []
        for candidate in self._candidates(segments):
            doc = self._lookup(candidate)
            if doc is not None:
                return self._node(doc)
        # Girder answers "not found" to a dead token too (it becomes anonymous).
        if not _retried and self.session.token_is_dead():
            if isinstance(self.session.auth, BearerAuth):
                raise AuthenticationFailed("Girder rejected the token: expired or revoked")
            return self.resolve(path, _retried=True)  # with a new token, or AuthenticationFailed
        if not path:
            raise NotFound(f"mount root {self.root} not found or not readable")
        raise NotFound(f"{path}: no such file or directory")

    @staticmethod
    def _candidates(segments: list[str]) -> list[list[str]]:
        if any(s != s.strip() for s in segments):
            raise InvalidPath("Girder names cannot start or end with a space")
        decoded = [girder_name(s) for s in segments]
        return [segments] if decoded == segments else [segments, decoded]

    def _node(self, doc: dict[str, Any]) -> Node:
        model = str(doc.get("_modelType", ""))
        files: list[dict[str, Any]] = []
        if model == "item":
            files = list(self.session.request("GET", f"item/{doc['_id']}/files", {"limit": 2}))
        return Node(model, doc, files)

    # --- Storage --------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        node = self.resolve(path)
        if node.file is not None:
            with self._stated_lock:
                if len(self._stated) >= _STAT_REUSE_MAX:
                    self._stated.clear()
                self._stated[path] = (time.monotonic(), node.file)
        return node.entry(path)

    def _just_stated(self, path: str) -> Doc | None:
        """The file a stat resolved for ``path`` in the last STAT_REUSE_S seconds: the
        gateway stats before it reads, so a GET need not resolve the path twice. A file
        replaced in between is caught by the download itself (see open_read)."""
        with self._stated_lock:
            hit = self._stated.pop(path, None)
        if hit is None or time.monotonic() - hit[0] > STAT_REUSE_S:
            return None
        return hit[1]

    def _forget_stated(self) -> None:
        with self._stated_lock:
            self._stated.clear()

    def list(self, path: str) -> Iterator[Entry]:
        node = self.resolve(path)
        if not node.is_dir:
            raise NotADirectory(f"{path}: not a directory")
        return self._iter(path, node)

    def _pages(self, route: str, params: dict[str, Any]) -> Iterator[Page]:
        offset = 0
        while True:
            page = self.session.request(
                "GET", route, {**params, "limit": self.page_size, "offset": offset}
            )
            if page:
                yield list(page)
            if len(page) < self.page_size:
                return
            offset += len(page)

    def _iter(self, path: str, node: Node) -> Iterator[Entry]:
        if node.model == "item":
            for page in self._pages(f"item/{node.id}/files", {}):
                for f in page:
                    yield file_entry(join(path, shown_name(f["name"])), f)
            return
        params = {"parentType": node.model, "parentId": node.id}
        for page in self._pages("folder", params):
            for folder in page:
                yield folder_entry(join(path, shown_name(folder["name"])), folder)
        if node.model != "folder":
            return
        for page in self._pages("item", {"folderId": node.id}):
            # One extra call per item tells a file from a multi-file item; run them together.
            nodes = _list_pool().map(lambda d: self._node({**d, "_modelType": "item"}), page)
            for item, child in zip(page, nodes, strict=True):
                yield child.entry(join(path, shown_name(item["name"])))

    def _file_of(self, path: str) -> Doc:
        f = self.resolve(path).file
        if f is None:
            raise IsADirectory(f"{path or '/'}: is a directory")
        if f.get("linkUrl"):
            # Girder redirects to the link; following it would hand our token to that host.
            raise NotSupported(f"{path}: a Girder link file has no bytes of its own")
        return f

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        f = self._just_stated(path)
        if f is not None:
            try:
                return self._download(path, f, start, end)
            except (NotFound, GirderError, _Changed):
                pass  # replaced or removed since the stat: resolve it afresh
        return self._download(path, self._file_of(path), start, end)

    def _download(self, path: str, f: Doc, start: int, end: int | None) -> Iterator[bytes]:
        size = int(f.get("size") or 0)
        end = size if end is None else min(end, size)
        if start >= end:
            return iter(())
        try:
            response = self.session.request(
                "GET",
                f"file/{f['_id']}/download",
                headers={"Range": f"bytes={start}-{end - 1}"},
                stream=True,
                allow_redirects=False,
            )
        except BackendUnavailable as exc:
            if unservable(str(f.get("name", ""))):
                raise StorageError(
                    f"{path}: Girder cannot serve a file whose name has characters like 'ø' "
                    "(a Girder bug); rename the file inside its item"
                ) from exc
            raise
        if response.status_code != 206 and start > 0:
            response.close()
            raise StorageError(f"{path}: Girder ignored the byte range")
        if _total_size(response) not in (None, size):
            response.close()
            raise _Changed(f"{path}: changed while it was being opened")
        return self._stream(response, end - start)

    @staticmethod
    def _stream(response: Any, length: int) -> Iterator[bytes]:
        try:
            remaining = length
            for chunk in response.iter_content(CHUNK):
                if remaining <= 0:
                    break
                yield chunk[:remaining]
                remaining -= len(chunk)
            if remaining > 0:
                raise BackendUnavailable("Girder closed the download early")
        except OSError as exc:
            raise BackendUnavailable("Girder download interrupted") from exc
        finally:
            response.close()

    def _parent_folder(self, path: str) -> Node:
        try:
            parent = self.resolve(parent_of(path))
        except NotFound as exc:
            raise parent_missing(path) from exc
        if not parent.is_dir:
            raise ParentNotFound(f"{parent_of(path)}: is not a directory")
        if parent.model == "item":
            raise PermissionDenied(f"{parent_of(path)}: a multi-file Girder item is read-only")
        return parent

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> GirderWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        self._forget_stated()
        parent = self._parent_folder(path)
        if parent.model != "folder":
            raise PermissionDenied(
                f"{path}: Girder keeps files in folders, not in a {parent.model}"
            )
        file_id = None
        try:
            target = self.resolve(path)
        except NotFound:
            target = None
        if target is not None:
            if target.is_dir:
                raise IsADirectory(f"{path}: is a directory")
            if exclusive:
                raise AlreadyExists(f"{path}: already exists")
            f = target.file
            assert f is not None
            file_id = str(f["_id"])
        name = girder_name(path.rsplit("/", 1)[-1])
        return GirderWriter(
            self.session,
            path,
            parent.id,
            name,
            file_id,
            size_hint,
            self.upload_chunk_size,
            exclusive,
        )

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        parent = self._parent_folder(path)
        name = girder_name(path.rsplit("/", 1)[-1])
        if name != name.strip():
            raise InvalidPath("Girder names cannot start or end with a space")
        params = {"parentType": parent.model, "parentId": parent.id, "name": name}
        try:
            doc = self.session.request("POST", "folder", params=params)
        except GirderError as exc:
            if "already exists" in exc.message:
                raise AlreadyExists(f"{path}: already exists") from exc
            raise write_error(path, exc) from exc
        return folder_entry(path, doc)

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        self._forget_stated()
        node = self.resolve(path)
        try:
            self.session.request("DELETE", f"{node.model}/{node.id}")
        except GirderError as exc:
            raise StorageError(f"{path}: Girder refused the delete: {exc.message}") from exc

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        node = self.resolve(path)
        f = node.file
        if f is None:
            raise IsADirectory(f"{path or '/'}: is a directory")
        if algorithm != "md5":
            return self._compute(path, algorithm)
        key = {"file": str(f["_id"]), "size": f.get("size"), "created": f.get("created")}
        cached = (node.doc.get("meta") or {}).get(MD5_KEY) if node.model == "item" else None
        if isinstance(cached, dict) and all(cached.get(k) == v for k, v in key.items()):
            return str(cached["md5"])
        digest = self._compute(path, "md5")
        if node.model == "item":
            # Read-only access: no cache, compute again next time.
            with contextlib.suppress(GirderError, PermissionDenied):
                self.session.request(
                    "PUT", f"item/{node.id}/metadata", json={MD5_KEY: {**key, "md5": digest}}
                )
        return digest

    def _compute(self, path: str, algorithm: str) -> str:
        return streamed_checksum(self.open_read(path), algorithm)

    def read_token(self, expires_at: dt.datetime) -> tuple[Token, str]:
        """A read-only Girder token for a job, and the id of the API key it comes from
        (adapters/girder/delegation.py). NotSupported unless the mount enables it, and
        never from the service credential."""
        if not self.native_tokens:
            raise NotSupported(
                "this Girder mount hands out no Girder tokens (they read everything the "
                "account can; the operator enables them with native_tokens): read through "
                "fedgate"
            )
        if self.service:
            raise NotSupported(
                "the mount's service credential is never handed out: read through fedgate"
            )
        return mint_read_token(self.session, expires_at)

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        """The file's download URL with a read-only ``Girder-Token`` header."""
        if method.upper() != "GET":
            raise NotSupported("Girder has no upload URL; write through fedgate")
        f = self._file_of(path)
        token, key_id = self.read_token(expires_at)
        return Delegation(
            kind="url",
            value=f"{self.session.api_url}/file/{f['_id']}/download",
            expires_at=token.expires,
            method="GET",
            headers={"Girder-Token": token.value},
            revoke_ref=key_id,
        )

    def vip_delegation(self, path: str, expires_at: dt.datetime) -> tuple[str, Delegation]:
        """A VIP/GASW ``girder:/…?apiurl=…&fileId=…&token=…`` URI (adapters/girder/vip.py)
        and the delegation to record for its token."""
        f = self._file_of(path)
        token, key_id = self.read_token(expires_at)
        uri = format_vip_uri(self.session.api_url, path, str(f["_id"]), token.value)
        delegation = Delegation("girder_token", token.value, token.expires, revoke_ref=key_id)
        return uri, delegation

    def vip_uri(self, path: str, expires_at: dt.datetime) -> str:
        return self.vip_delegation(path, expires_at)[0]

    def revoke_delegation(self, delegation: Delegation) -> None:
        """Delete the Girder token of a delegation from ``presign`` (in its
        ``Girder-Token`` header) or ``vip_delegation`` (kind ``girder_token``), and the API
        key it came from: its holder's access ends now. The session's own token is never
        deleted (it is not a delegation)."""
        value = delegation.headers.get("Girder-Token") or (
            delegation.value if delegation.kind == "girder_token" else ""
        )
        if value and hmac.compare_digest(value, self.session.auth.token(self.session)):
            return
        revoke_token(self.session, value, delegation.revoke_ref)

    def close(self) -> None:
        self.session.close()
