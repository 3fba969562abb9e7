"""Real receivers on loopback for the notification tests: an HTTP server and an SMTP server.

`HttpReceiver` records every POST (headers, body) and can be told to answer 503 (``refuse``),
to accept and never answer (``hang``), or to answer normally (``ok``). `SmtpReceiver` is
aiosmtpd with STARTTLS on a self-signed certificate made here (``cert`` is its file, for
``cafile=``). Nothing is mocked: banish talks to them over TCP.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from email import message_from_bytes
from email import policy as email_policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class HttpReceiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.mode = "ok"
        self.lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.mode == "hang":
                    receiver._release.wait(60)
                    return
                if receiver.mode == "refuse":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "hang":
            self._release.set()
            self._release = threading.Event()

    def documents(self) -> list[Any]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def events(self) -> list[dict[str, Any]]:
        """Every event received, single documents and the events of batches alike."""
        out: list[dict[str, Any]] = []
        for doc in self.documents():
            out.extend(doc.get("events", [doc]))
        return out

    def close(self) -> None:
        self.set_mode("ok")
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, made now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class _Handler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.receiver.lock:
            self.receiver.arrivals.append(time.monotonic())
            self.receiver.messages.append(
                (session.ssl is not None, list(envelope.rcpt_tos),
                 message_from_bytes(envelope.original_content or envelope.content,
                                   policy=email_policy.default)))
        return "250 OK"


class SmtpReceiver:
    """aiosmtpd on loopback; ``starttls``: it offers STARTTLS and requires it."""

    def __init__(self, directory: Path, *, starttls: bool = True, implicit: bool = False
                 ) -> None:
        self.messages: list[tuple[bool, list[str], Message]] = []
        self.arrivals: list[float] = []
        self.lock = threading.Lock()
        self.cert, key = self_signed(directory)
        context = None
        if starttls or implicit:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)
        self.port = free_port()
        if implicit:  # TLS from the first byte (port 465's way)
            self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                         ssl_context=context)
        else:
            self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                         tls_context=context, require_starttls=starttls)
        self.controller.start()

    def received(self) -> list[tuple[bool, list[str], Message]]:
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        self.controller.stop()
