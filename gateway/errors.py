"""The CARMIN error table: every error fedgate answers, with its HTTP status, in one place.

The body is always ``{"errorCode": int, "errorMessage": str}`` — keys in that order and
nothing else, because VIP's client recognises an error only in that exact shape.
``errorDetails`` is added only when it carries something (e.g. supported token types).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from adapters import base as storage_errors


@dataclass(frozen=True)
class ErrorSpec:
    code: int
    status: int
    title: str


class E:
    """Stable error codes. The first three digits are the HTTP status."""

    BAD_REQUEST = ErrorSpec(40001, 400, "Bad request")
    BAD_ACTION = ErrorSpec(40002, 400, "Missing or unknown action")
    BAD_PATH = ErrorSpec(40003, 400, "Invalid path")
    BAD_BODY = ErrorSpec(40004, 400, "Invalid request body")
    MD5_MISMATCH = ErrorSpec(40005, 400, "MD5 mismatch")
    BAD_ARCHIVE = ErrorSpec(40006, 400, "Invalid or unsafe archive")
    BAD_TOKEN_REQUEST = ErrorSpec(40007, 400, "Invalid token request")
    BAD_SCOPE = ErrorSpec(40008, 400, "Invalid scope")
    BAD_CREDENTIALS = ErrorSpec(40101, 401, "Invalid or missing credentials")
    BAD_TOKEN = ErrorSpec(40102, 401, "Invalid, expired or revoked token")
    STORAGE_AUTH = ErrorSpec(40103, 401, "The storage rejected the credential")
    NO_STORAGE_KEY = ErrorSpec(40104, 401, "No credential stored for this storage")
    SCOPE_DENIED = ErrorSpec(40301, 403, "Not allowed by the token's scope")
    STORAGE_DENIED = ErrorSpec(40302, 403, "Permission denied by the storage")
    NOT_ALLOWED = ErrorSpec(40303, 403, "Operation not allowed")
    NOT_FOUND = ErrorSpec(40401, 404, "Path not found")
    NO_MOUNT = ErrorSpec(40402, 404, "Unknown mount")
    NO_RESOURCE = ErrorSpec(40403, 404, "Not found")
    METHOD = ErrorSpec(40501, 405, "Method not allowed")
    EXISTS = ErrorSpec(40901, 409, "Already exists")
    NOT_A_DIRECTORY = ErrorSpec(40902, 409, "Not a directory")
    IS_A_DIRECTORY = ErrorSpec(40903, 409, "Is a directory")
    NO_PARENT = ErrorSpec(40904, 409, "Parent directory does not exist")
    BODY_TIMEOUT = ErrorSpec(40801, 408, "Request body too slow or stalled")
    LENGTH_REQUIRED = ErrorSpec(41101, 411, "Length required")
    TOO_LARGE = ErrorSpec(41301, 413, "Request body too large")
    BAD_RANGE = ErrorSpec(41601, 416, "Range not satisfiable")
    INTERNAL = ErrorSpec(50001, 500, "Internal error")
    NOT_SUPPORTED = ErrorSpec(50101, 501, "Not supported by this storage")
    NO_SPACE = ErrorSpec(50701, 507, "Insufficient storage")
    BACKEND = ErrorSpec(50201, 502, "Storage backend error")
    UNAVAILABLE = ErrorSpec(50301, 503, "Storage backend unavailable")
    STATE_UNAVAILABLE = ErrorSpec(50302, 503, "Gateway state database unavailable")
    TIMEOUT = ErrorSpec(50401, 504, "Storage backend timed out")

    @classmethod
    def all(cls) -> list[ErrorSpec]:
        return [v for v in vars(cls).values() if isinstance(v, ErrorSpec)]


class CarminError(Exception):
    def __init__(
        self,
        spec: ErrorSpec,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or spec.title)
        self.spec = spec
        self.message = message or spec.title
        self.details = details
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.spec, self.message, self.details, self.headers)


def error_response(
    spec: ErrorSpec,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"errorCode": spec.code, "errorMessage": message}
    if details:
        body["errorDetails"] = details
    all_headers = dict(headers or {})
    if spec.status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="fedgate"')
    return JSONResponse(body, status_code=spec.status, headers=all_headers)


_STORAGE_MAP: list[tuple[type[storage_errors.StorageError], ErrorSpec]] = [
    (storage_errors.ParentNotFound, E.NO_PARENT),
    (storage_errors.NotFound, E.NOT_FOUND),
    (storage_errors.AlreadyExists, E.EXISTS),
    (storage_errors.NotADirectory, E.NOT_A_DIRECTORY),
    (storage_errors.IsADirectory, E.IS_A_DIRECTORY),
    (storage_errors.PermissionDenied, E.STORAGE_DENIED),
    (storage_errors.AuthenticationFailed, E.STORAGE_AUTH),
    (storage_errors.InvalidPath, E.BAD_PATH),
    (storage_errors.ChecksumMismatch, E.MD5_MISMATCH),
    (storage_errors.NotSupported, E.NOT_SUPPORTED),
    (storage_errors.NoSpace, E.NO_SPACE),
    (storage_errors.BackendTimeout, E.TIMEOUT),
    (storage_errors.BackendUnavailable, E.UNAVAILABLE),
]


def from_storage(exc: storage_errors.StorageError, mount: str) -> CarminError:
    for cls, spec in _STORAGE_MAP:
        if isinstance(exc, cls):
            return CarminError(spec, f"{mount}: {exc}" if str(exc) else spec.title)
    return CarminError(E.BACKEND, f"{mount}: {exc}" if str(exc) else E.BACKEND.title)
