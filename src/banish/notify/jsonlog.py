"""``banish-jsonlog[path=...]``: one JSON object per event appended to a file.

Owns writing a batch of notices as JSON lines with ONE ``write`` to a file opened with
``O_APPEND`` for that batch and closed after it: a logrotate rename (``create`` mode) is
followed at the next batch without a signal, nothing is written to the renamed file after the
batch that was in flight, and a line is never split between two writers. ``copytruncate``
works too (appends land at the new end). Values from logs are JSON strings: a newline inside a
matched line is ``\\n``, never a second record. Must not pace or retry.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence

from .channel import DeliveryError
from .notice import Notice


class JsonLog:
    batch = 1000

    def __init__(self, options: Mapping[str, str]) -> None:
        self.path = options["path"]
        self.mode = int(options.get("mode", "0640"), 8)

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        data = "".join(json.dumps(n.document(), ensure_ascii=False, separators=(",", ":"))
                       + "\n" for n in items).encode("utf-8", "backslashreplace")
        await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                         self.mode)
        except OSError as exc:
            raise DeliveryError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            view = memoryview(data)
            while view:  # a regular file takes it in one write; a short one is continued
                written = os.write(fd, view)
                view = view[written:]
        except OSError as exc:
            raise DeliveryError(f"cannot write {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
