"""A seeded generator of a realistic synthetic school district.

:func:`generate_sample_district` writes the six input tables of the data contract
(:mod:`analysis.contract`) for one made-up district of about twenty schools: two
school years (the prior full year and the current year up to an as-of date), real
looking calendars, enrollment spans with mobility, exception-only attendance with
some distance-learning days, and an interventions log with one planted disparity for
the equity audit to find. The same seed gives byte-identical files.

Run it from the command line with ``python -m analysis.sample --out data/raw/sample``.

How the data are made
---------------------
* Each student has a persistent absence propensity: a logit-normal daily absence
  rate whose location depends on grade, group flags and school, and whose student
  term carries over between years (correlation :data:`PROPENSITY_CORRELATION`). The
  distribution is right-skewed: most students miss a few days, a long tail misses
  many. Grade and group effects were fitted (see :func:`_refit_absence_effects`) so
  that prior-year chronic-absence rates reproduce the NYC citywide 2018-19 odds by
  grade and group (:data:`NYC_CHRONIC_PCT_BY_GRADE`, :data:`NYC_CHRONIC_PCT_BY_GROUP`)
  around an overall level of :data:`TARGET_OVERALL_CHRONIC`.
* Days follow a two-state Markov chain (absences come in short spells) whose daily
  rate is the student's rate times a month, weekday, around-a-break and flu-week
  factor, so December to February are worse and September is better.
* Punitive interventions depend on unexcused days only, times
  :data:`PLANTED_PUNITIVE_RATIO` for Black students; supportive ones depend on rising
  absence only. No other group has any effect (a known null).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import __version__
from analysis.contract import INTERVENTION_TYPES
from analysis.log import configure_logging, logger
from analysis.paths import SAMPLE_DIR
from analysis.schema import GRADES

# ---------------------------------------------------------------------------------
# The district
# ---------------------------------------------------------------------------------

DISTRICT_ID = "D001"
DISTRICT_NAME = "Riverbend Unified School District"

#: (school_id, name, level). Elementary K-5, middle 6-8, high 9-12.
SCHOOLS: tuple[tuple[str, str, str], ...] = (
    ("S101", "Cedar Grove Elementary", "elementary"),
    ("S102", "Maple Hill Elementary", "elementary"),
    ("S103", "Riverside Elementary", "elementary"),
    ("S104", "Oak Park Elementary", "elementary"),
    ("S105", "Willow Creek Elementary", "elementary"),
    ("S106", "Lakeview Elementary", "elementary"),
    ("S107", "Pine Ridge Elementary", "elementary"),
    ("S108", "Harbor Point Elementary", "elementary"),
    ("S109", "Sunnyside Elementary", "elementary"),
    ("S110", "Birchwood Elementary", "elementary"),
    ("S111", "Meadowbrook Elementary", "elementary"),
    ("S112", "Franklin Square Elementary", "elementary"),
    ("S201", "Lincoln Middle School", "middle"),
    ("S202", "Roosevelt Middle School", "middle"),
    ("S203", "Eastgate Middle School", "middle"),
    ("S204", "Hillcrest Middle School", "middle"),
    ("S205", "Westview Middle School", "middle"),
    ("S301", "Riverbend High School", "high"),
    ("S302", "Central High School", "high"),
    ("S303", "Northside High School", "high"),
)

LEVELS = ("elementary", "middle", "high")

#: Grades K-12 as indexes 0-12 into this tuple (the district has no pre-K).
SAMPLE_GRADES: tuple[str, ...] = GRADES[1:]

INSTRUCTIONAL_MINUTES = {"elementary": 360, "middle": 390, "high": 390}

#: The one school that records partial days as a share of periods, not minutes.
FRACTION_SCHOOL = "S303"

#: Planned instructional days in a school year (before emergency closures).
PLANNED_DAYS = 180

#: Race/ethnicity shares of an urban district, in RACE_ETHNICITY_VALUES order.
RACE_SHARES = {
    "American Indian": 0.008,
    "Asian": 0.15,
    "Black": 0.25,
    "Hispanic": 0.40,
    "Pacific Islander": 0.004,
    "White": 0.15,
    "Multiracial": 0.038,
}
GENDER_SHARES = {"Female": 0.488, "Male": 0.509, "Nonbinary": 0.003}
ECON_DISADVANTAGED_BY_RACE = {
    "American Indian": 0.70, "Asian": 0.65, "Black": 0.80, "Hispanic": 0.82,
    "Pacific Islander": 0.70, "White": 0.40, "Multiracial": 0.60,
}
ENGLISH_LEARNER_BY_RACE = {
    "American Indian": 0.05, "Asian": 0.25, "Black": 0.04, "Hispanic": 0.25,
    "Pacific Islander": 0.10, "White": 0.02, "Multiracial": 0.03,
}

# ---------------------------------------------------------------------------------
# Calibration targets and fitted absence effects
# ---------------------------------------------------------------------------------

# Targets: NYC DOE "End-of-Year Attendance and Chronic Absenteeism", district file
# public-district-attendance-results-2018-2022 (copied as CSV sheets into
# ../shared/data/real/nyc_doe_eoy_attendance_district/; see its SOURCE.md). School
# year 2018-19; "citywide" = the sum over the 33 districts (1-32 and 75) of
# "# Chronically Absent" divided by the sum of "# Contributing 10+ Total Days and
# 1+ Pres Day", times 100. Grades: All_Students sheet, one row per grade ("0K" = K).
# Groups: the "All Grades" rows of the Ethnicity, ELL, SWD, Poverty, STH and Gender
# sheets (no "All Grades" row is suppressed in 2018-19). Computed once with pandas
# on 2025-12; the generator never reads ../shared.
NYC_CHRONIC_PCT_BY_GRADE: dict[str, float] = {
    "K": 31.98, "1": 26.07, "2": 23.18, "3": 21.68, "4": 20.21, "5": 19.88,
    "6": 19.10, "7": 20.31, "8": 23.50, "9": 30.69, "10": 33.24, "11": 30.85,
    "12": 43.98,
}
NYC_CHRONIC_PCT_ALL = 27.05
NYC_CHRONIC_PCT_BY_GROUP: dict[str, dict[str, float]] = {
    # NYC "Other" stands for American Indian, Pacific Islander and Multiracial here.
    "race_ethnicity": {"Asian": 13.50, "Black": 35.07, "Hispanic": 32.42,
                       "Other": 23.63, "White": 17.39},
    "english_learner": {"yes": 28.36, "no": 26.19},             # ELL / Not ELL
    "disability": {"yes": 37.79, "no": 23.40},                  # SWD / Not SWD
    "economically_disadvantaged": {"yes": 31.01, "no": 15.64},  # Poverty
    "homeless": {"yes": 44.09, "no": 25.12},                    # STH (temp. housing)
    "gender": {"Female": 26.23, "Male": 27.80},
}

#: The district's overall prior-year chronic share; grade and group differences
#: keep the NYC odds ratios around it.
TARGET_OVERALL_CHRONIC = 0.25

#: Foster youth have no NYC figure: an assumed logit shift (general knowledge:
#: foster youth are chronically absent well above the average), not calibrated.
FOSTER_EFFECT = 0.5

#: Fitted with ``_refit_absence_effects(n_students=60000)`` against the targets
#: above (logit scale of the student's daily absence rate).
ABSENCE_EFFECTS: dict = {
    "intercept": -3.316,
    "grade": {"K": 0.185, "1": 0.041, "2": -0.094, "3": -0.102, "4": -0.184,
              "5": -0.142, "6": -0.256, "7": -0.198, "8": -0.035, "9": 0.088,
              "10": 0.17, "11": 0.1, "12": 0.428},
    "race_ethnicity": {"Asian": -0.406, "Black": 0.267, "Hispanic": 0.202,
                       "Other": -0.004, "White": -0.142},
    "english_learner": 0.099,
    "disability": 0.414,
    "economically_disadvantaged": 0.33,
    "homeless": 0.431,
    "gender": {"Female": 0.021, "Male": 0.029},
}

#: Standard deviation of the student term (logit scale): the right-skewed spread.
STUDENT_SD = 0.85
#: Standard deviation of the school term (logit scale): schools differ a little.
SCHOOL_SD = 0.15
#: Correlation of a student's term between the two years.
PROPENSITY_CORRELATION = 0.8
#: Lag-one autocorrelation of daily absence (absences come in short spells).
SPELL_PERSISTENCE = 0.3

MONTH_FACTOR = {8: 0.7, 9: 0.72, 10: 0.9, 11: 1.0, 12: 1.15, 1: 1.25, 2: 1.2,
                3: 1.0, 4: 0.95, 5: 1.05, 6: 1.2, 7: 1.0}
WEEKDAY_FACTOR = (1.15, 0.95, 0.9, 0.95, 1.1)
BREAK_EDGE_FACTOR = 1.3
FLU_WEEK_FACTOR = 1.4

#: Share of absent in-person days that are partial days (late arrival, left early).
PARTIAL_SHARE = 0.08

# ---------------------------------------------------------------------------------
# The planted equity effect
# ---------------------------------------------------------------------------------

#: At equal unexcused absence, the probability of any punitive intervention in a
#: school year is multiplied by this factor for these groups; every other group
#: has none (a known null for the equity audit).
PLANTED_PUNITIVE_RATIO: dict[str, dict[str, float]] = {"race_ethnicity": {"Black": 1.8}}

#: Base probability of any punitive action in a year is 0 below this many
#: unexcused whole days, then PUNITIVE_BASE + PUNITIVE_SLOPE per extra day, capped at
#: PUNITIVE_CAP so that the planted factor never pushes it to 1.
PUNITIVE_THRESHOLD = 3
PUNITIVE_BASE = 0.06
PUNITIVE_SLOPE = 0.03
PUNITIVE_CAP = 0.45

#: Escalation ladder for a student picked for punitive action: (unexcused day on
#: which the action is dated, type, probability given picked, lowest grade index).
PUNITIVE_LADDER = (
    (3, "truancy_letter", 1.0, 0),
    (6, "truancy_letter", 0.6, 0),
    (8, "suspension", 0.05, 6),
    (10, "attendance_board_referral", 0.5, 0),
    (15, "court_referral", 0.3, 0),
)

#: Error kinds planted with ``inject_errors=True`` and how many rows of each.
INJECTED_ERRORS = {
    "unknown_category": 5,
    "absence_on_non_instructional_day": 5,
    "absence_outside_enrollment": 5,
    "duplicate_mark": 10,
    "unparseable_date": 2,
}
UNKNOWN_CODES = ("X", "T", "X", "AB", "X")

_MODALITY_NAMES = ("in_person", "remote_live", "remote_async", "independent_study")
_REMOTE_LIVE, _REMOTE_ASYNC, _INDEPENDENT = 1, 2, 3
_EXCUSED, _UNEXCUSED, _SUSPENSION, _ISS, _PRESENT = 0, 1, 2, 3, 4
_CATEGORY_NAMES = ("excused", "unexcused", "suspension", "in_school_suspension",
                   "present")


# ---------------------------------------------------------------------------------
# Calendars
# ---------------------------------------------------------------------------------


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """Return the ``n``-th ``weekday`` (Monday = 0) of a month."""
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    """Return the last ``weekday`` (Monday = 0) of a month."""
    nxt = date(year + month // 12, month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Move a fixed-date holiday off the weekend, as federal holidays are."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def _district_closures(start_year: int) -> dict[date, str]:
    """Return the planned non-instructional weekdays of one school year."""
    y, y1 = start_year, start_year + 1
    closed: dict[date, str] = {}
    pd_day = "Professional development day (no school for students)"

    closed[_nth_weekday(y, 9, 0, 1)] = "Labor Day"
    ipd = _nth_weekday(y, 10, 0, 2)
    closed[ipd - timedelta(days=3)] = pd_day
    closed[ipd] = "Indigenous Peoples' Day"
    closed[_nth_weekday(y, 11, 0, 1) + timedelta(days=1)] = (
        "Election Day: professional development (no school for students)")
    closed[_observed(date(y, 11, 11))] = "Veterans Day"
    thanksgiving = _nth_weekday(y, 11, 3, 4)
    closed[thanksgiving] = "Thanksgiving"
    closed[thanksgiving + timedelta(days=1)] = "Thanksgiving recess"

    # Two weeks of winter recess from the Monday of the week of 22 December.
    winter = date(y, 12, 22) - timedelta(days=date(y, 12, 22).weekday())
    for k in range(12):
        closed.setdefault(winter + timedelta(days=k), "Winter recess")

    closed[_nth_weekday(y1, 1, 0, 3)] = "Martin Luther King Jr. Day"
    presidents = _nth_weekday(y1, 2, 0, 3)
    closed[presidents] = "Presidents' Day"
    for k in range(1, 5):
        closed[presidents + timedelta(days=k)] = "Mid-winter recess"
    closed[_nth_weekday(y1, 3, 4, 1)] = pd_day
    spring = _nth_weekday(y1, 4, 0, 1)
    for k in range(5):
        closed[spring + timedelta(days=k)] = "Spring recess"
    closed[_last_weekday(y1, 5, 0)] = "Memorial Day"
    closed[_observed(date(y1, 6, 19))] = "Juneteenth"
    return {d: e for d, e in closed.items() if d.weekday() < 5}


@dataclass
class _Emergency:
    """An unplanned closure or remote stretch at one school (or all: ``None``)."""

    year: str          # "prior" or "current"
    school_id: str | None
    start: date
    days: int
    event: str
    instructional: bool
    modality: int = 0


def _emergencies(prior_start: int) -> list[_Emergency]:
    """Return the unplanned events of the two years (only those up to as-of apply)."""
    # The calendar year holding the prior year's winter and the current year's fall.
    y = prior_start + 1
    outage = _nth_weekday(y, 10, 2, 3)  # third Wednesday of October
    return [
        _Emergency("prior", None, _nth_weekday(y, 2, 1, 1), 1,
                   "Emergency closure: snow day", False),
        _Emergency("prior", "S104", _nth_weekday(y, 1, 2, 4), 2,
                   "Emergency closure: water main break", False),
        _Emergency("prior", "S302", _nth_weekday(y, 2, 1, 2), 2,
                   "Building closed (heating failure): remote instruction", True,
                   _REMOTE_LIVE),
        _Emergency("current", "S107", outage, 1,
                   "Emergency closure: power outage", False),
        _Emergency("current", "S107", outage + timedelta(days=1), 2,
                   "Building closed (power repairs): remote learning", True,
                   _REMOTE_ASYNC),
    ]


@dataclass
class _Year:
    """One school year as dense arrays over its weekdays (columns)."""

    label: str
    which: str                  # "prior" or "current"
    days: np.ndarray            # datetime64[D], every weekday first..last day
    instr: np.ndarray           # (schools, days) bool
    minutes: np.ndarray         # (schools, days) float, NaN when closed
    modality: np.ndarray        # (schools, days) int8, 0 = in person
    factor: np.ndarray          # (schools, days) absence-rate multiplier
    events: np.ndarray          # (schools, days) object, "" when none
    district_instr: np.ndarray  # column indexes of district-wide school days
    n_sim: int = 0              # columns simulated (up to the as-of date)
    spans: pd.DataFrame = field(default_factory=pd.DataFrame)


def _build_year(start_year: int, which: str, as_of: date,
                rng: np.random.Generator) -> _Year:
    """Lay out the calendar of one school year for every school."""
    closures = _district_closures(start_year)
    first = date(start_year, 8, 26) - timedelta(days=date(start_year, 8, 26).weekday())

    # Walk the weekdays until the planned number of school days is reached.
    days, count, day = [], 0, first
    while count < PLANNED_DAYS:
        if day.weekday() < 5:
            days.append(day)
            count += day not in closures
        day += timedelta(days=1)
    n_days, n_schools = len(days), len(SCHOOLS)
    district_open = np.array([d not in closures for d in days])

    events = np.full((n_schools, n_days), "", dtype=object)
    for j, d in enumerate(days):
        events[:, j] = closures.get(d, "")
    events[:, 0] = "First day of school"
    events[:, -1] = "Last day of school (early dismissal)"
    instr = np.tile(district_open, (n_schools, 1))
    levels = np.array([s[2] for s in SCHOOLS])
    minutes = np.array([INSTRUCTIONAL_MINUTES[lv] for lv in levels], float)
    minutes = np.tile(minutes[:, None], (1, n_days))
    minutes[:, -1] = 180.0
    modality = np.zeros((n_schools, n_days), np.int8)

    # The day before Thanksgiving: conferences at elementary, early dismissal else.
    wed = days.index(_nth_weekday(start_year, 11, 3, 4) - timedelta(days=1))
    elem = levels == "elementary"
    instr[elem, wed] = False
    events[elem, wed] = "Parent-teacher conferences (no school for students)"
    minutes[~elem, wed] = 240.0
    events[~elem, wed] = "Early dismissal (Thanksgiving)"

    # Unplanned events happen only up to the as-of date.
    school_index = {s[0]: i for i, s in enumerate(SCHOOLS)}
    day_index = {d: j for j, d in enumerate(days)}
    for em in _emergencies(start_year if which == "prior" else start_year - 1):
        if em.year != which:
            continue
        rows = (range(n_schools) if em.school_id is None
                else [school_index[em.school_id]])
        d, left = em.start, em.days
        while left > 0:
            j = day_index.get(d)
            if j is not None and d <= as_of and district_open[j]:
                for i in rows:
                    instr[i, j] = em.instructional
                    events[i, j] = em.event
                    modality[i, j] = em.modality
            if d.weekday() < 5:
                left -= 1
            d += timedelta(days=1)
    minutes[~instr] = np.nan

    # Absence-rate factor: month, weekday, days next to a break, one flu week.
    day_arr = np.array(days, dtype="datetime64[D]")
    months = np.array([d.month for d in days])
    weekday = np.array([d.weekday() for d in days])
    factor = (np.array([MONTH_FACTOR[m] for m in months])
              * np.array(WEEKDAY_FACTOR)[weekday])
    closed_prev = np.r_[False, ~district_open[:-1]]
    closed_next = np.r_[~district_open[1:], False]
    factor = factor * np.where(district_open & (closed_prev | closed_next),
                               BREAK_EDGE_FACTOR, 1.0)
    factor = np.tile(factor, (n_schools, 1))
    winter_cols = np.flatnonzero(np.isin(months, (12, 1, 2)) & district_open)
    flu_start = rng.choice(winter_cols[:-5], size=n_schools)
    for i in range(n_schools):
        factor[i, flu_start[i]:flu_start[i] + 5] *= FLU_WEEK_FACTOR

    n_sim = int(np.searchsorted(day_arr, np.datetime64(as_of), side="right"))
    label = f"{start_year}-{str(start_year + 1)[-2:]}"
    return _Year(label, which, day_arr, instr, minutes, modality, factor, events,
                 np.flatnonzero(district_open), n_sim)


def _calendar_frame(years: list[_Year]) -> pd.DataFrame:
    """Return the calendar table: every weekday of both years for every school."""
    parts = []
    for yr in years:
        n_schools, n_days = yr.instr.shape
        parts.append(pd.DataFrame({
            "school_id": np.repeat([s[0] for s in SCHOOLS], n_days),
            "date": np.tile(yr.days, n_schools),
            "instructional": yr.instr.ravel(),
            "event": pd.Series(yr.events.ravel(), dtype="string").replace("", pd.NA),
            "instructional_minutes": pd.array(yr.minutes.ravel(), dtype="Float64"),
        }))
    cal = pd.concat(parts, ignore_index=True)
    cal["instructional_minutes"] = cal["instructional_minutes"].astype("Int64")
    return cal.sort_values(["school_id", "date"], kind="stable", ignore_index=True)


# ---------------------------------------------------------------------------------
# Students and enrollments
# ---------------------------------------------------------------------------------


def _school_level_index(grade: np.ndarray) -> np.ndarray:
    """Map grade indexes (K = 0) to level indexes (0 elementary, 1 middle, 2 high)."""
    return np.where(grade <= 5, 0, np.where(grade <= 8, 1, 2))


@dataclass
class _Population:
    """Students, their demographics and the school-choice model."""

    race: np.ndarray
    gender: np.ndarray
    flags: dict[str, np.ndarray]
    unexcused_z: np.ndarray      # persistent term of the unexcused share
    propensity_z: np.ndarray     # (2, n) student term per year
    school_size: np.ndarray
    school_tilt: np.ndarray      # (schools, races)
    school_effect: np.ndarray


def _draw_students(rng: np.random.Generator, n: int,
                   grade: np.ndarray) -> dict[str, np.ndarray]:
    """Draw demographics for ``n`` students of the given grades."""
    races = list(RACE_SHARES)
    race = rng.choice(len(races), size=n, p=list(RACE_SHARES.values()))
    gender = rng.choice(3, size=n, p=list(GENDER_SHARES.values()))
    econ = rng.random(n) < np.array(list(ECON_DISADVANTAGED_BY_RACE.values()))[race]
    homeless = rng.random(n) < np.where(econ, 0.08, 0.01)
    foster = rng.random(n) < np.where(econ, 0.013, 0.003)
    el_grade = np.where(grade <= 2, 1.3, np.where(grade >= 9, 0.75, 1.0))
    el_share = np.array(list(ENGLISH_LEARNER_BY_RACE.values()))[race] * el_grade
    english_learner = rng.random(n) < el_share
    disability = rng.random(n) < np.array([0.165, 0.235, 0.20])[gender]
    return {
        "race": race, "gender": gender,
        "english_learner": english_learner, "disability": disability,
        "economically_disadvantaged": econ, "homeless": homeless, "foster": foster,
    }


def _pick_school(rng: np.random.Generator, level: np.ndarray, race: np.ndarray,
                 pop: _Population, exclude: np.ndarray | None = None) -> np.ndarray:
    """Pick a school of the student's level, weighted by size and neighbourhood mix."""
    levels = np.array([LEVELS.index(s[2]) for s in SCHOOLS])
    weights = pop.school_size[None, :] * pop.school_tilt[:, race].T
    weights = weights * (levels[None, :] == level[:, None])
    if exclude is not None:
        weights[np.arange(len(level)), exclude] = 0.0
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(level)) * cum[:, -1]
    return (cum < u[:, None]).sum(axis=1)


