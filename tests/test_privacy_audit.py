"""The release audit: can a reader work a hidden cell back out of what is published?

Three kinds of test:

* **properties** (hypothesis, derandomized, no example database): random districts
  of schools x grades x student groups with a district roll-up go through
  :func:`analysis.privacy.publish`; afterwards every small group is hidden, the
  package's audit passes, and an independent linear programme written here (not the
  package's) cannot narrow any hidden cell;
* **teeth**: hand-built releases that leak must fail the audit, with the recovered
  values worked out by hand;
* **hand ranges**: :func:`analysis.privacy_audit.feasible_ranges` against ranges
  worked out on paper.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog
from scipy.sparse import lil_matrix

from analysis.privacy import CELL_KEYS, HIDDEN, code_rate, is_coded, publish
from analysis.privacy_audit import (
    Knowledge,
    additive_relations,
    audit_release,
    feasible_ranges,
)
from analysis.schema import conform_aggregate

PROPERTY = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

RACES = ("Asian", "Black", "Hispanic", "White")
GENDERS = ("Female", "Male")


# ---------------------------------------------------------------- random districts

def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["source"], frame["definition"] = "t", "d"
    frame["school_year"], frame["as_of_date"] = "2026-27", "2026-11-30"
    frame["district_id"] = "D"
    students = frame["students"].where(frame["students"] > 0)
    frame["chronic_absence_rate"] = frame["chronically_absent"] / students
    frame["ci_low"] = (frame["chronic_absence_rate"] - 0.01).clip(lower=0)
    frame["ci_upp"] = (frame["chronic_absence_rate"] + 0.01).clip(upper=1)
    return conform_aggregate(frame)


@st.composite
def districts(draw) -> pd.DataFrame:
    """An aggregate table built from random counts of students, so every sum holds.

    Fine cells are (school, grade, race, gender) with a count and a number of
    chronically absent students. From them come, for each school and the district,
    grade rows and an all-grades row, each with an "all" group, race groups and
    gender groups (groups with no students have no row). Students moving between
    the first two schools are counted at both and once in the district, so the
    roll-up has a gap, as real data does.
    """
    n_schools = draw(st.integers(1, 3))
    grades = ("1", "2", "3")[:draw(st.integers(1, 3))]
    weight = {"Asian": 3, "Black": 8, "Hispanic": 14, "White": 6}
    fine = []
    for school in range(n_schools):
        for grade in grades:
            for race in RACES:
                for gender in GENDERS:
                    n = draw(st.integers(0, weight[race]))
                    c = draw(st.integers(0, n))
                    fine.append((f"S{school + 1}", grade, race, gender, n, c))
    fine = pd.DataFrame(fine, columns=["school_id", "grade", "race_ethnicity",
                                       "gender", "n", "c"])
    fine.loc[fine["school_id"] == "S1", "n"] += fine["n"].sum() == 0  # not empty
    district = fine.groupby(["grade", "race_ethnicity", "gender"], as_index=False)[
        ["n", "c"]].sum()
    if n_schools > 1:
        # Movers: counted at S1 and S2, once in the district.
        both = fine[fine["school_id"] == "S1"].merge(
            fine[fine["school_id"] == "S2"], on=["grade", "race_ethnicity", "gender"])
        for i, row in both.iterrows():
            m = draw(st.integers(0, min(row["n_x"], row["n_y"], 2)))
            mc = min(m, row["c_x"], row["c_y"])
            district.loc[i, "n"] -= m
            district.loc[i, "c"] -= mc
    district["school_id"] = None
    units = [("school", s, part) for s, part in fine.groupby("school_id")]
    units.append(("district", None, district))
    rows = []
    for level, school, part in units:
        for grade in ("All",) + grades:
            cells = part if grade == "All" else part[part["grade"] == grade]
            if cells["n"].sum() == 0:
                continue

            def row(group_type, value, sub, level=level, school=school, grade=grade):
                rows.append({"level": level, "school_id": school, "grade": grade,
                             "group_type": group_type, "group_value": value,
                             "students": int(sub["n"].sum()),
                             "chronically_absent": int(sub["c"].sum())})

            row("all", "All students", cells)
            for group_type in ("race_ethnicity", "gender"):
                for value, sub in cells.groupby(group_type):
                    if sub["n"].sum() > 0:
                        row(group_type, value, sub)
    return _frame(rows)


def _one_school(sizes: dict[str, int], chronic: dict[str, int],
                group_type: str = "race_ethnicity") -> pd.DataFrame:
    """One school's total plus one row per group value (as in test_privacy.py)."""
    rows = [{"level": "school", "school_id": "A", "grade": "All", "group_type": "all",
             "group_value": "All students", "students": sum(sizes.values()),
             "chronically_absent": sum(chronic.values())}]
    rows += [{"level": "school", "school_id": "A", "grade": "All",
              "group_type": group_type, "group_value": k, "students": n,
              "chronically_absent": chronic[k]} for k, n in sizes.items()]
    return _frame(rows)


