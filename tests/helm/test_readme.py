"""helm/fedgate/README.md's steps, run as written against the rendered manifests.

There is no cluster here, so ``kubectl`` and ``helm install`` are small shims on PATH:
``kubectl create secret generic`` keeps the literals in a folder, ``helm install``
renders the chart with the real helm (same arguments), and the rendered Deployment is run
as a pod would be: its init container, then its container (``fedgate serve``) as a real
process with the rendered env, its volumes as folders (the PersistentVolumeClaim one
outlives the "pod"; Secrets and the ConfigMap as the kubelet writes them) and its probes.
``kubectl exec deploy/… -- cmd`` runs ``cmd`` in that pod's environment.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helm.helpers import CHART, HELM, REPO
from tests.scale.procs import free_port

README = CHART / "README.md"
VENV_BIN = Path(sys.executable).parent

KUBECTL = r"""#!/usr/bin/env bash
# kubectl, as far as the chart README needs it.
set -euo pipefail
K=$KUBE_SHIM_DIR
if [ "$1 $2 $3" = "create secret generic" ]; then
  name=$4; shift 4
  mkdir -p "$K/secrets/$name"
  for arg in "$@"; do
    kv=${arg#--from-literal=}
    printf '%s' "${kv#*=}" > "$K/secrets/$name/${kv%%=*}"
  done
elif [ "$1 $2" = "get secret" ]; then
  # kubectl get secret NAME -o jsonpath='{.data.KEY}'
  key=${5#jsonpath=\{.data.}; key=${key%\}}
  base64 -w0 < "$K/secrets/$3/$key"
elif [ "$1" = "exec" ]; then
  pod=${2#deploy/}; shift 3  # exec deploy/NAME --
  vars=()
  while IFS= read -r line; do vars+=("$line"); done < "$K/pods/$pod.env"
  env -i "${vars[@]}" "$@"
else
  echo "kubectl shim: unsupported: $*" >&2; exit 2
fi
"""

HELM_SHIM = r"""#!/usr/bin/env bash
# helm install REL CHART ARGS...: render with the real helm, as install would.
set -euo pipefail
[ "$1" = "install" ] || { echo "helm shim: only install" >&2; exit 2; }
shift
"$REAL_HELM" template "$@" --namespace default > "$KUBE_SHIM_DIR/rendered-$1.yaml"
"""

MOUNTS = """[mounts.data]
type = "posix"
root = "/var/lib/fedgate/data"
create = true

[mounts.archive]
type = "s3"
endpoint_url = "http://127.0.0.1:{dead}"
bucket = "gone"
credential_source = "service"
access_key = "a"
secret_key = "b"
max_attempts = 1
connect_timeout = 1
"""


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def commands(block: str) -> list[str]:
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


@dataclass
class Pod:
    """The rendered Deployment's pod, played by local processes."""

    root: Path
    objects: list[dict[str, Any]]
    secrets: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "pod.log"

    def kind(self, kind: str) -> dict[str, Any]:
        (obj,) = [o for o in self.objects if o["kind"] == kind]
        return obj

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.kind("Deployment")["spec"]["template"]["spec"])

    def start(self) -> None:
        spec = self.spec
        paths = self._volumes(spec)
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: paths[m["name"]] for m in container["volumeMounts"]}

        pattern = re.compile("|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True)))

        def local(value: str) -> str:  # one pass: a mapped path is not mapped again
            return pattern.sub(lambda m: str(mounts[m.group(0)]), value)

        # The ConfigMap's files, with the pod's paths mapped onto the folders.
        for path in paths.values():
            for f in path.glob("*.toml"):
                f.write_text(local(f.read_text()))
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.root)}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = local(str(e["value"]))
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = (self.secrets / ref["name"] / ref["key"]).read_text()
        env["FEDGATE_HOST"] = "127.0.0.1"
        env["FEDGATE_PORT"] = str(self.port)
        self.env = env
        for init in spec.get("initContainers", []):
            res = subprocess.run(
                [str(VENV_BIN / "fedgate"), *init["args"]], env=env, capture_output=True
            )
            assert res.returncode == 0, res.stderr
        out = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "fedgate"), *container["args"]],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        probe = container["readinessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(self.url + probe, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the pod never became ready: " + self.log.read_text()[-2000:])
        name = self.kind("Deployment")["metadata"]["name"]
        (self.root.parent / "pods" / f"{name}.env").write_text(
            "".join(f"{k}={v}\n" for k, v in env.items())
        )

    def _volumes(self, spec: dict[str, Any]) -> dict[str, Path]:
        pod = self.root / "pod"
        shutil.rmtree(pod, ignore_errors=True)  # a new pod: fresh emptyDirs
        paths: dict[str, Path] = {}
        for v in spec["volumes"]:
            if "persistentVolumeClaim" in v:
                path = self.root / "pvc" / v["persistentVolumeClaim"]["claimName"]
            else:
                path = pod / v["name"]
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                cm = self.kind("ConfigMap")
                for key, text in cm["data"].items():
                    (path / key).write_text(text)
            if "secret" in v:
                source = self.secrets / v["secret"]["secretName"]
                for item in v["secret"]["items"]:
                    shutil.copy(source / item["key"], path / item["path"])
            paths[v["name"]] = path
        return paths

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        (self.root.parent / "pods").mkdir(exist_ok=True)
        for f in (self.root.parent / "pods").glob("*.env"):
            f.unlink()


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    script = REPO / "scripts" / "testbeds" / "helm-tools.sh"
    subprocess.run(["bash", str(script), "start"], check=True, capture_output=True, timeout=600)


