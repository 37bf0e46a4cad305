"""The privacy sections of the HTML report: membership inference (headline, per-attack table, log–log ROC
curves), the most exposed records, the privacy–utility curve, model inversion and attribute inference.

Everything reads the JSON form of a report (``hoplon audit privacy``; layout in ``docs/privacy.md``) and
tolerates missing or odd fields: a report from an older or newer hoplon still renders.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from hoplon.report._text import DASH, esc, is_number, num, pct, plain, truncate
from hoplon.report.png import image_pixels, png_data_uri
from hoplon.report.svg import PALETTE, Series, line_chart

__all__ = ["PRIVACY_KEYS", "has_privacy", "privacy_sections"]

PRIVACY_KEYS = frozenset(
    {
        "privacy",
        "privacy_exposure",
        "privacy_models",
        "privacy_utility",
        "overlap_removed",
        "inversion",
        "attribute_inference",
    }
)
MAX_CLASSES = 20
ROC_FLOOR = 1e-4
Row = Mapping[str, Any]


def _records(value: Any, *required: str) -> list[Row]:
    if not isinstance(value, list):
        return []
    return [r for r in value if isinstance(r, Mapping) and all(k in r for k in required)]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _rows(doc: Mapping[str, Any]) -> list[Row]:
    return _records(_map(doc.get("results")).get("privacy"), "attack", "model")


def has_privacy(doc: Mapping[str, Any]) -> bool:
    """Whether the report holds membership-inference rows (``results.privacy``)."""
    return bool(_rows(doc))


def _f(value: Any) -> float:
    return float(value) if is_number(value) else math.nan


def _tpr(row: Row, level: str) -> float:
    tprs = row.get("tpr_at_fpr")
    return _f(tprs.get(level)) if isinstance(tprs, Mapping) else math.nan


def _strength(row: Row) -> tuple[float, float]:
    """The audit's order of attacks: TPR at 1 % FPR first, then AUC (NaN counts as weakest)."""
    tpr, auc = _tpr(row, "0.01"), _f(row.get("auc"))
    return (tpr if math.isfinite(tpr) else -1.0, auc if math.isfinite(auc) else -1.0)


def _by_model(rows: Sequence[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for r in rows:
        grouped.setdefault(plain(r.get("model")), []).append(r)
    return grouped


def _levels(rows: Sequence[Row]) -> list[str]:
    """The FPR levels of ``tpr_at_fpr`` over all rows, largest first (``"0.01"``, ``"0.001"``, …)."""
    keys = {str(k) for r in rows if isinstance(r.get("tpr_at_fpr"), Mapping) for k in r["tpr_at_fpr"]}
    return sorted((k for k in keys if is_number(_number(k))), key=lambda k: -_number(k))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _fpr_label(level: str) -> str:
    value = _number(level)
    return f"{100 * value:.{max(0, -math.floor(math.log10(100 * value)))}f}%" if value > 0 else level


def _attack_colours(doc: Mapping[str, Any]) -> dict[str, str]:
    attacks = [plain(r.get("attack")) for r in _rows(doc)]
    curves = _map(doc.get("figures")).get("roc", {})
    if isinstance(curves, Mapping):
        attacks += [plain(c.get("attack")) for c in _records(curves.get("curves"), "attack")]
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(dict.fromkeys(attacks))}


def _severity(doc: Mapping[str, Any], model: str) -> str:
    for f in _list(doc.get("findings")):
        if isinstance(f, Mapping) and f.get("id") == "privacy.membership" and plain(f.get("asset")) == model:
            severity = str(f.get("severity", "info")).lower()
            return severity if severity in ("critical", "high", "medium", "low", "info") else "info"
    return ""


def _headline(doc: Mapping[str, Any]) -> str:
    tiles = []
    for model, rows in _by_model(_rows(doc)).items():
        best = max(rows, key=_strength)
        severity = _severity(doc, model)
        badge = f' <span class="badge {severity}">{severity}</span>' if severity else ""
        low = " low" if severity in ("critical", "high") else ""
        bound = (
            f" · ε̂ ≥ {esc(num(best.get('epsilon_lower_bound'), 3))}"
            if is_number(best.get("epsilon_lower_bound"))
            else ""
        )
        tiles.append(
            f'<div class="tile{low}"><div class="label">{esc(truncate(model, 60))}{badge}</div>'
            f'<div class="value">{pct(_tpr(best, "0.01"))}</div>'
            f'<div class="sub">TPR at 1% FPR, strongest attack <b>{esc(plain(best.get("attack")))}</b></div>'
            f'<div class="sub">AUC {esc(num(best.get("auc"), 3))} · TPR at 0.1% FPR {pct(_tpr(best, "0.001"))}'
            f"{bound}</div></div>"
        )
    return f'<div class="headline">{"".join(tiles)}</div>'


def _interval(value: Any, *, as_pct: bool) -> str:
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)):
        return ""
    lo, hi = (pct(v) if as_pct else num(v, 3) for v in value)
    return f'<div class="ci">[{esc(lo)}, {esc(hi)}]</div>'


