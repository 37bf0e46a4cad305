"""The privacy and certification sections of the HTML page: what each shows, escaping, odd input."""

from __future__ import annotations

import base64
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from hoplon.core.report import Report
from hoplon.report import render_html
from hoplon.report._certify import exact_curve
from tests.report._htmlcheck import check
from tests.report.conftest import EVIL
from tests.report.kinds import CERT_RADII, certification_samples, certified_report, privacy_report
from tests.report.test_html import _assert_well_formed


def _section(page: str, name: str) -> str:
    start = page.index(f'id="{name}"')
    return page[start : page.index("</section>", start)]


def _svgs(html: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, flags=re.S)]


def test_privacy_page_has_every_section(privacy: Report) -> None:
    page = render_html(privacy)
    _assert_well_formed(page)
    for section in ("membership", "roc", "exposure", "privacy-utility", "inversion", "attribute-inference"):
        assert f'id="{section}"' in page, section
    assert 'id="results"' not in page  # every privacy result has a section; none falls back to a generic table
    assert page.index('id="membership"') < page.index('id="roc"') < page.index('id="findings"')


def test_membership_table_states_every_row(privacy: Report) -> None:
    table = _section(render_html(privacy), "membership")
    assert table.count("<tr") == 1 + len(privacy.results["privacy"]) + 1 + len(privacy.results["privacy_models"])
    assert "200 members, 200 non-members; the smallest resolvable FPR is 0.50%." in table
    for header in ("TPR@1%", "TPR@0.1%", "TPR@0.01%"):
        assert f">{header}</th>" in table
    assert "31.0%" in table and "[29.0%, 34.0%]" in table  # rmia on the overfit model, with its interval
    assert table.count("†") == 2 * 4 + 1  # 0.1 % and 0.01 % are below 1/200 in every row (+ the caption)
    assert "✓ within ε = 3" in table and "✗ exceeds ε = 3" in table
    assert '<span class="badge critical">critical</span>' in table  # the tile takes the finding's severity
    assert "2 records found in both" in table
    assert "DP-SGD, ε = 2.99, δ = 1e-05" in table


def test_roc_curves_are_log_log_per_model(privacy: Report) -> None:
    section = _section(render_html(privacy), "roc")
    charts = _svgs(section)
    assert len(charts) == 2  # one per model
    for chart in charts:
        text = "".join(chart.itertext())
        for decade in ("10⁻⁴", "10⁻³", "10⁻²", "10⁻¹"):
            assert text.count(decade) == 2  # on both axes
        assert "chance" in text and "below 1/n" in text
        assert len(chart.findall("{http://www.w3.org/2000/svg}polyline")) == 2 + 1  # two attacks, the band
        assert not chart.findall("{http://www.w3.org/2000/svg}circle")  # curves, not markers
    # The same attack has the same colour in both charts.
    colours = re.findall(r'<polyline points="[^"]*" fill="none" stroke="(#[0-9a-f]{6})" stroke-width="1.8"', section)
    assert len(set(colours)) == 1
    assert "nan" not in section.lower().replace("nano", "")


def test_roc_points_at_zero_fpr_step_instead_of_sloping(privacy: Report) -> None:
    section = _section(render_html(privacy), "roc")
    first = _svgs(section)[0]
    lines = [p.get("points", "").split() for p in first.iter("{http://www.w3.org/2000/svg}polyline")]
    rmia = lines[-1]  # the strongest attack is drawn last (over its band)
    (x0, y0), (x1, y1), (x2, y2) = (tuple(map(float, p.split(","))) for p in rmia[:3])
    assert y0 == y1 and x1 == x2 and y2 < y1  # flat along the unresolvable region, then up (SVG y grows down)
    assert x0 == pytest.approx(64.0)  # FPR 0 sits on the axis


def test_utility_curve_places_no_dp_at_infinity(privacy: Report) -> None:
    section = _section(render_html(privacy), "privacy-utility")
    (chart,) = _svgs(section)
    text = "".join(chart.itertext())
    assert "∞ (no DP)" in text and "AUC 0.5: guessing" in text
    assert section.count("<tr") == 1 + 2
    assert '<td class="n">∞</td>' in section


def test_inversion_grid_is_native_size_pngs(privacy: Report) -> None:
    section = _section(render_html(privacy), "inversion")
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', section)
    assert len(uris) == 2 * 2 * 3  # two models × (reconstruction, class mean) × three classes
    data = base64.b64decode(uris[0][0])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (4, 4)
    assert uris[0][1] == "reconstruction of class zero"
    assert "identified</b> 100% of classes (chance 33%)" in section


