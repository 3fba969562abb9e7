#!/usr/bin/env python3
"""Times `banish regex` against `fail2ban-regex` on the generated logs, same machine, same run.

Owns: the offline-matching benchmark (wall time, lines/s, peak RSS, matched counts) and the
dated sections appended to bench/RESULTS.md with --record.

Must not: change any configuration, or pass either tool a filter the other does not read.  By
default both tools resolve the *same* file, /etc/fail2ban/filter.d/<name>.conf (fail2ban-regex
via -c DIR NAME, banish via --config DIR NAME), so a speed-up is never bought by a different
regex.  Matched counts are printed side by side; a disagreement makes the exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import gen_logs
import machine  # bench/machine.py (scripts run as bench/NAME.py)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"


@dataclass(frozen=True, slots=True)
class Case:
    log: str
    filter: str
    opts: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        """fail2ban-regex's spelling, also the key of gen_logs.KINDS expectations."""
        return f"{self.filter}[{','.join(self.opts)}]" if self.opts else self.filter


CASES: dict[str, Case] = {
    "sshd": Case("auth.log", "sshd"),
    "postfix": Case("mail.log", "postfix"),
    "dovecot": Case("mail.log", "dovecot"),
    "nginx-http-auth": Case("nginx-error.log", "nginx-http-auth"),
    "nginx-botsearch": Case("nginx-access.log", "nginx-botsearch"),
    # not run by default: the modes that also count the noise lines
    "sshd-aggressive": Case("auth.log", "sshd", ("mode=aggressive",)),
    "postfix-aggressive": Case("mail.log", "postfix", ("mode=aggressive",)),
    "dovecot-aggressive": Case("mail.log", "dovecot", ("mode=aggressive",)),
    "nginx-botsearch-error": Case("nginx-error.log", "nginx-botsearch"),
}
DEFAULT_CASES = ("sshd", "postfix", "dovecot", "nginx-http-auth", "nginx-botsearch")

LINES_RE = re.compile(r"^\s*Lines:\s*(\d+)\s+lines?\b(.*)$", re.MULTILINE)


@dataclass(slots=True)
class Run:
    wall: float
    cpu: float
    rss_mb: float
    rc: int
    lines: int | None
    matched: int | None
    output: str


@dataclass(slots=True)
class Result:
    tool: str
    runs: list[Run] = field(default_factory=list)
    error: str = ""

    @property
    def best(self) -> Run | None:
        ok = [r for r in self.runs if r.rc == 0 or r.matched is not None]
        return min(ok, key=lambda r: r.wall) if ok else None


def parse_summary(text: str) -> tuple[int | None, int | None]:
    """(lines, matched) from the last 'Lines: N lines, [I ignored,] M matched, K missed' line.

    Tolerant on purpose: only 'Lines: N lines' and 'M matched' are required, in any order of
    the other fields, so both tools' wording (with or without 'ignored') parses.
    """
    found = LINES_RE.findall(text)
    if not found:
        return None, None
    lines, rest = found[-1]
    m = re.search(r"(\d+)\s+matched", rest)
    return int(lines), int(m.group(1)) if m else None


def run_once(cmd: list[str], env: dict[str, str] | None, timeout: float) -> Run:
    """Runs cmd with output to a temp file (never a terminal); wait4 gives this child's rusage."""
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    lines, matched = parse_summary(text)
    return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, proc.returncode, lines,
               matched, text)


@dataclass(frozen=True, slots=True)
class Banish:
    argv: list[str]
    env: dict[str, str] | None
    how: str


def find_banish(cmd: str | None) -> Banish | None:
    """--banish CMD, else `banish` on PATH, else the repo's .venv, else src/ via PYTHONPATH.

    Its bytecode is compiled first, as installing a package does (pip, or Debian's py3compile
    for fail2ban): with PYTHONDONTWRITEBYTECODE set, an editable install would otherwise
    compile every module from source on each run."""
    found = _find_banish(cmd)
    if found is not None:
        _compile_bytecode(found)
    return found


def _compile_bytecode(b: Banish) -> None:
    python = [sys.executable]
    if len(b.argv) == 1:  # a console script: its own interpreter, from the shebang
        with suppress(OSError), open(b.argv[0], "rb") as fh:
            first = fh.readline()
            if first.startswith(b"#!") and b"python" in first:
                python = first[2:].decode(errors="replace").split()
    code = ("import compileall, os, banish; "
            "compileall.compile_dir(os.path.dirname(banish.__file__), quiet=1)")
    subprocess.run([*python, "-c", code], env=b.env, capture_output=True, check=False,
                   timeout=120)


