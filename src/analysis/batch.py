"""Run many parameterised report notebooks with Papermill and export them to HTML.

One Python process drives a small pool of worker processes. Each worker executes a
notebook in-process with ``papermill.execute_notebook`` (never the CLI, which pays
2-3 s of imports per call, STACK P1) and exports the executed notebook to
self-contained HTML without code. Layout written under ``out_dir``::

    notebooks/<name>.ipynb   executed notebook (also written when a cell fails)
    html/<name>.html         report without code (only for jobs that succeeded)
    logs/<name>.log          the worker's and kernel's stderr/stdout for that job
    index.html               every report, grouped by ``ReportJob.group``
    manifest.json            run provenance plus one entry per job

One failing notebook never stops the batch. The manifest and index are rewritten
(atomically) after every job, so an interrupted run still leaves both, and
``run_batch(..., only_failed=True)`` picks up where it stopped.

``manifest.json`` holds ``run_info`` (provenance of the latest run: parameters,
input checksums, code version), ``runs`` (one entry per call: start and finish
time, jobs run, and the ``run_info`` of earlier calls) and ``jobs``, one entry per
job name: title, group, notebook, parameters, ``status`` ("ok", "failed" or
"pending" while running or after an interruption), ``error`` (first line of the
message and the cell's execution count), ``warnings``, ``attempts``,
``execute_seconds``, ``export_seconds``, ``n_images``, ``outputs`` (paths
relative to ``out_dir``), ``run_id`` and ``finished_utc``.

Scripts that call :func:`run_batch` need the usual ``if __name__ == "__main__":``
guard: when the caller runs several threads, workers come from a fork server,
which imports the calling script's main module like "spawn" does.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import papermill
from nbconvert import HTMLExporter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from analysis import provenance
from analysis.log import logger

#: Kernel used for every notebook, whatever its metadata says (STACK P2, P3).
KERNEL_NAME = "python3"

#: Seconds to wait for a kernel to start (STACK P7, P9).
START_TIMEOUT = 60

#: How worker processes are started. "auto" forks the caller when it runs a
#: single thread (workers then inherit papermill and nbconvert already imported:
#: no ~3 s import each, STACK P1); otherwise it uses "forkserver", which pays
#: that import once per process in a clean server and never forks a threaded
#: parent. Every function a worker runs is module-level with plain-data
#: arguments, so "spawn" and "forkserver" work too.
START_METHOD = "auto"

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.html"
MANIFEST_VERSION = 1

#: Output mimetypes counted as charts.
IMAGE_MIMETYPES = ("image/png", "image/svg+xml")

#: Messages of kernel start-up races that are worth one retry (STACK P7).
KERNEL_START_ERRORS = (
    "Address already in use",
    "Kernel didn't respond",
    "Kernel died before replying to kernel_info",
)

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ReportJob:
    """One report to produce: a notebook and the parameters papermill injects.

    Parameters
    ----------
    name : str
        File-safe slug, unique within a batch, for example ``"school-S101"``. It
        names the executed notebook, the HTML file and the manifest entry.
    title : str
        Human title for the index page and the HTML ``<title>``, for example
        ``"Cedar Grove Elementary (S101)"``.
    notebook : Path
        The source notebook. It needs a cell tagged ``parameters``.
    parameters : dict
        Values injected by papermill. Pass ids as ``str`` (``"0123"``) so they
        stay strings (STACK P4). Keep values JSON-serialisable for the manifest.
    group : str, default "school"
        The index section, for example ``"school"`` or ``"district"``.
    """

    name: str
    title: str
    notebook: Path
    parameters: dict = field(default_factory=dict)
    group: str = "school"


@dataclass
class BatchResult:
    """What a batch produced.

    Attributes
    ----------
    out_dir : Path
        The folder holding ``index.html``, ``manifest.json`` and the reports.
    statuses : dict of str to dict
        Manifest entry per job name (status, error, timings, outputs...).
    failed : list of str
        Names of jobs whose status is not ``"ok"``.
    wall_seconds : float
        Wall-clock duration of the call.
    """

    out_dir: Path
    statuses: dict[str, dict]
    failed: list[str]
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """True when every job in the manifest succeeded."""
        return not self.failed


def validate_parameters(notebook: str | Path, parameters: dict) -> list[str]:
    """Compare parameters with those the notebook declares in its ``parameters`` cell.

    Parameters
    ----------
    notebook : str or Path
        The source notebook.
    parameters : dict
        The parameters that would be injected.

    Returns
    -------
    list of str
        One warning per unknown key (a typo would be silently ignored by the
        notebook), plus one if several cells are tagged ``parameters``. Declared
        parameters that are not given are fine: they keep their defaults.

    Raises
    ------
    ValueError
        If no cell is tagged ``parameters``: papermill would then inject at the top
        and a later assignment would overwrite the value (STACK P5).
    """
    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    tagged = [
        cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])
    ]
    if not tagged:
        raise ValueError(
            f"{notebook.name} has no cell tagged 'parameters', so injected values "
            "could be overwritten by later cells (STACK P5). Tag the cell that "
            "holds the literal defaults 'parameters'."
        )

    with _quiet_papermill():
        declared = papermill.inspect_notebook(str(notebook))
    warnings = []
    if len(tagged) > 1:
        warnings.append(
            f"{notebook.name} has {len(tagged)} cells tagged 'parameters'; "
            "papermill injects after the first one only"
        )
    for key in parameters:
        if key not in declared:
            warnings.append(
                f"unknown parameter {key!r} for {notebook.name}, which declares "
                f"{sorted(declared)}"
            )
    return warnings


@contextlib.contextmanager
def _quiet_papermill() -> Iterator[None]:
    """Drop papermill's INFO records ("Input Notebook: ...") for one call."""
    papermill_logger = logging.getLogger("papermill")

    def above_info(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO

    papermill_logger.addFilter(above_info)
    try:
        yield
    finally:
        papermill_logger.removeFilter(above_info)


def run_batch(
    jobs: list[ReportJob],
    out_dir: Path,
    *,
    workers: int = 2,
    only_failed: bool = False,
    run_info: dict | None = None,
    progress: bool = True,
    execution_timeout: int = 600,
    cwd: Path | None = None,
) -> BatchResult:
    """Execute report notebooks in parallel and export them to HTML without code.

    Parameters
    ----------
    jobs : list of ReportJob
        The reports to produce. Names must be unique and file-safe.
    out_dir : Path
        Output folder; created if needed. Existing reports of the same names are
        overwritten.
    workers : int, default 2
        Worker processes. 2 is the measured optimum on a 2-core machine (STACK 2).
    only_failed : bool, default False
        Read the previous ``manifest.json`` in ``out_dir`` and run only the jobs
        whose previous status was not ``"ok"`` (or that it does not list). The
        entries of the other jobs are kept as they were.
    run_info : dict, optional
        Provenance for the manifest (input checksums, parameters, code version).
        Missing keys are filled from :func:`analysis.provenance.run_record`, with
        the jobs' parameters and the notebooks' checksums.
    progress : bool, default True
        Show a progress bar over finished jobs (only on a terminal).
    execution_timeout : int, default 600
        Seconds one cell may run before the job fails (STACK P9).
    cwd : Path, optional
        Working folder of the kernels. By default each notebook's own folder.

    Returns
    -------
    BatchResult
        ``ok`` is False when any job in the manifest failed.

    Raises
    ------
    ValueError
        If job names are duplicated or not file-safe, or ``workers < 1``.
    FileNotFoundError
        If ``only_failed`` is set and ``out_dir`` has no ``manifest.json``.

    Notes
    -----
    A job fails, without stopping the others, when a cell raises, when papermill
    flags an exception in the notebook metadata (STACK P11), when the notebook has
    no ``parameters`` cell, or when the HTML export fails. A kernel that fails to
    start (STACK P7) is retried once; a cell error never is. Workers get
    ``MPLCONFIGDIR`` and ``IPYTHONDIR`` under ``out_dir.parent / ".cache"`` when
    they are not set (STACK P29), and never ``MPLBACKEND`` (STACK P6).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    _check_jobs(jobs, workers)

    # Decide what to run; a rerun keeps the entries of the jobs that were ok.
    if only_failed:
        entries, runs, to_run = _previous_failures(out_dir, jobs)
    else:
        entries, runs, to_run = {}, [], list(jobs)
    for folder in ("notebooks", "html", "logs"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)

    # Record provenance for this run: the caller's values win over the defaults.
    record = provenance.run_record(
        parameters={job.name: job.parameters for job in to_run},
        inputs=sorted({job.notebook.resolve() for job in to_run}),
    )
    record.update(run_info or {})
    run_id = provenance.utc_now()
    run = {
        "run_id": run_id,
        "started_utc": run_id,
        "finished_utc": None,
        "only_failed": only_failed,
        "workers": workers,
        "jobs_run": [job.name for job in to_run],
    }
    runs.append(run)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "run_info": record,
        "runs": runs,
        "jobs": entries,
    }

    # Check parameters first; a notebook without a parameters cell is not run.
    runnable = _check_parameters(to_run, entries, run_id)
    _save(out_dir, manifest)

    # Run the notebooks; each finished job is written to the manifest at once.
    if runnable:
        logger.info(
            "running %d notebooks with %d workers into %s",
            len(runnable),
            min(workers, len(runnable)),
            out_dir,
        )
        _run_pool(
            runnable, out_dir, manifest, workers, progress, execution_timeout, cwd
        )

    # Summarise, listing every failure at the end where it is easy to find.
    run["finished_utc"] = provenance.utc_now()
    wall_seconds = round(time.perf_counter() - started, 2)
    run["wall_seconds"] = wall_seconds
    _save(out_dir, manifest)
    failed = [name for name, entry in entries.items() if entry["status"] != "ok"]
    logger.info(
        "%d reports: %d ok, %d failed in %.1f s; index: %s",
        len(entries),
        len(entries) - len(failed),
        len(failed),
        wall_seconds,
        out_dir / INDEX_NAME,
    )
    if failed:
        lines = [f"  {name}: {_error_line(entries[name])}" for name in failed]
        logger.error("%d reports failed:\n%s", len(failed), "\n".join(lines))
    return BatchResult(out_dir, entries, failed, wall_seconds)


def _check_jobs(jobs: list[ReportJob], workers: int) -> None:
    """Reject batches that could overwrite each other's files."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    seen = set()
    for job in jobs:
        if not _NAME_PATTERN.match(job.name):
            raise ValueError(
                f"job name {job.name!r} is not file-safe: use letters, digits, "
                "'.', '_' and '-', starting with a letter or digit"
            )
        if job.name in seen:
            raise ValueError(f"job name {job.name!r} appears more than once")
        seen.add(job.name)


def _previous_failures(
    out_dir: Path, jobs: list[ReportJob]
) -> tuple[dict, list, list[ReportJob]]:
    """Entries and runs of the previous manifest, and the jobs that were not ok."""
    previous = _read_manifest(out_dir / MANIFEST_NAME)
    entries = previous["jobs"]
    runs = previous.get("runs", [])

    # The previous run's provenance moves to its own entry in "runs".
    if runs and "run_info" in previous:
        runs[-1].setdefault("run_info", previous["run_info"])

    to_run = [job for job in jobs if entries.get(job.name, {}).get("status") != "ok"]
    _warn_unlisted_failures(entries, jobs)
    logger.info(
        "only_failed: rerunning %d of %d jobs, keeping %d ok",
        len(to_run),
        len(jobs),
        len(jobs) - len(to_run),
    )
    return entries, runs, to_run


def _check_parameters(
    jobs: list[ReportJob], entries: dict, run_id: str
) -> list[ReportJob]:
    """Add a pending entry per job; fail, without running, the invalid ones."""
    runnable = []
    for job in jobs:
        entry = _new_entry(job, run_id)
        entries[job.name] = entry
        try:
            entry["warnings"] = validate_parameters(job.notebook, job.parameters)
        except Exception as error:
            entry["status"] = "failed"
            entry["error"] = {"message": _first_line(error), "cell": None}
            logger.warning("%s: not run: %s", job.name, entry["error"]["message"])
            continue
        for warning in entry["warnings"]:
            logger.warning("%s: %s", job.name, warning)
        runnable.append(job)
    return runnable


def _warn_unlisted_failures(entries: dict, jobs: list[ReportJob]) -> None:
    names = {job.name for job in jobs}
    unlisted = [
        name
        for name, entry in entries.items()
        if entry.get("status") != "ok" and name not in names
    ]
    if unlisted:
        logger.warning(
            "only_failed: %d failed jobs of the previous run are not in this job "
            "list and stay failed: %s",
            len(unlisted),
            ", ".join(unlisted),
        )


def _new_entry(job: ReportJob, run_id: str) -> dict:
    """Build the manifest entry of a job about to run."""
    return {
        "title": job.title,
        "group": job.group,
        "notebook": str(job.notebook),
        "parameters": job.parameters,
        "status": "pending",
        "error": None,
        "warnings": [],
        "attempts": 0,
        "execute_seconds": None,
        "export_seconds": None,
        "n_images": None,
        "outputs": {
            "notebook": f"notebooks/{job.name}.ipynb",
            "html": None,
            "log": f"logs/{job.name}.log",
        },
        "run_id": run_id,
        "finished_utc": None,
    }


def _run_pool(
    jobs: list[ReportJob],
    out_dir: Path,
    manifest: dict,
    workers: int,
    progress: bool,
    execution_timeout: int,
    cwd: Path | None,
) -> None:
    """Run jobs in worker processes, updating the manifest as each one finishes."""
    entries = manifest["jobs"]
    context = _pool_context()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(_worker_environment(out_dir),),
    )
    try:
        futures = {
            pool.submit(_run_job, _task(job, out_dir, execution_timeout, cwd)): job
            for job in jobs
        }
        with (
            _logging_beside_bar(),
            _ProgressBar(
                total=len(futures),
                desc="reports",
                unit="report",
                disable=None if progress else True,
            ) as bar,
        ):
            for future in as_completed(futures):
                job = futures[future]
                try:
                    outcome = future.result()
                except Exception as error:
                    # Only a dead worker process lands here; _run_job catches
                    # everything a notebook can raise.
                    outcome = {
                        "status": "failed",
                        "error": {"message": _first_line(error), "cell": None},
                    }
                entry = entries[job.name]
                entry.update(outcome)
                entry["finished_utc"] = provenance.utc_now()
                _log_outcome(job.name, entry)
                _save(out_dir, manifest)
                bar.update(1)
    except BaseException as error:
        # Drop queued jobs; running ones finish in their workers, unrecorded.
        pool.shutdown(wait=False, cancel_futures=True)
        logger.error(
            "batch stopped (%s): unfinished jobs stay 'pending' in %s; rerun with "
            "only_failed=True",
            type(error).__name__,
            out_dir / MANIFEST_NAME,
        )
        raise
    pool.shutdown(wait=True)


