"""Build the one aggregate table from student-level data.

:func:`build_aggregate` runs the whole heavy step in the engine (validation has
already happened in :mod:`analysis.sources.student_files`): daily records, student
totals at every as-of point (each month end of this year and last year, the as-of
date and the same date last year), then counts by school or district, grade and
student group. Only the small aggregated result comes back to pandas, where rates
and Wilson intervals are added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import ibis
import ibis.expr.types as ir
import pandas as pd

from analysis import metrics
from analysis.definitions import Definition
from analysis.engine import connect, load_frames
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


def _group_rows(facts: ir.Table, students: ir.Table, unit: str) -> ir.Table:
    """Stack one copy of each student row per student group it belongs to."""
    joined = facts.join(students, "student_id")
    base = dict(as_of_date=joined.as_of_date, year_start=joined.year_start,
                unit_id=joined[unit], student_id=joined.student_id,
                eligible=joined.eligible, chronic=joined.chronic, band=joined.band,
                tier2=joined.tier2, tier3=joined.tier3,
                days_enrolled=joined.days_enrolled, days_absent=joined.days_absent)

    parts = [
        joined.select(**base, grade=ibis.literal(ALL_GRADES), group_type=ibis.literal("all"),
                      group_value=ibis.literal(ALL_STUDENTS)),
        joined.select(**base, grade=joined.grade, group_type=ibis.literal("all"),
                      group_value=ibis.literal(ALL_STUDENTS)),
    ]
    for column in ("race_ethnicity", "gender"):
        parts.append(joined.select(**base, grade=ibis.literal(ALL_GRADES),
                                   group_type=ibis.literal(column),
                                   group_value=joined[column].cast("string")))
    for column, (yes, no) in FLAG_GROUP_VALUES.items():
        parts.append(joined.select(**base, grade=ibis.literal(ALL_GRADES),
                                   group_type=ibis.literal(column),
                                   group_value=ibis.ifelse(joined[column], yes, no)))
    return ibis.union(*parts, distinct=False)


def _count_groups(rows: ir.Table) -> ir.Table:
    """Counts and day totals per as-of point, unit, grade and group."""
    def count(condition: ir.BooleanValue) -> ir.IntegerValue:
        return condition.cast("int64").sum()

    eligible = rows.eligible
    return rows.group_by(
        ["as_of_date", "year_start", "unit_id", "grade", "group_type", "group_value"]
    ).agg(
        students_enrolled=rows.student_id.count(),
        students=count(eligible),
        chronically_absent=count(rows.chronic),
        **{band: count(eligible & (rows.band == band)) for band in BANDS},
        tier2=count(rows.tier2),
        tier3=count(rows.tier3),
        days_enrolled=ibis.ifelse(eligible, rows.days_enrolled, 0).sum().cast("float64"),
        days_absent=ibis.ifelse(eligible, rows.days_absent, 0.0).sum(),
    )


def _modality_rows(daily: ir.Table, as_of: date, unit: str) -> ir.Table:
    """Days enrolled and absent by learning modality at the as-of date."""
    start = ibis.literal(as_of).cast("date")
    rows = daily.filter(daily.date <= start)
    current = rows.filter(rows.year_start == rows.year_start.max())
    return current.group_by([unit, "modality"]).agg(
        students_enrolled=current.student_id.nunique(),
        days_enrolled=current.date.count().cast("float64"),
        days_absent=current.share.sum(),
    ).rename(unit_id=unit)


def _finish(counts: pd.DataFrame, level: str, schools: pd.DataFrame, source: str,
            definition: Definition) -> pd.DataFrame:
    """Add names, school-year labels, rates and intervals to engine counts."""
    frame = counts.copy()
    frame["source"] = source
    frame["definition"] = definition.name
    frame["level"] = level
    frame["school_year"] = frame["year_start"].map(school_year_label)

    districts = schools.drop_duplicates("district_id").set_index("district_id")
    if level == "school":
        named = schools.set_index("school_id")
        frame["school_id"] = frame["unit_id"]
        frame["school_name"] = frame["unit_id"].map(named["school_name"])
        frame["district_id"] = frame["unit_id"].map(named["district_id"])
    else:
        frame["district_id"] = frame["unit_id"]
    frame["district_name"] = frame["district_id"].map(districts["district_name"])

    students = frame["students"].astype("float64")
    frame["chronic_absence_rate"] = (frame["chronically_absent"] / students).where(students > 0)
    frame["ci_low"], frame["ci_upp"] = wilson_interval(frame["chronically_absent"], students)
    enrolled_days = frame["days_enrolled"].where(frame["days_enrolled"] > 0)
    frame["attendance_rate"] = 1 - frame["days_absent"] / enrolled_days
    frame["suppressed_at_source"] = False
    frame["approximate"] = False
    return conform_aggregate(frame.drop(columns=["unit_id", "year_start"]))


def _schools_table(data: StudentData) -> pd.DataFrame:
    """The schools table, filled in from the calendar when the district sent none."""
    ids = sorted(set(data["calendar"]["school_id"]) | set(data["enrollments"]["school_id"]))
    schools = pd.DataFrame({"school_id": pd.Series(ids, dtype="string")})
    if "schools" in data.tables:
        schools = schools.merge(data["schools"], on="school_id", how="left")
    for col, default in (("school_name", None), ("school_level", pd.NA),
                         ("district_id", DEFAULT_DISTRICT_ID), ("district_name", "District")):
        if col not in schools.columns:
            schools[col] = pd.NA
        fill = schools["school_id"] if default is None else default
        schools[col] = schools[col].astype("string").fillna(fill)
    return schools


def latest_attendance_date(data: StudentData) -> date:
    """The latest date with an attendance mark: the default as-of date."""
    return pd.Timestamp(data["attendance"]["date"].max()).date()


def build_aggregate(data: StudentData, settings: Settings, definition: Definition,
                    as_of: date | None = None, source: str = "sample",
                    con: ibis.BaseBackend | None = None) -> AggregateRun:
    """Compute the aggregate table and the student facts for one as-of date.

    Parameters
    ----------
    data : StudentData
        Validated student-level tables.
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
        An open engine connection; a new in-memory DuckDB by default.

    Returns
    -------
    AggregateRun
    """
    as_of = as_of or latest_attendance_date(data)
    con = con or connect(settings.engine)
    ledger = data.ledger
    schools = _schools_table(data)
    start_month = settings.school_year_start_month
    logger.info("computing metrics as of %s with definition %s", as_of, definition.name)

    # Load the validated tables; number attendance rows so each can be traced.
    attendance = data["attendance"].copy()
    attendance["row_id"] = range(len(attendance))
    points, year_ends = as_of_points(data["calendar"], as_of, start_month)
    tables = load_frames(con, {
        "students": data["students"], "enrollments": data["enrollments"],
        "calendar": data["calendar"], "attendance": attendance,
        "schools": schools, "points": points, "year_ends": year_ends,
    })

    # Daily records: instructional days x enrollment spans, with the marks.
    days = metrics.instructional_days(tables["calendar"], as_of, start_month, definition)
    enrolled = metrics.enrolled_days(tables["enrollments"], days, as_of, definition)
    enrolled = con.create_table("enrolled_days", enrolled.to_pyarrow(), overwrite=True)
    marks = metrics.classify_marks(tables["attendance"], tables["calendar"], enrolled,
                                   as_of, definition)
    marks = con.create_table("marks", marks.to_pyarrow(), overwrite=True)
    daily = metrics.daily_records(enrolled, marks)
    district_daily = metrics.district_daily_records(daily, tables["schools"])

    # Rows set aside go to the ledger; the conflict count to its notes.
    reasons = (marks.filter(marks.reason.notnull()).group_by("reason")
               .agg(n=marks.row_id.count()).to_pandas())
    for reason, count in zip(reasons["reason"], reasons["n"], strict=True):
        ledger.set_aside("attendance", reason, int(count))
    conflicts = int(marks.filter(marks.conflict).select(
        "student_id", "school_id", "date").distinct().count().to_pandas())
    if conflicts:
        ledger.note(f"{conflicts} student-days had marks of different categories; the "
                    f"largest missed share was kept")

    # Student totals and flags, then counts by unit, grade and group.
    facts = metrics.student_facts(daily, district_daily, tables["points"],
                                  tables["year_ends"], definition)
    students_t = tables["students"].drop("grade") if "grade" in tables["students"].columns \
        else tables["students"]
    frames = []
    for level, unit in (("school", "school_id"), ("district", "district_id")):
        counts = _count_groups(_group_rows(facts[level], students_t, unit)).to_pandas()
        frames.append(_finish(counts, level, schools, source, definition))
    aggregate = pd.concat(frames, ignore_index=True)

    # Staff-only student facts at the as-of date, and the modality breakdown.
    as_of_ts = pd.Timestamp(as_of)
    student_rows = []
    for level, unit in (("school", "school_id"), ("district", "district_id")):
        table = facts[level]
        rows = table.filter(table.as_of_date == as_of_ts).to_pandas()
        rows["level"] = level
        rows = rows.rename(columns={unit: "unit_id"})
        student_rows.append(rows)
    students = pd.concat(student_rows, ignore_index=True)

    modality = pd.concat(
        [_modality_rows(daily, as_of, "school_id").to_pandas().assign(level="school"),
         _modality_rows(daily.join(tables["schools"].select("school_id", "district_id"),
                                   "school_id"),
                        as_of, "district_id").to_pandas().assign(level="district")],
        ignore_index=True,
    )
    logger.info("aggregate table: %d rows; %d student-school facts at the as-of date",
                len(aggregate), int((students["level"] == "school").sum()))
    return AggregateRun(aggregate=aggregate, students=students, modality=modality,
                        ledger=ledger, as_of=as_of, definition=definition,
                        schools=schools, conflicts=conflicts)
