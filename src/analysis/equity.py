"""Equity analyses: who is chronically absent, and how the system's own actions fall.

Three questions, each asked of a processed run (see :mod:`analysis.pipeline`):

1. **Who is chronically absent, by group** (:func:`disproportionality`), from the
   aggregate table alone, so it works for published counts (NYC) as well as student
   files: risk, risk ratio against all other students with a Katz 95% interval,
   the alternate risk ratio against the level above when the comparison group is
   too small, the weighted risk ratio (Westat), a ratio standardised over schools,
   and composition against enrollment share. IDEA-style rules decide what is shown
   (``min_cell``, ``min_group``); a group is flagged when its ratio passes the
   threshold and its test survives the multiple-comparison correction.
2. **Adjusted gaps** (:func:`adjusted_gaps`): a student-level logistic regression
   of chronic absence on group membership with grade, school and last year's
   absence as controls, cluster-robust errors by school; odds ratios, average
   marginal effects in percentage points and the share of the raw gap that remains.
3. **The action audit** (:func:`action_audit`): among students with similar
   absence, do punitive actions fall on some groups more than others; do
   supportive actions reach each group's Tier 2/3 students; are some groups placed
   in tiers, or punished, at lower absence than others? Mantel-Haenszel risk ratios
   within absence strata, per-band ratios, and a modified-Poisson regression that
   puts all groups side by side.

:func:`findings` turns the results into plain-language questions for the
attendance team. Parts 2 and 3 read student rows and are for staff only;
:func:`publish_ratios` is the only way a ratio reaches a public output, through
:func:`analysis.privacy.publish`.

Settings live in ``params/equity.yaml`` (:func:`load_equity_settings`).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.log import logger
from analysis.paths import PARAMS_DIR
from analysis.pipeline import load_processed, read_table, unit_filters
from analysis.privacy import publish
from analysis.schema import (
    ALL_GRADES,
    BAND_LABELS,
    FLAG_GROUP_VALUES,
    GROUP_TYPE_LABELS,
    GROUP_TYPES,
    conform_aggregate,
)
from analysis.settings import read_yaml_settings
from analysis.statistics import wilson_interval

EQUITY_FILE = PARAMS_DIR / "equity.yaml"

#: The "not in the group" value of each yes/no dimension: the comparison, not a focus.
NOT_IN_GROUP = frozenset(no for _, no in FLAG_GROUP_VALUES.values())

#: Group dimensions compared (every dimension but "all").
GROUP_DIMENSIONS = tuple(g for g in GROUP_TYPES if g != "all")

#: The level above each level, for the alternate and weighted risk ratios.
PARENT_LEVEL = {"school": "district", "district": "state"}

#: Attendance Works band cut points on the absence rate (DOMAIN.md, defaults table).
BAND_CUTS = (0.05, 0.10, 0.20)

PUNITIVE_WORDS = ("punitive actions (truancy letters, attendance-board or court "
                  "referrals, suspensions)")
SUPPORTIVE_WORDS = ("supportive actions (family outreach, home visits, mentoring, "
                    "attendance plans)")


class EquitySettings(BaseModel):
    """Thresholds of the equity analyses (``params/equity.yaml``)."""

    model_config = ConfigDict(extra="forbid")
    min_cell: int = Field(10, ge=0)
    min_group: int = Field(30, ge=1)
    risk_ratio_threshold: float = Field(1.5, gt=1)
    action_ratio_threshold: float = Field(1.25, gt=1)
    alpha: float = Field(0.05, gt=0, lt=1)
    multitest_method: Literal["holm", "bonferroni", "holm-sidak", "fdr_bh",
                              "fdr_by"] = "holm"
    zero_cell_correction: float = Field(0.5, ge=0)
    absence_strata: tuple[float, ...] = (0.02, 0.04, 0.06, 0.08, 0.10, 0.125, 0.15,
                                         0.20, 0.25, 0.30)
    min_clusters: int = Field(10, ge=2)
    approximate_gap_points: float = Field(5.0, ge=0)


def load_equity_settings(path: Path = EQUITY_FILE, **overrides: Any) -> EquitySettings:
    """Read ``params/equity.yaml`` and apply ``overrides`` whose value is not None.

    Raises
    ------
    pydantic.ValidationError
        Naming the setting and what it accepts, when a setting is wrong.
    """
    return EquitySettings(**read_yaml_settings(path, overrides))


# ------------------------------------------------------------------- wording helpers

def group_phrase(group_type: str, group_value: str, start: bool = True) -> str:
    """Plain-language name of a group of students, e.g. ``"Black students"``.

    ``start=False`` gives the form used inside a sentence (proper nouns keep
    their capital).

    >>> group_phrase("disability", "Student with disability", start=False)
    'students with disabilities'
    """
    special = {
        "english_learner": "English learners",
        "disability": "Students with disabilities",
        "economically_disadvantaged": "Economically disadvantaged students",
        "homeless": "Homeless students (or in temporary housing)",
        "foster": "Foster youth",
    }
    if group_type in special:
        phrase = special[group_type]
    elif group_value == "Other":
        phrase = "Students of other races or ethnicities"
    else:
        phrase = f"{group_value} students"
    keeps_capital = group_type == "race_ethnicity" or phrase.startswith("English")
    if start or keeps_capital:
        return phrase
    return phrase[0].lower() + phrase[1:]


def _times(ratio: float) -> str:
    return f"{ratio:.2f} times" if ratio < 1 else f"{ratio:.1f} times"


def _interval(low: float, upp: float) -> str:
    return f"95% CI {low:.2f} to {upp:.2f}"


def focal_groups(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (group type, group value) pairs compared, in report order.

    Yes/no dimensions contribute their "yes" value only: the "no" value is the
    comparison group, and its ratio would be the same test turned upside down.
    """
    pairs = []
    for dim in GROUP_DIMENSIONS:
        if dim not in frame.columns:
            continue
        if dim in FLAG_GROUP_VALUES:
            if frame[dim].fillna(False).astype(bool).any():
                pairs.append((dim, FLAG_GROUP_VALUES[dim][0]))
            continue
        for value in sorted(frame[dim].dropna().astype(str).unique()):
            pairs.append((dim, value))
    return pairs


def _membership(frame: pd.DataFrame, group_type: str, group_value: str) -> np.ndarray:
    """Boolean array: is each student in the group?"""
    column = frame[group_type]
    if group_type in FLAG_GROUP_VALUES:
        return column.fillna(False).astype(bool).to_numpy()
    return (column.astype("string") == group_value).fillna(False).to_numpy(dtype=bool)


# --------------------------------------------------------------------- risk ratios

def risk_ratio(a, n1, c, n2, alpha: float = 0.05,
               correction: float = 0.5) -> pd.DataFrame:
    """Risk ratio of a group against a comparison group, with a Katz log interval.

    Parameters
    ----------
    a, n1 : array-like
        Students with the outcome in the group, and students in the group.
    c, n2 : array-like
        The same for the comparison group.
    alpha : float, default 0.05
        The interval has coverage ``1 - alpha``; the p-value tests ratio = 1.
    correction : float, default 0.5
        Added to each of the four cells of the 2x2 table when ``a`` or ``c`` is 0
        (Haldane-Anscombe). 0 reports those ratios as not computable instead.

    Returns
    -------
    DataFrame
        ``risk_ratio``, ``ci_low``, ``ci_upp``, ``se_log``, ``pvalue`` and
        ``ratio_note`` (empty, the correction applied, or why it is not
        computable). Never an infinity: a ratio that cannot be computed is NaN
        with its reason.

    Notes
    -----
    Katz et al. (1978), *Biometrics* 34:469-474: ``log(RR) +/- z * se`` with
    ``se = sqrt(1/a - 1/n1 + 1/c - 1/n2)``. The p-value is the matching Wald test
    of ``log(RR) = 0``. A corrected ratio is a stated approximation; reports show
    the note beside it.

    Examples
    --------
    >>> row = risk_ratio([20], [100], [10], [100]).iloc[0]
    >>> round(row.risk_ratio, 2), round(row.ci_low, 3), round(row.ci_upp, 3)
    (2.0, 0.989, 4.044)
    """
    a, n1, c, n2 = (np.asarray(pd.to_numeric(pd.Series(np.ravel(v)), errors="coerce")
                               .to_numpy(dtype=float, na_value=np.nan))
                    for v in (a, n1, c, n2))
    a, n1, c, n2 = np.broadcast_arrays(a, n1, c, n2)
    note = np.full(a.shape, "", dtype=object)

    # Why a ratio cannot be computed, first reason wins.
    missing = np.isnan(a) | np.isnan(n1) | np.isnan(c) | np.isnan(n2)
    no_group = ~missing & (n1 <= 0)
    no_comparison = ~missing & ~no_group & (n2 <= 0)
    both_zero = ~missing & ~no_group & ~no_comparison & (a == 0) & (c == 0)
    one_zero = (~missing & ~no_group & ~no_comparison & ~both_zero
                & ((a == 0) | (c == 0)))
    note[missing] = "not computable: counts not published or suppressed at source"
    note[no_group] = "not computable: no students in the group"
    note[no_comparison] = "not computable: no students to compare with"
    note[both_zero] = "not computable: no students with the outcome in either group"
    bad = missing | no_group | no_comparison | both_zero
    if correction > 0:
        note[one_zero] = (f"{correction:g} added to every cell (Haldane-Anscombe): a "
                          f"count is zero")
    else:
        note[one_zero] = "not computable: a count is zero"
        bad = bad | one_zero

    # Corrected cells where a count is zero; the others as they are.
    shift = np.where(one_zero, correction, 0.0)
    a_ = a + shift
    c_ = c + shift
    n1_ = n1 + 2 * shift
    n2_ = n2 + 2 * shift
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (a_ / n1_) / (c_ / n2_)
        se = np.sqrt(1 / a_ - 1 / n1_ + 1 / c_ - 1 / n2_)
    z = stats.norm.ppf(1 - alpha / 2)
    ratio[bad], se[bad] = np.nan, np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(ratio)
        pvalue = 2 * stats.norm.sf(np.abs(log_ratio / se))
    return pd.DataFrame({
        "risk_ratio": ratio,
        "ci_low": np.exp(log_ratio - z * se),
        "ci_upp": np.exp(log_ratio + z * se),
        "se_log": se,
        "pvalue": pvalue,
        "ratio_note": note.astype(str),
    })


def adjust_pvalues(pvalues, method: str = "holm") -> np.ndarray:
    """Multiple-comparison adjusted p-values for one family of tests.

    Missing p-values stay missing and do not count as comparisons.

    Notes
    -----
    Every method goes through statsmodels' ``multipletests`` except Holm, whose
    branch there runs ``gc.collect()`` on every call (statsmodels 0.15: 0.16 s a
    call with a report's tables in memory, 45 s for the sample's 273 families).
    Holm's step-down is computed here instead (Holm 1979, *Scand J Statist*
    6:65-70: the i-th smallest of m p-values times ``m - i + 1``, made monotone,
    capped at 1); a test checks it against ``multipletests(method="holm")``.
    """
    pvalues = np.asarray(pvalues, dtype=float)
    out = np.full(pvalues.shape, np.nan)
    ok = ~np.isnan(pvalues)
    if not ok.any():
        return out
    if method == "holm":
        values = pvalues[ok]
        order = np.argsort(values, kind="stable")
        m = len(values)
        stepped = np.maximum.accumulate(values[order] * np.arange(m, 0, -1))
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        out[ok] = adjusted
    else:
        out[ok] = multipletests(pvalues[ok], method=method)[1]
    return out


def _adjust_by_family(frame: pd.DataFrame, keys: list[str], pcol: str, testable,
                      method: str) -> pd.Series:
    """Adjust ``pcol`` within each family (``keys``), over rows where ``testable``."""
    out = pd.Series(np.nan, index=frame.index)
    candidates = frame[testable & frame[pcol].notna()]
    for _, rows in candidates.groupby(keys, dropna=False, sort=False):
        out.loc[rows.index] = adjust_pvalues(rows[pcol].to_numpy(), method)
    return out


# ------------------------------------------------------------------ disproportionality

