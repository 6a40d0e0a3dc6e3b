"""The OpenAPI 3 document, built from the same tables the server uses (error codes,
actions, token types), so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from gateway.api.openapi_components import components, json_body
from gateway.config import Settings
from tokens.audit import OPERATIONS
from tokens.scopes import ACTIVITIES

ERROR_REF = {"$ref": "#/components/responses/Error"}
# One path segment of the portable subset: ASCII letters, digits and "_-~", with dots and
# spaces inside only (a name may not end with either), 255 bytes at most; one optional
# trailing slash. Segments "." and ".." cannot match (they would end with a dot).
_SEGMENT = r"[A-Za-z0-9_~-](?:[A-Za-z0-9 _.~-]{0,253}[A-Za-z0-9_~-])?"
_PORTABLE_PATH = rf"^{_SEGMENT}(?:/{_SEGMENT})*/?$"
# A platform path naming something inside a mount: /<mount>/<path>.
_PLATFORM_FILE = rf"^/?{_SEGMENT}(?:/{_SEGMENT})+$"
# A platform path in /explain: a mount or anything below it.
_PLATFORM_MOUNT = rf"^/?{_SEGMENT}(?:/{_SEGMENT})*/?$"


def _errors(*statuses: int) -> dict[str, Any]:
    # Whatever authenticates reads the state database: 503 (50302) when it is down.
    extra = (503,) if 401 in statuses else ()
    return {str(s): ERROR_REF for s in (*statuses, *extra)}


_json = json_body
_STR = {"type": "string"}
# One row of GET /audit, newest first; fields that are not set are left out.
_AUDIT_EVENT = {
    "type": "object",
    "required": ["time", "event", "result"],
    "properties": {
        "time": {"type": "string", "format": "date-time"},
        "event": {"type": "string", "description": "exchange, access, native, revoke, ..."},
        "user": _STR,
        "token_id": _STR,
        "mount": _STR,
        "path": _STR,
        "operation": {
            "type": "string",
            "description": f"one of {', '.join(OPERATIONS)} (what /explain takes)",
        },
        "result": {"type": "string", "description": "ok, denied, redirect, error:<code>"},
        "status": {"type": "integer"},
        "bytes": {"type": "integer"},
        "execution_id": _STR,
        "detail": _STR,
        "request_id": {"type": "string", "description": "the request's X-Request-ID"},
        "reason": {"type": "string", "description": "why it was refused, in words"},
        "client": {"type": "string", "description": "the client's address"},
    },
}
_AUDIT_TIME = {
    "type": "string",
    "format": "date-time",
    "description": "ISO 8601 (UTC without an offset); epoch seconds are accepted too",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    from gateway.api.data import ACTIONS
    from gateway.api.token import GRANT_TYPE, SUBJECT_TOKEN_TYPES

    prefix = settings.api_prefix
    path_param = {
        "name": "completePath",
        "in": "path",
        "required": True,
        "description": "<mount>/<path inside the mount>; may contain unencoded '/'. "
        "The pattern is the portable subset; the server also accepts any UTF-8 name in "
        "Unicode NFC of at most 255 bytes without control characters or backslash, not "
        "'.' or '..' and not ending with a dot or a space (docs/decisions.md).",
        "schema": {"type": "string", "pattern": _PORTABLE_PATH, "maxLength": 4096},
    }
    security: list[dict[str, list[str]]] = [{"apikey": []}, {"bearer": []}]
    backend = (502, 503, 504)
    paths: dict[str, Any] = {
        f"{prefix}/platform": {
            "get": {
                "summary": "Platform properties (no authentication)",
                "security": [],
                "responses": {"200": _json({"$ref": "#/components/schemas/Platform"})},
            },
            "put": {
                "summary": "Validates an API key (VIP client convention); answers the platform",
                "security": [{"apikey": []}],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Platform"}),
                    **_errors(401),
                },
            },
        },
        f"{prefix}/authenticate": {
            "post": {
                "summary": "Exchange a username and password for a new API key",
                "security": [],
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/AuthenticationCredentials"}),
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/AuthenticationResult"}),
                    **_errors(400, 401, 413),
                },
            },
        },
        f"{prefix}/path/{{completePath}}": {
            "parameters": [path_param],
            "get": {
                "summary": "Act on a path: exists, properties, list, md5 or content",
                "security": security,
                "parameters": [
                    {
                        "name": "action",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "enum": list(ACTIONS)},
                    },
                    {
                        "name": "redirect",
                        "in": "query",
                        "required": False,
                        "description": "content: true asks for a redirect to the storage, "
                        "false forces streaming through fedgate",
                        "schema": {"type": "string", "enum": ["true", "false"]},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "exists → {exists}; properties → Path; list → [Path]; "
                        "md5 → {md5}; content → the bytes (a directory: a .tar.gz)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Existence"},
                                        {"$ref": "#/components/schemas/Path"},
                                        {
                                            "type": "array",
                                            "items": {"$ref": "#/components/schemas/Path"},
                                        },
                                        {"$ref": "#/components/schemas/PathMD5"},
                                    ]
                                }
                            },
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            },
                        },
                    },
                    "206": {"description": "partial content (Range)"},
                    "307": {"description": "redirect to the storage (presigned URL)"},
                    **_errors(400, 401, 403, 404, 409, 416, 501, *backend),
                },
            },
            "put": {
                "summary": "Create a directory (empty body), upload raw bytes, or UploadData",
                "security": security,
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/carmin+json": {
                            "schema": {"$ref": "#/components/schemas/UploadData"}
                        },
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                "responses": {
                    "201": {
                        "description": "created",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        **_json({"$ref": "#/components/schemas/Path"}),
                    },
                    **_errors(400, 401, 403, 404, 409, 413, 507, *backend),  # 507: storage full
                },
            },
            "delete": {
                "summary": "Delete a file or a directory recursively",
                "security": security,
                "responses": {
                    "204": {"description": "deleted"},
                    **_errors(400, 401, 403, 404, *backend),
                },
            },
        },
        f"{prefix}/token": {
            "get": {
                "summary": "The caller's live tokens: ids, executions, scopes, expiry "
                "(never the tokens); revoke them with POST /token/revoke",
                "security": [{"apikey": []}],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": "#/components/schemas/LiveToken"}}
                    ),
                    **_errors(401),
                },
            },
            "post": {
                "summary": "OAuth 2.0 Token Exchange (RFC 8693): a short-lived scoped token",
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/TokenExchangeRequest"}
                        },
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TokenExchangeRequest"}
                        },
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/TokenExchangeResponse"}),
                    **_errors(400, 401, 403, 413),
                },
            },
        },
        f"{prefix}/token/revoke": {
            "post": {
                "summary": "Revoke a token (RFC 7009) or an API key, by value; a token by "
                "id (jti); an execution",
                "security": [{"apikey": []}, {"bearer": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {"$ref": "#/components/schemas/RevokeRequest"}
                        },
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/RevokeRequest"}
                        },
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Revoked"}),
                    **_errors(400, 401, 403, 413),
                },
            },
        },
        f"{prefix}/token/native": {
            "post": {
                "summary": "A native credential (presigned URL, ticket…) for one path",
                "security": security,
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["path"],
                            "properties": {
                                "path": {
                                    "type": "string",
                                    "pattern": _PLATFORM_FILE,
                                    "maxLength": 4096,
                                },
                                "method": {"type": "string", "enum": ["GET", "PUT"]},
                            },
                        }
                    ),
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/NativeCredential"}),
                    **_errors(400, 401, 403, 404, 413, 501, *backend),
                },
            },
        },
        f"{prefix}/user/externalKeys": {
            "get": {
                "summary": "The caller's stored storage credentials (never the secrets)",
                "security": [{"apikey": []}],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": "#/components/schemas/ExternalKeyInfo"}}
                    ),
                    **_errors(401),
                },
            },
            "put": {
                "summary": "Store (encrypted) a credential for a mount",
                "security": [{"apikey": []}],
                "requestBody": {
                    "required": True,
                    **_json({"$ref": "#/components/schemas/ExternalKey"}),
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/ExternalKeyInfo"}),
                    **_errors(400, 401, 404, 413),
                },
            },
        },
        f"{prefix}/user/externalKeys/{{storageIdentifier}}": {
            "delete": {
                "summary": "Delete a stored credential; revokes the tokens that used it",
                "security": [{"apikey": []}],
                "parameters": [
                    {
                        "name": "storageIdentifier",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"204": {"description": "deleted"}, **_errors(401, 404)},
            },
        },
        f"{prefix}/user/apiKeys": {
            "get": {
                "summary": "The caller's API keys (?user=NAME: an admin, anyone's); no secret",
                "security": [{"apikey": []}],
                "responses": {
                    "200": _json(
                        {"type": "array", "items": {"$ref": "#/components/schemas/ApiKeyInfo"}}
                    ),
                    **_errors(401, 403, 404),
                },
            },
        },
        f"{prefix}/user/apiKeys/{{keyId}}": {
            "delete": {
                "summary": "Revoke one API key (the owner or an admin) and its tokens",
                "security": [{"apikey": []}],
                "parameters": [
                    {"name": "keyId", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Revoked"}),
                    **_errors(401, 404),
                },
            },
        },
        f"{prefix}/externalPlatforms": {
            "get": {
                "summary": "The mounts (external storages) of this gateway",
                "security": security,
                "responses": {
                    "200": _json({"type": "array", "items": {"type": "object"}}),
                    **_errors(401),
                },
            },
        },
        f"{prefix}/explain": {
            "post": {
                "summary": "Would this token/user be allowed this operation on this path?",
                "security": [{"apikey": []}],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["path"],
                            "properties": {
                                "path": {
                                    "type": "string",
                                    "pattern": _PLATFORM_MOUNT,
                                    "maxLength": 4096,
                                },
                                "operation": {
                                    "type": "string",
                                    "description": "an operation as the audit names it, "
                                    "or a scope activity (read, create, modify); default read",
                                    "enum": [*OPERATIONS, *ACTIVITIES],
                                },
                                "token": {"type": "string"},
                                "token_id": {
                                    "type": "string",
                                    "description": "a token's id (the audit's token_id): "
                                    "the caller's own token, or any for an admin",
                                    "minLength": 1,
                                    "maxLength": 200,
                                },
                                "user": {"type": "string"},
                            },
                            "not": {"required": ["token", "token_id"]},
                        }
                    ),
                },
                "responses": {"200": _json({"type": "object"}), **_errors(400, 401, 403, 404)},
            },
        },
        f"{prefix}/audit": {
            "get": {
                "summary": "Audit events (admins: all; users: their own)",
                "security": [{"apikey": []}],
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": schema}
                    for n, schema in (
                        *(
                            (name, {"type": "string", "minLength": 1, "maxLength": 256})
                            for name in (
                                "user",
                                "token_id",
                                "execution_id",
                                "mount",
                                "event",
                                "request_id",
                                "result",
                            )
                        ),
                        ("since", _AUDIT_TIME),
                        ("until", {**_AUDIT_TIME, "description": "exclusive; as since"}),
                        ("limit", {"type": "integer", "minimum": 1, "maximum": 10_000}),
                    )
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _AUDIT_EVENT}),
                    **_errors(400, 401, 403),
                },
            },
        },
        f"{prefix}/resolve": {
            "get": {
                "summary": "Which mount and path a URI names (s3://, root://, davs://, "
                "irods://, girder:, VIP girder URIs, fedgate URLs)",
                "security": security,
                "parameters": [
                    {
                        "name": "uri",
                        "in": "query",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "pattern": "^(s3|root|xroot|https?|davs?|irods|girder):.+",
                        },
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["mount", "path", "url"],
                            "properties": {
                                "mount": {"type": "string"},
                                "path": {"type": "string"},
                                "url": {"type": "string"},
                            },
                        }
                    ),
                    **_errors(400, 401, 404, *backend),
                },
            },
        },
        "/.well-known/jwks.json": {
            "get": {
                "summary": "Public keys that verify fedgate tokens",
                "security": [],
                "responses": {"200": _json({"type": "object"})},
            },
        },
    }
    for item in paths.values():
        for op in item.values():
            if isinstance(op, dict) and "requestBody" in op:
                # A body that stalls or trickles is cut off (gateway/limits.py).
                op["responses"].setdefault("408", ERROR_REF)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fedgate — CARMIN-Data gateway",
            "version": "0.3.1",
            "description": "CARMIN-Data 0.3.1 over a federation of storages, with "
            "two-step delegation (encrypted key vault, RFC 8693 token exchange).",
        },
        "paths": paths,
        "components": components(GRANT_TYPE, SUBJECT_TOKEN_TYPES),
    }
