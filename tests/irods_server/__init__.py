"""An iRODS **protocol test server** — not a real iRODS.

No iRODS server can be installed on the machines that run fedgate's tests, so this
package speaks enough of the real iRODS wire protocol (XML, ``irodsProt=1``) for the
real python-irodsclient to talk to it: connection and 4.3-style native authentication,
GenQuery (the subset python-irodsclient uses for stat/listing/exists, paged with
``continueInx``, 500 rows per page), OBJ_STAT, collection create/remove, data object
create/open/seek/read/write/close/unlink/rename, checksums (``sha2:<base64 sha256>``) and
tickets (create, expire, uses, delete; a client presenting one is held to its path,
mode, expiry and use count). Everything else answers ``SYS_NOT_SUPPORTED`` (-66000).
Errors carry real iRODS codes.

It keeps its catalog in memory (users with passwords, collections, data objects, ACLs
own/write/read, with strict-ACL visibility as iRODS' default policy) and object bytes in
a temporary folder. It is built on python-irodsclient's own ``irods.message`` classes, so
it can only prove that the adapter and python-irodsclient agree with *this* reading of
the protocol; ``tests/adapters/test_irods_real.py`` runs the same suite on a real iRODS.

Known simplifications: one resource and one replica per object; no parallel transfer
APIs (GET_FILE_DESCRIPTOR_INFO, REPLICA_CLOSE), no metadata, no specific queries, no
collection rename; tickets' write-file/write-bytes limits and host/user restrictions
are not supported; ticket uses are counted per open.

Use in tests::

    with IrodsTestServer() as srv:        # 127.0.0.1, ephemeral port
        srv.host, srv.port, srv.zone, srv.users   # users: {"alice": "alice-pass", ...}
        srv.catalog.populate(...)           # bulk-create objects without the protocol

Standalone (benchmarks): ``python -m tests.irods_server --port 1247``.
"""

from tests.irods_server.server import DEFAULT_USERS, IrodsTestServer

__all__ = ["DEFAULT_USERS", "IrodsTestServer"]
