"""The one rule ``make mutation`` applies by itself (tests/mutation.py): a mutant that only
changes the letter case of SQL text is equivalent; nothing else is, however alike."""

from __future__ import annotations

from pathlib import Path

from tests.mutation import _sql_case_only, _sql_lines, to_test

SOURCE = """
def put(tx, user, key, admin):
    tx.execute(
        "INSERT INTO vault (user_name, key) VALUES (?, ?) "
        "ON CONFLICT (user_name) DO UPDATE SET "
        "key = excluded.key",
        (user, key),
    )
    tx.execute(f"SELECT key_id FROM {TABLE} WHERE user_name = ?", (user,))
    raise ValueError("user must be a non-empty string")


MESSAGES = [
    "key = excluded.key",
]
"""


def _sql(tmp_path: Path) -> dict[str, set[int]]:
    module = tmp_path / "module.py"
    module.write_text(SOURCE)
    return _sql_lines(module)


def test_case_of_sql_text_is_equivalent(tmp_path: Path) -> None:
    sql = _sql(tmp_path)
    first = '-        "INSERT INTO vault (user_name, key) VALUES (?, ?) "\n'
    first += '+        "insert into vault (user_name, key) values (?, ?) "'
    assert _sql_case_only(first, sql)
    fstring = '-    tx.execute(f"SELECT key_id FROM {TABLE} WHERE user_name = ?", (user,))\n'
    fstring += '+    tx.execute(f"select key_id from {TABLE} where user_name = ?", (user,))'
    assert _sql_case_only(fstring, sql)


def test_anything_else_is_not(tmp_path: Path) -> None:
    sql = _sql(tmp_path)
    # The same words outside SQL: a message (case is what the user reads).
    message = '-    raise ValueError("user must be a non-empty string")\n'
    message += '+    raise ValueError("USER MUST BE A NON-EMPTY STRING")'
    assert not _sql_case_only(message, sql)
    # A line that is SQL in one place and a plain string in another.
    both = '-        "key = excluded.key",\n+        "KEY = EXCLUDED.KEY",'
    assert not _sql_case_only(both, sql)
    # SQL text changed beyond its case, or a change on a line of SQL's arguments.
    wrapped = '-        "ON CONFLICT (user_name) DO UPDATE SET "\n'
    wrapped += '+        "XXON CONFLICT (user_name) DO UPDATE SET XX"'
    assert not _sql_case_only(wrapped, sql)
    args = "-        (user, key),\n+        (None, key),"
    assert not _sql_case_only(args, sql)
    assert not _sql_case_only("", sql)


MUTATED = """
def x_put__mutmut_orig(tx, user, key, admin):
    tx.execute(f"SELECT key_id FROM {TABLE} WHERE user_name = ?", (user,))

def x_put__mutmut_1(tx, user, key, admin):
    tx.execute(f"select key_id from {TABLE} where user_name = ?", (user,))

def x_put__mutmut_2(tx, user, key, admin):
    tx.execute(f"SELECT key_id FROM {TABLE} WHERE user_name = ?", (None,))
"""


def test_a_run_tests_what_has_no_verdict_that_holds(tmp_path: Path) -> None:
    """Killed and timed-out mutants keep their verdict; a survivor listed as equivalent
    is not run again, nor an SQL-case one; everything else is, and ``also`` in any case."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(SOURCE)
    (tmp_path / "mutants" / "pkg").mkdir(parents=True)
    (tmp_path / "mutants" / "pkg" / "mod.py").write_text(MUTATED)
    statuses = {
        "pkg.mod.x_put__mutmut_1": "not checked",  # SQL case only
        "pkg.mod.x_put__mutmut_2": "not checked",
        "pkg.mod.x_put__mutmut_3": "killed",
        "pkg.mod.x_put__mutmut_4": "timeout",
        "pkg.mod.x_put__mutmut_5": "survived",  # listed
        "pkg.mod.x_put__mutmut_6": "survived",
        "pkg.mod.x_put__mutmut_7": "no tests",
        "pkg.mod.x_put__mutmut_8": "killed",  # asked for
    }
    known = {"pkg.mod.x_put__mutmut_5": "why", "pkg.mod.x_put__mutmut_2": "changed since"}
    names = to_test(tmp_path, {"pkg/mod.py": statuses}, known, {"pkg.mod.x_put__mutmut_8"})
    assert names == [f"pkg.mod.x_put__mutmut_{n}" for n in (2, 6, 7, 8)]
