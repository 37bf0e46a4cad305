"""write_report: every format rendered first, then each file moved into place whole."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from hoplon.core.errors import InputError
from hoplon.core.report import Report
from hoplon.report import render_html, write_report
from hoplon.report import writer as writer_module


def test_writes_the_three_files(sample: Report, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    paths = write_report(sample, out)
    assert paths == {"json": out / "report.json", "html": out / "report.html", "sarif": out / "report.sarif"}
    assert Report.read(paths["json"]) == sample
    assert paths["html"].read_text(encoding="utf-8") == render_html(sample)
    assert json.loads(paths["sarif"].read_text(encoding="utf-8"))["version"] == "2.1.0"
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "report.json",
        "report.sarif",
    ]  # no temp left
    assert stat.S_IMODE(paths["html"].stat().st_mode) == 0o644


def test_markdown_on_request(sample: Report, tmp_path: Path) -> None:
    paths = write_report(sample, tmp_path, formats=("md",))
    assert list(paths) == ["md"]
    assert paths["md"].read_text(encoding="utf-8").startswith("### hoplon robustness report")


def test_a_failing_renderer_writes_nothing(sample: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(report: Report) -> dict[str, object]:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(writer_module, "render_sarif", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_report(sample, out)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_failing_renderer_keeps_the_previous_files(
    sample: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_report(sample, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(report: Report) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(writer_module, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_report(Report(kind="other"), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_failing_move_leaves_no_temporary_file(
    sample: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)  # Path.replace calls os.replace
    with pytest.raises(OSError, match="disk full"):
        write_report(sample, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_format_is_an_input_error(sample: Report, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Unknown report format 'pdf'"):
        write_report(sample, tmp_path, formats=("json", "pdf"))
    assert list(tmp_path.iterdir()) == []


def test_out_dir_that_is_a_file_is_an_input_error(sample: Report, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="Cannot create the report folder"):
        write_report(sample, blocker / "sub")