class _ProgressBar(tqdm):
    """tqdm without its monitor thread, so a later batch can still fork."""

    monitor_interval = 0


def _logging_beside_bar() -> contextlib.AbstractContextManager:
    """Route console log records through ``tqdm.write`` so they keep the bar intact.

    Only loggers that already print to the console are redirected: tqdm would
    otherwise add a console handler to a logger that had none.
    """
    consoles = (sys.stdout, sys.stderr)
    loggers = [
        candidate
        for candidate in (logger, logging.getLogger())
        if any(
            isinstance(handler, logging.StreamHandler) and handler.stream in consoles
            for handler in candidate.handlers
        )
    ]
    if not loggers:
        return contextlib.nullcontext()
    return logging_redirect_tqdm(loggers=loggers)


def _log_outcome(name: str, entry: dict) -> None:
    if entry.get("retried_because"):
        logger.warning(
            "%s: kernel failed to start (%s); retried once",
            name,
            entry["retried_because"],
        )
    if entry["status"] == "ok":
        logger.info(
            "%s: ok in %.1f s, %d image outputs",
            name,
            entry["execute_seconds"] + entry["export_seconds"],
            entry["n_images"],
        )
    else:
        logger.warning("%s: failed: %s", name, _error_line(entry))


def _pool_context() -> multiprocessing.context.BaseContext:
    """Choose the multiprocessing context of the worker pool (see START_METHOD)."""
    available = multiprocessing.get_all_start_methods()
    method = START_METHOD
    if method == "auto":
        # Forking a process that runs other threads can deadlock the child.
        single_thread = threading.active_count() == 1
        method = "fork" if single_thread and "fork" in available else "forkserver"
    if method not in available:
        method = "spawn"
    logger.debug("worker start method: %s", method)
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Takes effect when the server starts (once per process): later pools
        # reuse the server, whose imports are already done.
        context.set_forkserver_preload([__name__])
    return context


