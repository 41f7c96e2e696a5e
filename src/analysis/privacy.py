"""The privacy gate: the one step every public figure passes through.

:func:`publish` turns the aggregate table into a public release:

1. **Primary suppression** - a cell whose group has ``min_group_size`` students or
   fewer (10 by default, as California and Oakland do) is hidden.
2. **Complementary suppression** - within every set of cells that add up to a shown
   total (the groups of one dimension, the grades of a school, each yes/no pair), a
   lone hidden cell could be worked back out by subtraction, so the next-smallest
   cell of the set is hidden too.
3. **Top/bottom coding** - rates near 0% or 100% are shown only as "at most" or "at
   least" a bound that widens as the group gets smaller (DOMAIN.md A4).
4. **Counts** - student counts and day totals are dropped unless ``show_counts``.

Reports and dashboards never suppress on their own: public outputs read only what
this module returns.

Notes
-----
Complementary suppression here covers the additive sets inside one school or
district at one as-of date. Differencing across as-of dates, and the school-to-district
roll-up, are not yet audited; see the open issue on privacy-safe public figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.log import logger
from analysis.schema import ALL_GRADES

#: (smallest group size, bound): a rate within ``bound`` of 0 or 1 is coded.
TOP_BOTTOM_BANDS: tuple[tuple[int, float], ...] = (
    (300, 0.01),   # >= 300 students: <= 1% / >= 99%
    (100, 0.02),   # 100-299: <= 2% / >= 98%
    (40, 0.05),    # 40-99: <= 5% / >= 95%
    (20, 0.10),    # 20-39: <= 10% / >= 90%  (DOMAIN.md marks this band [U])
    (0, 0.20),     # 11-19: <= 20% / >= 80%  (DOMAIN.md marks this band [U])
)

COUNT_COLUMNS = ("students_enrolled", "students", "chronically_absent", "satisfactory",
                 "at_risk", "moderate_chronic", "severe_chronic", "tier2", "tier3",
                 "days_enrolled", "days_absent")
RATE_COLUMNS = ("chronic_absence_rate", "ci_low", "ci_upp", "attendance_rate")

#: Columns that identify one cell of a release.
CELL_KEYS = ("source", "definition", "school_year", "as_of_date", "level", "district_id",
             "school_id", "grade", "group_type", "group_value")


def _bound(students: float) -> float:
    for smallest, bound in TOP_BOTTOM_BANDS:
        if students >= smallest:
            return bound
    return TOP_BOTTOM_BANDS[-1][1]


def code_rate(rate: float, students: float) -> str:
    """Format a rate for the public, coding it near 0% and 100% by group size.

    >>> code_rate(0.004, 350), code_rate(0.25, 350), code_rate(0.97, 50)
    ('≤1%', '25.0%', '≥95%')
    """
    if pd.isna(rate) or pd.isna(students):
        return "suppressed"
    bound = _bound(students)
    if rate <= bound:
        return f"≤{bound:.0%}"
    if rate >= 1 - bound:
        return f"≥{1 - bound:.0%}"
    return f"{rate:.1%}"


def _additive_sets(frame: pd.DataFrame) -> pd.Series:
    """Label each row with the set of cells it adds up with (NA for totals).

    Within one unit, as-of date and definition: the grades of the ``all`` group form
    one set; the values of each other group type, at one grade (or all grades), form
    one set each.
    """
    unit = frame[["source", "definition", "as_of_date", "level", "district_id",
                  "school_id"]].astype("string").fillna("").agg("|".join, axis=1)
    is_grade = (frame["group_type"] == "all") & (frame["grade"] != ALL_GRADES)
    is_group = frame["group_type"] != "all"
    label = pd.Series(pd.NA, index=frame.index, dtype="string")
    label[is_grade] = unit[is_grade] + "|grades"
    label[is_group] = (unit[is_group] + "|" + frame.loc[is_group, "grade"].astype(str)
                       + "|" + frame.loc[is_group, "group_type"].astype(str))
    return label


def suppress(aggregate: pd.DataFrame, min_group_size: int = 10) -> pd.DataFrame:
    """Mark the cells to hide: primary, then complementary, until nothing changes.

    Returns a copy with ``suppressed`` (bool) and ``suppression`` (why) columns; the
    values themselves are still there, for the audit. Use :func:`publish` for a
    release.
    """
    frame = aggregate.copy()
    size = frame["students"].astype("Float64")
    primary = size.isna() | (size <= min_group_size)
    if "suppressed_at_source" in frame:
        primary |= frame["suppressed_at_source"].fillna(False).astype(bool)
    frame["suppressed"] = primary.astype(bool).to_numpy()
    frame["suppression"] = np.where(frame["suppressed"],
                                    f"{min_group_size} or fewer students", "")

    # A lone hidden cell in an additive set is recoverable from the total: hide the
    # next-smallest cell of the set, and repeat until every set is safe.
    sets = _additive_sets(frame)
    in_set = sets.notna()
    for _ in range(10):
        hidden = frame["suppressed"].where(in_set, False)
        hidden_in_set = hidden.groupby(sets).transform("sum").where(in_set, 0)
        candidates = frame[in_set & (hidden_in_set == 1) & ~frame["suppressed"]]
        if candidates.empty:
            break
        size = candidates["students"].astype("Float64").fillna(0)
        chosen = (candidates.assign(_size=size).sort_values("_size", kind="stable")
                  .groupby(sets[candidates.index], sort=False).head(1).index)
        frame.loc[chosen, "suppressed"] = True
        frame.loc[chosen, "suppression"] = "complementary"
    return frame


def publish(aggregate: pd.DataFrame, min_group_size: int = 10,
            show_counts: bool = False) -> pd.DataFrame:
    """Return the public release of an aggregate table.

    Parameters
    ----------
    aggregate : DataFrame
        The aggregate table (any source).
    min_group_size : int
        Groups of this many students or fewer are hidden.
    show_counts : bool
        Keep the student counts of shown cells (rates only by default).

    Returns
    -------
    DataFrame
        The cell keys, ``rate_display`` (coded text), the rates (missing where
        hidden, replaced by the bound where coded), ``suppressed`` and
        ``suppression``. Hidden cells keep their row, so readers see that a figure
        exists but is withheld.
    """
    marked = suppress(aggregate, min_group_size)
    hidden = marked["suppressed"]

    release = marked[[c for c in CELL_KEYS if c in marked.columns]
                     + ["school_name", "district_name"]].copy()
    size = marked["students"].astype("Float64")
    release["rate_display"] = [
        "suppressed" if h else code_rate(r, n)
        for h, r, n in zip(hidden, marked["chronic_absence_rate"], size, strict=True)
    ]
    for col in RATE_COLUMNS:
        release[col] = marked[col].astype("Float64").mask(hidden)
    coded = release["rate_display"].str.startswith(("≤", "≥"))
    release.loc[coded, ["chronic_absence_rate", "ci_low", "ci_upp"]] = pd.NA
    if show_counts:
        for col in COUNT_COLUMNS:
            release[col] = marked[col].mask(hidden)
    release["suppressed"] = hidden
    release["suppression"] = marked["suppression"]
    release["approximate"] = marked.get("approximate", False)

    logger.info("public release: %d cells, %d hidden (%d complementary)", len(release),
                int(hidden.sum()), int((marked["suppression"] == "complementary").sum()))
    return release.reset_index(drop=True)