@st.composite
def one_school_tables(draw) -> pd.DataFrame:
    values = draw(st.lists(st.sampled_from(RACES + ("Pacific Islander", "Multiracial",
                                                    "American Indian")),
                           min_size=1, max_size=7, unique=True))
    sizes = {v: draw(st.integers(0, 60)) for v in values}
    if sum(sizes.values()) == 0:
        sizes[values[0]] = 1
    chronic = {v: draw(st.integers(0, n)) for v, n in sizes.items()}
    return _one_school(sizes, chronic)


def _publish(aggregate: pd.DataFrame, min_group_size: int = 10,
             show_counts: bool = False) -> pd.DataFrame:
    return publish(aggregate, min_group_size, show_counts=show_counts)


def _true_rows(public: pd.DataFrame, aggregate: pd.DataFrame) -> pd.DataFrame:
    """The aggregate rows in the order of ``public`` (publish keeps the order)."""
    assert len(public) == len(aggregate)
    keys = ["level", "school_id", "grade", "group_type", "group_value"]
    left = public[keys].astype("string").fillna("")
    right = aggregate[keys].astype("string").fillna("")
    assert (left.to_numpy() == right.to_numpy()).all()
    return aggregate.reset_index(drop=True)


# ------------------------------------------------------ an independent reader's LP

def _relations(aggregate: pd.DataFrame) -> list[tuple[int, list[int], float, float]]:
    """``(parent, children, gap_students, gap_chronic)`` for every sum a reader knows.

    Written independently of :func:`additive_relations`: groups of one type add up
    to the "all" row of their unit and grade; grades add up to the all-grades row
    of their group; schools add up to the district row of the same cell, less the
    movers (the gap, which this strong reader is assumed to know).
    """
    frame = aggregate.reset_index(drop=True).copy()
    frame["school_id"] = frame["school_id"].astype("string").fillna("-")
    frame["pos"] = np.arange(len(frame))
    index = frame.set_index(["level", "school_id", "grade", "group_type",
                             "group_value"])["pos"]
    s = frame["students"].astype(float).to_numpy()
    c = frame["chronically_absent"].astype(float).to_numpy()
    out = []

    def add(parent: int, children: list[int]) -> None:
        if children:
            out.append((parent, children, s[children].sum() - s[parent],
                        c[children].sum() - c[parent]))

    for (level, school, grade, group_type), part in frame.groupby(
            ["level", "school_id", "grade", "group_type"]):
        if group_type != "all":
            add(int(index[(level, school, grade, "all", "All students")]),
                list(part["pos"]))
    for (level, school, group_type, value), part in frame.groupby(
            ["level", "school_id", "group_type", "group_value"]):
        grades = part[part["grade"] != "All"]
        parent = part[part["grade"] == "All"]
        if len(parent) and len(grades):
            add(int(parent["pos"].iloc[0]), list(grades["pos"]))
    for (grade, group_type, value), part in frame.groupby(
            ["grade", "group_type", "group_value"]):
        parent = part[part["level"] == "district"]
        schools = part[part["level"] == "school"]
        if len(parent) and len(schools):
            add(int(parent["pos"].iloc[0]), list(schools["pos"]))
    return out


