"""Writes the subscriptions of the large presence scenarios straight into Prosody's or
ejabberd's storage, as the XMPP setup would leave them.

Through XMPP, Prosody's file storage rewrites a user's whole roster on every change: the
storm's 200,000 subscription handshakes left 0 of 2,000 users ready after 300 s, and 10,000
watchers of one publisher got 17 through in 180 s. The measurement does not depend on how the
subscriptions were made, so both peers get them written in (Herald sets them up over XMPP; the
scenarios still send their requests everywhere, and on a server that already holds the
subscription they change nothing).

    rosters.py prosody  DATA_DIR DOMAIN MAX_USERS [--storm FIRST USERS WATCH] [--fanout WATCHERS]
    rosters.py piefxis  OUT_DIR  DOMAIN MAX_USERS [--storm FIRST USERS WATCH] [--fanout WATCHERS]

`prosody` writes DATA_DIR/<domain>/roster/u<i>.dat; `piefxis` writes XEP-0227 files of 1,000
accounts each (OUT_DIR/users-<first>.xml, accounts u<i> / pw<i>, with rosters) for
`ejabberdctl import_piefxis`.

Storm: users u<FIRST>… u<FIRST+USERS-1>; slot i watches the next WATCH slots (a ring), as
`loadgen storm` subscribes them. Fan-out: u2… u<WATCHERS+1> watch u1, as `loadgen fanout`.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict


def subscriptions(args: argparse.Namespace) -> dict[int, dict[int, str]]:
    """user number -> {contact number: subscription state}."""
    to: dict[int, set[int]] = defaultdict(set)
    frm: dict[int, set[int]] = defaultdict(set)
    if args.storm:
        first, users, watch = args.storm
        watch = min(watch, max(users - 1, 0))
        for i in range(users):
            for k in range(1, watch + 1):
                a, b = first + i, first + (i + k) % users
                to[a].add(b)
                frm[b].add(a)
    if args.fanout:
        for w in range(2, args.fanout + 2):
            to[w].add(1)
            frm[1].add(w)
    out: dict[int, dict[int, str]] = {}
    for u in set(to) | set(frm):
        out[u] = {c: ("both" if c in to[u] and c in frm[u] else "to" if c in to[u] else "from")
                  for c in sorted(to[u] | frm[u])}
    return out


def write_prosody(args: argparse.Namespace, subs: dict[int, dict[int, str]]) -> None:
    d = os.path.join(args.dir, args.domain.replace(".", "%2e"), "roster")
    os.makedirs(d, exist_ok=True)
    for u, items in subs.items():
        body = "".join(
            f'\t["u{c}@{args.domain}"] = {{\n\t\t["groups"] = {{}};\n'
            f'\t\t["subscription"] = "{s}";\n\t}};\n' for c, s in items.items())
        with open(os.path.join(d, f"u{u}.dat"), "w") as f:
            f.write('return {\n\t[false] = {\n\t\t["version"] = 1;\n\t\t["pending"] = {};\n'
                    '\t};\n' + body + "};\n")


def write_piefxis(args: argparse.Namespace, subs: dict[int, dict[int, str]]) -> None:
    for start in range(1, args.max_users + 1, 1000):
        with open(os.path.join(args.dir, f"users-{start}.xml"), "w") as f:
            f.write("<?xml version='1.0' encoding='UTF-8'?>\n"
                    f"<server-data xmlns='urn:xmpp:pie:0'><host jid='{args.domain}'>\n")
            for i in range(start, min(start + 999, args.max_users) + 1):
                roster = ""
                if i in subs:
                    items = "".join(f"<item jid='u{c}@{args.domain}' subscription='{s}'/>"
                                    for c, s in subs[i].items())
                    roster = f"<query xmlns='jabber:iq:roster'>{items}</query>"
                f.write(f"<user name='u{i}' password='pw{i}'>{roster}</user>\n")
            f.write("</host></server-data>\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("format", choices=["prosody", "piefxis"])
    p.add_argument("dir")
    p.add_argument("domain")
    p.add_argument("max_users", type=int)
    p.add_argument("--storm", type=int, nargs=3, metavar=("FIRST", "USERS", "WATCH"))
    p.add_argument("--fanout", type=int, metavar="WATCHERS")
    args = p.parse_args()
    subs = subscriptions(args)
    if args.format == "prosody":
        write_prosody(args, subs)
    else:
        write_piefxis(args, subs)


if __name__ == "__main__":
    main()
