"""Benchmark the metrics step against a bare DuckDB aggregate and plain pandas.

For each size (daily attendance rows), in ONE run and back to back, each in its own
process so its peak memory (RSS) is its own:

* ``bare``: a bare DuckDB two-level aggregate (per student and school, then per
  school) straight from the attendance Parquet files;
* ``pipeline``: the full metrics step (:func:`analysis.engine.scan_parquet` +
  :func:`analysis.aggregate.build_aggregate`: days enrolled, days absent,
  eligibility, chronic flag, bands, tiers at every as-of point, the aggregate table
  by school, grade and group);
* ``pandas``: a plain pandas implementation (read, merge, group by at each as-of
  point), up to ``--pandas-max`` rows.

Data come from :func:`analysis.bigdata.generate_large_district` into
``bench/results/data/<size>`` (generated once, kept). Raw results are appended to
``bench/results/results.csv``; the table in ``bench/README.md`` and the plot
``bench/scaling.png`` are rewritten from this run.

Run ``make bench`` (sizes 1e6 1e7 1e8) or ``make bench SIZES="1e6 1e7 1e8 1e9"``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
AS_OF = dt.date(2026, 11, 30)
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"


def measure_bare(folder: Path, threads: int, memory_limit: str) -> dict:
    import duckdb

    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    glob = folder / "attendance" / "*.parquet"
    started = time.perf_counter()
    rows = con.sql(f"""
        SELECT school_id, count(*) AS students,
               sum(CASE WHEN absent / n_days >= 0.1 THEN 1 ELSE 0 END) AS chronic
        FROM (SELECT student_id, school_id, count(*) AS n_days,
                     sum(CASE WHEN category IN ('excused', 'unexcused', 'suspension')
                         THEN 1 ELSE 0 END) AS absent
              FROM read_parquet('{glob}') GROUP BY ALL)
        GROUP BY ALL""").fetchall()
    return {"seconds": time.perf_counter() - started, "output_rows": len(rows)}


def measure_pipeline(folder: Path, threads: int, memory_limit: str) -> dict:
    from analysis.aggregate import build_aggregate
    from analysis.definitions import load_definition
    from analysis.engine import connect, scan_parquet
    from analysis.settings import EngineSettings, load_settings

    spill = RESULTS / "spill"
    settings = load_settings().model_copy(update={"engine": EngineSettings(
        threads=threads, memory_limit=memory_limit, temp_directory=str(spill))})
    started = time.perf_counter()
    con = connect(settings.engine)
    run = build_aggregate(scan_parquet(folder, con), settings, load_definition(),
                          as_of=AS_OF, source="bench", con=con)
    # student_rows: student facts at the as-of date, one per student and unit
    # (school and district), so about twice the students.
    return {"seconds": time.perf_counter() - started,
            "output_rows": len(run.aggregate), "student_rows": len(run.students),
            "steps": run.seconds}


def measure_pandas(folder: Path, threads: int, memory_limit: str) -> dict:
    """Plain pandas: merge calendar and enrollments, then group by at each point."""
    import pandas as pd

    started = time.perf_counter()
    att = pd.read_parquet(folder / "attendance")
    cal = pd.read_parquet(folder / "calendar.parquet")
    enr = pd.read_parquet(folder / "enrollments.parquet")
    students = pd.read_parquet(folder / "students.parquet").drop(columns="grade")
    for frame, columns in ((att, ["date"]), (cal, ["date"]),
                           (enr, ["entry_date", "exit_date"])):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column])
    calendar_columns = ["school_id", "date", "instructional", "instructional_minutes"]
    att = att.merge(cal[calendar_columns],
                    on=["school_id", "date"], how="left")
    att = att[att["instructional"].fillna(False).astype(bool)
              & (att["date"] <= pd.Timestamp(AS_OF))]
    att = att.merge(enr, on=["student_id", "school_id"])
    att = att[(att["date"] >= att["entry_date"])
              & (att["date"] <= att["exit_date"].fillna(pd.Timestamp(AS_OF)))]
    absent = att["category"].isin(["excused", "unexcused", "suspension"])
    share = (att["minutes_missed"] / att["instructional_minutes"]).clip(upper=1)
    share = share.fillna((att["fraction_missed"] >= 0.5).astype(float)
                         .where(att["fraction_missed"].notna(), 1.0))
    att["share"] = share.where(absent, 0.0)
    att = att.sort_values("share").drop_duplicates(
        ["student_id", "school_id", "date"], keep="last")
    att["year"] = att["date"].dt.year - (att["date"].dt.month < 7)
    points = [p for p in pd.date_range("2025-08-31", AS_OF, freq="ME")] + [
        pd.Timestamp(AS_OF)]
    frames = []
    for point in points:
        year = point.year - (point.month < 7)
        rows = att[(att["year"] == year) & (att["date"] <= point)]
        facts = rows.groupby(["student_id", "school_id"]).agg(
            days=("share", "size"), absent=("share", "sum"), grade=("grade", "last"))
        facts = facts[facts["days"] >= 10].reset_index()
        facts = facts.merge(students, on="student_id")
        facts["chronic"] = facts["absent"] / facts["days"] >= 0.1
        for group in ["grade", "race_ethnicity", "gender", "english_learner",
                      "disability", "economically_disadvantaged", "homeless", "foster"]:
            frames.append(facts.groupby(["school_id", group]).agg(
                students=("chronic", "size"), chronic=("chronic", "sum")))
    return {"seconds": time.perf_counter() - started,
            "output_rows": sum(len(f) for f in frames)}


MEASURES = {"bare": measure_bare, "pipeline": measure_pipeline,
            "pandas": measure_pandas}


def peak_rss_gb() -> float:
    """This process's peak resident memory since it started (``VmHWM``).

    Read from ``/proc`` rather than ``getrusage``, whose figure would include the
    memory of the parent at the time it forked this process.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def _child(method: str, folder: Path, threads: int, memory_limit: str) -> dict:
    """Run one measurement in a fresh process, which reports its own peak RSS."""
    command = [sys.executable, __file__, "--measure", method, "--folder", str(folder),
               "--threads", str(threads), "--memory-limit", memory_limit]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        return {"method": method, "error": f"exit status {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["method"] = method
    return result


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 ** 2
    import duckdb
    import ibis

    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, DuckDB "
            f"{duckdb.__version__}, Ibis {ibis.__version__}")


