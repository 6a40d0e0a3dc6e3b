"""``fedgate get|put|ls|stat``: the job-side commands.

    fedgate get URI DEST      download a file (a directory: recursively) to DEST
    fedgate put SRC URI       upload a file (a directory: recursively) to URI
    fedgate ls URI            list a directory
    fedgate stat URI          show a path's properties
    fedgate cp SRC DEST       a copy the gateway makes (between its paths, or with another
                              server: HTTP third-party copy); the bytes never pass the job

The gateway: ``--gateway`` or ``$FEDGATE_URL`` (the API root, e.g. https://gw/rest).
The credential: ``--token``, ``--apikey``, ``$BEARER_TOKEN``, ``$BEARER_TOKEN_FILE``,
``$FEDGATE_APIKEY``, ``$XDG_RUNTIME_DIR/bt_u$UID``, ``/tmp/bt_u$UID`` (first found).

Exit codes:
    0  success
    1  other error
    2  usage: bad arguments, unparsable URI, no gateway URL
    3  not found: the path, its mount, or no mount covers the URI
    4  denied: missing, invalid, expired or revoked credential, or not allowed
    5  checksum: the size or sha-256 of what arrived does not match (nothing left at DEST)
    6  network: gateway or storage unreachable, timeouts, 5xx (after the retries)
    7  conflict: already exists, not a directory, is a directory
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from gateway.client import Client, FedgateError
from gateway.client.discovery import discover_gateway
from gateway.client.errors import AuthError, ExitCode
from gateway.client.transfer import Bar, BarFactory, FileResult, no_bar

COMMANDS = ("get", "put", "ls", "stat", "cp")


def _tqdm_bars(desc: str, total: int | None, initial: int) -> Bar:
    from tqdm import tqdm

    bar: Bar = tqdm(
        total=total,
        initial=initial,
        desc=desc[:30],
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        leave=False,
        file=sys.stderr,
    )
    return bar


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--gateway", help="gateway API URL (default $FEDGATE_URL)")
    g.add_argument("--token", help="a delegated token (default: WLCG token discovery)")
    g.add_argument("--apikey", help="a user's gateway API key (default $FEDGATE_APIKEY)")
    g.add_argument("--retries", type=int, default=5, help="attempts after a failure (5)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per network read (60)")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--redirect",
        dest="redirect",
        action="store_const",
        const=True,
        help="ask for a redirect to the storage (direct transfer)",
    )
    mode.add_argument(
        "--proxy",
        dest="redirect",
        action="store_const",
        const=False,
        help="transfer through the gateway, never straight from the storage",
    )
    out = p.add_argument_group("output")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress, no notes")
    out.add_argument("--json", action="store_true", help="a JSON summary on stdout")


def add_client_commands(subparsers: Any) -> None:
    """Add get/put/ls/stat to the ``fedgate`` command's subparsers."""
    g = subparsers.add_parser("get", help="download URI to DEST (resumable, checksummed)")
    g.add_argument("uri")
    g.add_argument("dest")
    g.add_argument("--no-checksum", action="store_true", help="check the size only")
    _common(g)
    g.set_defaults(func=cmd_get)
    p = subparsers.add_parser("put", help="upload SRC (a file or a directory) to URI")
    p.add_argument("src")
    p.add_argument("uri")
    p.add_argument("--no-checksum", action="store_true", help="check the size only")
    _common(p)
    p.set_defaults(func=cmd_put)
    ls = subparsers.add_parser("ls", help="list a directory")
    ls.add_argument("uri")
    ls.add_argument("-l", "--long", action="store_true", help="sizes and dates")
    _common(ls)
    ls.set_defaults(func=cmd_ls)
    st = subparsers.add_parser("stat", help="properties of a path")
    st.add_argument("uri")
    _common(st)
    st.set_defaults(func=cmd_stat)
    cp = subparsers.add_parser("cp", help="copy SRC to DEST on the gateway's side (or by TPC)")
    cp.add_argument("src", help="a fedgate URI, or an http(s) URL of another server")
    cp.add_argument("dest", help="a fedgate URI, or an http(s) URL of another server")
    cp.add_argument(
        "--remote-token-file",
        help="a file holding the other server's bearer token (sent as TransferHeader)",
    )
    cp.add_argument("--webdav", help="the gateway's WebDAV door URL (default: <origin>/webdav)")
    _common(cp)
    cp.set_defaults(func=cmd_cp)


