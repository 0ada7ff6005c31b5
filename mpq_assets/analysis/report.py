"""The static HTML report: one self-contained page per experiment plus an index.

Self-contained (BokehJS and the plots' data inline, no external assets) so the
file can be mailed, archived or opened from any machine without the server. A
page leads with the interactive plots, then compact tables whose "why not"
notes are footnotes under each table rather than cells that dwarf the numbers.
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
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1340px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; } figcaption { font-size: 0.8em; color: #555; }
.note { color: #555; font-size: 0.9em; }
.foot { color: #555; font-size: 0.8em; margin-top: -1em; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def footnoted(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` with each distinct text of its note columns (``*note``) replaced by ``[k]``, and the texts."""
    texts: list[str] = []
    out = frame.copy()
    for column in [c for c in frame.columns if str(c).endswith("note")]:
        marks = []
        for value in frame[column]:
            if value is None or (isinstance(value, float) and pd.isna(value)) or not str(value).strip():
                marks.append("")
                continue
            if str(value) not in texts:
                texts.append(str(value))
            marks.append(f"[{texts.index(str(value)) + 1}]")
        out[column] = marks
    return out, texts


def _table(frame: pd.DataFrame) -> str:
    if frame is None or frame.empty:
        return '<p class="note">(no rows yet)</p>'
    frame, texts = footnoted(frame)
    text = frame.select_dtypes(include="object").columns
    frame = frame.assign(**{c: frame[c].fillna("") for c in text})  # notes: empty, not 'None'
    table = frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.4g}", border=0)
    if texts:
        table += "<ol class='foot'>" + "".join(f"<li>{html.escape(t)}</li>" for t in texts) + "</ol>"
    return table


def experiment_page(title: str, description: str, tables: Mapping[str, pd.DataFrame],
                    figures: Mapping[str, bytes], notes: Mapping[str, str] | None = None,
                    interactive: Mapping[str, object] | None = None) -> str:
    """The HTML of one experiment's report: the plots first (``interactive`` Bokeh figures; the PNG
    ``figures`` where there are none), then a section per table with its note and footnotes."""
    from mpq_assets.analysis.interactive import embed, page_head

    script, divs = embed(interactive or {})
    head = (page_head() + script) if divs else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_STYLE}</style>{head}</head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>",
             f"<p class='note'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the DuckDB results. "
             "Hover a point for its codec, ratio, setting and items; hollow points missed their target ratio; "
             "the dashed line is the score on the uncompressed items. n/a: not computable, the numbered "
             "footnote under the table says why.</p>"]
    if divs:
        parts.append("<h2>Plots</h2><div class='plots'>" + "".join(f"<div class='plot'>{d}</div>"
                                                                    for d in divs.values()) + "</div>")
    elif figures:
        parts.append("<h2>Plots</h2>")
        for name, png in figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(name)}</figcaption></figure>")
    for name, frame in tables.items():
        parts.append(f"<h2>{html.escape(name)}</h2>")
        if notes and name in notes:
            parts.append(f"<p class='note'>{html.escape(notes[name])}</p>")
        parts.append(_table(frame))
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
