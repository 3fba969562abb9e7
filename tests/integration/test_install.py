"""Installing banish as a service, switching from fail2ban as the README says, uninstalling,
and the daemon's log on a terminal.

``scripts/install --root`` builds the venv, the unit and ``/etc/banish`` inside a temporary
root, and the venv is run there (a venv records absolute paths, so it works where it was
built). The "Switching from fail2ban" steps are read from README.md and run one by one: the
banish lines with the installed banish, against a real fail2ban-server this test started and
banned addresses with; the ``systemctl`` lines are mapped to what they do here (stop that
fail2ban-server cleanly; start the unit's ExecStart), and they and the firewall lines are
checked to be exactly the expected ones, never run: tests leave host services and the host's
firewall alone. The temporary ``/etc/banish`` gets its paths moved inside the root and a
``jail.local`` with the null (log-only) action, as an admin would edit it.
"""

from __future__ import annotations

import contextlib
import filecmp
import os
import pty
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from banish.paths import packaged_config_dir
from tests.integration.daemon import Daemon, wait_for
from tests.integration.test_import_fail2ban import (
    BANISH_JAILS,
    Expected,
    Fail2banServer,
    make_bans,
)

REPO = Path(__file__).resolve().parents[2]
PREFIX = "/opt/banish"
INSTALL = "bash scripts/install"

# Lines of the README block that are shown to the admin, and that the test does not run.
SHOWN = [
    "systemctl disable --now fail2ban",
    "iptables -S | grep f2b",
    "nft list tables | grep f2b",
    "systemctl enable --now banish",
]


def readme_steps() -> list[str]:
    """The commands of the README's "Switching from fail2ban" block, comments removed."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Switching from fail2ban\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README: no ```sh block under 'Switching from fail2ban'"
    return [line.split("  #", 1)[0].strip() for line in match[1].splitlines() if line.strip()]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for the installed banish: no PYTHONPATH pointing at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BANISH_SOCKET")}
    env.update(extra)
    return env


def sh(*argv: str | Path, env: Mapping[str, str] | None = None,
       timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env or clean_env(), cwd=REPO)


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The README's install line, into ``root``."""
    assert INSTALL in readme_steps()
    return sh(*shlex.split(INSTALL), "--root", root, *extra, timeout=900)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root that ``scripts/install --root`` has installed banish into."""
    path = tmp_path_factory.mktemp("root")
    had_build = (REPO / "build").exists()
    done = install(path)
    assert done.returncode == 0, done.stderr
    # Built from a copy: no build/ left in the checkout (a stale one could even be installed).
    assert (REPO / "build").exists() == had_build
    # /etc/banish is the packaged defaults (checked now: later tests edit it as an admin would).
    etc, packaged = path / "etc/banish", Path(packaged_config_dir())
    for name in ("banish.conf", "jail.conf"):
        assert filecmp.cmp(etc / name, packaged / name, shallow=False), name
    shipped = sorted(p.name for p in (packaged / "filter.d").glob("*.conf"))
    assert sorted(p.name for p in (etc / "filter.d").iterdir()) == shipped
    return path


def exec_start(root: Path) -> list[str]:
    unit = (root / "etc/systemd/system/banish.service").read_text()
    lines = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].removeprefix("ExecStart="))


def inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


@pytest.mark.slow
def test_install_yields_a_unit_whose_exec_start_exists(root: Path) -> None:
    argv = exec_start(root)
    assert argv == [f"{PREFIX}/bin/banish", "run"]
    exe = inside(root, argv[0])
    assert exe.is_file() and os.access(exe, os.X_OK)
    assert sh(exe, "--version").stdout.strip().startswith("banish ")
    assert os.readlink(root / "usr/local/bin/banish") == f"{PREFIX}/bin/banish"
    # The venv holds its own copy of banish: nothing of the checkout is needed afterwards.
    assert "site-packages" in sh(inside(root, PREFIX) / "bin/python", "-c",
                                 "import banish; print(banish.__file__)").stdout


@pytest.mark.slow
def test_reinstall_keeps_the_admins_config(root: Path) -> None:
    jail = root / "etc/banish/jail.conf"
    mine = jail.read_text() + "\n# the admin's edit\n"
    jail.write_text(mine)
    done = install(root)
    assert done.returncode == 0, done.stderr
    assert jail.read_text() == mine
    assert "left as it is" in done.stdout
    assert exec_start(root) == [f"{PREFIX}/bin/banish", "run"]


@pytest.mark.parametrize(("args", "reason"), [
    (("--root", "relative/dir"), "--root must be an absolute path"),
    (("--prefix", "opt"), "--prefix must be an absolute path"),
    (("--bogus",), "unknown argument '--bogus'"),
])
@pytest.mark.parametrize("script", ["install", "uninstall"])
def test_bad_arguments_are_one_line_exit_2(script: str, args: tuple[str, ...],
                                           reason: str) -> None:
    done = sh("bash", REPO / "scripts" / script, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and reason in done.stderr, done.stderr


@pytest.mark.slow
def test_uninstall_removes_what_install_made(root: Path, tmp_path: Path) -> None:
    # A copy, so the other tests keep theirs (uninstall runs nothing from the venv).
    copy = tmp_path / "root"
    shutil.copytree(root, copy, symlinks=True)
    (copy / "var/lib/banish").mkdir(parents=True, exist_ok=True)
    done = sh("bash", REPO / "scripts/uninstall", "--root", copy)
    assert done.returncode == 0, done.stderr
    assert not (copy / "etc/systemd/system/banish.service").exists()
    assert not os.path.lexists(copy / "usr/local/bin/banish")
    assert not inside(copy, PREFIX).exists()
    assert (copy / "etc/banish/jail.conf").exists() and (copy / "var/lib/banish").exists()
    done = sh("bash", REPO / "scripts/uninstall", "--root", copy, "--purge")
    assert done.returncode == 0, done.stderr
    assert not (copy / "etc/banish").exists() and not (copy / "var/lib/banish").exists()


def prepare_test_config(root: Path) -> None:
    """What a test needs changed in the installed /etc/banish: paths inside ``root`` and the
    null banaction (no firewall), through a ``jail.local`` as an admin would write it."""
    conf = root / "etc/banish/banish.conf"
    conf.write_text(re.sub(r"(?m)^(\w+ = )(/(?:run|var)/)", rf"\g<1>{root}\g<2>",
                           conf.read_text()))
    auth = root / "var/log/auth.log"
    auth.parent.mkdir(parents=True, exist_ok=True)
    auth.touch()
    (root / "etc/banish/jail.local").write_text(
        f"[DEFAULT]\nbanaction = null\n\n[sshd]\naction = null\nlogpath = {auth}\n")


def has_verb(banish: Path, verb: str) -> bool:
    return sh(banish, verb, "--help").returncode == 0


@pytest.mark.slow
def test_readme_switching_from_fail2ban_steps(root: Path, tmp_path: Path) -> None:
    steps = readme_steps()
    assert [s for s in steps if not s.startswith(("banish ", "bash "))] == SHOWN
    prepare_test_config(root)
    etc = root / "etc/banish"
    banish = inside(root, PREFIX) / "bin/banish"
    env = clean_env(BANISH_SOCKET=str(root / "run/banish/banish.sock"))
    expected = Expected()
    daemon: subprocess.Popen[bytes] | None = None
    with Fail2banServer(tmp_path / "fail2ban", ("sshd", "recidive")) as f2b:
        f2b.start()
        make_bans(f2b, expected, ("sshd", "recidive"))
        places = {"/etc/fail2ban": str(f2b.conf),
                  "/var/lib/fail2ban/fail2ban.sqlite3": str(f2b.db)}
        ran: list[str] = []
        try:
            for step in steps:
                argv = [places.get(a, a) for a in shlex.split(step)]
                if step == INSTALL:
                    pass  # the `root` fixture ran exactly this line
                elif step == "systemctl disable --now fail2ban":
                    f2b.stop()
                elif step == "systemctl enable --now banish":
                    daemon = start_unit(root, etc)
                elif step in SHOWN:
                    continue
                elif argv[0] == "banish":
                    if argv[1] == "check" and not has_verb(banish, "check"):
                        continue  # `banish check` is not there yet: nothing to run
                    if argv[1] == "import-fail2ban":
                        argv += ["--config", str(etc)]
                    done = sh(banish, *argv[1:], env=env)
                    assert done.returncode == 0, (step, done.stdout, done.stderr)
                    check_output(argv[1], done.stdout, expected)
                else:
                    pytest.fail(f"README step the test does not know: {step!r}")
                ran.append(argv[1] if argv[0] == "banish" else step)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
    assert "import-fail2ban" in ran and "banned" in ran and "status" in ran
    expected.check(inside(root, "/var/lib/banish/banish.sqlite3"))


def start_unit(root: Path, etc: Path) -> subprocess.Popen[bytes]:
    """What `systemctl start banish` runs: the unit's ExecStart (inside ``root``)."""
    argv = exec_start(root)
    log = root / "var/log/banish.log"
    with open(root / "daemon-stderr.txt", "wb") as err:
        proc = subprocess.Popen([str(inside(root, argv[0])), *argv[1:], "--config", str(etc)],
                                stdout=subprocess.DEVNULL, stderr=err, env=clean_env())
    wait_for(lambda: proc.poll() is not None or (log.exists() and
                                                 "banish is ready" in log.read_text()),
             30, "the installed daemon to be ready")
    assert proc.poll() is None, (root / "daemon-stderr.txt").read_text()
    return proc


