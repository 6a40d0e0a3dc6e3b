"""An S3 bucket (AWS or any S3-compatible server) as a mount, through boto3.

Options (the mount's TOML table):

``bucket`` (required)
    The bucket. It must exist: fedgate never creates buckets.
``prefix`` (default ``""``)
    A folder inside the bucket used as the mount root (leading/trailing ``/`` ignored).
``endpoint_url`` (default: AWS)
    e.g. ``"http://127.0.0.1:8333"`` for SeaweedFS, MinIO, Ceph RGW…
``region`` (default ``"us-east-1"``)
``path_style`` (default: true when ``endpoint_url`` is set, else false)
    Path-style addressing (``host/bucket/key``) instead of virtual-host style.
``access_key`` / ``secret_key`` (optional)
    The mount's service credential, used by ``bind(None)``. Never logged.
``multipart_threshold`` / ``part_size`` (default 8 MiB each; part_size >= 5 MiB)
    Uploads smaller than the threshold at commit are one PUT; larger ones are multipart
    uploads whose parts are sent as they fill. A writer holds at most
    ``max(multipart_threshold, part_size)`` bytes (plus one incoming chunk) in memory.
``connect_timeout`` / ``read_timeout`` (seconds, default 5 / 30)
``max_attempts`` (default 3)
    Total attempts per request, botocore's "standard" retry mode (retries connection
    errors, 5xx and throttling with jittered exponential backoff).
``allow_redirect`` (default true)
    Whether the gateway may answer a download with a redirect to a presigned URL
    (read by the gateway, not by this module).

Credentials: kind ``"access_secret"`` with fields ``accessKey``, ``secretKey`` and
optionally ``sessionToken`` (temporary STS credentials).

Directory convention (S3 has only keys):

* A directory ``d`` exists if the marker object ``d/`` exists or any key starts with
  ``d/``. The mount root always exists.
* ``mkdir`` writes the empty marker ``d/``; its parent must exist (except at the root).
* ``list`` uses delimiter ``/``: common prefixes are directories, keys are files; the
  marker itself is hidden, and so are keys whose name no fedgate path can address
  (empty, ``.``, ``..``, containing a backslash).
* ``delete`` of a directory removes every key under ``d/`` in batches of 1000, then the
  marker and the ``x/`` keys of every sub-directory, deepest first. On AWS those are
  no-ops when absent; servers with a real namespace behind S3 (SeaweedFS keeps empty
  folders as common prefixes) need them to forget the tree.

Writes become visible only on commit (S3 gives that natively: a PUT or a completed
multipart upload is atomic). ``abort`` aborts the multipart upload, so no parts are left
behind; if even that fails (backend gone), a bucket lifecycle rule
``AbortIncompleteMultipartUpload`` is the safety net.

Checksums: md5 is taken from the ETag when it is a plain md5 (single-part upload, no
SSE-KMS / SSE-C encryption); otherwise (multipart objects) it is computed by streaming.

Errors: a missing bucket is ``BackendUnavailable`` (the mount is misconfigured or its
storage is gone: no path in it can be served, and reporting NotFound would make every
write look like a missing parent). ``AccessDenied`` is ``PermissionDenied``;
``InvalidAccessKeyId``/``SignatureDoesNotMatch``/expired tokens are
``AuthenticationFailed``. A HEAD request has no error body, so a 403 on HEAD is resolved
with a one-key LIST that does carry the error code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import mimetypes
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendUnavailable,
    Capabilities,
    Credential,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    Storage,
    StorageError,
    parent_of,
)
from adapters.s3_support import MIB, S3Settings, S3Writer, client_error_code, translate

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

log = logging.getLogger(__name__)

CHUNK = MIB
MAX_KEY_BYTES = 1024
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_PLAIN_MD5 = re.compile(r"[0-9a-fA-F]{32}")
_CACHE_SIZE = 128


def _mime(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _deepest_first(folders: set[str]) -> list[str]:
    return sorted(folders, key=lambda d: (-d.count("/"), d))


def _addressable(name: str) -> bool:
    return name not in ("", ".", "..") and "\\" not in name and "\x00" not in name


class S3Storage:
    """One bucket (and prefix) seen with one credential. Thread-safe (boto3 clients are)."""

    capabilities = Capabilities(
        native_checksums=frozenset({"md5"}),
        presign_read=True,
        presign_write=True,
        native_delegation=True,
        ranged_read=True,
    )

    def __init__(self, client: S3Client, settings: S3Settings) -> None:
        self.client = client
        self.settings = settings
        self.bucket = settings.bucket
        self._root = settings.prefix + "/" if settings.prefix else ""

    # --- keys -----------------------------------------------------------------------

    def _key(self, path: str) -> str:
        """The object key of a path, refusing anything that could leave the prefix."""
        if path.startswith("/") or "\\" in path or "\x00" in path:
            raise InvalidPath("invalid path")
        if path and any(p in ("", ".", "..") for p in path.split("/")):
            raise InvalidPath("invalid path")
        key = self._root + path
        if len(key.encode()) + 1 > MAX_KEY_BYTES:  # +1: the directory marker's slash
            raise InvalidPath(f"{path}: name too long for S3")
        return key

    def _dir_prefix(self, path: str) -> str:
        return self._key(path) + "/" if path else self._root

    def _fail(self, exc: Exception, path: str) -> StorageError:
        return translate(exc, path, self.bucket)

    # --- probes ---------------------------------------------------------------------

    def _head(self, path: str) -> dict[str, Any] | None:
        """HEAD the object at path; None if there is none."""
        key = self._key(path)
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except Exception as exc:
            code = client_error_code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "Forbidden", "AccessDenied"):
                # HEAD answers carry no body: a LIST names the cause (bad credential?).
                # Without s3:GetObject a directory's name also answers 403: let the
                # caller find the directory if there is one.
                if self._probe_prefix(key + "/"):
                    return None
                raise PermissionDenied(f"{path}: permission denied") from exc
            raise self._fail(exc, path) from exc

    def _probe_prefix(self, prefix: str) -> bool:
        """Whether any key starts with prefix (a marker counts). With the delimiter, servers
        that keep real folders (SeaweedFS) also report an empty folder, as its parent's
        listing does."""
        try:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/", MaxKeys=1
            )
        except Exception as exc:
            raise self._fail(exc, prefix[len(self._root) :].rstrip("/")) from exc
        return bool(page.get("KeyCount") or page.get("Contents") or page.get("CommonPrefixes"))

    def _is_dir(self, path: str) -> bool:
        return not path or self._probe_prefix(self._dir_prefix(path))

    def _require_parent(self, path: str) -> None:
        parent = parent_of(path)
        if parent and not self._is_dir(parent):
            raise ParentNotFound(f"{parent}: parent directory does not exist or is not a directory")

    def _require_file(self, path: str) -> None:
        if self.stat(path).is_dir:
            raise IsADirectory(f"{path}: is a directory")

    def _file_entry(self, path: str, head: Mapping[str, Any]) -> Entry:
        modified = head.get("LastModified")
        return Entry(
            path=path,
            is_dir=False,
            size=int(head.get("ContentLength", 0)),
            mtime=modified.timestamp() if modified else None,
            mime_type=head.get("ContentType") or _mime(path),
        )

    # --- Storage --------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        if not path:
            return Entry(path="", is_dir=True)
        head = self._head(path)
        if head is not None:
            return self._file_entry(path, head)
        if self._is_dir(path):
            return Entry(path=path, is_dir=True)
        raise NotFound(f"{path}: no such file or directory")

    def list(self, path: str) -> Iterator[Entry]:
        prefix = self._dir_prefix(path)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"))
        try:
            first = next(pages, None)
        except Exception as exc:
            raise self._fail(exc, path) from exc
        empty = first is None or not (first.get("Contents") or first.get("CommonPrefixes"))
        if path and empty:
            if self._head(path) is not None:
                raise NotADirectory(f"{path}: not a directory")
            raise NotFound(f"{path}: no such file or directory")
        return self._iter_pages(path, prefix, first, pages)

    def _iter_pages(
        self, path: str, prefix: str, first: Any, pages: Iterator[Any]
    ) -> Iterator[Entry]:
        page = first
        base = path + "/" if path else ""
        while page is not None:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if _addressable(name) and "/" not in name:
                    yield Entry(path=base + name, is_dir=True)
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if not _addressable(name) or "/" in name:
                    continue  # the marker itself, or a name no path can reach
                modified = obj.get("LastModified")
                yield Entry(
                    path=base + name,
                    is_dir=False,
                    size=int(obj.get("Size", 0)),
                    mtime=modified.timestamp() if modified else None,
                    mime_type=_mime(name),
                )
            try:
                page = next(pages, None)
            except Exception as exc:
                raise self._fail(exc, path) from exc

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = self._key(path)
        if not path:
            raise IsADirectory("/: is a directory")
        if end is not None and end <= start:
            self._require_file(path)
            return iter(())
        wanted = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            if start > 0 or end is not None:
                response = self.client.get_object(Bucket=self.bucket, Key=key, Range=wanted)
            else:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            code = client_error_code(exc)
            if code == "InvalidRange":  # start at or past the end
                self._require_file(path)
                return iter(())
            if code in ("NoSuchKey", "404", "NotFound"):
                if self._is_dir(path):
                    raise IsADirectory(f"{path}: is a directory") from exc
                raise NotFound(f"{path}: no such file or directory") from exc
            raise self._fail(exc, path) from exc
        return self._stream(path, response["Body"])

    def _stream(self, path: str, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except Exception as exc:
            raise self._fail(exc, path) from exc
        finally:
            body.close()

    def open_write(self, path: str, size_hint: int | None = None) -> S3Writer:
        if not path:
            raise IsADirectory("/: is a directory")
        key = self._key(path)
        if self._is_dir(path):
            raise IsADirectory(f"{path}: is a directory")
        self._require_parent(path)
        return S3Writer(
            self.client,
            self.settings,
            path,
            key,
            _mime(path),
            size_hint=size_hint,
            on_commit=self.stat,
        )

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        marker = self._dir_prefix(path)
        if self._head(path) is not None or self._is_dir(path):
            raise AlreadyExists(f"{path}: already exists")
        self._require_parent(path)
        try:
            self.client.put_object(Bucket=self.bucket, Key=marker, Body=b"")
        except Exception as exc:
            if client_error_code(exc) == "ExistingObjectIsFile":  # SeaweedFS: a file is in the way
                raise NotADirectory(f"{parent_of(path) or path}: not a directory") from exc
            raise self._fail(exc, path) from exc
        return Entry(path=path, is_dir=True)

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        key = self._key(path)
        if self._head(path) is not None:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                raise self._fail(exc, path) from exc
            return
        if not self._is_dir(path):
            raise NotFound(f"{path}: no such file or directory")
        prefix = key + "/"
        dirs: set[str] = {prefix}
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [obj["Key"] for obj in page.get("Contents", [])]
                for k in keys:
                    # every folder between the prefix and the key, for the final sweep
                    parts = k[len(prefix) :].split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        dirs.add(prefix + "/".join(parts[:i]) + "/")
                files = [k for k in keys if not k.endswith("/")]
                self._delete_keys(files, path)
        except StorageError:
            raise
        except Exception as exc:
            raise self._fail(exc, path) from exc
        self._delete_keys(_deepest_first(dirs), path)
        if self._probe_prefix(prefix):
            # Empty folders hold no key, so the flat listing above cannot see them.
            self._delete_keys(_deepest_first(self._folders_below(prefix, path)), path)

    def _folders_below(self, prefix: str, path: str) -> set[str]:
        found, todo = {prefix}, [prefix]
        paginator = self.client.get_paginator("list_objects_v2")
        while todo:
            current = todo.pop()
            try:
                for page in paginator.paginate(Bucket=self.bucket, Prefix=current, Delimiter="/"):
                    for common in page.get("CommonPrefixes", []):
                        if common["Prefix"] not in found:
                            found.add(common["Prefix"])
                            todo.append(common["Prefix"])
            except Exception as exc:
                raise self._fail(exc, path) from exc
        return found

    def _delete_keys(self, keys: Sequence[str], path: str) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except Exception as exc:
                raise self._fail(exc, path) from exc
            errors = response.get("Errors", [])
            if errors:
                code = errors[0].get("Code", "")
                if code == "AccessDenied":
                    raise PermissionDenied(f"{path}: permission denied")
                raise StorageError(f"{path}: {len(errors)} objects could not be deleted ({code})")

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        algorithm = algorithm.lower()
        if algorithm == "md5" and path:
            head = self._head(path)
            if head is not None:
                etag = str(head.get("ETag", "")).strip('"')
                encrypted = head.get("ServerSideEncryption") == "aws:kms" or head.get(
                    "SSECustomerAlgorithm"
                )
                if _PLAIN_MD5.fullmatch(etag) and not encrypted:
                    return etag.lower()
        if algorithm == "adler32":
            value = 1
            for chunk in self.open_read(path):
                value = zlib.adler32(chunk, value)
            return f"{value & 0xFFFFFFFF:08x}"
        try:
            digest = hashlib.new(algorithm)
        except ValueError as exc:
            raise NotSupported(f"checksum {algorithm!r} is not supported") from exc
        for chunk in self.open_read(path):
            digest.update(chunk)
        return digest.hexdigest()

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        method = method.upper()
        operations = {"GET": "get_object", "PUT": "put_object"}
        if method not in operations:
            raise NotSupported(f"presigned {method} URLs are not supported")
        if not path:
            raise IsADirectory("/: is a directory")
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        # Rounded down so the URL never outlives expires_at (S3 counts whole seconds).
        seconds = int((expires_at - dt.datetime.now(dt.UTC)).total_seconds())
        seconds = max(1, min(seconds, MAX_PRESIGN_SECONDS))
        try:
            url = self.client.generate_presigned_url(
                operations[method],
                Params={"Bucket": self.bucket, "Key": self._key(path)},
                ExpiresIn=seconds,
                HttpMethod=method,
            )
        except Exception as exc:
            raise self._fail(exc, path) from exc
        actual = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        return Delegation(kind="url", value=url, expires_at=min(actual, expires_at), method=method)

    def close(self) -> None:
        """Nothing to do: the client is shared by every view of this credential and
        closed with the adapter."""


class S3Adapter:
    type_name = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.allow_redirect = settings.allow_redirect
        self._lock = threading.Lock()
        self._views: OrderedDict[str, S3Storage] = OrderedDict()

    def bind(self, credential: Credential | None) -> Storage:
        if credential is None:
            if not (self.settings.access_key and self.settings.secret_key):
                raise AuthenticationFailed("no credential for this mount")
            fields = {"accessKey": self.settings.access_key, "secretKey": self.settings.secret_key}
        else:
            if credential.kind != "access_secret":
                raise AuthenticationFailed(
                    f"an S3 mount needs an access_secret credential, not {credential.kind!r}"
                )
            fields = credential.fields
        access, secret = fields.get("accessKey", ""), fields.get("secretKey", "")
        token = fields.get("sessionToken") or None
        if not access or not secret:
            raise AuthenticationFailed("the credential lacks accessKey or secretKey")
        cache_key = hashlib.sha256(f"{access}\0{secret}\0{token or ''}".encode()).hexdigest()
        with self._lock:
            view = self._views.get(cache_key)
            if view is not None:
                self._views.move_to_end(cache_key)
                return view
        client = self.settings.client(access, secret, token)
        view = S3Storage(client, self.settings)
        with self._lock:
            self._views[cache_key] = view
            while len(self._views) > _CACHE_SIZE:
                # Not closed: a request may still be using it; its sockets go with it.
                self._views.popitem(last=False)
        return view

    def check(self) -> None:
        """HEAD the bucket with the service credential; without one, any S3 answer to an
        anonymous request proves the server is up (but not that the bucket exists)."""
        s = self.settings
        signed = bool(s.access_key and s.secret_key)
        client = (
            s.client(s.access_key, s.secret_key, None) if signed else s.client(None, None, None)
        )
        try:
            client.head_bucket(Bucket=s.bucket)
        except Exception as exc:
            code = client_error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BackendUnavailable(f"bucket {s.bucket!r} does not exist") from exc
            if code is not None and not signed:
                return  # an anonymous request was answered: the server is up
            raise translate(exc, "", s.bucket) from exc
        finally:
            client.close()

    def close(self) -> None:
        with self._lock:
            views = list(self._views.values())
            self._views.clear()
        for view in views:
            view.client.close()


def create(options: Mapping[str, Any]) -> S3Adapter:
    return S3Adapter(S3Settings.from_options(options))
