"""API handlers of the iRODS protocol test server: one ``Session`` per TCP connection.

Each handler returns ``(status, body, bs)`` or raises ``IrodsError(code)``; the caller
turns that into a RODS_API_REPLY. Anything not handled here answers SYS_NOT_SUPPORTED.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import string
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import IO, Any

from irods.api_number import api_number as AN
from irods.message import (
    STR_PI,
    BinBytesBuf,
    CollectionRequest,
    FileOpenRequest,
    GenQueryRequest,
    Message,
    OpenedDataObjRequest,
    iRODSMessage,
)

from tests.irods_server import errors as E
from tests.irods_server import genquery, tickets
from tests.irods_server.catalog import Catalog, Coll, DataObj, Ticket, parent_of, split
from tests.irods_server.wire import FileSeekResponse, RodsObjStat, kv, text

Reply = tuple[int, Message | None, bytes]
O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC = 3, 64, 128, 512


@dataclass
class OpenFile:
    obj: DataObj
    fh: IO[bytes]
    writable: bool
    written: bool = False


class Session:
    def __init__(self, catalog: Catalog, client_user: str) -> None:
        self.catalog = catalog
        self.client_user = client_user
        self.user: str | None = None
        self.ticket: Ticket | None = None
        self.challenge = ""
        self.fds: dict[int, OpenFile] = {}
        self.cursors: dict[int, genquery.Cursor] = {}
        self._next_fd = 3
        self._next_cursor = 1
        self.handlers = {
            AN["AUTHENTICATION_APN"]: self.authenticate,
            AN["GEN_QUERY_AN"]: self.gen_query,
            AN["OBJ_STAT_AN"]: self.obj_stat,
            AN["COLL_CREATE_AN"]: self.coll_create,
            AN["DATA_OBJ_CREATE_AN"]: self.data_obj_create,
            AN["DATA_OBJ_OPEN_AN"]: self.data_obj_open,
            AN["DATA_OBJ_LSEEK_AN"]: self.lseek,
            AN["DATA_OBJ_READ_AN"]: self.read,
            AN["DATA_OBJ_WRITE_AN"]: self.write,
            AN["DATA_OBJ_CLOSE_AN"]: self.close,
            AN["DATA_OBJ_CHKSUM_AN"]: self.chksum,
            AN["DATA_OBJ_UNLINK_AN"]: self.unlink,
            AN["RM_COLL_AN"]: self.rm_coll,
            AN["DATA_OBJ_RENAME_AN"]: self.rename,
            AN["TICKET_ADMIN_AN"]: self.ticket_admin,
        }

    def dispatch(self, msg: iRODSMessage) -> Reply:
        handler = self.handlers.get(msg.int_info)
        if handler is None:
            raise E.IrodsError(E.SYS_NOT_SUPPORTED, f"API {msg.int_info} is not supported")
        if self.user is None and handler != self.authenticate:
            raise E.IrodsError(E.CAT_INVALID_AUTHENTICATION, "not authenticated")
        with self.catalog.lock:
            return handler(msg)

    def shutdown(self) -> None:
        for f in self.fds.values():
            f.fh.close()
        self.fds.clear()
        self.cursors.clear()

    # --- authentication (4.3 JSON flow, native scheme) -------------------------------

    def authenticate(self, msg: iRODSMessage) -> Reply:
        req = json.loads(msg.get_main_message(BinBytesBuf).buf.replace(b"\0", b""))
        op = req.get("next_operation")
        if req.get("scheme", "native") != "native":
            raise E.IrodsError(E.SYS_NOT_SUPPORTED, "only the native auth scheme")
        if op == "auth_agent_auth_request":
            alphabet = string.ascii_letters + string.digits
            self.challenge = "".join(secrets.choice(alphabet) for _ in range(64))
            return self._json({**req, "request_result": self.challenge})
        if op == "auth_agent_auth_response" and self.challenge:
            user = str(req.get("user_name", ""))
            password = self.catalog.users.get(user)
            zone_ok = req.get("zone_name", self.catalog.zone) in ("", self.catalog.zone)
            if password is None or not zone_ok:
                raise E.IrodsError(E.CAT_INVALID_AUTHENTICATION, "authentication failed")
            padded = struct.pack("50s", password.encode().strip())
            digest = hashlib.md5(self.challenge.encode() + padded).digest().replace(b"\0", b"\1")
            self.challenge = ""  # one attempt per challenge
            try:
                given = base64.b64decode(str(req.get("digest", "")))
            except ValueError:
                given = b""
            if not hmac.compare_digest(digest, given):
                raise E.IrodsError(E.CAT_INVALID_AUTHENTICATION, "authentication failed")
            self.user = user
            return self._json({"user_name": user, "zone_name": self.catalog.zone})
        raise E.IrodsError(E.CAT_INVALID_AUTHENTICATION, "unexpected authentication step")

    @staticmethod
    def _json(payload: dict[str, Any]) -> Reply:
        data = json.dumps(payload).encode()
        return 0, BinBytesBuf(buflen=len(data), buf=data), b""

    # --- helpers ------------------------------------------------------------------------

    @property
    def me(self) -> str:
        assert self.user is not None
        return self.user

    def _visible(self, path: str) -> Coll | DataObj | None:
        target = self.catalog.lookup(path)
        if target is None or not self.catalog.visible(self.me, self.ticket, target):
            return None
        return target

    def _fd(self, msg: iRODSMessage) -> tuple[OpenedDataObjRequest, OpenFile]:
        req = msg.get_main_message(OpenedDataObjRequest)
        f = self.fds.get(req.l1descInx)
        if f is None:
            raise E.IrodsError(E.SYS_BAD_FILE_DESCRIPTOR, "bad descriptor")
        return req, f

    # --- catalog queries ----------------------------------------------------------------

    def gen_query(self, msg: iRODSMessage) -> Reply:
        req = msg.get_main_message(GenQueryRequest)
        inx = req.continueInx or 0
        if inx:
            cursor = self.cursors.get(inx)
            if cursor is None or req.maxRows <= 0:
                self.cursors.pop(inx, None)
                raise E.IrodsError(E.CAT_NO_ROWS_FOUND, "no more rows")
        else:
            if req.maxRows <= 0:
                raise E.IrodsError(E.CAT_NO_ROWS_FOUND, "no rows requested")
            cursor = genquery.open_cursor(self.catalog, self.me, self.ticket, req)
        rows, more = cursor.page(req.maxRows)
        if not rows:
            self.cursors.pop(inx, None)
            raise E.IrodsError(E.CAT_NO_ROWS_FOUND, "no rows found")
        if more:
            if not inx:
                inx, self._next_cursor = self._next_cursor, self._next_cursor + 1
                self.cursors[inx] = cursor
        else:
            self.cursors.pop(inx, None)
            inx = 0
        return 0, genquery.response(cursor, rows, inx), b""

    def obj_stat(self, msg: iRODSMessage) -> Reply:
        path = text(msg.get_main_message(FileOpenRequest).objPath)
        target = self._visible(path)
        if target is None:
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path} does not exist")
        is_obj = isinstance(target, DataObj)
        body = RodsObjStat(
            objSize=target.size if isinstance(target, DataObj) else 0,
            objType=1 if is_obj else 2,
            dataMode=0,
            dataId=str(target.id),
            chksum=target.checksum if isinstance(target, DataObj) else "",
            ownerName=target.owner,
            ownerZone=self.catalog.zone,
            createTime=f"{target.ctime:011d}",
            modifyTime=f"{target.mtime:011d}",
        )
        return 1 if is_obj else 2, body, b""

    # --- collections --------------------------------------------------------------------

    def coll_create(self, msg: iRODSMessage) -> Reply:
        req = msg.get_main_message(CollectionRequest)
        path = text(req.collName).rstrip("/")
        recursive = "recursiveOpr" in kv(req)
        existing = self.catalog.lookup(path)
        if isinstance(existing, Coll):
            raise E.IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"{path} exists")
        if isinstance(existing, DataObj):
            raise E.IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, f"{path} is a data object")
        self._make_coll(path, recursive)
        return 0, None, b""

    def _make_coll(self, path: str, recursive: bool) -> Coll:
        parent_path = parent_of(path)
        parent = self.catalog.lookup(parent_path)
        if parent is None and recursive and parent_path != "/":
            parent = self._make_coll(parent_path, True)
        if isinstance(parent, DataObj):
            raise E.IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, f"{parent_path} is a data object")
        if parent is None or not self.catalog.visible(self.me, self.ticket, parent):
            raise E.IrodsError(E.CAT_UNKNOWN_COLLECTION, f"{parent_path} does not exist")
        self.catalog.require(self.me, self.ticket, parent, "write")
        existing = self.catalog.colls.get(path)
        return existing or self.catalog._new_coll(path, self.me)

    def rm_coll(self, msg: iRODSMessage) -> Reply:
        req = msg.get_main_message(CollectionRequest)
        path = text(req.collName).rstrip("/")
        coll = self._visible(path)
        if not isinstance(coll, Coll):
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path}: no such collection")
        if path.count("/") < 4 and self.catalog.level(self.me, coll) < 1200:
            raise E.IrodsError(E.CAT_NO_ACCESS_PERMISSION, f"{path} cannot be removed")
        if "recursiveOpr" not in kv(req) and (coll.subcolls or coll.objects):
            raise E.IrodsError(E.CAT_COLLECTION_NOT_EMPTY, f"{path} is not empty")
        for item in self.catalog.walk(coll):  # all or nothing
            self.catalog.require(self.me, self.ticket, item, "write")
        self.catalog.remove_coll(coll)
        return 0, None, b""

    # --- data objects -------------------------------------------------------------------

    def data_obj_create(self, msg: iRODSMessage) -> Reply:
        req = msg.get_main_message(FileOpenRequest)
        path = text(req.objPath)
        if isinstance(self.catalog.lookup(path), DataObj) and "forceFlag" not in kv(req):
            raise E.IrodsError(E.OVERWRITE_WITHOUT_FORCE_FLAG, f"{path} exists")
        return self._open(path, O_CREAT | O_TRUNC | 1)

    def data_obj_open(self, msg: iRODSMessage) -> Reply:
        req = msg.get_main_message(FileOpenRequest)
        return self._open(text(req.objPath), req.openFlags or 0)

    def _open(self, path: str, flags: int) -> Reply:
        cat = self.catalog
        writable = flags & O_ACCMODE != 0
        target = cat.lookup(path)
        if isinstance(target, Coll):
            if flags & O_CREAT:
                raise E.IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, f"{path} is a collection")
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path} is a collection")
        if target is None:
            if not flags & O_CREAT:
                raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path} does not exist")
            parent = cat.colls.get(split(path)[0])
            if parent is None or not cat.visible(self.me, self.ticket, parent):
                raise E.IrodsError(E.CAT_UNKNOWN_COLLECTION, f"{parent_of(path)} does not exist")
            cat.require(self.me, self.ticket, parent, "write")
            cat.use_ticket(self.me, self.ticket, parent)
            target = cat.new_object(path, self.me)
        else:
            if flags & O_CREAT and flags & O_EXCL:
                raise E.IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, f"{path} exists")
            cat.require(self.me, self.ticket, target, "write" if writable else "read")
            cat.use_ticket(self.me, self.ticket, target)
        if not target.file:
            target.file = os.path.join(cat.data_dir, str(target.id))
        if not os.path.exists(target.file):
            open(target.file, "wb").close()
        fh = open(target.file, "r+b" if writable else "rb")  # noqa: SIM115 - closed on close
        if writable and flags & O_TRUNC:
            fh.truncate(0)
        fd, self._next_fd = self._next_fd, self._next_fd + 1
        self.fds[fd] = OpenFile(target, fh, writable, written=bool(flags & O_TRUNC))
        return fd, None, b""

    def lseek(self, msg: iRODSMessage) -> Reply:
        req, f = self._fd(msg)
        pos = f.fh.seek(req.offset or 0, req.whence or 0)
        return 0, FileSeekResponse(offset=pos), b""

    def read(self, msg: iRODSMessage) -> Reply:
        req, f = self._fd(msg)
        data = f.fh.read(max(0, req.len or 0))
        return len(data), None, data

    def write(self, msg: iRODSMessage) -> Reply:
        _, f = self._fd(msg)
        if not f.writable:
            raise E.IrodsError(E.CAT_NO_ACCESS_PERMISSION, "descriptor opened for reading")
        data = msg.bs or b""
        f.fh.write(data)
        f.written = True
        return len(data), None, b""

    def close(self, msg: iRODSMessage) -> Reply:
        req, f = self._fd(msg)
        del self.fds[req.l1descInx]
        f.fh.close()
        if f.written:
            f.obj.size = os.path.getsize(f.obj.file)
            f.obj.mtime = int(time.time())
            f.obj.checksum = ""
        return 0, None, b""

    def chksum(self, msg: iRODSMessage) -> Reply:
        path = text(msg.get_main_message(FileOpenRequest).objPath)
        obj = self._visible(path)
        if not isinstance(obj, DataObj):
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path}: no such data object")
        self.catalog.require(self.me, self.ticket, obj, "read")
        digest = hashlib.sha256()
        if obj.file and os.path.exists(obj.file):
            with open(obj.file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        obj.checksum = "sha2:" + base64.b64encode(digest.digest()).decode()
        return 0, STR_PI(myStr=obj.checksum), b""

    def unlink(self, msg: iRODSMessage) -> Reply:
        path = text(msg.get_main_message(FileOpenRequest).objPath)
        obj = self._visible(path)
        if not isinstance(obj, DataObj):
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{path}: no such data object")
        self.catalog.require(self.me, self.ticket, obj, "write")
        self.catalog.remove_object(obj)
        return 0, None, b""

    def rename(self, msg: iRODSMessage) -> Reply:
        # DataObjCopyInp_PI holds two DataObjInp_PI elements (source, then destination).
        inps = ET.fromstring(msg.msg).findall("DataObjInp_PI")
        if len(inps) != 2:
            raise E.IrodsError(E.SYS_API_INPUT_ERR, "rename needs a source and a destination")
        src, dst = (text(i.findtext("objPath")) for i in inps)
        obj = self._visible(src)
        if obj is None:
            raise E.IrodsError(E.USER_FILE_DOES_NOT_EXIST, f"{src} does not exist")
        if not isinstance(obj, DataObj):
            raise E.IrodsError(E.SYS_NOT_SUPPORTED, "collection rename is not supported")
        existing = self.catalog.lookup(dst)
        if isinstance(existing, Coll):
            raise E.IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, f"{dst} is a collection")
        if isinstance(existing, DataObj):
            raise E.IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, f"{dst} exists")
        dest_coll = self.catalog.colls.get(parent_of(dst))
        if dest_coll is None or not self.catalog.visible(self.me, self.ticket, dest_coll):
            raise E.IrodsError(E.CAT_UNKNOWN_COLLECTION, f"{parent_of(dst)} does not exist")
        self.catalog.require(self.me, self.ticket, obj, "write")
        self.catalog.require(self.me, self.ticket, dest_coll, "write")
        obj.coll.objects.pop(obj.name)
        obj.coll, obj.name = dest_coll, split(dst)[1]
        dest_coll.objects[obj.name] = obj
        return 0, None, b""

    def ticket_admin(self, msg: iRODSMessage) -> Reply:
        return tickets.ticket_admin(self, msg)
