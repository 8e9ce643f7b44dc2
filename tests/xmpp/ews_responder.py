"""An Exchange Web Services responder for Herald's calendar tests (issue 12, REQUIREMENTS §17).

No Exchange server exists in any registry, so this is the stand-in: an HTTPS (TLS) server on
127.0.0.1 that speaks the EWS SOAP operations a calendar-presence client uses, with the
shapes of Microsoft's published schema (Messages.xsd / Types.xsd, the 2006 namespaces):

- `GetUserAvailability` (`m:GetUserAvailabilityRequest`: `t:TimeZone`, `m:MailboxDataArray`,
  `t:FreeBusyViewOptions`) → `m:FreeBusyResponseArray` of `m:FreeBusyResponse` with a
  `m:ResponseMessage` and a `m:FreeBusyView` (`t:FreeBusyViewType`, `t:MergedFreeBusy`,
  `t:CalendarEventArray` of `t:CalendarEvent`: `StartTime`, `EndTime`, `BusyType`,
  `CalendarEventDetails`); unknown mailboxes get `ResponseClass="Error"`
  `ErrorMailRecipientNotFound`;
- `GetServerTimeZones` (what exchangelib asks before `GetUserAvailability`): UTC only;
- `Subscribe` with `m:PullSubscriptionRequest` on the `calendar` distinguished folder →
  `m:SubscriptionId` + `m:Watermark`; `GetEvents` (`m:SubscriptionId`, `m:Watermark`) →
  `m:Notification` with `t:CreatedEvent` / `t:DeletedEvent` for the calendar changes since the
  watermark, else one `t:StatusEvent`; an unknown or expired subscription gets
  `ErrorSubscriptionNotFound`. `offer_pull=False` makes `Subscribe` fail as a server without
  notifications would;
- anything else: a SOAP fault `ErrorInvalidRequest` (HTTP 500), as Exchange answers.

It is checked by exchangelib (a client we did not write) in test_calendar_ews.py, so that it
behaves as Exchange does to a client.

Authentication is NTLM over HTTP (MS-NTHT), verified cryptographically: a request without
credentials gets `401 WWW-Authenticate: NTLM`; the NEGOTIATE message gets a CHALLENGE (with
target information and a timestamp) on the same connection; the AUTHENTICATE message's
NTLMv2 response is recomputed from the configured password (NTOWFv2, HMAC-MD5, MS-NLMP
§3.3.2) and the connection is authenticated only if it matches. NTLMv1 responses (24 bytes),
a wrong password, a wrong account, or an AUTHENTICATE on another connection than its
CHALLENGE get 401. Optional HTTP Basic (`allow_basic`).

Impersonation: every `GetUserAvailability` for a mailbox other than the service account's own
must carry `t:ExchangeImpersonation/t:ConnectingSID/t:SmtpAddress` naming that mailbox when
`require_impersonation` is set (else a `ErrorImpersonateUserDenied` fault, counted in
`stats["impersonation_violations"]`); mailboxes in `deny_impersonation` get that fault too.

Bad-input modes for gateway tests (`mode`): `ok`, `garbage` (not XML), `huge` (a body larger
than Herald's 4 MiB limit), `slow` (answers after `slow_seconds`), `forms` (redirects every request to an OWA login
page, as forms-based authentication does). The bad modes also answer
WebDAV `PROPFIND`/`REPORT` (status 207, Basic authentication with `allow_basic`), so the same
server stands in for a broken CalDAV gateway.

The calendar lives in a `Calendars` object shared by several responders (several CASes in
front of one mailbox store), changed directly by the test.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import os
import socket
import ssl
import struct
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import escape

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
ENS = "http://schemas.microsoft.com/exchange/services/2006/errors"
EWS_PATH = "/EWS/Exchange.asmx"

# ---------------------------------------------------------------------------------------------
# MD4 (RFC 1320): OpenSSL 3 hides it behind the legacy provider, so hashlib may not have it.


def md4(data: bytes) -> bytes:
    def f(x, y, z): return (x & y) | (~x & z)
    def g(x, y, z): return (x & y) | (x & z) | (y & z)
    def h(x, y, z): return x ^ y ^ z
    def rotl(v, s): return ((v << s) | (v >> (32 - s))) & 0xFFFFFFFF

    msg = bytearray(data)
    bit_len = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg.append(0x80)
    while len(msg) % 64 != 56:
        msg.append(0)
    msg += struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):
            a = rotl((a + f(b, c, d) + x[i]) & 0xFFFFFFFF, 3)
            d = rotl((d + f(a, b, c) + x[i + 1]) & 0xFFFFFFFF, 7)
            c = rotl((c + f(d, a, b) + x[i + 2]) & 0xFFFFFFFF, 11)
            b = rotl((b + f(c, d, a) + x[i + 3]) & 0xFFFFFFFF, 19)
        for i in (0, 1, 2, 3):
            a = rotl((a + g(b, c, d) + x[i] + 0x5A827999) & 0xFFFFFFFF, 3)
            d = rotl((d + g(a, b, c) + x[i + 4] + 0x5A827999) & 0xFFFFFFFF, 5)
            c = rotl((c + g(d, a, b) + x[i + 8] + 0x5A827999) & 0xFFFFFFFF, 9)
            b = rotl((b + g(c, d, a) + x[i + 12] + 0x5A827999) & 0xFFFFFFFF, 13)
        for i in (0, 2, 1, 3):
            a = rotl((a + h(b, c, d) + x[i] + 0x6ED9EBA1) & 0xFFFFFFFF, 3)
            d = rotl((d + h(a, b, c) + x[i + 8] + 0x6ED9EBA1) & 0xFFFFFFFF, 9)
            c = rotl((c + h(d, a, b) + x[i + 4] + 0x6ED9EBA1) & 0xFFFFFFFF, 11)
            b = rotl((b + h(c, d, a) + x[i + 12] + 0x6ED9EBA1) & 0xFFFFFFFF, 15)
        a, b = (a + aa) & 0xFFFFFFFF, (b + bb) & 0xFFFFFFFF
        c, d = (c + cc) & 0xFFFFFFFF, (d + dd) & 0xFFFFFFFF
    return struct.pack("<4I", a, b, c, d)


def ntowf_v2(password: str, user: str, domain: str) -> bytes:
    """MS-NLMP §3.3.2 NTOWFv2."""
    nt_hash = md4(password.encode("utf-16-le"))
    return hmac.new(nt_hash, (user.upper() + domain).encode("utf-16-le"), hashlib.md5).digest()


# ---------------------------------------------------------------------------------------------
# NTLM server side (MS-NLMP).

NTLMSSP = b"NTLMSSP\x00"
NEGOTIATE_UNICODE = 0x00000001
NEGOTIATE_OEM = 0x00000002
REQUEST_TARGET = 0x00000004
NEGOTIATE_SIGN = 0x00000010
NEGOTIATE_SEAL = 0x00000020
NEGOTIATE_NTLM = 0x00000200
NEGOTIATE_ALWAYS_SIGN = 0x00008000
TARGET_TYPE_DOMAIN = 0x00010000
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NEGOTIATE_TARGET_INFO = 0x00800000
NEGOTIATE_VERSION = 0x02000000
NEGOTIATE_128 = 0x20000000
NEGOTIATE_KEY_EXCH = 0x40000000
NEGOTIATE_56 = 0x80000000
SERVER_FLAGS = (NEGOTIATE_UNICODE | REQUEST_TARGET | NEGOTIATE_SIGN | NEGOTIATE_SEAL
                | NEGOTIATE_NTLM | NEGOTIATE_ALWAYS_SIGN | NEGOTIATE_EXTENDED_SESSIONSECURITY
                | NEGOTIATE_TARGET_INFO | NEGOTIATE_VERSION | NEGOTIATE_128 | NEGOTIATE_KEY_EXCH
                | NEGOTIATE_56)


class NtlmRefused(Exception):
    """The AUTHENTICATE message does not prove the password (or is NTLMv1)."""


def _field(msg: bytes, at: int) -> bytes:
    length, _, offset = struct.unpack("<HHI", msg[at:at + 8])
    if offset + length > len(msg):
        raise NtlmRefused(f"field at {at} out of bounds")
    return msg[offset:offset + length]


def _av(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def challenge_message(negotiate: bytes, server_challenge: bytes, domain: str,
                      computer: str) -> bytes:
    if negotiate[:8] != NTLMSSP or struct.unpack("<I", negotiate[8:12])[0] != 1:
        raise NtlmRefused("not a NEGOTIATE message")
    client_flags = struct.unpack("<I", negotiate[12:16])[0]
    flags = (client_flags & SERVER_FLAGS) | NEGOTIATE_TARGET_INFO | TARGET_TYPE_DOMAIN \
        | NEGOTIATE_NTLM | NEGOTIATE_UNICODE
    filetime = (int(time.time()) + 11644473600) * 10_000_000
    target_info = (_av(2, domain.encode("utf-16-le")) + _av(1, computer.encode("utf-16-le"))
                   + _av(4, (domain.lower() + ".test").encode("utf-16-le"))
                   + _av(3, (computer.lower() + "." + domain.lower() + ".test")
                         .encode("utf-16-le"))
                   + _av(7, struct.pack("<Q", filetime)) + _av(0, b""))
    target_name = domain.encode("utf-16-le")
    version = bytes([6, 1, 0x1d, 0xb1, 0, 0, 0, 15])  # Windows 6.1.7601, NTLM revision 15
    header_len = 56
    msg = NTLMSSP + struct.pack("<I", 2)
    msg += struct.pack("<HHI", len(target_name), len(target_name), header_len)
    msg += struct.pack("<I", flags) + server_challenge + b"\x00" * 8
    msg += struct.pack("<HHI", len(target_info), len(target_info),
                       header_len + len(target_name))
    msg += version + target_name + target_info
    return msg


@dataclass
class Authenticated:
    user: str
    domain: str
    workstation: str


def verify_authenticate(msg: bytes, server_challenge: bytes, accounts: dict[str, str]
                        ) -> Authenticated:
    """Checks an AUTHENTICATE message's NTLMv2 response against `accounts` (account name as
    configured, `user@domain` or `DOMAIN\\user` → password)."""
    if msg[:8] != NTLMSSP or struct.unpack("<I", msg[8:12])[0] != 3:
        raise NtlmRefused("not an AUTHENTICATE message")
    nt = _field(msg, 20)
    domain_b, user_b, ws_b = _field(msg, 28), _field(msg, 36), _field(msg, 44)
    flags = struct.unpack("<I", msg[60:64])[0]
    dec = (lambda b: b.decode("utf-16-le")) if flags & NEGOTIATE_UNICODE else \
        (lambda b: b.decode("latin-1"))
    user, domain, ws = dec(user_b), dec(domain_b), dec(ws_b)
    if len(nt) == 24:
        raise NtlmRefused("NTLMv1 response refused (this server requires NTLMv2)")
    if len(nt) < 48:
        raise NtlmRefused(f"NT response of {len(nt)} bytes is not NTLMv2")
    name = f"{domain}\\{user}" if domain else user
    password = None
    for acct, pw in accounts.items():
        if acct.lower() == name.lower() or (
                "\\" not in acct and not domain and acct.lower() == user.lower()):
            password = pw
    if password is None:
        raise NtlmRefused(f"unknown account {name!r}")
    proof, blob = nt[:16], nt[16:]
    key = ntowf_v2(password, user, domain)
    want = hmac.new(key, server_challenge + blob, hashlib.md5).digest()
    if not hmac.compare_digest(proof, want):
        raise NtlmRefused(f"wrong NTLMv2 proof for {name!r} (wrong password)")
    return Authenticated(user, domain, ws)


# ---------------------------------------------------------------------------------------------
# The calendar store.

BUSY_TYPES = ("Free", "Tentative", "Busy", "OOF", "NoData", "WorkingElsewhere")
MERGED_DIGIT = {"Free": "0", "Tentative": "1", "Busy": "2", "OOF": "3", "NoData": "4",
                "WorkingElsewhere": "0"}


@dataclass
class Event:
    start: datetime.datetime  # aware, UTC
    end: datetime.datetime
    busy_type: str = "Busy"
    subject: str = "Meeting"


@dataclass
class Calendars:
    """Mailboxes (SMTP address, lower case) → events; shared by every responder."""
    events: dict[str, list[Event]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Change log for notifications: (sequence number, mailbox, event type, item id).
    changes: list[tuple[int, str, str, str]] = field(default_factory=list)
    seq: int = 0

    def _log(self, mailbox: str, kind: str, ev: Event) -> None:
        self.seq += 1
        self.changes.append((self.seq, mailbox.lower(), kind, f"item-{id(ev):x}"))

    def add(self, mailbox: str, ev: Event) -> Event:
        with self.lock:
            self.events.setdefault(mailbox.lower(), []).append(ev)
            self._log(mailbox, "CreatedEvent", ev)
        return ev

    def remove(self, mailbox: str, ev: Event) -> None:
        with self.lock:
            self.events.get(mailbox.lower(), []).remove(ev)
            self._log(mailbox, "DeletedEvent", ev)

    def since(self, mailbox: str, seq: int) -> tuple[list[tuple[int, str, str]], int]:
        """The changes of `mailbox` after `seq`, and the newest sequence number."""
        with self.lock:
            return ([(n, k, i) for n, mb, k, i in self.changes
                     if n > seq and mb == mailbox.lower()], self.seq)

    def overlapping(self, mailbox: str, start: datetime.datetime,
                    end: datetime.datetime) -> list[Event]:
        with self.lock:
            return [e for e in self.events.get(mailbox.lower(), [])
                    if e.start < end and e.end > start]


# ---------------------------------------------------------------------------------------------
# SOAP.


def _t(tag: str) -> str:
    return f"{{{TNS}}}{tag}"


def _m(tag: str) -> str:
    return f"{{{MNS}}}{tag}"


def envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}">'
        '<s:Header><h:ServerVersionInfo MajorVersion="14" MinorVersion="2" '
        'MajorBuildNumber="247" MinorBuildNumber="5" Version="Exchange2010_SP2" '
        f'xmlns:h="{TNS}" xmlns="{TNS}" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>'
        f'<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
    ).encode()


def fault(code: str, text: str) -> bytes:
    return envelope(
        '<s:Fault>'
        f'<faultcode xmlns:a="{TNS}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{escape(text)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{ENS}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{ENS}">{escape(text)}</e:Message></detail>'
        '</s:Fault>')


def _parse_local(text: str, bias_minutes: int) -> datetime.datetime:
    """An xs:dateTime from the request: with a zone as given, else local time in the request's
    zone (UTC = local + bias)."""
    text = text.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    dt = datetime.datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc) + datetime.timedelta(minutes=bias_minutes)
    return dt.astimezone(datetime.timezone.utc)


def _format_local(dt: datetime.datetime, bias_minutes: int) -> str:
    local = dt.astimezone(datetime.timezone.utc) - datetime.timedelta(minutes=bias_minutes)
    return local.replace(tzinfo=None).isoformat(timespec="seconds")


UTC_TZ_DEFINITION = (
    f'<t:TimeZoneDefinition xmlns:t="{TNS}" Id="UTC" Name="(UTC) Coordinated Universal Time">'
    '<t:Periods><t:Period Bias="PT0H" Name="Standard" '
    'Id="trule:Microsoft/Registry/UTC/2006-Standard"/></t:Periods>'
    '<t:TransitionsGroups><t:TransitionsGroup Id="0"><t:Transition>'
    '<t:To Kind="Period">trule:Microsoft/Registry/UTC/2006-Standard</t:To>'
    '</t:Transition></t:TransitionsGroup></t:TransitionsGroups>'
    '<t:Transitions><t:Transition><t:To Kind="Group">0</t:To></t:Transition></t:Transitions>'
    '</t:TimeZoneDefinition>')


# ---------------------------------------------------------------------------------------------
# The server.


class EwsResponder:
    """One CAS: `https://localhost:PORT/EWS/Exchange.asmx`."""

    HUGE_BYTES = 5 << 20

    def __init__(self, name: str, cert: tuple[Path, Path], calendars: Calendars,
                 accounts: dict[str, str], *, require_impersonation: bool = True,
                 allow_basic: bool = False, host: str = "127.0.0.1") -> None:
        self.name = name
        self.cert = cert
        self.calendars = calendars
        self.accounts = dict(accounts)
        self.require_impersonation = require_impersonation
        self.allow_basic = allow_basic
        self.deny_impersonation: set[str] = set()
        self.offer_pull = True
        #: Subscription id → [mailbox, last sequence number read, timeout s, last use].
        self.subscriptions: dict[str, list] = {}
        self.mode = "ok"
        self.slow_seconds = 5.0
        self.host = host
        self.port = 0
        self.stats: dict = {"ntlm_ok": 0, "ntlm_refused": [], "ntlmv1_refused": 0,
                            "basic_ok": 0, "operations": [], "impersonated": [],
                            "impersonation_violations": [], "workstations": set(),
                            "subscribed": [], "get_events": 0, "events_sent": 0,
                            "availability_for": [], "not_impersonated": []}
        self.lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None
        #: Open client connections, closed by stop() (a stopped server keeps none alive).
        self._open: set = set()
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        responder = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def finish_request(self, request, client_address):
                # The TLS handshake in the connection's thread, not the accept loop.
                request.settimeout(10)
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    return
                with responder.lock:
                    responder._open.add(tls)
                try:
                    Handler(tls, client_address, self)
                finally:
                    with responder.lock:
                        responder._open.discard(tls)

            def handle_error(self, request, client_address):
                pass

        class Handler(_Handler):
            owner = responder

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name=f"ews-{self.name}")
        self._thread.start()

    def stop(self) -> None:
        """Stops listening and closes every open connection, as a stopped server would."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            conns = list(self._open)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{EWS_PATH}"

    def record(self, key: str, value) -> None:
        with self.lock:
            v = self.stats[key]
            if isinstance(v, list):
                v.append(value)
            elif isinstance(v, set):
                v.add(value)
            else:
                self.stats[key] = v + value

    # -- operations -------------------------------------------------------------------------

    def handle_soap(self, body: bytes) -> tuple[int, bytes]:
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            return 500, fault("ErrorSchemaValidation", f"The request is not XML: {exc}")
        if root.tag != f"{{{SOAP}}}Envelope":
            return 500, fault("ErrorSchemaValidation", "The request is not a SOAP envelope.")
        header = root.find(f"{{{SOAP}}}Header")
        soap_body = root.find(f"{{{SOAP}}}Body")
        if soap_body is None or len(soap_body) == 0:
            return 500, fault("ErrorSchemaValidation", "The SOAP body is empty.")
        op = soap_body[0]
        impersonated = None
        if header is not None:
            imp = header.find(f"{_t('ExchangeImpersonation')}/{_t('ConnectingSID')}")
            if imp is not None:
                for tag in ("SmtpAddress", "PrimarySmtpAddress", "PrincipalName"):
                    el = imp.find(_t(tag))
                    if el is not None and el.text:
                        impersonated = el.text.strip()
        if op.tag == _m("GetServerTimeZones"):
            self.record("operations", "GetServerTimeZones")
            return 200, envelope(
                f'<m:GetServerTimeZonesResponse xmlns:m="{MNS}" xmlns:t="{TNS}">'
                '<m:ResponseMessages><m:GetServerTimeZonesResponseMessage ResponseClass="Success">'
                '<m:ResponseCode>NoError</m:ResponseCode><m:TimeZoneDefinitions>'
                f'{UTC_TZ_DEFINITION}</m:TimeZoneDefinitions>'
                '</m:GetServerTimeZonesResponseMessage></m:ResponseMessages>'
                '</m:GetServerTimeZonesResponse>')
        if op.tag == _m("GetUserAvailabilityRequest"):
            self.record("operations", "GetUserAvailability")
            return self.get_user_availability(op, impersonated)
        if op.tag == _m("Subscribe"):
            self.record("operations", "Subscribe")
            return self.subscribe(op, impersonated)
        if op.tag == _m("GetEvents"):
            self.record("operations", "GetEvents")
            return self.get_events(op)
        name = op.tag.split("}")[-1]
        self.record("operations", name)
        return 500, fault("ErrorInvalidRequest",
                          f"The operation {name} is not served by this test responder.")

    def _impersonation_error(self, mailbox: str, impersonated: Optional[str]
                             ) -> Optional[tuple[int, bytes]]:
        """The fault for acting on `mailbox` (not the service account's own) without
        impersonating it, when impersonation is required or denied; else None."""
        if mailbox.lower() in {a.lower() for a in self.accounts}:
            return None
        if impersonated is not None:
            self.record("impersonated", impersonated)
        else:
            self.record("not_impersonated", mailbox.lower())
        if impersonated is not None and impersonated.lower() in self.deny_impersonation:
            return 500, fault("ErrorImpersonateUserDenied",
                              "The account does not have permission to impersonate the "
                              "requested user.")
        if self.require_impersonation and (impersonated is None
                                           or impersonated.lower() != mailbox.lower()):
            self.record("impersonation_violations", (mailbox, impersonated))
            return 500, fault("ErrorImpersonateUserDenied",
                              f"Access to {mailbox} requires impersonating it.")
        return None

    def subscribe(self, op: ET.Element, impersonated: Optional[str]) -> tuple[int, bytes]:
        def answer(inner: str, cls: str = "Success", code: str = "NoError") -> bytes:
            return envelope(
                f'<m:SubscribeResponse xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
                f'<m:SubscribeResponseMessage ResponseClass="{cls}">' + inner
                + f'<m:ResponseCode>{code}</m:ResponseCode></m:SubscribeResponseMessage>'
                '</m:ResponseMessages></m:SubscribeResponse>')
        if not self.offer_pull:
            return 200, answer("<m:MessageText>Pull notifications are not offered by this "
                               "server.</m:MessageText>", "Error", "ErrorInvalidRequest")
        pull = op.find(_m("PullSubscriptionRequest"))
        folder = pull.find(f"{_t('FolderIds')}/{_t('DistinguishedFolderId')}") \
            if pull is not None else None
        if pull is None or folder is None or folder.get("Id") != "calendar":
            return 500, fault("ErrorInvalidSubscriptionRequest",
                              "A pull subscription on the calendar folder is expected.")
        mailbox = folder.findtext(f"{_t('Mailbox')}/{_t('EmailAddress')}") or impersonated
        if not mailbox:
            return 500, fault("ErrorMissingEmailAddress", "Whose calendar?")
        mailbox = mailbox.strip()
        err = self._impersonation_error(mailbox, impersonated)
        if err is not None:
            return err
        timeout = int(pull.findtext(_t("Timeout")) or "30")
        _, seq = self.calendars.since(mailbox, 0)
        sid = base64.b64encode(os.urandom(24)).decode()
        with self.lock:
            self.subscriptions[sid] = [mailbox, seq, timeout * 60, time.monotonic()]
        self.record("subscribed", mailbox)
        return 200, answer(f"<m:SubscriptionId>{sid}</m:SubscriptionId>"
                           f"<m:Watermark>{_watermark(seq)}</m:Watermark>")

    def get_events(self, op: ET.Element) -> tuple[int, bytes]:
        sid = (op.findtext(_m("SubscriptionId")) or "").strip()
        mark = (op.findtext(_m("Watermark")) or "").strip()

        def answer(inner: str, cls: str = "Success", code: str = "NoError") -> bytes:
            return envelope(
                f'<m:GetEventsResponse xmlns:m="{MNS}" xmlns:t="{TNS}"><m:ResponseMessages>'
                f'<m:GetEventsResponseMessage ResponseClass="{cls}">' + inner
                + f'<m:ResponseCode>{code}</m:ResponseCode></m:GetEventsResponseMessage>'
                '</m:ResponseMessages></m:GetEventsResponse>')
        with self.lock:
            sub = self.subscriptions.get(sid)
            if sub is not None and time.monotonic() - sub[3] > sub[2]:
                del self.subscriptions[sid]
                sub = None
        if sub is None:
            return 200, answer("<m:MessageText>The specified subscription was not found."
                               "</m:MessageText>", "Error", "ErrorSubscriptionNotFound")
        try:
            seq = _read_watermark(mark)
        except ValueError:
            return 200, answer("<m:MessageText>Bad watermark.</m:MessageText>", "Error",
                               "ErrorInvalidWatermark")
        changes, newest = self.calendars.since(sub[0], seq)
        self.record("get_events", 1)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        if changes:
            self.record("events_sent", len(changes))
            events = "".join(
                f"<t:{kind}><t:Watermark>{_watermark(n)}</t:Watermark>"
                f"<t:TimeStamp>{now}</t:TimeStamp><t:ItemId Id=\"{item}\" ChangeKey=\"1\"/>"
                f"<t:ParentFolderId Id=\"calendar\" ChangeKey=\"1\"/></t:{kind}>"
                for n, kind, item in changes)
            last = changes[-1][0]
        else:
            last = max(seq, newest)
            events = f"<t:StatusEvent><t:Watermark>{_watermark(last)}</t:Watermark></t:StatusEvent>"
        with self.lock:
            sub[1], sub[3] = last, time.monotonic()
        return 200, answer(
            f"<m:Notification><t:SubscriptionId>{sid}</t:SubscriptionId>"
            f"<t:PreviousWatermark>{escape(mark)}</t:PreviousWatermark>"
            f"<t:MoreEvents>false</t:MoreEvents>{events}</m:Notification>")

    def get_user_availability(self, op: ET.Element, impersonated: Optional[str]
                              ) -> tuple[int, bytes]:
        bias_el = op.find(f"{_t('TimeZone')}/{_t('Bias')}")
        bias = int(bias_el.text) if bias_el is not None and bias_el.text else 0
        window = op.find(f"{_t('FreeBusyViewOptions')}/{_t('TimeWindow')}")
        view_el = op.find(f"{_t('FreeBusyViewOptions')}/{_t('RequestedView')}")
        interval_el = op.find(
            f"{_t('FreeBusyViewOptions')}/{_t('MergedFreeBusyIntervalInMinutes')}")
        mailboxes = [el.text.strip() for el in
                     op.findall(f"{_m('MailboxDataArray')}/{_t('MailboxData')}/{_t('Email')}/"
                                f"{_t('Address')}") if el.text]
        if window is None or not mailboxes:
            return 500, fault("ErrorSchemaValidation",
                              "TimeWindow and MailboxDataArray are required.")
        try:
            start = _parse_local(window.findtext(_t("StartTime"), ""), bias)
            end = _parse_local(window.findtext(_t("EndTime"), ""), bias)
        except ValueError as exc:
            return 500, fault("ErrorSchemaValidation", f"Bad TimeWindow: {exc}")
        if end <= start:
            return 500, fault("ErrorInvalidTimeInterval", "EndTime is before StartTime.")
        view = (view_el.text or "Detailed").strip() if view_el is not None else "Detailed"
        interval = int(interval_el.text) if interval_el is not None and interval_el.text else 30
        for mb in mailboxes:
            err = self._impersonation_error(mb, impersonated)
            if err is not None:
                return err
            self.record("availability_for", mb.lower())
        out = []
        for mb in mailboxes:
            if mb.lower() in self.calendars.missing:
                out.append(
                    '<FreeBusyResponse><ResponseMessage ResponseClass="Error">'
                    '<MessageText>No mailbox with such guid.</MessageText>'
                    '<ResponseCode>ErrorMailRecipientNotFound</ResponseCode>'
                    '<DescriptiveLinkKey>0</DescriptiveLinkKey></ResponseMessage>'
                    '<FreeBusyView><FreeBusyViewType xmlns="{TNS}">None</FreeBusyViewType>'
                    '</FreeBusyView></FreeBusyResponse>'.replace("{TNS}", TNS))
                continue
            events = self.calendars.overlapping(mb, start, end)
            merged = ""
            if "Merged" in view:
                t = start
                step = datetime.timedelta(minutes=max(interval, 5))
                while t < end:
                    slot = [e for e in events if e.start < t + step and e.end > t]
                    rank = max((BUSY_TYPES.index(e.busy_type) for e in slot
                                if e.busy_type != "NoData"), default=0)
                    merged += MERGED_DIGIT[BUSY_TYPES[rank]]
                    t += step
            items = ""
            if "Detailed" in view or view == "FreeBusy":
                for e in sorted(events, key=lambda e: e.start):
                    details = (f'<CalendarEventDetails><ID>{abs(hash((e.start, e.subject)))}</ID>'
                               f'<Subject>{escape(e.subject)}</Subject><Location/>'
                               '<IsMeeting>true</IsMeeting><IsRecurring>false</IsRecurring>'
                               '<IsException>false</IsException><IsReminderSet>true</IsReminderSet>'
                               '<IsPrivate>false</IsPrivate></CalendarEventDetails>'
                               if "Detailed" in view else "")
                    items += (f'<CalendarEvent><StartTime>{_format_local(e.start, bias)}</StartTime>'
                              f'<EndTime>{_format_local(e.end, bias)}</EndTime>'
                              f'<BusyType>{e.busy_type}</BusyType>{details}</CalendarEvent>')
            out.append(
                '<FreeBusyResponse><ResponseMessage ResponseClass="Success">'
                '<ResponseCode>NoError</ResponseCode></ResponseMessage>'
                f'<FreeBusyView><FreeBusyViewType xmlns="{TNS}">{escape(view)}</FreeBusyViewType>'
                + (f'<MergedFreeBusy xmlns="{TNS}">{merged}</MergedFreeBusy>' if merged else "")
                + f'<CalendarEventArray xmlns="{TNS}">{items}</CalendarEventArray>'
                f'<WorkingHours xmlns="{TNS}"><TimeZone><Bias>0</Bias>'
                '<StandardTime><Bias>0</Bias><Time>00:00:00</Time><DayOrder>1</DayOrder>'
                '<Month>1</Month><DayOfWeek>Sunday</DayOfWeek></StandardTime>'
                '<DaylightTime><Bias>0</Bias><Time>00:00:00</Time><DayOrder>1</DayOrder>'
                '<Month>1</Month><DayOfWeek>Sunday</DayOfWeek></DaylightTime></TimeZone>'
                '<WorkingPeriodArray><WorkingPeriod><DayOfWeek>Monday Tuesday Wednesday '
                'Thursday Friday</DayOfWeek><StartTimeInMinutes>480</StartTimeInMinutes>'
                '<EndTimeInMinutes>1020</EndTimeInMinutes></WorkingPeriod></WorkingPeriodArray>'
                '</WorkingHours></FreeBusyView></FreeBusyResponse>')
        return 200, envelope(
            f'<GetUserAvailabilityResponse xmlns="{MNS}"><FreeBusyResponseArray>'
            + "".join(out) + '</FreeBusyResponseArray></GetUserAvailabilityResponse>')


