"""fedgate's delegation core: users and API keys, the encrypted key vault, WLCG scopes,
the JWT token service with revocation, and the audit log — all on one ``Store``
(SQLite or PostgreSQL). No HTTP and no backend library in here."""

from .audit import AuditEvent, AuditLog
from .claims import IssuedToken, TokenClaims
from .errors import (
    AlreadyExistsError,
    NotFoundError,
    ScopeError,
    StoreError,
    TokenError,
    TokensError,
    VaultError,
)
from .masterkey import MasterKeys
from .revocation import Revocation
from .scopes import Scope, covers, find_match, format_scopes, is_subset, parse_scopes
from .service import TokenService
from .store import Store
from .users import ApiKeyInfo, User, UserService
from .vault import KeyVault, StoredCredential, StoredKeyInfo

__all__ = [
    "AlreadyExistsError",
    "ApiKeyInfo",
    "AuditEvent",
    "AuditLog",
    "IssuedToken",
    "KeyVault",
    "MasterKeys",
    "NotFoundError",
    "Revocation",
    "Scope",
    "ScopeError",
    "Store",
    "StoreError",
    "StoredCredential",
    "StoredKeyInfo",
    "TokenClaims",
    "TokenError",
    "TokenService",
    "TokensError",
    "User",
    "UserService",
    "VaultError",
    "covers",
    "find_match",
    "format_scopes",
    "is_subset",
    "parse_scopes",
]
