"""The large-district generator: shape of what it writes, at a small size."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from analysis.bigdata import generate_large_district


def _read(folder, table):
    path = folder / table if table == "attendance" else folder / f"{table}.parquet"
    source = f"{path}/*.parquet" if table == "attendance" else str(path)
    return duckdb.sql(f"SELECT * FROM read_parquet('{source}')").df()


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """About 300,000 daily rows (some 1,500 students), every day marked."""
    folder = tmp_path_factory.mktemp("big")
    meta = generate_large_district(folder, 3e5, seed=11)
    return folder, meta


def test_size_is_near_the_target(district):
    folder, meta = district
    rows = len(_read(folder, "attendance"))
    assert rows == meta["sizes"]["attendance"]
    assert 0.85 * 3e5 < rows < 1.15 * 3e5


def test_calendars_have_weekdays_holidays_and_closures(district):
    folder, _ = district
    calendar = _read(folder, "calendar")
    calendar["date"] = pd.to_datetime(calendar["date"])
    assert (calendar["date"].dt.day_of_week < 5).all()
    labor_day = calendar[calendar["date"] == pd.Timestamp("2026-09-07")]
    assert len(labor_day) > 0 and not labor_day["instructional"].any()
    # 180 planned days in 2025-26, less about one emergency closure a school.
    per_year = calendar[calendar["instructional"]
                        & (calendar["date"] < pd.Timestamp("2026-07-01"))]
    counts = per_year.groupby("school_id").size()
    assert counts.between(172, 180).all() and (counts < 180).any()


def test_spans_have_moves_hand_offs_gaps_and_open_enrollments(district):
    folder, _ = district
    spans = _read(folder, "enrollments")
    assert spans["exit_date"].isna().any()                 # still enrolled
    per_year = spans.assign(y=pd.to_datetime(spans["entry_date"]).dt.year)
    schools = spans.groupby("student_id")["school_id"].nunique()
    assert (schools > 1).any()                             # moves
    attendance = _read(folder, "attendance")
    both = attendance.groupby(["student_id", "date"])["school_id"].nunique()
    assert (both > 1).any()                                # hand-off days
    same = per_year.groupby(["student_id", "school_id", "y"]).size()
    assert (same > 1).any()                                # left and came back


def test_marks_have_partial_days_and_modalities(district):
    folder, _ = district
    attendance = _read(folder, "attendance")
    assert attendance["minutes_missed"].notna().any()
    # Minutes are plain floats, as the contract reads them (not Parquet decimals).
    assert attendance["minutes_missed"].dtype.kind == "f"
    assert attendance["fraction_missed"].between(0, 1).any()
    assert set(attendance["modality"]) >= {"in_person", "remote_live"}
    absent = attendance["category"].isin(["excused", "unexcused", "suspension"])
    assert 0.02 < absent.mean() < 0.15


def test_every_day_enrolled_has_one_mark_except_planted_errors(district):
    folder, _ = district
    attendance = _read(folder, "attendance")
    repeated = attendance.duplicated(["student_id", "school_id", "date"]).sum()
    unknown = (attendance["category"] == "X").sum()
    assert 0 <= repeated < 10 and unknown < 10


def test_same_seed_same_tables_other_seed_other_tables(district, tmp_path):
    folder, _ = district
    generate_large_district(tmp_path / "again", 3e5, seed=11)
    generate_large_district(tmp_path / "other", 3e5, seed=12)
    for table in ("students", "enrollments", "calendar", "attendance"):
        first = _read(folder, table)
        first = first.sort_values(list(first.columns)).reset_index(drop=True)
        again = _read(tmp_path / "again", table)
        again = again.sort_values(list(first.columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(first, again, obj=table)
    mine = _read(folder, "attendance")
    other = _read(tmp_path / "other", "attendance")
    assert len(other) != len(mine) or not other.sort_values(list(mine.columns)) \
        .reset_index(drop=True).equals(mine.sort_values(list(mine.columns))
                                       .reset_index(drop=True))


def test_absences_only(tmp_path):
    meta = generate_large_district(tmp_path, 1e5, marks="absences", seed=3)
    attendance = _read(tmp_path, "attendance")
    assert (attendance["category"] != "present").all()
    assert meta["sizes"]["attendance"] < 0.2 * 1e5
