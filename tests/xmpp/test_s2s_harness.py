"""Self-test of the federation harness (`s2s_harness.py`) with two Prosody servers only.

p.test and q.test each run on their own loopback address, find each other through the test
dnsmasq (`_xmpp-server._tcp` SRV + A records) and present certificates from the test CA. One
slixmpp client per server: mutual subscription, presence both ways, a message both ways. Run
once with certificate authentication required (TLS + SASL EXTERNAL) and once with dialback
over plaintext only, and check from Prosody's admin shell which one actually authenticated
the streams. This is what the Herald interop tests (`test_s2s.py`) build on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from s2s_harness import Prosody, RawS2S, S2SEnv, TestCA, dns_query, s2s_header  # noqa: E402
from xmpp_client import Client, bare, run, subscribe  # noqa: E402

#: Bound on one test body (each test should take a few seconds).
BODY_TIMEOUT = 45.0


async def federate(ca: Path, a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    """Users a = (jid, password, server IP) and b subscribe to each other, approve, see each
    other's presence changes and exchange one message each way."""
    ca_jid, cb_jid = a[0], b[0]
    ca_, cb_ = Client(a[0], a[1], ca=ca), Client(b[0], b[1], ca=ca)
    try:
        await ca_.login(a[2])
        await cb_.login(b[2])
        await ca_.online()
        await cb_.online()
        await subscribe(ca_, cb_)
        await subscribe(cb_, ca_)
        ca_.send_presence(pshow="away", pstatus="a is away")
        await cb_.expect_presence(ca_jid, "a's presence change", show="away", status="a is away")
        cb_.send_presence(pshow="dnd", pstatus="b is busy")
        await ca_.expect_presence(cb_jid, "b's presence change", show="dnd", status="b is busy")
        ca_.chat(cb_jid, "hello from a")
        got = await cb_.expect_messages(ca_jid, 1)
        assert got[0]["body"] == "hello from a"
        cb_.chat(ca_jid, "hello from b")
        got = await ca_.expect_messages(cb_jid, 1)
        assert got[0]["body"] == "hello from b"
        assert ca_.message_errors.empty() and cb_.message_errors.empty(), \
            "unexpected message errors"
    finally:
        await ca_.logout()
        await cb_.logout()


def s2s_sessions(p: Prosody) -> list[dict]:
    """Prosody's `s2s:show()` table as a list of {column: value} rows."""
    text = p.shell("s2s", "show")
    lines = [ln for ln in text.splitlines() if "|" in ln]
    if not lines:
        return []
    header = [h.strip().lower() for h in lines[0].split("|")]
    rows = []
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.split("|")]
        rows.append(dict(zip(header, cells)))
    return rows


def test_dns_answers_srv_and_a(s2s_env: S2SEnv) -> None:
    env = s2s_env
    env.dns.add_xmpp_server("example.test", [("node1.example.test", env.net.ip(1)),
                                             ("node2.example.test", env.net.ip(2))])
    env.dns.add_host("multi.test", env.net.ip(3))
    env.dns.add_host("multi.test", env.net.ip(4))
    env.dns.start()
    srv = sorted(env.dns.query("_xmpp-server._tcp.example.test", "SRV"))
    assert [(port, target) for _, _, port, target in srv] == [
        (5269, "node1.example.test"), (5269, "node2.example.test")], srv
    assert env.dns.query("node2.example.test") == [env.net.ip(2)]
    assert sorted(env.dns.query("multi.test")) == [env.net.ip(3), env.net.ip(4)]
    assert env.dns.query("unknown.test") == []
    # Changes need a restart; the old records go, the new ones come.
    env.dns.remove("multi.test")
    env.dns.add_host("late.test", env.net.ip(5))
    env.dns.restart()
    assert env.dns.query("multi.test") == []
    assert env.dns.query("late.test") == [env.net.ip(5)]
    # Nothing but .test: no upstream, nothing on 127.0.0.1.
    rcode, answers = dns_query(env.dns.ip, "example.com")
    assert answers == [] and rcode != 0, rcode


def test_ca_issues_wildcards_and_a_second_ca_is_not_trusted(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    ca = TestCA(tmp_path / "ca")
    cert, key = ca.issue(["*.p.test", "p.test"])
    assert key.stat().st_mode & 0o077 == 0
    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["*.p.test", "p.test"]
    store = Store([x509.load_pem_x509_certificate(ca.ca_path.read_bytes())])
    for name in ("p.test", "muc.p.test"):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name)).verify(leaf, [])
    # The same names from the other CA do not verify against ca_path.
    bad, _ = ca.issue_untrusted(["*.p.test", "p.test"])
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("p.test")).verify(
            x509.load_pem_x509_certificate(bad.read_bytes()), [])
    # Client certificates (s2s initiators present their certificate as TLS clients).
    PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])


