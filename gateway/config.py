"""Configuration: one TOML file, overridden by environment variables.

With no file at all fedgate runs the embedded default: ``./data`` mounted as ``local``
and the state (users, vault, tokens, audit) in SQLite under ``./.fedgate/``.

Environment overrides (applied after the file):

* ``FEDGATE_CONFIG`` — path of the TOML file (default ``./fedgate.toml`` if it exists);
* ``FEDGATE_<KEY>`` for any key of ``[server]`` (e.g. ``FEDGATE_API_PREFIX=/rest``,
  ``FEDGATE_DATABASE_URL=postgresql://…``, ``FEDGATE_PORT=8080``);
* ``FEDGATE_MOUNT__<NAME>__<OPTION>=value`` for a mount option (creates the mount if new,
  e.g. ``FEDGATE_MOUNT__SCRATCH__TYPE=posix`` and ``FEDGATE_MOUNT__SCRATCH__ROOT=/scratch``).

Strict: every key is declared with its type (``Settings`` and ``MountKeys`` below, each
backend's options in adapters/options.py); an unknown section, key or option, a value of
the wrong type or an unknown mount type is a ConfigError of one line, and environment
strings are converted to the declared type (a password of digits stays a string).
docs/configuration.md is generated from the same declarations
(``scripts/gen-config-doc.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from adapters.options import OPTIONS
from gateway import config_fields
from tokens.external import Issuer

_MOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # fullmatch: no "name\n"


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
class MountKeys:
    """The keys of a ``[mounts.NAME]`` table that the gateway reads itself; every other
    key is an option of the mount's backend (adapters/options.py)."""

    type: str
    """Backend: posix, s3, girder, irods or gfal."""
    description: str = ""
    """Shown to users in the platform description."""
    read_users: tuple[str, ...] = ("*",)
    """User names who may read, or ``*`` for every authenticated user."""
    write_users: tuple[str, ...] = ("*",)
    """User names who may write (and read), or ``*`` for every authenticated user."""
    credential_source: Literal["user", "service", "user-or-service", "none"] = "user-or-service"
    """Where the backend credential comes from: the caller's stored key (``user``), the
    mount's own options (``service``), the first then the second, or ``none``."""
    redirect: bool = True
    """Answer downloads (and uploads that ask) with a 307 to a presigned storage URL when
    the backend can presign; false: every byte goes through the gateway."""


