"""A read-only, seekable view of a byte range of another stream, and bounded spooling of decompressed data."""

from __future__ import annotations

import io
from typing import IO, BinaryIO, Final

__all__ = ["SPOOL_MEMORY", "Window", "spool"]

#: decompressed data above this many bytes goes to a temporary file, not memory
SPOOL_MEMORY: Final = 32 << 20


class Window(io.RawIOBase):
    """Bytes ``[start, start + length)`` of ``base`` as a stream of its own."""

    def __init__(self, base: BinaryIO, start: int, length: int) -> None:
        super().__init__()
        self._base = base
        self._start = start
        self._length = max(0, length)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            pos = offset
        elif whence == 1:
            pos = self._pos + offset
        else:
            pos = self._length + offset
        self._pos = max(0, pos)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        remaining = self._length - self._pos
        if remaining <= 0:
            return 0
        n = min(len(buffer), remaining)
        self._base.seek(self._start + self._pos)
        data = self._base.read(n)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)


def view(base: BinaryIO, start: int, length: int) -> BinaryIO:
    """A buffered :class:`Window` (``readline`` and small reads stay cheap)."""
    return io.BufferedReader(Window(base, start, length), buffer_size=1 << 16)


def spool() -> IO[bytes]:
    """A temporary byte store: memory up to :data:`SPOOL_MEMORY`, then a file that is deleted on close."""
    import tempfile  # imported on first use: it is slow to import and most scans never unpack anything

    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY, mode="w+b")
