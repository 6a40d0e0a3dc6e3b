"""`make run` on a second start: no pip, straight to `fedgate serve` (the Makefile's stamp
is newer than pyproject.toml); a changed pyproject.toml installs again. Run with
``make -n`` (print, do not execute) in a scratch folder that has the files make compares."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def planned(folder: Path) -> str:
    res = subprocess.run(
        ["make", "-n", "-s", "-f", str(REPO / "Makefile"), "-C", str(folder), "run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_make_run_installs_only_when_pyproject_changes(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    os.utime(tmp_path / "pyproject.toml", (1_000_000, 1_000_000))
    first = planned(tmp_path)
    assert "pip install" in first and "fedgate serve" in first
    stamp = tmp_path / ".venv" / ".installed-all"
    assert str(stamp.relative_to(tmp_path)) in first  # the stamp is what is compared
    stamp.write_text("")
    os.utime(stamp, (2_000_000, 2_000_000))  # explicit times: "now" twice can be one clock tick
    second = planned(tmp_path)
    assert "pip" not in second
    assert second.strip().splitlines() == [".venv/bin/fedgate serve --host 127.0.0.1 --port 8000"]
    os.utime(tmp_path / "pyproject.toml", (3_000_000, 3_000_000))  # edited: newer than the stamp
    assert "pip install" in planned(tmp_path)
