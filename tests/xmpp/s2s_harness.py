"""Federation (s2s) peers for the XMPP tests: a test CA, a DNS server, Prosody servers.

Everything is a real process on its own loopback address, started and killed per test:

- `PeerNet`: one `127.A.B.0/24` claimed through the same lock files as `harness.Cluster`
  (so a peer network never collides with a Herald cluster or another test's peers); hands out
  `127.A.B.n` addresses (n from 10 up; the DNS server takes `.53`).
- `TestCA`: a CA made in the test with the `cryptography` package; `issue(names)` writes a leaf
  certificate (DNS SANs, wildcards allowed, serverAuth + clientAuth) and its key.
  `TestCA.untrusted()` is a second, unrelated CA for "wrong certificate" tests.
- `Dns`: dnsmasq on `IP:53` answering only from its config (`no-resolv`, `no-hosts`,
  `local=/test/`, `bind-interfaces`, `listen-address=IP`): `add_srv`, `add_host`, then
  `start()` (or `restart()`: dnsmasq reads its config only at start). `query()` is a tiny UDP
  resolver for A/SRV used for the readiness check and by tests.
- `Prosody`: one Prosody 0.12 (Debian `prosody` + `lua-unbound`) serving one domain on its own
  IP: c2s 5222, s2s 5269, no HTTP. Certificate from `TestCA` in its `certificates` directory,
  `ssl.cafile` = the CA, libunbound forwarding to the `Dns` address. Knobs: `secure_auth`
  (`s2s_secure_auth`: certificates must validate, SASL EXTERNAL), `require_encryption`
  (`s2s_require_encryption`), `allow_encryption` (`s2s_allow_encryption`; False = no TLS on s2s
  at all), `dialback` (load `mod_dialback`), `extra_config` (Lua appended to the global section).
  `register()` adds accounts with `prosodyctl`; `close_s2s()` closes its s2s streams through the
  admin shell (`prosodyctl shell s2s closeall HOST`).
- `RawS2S`: a raw `jabber:server` connection for inputs no server would send (STARTTLS with
  a client certificate, SASL EXTERNAL, dialback result/verify, then anything).
- `S2SEnv` / the `s2s_env` fixture: the above wired together for one test, everything killed on
  teardown, log tails printed when the test failed.

How Prosody runs here (checked with 0.12.3, `util/startup.lua`): `prosody --config FILE -F`
runs in the foreground with that config (`-F` = `--no-daemonize`; `prosodyctl` passes the
path on as env `PROSODY_CONFIG`, which `prosody` also honours). `prosodyctl --config FILE
register USER HOST PASSWORD` and `prosodyctl --config FILE shell ...` work on the same data
directory; as root both need `run_as_root = true` in the config or they switch to the
`prosody` user.

Prosody configuration knobs that proved necessary (see `Prosody.config_text`):
- `run_as_root = true`, `pidfile`, `data_path`, `interfaces`/`s2s_interfaces` = its IP,
  `http_ports = {}`/`https_ports = {}` (else it binds 5280/5281 on all addresses),
  `use_ipv6 = false`, `network_settings = { nagle = false }`.
- `unbound = { resolvconf = false, hoststxt = false, forward = "IP",
  options = { ["local-zone:"] = "test. transparent" } }`: `forward` takes "IP" or "IP@PORT"
  (ub_ctx_set_fwd); without the local-zone option libunbound answers `.test` (RFC 6761) names
  itself with NXDOMAIN. Debian's lua-unbound carries no DNSSEC root anchor, so nothing to turn
  off there.
- certificates: `certificates = DIR` with `DOMAIN.crt` + `DOMAIN.key` (found by the SAN in the
  index; the key must have the same stem); `ssl = { cafile = CA }` for validating peers.
- dialback-only: `s2s_secure_auth = false`, `s2s_require_encryption = false` and
  `s2s_allow_encryption = false` (otherwise valid certificates authenticate the stream and
  dialback is never exercised).
- Prosody 0.12 has no idle timeout for s2s streams (`network_settings.read_timeout` only sends
  a whitespace keepalive): close them with the admin shell (`close_s2s`) or restart Prosody.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import random
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import atexit
import base64
import re
import ssl

import pytest

from harness import HarnessError, _claim_subnet, _release_subnet, wait_until
from raw_xmpp import SASL_NS, STREAM_NS, TLS_NS, RawError, RawStream

C2S_PORT = 5222
S2S_PORT = 5269
DNS_PORT = 53

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
CMD_TIMEOUT = 20.0


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _kill(proc: Optional[subprocess.Popen], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaps."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Addresses


class PeerNet:
    """A claimed `127.A.B.0/24` for peers (same lock files as `harness.Cluster`)."""

    DNS_HOST = 53

    def __init__(self) -> None:
        self.subnet, self._lock = _claim_subnet()
        self._next = 10
        self._released = False

    def ip(self, host: int) -> str:
        return f"127.{self.subnet[0]}.{self.subnet[1]}.{host}"

    def alloc(self) -> str:
        """The next unused address (.10, .11, ...; never the DNS server's .53)."""
        if self._next == self.DNS_HOST:
            self._next += 1
        if self._next > 250:
            raise HarnessError(f"{self!r}: out of addresses")
        ip = self.ip(self._next)
        self._next += 1
        return ip

    @property
    def dns_ip(self) -> str:
        return self.ip(self.DNS_HOST)

    def release(self) -> None:
        if not self._released:
            self._released = True
            _release_subnet(self.subnet, self._lock)

    def __repr__(self) -> str:
        return f"PeerNet(127.{self.subnet[0]}.{self.subnet[1]}.0/24)"


# ---------------------------------------------------------------------------------------------
# Certificates


def _san(x509: Any, name: str) -> Any:
    """A subjectAltName entry: an IP address SAN for an IP literal, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class TestCA:
    """A throwaway CA (EC P-256) under `directory`; `ca_path` is its PEM certificate."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "Herald Test CA") -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self._x509, self._hashes, self._ser, self._ec = x509, hashes, serialization, ec
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(self._key.public_key())
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(self._key, hashes.SHA256()))
        self.ca_path = self.dir / "ca.pem"
        self.ca_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._serial = 0
        self._untrusted: Optional[TestCA] = None

    def issue(self, names: list[str], *, stem: Optional[str] = None,
              directory: Optional[Path] = None) -> tuple[Path, Path]:
        """A leaf certificate for DNS names `names` (first one is also the CN; `*.x.test` is a
        wildcard SAN; an IP literal becomes an IP address SAN), valid for serverAuth and clientAuth (s2s uses both). Writes
        `DIR/STEM.crt` and `DIR/STEM.key` (PEM, key in PKCS#8, unencrypted); returns their
        paths. `stem` defaults to the first name (with `*` spelled `_wildcard`)."""
        x509, hashes, ser, ec = self._x509, self._hashes, self._ser, self._ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        if not names:
            raise HarnessError("TestCA.issue needs at least one name")
        self._serial += 1
        stem = stem or f"{names[0].replace('*', '_wildcard')}-{self._serial}"
        out = Path(directory) if directory is not None else self.dir
        out.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([_san(x509, n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256()))
        cert_path, key_path = out / f"{stem}.crt", out / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(ser.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                               ser.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path

    def untrusted(self) -> "TestCA":
        """A second CA, unrelated to this one (same directory, subdirectory `untrusted`):
        certificates it issues must be refused by anyone trusting only `ca_path`."""
        if self._untrusted is None:
            self._untrusted = TestCA(self.dir / "untrusted", name=f"Untrusted {self.name}")
        return self._untrusted

    def issue_untrusted(self, names: list[str], **kw: Any) -> tuple[Path, Path]:
        """`issue` from `untrusted()`: same names, wrong issuer."""
        return self.untrusted().issue(names, **kw)


# ---------------------------------------------------------------------------------------------
# DNS


_QTYPES = {"A": 1, "SRV": 33}


def dns_query(server: str, name: str, qtype: str = "A", port: int = DNS_PORT,
              timeout: float = 1.0) -> tuple[int, list[Any]]:
    """One UDP query to `server`: (rcode, answers). A answers are IP strings, SRV answers are
    (priority, weight, port, target) tuples. Raises OSError/socket.timeout when nothing
    answers."""
    qid = random.randrange(65536)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(
        "!HH", _QTYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    rcode = flags & 0xF

    def read_name(off: int) -> tuple[str, int]:
        labels, jumped, end = [], False, off
        for _ in range(128):
            ln = data[off]
            if ln & 0xC0 == 0xC0:
                if not jumped:
                    end = off + 2
                off, jumped = ((ln & 0x3F) << 8) | data[off + 1], True
                continue
            if ln == 0:
                if not jumped:
                    end = off + 1
                return ".".join(labels), end
            labels.append(data[off + 1:off + 1 + ln].decode())
            off += 1 + ln
        raise ValueError("DNS name loop")

    off = 12
    for _ in range(qd):
        _, off = read_name(off)
        off += 4
    answers: list[Any] = []
    for _ in range(an):
        _, off = read_name(off)
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[off:off + 10])
        off += 10
        rdata_off = off
        off += rdlen
        if rtype == 1 and qtype == "A":
            answers.append(socket.inet_ntoa(data[rdata_off:rdata_off + 4]))
        elif rtype == 33 and qtype == "SRV":
            prio, weight, sport = struct.unpack("!HHH", data[rdata_off:rdata_off + 6])
            target, _ = read_name(rdata_off + 6)
            answers.append((prio, weight, sport, target))
    return rcode, answers


class Dns:
    """dnsmasq serving only the records given here, on `ip:53` (UDP and TCP)."""

    def __init__(self, directory: Path, ip: str, port: int = DNS_PORT) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip, self.port = ip, port
        self.conf_path = self.dir / "dnsmasq.conf"
        self.log_path = self.dir / "dnsmasq.log"
        self.srv: list[tuple[str, str, int, int, int]] = []
        self.hosts: list[tuple[str, str]] = []
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        """`IP` (port 53) or `IP:PORT`, as `herald agent --dns-resolver` takes it."""
        return self.ip if self.port == DNS_PORT else f"{self.ip}:{self.port}"

    def add_srv(self, service: str, target: str, port: int, priority: int = 0,
                weight: int = 5) -> None:
        """An SRV record, e.g. `add_srv("_xmpp-server._tcp.p.test", "p.test", 5269)`. Takes
        effect at the next start()/restart()."""
        self.srv.append((service, target, port, priority, weight))

    def add_host(self, name: str, ip: str) -> None:
        """An A record (several calls for one name: several addresses). Takes effect at the
        next start()/restart()."""
        ipaddress.IPv4Address(ip)
        self.hosts.append((name, ip))

    def remove(self, name: str) -> None:
        """Drops every SRV record named `name` and every A record of host `name`."""
        self.srv = [r for r in self.srv if r[0] != name]
        self.hosts = [h for h in self.hosts if h[0] != name]

    def add_xmpp_server(self, domain: str, targets: Iterable[tuple[str, str]],
                        port: int = S2S_PORT) -> None:
        """`_xmpp-server._tcp.DOMAIN` SRV to each (host name, IP) in `targets` on `port`, and
        each host's A record."""
        for host, ip in targets:
            self.add_srv(f"_xmpp-server._tcp.{domain}", host, port)
            self.add_host(host, ip)

    def config_text(self) -> str:
        lines = [
            "# generated by tests/xmpp/s2s_harness.py",
            "no-resolv", "no-hosts", "no-poll", "bind-interfaces",
            f"listen-address={self.ip}", f"port={self.port}",
            "local=/test/", "user=root", "cache-size=0", "log-queries",
            f"log-facility={self.log_path}",
        ]
        lines += [f"srv-host={s},{t},{p},{pr},{w}" for s, t, p, pr, w in self.srv]
        # One host-record per name with all its addresses is not possible for IPv4 (one
        # address each); dnsmasq merges repeated host-record lines for one name.
        lines += [f"host-record={n},{ip}" for n, ip in self.hosts]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"dnsmasq on {self.ip} already running (pid {self.proc.pid})")
        self.conf_path.write_text(self.config_text())
        out = open(self.dir / "dnsmasq.stderr", "ab")
        try:
            self.proc = subprocess.Popen(
                ["dnsmasq", "--keep-in-foreground", f"--conf-file={self.conf_path}",
                 "--pid-file"],  # `--pid-file` with no value: no pid file
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"dnsmasq exited with status {self.proc.returncode}")
            # `local=/test/` answers any .test name (NXDOMAIN if unknown): any reply = ready.
            dns_query(self.ip, "ready.probe.test", port=self.port, timeout=0.3)
            return True
        try:
            wait_until(ready, timeout, f"dnsmasq answering on {self.ip}:{self.port}",
                       interval=0.1)
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail()}") from None

    def stop(self) -> None:
        _kill(self.proc)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Rewrites the config and starts dnsmasq again (it reads its config only at start)."""
        self.stop()
        self.start(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(self, name: str, qtype: str = "A") -> list[Any]:
        """The answers for `name` (A: IPs; SRV: (priority, weight, port, target))."""
        rcode, answers = dns_query(self.ip, name, qtype, port=self.port, timeout=2.0)
        if rcode not in (0, 3):
            raise HarnessError(f"DNS {qtype} {name} @{self.ip}: rcode {rcode}")
        return answers

    def log_tail(self, lines: int = 30) -> str:
        state = "running" if self.running else "not running"
        return (f"--- dnsmasq {self.ip}:{self.port} ({state}) log tail ---\n"
                f"{_tail(self.dir / 'dnsmasq.stderr', 10)}\n{_tail(self.log_path, lines)}")


# ---------------------------------------------------------------------------------------------
# Prosody


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prosody:
    """One Prosody serving `domain` on `ip` (c2s 5222, s2s 5269). Not started by __init__."""

    def __init__(self, directory: Path, ip: str, domain: str, *, ca: TestCA, dns_ip: str,
                 cert: Optional[tuple[Path, Path]] = None, secure_auth: bool = True,
                 require_encryption: bool = True, allow_encryption: bool = True,
                 dialback: bool = True, extra_config: str = "",
                 modules: Iterable[str] = (), log_level: str = "debug") -> None:
        """`cert`: (certificate, key) to serve instead of a fresh one from `ca` for
        `domain` (e.g. one from `ca.untrusted()`). Prosody always trusts `ca.ca_path`.
        `modules`: more modules to enable (e.g. "blocklist" for XEP-0191)."""
        self.dir = Path(directory)
        self.ip, self.domain, self.ca, self.dns_ip = ip, domain, ca, dns_ip
        self.secure_auth = secure_auth
        self.require_encryption = require_encryption
        self.allow_encryption = allow_encryption
        self.dialback = dialback
        self.extra_config = extra_config
        self.modules = list(modules)
        self.log_level = log_level
        self.data_dir = self.dir / "data"
        self.cert_dir = self.dir / "certs"
        self.config_path = self.dir / "prosody.cfg.lua"
        self.log_path = self.dir / "prosody.log"
        self.pid_path = self.dir / "prosody.pid"
        for d in (self.data_dir, self.cert_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.set_cert(cert)
        self.proc: Optional[subprocess.Popen] = None

    def set_cert(self, cert: Optional[tuple[Path, Path]]) -> None:
        """Installs `cert` (or a fresh one for the domain from the CA) as DOMAIN.crt/.key in
        the certificates directory; takes effect at the next (re)start."""
        for f in self.cert_dir.iterdir():
            f.unlink()
        if cert is None:
            self.ca.issue([self.domain], stem=self.domain, directory=self.cert_dir)
        else:
            (self.cert_dir / f"{self.domain}.crt").write_bytes(Path(cert[0]).read_bytes())
            (self.cert_dir / f"{self.domain}.key").write_bytes(Path(cert[1]).read_bytes())

    # -- config ------------------------------------------------------------------------------

    def config_text(self) -> str:
        modules = ["roster", "saslauth", "tls", "disco", "ping", "admin_shell"]
        if self.dialback:
            modules.append("dialback")
        modules += [m for m in self.modules if m not in modules]
        b = lambda v: "true" if v else "false"  # noqa: E731
        return f"""-- generated by tests/xmpp/s2s_harness.py
