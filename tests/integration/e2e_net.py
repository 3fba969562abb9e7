"""A small lab for the end-to-end tests: three network namespaces, a real OpenSSH server, a real
SSH client, and read-outs of the kernel's ban sets.

Owns: the "server", "attacker" and "friend" namespaces (two veth pairs into "server", IPv4 in
10.231.0.0/16 and IPv6 in fd00:231::/32, no duplicate address detection), Debian's
``/usr/sbin/sshd`` running inside "server", the paramiko client script run inside the other two,
and per-backend views of what the firewall holds. Must not touch the host: the namespaces, the
processes in them and the files under the test's temporary directory are all it creates, and
every one of them is removed when the ``lab()`` block ends, failed or not.

The test user exists only for sshd: sshd runs in a private mount namespace where copies of
``/etc/passwd`` and ``/etc/shadow`` (with that user added) and an empty privilege-separation
directory are bind-mounted over the real ones, so the host's user database is never written.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from tests.integration.daemon import wait_for
from tests.integration.netns import Namespace
from tests.integration.netns import skip_reason as netns_skip_reason

SSHD = "/usr/sbin/sshd"
USER = "banishtest"
PASSWORD = "correct horse battery staple"  # a throw-away account only this sshd knows
WRONG = "hunter2"

_NETS = {
    # family -> (attacker link, friend link) address prefixes; the server is .1 / ::1.
    4: ("10.231.1.", "10.231.2."),
    6: ("fd00:231:1::", "fd00:231:2::"),
}
_PLEN = {4: 24, 6: 64}


def skip_reason() -> str | None:
    """Why the end-to-end lab cannot run here, or None."""
    reason = netns_skip_reason()
    if reason:
        return reason
    if not os.access(SSHD, os.X_OK):
        return f"{SSHD} is missing (apt-get install openssh-server)"
    for tool in ("ssh-keygen", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed"
    if find_spec("paramiko") is None:
        return "paramiko is not installed (pip install paramiko)"
    return None


class RoleNamespace(Namespace):
    """A `Namespace` whose name says which part it plays (easier to read in ``ip netns``)."""

    def __init__(self, role: str) -> None:
        # Namespace.__init__ with another name (it picks its own, so it is not called).
        self.role = role
        self.name = f"banish-e2e-{role}-{os.getpid()}-{secrets.token_hex(3)}"
        done = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip netns add failed: {done.stderr.strip()}")
        try:
            self.run("ip", "link", "set", "lo", "up")
            for scope in ("all", "default"):
                self.run("sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        except BaseException:
            self.delete()
            raise

    def kill_processes(self) -> None:
        """SIGKILL what still runs in here (sshd's per-connection children leave its process
        group with setsid, so killing the group is not enough); all of them are ours."""
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in done.stdout.split():
            with suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


@dataclass
class Lab:
    server: RoleNamespace
    attacker: RoleNamespace
    friend: RoleNamespace

    def addr(self, role: str, family: int) -> str:
        """``role``'s address on its link to the server ("server-attacker", "server-friend"
        for the server's own two ends)."""
        attacker_net, friend_net = _NETS[family]
        return {
            "attacker": attacker_net + "2",
            "friend": friend_net + "2",
            "server-attacker": attacker_net + "1",
            "server-friend": friend_net + "1",
        }[role]


def _link(server: RoleNamespace, peer: RoleNamespace, index: int) -> None:
    dev = f"to-{peer.role[:8]}"
    server.run("ip", "link", "add", dev, "type", "veth", "peer", "name", "eth0",
               "netns", peer.name)
    for ns, name, host in ((server, dev, "1"), (peer, "eth0", "2")):
        for family in (4, 6):
            prefix = _NETS[family][index]
            ns.run("ip", f"-{family}", "addr", "add", f"{prefix}{host}/{_PLEN[family]}",
                   "dev", name, *(["nodad"] if family == 6 else []))
        ns.run("ip", "link", "set", name, "up")


@contextmanager
def lab() -> Iterator[Lab]:
    """Three namespaces joined through "server"; all of them (and whatever runs in them) are
    gone when the block ends."""
    with ExitStack() as stack:
        made: dict[str, RoleNamespace] = {}

        def cleanup() -> None:
            for ns in made.values():
                ns.kill_processes()
                ns.delete()

        stack.callback(cleanup)
        for role in ("server", "attacker", "friend"):
            made[role] = RoleNamespace(role)
        _link(made["server"], made["attacker"], 0)
        _link(made["server"], made["friend"], 1)
        yield Lab(made["server"], made["attacker"], made["friend"])


# --- the OpenSSH server -------------------------------------------------------------------------


