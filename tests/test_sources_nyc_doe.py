"""Tests for the NYC DOE district attendance reader.

Most tests read the real published files in ``../shared/data/real`` (see
``nyc_doe_eoy_attendance_district/SOURCE.md``); the last few use tiny synthetic
files to exercise the set-aside and stop-the-run paths.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.quality import DataContractError, QualityLedger
from analysis.schema import AGGREGATE_COLUMNS, ALL_GRADES, GRADES
from analysis.sources.nyc_doe import read_nyc_doe

FOLDER = "nyc_doe_eoy_attendance_district"
STEM = "public-district-attendance-results-2018-2022"

#: Rows per sheet, from the table in SOURCE.md.
SOURCE_ROWS = {
    "All_Students": 2475, "Ethnicity": 12373, "Gender": 4950, "Poverty": 4950,
    "ELL": 4620, "SWD": 4620, "STH": 4950,
}
#: Rows with an ``s`` in any column, from SOURCE.md.
SOURCE_SUPPRESSED = {"Ethnicity": 304, "SWD": 90, "STH": 5}

#: Written out here, independently of the reader, to check its mapping.
GRADE_LABELS = {"PK in K-12 Schools": "PK", "0K": "K", "All Grades": "All",
                **{str(g): str(g) for g in range(1, 13)}}
CATEGORIES = {
    "All Students": ("all", "All students"),
    "Asian": ("race_ethnicity", "Asian"), "Black": ("race_ethnicity", "Black"),
    "Hispanic": ("race_ethnicity", "Hispanic"), "White": ("race_ethnicity", "White"),
    "Other": ("race_ethnicity", "Other"),
    "Female": ("gender", "Female"), "Male": ("gender", "Male"),
    "ELL": ("english_learner", "English learner"),
    "Not ELL": ("english_learner", "Not English learner"),
    "SWD": ("disability", "Student with disability"),
    "Not SWD": ("disability", "Student without disability"),
    "Poverty": ("economically_disadvantaged", "Economically disadvantaged"),
    "Not Poverty": ("economically_disadvantaged", "Not economically disadvantaged"),
    "STH": ("homeless", "Homeless"), "Not STH": ("homeless", "Not homeless"),
}
KEY = ["district_id", "school_year", "grade", "group_type", "group_value"]

MEASURES = {
    "# Total Days": "days_enrolled",
    "# Days Absent": "days_absent",
    "# Contributing 10+ Total Days and 1+ Pres Day": "students",
    "# Chronically Absent": "chronically_absent",
    "% Chronically Absent": "chronic_absence_rate",
    "% Attendance": "attendance_rate",
}


@pytest.fixture(scope="module")
def folder(require_real) -> Path:
    return require_real(FOLDER)


@pytest.fixture(scope="module")
def read(folder):
    ledger = QualityLedger()
    return read_nyc_doe(folder, ledger), ledger


@pytest.fixture(scope="module")
def published(folder) -> pd.DataFrame:
    """Every published row, as text, keyed like the aggregate table."""
    frames = []
    for sheet in SOURCE_ROWS:
        raw = pd.read_csv(folder / f"{STEM}__{sheet}.csv", dtype=str,
                          keep_default_na=False)
        raw["sheet"] = sheet
        frames.append(raw)
    raw = pd.concat(frames, ignore_index=True)
    groups = raw["Category"].map(CATEGORIES)
    raw["district_id"] = raw["District"]
    raw["school_year"] = raw["Year"]
    raw["grade"] = raw["Grade"].map(GRADE_LABELS)
    raw["group_type"] = groups.str[0]
    raw["group_value"] = groups.str[1]
    return raw


@pytest.fixture(scope="module")
def joined(read, published) -> pd.DataFrame:
    df, _ = read
    out = published.merge(df, on=KEY, how="outer", validate="one_to_one",
                          indicator=True)
    assert (out["_merge"] == "both").all(), "published and read rows differ"
    return out


@pytest.mark.real_data
def test_columns_and_dtypes_are_the_aggregate_schema(read):
    df, _ = read
    assert list(df.columns) == list(AGGREGATE_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == AGGREGATE_COLUMNS
    assert (df["source"] == "nyc-doe").all() and (df["definition"] == "nyc-doe").all()
    assert (df["level"] == "district").all()
    assert df["school_id"].isna().all() and df["school_name"].isna().all()
    assert not df["approximate"].any()


@pytest.mark.real_data
def test_row_counts_per_sheet_match_source_md(read):
    df, ledger = read
    assert len(df) == sum(SOURCE_ROWS.values()) == 38938
    for sheet, rows in SOURCE_ROWS.items():
        entry = ledger.entries[f"nyc-doe:{sheet}"]
        assert entry.rows_read == rows, sheet
        assert entry.rows_used == rows, sheet
    counts = df.groupby("group_type").size()
    assert counts["all"] == 2475
    assert counts["race_ethnicity"] == 12373
    assert counts["english_learner"] == counts["disability"] == 4620


@pytest.mark.real_data
def test_ledger_is_balanced_and_nothing_set_aside(read):
    _, ledger = read
    assert ledger.is_balanced()
    assert set(ledger.entries) == {f"nyc-doe:{s}" for s in SOURCE_ROWS}
    assert all(e.rows_set_aside == 0 for e in ledger.entries.values())


@pytest.mark.real_data
def test_grade_mapping_covers_every_label(read, published):
    df, _ = read
    assert set(published["Grade"]) == set(GRADE_LABELS)
    assert df["grade"].notna().all()
    assert set(df["grade"]) == set(GRADES) | {ALL_GRADES}
    # The ELL and SWD sheets have no PK rows (SOURCE.md).
    pk = df[df["grade"] == "PK"]
    assert not pk["group_type"].isin(["english_learner", "disability"]).any()


@pytest.mark.real_data
def test_every_category_maps_and_keys_are_unique(read, published):
    df, _ = read
    assert published["group_type"].notna().all()
    assert not df.duplicated(KEY).any()
    assert set(df["district_id"]) == {str(d) for d in range(1, 33)} | {"75"}


@pytest.mark.real_data
def test_rates_recomputed_from_counts_match_published_percent(joined):
    shown = joined[joined["% Chronically Absent"] != "s"]
    assert len(shown) == 38938 - 304 - 90 - 5
    published_rate = shown["% Chronically Absent"].astype(float) / 100
    recomputed = (shown["chronically_absent"].astype(float)
                  / shown["students"].astype(float))
    stored = shown["chronic_absence_rate"].astype(float)
    assert (recomputed - published_rate).abs().max() < 1e-6
    assert (stored - published_rate).abs().max() < 1e-6

    # Attendance rate: 1 - absent / total against the published % Attendance.
    att = joined[joined["% Attendance"] != "s"]
    published_att = att["% Attendance"].astype(float) / 100
    assert (att["attendance_rate"].astype(float) - published_att).abs().max() < 1e-6


@pytest.mark.real_data
def test_intervals_bracket_the_rate(read):
    df, _ = read
    shown = df[df["chronic_absence_rate"].notna()]
    assert (shown["ci_low"] <= shown["chronic_absence_rate"]).all()
    assert (shown["chronic_absence_rate"] <= shown["ci_upp"]).all()


@pytest.mark.real_data
def test_suppressed_cells_are_flagged_and_missing_never_zero(joined):
    s_cells = (joined[list(MEASURES)] == "s")
    suppressed_rows = s_cells.any(axis=1)
    assert (joined["suppressed_at_source"] == suppressed_rows).all()
    by_sheet = joined[suppressed_rows].groupby("sheet").size().to_dict()
    assert by_sheet == SOURCE_SUPPRESSED

    for source_col, target in MEASURES.items():
        hidden = joined.loc[s_cells[source_col], target]
        assert hidden.isna().all(), f"{source_col} 's' was not read as missing"
    # Measures the publisher did show on a suppressed row are kept as published.
    shown_days = joined[suppressed_rows & (joined["# Total Days"] != "s")]
    assert (shown_days["days_enrolled"].astype(float)
            == shown_days["# Total Days"].astype(float)).all()
    assert joined.loc[suppressed_rows, "note"].str.contains("suppressed").all()


@pytest.mark.real_data
def test_hand_checked_district_1_all_students_2017_18(read):
    df, _ = read
    row = df[(df["district_id"] == "1") & (df["grade"] == "All")
             & (df["group_type"] == "all") & (df["school_year"] == "2017-18")]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["students"] == 11815
    assert row["chronically_absent"] == 3280
    assert row["chronic_absence_rate"] == pytest.approx(0.2776132, abs=1e-7)
    assert row["days_enrolled"] == 1946527
    assert row["days_absent"] == 167998
    assert row["attendance_rate"] == pytest.approx(0.9136934662, abs=1e-9)
    assert row["district_name"] == "Community School District 1"
    assert row["group_value"] == "All students"
    assert row["as_of_date"] == pd.Timestamp("2018-06-30")
    assert row["ci_low"] < 0.2776132 < row["ci_upp"]
    assert pd.isna(row["satisfactory"]) and pd.isna(row["students_enrolled"])
    assert "not published" in row["note"]


@pytest.mark.real_data
def test_district_75_is_named(read):
    df, _ = read
    names = df.loc[df["district_id"] == "75", "district_name"].unique()
    assert list(names) == ["District 75 (citywide special education)"]


# --- synthetic files: set aside and stop the run ------------------------------------

HEADER = ("District,Grade,Category,Year,# Total Days,# Days Absent,# Days Present,"
          "% Attendance,# Contributing 10+ Total Days and 1+ Pres Day,"
          "# Chronically Absent,% Chronically Absent")


def _write(folder: Path, sheet: str, rows: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{STEM}__{sheet}.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def _good_rows(n: int, category: str = "All Students") -> list[str]:
    """``n`` distinct, valid rows (district x grade) of one category."""
    grades = ["0K", *map(str, range(1, 13)), "All Grades", "PK in K-12 Schools"]
    keys = [(d, g) for d in range(1, 33) for g in grades][:n]
    return [f"{d},{g},{category},2017-18,1000,100,900,90.0,10,3,30.0"
            for d, g in keys]


def test_unmappable_row_is_set_aside_with_column_and_value(tmp_path):
    rows = _good_rows(96) + ["1,13,All Students,2017-18,1000,100,900,90,10,3,30"]
    _write(tmp_path, "All_Students", rows)
    ledger = QualityLedger()
    df = read_nyc_doe(tmp_path, ledger)
    assert len(df) == 96
    entry = ledger.entries["nyc-doe:All_Students"]
    assert entry.rows_read == 97 and entry.rows_set_aside == 1
    (reason,) = entry.set_aside
    assert "Grade" in reason and "'13'" in reason
    assert entry.examples[0]["row"] == 98  # header is line 1
    assert ledger.is_balanced()


def test_suppressed_row_keeps_shown_days_and_hides_the_rest(tmp_path):
    _write(tmp_path, "Ethnicity", ["1,1,Asian,2017-18,500,s,s,s,s,s,s"])
    df = read_nyc_doe(tmp_path)
    row = df[df["group_type"] == "race_ethnicity"].iloc[0]
    assert bool(row["suppressed_at_source"])
    assert row["days_enrolled"] == 500
    for col in ("students", "chronically_absent", "chronic_absence_rate",
                "days_absent", "attendance_rate", "ci_low"):
        assert pd.isna(row[col]), col


def test_many_bad_values_stop_the_run_naming_file_line_column_value(tmp_path):
    rows = _good_rows(20) + ["5,2,All Students,2017-18,1000,100,900,90,ten,3,30"] * 5
    _write(tmp_path, "All_Students", rows)
    with pytest.raises(DataContractError) as err:
        read_nyc_doe(tmp_path)
    message = str(err.value)
    assert f"{STEM}__All_Students.csv" in message
    assert "line 22" in message
    assert "# Contributing 10+ Total Days and 1+ Pres Day" in message
    assert "'ten'" in message and "whole number" in message


def test_category_from_another_sheet_is_set_aside(tmp_path):
    rows = _good_rows(64)
    rows[0] = rows[0].replace("All Students", "Female")
    _write(tmp_path, "All_Students", rows)
    ledger = QualityLedger()
    read_nyc_doe(tmp_path, ledger)
    (reason,) = ledger.entries["nyc-doe:All_Students"].set_aside
    assert "Category" in reason and "'Female'" in reason


def test_unknown_sheet_and_empty_folder_stop_the_run(tmp_path):
    with pytest.raises(DataContractError, match="No NYC DOE sheet files"):
        read_nyc_doe(tmp_path)
    _write(tmp_path, "Disability", _good_rows(3))
    with pytest.raises(DataContractError, match="Disability"):
        read_nyc_doe(tmp_path)