def _find_banish(cmd: str | None) -> Banish | None:
    if cmd:
        return Banish(shlex.split(cmd), None, cmd)
    exe = shutil.which("banish") or (str(REPO / ".venv/bin/banish")
                                     if (REPO / ".venv/bin/banish").exists() else None)
    if exe and f"{os.sep}shims{os.sep}" in exe and shutil.which("pyenv"):
        # A pyenv shim is a bash script that costs ~0.1 s per call before banish starts; an
        # installed banish is the console script the shim points to.
        real = subprocess.run(["pyenv", "which", "banish"], capture_output=True, text=True,
                              check=False).stdout.strip()
        exe = real or exe
    if exe:
        return Banish([exe], None, exe)
    src = REPO / "src"
    sys.path.insert(0, str(src))
    try:
        found = importlib.util.find_spec("banish.cli.main") is not None
    except ImportError:
        found = False
    finally:
        sys.path.remove(str(src))
    if not found:
        return None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p))
    code = "import sys; from banish.cli.main import main; sys.exit(main())"
    return Banish([sys.executable, "-c", code], env, f"{sys.executable} (src/ on PYTHONPATH)")


def banish_argv(b: Banish, config: str, log: Path, case: Case) -> list[str]:
    argv = [*b.argv, "regex", "--config", config]
    for opt in case.opts:
        argv += ["--opt", opt]
    return [*argv, str(log), case.filter]


def f2b_argv(cmd: list[str], config: str, log: Path, case: Case) -> list[str]:
    # --print-no-*: fail2ban-regex otherwise collects and prints up to 20 lines of each sort;
    # nothing else is printed per line without -v, so the timing is the matching itself.
    return [*cmd, "-c", config, "--print-no-missed", "--print-no-ignored", str(log), case.spec]