def _crypt(password: str) -> str:
    """A SHA-512 crypt(3) hash by the system's libcrypt (the ``crypt`` module is deprecated)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    salt = "$6$" + secrets.token_hex(8) + "$"
    out = lib.crypt(password.encode(), salt.encode())
    if not out or not out.startswith(salt.encode()):
        raise RuntimeError("libcrypt could not hash the test password")
    return str(out.decode())


def _free_uid() -> int:
    taken = {int(line.split(":")[2]) for line in Path("/etc/passwd").read_text().splitlines()
             if line.count(":") >= 6}
    return next(uid for uid in range(61_000, 65_000) if uid not in taken)


_CONFIG = """\
Port 22
ListenAddress 0.0.0.0
ListenAddress ::
HostKey {key}
PidFile none
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
AuthorizedKeysFile none
PermitRootLogin no
MaxStartups 100
LogLevel VERBOSE
"""


class Sshd:
    """``/usr/sbin/sshd -D -e`` inside ``ns``, logging (without dates, as ``-E`` does) to
    ``log``, with one password user (`USER` / `PASSWORD`) that only this sshd can see."""

    def __init__(self, ns: Namespace, workdir: Path, log: Path) -> None:
        self.ns = ns
        self.log = log
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        key = workdir / "host_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "banish-e2e",
                        "-f", str(key)], check=True, capture_output=True, timeout=30)
        (workdir / "sshd_config").write_text(_CONFIG.format(key=key))
        uid = _free_uid()
        passwd = workdir / "passwd"
        shadow = workdir / "shadow"
        passwd.write_text(Path("/etc/passwd").read_text()
                          + f"{USER}:x:{uid}:{uid}:banish e2e:/:/bin/sh\n")
        day = int(time.time() // 86400)
        shadow.touch(mode=0o600)
        shadow.write_text(Path("/etc/shadow").read_text()
                          + f"{USER}:{_crypt(PASSWORD)}:{day}:0:99999:7:::\n")
        run = workdir / "run"
        (run / "sshd").mkdir(parents=True, exist_ok=True)
        os.chmod(run, 0o755)
        os.chmod(run / "sshd", 0o755)
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(src))} {dst}"
            for src, dst in ((passwd, "/etc/passwd"), (shadow, "/etc/shadow"), (run, "/run"))
        )
        argv = [SSHD, "-D", "-e", "-f", str(workdir / "sshd_config"), "-E", str(log)]
        script = f"{mounts} && exec {shlex.join(argv)}"
        # unshare: the bind mounts stay in sshd's own mount namespace, private, whatever
        # propagation `ip netns exec` chose.
        self.stderr = open(workdir / "stderr.txt", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ns.argv("unshare", "--mount", "--propagation", "private", "sh", "-c", script),
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        listening = ("Server listening on 0.0.0.0 port 22", "Server listening on :: port 22")
        try:
            wait_for(lambda: all(s in self.log_text() for s in listening)
                     or self.proc.poll() is not None, 15, "sshd to listen")
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd did not start: {self.diagnostics()}")
        except BaseException:
            self.stop()
            raise

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        return ((self.dir / "stderr.txt").read_text(errors="replace") + self.log_text())[-3000:]

    def stop(self) -> None:
        """Per-connection children first, while the master still reaps them (killed after
        it, they would be left as zombies of a PID 1 that may never reap), then the master."""
        if self.proc.poll() is None:
            done = subprocess.run(["ip", "netns", "pids", self.ns.name], capture_output=True,
                                  text=True)
            children = [int(p) for p in done.stdout.split() if int(p) != self.proc.pid]
            for pid in children:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with suppress(AssertionError):
                wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in children), 5,
                         "sshd to reap its children")
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()


# --- the SSH client -----------------------------------------------------------------------------

_CLIENT = r"""
import json, socket, sys, warnings
warnings.simplefilter("ignore")  # paramiko's dependencies warn about old ciphers on import
import paramiko

def tcp(job):
    fam = socket.AF_INET6 if ":" in job["host"] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(job["timeout"])
        try:
            s.connect((job["host"], 22))
            return "banner" if s.recv(64).startswith(b"SSH-") else "no banner"
        except ConnectionRefusedError:
            return "refused"
        except (socket.timeout, TimeoutError):
            return "timeout"
        except OSError as exc:
            return "error: %s" % exc

def login(job):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    t = job["timeout"]
    try:
        client.connect(job["host"], 22, username=job["user"], password=job["password"],
                       timeout=t, banner_timeout=t, auth_timeout=t,
                       allow_agent=False, look_for_keys=False)
        _, out, _ = client.exec_command("id -un", timeout=t)
        return "login:" + out.read().decode().strip()
    except paramiko.AuthenticationException:
        return "denied"
    except paramiko.ssh_exception.NoValidConnectionsError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except Exception as exc:
        return "error: %s: %s" % (type(exc).__name__, exc)
    finally:
        client.close()