def test_attribute_inference_table(privacy: Report) -> None:
    section = _section(render_html(privacy), "attribute-inference")
    assert section.count("<tr") == 1 + 2
    assert "+30.0 pt" in section and "mean radius" in section


def test_certified_section_states_n_alpha_sigma_and_abstention(certified: Report) -> None:
    page = render_html(certified)
    _assert_well_formed(page)
    section = _section(page, "certified")
    text = "".join(check(section + "</section>").text)
    for phrase in ("n = 200", "n₀ = 20", "σ = 0.25", "1 − α = 99.9%", "α = 0.001", "10.0% of the 20 samples abstain"):
        assert phrase in text, phrase
    assert "no radius above 0.456 can be certified" in text
    assert 'id="results"' not in page  # samples, queries and CPU time are in the section
    assert "model queries</b> 4400" in section


def test_certified_curve_marks_the_cap(certified: Report) -> None:
    section = _section(render_html(certified), "certified")
    (chart,) = _svgs(section)
    text = "".join(chart.itertext())
    assert "max certifiable radius 0.456" in text and "not certifiable with this n" in text
    assert section.count("beyond the largest certifiable radius") == 2  # radii 0.5 and 0.75
    table = section[section.index("<table") :]
    assert table.count("<tr") == 1 + len(CERT_RADII)
    for row in certified.results["certified"]:
        assert f"{100 * row['certified_accuracy']:.1f}%" in table


def test_exact_curve_matches_the_rows() -> None:
    samples = certification_samples()
    report = certified_report()
    points = exact_curve(samples, 0.75)
    assert points[0] == (0.0, 0.75) and points[-1] == (0.75, 0.0)
    assert all(a[0] <= b[0] and a[1] >= b[1] for a, b in itertools.pairwise(points))  # a step down
    for row in report.results["certified"]:
        r = row["radius"]
        at = [y for x, y in points if x <= r]
        value = next((y for x, y in points if x == r), at[-1])  # at r itself: the share with radius ≥ r
        assert value == pytest.approx(row["certified_accuracy"]), r


def test_exact_curve_is_bounded_in_size_and_never_overstates() -> None:
    samples = [{"label": 0, "prediction": 0, "radius": k / 5000} for k in range(5000)]
    points = exact_curve(samples, 1.0)
    assert len(points) <= 2 * 1000 + 2
    for x, y in points:
        assert y <= sum(1 for s in samples if s["radius"] >= x - 1e-12) / len(samples) + 1e-12
    assert exact_curve("junk", 1.0) == () and exact_curve([{"radius": "x"}], 1.0) == ()


@pytest.mark.parametrize("build", [privacy_report, certified_report])
def test_hostile_strings_are_escaped(build: Callable[[str], Report]) -> None:
    page = render_html(build(EVIL))
    assert "<script" not in page
    _assert_well_formed(page)
    for chart in _svgs(page):
        assert chart.tag.endswith("svg")
    text = "".join(check(page).text)
    assert EVIL in text


def test_odd_privacy_and_certified_results_do_not_crash() -> None:
    report = Report(
        kind="privacy",
        results={
            "privacy": [
                {"model": "m", "attack": "a", "auc": "junk", "tpr_at_fpr": "junk", "tpr_at_fpr_ci": [1]},
                {"model": "m", "attack": "b", "auc": 0.6, "tpr_at_fpr": {"x": 1, "0.01": None}, "min_fpr": -1},
                "junk",
            ],
            "privacy_exposure": [{"model": "m", "exposure": "high"}],
            "privacy_models": [{"model": "m", "record": "junk"}],
            "privacy_utility": [{"model": "m", "epsilon": None}, {"model": "n", "epsilon": "x"}],
            "inversion": "junk",
            "attribute_inference": [{"model": "m"}],
            "certified": [{"radius": 0.0, "certified_accuracy": 0.5, "n": "?"}, {"radius": "x"}],
            "samples": [{"radius": 0.1}],
        },
        figures={
            "roc": {"curves": [{"model": "m", "attack": "a", "fpr": [0, 0.5, "x"], "tpr": [0, 1]}, {"model": 3}]},
            "inversion": [{"model": "m", "classes": [1], "reconstructions": [[[]]], "class_means": "junk"}],
        },
    )
    page = render_html(report)
    _assert_well_formed(page)
    assert 'id="membership"' in page and 'id="certified"' in page
