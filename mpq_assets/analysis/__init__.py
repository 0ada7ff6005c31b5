"""Pure analysis of measured results: metric-task correlations, BD comparisons of codecs, and plots.

No Dagster and no DuckDB here, so the numbers can be checked against known answers in plain unit tests.
"""

from mpq_assets.analysis.bdrate import BDResult, bd_metric, bd_rate, highest_ratio_kept, monotone_curve
from mpq_assets.analysis.correlation import (
    METHODS,
    Correlation,
    correlate,
    correlation_table,
    rank_quality_metrics,
)
from mpq_assets.analysis.plots import (
    correlation_heatmap,
    matrix_heatmap,
    png_markdown,
    rate_curve_plot,
    scatter_plot,
)

__all__ = [
    "METHODS",
    "BDResult",
    "Correlation",
    "bd_metric",
    "bd_rate",
    "correlate",
    "correlation_heatmap",
    "correlation_table",
    "highest_ratio_kept",
    "matrix_heatmap",
    "monotone_curve",
    "png_markdown",
    "rank_quality_metrics",
    "rate_curve_plot",
    "scatter_plot",
]
