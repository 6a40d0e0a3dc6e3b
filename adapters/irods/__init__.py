"""An iRODS collection as a mount, through python-irodsclient (imported lazily).

Mount options (TOML)::

    host            iRODS server host (required)
    port            iRODS port (default 1247)
    zone            iRODS zone (required)
    root            absolute collection the mount shows, e.g. "/tempZone/home/alice/data"
                    (required; every path stays below it)
    auth_scheme     "native" (default) or "pam" (PAM password; needs ssl_ca_file, since
                    python-irodsclient refuses to send a PAM password in clear)
    user, password  optional service credential, used by bind(None) (never logged)
    timeout         socket timeout in seconds for connect and every reply (default 30)
    page_size       GenQuery rows per page when listing (default 500, iRODS' own cap)
    idle_timeout    pooled sessions unused this long are closed (seconds, default 300)
    ssl_ca_file     if set, require TLS (CS_NEG_REQUIRE) and verify the server with this CA
    default_resource  optional resource for new data objects

Credentials: kind ``user_password`` with fields ``user`` and ``password``.

Writes stream into a hidden temporary data object in the target's collection
(``.fedgate-tmp-<hex>``, never listed and unreachable through paths) and are renamed
over the target on commit. iRODS cannot rename onto an existing object, so replacing a
file is: rename the old object aside (hidden name), rename the upload into place, then
unlink the old one — if the second rename fails the old object is renamed back. At no
point is the old content deleted before the new content is in place; a reader can see the
path missing for the short instant between the two renames.

Listing pages through GenQuery (``Query.get_batches``): sub-collections, then data
objects, one page (``page_size`` rows) in memory at a time. An object with several
replicas whose sizes differ is listed once per distinct (name, size, mtime).

Checksums: iRODS' native ``sha2:<base64>`` is served as ``sha256`` (lowercase hex); md5
and adler32 are computed by streaming. ``presign`` and ``issue_ticket`` mint iRODS
tickets (read for GET, write for PUT) that expire at ``expires_at`` (rounded down to the
second); a write ticket for a missing path first creates an empty object there, so that
the ticket covers that one object and not its whole collection.
"""

from adapters.irods.adapter import IrodsAdapter, create
from adapters.irods.errors import translate
from adapters.irods.storage import IrodsStorage
from adapters.irods.write import TMP_PREFIX, IrodsWriter

__all__ = ["TMP_PREFIX", "IrodsAdapter", "IrodsStorage", "IrodsWriter", "create", "translate"]
