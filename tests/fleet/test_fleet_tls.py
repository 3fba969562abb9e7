"""``sslmode`` and client certificates: the fleet's connection string is libpq's, so a
node can verify the server (verify-full) and log in with a certificate instead of a password.
A second throwaway cluster listens on 127.0.0.1 with TLS only, certificates made by openssl
in the test."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg
import pytest

from banish.fleet.database import FleetDatabase, ping
from tests.fleet.postgres import cluster, skip_reason

pytestmark = [pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or ""),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]

ROLE = "banish_cert"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def certificates(d: Path) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=banish test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, subject, ext in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                               ("client", f"/CN={ROLE}", "keyUsage=digitalSignature")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out",
                f"{name}.crt", cwd=d)
    (d / "client.key").chmod(0o600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_verify_full_and_a_client_certificate_connect_and_a_wrong_ca_is_refused(
        tmp_path: Path) -> None:
    certificates(tmp_path)
    files = {name: (tmp_path / name).read_bytes()
             for name in ("server.crt", "server.key", "ca.crt")}
    port = free_port()
    with cluster(conf="ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                      "ssl_ca_file = 'ca.crt'\n",
                 hba=f"hostssl all {ROLE} 127.0.0.1/32 cert\n", files=files, port=port) as pg:
        pg.psql(f"CREATE ROLE {ROLE} LOGIN")
        pg.psql(f'CREATE DATABASE fleet OWNER {ROLE}')
        dsn = (f"host=127.0.0.1 port={port} dbname=fleet user={ROLE} sslmode=verify-full "
               f"sslrootcert={tmp_path / 'ca.crt'} sslcert={tmp_path / 'client.crt'} "
               f"sslkey={tmp_path / 'client.key'}")

        async def connect(conninfo: str) -> list[dict[str, object]]:
            db = await FleetDatabase.open(conninfo, "tls", version="t")
            try:
                async with db._pool.connection() as conn:
                    row = await (await conn.execute(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).fetchone()
                    assert row == (True,)
                return await db.nodes()
            finally:
                await db.close()

        assert [n["node"] for n in asyncio.run(connect(dsn))] == ["tls"]
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                "/CN=another CA", "-keyout", "other.key", "-out", "other.crt", cwd=tmp_path)
        wrong = dsn.replace(str(tmp_path / "ca.crt"), str(tmp_path / "other.crt"))
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            asyncio.run(ping(wrong))
        no_cert = dsn.split(" sslcert=")[0]
        with pytest.raises(psycopg.OperationalError, match="certificate"):
            asyncio.run(ping(no_cert))
        assert asyncio.run(ping(dsn))
