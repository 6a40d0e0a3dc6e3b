"""The ``fedgate`` command: serve, users, vault, database, audit."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Not at run time: the job-side commands (get, put, ls...) must not load the server's
    # configuration, which pulls in the vault and JOSE (0.15 s of every job's start).
    from gateway import config


def _settings(args: argparse.Namespace) -> config.Settings:
    if getattr(args, "config", None):
        os.environ["FEDGATE_CONFIG"] = args.config
    for opt, env in (
        ("host", "FEDGATE_HOST"),
        ("port", "FEDGATE_PORT"),
        ("workers", "FEDGATE_WORKERS"),
        ("api_prefix", "FEDGATE_API_PREFIX"),
    ):
        value = getattr(args, opt, None)
        if value is not None:
            os.environ[env] = str(value)
    from gateway import config

    return config.load()


def _gateway(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from gateway.state import Gateway

    return Gateway(_settings(args))


def cmd_serve(args: argparse.Namespace) -> int:
    """Validate, check and log once, then hand over to uvicorn.

    A fatal start-up error (configuration, database, master key) is one line on stderr
    and an exit code, no traceback (``--debug`` shows it); a backend that is down is not
    fatal (gateway/startup.py). The admin key of a first start is printed last, once
    the server answers, so that it is not lost among the start-up lines."""
    from gateway import config
    from gateway.logs import configure_logging
    from gateway.startup import describe_error, log_start

    settings = _settings(args)  # ConfigError: main() prints its one line
    configure_logging(settings.log_level)
    debug = bool(args.debug or args.debug_serve)
    try:
        # Database, master key and the first admin's key file first: a fatal error is
        # then the only line printed.
        gw = _gateway(args)
        try:
            log_start(settings, config.source(os.environ) or "(no config file)", os.environ)
            key = gw.first_start()
        finally:
            gw.close()
    except config.ConfigError:
        raise
    except Exception as exc:
        if debug:
            raise
        from tokens.errors import VaultError

        text = str(exc) if isinstance(exc, VaultError) else describe_error(exc)
        print(f"fedgate: cannot start: {text}", file=sys.stderr)
        return 1
    from gateway.metrics import cleanup_multiprocess, prepare_multiprocess

    announce = _AdminKey(key)
    if key:
        threading.Thread(target=announce.when_up, args=(settings,), daemon=True).start()
    metrics_dir = prepare_multiprocess(settings.workers)  # before the workers start
    try:
        _run_uvicorn(settings, args.graceful_timeout)
    finally:
        announce.now()  # the server did not come up: the key must not be lost
        cleanup_multiprocess(metrics_dir)
    return 0


class _AdminKey:
    """The first start's admin key, printed exactly once: when /healthz answers (after
    the workers' start-up lines), or when serve ends without that having happened."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self._lock = threading.Lock()

    def now(self) -> None:
        with self._lock:
            if self.key:
                print(
                    "fedgate: no user existed, so user 'admin' was created.\n"
                    f"fedgate: its API key (shown once, keep it): {self.key}",
                    file=sys.stderr,
                    flush=True,
                )
            self.key = None

    def when_up(self, settings: config.Settings) -> None:
        import urllib.request

        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
        url = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}/healthz"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        self.now()


def _run_uvicorn(settings: config.Settings, graceful_timeout: int) -> None:
    import uvicorn

    uvicorn.run(
        "gateway.asgi:create",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_timeout,
        http="gateway.datapath.uvicorn_seam:GuardedHttpTools",
        timeout_graceful_shutdown=graceful_timeout,
        h11_max_incomplete_event_size=64 * 1024,
        # uvicorn would take X-Forwarded-For from any 127.0.0.1 peer (its own default
        # trust list) before fedgate sees the request: only trusted_proxies decide.
        proxy_headers=False,
    )


def _read_password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if args.password:
        return getpass.getpass(f"password for {args.name}: ")
    return None


