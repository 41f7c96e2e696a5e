"""Run the data side of a batch once: read a source, compute, write a processed run.

A processed run is a folder ``data/processed/<source>/<as-of>/`` holding

* ``aggregate.parquet`` - the one aggregate table (every published figure comes from it),
* ``public.parquet`` - its public release, made by :func:`analysis.privacy.publish`
  and audited (:func:`analysis.release.write_release`, which also writes the release
  folder ``data/public/<source>/<as-of>/`` that public dashboards read),
* ``students.parquet`` - student facts and groups at the as-of date (student-level:
  staff only),
* ``modality.parquet`` - days by learning modality,
* ``interventions.parquet`` - the interventions log, when the district sent one
  (student-level: staff only),
* ``quality.json`` - rows read, used and set aside, by reason,
* ``run.json`` - source, definition, as-of date, input checksums, parameters, code
  version and the units a report can be written for.

Notebooks read these files, sliced to their school; they never recompute metrics.
The unit tables are written sorted by unit in small row groups
(:func:`write_table`), so a reader filtering on one unit (:func:`unit_filters`)
decodes only the few row groups that hold it, whatever the size of the state.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.parquet as pq

from analysis import paths
from analysis.log import logger
from analysis.provenance import run_record
from analysis.quality import DataContractError, QualityLedger

# The engine, the readers and the definitions (ibis, duckdb, pandera, scipy) are
# imported inside the functions that compute a run: report notebooks import this
# module only to open a processed run, and those imports cost every notebook
# kernel about 3 s.
if TYPE_CHECKING:
    from analysis.definitions import Definition
    from analysis.settings import Settings

PUBLISHED_SOURCES = ("nyc-doe", "ct-edsight")

#: Where each published source lives under ``../shared/data/real`` by default.
DEFAULT_FOLDERS = {
    "nyc-doe": "nyc_doe_eoy_attendance_district",
    "ct-edsight": "ct_edsight_school",
}


@dataclass
class ProcessedRun:
    """A processed run folder and what it holds."""

    folder: Path
    info: dict

    @property
    def as_of(self) -> str:
        return self.info["as_of"]

    def units(self) -> list[dict]:
        """The schools (or districts) a report can be written for."""
        return self.info["units"]


#: Sort keys of the unit tables of a processed run (see :func:`write_table`).
TABLE_KEYS = {
    "aggregate": ("level", "school_id", "district_id"),
    "public": ("level", "school_id", "district_id"),
    "students": ("level", "unit_id"),
    "modality": ("level", "unit_id"),
}

#: Rows per Parquet row group of a unit table: about 13 schools of an aggregate
#: table, 5 of student facts. A one-school read of a 1,000-school state decodes
#: one or two row groups instead of the whole file (bench/report_batch.py).
ROW_GROUP_ROWS = 5000


def write_table(frame: pd.DataFrame, path: Path, name: str | None = None) -> None:
    """Write a unit table of a processed run, sorted by unit in small row groups.

    Parameters
    ----------
    frame : DataFrame
        The table; it is not modified.
    path : Path
        The Parquet file to write.
    name : str, optional
        The table's name in :data:`TABLE_KEYS`; ``path``'s stem by default. A
        table with no keys there, or without those columns, is written as it is.

    Notes
    -----
    The sort is stable, so the rows of any one unit keep the order they had in
    ``frame`` (ties in a report's sorted lists come out as before). Parquet
    statistics of each row group then span a few units, and readers filtering on
    a unit (:func:`unit_filters`) skip the other row groups.
    """
    keys = [k for k in TABLE_KEYS.get(name or Path(path).stem, ()) if k in frame]
    if keys:
        frame = frame.sort_values(keys, na_position="last", kind="stable")
    frame.to_parquet(path, index=False, row_group_size=ROW_GROUP_ROWS)


def unit_filters(unit: dict, id_column: str | None = None) -> list[list[tuple]]:
    """Parquet filters for the rows of ``unit``, its district's and the state's.

    Parameters
    ----------
    unit : dict
        A unit of :meth:`ProcessedRun.units` (``level``, ``id``, ``district_id``).
    id_column : str, optional
        Column holding the unit's id in every row (student facts and modality:
        ``"unit_id"``); by default the aggregate table's ``school_id`` for a
        school and ``district_id`` for a district.

    Returns
    -------
    list of list of tuple
        Disjunctive normal form for ``pandas.read_parquet(filters=...)``.
    """
    column = id_column or ("school_id" if unit["level"] == "school"
                           else "district_id")
    wanted = [[("level", "==", unit["level"]), (column, "==", unit["id"])]]
    if unit["level"] == "school":
        wanted.append([("level", "==", "district"),
                       (id_column or "district_id", "==", unit["district_id"])])
    wanted.append([("level", "==", "state")])
    return wanted


def read_table(path: Path, filters: list[list[tuple]] | None = None,
               columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table of a processed run, only the rows ``filters`` keep.

    Row groups whose statistics rule the filters out are skipped (see
    :func:`write_table`); ``columns`` not in the file are left out.
    """
    if columns is not None:
        present = set(pq.read_schema(path).names)
        columns = [c for c in columns if c in present]
    return pd.read_parquet(path, columns=columns, filters=filters)


