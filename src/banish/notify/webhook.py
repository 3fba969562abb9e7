"""``banish-webhook[url=...]``: an HTTP POST of a JSON document per event or per batch.

Owns the document (one notice's object; with ``batch=yes`` or for a digest
``{"host", "digest", "count", "events": [...]}``), the templated headers, the optional
HMAC-SHA256 signature of the exact body bytes (``X-Banish-Signature: sha256=<hex>``, GitHub's
form, with the key read from ``secretfile`` at each send), the ``X-Banish-Delivery`` key (the
same on a retry, so a receiver can drop a repeat), and a minimal HTTP/1.1 client on asyncio
streams: cancellable at any point (a hanging receiver costs ``timeout`` and never a thread),
``https`` verified against the system's CAs or ``cafile``.

Values from logs only ever travel as JSON strings; a header's value is rendered from the
admin's template and any control character a tag brought in becomes a space, so data cannot
end a header or start another. A 2xx answer is success; anything else is a failed send (the
error text names the status, never a secret). Must not pace or retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from .channel import DeliveryError, one_line, read_secret
from .notice import HOSTNAME, Notice, digest_tags, render

USER_AGENT = "banish-webhook/1"
_MAX_STATUS_LINE = 8192


class Webhook:
    def __init__(self, options: Mapping[str, str], timeout: float, action: str) -> None:
        self.url = options["url"]
        parts = urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.netloc = parts.netloc.rpartition("@")[2]
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = [(n.strip(), v.strip()) for n, _, v in
                        (h.partition(":") for h in options.get("headers", "").split("|")
                         if h.strip())]
        self.secretfile = options.get("secretfile")
        self._secret = options.get("secret")
        self.signature = options.get("signature", "X-Banish-Signature")
        self.batch = int(options.get("batchsize", "500")) if options.get("batch") == "yes" else 1
        self.timeout = timeout
        self.action = action
        self._ssl: ssl.SSLContext | None = None
        if self.https:
            self._ssl = ssl.create_default_context(cafile=options.get("cafile") or None)
            if options.get("verify") == "no":
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE

    def body(self, items: Sequence[Notice], digest: bool) -> bytes:
        if self.batch == 1 and not digest:
            doc: object = items[0].document()
        else:
            doc = {"host": HOSTNAME, "action": self.action, "digest": digest,
                   "count": len(items), "events": [n.document() for n in items]}
        return json.dumps(doc, separators=(",", ":")).encode("utf-8", "backslashreplace")

    def request_headers(self, items: Sequence[Notice], digest: bool, body: bytes,
                        key: str) -> list[tuple[str, str]]:
        tags = digest_tags(items) if digest or len(items) > 1 else items[0].tags()
        out = [("Host", self.netloc), ("User-Agent", USER_AGENT),
               ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("X-Banish-Delivery", key), ("Connection", "close")]
        out += [(name, one_line(render(value, tags))) for name, value in self.headers]
        secret = read_secret(self.secretfile) if self.secretfile else self._secret
        if secret:
            mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            out.append((self.signature, f"sha256={mac}"))
        return out

    async def send(self, items: Sequence[Notice], digest: bool, key: str) -> None:
        body = self.body(items, digest)
        head = "".join(f"{n}: {v}\r\n" for n, v in self.request_headers(items, digest, body, key))
        request = f"POST {self.target} HTTP/1.1\r\n{head}\r\n".encode("latin-1", "replace")
        try:
            async with asyncio.timeout(self.timeout):
                status = await self._exchange(request + body)
        except TimeoutError:
            raise DeliveryError(f"{self.netloc}: no answer within {self.timeout:g} s") from None
        except ValueError:  # asyncio's limit: a status line longer than any real one
            raise DeliveryError(f"{self.netloc}: not an HTTP answer") from None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{self.netloc}: {exc.strerror or exc}"
                                if isinstance(exc, OSError) else f"{self.netloc}: {exc}"
                                ) from None
        if not 200 <= status < 300:
            raise DeliveryError(f"{self.netloc} answered HTTP {status}")

    async def _exchange(self, data: bytes) -> int:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, ssl=self._ssl,
            server_hostname=self.host if self.https else None, limit=_MAX_STATUS_LINE)
        try:
            writer.write(data)
            await writer.drain()
            line = await reader.readline()
            parts = line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise DeliveryError(f"{self.netloc}: not an HTTP answer")
            return int(parts[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
