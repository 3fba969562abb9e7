"""ARCHITECTURE.md's module map is the tree: every module listed, nothing listed that is gone,
and no module over 600 lines without a reason written at its top."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "banish"
LIMIT = 600


def modules() -> set[str]:
    return {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
            if p.name != "__init__.py" and "filters" not in p.parts}


def listed() -> set[str]:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return set(re.findall(r"^- `([\w/]+\.py)`", text, re.MULTILINE))


def test_every_module_is_in_the_map_and_every_listed_module_exists() -> None:
    assert modules() - listed() == set(), "modules missing from ARCHITECTURE.md"
    assert listed() - modules() == set(), "ARCHITECTURE.md lists modules that are gone"


def test_no_module_is_over_the_limit_without_a_written_reason() -> None:
    long = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > LIMIT and "over 600 lines because" not in "\n".join(lines[:40]):
            long.append(f"{path.relative_to(SRC)}: {len(lines)} lines")
    assert not long