def cmd_user(args: argparse.Namespace) -> int:
    from tokens.errors import AlreadyExistsError

    gw = _gateway(args)
    try:
        users = gw.users
        if args.user_cmd == "add":
            try:
                _, key = users.add_user(args.name, _read_password(args), admin=args.admin)
            except AlreadyExistsError:
                print(f"user {args.name!r} already exists", file=sys.stderr)
                return 1
            print(key)
        elif args.user_cmd == "list":
            for u in users.list_users():
                print(f"{u.name}{' (admin)' if u.is_admin else ''}")
        elif args.user_cmd == "delete":
            if not users.delete_user(args.name):
                print(f"no user {args.name!r}", file=sys.stderr)
                return 1
            revoked = gw.tokens.revoke(user=args.name)
            print(f"deleted {args.name!r}; {revoked} live tokens revoked", file=sys.stderr)
        elif args.user_cmd == "passwd":
            password = _read_password(args) or getpass.getpass(f"password for {args.name}: ")
            users.set_password(args.name, password)
        elif args.user_cmd == "key":
            if args.revoke:
                return _revoke_key(gw, args.name, args.revoke)
            if users.get_user(args.name) is None:
                print(f"no user {args.name!r}", file=sys.stderr)
                return 1
            print(users.new_api_key(args.name, label=args.label or "cli"))
        elif args.user_cmd == "keys":
            return _list_keys(gw, args.name)
        return 0
    finally:
        gw.close()


def _when(epoch: float | None, none: str) -> str:
    import datetime as dt

    if epoch is None:
        return none
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list_keys(gw: Any, name: str) -> int:
    """One line per key: id, created, last used, expiry, label (never the secret)."""
    if gw.users.get_user(name) is None:
        print(f"no user {name!r}", file=sys.stderr)
        return 1
    print(f"{'ID':16}  {'CREATED':20}  {'LAST USED':20}  {'EXPIRES':20}  LABEL")
    for k in gw.users.list_keys(name):
        print(
            f"{k.id:16}  {_when(k.created, '-'):20}  {_when(k.last_used, 'never'):20}  "
            f"{_when(k.expires, 'never'):20}  {k.label}"
        )
    return 0


def _revoke_key(gw: Any, name: str, key_id: str) -> int:
    """Delete one key of ``name`` and revoke the tokens exchanged from it (running
    gateways stop accepting both within a second: they poll the shared database)."""
    info = gw.users.get_key(key_id)
    if info is None or info.user != name:
        print(f"user {name!r} has no API key {key_id!r}", file=sys.stderr)
        return 1
    gw.users.revoke_key(name, key_id)
    revoked = gw.tokens.revoke_api_key(key_id)
    print(f"revoked API key {key_id} of {name!r}; {revoked} live tokens revoked", file=sys.stderr)
    return 0


def cmd_vault(args: argparse.Namespace) -> int:
    from tokens.masterkey import MasterKeys

    if args.vault_cmd == "genkey":
        print(MasterKeys.generate())
        return 0
    gw = _gateway(args)
    try:
        if args.vault_cmd == "status":
            return _vault_status(gw)
        if args.new_key_file:
            return _rotate_to_key_file(gw, args.new_key_file, args.force)
        if gw.master_keys.path is None:
            print(
                f"fedgate: the master keyring comes from {gw.master_keys.source}, not a file: "
                "give --new-key-file",
                file=sys.stderr,
            )
            return 2
        return _rotate_key_file_in_place(gw)
    finally:
        gw.close()


def _vault_status(gw: Any) -> int:
    """Where the keyring comes from, its key ids, and how many secrets each one wraps."""
    from tokens.vault import wrapped_key_usage

    keys = gw.master_keys
    usage = wrapped_key_usage(gw.store)
    print(f"keyring: {keys.source}")
    for i, key_id in enumerate(keys.ids):
        role = "current" if i == 0 else "old"
        print(f"{key_id} {role:7} {usage.pop(key_id, 0)} secrets")
    for key_id, n in sorted(usage.items()):  # only if the keyring changed since start
        print(f"{key_id} MISSING {n} secrets")
    return 0


def _rotate_to_key_file(gw: Any, new_key_file: str, force: bool) -> int:
    """Re-wrap under the current key of a keyring the operator made (several replicas).

    Gateways follow their key file, so the new keyring must be in place before the
    database is re-wrapped: refused unless the keyring this command read (the one the
    gateways read) already holds the new key, or ``--force`` (every gateway stopped)."""
    from tokens.masterkey import MasterKeys

    try:
        with open(new_key_file, encoding="utf-8") as f:
            new_keys = MasterKeys.parse(f.read(), where=new_key_file)
    except OSError as exc:
        print(f"fedgate: cannot read {new_key_file}: {exc.strerror}", file=sys.stderr)
        return 2
    loaded = gw.master_keys
    if new_keys.current_id not in loaded.ids and not force:
        print(
            f"fedgate: the keyring read from {loaded.source} does not hold the new key "
            f"{new_keys.current_id} yet: give every gateway the new keyring first (it is "
            "picked up from the key file without a restart), then run this again; "
            "--force re-wraps anyway (only when every gateway is stopped)",
            file=sys.stderr,
        )
        return 2
    count = gw.vault.rotate(new_keys)
    print(
        f"fedgate: re-wrapped {count} secrets under master key {new_keys.current_id}; "
        "drop the old keys from the keyring once `fedgate vault status` shows 0 secrets "
        "under them",
        file=sys.stderr,
    )
    return 0


