"""Run every feature at DEBUG level and scan logs, errors and reprs for the secrets."""

from __future__ import annotations

import logging

import pytest

from tokens import (
    AuditEvent,
    AuditLog,
    KeyVault,
    MasterKeys,
    Revocation,
    Store,
    StoredCredential,
    TokenError,
    TokenService,
    UserService,
    VaultError,
    parse_scopes,
)


def test_secrets_never_reach_logs_errors_or_reprs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raw_key = MasterKeys.generate()
    mk = MasterKeys.parse(raw_key)
    users = UserService(store)
    _, api_key = users.add_user("alice", password="pw-Secret-123")
    vault = KeyVault(store, mk)
    cred = StoredCredential("access_secret", {"accessKey": "AK", "secretKey": "SK-leak-check-42"})
    vault.put("alice", "s3", cred)
    svc = TokenService(store, mk, "https://fg")

    def failing_hook(_: Revocation) -> None:
        raise RuntimeError("native clean-up failed")

    svc.on_revoke(failing_hook)
    tok = svc.issue("alice", parse_scopes("storage.read:/s3"), execution_id="e1")
    texts = [repr(mk), repr(cred), repr(vault.list("alice")), repr(tok), repr(store)]
    for bad in (tok.access_token + "x", tok.access_token[:-3]):
        with pytest.raises(TokenError) as ei:
            svc.verify(bad)
        texts.append(str(ei.value))
    with pytest.raises(VaultError) as vi:
        KeyVault(store, MasterKeys.parse(MasterKeys.generate())).get("alice", "s3")
    texts.append(str(vi.value))
    users.authenticate_password("alice", "wrong")
    users.authenticate_key(api_key + "x")
    svc.revoke(token=tok.access_token)  # the hook fails and is logged
    with AuditLog(store) as audit:
        audit.record(AuditEvent(1.0, "exchange", "alice", tok.claims.jti, result="ok"))
    assert "native clean-up failed" in caplog.text  # the failure itself is logged
    haystack = caplog.text + "\n".join(texts)
    for secret in (
        raw_key,
        api_key,
        api_key.split("_", 2)[2],
        "pw-Secret-123",
        "SK-leak-check-42",
        tok.access_token,
        tok.access_token.split(".")[2],
    ):
        assert secret not in haystack
