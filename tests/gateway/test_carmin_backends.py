"""The CARMIN flow (tests/gateway/carmin_flow.py) on every backend `make test` starts, each
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
from tests.gateway.carmin_flow import CarminFlow


class TestPosixCarmin(PosixFixtures, CarminFlow):
    pass


class TestS3Carmin(S3Fixtures, CarminFlow):
    pass


class TestGirderCarmin(GirderFixtures, CarminFlow):
    pass


class TestGfalRootCarmin(GfalRootFixtures, CarminFlow):
    pass


class TestGfalHttpCarmin(GfalHttpFixtures, CarminFlow):
    pass


class TestIrodsCarmin(IrodsFixtures, CarminFlow):
    pass