def _feeder(school: np.ndarray) -> np.ndarray:
    """Return the school a student moves on to from an elementary or middle school."""
    out = school.copy()
    elem = school < 12
    out[elem] = 12 + (school[elem] * 5) // 12
    mid = (school >= 12) & (school < 17)
    out[mid] = 17 + ((school[mid] - 12) * 3) // 5
    return out


def _spans_for_year(rng: np.random.Generator, rows: np.ndarray, grade: np.ndarray,
                    school: np.ndarray, n_pos: int, late_share: float,
                    start_late_share: float, leave_share: float, move_share: float,
                    gap_share: float, homeless: np.ndarray, race: np.ndarray,
                    pop: _Population, final_open: bool) -> pd.DataFrame:
    """Make the enrollment spans of one year, in positions of district school days.

    ``n_pos`` is the number of district school days available (up to as-of for the
    current year). Returns one row per span: row, school, grade, start, end (end is
    -1 for a span still open at the as-of date).
    """
    n = len(rows)
    last = n_pos - 1

    # Entry: most on the first day; a few mid-year.
    late = rng.random(n) < late_share
    start = np.where(late & (n_pos > 40),
                     rng.integers(5, max(6, n_pos - 30), n), 0)
    start = np.where(rng.random(n) < start_late_share, rng.integers(1, 4, n), start)

    # One mobility path per student: leave, move school, or leave and return.
    u = rng.random(n)
    mover_p = move_share * np.where(homeless, 2.0, 1.0)
    room = (last - start) > 40
    leave = room & (u < leave_share)
    move = room & ~leave & (u < leave_share + mover_p)
    gap = room & ~leave & ~move & (u < leave_share + mover_p + gap_share)
    end = np.full(n, -1 if final_open else last)
    cut = start + 10 + (rng.random(n) * np.maximum(last - start - 30, 1)).astype(int)
    end1 = np.where(leave | move | gap, cut, end)

    # Movers start at a new school the same day (a hand-off) or a few days later;
    # a gap returns after four to twelve weeks, often to the same school.
    handoff = rng.random(n) < 0.35
    restart = np.where(handoff, cut, cut + rng.integers(1, 5, n))
    restart = np.where(gap, cut + rng.integers(20, 61, n), restart)
    second = (move | gap) & (restart <= last)
    level = _school_level_index(grade)
    other = _pick_school(rng, level, race, pop, exclude=school)
    school2 = np.where(gap & (rng.random(n) < 0.6), school, other)

    first = pd.DataFrame({"row": rows, "school": school, "grade": grade,
                          "start": start, "end": end1, "rank": 0})
    again = pd.DataFrame({"row": rows[second], "school": school2[second],
                          "grade": grade[second], "start": restart[second],
                          "end": end[second], "rank": 1})
    return pd.concat([first, again], ignore_index=True)


