"""A grid storage element (XRootD, dCache, EOS, StoRM...) through gfal2, over root:// or
HTTP/WebDAV.

Mount options (TOML; declared in adapters/options.py as ``GfalOptions``, re-exported
here, and checked by options.py)::

    base_url          root://host:port//path | xroot:// | http(s)://host:port/path | dav(s)://
    token             optional service bearer token (WLCG token or macaroon), used when a
                      request carries no user credential; never logged
    x509_proxy        optional path to an X.509 proxy file used for every request
    anonymous         bind(None) without any service credential (default false)
    timeout           seconds for one namespace operation or read/write request (default 30)
    connect_timeout   seconds to connect over root:// (default 5)
    checksum_timeout  seconds for the SE to compute a checksum (default 300)
    native_checksums  algorithms the SE computes (default ["adler32", "md5"])
    macaroons         presign by asking an https/davs SE for a macaroon (default true)
    insecure          skip TLS verification over https/davs (default false; tests only)
    stream_http       over http/dav, move bytes with urllib3 instead of gfal2's file calls
                      (default true; see http.py)
    raw_reads         over root:// without an X.509 proxy, pread through libgfal2's C API
                      into fresh buffers instead of the binding's copying ``pread_bytes``
                      (default true; see pread.py)
    max_idle_contexts gfal2 contexts kept per credential (default 4)

Credentials: kind ``"bearer"`` with field ``token``. Over http/dav it is handed to gfal2
for URLs below ``base_url`` only; over root:// it travels as ``?authz=Bearer%20<token>``
(XRootD's token CGI), so gfal2 errors are stripped of query strings before they are
raised, and never chained.

Behaviour worth knowing:

- Listing: gfal2 (PROPFIND over http, dirlist over root://) fetches a whole directory
  before the first entry is returned; that buffer lives in the C library. We stream from it
  entry by entry (``opendir``/``readpp``) and never build a Python list.
- Writes go to ``.fedgate-upload-<uuid>`` next to the target (hidden from listings and
  unreachable by path) and are renamed over the target on commit, replacing a file there.
  Over http/dav the bytes of reads and of uploads of known size go over urllib3, one
  streamed GET or PUT each (http.py; davix would spool an upload to $TMPDIR
  and PUT it only on commit). Uploads of unknown size (a chunked client request), SEs that
  redirect PUTs, and X.509 mounts keep gfal2's calls, where $TMPDIR needs room for the
  largest concurrent uploads. Both plugins create missing parents on write, so the
  parent is checked first (a parent removed during an upload is recreated by it). On an SE
  that does not percent-decode a WebDAV MOVE's Destination (XrdHttp 5.5), names that need
  escaping are uploaded by a spooled PUT instead (see write.py for its weaker
  atomicity).
- Presign: over https/davs the SE is asked for a macaroon (dCache and XrdMacaroons
  answer ``POST`` with ``Content-Type: application/macaroon-request``), with caveats on the
  path, the activity and a validity in whole minutes that ends no later than
  ``expires_at``; the result is ``Delegation(kind="macaroon")`` with an ``Authorization``
  header, to use on ``GfalStorage.public_url(path)`` (also the delegation's ``url``).
  gfal2 refuses macaroon requests over plain http (the macaroon would travel in clear)
  and root:// has no such request: both raise ``NotSupported``. We deliberately do not
  hand out the caller's own bearer token instead: it is neither scoped to the path
  nor bounded by ``expires_at``.
"""

from adapters.gfal.adapter import GfalAdapter, create
from adapters.gfal.options import GfalSettings
from adapters.gfal.storage import GfalStorage
from adapters.gfal.write import UPLOAD_PREFIX
from adapters.options import GfalOptions

__all__ = ["UPLOAD_PREFIX", "GfalAdapter", "GfalOptions", "GfalSettings", "GfalStorage", "create"]
