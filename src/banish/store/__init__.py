"""Persistent state: ban history, active bans, file positions and journal cursors.

Owns the public face of the store package; the contract is in ``base``, backends beside it.
Must not be imported by the pure stages (``match``, ``core``): only the daemon and the CLI
touch the store.
"""

from banish.store.base import (
    PERMANENT,
    Ban,
    BanCount,
    BanKey,
    FilePosition,
    Store,
    StoreError,
)
from banish.store.sqlite import SqliteStore

__all__ = [
    "PERMANENT",
    "Ban",
    "BanCount",
    "BanKey",
    "FilePosition",
    "SqliteStore",
    "Store",
    "StoreError",
]
