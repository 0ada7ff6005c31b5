"""Interactive report figures (Bokeh): what a reader hovers over to see which codec, ratio, setting and items a
point stands for.

- :func:`rate_figure`: one measure against the achieved compression ratio (log axis), a line per codec over
  its distinct operating points, points that missed their target drawn hollow, the uncompressed score as a
  dashed line; where every point's rate is the same multiple of 1/ratio (one item format), a second axis on
  top reads bits per pixel or kbps.
- :func:`scatter_figure`: a quality metric against a task measure over the distinct points, with the
  correlation and its interval in the title.

:func:`page_head` is the inline BokehJS (core only, ~1.2 MB) so a page needs no network; :func:`embed` gives
the script and the divs of a set of figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# ColorBrewer Dark2 and Set1: distinguishable on white, eight codecs before a colour repeats
_PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#377eb8", "#e41a1c")
WIDTH, HEIGHT = 640, 340


def _colours(codecs: Sequence[str]) -> dict[str, str]:
    return {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(sorted(codecs))}


def rate_figure(points: pd.DataFrame, *, measure: str, label: str, rate_unit: str,
                reference: float | None = None, title: str = "") -> object:
    """``points``: one row per distinct point with ``codec``, ``point``, ``targets``, ``ratio``, ``rate``,
    ``value``, ``missed`` (items that missed the target), ``items``, ``setting``."""
    from bokeh.models import ColumnDataSource, HoverTool, LogAxis, Range1d, Span
    from bokeh.plotting import figure

    data = points.dropna(subset=["ratio", "value"]).sort_values(["codec", "ratio"])
    lo, hi = float(data["ratio"].min()), float(data["ratio"].max())
    fig = figure(width=WIDTH, height=HEIGHT, x_axis_type="log", title=title or measure,
                 x_range=Range1d(lo / 1.3, hi * 1.3), x_axis_label="achieved compression ratio (pooled, x:1)",
                 y_axis_label=label, toolbar_location="right", tools="pan,wheel_zoom,box_zoom,reset,save")
    colours = _colours(list(data["codec"].unique()))
    for codec, group in data.groupby("codec"):
        source = ColumnDataSource(group.assign(met=group["missed"] == 0))
        fig.line("ratio", "value", source=source, color=colours[codec], legend_label=str(codec), line_width=2)
        for met, alpha in ((True, 1.0), (False, 0.0)):
            part = group[(group["missed"] == 0) == met]
            if len(part):
                fig.scatter("ratio", "value", source=ColumnDataSource(part), size=9, color=colours[codec],
                            fill_alpha=alpha, line_width=2, legend_label=str(codec))
    fig.add_tools(HoverTool(tooltips=[
        ("codec", "@codec"), ("point", "@point"), ("targets", "@targets"), ("ratio", "@ratio{0.0}:1"),
        (rate_unit, "@rate{0.000}"), ("setting", "@setting"), ("items", "@items (@missed missed the target)"),
        (measure, "@value{0.000}")]))
    if reference is not None and np.isfinite(reference):
        fig.add_layout(Span(location=float(reference), dimension="width", line_dash="dashed", line_color="#555",
                            line_width=1.5))
        fig.scatter([lo], [float(reference)], alpha=0, legend_label=f"uncompressed ({reference:.3g})")
    product = (data["rate"] * data["ratio"]).dropna()
    if len(product) and float(product.std() / product.mean() if len(product) > 1 else 0) < 1e-3:
        k = float(product.mean())  # rate = k / ratio for every point: a reversed log axis reads the rate
        fig.extra_x_ranges = {"rate": Range1d(k / (lo / 1.3), k / (hi * 1.3))}
        fig.add_layout(LogAxis(x_range_name="rate", axis_label=f"achieved rate ({rate_unit})"), "above")
    _legend_outside(fig)
    return fig


def _legend_outside(fig: object) -> None:
    """The legend beside the plot, not over the points; a click hides a codec."""
    legend = fig.legend[0]
    legend.click_policy = "hide"
    legend.label_text_font_size = "9pt"
    fig.add_layout(legend, "right")


def scatter_figure(points: pd.DataFrame, *, x_label: str, y_label: str, title: str, subtitle: str = "") -> object:
    """``points``: ``codec``, ``point``, ``ratio``, ``x``, ``y`` per distinct point."""
    from bokeh.models import ColumnDataSource, HoverTool, Title
    from bokeh.plotting import figure

    fig = figure(width=WIDTH, height=HEIGHT, title=title, x_axis_label=x_label, y_axis_label=y_label,
                 tools="pan,wheel_zoom,box_zoom,reset,save")
    if subtitle:
        fig.add_layout(Title(text=subtitle, text_font_style="normal", text_font_size="9pt"), "above")
    colours = _colours(list(points["codec"].unique()))
    for codec, group in points.groupby("codec"):
        fig.scatter("x", "y", source=ColumnDataSource(group), size=9, color=colours[codec], legend_label=str(codec))
    fig.add_tools(HoverTool(tooltips=[("codec", "@codec"), ("point", "@point"), ("ratio", "@ratio{0.0}:1"),
                                      (x_label, "@x{0.000}"), (y_label, "@y{0.000}")]))
    _legend_outside(fig)
    return fig


def page_head() -> str:
    """The ``<script>`` of BokehJS itself, inline (no CDN: the report opens offline)."""
    from bokeh.resources import Resources

    return Resources(mode="inline", components=["bokeh"]).render_js()


def embed(figures: Mapping[str, object]) -> tuple[str, dict[str, str]]:
    """(the script that draws them, name -> the ``<div>`` to place) for ``figures``."""
    from bokeh.embed import components

    if not figures:
        return "", {}
    script, divs = components(dict(figures))
    return script, dict(divs)
