"""Plots come back as small, valid PNGs of the declared size, and embed losslessly as markdown data URIs."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mpq_assets.analysis import correlation_heatmap, png_markdown, rate_curve_plot, scatter_plot
from mpq_assets.analysis.plots import DPI, FIGSIZE

pytestmark = pytest.mark.fast  # the `make check` tier

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_SIZE = (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
MAX_BYTES = 80_000


def _curves(n_codecs: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for c in range(n_codecs):
        for ratio in (5, 10, 20, 50, 100, 200, 500):
            rate = 24.0 / ratio
            rows.append((f"codec{c}", rate, 0.8 - 0.05 * np.log(ratio) + rng.normal(scale=0.01)))
    return pd.DataFrame(rows, columns=["codec", "rate", "value"])


def _check_png(png: bytes) -> None:
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < MAX_BYTES
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == EXPECTED_SIZE


def test_rate_curve_plot_with_twelve_codecs_and_reference():
    png = rate_curve_plot(_curves(), rate_label="bits per pixel", value_label="top-1", title="classification",
                          reference=0.81)
    _check_png(png)


def test_rate_curve_plot_skips_points_a_log_axis_cannot_show():
    curves = pd.concat([_curves(2), pd.DataFrame({"codec": ["codec0", "codec1"], "rate": [0.0, 1.0],
                                                 "value": [0.5, np.nan]})])
    _check_png(rate_curve_plot(curves, rate_label="bpp", value_label="top-1", title="t"))
    with pytest.raises(ValueError, match="positive finite rate"):
        rate_curve_plot(pd.DataFrame({"codec": ["a"], "rate": [0.0], "value": [1.0]}), rate_label="r",
                        value_label="v", title="t")


def test_correlation_heatmap_with_nan_cells():
    measures = ["classification.top1", "classification.top5", "asr.wer", "separation.sdr"]
    metrics = ["psnr", "ssim", "ms_ssim", "lpips", "dists", "stoi", "pesq", "snr"]
    rng = np.random.default_rng(1)
    corr = pd.DataFrame([(t, q, rng.uniform(-1, 1)) for t in measures for q in metrics],
                        columns=["task_measure", "quality_metric", "r"])
    corr.loc[[0, 5, 17], "r"] = np.nan
    _check_png(correlation_heatmap(corr, title="spearman, partition level"))
    with pytest.raises(ValueError, match="repeated"):
        correlation_heatmap(pd.concat([corr, corr.head(1)]), title="t")


def test_scatter_plot():
    points = _curves().rename(columns={"rate": "x", "value": "y"})
    _check_png(scatter_plot(points, x_label="PSNR (dB)", y_label="top-1", title="per partition"))


@pytest.mark.parametrize(
    ("plot", "frame", "kwargs"),
    [
        (rate_curve_plot, pd.DataFrame(columns=["codec", "rate", "value"]),
         {"rate_label": "r", "value_label": "v", "title": "t"}),
        (correlation_heatmap, pd.DataFrame(columns=["task_measure", "quality_metric", "r"]), {"title": "t"}),
        (scatter_plot, pd.DataFrame(columns=["codec", "x", "y"]), {"x_label": "x", "y_label": "y", "title": "t"}),
    ],
)
def test_empty_frame_is_a_clear_error(plot, frame, kwargs):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot(frame, **kwargs)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['value'\]"):
        rate_curve_plot(pd.DataFrame({"codec": ["a"], "rate": [1.0]}), rate_label="r", value_label="v", title="t")


def test_png_markdown_round_trip():
    png = scatter_plot(pd.DataFrame({"codec": ["a", "b"], "x": [1.0, 2.0], "y": [2.0, 1.0]}),
                       x_label="x", y_label="y", title="t")
    md = png_markdown(png, "top-1 vs PSNR")
    match = re.fullmatch(r"!\[(?P<alt>[^\]]*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)\)", md)
    assert match is not None
    assert match["alt"] == "top-1 vs PSNR"
    assert base64.b64decode(match["data"], validate=True) == png
    with pytest.raises(ValueError, match="not a PNG"):
        png_markdown(b"GIF89a", "x")


@pytest.mark.fast
def test_rate_curve_plot_on_the_ratio_axis_draws_missed_points_hollow():
    curves = pd.DataFrame({"codec": ["jpeg"] * 3, "rate": [1.2, 0.24, 0.1], "ratio": [20.0, 100.0, 240.0],
                           "value": [0.8, 0.5, 0.3], "missed": [0, 0, 11]})
    _check_png(rate_curve_plot(curves, rate_label="bpp", value_label="agreement", title="t", reference=1.0))
    with pytest.raises(ValueError, match="positive finite ratio"):
        rate_curve_plot(curves.assign(ratio=0.0), rate_label="bpp", value_label="v", title="t")
