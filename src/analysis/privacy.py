"""The privacy gate: the one step every public figure passes through.

:func:`publish` turns the aggregate table into a public release:

1. **Primary suppression** - a cell whose group has ``min_group_size`` students or
   fewer (10 by default, as California and Oakland do) is hidden, and so is a cell
   the publisher already hid.
2. **Complementary suppression** - every set of cells that add up to a total (the
   groups of one dimension, the grades of a unit, the schools of a district) gets
   either no hidden cell or at least two, so no lone hidden cell can be worked out
   by subtraction; then the audit in :mod:`analysis.privacy_audit` tries to recover
   every hidden cell from everything shown with linear programming, and each cell
   it can narrow too far gets a further cell hidden beside it, until the audit
   finds nothing.
3. **Top/bottom coding** - rates near 0% or 100% are shown only as "at most" or "at
   least" a bound that widens as the group gets smaller (DOMAIN.md A4).
4. **Counts** - student counts are dropped unless ``show_counts``; a coded cell
   never shows how many of its students are chronically absent.

Reports, dashboards and exports never suppress on their own: public outputs read
only what this module returns, and :func:`audit_public` checks a whole release.

Notes
-----
Year-to-date figures at different as-of dates are not additive, so differencing
across dates is not audited (see :mod:`analysis.privacy_audit`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.log import logger
from analysis.privacy_audit import (
    BAND_MEASURES,
    AuditResult,
    Relations,
    additive_relations,
    audit_release,
)
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
CELL_KEYS = ("source", "definition", "school_year", "as_of_date", "level",
             "district_id", "school_id", "grade", "group_type", "group_value")

#: What a reader sees in place of a hidden figure, and why (one reason for all hidden
#: cells, so a reader cannot tell the small groups from the ones hidden beside them).
HIDDEN = "suppressed"
HIDDEN_REASON = "hidden to protect privacy (10 or fewer students, or would reveal one)"

#: Reasons kept by :func:`suppress` (for the audit trail, never published).
PRIMARY = "{n} or fewer students"
AT_SOURCE = "suppressed by the publisher"
COMPLEMENTARY = "complementary"


class PrivacyError(ValueError):
    """A release would let a reader work a hidden figure back out.

    A ``ValueError``, so the command line reports it as a clear message and exits 2.
    """


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
        return HIDDEN
    bound = _bound(students)
    if rate <= bound:
        return f"≤{bound:.0%}"
    if rate >= 1 - bound:
        return f"≥{1 - bound:.0%}"
    return f"{rate:.1%}"


def is_coded(display: pd.Series) -> pd.Series:
    """True where a displayed rate is a bound (``≤5%``) rather than a value."""
    return display.astype("string").fillna("").str.startswith(("≤", "≥"))


# ------------------------------------------------------------------------ suppress

def suppress(aggregate: pd.DataFrame, min_group_size: int = 10,
             min_range: int | None = None, audit: bool = True,
             max_rounds: int = 200) -> pd.DataFrame:
    """Mark the cells to hide: primary, complementary, then until the audit passes.

    Parameters
    ----------
    aggregate : DataFrame
        The aggregate table (any source).
    min_group_size : int
        Groups of this many students or fewer are hidden.
    min_range : int, optional
        The narrowest range a reader may narrow a hidden count to (capped by the
        cell's size); ``min_group_size`` by default.
    audit : bool
        Run the linear-programming audit and hide more until it passes. Without
        it only the "no lone hidden cell in a set" rule protects the release.
    max_rounds : int
        Give up (raise) after this many audit rounds.

    Returns
    -------
    DataFrame
        A copy with ``suppressed`` (bool) and ``suppression`` (why) columns; the
        values themselves are still there, for the audit. Use :func:`publish` for
        a release.

    Raises
    ------
    PrivacyError
        If no further cell can be hidden and the audit still recovers one.
    """
    frame = aggregate.reset_index(drop=True).copy()
    min_range = min_group_size if min_range is None else min_range
    size = frame["students"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    at_source = (frame["suppressed_at_source"].fillna(False).astype(bool).to_numpy()
                 if "suppressed_at_source" in frame else np.zeros(len(frame), bool))
    primary = np.isnan(size) | (size <= min_group_size) | at_source
    reason = np.where(primary, PRIMARY.format(n=min_group_size), "").astype(object)
    reason[at_source] = AT_SOURCE
    hidden = primary.copy()

    relations = additive_relations(frame)
    _no_lone_hidden_cell(hidden, reason, relations, size)

    # Audit, hide more beside what it narrows, and re-audit only the groups of
    # linked cells that changed; a full audit confirms the end.
    rounds, dirty = 0, None
    while audit and hidden.any():
        rounds += 1
        frame["suppressed"] = hidden
        result = audit_release([_public_table(frame, hidden)], frame, min_range,
                               CELL_KEYS, relations, only_rows=dirty,
                               min_group_size=min_group_size)
        if result.ok:
            if dirty is None:
                break
            dirty = None
            continue
        before = hidden.copy()
        added = _hide_beside(result, hidden, reason, relations, frame, size)
        if not added or rounds >= max_rounds:
            raise PrivacyError(
                f"The privacy audit still recovers {len(result.failures)} hidden "
                f"figure(s) after {rounds} rounds of complementary suppression; no "
                f"release is written. Raise privacy.min_group_size or publish less "
                f"detail.")
        _no_lone_hidden_cell(hidden, reason, relations, size)
        dirty = hidden & ~before
    frame["suppressed"] = hidden
    frame["suppression"] = reason.astype(str)
    logger.info("suppression: %d of %d cells hidden (%d complementary, %d audit "
                "rounds)", int(hidden.sum()), len(frame),
                int((reason == COMPLEMENTARY).sum()), rounds)
    return frame


def _no_lone_hidden_cell(hidden: np.ndarray, reason: np.ndarray, relations: Relations,
                         size: np.ndarray) -> None:
    """Until no set of cells adding up to a total has exactly one hidden member.

    The smallest shown part of such a set is hidden (a total only when every part
    is already hidden). Works in place.
    """
    order = np.nan_to_num(size, nan=-1.0)
    for _ in range(1000):
        changed = False
        for r in range(len(relations)):
            members = relations.members(r)
            flags = hidden[members]
            if flags.sum() != 1:
                continue
            parts = members[1:][~hidden[members[1:]]]
            pick = parts[np.argmin(order[parts])] if len(parts) else members[0]
            hidden[pick] = True
            reason[pick] = COMPLEMENTARY
            changed = True
        if not changed:
            return


def _hide_beside(result: AuditResult, hidden: np.ndarray, reason: np.ndarray,
                 relations: Relations, frame: pd.DataFrame, size: np.ndarray) -> int:
    """Hide one more cell in a set of each cell the audit narrowed too far.

    For a cell narrowed on count ``m``, the candidates are the shown parts of its
    sets that hold some of ``m`` (hiding one opens room). The pick is the one that
    leaves the fewest other sets with a lone hidden cell (each would need a further
    cell hidden), then the smallest. Returns the number of cells newly hidden.
    """
    sets = relations.sets_of()

    def column(name: str) -> np.ndarray:
        return np.nan_to_num(frame[name].astype("Float64").to_numpy(
            dtype=float, na_value=np.nan))

    values = {m: column(m) for m in result.failures["measure"].unique() if m in frame}
    values["not_chronic"] = column("students") - column("chronically_absent")

    def cascade(p: int) -> int:
        return sum(1 for r in sets.get(int(p), [])
                   if not hidden[relations.members(r)].any())

    added = 0
    for row, group in result.failures.groupby("row", sort=False):
        amount = np.zeros(len(frame))
        for m in group["measure"]:
            amount = amount + values.get(m, 0.0)
        best = None
        # When every set of the cell is already wholly hidden, the reader narrows
        # it through hidden cells linked to it: look one link further out, and
        # so on, until some set has a shown cell (otherwise no cell is added and
        # suppress gives up although hiding more would protect the cell).
        frontier, seen = [int(row)], {int(row)}
        while best is None and frontier:
            linked = []
            for cell in frontier:
                for r in sets.get(cell, []):
                    members = relations.members(r)
                    parts = [p for p in members[1:] if not hidden[p]]
                    if not parts and not hidden[members[0]]:
                        parts = [members[0]]
                    for p in parts:
                        key = (amount[p] <= 0, cascade(p),
                               np.nan_to_num(size[p], nan=np.inf), int(p))
                        if best is None or key < best:
                            best = key
                    for p in members:
                        if hidden[p] and int(p) not in seen:
                            seen.add(int(p))
                            linked.append(int(p))
            frontier = linked
        if best is not None and not hidden[best[-1]]:
            hidden[best[-1]] = True
            reason[best[-1]] = COMPLEMENTARY
            added += 1
    return added


# ------------------------------------------------------------------------- publish

def _public_table(marked: pd.DataFrame, hidden: np.ndarray,
                  show_counts: bool = False) -> pd.DataFrame:
    """The release of ``marked`` with ``hidden`` cells withheld (see
    :func:`publish`)."""
    release = marked[[c for c in CELL_KEYS if c in marked.columns]
                     + [c for c in ("school_name", "district_name")
                        if c in marked.columns]].copy()
    size = marked["students"].astype("Float64")
    release["rate_display"] = [
        HIDDEN if h else code_rate(r, n)
        for h, r, n in zip(hidden, marked["chronic_absence_rate"], size, strict=True)
    ]
    for col in RATE_COLUMNS:
        if col in marked:
            release[col] = marked[col].astype("Float64").mask(hidden)
    coded = is_coded(release["rate_display"]).to_numpy()
    release.loc[coded, ["chronic_absence_rate", "ci_low", "ci_upp"]] = pd.NA

    # Band shares on unit headlines only (all students, all grades), coded the same.
    headline = ((marked["grade"] == ALL_GRADES) & (marked["group_type"] == "all")
                ).to_numpy()
    has_bands = all(b in marked for b in BAND_MEASURES) and \
        marked.loc[headline, list(BAND_MEASURES)].notna().any().any()
    if has_bands:
        for band in BAND_MEASURES:
            share = (marked[band].astype("Float64") / size.where(size > 0))
            show = headline & ~hidden & share.notna().to_numpy()
            text = [code_rate(s, n) if ok else ""
                    for ok, s, n in zip(show, share, size, strict=True)]
            release[f"share_{band}_display"] = text
            release[f"share_{band}"] = share.where(
                pd.Series(show, index=share.index) & ~is_coded(pd.Series(
                    text, index=share.index))).astype("Float64")
        # The shares add up: satisfactory + at risk = 1 - the chronic rate, and
        # moderate + severe = the chronic rate. A coded figure beside exact ones
        # would be worked back out exactly (90.0% + 9.0% shown under a "≤1%" rate
        # gives 1.0%), so a headline with any coded figure shows no band shares.
        withheld = coded.copy()
        for band in BAND_MEASURES:
            withheld |= is_coded(release[f"share_{band}_display"]).to_numpy()
        withheld &= headline & ~hidden
        for band in BAND_MEASURES:
            release.loc[withheld, f"share_{band}_display"] = HIDDEN
            release.loc[withheld, f"share_{band}"] = pd.NA

    if show_counts:
        release["students"] = marked["students"].mask(hidden)
        release["chronically_absent"] = marked["chronically_absent"].mask(
            hidden | coded)
    release["suppressed"] = hidden
    release["suppression"] = np.where(hidden, HIDDEN_REASON, "")
    release["approximate"] = (marked["approximate"].fillna(False).astype(bool)
                              if "approximate" in marked else False)
    return release.reset_index(drop=True)


def publish(aggregate: pd.DataFrame, min_group_size: int = 10,
            show_counts: bool = False, min_range: int | None = None) -> pd.DataFrame:
    """Return the public release of an aggregate table: the one way out.

    Parameters
    ----------
    aggregate : DataFrame
        The aggregate table (any source).
    min_group_size : int
        Groups of this many students or fewer are hidden.
    show_counts : bool
        Keep the student counts of shown cells (rates only by default); a coded
        cell never shows its count of chronically absent students.
    min_range : int, optional
        Audit protection width (see :func:`suppress`).

    Returns
    -------
    DataFrame
        The cell keys and names, ``rate_display`` (coded text), the rates
        (missing where hidden or coded), band shares on unit headlines
        (``share_<band>`` and ``share_<band>_display``), ``suppressed`` and
        ``suppression``. Hidden cells keep their row, so readers see that a figure
        exists but is withheld.

    Raises
    ------
    PrivacyError
        If the audit cannot be satisfied.
    """
    marked = suppress(aggregate, min_group_size, min_range=min_range)
    release = _public_table(marked, marked["suppressed"].to_numpy(), show_counts)
    logger.info("public release: %d cells, %d hidden", len(release),
                int(release["suppressed"].sum()))
    return release


def audit_public(tables: list[pd.DataFrame], aggregate: pd.DataFrame,
                 min_group_size: int = 10, min_range: int | None = None) -> AuditResult:
    """Audit every public table of one run against the aggregate it came from.

    A thin wrapper over :func:`analysis.privacy_audit.audit_release` with the
    release's cell keys; see there for what the reader is assumed to know.
    """
    return audit_release(tables, aggregate,
                         min_group_size if min_range is None else min_range,
                         CELL_KEYS, min_group_size=min_group_size)
