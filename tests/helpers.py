"""Paths and small helpers the tests share."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE_STAGING = PROJECT / "examples" / "staging" / "rental-pricing-prediction"
DAGS = PROJECT / "dags"
PLUGINS = PROJECT / "plugins"
