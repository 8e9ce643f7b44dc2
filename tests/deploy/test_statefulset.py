"""The StatefulSet's pods, without Kubernetes: three `herald agent` processes started with
exactly the command line and environment the rendered prod StatefulSet gives pods herald-0..2,
form one cluster by themselves (herald-0 bootstraps, the others join through the headless
Service's names); then a rolling update as Kubernetes does it (SIGTERM in reverse ordinal
order, restart, wait for /readyz before the next) loses no acknowledged config write.
Not checked here: that /readyz is 503 before the c2s listener closes (the agent sets it first
thing on SIGTERM, but without bound sessions the node exits within milliseconds, too fast to
observe reliably from outside). Real XMPP clients (slixmpp) chat through the update: every
message acknowledged by the node it entered arrives once, in order.

What stands in for Kubernetes, and only that:
- the pod IP (downward API status.podIP) is a loopback address 127.A.B.(ordinal+1);
- cluster DNS is a dnsmasq on 127.A.B.53 answering herald-N.<headless service> with those
  addresses; each pod runs in its own mount namespace whose /etc/resolv.conf points at it
  (`unshare --mount`), as a pod's resolv.conf points at the cluster DNS;
- each volumeMount is a directory per pod: the ConfigMap's herald.toml, Secrets made by the
  test (tokens, an openssl CA for node-to-node TLS, a client certificate), the data claim;
  mount paths are rewritten to those directories in the args, env and herald.toml."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deploy_lib import objects, one, tool
from harness import Cluster, wait_until

ADMIN_TOKEN = "sts-admin-token-0123456789"
CLUSTER_TOKEN = "sts-cluster-token-0123456789"


def openssl(*args: str, cwd: Path) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def make_secrets(d: Path) -> dict[str, dict[str, bytes]]:
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=herald test cluster CA", "-keyout", "ca-key.pem",
            "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=example.com", "-keyout", "tls.key", "-out", "tls.crt",
            "-addext", "subjectAltName=DNS:example.com", cwd=d)
    read = lambda n: (d / n).read_bytes()
    return {
        "herald-tokens": {"admin-token": ADMIN_TOKEN.encode(),
                          "cluster-token": CLUSTER_TOKEN.encode()},
        "herald-tls": {"tls.crt": read("tls.crt"), "tls.key": read("tls.key")},
        "herald-cluster-ca": {"tls.crt": read("ca.pem"), "tls.key": read("ca-key.pem")},
    }


class Pods:
    """The rendered StatefulSet's pods as processes, on one harness subnet."""

    def __init__(self, workdir: Path) -> None:
        self.objs = objects("prod")
        self.sts = one(self.objs, "StatefulSet", "herald")
        self.ns = self.sts["metadata"]["namespace"]
        self.c = Cluster(workdir / "cluster", domain="example.com", admin_token=ADMIN_TOKEN)
        self.dir = workdir
        self.secrets = make_secrets(workdir / "secrets")
        self.dns_ip = self.c.ip(53)
        self.dnsmasq: subprocess.Popen | None = None
        self.service = self.sts["spec"]["serviceName"]
        self.fqdn = f"{self.service}.{self.ns}.svc.cluster.local"
        # Environment set on top of the StatefulSet's (tests shorten timings with it).
        self.extra_env: dict[str, str] = {}

    def pod_ip(self, ordinal: int) -> str:
        return self.c.ip(ordinal + 1)

    def start_dns(self, replicas: int) -> None:
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            # The headless Service's records change with the replicas: start over.
            self.dnsmasq.kill()
            self.dnsmasq.wait(timeout=10)
        conf = self.dir / "dnsmasq.conf"
        lines = ["no-resolv", "no-hosts", "bind-interfaces", "local=/cluster.local/",
                 f"listen-address={self.dns_ip}", "port=53", "log-facility=-"]
        lines += [f"host-record=herald-{k}.{self.fqdn},{self.pod_ip(k)}" for k in range(replicas)]
        conf.write_text("\n".join(lines) + "\n")
        self.dnsmasq = subprocess.Popen(
            [tool("dnsmasq"), "--keep-in-foreground", f"--conf-file={conf}",
             f"--pid-file={self.dir / 'dnsmasq.pid'}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "dnsmasq.log", "wb"))
        (self.dir / "resolv.conf").write_text(f"nameserver {self.dns_ip}\n")

        def answers():
            out = subprocess.run(["unshare", "--mount", "sh", "-c",
                                  'mount --bind "$0" /etc/resolv.conf && getent hosts "$1"',
                                  str(self.dir / "resolv.conf"), f"herald-0.{self.fqdn}"],
                                 capture_output=True, text=True, timeout=10)
            return self.pod_ip(0) in out.stdout
        wait_until(answers, 20, "dnsmasq answers for herald-0")

    def command(self, ordinal: int) -> tuple[list[str], dict[str, str]]:
        """The pod's command line and environment, from the rendered StatefulSet."""
        pod_dir = self.dir / f"pod{ordinal}"
        spec = self.sts["spec"]["template"]["spec"]
        ctr = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts: dict[str, Path] = {}
        for m in ctr["volumeMounts"]:
            d = pod_dir / m["name"]
            d.mkdir(parents=True, exist_ok=True)
            mounts[m["mountPath"]] = d
            v = volumes.get(m["name"], {})
            if "configMap" in v:
                cm = next(o for o in self.objs if o["kind"] == "ConfigMap"
                          and o["metadata"]["name"] == v["configMap"]["name"])
                for k, text in cm["data"].items():
                    (d / k).write_text(text)
            elif "secret" in v:
                for k, data in self.secrets[v["secret"]["secretName"]].items():
                    (d / k).write_bytes(data)
                    # As the kubelet does: herald refuses private keys others can read.
                    (d / k).chmod(v["secret"].get("defaultMode", 0o644))
        # Longest mount path first, so that /etc/herald/tls never matches /etc/herald/t...
        order = sorted(mounts, key=len, reverse=True)

        pattern = re.compile("|".join(re.escape(mp) for mp in order) + r"(?=/|\"|$|\s)")

        def paths(s: str) -> str:
            # One pass: a replaced path is never matched again (/tmp is a mount too).
            return pattern.sub(lambda m: str(mounts[m.group(0)]), s)
        for mp, d in mounts.items():
            for f in d.glob("*.toml"):
                f.write_text(paths(f.read_text()))
        env: dict[str, str] = {}
        for e in ctr.get("env", []):
            if "value" in e:
                val = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)),
                             e["value"])
            else:
                src = e["valueFrom"]
                if "fieldRef" in src:
                    val = {"metadata.namespace": self.ns, "metadata.name": f"herald-{ordinal}",
                           "status.podIP": self.pod_ip(ordinal)}[src["fieldRef"]["fieldPath"]]
                else:
                    ref = src["secretKeyRef"]
                    val = self.secrets[ref["name"]][ref["key"]].decode()
            env[e["name"]] = paths(val)
        env["HOSTNAME"] = f"herald-{ordinal}"          # what the kubelet sets
        args = [paths(a) for a in ctr.get("args", [])]
        return args, env

    def start(self, ordinal: int) -> None:
        args, pod_env = self.command(ordinal)
        n = ordinal + 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
        env.update(pod_env)
        env.setdefault("RUST_LOG", "info,raft=warn")
        env.update(self.extra_env)
        log = open(self.c.log_path(n), "ab")
        cmd = ["unshare", "--mount", "sh", "-c",
               'mount --bind "$0" /etc/resolv.conf && exec "$@"',
               str(self.dir / "resolv.conf"), str(self.c.bin), *args]
        self.c.procs[n] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, env=env)
        log.close()
        self.c.cmdlines[n] = args

    def stop(self) -> None:
        self.c.stop()
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.kill()
            self.dnsmasq.wait(timeout=10)


