"""Herald <-> Prosody federation wiring shared by the s2s interop tests (`test_s2s.py`,
`test_s2s_more.py`, and `test_s2s_reference.py` through `test_s2s`).

`federation(mode)` starts the test DNS, Prosody p.test and a 3-node Herald cluster for
example.test whose nodes present a TestCA certificate (`--tls-cert/--tls-key`), trust the TestCA
for peers (`--tls-ca`) and resolve through the test dnsmasq (`--dns-resolver`); federation is
switched on with `herald xmpp-federation set` on the nodes in `FED_NODES`, and the DNS serves
`_xmpp-server._tcp.example.test` SRV -> `nodeN.example.test:5269` -> the node IPs, and the same
for p.test -> Prosody. Herald's users log in on node `ALICE_NODE`, which does *not* federate
itself unless it is in `FED_NODES`, so stanzas also cross the cluster. See `s2s_harness.py` for
the peers.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster, wait_until  # noqa: E402
from s2s_harness import S2S_PORT, Prosody, RawS2S, S2SEnv, _port_open  # noqa: E402
from xmpp_client import Client, bare, subscribe  # noqa: E402

HERALD_DOMAIN = "example.test"
PEER_DOMAIN = "p.test"
#: Nodes with federation enabled (SRV targets); Herald's clients log in on ALICE_NODE.
FED_NODES = (1, 2)
CLUSTER_SIZE = 3
ALICE_NODE = 3
#: Bound on one test body.
BODY_TIMEOUT = 50.0
#: Bound on one federated delivery (first contact includes DNS, TCP, TLS, auth).
DELIVERY_TIMEOUT = 15.0
#: How long "nothing arrives" is watched.
QUIET_WINDOW = 3.0
OVERSIZED_BYTES = 1024 * 1024

#: Herald federation settings and the matching Prosody knobs, per security mode.
MODES: dict[str, dict[str, Any]] = {
    # TLS required, certificates checked both ways, SASL EXTERNAL both ways; Prosody without
    # mod_dialback, so nothing else can authenticate the streams.
    "required": dict(
        herald=["--security-mode", "required", "--require-client-certs", "true",
                "--sasl-external-inbound", "true", "--sasl-outbound", "true"],
        prosody=dict(secure_auth=True, require_encryption=True, dialback=False)),
    # TLS when offered, SASL EXTERNAL offered and used, dialback accepted (the raw-input tests
    # need plaintext dialback and an authenticated stream on the same server).
    "optional": dict(
        herald=["--security-mode", "optional", "--require-client-certs", "false",
                "--sasl-external-inbound", "true", "--sasl-outbound", "true"],
        prosody=dict(secure_auth=True, require_encryption=True, dialback=True)),
    # No TLS on s2s at all: dialback only.
    "dialback": dict(
        herald=["--security-mode", "none", "--require-client-certs", "false",
                "--sasl-external-inbound", "false", "--sasl-outbound", "false"],
        prosody=dict(secure_auth=False, require_encryption=False, allow_encryption=False,
                     dialback=True)),
}


# ---------------------------------------------------------------------------------------------
# Metrics (names agreed with the s2s implementation)

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(cluster: Cluster, node: int) -> dict[str, list[tuple[dict, float]]]:
    code, text = cluster.http_get(node, "/metrics")
    assert code == 200, f"node {node} /metrics: expected 200, got {code}"
    out: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for m in _SAMPLE.finditer(text):
        try:
            out[m.group(1)].append((dict(_LABEL.findall(m.group(3) or "")), float(m.group(4))))
        except ValueError:
            continue
    return out


def metric_total(cluster: Cluster, name: str, nodes=FED_NODES,
                 pred: Callable[[dict], bool] = lambda _: True) -> float:
    """Sum of metric `name` over `nodes`, for the samples whose labels satisfy `pred`."""
    return sum(v for n in nodes for lab, v in scrape(cluster, n).get(name, []) if pred(lab))


# ---------------------------------------------------------------------------------------------
# One Herald cluster federating with one Prosody


def node_host(node: int) -> str:
    """The host name example.test's SRV records give for Herald node `node`."""
    return f"node{node}.{HERALD_DOMAIN}"