def check_output(verb: str, out: str, expected: Expected) -> None:
    if verb == "import-fail2ban":
        assert out == ("4 active bans imported (recidive: 1, sshd: 3), 1 expired skipped, "
                       "0 already present\n"), out
    elif verb == "banned":
        for address, _jail in expected.active:
            assert address in out, (address, out)
    elif verb == "status":
        assert "sshd" in out, out


# -- the daemon in the foreground on a terminal ------------------------------------------------


def read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    """Read the pty's master side until ``needle`` shows (bounded)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {needle!r} on the terminal; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the daemon is gone and the terminal closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = pty.openpty()
    yield master, slave
    for fd in (master, slave):
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(fd)


def test_foreground_run_on_a_terminal_shows_the_log(tmp_path: Path,
                                                    terminal: tuple[int, int]) -> None:
    master, slave = terminal
    with Daemon(tmp_path, BANISH_JAILS) as d:
        (d.logs / "auth.log").touch()
        proc = subprocess.Popen([sys.executable, "-m", "banish.cli.main", "run", "--config",
                                 str(d.cfg)], stdin=slave, stdout=slave, stderr=slave)
        try:
            shown = read_until(master, b"banish is ready")
            assert b"Jail 'sshd' started" in shown
            assert "banish is ready" in d.log_text()  # logtarget still gets every line
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(15)
    # Not on a terminal (as under systemd): the log goes to logtarget only.
    with Daemon(tmp_path / "plain", BANISH_JAILS) as d:
        (d.logs / "auth.log").touch()
        d.start()
        d.stop()
        assert "banish is ready" in d.log_text()
        assert "banish is ready" not in d.stderr()
