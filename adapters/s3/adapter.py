"""The S3 adapter: one per mount, a view per credential (see adapters/s3/__init__.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapters.base import AuthenticationFailed, BackendUnavailable, Credential, Storage
from adapters.common import ViewCache, credential_key
from adapters.s3.errors import client_error_code, translate
from adapters.s3.options import S3Settings
from adapters.s3.storage import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_CACHE_SIZE = 128  # credentials with a live client per mount


def _close_view(view: S3Storage) -> None:
    # Safe under a request still holding the view: botocore closes the idle connections,
    # one in use is closed when it comes back, and the client opens new ones if used.
    view.client.close()


class S3Adapter:
    type_name = "s3"
    uses_credentials = True  # the requests act with a user's or the mount's credential

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._views: ViewCache[S3Storage] = ViewCache(_close_view, max_entries=_CACHE_SIZE)
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

        def make() -> S3Storage:
            return S3Storage(self.settings.client(access, secret, token), self.settings)

        return self._views.get(credential_key(access, secret, token or ""), make)

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
        recent = None if signed else self._views.newest()
        if recent is not None:
            client = recent.client
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
        self._views.close_all()
        with self._lock:
            client, self._check_client = self._check_client, None
        if client is not None:
            client.close()


def create(options: Mapping[str, Any]) -> S3Adapter:
    return S3Adapter(S3Settings.from_options(options))