def default_data_dir(settings: Settings) -> Path:
    """The folder a source reads when the user names none."""
    if settings.data_dir:
        return Path(settings.data_dir).expanduser().resolve()
    if settings.source == "sample":
        return paths.SAMPLE_DIR
    if settings.source in DEFAULT_FOLDERS:
        return paths.SHARED_DATA_DIR / DEFAULT_FOLDERS[settings.source]
    raise DataContractError(
        "SOURCE=student-files needs DATA=<folder with your files>; see 'Bring your own "
        "data' in README.md."
    )


def _units_from_aggregate(aggregate: pd.DataFrame, level: str) -> list[dict]:
    key, name = ("school_id", "school_name") if level == "school" \
        else ("district_id", "district_name")
    rows = aggregate[aggregate["level"] == level][[key, name, "district_id",
                                                   "district_name"]]
    rows = rows.loc[:, ~rows.columns.duplicated()].drop_duplicates(key).sort_values(key)
    return [{"level": level, "id": str(r[key]), "name": str(r[name]),
             "district_id": str(r["district_id"]), "district_name": str(r["district_name"])}
            for _, r in rows.iterrows()]


def _sample_as_of(folder: Path) -> date | None:
    """The as-of date a generated sample district was made for, if it is one."""
    meta = folder / "sample_meta.json"
    if not meta.exists():
        return None
    value = json.loads(meta.read_text()).get("as_of")
    return date.fromisoformat(value) if value else None


def _student_level(settings: Settings, folder: Path, definition: Definition,
                   as_of: date | None):
    """Read and compute a student-level source."""
    if settings.source == "sample" and not folder.exists():
        from analysis.sample import generate_sample_district

        logger.info("sample district not found at %s; generating it", folder)
        generate_sample_district(folder)

    from analysis.aggregate import build_aggregate, latest_attendance_date
    from analysis.sources.student_files import read_student_files

    data = read_student_files(folder, strict=settings.strict)
    as_of = as_of or _sample_as_of(folder) or latest_attendance_date(data)
    run = build_aggregate(data, settings, definition, as_of=as_of, source=settings.source)
    inputs = list(data.files.values())

    # Staff-only student facts carry the student's groups, for equity analyses.
    groups = data["students"].drop(columns=["grade"], errors="ignore")
    students = run.students.merge(groups, on="student_id", how="left")
    interventions = data.tables.get("interventions")
    units = _units_from_aggregate(run.aggregate, "school")
    levels = {u["id"]: u for u in
              run.schools.rename(columns={"school_id": "id"}).to_dict("records")}
    for unit in units:
        unit["school_level"] = str(levels.get(unit["id"], {}).get("school_level") or "")
    extras = {"students": students, "modality": run.modality,
              "interventions": interventions}
    return run.aggregate, extras, run.ledger, as_of, inputs, units


def _published(settings: Settings, folder: Path, district: str | None):
    """Read a published aggregate source (NYC DOE or Connecticut EdSight)."""
    ledger = QualityLedger()
    if settings.source == "nyc-doe":
        from analysis.sources.nyc_doe import read_nyc_doe

        aggregate = read_nyc_doe(folder, ledger)
        level = "district"
    else:
        from analysis.sources.ct_edsight import filter_district, read_ct_edsight

        aggregate = read_ct_edsight(folder, ledger)
        if district:
            aggregate = filter_district(aggregate, district)
        level = "school"

    if district and settings.source == "nyc-doe":
        aggregate = aggregate[aggregate["district_id"] == str(district).strip()]
        if aggregate.empty:
            raise ValueError(f"No NYC community district {district!r}; use 1-32 or 75.")
    as_of = pd.Timestamp(aggregate["as_of_date"].max()).date()
    inputs = folder
    extras = {"students": None, "modality": None, "interventions": None}
    return aggregate, extras, ledger, as_of, inputs, _units_from_aggregate(aggregate, level)


