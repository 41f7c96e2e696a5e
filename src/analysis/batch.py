"""Run many parameterised report notebooks with Papermill and export them to HTML.

One Python process drives a small pool of worker processes. Each worker executes a
notebook in-process with ``papermill.execute_notebook`` (never the CLI, which pays
2-3 s of imports per call, STACK P1) and exports the executed notebook to
self-contained HTML without code. Layout written under ``out_dir``::

    notebooks/<name>.ipynb   executed notebook (also written when a cell fails)
    html/<name>.html         report without code (only for jobs that succeeded)
    logs/<name>.log          the worker's stderr/stdout for that job, and the
                             kernel's with fresh kernels
    logs/kernels/*.log       a warm kernel's own stderr/stdout, one file a kernel
    index.html               every report, grouped by ``ReportJob.group``
    manifest.json            run provenance plus one entry per job

One failing notebook never stops the batch. The manifest and index are rewritten
(atomically) as jobs finish, at most every ``SAVE_INTERVAL`` seconds and always at
the end or on an interruption, so an interrupted run still leaves both, and
``run_batch(..., only_failed=True)`` picks up where it stopped.

Two engines run the notebooks. ``"fresh"`` is papermill's own: a new kernel per
notebook, paying kernel start, library imports and shutdown (about 4.3 s, STACK
section 2) every time. ``"warm"`` (the default) keeps one long-lived kernel per
worker and, before each notebook, resets it to a clean namespace: see
:class:`WarmKernelEngine` for what is reset and what is not. Papermill still
injects the parameters, writes the error banner and
``metadata.papermill.exception``, and applies ``execution_timeout``; a kernel that
dies, times out or fails its reset is replaced.

``manifest.json`` holds ``run_info`` (provenance of the latest run: parameters,
input checksums, code version), ``runs`` (one entry per call: start and finish
time, jobs run, and the ``run_info`` of earlier calls) and ``jobs``, one entry per
job name: title, group, notebook, parameters, ``status`` ("ok", "failed" or
"pending" while running or after an interruption), ``error`` (first line of the
message and the cell's execution count), ``warnings``, ``attempts``,
``execute_seconds``, ``export_seconds``, ``n_images``, ``outputs`` (paths
relative to ``out_dir``), ``kernel`` (the engine and, for a warm kernel, its
number in the worker, how many notebooks it had run including this one, its
process id and log, and why it replaced the previous one), ``run_id`` and
``finished_utc``.

Scripts that call :func:`run_batch` need the usual ``if __name__ == "__main__":``
guard: when the caller runs several threads, workers come from a fork server,
which imports the calling script's main module like "spawn" does.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import logging
import multiprocessing
import multiprocessing.util
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
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbconvert import HTMLExporter
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger as papermill_logger
from papermill.utils import merge_kwargs, remove_args
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

#: Engines: "warm" reuses one kernel per worker, "fresh" starts one per notebook.
ENGINES = ("warm", "fresh")

#: The engine used when ``run_batch`` is given none. The environment variable
#: ``ANALYSIS_REPORT_ENGINE`` overrides it, e.g. ``ANALYSIS_REPORT_ENGINE=fresh
#: make reports`` to fall back to a new kernel per notebook.
DEFAULT_ENGINE = "warm"

#: A warm kernel is replaced after this many notebooks. This bounds memory growth
#: and any state a reset cannot reach; a new kernel costs about 4 s.
WARM_KERNEL_MAX_NOTEBOOKS = 100

#: Seconds a warm kernel's reset between two notebooks may take before the kernel
#: is replaced instead.
WARM_RESET_TIMEOUT = 60

#: Modules a warm kernel imports when it starts, before it records the state that
#: every reset restores (matplotlib's settings with the inline backend active).
WARM_PRELOAD = ("matplotlib.pyplot",)

#: Top-level packages a reset always unloads, even when installed in
#: site-packages: a report's own code must start fresh for every notebook.
WARM_ALWAYS_UNLOAD = (__name__.partition(".")[0],)

#: Seconds between two rewrites of the manifest and the index while a batch runs
#: (both are rewritten in full, so saving after every job of a 1,000-job batch
#: would cost the parent quadratic time).
SAVE_INTERVAL = 2.0

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
    stat = notebook.stat()
    n_tagged, declared = _declared_parameters(
        str(notebook.resolve()), stat.st_mtime_ns, stat.st_size
    )
    if not n_tagged:
        raise ValueError(
            f"{notebook.name} has no cell tagged 'parameters', so injected values "
            "could be overwritten by later cells (STACK P5). Tag the cell that "
            "holds the literal defaults 'parameters'."
        )

    warnings = []
    if n_tagged > 1:
        warnings.append(
            f"{notebook.name} has {n_tagged} cells tagged 'parameters'; "
            "papermill injects after the first one only"
        )
    for key in parameters:
        if key not in declared:
            warnings.append(
                f"unknown parameter {key!r} for {notebook.name}, which declares "
                f"{sorted(declared)}"
            )
    return warnings


@functools.lru_cache(maxsize=64)
def _declared_parameters(
    path: str, mtime_ns: int, size: int
) -> tuple[int, frozenset[str]]:
    """Cells tagged ``parameters`` and the names they declare, read once per version.

    A batch checks the same notebook for every school; the key includes the
    file's modification time and size so an edited notebook is read again.
    """
    nb = nbformat.read(path, as_version=4)
    n_tagged = sum("parameters" in cell.metadata.get("tags", []) for cell in nb.cells)
    if not n_tagged:
        return 0, frozenset()
    with _quiet_papermill():
        return n_tagged, frozenset(papermill.inspect_notebook(path))


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
    engine: str | None = None,
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
    engine : {"warm", "fresh"}, optional
        ``"warm"`` runs every notebook of a worker in one long-lived kernel, reset
        to a clean namespace before each notebook (see :class:`WarmKernelEngine`);
        ``"fresh"`` starts a new kernel per notebook. By default
        ``ANALYSIS_REPORT_ENGINE`` if set, else :data:`DEFAULT_ENGINE`.

    Returns
    -------
    BatchResult
        ``ok`` is False when any job in the manifest failed.

    Raises
    ------
    ValueError
        If job names are duplicated or not file-safe, ``workers < 1`` or the
        engine is unknown.
    FileNotFoundError
        If ``only_failed`` is set and ``out_dir`` has no ``manifest.json``.

    Notes
    -----
    A job fails, without stopping the others, when a cell raises, when papermill
    flags an exception in the notebook metadata (STACK P11), when the notebook has
    no ``parameters`` cell, or when the HTML export fails. A kernel that fails to
    start (STACK P7) is retried once; a cell error never is. A cell running past
    ``execution_timeout`` fails its job, and a warm kernel is then replaced.
    Workers get
    ``MPLCONFIGDIR`` and ``IPYTHONDIR`` under ``out_dir.parent / ".cache"`` when
    they are not set (STACK P29), and never ``MPLBACKEND`` (STACK P6).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    engine = _choose_engine(engine)
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
        "engine": engine,
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
            "running %d notebooks with %d workers (%s kernels) into %s",
            len(runnable),
            min(workers, len(runnable)),
            engine,
            out_dir,
        )
        settings = {"execution_timeout": execution_timeout, "cwd": cwd}
        _run_pool(runnable, out_dir, manifest, workers, progress, engine, settings)

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


def _choose_engine(engine: str | None) -> str:
    """The engine to use: the argument, else the environment, else the default."""
    chosen = engine or os.environ.get("ANALYSIS_REPORT_ENGINE") or DEFAULT_ENGINE
    if chosen not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {chosen!r}")
    return chosen


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
    engine: str,
    settings: dict,
) -> None:
    """Run jobs in worker processes, updating the manifest as each one finishes.

    ``settings`` holds ``execution_timeout`` and ``cwd`` for :func:`_task`.
    """
    entries = manifest["jobs"]
    last_save = time.perf_counter()
    context = _pool_context()
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)),
        mp_context=context,
        initializer=_init_worker,
        initargs=(_worker_environment(out_dir),),
    )
    try:
        futures = {
            pool.submit(_run_job, _task(job, out_dir, engine=engine, **settings)): job
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
                if time.perf_counter() - last_save >= SAVE_INTERVAL:
                    _save(out_dir, manifest)
                    last_save = time.perf_counter()
                bar.update(1)
    except BaseException as error:
        # Drop queued jobs; running ones finish in their workers, unrecorded.
        pool.shutdown(wait=False, cancel_futures=True)
        _save(out_dir, manifest)
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
    replaced = (entry.get("kernel") or {}).get("replaced_because")
    if replaced:
        logger.warning("%s: started a new warm kernel: %s", name, replaced)
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
    job: ReportJob,
    out_dir: Path,
    execution_timeout: int,
    cwd: Path | None,
    engine: str = DEFAULT_ENGINE,
) -> dict:
    """Describe one job for a worker process, as picklable plain data."""
    notebook = job.notebook.resolve()
    return {
        "engine": engine,
        "kernel_log_dir": str(out_dir / "logs" / "kernels"),
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
        ``n_images``, ``outputs``, ``kernel`` (engine, and for a warm kernel its
        number in this worker, how many notebooks it has run including this one,
        its log, and why a new one was started if it replaced another) and, after a
        retry, ``retried_because``.
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
        "kernel": {"engine": task["engine"]},
    }

    # A failed job must not leave the outputs of an earlier run behind.
    output_html.unlink(missing_ok=True)
    output_notebook.unlink(missing_ok=True)

    # Kernel start-up noise (ipykernel's TCP warning...) goes to the job's log.
    with _output_to(Path(task["log"])):
        started = time.perf_counter()
        _WARM_KERNEL.last_use = None
        try:
            nb = _execute_with_retry(task, result)
            error = None
        except Exception as caught:
            nb, error = None, caught
        result["execute_seconds"] = round(time.perf_counter() - started, 2)
        if task["engine"] == "warm" and _WARM_KERNEL.last_use:
            result["kernel"].update(_WARM_KERNEL.last_use)

        # Papermill writes the output notebook even when a cell fails, but not
        # when the kernel died or a cell timed out: then there is none to link.
        if nb is None and output_notebook.exists():
            with contextlib.suppress(Exception):
                nb = nbformat.read(output_notebook, as_version=4)
        if not output_notebook.exists():
            result["outputs"]["notebook"] = None
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
    engine = {}
    if task["engine"] == "warm":
        engine = {
            "engine_name": WARM_ENGINE_NAME,
            "kernel_log_dir": task["kernel_log_dir"],
        }
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
                **engine,
            )
        except papermill.PapermillExecutionError:
            raise
        except Exception as error:
            if attempt == 2 or not is_kernel_start_error(error):
                raise
            result["retried_because"] = _first_line(error)
            sys.stderr.write(f"kernel start failed, retrying once: {error}\n")
    raise AssertionError("unreachable")


# Warm kernels. A worker keeps one kernel and resets it before each notebook.

#: Name under which :class:`WarmKernelEngine` is registered with papermill.
WARM_ENGINE_NAME = "analysis-warm"

#: Name of the helper module a warm kernel keeps in ``sys.modules``.
_HELPER_MODULE = "_analysis_warm_kernel"

#: Source of that helper. It runs inside the kernel, so it may import only what
#: a kernel has: the standard library and IPython.
_HELPER_SOURCE = '''
import builtins
import gc
import importlib
import logging
import os
import random
import sys
import sysconfig
import warnings

from IPython import get_ipython

_state = {}


def _library_roots():
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    roots = [os.path.realpath(paths[key]) for key in keys if key in paths]
    return tuple(os.path.join(root, "") for root in roots)


def _is_user_module(name, module):
    """True for modules that are not the standard library's or site-packages'."""
    if name.partition(".")[0] in _state["always_unload"]:
        return True
    origin = getattr(module, "__file__", None)
    origins = [origin] if origin else list(getattr(module, "__path__", None) or ())
    # Built-in, frozen and in-memory modules (like this one) have no origin.
    return any(not os.path.realpath(o).startswith(_state["roots"]) for o in origins)


def start(preload, always_unload):
    """Import ``preload`` and record the state every reset restores."""
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        # Load the backend now, as a notebook's first figure would: the inline
        # backend then turns on interactive mode and sets its rcParams, and the
        # settings recorded below must include that, or every reset would turn
        # interactive mode off and figures shown at the end of a cell would vanish.
        pyplot.switch_backend(sys.modules["matplotlib"].get_backend())
    _state["roots"] = _library_roots()
    _state["always_unload"] = frozenset(always_unload)
    _state["library"] = set()
    _state["path"] = list(sys.path)
    _state["environ"] = dict(os.environ)
    _state["builtins"] = set(vars(builtins))
    _state["filters"] = list(warnings.filters)
    root = logging.getLogger()
    _state["root_logger"] = (list(root.handlers), root.level)
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _state["rcparams"] = dict(matplotlib.rcParams)
    _skip_repl_redraw()


def _skip_repl_redraw():
    """Drop pyplot's redraw of every figure after each cell.

    With the inline backend that draw is never shown: the inline backend then
    renders each figure again for its PNG. Skipping it saves a third of the
    drawing time and leaves the output unchanged.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.uninstall_repl_displayhook()