def _dp_cell(row: Row) -> str:
    if not is_number(row.get("dp_epsilon")):
        return f'<td class="muted">{DASH}</td>'
    eps = esc(num(row["dp_epsilon"], 3))
    if row.get("dp_consistent") is False:
        return f'<td class="nowrap"><span class="gate bad">✗ exceeds ε = {eps}</span></td>'
    return f'<td class="nowrap"><span class="gate ok">✓ within ε = {eps}</span></td>'


def _sizes(rows: Sequence[Row]) -> str:
    """``150 members, 150 non-members`` when every row agrees, else an empty string (a column says it)."""
    sizes = {(plain(r.get("n_members")), plain(r.get("n_nonmembers"))) for r in rows}
    if len(sizes) != 1:
        return ""
    n_in, n_out = next(iter(sizes))
    min_fpr = rows[0].get("min_fpr")
    resolution = f"; the smallest resolvable FPR is {pct(min_fpr, 2)}" if is_number(min_fpr) else ""
    return f"{n_in} members, {n_out} non-members{resolution}."


def _membership_table(doc: Mapping[str, Any]) -> str:
    rows = _rows(doc)
    levels = _levels(rows)
    has_dp = any(is_number(r.get("dp_epsilon")) for r in rows)
    sizes = _sizes(rows)
    head = "<th>model</th><th>attack</th>" + '<th class="n">AUC</th>'
    head += "".join(f'<th class="n">TPR@{esc(_fpr_label(k))}</th>' for k in levels)
    head += '<th class="n">adv.</th><th class="n" title="empirical ε lower bound, 95 %">ε̂ ≥</th>'
    head += "" if sizes else '<th class="n">in / out</th>'
    head += '<th class="n">refs</th><th class="n">CPU s</th>'
    head += "<th>DP guarantee</th>" if has_dp else ""
    body = []
    for model, mine in _by_model(rows).items():
        best = max(mine, key=_strength)
        for i, r in enumerate(mine):
            classes = " ".join(c for c in ("emph" if r is best else "", "group" if i == 0 else "") if c)
            min_fpr = _f(r.get("min_fpr"))
            cells = [f'<td class="n">{esc(num(r.get("auc"), 3))}{_interval(r.get("auc_ci"), as_pct=False)}</td>']
            cis = _map(r.get("tpr_at_fpr_ci"))
            for k in levels:
                below = math.isfinite(min_fpr) and _number(k) < min_fpr - 1e-12
                mark = (
                    ' class="n muted" title="below the smallest FPR the data resolve (1 / non-members): '
                    'the TPR at zero false positives"'
                    if below
                    else ' class="n"'
                )
                dagger = "†" if below else ""
                cells.append(f"<td{mark}>{pct(_tpr(r, k))}{dagger}{_interval(cis.get(k), as_pct=True)}</td>")
            cells += [
                f'<td class="n">{esc(num(r.get("advantage"), 3))}</td>',
                f'<td class="n">{esc(num(r.get("epsilon_lower_bound"), 3))}</td>',
            ]
            if not sizes:
                cells.append(f'<td class="n">{esc(num(r.get("n_members")))} / {esc(num(r.get("n_nonmembers")))}</td>')
            cells += [
                f'<td class="n">{esc(num(r.get("n_references")))}</td>',
                f'<td class="n">{_seconds(r.get("cpu_s"))}</td>',
            ]
            if has_dp:
                cells.append(_dp_cell(r))
            model_cell = f"<td>{esc(truncate(model, 60))}</td>" if i == 0 else "<td></td>"
            body.append(
                f'<tr class="{classes}">{model_cell}<td class="nowrap">{esc(plain(r.get("attack")))}</td>'
                f"{''.join(cells)}</tr>"
            )
    return (
        f'<p class="small" style="margin:0 0 6px">{esc(sizes)}</p>'
        * bool(sizes)
        + f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        '<p class="muted small">Bold: the strongest attack on each model (TPR at 1% FPR, then AUC). TPR@x: the '
        "share of training records the attack flags while wrongly flagging at most x of the non-members; "
        "bracketed: 95% bootstrap intervals. † below 1 / (number of non-members), the smallest FPR the data can "
        "resolve: the TPR at zero false positives. adv.: the membership advantage, max(TPR − FPR). ε̂: the "
        "empirical ε lower bound (95%) the attack proves for any (ε, δ)-DP training. refs: reference models.</p>"
    )