def _client(args: argparse.Namespace) -> Client:
    bars: BarFactory = no_bar
    if not args.quiet and not args.json and sys.stderr.isatty():
        bars = _tqdm_bars
    uri = getattr(args, "uri", None)
    return Client(
        discover_gateway(args.gateway, uri=uri),
        args.token,
        apikey=args.apikey,
        retries=args.retries,
        timeout=args.timeout,
        verify_tls=not args.insecure,
        redirect=args.redirect,
        verify_checksums=not getattr(args, "no_checksum", False),
        progress=bars,
    )


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"fedgate: {text}", file=sys.stderr)


def _run(args: argparse.Namespace, body: Callable[[Client], dict[str, Any]]) -> int:
    started = time.monotonic()
    client: Client | None = None
    try:
        client = _client(args)
        summary = body(client)
    except FedgateError as exc:
        message = exc.message
        if isinstance(exc, AuthError) and client is not None:
            cred = client.credential
            message += (
                f" [credential: {cred.kind} from {cred.source}]"
                if cred.kind != "none"
                else " [no credential found: pass --token or set BEARER_TOKEN(_FILE)]"
            )
        print(f"fedgate: {message}", file=sys.stderr)
        if args.json:
            error = {**exc.as_json(), "message": message}
            print(json.dumps({"ok": False, "command": args.cmd, "error": error}))
        return exc.exit_code
    except KeyboardInterrupt:
        print("fedgate: interrupted (a partial download resumes on the next run)", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    if args.json:
        summary = {"ok": True, "command": args.cmd, **summary}
        summary["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(summary))
    return ExitCode.OK


def _transfer_summary(args: argparse.Namespace, results: list[FileResult]) -> dict[str, Any]:
    files = [r for r in results if r.operation != "mkdir"]
    for r in files:
        if r.note:
            _note(args, f"{r.path}: {r.note}")
    total = sum(r.bytes for r in files)
    if not args.json and not args.quiet:
        dirs = len(results) - len(files)
        extra = f" and {dirs} director{'y' if dirs == 1 else 'ies'}" if dirs else ""
        print(f"fedgate: {args.cmd} {len(files)} file(s){extra}, {total} bytes", file=sys.stderr)
    return {"bytes": total, "files": [r.as_json() for r in results]}


def cmd_get(args: argparse.Namespace) -> int:
    return _run(args, lambda c: _transfer_summary(args, c.get(args.uri, args.dest)))


def cmd_put(args: argparse.Namespace) -> int:
    return _run(args, lambda c: _transfer_summary(args, c.put(args.src, args.uri)))


def cmd_cp(args: argparse.Namespace) -> int:
    def body(c: Client) -> dict[str, Any]:
        token = None
        if args.remote_token_file:
            # From a file, never the command line: a token in argv is in every `ps`.
            with open(args.remote_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        result = c.copy(args.src, args.dest, remote_token=token, webdav=args.webdav)
        if not args.json and not args.quiet:
            size = "" if result.bytes is None else f", {result.bytes} bytes"
            print(f"fedgate: cp ({result.mode}) {result.source} -> {result.destination}{size}",
                  file=sys.stderr)  # fmt: skip
        return {"source": result.source, "destination": result.destination,
                "bytes": result.bytes, "mode": result.mode}  # fmt: skip

    return _run(args, body)


def cmd_ls(args: argparse.Namespace) -> int:
    def body(c: Client) -> dict[str, Any]:
        entries = c.ls(args.uri)
        if not args.json:
            for e in entries:
                name = e.name + ("/" if e.is_dir else "")
                if args.long:
                    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.mtime))
                    size = "-" if e.size is None else str(e.size)
                    print(f"{'d' if e.is_dir else '-'} {size:>14} {when} {name}")
                else:
                    print(name)
        return {"entries": [e.as_json() for e in entries]}

    return _run(args, body)


def cmd_stat(args: argparse.Namespace) -> int:
    def body(c: Client) -> dict[str, Any]:
        info = c.stat(args.uri)
        if not args.json:
            for k, v in info.as_json().items():
                print(f"{k}: {v}")
        return {"entry": info.as_json()}

    return _run(args, body)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedgate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_commands(p.add_subparsers(dest="cmd", required=True))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The client commands alone (``python -m gateway.client.cli``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and ExitCode.USAGE
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
