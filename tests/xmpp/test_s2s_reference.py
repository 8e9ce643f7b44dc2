"""The scenarios of `test_s2s.py` with a second Prosody standing in for Herald (example.test).

This proves the scenarios themselves (their steps, waits and expected answers) against a
reference implementation, so that when one fails against Herald the difference is Herald's.
It runs in CI while `test_s2s.py` is still skipped. Left out: the policy test (Herald's CLI)
and the metric assertions (Herald's /metrics).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_s2s as scenarios  # noqa: E402
from s2s_harness import Prosody, S2SEnv  # noqa: E402


class _ProsodyAsCluster:
    """The parts of `harness.Cluster` the scenarios use, backed by one Prosody."""

    def __init__(self, prosody: Prosody) -> None:
        self.prosody = prosody
        self.nodes = [1]

    def new_user(self, name: str) -> tuple[str, str]:
        password = f"pw-{secrets.token_hex(4)}"
        return self.prosody.register(f"{name}-{secrets.token_hex(3)}", password), password

    def ip(self, node: int) -> str:
        return self.prosody.ip

    def is_running(self, node: int) -> bool:
        return self.prosody.running


class _ReferenceFederation(scenarios.Federation):
    def assert_counted(self, name: str, what: str,
                       pred: Callable[[dict], bool] = lambda _: True) -> None:
        """Prosody has no Herald metrics."""


@pytest.fixture
def federation(s2s_env: S2SEnv):
    """Like `test_s2s.federation`, with Prosody serving example.test in the same mode."""
    def make(mode: str = "required", prosody_cert: Optional[tuple[Path, Path]] = None,
             prosody_kw: Optional[dict] = None, extra_args: tuple[str, ...] = ()) -> Any:
        env = s2s_env
        knobs = scenarios.MODES[mode]["prosody"]
        herald = env.prosody(scenarios.HERALD_DOMAIN, **knobs)
        peer = env.prosody(scenarios.PEER_DOMAIN, cert=prosody_cert,
                           **{**knobs, **(prosody_kw or {})})
        env.dns.start()
        herald.start()
        peer.start()
        return _ReferenceFederation(env, _ProsodyAsCluster(herald), peer, mode,
                                    secrets.token_hex(16))
    yield make


# The scenarios, collected here with the fixture above (their module's skip does not apply).
test_tls_and_sasl_external_both_ways = scenarios.test_tls_and_sasl_external_both_ways
test_dialback_only = scenarios.test_dialback_only
test_first_stanzas_to_a_new_domain_are_delivered = \
    scenarios.test_first_stanzas_to_a_new_domain_are_delivered
test_streams_closed_by_the_peer_are_reopened = \
    scenarios.test_streams_closed_by_the_peer_are_reopened
test_streams_survive_a_peer_restart = scenarios.test_streams_survive_a_peer_restart
test_wrong_dialback_key_is_refused = scenarios.test_wrong_dialback_key_is_refused
test_peer_certificate_from_another_ca_is_refused = \
    scenarios.test_peer_certificate_from_another_ca_is_refused
test_bad_input_on_5269 = scenarios.test_bad_input_on_5269