def _worker_environment(out_dir: Path) -> dict[str, str]:
    """Build the environment of workers and their kernels.

    Workers start from this snapshot rather than from whatever environment the
    fork server had, so they see the caller's environment at call time.
    """
    env = dict(os.environ)
    cache = out_dir.parent / ".cache"
    caches = {"MPLCONFIGDIR": "matplotlib", "IPYTHONDIR": "ipython"}
    for variable, folder_name in caches.items():
        if not env.get(variable):
            folder = cache / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            env[variable] = str(folder)

    # MPLBACKEND=Agg in a kernel silently drops every inline chart (STACK P6).
    if "MPLBACKEND" in env:
        logger.warning(
            "MPLBACKEND=%s is set; not passing it to the report kernels, which need "
            "the inline backend for charts (STACK P6)",
            env.pop("MPLBACKEND"),
        )
    return env


def _task(
    job: ReportJob, out_dir: Path, execution_timeout: int, cwd: Path | None
) -> dict:
    """Describe one job for a worker process, as picklable plain data."""
    notebook = job.notebook.resolve()
    return {
        "name": job.name,
        "title": job.title,
        "notebook": str(notebook),
        "parameters": job.parameters,
        "output_notebook": str(out_dir / "notebooks" / f"{job.name}.ipynb"),
        "output_html": str(out_dir / "html" / f"{job.name}.html"),
        "log": str(out_dir / "logs" / f"{job.name}.log"),
        "cwd": str(Path(cwd).resolve() if cwd is not None else notebook.parent),
        "execution_timeout": execution_timeout,
    }


