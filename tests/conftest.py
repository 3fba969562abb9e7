"""The whole suite leaves the host as it found it (the test command runs on developers' real
servers): the host's nftables ruleset, its network links and namespaces, the daemons it runs
(sshd, fail2ban) and /etc/fail2ban are compared before and after the session, and any change
fails the run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

_DAEMONS = ("sshd", "fail2ban-server", "banish", "postgres")


def _run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return f"{argv[0]}: not installed"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def _processes() -> list[str]:
    """Daemons by command line (pids change; a daemon left behind or stopped does not)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if any(name in line for name in _DAEMONS) and "pytest" not in line:
            found.append(line)
    return sorted(found)


def _tree_digest(root: str) -> str:
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(path.encode())
            try:
                digest.update(Path(path).read_bytes())
            except OSError:
                digest.update(b"unreadable")
    return digest.hexdigest()


def host_state() -> dict[str, object]:
    return {
        "nft ruleset": _run("nft", "list", "ruleset"),
        "links": _run("ip", "-o", "link", "show"),
        "namespaces": sorted(n for n in _run("ip", "netns", "list").split("\n")
                             if n and not n.startswith("banish-test-")),
        "daemons": _processes(),
        "/etc/fail2ban": _tree_digest("/etc/fail2ban"),
        "/etc/banish": _tree_digest("/etc/banish"),
        "policy-rc.d": os.path.exists("/usr/sbin/policy-rc.d"),
    }


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    before = host_state()
    yield
    after = host_state()
    changed = [key for key in before if before[key] != after[key]]
    assert not changed, f"the tests changed the host: {', '.join(changed)}"


@pytest.fixture(autouse=True)
def sigpipe_as_python_sets_it() -> Iterator[None]:
    """Tests that run ``banish.cli.main.main`` in this process leave SIGPIPE at its default,
    as the CLI rightly does for itself; a later in-process control server writing to a client
    that left would then kill the test run without a word. Each test gets it back."""
    import signal

    before = signal.getsignal(signal.SIGPIPE)
    yield
    signal.signal(signal.SIGPIPE, before)


@pytest.fixture(autouse=True)
def no_ssh_session_of_the_developer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run the same from an SSH login and from CI: the developer's SSH session would
    otherwise reach every `banish reload` request (and the friends-only guard)."""
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    monkeypatch.delenv("SSH_CLIENT", raising=False)