class _Reader:
    """The linear programme of a reader who sees ``public`` and knows the sums.

    Unknowns are the students and chronically absent students of every row; a
    shown row fixes its students, and its chronic count when the rate is shown as
    a number (one decimal gives the count back), or bounds it when coded.
    """

    def __init__(self, public: pd.DataFrame, aggregate: pd.DataFrame):
        n = len(aggregate)
        self.n = n
        s = aggregate["students"].astype(float).to_numpy()
        c = aggregate["chronically_absent"].astype(float).to_numpy()
        hidden = public["suppressed"].to_numpy(bool)
        bounds = []
        for i in range(n):                       # students
            bounds.append((0, None) if hidden[i] else (s[i], s[i]))
        for i in range(n):                       # chronically absent
            text = public["rate_display"].iloc[i]
            if hidden[i]:
                bounds.append((0, None))
            elif not text.startswith(("≤", "≥")):
                bounds.append((c[i], c[i]))
            elif text.startswith("≤"):
                share = float(text[1:-1]) / 100
                bounds.append((0, math.floor(share * s[i] + 1e-9)))
            else:
                share = float(text[1:-1]) / 100
                bounds.append((math.ceil(share * s[i] - 1e-9), s[i]))
        relations = _relations(aggregate)
        eq = lil_matrix((2 * len(relations), 2 * n))
        rhs = []
        for r, (parent, children, gap_s, gap_c) in enumerate(relations):
            for offset, gap, row in ((0, gap_s, 2 * r), (n, gap_c, 2 * r + 1)):
                eq[row, offset + parent] = -1
                for child in children:
                    eq[row, offset + child] = 1
                rhs.append(gap)
        # chronic - students <= 0 in every row
        ub = lil_matrix((n, 2 * n))
        for i in range(n):
            ub[i, i], ub[i, n + i] = -1, 1
        self.eq, self.rhs = eq.tocsr(), np.array(rhs)
        self.ub = ub.tocsr()
        self.bounds = bounds

    def extreme(self, objective: dict[int, float]) -> float:
        cost = np.zeros(2 * self.n)
        for k, v in objective.items():
            cost[k] += v
        result = linprog(cost, A_ub=self.ub, b_ub=np.zeros(self.n), A_eq=self.eq,
                         b_eq=self.rhs, bounds=self.bounds, method="highs")
        assert result.status in (0, 3), result.message
        return -math.inf if result.status == 3 else float(result.fun)

    def students(self, i: int) -> tuple[float, float]:
        return self.extreme({i: 1}), -self.extreme({i: -1})

    def chronic(self, i: int) -> tuple[float, float]:
        return self.extreme({self.n + i: 1}), -self.extreme({self.n + i: -1})

    def not_chronic(self, i: int) -> tuple[float, float]:
        low = self.extreme({i: 1, self.n + i: -1})
        return low, -self.extreme({i: -1, self.n + i: 1})


# --------------------------------------------------------------------- properties

@PROPERTY
@given(aggregate=districts(), min_group_size=st.sampled_from((10, 10, 5)))
def test_every_small_group_is_hidden(aggregate, min_group_size):
    public = _publish(aggregate, min_group_size)
    truth = _true_rows(public, aggregate)
    small = truth["students"].between(1, min_group_size).to_numpy()
    assert public.loc[small, "suppressed"].all()
    assert (public.loc[small, "rate_display"] == HIDDEN).all()


def _add_bands(aggregate: pd.DataFrame, data) -> pd.DataFrame:
    """Attendance-band counts on every unit headline (all students, all grades)."""
    aggregate = aggregate.copy()
    bands = ("satisfactory", "at_risk", "moderate_chronic", "severe_chronic")
    for band in bands:
        aggregate[band] = pd.array([pd.NA] * len(aggregate), dtype="Int64")
    headline = ((aggregate["grade"] == "All") & (aggregate["group_type"] == "all"))
    for i in np.flatnonzero(headline.to_numpy()):
        n = int(aggregate.loc[i, "students"])
        c = int(aggregate.loc[i, "chronically_absent"])
        severe = data.draw(st.integers(0, c))
        satisfactory = data.draw(st.integers(0, n - c))
        aggregate.loc[i, list(bands)] = [satisfactory, n - c - satisfactory,
                                         c - severe, severe]
    return aggregate


