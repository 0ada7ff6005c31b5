"""Small PNG plots for Dagster asset metadata and the HTML report.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas directly: no pyplot, so no
global figure registry that would leak memory or clash between threads of a long-running Dagster process. Sizes
are fixed (5 x 3.5 inches at 80 dpi, 400 x 280 pixels) so a plot embedded as a data URI in markdown metadata
stays well under 100 KB.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (5.0, 3.5)
DPI = 80
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; expected {list(columns)}")
    if frame.empty:
        raise ValueError(f"{what}: nothing to plot (the frame has no rows)")
    return frame


def _new_figure() -> Figure:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()  # drop artists now rather than when the garbage collector gets to the figure
    return buf.getvalue()


def _codec_colours(codecs: list[str]) -> dict[str, tuple]:
    """Distinct colours: tab10 up to 10 codecs, tab20 beyond (an experiment may have 12 and more)."""
    cmap = colormaps["tab10" if len(codecs) <= 10 else "tab20"]
    return {codec: cmap(i % cmap.N) for i, codec in enumerate(codecs)}


def _legend(ax, n_entries: int) -> None:
    ax.legend(fontsize=6, ncol=2 if n_entries > 6 else 1, loc="best", framealpha=0.7)


def _finite(frame: pd.DataFrame, *numeric: str) -> pd.DataFrame:
    """``codec`` and the ``numeric`` columns, as numbers, keeping rows where all of them are finite."""
    df = frame.loc[:, ["codec", *numeric]].copy()
    for col in numeric:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df[np.isfinite(df[list(numeric)]).all(axis=1)]


def rate_curve_plot(
    curves: pd.DataFrame, *, rate_label: str, value_label: str, title: str, reference: float | None = None
) -> bytes:
    """One line with markers per codec (columns ``codec, rate, value``) over a log rate axis, as PNG bytes.

    With a ``ratio`` column the x axis is the achieved compression ratio instead (as in the HTML report), and
    with a ``missed`` column (items that missed the target) those points are drawn hollow. ``reference``
    draws the uncompressed score as a dashed line, the ceiling every codec approaches. Rows with a
    non-finite value or a non-positive rate cannot sit on a log axis and are left out.
    """
    _require(curves, ("codec", "rate", "value"), "rate_curve_plot")
    curves = curves.reset_index(drop=True)  # the missed counts are looked up by row below
    x = "ratio" if "ratio" in curves.columns else "rate"
    df = _finite(curves, x, "value")
    df["missed"] = pd.to_numeric(curves.loc[df.index, "missed"], errors="coerce").fillna(0) \
        if "missed" in curves.columns else 0
    df = df[df[x] > 0]
    if df.empty:
        raise ValueError(f"rate_curve_plot: no row has a positive finite {x} and a finite value")
    codecs = sorted(df["codec"].astype(str).unique())
    colours = _codec_colours(codecs)
    fig = _new_figure()
    ax = fig.add_subplot()
    for codec in codecs:
        part = df[df["codec"].astype(str) == codec].sort_values(x)
        ax.plot(part[x], part["value"], linewidth=1.2, color=colours[codec], label=codec)
        for met in (True, False):
            sel = part[(part["missed"] == 0) == met]
            ax.plot(sel[x], sel["value"], linestyle="none", marker="o", markersize=4, color=colours[codec],
                    markerfacecolor=colours[codec] if met else "none")
    if reference is not None and np.isfinite(reference):
        ax.axhline(reference, linestyle="--", linewidth=1, color="0.3", label="uncompressed")
    ax.set_xscale("log")
    ax.set_xlabel("achieved compression ratio (pooled, x:1; hollow: missed the target)" if x == "ratio"
                  else rate_label, fontsize=8)
    ax.set_ylabel(value_label, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, len(codecs) + (reference is not None))
    return _png(fig)


def correlation_heatmap(corr: pd.DataFrame, *, title: str) -> bytes:
    """Task measures (rows) x quality metrics (columns) coloured by r on a fixed [-1, 1] diverging scale.

    The scale is fixed so colours compare across experiments and methods; values are written with 2 decimals and
    undefined coefficients (NaN) are grey cells without text. Rows and columns keep their order of first
    appearance in ``corr``. One method and level must already be selected:
    a repeated (task_measure, quality_metric) pair raises ValueError rather than being silently averaged.
    """
    _require(corr, ("task_measure", "quality_metric", "r"), "correlation_heatmap")
    if corr.duplicated(["task_measure", "quality_metric"]).any():
        raise ValueError("correlation_heatmap: repeated (task_measure, quality_metric) pairs; select one method/level")
    grid = corr.pivot(index="task_measure", columns="quality_metric", values="r").astype(float)
    # keep the caller's order of measures and metrics (pivot would sort them alphabetically)
    grid = grid.reindex(index=pd.unique(corr["task_measure"]), columns=pd.unique(corr["quality_metric"]))
    values = grid.to_numpy()
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    fig = _new_figure()
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-1.0, vmax=1.0, aspect="auto")
    cells = values.size
    font = 7 if cells <= 30 else 6 if cells <= 60 else 5
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=font,
                    color="white" if abs(v) > 0.6 else "black")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [str(c) for c in grid.index], fontsize=7)
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.ax.tick_params(labelsize=6)
    return _png(fig)


def matrix_heatmap(cells: pd.DataFrame, *, rows: Sequence[str], columns: Sequence[str], title: str,
                   value_label: str) -> bytes:
    """A rows x columns grid (columns ``row, column, mean, sd``) coloured by mean on [0, 1], each cell
    written as mean and, below it, ± the spread over seeds; missing cells are grey."""
    _require(cells, ("row", "column", "mean", "sd"), "matrix_heatmap")
    mean = cells.pivot(index="row", columns="column", values="mean").reindex(index=rows, columns=columns)
    sd = cells.pivot(index="row", columns="column", values="sd").reindex(index=rows, columns=columns)
    values = mean.to_numpy(dtype=float)
    fig = _new_figure()
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colormaps["viridis"].with_extremes(bad="0.85"), vmin=0.0,
                      vmax=1.0, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            spread = sd.to_numpy(dtype=float)[i, j]
            text = f"{v:.2f}" + ("" if not np.isfinite(spread) else f"\n±{spread:.2f}")
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="black" if v > 0.6 else "white")
    ax.set_xticks(range(len(columns)), list(columns), rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), list(rows), fontsize=7)
    ax.set_xlabel("tested on", fontsize=8)
    ax.set_ylabel("trained on", fontsize=8)
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, shrink=0.9)
    bar.set_label(value_label, fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return _png(fig)


def scatter_plot(points: pd.DataFrame, *, x_label: str, y_label: str, title: str) -> bytes:
    """Points (columns ``codec, x, y``) coloured by codec with a legend, as PNG bytes."""
    _require(points, ("codec", "x", "y"), "scatter_plot")
    df = _finite(points, "x", "y")
    if df.empty:
        raise ValueError("scatter_plot: no row has finite x and y")
    codecs = sorted(df["codec"].astype(str).unique())
    colours = _codec_colours(codecs)
    fig = _new_figure()
    ax = fig.add_subplot()
    for codec in codecs:
        part = df[df["codec"].astype(str) == codec]
        ax.scatter(part["x"], part["y"], s=10, color=colours[codec], label=codec, alpha=0.8, linewidths=0)
    ax.set_xlabel(x_label, fontsize=8)
    ax.set_ylabel(y_label, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(True, alpha=0.3)
    _legend(ax, len(codecs))
    return _png(fig)


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown image with the PNG inlined as a data URI, which Dagster's markdown metadata renders as is."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("png_markdown: the bytes are not a PNG image")
    safe_alt = alt.replace("[", "(").replace("]", ")").replace("\n", " ")
    return f"![{safe_alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
