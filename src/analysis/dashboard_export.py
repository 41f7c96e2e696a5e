"""A static export of the public dashboard: HTML pages and CSV files to post as-is.

``python -m analysis.dashboard_export --source sample`` (``make dashboards-export``)
writes ``reports/public-dashboard/<source>/<run>/`` for the newest full release of the
source (``--run 2016-06-30-hartford`` picks another, e.g. one Connecticut district:
the whole state is 1,400 pages and a long audit):

* ``index.html`` - the overview (every unit, with colours), then the overview
  unit's charts and tables;
* ``units/<id>.html`` - one page per school (or community district);
* ``data/public.csv`` and ``data/colours.csv`` - the suppressed tables behind them;
* ``README.txt`` - what the folder is and how it was checked.

Pages are built from the same :class:`analysis.dashboards.PublicView` sections as
the served dashboard, from a public release only. Nothing needs a server: images are
inlined, there is no script. When the export is written, the whole folder is
audited with the run it came from (:func:`analysis.release.audit_public_outputs`):
the export is deleted if a hidden figure could be worked back out or a student
identifier appears.
"""

from __future__ import annotations

import argparse
import html
import shutil
import sys
from pathlib import Path

from analysis import paths
from analysis.dashboards import OVERVIEW, PURPOSE, STYLE, PublicView, natural_key
from analysis.log import configure_logging, logger
from analysis.release import audit_public_outputs, latest_release, load_release
from analysis.settings import load_settings

EXPORT_ROOT = paths.REPORTS_DIR / "public-dashboard"
SECTION_ORDER = ("headline", "units", "trend", "bands", "grades", "groups", "colours",
                 "explanation", "definition")
TITLES = {"units": "Overview", "trend": "Over time", "bands": "Attendance bands",
          "grades": "By grade", "groups": "By student group",
          "colours": "Dashboard colours", "explanation": "How to read this"}


def _page(view: PublicView, unit_id: str, depth: int) -> str:
    """One page: title, purpose, navigation, then every section."""
    up = "../" * depth
    unit = view.unit(unit_id)
    name = unit["name"] if unit else "Overview"
    links = [f'<a href="{up}index.html">Overview</a>'] + [
        f'<a href="{up}units/{_file(u["id"])}">{html.escape(u["name"])}</a>'
        for u in sorted(view.units(), key=lambda u: natural_key(u["name"]))]
    parts = view.sections(unit_id)
    body = []
    for key in SECTION_ORDER:
        if parts.get(key):
            title = TITLES.get(key)
            body.append((f"<h2>{title}</h2>" if title else "") + parts[key])
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Chronic absence: {html.escape(name)}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"{STYLE}<style>body{{font-family:system-ui,sans-serif;max-width:62em;"
        "margin:1em auto;padding:0 1em;color:#222}nav{font-size:0.85em;"
        "line-height:1.8}nav a{margin-right:0.8em}</style></head><body>"
        f"<h1>Chronic absence: {html.escape(name)}</h1>"
        f"<p>{html.escape(PURPOSE)}</p>"
        f"<nav aria-label='Schools'>{' '.join(links)}</nav>"
        + "".join(body)
        + f"<p class='dash-note'><a href='{up}data/public.csv'>Download the figures "
          "(CSV)</a> - hidden figures are marked, never filled in.</p></body></html>")


def _file(unit_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(unit_id))
    return f"{safe or 'unit'}.html"


def export_static(release_folder: Path, out_dir: Path) -> Path:
    """Write the static dashboard of one release into ``out_dir`` (replaced).

    Returns
    -------
    Path
        ``out_dir``.
    """
    release = load_release(release_folder)
    view = PublicView(release)
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "units").mkdir(parents=True)
    (out_dir / "data").mkdir()

    (out_dir / "index.html").write_text(_page(view, OVERVIEW, 0))
    for unit in view.units():
        (out_dir / "units" / _file(unit["id"])).write_text(_page(view, unit["id"], 1))
    release.table.to_csv(out_dir / "data" / "public.csv", index=False)
    if not release.colours.empty:
        release.colours.to_csv(out_dir / "data" / "colours.csv", index=False)
    info = release.info
    (out_dir / "README.txt").write_text(
        f"Chronic absence public dashboard, static export.\n"
        f"Source: {info['source']}; as of {info['as_of']}; definition: "
        f"{info['definition']}.\n"
        f"Groups of {info['privacy']['min_group_size']} or fewer students are hidden, "
        f"with complementary suppression; the release passed a linear-programming "
        f"audit ({info['audit']['hidden_cells_checked']} hidden figures), and this "
        f"folder was audited again when it was written.\n"
        f"Open index.html; every page works without a server.\n")
    logger.info("static dashboard written to %s (%d pages)", out_dir,
                len(view.units()) + 1)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.dashboard_export",
                                     description="Write the public dashboard as files.")
    parser.add_argument("--source", default="sample")
    parser.add_argument("--run", help="release to export, e.g. 2016-06-30-hartford for "
                        "a run limited to one district (default: the newest full run)")
    parser.add_argument("--out", type=Path, help="folder (default: "
                        "reports/public-dashboard/<source>/<run>)")
    args = parser.parse_args(argv)
    configure_logging()

    folder = latest_release(args.source)
    if args.run:
        folder = folder.parent / args.run
        if not (folder / "release.json").exists():
            known = sorted(p.parent.name for p in folder.parent.glob("*/release.json"))
            logger.error("No release %s for %s; releases: %s.", args.run, args.source,
                         ", ".join(known) or "none")
            return 2
    out_dir = Path(args.out or EXPORT_ROOT / args.source / folder.name)
    run_folder = paths.PROCESSED_DIR / args.source / folder.name
    if not (run_folder / "aggregate.parquet").exists():
        logger.error("No processed run at %s to audit the export against; nothing was "
                     "written. Run `python -m analysis prepare --source %s`.",
                     run_folder, args.source)
        return 1
    # Written beside the target and moved in place only once the audit passed, so an
    # interrupted or failed run never leaves an unaudited export where one is posted.
    partial = out_dir.with_name(out_dir.name + ".partial")
    try:
        export_static(folder, partial)
        audit = audit_public_outputs(run_folder, [partial], load_settings().privacy,
                                     release_folder=folder)
        if not audit.ok:
            logger.error("%s The export was removed.", audit.message())
            return 1
        if out_dir.exists():
            shutil.rmtree(out_dir)
        partial.rename(out_dir)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    logger.info("open %s", out_dir / "index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
