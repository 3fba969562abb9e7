"""The pure core: turns failures into ban decisions for each jail.

No I/O, no threads, no clock reads: every function takes ``now`` when it needs the time, and
everything outside (earlier bans, DNS answers, ``ignorecommand``) comes in through hooks. The
daemon, ``banish scan`` and the tests all drive the same code.
"""

from __future__ import annotations

from banish.core.events import FeedResult, IgnoreSource, Outcome
from banish.core.formula import Formula, FormulaError, compile_formula
from banish.core.ignore import IgnoreList, IgnorePredicate, normalize_address
from banish.core.jail import Jail, JailStats
from banish.core.policy import MAX_BANTIME, BanPolicy, PriorBans, PriorBansLookup
from banish.core.tracker import (
    DEFAULT_MAX_MATCH_CHARS,
    DEFAULT_MAX_TRACKED,
    FailureTracker,
    Tally,
)

__all__ = [
    "DEFAULT_MAX_MATCH_CHARS",
    "DEFAULT_MAX_TRACKED",
    "MAX_BANTIME",
    "BanPolicy",
    "FailureTracker",
    "FeedResult",
    "Formula",
    "FormulaError",
    "IgnoreList",
    "IgnorePredicate",
    "IgnoreSource",
    "Jail",
    "JailStats",
    "Outcome",
    "PriorBans",
    "PriorBansLookup",
    "Tally",
    "compile_formula",
    "normalize_address",
]
