"""``hoplon report render``: re-render a saved report.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hoplon.cli.report import register
from hoplon.core.errors import InputError
from tests.report.conftest import SAMPLE


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """hoplon"""

    register(app)
    return app


@pytest.mark.parametrize(
    ("fmt", "check"),
    [
        ("html", lambda t: t.startswith("<!DOCTYPE html>")),
        ("sarif", lambda t: json.loads(t)["version"] == "2.1.0"),
        ("md", lambda t: t.startswith("### hoplon robustness report")),
        ("json", lambda t: json.loads(t)["schema"] == "hoplon.report/v1"),
    ],
)
def test_render_each_format(app: typer.Typer, tmp_path: Path, fmt: str, check: object) -> None:
    out = tmp_path / f"r.{fmt}"
    result = CliRunner().invoke(app, ["report", "render", str(SAMPLE), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert callable(check) and check(out.read_text(encoding="utf-8"))


def test_format_from_suffix_and_stdout(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "x.sarif"
    assert CliRunner().invoke(app, ["report", "render", str(SAMPLE), "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text(encoding="utf-8"))["runs"]
    result = CliRunner().invoke(app, ["report", "render", str(SAMPLE), "-f", "md"])
    assert result.exit_code == 0
    assert "### hoplon robustness report" in result.stdout


@pytest.mark.parametrize(
    "content", [None, "not json", "[1, 2]", '{"schema": "other/v9"}', '{"schema": "hoplon.report/v1"}']
)
def test_unreadable_reports_are_input_errors(app: typer.Typer, tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(app, ["report", "render", str(path), "--format", "html"])
    assert isinstance(result.exception, InputError), result.exception


def test_unknown_format_is_an_input_error(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["report", "render", str(SAMPLE), "--format", "pdf"])
    assert isinstance(result.exception, InputError)


def test_main_maps_input_errors_to_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main = pytest.importorskip("hoplon.cli.main")
    for name in ("audit", "demo"):
        pytest.importorskip(f"hoplon.cli.{name}", reason=f"hoplon.cli.{name} is not there yet")
    assert main.main(["report", "render", str(tmp_path / "missing.json")]) == 2
    assert "Cannot read report" in capsys.readouterr().err
