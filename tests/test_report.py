"""Processed runs and the report functions the notebooks call, on the tiny district."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

import tiny_district
from analysis import report
from analysis.cli import build_jobs, main
from analysis.pipeline import load_processed, prepare_run
from analysis.settings import load_settings


@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A processed run of the tiny district as of 30 September 2026."""
    folder = tiny_district.write(tmp_path_factory.mktemp("tiny"))
    settings = load_settings(source="student-files", data_dir=str(folder))
    return prepare_run(settings, as_of=dt.date(2026, 9, 30),
                       out_root=tmp_path_factory.mktemp("processed"))


@pytest.fixture(scope="module")
def staff(processed):
    return report.load_report_data(processed.folder, "staff")


@pytest.fixture(scope="module")
def public(processed):
    return report.load_report_data(processed.folder, "public")


class TestProcessedRun:
    def test_files_and_provenance(self, processed):
        names = {p.name for p in processed.folder.iterdir()}
        assert {"aggregate.parquet", "public.parquet", "students.parquet", "quality.json",
                "run.json", "modality.parquet"} <= names
        info = json.loads((processed.folder / "run.json").read_text())
        assert set(info["inputs"]) == {"attendance.csv", "calendar.csv",
                                       "enrollments.csv", "schools.csv", "students.csv"}
        assert all(len(v) == 64 for v in info["inputs"].values())  # sha256
        assert info["parameters"]["profile"] == "attendance-works"
        assert info["code"]["version"]
        assert [u["id"] for u in info["units"]] == ["A", "B"]

    def test_public_release_holds_no_student_rows(self, processed):
        public = pd.read_parquet(processed.folder / "public.parquet")
        assert "student_id" not in public.columns
        # Every cell of the tiny district has 10 or fewer students.
        assert public["suppressed"].all()
        assert public["chronic_absence_rate"].isna().all()

    def test_load_processed_explains_a_missing_run(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="make reports"):
            load_processed(tmp_path)


class TestReportFunctions:
    def test_headline(self, staff):
        h = report.headline(staff, "A")
        assert h["rate"] == pytest.approx(3 / 7)
        assert h["parent_rate"] == pytest.approx(2 / 7)   # the district
        assert h["last_year_rate"] == pytest.approx(1.0)  # s4 alone, 30 Sep 2025
        assert h["change_pp"] == pytest.approx(100 * (3 / 7 - 1))
        assert "42.9%" in h["sentence"] and "Tiny District" in h["sentence"]

    def test_bands_add_up_to_eligible_students(self, staff):
        bands = report.bands(staff, "A")
        assert bands["students"].tolist() == [1, 3, 2, 1]

    def test_grades_in_school_order(self, staff):
        assert report.by_grade(staff, "A")["grade"].tolist() == ["1", "2", "3", "4", "5"]

    def test_tier_list_for_staff(self, staff):
        tiers = report.tier_list(staff, "A")
        assert sorted(tiers["student_id"]) == ["s1", "s3", "s4", "s6"]
        assert tiers.set_index("student_id").loc["s4", "why"] == "chronic last year"
        assert tiers.iloc[0]["tier"] == "Tier 3"

    def test_public_never_gets_student_rows(self, public):
        assert public.students is None
        with pytest.raises(PermissionError):
            report.tier_list(public, "A")
        assert report.bands(public, "A").empty
        assert report.by_modality(public, "A").empty

    def test_public_headline_is_withheld(self, public):
        h = report.headline(public, "A")
        assert h["rate"] is None and "suppressed" in h["sentence"]

    def test_unknown_school_lists_known_ids(self, staff):
        with pytest.raises(KeyError, match="Known ids: A, B"):
            report.unit_info(staff, "Z")

    def test_parameters_must_match_the_run(self, staff):
        with pytest.raises(ValueError, match="as_of='2026-10-31'"):
            report.check_parameters(staff, "student-files", "2026-10-31", "attendance-works")

    def test_definition_box_states_everything(self, staff):
        box = report.definition_box(staff, "A")
        for part in ("Definition.", "Population.", "As of.", "30 September 2026",
                     "Source.", "Code."):
            assert part in box

    def test_overview_and_movers(self, staff):
        overview = report.school_overview(staff)
        assert overview["id"].tolist() == ["A", "B"]   # highest rate first
        assert overview.loc[0, "rate_last_year"] == pytest.approx(1.0)


class TestCommandLine:
    def test_jobs_one_per_school_then_the_summary_then_equity(self, processed):
        jobs = build_jobs(processed, "staff")
        assert [j.name for j in jobs] == [
            "school-A", "school-B", "district-summary",
            "equity-district", "equity-school-A", "equity-school-B"]
        assert {j.group for j in jobs[3:]} == {"equity"}
        assert jobs[3].parameters["school"] == ""
        assert jobs[0].parameters["school"] == "A"
        assert jobs[0].parameters["processed_dir"] == str(processed.folder)

    def test_unknown_school_is_an_error(self, processed):
        with pytest.raises(ValueError, match="No unit"):
            build_jobs(processed, "staff", only=["Z"])

    def test_missing_data_folder_exits_2_with_advice(self, tmp_path, caplog):
        code = main(["prepare", "--source", "student-files", "--data",
                     str(tmp_path / "nowhere")])
        assert code == 2
        assert "does not exist" in caplog.text


def test_tables_are_written_sorted_by_unit_and_read_by_unit(tmp_path):
    """write_table sorts by unit (stably) in small row groups; slices are unchanged."""
    import pyarrow.parquet as pq

    from analysis.pipeline import ROW_GROUP_ROWS, read_table, unit_filters, write_table

    n = 3 * ROW_GROUP_ROWS
    frame = pd.DataFrame({
        "level": ["school"] * (n - 20) + ["district"] * 10 + ["state"] * 10,
        "school_id": [f"S{i % 97:03d}" for i in range(n - 20)] + [None] * 20,
        "district_id": ["D1"] * (n - 10) + ["all"] * 10,
        "row": range(n),
    })
    write_table(frame, tmp_path / "aggregate.parquet")
    assert pq.ParquetFile(tmp_path / "aggregate.parquet").num_row_groups >= 3
    written = pd.read_parquet(tmp_path / "aggregate.parquet")
    assert list(written["level"].drop_duplicates()) == ["district", "school", "state"]
    unit = {"level": "school", "id": "S005", "district_id": "D1"}
    got = read_table(tmp_path / "aggregate.parquet", filters=unit_filters(unit))
    wanted = frame[((frame["level"] == "school") & (frame["school_id"] == "S005"))
                   | (frame["level"] != "school")]
    # The same rows, each unit's in their original order.
    for level in ("school", "district", "state"):
        assert got.loc[got["level"] == level, "row"].tolist() == \
            wanted.loc[wanted["level"] == level, "row"].tolist()
