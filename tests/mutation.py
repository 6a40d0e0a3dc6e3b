"""``make mutation``: mutmut 3 over the security- and data-critical modules, with a report.

Runs in a copy of the working tree under ``build/mutation/`` (mutmut writes its mutated
sources and results into ``mutants/`` beside the code it mutates; the copy keeps the
shared checkout clean and keeps results between runs, so a second run re-tests only the
functions that changed). Configuration: ``[tool.mutmut]`` in pyproject.toml (which
modules, which tests). mutmut records which tests reach each function and runs only
those against that function's mutants, fastest first, stopping at the first failure.

    python -m tests.mutation [--children N] [--report docs/mutation-report.md]
    python -m tests.mutation --only tokens/scopes.py tokens/service.py   # a subset

Writes the report (killed, survived, timed out, no tests, per module; survivors not in
docs/mutation-equivalents.md listed with their diff) and exits 1 when a survivor is
neither killed nor listed as equivalent.
"""

from __future__ import annotations

import argparse
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


def diff_of(dest: Path, name: str) -> str:
    shown = subprocess.run(
        [str(MUTMUT), "show", name], cwd=dest, capture_output=True, text=True, check=False
    )
    lines = [ln for ln in shown.stdout.splitlines() if ln.startswith(("+", "-"))]
    return "\n".join(ln for ln in lines if not ln.startswith(("+++", "---")))[:600]


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
        for name, status in sorted(found[module].items()):
            if status == "survived" and name in known:
                status = "equivalent"
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
        run = subprocess.run(
            [str(MUTMUT), "run", "--max-children", str(args.children)],
            cwd=work,
            env=env,
            check=False,
        )
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
