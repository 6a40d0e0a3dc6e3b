"""TCP front of the iRODS protocol test server: one thread per connection."""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import socketserver
import tempfile
import threading
from typing import Any

from tests.irods_server import errors as E
from tests.irods_server.catalog import Catalog
from tests.irods_server.handlers import Session
from tests.irods_server.wire import StartupPackIn, recv, reply, send_error, send_version, text

log = logging.getLogger("irods_test_server")

DEFAULT_USERS = {"alice": "alice-pass", "bob": "bob-pass", "anonymous": ""}


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        self.server.track(sock, True)
        session: Session | None = None
        try:
            hello = recv(sock)
            if hello.msg_type != "RODS_CONNECT":
                return
            startup = hello.get_main_message(StartupPackIn)
            send_version(sock)
            session = Session(self.server.catalog, text(startup.clientUser))
            while True:
                msg = recv(sock)
                if msg.msg_type == "RODS_DISCONNECT":
                    return
                try:
                    status, body, bs = session.dispatch(msg)
                except E.IrodsError as exc:
                    send_error(sock, exc.code, exc.message)
                    continue
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    log.exception("irods test server: bad request")
                    send_error(sock, E.SYS_API_INPUT_ERR, f"test server: {exc!r}")
                    continue
                reply(sock, status, body, bs)
        except OSError:
            pass  # client went away, or the server is stopping
        except Exception:  # a test server must not crash the test run from a thread
            log.exception("irods test server: unexpected error")
        finally:
            if session is not None:
                session.shutdown()
            self.server.track(sock, False)


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], catalog: Catalog) -> None:
        self.catalog = catalog
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._clients_lock:
            (self._clients.add if add else self._clients.discard)(sock)

    def drop_clients(self) -> None:
        with self._clients_lock:
            for sock in self._clients:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class IrodsTestServer:
    """A protocol test server on 127.0.0.1 (port 0 = ephemeral), data in a temp folder."""

    def __init__(
        self,
        port: int = 0,
        zone: str = "tempZone",
        users: dict[str, str] | None = None,
        data_dir: str | None = None,
    ) -> None:
        self.zone = zone
        self.users = dict(DEFAULT_USERS if users is None else users)
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="irods-test-server-")
        self.catalog = Catalog(zone, self.data_dir)
        for name, password in self.users.items():
            self.catalog.add_user(name, password)
        self._server = _TCPServer(("127.0.0.1", port), self.catalog)
        self.host, self.port = "127.0.0.1", int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def home(self, user: str) -> str:
        return f"/{self.zone}/home/{user}"

    def start(self) -> IrodsTestServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (clients then see the server gone)."""
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_clients()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> IrodsTestServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)
