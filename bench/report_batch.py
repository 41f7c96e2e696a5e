"""Benchmark the report batch: Papermill's floor, warm vs fresh kernels, 1 vs 2
workers, and the school reports of a synthetic 1,000-school state.

Every part runs back to back in one process, so the ratios it prints come from
one run on one machine (timings on a shared machine are noisy; compare ratios).

Parts (``--parts``, default all):

``floor``
    Serially (one worker): Papermill's own floor, ``papermill.execute_notebook``
    on a notebook holding only the school report's parameters and imports, with a
    new kernel each time; the same imports-only notebook through ``run_batch``
    with warm kernels; and the real school report through ``run_batch`` with
    fresh and with warm kernels. Per-report cost = wall time / reports.
``workers``
    The same school reports with 1 and with 2 workers, warm and fresh.
``layout``
    Reading one school's slice (headline, trend, tier list) from the synthetic
    state written as the pipeline wrote it until 2026-12-04 (unsorted, one row
    group) and as it writes it now (sorted by unit in small row groups).
``scale``
    Every school report of the synthetic state (``--schools``, default 1,000)
    with 2 warm workers, as ``make reports`` runs them (HTML, manifest, index).
    The district summary is left out: it reads the whole state and is one job.

The synthetic state replicates the 20 schools of a processed sample run (20
schools per synthetic district, ids like ``S101-007``); it is labelled
``synthetic`` in its ``run.json``. Its files are written in the work folder,
never in ``data/``.

Run from the project root::

    .venv/bin/python bench/report_batch.py                 # everything, ~30 min
    .venv/bin/python bench/report_batch.py --parts floor,workers --reports 12
    .venv/bin/python bench/report_batch.py --parts scale --schools 200
    .venv/bin/python bench/report_batch.py --parts scale --scale-reports 100

Results are printed as Markdown and written to ``<work>/results.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import papermill

from analysis import paths, report
from analysis.batch import ReportJob, run_batch
from analysis.cli import build_jobs
from analysis.log import configure_logging, logger
from analysis.pipeline import ProcessedRun, load_processed, write_table

SAMPLE_AS_OF = "2026-11-30"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts and print their results as Markdown."""
    args = _parser().parse_args(argv)
    configure_logging(logging.WARNING)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    results: dict = {"machine": _machine(), "args": vars(args), "parts": {}}

    base = _base_run(args.base, work)
    # Written as prepare_run writes a run: sorted by unit in small row groups.
    state = make_synthetic_run(base, args.schools, work / "state-sorted-layout",
                               layout="sorted")
    print(f"# Report batch benchmark, {dt.datetime.now():%Y-%m-%d %H:%M}\n")
    print(_machine_line(results["machine"]) + "\n")

    runners = {"floor": _part_floor, "workers": _part_workers,
               "layout": _part_layout, "scale": _part_scale}
    for part in parts:
        if part not in runners:
            raise SystemExit(f"unknown part {part!r}; choose from {sorted(runners)}")
        load_before = os.getloadavg()[0]
        outcome = runners[part](args, work, base, state)
        outcome["load_average_before"] = round(load_before, 2)
        outcome["load_average_after"] = round(os.getloadavg()[0], 2)
        results["parts"][part] = outcome
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="floor,workers,layout,scale")
    parser.add_argument("--base", help="processed run to replicate (20-school sample)")
    parser.add_argument("--work", default="/tmp/report-batch-bench",
                        help="folder for the synthetic state and the reports")
    parser.add_argument("--schools", type=int, default=1000)
    parser.add_argument("--scale-reports", type=int, default=None,
                        help="run only the first N school reports in the scale part "
                             "(default: every school of the state)")
    parser.add_argument("--scale-layout", choices=("unsorted", "sorted"),
                        default="sorted",
                        help="state layout the scale part reads (see "
                             "make_synthetic_run)")
    parser.add_argument("--reports", type=int, default=10,
                        help="reports per measurement in the floor part")
    parser.add_argument("--worker-reports", type=int, default=30,
                        help="reports per measurement in the workers part")
    parser.add_argument("--notebook", default=str(paths.NOTEBOOKS_DIR
                                                  / "school_report.ipynb"),
                        help="the school report notebook to run (default: the "
                             "project's)")
    return parser


# ------------------------------------------------------------------ the data


