"""Where banish's packaged files live (its own filter library and default config)."""

from __future__ import annotations

from pathlib import Path


def packaged_config_dir() -> str:
    """The config directory shipped inside the package: ``filter.d`` with banish's filters."""
    return str(Path(__file__).resolve().parent / "filters")
