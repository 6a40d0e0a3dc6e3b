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

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fedgate"
TOOLS = REPO / ".testbeds" / "helm-tools"
HELM = TOOLS / "bin" / "helm"
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
        "ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount",
    ]  # fmt: skip
    dep = by_kind(objects, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 1
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    (gw,) = spec["containers"]
    assert gw["securityContext"]["readOnlyRootFilesystem"] is True
    assert gw["securityContext"]["allowPrivilegeEscalation"] is False
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gw["args"] == ["serve", "--graceful-timeout", "30"]
    assert spec["terminationGracePeriodSeconds"] > 30
    mounts = {m["mountPath"]: m["name"] for m in gw["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/fedgate"]]
    env = {e["name"]: e for e in gw["env"]}
    assert "FEDGATE_DATABASE_URL" not in env  # SQLite in the pod: one replica only
    assert env["FEDGATE_MASTER_KEY_FILE"]["value"] == "/etc/fedgate/secrets/master-key"
    assert volumes["master-key"]["secret"]["secretName"] == "rel-fedgate"
    secret = by_kind(objects, "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(secret["data"]) == {"master-key"}
    assert spec["initContainers"][0]["args"] == ["db", "upgrade"]


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
    assert settings.state_dir == "/var/lib/fedgate"
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
