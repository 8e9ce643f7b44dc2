"""Offline checks of the raw client's own pieces (no server needed)."""

from __future__ import annotations

import pytest

from raw_xmpp import _CHILD, _STREAM_ERROR, RawError, RawStream, scram_client_final, stanza_error


@pytest.mark.parametrize("algo,password,first_bare,server_first,expected", [
    # RFC 5802 section 5.
    ("sha1", "pencil", "n=user,r=fyko+d2lbbFgONRv9qkxdawL",
     "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
     "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="),
    # RFC 7677 section 3.
    ("sha256", "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO",
     "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
     "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
])
def test_scram_client_final_matches_the_rfc_vectors(algo, password, first_bare, server_first,
                                                    expected) -> None:
    assert scram_client_final(algo, password, first_bare, server_first) == expected


@pytest.mark.parametrize("xml,condition", [
    ("<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
     "</stream:error>", "not-well-formed"),
    ("<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>x</text>"
     "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
     "policy-violation"),
    ("<error xmlns='http://etherx.jabber.org/streams'><restricted-xml "
     "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>", "restricted-xml"),
])
def test_stream_error_conditions_are_recognised(xml: str, condition: str) -> None:
    m = _STREAM_ERROR.search("<stream:stream xmlns:stream='x'>" + xml)
    assert m is not None, f"no stream error found in {xml}"
    assert [c for c in _CHILD.findall(m.group(1)) if c != "text"] == [condition]


def test_stanza_errors_are_not_taken_for_stream_errors() -> None:
    iq = ("<iq type='error'><error type='cancel'><item-not-found "
          "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    assert _STREAM_ERROR.search(iq) is None


class _Canned(RawStream):
    """A RawStream over canned server output (no socket)."""

    def __init__(self, data: str) -> None:  # no super().__init__: nothing to connect to
        self.host, self.port, self.timeout = "canned", 0, 0.1
        self.buf, self.skipped, self.eof, self.log = data, "", True, []


_ERR = ("<error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>why</text></error>")


def test_stanzas_are_found_by_exact_id_or_by_having_none() -> None:
    s = _Canned(f"<iq id='a12' type='result'/><message id=\"a1\" type='error'><body>x</body>"
                f"{_ERR}</message><iq type='error'><query xmlns='jabber:iq:roster'/>{_ERR}</iq>")
    reply = s.expect_stanza_error("a1", "modify", "jid-malformed", "a message")
    assert reply.get("id") == "a1" and s.skipped == "<iq id='a12' type='result'/>"
    assert s.expect_stanza_error(None, "modify", "jid-malformed", "an iq").get("id") is None
    with pytest.raises(RawError):
        _Canned("<iq id='a12' type='result'/>").read_stanza("a1", "a prefix of another id")


def test_stanza_error_reads_type_and_conditions_without_text() -> None:
    s = _Canned(f"<message id='m' type='error'>{_ERR}</message>")
    assert stanza_error(s.read_stanza("m", "m")) == ("modify", ["jid-malformed"])
    with pytest.raises(RawError, match="bad-request"):
        _Canned(f"<message id='m' type='error'>{_ERR}</message>").expect_stanza_error(
            "m", "modify", "bad-request", "m")


@pytest.mark.parametrize("xml,ok", [
    ("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>", True),
    ("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><aborted/></failure>", False),
    ("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", False),
])
def test_sasl_failure_condition_must_match(xml: str, ok: bool) -> None:
    s = _Canned(xml)
    if ok:
        s.expect_sasl_failure("not-authorized", "a wrong password")
    else:
        with pytest.raises(RawError):
            s.expect_sasl_failure("not-authorized", "a wrong password")