def _base_run(base: str | None, work: Path) -> ProcessedRun:
    """The processed sample run to replicate; made in ``work`` when none exists."""
    if base:
        return load_processed(Path(base))
    default = paths.PROCESSED_DIR / "sample" / SAMPLE_AS_OF
    if (default / "run.json").exists():
        return load_processed(default)
    made = work / "processed" / "student-files" / SAMPLE_AS_OF
    if (made / "run.json").exists():
        return load_processed(made)

    # The project has no sample run yet: make one here (a few minutes).
    from analysis.pipeline import prepare_run
    from analysis.sample import generate_sample_district
    from analysis.settings import load_settings

    logger.warning("no processed sample run found; generating one in %s", work)
    generate_sample_district(work / "raw")
    settings = load_settings(source="student-files", data_dir=str(work / "raw"))
    return prepare_run(settings, as_of=dt.date.fromisoformat(SAMPLE_AS_OF),
                       out_root=work / "processed")


def make_synthetic_run(base: ProcessedRun, n_schools: int, out: Path,
                       layout: str = "sorted") -> ProcessedRun:
    """Replicate the schools of ``base`` into a synthetic state of ``n_schools``.

    Parameters
    ----------
    base : ProcessedRun
        A student-level processed run with one district (the sample).
    n_schools : int
        Schools in the synthetic state; each copy of ``base`` is one district.
    out : Path
        Folder of the synthetic run (replaced).
    layout : {"sorted", "unsorted"}
        ``"unsorted"`` writes the Parquet files as ``prepare_run`` did until
        2026-12-04 (``DataFrame.to_parquet``: rows in copy order, one row group up
        to about a million rows); ``"sorted"`` as it writes them now
        (:func:`analysis.pipeline.write_table`: sorted by unit, small row groups).

    Returns
    -------
    ProcessedRun
        The synthetic run. Its ``run.json`` has ``synthetic`` set to a sentence
        saying what it is. Interventions are not copied (no report reads them).
    """
    if (out / "run.json").exists():
        run = load_processed(out)
        if run.info.get("synthetic_schools") == n_schools:
            return run
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    schools = [u for u in base.units() if u["level"] == "school"]
    base_district = schools[0]["district_id"]
    copies = math.ceil(n_schools / len(schools))
    frames: dict[str, list[pd.DataFrame]] = {}
    sources = {name: pd.read_parquet(base.folder / f"{name}.parquet")
               for name in ("aggregate", "public", "students", "modality")}
    units = []
    for copy in range(1, copies + 1):
        chosen = schools[: n_schools - (copy - 1) * len(schools)]
        school_ids = {u["id"]: f"{u['id']}-{copy:03d}" for u in chosen}
        district_id = f"SYN{copy:03d}"
        district_name = f"Synthetic district {copy:03d}"
        for name, frame in sources.items():
            frames.setdefault(name, []).append(
                _copy_units(name, frame, school_ids, base_district, district_id,
                            district_name))
        units += [u | {"id": school_ids[u["id"]], "name": f"{u['name']} {copy:03d}",
                       "district_id": district_id, "district_name": district_name}
                  for u in chosen]

    for name, parts in frames.items():
        frame = pd.concat(parts, ignore_index=True)
        if layout == "sorted":
            write_table(frame, out / f"{name}.parquet")
        else:
            frame.to_parquet(out / f"{name}.parquet", index=False)
    shutil.copy(base.folder / "quality.json", out / "quality.json")
    info = dict(base.info) | {
        "units": units,
        "synthetic": (f"SYNTHETIC: {n_schools} schools made by copying the "
                      f"{len(schools)} schools of {base.folder} into {copies} "
                      f"districts, for benchmarking only ({layout} layout)."),
        "synthetic_schools": n_schools,
    }
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    return load_processed(out)


def _copy_units(name: str, frame: pd.DataFrame, school_ids: dict[str, str],
                base_district: str, district_id: str,
                district_name: str) -> pd.DataFrame:
    """One copy of the base district's rows, with new school and district ids."""
    if "unit_id" in frame:  # students, modality: one unit id per row
        is_school = frame["level"] == "school"
        keep = ~is_school | frame["unit_id"].isin(list(school_ids))
        copy = frame[keep].copy()
        copy["unit_id"] = copy["unit_id"].map(
            lambda unit: school_ids.get(unit, district_id if unit == base_district
                                        else unit))
        return copy
    keep = (frame["level"] != "school") | frame["school_id"].isin(list(school_ids))
    copy = frame[keep & (frame["level"] != "state")].copy()
    copy["school_id"] = copy["school_id"].map(school_ids)
    copy["district_id"] = district_id
    copy["district_name"] = district_name
    if "school_name" in copy:
        copy["school_name"] = copy["school_name"] + f" {district_id[-3:]}"
    return copy


# --------------------------------------------------------------------- parts


