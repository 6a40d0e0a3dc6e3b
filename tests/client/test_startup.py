"""A job runs ``fedgate get`` once per input, thousands of times: the job-side commands
must not load the server (its configuration, the vault, JOSE, starlette), which cost
0.15 s of every start. Checked in a fresh interpreter, as a job starts it."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("gateway.config", "tokens", "joserfc", "cryptography", "starlette", "uvicorn")


def test_the_job_side_commands_do_not_load_the_server() -> None:
    code = (
        "import json, sys\n"
        "from gateway.cli import build_parser\n"
        "args = build_parser().parse_args(['get', 'fedgate://m/p', '/tmp/x'])\n"
        "print(json.dumps(sorted(m for m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded = set(json.loads(out))
    assert "gateway.client.cli" in loaded  # the command was built
    assert sorted(m for m in loaded if m.split(".")[0] in SERVER_ONLY or m in SERVER_ONLY) == []
