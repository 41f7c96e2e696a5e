"""Tests for analysis.batch: parallel Papermill runs, HTML export, manifest, index.

Notebook runs are the slow part (about 1-2 s each for these fixtures), so one
3-job batch per engine is shared by the module and the rerun test works on a copy
of it. Failure handling inside a worker (retry, P11 flag, export failure) is
tested by calling the worker function in-process with papermill replaced by a
fake. Warm kernels get their own batches: state must not leak from one notebook
into the next, dead and timed-out kernels must be replaced, and the outputs must
equal a fresh kernel's.

``TestPerSchoolReads`` checks ``analysis.report``'s sliced reads, which exist for
the batch's sake (a school report must not load a state-wide table).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import zmq
from nbformat.v4 import new_code_cell, new_notebook, new_output

import tiny_district
from analysis import batch, report
from analysis.batch import BatchResult, ReportJob, run_batch, validate_parameters
from analysis.pipeline import prepare_run
from analysis.settings import load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "notebooks"

#: In the source of ok_with_chart.ipynb only; must never reach the HTML.
SOURCE_MARKER = "code-marker-5d1c"
#: Printed by ok_with_chart.ipynb, built at run time so its source lacks it.
PRINTED_MARKER = "printed-marker-S101"


def make_jobs(should_fail: bool = True) -> list[ReportJob]:
    """Two school reports and a district report that fails while asked to."""
    return [
        ReportJob(
            "school-S101",
            "Cedar Grove Elementary (S101)",
            FIXTURES / "ok_with_chart.ipynb",
            {"school_id": "S101"},
        ),
        ReportJob(
            "school-0123",
            "Leading Zero School (0123)",
            FIXTURES / "prints_parameters.ipynb",
            {"school_id": "0123"},
        ),
        ReportJob(
            "district-summary",
            "District summary",
            FIXTURES / "fails.ipynb",
            {"should_fail": should_fail},
            group="district",
        ),
    ]


@pytest.fixture(scope="module", params=batch.ENGINES)
def first_batch(request, tmp_path_factory) -> BatchResult:
    """A 3-job batch in which ``district-summary`` fails, once per engine."""
    out_dir = tmp_path_factory.mktemp(f"batch-{request.param}") / "reports"
    return run_batch(
        make_jobs(), out_dir, workers=2, progress=False, engine=request.param
    )


def read_manifest(out_dir: Path) -> dict:
    return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))


@pytest.mark.notebooks
class TestRunBatch:
    def test_one_failure_does_not_stop_the_others(self, first_batch):
        assert not first_batch.ok
        assert first_batch.failed == ["district-summary"]
        statuses = {name: e["status"] for name, e in first_batch.statuses.items()}
        assert statuses == {
            "school-S101": "ok",
            "school-0123": "ok",
            "district-summary": "failed",
        }

    def test_manifest_lists_every_job(self, first_batch):
        manifest = read_manifest(first_batch.out_dir)
        jobs = manifest["jobs"]
        assert list(jobs) == ["school-S101", "school-0123", "district-summary"]

        failed = jobs["district-summary"]
        assert failed["error"]["message"] == "ValueError: fixture failed on purpose"
        assert failed["error"]["cell"] == 3  # In [3]: after the injected cell
        assert failed["outputs"]["html"] is None
        assert failed["parameters"] == {"should_fail": True}

        ok = jobs["school-S101"]
        assert ok["error"] is None
        assert ok["execute_seconds"] > 0 and ok["export_seconds"] > 0
        assert ok["outputs"] == {
            "notebook": "notebooks/school-S101.ipynb",
            "html": "html/school-S101.html",
            "log": "logs/school-S101.log",
        }

    def test_manifest_holds_provenance(self, first_batch):
        run_info = read_manifest(first_batch.out_dir)["run_info"]
        assert set(run_info["inputs"]) == {
            "ok_with_chart.ipynb",
            "prints_parameters.ipynb",
            "fails.ipynb",
        }
        assert run_info["parameters"]["school-0123"] == {"school_id": "0123"}
        assert run_info["code"]["packages"]["papermill"] == papermill.__version__

    def test_index_links_every_report_with_its_status(self, first_batch):
        index = (first_batch.out_dir / "index.html").read_text(encoding="utf-8")
        links = re.findall(r'href="([^"]+)"', index)
        assert links == [
            "html/school-S101.html",
            "html/school-0123.html",
            "notebooks/district-summary.ipynb",
        ]
        assert "<h2>school</h2>" in index and "<h2>district</h2>" in index
        assert "ValueError: fixture failed on purpose (cell In [3])" in index
        for link in links:
            assert (first_batch.out_dir / link).exists()

    def test_html_shows_outputs_but_no_code(self, first_batch):
        page = (first_batch.out_dir / "html" / "school-S101.html").read_text()
        assert PRINTED_MARKER in page
        assert SOURCE_MARKER not in page
        assert "<title>Cedar Grove Elementary (S101)</title>" in page
        assert not (first_batch.out_dir / "html" / "district-summary.html").exists()

    def test_chart_is_kept(self, first_batch):
        # MPLBACKEND=Agg would drop the chart silently (STACK P6).
        assert first_batch.statuses["school-S101"]["n_images"] >= 1
        assert first_batch.statuses["school-0123"]["n_images"] == 0

    def test_numeric_looking_id_stays_a_string(self, first_batch):
        # STACK P4: "0123" must not arrive as the int 123.
        page = (first_batch.out_dir / "html" / "school-0123.html").read_text()
        assert "school_id='0123' type=str" in page

    def test_failed_notebook_is_kept_with_the_error(self, first_batch):
        path = first_batch.out_dir / "notebooks" / "district-summary.ipynb"
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata.papermill.exception is True

    def test_only_failed_reruns_only_failed_jobs(self, first_batch, tmp_path):
        out_dir = tmp_path / "reports"
        shutil.copytree(first_batch.out_dir, out_dir)
        before = read_manifest(out_dir)["jobs"]
        kept = ["school-S101", "school-0123"]
        mtimes = {
            name: (out_dir / "notebooks" / f"{name}.ipynb").stat().st_mtime_ns
            for name in kept
        }

        result = run_batch(
            make_jobs(should_fail=False),
            out_dir,
            workers=2,
            only_failed=True,
            progress=False,
        )

        assert result.ok and result.failed == []
        manifest = read_manifest(out_dir)
        assert [run["jobs_run"] for run in manifest["runs"]] == [
            ["school-S101", "school-0123", "district-summary"],
            ["district-summary"],
        ]
        for name in kept:
            assert manifest["jobs"][name] == before[name]
            path = out_dir / "notebooks" / f"{name}.ipynb"
            assert path.stat().st_mtime_ns == mtimes[name]
        rerun = manifest["jobs"]["district-summary"]
        assert rerun["status"] == "ok"
        assert rerun["parameters"] == {"should_fail": False}
        assert (out_dir / "html" / "district-summary.html").exists()


# Warm kernels: one kernel per worker, reset before each notebook.


def warm_jobs() -> list[ReportJob]:
    """Jobs run in this order by one worker, so they share kernels."""
    return [
        ReportJob("sets-state", "A", FIXTURES / "sets_state.ipynb", {"marker": "A"}),
        ReportJob("checks-state", "B", FIXTURES / "checks_state.ipynb", {"label": "B"}),
        ReportJob("kills-kernel", "dies", FIXTURES / "kills_kernel.ipynb", {}),
        ReportJob(
            "after-death",
            "ok",
            FIXTURES / "prints_parameters.ipynb",
            {"school_id": "1"},
        ),
        ReportJob("sleeps", "slow", FIXTURES / "sleeps.ipynb", {"seconds": 120}),
        ReportJob(
            "after-timeout", "ok", FIXTURES / "checks_state.ipynb", {"label": "C"}
        ),
    ]


@pytest.fixture(scope="module")
def warm_batch(tmp_path_factory) -> BatchResult:
    """The warm jobs with one worker and a 5-second cell timeout."""
    out_dir = tmp_path_factory.mktemp("warm") / "reports"
    return run_batch(
        warm_jobs(),
        out_dir,
        workers=1,
        progress=False,
        engine="warm",
        execution_timeout=5,
    )


@pytest.mark.notebooks
class TestWarmKernel:
    def test_no_state_leaks_from_one_notebook_into_the_next(self, warm_batch):
        # sets_state.ipynb checks that its probe sees every leftover it made;
        # checks_state.ipynb then fails on any of them (see state_probe.py).
        first = warm_batch.statuses["sets-state"]
        second = warm_batch.statuses["checks-state"]
        assert first["status"] == "ok", first["error"]
        assert second["status"] == "ok", second["error"]

        # Same kernel, so the clean namespace comes from the reset.
        assert first["kernel"]["number"] == second["kernel"]["number"] == 1
        assert (first["kernel"]["notebooks"], second["kernel"]["notebooks"]) == (1, 2)

        # Execution counts restart at 1 as in a new kernel.
        path = warm_batch.out_dir / "notebooks" / "checks-state.ipynb"
        nb = nbformat.read(path, as_version=4)
        counts = [cell.execution_count for cell in nb.cells if cell.cell_type == "code"]
        assert counts == [1, 2, 3, 4]

    def test_charts_render_after_a_reset(self, warm_batch):
        # checks_state.ipynb shows its chart at the end of the cell, without
        # plt.show(), after sets_state.ipynb drew one in the same kernel.
        assert warm_batch.statuses["sets-state"]["n_images"] == 1
        assert warm_batch.statuses["checks-state"]["n_images"] == 1

    def test_a_dead_kernel_is_replaced(self, warm_batch):
        died = warm_batch.statuses["kills-kernel"]
        assert died["status"] == "failed"
        assert "Kernel died" in died["error"]["message"]
        # Papermill writes no notebook then, so the index must not link one.
        assert died["outputs"]["notebook"] is None
        index = (warm_batch.out_dir / "index.html").read_text(encoding="utf-8")
        assert "kills-kernel.ipynb" not in index

        after = warm_batch.statuses["after-death"]
        assert after["status"] == "ok", after["error"]
        assert after["kernel"]["number"] == died["kernel"]["number"] + 1
        assert "Kernel died" in after["kernel"]["replaced_because"]

    def test_a_timed_out_cell_fails_and_its_kernel_is_replaced(self, warm_batch):
        slow = warm_batch.statuses["sleeps"]
        assert slow["status"] == "failed"
        assert "timed out" in slow["error"]["message"]
        assert slow["execute_seconds"] < 60

        # A clean kernel again: checks_state.ipynb finds nothing left over.
        after = warm_batch.statuses["after-timeout"]
        assert after["status"] == "ok", after["error"]
        assert after["kernel"]["number"] == slow["kernel"]["number"] + 1
        assert after["kernel"]["notebooks"] == 1

    def test_no_kernel_outlives_the_batch(self, warm_batch):
        pids = {entry["kernel"]["pid"] for entry in warm_batch.statuses.values()}
        assert len(pids) == 3 and None not in pids
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert alive == []

    def test_kernel_output_goes_to_its_own_log(self, warm_batch):
        entry = warm_batch.statuses["checks-state"]
        assert entry["kernel"]["log"].startswith("logs/kernels/")
        assert (warm_batch.out_dir / entry["kernel"]["log"]).exists()
        manifest = read_manifest(warm_batch.out_dir)
        assert manifest["runs"][-1]["engine"] == "warm"

    def test_warm_outputs_equal_fresh_outputs(self, tmp_path):
        # The second notebook of the warm kernel runs after a reset; text and
        # chart bytes must match a new kernel's, also with the redraw skipped.
        notebook = FIXTURES / "ok_with_chart.ipynb"
        jobs = [
            ReportJob(f"school-{n}", n, notebook, {"school_id": n})
            for n in ("S1", "S2")
        ]
        outputs = {}
        for engine in batch.ENGINES:
            result = run_batch(
                jobs, tmp_path / engine, workers=1, progress=False, engine=engine
            )
            assert result.ok, result.failed
            outputs[engine] = [
                executed_outputs(tmp_path / engine / "notebooks" / f"{job.name}.ipynb")
                for job in jobs
            ]
        assert outputs["warm"] == outputs["fresh"]
        assert all(any("image/png" in o for o in nb) for nb in outputs["warm"])


def executed_outputs(path: Path) -> list[dict]:
    """Every output's text and data, without metadata that varies by run."""
    nb = nbformat.read(path, as_version=4)
    return [
        {"text": output.get("text"), **output.get("data", {})}
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]


