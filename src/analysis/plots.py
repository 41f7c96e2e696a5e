"""Charts for reports and dashboards (matplotlib + seaborn, colour-blind-safe).

Each function takes a table from :mod:`analysis.report` and returns a matplotlib
Figure whose caption states the population, as-of date and source. Nothing here
computes a metric, and nothing sets a matplotlib backend (so charts show inline in
Papermill runs).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

#: Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442",
           "#000000"]
BAND_COLOURS = {"satisfactory": "#009E73", "at_risk": "#F0E442",
                "moderate_chronic": "#E69F00", "severe_chronic": "#D55E00"}
MONTHS = ["Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Jan", "Feb", "Mar", "Apr", "May",
          "Jun"]


def _caption(fig: Figure, caption: str) -> None:
    fig.text(0.01, 0.005, caption, fontsize=7.5, color="#444444", ha="left",
             va="bottom", wrap=True)


def _style() -> None:
    sns.set_theme(style="whitegrid", palette=PALETTE, font_scale=0.9)


def trend_chart(trend: pd.DataFrame, title: str, caption: str,
                monthly: bool = True) -> Figure:
    """Year-to-date chronic-absence rate by month (this year and last) or by year."""
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    data = trend.dropna(subset=["chronic_absence_rate"])
    if monthly and "school_month" in data:
        for i, (year, rows) in enumerate(data.groupby("school_year", sort=True)):
            ax.plot(rows["school_month"], rows["chronic_absence_rate"], marker="o",
                    color=PALETTE[i % len(PALETTE)], label=year)
            ax.fill_between(rows["school_month"], rows["ci_low"], rows["ci_upp"],
                            color=PALETTE[i % len(PALETTE)], alpha=0.15)
        ax.set_xticks(range(12), MONTHS)
        months = data["school_month"]
        ax.set_xlim(max(months.min() - 0.5, -0.5), min(months.max() + 0.5, 11.5))
        ax.set_xlabel("Month (figures are year to date at each month end)")
        ax.legend(title="School year", frameon=False)
    else:
        ax.errorbar(data["school_year"], data["chronic_absence_rate"],
                    yerr=[data["chronic_absence_rate"] - data["ci_low"],
                          data["ci_upp"] - data["chronic_absence_rate"]],
                    marker="o", color=PALETTE[0], capsize=3)
        ax.set_xlabel("School year")
    ax.yaxis.set_major_formatter(PercentFormatter(1, decimals=0))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("Chronically absent")
    ax.set_title(title, loc="left")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def bands_chart(bands: pd.DataFrame, title: str, caption: str) -> Figure:
    """Share of students in each attendance band, as one stacked bar."""
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 2.4))
    left = 0.0
    for _, row in bands.iterrows():
        share = 0 if pd.isna(row["share"]) else row["share"]
        ax.barh(0, share, left=left, color=BAND_COLOURS[row["band"]],
                label=row["label"])
        if share >= 0.06:
            ax.text(left + share / 2, 0, f"{share:.0%}", ha="center", va="center",
                    fontsize=9)
        left += share
    ax.set_xlim(0, 1)
    ax.set_yticks([])
    ax.xaxis.set_major_formatter(PercentFormatter(1, decimals=0))
    ax.legend(ncol=2, fontsize=7.5, frameon=False, loc="upper center",
              bbox_to_anchor=(0.5, -0.35))
    ax.set_title(title, loc="left")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def rate_chart(rows: pd.DataFrame, label: str, title: str, caption: str,
               reference: float | None = None) -> Figure:
    """Rates with 95% intervals, one row per category (grades, groups or schools).

    Rows without a rate (hidden or coded for privacy) are listed with their display
    text instead of a point, so readers see that a figure exists but is withheld.
    A rate without an interval (a published rate with no group size) is drawn as
    an open circle.
    """
    _style()
    rows = rows.reset_index(drop=True)
    height = max(2.2, 0.32 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(7.5, height))
    y = range(len(rows))[::-1]
    for pos, (_, row) in zip(y, rows.iterrows(), strict=True):
        rate = row["chronic_absence_rate"]
        if pd.isna(rate):
            ax.text(0.005, pos, row.get("rate_display", "not shown"), va="center",
                    fontsize=8, color="#666666", transform=ax.get_yaxis_transform())
            continue
        rate = float(rate)
        if pd.isna(row["ci_low"]) or pd.isna(row["ci_upp"]):
            # A published rate without a group size has no interval.
            ax.plot(rate, pos, "o", color=PALETTE[0], markerfacecolor="white")
            continue
        ax.errorbar(rate, pos, xerr=[[rate - float(row["ci_low"])],
                                     [float(row["ci_upp"]) - rate]],
                    fmt="o", color=PALETTE[0], ecolor="#7aa6c9", capsize=2)
    if reference is not None:
        ax.axvline(reference, color=PALETTE[3], linestyle="--", linewidth=1,
                   label=f"Reference {reference:.1%}")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_yticks(list(y), rows[label].astype(str).tolist())
    ax.xaxis.set_major_formatter(PercentFormatter(1, decimals=0))
    ax.set_xlim(left=0)
    ax.set_xlabel("Chronically absent (95% interval)")
    ax.set_title(title, loc="left")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def change_chart(overview: pd.DataFrame, column: str, title: str,
                 caption: str) -> Figure:
    """Change in percentage points per unit, sorted, rises in orange and falls in
    blue."""
    _style()
    rows = overview.dropna(subset=[column]).sort_values(column)
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.28 * len(rows) + 1.2)))
    colours = [PALETTE[1] if v > 0 else PALETTE[0] for v in rows[column]]
    ax.barh(rows["name"].astype(str), rows[column], color=colours)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_xlabel("Change in percentage points")
    ax.set_title(title, loc="left")
    _caption(fig, caption)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
