"""Real iRODS error codes (as in python-irodsclient's irods/exception.py)."""

from __future__ import annotations

SYS_NOT_SUPPORTED = -66000
SYS_INVALID_INPUT_PARAM = -130000
USER_FILE_DOES_NOT_EXIST = -310000
OVERWRITE_WITHOUT_FORCE_FLAG = -312000
CAT_NO_ROWS_FOUND = -808000
CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME = -809000
CAT_UNKNOWN_COLLECTION = -814000
CAT_UNKNOWN_FILE = -817000
CAT_NO_ACCESS_PERMISSION = -818000
CAT_COLLECTION_NOT_EMPTY = -821000
CAT_INVALID_AUTHENTICATION = -826000
CAT_INVALID_USER = -827000
CAT_NAME_EXISTS_AS_COLLECTION = -833000
CAT_NAME_EXISTS_AS_DATAOBJ = -834000
CAT_TICKET_INVALID = -890000
CAT_TICKET_EXPIRED = -891000
CAT_TICKET_USES_EXCEEDED = -892000
SYS_BAD_FILE_DESCRIPTOR = -23000
SYS_API_INPUT_ERR = -14000


class IrodsError(Exception):
    """Raised by handlers; turned into a RODS_API_REPLY with this status."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or str(code))
        self.code = code
        self.message = message
