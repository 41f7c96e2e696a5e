"""Charts of the equity analyses: forest plots, ratios over time, rates by band.

Each function takes a table from :mod:`analysis.equity` and returns a matplotlib
Figure with a caption stating population, definition, as-of date and source.
Nothing here computes a statistic, and nothing sets a matplotlib backend.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from analysis.plots import PALETTE
from analysis.schema import GROUP_TYPE_LABELS

#: Okabe-Ito vermillion for flagged groups, blue for the others.
FLAG_COLOUR = "#D55E00"
PLAIN_COLOUR = "#0072B2"


def _style() -> None:
    sns.set_theme(style="whitegrid", palette=PALETTE, font_scale=0.9)


def _caption(fig: Figure, caption: str) -> None:
    fig.text(0.01, 0.005, caption, fontsize=7.5, color="#444444", ha="left",
             va="bottom", wrap=True)


def _ratio_axis(ax, low: float, high: float, axis: str = "x") -> None:
    """Log scale around 1, with plain ticks (0.5, 1, 2 ...) that do not crowd."""
    low, high = min(low, 0.8), max(high, 1.25)
    candidates = [0.1, 0.2, 0.5, 1, 2, 5, 10]
    if high / low < 4:
        candidates = [0.25, 0.5, 0.67, 1, 1.5, 2, 3, 4]
    if high / low < 2:
        candidates = [0.5, 0.67, 0.8, 1, 1.25, 1.5, 2]
    ticks = [t for t in candidates if low / 1.15 <= t <= high * 1.15]
    scale = ax.set_xscale if axis == "x" else ax.set_yscale
    limits = ax.set_xlim if axis == "x" else ax.set_ylim
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    target = ax.xaxis if axis == "x" else ax.yaxis
    scale("log")
    limits(low / 1.15, high * 1.15)
    set_ticks(ticks)
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def forest_plot(rows: pd.DataFrame, title: str, caption: str,
                threshold: float | None = None, label: str = "label",
                value: str = "ratio", low: str = "ratio_low", upp: str = "ratio_upp",
                xlabel: str = "Risk ratio against all other students (log scale)",
                lower_threshold: bool = False) -> Figure:
    """Ratios with their intervals, one line per group; flagged groups in orange.

    Parameters
    ----------
    rows : DataFrame
        One row per group with ``label``, the ratio and its interval, and
        ``flagged``. Rows without a ratio are listed under the chart instead.
    title, caption : str
    threshold : float, optional
        Drawn as a dashed line (e.g. 1.5).
    label, value, low, upp : str
        Column names.
    xlabel : str
    lower_threshold : bool
        Draw the threshold at ``1 / threshold`` (for supportive actions).
    """
    _style()
    shown = rows[rows[value].notna()].reset_index(drop=True)
    hidden = rows[rows[value].isna()]
    height = 1.2 + 0.32 * max(len(shown), 1)
    fig, ax = plt.subplots(figsize=(7.5, height))
    if shown.empty:
        ax.text(0.5, 0.5, "No ratio can be shown (see the notes below)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        y = np.arange(len(shown))[::-1]
        flagged = shown.get("flagged", pd.Series(False, index=shown.index))
        colours = np.where(flagged.fillna(False).astype(bool), FLAG_COLOUR,
                           PLAIN_COLOUR)
        ax.hlines(y, shown[low], shown[upp], color=colours, linewidth=2)
        ax.scatter(shown[value], y, color=colours, zorder=3, s=28)
        ax.axvline(1, color="#444444", linewidth=1)
        ax.set_yticks(y, shown[label])
        span = [float(np.nanmin(shown[low])), float(np.nanmax(shown[upp]))]
        if threshold:
            line = 1 / threshold if lower_threshold else threshold
            span = [min(span[0], line), max(span[1], line)]
            ax.axvline(line, color=FLAG_COLOUR, linestyle="--", linewidth=1)
            ax.text(line, 1.0, f" threshold {line:.2g}", color=FLAG_COLOUR,
                    fontsize=8, va="bottom", ha="left",
                    transform=ax.get_xaxis_transform())
        _ratio_axis(ax, *span)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
    ax.set_title(title, loc="left", pad=14)
    note = caption
    if len(hidden):
        note = (f"Not shown: {', '.join(hidden[label].astype(str))} (too few "
                f"students, or hidden; see the table). " + caption)
    _caption(fig, note)
    fig.tight_layout(rect=(0, 0.08 if len(hidden) else 0.05, 1, 1))
    return fig


def ratios_over_time_chart(over_time: pd.DataFrame, title: str, caption: str,
                           value: str = "ratio", low: str = "ratio_low",
                           upp: str = "ratio_upp",
                           ylabel: str = "Risk ratio (log scale)",
                           log: bool = True) -> Figure:
    """One panel per group dimension, one line per group, across as-of dates."""
    _style()
    data = over_time[over_time[value].notna()]
    dims = [d for d in GROUP_TYPE_LABELS if d in set(data["group_type"])]
    if not dims:
        fig, ax = plt.subplots(figsize=(7.5, 1.6))
        ax.text(0.5, 0.5, "No group has a ratio to show over time", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        _caption(fig, caption)
        return fig
    cols = 2 if len(dims) > 1 else 1
    rows_n = int(np.ceil(len(dims) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(7.5, 2.4 * rows_n + 0.6),
                             squeeze=False, sharex=True)
    for ax, dim in zip(axes.ravel(), dims, strict=False):
        part = data[data["group_type"] == dim]
        for i, (group, lines) in enumerate(part.groupby("group_value", sort=True)):
            colour = PALETTE[i % len(PALETTE)]
            ax.plot(lines["as_of_date"], lines[value], marker="o", markersize=3,
                    color=colour, label=group)
            if low in lines and lines[low].notna().any():
                ax.fill_between(lines["as_of_date"], lines[low], lines[upp],
                                color=colour, alpha=0.12)
        if log:
            ax.axhline(1, color="#444444", linewidth=1)
            bounds = part[[low, upp]] if low in part else part[[value]]
            _ratio_axis(ax, float(np.nanmin(bounds.to_numpy())),
                        float(np.nanmax(bounds.to_numpy())), axis="y")
        else:
            ax.axhline(0, color="#444444", linewidth=1)
        ax.set_title(GROUP_TYPE_LABELS.get(dim, dim), loc="left", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="best")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in axes.ravel()[len(dims):]:
        ax.set_axis_off()
    fig.supylabel(ylabel, fontsize=9)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def band_rates_chart(bands: pd.DataFrame, group: str, outcome: str, title: str,
                     caption: str) -> Figure:
    """Share of a group and of all other students with an action, band by band."""
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    x = np.arange(len(bands))
    ax.bar(x - 0.2, bands["rate"], width=0.4, color=FLAG_COLOUR, label=group)
    ax.bar(x + 0.2, bands["comparison_rate"], width=0.4, color=PLAIN_COLOUR,
           label="All other students")
    ax.set_xticks(x, bands["band_label"], fontsize=8)
    ax.yaxis.set_major_formatter(PercentFormatter(1, decimals=0))
    ax.set_ylabel(outcome)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title, loc="left")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig
