"""SIP federation against a real SIP server: Kamailio as the other domain, over mutual TLS.

Reusable by every SIP interop test (IM, presence). Everything is a real process on its own
loopback address of the Herald cluster's subnet, started per test and killed at teardown;
every wait is bounded.

- `Kamailio`: one Kamailio 5.6 (Debian `kamailio`, `kamailio-tls-modules`,
  `kamailio-presence-modules`) serving `KAM_DOMAIN` on `kam_ip`: UDP and TCP on 5060 (its SIP
  users), TLS on 5061 (mutual: `verify_certificate` and `require_certificate` both ways,
  TLS 1.2+, certificate from the test CA with the domain and its IP as SANs, the test CA as
  `ca_list`). Registrar (usrloc in memory, no authentication), presence with no database
  (`presence` with `subs_db_mode 0` and `publ_cache 2`, `presence_xml` with `force_active 1`):
  PUBLISH and SUBSCRIBE for its own users are served by the presence module. Requests for the
  Herald domain go to the Herald nodes' TLS ports, in the given order, the next one tried on
  503/408/connection failure (so the routing node comes first; a non-routing node answers
  503). Initial INVITE/SUBSCRIBE are record-routed, in-dialog requests loose-routed.
  Requests for its own domain go to the registered contact (`lookup("location")`).
- `SipUa`: SIPp (Debian `sip-tester`) as the SIP user agents of Kamailio's domain, on `ua_ip`,
  over UDP to Kamailio: `register(user, port)`, `message(to, frm, body, code)`,
  `message_server(port, code)` (background UAS accepting one IM session and answering its
  first MESSAGE), `publish(user, basic,
  note)` (PIDF to Kamailio's presence server), `subscribe(frm, to, code, notifies)` /
  `subscribe_xml(...)` (SUBSCRIBE, then answer N NOTIFYs; the message log holds their bodies),
  and the generic `run(scenario_xml)` / `start(scenario_xml, port, remote=True)` for any other
  scenario (a long-lived watcher: `start(ua.subscribe_xml(..., notifies=3), 0, remote=True)`).
- `sip_fed` fixture: a factory `make(routing=None, ...)` that issues certificates from a test
  CA, starts a 3-node Herald cluster presenting the CA's certificate for its domain and
  trusting the CA (`--tls-cert/--tls-key/--tls-ca`), configures `sip-domain kam.test`,
  `tls-peer kam.test`, an ACL entry for the TLS name, a static route over TLS to Kamailio and
  the routing node, then starts Kamailio. Returns a `SipFed`.

Presence tests reuse it like this:

    fed = sip_fed()                         # SipFed
    fed.kam.ip, fed.kam.domain, fed.kam.tls_port, fed.routing, fed.cluster
    fed.ua.register("carol", port)          # carol@kam.test is reachable on ua_ip:port
    fed.ua.publish("carol", note="In the lab")              # Kamailio holds carol's presence
    fed.ua.subscribe("dave@kam.test", "carol@kam.test")     # NOTIFY bodies in the returned log
    fed.ua.subscribe("dave@kam.test", alice_jid, code=...)  # through Kamailio to Herald (TLS)
    fed.ua.run(xml)                         # any SIPp scenario against Kamailio (UDP)

Kamailio notes (5.6.3): it runs in the foreground with `-DD -E` (logs on stderr), its
runtime directory set with `-Y` (else /run/kamailio), `-m/-M` keep its memory small.
`enable_tls` with `tls.cfg` sections `[server:default]` and `[client:default]` hold both
directions' settings. It does not check the peer's host name by default, only the chain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster, HarnessError, wait_until  # noqa: E402
from s2s_harness import Dns, TestCA  # noqa: E402

KAM_DOMAIN = "kam.test"
HERALD_DOMAIN = "example.test"
SIP_PORT = 5060
SIP_TLS_PORT = 5061
SIPP_TIMEOUT = 20
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"


def listening(ip: str, port: int) -> bool:
    """Whether a TCP socket listens on ip:port (read from /proc/net/tcp)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A"
                   for line in f.readlines()[1:])


# ---------------------------------------------------------------------------------------------
# Kamailio