# Worker side. Everything below runs in worker processes: module-level functions
# and plain-dict arguments, so any start method can pickle them.


def _init_worker(env: dict[str, str]) -> None:
    """Give the worker, and so its kernels, the caller's environment."""
    os.environ.clear()
    os.environ.update(env)


def _run_job(task: dict) -> dict:
    """Execute one notebook and export it; never raises for a notebook problem.

    Returns
    -------
    dict
        The manifest fields: ``status``, ``error``, ``attempts``, timings,
        ``n_images``, ``outputs`` and, after a retry, ``retried_because``.
    """
    output_notebook = Path(task["output_notebook"])
    output_html = Path(task["output_html"])
    result = {
        "status": "failed",
        "error": None,
        "attempts": 0,
        "execute_seconds": None,
        "export_seconds": None,
        "n_images": 0,
        "outputs": {
            "notebook": f"notebooks/{output_notebook.name}",
            "html": None,
            "log": f"logs/{Path(task['log']).name}",
        },
    }

    # A failed job must not leave the HTML of an earlier successful run behind.
    output_html.unlink(missing_ok=True)

    # Kernel start-up noise (ipykernel's TCP warning...) goes to the job's log.
    with _output_to(Path(task["log"])):
        started = time.perf_counter()
        try:
            nb = _execute_with_retry(task, result)
            error = None
        except Exception as caught:
            nb, error = None, caught
        result["execute_seconds"] = round(time.perf_counter() - started, 2)

        # Papermill writes the output notebook even when a cell fails.
        if nb is None and output_notebook.exists():
            with contextlib.suppress(Exception):
                nb = nbformat.read(output_notebook, as_version=4)
        if nb is not None:
            result["n_images"] = count_images(nb)
        if error is not None:
            result["error"] = _describe_error(error)
            return result

        # A failing magic or shell line can leave only this flag (STACK P11).
        if nb.metadata.get("papermill", {}).get("exception"):
            result["error"] = _describe_flagged_notebook(nb)
            return result

        started = time.perf_counter()
        try:
            _export_html(nb, output_html, task["title"])
        except Exception as caught:
            result["error"] = {
                "message": f"HTML export failed: {_first_line(caught)}",
                "cell": None,
            }
            return result
        result["export_seconds"] = round(time.perf_counter() - started, 2)

    result["status"] = "ok"
    result["outputs"]["html"] = f"html/{output_html.name}"
    return result


