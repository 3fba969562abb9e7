"""Error types shared by every stage.

Every error a user can cause carries where it came from (file, section, option, line), so the
CLI can print one line that names the place and the reason, and exit with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass

USAGE_EXIT = 2


@dataclass(frozen=True, slots=True)
class Where:
    """A place in the user's input: any part may be unknown."""

    file: str | None = None
    section: str | None = None
    option: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.section:
            parts.append(f"[{self.section}]")
        if self.option:
            parts.append(self.option)
        return " ".join(parts)


class BanishError(Exception):
    """Base of all errors banish reports to a user."""


class ConfigError(BanishError):
    """Bad configuration or usage: reported on one line, exit status 2."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        section: str | None = None,
        option: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.where = Where(file, section, option, line)
        super().__init__(str(self))

    def located(
        self,
        *,
        file: str | None = None,
        section: str | None = None,
        option: str | None = None,
    ) -> ConfigError:
        """Fill in the parts of the place that the raiser did not know."""
        w = self.where
        return ConfigError(
            self.reason,
            file=w.file or file,
            section=w.section or section,
            option=w.option or option,
            line=w.line,
        )

    def __str__(self) -> str:
        where = str(self.where)
        one_line = " ".join(self.reason.split())
        return f"{where}: {one_line}" if where else one_line
