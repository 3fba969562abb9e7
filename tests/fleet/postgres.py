"""A throwaway PostgreSQL cluster for the fleet tests: Debian's own server binaries, a data
directory and a Unix socket in a fresh temporary directory, stopped and deleted afterwards.

The cluster listens on no TCP port (the daemons reach the socket through the file system,
from whatever network namespace they run in), so it can never clash with, or be reached
beside, a PostgreSQL the host runs. Two roles, as the README sets up a fleet: an owner that
creates the schema (``banish fleet-schema --grant``), and a least-privilege node role with a
password that the daemons read from a passfile. Server processes run as the ``postgres``
user, which Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NODE_ROLE = "banish_node"
NODE_PASSWORD = "fleet-test-only"
OWNER_ROLE = "banish_owner"


def bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def skip_reason() -> str | None:
    if bindir() is None:
        return "PostgreSQL server binaries missing (apt-get install postgresql)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no 'postgres' user (apt-get install postgresql)"
    if os.geteuid() != 0:
        return "needs root (runs the server as the postgres user)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'banish[fleet]')"
    return None


@dataclass
class Cluster:
    root: Path
    bin: str
    port: int | None = None
    """A TCP port on 127.0.0.1 (TLS tests); None: the Unix socket only."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def _as_postgres(self, *argv: str, check: bool = True, stdin: str | None = None
                     ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True,
                              text=True, check=check, timeout=120, input=stdin, cwd="/")

    def start(self) -> None:
        listen = "" if self.port is None else "127.0.0.1"
        port = f" -p {self.port}" if self.port is not None else ""
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", str(self.data), "-l",
                          str(self.root / "server.log"), "-w", "-t", "60", "-o",
                          f"-k {self.root} -c listen_addresses='{listen}'{port}", "start")

    def stop(self) -> None:
        self._as_postgres(f"{self.bin}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w",
                          "stop", check=False)

    def running(self) -> bool:
        return self._as_postgres(f"{self.bin}/pg_ctl", "-D", str(self.data), "status",
                                 check=False).returncode == 0

    def psql(self, sql: str, database: str = "postgres", user: str = "postgres") -> str:
        done = self._as_postgres(f"{self.bin}/psql", "-X", "-q", "-At", "-v",
                                 "ON_ERROR_STOP=1", "-h", self.socket_dir,
                                 "-p", str(self.port or 5432), "-U", user,
                                 "-d", database, check=False, stdin=sql)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.strip()}")
        return done.stdout

    def owner_dsn(self, database: str) -> str:
        return f"host={self.socket_dir} dbname={database} user={OWNER_ROLE}"

    def node_dsn(self, database: str) -> str:
        return f"host={self.socket_dir} dbname={database} user={NODE_ROLE}"

    def new_database(self, name: str, *, schema: bool = True) -> str:
        """A fresh database owned by the owner role, with the schema and the node's grants
        made as an admin would (the schema script piped into psql)."""
        self.psql(f'CREATE DATABASE "{name}" OWNER {OWNER_ROLE}')
        if schema:
            from banish.fleet.schema import schema_sql

            self.psql(schema_sql(grant_to=NODE_ROLE), database=name, user=OWNER_ROLE)
        return name

    def passfile(self, directory: Path) -> Path:
        path = directory / "pgpass"
        path.write_text(f"{self.socket_dir}:5432:*:{NODE_ROLE}:{NODE_PASSWORD}\n")
        path.chmod(0o600)
        return path


@contextmanager
def cluster(*, conf: str = "", hba: str = "", files: dict[str, bytes] | None = None,
            port: int | None = None) -> Iterator[Cluster]:
    """``conf`` and ``hba`` lines are added to the server's configuration; ``files`` are
    written into the data directory (certificates), owned by the server, mode 0600."""
    root = Path(tempfile.mkdtemp(prefix="banish-pg-"))
    root.chmod(0o755)
    bin_ = bindir()
    assert bin_ is not None
    postgres = pwd.getpwnam("postgres")
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    c = Cluster(root, bin_, port)
    try:
        c._as_postgres(f"{bin_}/initdb", "-D", str(c.data), "-U", "postgres",
                       "--auth-local=trust", "--no-sync", "-E", "UTF8")
        with open(c.data / "pg_hba.conf", "w") as out:
            out.write(f"{hba}local all {NODE_ROLE} scram-sha-256\nlocal all all trust\n")
        with open(c.data / "postgresql.conf", "a") as out:
            out.write("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                      f"max_connections = 200\n{conf}")
        for name, data in (files or {}).items():
            path = c.data / name
            path.write_bytes(data)
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
            path.chmod(0o600)
        c.start()
        c.psql(f"CREATE ROLE {OWNER_ROLE} LOGIN; "
               f"CREATE ROLE {NODE_ROLE} LOGIN PASSWORD '{NODE_PASSWORD}'")
        yield c
    finally:
        c.stop()
        deadline = time.monotonic() + 30
        while c.running() and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)
