"""A Girder folder, collection or user home as a mount.

The options are declared in adapters/options.py (``GirderOptions``, re-exported here) and
checked by options.py.

Options (the mount's TOML table):

``api_url``            Girder REST root, e.g. ``https://girder.example.org/api/v1``. Required.
``root``               Girder path of the mount root, in Girder's own escaped form:
                       ``/collection/<name>[/<folder>…]`` or ``/user/<login>[/<folder>…]``.
``api_key``            Optional service API key, used when a request has no user credential.
``token_duration_days``  Cap on the lifetime of the tokens fedgate obtains (default 1/24 = 1 h).
``native_tokens``      Hand jobs Girder tokens (``/token/native``, VIP input URIs); default
                       false. Such a token is read-only (``core.data.read``) but reads
                       *everything the user's Girder account can read*, not only the path
                       the fedgate token names: enable it only where that is acceptable.
                       Never from the service ``api_key`` (delegation.py).
``connect_timeout`` / ``read_timeout``  Seconds (defaults 5 / 60).
``retries``            Connection retries per call (default 2).
``page_size``          Listing page size (default 50, Girder's own default).
``upload_chunk_mib``   Upload chunk size in MiB (default 64, as girder-client; at least 5,
                       Girder's minimum). Chunks are streamed, not buffered.

Credentials: kind ``"apikey"`` with field ``apiKey`` (exchanged for a short Girder token,
cached per key until a minute before it expires), or kind ``"bearer"`` with field ``token``
(an existing Girder token, used by fedgate as is, never handed to a job).

Mapping. Folders are directories. An item holding exactly one file is shown as that file,
under the *item's* name. An item holding zero or several files is shown as a read-only
directory of its files (a file inside can be read, checksummed and deleted; nothing can be
written or created in it). ``mtime`` of a file is its Girder ``created`` time, which Girder
resets when the contents are replaced. Girder names may contain ``/`` and ``\\``, which a
fedgate path segment cannot: listings show them as U+2215 DIVISION SLASH and U+29F5 REVERSE
SOLIDUS OPERATOR; a path
segment holding those characters is looked up literally first, then with them turned back
into ``/`` and ``\\`` (all segments at once). Paths are resolved with ``resource/lookup``,
segments escaped the way Girder's ``path.encode`` does (``\\`` → ``\\\\``, ``/`` → ``\\-``).
Girder answers 400 alike for missing and forbidden paths: both are NotFound here. Girder
strips leading/trailing spaces from names, so such names are refused (InvalidPath).

Writes are atomic through Girder's own upload protocol, see write.py.
Checksums: Girder exposes none, so md5 is computed by streaming and cached in the item's
metadata (``fedgateMd5``: file id, size, created time, digest); a cache whose file id, size
or created time differs from the file's is ignored, so a replaced file is never served a
stale digest.
"""

from adapters.girder.adapter import GirderAdapter, create
from adapters.girder.options import GirderSettings
from adapters.girder.storage import GirderStorage
from adapters.girder.vip import resolve_vip_reference, vip_uri
from adapters.options import GirderOptions

__all__ = [
    "GirderAdapter",
    "GirderOptions",
    "GirderSettings",
    "GirderStorage",
    "create",
    "resolve_vip_reference",
    "vip_uri",
]
