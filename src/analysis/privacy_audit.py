"""Try to work hidden cells back out of a public release, with linear programming.

A public release hides some cells of the aggregate table. A reader who knows how the
cells add up (the groups of one dimension add up to the total, the grades add up to
the school, the schools add up to the district) can set up equations whose unknowns
are the hidden cells, and ask: what is the smallest and the largest value each hidden
cell can take? :func:`feasible_ranges` answers that with one pair of linear
programmes per hidden cell and count (scipy's HiGHS), and :func:`audit_release`
fails a release when any hidden cell's range is narrower than the protection it
needs.

The reader this audit imagines is stronger than a real one:

* every cell shown in any public table has its exact student count known (enrolment
  is often published elsewhere), and a rate shown to one decimal gives the exact
  number of chronically absent students;
* a rate coded near 0% or 100% ("≤5%") gives an interval, not a value;
* every relation between cells is known exactly, including how far the district
  figure is from the sum of its schools (students who moved count at each school but
  once in the district) and how far published group counts are from the total;
* the reader knows chronically absent students are a subset of the group, and
  that the attendance bands of a headline add up to it.

Cells the reader cannot see are unknowns bounded below by zero. What a hidden cell
needs (:func:`protection`):

* a **small group** (10 or fewer students): the reader must not narrow its size to
  a range narrower than ``min(min_range, its size)``, and must not be able to prove
  that any of its students is chronically absent, or that any is not (the ranges of
  both counts reach 0 and are at least 1 wide);
* a **larger group**, hidden only to protect a small one: none of its counts may be
  worked out exactly (ranges at least 1 wide).

Notes
-----
Known shortcomings, written here so a reader meets them:

* The ranges come from the linear relaxation. For the two-way tables used here the
  integer range is the same; for some three-way tables it can be narrower.
* Year-to-date figures at different as-of dates are not additive (a student can be
  counted at both dates), so differencing across dates is not modelled.
* Cells the publisher already hid (NYC ``s``, Connecticut ``*``) have no true value
  to check against; relations that need them are left out for that count.
* The reader's knowledge that at least one hidden cell of a set has 10 or fewer
  students is a disjunction a linear programme cannot state; it is not used (the
  release does not say which hidden cells are the small ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from analysis.log import logger
from analysis.schema import ALL_GRADES

#: Columns that identify the unit a cell belongs to.
UNIT_KEYS = ("source", "definition", "level", "district_id", "school_id")

#: The two counts every audit protects; solved jointly (chronic <= students).
CORE_MEASURES = ("students", "chronically_absent")

#: Attendance bands, published as shares on unit headlines (all students, all grades).
BAND_MEASURES = ("satisfactory", "at_risk", "moderate_chronic", "severe_chronic")


# ------------------------------------------------------------------------ relations

@dataclass
class Relations:
    """Additive relations ``parent = sum(children) + a known gap`` between rows.

    Stored flat: relation ``r`` has members ``member[start[r]:start[r + 1]]``, the
    parent first, with ``sign`` -1 for the parent and +1 for each child.
    """

    member: np.ndarray
    sign: np.ndarray
    start: np.ndarray
    kind: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.start) - 1

    def members(self, r: int) -> np.ndarray:
        """Row numbers of relation ``r``, its parent first."""
        return self.member[self.start[r]:self.start[r + 1]]

    def relation_of_member(self) -> np.ndarray:
        """The relation number of every entry of ``member``."""
        return np.repeat(np.arange(len(self)), np.diff(self.start))

    def restricted_to(self, rows: np.ndarray) -> Relations:
        """Only the relations whose every member is in ``rows`` (a boolean mask)."""
        inside = rows[self.member]
        whole = np.add.reduceat(~inside, self.start[:-1]) == 0 if len(self) else []
        keep = np.flatnonzero(whole)
        return _from_lists([self.members(r) for r in keep],
                           [self.sign[self.start[r]:self.start[r + 1]] for r in keep],
                           [self.kind[r] for r in keep])

    def sets_of(self) -> dict[int, list[int]]:
        """For each row, the relations it belongs to."""
        out: dict[int, list[int]] = {}
        for r, row in zip(self.relation_of_member(), self.member, strict=True):
            out.setdefault(int(row), []).append(int(r))
        return out


def _from_lists(members: list, signs: list, kinds: list[str]) -> Relations:
    sizes = [len(m) for m in members]
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    member = (np.concatenate(members).astype(np.int64) if members
              else np.zeros(0, np.int64))
    sign = np.concatenate(signs).astype(np.int8) if signs else np.zeros(0, np.int8)
    return Relations(member=member, sign=sign, start=start, kind=list(kinds))


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series("", index=frame.index, dtype="string")
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.dt.strftime("%Y-%m-%d")
    return values.astype("string").fillna("")


def _key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One string per row joining ``columns`` (missing values as empty text)."""
    out = _text(frame, columns[0])
    for column in columns[1:]:
        out = out + "\x1f" + _text(frame, column)
    return out


