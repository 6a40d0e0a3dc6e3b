"""The gateway's layers, checked on the source (docs/architecture.md): uvicorn's internals
are known in gateway/datapath/uvicorn_seam.py only, the data path depends on no route,
and the process wiring imports no handler (the route table in gateway/app.py aside).
Cycles are checked for all of gateway/ by tests/test_layers.py."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent.parent / "gateway"
SEAM = GATEWAY / "datapath" / "uvicorn_seam.py"
# What the seam reaches into: uvicorn's request cycle and protocol (see its docstring).
INTERNALS = (
    "expected_content_length",
    "waiting_for_100_continue",
    "chunked_encoding",
    "reset_parser",
    "response_complete",
    ".flow.",
    ".cycle",
    "_CYCLE_FIELDS",
)


def _modules() -> list[Path]:
    return sorted(p for p in GATEWAY.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (``from a import b``: a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(GATEWAY.parent).with_suffix("")).replace("/", ".")


def test_only_the_seam_imports_uvicorns_protocols() -> None:
    offenders = [
        f"{_name(path)} imports {name}"
        for path in _modules()
        if path != SEAM
        for name in sorted(_imports(path))
        if name.startswith(("uvicorn.", "httptools"))
    ]
    assert offenders == []


def test_only_the_seam_names_uvicorns_request_cycle() -> None:
    offenders = [
        f"{_name(path)} uses {word}"
        for path in _modules()
        if path != SEAM
        for word in INTERNALS
        if word in path.read_text()
    ]
    assert offenders == []


def test_the_seam_still_holds_what_it_hides() -> None:
    """The two checks above look for these words: they must be where the seam uses them."""
    text = SEAM.read_text()
    assert all(word in text for word in INTERNALS)


def test_the_data_path_imports_no_route_and_no_door() -> None:
    offenders = [
        f"{_name(path)} imports {name}"
        for path in sorted((GATEWAY / "datapath").rglob("*.py"))
        for name in sorted(_imports(path))
        if name.startswith(
            ("gateway.api", "gateway.webdav", "gateway.ui", "gateway.app", "gateway.observability")
        )
    ]
    assert offenders == []


def test_the_process_wiring_imports_no_handler() -> None:
    wiring = [p for p in GATEWAY.glob("*.py") if p.name not in ("app.py", "__init__.py")]
    offenders = [
        f"{_name(path)} imports {name}"
        for path in sorted(wiring)
        for name in sorted(_imports(path))
        if name.startswith(("gateway.api", "gateway.webdav", "gateway.ui"))
    ]
    assert offenders == []