run_as_root = true
pidfile = {_lua_str(str(self.pid_path))}
data_path = {_lua_str(str(self.data_dir))}
interfaces = {{ {_lua_str(self.ip)} }}
c2s_interfaces = {{ {_lua_str(self.ip)} }}
s2s_interfaces = {{ {_lua_str(self.ip)} }}
c2s_ports = {{ {C2S_PORT} }}
s2s_ports = {{ {S2S_PORT} }}
c2s_direct_tls_ports = {{}}
s2s_direct_tls_ports = {{}}
http_ports = {{}}
https_ports = {{}}
use_ipv6 = false
network_settings = {{ nagle = false }}
modules_enabled = {{ {", ".join(_lua_str(m) for m in modules)} }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_secure_auth = {b(self.secure_auth)}
s2s_require_encryption = {b(self.require_encryption)}
s2s_allow_encryption = {b(self.allow_encryption)}
s2s_timeout = 15
certificates = {_lua_str(str(self.cert_dir))}
ssl = {{ cafile = {_lua_str(str(self.ca.ca_path))} }}
unbound = {{
  resolvconf = false,
  hoststxt = false,
  forward = {_lua_str(self.dns_ip)},
  options = {{ ["local-zone:"] = "test. transparent" }},
}}
log = {{ {self.log_level} = {_lua_str(str(self.log_path))} }}
{self.extra_config}

VirtualHost {_lua_str(self.domain)}
"""

    def write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    # -- processes ---------------------------------------------------------------------------

    def _env(self) -> dict:
        env = dict(os.environ)
        env.pop("PROSODY_CONFIG", None)
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Writes the config, starts `prosody --config FILE -F`, waits until c2s and s2s
        accept TCP connections on its IP."""
        if self.running:
            raise HarnessError(f"prosody {self.domain} already running (pid {self.proc.pid})")
        self.write_config()
        out = open(self.dir / "prosody.stdout", "ab")
        try:
            self.proc = subprocess.Popen(
                ["prosody", "--config", str(self.config_path), "-F"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=self._env(), cwd=self.dir)
        finally:
            out.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"prosody exited with status {self.proc.returncode}")
            return _port_open(self.ip, C2S_PORT) and _port_open(self.ip, S2S_PORT)
        try:
            wait_until(ready, timeout, f"prosody {self.domain} listening on {self.ip}:"
                       f"{C2S_PORT} and :{S2S_PORT}", interval=0.1)
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (SIGKILL after `timeout`), reaped; idempotent."""
        _kill(self.proc, timeout)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """stop() then start() (the config is rewritten from the current knobs)."""
        self.stop()
        wait_until(lambda: not _port_open(self.ip, S2S_PORT, 0.2), STOP_TIMEOUT,
                   f"prosody {self.domain} to release {self.ip}:{S2S_PORT}")
        self.start(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def prosodyctl(self, *args: str, timeout: float = CMD_TIMEOUT) -> str:
        """`prosodyctl --config FILE ARGS`; requires exit status 0; returns stdout."""
        if not self.config_path.exists():
            self.write_config()
        cmd = ["prosodyctl", "--config", str(self.config_path), *args]
        try:
            out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=timeout, env=self._env(), cwd=self.dir)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"`{' '.join(cmd)}` took more than {timeout}s") from None
        if out.returncode != 0:
            raise HarnessError(f"`{' '.join(cmd)}` failed (exit {out.returncode}): "
                               f"{out.stdout.strip()} {out.stderr.strip()}\n{self.log_tail()}")
        return out.stdout

    def register(self, user: str, password: str) -> str:
        """Creates account `user@domain` (works whether or not Prosody runs); returns the
        bare JID."""
        self.prosodyctl("register", user, self.domain, password)
        return f"{user}@{self.domain}"

    def shell(self, *args: str) -> str:
        """`prosodyctl shell ARGS` against the running server's admin socket, e.g.
        `shell("s2s", "show")` runs `s2s:show()`."""
        return self.prosodyctl("shell", *args)

    def close_s2s(self, host: Optional[str] = None) -> str:
        """Closes every s2s stream between this server and `host` (all remote hosts: None)."""
        if host is None:
            return self.shell("s2s:closeall()")
        return self.shell("s2s", "closeall", host)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        state = "running" if self.running else "not running"
        return (f"--- prosody {self.domain} ({self.ip}, {state}) log tail ---\n"
                f"{_tail(self.dir / 'prosody.stdout', 10)}\n{_tail(self.log_path, lines)}")

    def __repr__(self) -> str:
        return f"Prosody({self.domain} on {self.ip})"


# ---------------------------------------------------------------------------------------------
# Raw server-to-server streams


DIALBACK_NS = "jabber:server:dialback"


def s2s_header(from_domain: Optional[str], to_domain: Optional[str],
               dialback: bool = True) -> bytes:
    """An initiating server's stream header (`jabber:server`, with the dialback namespace
    declared when `dialback`); a None domain leaves the attribute out."""
    attrs = "".join(f" {k}='{v}'" for k, v in (("from", from_domain), ("to", to_domain)) if v)
    db = f" xmlns:db='{DIALBACK_NS}'" if dialback else ""
    return (f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            f"xmlns:stream='{STREAM_NS}'{db}{attrs} version='1.0'>").encode()


class RawS2S(RawStream):
    """A raw connection to a server's s2s port, speaking as server `from_domain` to
    `to_domain`: stream header, STARTTLS (optionally with a client certificate), SASL
    EXTERNAL, dialback elements. Every read is bounded (`RawStream.read_until`)."""

    def __init__(self, host: str, *, from_domain: Optional[str], to_domain: str,
                 port: int = S2S_PORT, ca: Optional[Path] = None,
                 cert: Optional[tuple[Path, Path]] = None, timeout: float = 10.0) -> None:
        super().__init__(host, port, ca=ca, domain=to_domain, timeout=timeout)
        self.from_domain, self.to_domain, self.cert = from_domain, to_domain, cert
        #: The `id` of the last stream header the server sent.
        self.stream_id: Optional[str] = None

    def read_features(self) -> str:
        m = self.read_until(r"<stream:stream\b[^>]*>", "the server's stream header")
        sid = re.search(r"\bid=['\"]([^'\"]+)['\"]", m.group(0))
        self.stream_id = sid.group(1) if sid else None
        m = self.read_until(r"<stream:features\s*/>|<stream:features\b.*?</stream:features>",
                            "stream features")
        return m.group(0)

    def open_stream(self) -> str:
        """Sends the s2s stream header; returns the server's features."""
        self.send(s2s_header(self.from_domain, self.to_domain))
        return self.read_features()

    def starttls(self) -> str:
        """Opens the stream, STARTTLS (presenting `cert` if given, trusting `ca`, checking the
        server's certificate for `to_domain`), reopens; returns the encrypted stream's
        features."""
        features = self.open_stream()
        if TLS_NS not in features:
            raise RawError(f"{self.host}:{self.port}: STARTTLS not offered: {features}")
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        self.read_until(r"<proceed\b[^>]*/>|<proceed\b[^>]*>\s*</proceed>", "<proceed/>")
        ctx = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert is not None:
            ctx.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        self.sock.settimeout(self.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.to_domain)
        except (ssl.SSLError, OSError) as exc:
            raise RawError(f"{self.host}:{self.port}: TLS handshake failed: {exc}") from None
        self.buf = ""
        return self.open_stream()

    def sasl_external(self, features: str) -> str:
        """SASL EXTERNAL with authorization identity `from_domain` (RFC 6120 §6.4, XEP-0178),
        then the stream restart; returns the new features."""
        if not re.search(r"<mechanism>\s*EXTERNAL\s*</mechanism>", features):
            raise RawError(f"SASL EXTERNAL not offered: {features}")
        authz = base64.b64encode((self.from_domain or "").encode()).decode() or "="
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='EXTERNAL'>{authz}</auth>")
        self.sasl_outcome()
        self.buf = ""
        return self.open_stream()

    def dialback_result(self, key: str) -> None:
        """`<db:result from=FROM to=TO>KEY</db:result>` (XEP-0220 §2.1.1)."""
        self.send(f"<db:result from='{self.from_domain}' to='{self.to_domain}'>{key}"
                  "</db:result>")

    def dialback_verify(self, stream_id: str, key: str) -> None:
        """`<db:verify from=FROM to=TO id=ID>KEY</db:verify>` (XEP-0220 §2.1.2): asks the
        server, as the authoritative server of `to_domain`, whether KEY is its key for a
        stream ID."""
        self.send(f"<db:verify from='{self.from_domain}' to='{self.to_domain}' "
                  f"id='{stream_id}'>{key}</db:verify>")

    def expect_dialback(self, element: str, what: str,
                        timeout: Optional[float] = None) -> tuple[Optional[str], str]:
        """Waits for a `<db:ELEMENT/>` reply or a stream error: (its `type`, its XML), or
        (None, the stream error XML)."""
        m = self.read_until(
            rf"<db:{element}\b[^>]*?(?:/>|>.*?</db:{element}>)"
            r"|<(?:stream:error|error\s+xmlns=['\"]" + re.escape(STREAM_NS) + r"['\"])[^>]*>"
            r".*?</(?:stream:)?error>", what, timeout)
        text = m.group(0)
        if text.startswith(f"<db:{element}"):
            t = re.search(r"\btype=['\"]([^'\"]+)['\"]", text)
            return (t.group(1) if t else None), text
        return None, text


