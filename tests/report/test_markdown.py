"""The Markdown summary for CI comments."""

from __future__ import annotations

from hoplon.core.report import Report
from hoplon.report import render_markdown
from tests.report.conftest import EVIL


def test_sample_summary(sample: Report) -> None:
    text = render_markdown(sample)
    assert text.startswith("### hoplon robustness report: model, digits:test")
    assert "| 0.1 | 50.4% | 48.8% |" in text
    assert "**Gates:** 2 passed, 1 failed" in text
    assert "❌ robust_accuracy ≥ 50% at ε=0.2: 0.7%" in text
    assert text.count("| low | `evasion.") == 3
    assert len(text.splitlines()) < 40


def test_hostile_text_cannot_break_the_table_or_inject_html(hostile: Report) -> None:
    text = render_markdown(hostile)
    assert "<script" not in text
    assert "&lt;script&gt;" in text
    for line in text.splitlines():
        if line.startswith("| high"):
            assert line.count(" | ") == 2  # no extra cell from a pipe in the data


def test_markdown_cells_escape_pipes_and_newlines() -> None:
    from hoplon.core.finding import Finding, Severity

    finding = Finding(id="a.b", title="t", severity=Severity.LOW, asset="m", summary="one | two\nthree")
    text = render_markdown(Report(kind="scan", findings=[finding]))
    assert "one \\| two three" in text
    assert EVIL not in text


def test_no_findings() -> None:
    assert "No findings." in render_markdown(Report(kind="privacy"))
