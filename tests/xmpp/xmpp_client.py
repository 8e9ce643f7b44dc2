"""A slixmpp client for the tests: bounded login, and queues of what it receives.

Every wait here is bounded and every failure says what was expected and what happened
(including the client-side events seen so far, e.g. `connection_failed`, `failed_auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Iterable, Optional, TypeVar

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from harness import C2S_PORT, C2S_TLS_PORT, Cluster

CLIENT_NS = "jabber:client"
DELAY_NS = "urn:xmpp:delay"
STREAMS_NS = "urn:ietf:params:xml:ns:xmpp-streams"

#: Bound on connect + TLS + SASL + bind.
LOGIN_TIMEOUT = 15.0
#: Bound on one request/response (iq) or one expected stanza.
STEP_TIMEOUT = 10.0
#: Bound on a whole asyncio test body (pytest-timeout is 120 s per test).
TEST_TIMEOUT = 100.0

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = TEST_TIMEOUT) -> T:
    """Runs one test's asyncio body with an overall bound."""
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"test body did not finish within {timeout:.0f}s") from None
    return asyncio.run(bounded())


async def wait_for(aw: Awaitable[T], timeout: float, what: str) -> T:
    """`asyncio.wait_for` whose timeout names what was awaited."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None


async def async_wait_until(pred: Callable[[], Awaitable[Optional[T]]], timeout: float,
                           what: str, interval: float = 0.1) -> T:
    """Polls the coroutine function `pred` until it returns a value other than None/False."""
    deadline = time.monotonic() + timeout
    last = "condition never held"
    while True:
        try:
            value = await asyncio.wait_for(pred(), max(0.1, deadline - time.monotonic()))
            if value is not None and value is not False:
                return value
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last}")
        await asyncio.sleep(interval)


def bare(jid: Any) -> str:
    """The bare form of a JID (string or slixmpp JID)."""
    return str(slixmpp.JID(str(jid)).bare)


class LoginFailed(AssertionError):
    """A login did not produce a session.

    `stage` is one of: `connect` (TCP), `tls`, `auth` (SASL failure; `condition` holds the
    SASL condition, e.g. `not-authorized`), `stream-error` (`condition` is the stream error),
    `disconnected` (closed before a session), `timeout`, `no-tls` (session without TLS).
    """

    def __init__(self, stage: str, message: str, condition: Optional[str] = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.condition = condition


def _describe(stanza: Any) -> str:
    text = str(stanza)
    return text if len(text) <= 300 else text[:300] + "..."


class Client(slixmpp.ClientXMPP):
    """One XMPP client session. Create it inside the test's event loop."""

    def __init__(self, jid: str, password: str, *, ca: Path, resource: Optional[str] = None,
                 stream_management: bool = False) -> None:
        super().__init__(f"{jid}/{resource}" if resource else jid, password)
        self.user = jid
        self.ca_certs = Path(ca)
        self.enable_plaintext = False
        # Subscriptions are answered by the tests, never automatically.
        self.auto_authorize = None
        self.auto_subscribe = False
        for plugin in ("xep_0030", "xep_0191", "xep_0199", "xep_0203"):
            self.register_plugin(plugin)
        if stream_management:
            self.register_plugin("xep_0198", {"allow_resume": False})
        self.endpoint = "(not connected)"
        self.trace: list[str] = []
        self.messages: asyncio.Queue = asyncio.Queue()
        self.message_errors: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        self.stream_errors: list[str] = []
        self.auth_failures: list[str] = []
        self.closed = asyncio.Event()
        self.register_handler(Callback("herald-test messages",
                                       MatchXPath(f"{{{CLIENT_NS}}}message"), self._on_message))
        self.register_handler(Callback("herald-test presences",
                                       MatchXPath(f"{{{CLIENT_NS}}}presence"),
                                       self._on_presence))
        for ev in ("connecting", "connected", "tls_success", "auth_success", "session_bind",
                   "session_start", "sm_enabled", "sm_failed", "session_end"):
            self.add_event_handler(ev, self._tracer(ev))
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("stream_error", self._on_stream_error)

    # -- event plumbing ----------------------------------------------------------------------

    def _tracer(self, name: str) -> Callable[[Any], None]:
        def handler(_data: Any) -> None:
            self.trace.append(name)
        return handler

    def _on_message(self, msg: Any) -> None:
        if msg["type"] == "error":
            self.message_errors.put_nowait(msg)
        else:
            self.messages.put_nowait(msg)

    def _on_presence(self, pres: Any) -> None:
        self.presences.put_nowait(pres)

    def _on_stream_error(self, err: Any) -> None:
        cond = err["condition"]
        self.stream_errors.append(cond)
        self.trace.append(f"stream_error({cond})")

    def _on_disconnected(self, reason: Any) -> None:
        self.trace.append(f"disconnected({reason})")
        self.closed.set()

    # -- login -------------------------------------------------------------------------------

    async def login(self, host: str, *, direct_tls: bool = False,
                    timeout: float = LOGIN_TIMEOUT) -> None:
        """Connects to `host` (5222 STARTTLS, or 5223 direct TLS), authenticates (SCRAM is
        negotiated by slixmpp from the server's mechanisms), binds, and returns once the
        session started over TLS. Raises LoginFailed otherwise, always within `timeout`."""
        port = C2S_TLS_PORT if direct_tls else C2S_PORT
        self.enable_direct_tls = direct_tls
        self.enable_starttls = not direct_tls
        self.endpoint = f"{host}:{port} ({'direct TLS' if direct_tls else 'STARTTLS'})"
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def fail(stage: str, msg: str, condition: Optional[str] = None) -> None:
            if not done.done():
                done.set_exception(LoginFailed(
                    stage, f"{self.user} via {self.endpoint}: {msg}; client events: "
                           f"{', '.join(self.trace) or 'none'}", condition))

        def on_session(_: Any) -> None:
            if not done.done():
                done.set_result(None)

        def on_conn_failed(err: Any) -> None:
            self.trace.append(f"connection_failed({err})")
            fail("connect", f"could not connect: {err}")

        def on_failed_auth(stanza: Any) -> None:
            cond = stanza["condition"] if stanza is not None else "?"
            self.auth_failures.append(cond)
            self.trace.append(f"failed_auth({cond})")
            # One wrong password is one failure: stop slixmpp from trying its other mechanisms.
            mech = self.plugin["feature_mechanisms"]
            mech.attempted_mechs |= set(mech.mech_list)
            fail("auth", f"SASL failure <{cond}/>: {_describe(stanza)}", cond)

        def on_failed_all_auth(_: Any) -> None:
            self.trace.append("failed_all_auth")
            fail("auth", "no SASL mechanism succeeded",
                 self.auth_failures[0] if self.auth_failures else None)

        def on_stream_error(err: Any) -> None:
            cond = err["condition"]
            fail("stream-error", f"stream error <{cond}/>: {_describe(err)}", cond)

        def on_tls_bad(err: Any) -> None:
            self.trace.append(f"ssl_invalid_chain({err})")
            fail("tls", f"TLS handshake failed (certificate not trusted with {self.ca_certs}?): "
                        f"{err}")

        def on_disconnected(reason: Any) -> None:
            fail("disconnected", f"connection closed before a session started ({reason})")

        handlers = [("session_start", on_session), ("connection_failed", on_conn_failed),
                    ("failed_auth", on_failed_auth), ("failed_all_auth", on_failed_all_auth),
                    ("stream_error", on_stream_error), ("ssl_invalid_chain", on_tls_bad),
                    ("disconnected", on_disconnected)]
        for name, h in handlers:
            self.add_event_handler(name, h)
        self.closed.clear()
        try:
            self.connect(host, port)
            try:
                await asyncio.wait_for(asyncio.shield(done), timeout)
            except asyncio.TimeoutError:
                fail("timeout", f"no session within {timeout:.0f}s")
                await done
        except BaseException:
            self.cancel_connection_attempt()
            self.abort()
            raise
        finally:
            for name, h in handlers:
                self.del_event_handler(name, h)
        if not self.is_encrypted():
            self.abort()
            raise LoginFailed("no-tls", f"{self.user} via {self.endpoint}: session started "
                                        "without TLS")

    def is_encrypted(self) -> bool:
        """Whether the transport is TLS."""
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    async def logout(self, timeout: float = 5.0) -> None:
        """Closes the stream cleanly (bounded), then drops the transport if still open."""
        with contextlib.suppress(Exception):
            if self.transport is not None:
                await asyncio.wait_for(self.disconnect(wait=2), timeout)
        self.cancel_connection_attempt()
        if self.transport is not None:
            self.abort()

    # -- sending -----------------------------------------------------------------------------

    async def online(self, show: Optional[str] = None, status: Optional[str] = None) -> dict:
        """Fetches the roster, then sends initial presence (as real clients do); returns the
        roster as {bare jid: {"subscription", "ask", "name"}}."""
        items = await self.roster_items()
        self.send_presence(pshow=show, pstatus=status)
        return items

    def chat(self, to: str, body: str) -> None:
        """Sends a `chat` message."""
        self.send_message(mto=to, mbody=body, mtype="chat")

    async def ping(self, to: Optional[str] = None, timeout: float = STEP_TIMEOUT) -> float:
        """XEP-0199 ping; returns the round trip time; IqError/IqTimeout on failure."""
        return await self.plugin["xep_0199"].ping(jid=to, timeout=timeout)

    async def sync(self) -> None:
        """A ping to our own server: everything sent before it has been read by the server."""
        await self.ping(self.boundjid.domain)

    # -- queries -----------------------------------------------------------------------------

    async def roster_items(self, timeout: float = STEP_TIMEOUT) -> dict:
        """The roster as the server returns it now: {bare jid: {subscription, ask, name}}.
        Asks without a roster version (slixmpp's get_roster() sends one, and the answer to an
        up-to-date version is empty)."""
        req = self.Iq()
        req["type"] = "get"
        ET.SubElement(req.xml, "{jabber:iq:roster}query")
        iq = await req.send(timeout=timeout)
        out = {}
        for item in iq.xml.iter("{jabber:iq:roster}item"):
            out[bare(item.get("jid", ""))] = {"subscription": item.get("subscription", "none"),
                                              "ask": item.get("ask"), "name": item.get("name")}
        return out

    async def roster_set(self, jid: str, name: str, timeout: float = STEP_TIMEOUT) -> None:
        """Adds or renames a roster item (RFC 6121 roster set, no subscription attribute)."""
        iq = self.Iq()
        iq["type"] = "set"
        query = ET.SubElement(iq.xml, "{jabber:iq:roster}query")
        ET.SubElement(query, "{jabber:iq:roster}item", {"jid": jid, "name": name})
        await iq.send(timeout=timeout)

    async def blocked(self, timeout: float = STEP_TIMEOUT) -> set[str]:
        """The XEP-0191 block list (bare JIDs)."""
        jids = await self.plugin["xep_0191"].get_blocked_jids(timeout=timeout)
        return {str(j) for j in jids}

    async def block(self, jid: str, timeout: float = STEP_TIMEOUT) -> None:
        await self.plugin["xep_0191"].block(jid, timeout=timeout)

    async def unblock(self, jid: str, timeout: float = STEP_TIMEOUT) -> None:
        await self.plugin["xep_0191"].unblock(jid, timeout=timeout)

    async def disco_features(self, jid: str, timeout: float = STEP_TIMEOUT) -> set[str]:
        """disco#info features of `jid`, asked over the wire."""
        iq = await self.plugin["xep_0030"].get_info(jid=jid, local=False, cached=False,
                                                    timeout=timeout)
        return {f.get("var") for f in
                iq.xml.iter("{http://jabber.org/protocol/disco#info}feature")}

    # -- receiving ---------------------------------------------------------------------------

    async def expect(self, queue: asyncio.Queue, pred: Callable[[Any], bool], what: str,
                     timeout: float = STEP_TIMEOUT) -> Any:
        """The next stanza in `queue` for which `pred` holds; others are dropped (and listed
        in the failure message)."""
        skipped: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                st = await asyncio.wait_for(queue.get(), max(left, 0.001))
            except asyncio.TimeoutError:
                seen = "\n  ".join(skipped[-10:]) or "nothing"
                raise AssertionError(
                    f"{self.boundjid or self.user}: expected {what} within {timeout:.0f}s; "
                    f"received instead:\n  {seen}") from None
            if pred(st):
                return st
            skipped.append(_describe(st))

    async def expect_presence(self, frm: str, what: str, ptype: Optional[str] = None,
                              show: Optional[str] = None, status: Optional[str] = None,
                              timeout: float = STEP_TIMEOUT) -> Any:
        """The next presence from `frm` (bare or full) with the given type/show/status;
        `ptype` "available" means no type attribute."""
        def ok(p: Any) -> bool:
            src = str(p["from"])
            if src != frm and bare(src) != frm:
                return False
            if ptype is not None and p["type"] != ptype:
                return False
            if show is not None and p["show"] != show:
                return False
            return status is None or p["status"] == status
        return await self.expect(self.presences, ok, f"{what} (presence from {frm}, "
                                 f"type={ptype}, show={show}, status={status!r})", timeout)

    async def expect_messages(self, frm: str, count: int, timeout: float = 20.0) -> list[Any]:
        """The next `count` non-error messages with a body from bare JID `frm`, in arrival
        order."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        for i in range(count):
            left = max(deadline - time.monotonic(), 0.001)
            try:
                got.append(await self.expect(
                    self.messages, lambda m: bare(m["from"]) == frm and bool(m["body"]),
                    f"message {i + 1} of {count} from {frm}", left))
            except AssertionError as exc:
                bodies = [m["body"] for m in got]
                raise AssertionError(f"{exc}\n  got {len(got)} of {count} so far: {bodies}") \
                    from None
        return got

    async def drain(self, queue: asyncio.Queue, seconds: float) -> list[Any]:
        """Everything that arrives in `queue` during the next `seconds` (a bounded window)."""
        out: list[Any] = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(await asyncio.wait_for(queue.get(), left))
            except asyncio.TimeoutError:
                return out


async def subscribe(a: Client, b: Client) -> None:
    """`a` asks `b` for presence; `b` approves; `a` then sees `b`'s presence."""
    a.send_presence(pto=b.user, ptype="subscribe")
    await b.expect_presence(a.user, f"{b.user} to get the subscription request", ptype="subscribe")
    b.send_presence(pto=a.user, ptype="subscribed")
    await a.expect_presence(b.user, f"{a.user} to get the approval", ptype="subscribed")
    await a.expect_presence(b.user, f"{a.user} to get {b.user}'s current presence after approval",
                            ptype="available")


