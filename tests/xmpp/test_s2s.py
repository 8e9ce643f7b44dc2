"""XMPP federation (s2s) interop: Herald (example.test) <-> Prosody 0.12 (p.test).

Each test starts a Herald cluster whose nodes present a TestCA certificate for example.test
(`--tls-cert/--tls-key`), trust the TestCA for peers (`--tls-ca`) and resolve through the
test dnsmasq (`--dns-resolver`); federation is switched on with `herald xmpp-federation set`
on the nodes in `FED_NODES`, and the DNS serves `_xmpp-server._tcp.example.test` SRV ->
`nodeN.example.test:5269` -> the node IPs, and the same for p.test -> Prosody. Herald's users
log in on node `ALICE_NODE`, which does *not* federate itself unless it is in `FED_NODES`, so
stanzas also cross the cluster. See `s2s_harness.py` for the peers and `s2s_fed.py` for the
shared wiring (the `federation` fixture, `Federation`, the shared steps).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import wait_until  # noqa: E402
from s2s_fed import (BODY_TIMEOUT, DELIVERY_TIMEOUT, FED_NODES, HERALD_DOMAIN,  # noqa: E402,F401
                     MODES, OVERSIZED_BYTES, PEER_DOMAIN, Federation, befriend, both_ways,
                     error_bounce, federation, metric_total, not_delivered, scrape)
from s2s_harness import S2SEnv, s2s_header  # noqa: E402
from xmpp_client import Client, run, subscribe  # noqa: E402

pytestmark = [pytest.mark.s2s]

# ---------------------------------------------------------------------------------------------
# Tests


def test_tls_and_sasl_external_both_ways(federation) -> None:
    fed = federation("required")

    async def body() -> None:
        try:
            alice, bob = await befriend(fed)
            await both_ways(fed, alice, bob, "tls")
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)

    rows = fed.prosody_sessions()
    assert sorted(r["dir"] for r in rows) == ["-->", "<--"], rows
    for r in rows:
        # Prosody shows SASL "Succeeded" on both its outgoing stream (Herald offered and
        # accepted EXTERNAL) and its incoming one (Herald authenticated with EXTERNAL).
        assert r["security"].startswith("TLS") and r["sasl"] == "Succeeded" \
            and r["dialback"] == "Not used", r
    fed.assert_counted("herald_s2s_stanzas_total", "stanzas counted")
    fed.assert_counted("herald_s2s_connections", "open s2s connections")


def test_dialback_only(federation) -> None:
    fed = federation("dialback")

    async def body() -> None:
        try:
            alice, bob = await befriend(fed)
            await both_ways(fed, alice, bob, "dialback")
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)

    rows = fed.prosody_sessions()
    assert sorted(r["dir"] for r in rows) == ["-->", "<--"], rows
    assert all(r["security"] == "insecure" for r in rows), rows
    out = next(r for r in rows if r["dir"] == "-->")
    # Prosody's outgoing stream was verified by Herald with dialback (Herald asked p.test);
    # its incoming one carries Herald's dialback (Prosody asked example.test).
    assert out["dialback"] == "Completed" and out["sasl"] == "", out


def test_policy_changes_apply_without_restart(federation) -> None:
    fed = federation("required")

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            bob = await fed.prosody_client(fed.prosody_user("bob"))

            fed.policy("set", "--default", "deny")
            alice.chat(bob.user, "denied 1")
            cond = await error_bounce(alice, bob.user)
            assert cond == "remote-server-not-found", cond
            await not_delivered(bob, alice.user)

            fed.policy("exception", "add", PEER_DOMAIN)
            await subscribe(alice, bob)
            await subscribe(bob, alice)
            await both_ways(fed, alice, bob, "exception")

            fed.policy("exception", "remove", PEER_DOMAIN)
            alice.chat(bob.user, "denied 2")
            cond = await error_bounce(alice, bob.user)
            assert cond == "remote-server-not-found", cond
            bob.chat(alice.user, "denied 3")
            await not_delivered(alice, bob.user)
            await not_delivered(bob, alice.user, 0.5)
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    fed.assert_failures("policy")


def test_first_stanzas_to_a_new_domain_are_delivered(federation) -> None:
    """ejabberd issue 511 class: stanzas queued while the first s2s stream is being set up
    (DNS, TCP, TLS, authentication) are all delivered, in order."""
    fed = federation("required")

    async def body() -> None:
        try:
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            alice = await fed.herald_client(fed.herald_user("alice"))
            assert fed.prosody_sessions() == [], "an s2s stream existed before the first stanza"
            for i in range(3):
                alice.chat(bob.user, f"first contact {i}")
            got = await bob.expect_messages(alice.user, 3, timeout=DELIVERY_TIMEOUT)
            assert [m["body"] for m in got] == [f"first contact {i}" for i in range(3)]
            assert alice.message_errors.empty(), "a first-contact message bounced"
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)


def test_streams_closed_by_the_peer_are_reopened(federation) -> None:
    """Prosody closes every s2s stream with example.test (as an idle timeout would; Prosody 0.12
    has none, so its admin shell does it): presence and messages still flow both ways, no
    client does anything special."""
    fed = federation("required")

    async def body() -> None:
        try:
            alice, bob = await befriend(fed)
            await both_ways(fed, alice, bob, "before close")
            fed.prosody.close_s2s(HERALD_DOMAIN)
            await asyncio.to_thread(wait_until, lambda: fed.prosody_sessions() == [], 10,
                                    "Prosody's streams with example.test to be gone")
            await both_ways(fed, alice, bob, "after close")
            # And once more, with the other side speaking first.
            fed.prosody.close_s2s(HERALD_DOMAIN)
            await asyncio.to_thread(wait_until, lambda: fed.prosody_sessions() == [], 10,
                                    "Prosody's streams with example.test to be gone")
            bob.chat(alice.user, "bob speaks first")
            got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "bob speaks first"
            alice.chat(bob.user, "alice answers")
            got = await bob.expect_messages(alice.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "alice answers"
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)


def test_streams_survive_a_peer_restart(federation) -> None:
    """Prosody restarts (its streams vanish without Herald closing them): Herald's alice, who
    stays logged in, reaches bob again and sees his presence once he is back."""
    fed = federation("required")

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            bob_user = fed.prosody_user("bob")
            bob = await fed.prosody_client(bob_user)
            await subscribe(alice, bob)
            await subscribe(bob, alice)
            await both_ways(fed, alice, bob, "before restart")
            await bob.logout()
            await alice.expect_presence(bob.user, "bob going offline", ptype="unavailable",
                                        timeout=DELIVERY_TIMEOUT)
            await asyncio.to_thread(fed.prosody.restart)
            bob = await fed.prosody_client(bob_user)
            await alice.expect_presence(bob.user, "bob back online", ptype="available",
                                        timeout=DELIVERY_TIMEOUT)
            await both_ways(fed, alice, bob, "after restart")
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)


def test_wrong_dialback_key_is_refused(federation) -> None:
    """A raw connection claims to be p.test with a made-up dialback key: Herald asks the real
    p.test (Prosody), learns the key is invalid, answers `type='invalid'` (or closes with
    not-authorized), and nothing sent on that stream reaches alice."""
    fed = federation("dialback")

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            with fed.raw() as s:
                s.open_stream()
                s.dialback_result("0123456789abcdef0123456789abcdef")
                typ, text = await asyncio.to_thread(
                    s.expect_dialback, "result", "Herald's answer to a wrong dialback key", 15)
                if typ is None:
                    assert "not-authorized" in text, text
                else:
                    assert typ == "invalid", text
                    # A stanza on the unauthenticated stream anyway: dropped, or a stream
                    # error not-authorized (RFC 6120 §4.9.3.12; Prosody 0.12 drops silently).
                    s.send(f"<message from='mallory@{PEER_DOMAIN}' to='{alice.user}' "
                           "type='chat'><body>forged</body></message>")
                    await not_delivered(alice, f"mallory@{PEER_DOMAIN}")
                    await asyncio.to_thread(s._recv, time.monotonic() + 0.5)
                    assert "<stream:error" not in s.buf or "not-authorized" in s.buf, s.buf
            await not_delivered(alice, f"mallory@{PEER_DOMAIN}", 0.5)
            # The real p.test still gets through.
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            bob.chat(alice.user, "the real p.test")
            got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "the real p.test"
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    fed.assert_failures("dialback", "auth")


def test_peer_certificate_from_another_ca_is_refused(s2s_env: S2SEnv, federation) -> None:
    """TLS required and client certificates required: Prosody presents a p.test certificate
    from a CA Herald does not trust. Neither direction delivers; alice gets an error."""
    bad = s2s_env.ca.issue_untrusted([PEER_DOMAIN], stem="p.test-untrusted")
    # Prosody itself does not insist on certificates and offers dialback: Herald must refuse
    # dialback in this mode too.
    fed = federation("required", prosody_cert=bad,
                     prosody_kw=dict(secure_auth=False, dialback=True))
    # bob's client trusts both CAs (his server's certificate is the untrusted one).
    bundle = s2s_env.dir / "both-cas.pem"
    bundle.write_bytes(s2s_env.ca.ca_path.read_bytes() +
                       s2s_env.ca.untrusted().ca_path.read_bytes())

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            bob_user = fed.prosody_user("bob")
            bob = Client(*bob_user, ca=bundle)
            fed.clients.append(bob)
            await bob.login(fed.prosody.ip)
            await bob.online()
            alice.chat(bob.user, "to an unproven p.test")
            cond = await error_bounce(alice, bob.user)
            assert cond in {"remote-server-not-found", "remote-server-timeout"}, cond
            bob.chat(alice.user, "from an unproven p.test")
            await not_delivered(alice, bob.user, 5.0)
            await not_delivered(bob, alice.user, 0.5)
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    fed.assert_failures("tls", "auth")


# -- bad input on 5269 -------------------------------------------------------------------------


def _garbage(fed: Federation) -> str:
    with fed.raw() as s:
        s.send(b"\x00garbage<<>>" + s2s_header(PEER_DOMAIN, HERALD_DOMAIN))
        return s.expect_stream_error({"not-well-formed", "bad-format"},
                                     "garbage before the stream header")


def _unknown_host(fed: Federation) -> str:
    with fed.raw(to="not-served.test") as s:
        s.send(s2s_header(PEER_DOMAIN, "not-served.test"))
        return s.expect_stream_error({"host-unknown"}, "a stream to a domain Herald does not "
                                     "serve")


def _oversized(fed: Federation) -> str:
    # A stream authenticated with SASL EXTERNAL as r.test (a valid TestCA certificate), then
    # one stanza bigger than any limit Herald may have.
    with fed.raw(frm="r.test", cert=fed.env.ca.issue(["r.test"], stem="r.test")) as s:
        s.sasl_external(s.starttls())
        s.send_tolerant(b"<message from='m@r.test' to='x@example.test' type='chat'><body>" +
                        b"x" * OVERSIZED_BYTES + b"</body></message>")
        return s.expect_stream_error({"policy-violation"},
                                     f"a {OVERSIZED_BYTES // 1024} KiB stanza")


def _wrong_stream_id(fed: Federation) -> str:
    # Herald as the authoritative server for example.test: a db:verify naming a stream id
    # Herald never issued.
    with fed.raw() as s:
        s.open_stream()
        s.dialback_verify("never-issued-stream-id", "0123456789abcdef")
        typ, text = s.expect_dialback("verify", "the answer to a db:verify of an unknown id")
        if typ is None:
            m = re.search(r"<(invalid-id|not-authorized)\b", text)
            assert m, f"expected invalid-id or not-authorized, got {text}"
            return m.group(1)
        assert typ == "invalid", text
        return "invalid"


BAD_INPUT = {
    "garbage-before-header": _garbage,
    "unknown-to-domain": _unknown_host,
    "oversized-stanza": _oversized,
    "dialback-wrong-stream-id": _wrong_stream_id,
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_on_5269(federation, case: str) -> None:
    fed = federation("optional")
    answer = BAD_INPUT[case](fed)
    assert answer, case

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            alice.chat(bob.user, f"still works after {case}")
            got = await bob.expect_messages(alice.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == f"still works after {case}"
            bob.chat(alice.user, f"both ways after {case}")
            got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == f"both ways after {case}"
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    for n in fed.cluster.nodes:
        assert fed.cluster.is_running(n), f"node {n} died after {case}"


def test_email_for_federation(federation) -> None:
    """EMAIL-2/3/4: with email for federation on, alice federates as her mail address (bob at
    Prosody sees it as `from` and reaches her through it), a user without a mail address
    federates by JID, and stanzas from outside to alice's raw JID are dropped and counted."""
    mail_domain = "mail.test"
    fed = federation("required", mail_domain=mail_domain)
    alice_user = fed.herald_user("alice")
    carol_user = fed.herald_user("carol")
    mail = f"alice.liddell@{mail_domain}"
    fed.cluster.cli(None, "user", "update", alice_user[0], "--mail-id", mail)
    fed.cluster.cli(None, "email-federation", "enable", "--confirm")

    async def body() -> None:
        try:
            alice = await fed.herald_client(alice_user)
            carol = await fed.herald_client(carol_user)
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            # bob knows alice by her mail address.
            bob.send_presence(pto=mail, ptype="subscribe")
            await alice.expect_presence(bob.user, "bob's request reaching alice", ptype="subscribe",
                                        timeout=DELIVERY_TIMEOUT)
            alice.send_presence(pto=bob.user, ptype="subscribed")
            await bob.expect_presence(mail, "the approval from alice's mail address",
                                      ptype="subscribed", timeout=DELIVERY_TIMEOUT)
            await bob.expect_presence(mail, "alice's presence under her mail address",
                                      ptype="available", timeout=DELIVERY_TIMEOUT)
            alice.chat(bob.user, "from alice")
            got = await bob.expect_messages(mail, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "from alice", got[0]
            bob.chat(mail, "to alice by mail")
            got = await alice.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "to alice by mail", got[0]
            # EMAIL-3: carol has no mail address and federates with her JID.
            carol.chat(bob.user, "from carol")
            got = await bob.expect_messages(carol.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "from carol", got[0]
            # EMAIL-4: alice's raw JID is not reachable from outside.
            bob.chat(alice.user, "to alice's JID")
            await not_delivered(alice, bob.user)
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    fed.assert_counted("herald_s2s_email_drops_total", "a stanza to alice's raw JID dropped")


def test_domain_added_later_gets_its_own_certificate(federation, tmp_path: Path) -> None:
    """A local domain added after start federates under TLS required with its own certificate:
    its files are dropped into `--tls-cert-dir` while the nodes run (picked up without a
    restart), Prosody's inbound TLS gets it by SNI, and Herald presents it outbound for SASL
    EXTERNAL as that domain."""
    second = "second.test"
    cert_dir = tmp_path / "domain-certs"
    cert_dir.mkdir()
    fed = federation("required", extra_args=("--tls-cert-dir", str(cert_dir)))
    fed.cluster.cli(None, "domain", "add", second)
    fed.env.dns.add_xmpp_server(second, [(f"node{n}.{HERALD_DOMAIN}", fed.cluster.ip(n))
                                         for n in FED_NODES])
    fed.env.dns.restart()
    cert, key = fed.env.ca.issue([second], stem="second-domain")
    # Written next to each other, the key first: the store loads a pair once the .pem is there.
    (cert_dir / f"{second}.key").write_bytes(key.read_bytes())
    (cert_dir / f"{second}.key").chmod(0o600)  # readable by others: refused
    (cert_dir / f"{second}.pem").write_bytes(cert.read_bytes())
    password = f"pw-{secrets.token_hex(4)}"
    dave = f"dave@{second}"
    fed.cluster.add_user(dave, password)

    async def body() -> None:
        try:
            d = await fed.herald_client((dave, password))
            bob = await fed.prosody_client(fed.prosody_user("bob"))
            # The store polls every 5 s: the first attempt may still present the node
            # certificate (example.test), which Prosody refuses; retry until delivered.
            deadline = time.monotonic() + 30
            while True:
                d.chat(bob.user, "from the second domain")
                try:
                    got = await bob.expect_messages(dave, 1, timeout=6)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
            assert got[0]["body"] == "from the second domain", got[0]
            bob.chat(dave, "to the second domain")
            got = await d.expect_messages(bob.user, 1, timeout=DELIVERY_TIMEOUT)
            assert got[0]["body"] == "to the second domain", got[0]
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    rows = [r for r in fed.prosody.shell("s2s", "show").splitlines() if second in r]
    assert rows and all("Succeeded" in r for r in rows), rows


def test_direct_tls_xep_0368_inbound(federation) -> None:
    """XEP-0368: with `_xmpps-server._tcp` records for example.test, Prosody reaches Herald's
    direct-TLS port (5270, ALPN `xmpp-server`) and authenticates there (SASL EXTERNAL);
    presence and messages flow both ways. (Herald's own outbound direct TLS is not exercised
    here: p.test publishes no `_xmpps-server` record.)"""
    fed = federation("required")
    for n in FED_NODES:
        fed.env.dns.add_srv(f"_xmpps-server._tcp.{HERALD_DOMAIN}", f"node{n}.{HERALD_DOMAIN}",
                            5270)
    fed.env.dns.restart()

    async def body() -> None:
        try:
            alice, bob = await befriend(fed)
            await both_ways(fed, alice, bob, "direct tls")
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
    rows = fed.prosody_sessions()
    out = [r for r in rows if r["dir"] == "-->"]
    assert out and out[0]["security"].startswith("TLS"), rows
    logs = "".join(fed.cluster.log_path(n).read_text(errors="replace") for n in FED_NODES)
    assert re.search(r"inbound federation stream authenticated.*domain=p\.test.*direct_tls=true",
                     logs), "Prosody's stream did not come in on the direct-TLS port"
    # Herald's direct-TLS listener answered with ALPN xmpp-server.
    import socket
    import ssl
    ctx = ssl.create_default_context(cafile=str(fed.ca))
    ctx.set_alpn_protocols(["xmpp-server"])
    with socket.create_connection((fed.cluster.ip(FED_NODES[0]), 5270), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=HERALD_DOMAIN) as tls:
            assert tls.selected_alpn_protocol() == "xmpp-server"
            tls.sendall(s2s_header(PEER_DOMAIN, HERALD_DOMAIN))
            data = b""
            deadline = time.monotonic() + 10
            while b"</stream:features>" not in data and time.monotonic() < deadline:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            assert b"<stream:features>" in data and b"starttls" not in data, data


def test_a_status_change_reaches_every_federated_watcher_in_one_batch(federation) -> None:
    """Three Prosody users watch alice (logged in on a node that does not federate): her status
    change reaches each of them exactly once, and it is handed to p.test's link as one batch of
    three (encoded once) rather than as three stanzas."""
    fed = federation("required")

    def batches() -> tuple[float, float]:
        nodes = (1, 2, 3)
        is_s2s = lambda lab: lab.get("path") == "s2s"  # noqa: E731
        return (metric_total(fed.cluster, "herald_presence_batch_recipients_count", nodes,
                             is_s2s),
                metric_total(fed.cluster, "herald_presence_batch_recipients_sum", nodes,
                             is_s2s))

    async def body() -> None:
        try:
            alice = await fed.herald_client(fed.herald_user("alice"))
            watchers = [await fed.prosody_client(fed.prosody_user(n))
                        for n in ("bob", "carol", "dave")]
            for w in watchers:
                await subscribe(w, alice)
            before = batches()
            alice.send_presence(pshow="xa", pstatus="one batch")
            for w in watchers:
                await w.expect_presence(alice.user, f"{w.user} to get alice's change", show="xa",
                                        status="one batch", timeout=DELIVERY_TIMEOUT)
            for w in watchers:
                again = [p for p in await w.drain(w.presences, 0.5)
                         if str(p["from"]).split("/")[0] == alice.user]
                assert not again, f"{w.user} got alice's presence again: {again}"
            after = batches()
            assert (after[0] - before[0], after[1] - before[1]) == (1, 3), (before, after)
        finally:
            await fed.close_clients()
    run(body(), BODY_TIMEOUT)
