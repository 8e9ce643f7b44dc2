"""Hostile or broken input on c2s (raw sockets): each case gets the stream error RFC 6120 names,
the connection is closed, and the node still serves other clients afterwards."""

from __future__ import annotations

from typing import Callable

import pytest

from harness import C2S_PORT, Cluster
from raw_xmpp import RawStream, stream_header
from xmpp_client import assert_pair_chats

NODE = 2
OVERSIZED_BYTES = 300 * 1024

BOMB_HEADER = (
    b"<?xml version='1.0'?>"
    b"<!DOCTYPE stream:stream ["
    b"<!ENTITY a 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'>"
    b"<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    b"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>"
    b"<!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>"
    b"<!ENTITY e '&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;'>"
    b"]>"
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
    b"to='&e;' version='1.0'>")


def _stanza_before_tls(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.open_stream()
    s.send(f"<message to='{user[0]}' type='chat'><body>sneaky</body></message>")
    return s.expect_stream_error({"not-authorized", "policy-violation"},
                                 "a message before STARTTLS and SASL")


def _stanza_before_auth(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.starttls()
    s.send(f"<message to='{user[0]}' type='chat'><body>sneaky</body></message>")
    return s.expect_stream_error({"not-authorized", "policy-violation"},
                                 "a message after STARTTLS but before SASL")


def _oversized(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.login(*user)
    body = b"x" * OVERSIZED_BYTES
    s.send_tolerant(b"<message to='" + user[0].encode() + b"' type='chat'><body>" + body +
                    b"</body></message>")
    return s.expect_stream_error({"policy-violation"}, f"a {OVERSIZED_BYTES // 1024} KiB message")


def _xml_bomb(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.send(BOMB_HEADER)
    return s.expect_stream_error({"restricted-xml", "not-well-formed"},
                                 "a stream header with <!DOCTYPE> and nested entities")


def _invalid_utf8(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.login(*user)
    s.send(b"<message to='" + user[0].encode() + b"' type='chat'><body>bad \xff\xfe \xc3\x28 "
           b"\xed\xa0\x80</body></message>")
    return s.expect_stream_error({"not-well-formed", "unsupported-encoding"},
                                 "a message with invalid UTF-8 bytes")


def _unknown_top_level(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.login(*user)
    s.send("<frobnicate xmlns='jabber:client'><x/></frobnicate>")
    return s.expect_stream_error({"unsupported-stanza-type"},
                                 "an unknown top-level element <frobnicate/>")


def _garbage_header(s: RawStream, cluster: Cluster, user: tuple[str, str]) -> str:
    s.send(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    return s.expect_stream_error({"not-well-formed", "bad-format", "invalid-namespace"},
                                 "an HTTP request instead of a stream header")


CASES: dict[str, Callable[[RawStream, Cluster, tuple[str, str]], str]] = {
    "stanza-before-tls": _stanza_before_tls,
    "stanza-before-auth": _stanza_before_auth,
    "oversized-stanza": _oversized,
    "xml-bomb-in-header": _xml_bomb,
    "invalid-utf8": _invalid_utf8,
    "unknown-top-level-element": _unknown_top_level,
    "http-instead-of-xmpp": _garbage_header,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_a_stream_error_and_the_node_survives(cluster: Cluster, case: str) -> None:
    victim = cluster.new_user("victim")
    alice, apw = cluster.new_user("alice")
    bob, bpw = cluster.new_user("bob")

    with RawStream(cluster.ip(NODE), C2S_PORT, ca=cluster.ca(NODE)) as s:
        CASES[case](s, cluster, victim)

    assert cluster.is_running(NODE), f"node {NODE} died after {case}"
    assert_pair_chats(cluster, NODE, (alice, apw), (bob, bpw), f"still alive after {case}")


def test_stream_header_is_answered_with_starttls_required(cluster: Cluster) -> None:
    """Baseline for the cases above: a plain stream gets features offering STARTTLS."""
    with RawStream(cluster.ip(NODE), C2S_PORT, ca=cluster.ca(NODE)) as s:
        s.send(stream_header(cluster.domain))
        features = s.read_features()
    assert "urn:ietf:params:xml:ns:xmpp-tls" in features, (
        f"expected <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'> in features: {features}")
    assert "<mechanism>PLAIN</mechanism>" not in features, (
        f"PLAIN must not be offered before TLS: {features}")
