"""Checks on the test suite itself: no statement that computes a verdict and throws it
away, and no assertion on a sub-second wall-clock bound (it flakes on a loaded 2-core
machine; such numbers belong in bench/, and waiting belongs to events or deadlines).

ruff's B018/B015 catch useless attribute reads and comparisons; they leave calls alone,
since a call may act. A call to a predicate (``path.exists()``, ``isinstance(...)``)
only answers a question, so a bare one is a forgotten ``assert``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Calls that only answer a question: as a statement, their answer is lost.
PREDICATES = {
    "exists",
    "is_file",
    "is_dir",
    "is_symlink",
    "startswith",
    "endswith",
    "isdigit",
    "issubset",
    "issuperset",
    "isdisjoint",
    "is_alive",
    "isinstance",
    "issubclass",
    "hasattr",
    "callable",
    "any",
    "all",
    "bool",
    "len",
}
CLOCKS = {"monotonic", "time", "perf_counter", "monotonic_ns", "perf_counter_ns"}
TIMING_NAMES = ("elapsed", "took", "duration", "spent")


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "irods_server" not in p.parts)


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
    return None


def bare_expressions(tree: ast.AST) -> list[int]:
    """Lines of expression statements whose value is a verdict nobody looks at."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Expr):
            continue
        value = node.value
        if (
            isinstance(value, ast.Compare | ast.BoolOp)
            or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not))
            or _call_name(value) in PREDICATES
        ):
            found.append(node.lineno)
    return found


def _reads_a_clock(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        func = sub.func if isinstance(sub, ast.Call) else None
        if (
            isinstance(func, ast.Attribute)
            and func.attr in CLOCKS
            and isinstance(func.value, ast.Name)
            and func.value.id == "time"
        ):
            return True
        if isinstance(sub, ast.Name) and any(t in sub.id.lower() for t in TIMING_NAMES):
            return True
    return False


def _sub_second(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
        and 0 < node.value <= 1
    )


def sub_second_clock_asserts(tree: ast.AST) -> list[int]:
    """Lines of ``assert <clock reading> < x`` with 0 < x <= 1 s (either side, any
    comparison)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for cmp in ast.walk(node.test):
            if not isinstance(cmp, ast.Compare):
                continue
            sides = [cmp.left, *cmp.comparators]
            if any(_sub_second(s) for s in sides) and any(_reads_a_clock(s) for s in sides):
                found.append(node.lineno)
    return found


@pytest.mark.parametrize(
    "source, bare, timed",
    [
        ("(p / 'x').exists()", [1], []),
        ("x == 1", [1], []),
        ("isinstance(x, int)", [1], []),
        ("assert p.exists()\nf(x)\nlog.info('x')", [], []),
        ("assert time.monotonic() - t < 0.5", [], [1]),
        ("assert elapsed < 0.3, 'slow'", [], [1]),
        ("assert elapsed < 1.0", [], [1]),
        ("assert elapsed < 20\nassert size < 0.5", [], []),
    ],
)
def test_the_checks_themselves(source: str, bare: list[int], timed: list[int]) -> None:
    tree = ast.parse(source)
    assert bare_expressions(tree) == bare
    assert sub_second_clock_asserts(tree) == timed


def test_no_bare_expression_statement_in_tests() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in _test_files()
        for line in bare_expressions(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == [], "a verdict computed and thrown away (missing assert?)"


def test_no_sub_second_wall_clock_assert_in_tests() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in _test_files()
        for line in sub_second_clock_asserts(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == [], "time bounds under a second belong in bench/, not in a test"


def imported_test_modules(tree: ast.AST) -> list[str]:
    """Test modules (``test_*``) and conftests a module imports: what tests share goes in
    a helpers module, and fixtures in a conftest, which pytest finds by itself."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            last = name.rsplit(".", 1)[-1]
            if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                found.append(name)
    return found


@pytest.mark.parametrize(
    "source, found",
    [
        ("from tests.gateway.test_data_api import is_error", ["tests.gateway.test_data_api"]),
        ("from tests.ui.conftest import UiPage", ["tests.ui.conftest"]),
        ("import tests.helm.test_chart", ["tests.helm.test_chart"]),
        ("from tests.gateway import test_cli", ["tests.gateway.test_cli"]),
        ("from tests.gateway.helpers import token\nimport pytest", []),
    ],
)
def test_the_import_check_itself(source: str, found: list[str]) -> None:
    assert imported_test_modules(ast.parse(source)) == found


def test_no_test_module_imports_another_or_a_conftest() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)} imports {name}"
        for path in _test_files()
        for name in imported_test_modules(ast.parse(path.read_text(), str(path)))
    ]
    assert offenders == []
