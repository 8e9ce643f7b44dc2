"""deploy/ renders for every overlay, validates strictly against the Kubernetes 1.30 schemas,
keeps the properties the design depends on, and its Dockerfile, alert rules and dashboard
pass their linters. Offline: kubectl kustomize, kubernetes-validate, hadolint, promtool."""

from __future__ import annotations

import json
import subprocess
import tomllib

import pytest
import yaml

from deploy_lib import DEPLOY, K8S_VERSION, OVERLAYS, metric_names, objects, one, render, tool

EXPECTED_REPLICAS = {"dev": 1, "prod": 3}


def test_overlays_exist() -> None:
    assert set(OVERLAYS) == set(EXPECTED_REPLICAS), OVERLAYS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_strictly(overlay: str, tmp_path) -> None:
    f = tmp_path / f"{overlay}.yaml"
    f.write_text(render(overlay))
    out = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(f)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubernetes-validate {overlay}:\n{out.stdout}\n{out.stderr}"
    # The only kind without a built-in schema is the operator's ServiceMonitor (checked below).
    unchecked = [l for l in (out.stdout + out.stderr).splitlines()
                 if "Couldn't find schema" in l and "ServiceMonitor" not in l]
    assert not unchecked, unchecked


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_statefulset_properties(overlay: str) -> None:
    objs = objects(overlay)
    sts = one(objs, "StatefulSet", "herald")
    spec = sts["spec"]
    assert spec["replicas"] == EXPECTED_REPLICAS[overlay]
    assert spec["podManagementPolicy"] == "OrderedReady"
    pod = spec["template"]["spec"]
    c = one([dict(x, kind="c", metadata={"name": x["name"]}) for x in pod["containers"]],
            "c", "herald")
    env = {e["name"]: e for e in c["env"]}
    # StatefulSet mode lives in herald itself: the headless Service's name, nothing else.
    headless = one(objs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert env["HERALD_PEERS_FROM_DNS"]["value"].startswith(spec["serviceName"] + ".")
    assert env["HERALD_BIND"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    for secret_env in ("HERALD_ADMIN_TOKEN", "HERALD_CLUSTER_TOKEN"):
        assert "secretKeyRef" in env[secret_env]["valueFrom"], secret_env
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The grace period covers the preStop sleep plus the node's own shutdown grace.
    cm = next(o for o in objs if o["kind"] == "ConfigMap"
              and o["metadata"]["name"].startswith("herald-config"))
    toml = tomllib.loads(cm["data"]["herald.toml"])
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + toml["shutdown_grace_ms"] / 1000 + 5
    # The data dir is the claim template's volume.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts[toml["data_dir"]] == spec["volumeClaimTemplates"][0]["metadata"]["name"]
    # Non-root, read-only root filesystem; resources set.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    ann = spec["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9470"
    if EXPECTED_REPLICAS[overlay] > 1:
        anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_pdb_networkpolicy(overlay: str) -> None:
    objs = objects(overlay)
    ports = lambda name: {p["port"] for p in one(objs, "Service", name)["spec"]["ports"]}
    assert ports("herald-c2s") == {5222, 5223}
    assert ports("herald-s2s") == {5269}
    # SIP over every pod (non-routing nodes relay to the routing node), source IPs kept for
    # the ACL.
    sip = one(objs, "Service", "herald-sip")["spec"]
    assert ports("herald-sip") == {5060, 5061}
    assert sip["externalTrafficPolicy"] == "Local" and "publishNotReadyAddresses" not in sip
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    np = one(objs, "NetworkPolicy", "herald")
    open_ports = {p["port"] for rule in np["spec"]["ingress"] if "from" not in rule
                  for p in rule["ports"]}
    assert {5222, 5223, 5269, 5060, 5061} <= open_ports and 7470 not in open_ports
    assert 7471 not in open_ports


def test_servicemonitor_selects_the_metrics_service() -> None:
    objs = objects("prod")
    sm = one(objs, "ServiceMonitor", "herald")
    svc = one(objs, "Service", "herald-metrics")
    sel = sm["spec"]["selector"]["matchLabels"]
    assert all(svc["metadata"]["labels"].get(k) == v for k, v in sel.items()), (sel, svc)
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in svc["spec"]["ports"]}
    assert svc["metadata"]["labels"][sm["spec"]["jobLabel"]] == "herald"


def test_dockerfile_lints_clean() -> None:
    out = subprocess.run([tool("hadolint"), str(DEPLOY / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert "distroless" in text and "USER 65532" in text
    assert 'ENTRYPOINT ["/usr/local/bin/herald"]' in text


def test_alert_rules_check_and_unit_tests() -> None:
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]):
        out = subprocess.run([tool("promtool"), *args], cwd=DEPLOY / "prometheus",
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}\n{out.stderr}"


def test_dashboard_parses_and_every_panel_queries() -> None:
    d = json.loads((DEPLOY / "grafana" / "herald.json").read_text())
    assert d["panels"]
    for p in d["panels"]:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert metric_names(t["expr"]), (p["title"], t["expr"])


def test_alert_rules_name_only_known_families() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert all(metric_names(e) for e in exprs)


def test_ci_builds_the_binary_the_image_holds() -> None:
    """scripts/test runs the Dockerfile's own cargo command (CI cannot pull base images)."""
    cmd = "cargo build --release --locked -p herald-node --bin herald"
    assert cmd in (DEPLOY / "Dockerfile").read_text()
    assert cmd in (DEPLOY.parent / "scripts" / "test").read_text()