def _unit_columns(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    is_school = frame["level"] == "school"
    frame["unit_id"] = frame["district_id"].astype("string")
    frame.loc[is_school, "unit_id"] = frame.loc[is_school, "school_id"].astype("string")
    frame["unit_name"] = frame["district_name"].astype("string")
    frame.loc[is_school, "unit_name"] = frame.loc[is_school, "school_name"].astype(
        "string")
    return frame


def _parent_key(frame: pd.DataFrame) -> pd.Series:
    """The id of each row's parent unit: the district of a school, "all" above."""
    return pd.Series(np.where(frame["level"] == "school",
                              frame["district_id"].astype("string"), "all"),
                     index=frame.index, dtype="string")


#: ``note`` of the rows :func:`with_combined_levels` adds.
COMBINED_NOTE = ("sum of the units' published counts (cells suppressed at source "
                 "left out)")


def with_combined_levels(aggregate: pd.DataFrame) -> pd.DataFrame:
    """The aggregate table (``grade == "All"`` rows) plus the level above, by summing.

    Connecticut files hold schools only: their district is added as the sum of
    its schools. NYC files hold community districts only: all districts combined
    are added as level ``"state"`` (id ``"all"``). A level is added only above
    two or more units (a district is not its own parent) and only where the
    table has no such level. Added rows carry ``note`` = :data:`COMBINED_NOTE`;
    they are ordinary aggregate rows, so :func:`analysis.privacy.publish` can
    gate them like any other.
    """
    rows = aggregate[aggregate["grade"] == ALL_GRADES]
    added = []
    keys = ["source", "definition", "school_year", "as_of_date", "grade", "group_type",
            "group_value"]
    for level, parent in PARENT_LEVEL.items():
        children = rows[rows["level"] == level]
        if children.empty or (rows["level"] == parent).any():
            continue
        children = children.assign(_parent=_parent_key(children),
                                   _unit=_unit_columns(children)["unit_id"])
        n_units = children.groupby("_parent")["_unit"].nunique()
        children = children[children["_parent"].isin(n_units[n_units > 1].index)]
        if children.empty:
            continue
        for col in ("students", "chronically_absent"):
            counted = pd.to_numeric(children[col], errors="coerce").astype(float)
            hidden = children["suppressed_at_source"].fillna(False).astype(bool)
            children[col] = counted.mask(hidden)
        summed = (children.groupby(keys + ["_parent"], dropna=False)
                  .agg(students=("students", lambda v: v.sum(min_count=1)),
                       chronically_absent=("chronically_absent",
                                           lambda v: v.sum(min_count=1)),
                       approximate=("approximate", "any"),
                       district_name=("district_name", "first"),
                       units=("_unit", "nunique"))
                  .reset_index())
        summed["level"] = parent
        if parent == "district":
            summed["district_id"] = summed["_parent"]
        else:
            summed["district_id"] = "all"
            summed["district_name"] = ("All " + summed["units"].astype(str)
                                       + " districts in the file combined")
        summed["students"] = summed["students"].round()
        summed["chronically_absent"] = summed["chronically_absent"].round()
        with np.errstate(divide="ignore", invalid="ignore"):
            summed["chronic_absence_rate"] = (summed["chronically_absent"]
                                              / summed["students"])
        summed["ci_low"], summed["ci_upp"] = wilson_interval(
            summed["chronically_absent"], summed["students"])
        summed["suppressed_at_source"] = False
        summed["note"] = COMBINED_NOTE
        added.append(conform_aggregate(summed.drop(columns=["_parent", "units"])))
    if not added:
        return rows.reset_index(drop=True)
    return pd.concat([rows, *added], ignore_index=True)


def _weighted_ratio(dim_rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Westat weighted risk ratio of every group of one dimension in each unit.

    ``dim_rows`` holds every value of the dimension present in the unit with the
    unit's ``risk``, the parent's share ``weight`` and ``parent_values`` (how many
    values of the dimension the parent has). The comparison risk is the other
    groups' risks in the unit averaged with the parent's weights instead of the
    unit's own.
    """
    frame = dim_rows.copy()
    valid = (frame["risk"].notna() & (frame["weight"] > 0)).to_numpy()
    frame["_wr"] = np.where(valid, frame["weight"] * frame["risk"], 0.0)
    frame["_w"] = np.where(valid, frame["weight"], 0.0)
    frame["_valid"] = valid.astype(int)
    totals = frame.groupby(keys, dropna=False)[["_wr", "_w", "_valid"]] \
        .transform("sum")
    others_w = totals["_w"] - frame["_w"]
    with np.errstate(divide="ignore", invalid="ignore"):
        comparison = (totals["_wr"] - frame["_wr"]) / others_w
        ratio = frame["risk"] / comparison
    ratio = ratio.where(valid & (others_w > 0) & (comparison > 0))
    left_out = (frame["parent_values"] - totals["_valid"]).fillna(0).clip(lower=0)
    note = np.where(left_out > 0,
                    left_out.astype(int).astype(str) + " group(s) with no students "
                    "here left out of the weights", "")
    return pd.DataFrame({"weighted_risk_ratio": ratio.astype(float),
                         "weighted_note": note}, index=frame.index)


def _standardised_ratio(groups: pd.DataFrame, children: pd.DataFrame,
                        keys: list[str]) -> pd.Series:
    """Ratio of group and comparison risks standardised over the unit's sub-units.

    For a district: the group's and all other students' risks in each school,
    averaged with the same weights (each school's share of the district's
    students), so a gap that only reflects which schools students attend shrinks.
    """
    if children.empty:
        return pd.Series(np.nan, index=groups.index)
    kids = children.copy()
    kids["comparison_n"] = kids["all_students"] - kids["students"]
    kids["comparison_a"] = kids["all_chronic"] - kids["chronically_absent"]
    ok = (kids["students"] > 0) & (kids["comparison_n"] > 0)
    kids = kids[ok.fillna(False)]
    kids["w"] = kids["all_students"].astype(float)
    kids["wg"] = kids["w"] * kids["chronically_absent"] / kids["students"]
    kids["wo"] = kids["w"] * kids["comparison_a"] / kids["comparison_n"]
    sums = kids.groupby(keys, dropna=False)[["wg", "wo"]].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        sums["ratio"] = (sums["wg"] / sums["wo"]).where(sums["wo"] > 0)
    merged = groups[keys].merge(sums["ratio"].reset_index(), on=keys, how="left")
    return pd.Series(merged["ratio"].to_numpy(dtype=float), index=groups.index)


def disproportionality(aggregate: pd.DataFrame,
                       settings: EquitySettings | None = None) -> pd.DataFrame:
    """Risk ratios of chronic absence by student group, for every unit and date.

    Parameters
    ----------
    aggregate : DataFrame
        The aggregate table of a processed run (any source); only ``grade == "All"``
        rows are used.
    settings : EquitySettings, optional
        Thresholds; ``params/equity.yaml`` by default.

    Returns
    -------
    DataFrame
        One row per unit (school, district, or a level added by summing), as-of
        date and group, with ``students``, ``chronically_absent``, ``risk``, the
        comparison group's counts and ``comparison_risk`` (all other students in
        the unit), ``risk_ratio`` with ``ci_low``/``ci_upp`` and ``pvalue``
        (Katz), ``alternate_risk_ratio`` (and interval) against all other
        students of the level above, ``ratio_kind`` and ``ratio``/``ratio_low``/
        ``ratio_upp`` (the one reported), ``pvalue_adjusted`` (within the unit and
        date), ``weighted_risk_ratio`` (Westat), ``standardized_risk_ratio``
        (over the unit's schools or districts), ``composition_chronic`` and
        ``composition_students``, ``gap_pp``, ``shown``, ``flagged``, ``reason``
        and ``approximate``.

    Notes
    -----
    * Comparison group: all students of the unit minus the group ("All students"
      minus the group's count), so it holds every other race, or everyone
      without the flag; students with a missing value count as "other".
    * Alternate risk ratio (34 CFR 300.647; DOMAIN.md A4): used when the
      comparison group has fewer than ``min_cell`` students with the outcome or
      fewer than ``min_group`` students. Its comparison is all other students of
      the level above (the district for a school; for NYC districts, all
      districts combined).
    * Weighted risk ratio (Bollmer, Bethel, Munk & Bitterman 2014, *Methods for
      Assessing Racial/Ethnic Disproportionality in Special Education*, IDC,
      p. 32): ``R_i * sum_{j!=i} w_j / sum_{j!=i} w_j R_j`` with ``R`` the unit's
      risks and ``w`` the composition of the level above (the district's for a
      school, the city's for an NYC district, the district's - the sum of its
      schools - for a Connecticut school). The sample district has no level
      above, so its row has none; it gets ``standardized_risk_ratio`` instead,
      which weights the group's and the comparison's risks by school with the
      district-wide share of students in each school. Groups with no students in
      a unit are left out of the weights, and ``weighted_note`` says how many.
    * Connecticut counts are estimated from published rates (``approximate``):
      only the gap is reported, labelled approximate, never a ratio or a flag.
    * Multiple comparisons: ``multitest_method`` across the shown groups of one
      unit at one date; a group is flagged when ``ratio >= risk_ratio_threshold``
      and the adjusted p-value is below ``alpha``.
    """
    settings = settings or load_equity_settings()
    keys = ["source", "definition", "as_of_date", "level", "unit_id"]
    rows = _unit_columns(with_combined_levels(aggregate))
    rows["approximate"] = rows["approximate"].fillna(False).astype(bool)
    rows["synthesised"] = (rows["note"] == COMBINED_NOTE).fillna(False).astype(bool)
    for col in ("students", "chronically_absent"):
        rows[col] = pd.to_numeric(rows[col], errors="coerce").astype(float)
    rows.loc[rows["suppressed_at_source"].fillna(False).astype(bool),
             ["students", "chronically_absent"]] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        rows["risk"] = (rows["chronically_absent"] / rows["students"]).where(
            rows["students"] > 0)

    # Each group row with its unit's totals.
    totals = rows[rows["group_type"] == "all"][
        keys + ["students", "chronically_absent"]]
    totals = totals.rename(columns={"students": "all_students",
                                    "chronically_absent": "all_chronic"})
    totals = totals.drop_duplicates(keys)
    everyone = rows[rows["group_type"] != "all"].merge(totals, on=keys, how="left")
    everyone["parent_id"] = _parent_key(everyone)
    everyone["parent_level"] = everyone["level"].map(PARENT_LEVEL)

    # The parent's counts of the same group, for the alternate ratio and the weights.
    parents = everyone[["source", "definition", "as_of_date", "level", "unit_id",
                        "group_type", "group_value", "students", "chronically_absent",
                        "all_students", "all_chronic"]].rename(columns={
                            "level": "parent_level", "unit_id": "parent_id",
                            "students": "parent_students",
                            "chronically_absent": "parent_chronic",
                            "all_students": "parent_all_students",
                            "all_chronic": "parent_all_chronic"})
    everyone = everyone.merge(parents, how="left", on=[
        "source", "definition", "as_of_date", "parent_level", "parent_id",
        "group_type", "group_value"])
    dim_keys = keys + ["group_type"]
    composition = (everyone[everyone["students"] > 0]
                   .groupby(dim_keys, dropna=False)["students"]
                   .agg(parent_total="sum", parent_values="size").reset_index()
                   .rename(columns={"level": "parent_level", "unit_id": "parent_id"}))
    everyone = everyone.merge(composition, how="left", on=[
        "source", "definition", "as_of_date", "parent_level", "parent_id",
        "group_type"])
    everyone["weight"] = everyone["parent_students"] / everyone["parent_total"]
    everyone = everyone.join(_weighted_ratio(everyone, dim_keys))

    groups = everyone[~everyone["group_value"].isin(NOT_IN_GROUP)].copy()
    groups["comparison_students"] = groups["all_students"] - groups["students"]
    groups["comparison_chronic"] = groups["all_chronic"] - groups["chronically_absent"]
    with np.errstate(divide="ignore", invalid="ignore"):
        groups["comparison_risk"] = (groups["comparison_chronic"]
                                     / groups["comparison_students"]).where(
            groups["comparison_students"] > 0)
    groups["parent_comparison_students"] = (groups["parent_all_students"]
                                            - groups["parent_students"])
    groups["parent_comparison_chronic"] = (groups["parent_all_chronic"]
                                           - groups["parent_chronic"])

    # Katz ratios against the unit's other students and against the parent's.
    alpha, corr = settings.alpha, settings.zero_cell_correction
    rr = risk_ratio(groups["chronically_absent"], groups["students"],
                    groups["comparison_chronic"], groups["comparison_students"],
                    alpha, corr)
    arr = risk_ratio(groups["chronically_absent"], groups["students"],
                     groups["parent_comparison_chronic"],
                     groups["parent_comparison_students"], alpha, corr)
    for col in ("risk_ratio", "ci_low", "ci_upp", "pvalue", "ratio_note"):
        groups[col] = rr[col].to_numpy()
    groups["alternate_risk_ratio"] = arr["risk_ratio"].to_numpy()
    groups["alternate_ci_low"] = arr["ci_low"].to_numpy()
    groups["alternate_ci_upp"] = arr["ci_upp"].to_numpy()
    groups["alternate_pvalue"] = arr["pvalue"].to_numpy()
    groups["alternate_note"] = arr["ratio_note"].to_numpy()

    # Standardised over the sub-units (schools of a district, districts of a city).
    children = everyone[~everyone["group_value"].isin(NOT_IN_GROUP)][
        ["source", "definition", "as_of_date", "parent_level", "parent_id",
         "group_type", "group_value", "students", "chronically_absent",
         "all_students", "all_chronic"]].rename(columns={
             "parent_level": "level", "parent_id": "unit_id"})
    groups["standardized_risk_ratio"] = _standardised_ratio(
        groups, children, keys + ["group_type", "group_value"])

    groups = _apply_reporting_rules(groups, settings)
    with np.errstate(divide="ignore", invalid="ignore"):
        groups["composition_chronic"] = groups["chronically_absent"] / groups[
            "all_chronic"]
        groups["composition_students"] = groups["students"] / groups["all_students"]
    with np.errstate(divide="ignore", invalid="ignore"):
        groups["ratio_comparison_risk"] = np.where(
            groups["ratio_kind"] == "alternate risk ratio",
            groups["parent_comparison_chronic"] / groups["parent_comparison_students"],
            groups["comparison_risk"])
    groups["gap_pp"] = 100 * (groups["risk"] - groups["ratio_comparison_risk"])

    # Multiple comparisons within each unit and date, then the flags.
    testable = groups["shown"] & groups["ratio"].notna()
    groups["pvalue_adjusted"] = _adjust_by_family(
        groups, keys, "ratio_pvalue", testable, settings.multitest_method)
    groups["flagged"] = (testable & (groups["ratio"] >= settings.risk_ratio_threshold)
                         & (groups["pvalue_adjusted"] < settings.alpha))
    order = {g: i for i, g in enumerate(GROUP_TYPES)}
    groups["_order"] = groups["group_type"].map(order).fillna(99)
    groups = groups.sort_values(keys + ["_order", "group_value"]).drop(columns="_order")
    logger.info("disproportionality: %d group rows, %d shown, %d flagged",
                len(groups), int(groups["shown"].sum()), int(groups["flagged"].sum()))
    return groups.reset_index(drop=True)[_RATIO_COLUMNS]


_RATIO_COLUMNS = [
    "source", "definition", "school_year", "as_of_date", "level", "unit_id",
    "unit_name", "district_id", "district_name", "school_id", "school_name",
    "group_type", "group_value", "students", "chronically_absent", "risk",
    "comparison_students", "comparison_chronic", "comparison_risk",
    "risk_ratio", "ci_low", "ci_upp", "pvalue", "ratio_note",
    "parent_comparison_students", "parent_comparison_chronic",
    "alternate_risk_ratio", "alternate_ci_low", "alternate_ci_upp",
    "alternate_pvalue", "alternate_note", "ratio_kind", "ratio", "ratio_low",
    "ratio_upp", "ratio_pvalue", "ratio_comparison_risk", "pvalue_adjusted",
    "weighted_risk_ratio",
    "weighted_note", "standardized_risk_ratio", "composition_chronic",
    "composition_students", "gap_pp", "shown", "flagged", "reason", "approximate",
    "synthesised",
]


def _apply_reporting_rules(groups: pd.DataFrame,
                           settings: EquitySettings) -> pd.DataFrame:
    """Choose the ratio to report and decide what is shown (IDEA-style rules)."""
    frame = groups.copy()
    cell, n = settings.min_cell, settings.min_group

    def passes(events: pd.Series, size: pd.Series) -> pd.Series:
        return ((events >= cell) & (size >= n)).fillna(False).astype(bool)

    group_ok = passes(frame["chronically_absent"], frame["students"])
    comparison_ok = passes(frame["comparison_chronic"], frame["comparison_students"])
    parent_ok = passes(frame["parent_comparison_chronic"],
                       frame["parent_comparison_students"])
    counts_missing = frame["students"].isna() | frame["chronically_absent"].isna()
    approximate = frame["approximate"].astype(bool)

    use_rr = group_ok & comparison_ok & ~approximate
    use_arr = group_ok & ~comparison_ok & parent_ok & ~approximate
    frame["ratio_kind"] = np.select([use_rr, use_arr],
                                    ["risk ratio", "alternate risk ratio"], "")
    for out, rr_col, arr_col in (("ratio", "risk_ratio", "alternate_risk_ratio"),
                                 ("ratio_low", "ci_low", "alternate_ci_low"),
                                 ("ratio_upp", "ci_upp", "alternate_ci_upp"),
                                 ("ratio_pvalue", "pvalue", "alternate_pvalue")):
        frame[out] = np.where(use_rr, frame[rr_col],
                              np.where(use_arr, frame[arr_col], np.nan))

    # A shown ratio must exist; the first failing rule is the reason given.
    computable = frame["ratio"].notna()
    shown_gap = group_ok & approximate & frame["comparison_students"].gt(0)
    frame["shown"] = ((use_rr | use_arr) & computable) | shown_gap
    reason = np.select(
        [counts_missing,
         frame["chronically_absent"].fillna(0) < cell,
         frame["students"].fillna(0) < n,
         approximate & shown_gap,
         approximate,
         ~comparison_ok & ~parent_ok,
         ~computable & (use_rr | use_arr)],
        ["counts not published or suppressed at source",
         f"fewer than {cell} chronically absent students in the group",
         f"fewer than {n} students in the group",
         "approximate counts (estimated from published rates): gap only, no ratio",
         "approximate counts too small to show",
         "comparison group too small here and in the level above",
         "not computable"],
        "")
    reason = np.where((reason == "") & use_arr,
                      "comparison group too small: compared with the level above",
                      reason)
    frame["reason"] = reason
    return frame


def publish_ratios(ratios: pd.DataFrame, aggregate: pd.DataFrame,
                   min_group_size: int = 10,
                   release: pd.DataFrame | None = None) -> pd.DataFrame:
    """The public version of a ratio table, through :func:`analysis.privacy.publish`.

    A ratio is hidden when the group's cell is hidden or top/bottom coded by the
    privacy gate (its exact rate could be worked back from the ratio), or when it
    is not shown under the reporting rules. Counts are dropped.

    Parameters
    ----------
    ratios : DataFrame
        From :func:`disproportionality`.
    aggregate : DataFrame
        The aggregate table the ratios were computed from.
    min_group_size : int
        The privacy setting (``params/settings.yaml``: ``privacy.min_group_size``).
    release : DataFrame, optional
        The run's public release (``public.parquet``, made by
        :func:`analysis.privacy.publish` when the run was prepared). When given,
        its cells are used as they are, and only the levels
        :func:`with_combined_levels` adds go through ``publish`` here; otherwise
        everything does.

    Returns
    -------
    DataFrame
        Unit, date and group keys, ``ratio_kind``, ``ratio``, ``ratio_low``,
        ``ratio_upp``, ``flagged``, ``gap_pp`` (rounded to whole points),
        ``approximate``, ``public`` (bool) and ``reason``.
    """
    combined = with_combined_levels(aggregate)
    if release is None:
        release = publish(combined, min_group_size)
    else:
        added = combined[combined["note"] == COMBINED_NOTE]
        if len(added):
            release = pd.concat([release, publish(added, min_group_size)],
                                ignore_index=True)
    release = _unit_columns(release[release["grade"] == ALL_GRADES])
    coded = release["rate_display"].str.startswith(("≤", "≥"))
    release["_hidden"] = release["suppressed"].astype(bool) | coded
    release["_why"] = np.where(release["suppressed"].astype(bool),
                               "hidden by the privacy gate (small group)",
                               np.where(coded, "rate near 0% or 100%: ratio hidden",
                                        ""))
    keys = ["source", "definition", "as_of_date", "level", "unit_id", "group_type",
            "group_value"]
    release = release[keys + ["_hidden", "_why"]].drop_duplicates(keys)
    out = ratios.merge(release, on=keys, how="left")
    out["_hidden"] = out["_hidden"].astype("boolean").fillna(True)
    out["_why"] = out["_why"].fillna("no public cell for this group")
    public = out["shown"] & ~out["_hidden"].astype(bool)
    out["public"] = public
    out["reason"] = np.where(~out["shown"], out["reason"],
                             np.where(public, "", out["_why"]))
    for col in ("ratio", "ratio_low", "ratio_upp", "gap_pp"):
        out[col] = out[col].where(public)
    out["ratio_kind"] = out["ratio_kind"].where(public, "")
    out["gap_pp"] = out["gap_pp"].round(0)
    out["flagged"] = out["flagged"] & public
    columns = ["source", "definition", "school_year", "as_of_date", "level",
               "unit_id", "unit_name", "group_type", "group_value", "ratio_kind",
               "ratio", "ratio_low", "ratio_upp", "flagged", "gap_pp", "approximate",
               "public", "reason"]
    logger.info("public ratios: %d rows, %d public", len(out), int(public.sum()))
    return out[columns].reset_index(drop=True)


# ------------------------------------------------------------- student-level frames

def _school_year_start(day: pd.Timestamp, start_month: int) -> pd.Timestamp:
    year = day.year if day.month >= start_month else day.year - 1
    return pd.Timestamp(year=year, month=start_month, day=1)


def audit_frame(students: pd.DataFrame, interventions: pd.DataFrame | None,
                as_of, level: str = "district", unit_id: str | None = None,
                period: Literal["current", "prior"] = "current",
                start_month: int = 7,
                settings: EquitySettings | None = None) -> pd.DataFrame:
    """One row per student analysed, with absence, groups and actions received.

    Parameters
    ----------
    students : DataFrame
        ``students.parquet`` of a processed run (student facts and groups at the
        as-of date; staff only).
    interventions : DataFrame or None
        ``interventions.parquet`` (``student_id, school_id, date, kind``).
    as_of : date-like
        The run's as-of date.
    level : {"district", "school"}
        Analyse a district (each student once, days added across schools) or one
        school (actions logged at that school).
    unit_id : str, optional
        The district or school id; every unit of ``level`` when omitted.
    period : {"current", "prior"}
        ``current``: this school year up to the as-of date (absence to date,
        actions dated in the year up to the as-of date, Tier 2/3 at the as-of
        date). ``prior``: last school year (last year's absence rate, actions
        dated last year); district level only.
    start_month : int
        First month of the school year.
    settings : EquitySettings, optional
        For the absence strata.

    Returns
    -------
    DataFrame
        ``student_id`` (kept for joins, never shown or logged), ``school``,
        ``grade``, ``absence_rate``, ``band``, ``stratum``, ``chronic``,
        ``tiered``, ``prior_absence_rate``, the group columns, ``punitive``,
        ``supportive`` (any action in the period) and their counts.

    Notes
    -----
    For ``prior``, the students are those enrolled this year who were eligible
    last year (``students.parquet`` holds this year's students only), their
    school and grade are this year's, and "Tier 2/3" means chronically absent
    last year (the Tier 2 trigger a student carries into this year).
    """
    settings = settings or load_equity_settings()
    as_of = pd.Timestamp(as_of)
    rows = students[students["level"] == level]
    if unit_id is not None:
        rows = rows[rows["unit_id"] == str(unit_id)]
    if period == "prior" and level != "district":
        raise ValueError("period='prior' is available at district level only: last "
                         "year's school of each student is not in the processed run.")

    # The school of each student: the unit itself, or where most days were spent.
    frame = rows.copy()
    if level == "school":
        frame["school"] = frame["unit_id"]
    else:
        at_school = students[students["level"] == "school"].sort_values(
            ["student_id", "days_enrolled", "unit_id"], ascending=[True, False, True])
        main = at_school.drop_duplicates("student_id").set_index("student_id")
        frame["school"] = frame["student_id"].map(main["unit_id"]).fillna("unknown")

    start = _school_year_start(as_of, start_month)
    if period == "current":
        frame = frame[frame["eligible"].astype(bool)].copy()
        frame["tiered"] = (frame["tier2"].astype(bool) | frame["tier3"].astype(bool))
        window = (start, as_of)
    else:
        frame = frame[frame["prior_absence_rate"].notna()].copy()
        frame["absence_rate"] = frame["prior_absence_rate"]
        frame["chronic"] = frame["absence_rate"] >= 0.10
        frame["tiered"] = frame["chronic"]
        frame["band"] = pd.cut(frame["absence_rate"], [-np.inf, *BAND_CUTS, np.inf],
                               right=False, labels=list(BAND_LABELS)).astype(str)
        window = (start - pd.DateOffset(years=1), start - pd.Timedelta(days=1))
    frame["stratum"] = absence_stratum(frame["absence_rate"], settings.absence_strata)

    # Actions dated in the period (at the school, for a school).
    frame = frame.reset_index(drop=True)
    for kind in ("punitive", "supportive"):
        frame[kind] = False
        frame[f"{kind}_actions"] = 0
    if interventions is not None and len(interventions):
        log = interventions.copy()
        log["date"] = pd.to_datetime(log["date"])
        log = log[(log["date"] >= window[0]) & (log["date"] <= window[1])]
        if level == "school":
            log = log[log["school_id"].isin(frame["school"].unique())]
        counts = log.groupby(["student_id", "kind"]).size().unstack(fill_value=0)
        for kind in ("punitive", "supportive"):
            if kind in counts:
                n = frame["student_id"].map(counts[kind]).fillna(0).astype(int)
                frame[f"{kind}_actions"] = n
                frame[kind] = n > 0
    frame["grade"] = frame["grade"].astype("string").fillna("unknown")
    frame["chronic"] = frame["chronic"].astype(bool)
    keep = ["student_id", "school", "grade", "absence_rate", "band", "stratum",
            "chronic", "tiered", "prior_absence_rate", *[g for g in GROUP_DIMENSIONS
                                                         if g in frame.columns],
            "punitive", "supportive", "punitive_actions", "supportive_actions"]
    frame.attrs.update(period=period, level=level, unit_id=unit_id,
                       window=(window[0].date(), window[1].date()))
    logger.info("audit frame: %d students (%s, %s), %d with a punitive action, %d "
                "with a supportive action", len(frame), level, period,
                int(frame["punitive"].sum()), int(frame["supportive"].sum()))
    return frame[keep]


def absence_stratum(rate: pd.Series, cuts) -> pd.Series:
    """Label each absence rate with its stratum, e.g. ``"6% to under 8%"``."""
    edges = [-np.inf, *cuts, np.inf]
    labels = []
    for low, upp in zip(edges[:-1], edges[1:], strict=True):
        if np.isinf(low):
            labels.append(f"under {upp * 100:g}%")
        elif np.isinf(upp):
            labels.append(f"{low * 100:g}% or more")
        else:
            labels.append(f"{low * 100:g}% to under {upp * 100:g}%")
    return pd.cut(rate, edges, right=False, labels=labels).astype(str)


# --------------------------------------------------------- stratified risk ratios

def mantel_haenszel_risk_ratio(a, n1, c, n0, alpha: float = 0.05) -> dict:
    """Mantel-Haenszel risk ratio pooled over strata, with its 95% interval.

    Parameters
    ----------
    a, n1 : array-like
        Per stratum: students with the outcome in the group, students in the group.
    c, n0 : array-like
        The same for the comparison group.
    alpha : float
        The interval has coverage ``1 - alpha``.

    Returns
    -------
    dict
        ``ratio``, ``ci_low``, ``ci_upp``, ``se_log``, ``pvalue``.

    Notes
    -----
    Point estimate: Rothman, Greenland & Lash, *Modern Epidemiology* (3rd ed.),
    eq. 15-13. Variance of its log: Greenland & Robins (1985), *Biometrics*
    41:55-68, ``sum((n1 n0 (a + c) - a c N) / N^2) / (R S)`` with
    ``R = sum(a n0 / N)`` and ``S = sum(c n1 / N)``; valid with many sparse
    strata. Strata holding only one group add nothing. A ratio whose numerator or
    denominator is zero is not computable (NaN).
    """
    a, n1, c, n0 = (np.asarray(v, dtype=float) for v in (a, n1, c, n0))
    total = n1 + n0
    ok = (n1 > 0) & (n0 > 0)
    a, n1, c, n0, total = a[ok], n1[ok], c[ok], n0[ok], total[ok]
    r = np.sum(a * n0 / total)
    s = np.sum(c * n1 / total)
    out = {"ratio": np.nan, "ci_low": np.nan, "ci_upp": np.nan, "se_log": np.nan,
           "pvalue": np.nan}
    if r <= 0 or s <= 0:
        return out
    variance = np.sum((n1 * n0 * (a + c) - a * c * total) / total ** 2) / (r * s)
    ratio = r / s
    out["ratio"] = ratio
    if not variance > 0:
        return out
    se = float(np.sqrt(variance))
    z = stats.norm.ppf(1 - alpha / 2)
    out.update(ci_low=ratio * np.exp(-z * se), ci_upp=ratio * np.exp(z * se),
               se_log=se, pvalue=float(2 * stats.norm.sf(abs(np.log(ratio)) / se)))
    return out


def stratified_risk_ratios(frame: pd.DataFrame, outcome: str,
                           settings: EquitySettings | None = None,
                           among: pd.Series | None = None,
                           direction: Literal["higher", "lower"] = "higher",
                           strata: str = "stratum") -> pd.DataFrame:
    """Risk ratio of an outcome for each group against all other students, at
    similar absence (Mantel-Haenszel over absence strata).

    Parameters
    ----------
    frame : DataFrame
        From :func:`audit_frame`.
    outcome : str
        A boolean column: ``punitive``, ``supportive``, ``tiered`` ...
    settings : EquitySettings, optional
    among : boolean Series, optional
        Restrict to these students (e.g. Tier 2/3 for supportive actions).
    direction : {"higher", "lower"}
        Which side is a concern: more punitive actions ("higher"), or less
        support ("lower"). A group is flagged when its ratio is at least
        ``action_ratio_threshold`` (or at most its inverse) and the adjusted
        p-value is below ``alpha``.
    strata : str
        The column holding the strata.

    Returns
    -------
    DataFrame
        Per group: ``students``, ``with_outcome``, ``rate``, the comparison's
        ``comparison_students``, ``comparison_with_outcome``, ``comparison_rate``,
        the crude Katz ``crude_ratio``, the stratified ``ratio`` with
        ``ci_low``/``ci_upp``, ``pvalue``, ``pvalue_adjusted``, ``shown``,
        ``flagged`` and ``reason``.
    """
    settings = settings or load_equity_settings()
    data = frame if among is None else frame[among.to_numpy(dtype=bool)]
    y = data[outcome].to_numpy(dtype=bool)
    layer, labels = pd.factorize(data[strata])
    k = len(labels)
    rows = []
    for group_type, group_value in focal_groups(data):
        member = _membership(data, group_type, group_value)
        # Counts per stratum and side: cell 2 * stratum + in_group.
        cell = 2 * layer + member
        size = np.bincount(cell, minlength=2 * k).reshape(k, 2)
        events = np.bincount(cell, weights=y, minlength=2 * k).reshape(k, 2)
        mh = mantel_haenszel_risk_ratio(events[:, 1], size[:, 1], events[:, 0],
                                        size[:, 0], settings.alpha)
        a, n1 = float(y[member].sum()), float(member.sum())
        c, n0 = float(y[~member].sum()), float((~member).sum())
        crude = risk_ratio([a], [n1], [c], [n0], settings.alpha,
                           settings.zero_cell_correction).iloc[0]
        rows.append({"group_type": group_type, "group_value": group_value,
                     "students": int(n1), "with_outcome": int(a),
                     "rate": a / n1 if n1 else np.nan,
                     "comparison_students": int(n0), "comparison_with_outcome": int(c),
                     "comparison_rate": c / n0 if n0 else np.nan,
                     "crude_ratio": crude["risk_ratio"], **mh})
    out = pd.DataFrame(rows, columns=[
        "group_type", "group_value", "students", "with_outcome", "rate",
        "comparison_students", "comparison_with_outcome", "comparison_rate",
        "crude_ratio", "ratio", "ci_low", "ci_upp", "se_log", "pvalue"])
    return _flag_action_rows(out, settings, direction)


def _flag_action_rows(out: pd.DataFrame, settings: EquitySettings,
                      direction: str) -> pd.DataFrame:
    """Reporting rules, multiple-comparison adjustment and flags for an audit table."""
    cell, n = settings.min_cell, settings.min_group
    reasons = np.select(
        [out["with_outcome"] < cell, out["students"] < n,
         out["comparison_with_outcome"] < cell, out["comparison_students"] < n,
         out["ratio"].isna()],
        [f"fewer than {cell} students with the outcome in the group",
         f"fewer than {n} students in the group",
         f"fewer than {cell} other students with the outcome",
         f"fewer than {n} other students", "not computable at similar absence"], "")
    out["shown"] = reasons == ""
    out["reason"] = reasons
    out["pvalue_adjusted"] = np.nan
    shown = out["shown"].to_numpy(dtype=bool)
    out.loc[shown, "pvalue_adjusted"] = adjust_pvalues(
        out.loc[shown, "pvalue"].to_numpy(), settings.multitest_method)
    limit = settings.action_ratio_threshold
    beyond = (out["ratio"] >= limit) if direction == "higher" else (
        out["ratio"] <= 1 / limit)
    out["flagged"] = out["shown"] & beyond & (out["pvalue_adjusted"] < settings.alpha)
    return out


def band_risk_ratios(frame: pd.DataFrame, outcome: str, group_type: str,
                     group_value: str, settings: EquitySettings | None = None,
                     among: pd.Series | None = None) -> pd.DataFrame:
    """Rates and Katz risk ratios of one group against all others, band by band.

    The four Attendance Works bands; the table behind "within absence bands".
    """
    settings = settings or load_equity_settings()
    data = frame if among is None else frame[among.to_numpy(dtype=bool)]
    member = _membership(data, group_type, group_value)
    rows = []
    for band, label in BAND_LABELS.items():
        inside = (data["band"] == band).to_numpy()
        g, o = inside & member, inside & ~member
        y = data[outcome].to_numpy(dtype=bool)
        a, n1, c, n0 = y[g].sum(), g.sum(), y[o].sum(), o.sum()
        rr = risk_ratio([a], [n1], [c], [n0], settings.alpha,
                        settings.zero_cell_correction).iloc[0]
        small = (a < settings.min_cell) or (n1 < settings.min_group)
        rows.append({"band": band, "band_label": label, "students": int(n1),
                     "with_outcome": int(a), "rate": a / n1 if n1 else np.nan,
                     "comparison_students": int(n0), "comparison_with_outcome": int(c),
                     "comparison_rate": c / n0 if n0 else np.nan,
                     "ratio": rr["risk_ratio"], "ci_low": rr["ci_low"],
                     "ci_upp": rr["ci_upp"], "shown": not small,
                     "note": rr["ratio_note"] if not small else
                     f"fewer than {settings.min_cell} with the outcome or "
                     f"{settings.min_group} students"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------- regressions

def _robust_fit(model, groups: np.ndarray | None, settings: EquitySettings):
    """Fit with cluster-robust errors by school when there are enough schools.

    With clustering, inference uses t critical values with ``G - 1`` degrees of
    freedom (G schools): with 10-30 clusters normal critical values make the
    sandwich errors too optimistic (Cameron & Miller 2015, *J Human Resources*
    50:317-372). A test of many synthetic districts shows the difference: with 12
    schools and normal values about 13% of districts had a false flag among
    groups with no effect, against 7% with t(G - 1) (5% nominal).
    """
    n_clusters = 0 if groups is None else len(np.unique(groups))
    extra = {"disp": 0} if isinstance(model, sm.Logit) else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if n_clusters >= settings.min_clusters:
            fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups},
                            use_t=True, **extra)
            return fit, (f"cluster-robust by school ({n_clusters} schools, t with "
                         f"{n_clusters - 1} degrees of freedom)")
        fit = model.fit(cov_type="HC1", **extra)
        return fit, (f"heteroskedasticity-robust (HC1): {n_clusters} school(s), too "
                     f"few to cluster")


def _critical_value(fit, alpha: float) -> float:
    """The two-sided critical value the fit's inference uses (t or normal)."""
    if getattr(fit, "use_t", False):
        return float(stats.t.ppf(1 - alpha / 2, fit.df_resid_inference))
    return float(stats.norm.ppf(1 - alpha / 2))


def _dummies(values: pd.Series, prefix: str, drop: str | None = None) -> pd.DataFrame:
    """0/1 columns for each value, without ``drop`` (the reference)."""
    values = values.astype("string").fillna("unknown")
    out = pd.get_dummies(values, prefix=prefix, prefix_sep="=", dtype=float)
    if drop is None:
        counts = values.value_counts()
        drop = str(counts.index[0])
    return out.drop(columns=[f"{prefix}={drop}"], errors="ignore")


def _prune_without_variation(frame: pd.DataFrame, y: str,
                             columns: list[str]) -> pd.DataFrame:
    """Drop students in categories where the outcome never (or always) happens.

    Such a category's coefficient runs off to infinity, and its students carry no
    information about the group comparison in a model with that category as a
    control (the standard fixed-effects treatment: Stata drops them too).
    """
    data = frame
    for _ in range(5):
        before = len(data)
        for column in columns:
            rate = data.groupby(column, observed=True)[y].transform("mean")
            data = data[(rate > 0) & (rate < 1)]
        if len(data) == before:
            break
    return data


def adjusted_gaps(frame: pd.DataFrame,
                  settings: EquitySettings | None = None) -> pd.DataFrame:
    """Chronic-absence gaps by group: raw, and with grade, school and last year equal.

    For each group, a logistic regression of chronic absence on being in the
    group, with grade and school (fixed effects) and last year's absence rate as
    controls; cluster-robust errors by school (HC1 within one school).

    Parameters
    ----------
    frame : DataFrame
        From :func:`audit_frame` (``period="current"``).
    settings : EquitySettings, optional

    Returns
    -------
    DataFrame
        Per group: ``students``, ``chronic``, ``rate``, ``comparison_rate``,
        ``raw_gap_pp``; ``odds_ratio`` with ``or_low``/``or_upp``; ``ame_pp``
        (average marginal effect of being in the group, percentage points) with
        ``ame_low``/``ame_upp``; ``share_remaining`` (``ame_pp / raw_gap_pp``);
        ``pvalue``, ``pvalue_adjusted``; ``errors`` (how errors were computed),
        ``shown`` and ``reason``.

    Notes
    -----
    * The average marginal effect is what statsmodels' ``get_margeff(
      at="overall", dummy=True)`` reports for the group indicator (see
      :func:`average_marginal_effect`): the mean over students of the predicted
      probability with the indicator set to 1 minus set to 0, so it is a gap in
      percentage points on the scale of the raw gap.
    * Last year's absence is missing for students new to the district (or not
      eligible last year); it is set to 0 with an indicator for "no last year"
      (the missing-indicator method: simple, and biased if new students differ
      in ways the indicator does not capture).
    * Students in a grade or school where nobody (or everybody) is chronically
      absent are left out of the model (their fixed effect is infinite); the raw
      gap is computed on the same students, so the share remaining compares like
      with like.
    * With fewer than ``min_clusters`` schools, cluster-robust errors are
      unreliable; HC1 errors are used instead and ``errors`` says so. With
      clusters, p-values and intervals (odds ratio and marginal effect) use t
      critical values with G - 1 degrees of freedom (see :func:`_robust_fit`).
    """
    settings = settings or load_equity_settings()
    data = frame.copy()
    data["y"] = data["chronic"].astype(float)
    data["prior"] = data["prior_absence_rate"].fillna(0.0).astype(float)
    data["no_prior"] = data["prior_absence_rate"].isna().astype(float)
    rows = []
    for group_type, group_value in focal_groups(data):
        data["g"] = _membership(data, group_type, group_value).astype(float)
        row = {"group_type": group_type, "group_value": group_value}
        row.update(_one_gap_model(data, settings))
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col in _GAP_COLUMNS:
        if col not in out:
            out[col] = "" if col in ("errors", "reason") else np.nan
    shown = out["shown"].to_numpy(dtype=bool)
    out["pvalue_adjusted"] = np.nan
    out.loc[shown, "pvalue_adjusted"] = adjust_pvalues(
        out.loc[shown, "pvalue"].to_numpy(), settings.multitest_method)
    return out


#: Columns of :func:`adjusted_gaps`, present even when no model could be fitted.
_GAP_COLUMNS = ("students_in_model", "raw_gap_pp", "odds_ratio", "or_low", "or_upp",
                "ame_pp", "ame_low", "ame_upp", "share_remaining", "pvalue", "errors",
                "shown", "reason")


def _one_gap_model(data: pd.DataFrame, settings: EquitySettings) -> dict:
    """Fit the adjusted-gap logit for the group in column ``g``."""
    result = {"students": int(data["g"].sum()),
              "chronic": int(data.loc[data["g"] == 1, "y"].sum())}
    others = data["g"] == 0
    result["rate"] = (data.loc[~others, "y"].mean() if result["students"] else np.nan)
    result["comparison_rate"] = data.loc[others, "y"].mean()
    result["raw_gap_pp_all"] = 100 * (result["rate"] - result["comparison_rate"])
    cell, n = settings.min_cell, settings.min_group
    if result["students"] < n or result["chronic"] < cell:
        return result | {"shown": False,
                         "reason": f"fewer than {n} students or {cell} chronically "
                                   "absent in the group"}
    if others.sum() < n or data.loc[others, "y"].sum() < cell:
        return result | {"shown": False, "reason": "comparison group too small"}

    fit_data = _prune_without_variation(data, "y", ["grade", "school"])
    schools = fit_data["school"].astype(str).to_numpy()
    exog = pd.concat([
        pd.Series(1.0, index=fit_data.index, name="const"),
        fit_data[["g", "prior", "no_prior"]],
        _dummies(fit_data["grade"], "grade"),
        _dummies(fit_data["school"], "school"),
    ], axis=1)
    exog = exog.loc[:, exog.std(ddof=0).gt(0) | (exog.columns == "const")]
    if "no_prior" in exog and exog["no_prior"].sum() == 0:
        exog = exog.drop(columns="no_prior")
    exog = _independent_columns(exog)
    try:
        model = sm.Logit(fit_data["y"].to_numpy(), exog)
        fit, errors = _robust_fit(model, schools, settings)
        ame, ame_se = average_marginal_effect(
            fit, exog, "g", schools if "cluster" in errors else None)
    except Exception as error:  # statsmodels raises several kinds on separation
        logger.warning("adjusted gap not computable: %s", type(error).__name__)
        return result | {"shown": False,
                         "reason": f"model not computable ({type(error).__name__})"}
    z = _critical_value(fit, settings.alpha)
    coef, se = fit.params["g"], fit.bse["g"]
    in_fit = fit_data["g"] == 1
    raw = 100 * (fit_data.loc[in_fit, "y"].mean() - fit_data.loc[~in_fit, "y"].mean())
    return result | {
        "students_in_model": int(len(fit_data)),
        "raw_gap_pp": raw,
        "odds_ratio": float(np.exp(coef)),
        "or_low": float(np.exp(coef - z * se)),
        "or_upp": float(np.exp(coef + z * se)),
        "ame_pp": 100 * ame,
        "ame_low": 100 * (ame - z * ame_se),
        "ame_upp": 100 * (ame + z * ame_se),
        "share_remaining": 100 * ame / raw if abs(raw) >= 1 else np.nan,
        "pvalue": float(fit.pvalues["g"]),
        "errors": errors, "shown": True,
        "reason": "" if abs(raw) >= 1 else "raw gap under 1 point: share not shown",
    }


def _independent_columns(exog: pd.DataFrame) -> pd.DataFrame:
    """Drop columns that are linear combinations of the columns before them.

    School and grade controls overlap: in a district whose elementary schools
    teach K-5 only, the elementary-school dummies add up to the K-5 grade dummies.
    The fit then rests on a singular information matrix and its errors on
    rounding noise (they changed from one machine to the next). Columns are kept
    in order, so the constant, the group and prior absence always stay.
    """
    values = exog.to_numpy(dtype=float)
    kept: list[int] = []
    for j in range(values.shape[1]):
        trial = values[:, kept + [j]]
        if np.linalg.matrix_rank(trial) == len(kept) + 1:
            kept.append(j)
    dropped = [c for i, c in enumerate(exog.columns) if i not in kept]
    if dropped:
        logger.debug("collinear controls left out: %s", dropped)
    return exog.iloc[:, kept]


def average_marginal_effect(fit, exog: pd.DataFrame, column: str,
                            groups: np.ndarray | None = None) -> tuple[float, float]:
    """Average marginal effect of a 0/1 regressor in a fitted logit, and its error.

    The mean over students of ``F(x1 b) - F(x0 b)``, with ``x1``/``x0`` each
    student's row with ``column`` set to 1/0 and ``F`` the logistic function;
    the standard error by the delta method with the fit's covariance (so
    cluster-robust when the fit is): gradient ``mean(f(x1 b) x1 - f(x0 b) x0)``.

    Notes
    -----
    This is what ``fit.get_margeff(at="overall", dummy=True)`` reports for that
    column (a test checks both it and a finite difference), computed for one
    column only: ``get_margeff`` works out every dummy (grade, school...), about
    1.2 s a model on the sample district against a few milliseconds here.
    """
    x1 = exog.to_numpy(dtype=float).copy()
    x0 = x1.copy()
    j = list(exog.columns).index(column)
    x1[:, j], x0[:, j] = 1.0, 0.0
    beta = np.asarray(fit.params, dtype=float)
    p1 = 1 / (1 + np.exp(-(x1 @ beta)))
    p0 = 1 / (1 + np.exp(-(x0 @ beta)))
    gradient = ((p1 * (1 - p1))[:, None] * x1
                - (p0 * (1 - p0))[:, None] * x0).mean(axis=0)
    return float(np.mean(p1 - p0)), _delta_se(fit, gradient, j, groups)


#: Directions of the information matrix weaker than this share of the strongest are
#: treated as not identified in :func:`_delta_se`.
_RCOND = 1e-9


def _delta_se(fit, gradient: np.ndarray, j: int,
              groups: np.ndarray | None) -> float:
    """``sqrt(gradient' V gradient)`` for the fit's covariance ``V``.

    With ``groups`` (the clusters the fit used), computed cluster by cluster:

    ``V = A M A`` with ``A`` the inverse Hessian and ``M`` the sum over clusters of
    the outer products of score sums, so ``g' V g`` is the sum over clusters of
    ``(s_c . A g)**2``: written that way it can never come out negative. Forming
    ``V`` first and then ``g' V g`` (as ``get_margeff`` does) lost every digit on
    the sample district, where school fixed effects next to school clusters make
    ``V`` nearly singular (intervals of millions of points, or NaN). The
    small-sample factor statsmodels applies is read off the fit's own variance
    of coefficient ``j``, so both agree where both are exact (a test checks it).
    """
    if groups is None:
        # Without the clusters, the fit's covariance as it stands.
        covariance = np.asarray(fit.cov_params(), dtype=float)
        return float(np.sqrt(max(gradient @ covariance @ gradient, 0.0)))
    model = fit.model
    beta = np.asarray(fit.params, dtype=float)
    scores = np.asarray(model.score_obs(beta), dtype=float)
    # Invert -H on its well-determined directions only. A control that is nearly
    # separated (a school or grade where almost no one, or everyone, is chronic)
    # has a coefficient drifting to infinity and an eigenvalue near zero; the
    # average marginal effect hardly moves along it (its gradient there is ~0),
    # but 1/eigenvalue times rounding noise gave intervals of 1e15 points.
    values, vectors = np.linalg.eigh(-np.asarray(model.hessian(beta), dtype=float))
    keep = values > values.max() * _RCOND
    inverse = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    sums = pd.DataFrame(scores).groupby(np.asarray(groups)).sum().to_numpy()

    def sandwich(direction: np.ndarray) -> float:
        return float(np.sum((sums @ (inverse @ direction)) ** 2))

    unit = np.zeros_like(gradient)
    unit[j] = 1.0
    factor = float(np.asarray(fit.cov_params(), dtype=float)[j, j]) / sandwich(unit)
    return float(np.sqrt(factor * sandwich(gradient)))


def action_regression(frame: pd.DataFrame, outcome: str,
                      settings: EquitySettings | None = None,
                      among: pd.Series | None = None,
                      direction: Literal["higher", "lower"] = "higher") -> pd.DataFrame:
    """Risk ratios of an action for every group side by side (modified Poisson).

    A Poisson regression with a log link of the outcome (0/1) on every group at
    once (race/ethnicity and gender against their largest group, yes/no groups
    against students without the flag), with the absence stratum and grade as
    controls; cluster-robust errors by school with t(G - 1) inference (Zou 2004,
    *Am J Epidemiol* 159:702-706: robust errors make the Poisson model valid for
    binary outcomes).
    ``exp(coefficient)`` is a risk ratio holding absence, grade and the other
    groups equal.

    Parameters
    ----------
    frame : DataFrame
        From :func:`audit_frame`.
    outcome : str
        Boolean column.
    settings : EquitySettings, optional
    among : boolean Series, optional
        Restrict to these students.
    direction : {"higher", "lower"}
        As in :func:`stratified_risk_ratios`.

    Returns
    -------
    DataFrame
        Per group term: ``group_type``, ``group_value``, ``reference``,
        ``ratio``, ``ci_low``, ``ci_upp``, ``pvalue``, ``pvalue_adjusted``,
        ``flagged``, ``errors``; ``attrs["notes"]`` lists groups left out.

    Notes
    -----
    Race/ethnicity and gender values with fewer than ``min_group`` students or
    ``min_cell`` with the outcome are too small to estimate: their students are
    left out of the model (keeping them in the reference would blur it). Small
    yes/no groups are left out of the model as terms only. Strata and grades in
    which nobody received the action carry no information and are dropped.
    """
    settings = settings or load_equity_settings()
    data = (frame if among is None else frame[among.to_numpy(dtype=bool)]).copy()
    data["y"] = data[outcome].astype(float)
    notes: list[str] = []
    cell, n = settings.min_cell, settings.min_group
    for dim in ("race_ethnicity", "gender"):
        if dim not in data:
            continue
        sizes = data.groupby(data[dim].astype("string"))["y"].agg(["size", "sum"])
        small = sizes[(sizes["size"] < n) | (sizes["sum"] < cell)].index
        if len(small):
            notes.append(f"{GROUP_TYPE_LABELS[dim]}: {', '.join(map(str, small))} too "
                         f"small to estimate; those students are left out")
            data = data[~data[dim].astype("string").isin(small)]
    data = _prune_without_variation(data, "y", ["stratum", "grade"])

    terms: list[tuple[str, str, str, pd.Series]] = []
    for dim in ("race_ethnicity", "gender"):
        if dim not in data or data[dim].nunique() < 2:
            continue
        values = data[dim].astype("string")
        reference = str(values.value_counts().index[0])
        for value in sorted(values.dropna().unique()):
            if value != reference:
                terms.append((dim, value, f"{reference} students",
                              (values == value).astype(float)))
    for dim, (yes, _) in FLAG_GROUP_VALUES.items():
        if dim not in data:
            continue
        member = data[dim].fillna(False).astype(bool)
        if member.sum() < n or data.loc[member, "y"].sum() < cell or \
                (~member).sum() < n:
            if member.any():
                notes.append(f"{yes}: too small to estimate")
            continue
        terms.append((dim, yes, "students without it", member.astype(float)))
    if not terms or data["y"].sum() < cell:
        out = pd.DataFrame(columns=["group_type", "group_value", "reference", "ratio",
                                    "ci_low", "ci_upp", "pvalue", "pvalue_adjusted",
                                    "flagged", "errors"])
        out.attrs["notes"] = notes + ["too few students with the outcome for a model"]
        return out

    names = [f"t{i}" for i in range(len(terms))]
    exog = pd.concat(
        [pd.Series(1.0, index=data.index, name="const"),
         pd.DataFrame({name: t[3] for name, t in zip(names, terms, strict=True)}),
         _dummies(data["stratum"], "stratum"), _dummies(data["grade"], "grade")],
        axis=1)
    try:
        model = sm.GLM(data["y"].to_numpy(), exog, family=sm.families.Poisson())
        fit, errors = _robust_fit(model, data["school"].astype(str).to_numpy(),
                                  settings)
    except Exception as error:
        logger.warning("action regression not computable: %s", type(error).__name__)
        out = pd.DataFrame()
        out.attrs["notes"] = notes + [f"model not computable ({type(error).__name__})"]
        return out
    z = _critical_value(fit, settings.alpha)
    rows = []
    for name, (dim, value, reference, _) in zip(names, terms, strict=True):
        coef, se = fit.params[name], fit.bse[name]
        rows.append({"group_type": dim, "group_value": value, "reference": reference,
                     "ratio": float(np.exp(coef)),
                     "ci_low": float(np.exp(coef - z * se)),
                     "ci_upp": float(np.exp(coef + z * se)),
                     "pvalue": float(fit.pvalues[name]), "errors": errors})
    out = pd.DataFrame(rows)
    out["pvalue_adjusted"] = adjust_pvalues(out["pvalue"], settings.multitest_method)
    limit = settings.action_ratio_threshold
    beyond = (out["ratio"] >= limit) if direction == "higher" else (
        out["ratio"] <= 1 / limit)
    out["flagged"] = beyond & (out["pvalue_adjusted"] < settings.alpha)
    out.attrs["notes"] = notes
    out.attrs["students"] = int(len(data))
    return out


def absence_when_acted(frame: pd.DataFrame, outcome: str,
                       settings: EquitySettings | None = None) -> pd.DataFrame:
    """Absence of the students who received an action (or a tier), group by group.

    Are some groups labelled or punished at lower absence than others? For the
    students with ``outcome``, the median absence rate of each group against the
    other students with it, with a two-sided Mann-Whitney test (scipy) adjusted
    across groups. Flagged when the group's absence is clearly lower.

    Returns
    -------
    DataFrame
        ``students``, ``median_absence``, ``comparison_median``,
        ``difference_pp``, ``pvalue``, ``pvalue_adjusted``, ``shown``,
        ``flagged``, ``reason``.
    """
    settings = settings or load_equity_settings()
    acted = frame[frame[outcome].astype(bool)]
    rows = []
    for group_type, group_value in focal_groups(acted):
        member = _membership(acted, group_type, group_value)
        mine = acted.loc[member, "absence_rate"].to_numpy(dtype=float)
        rest = acted.loc[~member, "absence_rate"].to_numpy(dtype=float)
        row = {"group_type": group_type, "group_value": group_value,
               "students": len(mine), "comparison_students": len(rest),
               "median_absence": np.median(mine) if len(mine) else np.nan,
               "comparison_median": np.median(rest) if len(rest) else np.nan,
               "pvalue": np.nan}
        if len(mine) >= settings.min_cell and len(rest) >= settings.min_cell:
            row["pvalue"] = float(stats.mannwhitneyu(mine, rest,
                                                     alternative="two-sided").pvalue)
        rows.append(row)
    out = pd.DataFrame(rows, columns=["group_type", "group_value", "students",
                                      "comparison_students", "median_absence",
                                      "comparison_median", "pvalue"])
    out["difference_pp"] = 100 * (out["median_absence"] - out["comparison_median"])
    out["shown"] = ((out["students"] >= settings.min_cell)
                    & (out["comparison_students"] >= settings.min_cell))
    out["reason"] = np.where(out["shown"], "",
                             f"fewer than {settings.min_cell} students with the "
                             "action in the group or the comparison")
    out["pvalue_adjusted"] = np.nan
    shown = out["shown"].to_numpy(dtype=bool)
    out.loc[shown, "pvalue_adjusted"] = adjust_pvalues(
        out.loc[shown, "pvalue"].to_numpy(), settings.multitest_method)
    out["flagged"] = (out["shown"] & (out["difference_pp"] < 0)
                      & (out["pvalue_adjusted"] < settings.alpha))
    return out


@dataclass
class ActionAudit:
    """Every table of the action audit for one unit and period."""

    period: str
    window: tuple
    students: int
    punitive: pd.DataFrame            # stratified ratios, all students
    supportive: pd.DataFrame          # stratified ratios, Tier 2/3 students
    tiering: pd.DataFrame             # stratified ratios of Tier 2/3 placement
    punitive_regression: pd.DataFrame
    supportive_regression: pd.DataFrame
    absence_when_punished: pd.DataFrame
    absence_when_tiered: pd.DataFrame
    punitive_bands: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def action_audit(frame: pd.DataFrame,
                 settings: EquitySettings | None = None) -> ActionAudit:
    """Run the whole action audit on one :func:`audit_frame`.

    Punitive actions are compared among all students analysed; supportive actions
    among Tier 2/3 students (the students they are for); tier placement among all
    students. Each at similar absence (Mantel-Haenszel over the absence strata),
    and, for actions, in a regression with every group side by side. Per-band
    ratios are kept for every group flagged for punitive actions.

    Notes
    -----
    The comparison is "all other students". When one group is treated
    differently, every group holding many (or few) of its students looks a
    little different too (in the sample district, groups with few Black
    students show punitive ratios below 1); the regression, which compares
    groups side by side, separates them.
    """
    settings = settings or load_equity_settings()
    tiered = frame["tiered"].astype(bool)
    punitive = stratified_risk_ratios(frame, "punitive", settings)
    audit = ActionAudit(
        period=frame.attrs.get("period", ""), window=frame.attrs.get("window", ()),
        students=len(frame),
        punitive=punitive,
        supportive=stratified_risk_ratios(frame, "supportive", settings, among=tiered,
                                          direction="lower"),
        tiering=stratified_risk_ratios(frame, "tiered", settings),
        punitive_regression=action_regression(frame, "punitive", settings),
        supportive_regression=action_regression(frame, "supportive", settings,
                                                 among=tiered, direction="lower"),
        absence_when_punished=absence_when_acted(frame, "punitive", settings),
        absence_when_tiered=absence_when_acted(frame, "tiered", settings),
    )
    for _, row in punitive[punitive["flagged"]].iterrows():
        audit.punitive_bands[row["group_value"]] = band_risk_ratios(
            frame, "punitive", row["group_type"], row["group_value"], settings)
    audit.notes = (
        [f"Punitive model: {n}" for n in
         audit.punitive_regression.attrs.get("notes", [])]
        + [f"Supportive model (Tier 2/3 students): {n}" for n in
           audit.supportive_regression.attrs.get("notes", [])])
    return audit


# ------------------------------------------------------------------------ findings

PERIOD_WORDS = {"current": "this school year to date", "prior": "last school year"}


def findings(ratios: pd.DataFrame | None = None, gaps: pd.DataFrame | None = None,
             audit: ActionAudit | None = None,
             settings: EquitySettings | None = None) -> pd.DataFrame:
    """Plain-language findings, worded as questions for the attendance team.

    Parameters
    ----------
    ratios : DataFrame, optional
        :func:`disproportionality` rows of ONE unit at ONE date.
    gaps : DataFrame, optional
        :func:`adjusted_gaps` of the same unit.
    audit : ActionAudit, optional
        :func:`action_audit` of the same unit.
    settings : EquitySettings, optional

    Returns
    -------
    DataFrame
        ``rank``, ``topic``, ``group``, ``statement``, ``question`` and
        ``text`` (statement and question together), most important first:
        flagged actions (punitive, then supportive, then labelling), then flagged
        chronic-absence ratios by size, then what was checked and not found.
    """
    settings = settings or load_equity_settings()
    items: list[dict] = []
    if audit is not None:
        items += _action_findings(audit, settings)
    if ratios is not None and ratios["approximate"].any():
        items += _gap_findings(ratios, settings)
    elif ratios is not None:
        items += _ratio_findings(ratios, gaps, settings)
    items += _null_findings(ratios, audit, settings, items)
    out = pd.DataFrame(items, columns=["priority", "strength", "topic", "group",
                                       "statement", "question"])
    out = out.sort_values(["priority", "strength"], ascending=[True, False],
                          kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["text"] = out["statement"] + " " + out["question"]
    return out[["rank", "topic", "group", "statement", "question", "text"]]


def _regression_detail(regression: pd.DataFrame, row: pd.Series) -> str:
    hit = regression[(regression["group_type"] == row["group_type"])
                     & (regression["group_value"] == row["group_value"])] \
        if len(regression) else regression
    if hit.empty:
        return ""
    r = hit.iloc[0]
    return (f" Side by side with {r['reference']} of similar absence, grade and "
            f"other characteristics, the ratio is {r['ratio']:.2f} "
            f"({_interval(r['ci_low'], r['ci_upp'])}).")


def _action_findings(audit: ActionAudit, settings: EquitySettings) -> list[dict]:
    when = PERIOD_WORDS.get(audit.period, audit.period)
    items = []
    for _, r in audit.punitive[audit.punitive["flagged"]].iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        items.append({
            "priority": 1, "strength": -r["pvalue_adjusted"], "topic": "punitive",
            "group": who,
            "statement": (
                f"{who} with similar absence received {PUNITIVE_WORDS} "
                f"{_times(r['ratio'])} as often as other students, {when} "
                f"({_interval(r['ci_low'], r['ci_upp'])}; {r['rate']:.1%} of "
                f"{group_phrase(r['group_type'], r['group_value'], False)} against "
                f"{r['comparison_rate']:.1%} of others had at least one).")
            + _regression_detail(
                    audit.punitive_regression, r),
            "question": ("Is the referral process applied the same way to every "
                         "family? Which steps leave room for discretion, and who "
                         "reviews them?"),
        })
    for _, r in audit.supportive[audit.supportive["flagged"]].iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        items.append({
            "priority": 2, "strength": -r["pvalue_adjusted"], "topic": "supportive",
            "group": who,
            "statement": (
                f"Among Tier 2/3 students with similar absence, "
                f"{group_phrase(r['group_type'], r['group_value'], False)} "
                f"received {SUPPORTIVE_WORDS} {_times(r['ratio'])} as often as "
                f"other students, {when} ({_interval(r['ci_low'], r['ci_upp'])})."),
            "question": ("Are outreach and home visits reaching these families, and "
                         "what stands in the way (language, contact details, "
                         "trust)?"),
        })
    for _, r in audit.tiering[audit.tiering["flagged"]].iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        items.append({
            "priority": 3, "strength": -r["pvalue_adjusted"], "topic": "labelling",
            "group": who,
            "statement": (
                f"{who} were placed in Tier 2 or 3 {_times(r['ratio'])} as often "
                f"as other students with similar absence, {when} "
                f"({_interval(r['ci_low'], r['ci_upp'])})."),
            "question": ("Is that explained by last year's absence (one of the tier "
                         "triggers), or are tiers assigned at different absence "
                         "levels for different students?"),
        })
    for _, r in audit.absence_when_punished[
            audit.absence_when_punished["flagged"]].iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        items.append({
            "priority": 3, "strength": -r["pvalue_adjusted"], "topic": "labelling",
            "group": who,
            "statement": (
                f"{who} who received a punitive action had missed a median of "
                f"{r['median_absence']:.1%} of days, against "
                f"{r['comparison_median']:.1%} for other students who received one "
                f"({when})."),
            "question": "Are punitive steps taken earlier for some students?",
        })
    return items


def _ratio_findings(ratios: pd.DataFrame, gaps: pd.DataFrame | None,
                    settings: EquitySettings) -> list[dict]:
    items = []
    for _, r in ratios[ratios["flagged"]].iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        against = ("other students in the district"
                   if r["ratio_kind"] == "alternate risk ratio" else "other students")
        rates = ("" if pd.isna(r.get("risk"))
                 or pd.isna(r.get("ratio_comparison_risk"))
                 else f"{r['risk']:.0%} against {r['ratio_comparison_risk']:.0%}; ")
        statement = (f"{who} are chronically absent {_times(r['ratio'])} as often as "
                     f"{against} ({rates}"
                     f"{_interval(r['ratio_low'], r['ratio_upp'])}).")
        if gaps is not None and len(gaps):
            hit = gaps[(gaps["group_type"] == r["group_type"])
                       & (gaps["group_value"] == r["group_value"]) & gaps["shown"]]
            if len(hit) and pd.notna(hit.iloc[0].get("ame_pp")):
                g = hit.iloc[0]
                statement += (f" With grade, school and last year's absence held "
                              f"equal, a gap of {g['ame_pp']:.1f} points remains "
                              + (f"(95% CI {g['ame_low']:.1f} to {g['ame_upp']:.1f})"
                                 if np.isfinite([g['ame_low'], g['ame_upp']]).all()
                                 else "(no interval: the model is nearly separated)"))
                if pd.notna(g.get("share_remaining")):
                    statement += (f": {g['share_remaining']:.0%} of the raw "
                                  f"{g['raw_gap_pp']:.1f}-point gap")
                statement += "."
        items.append({
            # Ordered by the lower end of the interval: large and sure first.
            "priority": 4, "strength": float(r["ratio_low"]),
            "topic": "chronic absence",
            "group": who, "statement": statement,
            "question": ("What keeps these students from school, and do supports "
                         "reach them before absences add up?"),
        })
    return items


def _gap_findings(ratios: pd.DataFrame, settings: EquitySettings) -> list[dict]:
    """Findings from approximate counts (Connecticut): the larger gaps, no tests."""
    items = []
    large = ratios["gap_pp"] >= settings.approximate_gap_points
    shown = ratios[ratios["shown"] & large]
    for _, r in shown.iterrows():
        who = group_phrase(r["group_type"], r["group_value"])
        items.append({
            "priority": 4, "strength": float(r["gap_pp"]), "topic": "chronic absence",
            "group": who,
            "statement": (f"About {r['gap_pp']:.0f} percentage points more of "
                          f"{group_phrase(r['group_type'], r['group_value'], False)} "
                          f"than of other students were chronically absent "
                          f"(approximate: counts estimated from published rates, so "
                          f"no interval or test)."),
            "question": ("What keeps these students from school, and do supports "
                         "reach them before absences add up?"),
        })
    return items


def _null_findings(ratios, audit, settings, items) -> list[dict]:
    """Say what was checked and not found, so a short list is not read as silence."""
    found = {item["topic"] for item in items}
    out = []
    if audit is not None and "punitive" not in found and audit.punitive["shown"].any():
        out.append({"priority": 5, "strength": 0.0, "topic": "punitive", "group": "",
                    "statement": (f"No group received {PUNITIVE_WORDS} clearly more "
                                  "often than other students with similar absence "
                                  f"({PERIOD_WORDS.get(audit.period, '')})."),
                    "question": "Do the numbers match what families report?"})
    if audit is not None and "supportive" not in found and \
            audit.supportive["shown"].any():
        out.append({"priority": 5, "strength": 0.0, "topic": "supportive",
                    "group": "",
                    "statement": ("No group's Tier 2/3 students received supportive "
                                  "actions clearly less often than other students "
                                  "with similar absence."),
                    "question": "Is the support that is logged the support that "
                                "families feel?"})
    if ratios is not None and "chronic absence" not in found and \
            ratios["shown"].any() and not ratios["approximate"].any():
        out.append({"priority": 6, "strength": 0.0, "topic": "chronic absence",
                    "group": "",
                    "statement": ("No group is chronically absent at "
                                  f"{settings.risk_ratio_threshold:g} times the rate "
                                  "of other students or more, beyond chance."),
                    "question": "Which smaller gaps still matter to these families?"})
    return out


# ------------------------------------------------------------------ notebook access

@dataclass
class EquityData:
    """One processed run, read for the equity analyses and one audience."""

    folder: Path
    info: dict
    audience: str
    settings: EquitySettings
    aggregate: pd.DataFrame
    students: pd.DataFrame | None
    interventions: pd.DataFrame | None
    ratios: pd.DataFrame
    #: ``None`` for the whole run; a school's id when only what that school's
    #: ratios need was read (:func:`load_unit_equity_data`).
    only_unit: str | None = None

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.info["as_of"])

    @property
    def student_level(self) -> bool:
        return bool(self.info.get("student_level"))

    @property
    def is_public(self) -> bool:
        return self.audience == "public"

    @property
    def start_month(self) -> int:
        return int(self.info.get("parameters", {}).get("school_year_start_month", 7))

    @property
    def min_group_size(self) -> int:
        privacy = self.info.get("parameters", {}).get("privacy", {})
        return int(privacy.get("min_group_size", 10))


def load_equity_data(processed_dir: str | Path, audience: str = "staff",
                     settings: EquitySettings | None = None) -> EquityData:
    """Open a processed run for the equity analyses.

    The ratios are computed from the aggregate table (counts, not student rows)
    for every audience; for the public audience they are then passed through
    :func:`publish_ratios`, and student rows are not read at all.
    """
    folder = Path(processed_dir)
    info = _run_info(folder, audience)
    settings = settings or load_equity_settings()
    aggregate = pd.read_parquet(folder / "aggregate.parquet")
    aggregate["as_of_date"] = pd.to_datetime(aggregate["as_of_date"])
    ratios = disproportionality(aggregate, settings)
    students = interventions = None
    if audience == "staff" and info.get("student_level"):
        if (folder / "students.parquet").exists():
            students = pd.read_parquet(folder / "students.parquet")
        if (folder / "interventions.parquet").exists():
            interventions = pd.read_parquet(folder / "interventions.parquet")
    if audience == "public":
        min_size = int(info.get("parameters", {}).get("privacy", {}).get(
            "min_group_size", 10))
        release_file = folder / "public.parquet"
        release = pd.read_parquet(release_file) if release_file.exists() else None
        if release is not None:
            release["as_of_date"] = pd.to_datetime(release["as_of_date"])
        ratios = publish_ratios(ratios, aggregate, min_size, release)
    return EquityData(folder=folder, info=info, audience=audience, settings=settings,
                      aggregate=aggregate, students=students,
                      interventions=interventions, ratios=ratios)


def _run_info(folder: Path, audience: str) -> dict:
    """The run record (``run.json``) of a processed run, for ``audience``."""
    if audience not in ("staff", "public"):
        raise ValueError(f"audience must be 'staff' or 'public', got {audience!r}")
    return load_processed(folder).info


def load_unit_equity_data(processed_dir: str | Path, school: str,
                          audience: str = "staff",
                          settings: EquitySettings | None = None) -> EquityData:
    """Open a processed run for the ratios of one school only.

    :func:`load_equity_data` computes the ratios of every unit of the run from the
    whole aggregate table (and reads every student row for staff): about 10 s
    and 1 GB for a 1,000-school state. A school's ratios depend only on its own
    rows and its district's: comparisons are within the school, the alternate
    ratio and the weights use the district, and p-values are adjusted within the
    unit and date. This reads just those rows (and the state's), with the filters
    pushed into the Parquet reader, so the cost does not grow with the state.

    Parameters
    ----------
    processed_dir : str or Path
        The processed run.
    school : str
        A school id of the run.
    audience : {"staff", "public"}
        Public ratios pass through :func:`publish_ratios` with the run's public
        release, read for the same rows.
    settings : EquitySettings, optional
        Thresholds; ``params/equity.yaml`` by default.

    Returns
    -------
    EquityData
        ``ratios`` holds the school's rows only, the same as those of
        :func:`load_equity_data`; ``aggregate`` the rows read; ``students`` and
        ``interventions`` are ``None`` (not read), and ``only_unit`` is the
        school's id. When ``school`` is not a school of the run, its district is
        unknown, or a public report's run has no ``public.parquet``, this is
        :func:`load_equity_data` instead.

    Notes
    -----
    A file without district rows (Connecticut: schools only) gets its district
    summed from its schools (:func:`with_combined_levels`), so then every school
    of the district is read.
    """
    folder = Path(processed_dir)
    info = _run_info(folder, audience)
    unit = next((u for u in info["units"] if u["id"] == str(school)), None)
    district = (unit or {}).get("district_id")
    release_file = folder / "public.parquet"
    if (unit is None or unit["level"] != "school" or pd.isna(district) or not district
            or (audience == "public" and not release_file.exists())):
        return load_equity_data(folder, audience, settings)

    district = str(district)
    settings = settings or load_equity_settings()
    path = folder / "aggregate.parquet"
    filters = unit_filters(unit)
    aggregate = read_table(path, filters=filters)
    if not (aggregate["level"] == "district").any() and read_table(
            path, filters=[[("level", "==", "district")]], columns=["level"]).empty:
        # No district rows in the file: the district is the sum of its schools.
        filters.append([("level", "==", "school"), ("district_id", "==", district)])
        aggregate = read_table(path, filters=filters)
    if not (aggregate["level"] == "school").any():
        return load_equity_data(folder, audience, settings)
    aggregate["as_of_date"] = pd.to_datetime(aggregate["as_of_date"])
    ratios = disproportionality(aggregate, settings)
    ratios = ratios[(ratios["level"] == "school")
                    & (ratios["unit_id"] == unit["id"])].reset_index(drop=True)
    if audience == "public":
        min_size = int(info.get("parameters", {}).get("privacy", {}).get(
            "min_group_size", 10))
        release = read_table(release_file, filters=filters)
        release["as_of_date"] = pd.to_datetime(release["as_of_date"])
        ratios = publish_ratios(ratios, aggregate, min_size, release)
    logger.debug("equity data of one school: %d aggregate rows read", len(aggregate))
    return EquityData(folder=folder, info=info, audience=audience, settings=settings,
                      aggregate=aggregate, students=None, interventions=None,
                      ratios=ratios, only_unit=unit["id"])


def resolve_unit(data: EquityData, school: str = "") -> dict:
    """The unit an equity report is about: a school, or the whole district.

    ``school=""`` means the district: the run's district level when it has one
    district, else every unit of the file combined (NYC: all community
    districts; Connecticut: the district, as the sum of its schools).

    Raises
    ------
    KeyError
        Naming the ids that exist, when ``school`` is unknown.
    """
    ratios = data.ratios
    if school:
        for unit in data.info["units"]:
            if unit["id"] == str(school):
                return {"level": unit["level"], "id": unit["id"], "name": unit["name"],
                        "district_id": unit.get("district_id")}
        known = ", ".join(u["id"] for u in data.info["units"][:30])
        raise KeyError(f"No school or district {school!r} in this run. Known: {known}")
    for level in ("state", "district"):
        units = ratios.loc[ratios["level"] == level, ["unit_id", "unit_name"]] \
            .drop_duplicates("unit_id")
        if len(units) == 1:
            row = units.iloc[0]
            return {"level": level, "id": str(row["unit_id"]),
                    "name": str(row["unit_name"]), "district_id": str(row["unit_id"])}
    raise KeyError("This run has no single district or combined level to report on; "
                   "pass a school or district id.")


def unit_ratios(data: EquityData, unit: dict, as_of=None) -> pd.DataFrame:
    """The ratio table of one unit at one date (the run's as-of date by default)."""
    when = pd.Timestamp(as_of) if as_of is not None else _latest_date(data, unit)
    rows = data.ratios[(data.ratios["level"] == unit["level"])
                       & (data.ratios["unit_id"] == unit["id"])
                       & (data.ratios["as_of_date"] == when)].copy()
    rows["label"] = [group_phrase(t, v) for t, v in zip(rows["group_type"],
                                                       rows["group_value"],
                                                       strict=True)]
    return rows.reset_index(drop=True)


def _latest_date(data: EquityData, unit: dict) -> pd.Timestamp:
    rows = data.ratios[(data.ratios["level"] == unit["level"])
                       & (data.ratios["unit_id"] == unit["id"])]
    if (rows["as_of_date"] == data.as_of).any() or rows.empty:
        return data.as_of
    return pd.Timestamp(rows["as_of_date"].max())


def ratios_over_time(data: EquityData, unit: dict) -> pd.DataFrame:
    """Shown ratios of one unit at each month end (student-level) or each year."""
    rows = data.ratios[(data.ratios["level"] == unit["level"])
                       & (data.ratios["unit_id"] == unit["id"])].copy()
    if data.student_level:
        month_end = rows["as_of_date"].dt.is_month_end | (rows["as_of_date"]
                                                          == data.as_of)
        rows = rows[month_end]
    rows["label"] = [f"{GROUP_TYPE_LABELS.get(t, t)}: {v}"
                     for t, v in zip(rows["group_type"], rows["group_value"],
                                     strict=True)]
    return rows.sort_values(["label", "as_of_date"]).reset_index(drop=True)


def unit_audit(data: EquityData, unit: dict,
               period: Literal["current", "prior"] = "current"
               ) -> tuple[pd.DataFrame, ActionAudit] | None:
    """The audit frame and the action audit of one unit (staff, student-level runs).

    Returns None when the run has no student rows or no interventions log, or for
    the public audience.
    """
    _check_whole_run(data)
    if data.is_public or data.students is None or data.interventions is None:
        return None
    level = "school" if unit["level"] == "school" else "district"
    if period == "prior" and level == "school":
        return None
    frame = audit_frame(data.students, data.interventions, data.as_of, level=level,
                        unit_id=unit["id"], period=period,
                        start_month=data.start_month, settings=data.settings)
    if frame.empty:
        return None
    return frame, action_audit(frame, data.settings)


def _check_whole_run(data: EquityData) -> None:
    """Refuse data opened for one school's ratios: its student rows were not read."""
    if data.only_unit is not None:
        raise ValueError("This EquityData holds one school's ratios only "
                         "(load_unit_equity_data); open the run with "
                         "load_equity_data for audits and adjusted gaps.")


def unit_gaps(data: EquityData, unit: dict) -> pd.DataFrame | None:
    """Adjusted gaps of one unit (staff, student-level runs), else None."""
    _check_whole_run(data)
    if data.is_public or data.students is None:
        return None
    level = "school" if unit["level"] == "school" else "district"
    frame = audit_frame(data.students, data.interventions, data.as_of, level=level,
                        unit_id=unit["id"], start_month=data.start_month,
                        settings=data.settings)
    return adjusted_gaps(frame, data.settings) if len(frame) else None


def settings_text(settings: EquitySettings) -> str:
    """Markdown stating the rules in force, for the definition box."""
    return (
        f"**Rules.** A result is shown with at least {settings.min_cell} students with "
        f"the outcome and {settings.min_group} students in the group (IDEA, 34 CFR "
        f"300.647). Chronic absence: a group is flagged at a ratio of "
        f"{settings.risk_ratio_threshold:g} or more; actions: at "
        f"{settings.action_ratio_threshold:g} or more for punitive actions and tier "
        f"placement, {1 / settings.action_ratio_threshold:.2f} or less for "
        f"supportive ones; in both cases only when the test survives the "
        f"{settings.multitest_method} correction across the groups compared "
        f"(alpha {settings.alpha:g}). Intervals are 95% (Katz for ratios, "
        f"Greenland-Robins for ratios at similar absence). A zero count gets "
        f"{settings.zero_cell_correction:g} added to every cell, stated beside the "
        f"ratio. Settings: `params/equity.yaml`.")


HOW_TO_READ = (
    "**How to read this.** A *risk ratio* compares how often something happens to "
    "one group with how often it happens to all other students: 1 means the same, "
    "2 means twice as often, 0.5 half as often. The line through each dot is its "
    "95% interval: the range the ratio could plausibly take given how many students "
    "there are; when it crosses 1, chance alone could explain the difference. "
    "*At similar absence* means students are compared only with students who "
    "missed a similar share of days, so a group that simply misses more school "
    "does not look treated differently. A flag is a question for the attendance "
    "team, not a verdict about students or staff: the numbers show where to look, "
    "not why.")


def equity_report_name(level: str, unit_id: str) -> str:
    """File-safe name of a unit's equity report in a batch, e.g. ``equity-school-S101``.

    ``unit_id=""`` (the whole district) gives ``"equity-district"``. The batch
    (:func:`analysis.cli.build_jobs`) and the school report's link both use this.
    """
    if not unit_id:
        return "equity-district"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(unit_id)).strip("-") or "unit"
    return f"equity-{level}-{slug}"


def school_section(processed_dir: str | Path, school: str,
                   audience: str = "staff") -> dict:
    """The equity section of the school report: ratios for one unit and a sentence.

    Parameters
    ----------
    processed_dir : str or Path
        The processed run.
    school : str
        The unit id (school, or NYC community district).
    audience : {"staff", "public"}
        Public ratios pass through :func:`publish_ratios` (the privacy gate).

    Returns
    -------
    dict
        ``kind`` ("ratios", "approximate gaps" or "none"); ``ratios`` (the rows
        to plot; empty unless ``kind == "ratios"``); ``text`` (Markdown: what is
        shown, or a one-line reason, and where the full equity report is);
        ``table`` (Markdown table, or ""); ``threshold``; ``report`` (file name
        of the unit's equity report in the same pack); ``unit``.
    """
    from analysis.report import markdown_table

    # A school reads only its own and its district's rows: the cost of a school's
    # section does not grow with the number of schools in the run.
    data = (load_unit_equity_data(processed_dir, school, audience) if school
            else load_equity_data(processed_dir, audience))
    unit = resolve_unit(data, school)
    rows = unit_ratios(data, unit)
    visible = rows["public" if "public" in rows else "shown"].astype(bool)
    shown = rows[visible]
    report = equity_report_name(unit["level"], unit["id"]) + ".html"
    settings = data.settings
    link = (f"The full equity analysis of {unit['name']}, with the action audit for "
            f"staff, is in [its equity report]({report}).")
    out = {"kind": "none", "ratios": shown.iloc[0:0], "table": "",
           "threshold": settings.risk_ratio_threshold, "report": report, "unit": unit}
    if shown.empty:
        out["text"] = (
            f"No group ratio can be shown here: every group has fewer than "
            f"{settings.min_cell} chronically absent or {settings.min_group} "
            f"students, or is hidden by the privacy gate. " + link)
        return out

    columns = {"Group": "Group", "Ratio": "Ratio", "95% interval": "95% interval",
               "Kind": "Kind", "Gap (points)": "Gap (points)", "Flag": "Flag"}
    if bool(rows["approximate"].any()):
        table = ratio_table(shown, public=True)
        out.update(kind="approximate gaps", table=markdown_table(
            table, {"Group": "Group", "Gap (points)": "Gap (points, approximate)"}))
        out["text"] = ("Connecticut publishes rates, not counts: below, each group's "
                       "gap from all other students in percentage points, from "
                       "estimated counts: **approximate**, without ratios or flags. "
                       + link)
        return out

    flagged = shown[shown["flagged"]]
    names = ", ".join(flagged["label"].astype(str))
    lead = (f"Flagged (ratio of {settings.risk_ratio_threshold:g} or more and clear "
            f"of chance after the {settings.multitest_method} correction): {names}."
            if len(flagged) else "No group is flagged under the thresholds in force.")
    out.update(kind="ratios", ratios=shown,
               table=markdown_table(ratio_table(shown, public=True), columns))
    out["text"] = ("How often each group is chronically absent against all other "
                   "students, with 95% intervals; only groups with at least "
                   f"{settings.min_cell} chronically absent and {settings.min_group} "
                   f"students are shown. {lead} " + link)
    return out


# ------------------------------------------------------------- one unit, for notebooks

@dataclass
class UnitAnalysis:
    """Everything the equity notebook shows for one unit."""

    unit: dict
    ratios: pd.DataFrame                 # by group at the as-of date
    over_time: pd.DataFrame              # by group at each month end or year
    gaps: pd.DataFrame | None            # adjusted gaps (staff, student-level)
    audit: ActionAudit | None            # this school year to date
    prior_audit: ActionAudit | None      # last school year (district only)
    findings: pd.DataFrame
    approximate: bool


def analyse_unit(data: EquityData, school: str = "") -> UnitAnalysis:
    """Run every equity analysis the audience may see for one unit.

    Parameters
    ----------
    data : EquityData
        From :func:`load_equity_data`.
    school : str
        A school (or NYC district) id; ``""`` for the whole district.
    """
    unit = resolve_unit(data, school)
    ratios = unit_ratios(data, unit)
    over_time = ratios_over_time(data, unit)
    gaps = audit = prior_audit = None
    if not data.is_public and data.student_level and data.students is not None:
        gaps = unit_gaps(data, unit)
        current = unit_audit(data, unit, "current")
        audit = current[1] if current else None
        if unit["level"] != "school":
            prior = unit_audit(data, unit, "prior")
            prior_audit = prior[1] if prior else None
    approximate = bool(ratios["approximate"].any()) if len(ratios) else False
    chronic = ratios
    if data.is_public:
        # Public findings read only what the privacy gate let through.
        chronic = ratios[ratios["public"]].assign(
            shown=True, risk=np.nan, ratio_comparison_risk=np.nan)
    found = findings(chronic, gaps, audit, data.settings)
    logger.info("equity analysis of %s %s: %d findings", unit["level"], unit["id"],
                len(found))
    return UnitAnalysis(unit=unit, ratios=ratios, over_time=over_time, gaps=gaps,
                        audit=audit, prior_audit=prior_audit, findings=found,
                        approximate=approximate)


def check_parameters(data: EquityData, source: str, as_of: str, profile: str) -> None:
    """Fail early when the notebook's parameters do not match the processed run.

    Raises
    ------
    ValueError
        Naming the parameter, the value given and the value in the run.
    """
    expected = {"source": data.info["source"], "as_of": data.info["as_of"]}
    if data.student_level:
        expected["profile"] = data.info["definition"]
    given = {"source": source, "as_of": str(as_of), "profile": profile}
    for key, value in expected.items():
        if given[key] and given[key] != value:
            raise ValueError(f"Parameter {key}={given[key]!r} does not match the "
                             f"processed run in {data.folder} ({key}={value!r}).")


def caption(data: EquityData, unit: dict, population: str = "all students") -> str:
    """The line under every equity chart: population, definition, as-of, source."""
    return (f"Population: {population}, {unit['name']}. Definition: "
            f"{data.info['definition']}. As of {data.as_of:%-d %b %Y}. Source: "
            f"{data.info['source']} ({Path(data.info['data_dir']).name}). "
            f"Audience: {data.audience}.")


def _fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    return "" if value is None or pd.isna(value) else f"{value:{spec}}{suffix}"


def _ci(low, upp, spec: str = ".2f") -> str:
    if pd.isna(low) or pd.isna(upp):
        return ""
    return f"{low:{spec}} to {upp:{spec}}"


def _points(value) -> str:
    """Whole percentage points with a sign; "0" rather than "-0"."""
    if value is None or pd.isna(value):
        return ""
    return "0" if round(value) == 0 else f"{value:+.0f}"


def ratio_table(ratios: pd.DataFrame, public: bool = False) -> pd.DataFrame:
    """Readable table of :func:`unit_ratios` rows (counts for staff only).

    Ratios, weights and gaps of a group that is not shown stay blank, whatever
    could be computed: a ratio of two students is not a finding.
    """
    shown = ratios["public" if "public" in ratios else "shown"].astype(bool)
    ratios = ratios.copy()
    for col in ("weighted_risk_ratio", "standardized_risk_ratio", "gap_pp"):
        if col in ratios:
            ratios[col] = ratios[col].where(shown)
    out = pd.DataFrame({"Group": ratios["label"]})
    if not public:
        out["Students"] = [_fmt(v, ",.0f") for v in ratios["students"]]
        out["Chronic"] = [_fmt(v, ".1%") for v in ratios["risk"]]
        out["Others"] = [_fmt(v, ".1%") for v in ratios["ratio_comparison_risk"]]
    out["Ratio"] = [_fmt(v) for v in ratios["ratio"]]
    out["95% interval"] = [_ci(lo, hi) for lo, hi in zip(ratios["ratio_low"],
                                                        ratios["ratio_upp"],
                                                        strict=True)]
    out["Kind"] = ratios["ratio_kind"].fillna("")
    if not public:
        out["Weighted"] = [_fmt(v) for v in ratios["weighted_risk_ratio"]]
        out["Standardized"] = [_fmt(v) for v in ratios["standardized_risk_ratio"]]
        out["Share of chronic"] = [_fmt(v, ".1%") for v in
                                   ratios["composition_chronic"]]
        out["Share of students"] = [_fmt(v, ".1%") for v in
                                    ratios["composition_students"]]
    out["Gap (points)"] = [_points(v) for v in ratios["gap_pp"]]
    out["Flag"] = np.where(ratios["flagged"], "flagged", "")
    out["Note"] = ratios["reason"].fillna("")
    if not public and "ratio_note" in ratios:
        extra = ratios["ratio_note"].fillna("").where(ratios["shown"], "")
        out["Note"] = [("; ".join(x for x in (a, b) if x)) for a, b in
                       zip(out["Note"], extra, strict=True)]
    return out


def ratio_table_note(data: EquityData, unit: dict) -> str:
    """Markdown explaining the columns of :func:`ratio_table`."""
    text = ("*Kind*: the risk ratio compares with all other students here; the "
            "alternate risk ratio, used when there are too few other students to "
            "compare with, compares with all other students of the level above. "
            "*Gap*: percentage points between the group and the students it is "
            "compared with.")
    if not data.is_public:
        below = "districts" if unit["level"] == "state" else "schools"
        text += (" *Weighted*: the weighted risk ratio (Westat), which compares with "
                 "the other groups' rates averaged with the composition of the level "
                 f"above. *Standardized*: the group and all other students weighted to "
                 f"the same mix of {below}, so a gap that only reflects which {below} "
                 f"students attend shrinks. *Share of chronic* against *share of "
                 f"students*: the group's composition among chronically absent "
                 f"students against its share of enrollment.")
    return text


def audit_table(table: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """Readable table of a :func:`stratified_risk_ratios` result."""
    return pd.DataFrame({
        "Group": [group_phrase(t, v) for t, v in zip(table["group_type"],
                                                     table["group_value"],
                                                     strict=True)],
        "Students": table["students"].map("{:,}".format),
        outcome: [_fmt(v, ".1%") for v in table["rate"]],
        "Others": [_fmt(v, ".1%") for v in table["comparison_rate"]],
        "Ratio, all students": [_fmt(v) if s else "" for v, s in
                                zip(table["crude_ratio"], table["shown"], strict=True)],
        "Ratio at similar absence": [_fmt(v) if s else "" for v, s in
                                     zip(table["ratio"], table["shown"], strict=True)],
        "95% interval": [_ci(lo, hi) if s else "" for lo, hi, s in
                         zip(table["ci_low"], table["ci_upp"], table["shown"],
                             strict=True)],
        "Adjusted p": [_fmt(v, ".3f") for v in table["pvalue_adjusted"]],
        "Flag": np.where(table["flagged"], "flagged", ""),
        "Note": table["reason"],
    })


def regression_table(table: pd.DataFrame) -> pd.DataFrame:
    """Readable table of an :func:`action_regression` result."""
    if table.empty:
        return pd.DataFrame(columns=["Group", "Compared with", "Ratio", "95% interval",
                                     "Adjusted p", "Flag"])
    return pd.DataFrame({
        "Group": [group_phrase(t, v) for t, v in zip(table["group_type"],
                                                     table["group_value"],
                                                     strict=True)],
        "Compared with": table["reference"],
        "Ratio": [_fmt(v) for v in table["ratio"]],
        "95% interval": [_ci(lo, hi) for lo, hi in zip(table["ci_low"],
                                                      table["ci_upp"], strict=True)],
        "Adjusted p": [_fmt(v, ".3f") for v in table["pvalue_adjusted"]],
        "Flag": np.where(table["flagged"], "flagged", ""),
    })


def absence_table(table: pd.DataFrame) -> pd.DataFrame:
    """Readable table of :func:`absence_when_acted`."""
    return pd.DataFrame({
        "Group": [group_phrase(t, v) for t, v in zip(table["group_type"],
                                                     table["group_value"],
                                                     strict=True)],
        "Students": table["students"].map("{:,}".format),
        "Median absence": [_fmt(v, ".1%") if s else "" for v, s in
                           zip(table["median_absence"], table["shown"], strict=True)],
        "Others": [_fmt(v, ".1%") if s else "" for v, s in
                   zip(table["comparison_median"], table["shown"], strict=True)],
        "Difference (points)": [_fmt(v, "+.1f") if s else "" for v, s in
                                zip(table["difference_pp"], table["shown"],
                                    strict=True)],
        "Adjusted p": [_fmt(v, ".3f") for v in table["pvalue_adjusted"]],
        "Flag": np.where(table["flagged"], "flagged", ""),
        "Note": table["reason"],
    })


def gaps_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Readable table of :func:`adjusted_gaps`."""
    shown = gaps.get("shown", pd.Series(False, index=gaps.index)).fillna(False)
    return pd.DataFrame({
        "Group": [group_phrase(t, v) for t, v in zip(gaps["group_type"],
                                                     gaps["group_value"],
                                                     strict=True)],
        "Raw gap (points)": [_fmt(v, "+.1f") if s else "" for v, s in
                             zip(gaps.get("raw_gap_pp"), shown, strict=True)],
        "Odds ratio": [_fmt(v) for v in gaps.get("odds_ratio", np.nan)],
        "OR 95% interval": [_ci(lo, hi) for lo, hi in
                            zip(gaps.get("or_low", np.nan), gaps.get("or_upp", np.nan),
                                strict=True)],
        "Adjusted gap (points)": [_fmt(v, "+.1f") for v in gaps.get("ame_pp", np.nan)],
        "Gap 95% interval": [_ci(lo, hi, ".1f") for lo, hi in
                             zip(gaps.get("ame_low", np.nan),
                                 gaps.get("ame_upp", np.nan), strict=True)],
        "Share remaining": [_fmt(v, ".0%") for v in
                            gaps.get("share_remaining", np.nan)],
        "Adjusted p": [_fmt(v, ".3f") for v in gaps.get("pvalue_adjusted", np.nan)],
        "Note": gaps.get("reason", "").fillna(""),
    })


def definition_box(data: EquityData, unit: dict) -> str:
    """Markdown: definition, population, as-of date, source, rules and code version."""
    info = data.info
    code = info.get("code", {})
    commit = (code.get("git_commit") or "")[:10] or "not in a git checkout"
    population = (
        f"Students of {unit['name']} ({unit['level']}) who meet the definition's "
        f"eligibility rule at the as-of date; the action audit adds the interventions "
        f"log dated this school year up to the as-of date (and, for the district, "
        f"last school year, for students enrolled this year)."
        if data.student_level else
        f"Students counted by the publisher for {unit['name']} in each school year "
        f"shown; ratios use the published counts.")
    return "\n\n".join([
        f"**Definition.** {info['definition_text']}",
        f"**Population.** {population}",
        f"**As of.** {data.as_of:%-d %B %Y}.",
        f"**Source.** {info['source']} data in `{Path(info['data_dir']).name}`; "
        f"input checksums in `run.json`.",
        settings_text(data.settings),
        f"**Audience.** {data.audience}: " + (
            "ratios only where the privacy gate shows the group; no counts, no "
            "student-level analyses." if data.is_public else
            "includes analyses of student records; do not share outside the "
            "attendance team." if data.student_level else
            "published counts, shown with the counts behind each ratio."),
        f"**Code.** analysis {code.get('version', '?')}, commit {commit}.",
    ])
