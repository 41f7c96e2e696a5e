"""Build the one aggregate table from student-level data.

:func:`build_aggregate` runs the whole heavy step in the engine: attendance rows are
read once and summed per student, school and period (the days between two as-of
points), days enrolled are counted from enrollment spans and the calendar, and
student totals at every as-of point (each month end of this year and last year, the
as-of date and the same date last year) are sums over periods (see
:mod:`analysis.metrics`). Then come counts by school or district, grade and student
group. Only the small aggregated result comes back to pandas, where rates and Wilson
intervals are added.

The input is either validated pandas tables (:class:`~analysis.sources.
student_files.StudentData`, copied into the engine) or tables already in the engine
(:class:`~analysis.engine.EngineTables`, e.g. from :func:`analysis.engine.
scan_parquet`), which is how a state's billion daily rows are read without pandas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import ibis
import ibis.expr.types as ir
import pandas as pd

from analysis import metrics
from analysis.definitions import Definition
from analysis.engine import (
    EngineTables,
    connect,
    fetch,
    load_frames,
    materialize,
    refresh_statistics,
    release,
)
from analysis.log import logger
from analysis.quality import QualityLedger
from analysis.schema import (
    ALL_GRADES,
    ALL_STUDENTS,
    BANDS,
    FLAG_GROUP_VALUES,
    conform_aggregate,
)
from analysis.settings import Settings
from analysis.sources.student_files import StudentData
from analysis.statistics import wilson_interval

DEFAULT_DISTRICT_ID = "district"

#: The levels of the aggregate table computed from student facts, with the column
#: that holds the unit's id at that level.
LEVELS = (("school", "school_id"), ("district", "district_id"))


@dataclass
class AggregateRun:
    """What one run of the engine produced."""

    aggregate: pd.DataFrame
    students: pd.DataFrame         # student facts at the as-of date: staff only
    modality: pd.DataFrame         # days by learning modality at the as-of date
    ledger: QualityLedger
    as_of: date
    definition: Definition
    schools: pd.DataFrame
    conflicts: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step: a profile


class _Steps:
    """Time each step of a run and log it; refresh the engine's statistics."""

    def __init__(self, con: ibis.BaseBackend) -> None:
        self.con = con
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def done(self, name: str) -> None:
        refresh_statistics(self.con)
        now = time.perf_counter()
        self.seconds[name] = round(now - self.last, 3)
        self.last = now
        logger.info("step %s: %.1f s", name, self.seconds[name])


def school_year_label(year_start: int) -> str:
    """``2025`` -> ``"2025-26"``."""
    return f"{year_start}-{(year_start + 1) % 100:02d}"


def year_start_of(day: date, start_month: int) -> int:
    """The calendar year in which the school year holding ``day`` began."""
    return day.year if day.month >= start_month else day.year - 1


def same_date_last_year(day: date) -> date:
    """The same calendar date a year earlier (28 February for 29 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def as_of_points(calendar: pd.DataFrame, as_of: date,
                 start_month: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The dates at which year-to-date figures are computed.

    Returns
    -------
    points : DataFrame
        ``as_of_date, year_start, is_checkpoint``: each month end of this school year
        up to the as-of date, the as-of date, and for last year each month end, its
        last instructional day and the same date as the as-of date.
    year_ends : DataFrame
        The last instructional day of every complete year before this one, used for
        last year's chronic and severe flags.
    """
    days = calendar.loc[calendar["instructional"], "date"].dt.date
    current = year_start_of(as_of, start_month)
    starts = days.map(lambda d: year_start_of(d, start_month))

    dates: set[date] = {as_of}
    for year in (current, current - 1):
        in_year = days[starts == year]
        if in_year.empty:
            continue
        last = min(in_year.max(), as_of)
        month_ends = pd.date_range(in_year.min(), last, freq="ME").date
        dates.update(month_ends)
        if year < current:
            dates.add(in_year.max())
    if (starts == current - 1).any():
        dates.add(same_date_last_year(as_of))

    points = pd.DataFrame({"as_of_date": sorted(dates)})
    points["year_start"] = [year_start_of(d, start_month) for d in points["as_of_date"]]
    points["is_checkpoint"] = [
        (pd.Timestamp(d) + pd.offsets.Day(1)).day == 1 for d in points["as_of_date"]
    ]
    points = points[points["year_start"] >= current - 1].reset_index(drop=True)

    ends = (pd.DataFrame({"date": days, "year_start": starts})
            .loc[lambda f: f["year_start"] < current]
            .groupby("year_start", as_index=False)["date"].max()
            .rename(columns={"date": "as_of_date"}))
    ends["is_checkpoint"] = False
    points["as_of_date"] = pd.to_datetime(points["as_of_date"])
    ends["as_of_date"] = pd.to_datetime(ends["as_of_date"])
    return points, ends[["as_of_date", "year_start", "is_checkpoint"]]


