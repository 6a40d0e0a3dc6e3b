#!/usr/bin/env bash
# Debian packages the test backends need: XRootD + gfal2 (grid SE), PostgreSQL, nginx (bench peer),
# davix (a WebDAV client of the door).
set -euo pipefail
PKGS=(curl xrootd-server xrootd-server-plugins xrootd-client xrootd-plugins gfal2 python3-gfal2
      gfal2-plugin-xrootd gfal2-plugin-http gfal2-plugin-file postgresql nginx wrk davix)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The web page's browser tests (tests/ui) drive Debian's chromium through Playwright.
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
fi
