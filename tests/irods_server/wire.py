"""iRODS wire framing for the test server, built on python-irodsclient's own message
classes (XML protocol, irodsProt=1): a 4-byte big-endian header length, a MsgHeader_PI,
then the XML body, the error stack and the binary stream."""

from __future__ import annotations

import json
import socket
from typing import Any

from irods.message import (
    BinBytesBuf,
    Error,
    ErrorMessage,
    FileSeekResponse,
    GenQueryResponse,
    GenQueryResponseColumn,
    Message,
    StartupPack,
    VersionResponse,
    iRODSMessage,
)
from irods.message.property_types import IntegerProperty, LongProperty, StringProperty

__all__ = [
    "FileSeekResponse",
    "GenQueryResponse",
    "GenQueryResponseColumn",
    "RodsObjStat",
    "StartupPackIn",
    "kv",
    "recv",
    "reply",
    "send_error",
    "send_json",
    "send_version",
    "text",
]


class StartupPackIn(StartupPack):
    """StartupPack whose constructor takes no arguments, so it can be unpacked."""

    def __init__(self) -> None:
        Message.__init__(self)


class RodsObjStat(Message):
    # define RodsObjStat_PI "double objSize; int objType; int dataMode; str dataId[NAME_LEN];
    # str chksum[NAME_LEN]; str ownerName[NAME_LEN]; str ownerZone[NAME_LEN];
    # str createTime[TIME_LEN]; str modifyTime[TIME_LEN]; struct *SpecColl_PI;"
    _name = "RodsObjStat_PI"
    objSize = LongProperty()
    objType = IntegerProperty()
    dataMode = IntegerProperty()
    dataId = StringProperty()
    chksum = StringProperty()
    ownerName = StringProperty()
    ownerZone = StringProperty()
    createTime = StringProperty()
    modifyTime = StringProperty()


def recv(sock: socket.socket) -> iRODSMessage:
    return iRODSMessage.recv(sock)


def text(value: Any) -> str:
    """PRC unpacks an empty XML element as None; the server wants ''."""
    return "" if value is None else str(value)


def kv(msg: Any) -> dict[str, str]:
    """The KeyValPair_PI of a request as a dict."""
    pairs = getattr(msg, "KeyValPair_PI", None)
    if pairs is None or not pairs.ssLen:
        return {}
    return {text(k): text(v) for k, v in zip(pairs.keyWord, pairs.svalue, strict=False)}


def reply(
    sock: socket.socket,
    status: int = 0,
    body: Message | None = None,
    bs: bytes = b"",
    msg_type: str = "RODS_API_REPLY",
) -> None:
    sock.sendall(iRODSMessage(msg_type, msg=body, bs=bs, int_info=status).pack())


def send_error(sock: socket.socket, code: int, message: str) -> None:
    stack = Error(count=1, RErrMsg_PI=[ErrorMessage(status=code, msg=message)])
    sock.sendall(iRODSMessage("RODS_API_REPLY", error=stack.pack(), int_info=code).pack())


def send_json(sock: socket.socket, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    reply(sock, 0, BinBytesBuf(buflen=len(data), buf=data))


def send_version(sock: socket.socket, status: int = 0) -> None:
    version = VersionResponse(
        status=status,
        relVersion="rods4.3.2",
        apiVersion="d",
        reconnPort=0,
        reconnAddr="",
        cookie=400,
    )
    reply(sock, status, version, msg_type="RODS_VERSION")