def _models_table(doc: Mapping[str, Any]) -> str:
    models = _records(_map(doc.get("results")).get("privacy_models"), "model")
    if not models:
        return ""
    body = []
    for m in models:
        record = _map(m.get("record"))
        private = is_number(record.get("epsilon"))
        training = (
            f"DP-SGD, ε = {num(record.get('epsilon'), 3)}, δ = {num(record.get('delta'), 3)}"
            if private
            else "no differential privacy"
        )
        details = [
            f"{label} {num(record.get(key), 4)}"
            for key, label in (("noise_multiplier", "σ"), ("max_grad_norm", "C"), ("steps", "steps"))
            if is_number(record.get(key))
        ]
        if record.get("accountant"):
            details.append(f"{plain(record.get('accountant'))} accountant")
        body.append(
            f'<tr><td>{esc(truncate(plain(m.get("model")), 60))}</td><td class="n">{pct(m.get("test_accuracy"))}</td>'
            f'<td>{esc(training)}</td><td class="muted">{esc(", ".join(details) or DASH)}</td></tr>'
        )
    return (
        '<h3 style="margin:16px 0 8px">Audited models</h3><div class="wrap"><table><thead><tr><th>model</th>'
        '<th class="n">test accuracy</th><th>training</th><th>DP details</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _membership_section(doc: Mapping[str, Any]) -> str:
    overlap = _map(doc.get("results")).get("overlap_removed")
    note = (
        f'<p class="muted small">{esc(num(overlap))} records found in both the training and the holdout set were '
        "left out.</p>"
        if is_number(overlap) and overlap > 0
        else ""
    )
    return (
        '<section class="card" id="membership"><h2>Membership inference</h2>'
        '<p class="muted small" style="margin-top:-6px">How well each attack tells the model\'s training '
        "records from records it never saw. What matters is the true-positive rate at a low false-positive "
        "rate: an attack that is sure about a few records leaks more than a high AUC suggests.</p>"
        f"{_headline(doc)}{_membership_table(doc)}{note}{_models_table(doc)}</section>"
    )


def _roc_chart(model: str, curves: Sequence[Row], rows: Sequence[Row], colours: Mapping[str, str]) -> str:
    strongest = plain(max(rows, key=_strength).get("attack")) if rows else ""
    series, values = [], []
    for c in curves:
        fpr, tpr = c.get("fpr"), c.get("tpr")
        if not (isinstance(fpr, list) and isinstance(tpr, list)):
            continue
        # (0, 0) has no place on log axes; other zeros are drawn on the axis floor. From a point at FPR 0 the
        # curve goes on as a step (flat, then up), not as a slope across the region the data cannot resolve.
        kept = [(float(f), float(t)) for f, t in zip(fpr, tpr, strict=False) if is_number(f) and is_number(t)]
        kept = [p for p in kept if p[0] > 0 or p[1] > 0]
        points: list[tuple[float, float]] = []
        for a, b in itertools.pairwise([*kept[:1], *kept]):
            if a[0] <= 0 < b[0] and b[1] > a[1]:
                points.append((b[0], a[1]))
            points.append(b)
        if not points:
            continue
        attack = plain(c.get("attack"))
        values += [v for p in points for v in p]
        series.append(
            Series(attack, tuple(points), emphasis=attack == strongest, markers=False, colour=colours.get(attack, ""))
        )
    if not series:
        return ""
    min_fprs = [_f(r.get("min_fpr")) for r in rows if is_number(r.get("min_fpr")) and r["min_fpr"] > 0]
    positive = [v for v in values if v > 0] + min_fprs
    floor = min(ROC_FLOOR, 10.0 ** math.floor(math.log10(min(positive)) + 1e-9)) if positive else ROC_FLOOR
    floor = max(floor, 1e-6)
    bands = [(floor, min(min_fprs), "below 1/n")] if min_fprs and min(min_fprs) > floor else []
    svg = line_chart(
        series,
        x_label="false-positive rate",
        y_label="true-positive rate",
        title=f"ROC curves of the membership attacks on {model}",
        x_scale="log",
        y_scale="log",
        x_range=(floor, 1.0),
        y_range=(floor, 1.0),
        x_bands=bands,
        diagonal="chance",
        width=560,
        height=440,
        legend_w=150,
    )
    return f'<figure><h3 style="margin:0 0 6px">{esc(truncate(model, 80))}</h3>{svg}</figure>'


def _roc_section(doc: Mapping[str, Any]) -> str:
    figure = _map(doc.get("figures")).get("roc")
    curves = _records(figure.get("curves"), "model") if isinstance(figure, Mapping) else []
    if not curves:
        return ""
    rows = _by_model(_rows(doc))
    grouped: dict[str, list[Row]] = {}
    for c in curves:
        grouped.setdefault(plain(c.get("model")), []).append(c)
    colours = _attack_colours(doc)
    charts = "".join(_roc_chart(m, cs, rows.get(m, []), colours) for m, cs in grouped.items())
    if not charts:
        return ""
    return (
        '<section class="card" id="roc"><h2>ROC curves (log–log)</h2>'
        f'<div class="charts">{charts}</div><p class="muted small" style="margin-top:8px">One chart per model, '
        "one line per attack (the same colour in every chart; the strongest attack bold). Both axes are "
        "logarithmic so the low false-positive corner, where an attack is confident, is readable "
        "(Carlini et al. 2022). Dashed diagonal: guessing. Grey: false-positive rates below 1 / (number of "
        "non-members), which the data cannot resolve; points at zero are drawn on the axis.</p></section>"
    )


def _exposure_section(doc: Mapping[str, Any]) -> str:
    rows = _records(_map(doc.get("results")).get("privacy_exposure"), "model")
    if not rows:
        return ""
    body = []
    for model, mine in _by_model(rows).items():
        for i, r in enumerate(mine):
            share = _f(r.get("exposure"))
            width = f"{100 * share:.1f}" if math.isfinite(share) else "0"
            body.append(
                f'<tr class="{"group" if i == 0 else ""}"><td>{esc(truncate(model, 60)) if i == 0 else ""}</td>'
                f'<td>{esc(plain(r.get("attack")))}</td><td class="n">{esc(num(r.get("index")))}</td>'
                f'<td class="n">{esc(num(r.get("label")))}</td><td class="n">{esc(num(r.get("score"), 4))}</td>'
                f'<td class="n">{pct(share)}</td><td style="width:22%"><div class="meter">'
                f'<span style="width:{width}%"></span></div></td></tr>'
            )
    return (
        '<section class="card" id="exposure"><h2>Most exposed training records</h2><div class="wrap"><table>'
        '<thead><tr><th>model</th><th>attack</th><th class="n">record</th><th class="n">label</th>'
        '<th class="n">score</th><th class="n">exposure</th><th></th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
        '<p class="muted small">Per model, the training records the strongest attack is surest about. Exposure: '
        "the share of non-members each record out-scores; near 100% means the record is singled out. Record: "
        "its index in the training set.</p></section>"
    )


def _epsilon(value: Any) -> float:
    """A DP ε; ``None`` (JSON has no infinity) and non-numbers mean no DP: ∞."""
    return float(value) if is_number(value) else math.inf


def _utility_chart(rows: Sequence[Row]) -> str:
    finite = sorted({_epsilon(r.get("epsilon")) for r in rows if math.isfinite(_epsilon(r.get("epsilon")))})
    if not finite or len({_epsilon(r.get("epsilon")) for r in rows}) < 2:
        return ""
    infinity = finite[-1] * 10**0.5  # where ε = ∞ (no DP) sits on the log axis, right of the largest ε
    ordered = sorted(rows, key=lambda r: _epsilon(r.get("epsilon")))

    def x(r: Row) -> float:
        eps = _epsilon(r.get("epsilon"))
        return eps if math.isfinite(eps) else infinity

    def line(name: str, values: Sequence[tuple[float, float]], **kw: Any) -> Series:
        return Series(name, tuple((a, b) for a, b in values if math.isfinite(b)), **kw)

    series = [
        line("test accuracy", [(x(r), _f(r.get("test_accuracy"))) for r in ordered], colour="#15803d"),
        line("membership AUC", [(x(r), _f(r.get("auc"))) for r in ordered], colour="#4e79a7"),
        line("TPR at 1% FPR", [(x(r), _tpr(r, "0.01")) for r in ordered], emphasis=True),
    ]
    ticks = [(e, f"{e:.3g}") for e in finite] + ([(infinity, "∞ (no DP)")] if len(finite) < len(rows) else [])
    return line_chart(
        series,
        x_label="privacy budget ε of DP-SGD training (log scale)",
        y_label="share of records",
        title="Privacy–utility curve",
        x_scale="log",
        x_range=(finite[0] / 10**0.3, infinity * 10**0.3),
        x_ticks=ticks,
        thresholds=[(0.5, "AUC 0.5: guessing")],
        height=340,
    )


def _utility_section(doc: Mapping[str, Any]) -> str:
    rows = _records(_map(doc.get("results")).get("privacy_utility"), "model")
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{esc(truncate(plain(r.get('model')), 60))}</td>"
        f'<td class="n">{esc(num(r.get("epsilon"), 3)) if is_number(r.get("epsilon")) else "∞"}</td>'
        f'<td class="n">{pct(r.get("test_accuracy"))}</td><td>{esc(plain(r.get("attack")))}</td>'
        f'<td class="n">{esc(num(r.get("auc"), 3))}</td><td class="n">{pct(_tpr(r, "0.01"))}</td>'
        f'<td class="n">{esc(num(r.get("epsilon_lower_bound"), 3))}</td></tr>'
        for r in sorted(rows, key=lambda r: _epsilon(r.get("epsilon")))
    )
    chart = _utility_chart(rows)
    figure = (
        f"<figure>{chart}<figcaption>Test accuracy (utility) and the strongest membership attack's AUC and TPR "
        "at 1% FPR (leakage) for models trained at each ε; ∞ is the model trained without DP.</figcaption>"
        "</figure>"
        if chart
        else ""
    )
    return (
        f'<section class="card" id="privacy-utility"><h2>Privacy–utility</h2>{figure}<div class="wrap"><table>'
        '<thead><tr><th>model</th><th class="n">ε</th><th class="n">test accuracy</th><th>strongest attack</th>'
        '<th class="n">AUC</th><th class="n">TPR at 1% FPR</th><th class="n">ε̂ ≥</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div></section>"
    )