@PROPERTY
@given(aggregate=districts(), data=st.data())
def test_package_audit_passes_after_publish(aggregate, data):
    aggregate = _add_bands(aggregate, data)
    public = _publish(aggregate)
    counted = _publish(aggregate, show_counts=True)
    # The same cells are hidden whatever is shown, so the two can go out together.
    assert (public["suppressed"] == counted["suppressed"]).all()
    result = audit_release([public, counted], aggregate, 10, CELL_KEYS,
                           min_group_size=10)
    assert result.ok, result.failures
    # The audit looked at every hidden cell.
    assert result.cells_checked == int(public["suppressed"].sum())


@settings(PROPERTY, max_examples=40)
@given(aggregate=one_school_tables())
def test_package_audit_passes_after_publish_one_school(aggregate):
    public = _publish(aggregate)
    result = audit_release([public], aggregate, 10, CELL_KEYS, min_group_size=10)
    assert result.ok, result.failures
    # And the plain rule: never exactly one hidden cell in the total's set.
    assert public["suppressed"].sum() != 1


@settings(PROPERTY, max_examples=8)
@given(aggregate=districts())
def test_independent_reader_recovers_no_hidden_cell(aggregate):
    public = _publish(aggregate)
    truth = _true_rows(public, aggregate)
    reader = _Reader(public, truth)
    size = truth["students"].astype(int).to_numpy()
    unit = (truth["level"].astype(str) + "|"
            + truth["school_id"].astype("string").fillna("-"))
    is_headline = ((truth["grade"] == "All") & (truth["group_type"] == "all"))
    headline_of = dict(zip(unit[is_headline], np.flatnonzero(is_headline),
                           strict=True))
    for i in np.flatnonzero(public["suppressed"].to_numpy()):
        low, high = reader.students(i)
        assert low - 1e-6 <= size[i] <= high + 1e-6
        if 1 <= size[i] <= 10:
            # A small group: its size is not narrowed below its size...
            assert high - low >= size[i] - 1e-6, (truth.iloc[i], low, high)
            # ...no student can be proven chronically absent, or not...
            assert reader.chronic(i)[0] <= 1e-6, truth.iloc[i]
            assert reader.not_chronic(i)[0] <= 1e-6, truth.iloc[i]
            # ...and the reader cannot prove it has none of either, unless the
            # whole unit provably has none.
            top = headline_of[unit.iloc[i]]
            for count in (reader.chronic, reader.not_chronic):
                if count(i)[1] < 1 - 1e-6:
                    assert count(top)[1] < 1 - 1e-6, truth.iloc[i]
        elif size[i] > 10:
            # A larger group hidden beside a small one: not worked out exactly.
            assert high - low >= 1 - 1e-6, (truth.iloc[i], low, high)


@settings(PROPERTY, max_examples=15)
@given(aggregate=districts())
def test_no_published_value_reveals_a_hidden_count(aggregate):
    counted = _publish(aggregate, show_counts=True)
    truth = _true_rows(counted, aggregate)
    hidden = counted["suppressed"].to_numpy()
    numeric = [c for c in counted.columns
               if c in ("students", "chronically_absent", "chronic_absence_rate",
                        "ci_low", "ci_upp", "attendance_rate")
               or (c.startswith("share_") and not c.endswith("_display"))]
    assert counted.loc[hidden, numeric].isna().all().all()
    assert (counted.loc[hidden, "rate_display"] == HIDDEN).all()
    # One reason for every hidden cell: a reader cannot tell the small ones apart.
    assert counted.loc[hidden, "suppression"].nunique() <= 1
    # A coded rate shows no exact rate and no count of chronically absent students.
    coded = is_coded(counted["rate_display"]).to_numpy()
    assert counted.loc[coded, ["chronic_absence_rate", "chronically_absent"]].isna(
        ).all().all()
    # No set of cells adding up to a total has exactly one hidden member.
    for parent, children, _, _ in _relations(truth):
        assert hidden[[parent, *children]].sum() != 1


# -------------------------------------------------------------------------- teeth

