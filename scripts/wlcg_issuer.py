"""A WLCG-profile token issuer on loopback, for running the WLCG JWT compliance suite
(github indigo-iam/wlcg-jwt-compliance-tests) against fedgate's WebDAV door.

    python scripts/wlcg_issuer.py serve DIR PORT      # RS256 key in DIR, JWKS on PORT
    python scripts/wlcg_issuer.py token DIR -s storage.read:/ [--aud=A] ACCOUNT

``token`` takes oidc-agent's ``oidc-token`` arguments, so a two-line ``oidc-token``
script on PATH that calls it stands in for oidc-agent (scripts/wlcg-compliance.sh).
"""

from __future__ import annotations

import argparse
import http.server
import json
import sys
import time
import uuid
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

ANY = "https://wlcg.cern.ch/jwt/v1/any"


def _key(folder: Path) -> RSAKey:
    path = folder / "issuer-key.json"
    if path.exists():
        return RSAKey.import_key(json.loads(path.read_text()))
    key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex[:8]})
    path.write_text(json.dumps(key.as_dict(private=True)))
    path.chmod(0o600)
    return key


def serve(folder: Path, port: int) -> None:
    jwks = json.dumps(KeySet([_key(folder)]).as_dict(private=False)).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(jwks)))
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def token(folder: Path, argv: list[str]) -> str:
    ap = argparse.ArgumentParser(prog="oidc-token")
    ap.add_argument("-s", "--scope", action="append", default=[])
    ap.add_argument("--aud", default="")
    ap.add_argument("account")
    args = ap.parse_args(argv)
    issuer = (folder / "issuer-url").read_text().strip()
    now = int(time.time())
    # oidc-token --aud="a b" asks for several audiences.
    auds = args.aud.split()
    claims = {
        "iss": issuer,
        "sub": args.account,
        "aud": auds[0] if len(auds) == 1 else auds or ANY,
        "exp": now + 1200,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "scope": " ".join(args.scope),
        "wlcg.ver": "1.0",
    }
    key = _key(folder)
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


def main() -> None:
    command, folder = sys.argv[1], Path(sys.argv[2])
    if command == "serve":
        serve(folder, int(sys.argv[3]))
    elif command == "token":
        print(token(folder, sys.argv[3:]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
