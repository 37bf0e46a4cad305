"""The inline stylesheet of the HTML report (no external fonts, images or scripts)."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root {
  --fg: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f6f7f9; --card: #fff; --accent: #1f4e79;
  --ok: #15803d; --ok-bg: #dcfce7; --bad: #b3261e; --bad-bg: #fde8e7;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body { margin: 0; color: var(--fg); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 24px 48px; }
h1 { font-size: 24px; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 17px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 0; }
code, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 20px; margin: 0 0 18px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.04); }
.muted { color: var(--muted); }
.small { font-size: 12.5px; }
header.top { display: flex; justify-content: space-between; align-items: flex-start; gap: 16px;
  margin: 8px 0 18px; }
header.top .brand { font-size: 12px; font-weight: 700; letter-spacing: 0.12em; text-transform: uppercase;
  color: var(--accent); }
dl.meta { display: grid; grid-template-columns: 130px 1fr; gap: 6px 16px; margin: 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.chips { display: flex; flex-wrap: wrap; gap: 6px; }
.chip { display: inline-block; padding: 1px 8px; border-radius: 999px; background: #eef2f7; color: #334155;
  font-size: 12px; white-space: nowrap; }
.chip b { font-weight: 600; }
.pill { display: inline-block; padding: 4px 12px; border-radius: 999px; font-weight: 700; font-size: 13px; }
.pill.ok { background: var(--ok-bg); color: var(--ok); }
.pill.bad { background: var(--bad-bg); color: var(--bad); }
.pill.neutral { background: #eef2f7; color: #334155; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 6px 10px; text-align: left; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12.5px; font-weight: 600; color: var(--muted); background: #fafbfc; white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tr.emph td { font-weight: 600; background: #fff7f6 !important; }
tr.group td { border-top: 2px solid var(--line); }
.wrap { overflow-x: auto; }
.generic td { overflow-wrap: anywhere; }
@media print {
  html { background: #fff; }
  section.card { break-inside: avoid; box-shadow: none; }
  .example, .finding { break-inside: avoid; }
}
.tag { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 4px; font-size: 11px;
  font-weight: 700; background: #fef3c7; color: #92400e; text-transform: uppercase; }
.headline { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 14px; }
.tile { flex: 1 1 150px; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
  background: #fcfcfd; }
.tile .label { font-size: 12px; color: var(--muted); }
.tile .value { font-size: 26px; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile.clean .value { color: #334155; }
.tile.low .value { color: var(--bad); }
.gates { display: flex; flex-wrap: wrap; gap: 8px; }
.gate { border-radius: 6px; padding: 4px 10px; font-size: 13px; }
.gate.ok { background: var(--ok-bg); color: var(--ok); }
.gate.bad { background: var(--bad-bg); color: var(--bad); font-weight: 600; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
svg { max-width: 100%; height: auto; display: block; }
.examples { display: grid; grid-template-columns: repeat(auto-fill, minmax(318px, 1fr)); gap: 14px; }
.example { border: 1px solid var(--line); border-radius: 8px; padding: 10px; background: #fcfcfd; }
.example .imgs { display: flex; gap: 8px; justify-content: center; }
.example .imgs div { text-align: center; font-size: 11.5px; color: var(--muted); }
.example img, table.inversion img { image-rendering: pixelated; image-rendering: crisp-edges; }
.example img { width: 92px; height: 92px;
  border: 1px solid #d1d5db; border-radius: 3px; display: block; margin-bottom: 2px; }
.example .caption { margin-top: 6px; font-size: 13px; text-align: center; }
.example .caption .to { color: var(--bad); font-weight: 700; }
.scale { display: flex; align-items: center; gap: 8px; font-size: 12px; color: var(--muted);
  margin: 0 0 12px; }
.scale .bar { width: 180px; height: 10px; border-radius: 3px; border: 1px solid #d1d5db;
  background: linear-gradient(90deg, #2166ac, #f7f7f7, #b2182b); }
.finding { border: 1px solid var(--line); border-left: 5px solid #9ca3af; border-radius: 8px;
  padding: 12px 16px; margin-bottom: 12px; }
.finding.sev-critical { border-left-color: #7f1d1d; }
.finding.sev-high { border-left-color: #dc2626; }
.finding.sev-medium { border-left-color: #d97706; }
.finding.sev-low { border-left-color: #2563eb; }
.finding .head { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; }
.finding .id { color: var(--muted); }
.finding p { margin: 8px 0; }
.badge { display: inline-block; min-width: 64px; text-align: center; padding: 2px 8px; border-radius: 4px;
  font-size: 11px; font-weight: 800; letter-spacing: 0.06em; text-transform: uppercase; color: #fff; }
.badge.critical { background: #7f1d1d; }
.badge.high { background: #dc2626; }
.badge.medium { background: #d97706; }
.badge.low { background: #2563eb; }
.badge.info { background: #6b7280; }
.remedy { background: #f0f7ff; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
.metrics { display: flex; flex-wrap: wrap; gap: 4px 6px; margin: 6px 0; }
ul.tax { margin: 6px 0 0; padding-left: 18px; font-size: 13px; }
.counts { display: flex; gap: 6px; flex-wrap: wrap; }
pre { background: #f8fafc; border: 1px solid var(--line); border-radius: 6px; padding: 10px; overflow-x: auto;
  font-size: 12px; }
.tile .sub { font-size: 12px; color: var(--muted); margin-top: 2px; }
.tile .label .badge { min-width: 0; margin-left: 4px; vertical-align: 1px; }
.ci { font-size: 11px; color: var(--muted); }
td.muted { color: var(--muted); }
td.nowrap { white-space: nowrap; }
tr.muted td { color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 18px; }
.meter { height: 8px; border-radius: 4px; background: #eef2f7; margin-top: 6px; }
.meter span { display: block; height: 8px; border-radius: 4px; background: var(--bad); }
table.inversion { width: auto; }
table.inversion th, table.inversion td { text-align: center; border-bottom: 0; padding: 3px 4px;
  vertical-align: middle; }
table.inversion tbody th { text-align: right; white-space: nowrap; background: none; }
table.inversion tbody tr td { background: none !important; font-variant-numeric: tabular-nums; }
table.inversion img, table.inversion .na { width: 56px; height: 56px; border: 1px solid #d1d5db;
  border-radius: 3px; display: block; margin: 0 auto; }
p.statement { margin: 0 0 8px; max-width: 900px; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
"""
