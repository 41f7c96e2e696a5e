"""The notebooks, executed for real: Papermill batches and nbval on the defaults."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys

import pytest

from analysis import paths
from analysis.cli import build_jobs
from analysis.pipeline import prepare_run
from analysis.sample import generate_sample_district
from analysis.settings import load_settings

pytestmark = pytest.mark.notebooks

SAMPLE_AS_OF = "2026-11-30"
STUDENT_ID = re.compile(r"ST\d{6}")


@pytest.fixture(scope="module")
def small_sample_run(tmp_path_factory):
    """A small sample district (1,500 students), prepared as of the sample's date."""
    folder = tmp_path_factory.mktemp("sample")
    generate_sample_district(folder, n_students=1500)
    settings = load_settings(source="student-files", data_dir=str(folder))
    return prepare_run(settings, as_of=dt.date.fromisoformat(SAMPLE_AS_OF),
                       out_root=tmp_path_factory.mktemp("processed"))


def _run(run, audience, out_dir, schools):
    from analysis.batch import run_batch

    jobs = build_jobs(run, audience, only=schools)
    return run_batch(jobs, out_dir, workers=2, progress=False, cwd=paths.NOTEBOOKS_DIR)


def test_staff_reports_for_two_schools(small_sample_run, tmp_path):
    schools = [u["id"] for u in small_sample_run.units()[:2]]
    result = _run(small_sample_run, "staff", tmp_path, schools)
    assert result.ok, result.failed

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    index = (tmp_path / "index.html").read_text()
    for school in schools:
        entry = manifest["jobs"][f"school-{school}"]
        # Trend, bands, grades and groups: four charts.
        assert entry["n_images"] >= 4
        html = (tmp_path / "html" / f"school-{school}.html").read_text()
        assert "load_report_data" not in html and "processed_dir =" not in html
        for heading in ("Headline", "Data quality", "Definition, population and source",
                        "Students to act on"):
            assert heading in html
        assert f"school-{school}.html" in index
    assert manifest["jobs"]["district-summary"]["n_images"] >= 2
    assert manifest["run_info"]["inputs"]  # input checksums recorded


def test_public_report_shows_no_student_identifier(small_sample_run, tmp_path):
    school = small_sample_run.units()[0]["id"]
    result = _run(small_sample_run, "public", tmp_path, [school])
    assert result.ok, result.failed
    pages = list((tmp_path / "html").glob("*.html"))
    assert {p.name for p in pages} >= {f"school-{school}.html",
                                      f"equity-school-{school}.html"}
    for page in pages:
        text = page.read_text()
        assert not STUDENT_ID.search(text), f"student id in {page.name}"
        if page.name.startswith("school-"):
            assert "never shown in public reports" in text


@pytest.fixture(scope="module")
def default_sample_run():
    """The run the notebooks' default parameters point at (made as `make reports`
    would)."""
    target = paths.PROCESSED_DIR / "sample" / SAMPLE_AS_OF
    if not (target / "run.json").exists():
        if not (paths.SAMPLE_DIR / "sample_meta.json").exists():
            generate_sample_district(paths.SAMPLE_DIR)
        prepare_run(load_settings(source="sample"),
                    as_of=dt.date.fromisoformat(SAMPLE_AS_OF))
    return target


def test_notebooks_run_with_their_default_parameters(default_sample_run):
    # nbval runs each committed notebook top to bottom with the parameters cell as
    # committed; --nbval-lax fails on errors only (outputs are not committed).
    notebooks = [str(paths.NOTEBOOKS_DIR / n) for n in
                 ("school_report.ipynb", "district_summary.ipynb")]
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-current-env", *notebooks],
        cwd=paths.PROJECT_ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTEST_ADDOPTS": ""},
    )
    assert completed.returncode == 0, (completed.stdout[-3000:]
                                       + completed.stderr[-2000:])
    assert " passed" in completed.stdout


def test_committed_notebooks_are_clean():
    from analysis.notebooks_hygiene import problems
    import nbformat

    for path in paths.NOTEBOOKS_DIR.rglob("*.ipynb"):
        assert problems(nbformat.read(path, as_version=4)) == [], path