def _unload_user_modules():
    unloaded = []
    for name, module in list(sys.modules.items()):
        if module is None or name in _state["library"] or name == __name__:
            continue
        if _is_user_module(name, module):
            del sys.modules[name]
            unloaded.append(name)
        else:
            _state["library"].add(name)
    return unloaded


def _reset_logging(packages):
    root = logging.getLogger()
    handlers, level = _state["root_logger"]
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, item in list(logging.Logger.manager.loggerDict.items()):
        if name.partition(".")[0] in packages and isinstance(item, logging.Logger):
            item.handlers.clear()
            item.filters.clear()
            item.setLevel(logging.NOTSET)
            item.propagate = True
            item.disabled = False


def _reset_libraries():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matplotlib = sys.modules.get("matplotlib")
        if matplotlib is not None and "rcparams" in _state:
            matplotlib.rcParams.update(_state["rcparams"])
        pandas = sys.modules.get("pandas")
        if pandas is not None:
            pandas.reset_option("all")
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    random.seed()


def reset(cwd):
    """Bring the kernel back to the state recorded by ``start``, in ``cwd``."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")
    # The user namespace, In/Out and the execution counter (back to 1).
    get_ipython().reset(new_session=True)
    unloaded = _unload_user_modules()
    sys.path[:] = _state["path"]
    os.environ.clear()
    os.environ.update(_state["environ"])
    for name in set(vars(builtins)) - _state["builtins"]:
        delattr(builtins, name)
    warnings.filters[:] = _state["filters"]
    # Warnings already shown once are shown again, as in a new kernel.
    getattr(warnings, "_filters_mutated", lambda: None)()
    _reset_logging({name.partition(".")[0] for name in unloaded})
    _reset_libraries()
    _skip_repl_redraw()
    importlib.invalidate_caches()
    if cwd:
        os.chdir(cwd)
    # What survives a reset is, by now, library modules and their data: freezing
    # it keeps the cycle collector from scanning it again (IPython's reset runs
    # a full collection, ~0.3 s with pandas and matplotlib loaded, and so do
    # pandas-heavy cells). Frozen objects are still freed when unreferenced.
    gc.freeze()
    return len(unloaded)
'''


class WarmKernelEngine(NBClientEngine):
    """Papermill engine that runs notebooks in the worker's long-lived kernel.

    Registered with papermill as ``"analysis-warm"``; pass
    ``engine_name="analysis-warm"`` and, optionally, ``kernel_log_dir`` (where
    the kernel's own stdout and stderr go) to ``papermill.execute_notebook``.
    Everything else is papermill's: parameter injection, the error banner,
    ``metadata.papermill``, ``execution_timeout``.

    Before each notebook the kernel is reset (the first notebook gets a kernel
    reset right after it started), so every notebook starts from:

    * an empty user namespace, ``In``/``Out`` and execution counts from 1
      (IPython's ``reset(new_session=True)``), so no global or parameter of the
      previous notebook is visible;
    * none of the previous notebook's own modules: every module loaded from
      outside the standard library and site-packages (the editable ``analysis``
      package, a notebook's local helpers), and ``analysis`` wherever it is
      installed, is unloaded and imported afresh. Library modules (pandas,
      matplotlib, seaborn...) stay loaded: that is the point, it saves ~3 s;
    * matplotlib's figures closed and its settings (``rcParams``, including
      seaborn themes) as they were after the kernel started with the inline
      backend, so charts still render inline; pandas options at their
      defaults; ``sys.path``, ``os.environ``, ``builtins``, warning filters
      and the root logger as they were; random generators reseeded;
    * the working folder papermill was given (``cwd``).

    One thing differs from a fresh kernel on purpose: pyplot's post-cell redraw
    of every open figure is switched off, because the inline backend renders each
    figure again for its PNG anyway; the images are byte-identical (tested).

    Not reset (known limits; use ``engine="fresh"`` for notebooks that do these):
    other changes to library modules (module attributes, registries such as
    IPython event callbacks, display formatters or loaded extensions, matplotlib
    unit converters), widgets' open comms, threads, subprocesses and open files a
    notebook leaves behind, and memory a notebook leaks (what survives a reset is
    frozen for the cycle collector, see ``gc.freeze``, so leaked cycles stay). The
    kernel is replaced after :data:`WARM_KERNEL_MAX_NOTEBOOKS` notebooks, and at
    once when a cell times out, the kernel dies, or a reset fails.
    """

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man,
        kernel_name,
        log_output=False,
        stdout_file=None,
        stderr_file=None,
        start_timeout=60,
        execution_timeout=None,
        kernel_log_dir=None,
        **kwargs,
    ):
        """Run the notebook held by ``nb_man`` in this process's warm kernel."""
        # Papermill has already moved into the notebook's working folder.
        km, kc = _WARM_KERNEL.acquire(
            kernel_name, os.getcwd(), start_timeout, kernel_log_dir
        )

        # The same client settings as papermill's own NBClientEngine.
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=papermill_logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        client = PapermillNotebookClient(nb_man, km=km, **final_kwargs)
        client.kc = kc
        try:
            return client.execute()
        except BaseException as error:
            # A timed-out cell may still run and a dead kernel is gone: a cell
            # error never lands here (papermill records it in the notebook).
            _WARM_KERNEL.discard(f"the previous notebook stopped: {_first_line(error)}")
            raise


papermill_engines.register(WARM_ENGINE_NAME, WarmKernelEngine)


class _WarmKernel:
    """The one warm kernel of this process, started on first use.

    Everything runs on jupyter_core's event loop for this thread, the loop
    nbclient uses too, so the async kernel client can be shared with it.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self.kernel_name: str | None = None
        self.log_handle = None
        self.log_path: Path | None = None
        self.kernels_started = 0
        self.notebooks = 0
        self.pending_reason: str | None = None
        self.last_use: dict | None = None
        self.finalizer_registered = False

    def acquire(
        self,
        kernel_name: str,
        cwd: str,
        start_timeout: float,
        log_dir: str | None,
    ) -> tuple:
        """Return a ready kernel manager and client, reset and in ``cwd``."""
        return run_sync(self._acquire)(kernel_name, cwd, start_timeout, log_dir)

    def discard(self, reason: str) -> None:
        """Shut the kernel down now; the next notebook starts a new one."""
        if self.km is not None and self.pid == os.getpid():
            self.pending_reason = reason
            try:
                run_sync(self._shutdown)()
            except Exception:
                # Never hide the error that got us here; forget the kernel (it
                # exits on its own when this worker does, see JPY_PARENT_PID).
                self.km = self.kc = None

    def close(self) -> None:
        """Shut the kernel down when the worker exits."""
        if self.km is not None and self.pid == os.getpid():
            with contextlib.suppress(Exception):
                run_sync(self._shutdown)()

    async def _acquire(
        self, kernel_name: str, cwd: str, start_timeout: float, log_dir: str | None
    ) -> tuple:
        self.last_use = None
        if self.pid != os.getpid():
            # A forked child: the kernel belongs to the parent, never touch it.
            self.__init__()
        reason = self.pending_reason
        self.pending_reason = None
        if self.km is not None:
            reason = await self._reuse_or_reason(kernel_name, cwd)
            if reason is not None:
                await self._shutdown()
        fresh = self.km is None
        if fresh:
            await self._start(kernel_name, cwd, start_timeout, log_dir)
            if reason:
                sys.stderr.write(f"started a new warm kernel: {reason}\n")
        self.notebooks += 1
        process = getattr(self.km.provisioner, "process", None)
        self.last_use = {
            "number": self.kernels_started,
            "notebooks": self.notebooks,
            "pid": getattr(process, "pid", None),
            "log": _relative_log(self.log_path),
        }
        if fresh and reason:
            self.last_use["replaced_because"] = reason
        return self.km, self.kc

    async def _reuse_or_reason(self, kernel_name: str, cwd: str) -> str | None:
        """Reset the kernel for the next notebook, or say why it cannot be reused."""
        if kernel_name != self.kernel_name:
            return f"kernel {kernel_name!r} asked for, {self.kernel_name!r} running"
        if self.notebooks >= WARM_KERNEL_MAX_NOTEBOOKS:
            return f"recycled after {self.notebooks} notebooks"
        if not await self.km.is_alive():
            return "the kernel had died"
        try:
            await self._run(
                f"__import__('sys').modules[{_HELPER_MODULE!r}].reset({cwd!r})",
                WARM_RESET_TIMEOUT,
            )
        except Exception as error:
            return f"reset failed: {_first_line(error)}"
        return None

    async def _start(
        self, kernel_name: str, cwd: str, start_timeout: float, log_dir: str | None
    ) -> None:
        self.kernels_started += 1
        self.notebooks = 0
        if log_dir is not None:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            name = f"worker{os.getpid()}-kernel{self.kernels_started}.log"
            self.log_path = folder / name
            # Closed by _shutdown.
            self.log_handle = open(self.log_path, "ab")  # noqa: SIM115
        self.km = AsyncKernelManager(kernel_name=kernel_name)
        self.kernel_name = kernel_name
        try:
            # The kernel's own output (C libraries, ipykernel warnings) goes to
            # its log rather than to whichever job's log was open when it started.
            # In-memory history, as nbclient gives its kernels.
            await self.km.start_kernel(
                cwd=cwd,
                stdout=self.log_handle,
                stderr=self.log_handle,
                extra_arguments=["--HistoryManager.hist_file=:memory:"],
            )
            self.kc = self.km.client()
            self.kc.start_channels()
            await self.kc.wait_for_ready(timeout=start_timeout)
            self.kc.allow_stdin = False
            await self._run(_helper_setup_code(cwd), max(start_timeout, 120))
        except BaseException:
            await self._shutdown()
            raise
        if not self.finalizer_registered:
            # Workers exit through multiprocessing, which runs these, not atexit.
            multiprocessing.util.Finalize(self, self.close, exitpriority=10)
            self.finalizer_registered = True

    async def _run(self, code: str, timeout: float) -> None:
        """Run helper code silently; raise if it fails or does not finish."""
        reply = await self.kc.execute_interactive(
            code,
            silent=True,
            store_history=False,
            allow_stdin=False,
            timeout=timeout,
            output_hook=_helper_output,
        )
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(
                f"{content.get('ename', 'error')}: {content.get('evalue', '')}"
            )

    async def _shutdown(self) -> None:
        km, kc, handle = self.km, self.kc, self.log_handle
        self.km = self.kc = self.log_handle = None
        if kc is not None:
            with contextlib.suppress(Exception):
                kc.stop_channels()
        if km is not None:
            with contextlib.suppress(Exception):
                await km.shutdown_kernel(now=True)
        if handle is not None:
            handle.close()


def _helper_setup_code(cwd: str) -> str:
    """Code that installs the helper module in a new kernel and resets it once."""
    return (
        "def _install(name, source, preload, always_unload, cwd):\n"
        "    import sys, types\n"
        "    module = types.ModuleType(name)\n"
        "    exec(compile(source, '<' + name + '>', 'exec'), module.__dict__)\n"
        "    sys.modules[name] = module\n"
        "    module.start(preload, always_unload)\n"
        "    module.reset(cwd)\n"
        f"_install({_HELPER_MODULE!r}, {_HELPER_SOURCE!r}, {WARM_PRELOAD!r}, "
        f"{WARM_ALWAYS_UNLOAD!r}, {cwd!r})\n"
    )


def _helper_output(msg: dict) -> None:
    """Send what helper code prints to the job's log (it should print nothing)."""
    if msg["msg_type"] == "stream":
        sys.stderr.write(msg["content"]["text"])
    elif msg["msg_type"] == "error":
        sys.stderr.write("\n".join(msg["content"]["traceback"]) + "\n")


def _relative_log(path: Path | None) -> str | None:
    """A kernel log's path as the manifest gives it: relative to ``out_dir``."""
    if path is None:
        return None
    return f"logs/kernels/{path.name}"


_WARM_KERNEL = _WarmKernel()


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
    exporter = _html_exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    _write_text_atomic(path, body)


@functools.cache
def _html_exporter() -> HTMLExporter:
    """One exporter per worker: it compiles its templates once, not per report."""
    return HTMLExporter(
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )


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