def additive_relations(frame: pd.DataFrame) -> Relations:
    """Every ``total = sum of parts`` relation between rows of an aggregate table.

    Rows are numbered by position. Within one unit and as-of date:

    * **groups**: at each grade, the values of one group type add up to the
      ``all`` row of that grade;
    * **grades**: for each group value, the grades add up to the all-grades row
      (where grade rows exist: every unit's ``all`` group, NYC's groups by grade);

    and across units, cell by cell (same date, grade and group):

    * **roll-up**: the schools of a district add up to the district row, and the
      districts (or, with no district rows, the schools) add up to the state row.

    A relation is kept when its total and at least one part exist. Sums need not be
    exact: the audit treats the gap as known to the reader.
    """
    frame = frame.reset_index(drop=True)
    rows = pd.Series(np.arange(len(frame)), index=frame.index)
    cell = _key(frame, ["source", "definition", "as_of_date"])
    unit = cell + "\x1f" + _key(frame, ["level", "district_id", "school_id"])
    grade, gtype = _text(frame, "grade"), _text(frame, "group_type")
    gvalue, level = _text(frame, "group_value"), _text(frame, "level")
    found: tuple[list, list, list] = ([], [], [])

    def totals(mask: pd.Series, key: pd.Series) -> pd.Series:
        found_rows = pd.Series(rows[mask].to_numpy(), index=key[mask].to_numpy())
        return found_rows[~found_rows.index.duplicated()]

    # Groups of one type within a grade add up to the grade's "all" row.
    is_all = gtype == "all"
    parents = totals(is_all, unit + "|" + grade)
    _collect(rows, unit + "|" + grade + "|" + gtype, (unit + "|" + grade).map(parents),
             ~is_all, "groups", found)

    # Grades add up to the all-grades row of the same group value.
    by_value = unit + "|" + gtype + "|" + gvalue
    all_grades = grade == ALL_GRADES
    parents = totals(all_grades, by_value)
    _collect(rows, by_value, by_value.map(parents), ~all_grades, "grades", found)

    # Roll-up: schools to their district, districts (or schools) to the state.
    same_cell = cell + "|" + grade + "|" + gtype + "|" + gvalue
    in_district = same_cell + "|" + _text(frame, "district_id")
    parents = totals(level == "district", in_district)
    _collect(rows, in_district, in_district.map(parents), level == "school",
             "roll-up", found)
    if (level == "state").any():
        below = (level == "district") if (level == "district").any() \
            else (level == "school")
        parents = totals(level == "state", same_cell)
        _collect(rows, same_cell, same_cell.map(parents), below, "roll-up", found)
    return _from_lists(*found)


def _collect(rows: pd.Series, part_key: pd.Series, parent_of: pd.Series,
             parts: pd.Series, kind: str, found: tuple[list, list, list]) -> None:
    """Append one relation per value of ``part_key`` among ``parts``."""
    usable = parts & parent_of.notna()
    if not usable.any():
        return
    table = pd.DataFrame({"row": rows[usable].to_numpy(),
                          "key": part_key[usable].to_numpy(),
                          "parent": parent_of[usable].astype("int64").to_numpy()})
    for (_, parent), group in table.groupby(["key", "parent"], sort=False):
        children = group["row"].to_numpy()
        children = children[children != parent]
        if len(children) == 0:
            continue
        found[0].append(np.concatenate([[parent], children]))
        found[1].append(np.concatenate([[-1], np.ones(len(children), np.int8)]))
        found[2].append(kind)


# ------------------------------------------------------------------------ knowledge

