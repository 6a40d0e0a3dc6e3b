"""A token issuer for the tests: an RSA key set served on loopback (JWKS and OIDC
discovery), and WLCG-profile tokens signed with it (joserfc), as a VO's IAM would."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey


@dataclass
class FakeVO:
    url: str = ""
    keys: list[RSAKey] = field(default_factory=list)
    fetches: int = 0  # JWKS documents served

    @property
    def jwks(self) -> dict[str, Any]:
        return dict(KeySet(list(self.keys)).as_dict(private=False))

    def rotate(self) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex[:8]})
        self.keys.append(key)
        return key

    def token(
        self,
        scope: str,
        *,
        aud: Any = "https://wlcg.cern.ch/jwt/v1/any",
        lifetime: int = 600,
        key: RSAKey | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "iss": self.url,
            "sub": "robot-1",
            "aud": aud,
            "exp": now + lifetime,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "scope": scope,
            "wlcg.ver": "1.0",
        }
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = key or self.keys[-1]
        head = header or {"alg": "RS256", "kid": signer.kid, "typ": "JWT"}
        return jwt.encode(head, payload, signer)


@contextmanager
def serving_issuer() -> Iterator[FakeVO]:
    issuer = FakeVO()
    issuer.rotate()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                doc: dict[str, Any] = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwk"}
            elif self.path == "/jwk":
                issuer.fetches += 1
                doc = issuer.jwks
            else:
                self.send_error(404)
                return
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
