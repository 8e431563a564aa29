"""Shipped study files (`*.yaml`), one per task and dataset. `path(name)` finds one."""

from __future__ import annotations

from pathlib import Path

STUDY_DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The shipped study file called `name` (with or without `.yaml`)."""
    return STUDY_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")


def names() -> list[str]:
    return sorted(p.stem for p in STUDY_DIR.glob("*.yaml"))