print(json.dumps([tcp(j) if j["kind"] == "tcp" else login(j) for j in json.loads(sys.argv[1])]))
"""


def tcp_job(host: str, timeout: float = 1.0) -> dict[str, Any]:
    """A new TCP connection to port 22: "banner" (sshd answered), "refused" or "timeout"."""
    return {"kind": "tcp", "host": host, "timeout": timeout}


def login_job(host: str, password: str, user: str = USER, timeout: float = 5.0) -> dict[str, Any]:
    """A password login with paramiko: "login:<user>" (and a command ran), "denied",
    "refused" or "timeout"."""
    return {"kind": "login", "host": host, "user": user, "password": password,
            "timeout": timeout}


def client_argv(ns: Namespace, jobs: Sequence[dict[str, Any]]) -> list[str]:
    return ns.argv(sys.executable, "-c", _CLIENT, json.dumps(list(jobs)))


def ssh(ns: Namespace, jobs: Sequence[dict[str, Any]]) -> list[str]:
    """Run ``jobs`` one after the other from inside ``ns``; their outcomes in order."""
    done = subprocess.run(client_argv(ns, jobs), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"ssh client in {ns.name} failed: {done.stderr.strip()[-2000:]}")
    results: list[str] = json.loads(done.stdout)
    return results


def ssh_parallel(*runs: tuple[Namespace, Sequence[dict[str, Any]]]) -> list[list[str]]:
    """Several clients at the same time (each in its namespace); their outcomes in order."""
    procs = [subprocess.Popen(client_argv(ns, jobs), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for ns, jobs in runs]
    out: list[list[str]] = []
    for proc, (ns, _) in zip(procs, runs, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ssh client in {ns.name} failed: {stderr.strip()[-2000:]}")
        out.append(json.loads(stdout))
    return out


# --- what the kernel holds ----------------------------------------------------------------------


def _nft_bans(ns: Namespace, jail: str) -> dict[str, float | None]:
    """{address or network: seconds left (None: no timeout)} in banish's ban sets of ``jail``
    (``J-v4``, ``J-v6``, ``J-v4-24``...; the allow sets are not bans)."""
    done = subprocess.run(ns.argv("nft", "-j", "list", "table", "inet", "banish"),
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return {}
    bans: dict[str, float | None] = {}
    for obj in json.loads(done.stdout)["nftables"]:
        s = obj.get("set")
        if not s or not s["name"].startswith(f"{jail}-v"):
            continue
        for item in s.get("elem", []):
            val, left = item, None
            if isinstance(item, dict) and "elem" in item:
                val = item["elem"]["val"]
                if "timeout" in item["elem"]:
                    left = float(item["elem"].get("expires", item["elem"]["timeout"]))
            if isinstance(val, dict) and "prefix" in val:
                val = f"{val['prefix']['addr']}/{val['prefix']['len']}"
            bans[str(val)] = left
    return bans


def _nft_flush(ns: Namespace, jail: str) -> None:
    for obj in json.loads(ns.nft("-j", "-t", "list", "table", "inet", "banish"))["nftables"]:
        s = obj.get("set")
        if s and s["name"].startswith(f"{jail}-v"):
            ns.nft("flush", "set", "inet", "banish", s["name"])


def _nft_add(ns: Namespace, jail: str, address: str, timeout: int) -> None:
    version = 6 if ":" in address else 4
    ns.nft("add", "element", "inet", "banish", f"{jail}-v{version}",
           f"{{ {address} timeout {timeout}s }}")


def _nft_delete(ns: Namespace, jail: str, address: str) -> None:
    version = 6 if ":" in address else 4
    ns.nft("delete", "element", "inet", "banish", f"{jail}-v{version}", f"{{ {address} }}")


def _ipset_sets(ns: Namespace, jail: str) -> list[str]:
    names = ns.run("ipset", "list", "-n").split()
    return [n for n in names if jail in n and "allow" not in n]


def _ipset_bans(ns: Namespace, jail: str) -> dict[str, float | None]:
    """Written ahead of the ipset backend: every member of every non-allow set naming the jail."""
    bans: dict[str, float | None] = {}
    for line in ns.run("ipset", "save").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "add" and parts[1] in _ipset_sets(ns, jail):
            left = float(parts[parts.index("timeout") + 1]) if "timeout" in parts else None
            bans[parts[2]] = None if left == 0 else left
    return bans


def _ipset_flush(ns: Namespace, jail: str) -> None:
    for name in _ipset_sets(ns, jail):
        ns.run("ipset", "flush", name)


def _ipset_set_for(ns: Namespace, jail: str, address: str) -> str:
    family = "inet6" if ":" in address else "inet"
    for name in _ipset_sets(ns, jail):
        if f"family {family}" in ns.run("ipset", "list", "-t", name):
            return name
    raise AssertionError(f"no ipset set of {jail} for {address}")


@dataclass(frozen=True)
class KernelView:
    """How a test reads and tampers with one backend's kernel state, by backend name."""

    tool: str
    bans: Callable[[Namespace, str], dict[str, float | None]]
    flush: Callable[[Namespace, str], None]
    add: Callable[[Namespace, str, str, int], None]
    delete: Callable[[Namespace, str, str], None]


def _ipset_add(ns: Namespace, jail: str, address: str, timeout: int) -> None:
    ns.run("ipset", "add", _ipset_set_for(ns, jail, address), address, "timeout", str(timeout))


def _ipset_delete(ns: Namespace, jail: str, address: str) -> None:
    ns.run("ipset", "del", _ipset_set_for(ns, jail, address), address)


VIEWS: dict[str, KernelView] = {
    "nftables": KernelView("nft", _nft_bans, _nft_flush, _nft_add, _nft_delete),
    "ipset": KernelView("ipset", _ipset_bans, _ipset_flush, _ipset_add, _ipset_delete),
}
