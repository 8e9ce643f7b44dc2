"""pytest fixtures for the XMPP tests: a real 3-node Herald cluster per test.

On failure, each node's log tail is attached to the test report (section "herald node logs")
and printed on teardown.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Cluster  # noqa: E402
from s2s_harness import S2SEnv, s2s_env  # noqa: E402,F401 - the federation peers fixture

# slixmpp logs every reconnect attempt at ERROR; keep the report readable.
logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


# Files with a test of minutes, run first: `scripts/test` spreads files over parallel workers
# (pytest-xdist, `--dist loadfile`, in collection order), and a long file started last would
# be the whole run's tail.
LONG_FILES = ("test_faults.py", "test_s2s_more.py", "test_outside_fuzz.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)
    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        for value in getattr(item, "funcargs", {}).values():
            # A fixture's Cluster, or the `cluster` of a fixture object that holds one.
            value = value if isinstance(value, Cluster) else getattr(value, "cluster", None)
            if isinstance(value, Cluster):
                rep.sections.append((f"herald node logs ({value!r})", value.all_log_tails(60)))
        env = getattr(item, "funcargs", {}).get("s2s_env")
        if isinstance(env, S2SEnv):
            rep.sections.append((f"federation peer logs ({env.net!r})", env.log_tails(60)))


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(request.node, f"rep_{w}", None) is not None
               and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    """A running cluster (3 nodes unless the test is marked `@pytest.mark.nodes(n)`), with the
    domain example.test. Killed on teardown; node log tails printed if the test failed."""
    marker = request.node.get_closest_marker("nodes")
    size = marker.args[0] if marker else 3
    c = Cluster(tmp_path / "cluster")
    try:
        c.start_cluster(size)
        yield c
    finally:
        failed = _failed(request)
        c.stop()
        if failed:
            print(f"\n===== herald logs for {request.node.nodeid} =====\n{c.all_log_tails(60)}",
                  file=sys.stderr)