#: Student columns that define the groups counted in the aggregate table.
GROUP_COLUMNS = ("race_ethnicity", "gender", *FLAG_GROUP_VALUES)


def _count_groups(con: ibis.BaseBackend, facts: ir.Table, students: ir.Table,
                  unit: str) -> ir.Table:
    """Counts and day totals per as-of point, unit, grade and student group.

    First one pass sums the students of each cell (point, unit, grade and every
    group column at once); then each grouping (all, by grade, by race/ethnicity,
    ...) sums the cells. Many small aggregations of the cells cost less than one
    aggregation of a copy of every student row per group.
    """
    joined = facts.join(students, "student_id")
    eligible = joined.eligible

    def count(condition: ir.BooleanValue) -> ir.IntegerValue:
        return metrics.as_int(condition).sum()

    dims = ["as_of_date", "year_start", "unit_id", "grade", *GROUP_COLUMNS]
    cells = materialize(con, joined.group_by(
        as_of_date=joined.as_of_date, year_start=joined.year_start,
        unit_id=joined[unit], grade=joined.grade,
        **{column: joined[column] for column in GROUP_COLUMNS},
    ).agg(
        students_enrolled=joined.student_id.count(),
        students=count(eligible),
        chronically_absent=count(joined.chronic),
        **{band: count(eligible & (joined.band == band)) for band in BANDS},
        tier2=count(joined.tier2),
        tier3=count(joined.tier3),
        days_enrolled=ibis.ifelse(eligible, joined.days_enrolled, 0).sum()
        .cast("float64"),
        days_absent=ibis.ifelse(eligible, joined.days_absent, 0.0).sum(),
    ))
    measures = [c for c in cells.columns if c not in dims]

    def total(grade: ir.Value, group_type: str, group_value: ir.Value) -> ir.Table:
        return cells.group_by(
            as_of_date=cells.as_of_date, year_start=cells.year_start,
            unit_id=cells.unit_id, grade=grade, group_type=ibis.literal(group_type),
            group_value=group_value,
        ).agg(**{m: cells[m].sum() for m in measures})

    everyone = ibis.literal(ALL_STUDENTS)
    parts = [total(ibis.literal(ALL_GRADES), "all", everyone),
             total(cells.grade, "all", everyone)]
    for column in ("race_ethnicity", "gender"):
        parts.append(total(ibis.literal(ALL_GRADES), column,
                           cells[column].cast("string")))
    for column, (yes, no) in FLAG_GROUP_VALUES.items():
        parts.append(total(ibis.literal(ALL_GRADES), column,
                           ibis.ifelse(cells[column], yes, no)))
    return ibis.union(*parts, distinct=False)


def _modality_rows(rows: ir.Table, as_of: date, start_month: int,
                   unit: str) -> ir.Table:
    """Days enrolled and absent by learning modality, this year up to the as-of date.

    ``rows`` is :func:`analysis.metrics.school_periods` (with ``district_id``); a
    day enrolled at two schools counts at each, also in the district's figures.
    """
    current = rows.filter(rows.year_start == year_start_of(as_of, start_month))
    other = metrics.OTHER_MODALITIES
    in_person_days = current.days_enrolled - sum(current[f"days_{m}"] for m in other)
    in_person_absent = current.days_absent - sum(current[f"absent_{m}"] for m in other)
    parts = [current.select(unit_id=current[unit], student_id=current.student_id,
                            modality=ibis.literal("in_person"), days=in_person_days,
                            absent=in_person_absent)]
    parts += [current.select(unit_id=current[unit], student_id=current.student_id,
                             modality=ibis.literal(m), days=current[f"days_{m}"],
                             absent=current[f"absent_{m}"]) for m in other]
    stacked = ibis.union(*parts, distinct=False)
    stacked = stacked.filter(stacked.days > 0)
    return stacked.group_by(["unit_id", "modality"]).agg(
        students_enrolled=stacked.student_id.nunique(),
        days_enrolled=stacked.days.sum().cast("float64"),
        days_absent=stacked.absent.sum(),
    )