def _tile_img(image: Any, lo: float, hi: float, alt: str) -> str:
    try:
        pixels = image_pixels(image, lower=lo, upper=hi)
    except (ValueError, TypeError, IndexError):
        return '<div class="muted na">n/a</div>'
    return f'<img src="{png_data_uri(pixels)}" alt="{esc(alt)}">'


def _inversion_grid(figure: Row, summary: Row | None) -> str:
    bounds = figure.get("bounds")
    lo, hi = 0.0, 1.0
    if isinstance(bounds, list) and len(bounds) == 2 and all(is_number(b) for b in bounds) and bounds[1] > bounds[0]:
        lo, hi = float(bounds[0]), float(bounds[1])
    recs = _list(figure.get("reconstructions"))
    means = _list(figure.get("class_means"))
    classes = _list(figure.get("classes")) or list(range(len(recs)))
    n = min(len(recs), len(means), len(classes))
    shown = min(n, MAX_CLASSES)
    summary = summary or {}
    own = _list(summary.get("own_similarity"))
    confidence = _list(summary.get("confidence"))
    head = "".join(f"<th>class {esc(plain(classes[i]))}</th>" for i in range(shown))
    rec_row = "".join(
        f"<td>{_tile_img(recs[i], lo, hi, f'reconstruction of class {plain(classes[i])}')}</td>" for i in range(shown)
    )
    mean_row = "".join(
        f"<td>{_tile_img(means[i], lo, hi, f'mean of class {plain(classes[i])}')}</td>" for i in range(shown)
    )
    cos_row = "".join(f"<td>{esc(num(own[i], 2)) if i < len(own) else DASH}</td>" for i in range(shown))
    conf_row = "".join(f"<td>{pct(confidence[i]) if i < len(confidence) else DASH}</td>" for i in range(shown))
    more = f'<p class="muted small">{n - shown} more classes in report.json.</p>' if n > shown else ""
    stats = ""
    if is_number(summary.get("identification_rate")):
        stats = (
            f'<div class="metrics"><span class="chip"><b>identified</b> {pct(summary["identification_rate"], 0)} '
            f"of classes (chance {pct(summary.get('chance_identification_rate'), 0)})</span>"
            f'<span class="chip"><b>mean cosine to own class</b> {esc(num(summary.get("mean_own_similarity"), 3))}'
            f'</span><span class="chip"><b>gap to other classes</b> {esc(num(summary.get("mean_gap"), 3))}</span></div>'
        )
    return (
        f'<h3 style="margin:14px 0 6px">{esc(truncate(plain(figure.get("model")), 80))}</h3>{stats}'
        f'<div class="wrap"><table class="inversion"><thead><tr><th></th>{head}</tr></thead><tbody>'
        f"<tr><th>reconstruction</th>{rec_row}</tr><tr><th>class mean (training data)</th>{mean_row}</tr>"
        f"<tr><th>cosine to own mean</th>{cos_row}</tr><tr><th>model confidence</th>{conf_row}</tr>"
        f"</tbody></table></div>{more}"
    )


