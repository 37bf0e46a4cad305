"""A small keep-alive HTTP/1.1 client for the sidecar's loopback upstream (httpx costs ~1 ms CPU a request).

It speaks just what a model server on loopback needs: one request at a time per connection, a pool of idle
connections, ``Content-Length`` or chunked responses, and a timeout per request. ``https://`` upstreams get TLS
from an :class:`ssl.SSLContext` (:func:`upstream_ssl_context`): certificates verified against the configured CA
file or the system's, an optional client certificate, TLS 1.2 at least.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlparse

from hoplon.core.errors import InputError
from hoplon.gateway.config import UpstreamTlsConfig

__all__ = ["UpstreamError", "UpstreamPool", "upstream_ssl_context"]

log = logging.getLogger("hoplon.gateway")

Headers = list[tuple[bytes, bytes]]
_MAX_HEADER_LINES = 200
_MAX_BODY = 256 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or answered something that is not HTTP/1.1."""


def upstream_ssl_context(tls: UpstreamTlsConfig | None) -> ssl.SSLContext:
    """The client context for an ``https://`` upstream; refuses unreadable certificate files with a clear error."""
    tls = tls or UpstreamTlsConfig()
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"The upstream TLS files cannot be used: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not tls.verify:
        log.warning(
            "WARNING upstream.tls.verify is false: the upstream's certificate is NOT checked, so anyone on the path "
            "can impersonate the model server. Use it only for a test; give upstream.tls.ca_file instead."
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class UpstreamPool:
    def __init__(
        self, url: str, *, timeout_s: float = 10.0, max_idle: int = 64, tls: UpstreamTlsConfig | None = None
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise InputError(f"The sidecar talks HTTP or HTTPS to its upstream. Got {url!r}.")
        if tls is not None and parsed.scheme != "https":
            raise InputError(f"upstream.tls needs an https:// upstream. Got {url!r}.")
        self.host = parsed.hostname or "127.0.0.1"
        self.ssl = upstream_ssl_context(tls) if parsed.scheme == "https" else None
        self.port = parsed.port or (443 if self.ssl is not None else 80)
        self.prefix = parsed.path.rstrip("/")
        self.timeout_s = timeout_s
        self.max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[int, Headers, bytes]:
        for attempt in range(2):  # a pooled connection the upstream closed meanwhile gets one retry
            fresh = not self._idle
            reader, writer = self._idle.pop() if self._idle else await self._open()
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._exchange(reader, writer, method, target, headers, body)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, UpstreamError) as exc:
                writer.close()
                if fresh or attempt == 1:
                    raise UpstreamError(str(exc) or type(exc).__name__) from None
            except BaseException:
                writer.close()
                raise
        raise UpstreamError("unreachable")  # pragma: no cover

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.ssl is None:
                    return await asyncio.open_connection(self.host, self.port)
                return await asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl.check_hostname else None
                )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError (e.g. an unverifiable certificate) is an OSError
            raise UpstreamError(f"cannot connect to {self.host}:{self.port}: {exc}") from None

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
    ) -> tuple[int, Headers, bytes]:
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n".encode()]
        head.extend(k + b": " + v + b"\r\n" for k, v in headers)
        head.append(b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
        writer.write(b"".join(head) + body)
        status_line = await reader.readline()
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise UpstreamError(f"not an HTTP/1.x answer: {status_line[:40]!r}")
        status = int(parts[1])
        out: Headers = []
        length, chunked, keep = -1, False, parts[0] == b"HTTP/1.1"
        for _ in range(_MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection":
                keep = value.lower() == b"keep-alive" or (keep and value.lower() != b"close")
            out.append((name, value))
        if chunked:
            data = await self._chunks(reader)
        elif length >= 0:
            if length > _MAX_BODY:
                raise UpstreamError("the upstream's answer is too large")
            data = await reader.readexactly(length)
        else:
            data, keep = await reader.read(_MAX_BODY), False
        if keep and len(self._idle) < self.max_idle:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, out, data

    @staticmethod
    async def _chunks(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise UpstreamError("the upstream's answer is too large")
            parts.append(await reader.readexactly(size))
            await reader.readline()

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