def _make_enrollments(rng: np.random.Generator, n_students: int, prior: _Year,
                      current: _Year) -> tuple[dict, _Population]:
    """Draw the students and their enrollment spans in both years."""
    n_schools = len(SCHOOLS)
    n_new = int(round(0.15 * n_students))
    n1 = n_students - n_new

    # Grades of last year's students, then the new entrants of this year.
    grade_w = np.ones(13)
    grade_w[9], grade_w[12] = 1.08, 0.92
    grade1 = rng.choice(13, size=n1, p=grade_w / grade_w.sum())
    new_grade = np.where(rng.random(n_new) < 0.55, 0, rng.integers(1, 13, n_new))
    first_grade = np.r_[grade1, new_grade]

    pop = _Population(
        race=np.empty(0), gender=np.empty(0), flags={},
        unexcused_z=rng.normal(size=n_students),
        propensity_z=np.empty((2, n_students)),
        school_size=np.exp(rng.normal(0, 0.3, n_schools)),
        school_tilt=np.exp(rng.normal(0, 0.7, (n_schools, len(RACE_SHARES)))),
        school_effect=rng.normal(0, SCHOOL_SD, n_schools),
    )
    # Centre the school terms within each level, so that they shift schools against
    # each other but not one grade span against another.
    level_of = np.array([LEVELS.index(s[2]) for s in SCHOOLS])
    for lv in range(len(LEVELS)):
        pop.school_effect[level_of == lv] -= pop.school_effect[level_of == lv].mean()
    demo = _draw_students(rng, n_students, first_grade)
    pop.race, pop.gender = demo["race"], demo["gender"]
    pop.flags = {k: v for k, v in demo.items() if k not in ("race", "gender")}
    z1 = rng.normal(size=n_students)
    z2 = (PROPENSITY_CORRELATION * z1
          + np.sqrt(1 - PROPENSITY_CORRELATION ** 2) * rng.normal(size=n_students))
    pop.propensity_z = np.vstack([z1, z2])
    homeless = pop.flags["homeless"]

    # Prior year: everyone of the first n1 students, spans closed at year end.
    rows1 = np.arange(n1)
    school1 = _pick_school(rng, _school_level_index(grade1), pop.race[rows1], pop)
    spans1 = _spans_for_year(
        rng, rows1, grade1, school1, len(prior.district_instr), late_share=0.04,
        start_late_share=0.03, leave_share=0.04, move_share=0.06, gap_share=0.006,
        homeless=homeless[rows1], race=pop.race[rows1], pop=pop, final_open=False)

    # Who comes back: stayed to the end, not in grade 12, did not leave over summer.
    last1 = len(prior.district_instr) - 1
    final = spans1.sort_values(["row", "rank"]).groupby("row").last()
    stayed = final.index[(final["end"] == last1).to_numpy()].to_numpy()
    back = stayed[(grade1[stayed] < 12) & (rng.random(len(stayed)) >= 0.06)]
    retain_p = np.where(grade1[back] == 0, 0.03,
                        np.where(grade1[back] == 9, 0.05, 0.01))
    g2_back = grade1[back] + (rng.random(len(back)) >= retain_p)
    prev_school = final.loc[back, "school"].to_numpy()
    level2 = _school_level_index(g2_back)
    same_level = level2 == np.array([LEVELS.index(SCHOOLS[s][2]) for s in prev_school])
    summer_move = rng.random(len(back)) < 0.05
    feeder_ok = rng.random(len(back)) < 0.85
    chosen = _pick_school(rng, level2, pop.race[back], pop)
    school2 = np.where(same_level, np.where(summer_move, chosen, prev_school),
                       np.where(feeder_ok, _feeder(prev_school), chosen))

    # Current year: returning students plus new entrants, spans open at as-of.
    rows_new = np.arange(n1, n_students)
    school_new = _pick_school(rng, _school_level_index(new_grade), pop.race[rows_new],
                              pop)
    rows2 = np.r_[back, rows_new]
    grade2 = np.r_[g2_back, new_grade]
    n_pos2 = int(np.searchsorted(current.district_instr, current.n_sim))
    frac = n_pos2 / len(current.district_instr)
    spans2 = _spans_for_year(
        rng, rows2, grade2, np.r_[school2, school_new], n_pos2, late_share=0.0,
        start_late_share=0.02, leave_share=0.04 * frac, move_share=0.06 * frac,
        gap_share=0.0, homeless=homeless[rows2], race=pop.race[rows2], pop=pop,
        final_open=True)
    # New-to-district students: 15% arrive during the year, not on the first day.
    is_new = spans2["row"].to_numpy() >= n1
    arrive = (is_new & (spans2["rank"].to_numpy() == 0)
              & (rng.random(len(spans2)) < 0.15))
    if n_pos2 > 15:
        late_start = rng.integers(3, n_pos2 - 5, len(spans2))
        ok = arrive & ((spans2["end"].to_numpy() < 0)
                       | (spans2["end"].to_numpy() > late_start))
        spans2.loc[ok, "start"] = late_start[ok]

    # Convert positions of district school days to column indexes and dates.
    for yr, spans in ((prior, spans1), (current, spans2)):
        pos = yr.district_instr
        spans["start_col"] = pos[spans["start"].to_numpy()]
        end = spans["end"].to_numpy()
        spans["end_col"] = np.where(end < 0, yr.n_sim - 1, pos[np.maximum(end, 0)])
        spans["open"] = end < 0
        yr.spans = spans.sort_values(["row", "rank"], kind="stable",
                                     ignore_index=True)

    grades = {"prior": np.full(n_students, -1), "current": np.full(n_students, -1)}
    grades["prior"][rows1] = grade1
    grades["current"][rows2] = grade2
    return grades, pop