def warm(path: Path) -> None:
    """Read the file once so neither tool pays for the first, cold read."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def machine_info(f2b: list[str], banish: Banish | None) -> dict[str, str]:
    f2b_exe = shutil.which(f2b[0]) or f2b[0]
    f2b_py = "unknown"
    try:
        shebang = Path(f2b_exe).read_text(errors="replace").splitlines()[0]
        if shebang.startswith("#!"):
            f2b_py = machine.first_line([*shlex.split(shebang[2:]), "--version"])
    except (OSError, IndexError):
        pass
    rev = machine.first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if rev != "unknown" and dirty:
        rev += " + uncommitted changes in src/"
    return {
        "CPU": machine.cpu_model(),
        "cores": machine.cores(),
        "RAM": machine.memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python (runner)": platform.python_version(),
        "fail2ban": f"{machine.first_line([*f2b, '--version'])} on {f2b_py}",
        "banish": (machine.first_line([*banish.argv, "--version"], banish.env) + f" via {banish.how}")
        if banish else "not installed",
        "banish commit": rev if rev != "unknown" else "no commit yet",
    }


def _fmt(x: float | int | None, spec: str = "") -> str:
    return "n/a" if x is None else format(x, spec)


def table(rows: list[tuple[str, Case, int, int, Result, Result]]) -> str:
    head = ("| case | log | filter | lines | expected | fail2ban-regex matched | banish matched | "
            "fail2ban-regex s | banish s | fail2ban-regex lines/s | banish lines/s | speed-up | "
            "fail2ban-regex CPU s | banish CPU s | "
            "fail2ban-regex peak RSS MB | banish peak RSS MB |")
    out = [head, "|---|---|---|" + "---:|" * (head.count("|") - 4)]
    for name, case, nlines, exp, f2b, ban in rows:
        fb, bb = f2b.best, ban.best
        fm = _fmt(fb.matched) if fb else (f2b.error or "n/a")
        bm = _fmt(bb.matched) if bb else (ban.error or "n/a")
        if fb and bb and fb.matched != bb.matched:
            bm += " ✗"
        speed = f"{fb.wall / bb.wall:.1f}×" if fb and bb else "n/a"
        out.append(
            f"| {name} | {case.log} | {case.spec} | {nlines} | {exp} | {fm} | {bm} | "
            f"{_fmt(fb.wall if fb else None, '.2f')} | {_fmt(bb.wall if bb else None, '.2f')} | "
            f"{_fmt(nlines / fb.wall if fb else None, ',.0f')} | "
            f"{_fmt(nlines / bb.wall if bb else None, ',.0f')} | {speed} | "
            f"{_fmt(fb.cpu if fb else None, '.2f')} | {_fmt(bb.cpu if bb else None, '.2f')} | "
            f"{_fmt(fb.rss_mb if fb else None, '.0f')} | {_fmt(bb.rss_mb if bb else None, '.0f')} |")
    return "\n".join(out)


def measure(tool: str, argv: list[str], env: dict[str, str] | None, repeat: int,
            timeout: float) -> Result:
    res = Result(tool)
    for i in range(repeat):
        try:
            run = run_once(argv, env, timeout)
        except OSError as e:
            res.error = "not found" if isinstance(e, FileNotFoundError) else "error"
            print(f"  {tool}: cannot run {argv[0]}: {e}", file=sys.stderr)
            break
        res.runs.append(run)
        print(f"  {tool} run {i + 1}/{repeat}: {run.wall:.2f} s, rc={run.rc}, "
              f"matched={_fmt(run.matched)}, peak RSS {run.rss_mb:.0f} MB", file=sys.stderr)
        if run.rc != 0 and run.matched is None:
            tail = " | ".join(run.output.strip().splitlines()[-3:])
            res.error = f"error rc={run.rc}"
            print(f"  {tool} failed: {shlex.join(argv)}\n    {tail}", file=sys.stderr)
            break
    counts = {r.matched for r in res.runs if r.matched is not None}
    if len(counts) > 1:
        print(f"  {tool}: matched count differs between runs: {sorted(map(str, counts))}",
              file=sys.stderr)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(DEFAULT_CASES))
    ap.add_argument("--lines", type=int, default=gen_logs.DEFAULT_LINES,
                    help="lines per generated log (files are generated if missing)")
    ap.add_argument("--seed", type=int, default=gen_logs.DEFAULT_SEED)
    ap.add_argument("--data", type=Path, help="data directory (default: bench/data, or "
                    "bench/data/lines-N for --lines N other than 1000000)")
    ap.add_argument("--config", default="/etc/fail2ban", help="config dir given to both tools")
    ap.add_argument("--banish-config", help="config dir for banish only (default: --config)")
    ap.add_argument("--banish", metavar="CMD", help="banish command (default: found automatically)")
    ap.add_argument("--fail2ban-regex", metavar="CMD", default="fail2ban-regex")
    ap.add_argument("--repeat-banish", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--repeat-fail2ban", type=int, default=1, help="best of N (default 1)")
    ap.add_argument("--skip-fail2ban", action="store_true")
    ap.add_argument("--skip-banish", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--record", action="store_true", help=f"append the results to {RESULTS}")
    ap.add_argument("--note", help="a remark recorded with the results (e.g. machine was busy)")
    a = ap.parse_args(argv)

    data = a.data or (gen_logs.DATA_DIR if a.lines == gen_logs.DEFAULT_LINES
                      else gen_logs.DATA_DIR / f"lines-{a.lines}")
    names = tuple(dict.fromkeys(CASES[c].log for c in a.cases))
    counts = gen_logs.ensure(data, a.lines, a.seed, names)
    f2b_cmd = shlex.split(a.fail2ban_regex)
    banish = None if a.skip_banish else find_banish(a.banish)
    if banish is None and not a.skip_banish:
        print("banish: not installed/importable yet; its columns read n/a", file=sys.stderr)
    bconfig = a.banish_config or a.config

    load = os.getloadavg()
    rows: list[tuple[str, Case, int, int, Result, Result]] = []
    for name in a.cases:
        case = CASES[name]
        log = data / case.log
        nlines = sum(counts[case.log].values())
        exp = gen_logs.expected(counts[case.log], case.spec)
        print(f"== {name}: {log} ({nlines} lines) with {case.spec}", file=sys.stderr)
        warm(log)
        f2b = Result("fail2ban-regex", error="skipped" if a.skip_fail2ban else "")
        if not a.skip_fail2ban:
            f2b = measure("fail2ban-regex", f2b_argv(f2b_cmd, a.config, log, case), None,
                          a.repeat_fail2ban, a.timeout)
        ban = Result("banish", error="skipped" if a.skip_banish else "n/a")
        if banish is not None:
            ban = measure("banish", banish_argv(banish, bconfig, log, case), banish.env,
                          a.repeat_banish, a.timeout)
        rows.append((name, case, nlines, exp, f2b, ban))

    text = table(rows)
    print(text)
    disagree = [n for n, _, _, _, f, b in rows
                if f.best and b.best and f.best.matched != b.best.matched]
    if disagree:
        print(f"matched counts disagree: {', '.join(disagree)}", file=sys.stderr)
    if a.record:
        info = machine_info(f2b_cmd, banish)
        machine.append_section(RESULTS, "banish regex vs fail2ban-regex (bench/run_regex.py)", [
            *(f"{k}: {v}" for k, v in info.items()),
            f"command: `python3 bench/run_regex.py {shlex.join(argv or sys.argv[1:])}`",
            f"data: seed {a.seed}, {a.lines} lines per file; times are wall clock incl. "
            f"start-up, best of {a.repeat_fail2ban} (fail2ban-regex) / {a.repeat_banish} (banish)",
            *([f"note: {a.note}"] if a.note else [])], load, text)
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
