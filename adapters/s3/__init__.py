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
    adapters/s3/write.py); a writer waits for a free slot rather than gather more. Part
    bytes live in memory within a process-wide budget, else in temporary files
    (adapters/s3/buffer.py).
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

from adapters.options import MIB
from adapters.s3.adapter import S3Adapter, create
from adapters.s3.errors import client_error_code, translate
from adapters.s3.options import S3Settings
from adapters.s3.storage import S3Storage
from adapters.s3.write import ALL_PARTS_IN_FLIGHT, PARTS_IN_FLIGHT, S3Writer, free_part_slots

__all__ = [
    "ALL_PARTS_IN_FLIGHT",
    "MIB",
    "PARTS_IN_FLIGHT",
    "S3Adapter",
    "S3Settings",
    "S3Storage",
    "S3Writer",
    "client_error_code",
    "create",
    "free_part_slots",
    "translate",
]
