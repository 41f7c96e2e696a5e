"""Command line: ``python -m analysis <command>`` (wrapped by the Makefile).

Commands
--------
data      generate the bundled sample district into ``data/raw/sample``
prepare   read a source and write a processed run (the aggregate table and friends)
reports   prepare, then run the school reports and the district summary with Papermill
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import date
from pathlib import Path

from analysis import paths
from analysis.log import configure_logging, logger
from analysis.quality import DataContractError
from analysis.settings import SOURCES, load_settings


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date like 2026-11-30") from exc


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=SOURCES,
                        help="which data to read (default: params/settings.yaml)")
    parser.add_argument("--data", dest="data_dir",
                        help="folder holding the source's files")
    parser.add_argument("--as-of", type=_date, help="year to date up to this date")
    parser.add_argument("--profile", help="definition profile in params/profiles/")
    parser.add_argument("--district",
                        help="keep one district (code or part of its name)")
    parser.add_argument("--strict", action="store_true", default=None,
                        help="stop at the first row that breaks the data contract")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default: params/settings.yaml)")


def _settings(args: argparse.Namespace, **extra):
    overrides = {key: getattr(args, key, None) for key in
                 ("source", "data_dir", "profile", "strict")}
    overrides.update(extra)
    if args.settings:
        return load_settings(args.settings, **overrides)
    return load_settings(**overrides)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "unit"


def command_data(args: argparse.Namespace) -> int:
    from analysis.sample import generate_sample_district

    meta = generate_sample_district(Path(args.out), seed=args.seed,
                                    n_students=args.students, as_of=args.as_of)
    logger.info("sample district written to %s (%s)", args.out,
                ", ".join(f"{k}={v}" for k, v in meta.get("sizes", {}).items()))
    return 0


def command_prepare(args: argparse.Namespace) -> int:
    from analysis.pipeline import prepare_run

    settings = _settings(args)
    run = prepare_run(settings, as_of=args.as_of, district=args.district)
    logger.info("processed run: %s", run.folder)
    return 0


def build_jobs(run, audience: str, only: list[str] | None = None,
               limit: int | None = None) -> list:
    """One school report per unit of the run, then the district summary."""
    from analysis.batch import ReportJob

    units = run.units()
    if only:
        wanted = {str(u) for u in only}
        units = [u for u in units if u["id"] in wanted]
        missing = wanted - {u["id"] for u in units}
        if missing:
            raise ValueError(f"No unit(s) {sorted(missing)} in this run; known ids "
                             f"start with {[u['id'] for u in run.units()[:10]]}")
    if limit:
        units = units[:limit]

    common = {"as_of": run.as_of, "source": run.info["source"],
              "processed_dir": str(run.folder), "profile": run.info["definition"],
              "audience": audience}
    jobs = [
        ReportJob(name=f"{u['level']}-{_slug(u['id'])}",
                  title=f"{u['name']} ({u['id']})",
                  notebook=paths.NOTEBOOKS_DIR / "school_report.ipynb",
                  parameters={"school": u["id"], **common}, group=u["level"])
        for u in units
    ]
    jobs.append(ReportJob(name="district-summary",
                          title="District summary for the principals' meeting",
                          notebook=paths.NOTEBOOKS_DIR / "district_summary.ipynb",
                          parameters=dict(common), group="summary"))

    # Equity analyses: the district (school "" = the whole run), then each unit.
    from analysis.equity import equity_report_name

    equity_notebook = paths.NOTEBOOKS_DIR / "equity_analysis.ipynb"
    jobs.append(ReportJob(name=equity_report_name("district", ""),
                          title="Equity analysis: the district",
                          notebook=equity_notebook,
                          parameters={"school": "", **common}, group="equity"))
    jobs += [
        ReportJob(name=equity_report_name(u["level"], u["id"]),
                  title=f"Equity analysis: {u['name']} ({u['id']})",
                  notebook=equity_notebook, parameters={"school": u["id"], **common},
                  group="equity")
        for u in units
    ]
    return jobs


def command_reports(args: argparse.Namespace) -> int:
    from analysis.batch import run_batch
    from analysis.pipeline import load_processed, prepare_run, run_folder_name

    settings = _settings(args, audience=args.audience, workers=args.workers)
    out_root = Path(args.out) if args.out else paths.REPORTS_DIR

    # With --rerun-failed, reuse the processed run the failed batch read.
    if args.rerun_failed and args.as_of:
        run = load_processed(paths.PROCESSED_DIR / settings.source
                             / run_folder_name(args.as_of, args.district))
    else:
        run = prepare_run(settings, as_of=args.as_of, district=args.district)

    suffix = f"-{settings.audience}" if settings.audience == "public" else ""
    out_dir = out_root / settings.source / f"{run.folder.name}{suffix}"
    jobs = build_jobs(run, settings.audience, only=args.schools, limit=args.limit)
    logger.info("running %d reports with %d workers into %s", len(jobs),
                settings.workers, out_dir)
    result = run_batch(jobs, out_dir, workers=settings.workers,
                       only_failed=args.rerun_failed, run_info=run.info,
                       progress=not args.no_progress,
                       execution_timeout=settings.execution_timeout,
                       cwd=paths.NOTEBOOKS_DIR)

    logger.info("%d reports in %.1f s; open %s", len(jobs), result.wall_seconds,
                out_dir / "index.html")
    if settings.audience == "public":
        # Every public batch ends with the privacy audit of all it wrote: the
        # release tables, then every file of the pack (student identifiers).
        from analysis.release import audit_public_outputs

        audit = audit_public_outputs(run.folder, [out_dir], settings.privacy)
        if not audit.ok:
            logger.error("%s Do not publish %s.", audit.message(), out_dir)
            return 1
    if not result.ok:
        logger.error("%d report(s) failed: %s. Read the executed notebooks in %s, fix, "
                     "then rerun only those with "
                     "`make reports RERUN_FAILED=1 AS_OF=%s`.",
                     len(result.failed), ", ".join(result.failed),
                     out_dir / "notebooks", run.as_of)
        return 1
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Chronic-absence workspace: sample data, processed runs and "
                    "reports.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate the sample district")
    data.add_argument("--out", default=str(paths.SAMPLE_DIR))
    data.add_argument("--seed", type=int, default=20261130)
    data.add_argument("--students", type=int, default=12000)
    data.add_argument("--as-of", default="2026-11-30")
    data.set_defaults(func=command_data)

    prepare = sub.add_parser("prepare", help="compute the aggregate table for a source")
    _add_source_options(prepare)
    prepare.set_defaults(func=command_prepare)

    reports = sub.add_parser("reports", help="write a report pack for every school")
    _add_source_options(reports)
    reports.add_argument("--audience", choices=("staff", "public"))
    reports.add_argument("--workers", type=int)
    reports.add_argument("--schools", nargs="+",
                         help="only these school (or district) ids")
    reports.add_argument("--limit", type=int, help="only the first N schools")
    reports.add_argument("--rerun-failed", action="store_true",
                         help="rerun only the reports that failed last time")
    reports.add_argument("--out", help="reports folder (default: reports/)")
    reports.add_argument("--no-progress", action="store_true", help="no progress bar")
    reports.set_defaults(func=command_reports)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except (DataContractError, ValueError, KeyError, FileNotFoundError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