class TestEngineChoice:
    def test_unknown_engine_is_rejected(self, tmp_path):
        with pytest.raises(ValueError, match="engine must be one of"):
            run_batch(make_jobs(), tmp_path / "reports", engine="lukewarm")

    def test_environment_chooses_when_the_caller_does_not(self, monkeypatch):
        monkeypatch.setenv("ANALYSIS_REPORT_ENGINE", "fresh")
        assert batch._choose_engine(None) == "fresh"
        assert batch._choose_engine("warm") == "warm"
        monkeypatch.delenv("ANALYSIS_REPORT_ENGINE")
        assert batch._choose_engine(None) == batch.DEFAULT_ENGINE == "warm"


# Per-school reads of analysis.report (they exist for the batch's sake).


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A processed run of the tiny district (schools A and B)."""
    folder = tiny_district.write(tmp_path_factory.mktemp("tiny"))
    settings = load_settings(source="student-files", data_dir=str(folder))
    return prepare_run(
        settings,
        as_of=dt.date(2026, 9, 30),
        out_root=tmp_path_factory.mktemp("processed"),
    )


def school_figures(data: report.ReportData, school: str) -> dict:
    """Everything the school report reads about one school."""
    return {
        "headline": pd.Series(report.headline(data, school)).drop("unit"),
        "trend": report.trend(data, school),
        "bands": report.bands(data, school),
        "grades": report.by_grade(data, school),
        "groups": report.by_group(data, school),
        "tiers": report.tier_list(data, school),
        "box": report.definition_box(data, school),
    }


class TestPerSchoolReads:
    def test_a_school_report_never_loads_whole_tables(self, tiny_run):
        data = report.load_report_data(tiny_run.folder, "staff")
        school_figures(data, "A")
        # The private caches of the whole files stay empty.
        assert data._table is None and data._students is None

    @pytest.mark.parametrize("school", ["A", "B"])
    def test_slices_read_from_disk_equal_slices_of_the_whole_table(
        self, tiny_run, school
    ):
        sliced = school_figures(report.load_report_data(tiny_run.folder), school)
        whole = report.load_report_data(tiny_run.folder)
        assert len(whole.table) and len(whole.students)  # loads both files first
        loaded = school_figures(whole, school)
        for name, value in sliced.items():
            if isinstance(value, pd.DataFrame):
                pd.testing.assert_frame_equal(
                    value.reset_index(drop=True), loaded[name].reset_index(drop=True)
                )
            elif isinstance(value, pd.Series):
                pd.testing.assert_series_equal(value, loaded[name])
            else:
                assert value == loaded[name]

    def test_public_slices_hold_no_student_rows(self, tiny_run):
        data = report.load_report_data(tiny_run.folder, "public")
        assert not data.has_students and data.students is None
        assert report.headline(data, "A")["rate"] is None  # suppressed


class TestRunBatchInputs:
    def test_only_failed_needs_a_previous_manifest(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="only_failed"):
            run_batch(make_jobs(), tmp_path / "reports", only_failed=True)

    @pytest.mark.parametrize("name", ["school S101", "../escape", ""])
    def test_rejects_names_that_are_not_file_safe(self, tmp_path, name):
        job = ReportJob(name, "t", FIXTURES / "fails.ipynb", {})
        with pytest.raises(ValueError, match="file-safe"):
            run_batch([job], tmp_path / "reports")

    def test_rejects_duplicate_names(self, tmp_path):
        job = ReportJob("school-1", "t", FIXTURES / "fails.ipynb", {})
        with pytest.raises(ValueError, match="more than once"):
            run_batch([job, job], tmp_path / "reports")

    def test_notebook_without_parameters_cell_fails_without_running(self, tmp_path):
        job = ReportJob(
            "school-S1", "t", FIXTURES / "no_parameters.ipynb", {"school_id": "S1"}
        )
        result = run_batch([job], tmp_path / "reports", progress=False)
        entry = result.statuses["school-S1"]
        assert entry["status"] == "failed"
        assert entry["attempts"] == 0
        assert "no cell tagged 'parameters'" in entry["error"]["message"]


class TestValidateParameters:
    def test_known_parameters_give_no_warning(self):
        notebook = FIXTURES / "ok_with_chart.ipynb"
        assert validate_parameters(notebook, {"school_id": "S1"}) == []

    def test_unknown_parameter_is_flagged(self):
        notebook = FIXTURES / "ok_with_chart.ipynb"
        warnings = validate_parameters(notebook, {"school_id": "S1", "shcool": 1})
        assert len(warnings) == 1
        assert "'shcool'" in warnings[0]

    def test_missing_parameters_cell_raises(self):
        with pytest.raises(ValueError, match="STACK P5"):
            validate_parameters(FIXTURES / "no_parameters.ipynb", {})


# Worker-side failure handling, run in-process with papermill replaced.


def write_fake_output(task: dict, *, flagged: bool = False) -> nbformat.NotebookNode:
    """Write what papermill would: an executed notebook with one chart."""
    cell = new_code_cell("plot()", execution_count=1)
    cell.outputs = [
        new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": ""})
    ]
    nb = new_notebook(cells=[cell])
    nb.metadata["papermill"] = {"exception": flagged}
    nbformat.write(nb, task["output_notebook"])
    return nb


@pytest.fixture
def task(tmp_path) -> dict:
    """A worker task writing into a fresh output folder."""
    out_dir = tmp_path / "reports"
    for folder in ("notebooks", "html", "logs"):
        (out_dir / folder).mkdir(parents=True)
    job = ReportJob("school-S1", "School S1", FIXTURES / "prints_parameters.ipynb", {})
    return batch._task(job, out_dir, execution_timeout=60, cwd=None)


class TestRunJob:
    def test_kernel_start_race_is_retried_once(self, task, monkeypatch):
        calls = []

        def flaky_execute(*args, **kwargs):
            calls.append(kwargs)
            if len(calls) == 1:
                raise zmq.error.ZMQError(msg="Address already in use")
            return write_fake_output(task)

        monkeypatch.setattr(papermill, "execute_notebook", flaky_execute)
        result = batch._run_job(task)

        assert result["status"] == "ok"
        assert result["attempts"] == 2
        assert "Address already in use" in result["retried_because"]
        assert result["n_images"] == 1
        assert calls[0]["kernel_name"] == "python3"
        assert calls[0]["progress_bar"] is False
        assert calls[0]["request_save_on_cell_execute"] is False
        assert calls[0]["engine_name"] == batch.WARM_ENGINE_NAME

    def test_fresh_engine_is_papermills_own(self, task, monkeypatch):
        calls = []

        def execute(*args, **kwargs):
            calls.append(kwargs)
            return write_fake_output(task)

        monkeypatch.setattr(papermill, "execute_notebook", execute)
        result = batch._run_job(task | {"engine": "fresh"})
        assert result["status"] == "ok"
        assert "engine_name" not in calls[0] and "kernel_log_dir" not in calls[0]
        assert result["kernel"] == {"engine": "fresh"}

    def test_cell_error_is_not_retried(self, task, monkeypatch):
        calls = []

        def failing_execute(*args, **kwargs):
            calls.append(kwargs)
            write_fake_output(task, flagged=True)
            # Even an error text that looks like a kernel race is a cell error.
            raise papermill.PapermillExecutionError(
                4, 2, "boom()", "RuntimeError", "Kernel didn't respond\nmore", []
            )

        monkeypatch.setattr(papermill, "execute_notebook", failing_execute)
        result = batch._run_job(task)

        assert len(calls) == 1
        assert result["status"] == "failed"
        assert result["error"] == {
            "message": "RuntimeError: Kernel didn't respond",
            "cell": 2,
            "cell_index": 4,
        }

    def test_exception_flag_without_raise_fails_the_job(self, task, monkeypatch):
        # STACK P11: a failing magic can leave only metadata.papermill.exception.
        monkeypatch.setattr(
            papermill,
            "execute_notebook",
            lambda *args, **kwargs: write_fake_output(task, flagged=True),
        )
        result = batch._run_job(task)
        assert result["status"] == "failed"
        assert "metadata.papermill.exception" in result["error"]["message"]

    def test_export_failure_fails_the_job(self, task, monkeypatch):
        def broken_export(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(
            papermill, "execute_notebook", lambda *a, **k: write_fake_output(task)
        )
        monkeypatch.setattr(batch, "_export_html", broken_export)
        result = batch._run_job(task)
        assert result["status"] == "failed"
        assert result["error"]["message"] == "HTML export failed: OSError: disk full"
        assert result["outputs"]["html"] is None


class TestWorkerEnvironment:
    def test_caches_go_under_out_dir_parent(self, tmp_path, monkeypatch):
        monkeypatch.delenv("MPLCONFIGDIR", raising=False)
        monkeypatch.delenv("IPYTHONDIR", raising=False)
        env = batch._worker_environment(tmp_path / "reports")
        assert env["MPLCONFIGDIR"] == str(tmp_path / ".cache" / "matplotlib")
        assert env["IPYTHONDIR"] == str(tmp_path / ".cache" / "ipython")
        assert Path(env["MPLCONFIGDIR"]).is_dir()

    def test_existing_settings_are_kept(self, tmp_path, monkeypatch):
        monkeypatch.setenv("MPLCONFIGDIR", "/somewhere/mpl")
        env = batch._worker_environment(tmp_path / "reports")
        assert env["MPLCONFIGDIR"] == "/somewhere/mpl"

    def test_mplbackend_is_not_passed_to_kernels(self, tmp_path, monkeypatch):
        monkeypatch.setenv("MPLBACKEND", "Agg")
        assert "MPLBACKEND" not in batch._worker_environment(tmp_path / "reports")
