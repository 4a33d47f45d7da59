"""deploy/kubernetes: valid Kubernetes objects (checked offline against the schemas that
kubernetes-validate bundles, strict: no unknown fields) that fit dcounter-node's flags."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate.utils as kubernetes_validate
import pytest
import yaml

from dcounter_node._cli import settings_from_args
from dcounter_node._settings import load_config_file
from dcounter_protocol import parse_address

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
#: The settings file the image runs with (see the Dockerfile).
IMAGE_CONFIG = REPO / "deploy" / "docker" / "node.toml"

#: The oldest Kubernetes version the manifests promise to work with.
OLDEST = "1.27"


def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return found


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        d
        for d in documents()
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"one {kind} {name or ''}: found {len(matches)}"
    return matches[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("StatefulSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def expanded_args(values: dict[str, str]) -> list[str]:
    """The container's args with each $(VAR) replaced as the kubelet would."""
    names = {env["name"] for env in container()["env"]}

    def substitute(match: re.Match[str]) -> str:
        assert match.group(1) in names, f"$({match.group(1)}) is not in the container's env"
        return values[match.group(1)]

    return [re.sub(r"\$\(([A-Z_]+)\)", substitute, str(arg)) for arg in container()["args"]]


@pytest.mark.parametrize("version", [OLDEST, kubernetes_validate.latest_version()])
def test_every_object_is_valid_for_kubernetes(version: str) -> None:
    kinds = []
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)
        kinds.append(document["kind"])
    assert sorted(kinds) == ["Service", "Service", "StatefulSet"]


def test_the_validator_refuses_a_misspelt_field() -> None:
    broken = one("StatefulSet")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_the_args_are_dcounter_node_flags_that_join_through_the_headless_service() -> None:
    headless = one("Service", "dcounter-gossip")
    assert headless["spec"]["clusterIP"] == "None"
    # Starting pods must find each other before any is ready.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    statefulset = one("StatefulSet")
    assert statefulset["spec"]["serviceName"] == "dcounter-gossip"

    args = expanded_args({"POD_NAME": "dcounter-0", "POD_NAMESPACE": "prod"})
    settings = settings_from_args(["--config", str(IMAGE_CONFIG), *args])

    assert settings.join_dns == "dcounter-gossip.prod.svc.cluster.local:7946"
    assert settings.advertise == "dcounter-0.dcounter-gossip.prod.svc.cluster.local:7946"
    gossip_port = parse_address(settings.listen)[1]
    assert parse_address(settings.join_dns)[1] == gossip_port
    assert parse_address(settings.advertise)[1] == gossip_port
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"gossip": gossip_port, "http": parse_address(settings.http)[1]}
    assert headless["spec"]["ports"][0]["port"] == gossip_port


def test_the_pod_is_ready_on_health_and_keeps_its_data_on_a_claim() -> None:
    node = container()
    assert node["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    settings = load_config_file(IMAGE_CONFIG).settings(None)
    mounts = {m["name"]: m["mountPath"] for m in node["volumeMounts"]}
    claims = one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert mounts["data"] == settings.data_dir
    assert set(mounts) - {"data"} == {v["name"] for v in pod_spec()["volumes"]}
    client = one("Service", "dcounter")
    assert client["spec"]["ports"][0]["targetPort"] == "http"


def test_the_grace_period_leaves_time_for_the_leave_after_the_pre_stop_hook() -> None:
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    settings = settings_from_args(
        ["--config", str(IMAGE_CONFIG), *expanded_args({"POD_NAME": "p", "POD_NAMESPACE": "n"})]
    )
    # The leave waits at most max(probe interval, 0.5 s); closing the node takes ~1 s more.
    needed = float(command[1]) + max(settings.probe_interval, 0.5) + 1.0
    assert pod["terminationGracePeriodSeconds"] >= 3 * needed
