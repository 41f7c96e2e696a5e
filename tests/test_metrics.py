"""Every metric rule against numbers worked out by hand on the tiny district.

The district, its calendar and the expected value of every student are described in
``tests/tiny_district.py``; each expected number below is derived there.
"""

from __future__ import annotations

import datetime as dt

import pytest

import tiny_district
from analysis.aggregate import build_aggregate
from analysis.definitions import load_definition
from analysis.quality import DataContractError
from analysis.settings import load_settings
from analysis.sources.student_files import read_student_files

AS_OF = dt.date(2026, 9, 30)


def _run(folder, profile="attendance-works", as_of=AS_OF, **changes):
    definition = load_definition(profile)
    if changes:
        definition = definition.model_copy(update=changes)
    data = read_student_files(folder)
    return build_aggregate(data, load_settings(), definition, as_of=as_of)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny district written as CSV files."""
    return tiny_district.write(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def run(folder):
    """The default definition, as of 30 September 2026."""
    return _run(folder)


def _student(run, student, unit, as_of=AS_OF):
    rows = run.students
    row = rows[(rows.student_id == student) & (rows.unit_id == unit)
               & (rows.as_of_date == str(as_of))]
    assert len(row) == 1, f"expected one row for {student} at {unit}"
    return row.iloc[0]


def _total(run, unit, level="school", as_of=AS_OF, grade="All", group_type="all",
           group_value="All students"):
    agg = run.aggregate
    key = "school_id" if level == "school" else "district_id"
    row = agg[(agg[key] == unit) & (agg.level == level) & (agg.as_of_date == str(as_of))
              & (agg.grade == grade) & (agg.group_type == group_type)
              & (agg.group_value == group_value)]
    assert len(row) == 1
    return row.iloc[0]


class TestStudentRules:
    @pytest.mark.parametrize("student, days, absent, band, chronic", [
        ("s1", 20, 2.0, "moderate_chronic", True),   # exactly 10%: chronic
        ("s2", 20, 1.0, "at_risk", False),           # exactly 5%: at risk
        ("s3", 20, 4.0, "severe_chronic", True),     # exactly 20%: severe
        ("s4", 20, 0.0, "satisfactory", False),      # no absences
        ("s5", 20, 1.75, "at_risk", False),          # partial days
        ("s7", 16, 1.0, "at_risk", False),           # gap between enrollments
    ])
    def test_school_a(self, run, student, days, absent, band, chronic):
        row = _student(run, student, "A")
        assert row.days_enrolled == days
        assert row.days_absent == pytest.approx(absent)
        assert row.band == band
        assert bool(row.chronic) is chronic

    def test_closed_day_is_not_a_day_enrolled(self, run):
        # 22 weekdays, less Labor Day and A's closure on 18 Sep.
        assert _student(run, "s4", "A").days_enrolled == 20

    def test_mid_year_move_counts_at_each_school_and_once_in_district(self, run):
        at_a, at_b = _student(run, "s6", "A"), _student(run, "s6", "B")
        in_district = _student(run, "s6", "D1")
        assert (at_a.days_enrolled, at_a.days_absent, bool(at_a.chronic)) \
            == (10, 1, True)
        assert (at_b.days_enrolled, at_b.days_absent, bool(at_b.chronic)) \
            == (12, 1, False)
        # The hand-off day (15 Sep) is one day in the district: 10 + 12 - 1.
        assert (in_district.days_enrolled, in_district.days_absent) == (21, 2)
        assert not in_district.chronic and in_district.band == "at_risk"

    def test_too_few_days_is_not_eligible(self, run):
        row = _student(run, "s8", "B")
        assert row.days_enrolled == 9 and not row.eligible
        assert not row.chronic and not row.tier2 and not row.tier3

    @pytest.mark.parametrize("student, unit, tier2, tier3", [
        ("s1", "A", True, False),   # chronic now
        ("s2", "A", False, False),  # 1 day by the end of month 1: not on pace
        ("s3", "A", False, True),   # 20% now
        ("s4", "A", True, False),   # chronic last year (2 of 11 days)
        ("s6", "D1", True, False),  # 2 days by the end of September: on pace
        ("s6", "B", False, False),
    ])
    def test_tiers(self, run, student, unit, tier2, tier3):
        row = _student(run, student, unit)
        assert (bool(row.tier2), bool(row.tier3)) == (tier2, tier3)

    def test_as_of_in_the_middle_of_a_month(self, folder):
        run = _run(folder, as_of=dt.date(2026, 9, 15))
        s1 = _student(run, "s1", "A", as_of=dt.date(2026, 9, 15))
        # 10 days taught by 15 Sep at A, 2 missed: 20%.
        assert (s1.days_enrolled, s1.days_absent, s1.band) == (10, 2, "severe_chronic")
        s5 = _student(run, "s5", "A", as_of=dt.date(2026, 9, 15))
        assert s5.days_absent == pytest.approx(0.75)  # 0.5 + 0.25; 16-17 Sep later
        assert not run.students.as_of_date.gt("2026-09-15").any()


class TestPartialDays:
    @pytest.mark.parametrize("rule, expected", [
        ("minutes_else_half_day", 0.5 + 0.25 + 1 + 0),  # minutes kept; fractions halved
        ("half_day", 1 + 0 + 1 + 0),                      # CRDC: half or more = a day
        ("fraction", 0.5 + 0.25 + 0.6 + 0.3),             # every share kept
    ])
    def test_rule(self, folder, rule, expected):
        run = _run(folder, partial_day=rule)
        assert _student(run, "s5", "A").days_absent == pytest.approx(expected)


class TestProfiles:
    def test_crdc_counts_fifteen_days(self, folder):
        run = _run(folder, "crdc")
        assert _total(run, "A").chronically_absent == 0

    def test_ca_dashboard_needs_31_days(self, folder):
        run = _run(folder, "ca-dashboard")
        total = _total(run, "A")
        assert total.students_enrolled == 7 and total.students == 0

    def test_boundary_above_puts_cut_points_in_the_lower_band(self, folder):
        run = _run(folder, band_boundary="above")
        assert _student(run, "s2", "A").band == "satisfactory"   # exactly 5%
        assert not _student(run, "s1", "A").chronic               # exactly 10%
        assert _student(run, "s3", "A").band == "moderate_chronic"  # exactly 20%

    def test_exclusive_exit_date(self, folder):
        run = _run(folder, exit_date_inclusive=False)
        # s6 leaves A on 15 Sep, which is now the first day gone: 9 days at A.
        assert _student(run, "s6", "A").days_enrolled == 9


class TestAggregate:
    def test_school_a(self, run):
        row = _total(run, "A")
        counts = (row.students_enrolled, row.students, row.chronically_absent)
        assert counts == (7, 7, 3)
        assert (row.satisfactory, row.at_risk, row.moderate_chronic,
                row.severe_chronic) == (1, 3, 2, 1)
        assert (row.tier2, row.tier3) == (3, 1)
        assert row.days_enrolled == 126            # 5 x 20 + 10 + 16
        assert row.days_absent == pytest.approx(10.75)
        assert row.chronic_absence_rate == pytest.approx(3 / 7)
        assert row.attendance_rate == pytest.approx(1 - 10.75 / 126)
        assert row.school_name == "Alder Elementary"

    def test_school_b_counts_only_eligible_students_in_rates(self, run):
        row = _total(run, "B")
        counts = (row.students_enrolled, row.students, row.chronically_absent)
        assert counts == (2, 1, 0)
        assert row.days_enrolled == 12

    def test_district_counts_each_student_once(self, run):
        row = _total(run, "D1", level="district")
        counts = (row.students_enrolled, row.students, row.chronically_absent)
        assert counts == (8, 7, 2)
        assert (row.tier2, row.tier3) == (3, 1)
        assert row.days_enrolled == 137            # 5 x 20 + 21 + 16
        assert row.days_absent == pytest.approx(11.75)

    def test_groups_and_grades(self, run):
        black = _total(run, "A", group_type="race_ethnicity", group_value="Black")
        assert (black.students, black.chronically_absent) == (2, 2)   # s1, s3
        grade1 = _total(run, "A", grade="1")
        assert (grade1.students, grade1.chronically_absent) == (3, 1)  # s1, s2, s4
        el = _total(run, "A", group_type="english_learner",
                    group_value="English learner")
        assert (el.students, el.chronically_absent) == (2, 1)          # s1, s5

    def test_wilson_interval(self, run):
        row = _total(run, "A")
        # statsmodels proportion_confint(3, 7, method="wilson"), to 1e-6.
        assert row.ci_low == pytest.approx(0.1582195, abs=1e-6)
        assert row.ci_upp == pytest.approx(0.7495415, abs=1e-6)

    def test_same_date_last_year_and_month_ends(self, run):
        dates = set(run.aggregate.as_of_date.dt.date)
        expected = {dt.date(2026, 9, 30), dt.date(2025, 9, 30), dt.date(2025, 9, 15)}
        assert expected <= dates


class TestLedger:
    def test_rows_read_equal_rows_used_plus_set_aside(self, run):
        ledger = run.ledger
        assert ledger.is_balanced()
        attendance = ledger.entries["attendance"]
        assert (attendance.rows_read, attendance.rows_set_aside) == (25, 6)
        reasons = attendance.set_aside
        assert reasons["dated after the as-of date (ignored)"] == 1
        closed = "mark on a day that is not an instructional day at that school"
        assert reasons[closed] == 2
        assert reasons["absence outside the student's enrollment at that school"] == 1
        duplicate = [r for r in reasons if r.startswith("another mark")]
        assert len(duplicate) == 1 and reasons[duplicate[0]] == 1
        unknown = [r for r in reasons if r.startswith("column category")]
        assert len(unknown) == 1 and reasons[unknown[0]] == 1
        assert run.conflicts == 1

    def test_strict_stops_with_file_line_column_and_value(self, folder):
        with pytest.raises(DataContractError) as info:
            read_student_files(folder, strict=True)
        message = str(info.value)
        # The "X" mark is the 13th data row: line 14 of attendance.csv.
        assert "attendance.csv line 14" in message
        assert "'category'" in message and "'X'" in message and "present" in message

    def test_missing_column_names_file_and_columns(self, folder, tmp_path):
        import shutil

        copy = tmp_path / "copy"
        shutil.copytree(folder, copy)
        frame = tiny_district.students().drop(columns=["gender"])
        frame.to_csv(copy / "students.csv", index=False)
        expected = r"students.csv: missing column\(s\) \['gender'\]"
        with pytest.raises(DataContractError, match=expected):
            read_student_files(copy)

    def test_missing_table_says_what_to_do(self, tmp_path):
        tiny_district.write(tmp_path)
        (tmp_path / "calendar.csv").unlink()
        with pytest.raises(DataContractError, match="No calendar file"):
            read_student_files(tmp_path)


def test_unparseable_date_is_set_aside_with_its_line(folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    frame = tiny_district.attendance()
    frame.loc[3, "date"] = "2026-02-30"   # line 5 of the file
    frame.to_csv(copy / "attendance.csv", index=False)

    data = read_student_files(copy)
    entry = data.ledger.entries["attendance"]
    reason = "column date: expected a date such as 2026-09-08"
    assert entry.set_aside[reason] == 1
    assert entry.examples[0]["row"] == 5 and entry.examples[0]["value"] == "2026-02-30"
    with pytest.raises(DataContractError, match="attendance.csv line 5, column 'date'"):
        read_student_files(copy, strict=True)


def test_totals_carry_to_later_points_after_the_last_day_enrolled(run):
    # Last year school A taught 1-15 Sep 2025 only; s4 was enrolled then. At the
    # same date last year (30 Sep 2025) the year-to-date totals are still hers.
    day_end = _total(run, "A", as_of=dt.date(2025, 9, 15))
    later = _total(run, "A", as_of=dt.date(2025, 9, 30))
    for total in (day_end, later):
        assert total.students_enrolled == 1 and total.days_enrolled == 11
        assert total.days_absent == 2 and total.chronically_absent == 1
