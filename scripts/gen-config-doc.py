#!/usr/bin/env python3
"""Write docs/configuration.md from the configuration's declarations (gateway/config_doc.py).

Run after adding or changing a [server] key (gateway/config.py) or a backend option
(adapters/options.py); ``--check`` exits 1 when the file is stale instead of writing it."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.config_doc import render, undocumented_keys  # noqa: E402


def main() -> int:
    target = REPO / "docs" / "configuration.md"
    missing = undocumented_keys()
    if missing:
        print(f"keys without a doc line: {', '.join(missing)}", file=sys.stderr)
        return 1
    text = render()
    if "--check" in sys.argv[1:]:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run scripts/gen-config-doc.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
