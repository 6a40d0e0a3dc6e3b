"""GenQuery (API 702) for the test server: the column and condition subset that
python-irodsclient uses for stat, listing and existence checks, answered page by page.

Rows are produced lazily from the catalog, so a cursor over a 20,000-object collection
holds a snapshot of references, not 20,000 formatted rows. A query whose first page is
empty answers CAT_NO_ROWS_FOUND; a page with more to come carries a continueInx that the
client sends back for the next page (or with maxRows=0 to close the cursor).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

from tests.irods_server import errors as E
from tests.irods_server.catalog import Catalog, Coll, DataObj, Ticket
from tests.irods_server.wire import GenQueryResponse, GenQueryResponseColumn, text

PAGE_MAX = 500
ORDER_BY, ORDER_BY_DESC = 0x400, 0x800


def _t(seconds: int) -> str:
    return f"{seconds:011d}"


def _coll_columns(c: Coll) -> dict[int, str]:
    return {
        500: str(c.id),
        501: c.path,
        502: c.parent if c.path != "/" else "/",
        503: c.owner,
        504: "",
        505: "0",
        506: "",
        507: "",
        508: _t(c.ctime),
        509: _t(c.mtime),
    }


_DATA: dict[int, Callable[[DataObj], str]] = {
    401: lambda o: str(o.id),
    402: lambda o: str(o.coll.id),
    403: lambda o: o.name,
    404: lambda o: "0",
    405: lambda o: "",
    406: lambda o: "generic",
    407: lambda o: str(o.size),
    409: lambda o: "demoResc",
    410: lambda o: o.file,
    411: lambda o: o.owner,
    412: lambda o: "",
    413: lambda o: "1",
    414: lambda o: "",
    415: lambda o: o.checksum,
    416: lambda o: "",
    417: lambda o: "0",
    418: lambda o: "",
    419: lambda o: _t(o.ctime),
    420: lambda o: _t(o.mtime),
    422: lambda o: "demoResc",
    423: lambda o: "10014",
}


def _value(col: int, target: Coll | DataObj) -> str:
    if isinstance(target, DataObj):
        if col in _DATA:
            return _DATA[col](target)
        return _coll_columns(target.coll)[col]
    return _coll_columns(target)[col]


_OPS = ("not like", "like", "<>", "!=", ">=", "<=", "=", ">", "<", "in", "between")


def _unquote(s: str) -> str:
    s = s.strip()
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] == "'" else s


def parse_condition(cond: str) -> Callable[[str], bool]:
    cond = cond.strip()
    for op in _OPS:
        if cond.lower().startswith(op):
            rest = cond[len(op) :].strip()
            break
    else:
        raise E.IrodsError(E.SYS_NOT_SUPPORTED, f"GenQuery condition not supported: {cond!r}")
    if op == "in":
        values = {_unquote(v) for v in rest.strip("()").split(",")}
        return lambda x: x in values
    if op == "between":
        lo, hi = (_unquote(v) for v in rest.split("' '", 1)) if "' '" in rest else ("", "")
        return lambda x: _cmp(x, lo) >= 0 and _cmp(x, hi) <= 0
    value = _unquote(rest)
    if op in ("like", "not like"):
        pattern = "".join(
            ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in value
        )
        rx = re.compile(pattern, re.DOTALL)
        if op == "like":
            return lambda x: rx.fullmatch(x) is not None
        return lambda x: rx.fullmatch(x) is None
    tests: dict[str, Callable[[int], bool]] = {
        "=": lambda c: c == 0,
        "<>": lambda c: c != 0,
        "!=": lambda c: c != 0,
        ">": lambda c: c > 0,
        "<": lambda c: c < 0,
        ">=": lambda c: c >= 0,
        "<=": lambda c: c <= 0,
    }
    test = tests[op]
    return lambda x: test(_cmp(x, value))


def _cmp(a: str, b: str) -> int:
    try:
        ia, ib = int(a), int(b)
        return (ia > ib) - (ia < ib)
    except ValueError:
        return (a > b) - (a < b)


class Cursor:
    def __init__(self, select: list[int], rows: Iterator[list[str]]) -> None:
        self.select = select
        self.rows = rows
        self.pending: list[list[str]] = []

    def page(self, max_rows: int) -> tuple[list[list[str]], bool]:
        """The next page, and whether more rows follow (looked ahead by one row)."""
        n = max(1, min(max_rows, PAGE_MAX))
        got = self.pending + list(itertools.islice(self.rows, n + 1 - len(self.pending)))
        self.pending = got[n:]
        return got[:n], bool(self.pending)


def open_cursor(catalog: Catalog, user: str, ticket: Ticket | None, request: Any) -> Cursor:
    sel = request.InxIvalPair_PI
    select = [int(i) for i in (sel.inx if sel and sel.iiLen else [])]
    flags = [int(v) for v in (sel.ivalue if sel and sel.iiLen else [])]
    if any(f & 0x3F not in (0, 1) for f in flags):
        raise E.IrodsError(E.SYS_NOT_SUPPORTED, "GenQuery aggregates are not supported")
    conds_in = request.InxValPair_PI
    conds: list[tuple[int, str]] = []
    if conds_in is not None and conds_in.isLen:
        conds = [(int(i), text(v)) for i, v in zip(conds_in.inx, conds_in.svalue, strict=False)]
    known = set(_DATA) | set(range(500, 510))
    for col in [*select, *(c for c, _ in conds)]:
        if col not in known:
            raise E.IrodsError(E.SYS_NOT_SUPPORTED, f"GenQuery column {col} is not supported")
    if not select:
        raise E.IrodsError(E.SYS_API_INPUT_ERR, "GenQuery without selected columns")
    data_mode = any(400 <= c < 500 for c in [*select, *(c for c, _ in conds)])
    tests = [(col, parse_condition(cond)) for col, cond in conds]
    equals = {col: _unquote(cond.strip()[1:]) for col, cond in conds if cond.strip()[:2] == "= "}

    def candidates() -> Iterator[Coll | DataObj]:
        colls: list[Coll]
        if 501 in equals:
            colls = [c for c in [catalog.colls.get(equals[501])] if c]
        elif 500 in equals or 402 in equals:
            key = equals.get(500) or equals.get(402) or "0"
            colls = [c for c in [catalog.coll_ids.get(int(key) if key.isdigit() else -1)] if c]
        elif not data_mode and 502 in equals:
            parent = catalog.colls.get(equals[502])
            colls = list(parent.subcolls.values()) if parent else []
        else:
            colls = list(catalog.colls.values())
        for coll in colls:
            if not data_mode:
                yield coll
            elif 403 in equals:
                obj = coll.objects.get(equals[403])
                if obj is not None:
                    yield obj
            else:
                yield from list(coll.objects.values())

    def rows() -> Iterator[list[str]]:
        seen: set[tuple[str, ...]] | None = None
        if not any(400 <= c < 500 for c in select) and data_mode:
            seen = set()  # collection columns over a data join: keep rows distinct
        for target in candidates():
            if not all(test(_value(col, target)) for col, test in tests):
                continue
            if not catalog.visible(user, ticket, target):
                continue
            row = [_value(c, target) for c in select]
            if seen is not None:
                key = tuple(row)
                if key in seen:
                    continue
                seen.add(key)
            yield row

    produced: Iterator[list[str]] = rows()
    order = [(i, f) for i, f in enumerate(flags) if f & (ORDER_BY | ORDER_BY_DESC)]
    if order:
        ordered = list(produced)
        for i, f in reversed(order):
            ordered.sort(key=lambda r, i=i: r[i], reverse=bool(f & ORDER_BY_DESC))
        produced = iter(ordered)
    return Cursor(select, produced)


def response(cursor: Cursor, rows: list[list[str]], continue_inx: int) -> GenQueryResponse:
    columns = []
    for i, col in enumerate(cursor.select):
        values = [r[i] for r in rows]
        width = max((len(v.encode()) for v in values), default=0) + 1
        columns.append(GenQueryResponseColumn(attriInx=col, reslen=width, value=values))
    return GenQueryResponse(
        rowCnt=len(rows),
        attriCnt=len(cursor.select),
        continueInx=continue_inx,
        totalRowCount=0,
        SqlResult_PI=columns,
    )