# ---------------------------------------------------------------------------------
# Attendance
# ---------------------------------------------------------------------------------


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray | float) -> np.ndarray | float:
    return np.log(p / (1.0 - p))


def _race_key(race_index: np.ndarray) -> np.ndarray:
    """Map race indexes to the NYC target categories (Other for the small groups)."""
    names = np.array(list(RACE_SHARES))[race_index]
    return np.where(np.isin(names, ("Asian", "Black", "Hispanic", "White")), names,
                    "Other")


def _student_logit(pop: _Population, grade: np.ndarray, school: np.ndarray,
                   year_index: int, effects: dict) -> np.ndarray:
    """Return each student's logit daily absence rate in one year."""
    eta = np.full(len(grade), effects["intercept"], float)
    eta += np.array([effects["grade"][g] for g in SAMPLE_GRADES])[grade]
    race_eff = effects["race_ethnicity"]
    eta += np.vectorize(race_eff.get)(_race_key(pop.race))
    for flag in ("english_learner", "disability", "economically_disadvantaged",
                 "homeless"):
        eta += effects[flag] * pop.flags[flag]
    eta += FOSTER_EFFECT * pop.flags["foster"]
    gender_eff = effects["gender"]
    eta += np.array([gender_eff["Female"], gender_eff["Male"],
                     (gender_eff["Female"] + gender_eff["Male"]) / 2])[pop.gender]
    eta += pop.school_effect[school]
    return eta + STUDENT_SD * pop.propensity_z[year_index]