@dataclass(frozen=True)
class Settings:
    # Keys whose value is never shown (errors, generated docs): a URL may hold a password.
    secrets: ClassVar[frozenset[str]] = frozenset({"database_url"})

    # Interface to listen on.
    host: str = "127.0.0.1"
    # TCP port to listen on.
    port: int = 8000
    # Worker processes (uvicorn); each builds its own gateway from the same configuration.
    workers: int = 1
    # URL prefix of the CARMIN API ("" serves it at the root); probes stay at the root.
    api_prefix: str = "/rest"
    # URL prefix of the WebDAV door (gateway/webdav): the same mounts; "" turns it off.
    webdav_prefix: str = "/webdav"
    # HTTP third-party copy (COPY with Source or a remote Destination, gateway/webdav/tpc.py):
    # may the gateway reach loopback and private addresses (an SSRF guard: off by default).
    tpc_allow_private: bool = False
    # Third-party copies in flight per user (per process); past it 429 with Retry-After.
    tpc_max_per_user: int = 4
    # Third-party copies in flight in all (per process); past it 429 with Retry-After.
    tpc_max_total: int = 16
    # Seconds without a byte before a third-party copy is given up.
    tpc_stall_timeout: int = 60
    # Seconds between performance markers in a third-party copy's answer.
    tpc_marker_interval: int = 5
    # Folder of the embedded state: SQLite database and master key file.
    state_dir: str = ".fedgate"
    # URL of the state database, postgresql://user:password@host:5432/db; "": SQLite in
    # state_dir.
    database_url: str = ""
    # How clients reach the gateway, for Location headers and token audiences; "": from
    # each request.
    public_url: str = ""
    # Name shown by GET /platform.
    platform_name: str = "fedgate"
    # Description shown by GET /platform.
    platform_description: str = "CARMIN-Data storage federation gateway"
    # Browser origins allowed by CORS (none: CORS off).
    cors_origins: tuple[str, ...] = ()
    # Largest raw PUT body, in bytes.
    max_upload_bytes: int = 100 * 1024**3
    # Largest application/carmin+json (base64) upload body, in bytes.
    max_json_upload_bytes: int = 256 * 1024**2
    # Largest total size of an uploaded archive once unpacked, in bytes.
    max_archive_bytes: int = 10 * 1024**3
    # Most entries an uploaded archive may hold.
    max_archive_entries: int = 100_000
    # Seconds a client has to deliver a request head, and keep-alive idle time
    # (gateway/datapath/uvicorn_seam.py).
    keep_alive_timeout: int = 30
    # Seconds without a request body byte before the request is refused with 408.
    body_idle_timeout: int = 60
    # Minimum request body rate in bytes/s over a body_idle_timeout window.
    body_min_rate: int = 1024
    # Seconds a reader may take no data before its connection is reset.
    send_idle_timeout: int = 120
    # File bodies written to / read from the client's socket by the transfer's thread
    # (gateway/datapath/socket_send.py, socket_receive.py); false: all through ASGI.
    socket_bodies: bool = True
    # On that path, download bodies from an S3 endpoint over plain HTTP are moved by the
    # kernel with splice(2) (gateway/datapath/socket_splice.py); false: copied through
    # the thread.
    splice_bodies: bool = True
    # Lifetime of an exchanged token when the request names none, in seconds.
    token_default_lifetime: int = 1200
    # Longest lifetime a token may be given, in seconds.
    token_max_lifetime: int = 21600
    # The iss of the tokens this gateway mints.
    token_issuer: str = "fedgate"  # noqa: S105 - a name, not a secret
    # Seconds a token this gateway minted is still accepted past its exp (and before its
    # nbf): clock skew between replicas and clients, 0-60.
    token_leeway: int = 10
    # More names of this gateway a token's aud may hold (an old URL, an alias). Minted
    # tokens name public_url, or token_issuer when public_url is empty; the WLCG
    # https://wlcg.cern.ch/jwt/v1/any is always accepted; any other aud gets 401.
    token_audiences: tuple[str, ...] = ()
    # Trusted external token issuers ([[issuers]] tables; tokens/external.py).
    issuers: tuple[Issuer, ...] = ()
    # Seconds a presigned URL (307 redirects, /token/native) lives at most: nothing can
    # recall one, so it stays short; never past the token's own expiry.
    presign_lifetime: int = 300
    # Keys minted by POST /authenticate expire (each login makes a new one); 0 = never.
    api_key_ttl_days: int = 30
    # Days the audit log keeps a row; older rows are deleted hourly; 0 = keep forever.
    audit_retention_days: int = 0
    # Log level: debug, info, warning or error (access lines of probes are debug).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds each /readyz check (database, every mount) may take before it counts as
    # failed; also the bound of the start-up check of the mounts.
    readyz_timeout: float = 3.0
    # Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For / Forwarded
    # header names the client; from any other peer those headers are ignored.
    trusted_proxies: tuple[str, ...] = ()
    # The [mounts.NAME] tables (MountKeys and the backend's options).
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


# FEDGATE_* variables read elsewhere than [server] and [mounts]: known, so that a
# misspelt one can be reported at start (config.unknown_environment).
ENVIRONMENT: dict[str, str] = {
    "FEDGATE_CONFIG": "path of the TOML file (default ./fedgate.toml if it exists)",
    "FEDGATE_MASTER_KEY": "master keyring: base64 keys, comma-separated, current first",
    "FEDGATE_MASTER_KEY_FILE": "file holding the master keyring",
    "FEDGATE_ADMIN_KEY_FILE": "the first admin's API key, read at the first start; absent: "
    "no admin is made then (fedgate user add admin --admin)",
    "FEDGATE_MALLOC_TUNING": "0 leaves glibc's malloc settings alone "
    "(gateway/datapath/memory_tuning.py)",
    "FEDGATE_URL": "the gateway's URL, for the job-side client (fedgate get/put/ls/stat)",
    "FEDGATE_APIKEY": "an API key, for the job-side client",
}
MOUNT_ENV = "FEDGATE_MOUNT__"


def server_keys() -> dict[str, config_fields.Key]:
    """Every [server] key, from the Settings dataclass (a field added there is a key)."""
    tables = ("mounts", "issuers")  # sections of their own, not [server] keys
    return {k.name: k for k in config_fields.keys_of(Settings) if k.name not in tables}


def env_name(key: str) -> str:
    return "FEDGATE_" + key.upper()


def unknown_environment(env: Mapping[str, str]) -> list[str]:
    """One message per FEDGATE_* variable fedgate does not read, with a close match."""
    known = {env_name(k) for k in server_keys()} | set(ENVIRONMENT)
    out = []
    for name in sorted(env):
        if name.startswith("FEDGATE_") and not name.startswith(MOUNT_ENV) and name not in known:
            # Compared without the common prefix, which would make everything "close".
            tails = [k[len("FEDGATE_") :] for k in known]
            hint = config_fields.did_you_mean(name[len("FEDGATE_") :], tails, "FEDGATE_{}")
            out.append(f"{name} is not a fedgate variable and is ignored{hint}")
    return out


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _value(place: str, key: config_fields.Key, raw: Any, from_env: bool) -> Any:
    try:
        if from_env:
            return config_fields.from_env(raw, key.type, key.secret)
        return config_fields.check(raw, key.type, key.secret)
    except ValueError as exc:
        raise ConfigError(f"{place}: {exc}") from None