def _finish(counts: pd.DataFrame, schools: pd.DataFrame, source: str,
            definition: Definition) -> pd.DataFrame:
    """Add names, school-year labels, rates and intervals to engine counts.

    ``counts`` holds both levels (its ``level`` column) and is changed in place:
    at a state's size a copy of it is a gigabyte.
    """
    frame = counts
    frame["source"] = source
    frame["definition"] = definition.name
    frame["school_year"] = frame["year_start"].map(school_year_label)

    districts = schools.drop_duplicates("district_id").set_index("district_id")
    named = schools.set_index("school_id")
    is_school = frame["level"] == "school"
    frame["school_id"] = frame["unit_id"].where(is_school)
    frame["school_name"] = frame["school_id"].map(named["school_name"])
    frame["district_id"] = frame["unit_id"].map(named["district_id"]).where(
        is_school, frame["unit_id"])
    frame["district_name"] = frame["district_id"].map(districts["district_name"])

    students = frame["students"].astype("float64")
    chronic = frame["chronically_absent"]
    frame["chronic_absence_rate"] = (chronic / students).where(students > 0)
    frame["ci_low"], frame["ci_upp"] = wilson_interval(chronic, students)
    enrolled_days = frame["days_enrolled"].where(frame["days_enrolled"] > 0)
    frame["attendance_rate"] = 1 - frame["days_absent"] / enrolled_days
    frame["suppressed_at_source"] = False
    frame["approximate"] = False
    return conform_aggregate(frame.drop(columns=["unit_id", "year_start"]))


def _schools_table(data: StudentData | EngineTables) -> pd.DataFrame:
    """The schools table, filled in from the calendar when the district sent none."""
    if isinstance(data, EngineTables):
        calendar_ids = data["calendar"].select("school_id").distinct().to_pandas()
        ids = set(calendar_ids["school_id"])
        ids |= set(data["enrollments"].select("school_id").distinct()
                   .to_pandas()["school_id"])
        given = data["schools"].to_pandas() if "schools" in data.tables else None
    else:
        ids = set(data["calendar"]["school_id"]) | set(data["enrollments"]["school_id"])
        given = data["schools"] if "schools" in data.tables else None
    schools = pd.DataFrame({"school_id": pd.Series(sorted(ids), dtype="string")})
    if given is not None:
        given = given.astype({"school_id": "string"})
        schools = schools.merge(given, on="school_id", how="left")
    defaults = (("school_name", None), ("school_level", pd.NA),
                ("district_id", DEFAULT_DISTRICT_ID), ("district_name", "District"))
    for col, default in defaults:
        if col not in schools.columns:
            schools[col] = pd.NA
        fill = schools["school_id"] if default is None else default
        schools[col] = schools[col].astype("string").fillna(fill)
    return schools


def latest_attendance_date(data: StudentData | EngineTables) -> date:
    """The latest date with an attendance mark: the default as-of date."""
    if isinstance(data, EngineTables):
        return pd.Timestamp(data["attendance"].date.max().to_pandas()).date()
    return pd.Timestamp(data["attendance"]["date"].max()).date()


def date_periods(dates: pd.Series, instructional: pd.Series, as_of: date,
                 start_month: int, points: pd.DataFrame,
                 year_ends: pd.DataFrame) -> pd.DataFrame:
    """Map every calendar date up to ``as_of`` to its period.

    A period ends at an as-of point, a year end or a month end, and starts the day
    after the one before it in the same school year, so it never spans two months.

    Parameters
    ----------
    dates, instructional : Series
        The distinct calendar dates, and whether each is a school day somewhere.
    as_of : date
    start_month : int
    points, year_ends : DataFrame
        From :func:`as_of_points`.

    Returns
    -------
    DataFrame
        ``date, year_start, period_end``; dates after the last period of their
        school year are left out.
    """
    frame = pd.DataFrame({"date": pd.to_datetime(dates),
                          "instructional": instructional})
    frame = frame[frame["date"] <= pd.Timestamp(as_of)].drop_duplicates("date")
    frame["year_start"] = [year_start_of(d, start_month) for d in frame["date"].dt.date]

    ends = set(pd.to_datetime(points["as_of_date"])) | set(
        pd.to_datetime(year_ends["as_of_date"]))
    taught = frame.loc[frame["instructional"], "date"]
    if not taught.empty:
        ends |= set(pd.date_range(taught.min(), taught.max(), freq="ME"))
    bounds = pd.DataFrame({"period_end": sorted(ends)})
    bounds["year_start"] = [year_start_of(d, start_month)
                            for d in bounds["period_end"].dt.date]

    # Each date goes to the first period end on or after it, in its school year.
    merged = pd.merge_asof(
        frame.sort_values("date"), bounds.sort_values("period_end"),
        left_on="date", right_on="period_end", by="year_start", direction="forward",
    )
    merged = merged.dropna(subset=["period_end"])
    return merged[["date", "year_start", "period_end"]].reset_index(drop=True)


