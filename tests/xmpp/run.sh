#!/usr/bin/env bash
# Runs the real-client XMPP tests (slixmpp + raw sockets) against a real multi-process Herald
# cluster. Extra arguments go to pytest, e.g. `tests/xmpp/run.sh -k chat -x`, or `-n 3 --dist
# loadfile` for three files at a time as scripts/test runs them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

if ! python3 -c 'import slixmpp, pytest, pytest_timeout, xdist, aiodns, grpc, cryptography, caldav, exchangelib, spnego, boofuzz' 2>/dev/null; then
    python3 -m pip install -q -r "$here/requirements.txt"
fi

if [ -z "${HERALD_BIN:-}" ]; then
    cargo build -q -p herald-node --bin herald
fi

exec python3 -m pytest "$here" -q -p no:cacheprovider "$@"
