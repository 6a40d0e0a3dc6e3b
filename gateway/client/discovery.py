"""Where the gateway URL and the credential come from on a worker node.

Gateway URL: ``--gateway``, else ``$FEDGATE_URL`` — the API root, e.g.
``https://gw.example.org/rest`` (where ``/platform`` answers) — else, when the URI is a
fedgate URL ``<gateway>/path/…``, its ``<gateway>``.

Credential, first found wins:

1. ``--token`` (a delegated token), 2. ``--apikey`` (a user's gateway API key);
3. ``$BEARER_TOKEN``; 4. the file named by ``$BEARER_TOKEN_FILE``;
5. ``$FEDGATE_APIKEY``;
6. ``$XDG_RUNTIME_DIR/bt_u<uid>``; 7. ``/tmp/bt_u<uid>``.

3, 4, 6 and 7 are the WLCG bearer token discovery order. ``$FEDGATE_APIKEY`` comes
before the two well-known files because an environment variable is set on purpose, while
a token file may be a leftover of an earlier job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.client.errors import UsageError


@dataclass(frozen=True)
class Credential:
    kind: str  # "token" | "apikey" | "none"
    value: str = field(repr=False)
    source: str  # where it was found, for messages (never the value)

    def headers(self) -> dict[str, str]:
        if self.kind == "token":
            return {"Authorization": f"Bearer {self.value}"}
        if self.kind == "apikey":
            return {"apikey": self.value}
        return {}


NO_CREDENTIAL = Credential("none", "", "nowhere")


def _read(path: Path, source: str) -> Credential | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not text:
        return None
    return Credential("token", text, source)


def discover_credential(
    token: str | None = None,
    apikey: str | None = None,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> Credential:
    env = os.environ if env is None else env
    if token:
        return Credential("token", token.strip(), "--token")
    if apikey:
        return Credential("apikey", apikey.strip(), "--apikey")
    if env.get("BEARER_TOKEN", "").strip():
        return Credential("token", env["BEARER_TOKEN"].strip(), "$BEARER_TOKEN")
    if env.get("BEARER_TOKEN_FILE"):
        found = _read(Path(env["BEARER_TOKEN_FILE"]), "$BEARER_TOKEN_FILE")
        if found is None:
            raise UsageError(f"BEARER_TOKEN_FILE={env['BEARER_TOKEN_FILE']} is missing or empty")
        return found
    if env.get("FEDGATE_APIKEY", "").strip():
        return Credential("apikey", env["FEDGATE_APIKEY"].strip(), "$FEDGATE_APIKEY")
    uid = os.getuid() if uid is None else uid
    if env.get("XDG_RUNTIME_DIR"):
        path = Path(env["XDG_RUNTIME_DIR"]) / f"bt_u{uid}"
        found = _read(path, str(path))
        if found is not None:
            return found
    path = Path(f"/tmp/bt_u{uid}")
    return _read(path, str(path)) or NO_CREDENTIAL


def gateway_of(uri: str) -> str | None:
    """The gateway a fedgate URL (``<gateway>/path/…``) belongs to, else None."""
    if not uri.startswith(("http://", "https://")) or "/path/" not in uri:
        return None
    return uri.split("?", 1)[0].split("/path/", 1)[0]


def discover_gateway(
    gateway: str | None = None, env: Mapping[str, str] | None = None, uri: str | None = None
) -> str:
    """``gateway``, else ``$FEDGATE_URL``, else the gateway of a fedgate URL ``uri``."""
    env = os.environ if env is None else env
    url = (gateway or env.get("FEDGATE_URL", "") or gateway_of(uri or "") or "").strip()
    if not url:
        raise UsageError("no gateway URL: pass --gateway or set FEDGATE_URL")
    if not url.startswith(("http://", "https://")):
        raise UsageError("the gateway URL must start with http:// or https://")
    return url.rstrip("/")
