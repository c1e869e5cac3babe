"""Evaluation figures for the 04_evaluate notebook and ``reports/evaluation/*.png``.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot: no global
figure registry to leak from, no backend to select, nothing shown. Jupyter displays a returned
figure inline; :func:`save_figures` writes them as PNG files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from creditrisk.io import write_bytes
from creditrisk.modeling.evaluate import (
    ThresholdDecision,
    calibration_table,
    cumulative_distributions,
    default_labels,
    ks_statistic,
    labels_and_pd,
)
from creditrisk.modeling.scorecard import ScoreScaling, pd_to_score

# Class colours shared by every figure, so goods and bads read the same everywhere.
_GOOD = "tab:blue"
_BAD = "tab:red"
_REFERENCE = "0.6"  # grey for diagonals and base rates

# A figure name becomes a file name: no separators, no leading dot.
_FIGURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _figure(width: float = 6.0, height: float = 4.5) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def roc_curve_figure(y_true: ArrayLike, pd: ArrayLike) -> Figure:
    """ROC curve (true-positive against false-positive rate, defaults positive) with AUC/Gini.

    One axes with two lines: the curve and the diagonal of a random ranking.
    """
    labels, probabilities = labels_and_pd(y_true, pd, both_classes=True)
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, probabilities)
    auc = roc_auc_score(labels, probabilities)
    figure = _figure(5.0, 5.0)
    ax = figure.subplots()
    ax.plot(
        false_positive_rate,
        true_positive_rate,
        color=_BAD,
        label=f"model (AUC {auc:.3f}, Gini {2 * auc - 1:.3f})",
    )
    ax.plot([0, 1], [0, 1], color=_REFERENCE, linestyle="--", label="random")
    ax.set(
        xlabel="false-positive rate (repaid loans declined)",
        ylabel="true-positive rate (defaults declined)",
        title="ROC curve",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(loc="lower right")
    return figure


def precision_recall_figure(y_true: ArrayLike, pd: ArrayLike) -> Figure:
    """Precision-recall curve for defaults, with the base rate a random ranking achieves.

    One axes with two lines: the curve and the base rate.
    """
    labels, probabilities = labels_and_pd(y_true, pd, both_classes=True)
    precision, recall, _ = precision_recall_curve(labels, probabilities)
    figure = _figure(5.0, 5.0)
    ax = figure.subplots()
    ax.plot(recall, precision, color=_BAD, drawstyle="steps-post", label="model")
    ax.axhline(labels.mean(), color=_REFERENCE, linestyle="--", label="base rate")
    ax.set(
        xlabel="recall (share of defaults flagged)",
        ylabel="precision (defaults among flagged)",
        title="Precision-recall curve",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper right")
    return figure


def calibration_figure(y_true: ArrayLike, pd: ArrayLike, n_bins: int = 10) -> Figure:
    """Reliability curve over equal-frequency PD bins, with Wilson intervals and bin counts.

    Two axes sharing the PD axis: above, observed default rate against mean PD per bin with the
    diagonal of perfect calibration (two lines); below, the number of applications per bin,
    each bar spanning the bin's PD range.
    """
    table = calibration_table(y_true, pd, n_bins)
    figure = _figure(6.0, 6.0)
    curve_ax, count_ax = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top = float(max(table["pd_max"].max(), table["wilson_upper"].max()))
    curve_ax.plot([0, top], [0, top], color=_REFERENCE, linestyle="--", label="perfect calibration")
    curve_ax.errorbar(
        table["mean_pd"],
        table["default_rate"],
        # A bin with no default has a Wilson lower bound of 0 up to rounding: clip at 0.
        yerr=[
            (table["default_rate"] - table["wilson_lower"]).clip(lower=0),
            (table["wilson_upper"] - table["default_rate"]).clip(lower=0),
        ],
        color=_BAD,
        marker="o",
        label="observed (95% Wilson interval)",
    )
    curve_ax.set(ylabel="observed default rate", title="Calibration (reliability) curve")
    curve_ax.legend(loc="upper left")
    # Equal-frequency bins can be very narrow; keep every bar visible.
    widths = np.maximum(table["pd_max"] - table["pd_min"], 0.005 * top)
    count_ax.bar(
        table["pd_min"],
        table["n"],
        width=widths,
        align="edge",
        color=_REFERENCE,
        edgecolor="white",  # adjacent equal-frequency bins would otherwise merge into one block
    )
    count_ax.set(xlabel="predicted PD", ylabel="applications")
    return figure


def ks_figure(y_true: ArrayLike, pd: ArrayLike) -> Figure:
    """Cumulative PD distributions of goods and bads, with the KS gap marked.

    One axes with three lines: the goods' CDF, the bads' CDF and the KS gap between them.
    """
    curves = cumulative_distributions(y_true, pd)
    ks, ks_pd = ks_statistic(y_true, pd)
    at = curves.loc[curves["pd"] == ks_pd].iloc[0]
    figure = _figure()
    ax = figure.subplots()
    ax.step(curves["pd"], curves["goods_cdf"], where="post", color=_GOOD, label="repaid")
    ax.step(curves["pd"], curves["bads_cdf"], where="post", color=_BAD, label="defaulted")
    ax.plot(
        [ks_pd, ks_pd],
        [at["bads_cdf"], at["goods_cdf"]],
        color="black",
        linewidth=2,
        label=f"KS {ks:.3f} at PD {ks_pd:.3f}",
    )
    ax.set(
        xlabel="predicted PD",
        ylabel="cumulative share at or below PD",
        title="Kolmogorov-Smirnov chart",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    return figure


def score_distribution_figure(
    y_true: ArrayLike, scores: ArrayLike, *, xlabel: str = "score", bins: int = 40
) -> Figure:
    """Distribution of scores (or PDs) by outcome, each class normalised to a density.

    One axes with two histograms (``ax.containers``): repaid and defaulted.
    """
    labels = default_labels(y_true)
    values = np.asarray(scores, dtype=float)
    if len(values) != len(labels):
        raise ValueError(f"scores has {len(values)} values but y_true has {len(labels)}")
    edges = np.histogram_bin_edges(values, bins=bins).tolist()  # shared by both classes
    figure = _figure()
    ax = figure.subplots()
    for outcome, colour, name in ((0, _GOOD, "repaid"), (1, _BAD, "defaulted")):
        ax.hist(
            values[labels == outcome],
            bins=edges,
            density=True,
            alpha=0.5,
            color=colour,
            label=f"{name} (n={int((labels == outcome).sum())})",
        )
    ax.set(xlabel=xlabel, ylabel="density", title=f"Distribution of {xlabel} by outcome")
    ax.legend()
    return figure


def confusion_matrix_figure(decision: ThresholdDecision) -> Figure:
    """Approved/declined against repaid/defaulted at the chosen threshold, counts and shares.

    One axes: a 2x2 heat map with one text per cell.
    """
    counts = decision.confusion_matrix()
    figure = _figure(5.0, 4.5)
    ax = figure.subplots()
    ax.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        shade = "white" if count > counts.max() / 2 else "black"
        ax.text(
            column,
            row,
            f"{count}\n{count / decision.n:.1%}",
            ha="center",
            va="center",
            color=shade,
        )
    ax.set_xticks([0, 1], labels=["approved", "declined"])
    ax.set_yticks([0, 1], labels=["repaid", "defaulted"])
    ax.set(
        xlabel="decision",
        ylabel="outcome",
        title=f"Decisions at PD threshold {decision.threshold:.3f}",
    )
    return figure


def importance_figure(
    importance: pandas.DataFrame, *, top_n: int = 20, column: str = "mean_abs_shap"
) -> Figure:
    """Horizontal bars of the ``top_n`` most important features, the most important on top.

    Args:
        importance: Output of :func:`creditrisk.modeling.explain.global_importance`.
        top_n: Number of features shown.
        column: Importance measure to plot (``mean_abs_shap``, ``gain``, a share column...).
    """
    top = importance.sort_values(column, ascending=False, kind="stable").head(top_n)
    figure = _figure(7.0, 0.3 * len(top) + 1.5)
    ax = figure.subplots()
    ax.barh(top["feature"].astype(str)[::-1], top[column].to_numpy()[::-1], color=_BAD)
    ax.set(xlabel=column, title=f"Top {len(top)} features by {column}")
    return figure


def evaluation_figures(
    y_true: ArrayLike,
    pd: ArrayLike,
    *,
    decision: ThresholdDecision | None = None,
    importance: pandas.DataFrame | None = None,
    scaling: ScoreScaling | None = None,
    n_bins: int = 10,
) -> dict[str, Figure]:
    """The standard evaluation figures, keyed by the file name they are saved under.

    Args:
        y_true: 1 = default, 0 = repaid.
        pd: Predicted probability of default.
        decision: Adds ``confusion_matrix`` at its threshold.
        importance: Adds ``feature_importance`` (from ``global_importance``).
        scaling: Score scaling for ``score_distribution``; the defaults when omitted.
        n_bins: Bins of the calibration curve.
    """
    figures = {
        "roc_curve": roc_curve_figure(y_true, pd),
        "precision_recall": precision_recall_figure(y_true, pd),
        "calibration": calibration_figure(y_true, pd, n_bins),
        "ks": ks_figure(y_true, pd),
        "score_distribution": score_distribution_figure(y_true, pd_to_score(pd, scaling)),
    }
    if decision is not None:
        figures["confusion_matrix"] = confusion_matrix_figure(decision)
    if importance is not None:
        figures["feature_importance"] = importance_figure(importance)
    return figures


def save_figures(
    figures: Mapping[str, Figure], directory: Path | str, *, dpi: int = 120
) -> dict[str, Path]:
    """Write each figure to ``<directory>/<name>.png`` atomically.

    Each PNG is rendered in memory, written under a temporary name in ``directory`` and
    renamed over the destination (``os.replace``), so readers never see a partial image.

    Args:
        figures: Figures by name; a name must be a plain file name without extension.
        directory: Target directory, created if needed.
        dpi: Resolution of the PNGs.

    Returns:
        The path written per name.

    Raises:
        ValueError: When a name is not a plain file name (path separators, leading dot).
    """
    bad_names = [name for name in figures if not _FIGURE_NAME.fullmatch(name)]
    if bad_names:
        raise ValueError(f"figure names must be plain file names, got {bad_names}")
    directory = Path(directory)
    written = {}
    for name, figure in figures.items():
        written[name] = write_bytes(directory / f"{name}.png", figure_png(figure, dpi=dpi))
    return written


def figure_png(figure: Figure, *, dpi: int = 120) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()