def _watermark(seq: int) -> str:
    return base64.b64encode(b"wm" + struct.pack(">Q", seq)).decode()


def _read_watermark(mark: str) -> int:
    raw = base64.b64decode(mark, validate=True)
    if len(raw) != 10 or raw[:2] != b"wm":
        raise ValueError(mark)
    return struct.unpack(">Q", raw[2:])[0]


class _Handler(BaseHTTPRequestHandler):
    """One connection: NTLM state lives here (NTLM authenticates the connection)."""

    protocol_version = "HTTP/1.1"
    owner: EwsResponder
    timeout = 10

    def setup(self) -> None:
        super().setup()
        self.server_challenge: Optional[bytes] = None
        self.authenticated = False

    def log_message(self, fmt: str, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes,
              headers: Optional[list[tuple[str, str]]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers or []:
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _unauthorized(self, challenge: Optional[bytes] = None, close: bool = False) -> None:
        value = "NTLM " + base64.b64encode(challenge).decode() if challenge else "NTLM"
        headers = [("WWW-Authenticate", value)]
        if self.owner.allow_basic and challenge is None:
            headers.append(("WWW-Authenticate", 'Basic realm="herald-test"'))
        if close:
            headers.append(("Connection", "close"))
            self.close_connection = True
        self._send(401, b"", headers)

    def do_GET(self) -> None:
        self._send(405, b"")

    def do_PROPFIND(self) -> None:
        self.do_POST()

    def do_REPORT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        o = self.owner
        if o.mode == "forms":
            # OWA with forms-based authentication: every request goes to the login page.
            self._send(302, b"", [("Location", "/owa/auth/logon.aspx?replaceCurrent=1")])
            return
        auth = self.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if not self.authenticated:
            if scheme.lower() == "basic" and o.allow_basic:
                user, _, pw = base64.b64decode(token).decode().partition(":")
                if o.accounts.get(user) == pw:
                    o.record("basic_ok", 1)
                else:
                    self._unauthorized()
                    return
            elif scheme.upper() == "NTLM" and token:
                try:
                    raw = base64.b64decode(token)
                except ValueError:
                    self._unauthorized(close=True)
                    return
                kind = struct.unpack("<I", raw[8:12])[0] if len(raw) >= 12 else 0
                if kind == 1:
                    self.server_challenge = os.urandom(8)
                    try:
                        ch = challenge_message(raw, self.server_challenge, "HERALDTEST",
                                               o.name.upper()[:15])
                    except NtlmRefused:
                        self._unauthorized(close=True)
                        return
                    self._unauthorized(ch)
                    return
                if kind == 3:
                    if self.server_challenge is None:
                        o.record("ntlm_refused", "AUTHENTICATE without a CHALLENGE on this "
                                                 "connection")
                        self._unauthorized(close=True)
                        return
                    try:
                        who = verify_authenticate(raw, self.server_challenge, o.accounts)
                    except (NtlmRefused, struct.error, UnicodeDecodeError) as exc:
                        if "NTLMv1" in str(exc):
                            o.record("ntlmv1_refused", 1)
                        o.record("ntlm_refused", str(exc))
                        self.server_challenge = None
                        # As IIS does: a fresh `401 NTLM` on the same connection.
                        self._unauthorized()
                        return
                    o.record("ntlm_ok", 1)
                    o.record("workstations", who.workstation)
                    self.authenticated = True
                else:
                    self._unauthorized(close=True)
                    return
            else:
                self._unauthorized()
                return
        if self.path.split("?")[0].lower() != EWS_PATH.lower():
            self._send(404, b"")
            return
        ok_status = 200 if self.command == "POST" else 207
        if o.mode == "slow":
            time.sleep(o.slow_seconds)
        if o.mode == "garbage":
            self._send(ok_status, b"\x00<<this is not XML at all>> \xff\xfe")
            return
        if o.mode == "huge":
            pad = b"<x>" + b"y" * EwsResponder.HUGE_BYTES + b"</x>"
            self._send(ok_status, b'<?xml version="1.0"?><s:Envelope xmlns:s="' + SOAP.encode()
                       + b'"><s:Body>' + pad + b"</s:Body></s:Envelope>")
            return
        if self.command != "POST":
            self._send(405, b"")
            return
        status, answer = o.handle_soap(body)
        self._send(status, answer)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
