"""Tests for the Connecticut EdSight school-level reader.

Most tests read the real published exports in ``../shared/data/real`` (see
``ct_edsight_school/SOURCE.md`` and ``ct_edsight_district/SOURCE.md``); the last
few build tiny exports with the same quirks to exercise the failure paths.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analysis.quality import DataContractError, QualityLedger
from analysis.schema import (
    AGGREGATE_COLUMNS,
    ALL_GRADES,
    GRADES,
    GROUP_TYPES,
    RACE_ETHNICITY_VALUES,
)
from analysis.sources.ct_edsight import filter_district, read_ct_edsight

FOLDER = "ct_edsight_school"
YEARS = ["2011-12", "2012-13", "2013-14", "2014-15", "2015-16"]
KEY = ["school_year", "level", "district_id", "school_id", "grade", "group_type",
       "group_value"]

real = pytest.mark.real_data


@pytest.fixture(scope="module")
def folder(require_real) -> Path:
    return require_real(FOLDER)


@pytest.fixture(scope="module")
def read(folder):
    ledger = QualityLedger()
    return read_ct_edsight(folder, ledger), ledger


def _raw_rates(folder: Path, year: str, dimension: str) -> pd.DataFrame:
    """A school absenteeism file read by hand: 3 title lines, then the header."""
    path = (folder / "chronic_absenteeism"
            / f"chronic-absenteeism__{year}_all-schools_{dimension}.csv")
    return pd.read_csv(path, skiprows=3, dtype=str, keep_default_na=False)


def _schools(df: pd.DataFrame, year: str) -> pd.DataFrame:
    """The school-level all-students, all-grades rows of one year."""
    return df[(df["level"] == "school") & (df["school_year"] == year)
              & (df["group_type"] == "all") & (df["grade"] == ALL_GRADES)]


@real
def test_columns_dtypes_and_vocabulary(read):
    df, _ = read
    assert list(df.columns) == list(AGGREGATE_COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == AGGREGATE_COLUMNS
    assert (df["source"] == "ct-edsight").all()
    assert (df["definition"] == "ct-edsight").all()
    assert set(df["school_year"]) == set(YEARS)
    assert set(df["level"]) == {"school", "state"}
    assert set(df["group_type"]) <= set(GROUP_TYPES)
    assert set(df["grade"]) == (set(GRADES) - {"PK"}) | {ALL_GRADES}
    race = df.loc[df["group_type"] == "race_ethnicity", "group_value"]
    assert set(race) == set(RACE_ETHNICITY_VALUES)
    assert not df.duplicated(KEY).any()


@real
def test_codes_keep_leading_zeros(read):
    df, _ = read
    schools = df[df["level"] == "school"]
    assert schools["school_id"].str.fullmatch(r"\d{7}").all()
    assert schools["district_id"].str.fullmatch(r"\d{7}").all()
    andover = schools[schools["school_id"] == "0010111"]
    assert set(andover["school_name"]) == {"Andover Elementary School"}
    assert set(andover["district_id"]) == {"0010011"}


@real
def test_star_is_suppressed_never_zero(read, folder):
    df, _ = read
    suppressed = df[df["suppressed_at_source"]]
    assert suppressed["chronic_absence_rate"].isna().all()
    assert suppressed["chronically_absent"].isna().all()
    assert suppressed["ci_low"].isna().all()

    # Every "*" in the 2015-16 all-students file is a suppressed row, not a 0.
    # (District, school) pairs: detention centres appear under several districts.
    raw = _raw_rates(folder, "2015-16", "all-students")
    codes = raw[["District Code", "School Code"]].apply(lambda c: c.str.strip('="'))
    stars = codes[raw["% Chronically Absent"] == "*"]
    rows = _schools(df, "2015-16")
    flagged = rows.loc[rows["suppressed_at_source"], ["district_id", "school_id"]]
    assert len(stars) == len(flagged) == 313
    assert set(map(tuple, stars.to_numpy())) == set(map(tuple, flagged.to_numpy()))

    andover = rows[rows["school_id"] == "0010111"].iloc[0]
    assert bool(andover["suppressed_at_source"])
    assert pd.isna(andover["chronic_absence_rate"])
    assert andover["students"] == 250  # enrollment is still known


@real
def test_2015_16_school_counts_and_enrollment_join(read):
    df, ledger = read
    rows = _schools(df, "2015-16")
    # SOURCE.md says 1,339 schools "with a rate"; 1,339 is the number of rows,
    # of which 313 are suppressed ("*"), so 1,026 carry a rate.
    assert len(rows) == 1339
    assert rows["chronic_absence_rate"].notna().sum() == 1026

    # SOURCE.md: 1,376 schools with enrollment, 1,314 in both files.
    entry = ledger.entries["ct-edsight:enrollment__2015-16_all-schools_all-students"]
    assert entry.rows_read == 1376
    assert entry.rows_used == 1314
    early = ledger.entries["ct-edsight:enrollment__2011-12_all-schools_all-students"]
    assert (early.rows_read, early.rows_used) == (1135, 1101)
    # Numeric enrollment (not "*") for 1,228 of the 1,339 schools.
    assert rows["students"].notna().sum() == 1228


@real
def test_grade_labels_with_three_spaces_map(read, folder):
    df, _ = read
    raw = _raw_rates(folder, "2015-16", "grade")
    assert (raw["Grade"] == "Grade   1").sum() > 0  # the quirk is really there
    raw = raw[raw["School Code"] != '="0000000"']
    grade_rows = df[(df["level"] == "school") & (df["school_year"] == "2015-16")
                    & (df["grade"] != ALL_GRADES)]
    for label, grade in [("Kindergarten", "K"), ("Grade   1", "1"),
                         ("Grade   9", "9"), ("Grade 10", "10"), ("Grade 12", "12")]:
        assert (raw["Grade"] == label).sum() == (grade_rows["grade"] == grade).sum()
    assert (grade_rows["group_type"] == "all").all()


@real
def test_state_rows(read):
    df, _ = read
    state = df[df["level"] == "state"]
    # 1 + 2 + 2 + 13 + 7 + 2 published rows per year, plus free + reduced lunch
    # combined into one economically disadvantaged row and "not eligible".
    assert state.groupby("school_year").size().to_dict() == dict.fromkeys(YEARS, 29)
    assert (state["district_name"] == "State of Connecticut").all()
    assert state[["district_id", "school_id", "school_name"]].isna().all().all()
    assert state["students"].isna().all()
    all_2016 = state[(state["school_year"] == "2015-16")
                     & (state["group_type"] == "all") & (state["grade"] == "All")]
    assert all_2016["chronic_absence_rate"].tolist() == [pytest.approx(0.096)]


@real
def test_state_level_pseudo_school_is_set_aside(read):
    df, ledger = read
    assert not (df["school_id"] == "0000000").any()
    reason = "'State Level' pseudo-school (code 0000000): repeats the _ct state file"
    per_year = {y: sum(e.set_aside.get(reason, 0) for t, e in ledger.entries.items()
                       if y in t) for y in YEARS}
    assert per_year == dict.fromkeys(YEARS, 29)
    assert ledger.notes == []  # the pseudo-school rates equal the _ct files


@real
def test_ledger_is_balanced(read):
    _, ledger = read
    assert ledger.is_balanced()
    assert len(ledger.entries) == 105  # 70 absenteeism + 35 enrollment files


@real
def test_hand_checked_achievement_first_hartford_2015_16(read):
    df, _ = read
    row = _schools(df, "2015-16")
    row = row[row["school_name"] == "Achievement First Hartford Academy Inc."]
    assert len(row) == 1
    row = row.iloc[0]
    assert row["school_id"] == "2880113" and row["district_id"] == "2880013"
    assert row["chronic_absence_rate"] == pytest.approx(0.101)
    assert row["students"] == 1063
    assert row["chronically_absent"] == round(0.101 * 1063) == 107
    assert row["ci_low"] < 0.101 < row["ci_upp"]
    assert bool(row["approximate"]) and not bool(row["suppressed_at_source"])
    assert "estimated" in row["note"]
    assert row["as_of_date"] == pd.Timestamp("2016-06-30")


@real
def test_free_and_reduced_lunch_combine_by_enrollment(read):
    df, _ = read
    # Emma Hart Willard School 2015-16: free 14.8 % of 64, reduced 0.0 % of 21.
    econ = df[(df["school_id"] == "0070411") & (df["school_year"] == "2015-16")
              & (df["group_type"] == "economically_disadvantaged")]
    ed = econ[econ["group_value"] == "Economically disadvantaged"].iloc[0]
    assert ed["students"] == 85
    assert ed["chronic_absence_rate"] == pytest.approx((14.8 * 64 + 0.0 * 21) / 85
                                                       / 100)
    assert ed["chronically_absent"] == 9
    assert "combined" in ed["note"]
    not_ed = econ[econ["group_value"] == "Not economically disadvantaged"].iloc[0]
    assert not_ed["chronic_absence_rate"] == pytest.approx(0.019)
    assert not_ed["students"] == 418


@real
def test_filter_district_by_code_and_name(read):
    df, _ = read
    by_code = filter_district(df, "0010011")
    assert set(by_code["district_name"]) == {"Andover School District"}
    assert len(filter_district(df, "10011")) == len(by_code)
    assert len(filter_district(df, "andover")) == len(by_code)
    assert set(by_code["school_year"]) == set(YEARS)

    hartford = filter_district(df, "Hartford")  # whole name beats East Hartford
    assert set(hartford["district_name"]) == {"Hartford School District"}


@real
def test_filter_district_unknown_or_ambiguous_name_raises(read):
    df, _ = read
    with pytest.raises(ValueError) as err:
        filter_district(df, "Andovr")
    assert "No district matches 'Andovr'" in str(err.value)
    assert "Andover School District" in str(err.value)

    with pytest.raises(ValueError, match="matches 2 districts") as err:
        filter_district(df, "Achievement First")
    assert "2880013" in str(err.value)


# --- synthetic exports with the EdSight quirks --------------------------------------

TITLE = '"Chronic Absenteeism, {year}"\r\n", All Schools, All Students"\r\n\r\n'
HEADER = '"District","District Code","School","School Code","% Chronically Absent"\r\n'


def _row(i: int, rate: str) -> str:
    return (f'"Town {i} School District","=""{i:05d}11""","Town {i} School",'
            f'"=""{i:04d}111""",{rate}\r\n')