def _rotate_key_file_in_place(gw: Any) -> int:
    """Rotate the key file gateways read (``<state_dir>/master.key`` or a writable
    ``FEDGATE_MASTER_KEY_FILE``) in place, with gateways running.

    The new keyring (a new key first, the old ones after it) replaces the file
    atomically *before* the database is re-wrapped: a running gateway meeting the new
    key id re-reads the file and finds it, and no ciphertext is ever without its key
    on disk. The old keys stay in the file, so a backup of the database made before
    the rotation can still be restored with it; `fedgate vault status` shows which
    keys still wrap something."""
    from tokens.masterkey import MasterKeys

    path: Path = gw.master_keys.path
    try:
        old_text = path.read_text()
        new_text = MasterKeys.generate() + "\n" + old_text
        new_keys = MasterKeys.parse(new_text, where=str(path))
        _replace_file(path, new_text)
    except OSError as exc:
        print(f"fedgate: cannot rewrite {path}: {exc.strerror}; nothing changed", file=sys.stderr)
        return 1
    count = gw.vault.rotate(new_keys)
    print(
        f"fedgate: re-wrapped {count} secrets under master key {new_keys.current_id}; "
        f"{path} holds it first and the older keys after it; running gateways read "
        "it from there (no restart needed)",
        file=sys.stderr,
    )
    return 0


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` aside, flush it to disk, rename it over ``path`` (same mode)."""
    mode = os.stat(path).st_mode & 0o777
    tmp = path.with_name(f".{path.name}.{os.getpid()}.next")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def cmd_db(args: argparse.Namespace) -> int:
    from tokens.store import Store

    settings = _settings(args)
    if args.db_cmd == "backup":
        return _backup(settings, args.target)
    if args.target:
        print("fedgate: db upgrade takes no file", file=sys.stderr)
        return 2
    if not settings.database_url:
        os.makedirs(settings.state_dir, exist_ok=True)
    store = Store.open(settings.database)
    try:
        print(f"schema version {store.upgrade()}")
    finally:
        store.close()
    return 0


def _backup(settings: config.Settings, target: str | None) -> int:
    """A consistent copy of the embedded SQLite state, taken while gateways run
    (SQLite's online backup), and the master key ids it needs: the key itself is backed
    up apart (docs/operations.md, "Backups")."""
    import sqlite3

    from tokens.store import Store
    from tokens.vault import wrapped_key_usage

    if settings.database_url:
        print(
            "fedgate: the state is in PostgreSQL: back it up with pg_dump "
            "(docs/operations.md, Backups)",
            file=sys.stderr,
        )
        return 2
    if not target:
        print("fedgate: give the backup file: fedgate db backup FILE", file=sys.stderr)
        return 2
    source = Path(settings.state_dir) / "state.db"
    if not source.exists():
        print(f"fedgate: no state at {source}", file=sys.stderr)
        return 1
    out = Path(target)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    # The copy holds password and key hashes and the sealed vault: owner-only, like the state.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    store = Store.open(f"sqlite:///{out.resolve()}")
    try:
        ids = sorted(wrapped_key_usage(store))
    finally:
        store.close()
    needs = f"master key {', '.join(ids)}" if ids else "no master key (it holds no secret)"
    print(f"fedgate: wrote {out}; restoring it needs {needs}", file=sys.stderr)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    gw = _gateway(args)
    try:
        for event in gw.audit.query(
            user=args.user,
            execution_id=args.execution_id,
            token_id=args.token_id,
            mount=args.mount,
            event=args.event,
            request_id=args.request_id,
            result=args.result,
            since=args.since,
            until=args.until,
            limit=args.limit,
        ):
            print(json.dumps(event.as_dict()))
        return 0
    finally:
        gw.close()


def _audit_time(text: str) -> float:
    from tokens.audit import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _audit_limit(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 100_000:
        raise argparse.ArgumentTypeError("a number of rows from 1 to 100000")
    return int(text)


def cmd_signing(args: argparse.Namespace) -> int:
    gw = _gateway(args)
    try:
        print(f"new signing key: {gw.tokens.rotate_signing_key()}")
        return 0
    finally:
        gw.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedgate", description=__doc__)
    p.add_argument("--config", help="TOML config file (default: $FEDGATE_CONFIG or ./fedgate.toml)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of fatal errors")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int)
    s.add_argument(
        "--api-prefix",
        dest="api_prefix",
        help="URL prefix of the API (default /rest; '' serves at the root)",
    )
    s.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds running transfers get to finish on shutdown",
    )
    s.add_argument(
        "--debug",
        dest="debug_serve",
        action="store_true",
        help="show the traceback of a fatal start-up error",
    )
    s.set_defaults(func=cmd_serve)

    u = sub.add_parser("user", help="manage gateway users")
    usub = u.add_subparsers(dest="user_cmd", required=True)
    for name, helptext in (
        ("add", "create a user and print a new API key"),
        ("delete", "delete a user"),
        ("passwd", "set a user's password (for /authenticate)"),
        ("key", "print a new API key for a user (or --revoke one)"),
    ):
        c = usub.add_parser(name, help=helptext)
        c.add_argument("name")
        c.add_argument("--password", action="store_true", help="prompt for a password")
        c.add_argument("--password-stdin", action="store_true", help="read a password from stdin")
        if name == "add":
            c.add_argument("--admin", action="store_true")
        if name == "key":
            c.add_argument("--label", help="a note to tell the key apart (default: cli)")
            c.add_argument(
                "--revoke",
                metavar="ID",
                help="revoke the key with this id (see `fedgate user keys NAME`) and every "
                "token exchanged from it",
            )
    ks = usub.add_parser(
        "keys", help="list a user's API keys: id, created, last used, expiry (never the secret)"
    )
    ks.add_argument("name")
    usub.add_parser("list", help="list users")
    u.set_defaults(func=cmd_user)

    v = sub.add_parser("vault", help="key vault maintenance")
    vsub = v.add_subparsers(dest="vault_cmd", required=True)
    vsub.add_parser("genkey", help="print a new random master key")
    vsub.add_parser("status", help="the keyring's key ids and how many secrets each wraps")
    r = vsub.add_parser("rotate", help="re-wrap every stored secret under a new master key")
    r.add_argument(
        "--new-key-file",
        help="file with the new keyring (base64 keys, current first), already given to "
        "every gateway; without it the key file the gateways read is rotated in place",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="with --new-key-file: re-wrap even if the gateways' keyring lacks the new key",
    )
    v.set_defaults(func=cmd_vault)

    d = sub.add_parser("db", help="database schema, backup of the embedded state")
    d.add_argument("db_cmd", choices=["upgrade", "backup"])
    d.add_argument("target", nargs="?", help="backup: the file to write (SQLite state only)")
    d.set_defaults(func=cmd_db)

    a = sub.add_parser("audit", help="query the audit log (newest first, one JSON object a line)")
    a.add_argument("--user")
    a.add_argument("--execution-id")
    a.add_argument("--token-id", help="a token's id (jti), as /explain takes it")
    a.add_argument("--request-id", help="the X-Request-ID of the request")
    a.add_argument("--mount")
    a.add_argument("--event", help="exchange, access, native, revoke, key_put, ...")
    a.add_argument("--result", help="ok, denied, redirect, error:<code>")
    a.add_argument(
        "--since", type=_audit_time, help="ISO 8601 time (UTC unless an offset is given)"
    )
    a.add_argument("--until", type=_audit_time, help="ISO 8601 time, exclusive")
    a.add_argument("--limit", type=_audit_limit, default=100)
    a.set_defaults(func=cmd_audit)

    k = sub.add_parser("signing-key", help="token signing keys")
    k.add_argument("signing_cmd", choices=["rotate"])
    k.set_defaults(func=cmd_signing)

    from gateway.client.cli import add_client_commands  # get|put|ls|stat (job side)

    add_client_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        # Not at the top: the job-side commands stay light (see the imports).
        from gateway.config import ConfigError
        from tokens.errors import VaultError

        if isinstance(exc, ConfigError):
            print(f"fedgate: configuration error: {exc}", file=sys.stderr)
            return 2
        if not isinstance(exc, VaultError):
            raise
        # A missing or wrong master key: one line naming the key ids, no traceback.
        print(f"fedgate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
