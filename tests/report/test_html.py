"""The HTML page: self-contained, escaped, generic over report kinds, readable sections."""

from __future__ import annotations

import base64
import re

import pytest

from hoplon.core.finding import Finding, Severity
from hoplon.core.report import Report
from hoplon.core.taxonomy import describe
from hoplon.report import render_html
from tests.report._htmlcheck import check
from tests.report.conftest import EVIL


def _assert_well_formed(page: str) -> None:
    result = check(page)
    assert result.errors == []
    assert result.stack == []
    assert "script" not in result.tags
    for url in result.urls:
        assert url.startswith("data:image/png;base64,"), url
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", page.replace("http://www.w3.org/2000/svg", ""))
    assert "@import" not in page
    assert "url(" not in page


def test_sample_page_is_self_contained_and_well_formed(sample: Report) -> None:
    page = render_html(sample)
    assert page.startswith("<!DOCTYPE html>")
    _assert_well_formed(page)


def test_sample_page_has_every_section(sample: Report) -> None:
    page = render_html(sample)
    for section in ("run", "assets", "headline", "curve", "attacks", "examples", "findings"):
        assert f'id="{section}"' in page
    assert "sha256:35dd0961baaaedb40454e3f7a5796f6b7cd16d99bded9fe797a67bbc2a59ac0b" in page
    assert "1 of 3 gates failed" in page
    assert "L∞ norm" in page  # the norm is in the axis title
    assert page.count("<polyline") == 3 + 1  # one line per attack, plus the band under the worst case
    assert page.count("image-rendering: pixelated") == 1
    assert page.count('<img src="data:image/png;base64,') == 3 * 8
    assert "label <b>2</b> → predicted" in page
    for tag in sample.findings[0].taxonomy:
        assert describe(tag) in page


def test_every_robustness_row_is_in_the_table(sample: Report) -> None:
    page = render_html(sample)
    table = page[page.index('id="attacks"') : page.index('id="examples"')]
    assert table.count("<tr") == 1 + len(sample.results["robustness"])
    for row in sample.results["robustness"]:
        assert f"{100 * row['robust_accuracy']:.1f}%" in table
        assert f"{row['queries_per_sample']:.1f}" in table


def test_images_are_valid_pngs(sample: Report) -> None:
    page = render_html(sample)
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    data = base64.b64decode(uris[0])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 8  # native 8×8 size, scaled up by the browser
    assert int.from_bytes(data[20:24], "big") == 8


def test_hostile_strings_are_escaped(hostile: Report) -> None:
    page = render_html(hostile)
    assert "<script" not in page
    assert "alert(" in page  # shown, as text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    _assert_well_formed(page)
    text = "".join(check(page).text)
    assert EVIL in text  # a person reads the attacker's string literally


def test_partial_rows_are_marked(tabular: Report) -> None:
    page = render_html(tabular)
    table = page[page.index('id="attacks"') : page.index('id="examples"')]
    assert table.count(">partial</span>") == 2  # the two pgd rows
    assert 'stroke-dasharray="5 4"' in page  # and the partial line is dashed


def test_tabular_report_shows_feature_bars(tabular: Report) -> None:
    page = render_html(tabular)
    _assert_well_formed(page)
    assert "Per-feature perturbation" in page
    assert "worst &lt;b&gt;area&lt;/b&gt;" in page
    assert "<b>area</b>" not in page
    assert page.count("<rect") == 3
    assert "<img" not in page
    assert "L2 norm" in page
    bars = page[page.index("Per-feature perturbation") :]
    assert bars.index("worst &lt;b&gt;area") < bars.index("mean radius") < bars.index("mean texture")


def test_scan_report_renders_generically(scan: Report) -> None:
    page = render_html(scan)
    _assert_well_formed(page)
    assert "Scan report" in page
    assert 'id="curve"' not in page and 'id="headline"' not in page
    assert "models/evil model.pkl" in page
    assert "Deserialization of Untrusted Data" in page
    assert 'class="badge critical"' in page
    results = page[page.index('id="results"') :]
    assert results.count("<tr>") >= 2 + 2  # files table rows + summary rows
    assert "two files scanned" in results
    assert "<pre>" in results  # the nested value falls back to JSON


@pytest.mark.parametrize("kind", ["privacy", "scan", ""])
def test_empty_reports_render(kind: str) -> None:
    page = render_html(Report(kind=kind))
    _assert_well_formed(page)
    assert "No findings." in page


def test_odd_results_do_not_crash() -> None:
    report = Report(
        kind="robustness",
        results={
            "robustness": [{"attack": "x", "eps": 0.1}, {"no": "attack"}, "junk"],
            "gates": "junk",
            "headline": 3,
        },
        figures={"examples": {"kind": "image", "items": [{"clean": "junk", "perturbation": [[[]]]}]}},
        findings=[
            Finding(
                id="a.b",
                title="t",
                severity=Severity.INFO,
                asset="m",
                summary="s",
                taxonomy=("owasp-ml:ML01",),
            )
        ],
    )
    page = render_html(report)
    _assert_well_formed(page)
    assert "n/a" in page


def test_findings_are_ordered_by_severity(scan: Report, sample: Report) -> None:
    import dataclasses

    merged = dataclasses.replace(sample, findings=[*sample.findings, *scan.findings])
    page = render_html(merged)
    findings = page[page.index('id="findings"') :]
    assert findings.index("badge critical") < findings.index("badge low")