@pytest.fixture
def pods(tmp_path: Path):
    if shutil.which("dnsmasq") is None or shutil.which("unshare") is None:
        pytest.fail("dnsmasq and unshare are needed (scripts/test installs dnsmasq)")
    p = Pods(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def c2s_open(ip: str) -> bool:
    try:
        with socket.create_connection((ip, 5222), timeout=1):
            return True
    except OSError:
        return False


def chat_batch(pods: Pods, node: int, frm: tuple[str, str], to: str, tag: str,
               sent: list[str], n: int = 10) -> None:
    """`frm` signs in through `node` with a real XMPP client (trusting the StatefulSet's
    certificate Secret) and writes `n` messages to `to`; returns once the node took them all
    (ping answered) with no error bounced."""
    from xmpp_client import Client, run

    async def body() -> None:
        c = Client(frm[0], frm[1], ca=pods.dir / "secrets" / "tls.crt")
        try:
            await c.login(pods.c.ip(node))
            for i in range(n):
                text = f"{tag} #{i}"
                c.chat(to, text)
                sent.append(text)
            await c.sync()
            errors = await c.drain(c.message_errors, 0.5)
            assert errors == [], f"{tag}: bounced {[str(e) for e in errors]}"
        finally:
            c.abort()
    run(body())


def receive_all(pods: Pods, node: int, who: tuple[str, str], frm: str, sent: list[str]) -> None:
    """`who` signs in through `node` and must get every message of `sent`, once, in order."""
    from xmpp_client import Client, run

    async def body() -> None:
        c = Client(who[0], who[1], ca=pods.dir / "secrets" / "tls.crt")
        try:
            await c.login(pods.c.ip(node))
            await c.online()
            got = [m["body"] for m in await c.expect_messages(frm, len(sent), timeout=30)]
            missing = [t for t in sent if t not in got]
            assert not missing, f"lost in the rolling update: {missing}"
            assert got == sent, f"out of order: {got}"
            extra = [m["body"] for m in await c.drain(c.messages, 2.0)]
            assert extra == [], f"delivered twice: {extra}"
        finally:
            c.abort()
    run(body())


def test_statefulset_pods_form_one_cluster_and_survive_a_rolling_update(pods: Pods) -> None:
    replicas = pods.sts["spec"]["replicas"]
    assert replicas == 3
    c = pods.c
    pods.start_dns(replicas)
    # OrderedReady: each pod starts once the previous one is ready.
    for k in range(replicas):
        pods.start(k)
        c.wait_ready(k + 1, timeout=60)
    digest = c.wait_converged([1, 2, 3], via=3)
    assert digest
    st = c.status(via=1)
    addrs = sorted(n.get("address", "") for n in st["nodes"])
    assert addrs == [f"herald-{k}.{pods.fqdn}:7470" for k in range(3)], st
    assert "example.com" in c.domains()

    # Chat through the whole rolling update: Sam writes to Rita (offline: her replicated
    # offline queue, wherever her home is) through a node that stays up, before each pod stops
    # and while it is down, and through the restarted pod after; none may be lost.
    sam = ("sam@example.com", "pw-sam-sts")
    rita = ("rita@example.com", "pw-rita-sts")
    for jid, pw in (sam, rita):
        c.cli(1, "user", "add", jid, "--password", pw)
    chats: list[str] = []

    # Config writes through the whole rolling update; each acknowledged one must survive.
    acked: list[str] = []
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            jid = f"roll{i}@example.com"
            via = next((n for n in (1, 2, 3) if c.is_running(n)), None)
            if via is None:
                time.sleep(0.05)
                continue
            out = c.cli_raw(via, "user", "add", jid, "--password", "pw-roll")
            if out.returncode == 0:
                acked.append(jid)
            else:
                errors.append(out.stderr.strip()[-200:])
                time.sleep(0.1)
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        for k in reversed(range(replicas)):
            n = k + 1
            up = next(m for m in (1, 2, 3) if m != n)
            chat_batch(pods, up, sam, rita[0], f"before herald-{k} stops", chats)
            c.procs[n].send_signal(signal.SIGTERM)
            assert c.procs[n].wait(timeout=30) == 0, c.log_tail(n)
            chat_batch(pods, up, sam, rita[0], f"while herald-{k} is down", chats)
            pods.start(k)
            c.wait_ready(n, timeout=60)
            chat_batch(pods, n, sam, rita[0], f"after herald-{k} restarted", chats)
        n_before = len(acked)
        wait_until(lambda: len(acked) >= n_before + 3, 30, "writes after the rolling update")
    finally:
        stop.set()
        t.join(timeout=40)
    c.wait_converged([1, 2, 3], via=1, timeout=60)
    assert len(acked) >= 10, (len(acked), errors[-5:])
    users = {u.get("jid") for u in c.cli_json(1, "user", "list")}
    lost = [j for j in acked if j not in users]
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    receive_all(pods, 2, rita, sam[0], chats)
    logs = "\n".join(c.log_path(n).read_text(errors="replace") for n in (1, 2, 3))
    assert logs.count("bootstrapped a new cluster") == 1, "only herald-0, once"
    for n in (2, 3):
        first_start = c.log_path(n).read_text(errors="replace")
        assert f"herald-0.{pods.fqdn}" in first_start and "joining through a peer" in first_start
    print(f"rolling update: {len(acked)} acknowledged config writes, none lost; "
          f"{len(errors)} refused while a node stopped")


def test_statefulset_scales_up_and_down(pods: Pods) -> None:
    """Scale 3 → 4: the new pod joins. 4 → 3: Kubernetes stops herald-3 and deletes its
    volume claim (persistentVolumeClaimRetentionPolicy whenScaled: Delete); its name leaves the
    headless Service and the leader removes node 4 after scale_down_after. 3 → 4 again: the
    new herald-3 joins afresh. Writes work throughout."""
    sts = pods.sts["spec"]
    assert sts.get("persistentVolumeClaimRetentionPolicy", {}).get("whenScaled") == "Delete", (
        "a scaled-down pod's volume must go, or scaling up again resumes a removed member")
    pods.extra_env["HERALD_SCALE_DOWN_AFTER"] = "3"
    c = pods.c
    pods.start_dns(3)
    for k in range(3):
        pods.start(k)
        c.wait_ready(k + 1, timeout=60)
    c.wait_converged([1, 2, 3], via=1)

    def members(via: int) -> list[int]:
        return sorted(n["id"] for n in c.status(via=via)["nodes"])

    # Up to 4.
    pods.start_dns(4)
    pods.start(3)
    c.wait_ready(4, timeout=60)
    c.wait_converged([1, 2, 3, 4], via=1)
    c.cli(1, "user", "add", "up@example.com", "--password", "pw-up")

    # Down to 3.
    c.procs[4].send_signal(signal.SIGTERM)
    assert c.procs[4].wait(timeout=30) == 0, c.log_tail(4)
    shutil.rmtree(pods.dir / "pod3" / "data")
    pods.start_dns(3)
    wait_until(lambda: members(1) == [1, 2, 3] or None, 40,
               "the leader to remove node 4 after its pod left DNS")
    c.wait_converged([1, 2, 3], via=2, timeout=30)
    c.cli(2, "user", "add", "down@example.com", "--password", "pw-down")
    logs = "\n".join(c.log_path(n).read_text(errors="replace") for n in (1, 2, 3))
    assert "StatefulSet scaled down" in logs, "the removal is logged with its reason"

    # Up to 4 again: a fresh volume, joins as node 4 anew.
    pods.start_dns(4)
    pods.start(3)
    c.wait_ready(4, timeout=60)
    c.wait_converged([1, 2, 3, 4], via=1)
    users = {u.get("jid") for u in c.cli_json(4, "user", "list")}
    assert {"up@example.com", "down@example.com"} <= users, users
    assert members(4) == [1, 2, 3, 4]
