"""A small keep-alive HTTP/1.1 client for the sidecar's loopback upstream (httpx costs ~1 ms CPU a request).

It speaks just what a model server on loopback needs: one request at a time per connection, a pool of idle
connections, ``Content-Length`` or chunked responses, and a timeout per request.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlparse

from hoplon.core.errors import InputError

__all__ = ["UpstreamError", "UpstreamPool"]

Headers = list[tuple[bytes, bytes]]
_MAX_HEADER_LINES = 200
_MAX_BODY = 256 * 1024 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or answered something that is not HTTP/1.1."""


class UpstreamPool:
    def __init__(self, url: str, *, timeout_s: float = 10.0, max_idle: int = 64) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "http":
            raise InputError(f"The sidecar talks plain HTTP to a loopback upstream. Got {url!r}.")
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
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
            except (ConnectionError, asyncio.IncompleteReadError, UpstreamError) as exc:
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
                return await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
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