def _hand_release(aggregate: pd.DataFrame, hidden: set[str]) -> pd.DataFrame:
    """A release of a one-school table hiding only the named group values.

    Built here by hand (not by :func:`publish`), the way a careless publisher would.
    """
    public = aggregate[list(CELL_KEYS)].copy()
    rate = aggregate["chronic_absence_rate"].astype(float)
    is_hidden = aggregate["group_value"].isin(hidden).to_numpy()
    public["rate_display"] = [HIDDEN if h else code_rate(r, n) for h, r, n in
                              zip(is_hidden, rate, aggregate["students"], strict=True)]
    coded = is_coded(public["rate_display"]).to_numpy()
    public["chronic_absence_rate"] = rate.mask(is_hidden | coded)
    public["suppressed"] = is_hidden
    return public


def _audit(public: pd.DataFrame, aggregate: pd.DataFrame, min_range: int = 10):
    result = audit_release([public], aggregate, min_range, CELL_KEYS,
                           min_group_size=10)
    failures = result.failures.merge(
        aggregate.reset_index(drop=True)[["group_value"]], left_on="row",
        right_index=True)
    return result, {(r.group_value, r.measure): (r.low, r.high)
                    for r in failures.itertuples()}


class TestAuditHasTeeth:
    def test_lone_hidden_cell_is_recovered_exactly(self):
        cells = _one_school({"Asian": 8, "Black": 40, "Hispanic": 60, "White": 25},
                            {"Asian": 2, "Black": 10, "Hispanic": 12, "White": 5})
        result, failed = _audit(_hand_release(cells, {"Asian"}), cells)
        assert not result.ok
        # By hand: Asian = 133 - (40 + 60 + 25) = 8 students, and
        # 29 - (10 + 12 + 5) = 2 of them chronically absent (Black 25.0% of 40 = 10,
        # Hispanic 20.0% of 60 = 12, White 20.0% of 25 = 5 read off the rates).
        assert failed[("Asian", "students")] == (8, 8)
        assert failed[("Asian", "chronically_absent")] == (2, 2)
        assert failed[("Asian", "not_chronic")] == (6, 6)

    def test_the_same_table_published_properly_passes(self):
        cells = _one_school({"Asian": 8, "Black": 40, "Hispanic": 60, "White": 25},
                            {"Asian": 2, "Black": 10, "Hispanic": 12, "White": 5})
        result, failed = _audit(publish(cells), cells)
        assert result.ok and not failed

    def test_small_group_shown_is_a_failure_in_itself(self):
        cells = _one_school({"Asian": 8, "Black": 40}, {"Asian": 2, "Black": 10})
        result, failed = _audit(_hand_release(cells, set()), cells)
        assert not result.ok
        assert failed[("Asian", "shown")] == (8, 8)

    def test_two_hidden_cells_all_chronic_is_narrow(self):
        # Asian 8 and Pacific Islander 3 are hidden, but the shown figures say
        # 26 - (10 + 5) = 11 chronically absent students among the 101 - 90 = 11
        # hidden students: every hidden student is chronically absent. Sizes stay
        # wide (Asian anywhere in [0, 11]) but "not chronically absent" is exactly
        # 0 in both hidden groups.
        cells = _one_school({"Asian": 8, "Pacific Islander": 3, "Black": 40,
                             "White": 50},
                            {"Asian": 8, "Pacific Islander": 3, "Black": 10,
                             "White": 5})
        result, failed = _audit(_hand_release(cells, {"Asian", "Pacific Islander"}),
                                cells)
        assert not result.ok
        assert failed[("Asian", "not_chronic")] == (0, 0)
        assert failed[("Pacific Islander", "not_chronic")] == (0, 0)
        assert ("Asian", "students") not in failed
        ranges = result.ranges.merge(cells[["group_value"]], left_on="row",
                                     right_index=True)
        asian = ranges[(ranges["group_value"] == "Asian")
                       & (ranges["measure"] == "students")].iloc[0]
        assert asian["low"] == 0 and asian["high"] >= 8

    def test_two_hidden_cells_with_no_chronic_absence_is_narrow(self):
        # 15 chronically absent in all; Black 10 + White 5 = 15 are shown, so the
        # two hidden groups have exactly 0 chronically absent students.
        cells = _one_school({"Asian": 8, "Pacific Islander": 3, "Black": 40,
                             "White": 50},
                            {"Asian": 0, "Pacific Islander": 0, "Black": 10,
                             "White": 5})
        result, failed = _audit(_hand_release(cells, {"Asian", "Pacific Islander"}),
                                cells)
        assert not result.ok
        assert failed[("Asian", "chronically_absent")] == (0, 0)

    def test_two_hidden_cells_recovered_through_another_dimension(self):
        # Two hidden cells, but each is alone in its grade: Asian grade 1 =
        # 20 - 14 = 6 and Asian grade 2 = 20 - 14 = 6 by subtraction within each
        # grade, although together they sit in the Asian row (12, shown).
        rows = []
        for grade, sizes in (("All", {"Asian": 12, "White": 28}),
                             ("1", {"Asian": 6, "White": 14}),
                             ("2", {"Asian": 6, "White": 14})):
            rows.append({"level": "school", "school_id": "A", "grade": grade,
                         "group_type": "all", "group_value": "All students",
                         "students": sum(sizes.values()),
                         "chronically_absent": 4})
            rows += [{"level": "school", "school_id": "A", "grade": grade,
                      "group_type": "race_ethnicity", "group_value": k,
                      "students": n, "chronically_absent": 2 if grade == "All" else 1}
                     for k, n in sizes.items()]
        cells = _frame(rows)
        hidden = ((cells["group_value"] == "Asian") & (cells["grade"] != "All")
                  ).to_numpy()
        public = _hand_release(cells, set())
        public.loc[hidden, ["suppressed", "rate_display"]] = [True, HIDDEN]
        public.loc[hidden, "chronic_absence_rate"] = pd.NA
        result = audit_release([public], cells, 10, CELL_KEYS, min_group_size=10)
        assert not result.ok
        exact = result.failures[result.failures["measure"] == "students"]
        assert sorted(exact["row"]) == sorted(np.flatnonzero(hidden))
        assert (exact["low"] == 6).all() and (exact["high"] == 6).all()

    def test_coded_rate_is_read_as_a_bound_not_a_value(self):
        # Total 517 with 53 chronically absent (10.3%, shown); Hispanic 100 with 50
        # (50.0%, shown); White 400 with 3 (0.75%, shown only as "≤1%", so White
        # has 0 to 4); Asian 8 and Black 9 hidden with none.
        # Hidden chronic: cA + cB = 53 - 50 - cW = 3 - cW, with cW in [0, 3]:
        # cA in [0, 3], wide enough. Were White's 0.75% shown, cW = 3 and
        # cA + cB = 0: the reader would know no hidden student is chronic.
        cells = _one_school({"Asian": 8, "Black": 9, "Hispanic": 100, "White": 400},
                            {"Asian": 0, "Black": 0, "Hispanic": 50, "White": 3})
        public = _hand_release(cells, {"Asian", "Black"})
        white = (public["group_value"] == "White").to_numpy()
        assert public.loc[white, "rate_display"].item() == "≤1%"
        result, failed = _audit(public, cells)
        assert result.ok, failed
        public.loc[white, "rate_display"] = "0.8%"
        public.loc[white, "chronic_absence_rate"] = 0.0075
        result, failed = _audit(public, cells)
        assert failed[("Asian", "chronically_absent")] == (0, 0)
        assert failed[("Black", "chronically_absent")] == (0, 0)


