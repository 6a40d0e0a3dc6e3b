"""The WebDAV flow (tests/webdav/dav_flow.py) on every backend `make test` starts, each
against its real server, with the fixtures the adapter conformance suite uses
(tests/backends.py): a local folder, S3 on SeaweedFS, Girder, a grid SE over root:// and
over http:// (XRootD), iRODS (the protocol test server)."""

from __future__ import annotations

from tests.backends import (
    GfalHttpFixtures,
    GfalRootFixtures,
    GirderFixtures,
    IrodsFixtures,
    PosixFixtures,
    S3Fixtures,
)
from tests.webdav.dav_flow import DavFlow


class TestPosixDav(PosixFixtures, DavFlow):
    pass


class TestS3Dav(S3Fixtures, DavFlow):
    pass


class TestGirderDav(GirderFixtures, DavFlow):
    pass


class TestGfalRootDav(GfalRootFixtures, DavFlow):
    pass


class TestGfalHttpDav(GfalHttpFixtures, DavFlow):
    pass


class TestIrodsDav(IrodsFixtures, DavFlow):
    pass