@dataclass
class _YearResult:
    """Simulated marks of one year as dense (students, days) arrays."""

    school: np.ndarray     # int16, -1 when not enrolled
    enrolled: np.ndarray   # bool, enrolled on an instructional day
    mark: np.ndarray       # int8: -1 no row, else a _CATEGORY_NAMES index
    absent: np.ndarray     # float: share of the day missed (0 when present)
    modality: np.ndarray   # int8
    minutes: np.ndarray    # float, NaN unless a minutes partial day
    fraction: np.ndarray   # float, NaN unless a fraction partial day
    grade: np.ndarray      # per student, -1 when not enrolled this year


def _simulate_year(rng: np.random.Generator, yr: _Year, year_index: int,
                   pop: _Population, grade: np.ndarray, effects: dict) -> _YearResult:
    """Simulate every student's marks for one year, vectorised over students."""
    n = len(grade)
    d = yr.n_sim
    spans = yr.spans

    # Which school each student is enrolled at each day (the later span wins a
    # hand-off day).
    school = np.full((n, d), -1, np.int16)
    for rank in (0, 1):
        sp = spans[spans["rank"] == rank]
        length = (sp["end_col"] - sp["start_col"] + 1).to_numpy()
        rows = np.repeat(sp["row"].to_numpy(), length)
        cols = (np.repeat(sp["start_col"].to_numpy(), length)
                + np.arange(length.sum()) - np.repeat(np.cumsum(length) - length,
                                                      length))
        school[rows, cols] = np.repeat(sp["school"].to_numpy(), length)
    sidx = np.maximum(school, 0)
    col = np.broadcast_to(np.arange(d), (n, d))
    enrolled = (school >= 0) & yr.instr[sidx, col]
    modality = np.where(enrolled, yr.modality[sidx, col], 0).astype(np.int8)

    # Independent study: about 2% of high-school students for four to eight weeks.
    first_school = spans[spans["rank"] == 0].set_index("row")["school"]
    home = np.zeros(n, int)
    home[first_school.index.to_numpy()] = first_school.to_numpy()
    is_pick = (grade >= 9) & (rng.random(n) < 0.02)
    is_start = rng.integers(0, max(1, d - 20), n)
    is_len = rng.integers(20, 41, n)
    in_is = (is_pick[:, None] & (col >= is_start[:, None])
             & (col < (is_start + is_len)[:, None]) & enrolled)
    modality[in_is] = _INDEPENDENT

    # Daily absence probability: the student's rate times the day's factor.
    eta = _student_logit(pop, np.maximum(grade, 0), home, year_index, effects)
    rate = _expit(eta)
    p = rate[:, None] * yr.factor[sidx, col]
    p = np.where(modality == _INDEPENDENT, p * 1.3 + 0.03, p)
    p = np.where((modality == _REMOTE_LIVE) | (modality == _REMOTE_ASYNC),
                 p * 1.5 + 0.03, p)
    p = np.clip(p, 0.0, 0.9)

    # Two-state Markov chain across days, one vector step per day.
    draws = rng.random((n, d))
    absent = np.zeros((n, d), bool)
    prev = np.zeros(n, bool)
    phi = SPELL_PERSISTENCE
    for j in range(d):
        pj = p[:, j]
        q = np.where(prev, pj + (1 - pj) * phi, pj * (1 - phi))
        prev = (draws[:, j] < q) & enrolled[:, j]
        absent[:, j] = prev

    # Excused or unexcused: a share that rises with grade and varies by student
    # (independent of group, so unexcused days at equal absence do not differ).
    level = _school_level_index(np.maximum(grade, 0))
    unexc_share = _expit(np.array([-0.6, -0.2, 0.4])[level] + 0.8 * pop.unexcused_z)
    mark = np.full((n, d), -1, np.int8)
    unexc = rng.random((n, d)) < unexc_share[:, None]
    mark[absent] = np.where(unexc[absent], _UNEXCUSED, _EXCUSED)

    # Out-of-school suspensions: short spells, mostly in middle and high school.
    in_person = enrolled & (modality == 0)
    susp_p = (np.array([0.006, 0.04, 0.035])[level]
              * np.exp(0.4 * pop.propensity_z[year_index]))
    susp = (grade >= 0) & (rng.random(n) < susp_p)
    susp_len = rng.choice([1, 1, 2, 3, 3, 5], size=n)
    spell = _pick_runs(rng, in_person, susp, susp_len)
    mark[spell] = _SUSPENSION
    absent[spell] = True

    # Partial days: a share of in-person absences become late arrivals or early
    # departures, in minutes (or in periods at one high school).
    frac_school = [s[0] for s in SCHOOLS].index(FRACTION_SCHOOL)
    partial = (absent & in_person & (mark != _SUSPENSION)
               & (rng.random((n, d)) < PARTIAL_SHARE))
    day_minutes = yr.minutes[sidx, col]
    mins = rng.choice([20, 30, 45, 60, 90, 120, 150, 180, 240], size=(n, d),
                      p=[.2, .2, .15, .15, .1, .07, .05, .05, .03]).astype(float)
    mins = np.minimum(mins, day_minutes - 10)
    periods = rng.integers(1, 5, (n, d)) / 7.0
    use_fraction = partial & (school == frac_school)
    minutes = np.where(partial & ~use_fraction, mins, np.nan)
    fraction = np.where(use_fraction, np.round(periods, 4), np.nan)
    share = np.where(absent, 1.0, 0.0)
    share = np.where(partial & ~use_fraction, mins / day_minutes, share)
    share = np.where(use_fraction, fraction, share)

    # In-school suspension: a few present days (counts as present everywhere).
    iss_p = np.array([0.01, 0.03, 0.025])[level]
    iss = (grade >= 0) & (rng.random(n) < iss_p)
    iss_cells = _pick_runs(rng, in_person & ~absent, iss, rng.integers(1, 3, n))
    mark[iss_cells] = _ISS

    # Distance-learning days are affirmative: a row whether present or absent.
    remote = enrolled & (modality > 0)
    mark[remote & ~absent] = _PRESENT
    return _YearResult(school, enrolled, mark, np.where(mark == _ISS, 0.0, share),
                       modality, minutes, fraction, grade)


def _pick_runs(rng: np.random.Generator, eligible: np.ndarray, picked: np.ndarray,
               length: np.ndarray) -> np.ndarray:
    """Mark a run of ``length`` consecutive eligible days for each picked student."""
    out = np.zeros_like(eligible)
    rows, cols = np.nonzero(eligible)
    count = np.bincount(rows, minlength=len(picked))
    offset = np.cumsum(count) - count
    who = np.flatnonzero(picked & (count >= length))
    if len(who) == 0:
        return out
    start = (rng.random(len(who)) * (count[who] - length[who] + 1)).astype(int)
    k = length[who]
    pos = (np.repeat(offset[who] + start, k)
           + np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k))
    out[rows[pos], cols[pos]] = True
    return out


def _attendance_frame(yr: _Year, res: _YearResult, ids: np.ndarray,
                      school_ids: np.ndarray) -> pd.DataFrame:
    """Return the attendance rows of one year (exception-only plus remote days)."""
    rows, cols = np.nonzero(res.mark >= 0)
    modality = res.modality[rows, cols]
    return pd.DataFrame({
        "student_id": ids[rows],
        "school_id": school_ids[res.school[rows, cols]],
        "date": yr.days[cols],
        "category": np.array(_CATEGORY_NAMES)[res.mark[rows, cols]],
        "minutes_missed": res.minutes[rows, cols],
        "fraction_missed": res.fraction[rows, cols],
        "modality": np.where(modality > 0, np.array(_MODALITY_NAMES)[modality], None),
    })