class Federation:
    """Herald (`cluster`) and Prosody (`prosody`) federating through the test DNS."""

    def __init__(self, env: S2SEnv, cluster: Cluster, prosody: Prosody, mode: str,
                 secret: str) -> None:
        self.env, self.cluster, self.prosody = env, cluster, prosody
        self.mode, self.secret = mode, secret
        self.clients: list[Client] = []

    @property
    def ca(self) -> Path:
        return self.env.ca.ca_path

    # -- configuration -----------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """`herald xmpp-federation set` for `mode` on FED_NODES (no restart)."""
        enable = [a for n in FED_NODES for a in ("--enable-node", str(n))]
        self.cluster.cli(None, "xmpp-federation", "set", *enable, *MODES[mode]["herald"],
                         "--dialback-secret", self.secret)
        self.cluster.wait_converged(self.cluster.nodes)
        self.mode = mode

    def disable_node(self, node: int) -> None:
        """`herald xmpp-federation set --disable-node N` (live, no restart)."""
        self.cluster.cli(None, "xmpp-federation", "set", "--disable-node", str(node))

    def set_srv_priority(self, priority: dict[int, int]) -> None:
        """Rewrites example.test's SRV records with {node: priority} for FED_NODES and restarts
        the DNS (dnsmasq reads its config only at start; local records have TTL 0, so peers
        see the change at their next lookup)."""
        dns = self.env.dns
        dns.remove(f"_xmpp-server._tcp.{HERALD_DOMAIN}")
        for n in FED_NODES:
            dns.add_srv(f"_xmpp-server._tcp.{HERALD_DOMAIN}", node_host(n), S2S_PORT,
                        priority=priority.get(n, 0))
        dns.restart()

    def policy(self, *args: str) -> str:
        """`herald xmpp-policy ARGS`. No convergence wait on purpose: Herald answers a policy
        write once every live node applied it (admin.rs `write_applied_everywhere`), so the
        very next stanza must be decided under it on any node; the policy test checks that."""
        return self.cluster.cli(None, "xmpp-policy", *args)

    # -- users and clients -------------------------------------------------------------------

    def herald_user(self, name: str) -> tuple[str, str]:
        return self.cluster.new_user(name)

    def prosody_user(self, name: str) -> tuple[str, str]:
        password = f"pw-{name}-{secrets.token_hex(4)}"
        return self.prosody.register(name, password), password

    async def herald_client(self, user: tuple[str, str], node: int = ALICE_NODE) -> Client:
        """A logged-in client on Herald node `node` (trusting the TestCA), initial presence
        sent."""
        c = Client(*user, ca=self.ca)
        self.clients.append(c)
        await c.login(self.cluster.ip(node))
        await c.online()
        return c

    async def prosody_client(self, user: tuple[str, str]) -> Client:
        c = Client(*user, ca=self.ca)
        self.clients.append(c)
        await c.login(self.prosody.ip)
        await c.online()
        return c

    async def close_clients(self) -> None:
        for c in self.clients:
            await c.logout()
        self.clients.clear()

    # -- checks ------------------------------------------------------------------------------

    def assert_counted(self, name: str, what: str,
                       pred: Callable[[dict], bool] = lambda _: True) -> None:
        """Metric `name` (samples whose labels satisfy `pred`) is above 0 on FED_NODES."""
        total = metric_total(self.cluster, name, pred=pred)
        assert total > 0, f"{name}: expected {what} on nodes {FED_NODES}, got {total}"

    def assert_failures(self, *reasons: str) -> None:
        """herald_s2s_failures_total counted a failure with one of `reasons`."""
        self.assert_counted("herald_s2s_failures_total", f"a failure with reason in {reasons}",
                            lambda lab: lab.get("reason") in reasons)

    def prosody_sessions(self) -> list[dict]:
        """Prosody's `s2s:show()` rows (columns lower-cased) with example.test."""
        text = self.prosody.shell("s2s", "show")
        lines = [ln for ln in text.splitlines() if "|" in ln]
        if not lines:
            return []
        header = [h.strip().lower() for h in lines[0].split("|")]
        rows = [dict(zip(header, (c.strip() for c in ln.split("|")))) for ln in lines[1:]]
        return [r for r in rows if r.get("remote") == HERALD_DOMAIN]

    def offers_features(self, node: int) -> bool:
        """Whether node `node` answers an s2s stream header with stream features (not a
        stream error)."""
        with self.raw(node, timeout=3.0) as s:
            return "<stream:error" not in s.open_stream()

    def raw(self, node: int = FED_NODES[0], *, frm: Optional[str] = PEER_DOMAIN,
            to: str = HERALD_DOMAIN, **kw: Any) -> RawS2S:
        """A raw s2s connection to Herald node `node`'s port 5269."""
        return RawS2S(self.cluster.ip(node), from_domain=frm, to_domain=to, ca=self.ca, **kw)