def _execute_with_retry(task: dict, result: dict) -> nbformat.NotebookNode:
    """Run papermill, retrying once when the kernel failed to start (STACK P7)."""
    for attempt in (1, 2):
        result["attempts"] = attempt
        try:
            return papermill.execute_notebook(
                task["notebook"],
                task["output_notebook"],
                parameters=task["parameters"],
                kernel_name=KERNEL_NAME,
                progress_bar=False,
                request_save_on_cell_execute=False,
                execution_timeout=task["execution_timeout"],
                start_timeout=START_TIMEOUT,
                cwd=task["cwd"],
            )
        except papermill.PapermillExecutionError:
            raise
        except Exception as error:
            if attempt == 2 or not is_kernel_start_error(error):
                raise
            result["retried_because"] = _first_line(error)
            sys.stderr.write(f"kernel start failed, retrying once: {error}\n")
    raise AssertionError("unreachable")


def is_kernel_start_error(error: BaseException) -> bool:
    """Tell whether an exception (or one it chains) is a kernel start-up race.

    Parameters
    ----------
    error : BaseException
        The exception raised by ``papermill.execute_notebook``.

    Returns
    -------
    bool
        True for zmq "Address already in use" and "Kernel didn't respond" style
        failures (STACK P7); False for errors raised by a cell.
    """
    if isinstance(error, papermill.PapermillExecutionError):
        return False
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if any(text in str(error) for text in KERNEL_START_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


def count_images(nb: nbformat.NotebookNode) -> int:
    """Count outputs holding a chart (``image/png`` or ``image/svg+xml``).

    Parameters
    ----------
    nb : NotebookNode
        An executed notebook.

    Returns
    -------
    int
        Outputs with at least one image mimetype; an output carrying both a PNG
        and an SVG counts once.
    """
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if any(mimetype in output.get("data", {}) for mimetype in IMAGE_MIMETYPES)
    )


