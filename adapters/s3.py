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
    uploads whose parts are sent as they fill, up to 4 at once (``PARTS_IN_FLIGHT`` in
    adapters/s3_support.py); a writer waits for a free slot rather than gather more. Part
    bytes live in memory within a process-wide budget, else in temporary files
    (adapters/s3_buffer.py).
``connect_timeout`` / ``read_timeout`` (seconds, default 5 / 30)
``max_attempts`` (default 3)
    Total attempts per request, botocore's "standard" retry mode (retries connection
    errors, 5xx and throttling with jittered exponential backoff).
(Redirects to presigned URLs are the mount-level ``redirect`` key, read by the gateway:
docs/configuration.md. The former ``allow_redirect`` was never read and is refused.)

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

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapters.base import AuthenticationFailed, BackendUnavailable, Credential, Storage
from adapters.s3_storage import S3Storage
from adapters.s3_support import S3Settings, client_error_code, translate

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Adapter", "S3Settings", "S3Storage", "create"]

_CACHE_SIZE = 128  # credentials with a live client per mount


class S3Adapter:
    type_name = "s3"

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._views: OrderedDict[str, S3Storage] = OrderedDict()
        self._check_client: S3Client | None = None

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
        """HEAD the bucket with the service credential. Without one (per-user mounts),
        with the client of the user who used the mount last, if any, else anonymously:
        then any S3 answer proves the server is up, and a 404 that the bucket is missing
        (servers that answer anonymous requests 403 cannot tell until a user came by)."""
        s = self.settings
        signed = bool(s.access_key and s.secret_key)
        with self._lock:
            if self._check_client is None:  # kept: readiness probes call this often
                self._check_client = s.client(s.access_key, s.secret_key, None)
            client = self._check_client
            if not signed and self._views:
                client = next(reversed(self._views.values())).client
        try:
            client.head_bucket(Bucket=s.bucket)
        except Exception as exc:
            code = client_error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BackendUnavailable(f"bucket {s.bucket!r} does not exist") from exc
            if code is not None and not signed:
                return  # an anonymous request (or a user's) was answered: the server is up
            raise translate(exc, "", s.bucket) from exc

    def close(self) -> None:
        with self._lock:
            clients = [view.client for view in self._views.values()]
            if self._check_client is not None:
                clients.append(self._check_client)
            self._views.clear()
            self._check_client = None
        for client in clients:
            client.close()


def create(options: Mapping[str, Any]) -> S3Adapter:
    return S3Adapter(S3Settings.from_options(options))
