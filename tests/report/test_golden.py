"""Golden files: the sample report as JSON, HTML and SARIF, and the privacy and certification pages, with time,
version, environment and timings fixed.

Regenerate after an intended change with ``HOPLON_UPDATE_GOLDEN=1 pytest tests/report/test_golden.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os

import pytest

from hoplon.core.report import Report
from hoplon.report import render_html, render_sarif
from tests.report.conftest import GOLDEN, normalise

UPDATE = os.environ.get("HOPLON_UPDATE_GOLDEN") == "1"


def _render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "html":
        return render_html(report)
    return json.dumps(render_sarif(report), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("fmt", ["json", "html", "sarif"])
def test_sample_report_matches_golden(sample: Report, fmt: str) -> None:
    text = _render(normalise(sample), fmt)
    path = GOLDEN / f"sample_report.{fmt}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with HOPLON_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; HOPLON_UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("name", ["privacy", "certified"])
def test_privacy_and_certified_pages_match_golden(name: str, request: pytest.FixtureRequest) -> None:
    """The privacy and certification sections as rendered (``tests/report/kinds.py`` builds the reports)."""
    text = _render(normalise(request.getfixturevalue(name)), "html")
    path = GOLDEN / f"{name}_report.html"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with HOPLON_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; HOPLON_UPDATE_GOLDEN=1 to accept"


@pytest.mark.parametrize("name", ["privacy", "certified"])
def test_privacy_and_certified_json_round_trip(name: str, request: pytest.FixtureRequest) -> None:
    normal = normalise(request.getfixturevalue(name))
    assert render_html(Report.from_dict(json.loads(normal.to_json()))) == render_html(normal)


def test_golden_json_round_trips(sample: Report) -> None:
    """JSON is the truth: reading the golden report.json back renders the same HTML."""
    normal = normalise(sample)
    again = Report.from_dict(json.loads(normal.to_json()))
    assert render_html(again) == render_html(normal)
    assert render_sarif(again) == render_sarif(normal)


def test_normalise_fixes_what_varies(sample: Report) -> None:
    normal = normalise(sample)
    assert normal.created.startswith("2000-01-01")
    assert all(row["cpu_s"] == 0.0 and row["wall_s"] == 0.0 for row in normal.results["robustness"])
    assert normal.results["robustness"][0]["robust_accuracy"] == sample.results["robustness"][0]["robust_accuracy"]