# ---------------------------------------------------------------- ranges by hand

def _knowledge(values: np.ndarray, hidden: np.ndarray) -> Knowledge:
    k = Knowledge.nothing(len(values))
    k.low[~hidden] = values[~hidden]
    k.high[~hidden] = values[~hidden]
    return k


def test_feasible_ranges_of_one_set_by_hand():
    # Total 50 (12 chronic); C 35 shown (7 chronic); A 6 (2) and B 9 (3) hidden.
    # Students: A + B = 50 - 35 = 15, both >= 0, so A in [0, 15].
    # Chronic: cA + cB = 12 - 7 = 5, 0 <= cA <= A, 0 <= cB <= B: cA in [0, 5].
    # Not chronic: nA + nB = 38 - 28 = 10: nA in [0, 10].
    cells = _one_school({"A": 6, "B": 9, "C": 35}, {"A": 2, "B": 3, "C": 7})
    s = cells["students"].astype(float).to_numpy()
    c = cells["chronically_absent"].astype(float).to_numpy()
    hidden = cells["group_value"].isin(["A", "B"]).to_numpy()
    truth = {"students": s, "chronically_absent": c, "not_chronic": s - c}
    relations = additive_relations(cells)
    ranges = feasible_ranges(
        truth, {m: _knowledge(v, hidden) for m, v in truth.items()},
        {m: relations for m in truth}, {m: hidden for m in truth}, split=True)
    got = {(cells.loc[r.row, "group_value"], r.measure): (r.low, r.high)
           for r in ranges.itertuples()}
    assert got[("A", "students")] == pytest.approx((0, 15))
    assert got[("B", "students")] == pytest.approx((0, 15))
    assert got[("A", "chronically_absent")] == pytest.approx((0, 5))
    assert got[("B", "chronically_absent")] == pytest.approx((0, 5))
    assert got[("A", "not_chronic")] == pytest.approx((0, 10))


