"""The static HTML report: one self-contained page per experiment plus an index.

Self-contained (plots inlined as base64 PNG, no scripts, no external assets) so
the file can be mailed, archived or opened from any machine without the server.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mpq_assets.artifacts import atomic_write_bytes, report_path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; } figcaption { font-size: 0.8em; color: #555; }
.note { color: #555; font-size: 0.9em; }
"""


def _table(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return '<p class="note">(no rows yet)</p>'
    text = frame.select_dtypes(include="object").columns
    frame = frame.assign(**{c: frame[c].fillna("") for c in text})  # notes: empty, not 'None'
    return frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0)


def experiment_page(title: str, description: str, tables: Mapping[str, pd.DataFrame],
                    figures: Mapping[str, bytes], notes: Mapping[str, str] | None = None) -> str:
    """The HTML of one experiment's report: a section per table (with its note) and the figures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>",
             f"<p class='note'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the DuckDB results. "
             "n/a: not computable, the table's note column says why.</p>"]
    for name, frame in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if notes and name in notes:
            parts.append(f"<p class='note'>{html.escape(notes[name])}</p>")
        parts.append(_table(frame))
    if figures:
        parts.append("<h2>Plots</h2>")
        for name, png in figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(name)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_index(reports_dir: Path) -> Path:
    """(Re)write ``index.html`` listing every experiment report in ``reports_dir``."""
    pages = sorted(p for p in reports_dir.glob("*.html") if p.name != "index.html")
    items = "".join(f"<li><a href='{html.escape(p.name)}'>{html.escape(p.stem)}</a></li>" for p in pages)
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>MPQ reports</title><style>{_STYLE}</style>"
            f"</head><body><h1>MPQ reports</h1><ul>{items}</ul></body></html>")
    index = reports_dir / "index.html"
    atomic_write_bytes(index, text.encode("utf-8"))
    return index


def write_experiment_report(reports_dir: Path, experiment: str, page: str) -> Path:
    """Write ``<reports_dir>/<experiment>.html`` atomically and refresh the index; returns the page's path."""
    path = report_path(reports_dir, experiment)
    atomic_write_bytes(path, page.encode("utf-8"))
    write_index(reports_dir)
    return path
