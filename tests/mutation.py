"""``make mutation``: mutmut 3 over the security- and data-critical modules, with a report.

Runs in a copy of the working tree under ``build/mutation/`` (mutmut writes its mutated
sources and results into ``mutants/`` beside the code it mutates; the copy keeps the
shared checkout clean and keeps results between runs, so a second run re-tests only the
functions that changed). Configuration: ``[tool.mutmut]`` in pyproject.toml (which
modules, which tests). mutmut records which tests reach each function and runs only
those against that function's mutants, fastest first, stopping at the first failure.
The driver names the mutants to test (``to_test``): not the killed ones of functions
unchanged since the last run, nor the equivalent ones; a survivor of an earlier run is
tested again (mutmut alone would keep its verdict until the function changes, whatever
tests were added).

    python -m tests.mutation [--children N] [--report docs/mutation-report.md]
    python -m tests.mutation --only tokens/scopes.py tokens/service.py   # a subset

Writes the report (killed, survived, timed out, no tests, per module; survivors not in
docs/mutation-equivalents.md listed with their diff) and exits 1 when a survivor is
neither killed nor listed as equivalent.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import functools
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
import tomllib
from collections import Counter
from pathlib import Path

from tests.postgres import PG_URL

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "mutation"
EQUIVALENTS = REPO / "docs" / "mutation-equivalents.md"
MUTMUT = Path(sys.executable).with_name("mutmut")

# mutmut's own table (mutmut/stats.py), reduced to what the report shows.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests"}
STATUS.update({36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"})
STATUS.update({34: "skipped", 37: "type check", -11: "segfault", -9: "segfault"})
COLUMNS = ("killed", "survived", "equivalent", "timeout", "no tests", "not checked", "other")
_EQUIV_LINE = re.compile(r"^- `([^`]+)`\s*[—:-]+\s*(.+)$")


def copy_tree(dest: Path, worktree: bool) -> None:
    """The committed tree (``git archive HEAD``), or with ``worktree`` the working
    tree's files (tracked and new, not ignored), over ``dest``; files gone since the
    last copy go too, mutmut's ``mutants/`` stays (it holds the results)."""
    if worktree:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        names = [n.decode() for n in listed if n and (REPO / n.decode()).is_file()]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name in names:
                tar.add(REPO / name, arcname=name)
        data = buf.getvalue()
    else:
        data = subprocess.run(
            ["git", "archive", "--format=tar", "HEAD"], cwd=REPO, capture_output=True, check=True
        ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        keep = {m.name for m in tar.getmembers() if m.isfile()}
        for path in dest.rglob("*"):
            rel = path.relative_to(dest).as_posix()
            if path.is_file() and rel not in keep and not rel.startswith("mutants/"):
                path.unlink()
        tar.extractall(dest, filter="data")


def set_only(dest: Path, only: list[str]) -> None:
    """A subset run: the copy's pyproject mutates only ``only``."""
    text = (dest / "pyproject.toml").read_text()
    listed = ", ".join(json.dumps(p) for p in only)
    text, n = re.subn(r"(?ms)^only_mutate = \[.*?\]$", f"only_mutate = [{listed}]", text)
    assert n == 1, "pyproject.toml has no [tool.mutmut] only_mutate list"
    (dest / "pyproject.toml").write_text(text)


def equivalents() -> dict[str, str]:
    """Mutant name → why it cannot be told apart from the original."""
    out = {}
    if EQUIVALENTS.exists():
        for line in EQUIVALENTS.read_text().splitlines():
            m = _EQUIV_LINE.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2)
    return out


def results(dest: Path, modules: list[str]) -> dict[str, dict[str, str]]:
    """module path → mutant name → status, from mutmut's ``.meta`` files."""
    out: dict[str, dict[str, str]] = {}
    for module in modules:
        meta = dest / "mutants" / (module + ".meta")
        if not meta.exists():
            out[module] = {}
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[module] = {
            name: STATUS.get(code, "other") if code is not None else "not checked"
            for name, code in codes.items()
        }
    return out


def to_test(
    dest: Path, found: dict[str, dict[str, str]], known: dict[str, str], also: set[str]
) -> list[str]:
    """The mutants this run tests: every one without a verdict that still holds, that is
    all but the killed (or timed out) ones of functions unchanged since (mutmut keeps
    those verdicts), the survivors listed as equivalent of such functions, and the SQL
    letter-case ones (equivalent by rule, whatever the function). A survivor of an
    earlier run is tested again: tests may have been added since. Equivalents cost the
    most (every test that reaches their function runs), so not running them again is
    most of what keeps a run short. ``known``: see ``equivalents``."""
    out = set(also)
    for module, statuses in found.items():
        sql = _sql_lines(dest / module)
        for name, status in statuses.items():
            if status in ("killed", "timeout"):
                continue
            if status == "survived" and name in known:
                continue
            if not _sql_case_only(diff_of(dest, name), sql):
                out.add(name)
    return sorted(out)


