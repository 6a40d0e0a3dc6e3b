#!/usr/bin/env bash
# gfal2's PyPI package does not build against Debian's libgfal2; expose Debian's compiled
# module (python3-gfal2) to the venv instead. Only valid when the venv's Python is 3.11,
# the version Debian 12 built it for.
set -euo pipefail
VENV=${1:-.venv}
so=$(ls /usr/lib/python3/dist-packages/gfal2.cpython-311-*.so 2>/dev/null | head -1 || true)
if [ -z "$so" ]; then
  echo "gfal2-venv: python3-gfal2 is not installed (apt-get install python3-gfal2)" >&2
  exit 1
fi
ver=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$ver" != "3.11" ]; then
  echo "gfal2-venv: the venv runs Python $ver; Debian's gfal2 module needs 3.11" >&2
  exit 1
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$VENV/gfal2-debian"
ln -sf "$so" "$VENV/gfal2-debian/$(basename "$so")"
echo "$(cd "$VENV/gfal2-debian" && pwd)" > "$site/gfal2-debian.pth"
"$VENV/bin/python" -c 'import gfal2; print("gfal2", gfal2.get_version())'