def _chronic_summary(res: _YearResult, pop: _Population) -> dict:
    """Return chronic-absence percentages (district level, 10+ days enrolled)."""
    days = res.enrolled.sum(axis=1)
    missed = np.where(res.enrolled, res.absent, 0.0).sum(axis=1)
    ok = days >= 10
    chronic = missed[ok] / days[ok] >= 0.10

    def pct(mask: np.ndarray) -> float | None:
        if not mask[ok].any():
            return None
        return round(100 * float(chronic[mask[ok]].mean()), 1)

    out = {"students": int(ok.sum()), "all": pct(np.ones(len(days), bool)),
           "grade": {g: pct(res.grade == i) for i, g in enumerate(SAMPLE_GRADES)},
           "race_ethnicity": {r: pct(pop.race == i)
                              for i, r in enumerate(RACE_SHARES)}}
    for flag, values in pop.flags.items():
        out[flag] = {"yes": pct(values), "no": pct(~values)}
    out["gender"] = {g: pct(pop.gender == i) for i, g in enumerate(GENDER_SHARES)}
    return out


# ---------------------------------------------------------------------------------
# Interventions
# ---------------------------------------------------------------------------------


def _punitive_base(unexcused: np.ndarray) -> np.ndarray:
    """Base probability of any punitive action in a year, from unexcused days."""
    base = PUNITIVE_BASE + PUNITIVE_SLOPE * (unexcused - PUNITIVE_THRESHOLD)
    return np.where(unexcused >= PUNITIVE_THRESHOLD,
                    np.minimum(base, PUNITIVE_CAP), 0.0)


def _interventions(rng: np.random.Generator, yr: _Year, res: _YearResult,
                   pop: _Population, prior_chronic: np.ndarray | None) -> pd.DataFrame:
    """Log supportive and punitive actions for one year.

    Punitive: a student is picked with probability ``_punitive_base(u)`` times the
    planted factor for their group, where ``u`` is their unexcused whole days; the
    picked student's actions are dated on their 3rd, 6th, ... unexcused day.
    Supportive: per school month, likelier when absences rise; no group effect.
    """
    n, d = res.mark.shape
    out = []

    # Punitive actions, from unexcused whole days.
    unexc = (res.mark == _UNEXCUSED) & (res.absent >= 1.0)
    u = unexc.sum(axis=1)
    factor = np.ones(n)
    names = np.array(list(RACE_SHARES))
    for value, ratio in PLANTED_PUNITIVE_RATIO["race_ethnicity"].items():
        factor[names[pop.race] == value] = ratio
    picked = rng.random(n) < _punitive_base(u) * factor
    rows, cols = np.nonzero(unexc)
    count = np.bincount(rows, minlength=n)
    offset = np.cumsum(count) - count
    for k, itype, prob, min_grade in PUNITIVE_LADDER:
        who = np.flatnonzero(picked & (u >= k) & (res.grade >= min_grade)
                             & (rng.random(n) < prob))
        c = cols[offset[who] + k - 1]
        out.append((who, c, itype))

    # Supportive actions, per student and month, when absences rise.
    months = (yr.days[:d].astype("datetime64[M]").astype(int))
    month_idx = months - months.min()
    n_months = int(month_idx.max()) + 1
    absent_day = (res.absent > 0) & res.enrolled
    per_month = np.zeros((n, n_months))
    r_abs, c_abs = np.nonzero(absent_day)
    np.add.at(per_month, (r_abs, month_idx[c_abs]), 1)
    previous = np.c_[np.zeros(n), per_month[:, :-1]]
    rising = (per_month >= 2) & (per_month > previous)
    p_sup = np.where(rising, 0.25, np.where(per_month >= 2, 0.05, 0.003))
    if prior_chronic is not None:
        # Outreach in the first weeks to last year's chronically absent students.
        p_sup[:, 0] = np.maximum(p_sup[:, 0], np.where(prior_chronic, 0.4, 0.0))
    hit = rng.random((n, n_months)) < p_sup

    # Date each action on a random day the student is enrolled in the first three
    # weeks of the next month, or else on their last school day of the month.
    key = np.where(res.enrolled, rng.random((n, d)), -1.0)
    everyone = np.arange(n)
    for m in range(n_months):
        in_month = np.flatnonzero(month_idx == m)
        if len(in_month) == 0:
            continue
        last = in_month[(res.enrolled[:, in_month]
                         * np.arange(1, len(in_month) + 1)).argmax(axis=1)]
        when = np.where(res.enrolled[:, in_month].any(axis=1), last, -1)
        nxt = np.flatnonzero(month_idx == m + 1)[:15]
        if len(nxt):
            best = nxt[key[:, nxt].argmax(axis=1)]
            when = np.where(key[everyone, best] >= 0, best, when)
        who = np.flatnonzero(hit[:, m] & (when >= 0))
        heavy = per_month[who, m] >= 4
        choice = rng.random(len(who))
        itype = np.where(
            choice < np.where(heavy, 0.30, 0.45), "family_outreach",
            np.where(choice < np.where(heavy, 0.50, 0.70), "attendance_plan",
                     np.where(choice < np.where(heavy, 0.65, 0.85), "mentoring",
                              "home_visit")))
        out.append((who, when[who], itype))

    frames = []
    for who, c, itype in out:
        frames.append(pd.DataFrame({"row": who, "col": c,
                                    "intervention_type": np.broadcast_to(itype,
                                                                         len(who))}))
    log = pd.concat(frames, ignore_index=True)
    log["school"] = res.school[log["row"].to_numpy(), log["col"].to_numpy()]
    log["date"] = yr.days[log["col"].to_numpy()]
    return log


# ---------------------------------------------------------------------------------
# Injected errors
# ---------------------------------------------------------------------------------


