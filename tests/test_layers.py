"""The layering the README draws, checked on the source: ``tokens/`` (the delegation
core) imports neither HTTP (``gateway/``) nor a backend (``adapters/``), ``adapters/``
imports neither the gateway nor ``tokens/``, and no module of a checked package is part
of an import cycle, type-only imports (``if TYPE_CHECKING:``) and imports inside
functions included: a cycle hidden behind either still ties the modules together for a
reader and for the next refactoring."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> the top-level packages it must never import.
FORBIDDEN = {
    "tokens": {"gateway", "adapters"},
    "adapters": {"gateway", "tokens"},
}
# Packages whose modules must form no import cycle.
ACYCLIC = ["tokens", "adapters", "gateway"]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, known: set[str], root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (module level, functions,
    ``TYPE_CHECKING`` blocks). ``from a import b`` counts as importing ``a.b`` when that
    is a module of ``known``, else ``a``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def graph(package: str) -> dict[str, set[str]]:
    files = sorted((ROOT / package).rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imports_of(f, known) & known for f in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (or a module that
    imports itself), by Tarjan's algorithm; each sorted, for a stable message."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_itself() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_only_and_function_level_imports_count(tmp_path: Path) -> None:
    pkg = tmp_path / "tokens"
    pkg.mkdir()
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .service import TokenService\n"
        "def f() -> None:\n    from . import store\n    import adapters.base\n"
    )
    path = pkg / "probe.py"
    path.write_text(source)
    known = {"tokens.service", "tokens.store", "tokens.probe"}
    assert imports_of(path, known, tmp_path) == {
        "typing",
        "tokens.service",
        "tokens.store",
        "adapters.base",
    }


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_forbidden_layers(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in sorted(imports_of(path, set())):
            if imported.partition(".")[0] in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert offenders == []


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycle(package: str) -> None:
    assert cycles(graph(package)) == []