@pytest.fixture
def federation(s2s_env: S2SEnv, tmp_path: Path):
    """Factory: `federation(mode)` starts DNS, Prosody p.test and a Herald cluster federating in
    `mode` (see MODES). Everything is killed on teardown (Prosody and DNS by `s2s_env`)."""
    made: list[Federation] = []

    def make(mode: str = "required", prosody_cert: Optional[tuple[Path, Path]] = None,
             prosody_kw: Optional[dict] = None, extra_args: tuple[str, ...] = (),
             srv_priority: Optional[dict[int, int]] = None,
             mail_domain: Optional[str] = None) -> Federation:
        """`prosody_cert`: the certificate Prosody presents (default: TestCA's for p.test);
        `prosody_kw`: Prosody knobs overriding the mode's; `extra_args`: more `herald agent`
        flags; `srv_priority`: {node: SRV priority} of example.test's records (default 0 for
        every node of FED_NODES; `Federation.set_srv_priority` changes them later); `mail_domain`:
        an email domain Herald also federates as (in its certificate and in the DNS,
        EMAIL-6/EMAIL-8)."""
        env = s2s_env
        names = [HERALD_DOMAIN, f"*.{HERALD_DOMAIN}"] + ([mail_domain] if mail_domain else [])
        cert, key = env.ca.issue(names, stem="herald")
        cluster = Cluster(tmp_path / "cluster", HERALD_DOMAIN, extra_args=[
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(env.ca.ca_path),
            "--dns-resolver", env.dns.address, *extra_args])
        make.cluster = cluster  # the conftest report hook attaches its logs on failure
        try:
            for n in FED_NODES:
                env.dns.add_srv(f"_xmpp-server._tcp.{HERALD_DOMAIN}", node_host(n), S2S_PORT,
                                priority=(srv_priority or {}).get(n, 0))
                env.dns.add_host(node_host(n), cluster.ip(n))
                if mail_domain:
                    env.dns.add_srv(f"_xmpp-server._tcp.{mail_domain}", node_host(n), S2S_PORT,
                                    priority=(srv_priority or {}).get(n, 0))
            prosody = env.prosody(PEER_DOMAIN, cert=prosody_cert,
                                  **{**MODES[mode]["prosody"], **(prosody_kw or {})})
            env.dns.start()
            prosody.start()
            cluster.start_cluster(CLUSTER_SIZE)
            fed = Federation(env, cluster, prosody, mode, secrets.token_hex(16))
            made.append(fed)
            fed.set_mode(mode)
            for n in FED_NODES:
                wait_until(lambda: _port_open(cluster.ip(n), S2S_PORT), 15,
                           f"node {n} listening on {cluster.ip(n)}:{S2S_PORT}")
                # The CLI returns once the change is committed; a node applies it a moment
                # later (until then it answers `policy-violation`, "not enabled").
                wait_until(lambda: fed.offers_features(n), 15,
                           f"node {n} to accept s2s streams (federation enabled)", interval=0.1)
            return fed
        except BaseException:
            cluster.stop()
            raise

    make.cluster = None
    try:
        yield make
    finally:
        for fed in made:
            fed.cluster.stop()
        if make.cluster is not None:
            make.cluster.stop()


# ---------------------------------------------------------------------------------------------
# Shared steps


async def both_ways(fed: Federation, alice: Client, bob: Client, tag: str) -> None:
    """Presence changes and a message each way between alice (Herald) and bob (Prosody), who
    are subscribed to each other."""
    alice.send_presence(pshow="away", pstatus=f"alice {tag}")
    await bob.expect_presence(alice.user, f"alice's presence ({tag})", show="away",
                              status=f"alice {tag}", timeout=DELIVERY_TIMEOUT)
    bob.send_presence(pshow="dnd", pstatus=f"bob {tag}")
    await alice.expect_presence(bob.user, f"bob's presence ({tag})", show="dnd",
                                status=f"bob {tag}", timeout=DELIVERY_TIMEOUT)
    alice.chat(bob.user, f"alice to bob ({tag})")
    got = await bob.expect_messages(alice.user, 1, timeout=DELIVERY_TIMEOUT)
    assert got[0]["body"] == f"alice to bob ({tag})", got[0]
    bob.chat(alice.user, f"bob to alice ({tag})")
    got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
    assert got[0]["body"] == f"bob to alice ({tag})", got[0]


async def befriend(fed: Federation) -> tuple[Client, Client]:
    """alice@example.test and bob@p.test log in, subscribe to each other and approve."""
    alice = await fed.herald_client(fed.herald_user("alice"))
    bob = await fed.prosody_client(fed.prosody_user("bob"))
    await subscribe(alice, bob)
    await subscribe(bob, alice)
    return alice, bob


async def not_delivered(receiver: Client, frm: str, seconds: float = QUIET_WINDOW) -> None:
    """Nothing from `frm` (bare) reaches `receiver` within `seconds`."""
    got = [m for m in await receiver.drain(receiver.messages, seconds) if bare(m["from"]) == frm]
    assert not got, f"{receiver.user} received from {frm}: {[m['body'] for m in got]}"


async def error_bounce(sender: Client, to: str, timeout: float = DELIVERY_TIMEOUT) -> str:
    """The condition of the error message that bounces back from `to` (bare) to `sender`."""
    err = await sender.expect(sender.message_errors, lambda m: bare(m["from"]) == to,
                              f"an error bounce from {to}", timeout)
    return str(err["error"]["condition"])


