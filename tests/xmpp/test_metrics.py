"""/metrics moves with c2s traffic: herald_c2s_sessions (gauge) and herald_stanzas_total
(counter labelled by kind and direction)."""

from __future__ import annotations

import re
from collections import defaultdict

from harness import Cluster, wait_until
from xmpp_client import Clients, async_wait_until, run

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
N = 10


def scrape(cluster: Cluster, node: int) -> dict[str, list[tuple[dict, float]]]:
    """Prometheus text of node `node` as {metric: [(labels, value)]}."""
    code, text = cluster.http_get(node, "/metrics")
    assert code == 200, f"node {node} /metrics: expected 200, got {code}"
    out: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for m in _SAMPLE.finditer(text):
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            out[m.group(1)].append((labels, float(m.group(4))))
        except ValueError:
            continue
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == want for k, want in labels.items()))


def test_sessions_gauge_and_stanza_counters_move(cluster: Cluster) -> None:
    node = 3
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")
    before = scrape(cluster, node)
    assert total(before, "herald_c2s_sessions") == 0, (
        f"no client yet: herald_c2s_sessions should be 0 (or absent), got "
        f"{before.get('herald_c2s_sessions')}")
    msgs_before = total(before, "herald_stanzas_total", kind="message")

    async def body() -> None:
        async with Clients(cluster) as xc:
            a = await xc.login(alice, apw, node)
            b = await xc.login(bob, bpw, node)
            await a.online()
            await b.online()
            for i in range(N):
                a.chat(bob, f"m{i}")
            await b.expect_messages(alice, N)

            async def two_sessions():
                return total(scrape(cluster, node), "herald_c2s_sessions") == 2
            await async_wait_until(two_sessions, 10,
                                   f"herald_c2s_sessions == 2 on node {node} with 2 clients")
            during = scrape(cluster, node)
            series = [lab for lab, _ in during.get("herald_stanzas_total", [])]
            assert series and all("kind" in lab and "direction" in lab for lab in series), (
                f"herald_stanzas_total should be labelled by kind and direction: {series}")
            moved = {lab["direction"] for lab, v in during["herald_stanzas_total"]
                     if lab.get("kind") == "message"
                     and v > total(before, "herald_stanzas_total", **lab)}
            assert len(moved) >= 2, (
                f"after {N} messages between two local clients, herald_stanzas_total"
                f"{{kind=\"message\"}} should grow in both directions (in and out); grew in: "
                f"{sorted(moved)}; series: {during['herald_stanzas_total']}")
            grown = total(during, "herald_stanzas_total", kind="message") - msgs_before
            assert grown >= 2 * N, (
                f"herald_stanzas_total{{kind=\"message\"}} grew by {grown}, expected >= {2 * N}"
                " (each message counted in and out)")
            await a.logout()
            await b.logout()
    run(body())

    wait_until(lambda: total(scrape(cluster, node), "herald_c2s_sessions") == 0, 10,
               f"herald_c2s_sessions back to 0 on node {node} after both clients left")
