"""Offline checks of the raw client's own pieces (no server needed)."""

from __future__ import annotations

import pytest

from raw_xmpp import _CHILD, _STREAM_ERROR, scram_client_final


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
