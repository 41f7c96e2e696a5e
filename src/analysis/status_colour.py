"""The California School Dashboard colour for chronic absence (status x change).

CDE combines five status levels (this year's rate) with five change levels (this
year minus last year, in percentage points) into the five-by-five colour table
below (DOMAIN.md A2; https://www.cde.ca.gov/ta/ac/cm/fivebyfivecolortables.asp).
Lower chronic absence is better, so Blue is the best colour and Red the worst.

==========  ==========  ========  ==========  ========  ==========
status      Inc. sig.   Inc.      Maint.      Decl.     Decl. sig.
==========  ==========  ========  ==========  ========  ==========
Very Low    Yellow      Green     Blue        Blue      Blue
Low         Orange      Yellow    Green       Green     Blue
Medium      Orange      Orange    Yellow      Green     Green
High        Red         Orange    Orange      Yellow    Yellow
Very High   Red         Red       Red         Orange    Yellow
==========  ==========  ========  ==========  ========  ==========

Rates and the change are rounded to 0.1 after the calculation, as the CDE record
layouts say (halves away from zero, as SAS and Excel round); levels are then read on
the rounded values in tenths of a percentage point, which is why the bounds below are
whole numbers:

* status: Very Low <= 2.5%, Low 2.6-5.0%, Medium 5.1-10.0%, High 10.1-20.0%,
  Very High >= 20.1%;
* change: Declined Significantly by 3.0 or more, Declined by 0.5-2.9, Maintained
  within 0.4 either way, Increased by 0.5-3.0, Increased Significantly by 3.1 or
  more (note the asymmetry at 3.0, which is CDE's).

A colour is given only when the group had at least 30 eligible students in both
years (15 for foster and homeless youth at the district level, as OUSD describes).

Notes
-----
CDE applies a modified 3x5 grid to populations under 150 students (``smalldenom``)
whose cut points are not in DOMAIN.md; it is not reproduced here, and such rows are
flagged ``small_population`` so a dashboard can say so.
"""

from __future__ import annotations

from fractions import Fraction

import pandas as pd

STATUS_LEVELS = ("Very Low", "Low", "Medium", "High", "Very High")
CHANGE_LEVELS = ("Increased Significantly", "Increased", "Maintained", "Declined",
                 "Declined Significantly")

#: CDE's five-by-five table: rows are status levels, columns change levels.
COLOUR_TABLE: dict[str, tuple[str, ...]] = {
    "Very Low": ("Yellow", "Green", "Blue", "Blue", "Blue"),
    "Low": ("Orange", "Yellow", "Green", "Green", "Blue"),
    "Medium": ("Orange", "Orange", "Yellow", "Green", "Green"),
    "High": ("Red", "Orange", "Orange", "Yellow", "Yellow"),
    "Very High": ("Red", "Red", "Red", "Orange", "Yellow"),
}

#: Performance levels from best to worst, as CDE ranks them.
COLOURS = ("Blue", "Green", "Yellow", "Orange", "Red")

#: Swatches for the five colours, taken from the Okabe-Ito palette so they stay
#: distinguishable with colour-vision deficiencies; the name is always shown too.
SWATCHES = {"Blue": "#0072B2", "Green": "#009E73", "Yellow": "#F0E442",
            "Orange": "#E69F00", "Red": "#D55E00"}

MIN_STUDENTS = 30
MIN_STUDENTS_SMALL_GROUPS = 15   # foster and homeless youth, district level
SMALL_POPULATION = 150


def tenths(value: Fraction | float) -> int:
    """A share as tenths of a percentage point, rounded half away from zero.

    >>> tenths(Fraction(255, 10000)), tenths(Fraction(-255, 10000))
    (26, -26)
    """
    scaled = abs(Fraction(value)) * 1000
    rounded = int((scaled + Fraction(1, 2)).__floor__())
    return rounded if value >= 0 else -rounded


def status_level(rate_tenths: int) -> str:
    """Status level of a current rate given in tenths of a percent (26 = 2.6%)."""
    if rate_tenths <= 25:
        return "Very Low"
    if rate_tenths <= 50:
        return "Low"
    if rate_tenths <= 100:
        return "Medium"
    if rate_tenths <= 200:
        return "High"
    return "Very High"


def change_level(change_tenths: int) -> str:
    """Change level of a change given in tenths of a percentage point (-30 = -3.0)."""
    if change_tenths >= 31:
        return "Increased Significantly"
    if change_tenths >= 5:
        return "Increased"
    if change_tenths >= -4:
        return "Maintained"
    if change_tenths >= -29:
        return "Declined"
    return "Declined Significantly"


def colour(status: str, change: str) -> str:
    """The colour CDE's five-by-five table gives a status and a change level."""
    return COLOUR_TABLE[status][CHANGE_LEVELS.index(change)]


def _share(count, students, rate) -> Fraction | None:
    """The exact share from counts when there are counts, else the published rate."""
    if pd.notna(count) and pd.notna(students) and students > 0:
        return Fraction(int(count), int(students))
    if pd.notna(rate):
        # A published rate (no counts): round it to 1e-9 first so that a float such
        # as 0.025000000000000001 is read as the 2.5% it stands for.
        return Fraction(round(float(rate), 9)).limit_denominator(10**9)
    return None


def dashboard_colour(current_count, current_students, prior_count, prior_students,
                     current_rate=None, prior_rate=None,
                     min_students: int = MIN_STUDENTS) -> dict:
    """Status, change and colour of one group, CDE style.

    Parameters
    ----------
    current_count, current_students : int or NA
        Chronically absent and eligible students this year.
    prior_count, prior_students : int or NA
        The same last year.
    current_rate, prior_rate : float, optional
        Published rates, used when counts are missing (e.g. Connecticut).
    min_students : int
        Students needed in both years for a colour.

    Returns
    -------
    dict
        ``status_tenths``, ``status``, ``change_tenths``, ``change``, ``colour``
        (None when there is no colour) and ``reason`` (why not, or "").
    """
    now = _share(current_count, current_students, current_rate)
    before = _share(prior_count, prior_students, prior_rate)
    out = {"status_tenths": None, "status": None, "change_tenths": None, "change": None,
           "colour": None, "small_population": False, "reason": ""}
    if now is None:
        out["reason"] = "no current rate"
        return out
    out["status_tenths"] = tenths(now)
    out["status"] = status_level(out["status_tenths"])
    if before is None:
        out["reason"] = "no prior-year rate"
        return out
    out["change_tenths"] = tenths(now - before)
    out["change"] = change_level(out["change_tenths"])
    sizes = [s for s in (current_students, prior_students) if pd.notna(s)]
    if len(sizes) == 2 and min(sizes) < min_students:
        out["reason"] = f"fewer than {min_students} students in a year"
        return out
    out["colour"] = colour(out["status"], out["change"])
    out["small_population"] = bool(len(sizes) == 2 and min(sizes) < SMALL_POPULATION)
    return out
