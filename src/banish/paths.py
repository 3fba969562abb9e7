"""Where banish's packaged files live (its own filter library and default config)."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_CONFIG_DIR = "/etc/banish"


def packaged_config_dir() -> str:
    """The config directory shipped inside the package: ``filter.d``, ``jail.conf``,
    ``banish.conf`` — what runs when the admin has written nothing."""
    return str(Path(__file__).resolve().parent / "filters")


def default_config_dir() -> str:
    """``/etc/banish`` when the admin made one, else the packaged defaults."""
    return SYSTEM_CONFIG_DIR if os.path.isdir(SYSTEM_CONFIG_DIR) else packaged_config_dir()
