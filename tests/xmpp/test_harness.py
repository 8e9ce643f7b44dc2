"""The harness itself against today's herald: cluster start, users, homes, kill and restart.

These tests need no XMPP support in the server and must pass now.
"""

from __future__ import annotations

from typing import Optional

from harness import DOMAIN, Cluster, HarnessError, wait_until


def test_cluster_starts_with_domain_and_three_voters(cluster: Cluster) -> None:
    st = cluster.status()
    ids = sorted(n["id"] for n in st["nodes"])
    assert ids == [1, 2, 3], f"expected nodes [1, 2, 3] in cluster status, got {st}"
    assert st["leader_id"] in (1, 2, 3), f"expected a leader among 1..3, got {st}"
    assert DOMAIN in cluster.domains(), f"expected {DOMAIN} in `domain list`"
    for n in (1, 2, 3):
        assert cluster.ca(n).read_text().startswith("-----BEGIN CERTIFICATE-----"), (
            f"node {n} should have written its dev CA to {cluster.ca(n)}")
        code, body = cluster.http_get(n, "/readyz")
        assert code == 200, f"node {n} /readyz: expected 200, got {code} {body!r}"


def test_users_are_added_and_homed_on_a_node(cluster: Cluster) -> None:
    homes = {}
    for name in ("alice", "bob", "carol", "dave", "erin", "frank"):
        jid, _ = cluster.new_user(name, via=2)
        # Every node reports the same home (placement is deterministic and replicated) once
        # every node has heard from every peer: placement is over the members a node sees
        # live, and right after start a node may not have had a peer's first ping yet.
        def agreed() -> Optional[int]:
            seen = {cluster.home_node(jid, via=via) for via in (1, 2, 3)}
            return seen.pop() if len(seen) == 1 else None
        try:
            homes[jid] = wait_until(agreed, 10, f"the nodes to agree about the home of {jid}")
        except HarnessError as exc:
            raise AssertionError(f"nodes disagree about the home of {jid}: {exc}") from None
        assert homes[jid] in (1, 2, 3), f"home of {jid}: expected 1..3, got {homes[jid]}"
    shown = cluster.user(next(iter(homes)))
    assert shown["jid"] == next(iter(homes)), f"`user show` returned another user: {shown}"


def test_kill9_and_restart_a_node(cluster: Cluster) -> None:
    jid, _ = cluster.new_user("ghost")
    victim = cluster.home_node(jid)
    survivors = [n for n in (1, 2, 3) if n != victim]
    cluster.kill9(victim)
    assert not cluster.is_running(victim), f"node {victim} still running after kill -9"

    # The survivors keep a leader and accept writes.
    cluster.leader(via=survivors[0])
    jid2, _ = cluster.new_user("after-kill", via=survivors[0])
    assert cluster.user(jid2, via=survivors[1])["jid"] == jid2

    # Placement is reported for the victim's user while it is down (re-homing after a failure is
    # the server's business; the XMPP failover test covers it).
    assert cluster.home_node(jid, via=survivors[0]) in (1, 2, 3)

    cluster.restart(victim)
    cluster.wait_converged([1, 2, 3])
    assert cluster.user(jid2, via=victim)["jid"] == jid2, (
        f"restarted node {victim} should have caught up with {jid2}")


def test_cli_failure_is_reported_with_stderr(cluster: Cluster) -> None:
    try:
        cluster.cli(1, "user", "show", f"nobody@{DOMAIN}")
    except HarnessError as exc:
        assert "user show" in str(exc) and "exit" in str(exc), str(exc)
    else:
        raise AssertionError("`user show` of an unknown user should fail")
