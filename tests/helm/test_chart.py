"""helm/fedgate rendered by a real helm (v3.17.3) with default and custom values; every
object validated against the Kubernetes schemas (kubernetes-validate, strict) or, for the
ServiceMonitor CRD, against prometheus-operator's CRD schema; the rendered fedgate.toml is
loaded by fedgate's own config loader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import config as fedgate_config
from tests.helm.helpers import CHART, HELM, REPO, TOOLS

VALIDATE = TOOLS / "venv" / "bin" / "kubernetes-validate"
K8S_VERSION = "1.31.0"

CUSTOM = [
    "--set", "replicaCount=3",
    "--set", "database.existingSecret=fedgate-db",
    "--set", "database.existingSecretKey=url",
    "--set", "masterKey.existingSecret=fedgate-master",
    "--set", "masterKey.existingSecretKey=keyring",
    "--set", "autoscaling.enabled=true",
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "metrics.serviceMonitor.labels.release=prom",
    "--set", "podDisruptionBudget.enabled=true",
    "--set", "server.workers=2",
    "--set", "server.publicUrl=https://data.example.org",
    "--set", "server.extra.token_max_lifetime=7200",
    "--set-string", "server.extra.platform_name=VIP data",
    "--set", "mountSecrets[0].mount=s3data",
    "--set", "mountSecrets[0].option=secret_key",
    "--set", "mountSecrets[0].secretName=s3-creds",
    "--set", "mountSecrets[0].key=secret",
    "--set-string", "mounts=[mounts.s3data]\ntype = \"s3\"\nbucket = \"vip\"\n",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    script = REPO / "scripts" / "testbeds" / "helm-tools.sh"
    subprocess.run(["bash", str(script), "start"], check=True, capture_output=True, timeout=600)


def render(*args: str) -> list[dict[str, Any]]:
    res = subprocess.run(
        [str(HELM), "template", "rel", str(CHART), "--namespace", "data", *args],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def validate(objects: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    """Validate every object; returns the kinds checked (fails the test on any error)."""
    core = [o for o in objects if not o["apiVersion"].startswith("monitoring.coreos.com/")]
    crds = [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    checked = []
    for i, obj in enumerate(core):
        f = tmp_path / f"obj{i}.yaml"
        f.write_text(yaml.safe_dump(obj))
        res = subprocess.run(
            [str(VALIDATE), "--strict", "-k", K8S_VERSION, str(f)],
            capture_output=True,
            text=True,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0 and "passed for resource" in out, out
        assert "WARN" not in out and "ERROR" not in out, out
        checked.append(obj["kind"])
    if crds:
        res = subprocess.run(
            [
                "node",
                str(Path(__file__).parent / "validate_crd.mjs"),
                str(TOOLS / "node" / "node_modules"),
            ],
            input="\n".join(json.dumps(o) for o in crds),
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        checked += [o["kind"] for o in crds]
    return checked


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def test_helm_lint() -> None:
    for args in ([], CUSTOM):
        res = subprocess.run(
            [str(HELM), "lint", "--strict", str(CHART), *args], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_default_values_render_valid_objects(tmp_path: Path) -> None:
    objects = render()
    assert sorted(validate(objects, tmp_path)) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Service", "ServiceAccount",
    ]  # fmt: skip
    dep = by_kind(objects, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1
    # One pod at a time on the embedded state (a ReadWriteOnce volume, SQLite).
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    (gw,) = spec["containers"]
    assert gw["securityContext"]["readOnlyRootFilesystem"] is True
    assert gw["securityContext"]["allowPrivilegeEscalation"] is False
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Readiness is the gateway's own (database, keyring): a backend down keeps pods in.
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz/gateway"
    assert gw["args"] == ["serve", "--graceful-timeout", "30"]
    assert spec["terminationGracePeriodSeconds"] > 30
    mounts = {m["mountPath"]: m["name"] for m in gw["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The state, and the master key fedgate makes beside it, are on the claim, kept on
    # uninstall.
    pvc = by_kind(objects, "PersistentVolumeClaim")
    assert volumes[mounts["/var/lib/fedgate"]]["persistentVolumeClaim"] == {
        "claimName": pvc["metadata"]["name"]
    }
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = {e["name"]: e for e in gw["env"]}
    assert "FEDGATE_DATABASE_URL" not in env  # SQLite in the pod: one replica only
    assert "FEDGATE_MASTER_KEY_FILE" not in env and "master-key" not in volumes
    assert not [o for o in objects if o["kind"] == "Secret"]  # no key is ever rendered
    # The first admin's key comes from a Secret file or from nobody: never a log.
    assert env["FEDGATE_ADMIN_KEY_FILE"]["value"] == "/etc/fedgate/admin/api-key"
    assert "admin-key" not in volumes
    assert spec["initContainers"][0]["args"] == ["db", "upgrade"]


def test_two_renders_are_identical() -> None:
    """GitOps tools render on every sync: nothing random, nothing looked up."""
    for args in (
        [],
        CUSTOM,
        ["--set", "masterKey.value=" + "A" * 43 + "=", "--set", "database.url=postgresql://x/y"],
        ["--set", "bootstrapAdmin.existingSecret=fedgate-admin"],
    ):
        first, second = (
            subprocess.run(
                [str(HELM), "template", "rel", str(CHART), "--namespace", "data", *args],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for _ in range(2)
        )
        assert first == second, args


def test_a_database_without_a_master_key_secret_is_refused() -> None:
    res = subprocess.run(
        [str(HELM), "template", "rel", str(CHART), "--set", "database.existingSecret=db"],
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0
    assert "masterKey.existingSecret" in res.stderr and "fedgate vault genkey" in res.stderr


def test_operator_secrets_are_mounted_as_files_that_follow_the_secret(tmp_path: Path) -> None:
    objects = render(
        "--set", "masterKey.existingSecret=fedgate-master",
        "--set", "bootstrapAdmin.existingSecret=fedgate-admin",
    )  # fmt: skip
    validate(objects, tmp_path)
    spec = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    (gw,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["admin-key"]["secret"] == {
        "secretName": "fedgate-admin",
        "defaultMode": 0o440,
        "items": [{"key": "api-key", "path": "api-key"}],
    }
    mounts = {m["name"]: m for m in gw["volumeMounts"]}
    # No subPath: the kubelet updates a Secret's files only in a directory mount, and a
    # rotated keyring must reach the running gateways.
    for name, path in (("master-key", "/etc/fedgate/secrets"), ("admin-key", "/etc/fedgate/admin")):
        assert mounts[name]["mountPath"] == path and "subPath" not in mounts[name]
    env = {e["name"]: e for e in gw["env"]}
    assert env["FEDGATE_MASTER_KEY_FILE"]["value"] == "/etc/fedgate/secrets/master-key"
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_custom_values_render_valid_objects(tmp_path: Path) -> None:
    objects = render(*CUSTOM)
    assert sorted(validate(objects, tmp_path)) == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
        "Service", "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip
    # Existing Secrets only: the chart makes none.
    assert not [o for o in objects if o["kind"] == "Secret"]
    dep = by_kind(objects, "Deployment")
    assert "replicas" not in dep["spec"]  # the HPA owns the count
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"  # stateless pods
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    hpa = by_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    spec = dep["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["FEDGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "fedgate-db",
        "key": "url",
    }
    assert env["FEDGATE_MOUNT__S3DATA__SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "secret",
    }
    assert env["FEDGATE_WORKERS"]["value"] == "2"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["master-key"]["secret"]["secretName"] == "fedgate-master"
    assert volumes["master-key"]["secret"]["items"] == [{"key": "keyring", "path": "master-key"}]
    sm = by_kind(objects, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_rendered_config_is_what_fedgate_loads(tmp_path: Path) -> None:
    cm = by_kind(render(*CUSTOM), "ConfigMap")
    path = tmp_path / "fedgate.toml"
    path.write_text(cm["data"]["fedgate.toml"])
    settings = fedgate_config.load(str(path), {"FEDGATE_MOUNT__S3DATA__SECRET_KEY": "from-secret"})
    assert settings.public_url == "https://data.example.org"
    assert settings.token_max_lifetime == 7200
    assert settings.platform_name == "VIP data"
    assert settings.state_dir == "/var/lib/fedgate/state"  # fedgate makes it, and owns it
    (mount,) = settings.mounts
    assert (mount.name, mount.type) == ("s3data", "s3")
    assert mount.options == {"bucket": "vip", "secret_key": "from-secret"}


def test_unsafe_values_are_refused() -> None:
    for args, message in (
        (["--set", "replicaCount=3"], "share their state through PostgreSQL"),
        (["--set", "autoscaling.enabled=true"], "share their state through PostgreSQL"),
        (["--set", "server.workers=0"], "workers must be at least 1"),
    ):
        res = subprocess.run(
            [str(HELM), "template", "rel", str(CHART), *args], capture_output=True, text=True
        )
        assert res.returncode != 0 and message in res.stderr, (args, res.stderr)


def test_the_validators_do_reject_broken_objects(tmp_path: Path) -> None:
    objects = render(*CUSTOM)
    dep = by_kind(objects, "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/"
    with pytest.raises(AssertionError):
        validate([dep], tmp_path)
    sm = by_kind(objects, "ServiceMonitor")
    sm["spec"]["endpoints"][0]["interval"] = "every minute"
    with pytest.raises(AssertionError):
        validate([sm], tmp_path)
