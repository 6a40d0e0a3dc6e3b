"""The reusable part of the OpenAPI document: security schemes, the error response and
every schema (CARMIN's Path, UploadData, ErrorCodeAndMessage; the token exchange)."""

from __future__ import annotations

from typing import Any

from gateway.errors import E
from tokens.scopes import ACTIVITIES

# An execution id or an audience: 1-200 printable ASCII characters, no spaces.
_LABEL = "^[\\x21-\\x7e]{1,200}$"
# A space-separated list of WLCG storage scopes (what tokens.scopes.parse_scopes reads):
# said here so that a schema-valid request is one the gateway can accept.
_SCOPE_ITEM = "storage\\.(?:" + "|".join(ACTIVITIES) + "):/[^ ]*"
_SCOPES = f"^ *{_SCOPE_ITEM}(?: +{_SCOPE_ITEM})* *$"


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def components(grant_type: str, subject_types: tuple[str, ...]) -> dict[str, Any]:
    from gateway.api.token import ACCESS_TOKEN_TYPE as access_type
    from gateway.api.token import JWT_TYPE as jwt_type

    codes = sorted(spec.code for spec in E.all())
    return {
        "securitySchemes": {
            "apikey": {"type": "apiKey", "in": "header", "name": "apikey"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        },
        "responses": {
            "Error": {
                "description": "a CARMIN error",
                **json_body({"$ref": "#/components/schemas/ErrorCodeAndMessage"}),
            }
        },
        "schemas": {
            "ErrorCodeAndMessage": {
                "type": "object",
                "required": ["errorCode", "errorMessage"],
                "properties": {
                    "errorCode": {"type": "integer", "enum": codes},
                    "errorMessage": {"type": "string"},
                    "errorDetails": {"type": "object"},
                },
            },
            "Platform": {
                "type": "object",
                "required": ["supportedModules", "supportedAPIVersion"],
                "properties": {
                    "platformName": {"type": "string"},
                    "platformDescription": {"type": "string"},
                    "supportedModules": {"type": "array", "items": {"type": "string"}},
                    "supportedAPIVersion": {"type": "string"},
                    "supportedTransferProtocols": {"type": "array", "items": {"type": "string"}},
                    "APIErrorCodesAndMessages": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/ErrorCodeAndMessage"},
                    },
                    "unsupportedMethods": {"type": "array", "items": {"type": "string"}},
                },
            },
            "AuthenticationCredentials": {
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {"type": "string", "minLength": 1, "maxLength": 64},
                    "password": {"type": "string", "minLength": 1, "maxLength": 1024},
                },
            },
            "AuthenticationResult": {
                "type": "object",
                "required": ["httpHeader", "httpHeaderValue"],
                "properties": {
                    "httpHeader": {"type": "string"},
                    "httpHeaderValue": {"type": "string"},
                },
            },
            "Path": {
                "type": "object",
                "required": ["platformPath", "lastModificationDate", "isDirectory"],
                "properties": {
                    "platformPath": {"type": "string"},
                    "lastModificationDate": {"type": "integer", "format": "int64"},
                    "isDirectory": {"type": "boolean"},
                    "size": {
                        "type": "integer",
                        "format": "int64",
                        "description": "files only; omitted for directories",
                    },
                    "executionId": {"type": "string"},
                    "mimeType": {"type": "string"},
                },
            },
            "Existence": {
                "type": "object",
                "required": ["exists"],
                "properties": {"exists": {"type": "boolean"}},
            },
            "PathMD5": {
                "type": "object",
                "required": ["md5"],
                "properties": {"md5": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
            },
            "UploadData": {
                "type": "object",
                "required": ["base64Content", "type"],
                "properties": {
                    "base64Content": {"type": "string"},
                    "type": {"type": "string", "enum": ["File", "Archive"]},
                    "md5": {"type": "string"},
                },
            },
            "TokenExchangeRequest": {
                "type": "object",
                "required": ["grant_type", "subject_token", "subject_token_type", "scope"],
                "properties": {
                    "grant_type": {"type": "string", "enum": [grant_type]},
                    "subject_token": {"type": "string", "minLength": 1, "maxLength": 8192},
                    "subject_token_type": {"type": "string", "enum": list(subject_types)},
                    "scope": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 32768,
                        "pattern": _SCOPES,
                        "description": "WLCG scopes (at most 64), e.g. storage.read:/mount/dir",
                    },
                    "audience": {
                        "type": "string",
                        "pattern": _LABEL,
                        "description": "default: this gateway (public_url); another value "
                        "makes a token for another service, which this gateway refuses",
                    },
                    "requested_token_type": {
                        "type": "string",
                        "enum": [access_type, jwt_type],
                    },
                    "execution_id": {"type": "string", "pattern": _LABEL},
                    "lifetime": {"type": "integer", "minimum": 1, "maximum": 21600},
                    "uses": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                },
            },
            "TokenExchangeResponse": {
                "type": "object",
                "required": ["access_token", "issued_token_type", "token_type", "expires_in"],
                "properties": {
                    "access_token": {"type": "string"},
                    "issued_token_type": {"type": "string"},
                    "token_type": {"type": "string"},
                    "expires_in": {"type": "integer"},
                    "scope": {"type": "string"},
                },
            },
            "Revoked": {
                "type": "object",
                "description": "how many tokens died; apiKey: the id of a revoked API key",
                "properties": {
                    "revoked": {"type": "integer"},
                    "apiKey": {"type": "string"},
                },
            },
            "RevokeRequest": {
                "type": "object",
                "description": "one of token (an access token or an API key), jti (or "
                "token_id) or execution_id is required. A Bearer caller may name only "
                "itself and the tokens narrowed from it; ids and executions need the "
                "user's API key (an admin's: anyone's)",
                "anyOf": [
                    {"required": ["token"]},
                    {"required": ["jti"]},
                    {"required": ["token_id"]},
                    {"required": ["execution_id"]},
                ],
                "properties": {
                    "token": {"type": "string", "minLength": 1, "maxLength": 8192},
                    "token_type_hint": {
                        "type": "string",
                        "enum": ["access_token", "refresh_token", "api_key"],
                    },
                    "jti": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "token_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                    "execution_id": {"type": "string", "pattern": _LABEL},
                },
            },
            "ExternalKey": {
                "type": "object",
                "required": ["storageIdentifier"],
                "description": "apiKey, or credential {kind, fields…} (non-empty strings)",
                "anyOf": [{"required": ["apiKey"]}, {"required": ["credential"]}],
                "properties": {
                    "storageIdentifier": {"type": "string", "minLength": 1},
                    "apiKey": {"type": "string", "minLength": 1},
                    "verify": {
                        "type": "boolean",
                        "description": "check the credential against the storage first "
                        "(lists the mount's root); refused and not stored if it fails",
                    },
                    "credential": {
                        "type": "object",
                        "required": ["kind"],
                        "minProperties": 2,
                        "additionalProperties": {"type": "string", "minLength": 1},
                        "properties": {
                            "kind": {
                                "type": "string",
                                "enum": [
                                    "apikey",
                                    "access_secret",
                                    "user_password",
                                    "bearer",
                                    "x509_proxy",
                                ],
                            }
                        },
                    },
                },
            },
            "ApiKeyInfo": {
                "type": "object",
                "required": ["id", "label", "created", "lastUsed", "expires", "current"],
                "properties": {
                    "id": {"type": "string", "description": "the fgk_<id>_ part of the key"},
                    "label": {"type": "string"},
                    "created": {"type": "integer", "description": "Unix time"},
                    "lastUsed": {"type": ["integer", "null"], "description": "to the minute"},
                    "expires": {"type": ["integer", "null"]},
                    "current": {"type": "boolean", "description": "the key of this request"},
                },
            },
            "ExternalKeyInfo": {
                "type": "object",
                "required": ["storageIdentifier", "kind"],
                "properties": {
                    "storageIdentifier": {"type": "string"},
                    "kind": {"type": "string"},
                    "created": {"type": "integer"},
                    "updated": {"type": "integer"},
                },
            },
            "LiveToken": {
                "type": "object",
                "required": ["jti", "scope", "issuedAt", "expiresAt"],
                "properties": {
                    "jti": {"type": "string", "description": "token id (for revocation)"},
                    "executionId": {"type": "string"},
                    "scope": {"type": "string"},
                    "issuedAt": {"type": "integer", "description": "epoch seconds"},
                    "expiresAt": {"type": "integer", "description": "epoch seconds"},
                    "usesLeft": {"type": "integer"},
                    "parent": {"type": "string", "description": "jti it was narrowed from"},
                },
            },
            "NativeCredential": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string"},
                    "value": {"type": "string"},
                    "method": {"type": "string"},
                    "headers": {"type": "object"},
                    "url": {"type": "string"},
                    "expiresAt": {"type": "integer"},
                },
            },
        },
    }
