#!/usr/bin/env python3
"""What native notification actions cost the 100,000-ban bulk: bench/bans.py's banish run with
and without a ``banish-webhook`` and a ``banish-mail`` action, side by side.

Owns: the "notification actions' cost" sections appended to bench/RESULTS.md with --record.

Each round starts a fresh daemon (nftables backend inside its own network namespace, as in
bench/bans.py) and times ``banish ban bench -`` with N addresses until the command returns
(the kernel holds every ban, checked). "with" rounds add, through a ``jail.local``:
``banish-webhook[url=..., batch=yes]`` posting to an HTTP receiver in this process, and
``banish-mail[...]`` to an aiosmtpd server in this process (its default rate limit: 10 mails a
minute, the rest in digests). Rounds alternate without/with so drift hits both; the ratio of
the medians is what the issue's "within 10 %" is about. Also reported: how long after the
ban command returned the webhook receiver had all N events (the outbox drained).

Must not: touch the host's firewall (namespaces only), or edit RESULTS.md beyond appending.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bans import JAIL, BanishDaemon, addresses, machine_info, netns, wait
from machine import append_section
from run_regex import RESULTS, find_banish

SECTION = "notification actions' cost on the bulk ban (bench/notify_cost.py)"


class Hook:
    """Counts the events POSTed to it."""

    def __init__(self) -> None:
        self.events = 0
        self.last = 0.0
        lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    hook.events += len(doc.get("events", [doc]))
                    hook.last = time.perf_counter()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Smtp:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller  # the test extra; only needed here

        self.mails = 0
        bench = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                bench.mails += 1
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()


def one_round(banish: Any, ips: list[str], root: Path, notify: bool, hook: Hook, smtp: Smtp
              ) -> tuple[float, float | None]:
    if notify:
        (root / "cfg").mkdir(parents=True)
        (root / "cfg" / "jail.local").write_text(
            f"[{JAIL}]\naction = %(banaction)s\n"
            f"         banish-webhook[url={hook.url}, batch=yes, batchsize=500]\n"
            f"         banish-mail[to=root@example.org, host=127.0.0.1, port={smtp.port}, "
            "tls=none]\n")
    before = hook.events
    with netns("notify") as ns:
        daemon = BanishDaemon(banish, ns, root, "nftables")
        try:
            start = time.perf_counter()
            seconds = daemon.ban_stdin(ips)
            held = ns.set_sizes("banish", [f"{JAIL}-v4", f"{JAIL}-v6"])
            if held != len(ips):
                raise RuntimeError(f"the kernel holds {held} of {len(ips)} bans")
            drained = None
            if notify:
                wait(lambda: hook.events - before >= len(ips), 600, "the webhook's events")
                drained = hook.last - start - seconds
        finally:
            daemon.stop()
    return seconds, drained


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of each (alternating)")
    ap.add_argument("--v6-share", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=20240123)
    ap.add_argument("--banish", metavar="CMD")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    ap.add_argument("--note")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces, nftables)")
    banish = find_banish(a.banish)
    if banish is None:
        ap.error("banish not found")
    ips = addresses(a.count, a.v6_share, a.seed)
    hook, smtp = Hook(), Smtp()
    plain: list[float] = []
    told: list[float] = []
    drains: list[float] = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="banish-bench-") as tmp:
        for i in range(a.rounds):
            for notify in (False, True):
                seconds, drained = one_round(banish, ips, Path(tmp) / f"{i}-{notify}", notify,
                                             hook, smtp)
                (told if notify else plain).append(seconds)
                if drained is not None:
                    drains.append(drained)
                print(f"round {i + 1} {'with' if notify else 'without'}: {seconds:.2f} s"
                      + (f" (webhook had all events {drained:.2f} s later)"
                         if drained is not None else ""), file=sys.stderr)
    smtp.controller.stop()
    ratio = statistics.median(told) / statistics.median(plain)
    rows = [
        f"| bulk of {a.count:,} bans | runs (s) | median (s) |",
        "|---|---|---:|",
        f"| without notification actions | {', '.join(f'{x:.2f}' for x in plain)} | "
        f"{statistics.median(plain):.2f} |",
        f"| with banish-webhook (batch) + banish-mail | {', '.join(f'{x:.2f}' for x in told)} | "
        f"{statistics.median(told):.2f} |",
        "",
        f"Ratio with/without (medians): **{ratio:.3f}** ({(ratio - 1) * 100:+.1f} %). "
        f"Webhook receiver had all {a.count:,} events a median "
        f"{statistics.median(drains):.2f} s after the ban command returned; "
        f"{smtp.mails} mail(s) in all (rate limit 10/min, the rest waiting for digests).",
    ]
    text = "\n".join(rows)
    print(text)
    if a.record:
        append_section(RESULTS, SECTION, [
            *(f"{k}: {v}" for k, v in machine_info(banish).items()),
            f"command: `python3 bench/notify_cost.py {shlex.join(argv or sys.argv[1:])}`",
            f"data: {a.count:,} distinct addresses ({a.v6_share:.0%} IPv6), seed {a.seed}; "
            "`banish ban bench -` until it returns (kernel checked); nftables in a network "
            "namespace; rounds alternate without/with",
            *([f"note: {a.note}"] if a.note else [])], load, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