def _step_table(results: list[dict]) -> list[str]:
    """The pipeline's own step timings (``AggregateRun.seconds``), one column a size.

    The profile behind the pipeline's figure: which steps grow with the rows.
    """
    runs = sorted((r for r in results if r["method"] == "pipeline" and "steps" in r),
                  key=lambda r: r["rows"])
    if not runs:
        return []
    names = list(dict.fromkeys(name for r in runs for name in r["steps"]))
    lines = ["Pipeline steps, seconds (`AggregateRun.seconds`, same run):", "",
             "| step | " + " | ".join(f"{r['size']:.0e}".replace("+0", "")
                                      for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for name in names:
        cells = [format(r["steps"][name], ".1f") if name in r["steps"] else "-"
                 for r in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def results_table(results: list[dict], command: str) -> str:
    """The Markdown results and step tables of one run."""
    when = max(r["at"] for r in results).replace("T", " ")[:16]
    lines = [f"Machine: {machine()}.", "",
             f"Command: `{command}` ({when}; one run, figures side by side).", "",
             "| daily rows | students | DuckDB memory limit | bare DuckDB s "
             "| pipeline s | pipeline / bare | pipeline peak RSS GB | pandas s "
             "| pandas / pipeline | pandas peak RSS GB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size in sorted({r["rows"] for r in results}):
        by = {r["method"]: r for r in results if r["rows"] == size}
        bare, pipe = by.get("bare", {}), by.get("pipeline", {})
        pand = by.get("pandas", {})

        def fmt(value, spec=".1f"):
            return format(value, spec) if isinstance(value, int | float) else "-"

        ratio = pipe.get("seconds", 0) / bare["seconds"] if "seconds" in pipe else None
        speedup = (pand["seconds"] / pipe["seconds"]
                   if "seconds" in pand and "seconds" in pipe else None)
        lines.append(
            f"| {size:,} | {pipe.get('n_students', by['bare'].get('n_students', 0)):,} "
            f"| {pipe.get('memory_limit', '-')} | {fmt(bare.get('seconds'), '.2f')} "
            f"| {fmt(pipe.get('seconds', pipe.get('error')))} "
            f"| {fmt(ratio)} | {fmt(pipe.get('peak_rss_gb'), '.2f')} "
            f"| {fmt(pand.get('seconds'))} | {fmt(speedup)} "
            f"| {fmt(pand.get('peak_rss_gb'), '.2f')} |")
    lines += ["", *_step_table(results)]
    return "\n".join(lines)


def write_outputs(results: list[dict], command: str) -> None:
    """Rewrite the results table in bench/README.md and the plot."""
    import matplotlib

    matplotlib.use("Agg")  # a script, not a notebook kernel
    import matplotlib.pyplot as plt

    table = results_table(results, command)
    readme = BENCH / "README.md"
    text = readme.read_text()
    start, end = text.index(MARK_START), text.index(MARK_END)
    readme.write_text(text[:start + len(MARK_START)] + "\n" + table + "\n" + text[end:])

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, style in (("pipeline", "o-"), ("bare", "s--"), ("pandas", "^:")):
        points = sorted((r["rows"], r["seconds"]) for r in results
                        if r["method"] == method and "seconds" in r)
        if points:
            ax.plot(*zip(*points, strict=True), style, label=method)
    pipe = sorted((r["rows"], r["seconds"]) for r in results
                  if r["method"] == "pipeline" and "seconds" in r)
    if len(pipe) > 1:
        x0, y0 = pipe[0]
        xs = [x for x, _ in pipe]
        ax.plot(xs, [y0 * x / x0 for x in xs], color="grey", lw=0.8,
                label="linear from the smallest size")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("daily attendance rows")
    ax.set_ylabel("seconds (wall clock)")
    ax.set_title("Metrics step on one 2-core machine (one run)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(BENCH / "scaling.png", dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    parser.add_argument("--pandas-max", type=float, default=1e7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB",
                        help="DuckDB memory limit (pipeline and bare)")
    parser.add_argument("--no-write", action="store_true",
                        help="print the tables only; leave bench/README.md and the "
                             "plot as they are (make bench-quick)")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:
        result = MEASURES[args.measure](args.folder, args.threads, args.memory_limit)
        result["peak_rss_gb"] = peak_rss_gb()
        print(json.dumps(result))
        return 0

    from analysis.bigdata import generate_large_district
    from analysis.log import configure_logging

    configure_logging()
    results = []
    for size in args.sizes:
        folder = RESULTS / "data" / f"{size:.0e}".replace("+0", "")
        meta_file = folder / "meta.json"
        if not meta_file.exists():
            generate_large_district(folder, size)
        meta = json.loads(meta_file.read_text())
        methods = ["bare", "pipeline"] + (["pandas"] if size <= args.pandas_max else [])
        limit = args.memory_limit
        for method in methods:
            result = _child(method, folder, args.threads, limit)
            result.update(rows=meta["sizes"]["attendance"], size=size,
                          n_students=meta["n_students"], memory_limit=limit,
                          at=dt.datetime.now().isoformat(timespec="seconds"))
            print(json.dumps(result), flush=True)
            results.append(result)
    with (RESULTS / "results.csv").open("a") as handle:
        for r in results:
            handle.write(json.dumps(r) + "\n")
    sizes = " ".join(f"{s:g}" for s in args.sizes)
    command = (f"python bench/run_bench.py --sizes {sizes} "
               f"--memory-limit {args.memory_limit}")
    print("\n" + results_table(results, command), flush=True)
    if args.no_write:
        print("\n(--no-write: bench/README.md and bench/scaling.png left as they were)")
    else:
        write_outputs(results, command)
        print(f"\nwrote the tables into {BENCH / 'README.md'} and the plot into "
              f"{BENCH / 'scaling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
