"""Configuration: one TOML file, overridden by environment variables.

With no file at all fedgate runs the embedded default: ``./data`` mounted as ``local``
and the state (users, vault, tokens, audit) in SQLite under ``./.fedgate/``.

Environment overrides (applied after the file):

* ``FEDGATE_CONFIG`` — path of the TOML file (default ``./fedgate.toml`` if it exists);
* ``FEDGATE_<KEY>`` for any key of ``[server]`` (e.g. ``FEDGATE_API_PREFIX=/rest``,
  ``FEDGATE_DATABASE_URL=postgresql://…``, ``FEDGATE_PORT=8080``);
* ``FEDGATE_MOUNT__<NAME>__<OPTION>=value`` for a mount option (creates the mount if new,
  e.g. ``FEDGATE_MOUNT__SCRATCH__TYPE=posix`` and ``FEDGATE_MOUNT__SCRATCH__ROOT=/scratch``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

_MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class MountConfig:
    name: str
    type: str
    options: Mapping[str, Any]
    description: str = ""
    # Who may use the mount: user names, or "*" for every authenticated user.
    read_users: tuple[str, ...] = ("*",)
    write_users: tuple[str, ...] = ("*",)
    # Where the backend credential comes from: "user" (the caller's key in the vault),
    # "service" (the mount's own options), "user-or-service" (vault first), "none".
    credential_source: str = "user-or-service"
    # Answer content GETs with a redirect to the storage when possible (see README).
    redirect: bool = True

    def access_for(self, user: str, is_admin: bool) -> str | None:
        """The strongest activity the user holds on this mount: modify, read or None."""
        if is_admin or "*" in self.write_users or user in self.write_users:
            return "modify"
        if "*" in self.read_users or user in self.read_users:
            return "read"
        return None


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    api_prefix: str = "/rest"
    # URL prefix of the WebDAV door (gateway/webdav): the same mounts; "" turns it off.
    webdav_prefix: str = "/webdav"
    state_dir: str = ".fedgate"
    database_url: str = ""  # default: sqlite under state_dir
    public_url: str = ""  # how clients reach us, for Location headers; default: from request
    platform_name: str = "fedgate"
    platform_description: str = "CARMIN-Data storage federation gateway"
    cors_origins: tuple[str, ...] = ()
    max_upload_bytes: int = 100 * 1024**3  # raw PUT
    max_json_upload_bytes: int = 256 * 1024**2  # application/carmin+json bodies
    max_archive_bytes: int = 10 * 1024**3  # total size once unpacked
    max_archive_entries: int = 100_000
    # Slow or stuck clients (gateway/limits.py): seconds to deliver a request head (and
    # keep-alive idle time), seconds without a body byte, minimum body rate (bytes/s)
    # over such a window, and seconds a reader may take no data before being cut off.
    keep_alive_timeout: int = 30
    body_idle_timeout: int = 60
    body_min_rate: int = 1024
    send_idle_timeout: int = 120
    # File bodies written to / read from the client's socket by the transfer's thread
    # (gateway/socket_send.py, gateway/socket_receive.py); false: all through ASGI.
    socket_bodies: bool = True
    # On that path, download bodies from an S3 endpoint over plain HTTP are moved by the
    # kernel with splice(2) (gateway/socket_splice.py); false: copied through the thread.
    splice_bodies: bool = True
    token_default_lifetime: int = 1200
    token_max_lifetime: int = 21600
    token_issuer: str = "fedgate"  # noqa: S105 - a name, not a secret
    # Seconds a token of fedgate's own is still accepted past its exp (and before its
    # nbf), for clock skew between replicas; 0-60.
    token_leeway: int = 10
    # Audiences accepted in a token's aud besides public_url (which is the aud of the
    # tokens this gateway mints); see ``audiences``.
    token_audiences: tuple[str, ...] = ()
    # Seconds a presigned URL (307 redirects, /token/native) lives at most: nothing can
    # recall one, so it stays short; never past the token's own expiry.
    presign_lifetime: int = 300
    # Keys minted by POST /authenticate expire (each login makes a new one); 0 = never.
    api_key_ttl_days: int = 30
    # Days the audit log keeps a row; older rows are deleted hourly; 0 = keep forever.
    audit_retention_days: int = 0
    mounts: tuple[MountConfig, ...] = field(default_factory=tuple)

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(self.state_dir).resolve() / 'state.db'}"

    @property
    def audiences(self) -> tuple[str, ...]:
        """This gateway's names as a token audience, the default (minted) one first:
        public_url, then token_audiences; with neither, the issuer name (a gateway that
        does not know its URL cannot name itself otherwise: docs/decisions.md)."""
        names = [u.rstrip("/") for u in (self.public_url, *self.token_audiences) if u]
        return tuple(dict.fromkeys(names)) or (self.token_issuer,)

    def mount(self, name: str) -> MountConfig | None:
        for m in self.mounts:
            if m.name == name:
                return m
        return None


def _coerce(name: str, value: str, like: Any) -> Any:
    if isinstance(like, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer") from None
    if isinstance(like, tuple):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


def _option_value(value: str) -> Any:
    low = value.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return value


def _mount(name: str, raw: Mapping[str, Any]) -> MountConfig:
    if not _MOUNT_NAME.match(name):
        raise ConfigError(f"mount name {name!r}: letters, digits, '_', '.', '-' only")
    if "type" not in raw:
        raise ConfigError(f"mount {name!r} has no type")
    known = {"type", "description", "read_users", "write_users", "credential_source", "redirect"}
    options = {k: v for k, v in raw.items() if k not in known}
    source = str(raw.get("credential_source", "user-or-service"))
    if source not in ("user", "service", "user-or-service", "none"):
        raise ConfigError(
            f"mount {name!r}: credential_source must be user|service|user-or-service|none"
        )

    def users(key: str) -> tuple[str, ...]:
        v = raw.get(key, ["*"])
        return (v,) if isinstance(v, str) else tuple(str(x) for x in v)

    return MountConfig(
        name=name,
        type=str(raw["type"]),
        options=options,
        description=str(raw.get("description", "")),
        read_users=users("read_users"),
        write_users=users("write_users"),
        credential_source=source,
        redirect=bool(raw.get("redirect", True)),
    )


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    path = path or env.get("FEDGATE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
    elif Path("fedgate.toml").exists():
        with open("fedgate.toml", "rb") as f:
            data = tomllib.load(f)

    server: dict[str, Any] = dict(data.get("server", {}))
    defaults = Settings()
    known = {f.name for f in fields(Settings)} - {"mounts"}
    unknown = set(server) - known
    if unknown:
        raise ConfigError(f"unknown [server] keys: {', '.join(sorted(unknown))}")
    for f_name in known:
        key = f"FEDGATE_{f_name.upper()}"
        if key in env:
            server[f_name] = _coerce(key, env[key], getattr(defaults, f_name))
    for k, v in list(server.items()):
        if isinstance(v, list):
            server[k] = tuple(v)

    mounts_raw: dict[str, dict[str, Any]] = {
        name: dict(opts) for name, opts in data.get("mounts", {}).items()
    }
    for key, value in env.items():
        if key.startswith("FEDGATE_MOUNT__"):
            parts = key[len("FEDGATE_MOUNT__") :].split("__", 1)
            if len(parts) == 2:
                mounts_raw.setdefault(parts[0].lower(), {})[parts[1].lower()] = _option_value(value)
    if not mounts_raw:
        mounts_raw = {
            "local": {
                "type": "posix",
                "root": "./data",
                "create": True,
                "description": "the embedded default: ./data",
            }
        }
    prefix = str(server.get("api_prefix", defaults.api_prefix)).rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    server["api_prefix"] = prefix
    dav = str(server.get("webdav_prefix", defaults.webdav_prefix)).rstrip("/")
    if dav and not dav.startswith("/"):
        dav = "/" + dav
    if dav and prefix and (dav == prefix or dav.startswith(prefix + "/")):
        raise ConfigError(f"[server] webdav_prefix {dav!r} must not lie under api_prefix")
    server["webdav_prefix"] = dav
    mounts = tuple(_mount(name, raw) for name, raw in sorted(mounts_raw.items()))
    return Settings(**server, mounts=mounts)
