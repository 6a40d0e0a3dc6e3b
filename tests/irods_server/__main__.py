"""Run the iRODS protocol test server standalone: ``python -m tests.irods_server``."""

from __future__ import annotations

import argparse
import contextlib

from tests.irods_server import IrodsTestServer


def main() -> None:
    parser = argparse.ArgumentParser(description="iRODS protocol TEST server (not a real iRODS)")
    parser.add_argument("--port", type=int, default=1247)
    parser.add_argument("--zone", default="tempZone")
    parser.add_argument("--data-dir", default=None, help="where object bytes go (default: temp)")
    parser.add_argument(
        "--user", action="append", default=[], metavar="NAME:PASSWORD", help="repeatable"
    )
    args = parser.parse_args()
    users = dict(u.split(":", 1) for u in args.user) or None
    server = IrodsTestServer(args.port, args.zone, users, args.data_dir)
    print(f"iRODS protocol test server on 127.0.0.1:{server.port} zone {server.zone}", flush=True)
    for name in server.users:
        print(f"  user {name} home {server.home(name)}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