def _engine_tables(data: StudentData | EngineTables, con: ibis.BaseBackend,
                   schools: pd.DataFrame) -> dict[str, ir.Table]:
    """The contract tables as engine tables, with the filled-in schools table."""
    if isinstance(data, EngineTables):
        tables = dict(data.tables)
    else:
        names = ("students", "enrollments", "calendar", "attendance")
        tables = load_frames(con, {name: data[name] for name in names})
    tables.update(load_frames(con, {"schools": schools}))
    return tables


def build_aggregate(data: StudentData | EngineTables, settings: Settings,
                    definition: Definition, as_of: date | None = None,
                    source: str = "sample",
                    con: ibis.BaseBackend | None = None) -> AggregateRun:
    """Compute the aggregate table and the student facts for one as-of date.

    Parameters
    ----------
    data : StudentData or EngineTables
        Validated student-level tables in pandas, or contract tables already in
        the engine (:func:`analysis.engine.scan_parquet`); the second must live on
        ``con``.
    settings : Settings
        Run settings (school-year start month, engine).
    definition : Definition
        The definition profile in force.
    as_of : date, optional
        Year-to-date figures up to and including this date; the latest attendance
        date by default.
    source : str
        Name written in the ``source`` column.
    con : ibis backend, optional
        An open engine connection; :func:`analysis.engine.connect` on
        ``settings.engine`` by default.

    Returns
    -------
    AggregateRun

    Notes
    -----
    Rows that break the contract in engine tables (unknown category codes, missing
    keys) are set aside here, with the other attendance reasons; the pandas path
    has set them aside already, while reading.
    """
    as_of = as_of or latest_attendance_date(data)
    con = con or connect(settings.engine)
    ledger = data.ledger
    schools = _schools_table(data)
    start_month = settings.school_year_start_month
    logger.info("computing metrics as of %s with definition %s", as_of, definition.name)
    tables = _engine_tables(data, con, schools)
    steps = _Steps(con)

    # The as-of points and the period of every calendar date (small, in pandas).
    calendar = tables["calendar"]
    dates = calendar.group_by(day=metrics.as_date(calendar.date)).agg(
        instructional=calendar.instructional.any()).to_pandas()
    points, year_ends = as_of_points(
        pd.DataFrame({"date": pd.to_datetime(dates["day"]),
                      "instructional": dates["instructional"].astype(bool)}),
        as_of, start_month)
    periods = date_periods(dates["day"], dates["instructional"].astype(bool), as_of,
                           start_month, points, year_ends)
    tables.update(load_frames(con, {"date_periods": periods, "points": points,
                                    "year_ends": year_ends}))
    steps.done("points and periods")

    # Enrollment: islands of spans, located among each school's school days.
    days = metrics.instructional_days(calendar, as_of, start_month, definition)
    ordinals = materialize(con, metrics.day_ordinals(days))
    islands = metrics.enrollment_islands(tables["enrollments"], as_of, definition)
    islands = materialize(con, islands)
    steps.done("enrollment islands")
    located = materialize(con, metrics.locate_islands(islands, ordinals,
                                                         tables["schools"]))
    release(con, islands)
    steps.done("islands located")
    ranges = metrics.period_ranges(ordinals, tables["date_periods"])
    enrolled = materialize(con, metrics.enrolled_periods(located, ranges))
    steps.done("days enrolled per period")

    # Attendance: one pass over the rows, summed per period and reason.
    def classify(attendance: ir.Table) -> ir.Table:
        return metrics.period_marks(attendance, calendar, tables["date_periods"],
                                    located, as_of, definition)

    sums = materialize(con, metrics.sum_marks(classify(tables["attendance"])))
    steps.done("attendance rows summed (one pass)")
    usable, conflicts = _settle_marks(con, tables["attendance"], classify, sums,
                                      ledger, isinstance(data, EngineTables))
    steps.done("duplicate marks settled")

    # Student totals and flags, then counts by unit, grade and group.
    # Each kept step is released once no later step reads it, so that the engine
    # keeps in memory what it needs and spills less.
    school_rows = materialize(con, metrics.school_periods(enrolled, usable))
    release(con, enrolled)
    steps.done("school periods")
    district_rows = materialize(con, metrics.district_periods(
        school_rows, usable, located, ordinals, tables["date_periods"]))
    release(con, usable, located, ordinals)
    steps.done("district periods")
    modality = pd.concat(
        [fetch(_modality_rows(school_rows, as_of, start_month, unit))
         .assign(level=level) for level, unit in LEVELS],
        ignore_index=True,
    )
    steps.done("days by modality")
    facts = metrics.period_student_facts(school_rows, district_rows, tables["points"],
                                         tables["year_ends"], definition)
    facts = {level: materialize(con, table) for level, table in facts.items()}
    release(con, school_rows, district_rows)
    steps.done("student facts at as-of points")
    students_t = tables["students"]
    if "grade" in students_t.columns:  # the grade of each span is used instead
        students_t = students_t.drop("grade")
    # Both levels come back in one table, so pandas holds one copy, not three.
    counts = fetch(ibis.union(*[
        _count_groups(con, facts[level], students_t, unit)
        .mutate(level=ibis.literal(level))
        for level, unit in LEVELS], distinct=False))
    aggregate = _finish(counts, schools, source, definition)
    del counts
    steps.done("counts by unit, grade and group")

    # Staff-only student facts at the as-of date, both levels in one table.
    as_of_ts = pd.Timestamp(as_of)
    students = fetch(ibis.union(*[
        facts[level].filter(facts[level].as_of_date == as_of_ts)
        .rename(unit_id=unit).mutate(level=ibis.literal(level))
        for level, unit in LEVELS], distinct=False))
    release(con, *facts.values())
    steps.done("student rows at the as-of date")
    logger.info("aggregate table: %d rows; %d student-school facts at the as-of date",
                len(aggregate), int((students["level"] == "school").sum()))
    return AggregateRun(aggregate=aggregate, students=students, modality=modality,
                        ledger=ledger, as_of=as_of, definition=definition,
                        schools=schools, conflicts=conflicts, seconds=steps.seconds)