def _part_floor(args, work: Path, base: ProcessedRun, state: ProcessedRun) -> dict:
    """Papermill's floor against the school report, serially, in one run."""
    n = args.reports
    imports_only = _imports_only_notebook(Path(args.notebook), work)
    jobs = _school_jobs(base, n, args.notebook)
    parameters = jobs[0].parameters
    out = work / "floor"
    shutil.rmtree(out, ignore_errors=True)

    # 1. Papermill alone, a new kernel per notebook, nothing exported.
    (out / "bare").mkdir(parents=True)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    for index in range(n):
        papermill.execute_notebook(
            str(imports_only), str(out / "bare" / f"imports-{index}.ipynb"),
            parameters=parameters, kernel_name="python3", progress_bar=False,
            request_save_on_cell_execute=False, cwd=str(paths.NOTEBOOKS_DIR))
    bare = (time.perf_counter() - started) / n
    bare_cpu = (_cpu_seconds() - cpu_before) / n

    # 2-4. Through run_batch with one worker.
    import_jobs = [ReportJob(f"imports-{i}", "imports", imports_only, parameters)
                   for i in range(n)]
    warm_imports = _batch(import_jobs, out / "warm-imports", 1, "warm")
    fresh = _batch(jobs, out / "fresh", 1, "fresh")
    warm = _batch(jobs, out / "warm", 1, "warm")
    result = {
        "reports": n,
        "papermill_floor_s": round(bare, 2),
        "papermill_floor_cpu_s": round(bare_cpu, 2),
        "warm_imports_only_s": warm_imports["per_report_s"],
        "fresh_school_report_s": fresh["per_report_s"],
        "warm_school_report_s": warm["per_report_s"],
        "warm_school_report_steady_s": warm["steady_s"],
        "fresh": fresh,
        "warm": warm,
    }
    _print_table(
        f"Per report, one worker, {n} reports each (wall time / reports)",
        [("Papermill floor: imports-only notebook, new kernel, no export", bare,
          bare_cpu),
         ("imports-only notebook, run_batch, warm kernel",
          warm_imports["per_report_s"], warm_imports["cpu_per_report_s"]),
         ("school report, run_batch, fresh kernels", fresh["per_report_s"],
          fresh["cpu_per_report_s"]),
         ("school report, run_batch, warm kernel", warm["per_report_s"],
          warm["cpu_per_report_s"]),
         ("school report, warm, after the first (median execute + export)",
          warm["steady_s"], None)],
        reference=bare, reference_name="floor")
    return result


def _part_workers(args, work: Path, base: ProcessedRun, state: ProcessedRun) -> dict:
    """1 against 2 workers, warm and fresh, on the same reports."""
    n = args.worker_reports
    jobs = _school_jobs(state, n, args.notebook)
    out = work / "workers"
    rows, result = [], {"reports": n}
    for engine in ("warm", "fresh"):
        for workers in (1, 2):
            outcome = _batch(jobs, out / f"{engine}-{workers}", workers, engine)
            result[f"{engine}_{workers}"] = outcome
            label = f"{engine}, {workers} worker(s): wall {outcome['wall_s']:.1f} s"
            rows.append((label, outcome["per_report_s"], outcome["cpu_per_report_s"]))
        result[f"{engine}_speedup"] = round(
            result[f"{engine}_1"]["wall_s"] / result[f"{engine}_2"]["wall_s"], 2)
    result["warm_vs_fresh_2_workers"] = round(
        result["fresh_2"]["wall_s"] / result["warm_2"]["wall_s"], 2)
    _print_table(f"{n} school reports of the synthetic state", rows,
                 reference=rows[0][1], reference_name="warm, 1 worker")
    print(f"speed-up from 2 workers: warm {result['warm_speedup']}x, "
          f"fresh {result['fresh_speedup']}x; warm over fresh with 2 workers: "
          f"{result['warm_vs_fresh_2_workers']}x\n")
    return result