def prepare_run(settings: Settings, as_of: date | None = None,
                district: str | None = None, out_root: Path | None = None) -> ProcessedRun:
    """Read the configured source, compute the aggregate table and write a processed run.

    Parameters
    ----------
    settings : Settings
        Source, folder, profile and engine settings.
    as_of : date, optional
        Overrides ``settings.as_of``; the latest attendance date by default.
    district : str, optional
        Keep one district's schools (a code or part of a name); published sources.
    out_root : Path, optional
        Parent folder of processed runs; ``data/processed`` by default.

    Returns
    -------
    ProcessedRun
    """
    from analysis.definitions import load_definition
    from analysis.release import write_release

    folder = default_data_dir(settings)
    definition = load_definition(settings.profile)
    as_of = as_of or settings.as_of

    if settings.source in PUBLISHED_SOURCES:
        if not folder.exists():
            raise DataContractError(
                f"{settings.source} data not found at {folder}. Pass DATA=<folder> with "
                f"the published files (see README.md, 'Real published data')."
            )
        result = _published(settings, folder, district)
        definition_name = settings.source
    else:
        result = _student_level(settings, folder, definition, as_of)
        definition_name = definition.name
    aggregate, extras, ledger, as_of, inputs, units = result

    # A run limited to one district gets its own folder, beside the full run.
    out = (out_root or paths.PROCESSED_DIR) / settings.source / run_folder_name(
        as_of, district)
    out.mkdir(parents=True, exist_ok=True)
    write_table(aggregate, out / "aggregate.parquet")
    for name, frame in extras.items():
        target = out / f"{name}.parquet"
        if frame is not None:
            write_table(frame, target)
        elif target.exists():
            target.unlink()
    (out / "quality.json").write_text(json.dumps(ledger.to_dict(), indent=2))

    parameters = settings.model_dump(mode="json") | {
        "as_of": as_of.isoformat(), "district": district, "data_dir": str(folder)}
    info = run_record(parameters, inputs) | {
        "source": settings.source,
        "definition": definition_name,
        "definition_text": (definition.summary() if settings.source not in
                            PUBLISHED_SOURCES else _published_definition(settings.source)),
        "as_of": as_of.isoformat(),
        "data_dir": str(folder),
        "district_filter": district,
        "student_level": settings.source not in PUBLISHED_SOURCES,
        "units": units,
    }
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    # The public release is made here, once, by the privacy gate (suppression, then
    # an audit that must pass): public.parquet beside the run for public reports,
    # and a release folder holding nothing student-level for public dashboards.
    write_release(aggregate, out, info, settings.privacy,
                  root=(out_root.parent / "public") if out_root else None)
    logger.info("processed run written to %s (%d units)", out, len(units))
    return ProcessedRun(folder=out, info=info)


def run_folder_name(as_of: date, district: str | None = None) -> str:
    """``2016-06-30``, or ``2016-06-30-hartford`` for a run limited to one district."""
    if not district:
        return as_of.isoformat()
    return as_of.isoformat() + "-" + (
        re.sub(r"[^a-z0-9]+", "-", str(district).lower()).strip("-") or "district")


def _published_definition(source: str) -> str:
    from analysis.definitions import load_definition

    if source == "nyc-doe":
        return load_definition("nyc-doe").summary() + (
            " Figures are the NYC DOE's published end-of-year counts by community "
            "district; district totals count each student once.")
    return ("Connecticut State Department of Education (EdSight): students absent 10% or "
            "more of the days they were enrolled. Rates as published; counts are "
            "estimated from the rate and October enrollment, so they are approximate.")


def load_processed(folder: Path) -> ProcessedRun:
    """Open a processed run folder written by :func:`prepare_run`."""
    folder = Path(folder)
    info_file = folder / "run.json"
    if not info_file.exists():
        raise FileNotFoundError(
            f"No processed run at {folder} (run.json missing). Run `make reports` or "
            f"`python -m analysis reports` first."
        )
    return ProcessedRun(folder=folder, info=json.loads(info_file.read_text()))