def _describe_error(error: BaseException) -> dict:
    """Describe an error for the manifest: first line and, for a cell, its number."""
    if isinstance(error, papermill.PapermillExecutionError):
        return {
            "message": _first_line(f"{error.ename}: {error.evalue}"),
            "cell": error.exec_count,
            "cell_index": error.cell_index,
        }
    return {"message": _first_line(error), "cell": None}


def _describe_flagged_notebook(nb: nbformat.NotebookNode) -> dict:
    """Describe a notebook papermill flagged as failed without raising."""
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return {
                    "message": _first_line(f"{output.ename}: {output.evalue}"),
                    "cell": cell.get("execution_count"),
                    "cell_index": index,
                }
    return {
        "message": "papermill flagged an exception (metadata.papermill.exception) "
        "but no cell shows an error",
        "cell": None,
    }


def _export_html(nb: nbformat.NotebookNode, path: Path, title: str) -> None:
    """Write the notebook as self-contained HTML without code (STACK P12)."""
    exporter = HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    _write_text_atomic(path, body)


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, and its kernels', to a file.

    Works at the file-descriptor level because kernels are child processes that
    inherit descriptors 1 and 2, not Python's ``sys.stderr``.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "wb") as handle:
            os.dup2(handle.fileno(), 1)
            os.dup2(handle.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for descriptor, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, descriptor)
            os.close(copy)


# Parent side: manifest and index.