def _inject_errors(rng: np.random.Generator, att: pd.DataFrame, yr: _Year,
                   res: _YearResult, ids: np.ndarray,
                   school_ids: np.ndarray) -> pd.DataFrame:
    """Return the realistic bad rows to add to the prior year's attendance."""
    n, d = res.mark.shape
    col = np.broadcast_to(np.arange(d), (n, d))
    sidx = np.maximum(res.school, 0)
    bad = []

    def rows_at(r: np.ndarray, c: np.ndarray, school: np.ndarray,
                category) -> pd.DataFrame:
        return pd.DataFrame({"student_id": ids[r], "school_id": school_ids[school],
                             "date": yr.days[c], "category": category})

    def sample(mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        r, c = np.nonzero(mask)
        pick = np.sort(rng.choice(len(r), size=k, replace=False))
        return r[pick], c[pick]

    # An unknown code on a day the student was present in person.
    present = res.enrolled & (res.mark < 0) & (res.modality == 0)
    r, c = sample(present, INJECTED_ERRORS["unknown_category"])
    bad.append(rows_at(r, c, res.school[r, c], np.array(UNKNOWN_CODES)))

    # An absence on a closed day (a holiday or closure) inside the student's span.
    closed = (res.school >= 0) & ~yr.instr[sidx, col]
    r, c = sample(closed, INJECTED_ERRORS["absence_on_non_instructional_day"])
    bad.append(rows_at(r, c, res.school[r, c], "unexcused"))

    # An absence after a student left the district, on a day their school was open.
    ever = (res.school >= 0).any(axis=1)
    last_col = d - 1 - np.argmax((res.school >= 0)[:, ::-1], axis=1)
    last_school = res.school[np.arange(n), last_col]
    after = (ever[:, None] & (col > last_col[:, None])
             & yr.instr[np.maximum(last_school, 0)][:, :d])
    r, c = sample(after, INJECTED_ERRORS["absence_outside_enrollment"])
    bad.append(rows_at(r, c, last_school[r], "excused"))

    # A second mark for the same student, school and day with the other category.
    whole = att[att["category"].isin(["excused", "unexcused"])
                & att["minutes_missed"].isna() & att["fraction_missed"].isna()
                & att["modality"].isna()]
    pick = np.sort(rng.choice(len(whole), INJECTED_ERRORS["duplicate_mark"],
                              replace=False))
    dup = whole.iloc[pick][["student_id", "school_id", "date", "category"]].copy()
    dup["category"] = np.where(dup["category"] == "excused", "unexcused", "excused")
    bad.append(dup)

    # Dates no parser accepts.
    pick = np.sort(rng.choice(len(whole), INJECTED_ERRORS["unparseable_date"],
                              replace=False))
    typo = whole.iloc[pick][["student_id", "school_id", "date", "category"]].copy()
    year = int(str(yr.days[-1])[:4])
    typo["date"] = [f"{year}-02-30", f"{year - 1}-11-31"][:len(typo)]
    bad.append(typo)

    out = pd.concat(bad, ignore_index=True)
    out["date"] = [v if isinstance(v, str) else str(v)[:10] for v in out["date"]]
    return out


# ---------------------------------------------------------------------------------
# Assembly and writing
# ---------------------------------------------------------------------------------


@dataclass
class _District:
    """Everything one run makes, before writing."""

    tables: dict[str, pd.DataFrame]
    meta: dict
    results: dict[str, _YearResult]


def _school_year_start(day: date) -> int:
    return day.year if day.month >= 8 else day.year - 1


def _build_district(seed: int, n_students: int, as_of: date, inject_errors: bool,
                    effects: dict | None = None) -> _District:
    """Generate every table in memory."""
    effects = effects or ABSENCE_EFFECTS
    rng = np.random.default_rng(seed)
    current_start = _school_year_start(as_of)

    # Calendars of both years.
    prior = _build_year(current_start - 1, "prior", as_of, rng)
    current = _build_year(current_start, "current", as_of, rng)
    if current.n_sim == 0 or as_of < current.days[current.district_instr[0]].item():
        raise ValueError(
            f"as_of {as_of} is before the first school day of {current.label} "
            f"({current.days[current.district_instr[0]]}); pick a date in the year.")
    years = [prior, current]

    # Students and enrollments.
    grades, pop = _make_enrollments(rng, n_students, prior, current)
    ids = np.array([f"ST{v:06d}" for v in
                    np.sort(rng.choice(np.arange(1, 1_000_000), n_students,
                                       replace=False))])
    ids = ids[rng.permutation(n_students)]
    school_ids = np.array([s[0] for s in SCHOOLS])

    # Attendance and interventions, year by year.
    results, att_parts, log_parts = {}, [], []
    prior_chronic = None
    for k, yr in enumerate(years):
        res = _simulate_year(rng, yr, k, pop, grades[yr.which], effects)
        results[yr.which] = res
        att_parts.append(_attendance_frame(yr, res, ids, school_ids))
        log_parts.append(_interventions(rng, yr, res, pop, prior_chronic))
        days = res.enrolled.sum(axis=1)
        missed = np.where(res.enrolled, res.absent, 0.0).sum(axis=1)
        prior_chronic = (days >= 10) & (missed >= 0.10 * days)

    attendance = pd.concat(att_parts, ignore_index=True)
    attendance["date"] = pd.Series(attendance["date"]).astype(str).str[:10]
    injected = {kind: 0 for kind in INJECTED_ERRORS}
    if inject_errors:
        bad = _inject_errors(rng, attendance, prior, results["prior"], ids, school_ids)
        attendance = pd.concat([attendance, bad], ignore_index=True)
        injected = dict(INJECTED_ERRORS)
    attendance = attendance.sort_values(
        ["student_id", "date", "school_id", "category"], kind="stable",
        ignore_index=True)

    log = pd.concat(log_parts, ignore_index=True)
    interventions = pd.DataFrame({
        "student_id": ids[log["row"].to_numpy()],
        "school_id": school_ids[log["school"].to_numpy()],
        "date": pd.to_datetime(log["date"]).dt.strftime("%Y-%m-%d"),
        "intervention_type": log["intervention_type"].to_numpy(),
    })
    interventions["kind"] = interventions["intervention_type"].map(INTERVENTION_TYPES)
    interventions = interventions.sort_values(
        ["date", "student_id", "intervention_type"], kind="stable", ignore_index=True)

    enrollments = _enrollment_frame(years, ids, school_ids)
    latest = np.where(grades["current"] >= 0, grades["current"], grades["prior"])
    students = pd.DataFrame({
        "student_id": ids,
        "grade": np.array(SAMPLE_GRADES)[latest],
        "race_ethnicity": np.array(list(RACE_SHARES))[pop.race],
        "gender": np.array(list(GENDER_SHARES))[pop.gender],
        **{flag: values for flag, values in pop.flags.items()},
    }).sort_values("student_id", ignore_index=True)
    schools = pd.DataFrame({
        "school_id": school_ids,
        "school_name": [s[1] for s in SCHOOLS],
        "school_level": [s[2] for s in SCHOOLS],
        "district_id": DISTRICT_ID,
        "district_name": DISTRICT_NAME,
    })

    tables = {"schools": schools, "students": students, "enrollments": enrollments,
              "calendar": _calendar_frame(years), "attendance": attendance,
              "interventions": interventions}
    meta = _meta(seed, n_students, as_of, years, tables, injected,
                 _chronic_summary(results["prior"], pop),
                 _chronic_summary(results["current"], pop))
    return _District(tables, meta, results)


def _enrollment_frame(years: list[_Year], ids: np.ndarray,
                      school_ids: np.ndarray) -> pd.DataFrame:
    """Return the enrollments table of both years."""
    parts = []
    for yr in years:
        sp = yr.spans
        exit_date = pd.Series(yr.days[sp["end_col"].to_numpy()]).dt.strftime("%Y-%m-%d")
        parts.append(pd.DataFrame({
            "student_id": ids[sp["row"].to_numpy()],
            "school_id": school_ids[sp["school"].to_numpy()],
            "grade": np.array(SAMPLE_GRADES)[sp["grade"].to_numpy()],
            "entry_date": pd.Series(yr.days[sp["start_col"].to_numpy()]
                                    ).dt.strftime("%Y-%m-%d"),
            "exit_date": exit_date.where(~sp["open"].to_numpy(), None),
        }))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["student_id", "entry_date", "school_id"], kind="stable",
                           ignore_index=True)


def _meta(seed: int, n_students: int, as_of: date, years: list[_Year],
          tables: dict[str, pd.DataFrame], injected: dict, prior_chronic: dict,
          current_chronic: dict) -> dict:
    """Describe the run: sizes, planted effects, injected errors, calibration."""
    school_years = {}
    for yr in years:
        first = yr.days[yr.district_instr[0]]
        school_years[yr.which] = {
            "label": yr.label,
            "first_day": str(first),
            "last_day": str(yr.days[yr.district_instr[-1]]),
            "district_instructional_days_planned": PLANNED_DAYS,
            "instructional_days_to_as_of_by_school": {
                s[0]: int(yr.instr[i, :yr.n_sim].sum()) for i, s in enumerate(SCHOOLS)},
        }
    return {
        "generator": "analysis.sample",
        "version": __version__,
        "seed": seed,
        "n_students": n_students,
        "as_of": as_of.isoformat(),
        "district": {"district_id": DISTRICT_ID, "district_name": DISTRICT_NAME},
        "school_years": school_years,
        "sizes": {name: int(len(frame)) for name, frame in tables.items()},
        "planted_effects": {
            "punitive_ratio": PLANTED_PUNITIVE_RATIO,
            "what": "multiplier on the probability that a student receives any "
                    "punitive intervention in a school year, at equal unexcused "
                    "whole-day absences (district total, that year, to the as-of "
                    "date); counts of punitive actions per student scale the same",
            "punitive_base_probability": (
                f"0 below {PUNITIVE_THRESHOLD} unexcused days, else min("
                f"{PUNITIVE_CAP}, {PUNITIVE_BASE} + {PUNITIVE_SLOPE} * (u - "
                f"{PUNITIVE_THRESHOLD}))"),
            "known_nulls": "no other race/ethnicity value, gender, English learner, "
                           "disability, economic disadvantage, homeless or foster "
                           "status changes punitive or supportive actions at equal "
                           "absence; the unexcused share of absences does not "
                           "depend on any group",
            "reading_the_audit": "against non-Black students at equal unexcused "
                                 "days, Black students' ratio is 1.8 and every "
                                 "other group's is 1; against all other students "
                                 "(a reference that includes Black students) groups "
                                 "with few Black students show ratios a little "
                                 "below 1, and groups with many a little above",
            "supportive": "depends only on the student's absences that month and "
                          "whether they rose from the month before (and, in "
                          "September, on chronic absence last year)",
        },
        "injected_errors": injected,
        "attendance_date_storage": "text, YYYY-MM-DD (so bad dates can be shown)",
        "calibration": {
            "source": "NYC DOE end-of-year attendance, district file 2018-2022, "
                      "school year 2018-19, citywide sums (see sample.py)",
            "target_overall_pct": 100 * TARGET_OVERALL_CHRONIC,
            "nyc_pct_by_grade": NYC_CHRONIC_PCT_BY_GRADE,
            "nyc_pct_by_group": NYC_CHRONIC_PCT_BY_GROUP,
            "definition": "absent days (partial days as the share missed) / "
                          "instructional days enrolled >= 10%, district level, "
                          "students with 10+ days enrolled",
            "realised_prior_year_pct": prior_chronic,
            "realised_current_year_to_date_pct": current_chronic,
        },
    }


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_bool_dtype(out[col]):
            out[col] = np.where(out[col], "true", "false")
        elif pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False, lineterminator="\n")