def _inversion_section(doc: Mapping[str, Any]) -> str:
    figures = _records(_map(doc.get("figures")).get("inversion"), "model")
    if not figures:
        return ""
    summaries = {plain(s.get("model")): s for s in _records(_map(doc.get("results")).get("inversion"), "model")}
    grids = "".join(_inversion_grid(f, summaries.get(plain(f.get("model")))) for f in figures)
    return (
        '<section class="card" id="inversion"><h2>Model inversion (MI-Face)</h2>'
        '<p class="muted small" style="margin-top:-6px">For each class, the input the model is most confident '
        "about, reconstructed from its gradients (top), above the mean training image of that class. A "
        "reconstruction that resembles its class mean, more than the other classes' means, shows what the "
        f"model remembers of its training data.</p>{grids}</section>"
    )


def _attribute_section(doc: Mapping[str, Any]) -> str:
    rows = _records(_map(doc.get("results")).get("attribute_inference"), "model")
    if not rows:
        return ""
    body = "".join(
        f'<tr><td class="nowrap">{esc(truncate(plain(r.get("model")), 60))}</td>'
        f"<td>{esc(truncate(plain(r.get('feature')), 60))}</td>"
        f'<td class="n">{esc(num(r.get("n_bins")))}</td>'
        f'<td class="n">{pct(r.get("accuracy_members"))}</td>'
        f'<td class="n">{pct(r.get("baseline_accuracy_members"))}</td>'
        f'<td class="n"><b>{_signed(r.get("advantage_members"))}</b></td>'
        f'<td class="n">{pct(r.get("accuracy_nonmembers"))}</td>'
        f'<td class="n">{_signed(r.get("advantage_nonmembers"))}</td>'
        f'<td class="n">{_signed(r.get("membership_gap"))}</td></tr>'
        for r in rows
    )
    return (
        '<section class="card" id="attribute-inference"><h2>Attribute inference</h2><div class="wrap"><table>'
        '<thead><tr><th>model</th><th>sensitive feature</th><th class="n">bins</th>'
        '<th class="n">recovered<br>(training)</th><th class="n">guessing<br>(training)</th>'
        '<th class="n">advantage<br>(training)</th><th class="n">recovered<br>(holdout)</th>'
        '<th class="n">advantage<br>(holdout)</th><th class="n">training −<br>holdout</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
        '<p class="muted small">Given every other feature and the label, how often the model\'s confidence '
        "recovers the sensitive feature's bin, against guessing from its marginal. A larger advantage on "
        "training records than on holdout records is leakage specific to the training data.</p></section>"
    )


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}" if is_number(value) else DASH


def _signed(value: Any) -> str:
    return f"{100 * float(value):+.1f} pt" if is_number(value) else DASH


def privacy_sections(doc: Mapping[str, Any]) -> str:
    """Every privacy section the report has data for, in reading order (an empty string if none)."""
    if not has_privacy(doc):
        return ""
    parts = [
        _membership_section(doc),
        _roc_section(doc),
        _exposure_section(doc),
        _utility_section(doc),
        _inversion_section(doc),
        _attribute_section(doc),
    ]
    return "\n".join(p for p in parts if p)
