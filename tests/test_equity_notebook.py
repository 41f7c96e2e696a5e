"""The equity notebook, executed for real in the batch: tiny and sample districts."""

from __future__ import annotations

import datetime as dt
import json
import re
from types import SimpleNamespace

import pandas as pd
import pytest

import tiny_district
from analysis import paths
from analysis.batch import run_batch
from analysis.cli import build_jobs
from analysis.pipeline import load_processed, prepare_run
from analysis.settings import load_settings
from test_equity import sample_run  # noqa: F401  (a fixture: the sample district)

pytestmark = pytest.mark.notebooks

HEADINGS = ("Questions for the attendance team", "Who is chronically absent, by group",
            "How to read this", "Definition, population and source")


def test_the_batch_has_an_equity_report_for_the_district_and_each_unit():
    units = [{"level": "school", "id": i, "name": f"School {i}"} for i in ("S1", "S 2")]
    run = SimpleNamespace(units=lambda: units, as_of="2026-11-30", folder="/x",
                          info={"source": "sample", "definition": "attendance-works"})
    jobs = build_jobs(run, "staff")
    equity_jobs = [job for job in jobs if job.group == "equity"]
    assert [job.name for job in equity_jobs] == [
        "equity-district", "equity-school-S1", "equity-school-S-2"]
    assert all(job.notebook.name == "equity_analysis.ipynb" for job in equity_jobs)
    assert [job.parameters["school"] for job in equity_jobs] == ["", "S1", "S 2"]
    # The school reports and the summary are still there.
    assert {job.group for job in jobs} == {"school", "summary", "equity"}
    only = build_jobs(run, "staff", only=["S1"])
    assert [j.name for j in only if j.group == "equity"] == ["equity-district",
                                                            "equity-school-S1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The hand-built tiny district, with a small interventions log."""
    folder = tiny_district.write(tmp_path_factory.mktemp("tiny"))
    pd.DataFrame({
        "student_id": ["s1", "s3", "s3", "s8"],
        "school_id": ["A", "A", "A", "B"],
        "date": ["2026-09-10", "2026-09-08", "2026-09-20", "2026-09-25"],
        "intervention_type": ["truancy_letter", "home_visit", "court_referral",
                              "family_outreach"],
        "kind": ["punitive", "supportive", "punitive", "supportive"],
    }).to_csv(folder / "interventions.csv", index=False)
    settings = load_settings(source="student-files", data_dir=str(folder))
    return prepare_run(settings, as_of=dt.date(2026, 9, 30),
                       out_root=tmp_path_factory.mktemp("processed"))


def _equity_jobs(run, audience, schools):
    jobs = build_jobs(run, audience, only=schools)
    return [job for job in jobs if job.group == "equity"]


def test_tiny_groups_give_clear_output_and_no_misleading_ratio(tiny_run, tmp_path):
    # Eight students: every group is below the reporting rules. The notebooks must
    # run, say so, and print no ratio, no infinity and no "nan".
    staff = _equity_jobs(tiny_run, "staff", ["A"])
    result = run_batch(staff, tmp_path / "staff", workers=2, progress=False,
                       cwd=paths.NOTEBOOKS_DIR)
    assert result.ok, result.failed
    for job in staff:
        html = (tmp_path / "staff" / "html" / f"{job.name}.html").read_text()
        for heading in HEADINGS:
            assert heading in html, (job.name, heading)
        assert "fewer than 10 chronically absent students in the group" in html
        text = re.sub(r"<[^>]+>", " ", html)
        assert not re.search(r"\b(nan|inf)\b", text), job.name
        assert not re.search(r">\s*flagged\s*<", html)  # no table cell says so

    public = _equity_jobs(tiny_run, "public", [])
    result = run_batch(public, tmp_path / "public", workers=1, progress=False,
                       cwd=paths.NOTEBOOKS_DIR)
    assert result.ok, result.failed
    html = (tmp_path / "public" / "html" / "equity-district.html").read_text()
    assert "in staff reports only" in html
    body = html.split("<main", 1)[1]  # past the stylesheet
    assert not re.search(r"\bs[1-8]\b", re.sub(r"<[^>]+>", " ", body))


def test_sample_district_equity_report_states_the_planted_finding(
        sample_run, tmp_path):  # noqa: F811
    run = load_processed(sample_run)
    jobs = _equity_jobs(run, "staff", [run.units()[0]["id"]])
    result = run_batch(jobs, tmp_path, workers=2, progress=False,
                       cwd=paths.NOTEBOOKS_DIR)
    assert result.ok, result.failed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    # Forest plot, ratios over time, the punitive audit and its bands, supportive.
    assert manifest["jobs"]["equity-district"]["n_images"] >= 4
    html = (tmp_path / "html" / "equity-district.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    # The first finding of the list is the question about the planted disparity.
    findings = html.split("Questions for the attendance team", 1)[1]
    first = re.sub(r"<[^>]+>", " ", re.search(r"<li>(.*?)</li>", findings, re.S)[1])
    assert re.match(r"\s*Black students with similar absence received punitive "
                    r"actions .* times as often as other students", first), first
    assert "Is the referral process applied the same way to every family?" in text
    assert "processed_dir =" not in html  # code is not exported