class Clients:
    """Creates clients against a cluster and drops them all at the end:

        async with Clients(cluster) as xc:
            alice = await xc.login(jid, pw, node=1)
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.all: list[Client] = []

    async def __aenter__(self) -> "Clients":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for c in self.all:
            c.cancel_connection_attempt()
            if c.transport is not None:
                c.abort()

    def client(self, jid: str, password: str, node: int, **kw: Any) -> Client:
        """A client trusting node `node`'s CA, not yet connected."""
        c = Client(jid, password, ca=self.cluster.ca(node), **kw)
        self.all.append(c)
        return c

    async def login(self, jid: str, password: str, node: int, *, direct_tls: bool = False,
                    timeout: float = LOGIN_TIMEOUT, **kw: Any) -> Client:
        """A client with a started session on node `node` (LoginFailed otherwise)."""
        c = self.client(jid, password, node, **kw)
        await c.login(self.cluster.ip(node), direct_tls=direct_tls, timeout=timeout)
        return c


def pick_nodes(cluster: Cluster, a: str, b: str,
               nodes: Iterable[int] = (1, 2, 3)) -> tuple[int, int]:
    """Nodes to connect users `a` and `b` to: different nodes, neither on its user's home node
    when possible, and always at least one away from its home (looked up with `home_node`)."""
    nodes = list(nodes)
    ha, hb = cluster.home_node(a), cluster.home_node(b)
    for na in nodes:
        for nb in nodes:
            if na != nb and na != ha and nb != hb:
                return na, nb
    for na in nodes:
        for nb in nodes:
            if na != nb and (na != ha or nb != hb):
                return na, nb
    raise AssertionError(f"cannot place {a} (home {ha}) and {b} (home {hb}) on {nodes}")


def assert_pair_chats(cluster: Cluster, node: int, a: tuple[str, str], b: tuple[str, str],
                      body: str, timeout: float = 30.0) -> None:
    """Two ordinary clients log in on `node` and `a` chats to `b`: the check that a node
    still serves everyone else after one client did something hostile (bounded)."""
    async def chat() -> None:
        async with Clients(cluster) as xc:
            ca = await xc.login(*a, node)
            cb = await xc.login(*b, node)
            await ca.online()
            await cb.online()
            ca.chat(b[0], body)
            got = await cb.expect_messages(a[0], 1)
            assert got[0]["body"] == body, got[0]
    run(chat(), timeout)