@pytest.fixture
def shims(tmp_path: Path) -> Iterator[dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("kubectl", KUBECTL), ("helm", HELM_SHIM)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "pods").mkdir()
    (tmp_path / "helm").symlink_to(REPO / "helm")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    (tmp_path / "my-mounts.toml").write_text(MOUNTS.format(dead=dead))
    yield {
        "PATH": f"{bin_dir}:{VENV_BIN}:/usr/bin:/bin",
        "KUBE_SHIM_DIR": str(tmp_path),
        "REAL_HELM": str(HELM),
        "HOME": str(tmp_path),
    }


def run(command: str, env: dict[str, str], cwd: Path) -> str:
    res = subprocess.run(
        ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"{command}: {res.stderr}"
    return res.stdout


def play(block: str, shims: dict[str, str], cwd: Path) -> tuple[Pod | None, list[str]]:
    """Run a README block; the pod starts after `helm install`, as it would."""
    pod: Pod | None = None
    outputs = []
    for command in commands(block):
        outputs.append(run(command, shims, cwd))
        if command.startswith("helm install"):
            rendered = cwd / f"rendered-{shlex.split(command)[2]}.yaml"
            objects = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
            pod = Pod(cwd / "cluster", objects, cwd / "secrets")
            pod.root.mkdir(exist_ok=True)
            pod.start()
    return pod, outputs


def wait_for_metric(url: str, line: str, probe: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        httpx.get(url + probe, timeout=30)  # the kubelet's probe refreshes the gauge
        if line in httpx.get(url + "/metrics", timeout=30).text:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {line} in /metrics")


def assert_no_secret_in(path: Path, *secrets: str) -> None:
    text = path.read_text()
    for secret in secrets:
        assert secret not in text


def test_one_pod_embedded_state(shims: dict[str, str], tmp_path: Path) -> None:
    block = readme_blocks()[0]
    assert "helm install data helm/fedgate --set-file mounts=my-mounts.toml" in block
    pod, outputs = play(block, shims, tmp_path)
    assert pod is not None
    try:
        admin = outputs[-1].strip()  # `fedgate user add admin --admin` in the pod
        assert re.fullmatch(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]+", admin), admin
        headers = {"apikey": admin}
        r = httpx.put(pod.url + "/rest/path/data/kept.txt", content=b"kept", headers=headers)
        assert r.status_code in (200, 201), r.text
        # A backend down: the pod stays ready; /readyz and the gauge say which mount.
        probe = pod.spec["containers"][0]["readinessProbe"]["httpGet"]["path"]
        assert httpx.get(pod.url + probe, timeout=30).status_code == 200
        ready = httpx.get(pod.url + "/readyz", timeout=30)
        assert ready.status_code == 503 and not ready.json()["mounts"]["archive"]["ok"]
        wait_for_metric(pod.url, 'fedgate_mount_up{mount="archive"} 0.0', probe)
        wait_for_metric(pod.url, 'fedgate_mount_up{mount="data"} 1.0', probe)
        key_file = tmp_path / "cluster" / "pvc" / "data-fedgate" / "state" / "master.key"
        master = key_file.read_text()
        # The pod is replaced (an upgrade, a node drain): state and key are on the claim.
        pod.stop()
        pod.start()
        assert key_file.read_text() == master
        r = httpx.get(
            pod.url + "/rest/path/data/kept.txt", params={"action": "content"}, headers=headers
        )
        assert r.status_code == 200 and r.content == b"kept"
    finally:
        pod.stop()
    assert_no_secret_in(pod.log, admin, master.strip())


def test_replicas_block_renders(shims: dict[str, str], tmp_path: Path) -> None:
    """The PostgreSQL block: its Secrets and its install, rendered (no database here to
    run the pods against: tests/scale/test_replicas.py runs replicas on PostgreSQL)."""
    block = readme_blocks()[1]
    for command in commands(block):
        if not command.startswith("kubectl exec"):
            run(command, shims, tmp_path)
    objects = [o for o in yaml.safe_load_all((tmp_path / "rendered-data.yaml").read_text()) if o]
    dep = next(o for o in objects if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 3
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FEDGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "fedgate-db"
    master = (tmp_path / "secrets" / "fedgate-master" / "master-key").read_text()
    assert len(master) == 44  # `fedgate vault genkey` ran: base64 of 32 bytes
    assert not [o for o in objects if o["kind"] in ("Secret", "PersistentVolumeClaim")]


def test_first_admin_from_a_secret(shims: dict[str, str], tmp_path: Path) -> None:
    block = readme_blocks()[2]
    pod, outputs = play(block, shims, tmp_path)
    assert pod is not None
    try:
        admin = outputs[-1].strip()  # what `kubectl get secret … | base64 -d` printed
        assert admin == (tmp_path / "secrets" / "fedgate-admin" / "api-key").read_text()
        r = httpx.get(pod.url + "/rest/user/externalKeys", headers={"apikey": admin})
        assert r.status_code == 200, r.text
        users = subprocess.run(
            [str(VENV_BIN / "fedgate"), "user", "list"], env=pod.env, capture_output=True, text=True
        )
        assert users.stdout.split() == ["admin", "(admin)"]
    finally:
        pod.stop()
    assert_no_secret_in(pod.log, admin)