def test_feasible_ranges_of_a_two_way_table_by_hand():
    # One school, grades 1 and 2 by race; the four inner cells are hidden, the
    # margins shown:
    #
    #               Asian  White | grade total
    #   grade 1       a=9   b=30 |  R1 = 39
    #   grade 2       c=3   d=8  |  R2 = 11
    #   all grades  C1=12  C2=38 |  55
    #
    # b = 39 - a, c = 12 - a, d = 11 - c = a - 1 (and b + d = 38 holds).
    # All >= 0: a <= 39, a <= 12, a >= 1, so a in [1, 12]; then b in [27, 38],
    # c in [0, 11], d in [0, 11]. (In general a in [max(0, C1 - R2, R1 - C2),
    # min(R1, C1)] = [max(0, 1, 1), min(39, 12)].)
    rows = []
    for grade, sizes in (("All", {"Asian": 12, "White": 38}),
                         ("1", {"Asian": 9, "White": 30}),
                         ("2", {"Asian": 3, "White": 8})):
        rows.append({"level": "school", "school_id": "A", "grade": grade,
                     "group_type": "all", "group_value": "All students",
                     "students": sum(sizes.values()), "chronically_absent": 0})
        rows += [{"level": "school", "school_id": "A", "grade": grade,
                  "group_type": "race_ethnicity", "group_value": k, "students": n,
                  "chronically_absent": 0} for k, n in sizes.items()]
    cells = _frame(rows)
    s = cells["students"].astype(float).to_numpy()
    hidden = ((cells["grade"] != "All") & (cells["group_type"] != "all")).to_numpy()
    ranges = feasible_ranges({"students": s}, {"students": _knowledge(s, hidden)},
                             {"students": additive_relations(cells)},
                             {"students": hidden})
    got = {(cells.loc[r.row, "grade"], cells.loc[r.row, "group_value"]):
           (r.low, r.high) for r in ranges.itertuples()}
    expected = {("1", "Asian"): (1, 12), ("1", "White"): (27, 38),
                ("2", "Asian"): (0, 11), ("2", "White"): (0, 11)}
    assert got.keys() == expected.keys()
    for cell, (low, high) in expected.items():
        assert got[cell] == pytest.approx((low, high)), cell


def test_feasible_ranges_match_the_independent_reader():
    # The same hand table through both LPs: the package's and the one above.
    cells = _one_school({"A": 6, "B": 9, "C": 35}, {"A": 2, "B": 3, "C": 7})
    public = _hand_release(cells, {"A", "B"})
    reader = _Reader(public, cells)
    for i in (1, 2):
        assert reader.students(i) == pytest.approx((0, 15))
        assert reader.chronic(i) == pytest.approx((0, 5))


# ------------------------------------------------- band shares beside coded rates

BANDS = ("satisfactory", "at_risk", "moderate_chronic", "severe_chronic")