def _unknown(place: str, what: str, name: str, choices: Any) -> ConfigError:
    return ConfigError(f"{place}: unknown {what}{config_fields.did_you_mean(name, choices)}")


def _server(where: str, raw: Any, env: Mapping[str, str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [server] must be a table")
    keys = server_keys()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in keys:
            raise _unknown(f"{where}: [server] {name}", "key", name, keys)
        values[name] = _value(f"{where}: [server] {name}", keys[name], value, False)
    for name, key in keys.items():
        if env_name(name) in env:
            values[name] = _value(f"environment {env_name(name)}", key, env[env_name(name)], True)
    _check_server_values(values, where)
    prefix = str(values.get("api_prefix", Settings.api_prefix)).rstrip("/")
    if prefix and not prefix.startswith("/"):
        prefix = "/" + prefix
    values["api_prefix"] = prefix
    return values


def _check_server_values(values: Mapping[str, Any], where: str) -> None:
    def bad(name: str, expected: str) -> ConfigError:
        return ConfigError(f"{where}: [server] {name}: expected {expected}, got {values[name]!r}")

    if "port" in values and not 0 <= values["port"] <= 65535:
        raise bad("port", "a TCP port (0-65535)")
    if "workers" in values and values["workers"] < 1:
        raise bad("workers", "at least 1")
    if "readyz_timeout" in values and values["readyz_timeout"] <= 0:
        raise bad("readyz_timeout", "a positive number of seconds")
    if values.get("audit_retention_days", 0) < 0:
        raise bad("audit_retention_days", "0 (keep forever) or a number of days")
    for name in ("tpc_max_per_user", "tpc_max_total", "tpc_stall_timeout", "tpc_marker_interval"):
        if name in values and not 1 <= values[name] <= 86_400:
            raise bad(name, "a whole number from 1 to 86400")
    if "token_leeway" in values and not 0 <= values["token_leeway"] <= 60:
        raise bad("token_leeway", "0-60 seconds")
    for aud in values.get("token_audiences", ()):
        if re.fullmatch(r"[\x21-\x7e]{1,200}", aud) is None:
            raise ConfigError(
                f"{where}: [server] token_audiences: expected 1-200 printable characters "
                f"without spaces each, got {aud!r}"
            )
    for proxy in values.get("trusted_proxies", ()):
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"{where}: [server] trusted_proxies: expected IP addresses or networks "
                f"(CIDR), got {proxy!r}"
            ) from None


def _mount(
    where: str, name: str, given: Mapping[str, Any], from_env: Mapping[str, str]
) -> MountConfig:
    """One mount, validated against MountKeys and its backend's options class.

    ``given`` holds the TOML values (already typed), ``from_env`` the environment
    strings (converted to the declared type here, once the mount's type is known)."""
    section = f"{where}: [mounts.{name}]"
    if not _MOUNT_NAME.fullmatch(name):
        raise ConfigError(f"{section}: mount names are letters, digits, '_', '.', '-'")

    def place(key: str) -> str:
        if key in from_env:
            return f"environment {MOUNT_ENV}{name.upper()}__{key.upper()}"
        return f"{section} {key}"

    types = sorted(OPTIONS)
    type_name = from_env.get("type", given.get("type"))
    if type_name is None:
        raise ConfigError(f"{section} type: required, one of {', '.join(types)}")
    if not isinstance(type_name, str) or type_name not in OPTIONS:
        raise ConfigError(
            f"{place('type')}: unknown mount type {type_name!r} (expected one of "
            f"{', '.join(types)}){config_fields.did_you_mean(str(type_name), types)}"
        )
    gateway_keys = {k.name: k for k in config_fields.keys_of(MountKeys)}
    backend_keys = {k.name: k for k in config_fields.keys_of(OPTIONS[type_name])}
    values: dict[str, Any] = {}
    for key_name, raw in [*given.items(), *from_env.items()]:
        key = gateway_keys.get(key_name) or backend_keys.get(key_name)
        if key is None:
            raise _unknown(
                place(key_name),
                f"{type_name} option",
                key_name,
                [*gateway_keys, *backend_keys],
            )
        values[key_name] = _value(place(key_name), key, raw, key_name in from_env)
    for key in backend_keys.values():
        if key.required and values.get(key.name) in (None, ""):
            raise ConfigError(
                f"{section} {key.name}: required for mount type {type_name} "
                f"({config_fields.describe(key.type)})"
            )
    return MountConfig(
        name=name,
        type=type_name,
        options={k: v for k, v in values.items() if k in backend_keys},
        description=values.get("description", ""),
        read_users=values.get("read_users", MountKeys.read_users),
        write_users=values.get("write_users", MountKeys.write_users),
        credential_source=values.get("credential_source", MountKeys.credential_source),
        redirect=values.get("redirect", MountKeys.redirect),
    )


def _mounts(where: str, raw: Any, env: Mapping[str, str]) -> tuple[MountConfig, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [mounts] must hold tables [mounts.NAME]")
    tables: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [mounts] {name}: expected a table [mounts.{name}]")
        tables[name] = table
    env_tables: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if key.startswith(MOUNT_ENV):
            parts = key[len(MOUNT_ENV) :].split("__", 1)
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise ConfigError(f"environment {key}: expected {MOUNT_ENV}<NAME>__<OPTION>=value")
            env_tables.setdefault(parts[0].lower(), {})[parts[1].lower()] = value
    if not tables and not env_tables:
        tables = {"local": EMBEDDED_MOUNT}
    names = sorted({*tables, *env_tables})
    return tuple(
        _mount(where, name, tables.get(name, {}), env_tables.get(name, {})) for name in names
    )


EMBEDDED_MOUNT: dict[str, Any] = {
    "type": "posix",
    "root": "./data",
    "create": True,
    "description": "the embedded default: ./data",
}


def source(env: Mapping[str, str]) -> str | None:
    """The config file read when none is given: $FEDGATE_CONFIG, else ./fedgate.toml."""
    path = env.get("FEDGATE_CONFIG")
    if not path and Path("fedgate.toml").exists():
        path = "fedgate.toml"
    return path


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings of the file (``path``, else ``$FEDGATE_CONFIG``, else ./fedgate.toml
    if it exists) and the environment, all validated: anything unknown, mistyped or
    missing raises ConfigError with one line naming the place, the key, what is
    expected and, when there is one, a close match."""
    env = os.environ if env is None else env
    path = path or source(env)
    data = _read_toml(path) if path else {}
    where = path or "(no config file)"
    sections = ("server", "mounts", "issuers")
    for section in data:
        if section not in sections:
            raise ConfigError(
                f"{where}: [{section}]: unknown section "
                "(expected [server], [mounts.NAME] or [[issuers]])"
                + config_fields.did_you_mean(section, sections, "[{}]")
            )
    server = _server(where, data.get("server", {}), env)
    mounts = _mounts(where, data.get("mounts", {}), env)
    issuers = _issuers(where, data.get("issuers", []))
    return Settings(**server, mounts=mounts, issuers=issuers)


ISSUER_KEYS = {
    "issuer": "the issuer's URL, exactly as its tokens' iss claim",
    "base_path": "the fedgate path WLCG scope paths are relative to (/<mount>/...)",
    "user": "the fedgate account the issuer's tokens act as",
    "jwks_uri": "where its signing keys are (default: OIDC discovery from issuer)",
}


def _issuers(where: str, raw: Any) -> tuple[Issuer, ...]:
    """``[[issuers]]`` tables: trusted external token issuers (tokens/external.py)."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: issuers: expected [[issuers]] tables")
    out = []
    for n, table in enumerate(raw, 1):
        place = f"{where}: [[issuers]] #{n}"
        if not isinstance(table, dict):
            raise ConfigError(f"{place}: expected a table")
        for key, value in table.items():
            if key not in ISSUER_KEYS:
                raise ConfigError(
                    f"{place} {key}: unknown key (expected {', '.join(ISSUER_KEYS)})"
                    + config_fields.did_you_mean(key, ISSUER_KEYS)
                )
            if not isinstance(value, str):
                raise ConfigError(f"{place} {key}: expected a string, got {value!r}")
        for key in ("issuer", "base_path", "user"):
            if not table.get(key):
                raise ConfigError(f"{place} {key}: required ({ISSUER_KEYS[key]})")
        for key in ("issuer", "jwks_uri"):
            if table.get(key) and not re.fullmatch(r"https?://\S+", table[key]):
                raise ConfigError(f"{place} {key}: expected an http(s) URL")
        if not table["base_path"].startswith("/") or ".." in table["base_path"].split("/"):
            raise ConfigError(f"{place} base_path: expected an absolute path without '..'")
        out.append(
            Issuer(table["issuer"], table["base_path"], table["user"], table.get("jwks_uri", ""))
        )
    if len({i.issuer for i in out}) != len(out):
        raise ConfigError(f"{where}: [[issuers]]: an issuer is declared twice")
    return tuple(out)
