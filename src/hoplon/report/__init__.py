"""Report renderers: JSON is the truth; HTML, SARIF and Markdown are rendered from ``Report.to_dict()``."""

from hoplon.report.html import render_html
from hoplon.report.markdown import render_markdown
from hoplon.report.sarif import render_sarif
from hoplon.report.writer import write_report

__all__ = ["render_html", "render_markdown", "render_sarif", "write_report"]
