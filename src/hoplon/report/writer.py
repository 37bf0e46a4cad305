"""Write a report's files (``report.json``, ``report.html``, ``report.sarif``, ``report.md``) atomically.

Every format is rendered in memory first; only then is each written to a temporary file in the output
folder and moved into place with :func:`os.replace`. A renderer that fails leaves the folder as it was, and
a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hoplon.core.errors import InputError
from hoplon.report.html import render_html
from hoplon.report.markdown import render_markdown
from hoplon.report.sarif import render_sarif

if TYPE_CHECKING:
    from hoplon.core.report import Report

__all__ = ["FILE_NAMES", "Format", "atomic_write_text", "render", "write_report"]

Format = Literal["json", "html", "sarif", "md"]
FILE_NAMES: dict[str, str] = {
    "json": "report.json",
    "html": "report.html",
    "sarif": "report.sarif",
    "md": "report.md",
}


def _sarif_text(report: Report) -> str:
    return json.dumps(render_sarif(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render(report: Report, fmt: str) -> str:
    """Render ``report`` in one format (``json``, ``html``, ``sarif`` or ``md``) as text."""
    renderers: dict[str, Callable[[Report], str]] = {
        "json": lambda r: r.to_json(),
        "html": render_html,
        "sarif": _sarif_text,
        "md": render_markdown,
    }
    try:
        renderer = renderers[fmt]
    except KeyError:
        raise InputError(f"Unknown report format {fmt!r}; use one of: {', '.join(renderers)}.") from None
    return renderer(report)


def _temp_file(directory: Path, name: str, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates 0600; a report is meant to be shared, so keep an existing file's mode or use 0644.
        existing = directory / name
        os.fchmod(fd, existing.stat().st_mode & 0o777 if existing.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and :func:`os.replace`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(target.parent, target.name, text)
    try:
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_report(
    report: Report, out_dir: str | Path, formats: Iterable[str] = ("json", "html", "sarif")
) -> dict[str, Path]:
    """Render ``report`` in each format and write the files into ``out_dir`` (created if needed).

    Returns ``{format: path}``. Nothing is written unless every format rendered; each file appears whole.
    """
    wanted = list(dict.fromkeys(formats))
    for fmt in wanted:
        if fmt not in FILE_NAMES:
            raise InputError(f"Unknown report format {fmt!r}; use one of: {', '.join(FILE_NAMES)}.")
    texts = {fmt: render(report, fmt) for fmt in wanted}
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the report folder {directory}: {exc}") from None
    staged: dict[str, Path] = {}
    try:
        for fmt, text in texts.items():
            staged[fmt] = _temp_file(directory, FILE_NAMES[fmt], text)
        written = {}
        for fmt, tmp in staged.items():
            target = directory / FILE_NAMES[fmt]
            tmp.replace(target)
            written[fmt] = target
    finally:
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return written