@pytest.mark.parametrize("mode", ["certificates", "dialback"])
def test_two_prosodies_federate(s2s_env: S2SEnv, mode: str) -> None:
    env = s2s_env
    if mode == "certificates":
        knobs = dict(secure_auth=True, require_encryption=True, dialback=False)
    else:
        knobs = dict(secure_auth=False, require_encryption=False, allow_encryption=False,
                     dialback=True)
    p = env.prosody("p.test", **knobs)
    q = env.prosody("q.test", **knobs)
    env.dns.start()
    p.start()
    q.start()
    alice = (p.register("alice", "pw-alice"), "pw-alice", p.ip)
    bob = (q.register("bob", "pw-bob"), "pw-bob", q.ip)
    run(federate(env.ca.ca_path, alice, bob), BODY_TIMEOUT)

    # Which mechanism authenticated the streams, from each side's admin shell: each server
    # shows its outgoing stream's SASL/dialback outcome (the incoming one shows "Not used").
    for server, peer in ((p, q), (q, p)):
        rows = s2s_sessions(server)
        dirs = sorted(r["dir"] for r in rows if r["remote"] == peer.domain)
        assert dirs == ["-->", "<--"], f"{server.domain}: expected one stream each way: {rows}"
        out = next(r for r in rows if r["dir"] == "-->")
        if mode == "certificates":
            assert all(r["security"].startswith("TLS") for r in rows), rows
            assert out["sasl"] == "Succeeded" and out["dialback"] == "Not used", out
        else:
            assert all(r["security"] == "insecure" for r in rows), rows
            assert out["sasl"] == "" and out["dialback"] == "Completed", out


def test_a_certificate_from_another_ca_is_refused(s2s_env: S2SEnv) -> None:
    """q.test presents a certificate from an untrusted CA; p.test requires valid certificates:
    alice@p.test's message to q.test bounces with an error and no stream gets authenticated."""
    env = s2s_env
    p = env.prosody("p.test", secure_auth=True, dialback=False)
    q = env.prosody("q.test", secure_auth=True, dialback=False,
                    cert=env.ca.issue_untrusted(["q.test"]))
    env.dns.start()
    p.start()
    q.start()
    alice = p.register("alice", "pw-alice")
    bob = q.register("bob", "pw-bob")

    async def body() -> str:
        a = Client(alice, "pw-alice", ca=env.ca.ca_path)
        try:
            await a.login(p.ip)
            await a.online()
            a.chat(bob, "must not arrive")
            err = await a.expect(a.message_errors, lambda m: bare(m["from"]) == bob,
                                 f"an error bounce from {bob}", timeout=20)
            return str(err["error"]["condition"])
        finally:
            await a.logout()
    cond = run(body(), BODY_TIMEOUT)
    # Prosody 0.12 bounces stanzas queued for a failed outgoing stream with
    # remote-server-timeout once the remote had opened a stream (mod_s2s bounce_sendq),
    # remote-server-not-found before that.
    assert cond == "remote-server-timeout", cond
    assert not [r for r in s2s_sessions(p) if r["sasl"] == "Succeeded"], s2s_sessions(p)
    assert "because its certificate is not trusted" in p.log_text(), p.log_tail()
    assert "must not arrive" not in q.log_text(), q.log_tail()


def test_raw_s2s_streams_against_prosody(s2s_env: S2SEnv) -> None:
    """The raw s2s tooling the Herald bad-input tests use, checked against Prosody: each
    input gets Prosody's answer, and a stream authenticated with SASL EXTERNAL (a TestCA
    client certificate for r.test) delivers a message to a Prosody user."""
    env = s2s_env
    p = env.prosody("p.test", secure_auth=False, require_encryption=False, dialback=True)
    q = env.prosody("q.test", secure_auth=False, require_encryption=False, dialback=True)
    env.dns.start()
    p.start()
    q.start()
    alice = p.register("alice", "pw-alice")

    def raw(frm: str = "q.test", to: str = "p.test", **kw: object) -> RawS2S:
        return RawS2S(p.ip, from_domain=frm, to_domain=to, ca=env.ca.ca_path, **kw)

    with raw() as s:
        s.send(b"garbage<<>>" + s2s_header("q.test", "p.test"))
        assert s.expect_stream_error({"not-well-formed"}, "garbage before the header")
    with raw(to="nowhere.test") as s:
        s.send(s2s_header("q.test", "nowhere.test"))
        assert s.expect_stream_error({"host-unknown"}, "a header to a domain not served")
    with raw() as s:
        features = s.open_stream()
        assert "urn:xmpp:features:dialback" in features and s.stream_id, features
        s.dialback_result("not-the-key")  # p.test asks q.test (real) to verify: invalid
        typ, text = s.expect_dialback("result", "the answer to a wrong dialback key", 15)
        assert typ == "invalid" and s.stream_id in text, text
    with raw() as s:
        s.open_stream()
        s.dialback_verify("never-issued", "deadbeef")
        typ, text = s.expect_dialback("verify", "the answer to a db:verify of an unknown id")
        assert typ == "invalid", text

    async def body() -> None:
        a = Client(alice, "pw-alice", ca=env.ca.ca_path)
        try:
            await a.login(p.ip)
            await a.online()
            with raw("r.test", cert=env.ca.issue(["r.test"])) as s:
                s.sasl_external(s.starttls())
                s.send(f"<message from='m@r.test' to='{alice}' type='chat' id='raw1'>"
                       "<body>over a raw stream</body></message>")
                got = await a.expect_messages("m@r.test", 1)
                assert got[0]["body"] == "over a raw stream"
                s.send_tolerant(b"<message from='m@r.test' to='" + alice.encode() +
                                b"' type='chat'><body>" + b"x" * (1024 * 1024) +
                                b"</body></message>")
                assert s.expect_stream_error({"policy-violation"}, "a 1 MiB stanza")
        finally:
            await a.logout()
    run(body(), BODY_TIMEOUT)
