"""Tests of deploy/: rendered manifests, image lint, alert rules, dashboard, a real Prometheus
scraping a real cluster, and the StatefulSet behaviour with real processes. The process
harness is the XMPP tests' (tests/xmpp/harness.py)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "xmpp"))
