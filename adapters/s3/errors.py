"""S3 (botocore) errors mapped to the adapter error tree, by S3 error code first
(as s3fs's ``ERROR_CODE_TO_EXCEPTION``), then by botocore exception class."""

from __future__ import annotations

from adapters.base import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)

_AUTH = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidSecurity",
}  # fmt: skip
_UNAVAILABLE = {"InternalError", "ServiceUnavailable", "SlowDown", "503", "500", "502"}


def client_error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def translate(exc: BaseException, path: str, bucket: str) -> StorageError:
    """Map a boto3/botocore exception to the error tree. Messages never carry secrets."""
    from botocore import exceptions as bce

    shown = path or "/"
    if isinstance(exc, StorageError):
        return exc
    code = client_error_code(exc)
    if code is not None:
        status = int(
            getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        )
        if code == "NoSuchBucket":
            return BackendUnavailable(f"bucket {bucket!r} does not exist")
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"{shown}: no such file or directory")
        if code in _AUTH:
            return AuthenticationFailed(f"the S3 server rejected the credential ({code})")
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return PermissionDenied(f"{shown}: permission denied")
        if code in ("KeyTooLongError", "InvalidObjectName"):
            return InvalidPath(f"{shown}: invalid name for S3 ({code})")
        if code == "ExistingObjectIsDirectory":
            return IsADirectory(f"{shown}: is a directory")
        if code == "ExistingObjectIsFile":
            return NotADirectory(f"{shown}: not a directory")
        if code == "RequestTimeout":
            return BackendTimeout(f"{shown}: the S3 server timed out")
        if code in _UNAVAILABLE or status >= 500:
            return BackendUnavailable(f"the S3 server failed ({code})")
        return StorageError(f"{shown}: S3 error {code}")
    if isinstance(exc, bce.ConnectTimeoutError | bce.ReadTimeoutError):
        return BackendTimeout("the S3 server did not answer in time")
    if isinstance(
        exc, bce.ConnectionError | bce.HTTPClientError | bce.IncompleteReadError | OSError
    ):
        return BackendUnavailable(f"cannot reach the S3 server ({type(exc).__name__})")
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return AuthenticationFailed("incomplete S3 credential")
    return StorageError(f"{shown}: S3 client error ({type(exc).__name__})")
