"""The reusable part of the OpenAPI document: security schemes, the error response and
every schema (CARMIN's Path, UploadData, ErrorCodeAndMessage; the token exchange)."""

from __future__ import annotations

from typing import Any

from gateway.errors import E


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def components(grant_type: str, subject_types: tuple[str, ...]) -> dict[str, Any]:
    from gateway.routes_tokens import ACCESS_TOKEN_TYPE as access_type
    from gateway.routes_tokens import JWT_TYPE as jwt_type

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
                "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
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
                    "subject_token": {"type": "string", "minLength": 1},
                    "subject_token_type": {"type": "string", "enum": list(subject_types)},
                    "scope": {
                        "type": "string",
                        "minLength": 1,
                        "description": "WLCG scopes, e.g. storage.read:/mount/dir",
                    },
                    "audience": {"type": "string"},
                    "requested_token_type": {
                        "type": "string",
                        "enum": [access_type, jwt_type],
                    },
                    "execution_id": {"type": "string"},
                    "lifetime": {"type": "integer", "minimum": 1},
                    "uses": {"type": "integer", "minimum": 1},
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
            "RevokeRequest": {
                "type": "object",
                "description": "one of token, jti or execution_id is required",
                "anyOf": [
                    {"required": ["token"]},
                    {"required": ["jti"]},
                    {"required": ["execution_id"]},
                ],
                "properties": {
                    "token": {"type": "string", "minLength": 1},
                    "token_type_hint": {"type": "string"},
                    "jti": {"type": "string", "minLength": 1},
                    "execution_id": {"type": "string", "minLength": 1},
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