def _read_manifest(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(
            f"only_failed=True needs the manifest of a previous run, but {path} does "
            "not exist; run the batch once without only_failed first"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if "jobs" not in manifest:
        raise ValueError(f"{path} has no 'jobs' entry; is it a batch manifest?")
    return manifest


def _save(out_dir: Path, manifest: dict) -> None:
    """Rewrite the manifest and the index, each atomically."""
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    _write_text_atomic(out_dir / MANIFEST_NAME, text)
    _write_text_atomic(out_dir / INDEX_NAME, render_index(manifest))


def _write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename over ``path``."""
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp creates owner-only files; reports are meant to be shared.
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_index(manifest: dict) -> str:
    """Render the index page: every report grouped by section, with its status.

    Parameters
    ----------
    manifest : dict
        A batch manifest as written to ``manifest.json``.

    Returns
    -------
    str
        A self-contained HTML page. Successful reports link to their HTML; failed
        ones link to the executed notebook and show the one-line error.
    """
    entries = manifest["jobs"]
    groups: dict[str, list[tuple[str, dict]]] = {}
    for name, entry in entries.items():
        groups.setdefault(entry.get("group", "school"), []).append((name, entry))
    n_ok = sum(entry["status"] == "ok" for entry in entries.values())
    code = manifest.get("run_info", {}).get("code", {})
    commit = (code.get("git_commit") or "no git")[:12]
    if code.get("git_dirty"):
        commit += " (uncommitted changes)"

    sections = []
    for group, members in groups.items():
        rows = "\n".join(_index_row(name, entry) for name, entry in members)
        sections.append(
            f"<h2>{html.escape(group)}</h2>\n<table>\n<tr><th>Report</th>"
            f"<th>Status</th><th>Time</th><th>Detail</th></tr>\n{rows}\n</table>"
        )
    return _INDEX_TEMPLATE.format(
        summary=html.escape(
            f"{len(entries)} reports: {n_ok} ok, {len(entries) - n_ok} not ok. "
            f"Last run {manifest['runs'][-1]['started_utc']}, "
            f"analysis {code.get('version', '?')}, commit {commit}."
        ),
        sections="\n".join(sections),
    )


def _index_row(name: str, entry: dict) -> str:
    status = entry["status"]
    seconds = sum(entry.get(key) or 0 for key in ("execute_seconds", "export_seconds"))
    time_text = f"{seconds:.1f} s" if entry.get("execute_seconds") is not None else ""
    title = html.escape(entry.get("title", name))
    outputs = entry.get("outputs", {})
    if status == "ok" and outputs.get("html"):
        link = f'<a href="{html.escape(outputs["html"])}">{title}</a>'
        n_images = entry.get("n_images") or 0
        detail = f"{n_images} chart" + ("" if n_images == 1 else "s")
    elif status == "failed" and outputs.get("notebook") and entry.get("attempts"):
        link = f'<a href="{html.escape(outputs["notebook"])}">{title}</a>'
        detail = html.escape(_error_line(entry))
    else:
        link = title
        detail = html.escape(_error_line(entry)) if entry.get("error") else ""
    return (
        f'<tr class="{html.escape(status)}"><td>{link}</td>'
        f"<td>{html.escape(status)}</td><td>{time_text}</td><td>{detail}</td></tr>"
    )


def _error_line(entry: dict) -> str:
    error = entry.get("error") or {}
    message = error.get("message", entry.get("status", ""))
    if error.get("cell") is not None:
        return f"{message} (cell In [{error['cell']}])"
    return message


def _first_line(value: object) -> str:
    """Return the first non-blank line of an exception's or a string's text."""
    text = value if isinstance(value, str) else str(value)
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if isinstance(value, str):
        return line
    return f"{type(value).__name__}: {line}" if line else type(value).__name__


_INDEX_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd; }}
tr.failed td, tr.pending td {{ background: #fdecea; }}
tr.ok td:nth-child(2) {{ color: #1b7f3b; }}
</style>
</head>
<body>
<h1>Reports</h1>
<p>{summary}</p>
{sections}
</body>
</html>
"""