def _with_bands(counts: dict[str, int]) -> pd.DataFrame:
    """One school's headline with band counts, plus two groups splitting it."""
    n = sum(counts.values())
    chronic = counts["moderate_chronic"] + counts["severe_chronic"]
    half, half_c = n // 2, chronic // 2
    cells = _one_school({"Female": half, "Male": n - half},
                        {"Female": half_c, "Male": chronic - half_c}, "gender")
    for band in BANDS:
        cells[band] = pd.array([counts[band], pd.NA, pd.NA], dtype="Int64")
    return cells


def test_band_shares_do_not_give_a_coded_rate_back():
    # 300 students, 3 chronically absent: the rate is shown as "≤1%". Were
    # satisfactory 270 (90.0%) and at risk 27 (9.0%) shown, the reader would get
    # 300 - 270 - 27 = 3 chronically absent students back exactly.
    cells = _with_bands({"satisfactory": 270, "at_risk": 27, "moderate_chronic": 2,
                         "severe_chronic": 1})
    headline = publish(cells).iloc[0]
    assert headline["rate_display"] == "≤1%"
    exact = [b for b in BANDS if pd.notna(headline[f"share_{b}"])]
    assert not {"satisfactory", "at_risk"} <= set(exact)
    assert not {"moderate_chronic", "severe_chronic"} <= set(exact)


@settings(PROPERTY, max_examples=80)
@given(counts=st.fixed_dictionaries({b: st.integers(0, 400) for b in BANDS}),
       scale=st.sampled_from((1, 1, 3)))
def test_no_coded_figure_is_worked_back_from_the_others(counts, scale):
    counts = {b: v * scale if b == "satisfactory" else v for b, v in counts.items()}
    if sum(counts.values()) <= 20:
        counts["satisfactory"] += 21
    headline = publish(_with_bands(counts)).iloc[0]
    shares = {b: headline[f"share_{b}"] for b in BANDS}
    rate = headline["chronic_absence_rate"]
    # satisfactory + at risk + chronic = 1 and moderate + severe = chronic: in
    # each of these sets, no single figure may be missing while the rest are
    # exact, unless the missing one is withheld for every reader anyway.
    coded = is_coded(pd.Series([headline["rate_display"]]))[0] or any(
        is_coded(pd.Series([headline[f"share_{b}_display"]]))[0] for b in BANDS)
    for group in ((shares["satisfactory"], shares["at_risk"], rate),
                  (shares["moderate_chronic"], shares["severe_chronic"], rate)):
        missing = sum(pd.isna(v) for v in group)
        if coded:
            assert missing != 1, (counts, headline.to_dict())


def test_cell_narrowed_through_wholly_hidden_sets_gets_protected():
    # Found by test_every_small_group_is_hidden and cut down to nine rows (grade 1;
    # other groups left out, so the sums have gaps the reader is assumed to know).
    # Black and White at S3 are small and hidden, so S3's total goes too; every
    # set holding S3 White is then wholly hidden, yet the reader still proved
    # some of its students chronically absent through the district rows. Suppress
    # used to look only at the cell's own sets, found nothing to hide and raised
    # PrivacyError; it now hides a cell further out along the hidden links.
    rows = [("school", "S1", "all", "All students", 22, 13),
            ("school", "S1", "race_ethnicity", "Hispanic", 16, 9),
            ("school", "S2", "all", "All students", 43, 20),
            ("school", "S3", "all", "All students", 33, 14),
            ("school", "S3", "race_ethnicity", "Black", 5, 2),
            ("school", "S3", "race_ethnicity", "White", 8, 3),
            ("district", None, "all", "All students", 93, 45),
            ("district", None, "race_ethnicity", "Black", 19, 6),
            ("district", None, "race_ethnicity", "Hispanic", 57, 33)]
    cells = _frame([{"level": lv, "school_id": s, "grade": "1", "group_type": t,
                     "group_value": v, "students": n, "chronically_absent": c}
                    for lv, s, t, v, n, c in rows])
    public = publish(cells)
    assert public.loc[cells["students"].between(1, 10).to_numpy(), "suppressed"].all()
    result = audit_release([public], cells, 10, CELL_KEYS, min_group_size=10)
    assert result.ok, result.failures
