"""A plugin distribution as pip would install it, in a folder a test puts on PYTHONPATH:
importlib.metadata finds its entry points there, so the agent loads it as a real plugin."""

from __future__ import annotations

from pathlib import Path


def install_distribution(site: Path, name: str, entry_points: str) -> None:
    """`name`'s `.dist-info` in `site`, with `entry_points` (its entry_points.txt)."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