KAMAILIO_CFG = """#!KAMAILIO
debug={debug}
log_stderror=yes
memdbg=5
memlog=5
children=2
tcp_children=2
auto_aliases=no
alias="{domain}"
listen=udp:{ip}:{port}
listen=tcp:{ip}:{port}
listen=tls:{ip}:{tls_port}
enable_tls=yes
tcp_connection_lifetime=3605
dns=no
rev_dns=no
use_dns_cache=no

mpath="{mpath}"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "tls.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"

modparam("tls", "config", "{tls_cfg}")
modparam("usrloc", "db_mode", 0)
modparam("registrar", "max_expires", 3600)
modparam("presence", "subs_db_mode", 0)
modparam("presence", "publ_cache", 2)
modparam("presence", "server_address", "sip:{domain}@{ip}:{port}")
modparam("presence_xml", "force_active", 1)
modparam("presence_xml", "integrated_xcap_server", 0)

request_route {{
    xlog("L_INFO", "REQ $rm $ru from $fu via $proto:$si:$sp\\n");
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        route(WITHINDLG);
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    t_check_trans();
    # A request preloaded with a Route to us (Herald's static route): drop our own entry.
    if (is_present_hf("Route")) {{
        loose_route();
    }}
    if (is_method("INVITE|SUBSCRIBE")) {{
        record_route();
    }}
    if (is_method("REGISTER")) {{
        if (!save("location")) sl_reply_error();
        exit;
    }}
    if ($rd == "{herald_domain}") {{
        route(HERALD);
    }}
    if ($rd == "{domain}" || uri == myself) {{
        if (is_method("PUBLISH|SUBSCRIBE")) {{
            route(PRESENCE);
        }}
        if (!lookup("location")) {{
            sl_send_reply("404", "Not Found");
            exit;
        }}
        if (!t_relay()) sl_reply_error();
        exit;
    }}
    sl_send_reply("403", "Relay Forbidden");
    exit;
}}

route[WITHINDLG] {{
    if (loose_route()) {{
        if (!t_relay()) sl_reply_error();
        exit;
    }}
    if (is_method("SUBSCRIBE") && uri == myself) {{
        route(PRESENCE);
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    sl_send_reply("404", "Not Here");
    exit;
}}

route[PRESENCE] {{
    if (!t_newtran()) {{
        sl_reply_error();
        exit;
    }}
    if (is_method("PUBLISH")) {{
        handle_publish();
    }} else {{
        handle_subscribe();
    }}
    exit;
}}

route[HERALD] {{
    $avp(hn) = 0;
    route(HERALD_TRY);
}}

route[HERALD_TRY] {{
{herald_switch}
    xlog("L_INFO", "to Herald: $rm $ru -> $du\\n");
    t_on_failure("HERALD_NEXT");
    if (!t_relay()) {{
        # A node that refuses the connection at once (dead): the next one, as on 503.
        $avp(hn) = $avp(hn) + 1;
        if ($avp(hn) < {herald_count}) {{
            route(HERALD_TRY);
        }}
        sl_reply_error();
    }}
    exit;
}}

failure_route[HERALD_NEXT] {{
    if (t_is_canceled()) exit;
    if (t_check_status("503|408|477|478|500") || t_branch_timeout()) {{
        $avp(hn) = $avp(hn) + 1;
        if ($avp(hn) < {herald_count}) {{
            route(HERALD_TRY);
        }}
    }}
}}
"""

TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
private_key = {key}
certificate = {cert}
ca_list = {ca}

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
private_key = {key}
certificate = {cert}
ca_list = {ca}
"""


class Kamailio:
    """One Kamailio serving `domain` on `ip` (see the module documentation)."""

    def __init__(self, directory: Path, ip: str, *, ca: TestCA, herald: list[str],
                 domain: str = KAM_DOMAIN, herald_domain: str = HERALD_DOMAIN,
                 cert: Optional[tuple[Path, Path]] = None, debug: int = 2) -> None:
        """`herald`: the Herald TLS addresses (`IP:PORT`) requests for `herald_domain` go to,
        tried in this order; `cert`: (certificate, key) to present instead of a fresh one from
        `ca` for the domain and `ip`."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip, self.domain, self.ca = ip, domain, ca
        self.port, self.tls_port = SIP_PORT, SIP_TLS_PORT
        self.herald, self.herald_domain, self.debug = list(herald), herald_domain, debug
        self.cert, self.key = cert or ca.issue([domain, ip], stem=domain, directory=self.dir)
        self.log_path = self.dir / "kamailio.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def uri(self) -> str:
        """Kamailio's TLS address as a SIP URI (for Record-Route checks)."""
        return f"sip:{self.ip}:{self.tls_port};transport=tls"

    def config_text(self) -> str:
        cases = "\n".join(
            f"        case {i}: $du = \"sip:{a};transport=tls\"; break;"
            for i, a in enumerate(self.herald))
        switch = f"    switch($avp(hn)) {{\n{cases}\n    }}"
        return KAMAILIO_CFG.format(
            debug=self.debug, domain=self.domain, ip=self.ip, port=self.port,
            tls_port=self.tls_port, mpath=KAMAILIO_MODULES, tls_cfg=self.dir / "tls.cfg",
            herald_domain=self.herald_domain, herald_switch=switch,
            herald_count=len(self.herald))

    def start(self, timeout: float = 15.0) -> None:
        (self.dir / "tls.cfg").write_text(TLS_CFG.format(key=self.key, cert=self.cert,
                                                         ca=self.ca.ca_path))
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text(self.config_text())
        run_dir = self.dir / "run"
        run_dir.mkdir(exist_ok=True)
        check = subprocess.run(["kamailio", "-c", "-f", str(cfg), "-Y", str(run_dir)],
                               capture_output=True, timeout=30)
        if check.returncode != 0:
            raise HarnessError(f"kamailio rejects its config:\n{check.stderr.decode()[-3000:]}")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(run_dir),
                 "-m", "48", "-M", "8", "-P", str(run_dir / "kamailio.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"kamailio exited ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            return listening(self.ip, self.tls_port) and listening(self.ip, self.port)
        wait_until(up, timeout, f"kamailio listening on {self.ip}:{self.tls_port}")

    def stop(self) -> None:
        """Kills Kamailio's process group (main process and children)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join([f"--- kamailio {self.domain} ({self.ip}) ---",
                          *self.log_text().splitlines()[-lines:]])

    def __repr__(self) -> str:
        return f"Kamailio({self.domain}@{self.ip})"


# ---------------------------------------------------------------------------------------------
# SIP user agents (SIPp) on Kamailio's side

REGISTER_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER">
  <send>
    <![CDATA[
      REGISTER sip:{domain} SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: <sip:{user}@{domain}>;tag=[call_number]reg
      To: <sip:{user}@{domain}>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:{contact_port};transport=udp>
      Expires: {expires}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="10000" />
</scenario>
"""

MESSAGE_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="MESSAGE">
  <send>
    <![CDATA[
      MESSAGE sip:{to} SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: <sip:{frm}>;tag=[call_number]m
      To: <sip:{to}>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Max-Forwards: 70
      Content-Type: text/plain
      Content-Length: [len]

      {body}
    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="{code}" timeout="15000" />
</scenario>
"""

MESSAGE_UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="an IM session (INVITE, 200, ACK), one MESSAGE answered with code">
  <recv request="INVITE" timeout="{timeout_ms}" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]uas[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:uas@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 0 0 IN IP4 [local_ip]
      s=session
      c=IN IP4 [local_ip]
      t=0 0
      m=message [local_port] sip null
    ]]>
  </send>
  <recv request="ACK" timeout="{timeout_ms}" />
  <recv request="MESSAGE" timeout="{timeout_ms}" />
  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


PUBLISH_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="PUBLISH">
  <send>
    <![CDATA[
      PUBLISH sip:{aor} SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: <sip:{aor}>;tag=[call_number]p
      To: <sip:{aor}>
      Call-ID: [call_id]
      CSeq: 1 PUBLISH
      Max-Forwards: 70
      Event: presence
      Expires: {expires}
      Content-Type: application/pidf+xml
      Content-Length: [len]

      {pidf}
    ]]>
  </send>
  <recv response="{code}" timeout="10000" />
</scenario>
"""

SUBSCRIBE_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="SUBSCRIBE">
  <send>
    <![CDATA[
      SUBSCRIBE sip:{to} SIP/2.0
      Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch]
      From: <sip:{frm}>;tag=[call_number]s
      To: <sip:{to}>
      Call-ID: [call_id]
      CSeq: 1 SUBSCRIBE
      Contact: <sip:{frm_user}@[local_ip]:[local_port];transport=udp>
      Max-Forwards: 70
      Event: presence
      Accept: application/pidf+xml
      Expires: {expires}
      Content-Length: 0

    ]]>
  </send>
  <recv response="{code}" timeout="10000" />
{notifies}
</scenario>
"""

NOTIFY_RECV_XML = """  <recv request="NOTIFY" timeout="{timeout_ms}" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


def pidf(aor: str, basic: str = "open", note: str = "", activity: str = "") -> str:
    """A one-line PIDF document (RFC 3863) for `aor` (SIPp bodies are line-trimmed); with
    `activity`, an RPID person (RFC 4480) carrying that activity and the note."""
    n = f"<note>{note}</note>" if note else ""
    person = ""
    if activity:
        person = ('<dm:person xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
                  'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" id="p1"><rpid:activities>'
                  f"<rpid:{activity}/></rpid:activities>"
                  + (f"<dm:note>{note}</dm:note>" if note else "") + "</dm:person>")
    return ('<?xml version="1.0" encoding="UTF-8"?><presence '
            f'xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:{aor}"><tuple id="t1">'
            f"<status><basic>{basic}</basic></status>{n}</tuple>{person}</presence>")


class Sipp:
    """A SIPp process started in the background (a UAS, or a long UAC scenario)."""

    def __init__(self, cmd: list[str], cwd: Path, scenario: Path) -> None:
        self.scenario = scenario
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def messages(self) -> str:
        log = self.scenario.with_suffix(".msg")
        return log.read_text(errors="replace") if log.exists() else "(no message log)"

    def wait(self, timeout: float = SIPP_TIMEOUT + 10) -> str:
        """Waits for SIPp to finish; returns the messages it saw; fails unless it succeeded."""
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        assert rc == 0, f"SIPp {self.scenario.name} failed (rc {rc}):\n{self.messages()[-3000:]}"
        return self.messages()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class SipUa:
    """SIPp as the user agents of Kamailio's domain, on `ip`, talking UDP to Kamailio."""

    def __init__(self, directory: Path, ip: str, kam: Kamailio) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip, self.kam = ip, kam
        self._live: list[Sipp] = []

    def _scenario(self, name: str, xml: str) -> Path:
        sc = self.dir / f"{name}-{time.monotonic_ns()}.xml"
        sc.write_text(xml)
        return sc

    def cmd(self, scenario: Path, port: int, remote: Optional[str]) -> list[str]:
        c = ["sipp", "-sf", str(scenario), "-t", "u1", "-i", self.ip, "-p", str(port),
             "-m", "1", "-nostdin", "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error",
             "-trace_err", "-error_file", str(scenario.with_suffix(".err")),
             "-trace_msg", "-message_file", str(scenario.with_suffix(".msg"))]
        return c + ([remote] if remote else [])

    def run(self, xml: str, *, name: str = "uac", port: int = 0) -> str:
        """Runs one UAC scenario against Kamailio (UDP) to its end; returns SIPp's message log;
        fails unless every step of the scenario succeeded."""
        sc = self._scenario(name, xml)
        remote = f"{self.kam.ip}:{self.kam.port}"
        p = subprocess.run(self.cmd(sc, port, remote), cwd=self.dir, capture_output=True,
                           timeout=SIPP_TIMEOUT + 10)
        log = sc.with_suffix(".msg")
        msgs = log.read_text(errors="replace") if log.exists() else "(no message log)"
        assert p.returncode == 0, (
            f"SIPp scenario {name} failed (rc {p.returncode})\n--- messages ---\n"
            f"{msgs[-3000:]}\n--- stderr ---\n{p.stderr.decode()[-2000:]}")
        return msgs

    def start(self, xml: str, port: int, *, name: str = "uas",
              remote: bool = False) -> Sipp:
        """Starts a scenario in the background listening on `ip:port` (a UAS unless
        `remote`: then a UAC against Kamailio); wait() or stop() it."""
        sc = self._scenario(name, xml)
        s = Sipp(self.cmd(sc, port, f"{self.kam.ip}:{self.kam.port}" if remote else None),
                 self.dir, sc)
        self._live.append(s)
        time.sleep(0)  # let the process start
        return s

    def register(self, user: str, contact_port: int, expires: int = 300) -> None:
        """Registers `user@domain` with the contact `ua_ip:contact_port` (UDP)."""
        self.run(REGISTER_XML.format(user=user, domain=self.kam.domain,
                                     contact_port=contact_port, expires=expires),
                 name=f"register-{user}")

    def message(self, to: str, frm: str, body: str, code: int = 200) -> str:
        """Sends one MESSAGE through Kamailio; fails unless the final answer is `code`."""
        return self.run(MESSAGE_XML.format(to=to, frm=frm, body=body, code=code),
                        name=f"message-{code}")

    def message_server(self, port: int, code: int = 200, reason: str = "OK",
                       timeout: float = 20) -> Sipp:
        """A UAS on `ua_ip:port` accepting one IM session (Herald's INVITE with `m=message`,
        answered 200, then the ACK) and answering the first MESSAGE inside it with `code`."""
        s = self.start(MESSAGE_UAS_XML.format(code=code, reason=reason,
                                              timeout_ms=int(timeout * 1000)),
                       port, name=f"uas-{port}")
        # SIPp binds UDP: it is up when the socket exists.
        wait_until(lambda: s.proc.poll() is not None or udp_bound(self.ip, port), 10,
                   f"SIPp UAS bound on {self.ip}:{port}")
        assert s.proc.poll() is None, f"SIPp UAS exited: {s.proc.stderr.read().decode()}"
        return s

    def publish(self, user: str, *, basic: str = "open", note: str = "",
                expires: int = 3600, code: int = 200, activity: str = "") -> str:
        """Publishes `user@domain`'s presence (PIDF, with an RPID `activity` if given) to
        Kamailio's presence server."""
        aor = f"{user}@{self.kam.domain}"
        return self.run(PUBLISH_XML.format(aor=aor, pidf=pidf(aor, basic, note, activity),
                                           expires=expires, code=code),
                        name=f"publish-{user}")

    def subscribe_xml(self, frm: str, to: str, *, expires: int = 600, code: int = 200,
                      notifies: int = 1, notify_timeout: float = 10) -> str:
        """A SIPp scenario: SUBSCRIBE (Event: presence) from `frm` to `to` through Kamailio,
        expect `code`, then answer `notifies` NOTIFYs with 200."""
        recv = "".join(NOTIFY_RECV_XML.format(timeout_ms=int(notify_timeout * 1000))
                       for _ in range(notifies))
        return SUBSCRIBE_XML.format(frm=frm, to=to, frm_user=frm.split("@")[0],
                                    expires=expires, code=code, notifies=recv)

    def subscribe(self, frm: str, to: str, **kw: int) -> str:
        """Runs `subscribe_xml` to its end; returns SIPp's message log (the NOTIFY bodies)."""
        return self.run(self.subscribe_xml(frm, to, **kw), name="subscribe")

    def stop(self) -> None:
        for s in self._live:
            s.stop()


def udp_bound(ip: str, port: int) -> bool:
    """Whether a UDP socket is bound on ip:port (read from /proc/net/udp)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(ip), "little"), port)
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == want for line in f.readlines()[1:])


# ---------------------------------------------------------------------------------------------
# Herald + Kamailio for one test


class SipFed:
    """A Herald cluster federating with Kamailio over mutual TLS, and SIP users on its side."""

    def __init__(self, cluster: Cluster, ca: TestCA, kam: Kamailio, ua: SipUa,
                 routing: int, dns: Optional[Dns] = None) -> None:
        self.cluster, self.ca, self.kam, self.ua, self.routing = cluster, ca, kam, ua, routing
        #: The test DNS server the nodes resolve through (`make(dns=True)`), else None.
        self.dns = dns

    @property
    def herald_domain(self) -> str:
        return self.cluster.domain

    def herald_tls(self, node: int) -> tuple[str, int]:
        """Where node `node` serves SIP over TLS."""
        return self.cluster.ip(node), SIP_TLS_PORT

    def log_tails(self, lines: int = 60) -> str:
        return self.kam.log_tail(lines)


def address(cluster: Cluster, last: int) -> str:
    """An address of the cluster's subnet for a peer (Kamailio .201, SIPp .200)."""
    return f"127.{cluster.subnet[0]}.{cluster.subnet[1]}.{last}"


@pytest.fixture
def sip_fed(request: pytest.FixtureRequest, tmp_path: Path):
    """Factory `make(routing=None, *, tls_peers=(KAM_DOMAIN,), acl=True, route=True,
    dns=False, extra_args=())`: a Herald cluster (3 nodes) and Kamailio federating over mutual
    TLS; `extra_args`: more `herald agent` flags.

    `routing`: the routing node (default: node 1, or a node other than `recipient`'s home if
    `recipient` (a JID) is given); `tls_peers`: the `tls-peer` entries; `acl`: add an ACL entry
    admitting Kamailio's TLS name (kind fqdn); `route`: add the static route
    `kam.test -> Kamailio:5061 transport tls`; `dns`: start dnsmasq on the subnet's .53 with
    `_sipfederationtls._tcp.kam.test -> kam.test:5061` and `kam.test -> Kamailio's address`,
    the nodes resolving through it (`--dns-resolver`). Everything is killed on teardown; Kamailio's log
    tail is printed when the test failed."""
    made: list[SipFed] = []
    dnses: list[Dns] = []
    ca = TestCA(tmp_path / "ca")

    def make(routing: Optional[int] = None, *, tls_peers: tuple[str, ...] = (KAM_DOMAIN,),
             acl: bool = True, route: bool = True, size: int = 3, dns: bool = False,
             extra_args: tuple[str, ...] = ()) -> SipFed:
        cert, key = ca.issue([HERALD_DOMAIN, f"*.{HERALD_DOMAIN}"], stem="herald")
        cluster = Cluster(tmp_path / "cluster", HERALD_DOMAIN, extra_args=[
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.ca_path),
            *extra_args])
        make.cluster = cluster  # the conftest report hook attaches its logs on failure
        kam: Optional[Kamailio] = None
        server: Optional[Dns] = None
        try:
            if dns:
                server = Dns(tmp_path / "dns", address(cluster, 53))
                dnses.append(server)
                server.add_srv(f"_sipfederationtls._tcp.{KAM_DOMAIN}", KAM_DOMAIN, SIP_TLS_PORT)
                server.add_host(KAM_DOMAIN, address(cluster, 201))
                server.start()
                cluster.extra_args += ["--dns-resolver", server.address]
            cluster.start_cluster(size)
            routing = routing or 1
            kam_ip, ua_ip = address(cluster, 201), address(cluster, 200)
            cluster.cli(None, "sip-domain", "add", KAM_DOMAIN, "--type", "generic-sip")
            for p in tls_peers:
                cluster.cli(None, "tls-peer", "add", p)
            if acl:
                cluster.cli(None, "acl", "add", "kamailio", "--kind", "fqdn",
                            "--pattern", KAM_DOMAIN)
            if route:
                cluster.cli(None, "static-route", "add", "kamailio", "--domain", KAM_DOMAIN,
                            "--next-hop", kam_ip, "--port", str(SIP_TLS_PORT),
                            "--transport", "tls")
            cluster.cli(None, "routing-node", "set", str(routing),
                        *[str(n) for n in cluster.nodes if n != routing])
            cluster.wait_converged(cluster.nodes)
            order = [routing] + [n for n in cluster.nodes if n != routing]
            kam = Kamailio(tmp_path / "kamailio", kam_ip, ca=ca,
                           herald=[f"{cluster.ip(n)}:{SIP_TLS_PORT}" for n in order])
            make.kam = kam
            kam.start()
            fed = SipFed(cluster, ca, kam, SipUa(tmp_path / "sipp", ua_ip, kam), routing,
                         server)
            made.append(fed)
            return fed
        except BaseException:
            if kam is not None:
                kam.stop()
            cluster.stop()
            raise

    make.cluster = None
    make.kam = None
    try:
        yield make
    finally:
        failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                     for w in ("setup", "call"))
        for fed in made:
            fed.ua.stop()
        if make.kam is not None:
            make.kam.stop()
            if failed:
                print(f"\n===== kamailio log for {request.node.nodeid} =====\n"
                      f"{make.kam.log_tail(120)}", file=sys.stderr)
        if make.cluster is not None:
            make.cluster.stop()
        for server in dnses:
            server.stop()
