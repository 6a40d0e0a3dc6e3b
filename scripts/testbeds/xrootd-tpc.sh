#!/usr/bin/env bash
# The HTTP third-party-copy XRootD (TLS + XrdHttpTPC): xrootd.sh's "tpc" flavour.
#
#   xrootd-tpc.sh install|start|stop|status|path|ca
exec env XROOTD_FLAVOUR=tpc bash "$(dirname "${BASH_SOURCE[0]}")/xrootd.sh" "$@"