def _write_attendance(frame: pd.DataFrame, path: Path) -> None:
    schema = pa.schema([
        ("student_id", pa.string()), ("school_id", pa.string()), ("date", pa.string()),
        ("category", pa.string()), ("minutes_missed", pa.float64()),
        ("fraction_missed", pa.float64()), ("modality", pa.string()),
    ])
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="zstd", store_schema=False)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def generate_sample_district(out_dir: Path, *, seed: int = 20261130,
                             n_students: int = 12000, as_of: str = "2026-11-30",
                             inject_errors: bool = True) -> dict:
    """Write a synthetic district's six input tables and a description of the run.

    Parameters
    ----------
    out_dir : Path
        Folder to write into (created if missing). Existing files of the same
        names are replaced.
    seed : int
        Seed of the one random generator; the same seed gives byte-identical files.
    n_students : int
        Number of distinct students across both years (rows of ``students.csv``).
    as_of : str
        ISO date; the current school year is simulated up to and including it and
        the prior school year is the full year before.
    inject_errors : bool
        Add a small, counted number of bad attendance rows (unknown codes, marks
        on closed days or outside enrollment, duplicate marks, bad dates).

    Returns
    -------
    dict
        The contents of ``sample_meta.json``: seed, sizes, as-of date, planted
        effects, injected error counts, calibration and a sha256 per file.

    Raises
    ------
    ValueError
        If ``as_of`` is before the first school day of its school year or
        ``n_students`` is too small to make a district.
    """
    if n_students < 200:
        raise ValueError(f"n_students must be at least 200, got {n_students}.")
    as_of_date = date.fromisoformat(as_of)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    logger.info("Generating a sample district: %d students, seed %d, as of %s",
                n_students, seed, as_of)

    district = _build_district(seed, n_students, as_of_date, inject_errors)

    # Write the tables, then describe them.
    files = {}
    for name, frame in district.tables.items():
        path = out_dir / (f"{name}.parquet" if name == "attendance" else f"{name}.csv")
        if name == "attendance":
            _write_attendance(frame, path)
        else:
            _write_csv(frame, path)
        files[path.name] = {"rows": int(len(frame)), "bytes": path.stat().st_size,
                            "sha256": _sha256(path)}
        logger.info("Wrote %s (%d rows)", path.name, len(frame))
    meta = {**district.meta, "files": files}
    (out_dir / "sample_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("Prior-year chronic absence %.1f%%; injected errors: %s",
                meta["calibration"]["realised_prior_year_pct"]["all"],
                meta["injected_errors"])
    return meta


def _refit_absence_effects(n_students: int = 60000, rounds: int = 10,
                           seed: int = 1, gain: float = 0.5) -> dict:
    """Refit :data:`ABSENCE_EFFECTS` to the NYC targets (a maintainer's tool).

    Raking on the logit scale: each round generates a district in memory and, for
    every category, compares the logit of its realised prior-year chronic rate
    minus the logit of the overall rate with the same contrast in the NYC targets;
    the category's effect moves by ``gain`` times the gap (centred, so only the
    intercept moves the overall level), and the intercept moves the overall rate
    towards :data:`TARGET_OVERALL_CHRONIC`. Paste the result over
    ``ABSENCE_EFFECTS``.
    """
    effects = json.loads(json.dumps(ABSENCE_EFFECTS))
    nyc_all = _logit(NYC_CHRONIC_PCT_ALL / 100)
    prevalence = {"english_learner": 0.15, "disability": 0.20,
                  "economically_disadvantaged": 0.72, "homeless": 0.06}
    race_weight = {"Asian": 0.15, "Black": 0.25, "Hispanic": 0.40, "White": 0.15,
                   "Other": 0.05}

    def gap(target_pct: float, got_pct: float, level: float) -> float:
        return ((_logit(target_pct / 100) - nyc_all)
                - (_logit(got_pct / 100) - level))

    for round_no in range(rounds):
        got = _build_district(seed, n_students, date(2026, 11, 30), False,
                              effects).meta["calibration"]["realised_prior_year_pct"]
        level = _logit(got["all"] / 100)
        shift = gain * (_logit(TARGET_OVERALL_CHRONIC) - level)

        # Grades (about equally many students in each).
        step = {g: gain * gap(NYC_CHRONIC_PCT_BY_GRADE[g], got["grade"][g], level)
                for g in SAMPLE_GRADES}
        mean = np.mean(list(step.values()))
        for g in SAMPLE_GRADES:
            effects["grade"][g] += step[g] - mean

        # Race/ethnicity; NYC "Other" is the mean of the three small groups.
        small = ("American Indian", "Pacific Islander", "Multiracial")
        got_race = {**got["race_ethnicity"],
                    "Other": float(np.mean([got["race_ethnicity"][r] for r in small]))}
        target = NYC_CHRONIC_PCT_BY_GROUP["race_ethnicity"]
        step = {r: gain * gap(target[r], got_race[r], level) for r in target}
        mean = sum(race_weight[r] * step[r] for r in target)
        for r in target:
            effects["race_ethnicity"][r] += step[r] - mean

        # Gender: Female and Male about half each.
        target = NYC_CHRONIC_PCT_BY_GROUP["gender"]
        step = {g: gain * gap(target[g], got["gender"][g], level) for g in target}
        mean = np.mean(list(step.values()))
        for g in target:
            effects["gender"][g] += step[g] - mean

        # Yes/no flags: move the contrast; the intercept absorbs its level.
        for flag, share in prevalence.items():
            target = NYC_CHRONIC_PCT_BY_GROUP[flag]
            want = _logit(target["yes"] / 100) - _logit(target["no"] / 100)
            have = _logit(got[flag]["yes"] / 100) - _logit(got[flag]["no"] / 100)
            effects[flag] += gain * (want - have)
            shift -= share * gain * (want - have)
        effects["intercept"] += shift
        logger.info("refit round %d: overall %.1f%%", round_no, got["all"])
    return json.loads(json.dumps(effects, default=float),
                      parse_float=lambda v: round(float(v), 3))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m analysis.sample --out data/raw/sample``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: the process's own).

    Returns
    -------
    int
        Exit status, 0 on success.
    """
    parser = argparse.ArgumentParser(
        prog="python -m analysis.sample",
        description="Write a seeded synthetic school district (the six input tables "
                    "and sample_meta.json).")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR,
                        help=f"folder to write (default {SAMPLE_DIR})")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--students", type=int, default=12000)
    parser.add_argument("--as-of", default="2026-11-30", help="ISO date, YYYY-MM-DD")
    parser.add_argument("--no-errors", action="store_true",
                        help="do not inject the counted bad rows")
    args = parser.parse_args(argv)

    configure_logging()
    meta = generate_sample_district(args.out, seed=args.seed, n_students=args.students,
                                    as_of=args.as_of, inject_errors=not args.no_errors)
    logger.info("Sample district written to %s (%d files)", args.out,
                len(meta["files"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
