"""The versioned schema of fedgate's shared state, applied by ``Store.upgrade``.

Each migration is a list of statements run in one transaction, after the previous
ones. Never edit a released migration: append a new one. ``{blob}``, ``{serial_pk}``
and ``{real}`` are filled per dialect so one text serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    statements: tuple[str, ...]


DIALECT_TYPES = {
    "sqlite": {"blob": "BLOB", "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"},
    "postgresql": {
        "blob": "BYTEA",
        "serial_pk": "BIGSERIAL PRIMARY KEY",
        "real": "DOUBLE PRECISION",
    },
}

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        (
            """CREATE TABLE users (
                name TEXT PRIMARY KEY,
                is_admin INTEGER NOT NULL DEFAULT 0,
                password_hash TEXT,
                created {real} NOT NULL)""",
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
                secret_sha256 TEXT NOT NULL,
                label TEXT NOT NULL DEFAULT '',
                created {real} NOT NULL,
                expires {real})""",
            "CREATE INDEX api_keys_user ON api_keys(user_name)",
            """CREATE TABLE vault (
                user_name TEXT NOT NULL,
                storage_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                key_id TEXT NOT NULL,
                ciphertext {blob} NOT NULL,
                created {real} NOT NULL,
                updated {real} NOT NULL,
                PRIMARY KEY (user_name, storage_id))""",
            """CREATE TABLE signing_keys (
                kid TEXT PRIMARY KEY,
                alg TEXT NOT NULL,
                public_jwk TEXT NOT NULL,
                key_id TEXT NOT NULL,
                private_enc {blob} NOT NULL,
                created {real} NOT NULL,
                superseded {real})""",
            """CREATE TABLE issued_tokens (
                jti TEXT PRIMARY KEY,
                sub TEXT NOT NULL,
                parent TEXT,
                execution_id TEXT,
                scope TEXT NOT NULL,
                iat BIGINT NOT NULL,
                exp BIGINT NOT NULL,
                uses_left BIGINT)""",
            "CREATE INDEX issued_tokens_sub ON issued_tokens(sub, exp)",
            "CREATE INDEX issued_tokens_parent ON issued_tokens(parent)",
            "CREATE INDEX issued_tokens_exec ON issued_tokens(execution_id)",
            """CREATE TABLE revocations (
                id {serial_pk},
                kind TEXT NOT NULL,
                value TEXT NOT NULL,
                created {real} NOT NULL,
                expires {real} NOT NULL)""",
            "CREATE INDEX revocations_expires ON revocations(expires)",
            """CREATE TABLE audit (
                id {serial_pk},
                time {real} NOT NULL,
                event TEXT NOT NULL,
                user_name TEXT,
                token_id TEXT,
                mount TEXT,
                path TEXT,
                operation TEXT,
                result TEXT NOT NULL,
                status INTEGER,
                bytes BIGINT,
                execution_id TEXT,
                detail TEXT)""",
            "CREATE INDEX audit_time ON audit(time)",
            "CREATE INDEX audit_user ON audit(user_name, time)",
            "CREATE INDEX audit_token ON audit(token_id)",
            "CREATE INDEX audit_exec ON audit(execution_id)",
        ),
    ),
    Migration(
        2,
        (
            # Native credentials (iRODS tickets, Girder tokens) minted for a fedgate token,
            # so revoking the token can delete them. ``secret`` is encrypted like the vault.
            # ``revoked`` is set when the token was revoked but deleting the credential
            # failed; a later sweep retries.
            """CREATE TABLE native_grants (
                id {serial_pk},
                jti TEXT NOT NULL,
                user_name TEXT NOT NULL,
                mount TEXT NOT NULL,
                kind TEXT NOT NULL,
                key_id TEXT NOT NULL,
                secret {blob} NOT NULL,
                created {real} NOT NULL,
                expires {real} NOT NULL,
                revoked {real})""",
            "CREATE INDEX native_grants_jti ON native_grants(jti)",
            "CREATE INDEX native_grants_expires ON native_grants(expires)",
        ),
    ),
    Migration(
        3,
        (
            # Forensics: which request (the X-Request-ID of the access log), why it was
            # refused (the rule, in words) and from which client address.
            "ALTER TABLE audit ADD COLUMN request_id TEXT",
            "ALTER TABLE audit ADD COLUMN reason TEXT",
            "ALTER TABLE audit ADD COLUMN client TEXT",
            "CREATE INDEX audit_request ON audit(request_id)",
        ),
    ),
    Migration(
        4,
        (
            # API keys get a life cycle: when each was last used (updated at most once a
            # minute), and which key a token was exchanged from, so revoking one key
            # kills the tokens minted from it (tokens also carry it as ``fedgate.key``).
            "ALTER TABLE api_keys ADD COLUMN last_used {real}",
            "ALTER TABLE issued_tokens ADD COLUMN key_id TEXT",
            "CREATE INDEX issued_tokens_key ON issued_tokens(key_id)",
        ),
    ),
    Migration(
        5,
        (
            # Content digests of files, computed once while an upload streams through (or
            # by one streamed read) and served from here (gateway/digests.py). ``key`` is
            # sha256(mount NUL path) so the primary key stays small however long the
            # path; ``identity`` is what identified the bytes when they were hashed (size,
            # mtime, inode, ETag...): a row whose identity no longer matches a fresh stat
            # is stale and never served.
            """CREATE TABLE digests (
                key TEXT PRIMARY KEY,
                mount TEXT NOT NULL,
                path TEXT NOT NULL,
                identity TEXT NOT NULL,
                md5 TEXT,
                adler32 TEXT,
                sha256 TEXT,
                updated {real} NOT NULL)""",
            "CREATE INDEX digests_mount ON digests(mount)",
        ),
    ),
    Migration(
        6,
        (
            # crc32c (S3's and Google Cloud Storage's checksum) beside the other three,
            # once a fast library computes it on every upload (adapters/checksums.py).
            # Rows kept before have none: the next request for it rehashes the file.
            "ALTER TABLE digests ADD COLUMN crc32c TEXT",
        ),
    ),
)