# ---------------------------------------------------------------------------------------------
# One test's peers


_live_envs: "set[S2SEnv]" = set()


@atexit.register
def _close_leftovers() -> None:
    for env in list(_live_envs):
        env.close()


class S2SEnv:
    """A peer network, a CA, a DNS server and any number of Prosody servers for one test."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.net = PeerNet()
        self.prosodies: list[Prosody] = []
        try:
            self.ca = TestCA(self.dir / "ca")
            self.dns = Dns(self.dir / "dns", self.net.dns_ip)
        except BaseException:
            self.net.release()
            raise
        _live_envs.add(self)

    def prosody(self, domain: str, **kw: Any) -> Prosody:
        """A Prosody for `domain` on the next free address, with `_xmpp-server._tcp.DOMAIN`
        SRV and A records added to the DNS (restart it if already running). Not started."""
        ip = self.net.alloc()
        p = Prosody(self.dir / domain, ip, domain, ca=self.ca, dns_ip=self.dns.ip, **kw)
        self.prosodies.append(p)
        self.dns.add_xmpp_server(domain, [(domain, ip)])
        return p

    def ejabberd(self, domain: str, **kw: Any) -> Ejabberd:
        """An ejabberd for `domain` on the next free address, with SRV and A records added to
        the DNS (restart it if already running). Not started."""
        ip = self.net.alloc()
        e = Ejabberd(ip, domain, ca=self.ca, dns_ip=self.dns.ip,
                     keep_logs=self.dir / domain / "logs",
                     tag=f"{self.net.subnet[0]}_{self.net.subnet[1]}_{ip.rsplit('.', 1)[1]}",
                     **kw)
        self.prosodies.append(e)  # type: ignore[arg-type] - same start/stop/log_tail surface
        self.dns.add_xmpp_server(domain, [(domain, ip)])
        return e

    def close(self) -> None:
        """Kills every process (also on failure) and frees the addresses."""
        for p in self.prosodies:
            try:
                p.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                print(f"stopping {p!r}: {exc}", file=sys.stderr)
        try:
            self.dns.stop()
        finally:
            self.net.release()
            _live_envs.discard(self)

    def log_tails(self, lines: int = 60) -> str:
        return "\n".join([p.log_tail(lines) for p in self.prosodies]
                         + [self.dns.log_tail(20)])


def _test_failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture
def s2s_env(request: pytest.FixtureRequest, tmp_path: Path):
    """Peers for one test; killed on teardown, their log tails printed if the test failed."""
    env = S2SEnv(tmp_path / "peers")
    try:
        yield env
    finally:
        env.close()
        if _test_failed(request):
            print(f"\n===== peer logs for {request.node.nodeid} =====\n{env.log_tails()}",
                  file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# ejabberd


class Ejabberd:
    """One ejabberd 23.01 (Debian `ejabberd`) serving `domain` on `ip` (c2s 5222, s2s 5269).

    How it runs here (peers.md): `ejabberdctl --config-dir DIR --node NAME foreground` as the
    `ejabberd` user (`setpriv`; HOME=/var/lib/ejabberd for its Erlang cookie), in its own
    process group (killed as a group on stop). Its directory lives outside pytest's root-only
    tmp tree (the ejabberd user must read it) and is removed on stop (its logs are copied to
    `keep_logs` first). DNS, two resolvers: SRV records are looked up with Erlang's
    `inet_res`, configured by `DIR/inetrc` (ejabberdctl exports it as ERL_INETRC: the test
    dnsmasq as nameserver, `localhost` in its host table for Erlang distribution); the SRV
    targets' addresses with `net:getaddrinfo` (p1_xmpp 1.6.1, xmpp_stream_out:a_lookup), i.e.
    libc and /etc/resolv.conf (without it: `DNS lookup failed: enoname`), so the server runs
    in a mount namespace of its own whose /etc/resolv.conf names the test dnsmasq
    (`unshare --mount`, a bind mount, then setpriv). Erlang distribution on 127.0.0.1
    (`INET_DIST_INTERFACE`, `ERL_EPMD_ADDRESS`); an epmd
    already running on 127.0.0.1:4369 is used, else one is started on 127.0.0.1 and stopped
    by PID. Certificate: one PEM (certificate + key) from the TestCA; `ca_file` = the TestCA,
    s2s STARTTLS required, dialback module loaded unless `dialback=False`."""

    def __init__(self, ip: str, domain: str, *, ca: TestCA, dns_ip: str,
                 dialback: bool = True, tag: str = "", 
                 keep_logs: Optional[Path] = None) -> None:
        """`dns_ip`: the test DNS (both of ejabberd's resolvers ask it)."""
        import pwd
        import tempfile
        self.ip, self.domain, self.ca, self.dns_ip, self.dialback = ip, domain, ca, dns_ip, \
            dialback
        self.keep_logs = keep_logs
        self.dir = Path(tempfile.mkdtemp(prefix="herald-ejabberd-"))
        self.node = f"herald_{tag or ip.replace('.', '_')}@localhost"
        ej = pwd.getpwnam("ejabberd")
        self._uid, self._gid = ej.pw_uid, ej.pw_gid
        for d in ("logs", "spool"):
            (self.dir / d).mkdir()
        cert, key = ca.issue([domain], stem=domain, directory=self.dir)
        self.pem = self.dir / f"{domain}.pem"
        self.pem.write_bytes(cert.read_bytes() + key.read_bytes())
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_bytes(ca.ca_path.read_bytes())
        self.proc: Optional[subprocess.Popen] = None
        self.epmd: Optional[subprocess.Popen] = None

    def config_text(self) -> str:
        mods = "  mod_roster: {}\n  mod_disco: {}\n  mod_ping: {}\n  mod_admin_extra: {}\n"
        if self.dialback:
            mods += "  mod_s2s_dialback: {}\n"
        return f"""# generated by tests/xmpp/s2s_harness.py
hosts: ["{self.domain}"]
loglevel: info
certfiles: ["{self.pem}"]
ca_file: "{self.ca_file}"
listen:
  - port: {C2S_PORT}
    ip: "{self.ip}"
    module: ejabberd_c2s
    starttls_required: true
  - port: {S2S_PORT}
    ip: "{self.ip}"
    module: ejabberd_s2s_in
s2s_use_starttls: required
auth_method: internal
shaper_rules: {{}}
access_rules:
  c2s:
    allow: all
  s2s:
    allow: all
modules:
{mods}"""

    def _write(self) -> None:
        (self.dir / "ejabberd.yml").write_text(self.config_text())
        a, b, c, d = self.dns_ip.split(".")
        (self.dir / "inetrc").write_text(
            "{lookup, [file, dns]}.\n{resolv_conf, \"\"}.\n{hosts_file, \"\"}.\n"
            "{host, {127,0,0,1}, [\"localhost\"]}.\n"
            f"{{nameserver, {{{a},{b},{c},{d}}}}}.\n")
        (self.dir / "resolv.conf").write_text(f"nameserver {self.dns_ip}\n")
        (self.dir / "ejabberdctl.cfg").write_text(
            "ERLANG_NODE=" + self.node + "\nINET_DIST_INTERFACE=127.0.0.1\n"
            "ERL_EPMD_ADDRESS=127.0.0.1\nERL_OPTIONS=\"+sbwt none +sbwtdcpu none +sbwtdio none\"\n")
        for p in [self.dir, *self.dir.rglob("*")]:
            os.chown(p, self._uid, self._gid)

    def _ctl(self) -> list[str]:
        return ["setpriv", "--reuid", "ejabberd", "--regid", "ejabberd", "--init-groups",
                "env", "HOME=/var/lib/ejabberd", "ERL_EPMD_ADDRESS=127.0.0.1",
                "ejabberdctl", "--config-dir", str(self.dir), "--logs", str(self.dir / "logs"),
                "--spool", str(self.dir / "spool"), "--node", self.node]

    def start(self, timeout: float = 40.0) -> None:
        if not _port_open("127.0.0.1", 4369):
            self.epmd = subprocess.Popen(["epmd", "-address", "127.0.0.1"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            wait_until(lambda: _port_open("127.0.0.1", 4369), 5, "epmd on 127.0.0.1:4369")
        self._write()
        out = open(self.dir / "stdout", "ab")
        try:
            # A private /etc/resolv.conf in a mount namespace of its own (see the class doc).
            private_resolv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                              str(self.dir / "resolv.conf")]
            self.proc = subprocess.Popen([*private_resolv, *self._ctl(), "foreground"],
                                         stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            out.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"ejabberd exited with status {self.proc.returncode}")
            return _port_open(self.ip, C2S_PORT) and _port_open(self.ip, S2S_PORT)
        try:
            wait_until(ready, timeout, f"ejabberd {self.domain} listening on {self.ip}",
                       interval=0.2)
        except HarnessError as exc:
            raise HarnessError(f"{exc}\n{self.log_tail()}") from None

    def ctl(self, *args: str, timeout: float = CMD_TIMEOUT) -> str:
        cmd = [*self._ctl(), *args]
        try:
            out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"`ejabberdctl {' '.join(args)}` took more than {timeout}s") \
                from None
        if out.returncode != 0:
            raise HarnessError(f"`ejabberdctl {' '.join(args)}` failed (exit {out.returncode})"
                               f": {out.stdout.strip()} {out.stderr.strip()}")
        return out.stdout

    def register(self, user: str, password: str) -> str:
        self.ctl("register", user, self.domain, password)
        return f"{user}@{self.domain}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the process group (SIGKILL after `timeout`), epmd if we started it, and
        the directory removed; idempotent."""
        import shutil
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:  # anything of the group still alive (beam.smp after its wrapper exited)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill(self.epmd)
        self.epmd = None
        if self.dir.exists():
            self.saved_log = self.log_tail(80)
            if self.keep_logs is not None:  # the test's own directory keeps the whole logs
                shutil.copytree(self.dir / "logs", self.keep_logs, dirs_exist_ok=True)
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self.dir / "logs" / "ejabberd.log").read_text(errors="replace")
        except OSError:
            return getattr(self, "saved_log", "")

    def log_tail(self, lines: int = 40) -> str:
        if not self.dir.exists():
            return getattr(self, "saved_log", "(ejabberd directory removed)")
        state = "running" if self.running else "not running"
        return (f"--- ejabberd {self.domain} ({self.ip}, {state}) log tail ---\n"
                f"{_tail(self.dir / 'stdout', 10)}\n"
                f"{_tail(self.dir / 'logs' / 'ejabberd.log', lines)}\n"
                f"{_tail(self.dir / 'logs' / 'error.log', 10)}")

    def __repr__(self) -> str:
        return f"Ejabberd({self.domain} on {self.ip})"
