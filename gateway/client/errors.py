"""Typed errors of the job-side client, each with the exit code the CLI returns."""

from __future__ import annotations

from typing import Any


class ExitCode:
    OK = 0
    ERROR = 1  # anything not listed below
    USAGE = 2  # bad arguments, unparsable URI, no gateway URL
    NOT_FOUND = 3  # the path, the mount, or no mount covers the URI
    DENIED = 4  # missing/invalid/expired credentials, or not allowed
    CHECKSUM = 5  # the bytes received (or stored) do not match the checksum or size
    NETWORK = 6  # gateway or storage unreachable, 5xx, timeouts (after the retries)
    CONFLICT = 7  # already exists, not a directory, is a directory, parent missing


class FedgateError(Exception):
    """Base of every client error. ``code`` is the CARMIN errorCode when the gateway
    sent one; the message never contains a token or an API key."""

    exit_code = ExitCode.ERROR

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__, "message": self.message}
        out["exit_code"] = self.exit_code
        if self.status is not None:
            out["status"] = self.status
        if self.code is not None:
            out["errorCode"] = self.code
        return out


class UsageError(FedgateError):
    exit_code = ExitCode.USAGE


class NotFoundError(FedgateError):
    exit_code = ExitCode.NOT_FOUND


class AuthError(FedgateError):
    """401: no credential, or one the gateway rejected (expired, revoked, unknown)."""

    exit_code = ExitCode.DENIED


class DeniedError(FedgateError):
    """403: the credential is valid but does not allow this operation."""

    exit_code = ExitCode.DENIED


class ChecksumMismatch(FedgateError):
    exit_code = ExitCode.CHECKSUM


class NetworkError(FedgateError):
    """Connection failures, timeouts and 5xx answers that outlived the retries."""

    exit_code = ExitCode.NETWORK


class ConflictError(FedgateError):
    exit_code = ExitCode.CONFLICT


_BY_STATUS: dict[int, type[FedgateError]] = {
    400: UsageError,
    401: AuthError,
    403: DeniedError,
    404: NotFoundError,
    409: ConflictError,
    416: UsageError,
}


def from_response(status: int, body: Any, what: str) -> FedgateError:
    """The typed error for a gateway error answer (``{errorCode, errorMessage}``)."""
    code = message = None
    if isinstance(body, dict):
        code = body.get("errorCode") if isinstance(body.get("errorCode"), int) else None
        if isinstance(body.get("errorMessage"), str):
            message = body["errorMessage"]
    text = f"{what}: {message or f'HTTP {status}'}"
    if status == 401:
        text += " (get a fresh token or check your API key)"
    if status >= 500 or status == 429:
        return NetworkError(text, status=status, code=code)
    if code == 40005:  # MD5_MISMATCH
        return ChecksumMismatch(text, status=status, code=code)
    cls = _BY_STATUS.get(status, FedgateError)
    return cls(text, status=status, code=code)