def _equivalent(dest: Path, name: str, known: dict[str, str], sql: dict[str, set[int]]) -> bool:
    """A surviving mutant listed as equivalent, or one the SQL-case rule explains."""
    return name in known or _sql_case_only(diff_of(dest, name), sql)


# An SQL statement written in fedgate's code starts with one of these, in capitals.
_SQL_START = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|LOCK|WITH|CREATE|ALTER|DROP|ORDER BY|WHERE|AND|OR)\b"
)


def _sql_lines(source: Path) -> dict[str, set[int]]:
    """Each source line (stripped) that is part of an SQL statement's text → the line
    numbers where it stands; lines holding anything else are left out."""
    text = source.read_text()
    numbers: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        head = node
        if isinstance(node, ast.JoinedStr) and node.values:
            head = node.values[0]
        if (
            isinstance(node, (ast.Constant, ast.JoinedStr))
            and isinstance(head, ast.Constant)
            and isinstance(head.value, str)
            and _SQL_START.match(head.value)
        ):
            numbers.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    out: dict[str, set[int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        out.setdefault(line.strip(), set()).add(number)
    return {line: where for line, where in out.items() if where <= numbers}


def _sql_case_only(diff: str, sql: dict[str, set[int]]) -> bool:
    """Whether the mutant only changes the case of SQL text: equivalent, since SQL
    keywords and unquoted names are case-insensitive in SQLite and PostgreSQL (mutmut
    makes two such mutants of every SQL string; listing each by name would bury the
    real equivalents). Each changed line must be SQL text wherever it occurs."""
    lines = diff.splitlines()
    minus = [line[1:].strip() for line in lines if line.startswith("-")]
    plus = [line[1:].strip() for line in lines if line.startswith("+")]
    return (
        bool(minus)
        and len(minus) == len(plus)
        and all(
            m != p and m.lower() == p.lower() and m in sql for m, p in zip(minus, plus, strict=True)
        )
    )


def diff_of(dest: Path, name: str) -> str:
    """The lines a mutant changes (``-`` original, ``+`` mutated), read from the mutated
    module mutmut wrote (``mutmut show`` per mutant takes a second each: hundreds of
    survivors would take minutes)."""
    module, _, function = name.rpartition(".")
    sources = _mutant_sources(dest / "mutants" / (module.replace(".", "/") + ".py"))
    base = function.rpartition("__mutmut_")[0]
    mutated, original = sources.get(function), sources.get(base + "__mutmut_orig")
    if mutated is None or original is None:
        return ""
    lines = difflib.unified_diff(original[1:], mutated[1:], lineterm="", n=0)
    changed = [ln for ln in lines if ln.startswith(("+", "-"))]
    return "\n".join(ln for ln in changed if not ln.startswith(("+++", "---")))[:600]


@functools.cache
def _mutant_sources(path: Path) -> dict[str, list[str]]:
    """Function name → its source lines (the ``def`` line first), for every function
    of a module mutmut wrote."""
    if not path.exists():
        return {}
    text = path.read_text()
    lines = text.splitlines()
    out = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            out[node.name] = lines[node.lineno - 1 : node.end_lineno]
    return out


def report(
    dest: Path,
    modules: list[str],
    seconds: float,
    children: int,
    out: Path,
    diffs: bool = True,
) -> tuple[int, int, int]:
    """Write the report; return (survivors not listed as equivalent, listed ones that
    are no longer survivors, mutants no test ran against: "no tests" or "not checked")."""
    found = results(dest, modules)
    known = equivalents()
    rows, unexplained, stale = [], [], []
    totals: Counter[str] = Counter()
    for module in modules:
        counts: Counter[str] = Counter()
        sql = _sql_lines(dest / module)
        for name, status in sorted(found[module].items()):
            if status == "survived" and _equivalent(dest, name, known, sql):
                status = "equivalent"
            elif status == "not checked" and _sql_case_only(diff_of(dest, name), sql):
                status = "equivalent"  # never run: see to_test
            elif status == "survived":
                unexplained.append((module, name))
            elif name in known and status == "killed":
                stale.append(name)
            counts[status if status in COLUMNS else "other"] += 1
        totals.update(counts)
        rows.append((module, counts))
    lines = [
        "# Mutation report",
        "",
        f"`make mutation` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{seconds / 60:.1f} min with {children} worker(s), mutmut "
        f"{_mutmut_version()}. Equivalent mutants: docs/mutation-equivalents.md.",
        "",
        "| module | mutants | " + " | ".join(COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for module, counts in [*rows, ("**all**", totals)]:
        cells = " | ".join(str(counts.get(c, 0)) for c in COLUMNS)
        lines.append(f"| {module} | {sum(counts.values())} | {cells} |")
    lines += ["", f"## Survivors not listed as equivalent ({len(unexplained)})", ""]
    for _module, name in unexplained:
        lines += [f"- `{name}`"]
        if diffs:
            lines += ["", "```diff", diff_of(dest, name), "```", ""]
    if stale:
        lines += ["## Listed as equivalent but killed now (remove them)", ""]
        lines += [f"- `{name}`" for name in stale]
    out.write_text("\n".join(lines) + "\n")
    return len(unexplained), len(stale), totals["no tests"] + totals["not checked"]


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


# A name no mutant has: mutmut makes the mutants (forgetting the verdicts of functions
# that changed) and records which tests reach each function, then stops, finding
# nothing to run. The driver then names what to test (to_test).
_NO_MUTANT = "fedgate.prepare_only__mutmut_0"
_NOTHING_MATCHES = "Filtered for specific mutants, but nothing matches"


def prepare(command: list[str], work: Path, env: dict[str, str]) -> bool:
    """mutmut's first steps (see _NO_MUTANT); whether they went through."""
    done = subprocess.run(
        [*command, _NO_MUTANT], cwd=work, env=env, capture_output=True, text=True, check=False
    )
    _mutant_sources.cache_clear()  # mutmut wrote the mutated modules again
    if _NOTHING_MATCHES in done.stdout + done.stderr:
        return True
    print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
    print("mutmut could not make the mutants or record the tests", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--only", nargs="*", help="module paths to mutate (default: all)")
    parser.add_argument("--report", default=str(REPO / "docs" / "mutation-report.md"))
    parser.add_argument("--no-run", action="store_true", help="report on the last run")
    parser.add_argument("--work", default=str(WORK), help="where the copy and results live")
    parser.add_argument("--no-diffs", action="store_true", help="name survivors, no diffs")
    parser.add_argument(
        "--worktree", action="store_true", help="mutate the working tree, not the last commit"
    )
    parser.add_argument("--also", nargs="*", default=[], help="mutant names to test in any case")
    args = parser.parse_args(argv)
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    modules = list(args.only or config["only_mutate"])
    work = Path(args.work)
    started = time.monotonic()
    if not args.no_run:
        copy_tree(work, args.worktree)
        if args.only:
            set_only(work, modules)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        # The token tests run on SQLite and PostgreSQL: the copy's tests use this
        # checkout's cluster (tests/postgres.py), left running for the next run.
        subprocess.run(["bash", str(REPO / "scripts/testbeds/postgres.sh"), "start"], check=True)
        env["FEDGATE_TEST_PG_URL"] = PG_URL
        command = [str(MUTMUT), "run", "--max-children", str(args.children)]
        print("making the mutants, recording which tests reach each function (minutes)")
        if not prepare(command, work, env):
            return 2
        names = to_test(work, results(work, modules), equivalents(), set(args.also))
        print(f"testing {len(names)} mutant(s); the others keep their verdict")
        if names:
            run = subprocess.run([*command, *names], cwd=work, env=env, check=False)
            _mutant_sources.cache_clear()  # written again by this run
            if run.returncode not in (0, 1):
                print(f"mutmut run failed ({run.returncode})", file=sys.stderr)
                return run.returncode
    seconds = time.monotonic() - started
    missing = [m for m in modules if not (work / "mutants" / (m + ".meta")).exists()]
    if missing:
        print(f"no mutmut results for {', '.join(missing)} (see the output above)")
        return 2
    unexplained, stale, unchecked = report(
        work, modules, seconds, args.children, Path(args.report), diffs=not args.no_diffs
    )
    print(
        f"report: {args.report}; {unexplained} unexplained survivor(s), {stale} stale, "
        f"{unchecked} no test ran against"
    )
    # A mutant no test ran against is as alive as a survivor: the run proves nothing of it.
    return 1 if unexplained or unchecked else 0


if __name__ == "__main__":
    sys.exit(main())