def _export(folder: Path, rates: list[str]) -> Path:
    """Write a one-year EdSight folder: school, state and enrollment files."""
    absent, enrol = folder / "chronic_absenteeism", folder / "enrollment"
    absent.mkdir(parents=True)
    enrol.mkdir()
    body = "".join(_row(i, r) for i, r in enumerate(rates, start=1))
    (absent / "chronic-absenteeism__2015-16_all-schools_all-students.csv").write_bytes(
        (TITLE.format(year="2015-16") + HEADER + body + "\r\n").encode())
    (absent / "chronic-absenteeism__2015-16__all-students_ct.csv").write_bytes(
        b'"Chronic Absenteeism, 2015-16"\r\n"State of Connecticut, All Students"\r\n'
        b'\r\n"Organization","% Chronically Absent"\r\n"State of Connecticut",9.6\r\n'
        b"\r\n")
    counts = "".join(
        f'"Town {i} School District","=""{i:05d}11""","Town {i} School",'
        f'"=""{i:04d}111""",{100 + i}\r\n' for i in range(1, len(rates) + 1))
    (enrol / "enrollment__2015-16_all-schools_all-students.csv").write_bytes(
        ('"Student Counts by School and Year"\r\n"All Districts, All Schools"\r\n'
         '"2015-16"\r\n\r\n"District","District Code","School","School Code",'
         '"Count"\r\n' + counts + "\r\n").encode())
    return folder


