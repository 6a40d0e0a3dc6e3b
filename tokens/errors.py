"""Every error the ``tokens`` package raises. No message ever contains a secret.

::

    TokensError
    ├── StoreError           the database failed or has an unexpected schema
    ├── AlreadyExistsError   a user (or other named object) exists already
    ├── NotFoundError        a named user does not exist
    ├── ScopeError           a scope string breaks the WLCG grammar (ValueError too)
    ├── VaultError           a ciphertext cannot be decrypted (wrong master key, tampering)
    │   └── MissingMasterKeyError  the keyring lacks a key stored secrets are wrapped under
    └── TokenError           a token is invalid, or an issue request is refused;
                             ``reason`` is a machine code (see TokenError.REASONS)
"""

from __future__ import annotations


class TokensError(Exception):
    """Base of every error of the tokens package."""


class StoreError(TokensError):
    pass


class AlreadyExistsError(TokensError):
    pass


class NotFoundError(TokensError):
    pass


class ScopeError(TokensError, ValueError):
    pass


class VaultError(TokensError):
    pass


class MissingMasterKeyError(VaultError):
    """The keyring lacks a key that stored secrets are wrapped under, or there is no key."""


class TokenError(TokensError):
    """A token was refused. ``reason`` is one of ``REASONS``; the message never holds the token."""

    REASONS = frozenset(
        {
            "invalid_token",
            "expired",
            "revoked",
            "not_yet_valid",
            "exhausted",
            "invalid_scope",
            "invalid_request",
            "invalid_target",
        }
    )

    def __init__(self, reason: str, message: str = "") -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown token error reason {reason!r}")
        self.reason = reason
        super().__init__(message or reason)