@dataclass
class Knowledge:
    """What a reader knows about one count of every cell: ``low <= value <= high``.

    ``low == high`` is an exact value; ``(0, inf)`` is nothing beyond "not negative".
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def nothing(cls, n: int) -> Knowledge:
        return cls(np.zeros(n), np.full(n, np.inf))

    @property
    def exact(self) -> np.ndarray:
        return self.low == self.high


@dataclass
class Need:
    """The protection a checked count needs, row by row.

    A feasible range ``[low, high]`` is safe when ``low <= reach`` and
    ``high - low >= width``.
    """

    width: np.ndarray
    reach: np.ndarray

    def safe(self, rows: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        return ((low <= self.reach[rows] + 1e-6)
                & (high - low >= self.width[rows] - 1e-6))


# ------------------------------------------------------------------ linear programmes

@dataclass
class _Problem:
    """The equations of one audit, over every unknown (measure, row) pair."""

    var_measure: np.ndarray   # measure index of each unknown
    var_row: np.ndarray       # row of each unknown
    low: np.ndarray
    high: np.ndarray
    eq: csr_matrix            # one row per usable relation (and per split cell)
    eq_rhs: np.ndarray


def _build_problem(truth: list[np.ndarray], known: list[Knowledge],
                   relations: list[Relations], split: bool) -> _Problem:
    """Unknowns are the (measure, row) pairs not known exactly.

    With ``split``, the first three measures are a count and its two parts
    (students = chronically absent + not chronically absent) in every row.
    """
    n_rows = len(truth[0])
    index = np.full((len(truth), n_rows), -1, dtype=np.int64)
    var_measure, var_row, low, high = [], [], [], []
    count = 0
    for m, k in enumerate(known):
        rows = np.flatnonzero(~k.exact)
        index[m, rows] = np.arange(len(rows)) + count
        count += len(rows)
        var_measure.append(np.full(len(rows), m))
        var_row.append(rows)
        low.append(k.low[rows])
        high.append(k.high[rows])

    # Every equation says: the sum of sign * x over its unknown members equals the
    # same sum over their true values (the known members and the gap cancel out).
    eq_rows, eq_cols, eq_vals, rhs = [], [], [], []
    n_eq = 0

    def add(which: np.ndarray, member_var: np.ndarray, member_sign: np.ndarray,
            member_truth: np.ndarray, n_groups: int) -> None:
        nonlocal n_eq
        bad = np.zeros(n_groups, bool)
        np.logical_or.at(bad, which, np.isnan(member_truth))
        has_var = np.zeros(n_groups, bool)
        np.logical_or.at(has_var, which, member_var >= 0)
        keep = has_var & ~bad
        if not keep.any():
            return
        number = np.cumsum(keep) - 1 + n_eq
        take = keep[which] & (member_var >= 0)
        eq_rows.append(number[which[take]])
        eq_cols.append(member_var[take])
        eq_vals.append(member_sign[take].astype(float))
        sums = np.zeros(n_groups)
        np.add.at(sums, which[take], member_sign[take] * member_truth[take])
        rhs.append(sums[keep])
        n_eq += int(keep.sum())

    for m, rel in enumerate(relations):
        if len(rel):
            add(rel.relation_of_member(), index[m, rel.member], rel.sign,
                truth[m][rel.member], len(rel))
    if split:
        # students - chronically absent - not chronically absent = 0, row by row.
        rows = np.arange(n_rows)
        which = np.repeat(rows, 3)
        member = np.tile([0, 1, 2], n_rows)
        add(which, index[member, which],
            np.tile(np.array([1, -1, -1], np.int8), n_rows),
            np.array([truth[m][r] for m, r in zip(member, which, strict=True)]), n_rows)

    eq = coo_matrix((np.concatenate(eq_vals) if eq_vals else [],
                     (np.concatenate(eq_rows) if eq_rows else [],
                      np.concatenate(eq_cols) if eq_cols else [])),
                    shape=(n_eq, count)).tocsr()
    return _Problem(np.concatenate(var_measure), np.concatenate(var_row),
                    np.concatenate(low), np.concatenate(high), eq,
                    np.concatenate(rhs) if rhs else np.zeros(0))


def _components(problem: _Problem) -> np.ndarray:
    """Label each unknown with the group of unknowns linked to it by equations."""
    n = len(problem.var_row)
    if problem.eq.shape[0] == 0:
        return np.arange(n)
    incidence = (problem.eq != 0).astype(np.int8)
    _, labels = connected_components((incidence.T @ incidence).tocsr(), directed=False)
    return labels


def feasible_ranges(truth: dict[str, np.ndarray], known: dict[str, Knowledge],
                    relations: dict[str, Relations], check: dict[str, np.ndarray],
                    need: dict[str, Need] | None = None, split: bool = False,
                    seed: int = 0, only: np.ndarray | None = None) -> pd.DataFrame:
    """The smallest and largest value a reader can find for each checked cell.

    Parameters
    ----------
    truth : dict of str to array
        True value of each count for every row (NaN where unknown to the auditor).
        The true values are one solution of the reader's equations.
    known : dict of str to Knowledge
        What the reader knows of each count, row by row.
    relations : dict of str to Relations
        The additive relations the reader may use, for each count.
    check : dict of str to bool array
        Rows whose range to compute, for each count.
    need : dict of str to Need, optional
        The protection each row needs. With it, a range is only widened until it
        is proven safe (``exact`` False); without it every range is exact.
    split : bool
        The first three counts are students, chronically absent and not
        chronically absent, linked in every row (the parts add up to the group).
    seed : int
        Seed of the random objectives used to find wide ranges quickly.
    only : bool array, optional
        Solve only the groups of linked unknowns holding one of these rows (the
        others are unchanged since an earlier audit).

    Returns
    -------
    DataFrame
        ``row, measure, low, high, true, exact`` for every checked (row, count)
        pair. When ``exact`` is False, ``[low, high]`` is the part of the feasible
        range found so far, already enough to prove the cell safe.
    """
    measures = list(truth)
    problem = _build_problem([np.asarray(truth[m], float) for m in measures],
                             [known[m] for m in measures],
                             [relations[m] for m in measures], split)
    labels = _components(problem)
    wanted = np.zeros(len(problem.var_row), bool)
    for i, m in enumerate(measures):
        rows = problem.var_row[problem.var_measure == i]
        wanted[problem.var_measure == i] = np.asarray(check[m])[rows]
    if only is not None:
        dirty = np.unique(labels[np.asarray(only)[problem.var_row]])
        wanted &= np.isin(labels, dirty)
    values = np.array([truth[measures[m]][r] for m, r in
                       zip(problem.var_measure, problem.var_row, strict=True)])
    if need is None:
        width = np.full(len(values), np.inf)
        reach = np.full(len(values), -np.inf)
    else:
        width = np.array(
            [need[measures[m]].width[r]
             for m, r in zip(problem.var_measure, problem.var_row, strict=True)],
            float)
        reach = np.array(
            [need[measures[m]].reach[r]
             for m, r in zip(problem.var_measure, problem.var_row, strict=True)],
            float)

    rng = np.random.default_rng(seed)
    results = []
    for label in np.unique(labels[wanted]):
        members = np.flatnonzero(labels == label)
        results.extend(_solve_component(problem, members, wanted, measures, values,
                                        width, reach, rng))
    out = pd.DataFrame(results, columns=["row", "measure", "low", "high", "true",
                                         "exact"])
    return out.astype({"row": "int64", "low": float, "high": float, "true": float,
                       "exact": bool}).sort_values(["row", "measure"]) \
        .reset_index(drop=True)


def _bundled_highs():
    """scipy's own HiGHS object, or None when this scipy does not expose it.

    ``linprog`` rebuilds the model for every call; the HiGHS object keeps it and
    only the objective changes, so each solve warm-starts from the last basis
    (about 1 ms instead of 13 ms on the sample district). It is a private part of
    scipy, hence the fallback to ``linprog``.
    """
    try:
        from scipy.optimize._highspy import _core
    except ImportError:
        return None
    return _core if hasattr(_core, "_Highs") and hasattr(_core, "HighsLp") else None


class _Component:
    """The linear programme of one group of linked unknowns."""

    use_bundled = True   # tests switch it off to compare with linprog

    def __init__(self, problem: _Problem, members: np.ndarray, values: np.ndarray):
        eq = problem.eq[:, members]
        used = np.flatnonzero(eq.getnnz(axis=1) > 0)
        self.eq = eq[used] if len(used) else None
        self.eq_rhs = problem.eq_rhs[used] if len(used) else None
        low, high = problem.low[members], problem.high[members]
        # A cap far above anything true stands in for "no upper bound", so every
        # programme has a solution; reaching it means the reader cannot cap the cell.
        self.cap = 10.0 * (np.nansum(np.abs(values)) + 1000.0)
        self.bounds = np.column_stack([low, np.where(np.isinf(high), self.cap, high)])
        self.n = len(members)
        self.highs = (self._bundled() if self.use_bundled and self.eq is not None
                      else None)

    def _bundled(self):
        core = _bundled_highs()
        if core is None:
            return None
        try:
            highs = core._Highs()
            for option, value in (("output_flag", False), ("presolve", "off"),
                                  ("solver", "simplex")):
                highs.setOptionValue(option, value)
            lp = core.HighsLp()
            lp.num_col_, lp.num_row_ = self.n, self.eq.shape[0]
            lp.col_cost_ = np.zeros(self.n)
            lp.col_lower_ = self.bounds[:, 0].astype(float)
            lp.col_upper_ = self.bounds[:, 1].astype(float)
            lp.row_lower_ = lp.row_upper_ = self.eq_rhs.astype(float)
            matrix = self.eq.tocsc()
            lp.a_matrix_.format_ = core.MatrixFormat.kColwise
            lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.n, self.eq.shape[0]
            lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
            lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
            lp.a_matrix_.value_ = matrix.data.astype(float)
            highs.passModel(lp)
            self._index = np.arange(self.n, dtype=np.int32)
            self._optimal = core.HighsModelStatus.kOptimal
            return highs
        except (AttributeError, TypeError, RuntimeError):   # another scipy: fall back
            return None

    def solve(self, objective: np.ndarray) -> np.ndarray:
        """A solution minimising ``objective`` (every programme here has one)."""
        if self.highs is not None:
            self.highs.changeColsCost(self.n, self._index, objective.astype(float))
            self.highs.run()
            if self.highs.getModelStatus() == self._optimal:
                return np.asarray(self.highs.getSolution().col_value)
        # Dual simplex without presolve: these programmes are small and sparse, and
        # presolve costs four times the solve (measured on the sample district).
        result = linprog(objective, A_eq=self.eq, b_eq=self.eq_rhs, bounds=self.bounds,
                         method="highs-ds", options={"presolve": False})
        if result.status != 0:
            raise RuntimeError(f"privacy audit: a linear programme failed "
                               f"({result.message}); the true values are always a "
                               f"solution, so the relations are inconsistent.")
        return result.x


def _solve_component(problem: _Problem, members: np.ndarray, wanted: np.ndarray,
                     measures: list[str], values: np.ndarray, width: np.ndarray,
                     reach: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    """Feasible ranges of the wanted unknowns of one component.

    The true values are a solution. A few solutions with random objectives widen
    every range at once; then each range not yet proven safe gets its own
    programmes (minimise, maximise), whose solutions widen the others too.
    """
    check = np.flatnonzero(wanted[members])
    exact = np.zeros(len(members), bool)
    if problem.eq[:, members].nnz == 0:
        low_seen, high_seen = problem.low[members].copy(), problem.high[members].copy()
        exact[:] = True
    else:
        component = _Component(problem, members, values[members])
        low_seen, high_seen = values[members].copy(), values[members].copy()

        def seen(x: np.ndarray) -> None:
            np.minimum(low_seen, x, out=low_seen)
            np.maximum(high_seen, x, out=high_seen)

        def safe(i: int) -> bool:
            var = members[i]
            return (low_seen[i] <= reach[var] + 1e-6
                    and high_seen[i] - low_seen[i] >= width[var] - 1e-6)

        for _ in range(min(2, len(check))):
            direction = np.zeros(len(members))
            direction[check] = rng.choice([-1.0, 1.0], size=len(check))
            seen(component.solve(direction))
        # Push every unproven count of one kind down together, then up: most reach
        # their ends at once, since the counts are mostly tied by sums.
        kinds = problem.var_measure[members]
        for kind in np.unique(kinds[check]):
            for sign in (1.0, -1.0):
                open_ = [i for i in check if kinds[i] == kind and not safe(i)]
                if len(open_) < 2:
                    continue
                objective = np.zeros(len(members))
                objective[open_] = sign
                seen(component.solve(objective))
        for i in check:
            if safe(i):
                continue
            for sign in (1.0, -1.0):       # minimise, then maximise
                objective = np.zeros(len(members))
                objective[i] = sign
                seen(component.solve(objective))
                if safe(i) and np.isfinite(width[members[i]]):
                    break
            else:
                exact[i] = True
        high_seen = np.where(high_seen >= component.cap * (1 - 1e-9), np.inf,
                             high_seen)
    return [(int(problem.var_row[members[i]]),
             measures[problem.var_measure[members[i]]],
             float(low_seen[i]), float(high_seen[i]), float(values[members[i]]),
             bool(exact[i])) for i in check]


# ----------------------------------------------------------------------------- audit

@dataclass
class AuditResult:
    """The outcome of an audit: one row per hidden cell and count."""

    ranges: pd.DataFrame
    min_range: int
    cells_checked: int

    @property
    def failures(self) -> pd.DataFrame:
        """The (cell, count) pairs a reader can narrow too far (``measure`` "shown":
        a small group published outright)."""
        return self.ranges[~self.ranges["safe"]]

    @property
    def ok(self) -> bool:
        return bool(self.ranges["safe"].all()) if len(self.ranges) else True

    def summary(self) -> dict:
        """Counts for ``audit.json`` and logs; no cell values."""
        width = (self.ranges["high"].astype(float) - self.ranges["low"].astype(float))
        finite = width[np.isfinite(width)]
        return {
            "ok": self.ok,
            "min_range": self.min_range,
            "hidden_cells_checked": self.cells_checked,
            "ranges_computed": int(len(self.ranges)),
            "failures": int((~self.ranges["safe"].astype(bool)).sum()),
            "narrowest_range": float(finite.min()) if len(finite) else None,
        }


def protection(students: np.ndarray, measure: str, min_range: int, small: int,
               room: np.ndarray | None = None) -> Need:
    """The protection each hidden cell's count needs (see the module docstring).

    * A small group (``small`` students or fewer, or of unknown size) needs a size
      range at least ``min(min_range, size)`` wide, and a reader must not be able
      to prove that any of its students is chronically absent, or that any is
      not: for those two counts the range must reach 0 and be at least 1 wide.
    * A larger group, hidden only to protect a small one, needs ranges at least 1
      wide: none of its counts may be worked out exactly.

    ``room`` caps the width at what any suppression could give (a unit whose
    headline shows "≤1%" of 50 students has no chronically absent student to
    hide).
    """
    size = np.asarray(students, float)
    is_small = np.isnan(size) | (size <= small)
    if measure == "students":
        width = np.where(is_small, np.minimum(float(min_range), np.nan_to_num(
            np.maximum(size, 0.0), nan=float(min_range))), 1.0)
        reach = np.full(len(size), np.inf)
    else:
        # A group with no eligible students has nothing to protect in its parts.
        width = np.where(np.nan_to_num(size, nan=1.0) >= 1, 1.0, 0.0)
        reach = np.where(is_small, 0.0, np.inf)
    if room is not None:
        width = np.minimum(width, room)
    return Need(width=width, reach=reach)


def _headline_room(aggregate: pd.DataFrame, known: Knowledge) -> np.ndarray:
    """For every row, the reader's upper bound of the count for its unit's headline."""
    unit = _key(aggregate, ["source", "definition", "as_of_date", "level",
                            "district_id", "school_id"])
    headline = ((aggregate["grade"] == ALL_GRADES)
                & (aggregate["group_type"] == "all")).to_numpy()
    bound = pd.Series(known.high[headline], index=unit[headline].to_numpy())
    bound = bound[~bound.index.duplicated()]
    return unit.map(bound).fillna(np.inf).to_numpy(dtype=float)


def reader_knowledge(public: pd.DataFrame, n_rows: int, row_of: np.ndarray,
                     truth: dict[str, np.ndarray]) -> dict[str, Knowledge]:
    """What a reader learns about each count from one public table.

    ``row_of`` gives, for each public row, the aggregate row it shows (-1 for
    none). Shown cells give exact student counts; a rate shown as a number gives
    the exact count of chronically absent students; a coded rate (``≤5%``) gives an
    interval. Band shares (``share_<band>``) are read the same way.
    """
    known = {m: Knowledge.nothing(n_rows) for m in truth}
    hit = row_of >= 0
    rows = row_of[hit]
    shown = ~public["suppressed"].fillna(True).astype(bool).to_numpy()[hit]
    size = truth["students"][rows]
    if "students" in known:
        exact = shown & ~np.isnan(size)
        known["students"].low[rows[exact]] = size[exact]
        known["students"].high[rows[exact]] = size[exact]

    displays = {"chronically_absent": ("chronic_absence_rate", "rate_display")}
    displays |= {band: (f"share_{band}", f"share_{band}_display")
                 for band in BAND_MEASURES}
    for measure, (value_col, text_col) in displays.items():
        if measure not in known or value_col not in public:
            continue
        value = public[value_col].astype("Float64").to_numpy(dtype=float,
                                                               na_value=np.nan)[hit]
        text = (public[text_col].astype("string").fillna("").to_numpy()[hit]
                if text_col in public else np.full(len(rows), ""))
        true = truth[measure][rows]
        k = known[measure]
        exact = shown & ~np.isnan(value) & ~np.isnan(true)
        k.low[rows[exact]] = true[exact]
        k.high[rows[exact]] = true[exact]
        for i in np.flatnonzero(shown & np.isnan(value)):
            bound = _coded_bound(text[i])
            if bound is None or np.isnan(size[i]):
                continue
            kind, share = bound
            r = rows[i]
            if kind == "≤":
                k.high[r] = min(k.high[r], math.floor(share * size[i] + 1e-9))
            else:
                k.low[r] = max(k.low[r], math.ceil(share * size[i] - 1e-9))
                k.high[r] = min(k.high[r], size[i])
    # No part of a shown cell is larger than the cell.
    for measure in known:
        if measure == "students":
            continue
        k = known[measure]
        cap = shown & ~np.isnan(size)
        k.high[rows[cap]] = np.minimum(k.high[rows[cap]], size[cap])

    # Not chronically absent = students - chronically absent, read off the same cells.
    if "not_chronic" in known:
        s, c = known["students"], known["chronically_absent"]
        k = known["not_chronic"]
        k.low = np.maximum(0.0, s.low - c.high)
        k.high = np.where(np.isinf(s.high), np.inf, s.high - c.low)
    return known


def _coded_bound(text: str) -> tuple[str, float] | None:
    """``"≤5%"`` -> ``("≤", 0.05)``; anything else -> None."""
    if not text or text[0] not in "≤≥" or not text.endswith("%"):
        return None
    try:
        return text[0], float(text[1:-1]) / 100
    except ValueError:
        return None


def _merge(into: dict[str, Knowledge], other: dict[str, Knowledge]) -> None:
    """Combine what two tables tell the reader: the tighter bound wins."""
    for m, k in other.items():
        into[m].low = np.maximum(into[m].low, k.low)
        into[m].high = np.minimum(into[m].high, k.high)


def match_rows(public: pd.DataFrame, aggregate: pd.DataFrame,
               keys: tuple[str, ...]) -> np.ndarray:
    """For each public row, the position of the aggregate row with the same keys."""
    keys = [k for k in keys if k in public and k in aggregate]
    left = _key(public.reset_index(drop=True), keys)
    right = _key(aggregate.reset_index(drop=True), keys)
    lookup = pd.Series(np.arange(len(right)), index=right.to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    return left.map(lookup).fillna(-1).astype(np.int64).to_numpy()


def audit_release(tables: list[pd.DataFrame], aggregate: pd.DataFrame,
                  min_range: int, keys: tuple[str, ...],
                  relations: Relations | None = None,
                  only_rows: np.ndarray | None = None,
                  min_group_size: int | None = None) -> AuditResult:
    """Try to recover every hidden cell of a whole release from what it shows.

    Parameters
    ----------
    tables : list of DataFrame
        Every public table of one run (each with the cell keys, ``suppressed``,
        ``chronic_absence_rate`` and ``rate_display``; optionally band shares).
    aggregate : DataFrame
        The aggregate table the release was made from: the true values.
    min_range : int
        The narrowest range allowed for a small group's size (capped by the
        group's size); see :func:`protection`.
    keys : tuple of str
        Columns that identify a cell in both.
    relations : Relations, optional
        Precomputed :func:`additive_relations` of ``aggregate``.
    only_rows : bool array, optional
        Check only hidden cells linked to these rows (for repeated audits while
        suppressing; a release is always audited whole).
    min_group_size : int, optional
        Groups of this many students or fewer are small; ``min_range`` by default.

    Returns
    -------
    AuditResult
        ``ok`` is False when a hidden cell can be narrowed below its protection.
    """
    aggregate = aggregate.reset_index(drop=True)
    relations = relations if relations is not None else additive_relations(aggregate)
    n = len(aggregate)
    small = min_range if min_group_size is None else min_group_size

    def values(column: str) -> np.ndarray:
        return (aggregate[column].astype("Float64")
                .to_numpy(dtype=float, na_value=np.nan))

    truth = {m: values(m) for m in CORE_MEASURES}
    truth["not_chronic"] = truth["students"] - truth["chronically_absent"]
    truth |= {m: values(m) for m in BAND_MEASURES if m in aggregate}

    # What the whole release shows, cell by cell; a cell shown nowhere is hidden.
    known = {m: Knowledge.nothing(n) for m in truth}
    shown_anywhere = np.zeros(n, bool)
    published = np.zeros(n, bool)
    bands_published = np.zeros(n, bool)
    for table in tables:
        table = table.reset_index(drop=True)
        row_of = match_rows(table, aggregate, keys)
        _merge(known, reader_knowledge(table, n, row_of, truth))
        hit = row_of >= 0
        published[row_of[hit]] = True
        shown = ~table["suppressed"].fillna(True).astype(bool).to_numpy()
        shown_anywhere[row_of[hit & shown]] = True
        for band in BAND_MEASURES:
            column = f"share_{band}_display"
            if column in table:
                has = table[column].astype("string").fillna("").ne("").to_numpy()
                bands_published[row_of[hit & has]] = True
    hidden = published & ~shown_anywhere
    need = {m: protection(truth["students"], m, min_range, small,
                          None if m == "students" else _headline_room(aggregate,
                                                                      known[m]))
            for m in truth}

    # Core counts: every cell and every relation; the parts add up to the group.
    core = ("students", "chronically_absent", "not_chronic")
    ranges = [feasible_ranges({m: truth[m] for m in core}, {m: known[m] for m in core},
                              {m: relations for m in core},
                              {m: hidden & ~np.isnan(truth[m]) for m in core},
                              need=need, split=True, only=only_rows)]

    # Bands: only headline rows carry them, so only relations among headlines bind.
    headline = ((aggregate["grade"] == ALL_GRADES) & (aggregate["group_type"] == "all")
                ).to_numpy()
    bands = [m for m in BAND_MEASURES if m in truth and not np.isnan(truth[m]).all()]
    if bands and bands_published.any():
        band_relations = relations.restricted_to(headline)
        for band in bands:
            ranges.append(feasible_ranges(
                {band: truth[band]}, {band: known[band]}, {band: band_relations},
                {band: hidden & headline & ~np.isnan(truth[band])}, need=need,
                only=only_rows))
    frame = pd.concat(ranges, ignore_index=True)
    rows = frame["row"].to_numpy()
    frame["safe"] = np.ones(len(frame), bool)
    for m in frame["measure"].unique():
        pick = (frame["measure"] == m).to_numpy()
        frame.loc[pick, "safe"] = need[m].safe(rows[pick], frame.loc[pick, "low"]
                                               .to_numpy(), frame.loc[pick, "high"]
                                               .to_numpy())

    # A small group shown anywhere is a failure in itself (its size is then known).
    exposed = np.flatnonzero(shown_anywhere & (truth["students"] <= small))
    if only_rows is not None:
        exposed = exposed[np.asarray(only_rows)[exposed]]
    if len(exposed):
        size = truth["students"][exposed]
        frame = pd.concat([frame, pd.DataFrame({
            "row": exposed, "measure": "shown", "low": size, "high": size,
            "true": size, "exact": True, "safe": False})], ignore_index=True)
    result = AuditResult(ranges=frame, min_range=min_range,
                         cells_checked=int(hidden.sum()))
    summary = result.summary()
    logger.info("privacy audit: %d hidden cells, %d ranges, %d too narrow",
                summary["hidden_cells_checked"], summary["ranges_computed"],
                summary["failures"])
    return result
