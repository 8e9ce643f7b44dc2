"""A real Prometheus (Debian's) scrapes a real 3-node Herald cluster with the scrape job from
deploy/prometheus/scrape.yml and the rules of deploy/prometheus/alerts.yml; the dashboard's
and the rules' metric names exist in a live /metrics; a killed node's HeraldNodeDown alert
becomes pending or firing.

What differs from a cluster, and only that: kubernetes_sd_configs is replaced by one static
target per node carrying the labels kubernetes_sd would give it (pod IP, pod name, namespace
and the prometheus.io/* annotations of the rendered prod StatefulSet), so the job's
relabel_configs run unchanged; scrape and evaluation intervals are 1 s and HeraldNodeDown's
`for:` is 3 s (test copy of the rules) so that the test takes seconds, not minutes."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from deploy_lib import DEPLOY, metric_names, objects, one, series_family, tool
from harness import Cluster, HarnessError, wait_until
from xmpp_client import Clients, run

PROM_PORT = 9090


def scrape_config(cluster: Cluster, nodes: list[int]) -> dict:
    job = copy.deepcopy(yaml.safe_load((DEPLOY / "prometheus" / "scrape.yml").read_text())
                        ["scrape_configs"][0])
    objs = objects("prod")
    sts = one(objs, "StatefulSet", "herald")
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    namespace = sts["metadata"]["namespace"]
    del job["kubernetes_sd_configs"]
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    targets = []
    for n in nodes:
        labels = {
            "__meta_kubernetes_pod_ip": cluster.ip(n),
            "__meta_kubernetes_pod_name": f"herald-{n - 1}",
            "__meta_kubernetes_namespace": namespace,
        }
        for k, v in ann.items():
            key = k.replace(".", "_").replace("/", "_").replace("-", "_")
            labels[f"__meta_kubernetes_pod_annotation_{key}"] = v
        # The address is set by the job's relabelling from the pod IP and annotation.
        targets.append({"targets": [f"{cluster.ip(n)}:1"], "labels": labels})
    job["static_configs"] = targets
    return job


class Prometheus:
    def __init__(self, workdir: Path, ip: str, config: dict, rules: Path) -> None:
        self.addr = f"{ip}:{PROM_PORT}"
        cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
               "rule_files": [str(rules)], "scrape_configs": [config]}
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [tool("prometheus"), f"--config.file={self.config}",
                 f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address={self.addr}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str) -> dict:
        if self.proc.poll() is not None:
            raise HarnessError(f"prometheus exited ({self.proc.returncode}): "
                               f"{self.log.read_text()[-2000:]}")
        with urllib.request.urlopen(f"http://{self.addr}/api/v1/{path}", timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def cluster(tmp_path: Path):
    c = Cluster(tmp_path / "cluster")
    try:
        c.start_cluster(3)
        yield c
    finally:
        c.stop()


def live_families(cluster: Cluster, node: int) -> set[str]:
    code, text = cluster.http_get(node, "/metrics")
    assert code == 200
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_prometheus_scrapes_the_cluster_and_the_alerts_work(cluster: Cluster,
                                                            tmp_path: Path) -> None:
    assert subprocess.run([tool("promtool"), "--version"], capture_output=True).returncode == 0
    # Some traffic, so that latency histograms have samples.
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")

    async def chat() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, 1)
            b = await xc.login(bob, bpw, 2)
            await a.online()
            await b.online()
            a.chat(bob, "hello")
            await b.expect_messages(alice, 1)
    run(chat())

    # Every metric the dashboard and the rules name is exported by a live node.
    families = live_families(cluster, 1)
    dash = json.loads((DEPLOY / "grafana" / "herald.json").read_text())
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    missing = {(n, e) for e in exprs for n in metric_names(e)
               if n != "up" and series_family(n) not in families}
    assert not missing, f"metric names not in a live /metrics: {sorted(missing)}"

    # The rules, with HeraldNodeDown's `for:` shortened (test copy).
    test_rules = copy.deepcopy(rules)
    for g in test_rules["groups"]:
        for r in g["rules"]:
            if r["alert"] == "HeraldNodeDown":
                r["for"] = "3s"
    rules_file = tmp_path / "alerts.yml"
    rules_file.write_text(yaml.safe_dump(test_rules))
    check = subprocess.run([tool("promtool"), "check", "rules", str(rules_file)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    prom = Prometheus(tmp_path, cluster.ip(250), scrape_config(cluster, [1, 2, 3]), rules_file)
    try:
        def all_up():
            active = prom.api("targets")["activeTargets"]
            up = {t["labels"]["instance"]: t["health"] for t in active}
            return up if len(up) == 3 and set(up.values()) == {"up"} else None
        up = wait_until(all_up, 60, "Prometheus reports the 3 Herald targets up")
        assert set(up) == {"herald-0", "herald-1", "herald-2"}, up
        targets = prom.api("targets")["activeTargets"]
        assert {t["labels"]["job"] for t in targets} == {"herald"}
        assert {t["scrapeUrl"] for t in targets} == {
            f"http://{cluster.ip(n)}:9470/metrics" for n in (1, 2, 3)}

        groups = prom.api("rules")["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        want = {r["alert"] for g in rules["groups"] for r in g["rules"]}
        assert set(loaded) == want, (sorted(loaded), sorted(want))

        def evaluated_ok():
            rs = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
            return all(r.get("health") == "ok" for r in rs) or None
        wait_until(evaluated_ok, 30, "every rule evaluated without error")
        # With the cluster healthy, no alert stays active (HeraldNoLeader may be pending for
        # the evaluations before the first scrape: no series yet is "no leader").
        last: dict = {}

        def quiet():
            last["alerts"] = prom.api("alerts")["alerts"]
            return not last["alerts"]
        try:
            wait_until(quiet, 20, "no active alert on the healthy cluster")
        except HarnessError as exc:
            raise HarnessError(f"{exc}: {last.get('alerts')}") from None

        cluster.kill9(3)

        def node_down():
            for a in prom.api("alerts")["alerts"]:
                if (a["labels"].get("alertname") == "HeraldNodeDown"
                        and a["labels"].get("instance") == "herald-2"):
                    return a["state"]
            return None
        state = wait_until(node_down, 60, "HeraldNodeDown for herald-2 pending or firing")
        assert state in ("pending", "firing")
        wait_until(lambda: node_down() == "firing", 30, "HeraldNodeDown firing after 3 s")
        others = [a["labels"] for a in prom.api("alerts")["alerts"]
                  if a["labels"].get("alertname") == "HeraldNodeDown"
                  and a["labels"].get("instance") != "herald-2"]
        assert not others, others
    finally:
        prom.stop()
