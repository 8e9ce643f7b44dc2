"""Helpers shared by the deploy tests: render an overlay, read the rendered objects, the
metric names a PromQL expression uses."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
K8S_VERSION = "1.30.0"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not on PATH: scripts/test installs it (see tests/README.md)"
    return path


def render(overlay: str) -> str:
    """`kubectl kustomize deploy/overlays/OVERLAY` (kubectl's built-in kustomize)."""
    out = subprocess.run([tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return out.stdout


def objects(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render(overlay)) if d]


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


_WORD = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "count_values", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and",
    "or", "unless", "offset", "bool", "rate", "irate", "increase", "delta", "idelta", "deriv",
    "histogram_quantile", "scalar", "vector", "time", "abs", "absent", "label_replace",
    "label_join", "clamp_min", "clamp_max", "round", "sort", "sort_desc", "changes", "resets",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time",
    "le", "inf", "nan",
}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names inside {...} or by/without lists, string contents or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)                      # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    e = re.sub(r"\[[^\]]*\]", "", e)                       # range selectors
    names = set()
    for m in _WORD.finditer(e):
        w = m.group(0)
        rest = e[m.end():].lstrip()
        if w.lower() in _PROMQL_WORDS or rest.startswith("("):
            continue
        names.add(w)
    return names


def series_family(name: str) -> str:
    """The family a histogram/summary series belongs to (`x_bucket` -> `x`)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
