"""Where the Helm tests find the chart and the helm binary (installed under .testbeds by
the chart tests' setup)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "fedgate"
TOOLS = REPO / ".testbeds" / "helm-tools"
HELM = TOOLS / "bin" / "helm"