def test_synthetic_export_quirks(tmp_path):
    folder = _export(tmp_path, ["12.5", '"*"', "0.0"])
    ledger = QualityLedger()
    df = read_ct_edsight(folder, ledger)
    schools = df[df["level"] == "school"].set_index("school_id")
    assert list(schools.index) == ["0001111", "0002111", "0003111"]  # zeros kept
    assert schools.loc["0001111", "chronic_absence_rate"] == pytest.approx(0.125)
    assert schools.loc["0001111", "students"] == 101
    assert schools.loc["0001111", "chronically_absent"] == round(0.125 * 101)
    assert bool(schools.loc["0002111", "suppressed_at_source"])
    assert pd.isna(schools.loc["0002111", "chronic_absence_rate"])
    assert schools.loc["0003111", "chronic_absence_rate"] == 0.0  # a real zero
    assert not bool(schools.loc["0003111", "suppressed_at_source"])
    state_rate = df.loc[df["level"] == "state", "chronic_absence_rate"]
    assert state_rate.tolist() == [pytest.approx(0.096)]
    assert ledger.is_balanced()


def test_one_bad_rate_is_set_aside_with_column_and_value(tmp_path):
    folder = _export(tmp_path, ["10.0"] * 60 + ["n/a"])
    ledger = QualityLedger()
    df = read_ct_edsight(folder, ledger)
    assert (df["level"] == "school").sum() == 60
    entry = ledger.entries[
        "ct-edsight:chronic-absenteeism__2015-16_all-schools_all-students"]
    (reason,) = entry.set_aside
    assert "% Chronically Absent" in reason and "'n/a'" in reason
    assert entry.examples[0]["row"] == 4 + 61  # 3 title lines, header on line 4
    # The school with no usable rate leaves its enrollment row unused.
    enrol = ledger.entries["ct-edsight:enrollment__2015-16_all-schools_all-students"]
    assert enrol.rows_set_aside == 1
    assert ledger.is_balanced()


def test_many_bad_rates_stop_the_run(tmp_path):
    folder = _export(tmp_path, ["10.0"] * 10 + ["110"] * 3)
    with pytest.raises(DataContractError) as err:
        read_ct_edsight(folder, QualityLedger())
    message = str(err.value)
    assert "chronic-absenteeism__2015-16_all-schools_all-students.csv" in message
    assert "line 15" in message and "'110'" in message
    assert "% Chronically Absent" in message and "0-100" in message


def test_wrong_year_in_title_and_missing_folder_stop_the_run(tmp_path):
    with pytest.raises(DataContractError, match="not found"):
        read_ct_edsight(tmp_path)
    folder = _export(tmp_path / "x", ["10.0"])
    path = (folder / "chronic_absenteeism"
            / "chronic-absenteeism__2015-16_all-schools_all-students.csv")
    path.write_bytes(path.read_bytes().replace(b"2015-16", b"2014-15", 1))
    with pytest.raises(DataContractError, match="do not name the school year"):
        read_ct_edsight(folder)