def _settle_marks(con: ibis.BaseBackend, attendance: ir.Table,
                  classify: Callable[[ir.Table], ir.Table], sums: ir.Table,
                  ledger: QualityLedger, count_rows: bool) -> tuple[ir.Table, int]:
    """Record rows set aside in the ledger and settle days with several marks.

    ``classify`` is :func:`analysis.metrics.period_marks` with everything but the
    attendance rows bound; only the rows of students with a day marked twice go
    through it again, not the whole attendance table.

    Returns the period sums of usable marks (one mark per day) and the number of
    student-days whose marks had different categories.
    """
    reasons = (sums.filter(sums.reason.notnull()).group_by("reason")
               .agg(n=sums.rows.sum()).to_pandas())
    if count_rows and "attendance" not in ledger.entries:
        ledger.add_file("attendance", "attendance", int(sums.rows.sum().to_pandas()))
    for reason, count in sorted(zip(reasons["reason"], reasons["n"], strict=True)):
        ledger.set_aside("attendance", reason, int(count))

    # Only periods with a day marked twice go through the day-by-day pass.
    keys = ["student_id", "school_id", "year_start", "period_end"]
    usable = sums.filter(sums.reason.isnull())
    flagged = materialize(con, usable.filter(
        metrics.bit_count(usable.day_bits) != usable.rows).select(*keys).distinct())
    conflicts = 0
    if int(flagged.count().to_pandas()):
        pairs = flagged.select("student_id", "school_id").distinct()
        marks = classify(attendance.semi_join(pairs, ["student_id", "school_id"]))
        fixed, days = metrics.resolve_duplicates(marks, flagged)
        days = materialize(con, days)
        extra = int((days.marks - 1).sum().to_pandas())
        conflicts = int(metrics.as_int(days.conflict).sum().to_pandas())
        release(con, days)
        ledger.set_aside("attendance", metrics.REASON_DUPLICATE, extra)
        usable = ibis.union(usable.anti_join(flagged, keys),
                            fixed.select(*usable.columns), distinct=False)
    if conflicts:
        ledger.note(f"{conflicts} student-days had marks of different categories; the "
                    f"largest missed share was kept")
    usable = materialize(con, usable)
    release(con, sums, flagged)
    return usable, conflicts