def _part_layout(args, work: Path, base: ProcessedRun, state: ProcessedRun) -> dict:
    """One school's slice from the state file as written today and sorted."""
    unsorted_state = make_synthetic_run(base, args.schools,
                                        work / "state-unsorted-layout",
                                        layout="unsorted")
    schools = [u["id"] for u in state.units()[:: max(1, len(state.units()) // 20)]]
    timings = {}
    for label, run in (("old layout (unsorted, one row group)", unsorted_state),
                       ("sorted by unit, row groups of 5,000", state)):
        started = time.perf_counter()
        for school in schools:
            data = report.load_report_data(run.folder, "staff")
            report.headline(data, school)
            report.trend(data, school)
            report.tier_list(data, school)
        timings[label] = (time.perf_counter() - started) / len(schools)
    rows = [(label, value, None) for label, value in timings.items()]
    _print_table(f"Reading one school's slice of a {args.schools}-school state "
                 "(headline, trend, tier list; in-process)", rows,
                 reference=rows[0][1], reference_name="old layout")
    return {"schools_sampled": len(schools),
            **{label: round(value, 3) for label, value in timings.items()}}


def _part_scale(args, work: Path, base: ProcessedRun, state: ProcessedRun) -> dict:
    """Every school report of the synthetic state with 2 warm workers."""
    if args.scale_layout == "unsorted":
        state = make_synthetic_run(base, args.schools, work / "state-unsorted-layout",
                                   layout="unsorted")
    jobs = _school_jobs(state, args.scale_reports or args.schools, args.notebook)
    outcome = _batch(jobs, work / "scale", 2, "warm")
    outcome["layout"] = args.scale_layout
    outcome["state_schools"] = args.schools
    print(f"## {len(jobs)} school reports of a {args.schools}-school state "
          f"({args.scale_layout} layout), 2 warm workers\n")
    print(f"wall {outcome['wall_s']:.0f} s ({outcome['wall_s'] / 60:.1f} min), "
          f"{outcome['per_report_s']:.2f} s per report, {outcome['failed']} failed, "
          f"kernels started: {outcome['kernels_started']}; CPU "
          f"{outcome['cpu_per_report_s']:.2f} s per report (all processes); median "
          f"execute {outcome['execute_median_s']} s a report\n")
    return outcome


# ------------------------------------------------------------------ helpers


def _school_jobs(run: ProcessedRun, n: int, notebook: str) -> list[ReportJob]:
    """The first ``n`` school reports of ``run`` (no district summary)."""
    jobs = [job for job in build_jobs(run, "staff") if job.group == "school"]
    return [dataclasses.replace(job, notebook=Path(notebook)) for job in jobs[:n]]


def _imports_only_notebook(notebook: Path, work: Path) -> Path:
    """The school report cut down to its parameters cell and its import lines."""
    nb = nbformat.read(notebook, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            cells.append(cell)
            continue
        lines = [line for line in cell.source.splitlines()
                 if line.startswith(("import ", "from "))]
        if lines:
            cell.source = "\n".join(lines)
            cells.append(cell)
    nb.cells = cells
    path = work / "imports_only.ipynb"
    nbformat.write(nb, path)
    return path


def _batch(jobs: list[ReportJob], out: Path, workers: int, engine: str) -> dict:
    """Run a batch into a clean folder and summarise its timings.

    ``cpu_s`` is the CPU time of this process, its workers and their kernels
    (user + system; the machine's other load does not add to it).
    """
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = _cpu_seconds()
    result = run_batch(jobs, out, workers=workers, progress=False, engine=engine,
                       cwd=paths.NOTEBOOKS_DIR)
    cpu = _cpu_seconds() - cpu_before
    entries = list(result.statuses.values())
    steady = [(e["execute_seconds"] or 0) + (e["export_seconds"] or 0)
              for e in entries if (e.get("kernel") or {}).get("notebooks", 1) > 1]
    kernels = {(e.get("kernel") or {}).get("log") for e in entries}
    executes = [e["execute_seconds"] for e in entries if e.get("execute_seconds")]
    return {
        "reports": len(jobs),
        "workers": workers,
        "engine": engine,
        "wall_s": result.wall_seconds,
        "per_report_s": round(result.wall_seconds / len(jobs), 3),
        "steady_s": round(statistics.median(steady), 3) if steady else None,
        "execute_median_s": (round(statistics.median(executes), 3) if executes
                             else None),
        "failed": len(result.failed),
        "kernels_started": len(kernels - {None}) if engine == "warm" else len(jobs),
        "cpu_s": round(cpu, 1),
        "cpu_per_report_s": round(cpu / len(jobs), 3),
    }


def _cpu_seconds() -> float:
    """User + system time of this process and of every finished descendant."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _print_table(title: str, rows: list[tuple[str, float, float | None]],
                 reference: float, reference_name: str) -> None:
    """Rows of (label, wall seconds per report, CPU seconds per report or None)."""
    print(f"## {title}\n")
    print(f"| measurement | wall s | vs {reference_name} | CPU s |")
    print("|---|---:|---:|---:|")
    for label, value, cpu in rows:
        cpu_text = "" if cpu is None else f"{cpu:.2f}"
        print(f"| {label} | {value:.2f} | {value / reference:.2f}x | {cpu_text} |")
    print()
    sys.stdout.flush()


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "papermill": papermill.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _machine_line(machine: dict) -> str:
    return (f"Machine: {machine['cpus']} CPUs, {machine['platform']}, Python "
            f"{machine['python']}, papermill {machine['papermill']}; load average "
            f"at start {machine['load_average']} (shared machine).")


if __name__ == "__main__":
    sys.exit(main())
