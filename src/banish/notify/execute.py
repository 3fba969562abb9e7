"""``banish-exec[cmd="/path/prog --ip <ip>"]``: a program run with argv, never a shell.

Owns running the configured command once per notice (or once per digest): ``cmd`` was split
into words at config time, then each word gets its tags filled in, so a tag's value is always
inside ONE argument, whatever it holds (``$(id)``, backquotes, ``;``, newlines, ``~!``): no
shell ever parses it. With ``env=yes`` the values also travel as environment variables
(``BANISH_IP``, ``BANISH_JAIL``, ``BANISH_MATCHES``, ``BANISH_F_USER``...). The program reads
the notice(s) as JSON lines on stdin (so no line starts with ``~``). A non-zero exit or a
timeout is a failed send, retried. Must not build a shell command line.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence

from ..process import one_line as output_line
from ..process import run_process
from .channel import DeliveryError
from .notice import Notice, digest_tags, render

_ENV_NAME = re.compile(r"[^A-Z0-9_]")
_BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG": "C.UTF-8"}


class Exec:
    batch = 1

    def __init__(self, options: Mapping[str, str], timeout: float) -> None:
        self.argv = shlex.split(options["cmd"])
        self.env = options.get("env") == "yes"
        self.timeout = timeout

    def command(self, items: Sequence[Notice], digest: bool) -> tuple[list[str], dict[str, str]]:
        """The argv and environment of one run (for tests and ``dump``)."""
        tags = digest_tags(items) if digest else items[0].tags()
        # Values are text for one argument: a NUL (which argv cannot carry) becomes a space.
        tags = {k: v.replace("\0", " ") for k, v in tags.items()}
        argv = [render(word, tags) for word in self.argv]
        env = dict(_BASE_ENV)
        if self.env:
            env.update({"BANISH_" + _ENV_NAME.sub("_", k.upper()): v for k, v in tags.items()})
            env["BANISH_DIGEST"] = "1" if digest else "0"
        return argv, env

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        argv, env = self.command(items, digest)
        stdin = "".join(json.dumps(n.document(), separators=(",", ":")) + "\n" for n in items)
        result = await run_process(argv, timeout=self.timeout, env=env,
                                   stdin=stdin.encode("utf-8", "backslashreplace"))
        if result.problem:
            raise DeliveryError(f"{argv[0]}: {result.problem}")
        if result.returncode != 0:
            err = output_line(result.stderr) if result.stderr else ""
            raise DeliveryError(f"{argv[0]} exited with status {result.returncode}"
                                + (f": {err}" if err else ""))
