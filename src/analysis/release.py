"""Public releases: the folder public dashboards and a district's website read.

A release is written once per processed run, by :func:`write_release`, into
``data/public/<source>/<run>/``, a folder that holds nothing student-level:

* ``public.parquet`` - the one suppressed table made by :func:`analysis.privacy.publish`
  (also copied beside the processed run, where public reports read it);
* ``colours.parquet`` - the California status x change colour of every unit and
  student group at the as-of date (:mod:`analysis.status_colour`), only where both
  years' rates are shown;
* ``release.json`` - source, definition, as-of date, units, privacy settings, code
  version and the audit's summary;
* ``audit.json`` - the audit's summary (counts only, never cell values).

Every public table is audited together before anything is written, and
:func:`audit_public_outputs` audits a whole batch's public output afterwards: the
linear-programming audit over every table, plus a scan for student identifiers in
every text file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import paths
from analysis.log import logger
from analysis.pipeline import write_table
from analysis.privacy import CELL_KEYS, HIDDEN, PrivacyError, audit_public, is_coded, publish
from analysis.privacy_audit import AuditResult
from analysis.schema import ALL_GRADES, GROUP_TYPE_LABELS
from analysis.status_colour import MIN_STUDENTS, MIN_STUDENTS_SMALL_GROUPS, dashboard_colour

#: Where releases live; ``ANALYSIS_RELEASES`` overrides it (the dashboard server
#: sets it so kernels read releases and nothing else).
RELEASES_DIR = Path(os.environ.get("ANALYSIS_RELEASES", paths.DATA_DIR / "public"))

#: The tables of a release, each audited with the others.
TABLES = ("public.parquet", "colours.parquet")

#: Run information a release may repeat (nothing about files or people).
PUBLIC_INFO = ("source", "definition", "definition_text", "as_of", "student_level",
               "district_filter", "created_utc", "code")

#: Identifiers shorter than this cannot be told apart from ordinary words.
MIN_ID_LENGTH = 4


@dataclass
class PublicRelease:
    """One release folder, opened."""

    folder: Path
    info: dict
    table: pd.DataFrame
    colours: pd.DataFrame

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.info["as_of"])

    @property
    def source(self) -> str:
        return str(self.info["source"])

    @property
    def student_level(self) -> bool:
        return bool(self.info.get("student_level"))

    def units(self) -> list[dict]:
        """Units a reader can pick: ``id, name, level, district_id, district_name``."""
        return list(self.info.get("units", []))


def release_root() -> Path:
    """The folder holding every source's releases (read at call time)."""
    return Path(os.environ.get("ANALYSIS_RELEASES", RELEASES_DIR))


# -------------------------------------------------------------------------- writing

def write_release(aggregate: pd.DataFrame, run_folder: Path, info: dict, privacy,
                  root: Path | None = None) -> PublicRelease:
    """Publish, audit and write the public release of one processed run.

    Parameters
    ----------
    aggregate : DataFrame
        The run's aggregate table.
    run_folder : Path
        The processed run folder; ``public.parquet`` is written there too.
    info : dict
        The run record (``run.json``): source, definition, as-of date, units.
    privacy : PrivacySettings
        ``min_group_size``, ``show_counts`` and ``audit_min_range``.
    root : Path, optional
        Releases folder; ``data/public`` (or ``$ANALYSIS_RELEASES``) by default.

    Returns
    -------
    PublicRelease

    Raises
    ------
    PrivacyError
        If the audit recovers a hidden figure; nothing is written then.
    """
    # A release from an earlier run must not outlive a failed audit of this one.
    stale = Path(run_folder) / "public.parquet"
    if stale.exists():
        stale.unlink()
    public = publish(aggregate, privacy.min_group_size, show_counts=privacy.show_counts,
                     min_range=privacy.audit_min_range)
    colours = status_colours(aggregate, public, info)
    result = audit_public([public, colours], aggregate, privacy.min_group_size,
                          privacy.audit_min_range)
    if not result.ok:
        raise PrivacyError(_failure_message(result, "the new release"))

    # Sorted by unit in small row groups: public school reports read one unit.
    write_table(public, Path(run_folder) / "public.parquet")
    folder = (root or release_root()) / info["source"] / Path(run_folder).name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    public.to_parquet(folder / "public.parquet", index=False)
    colours.to_parquet(folder / "colours.parquet", index=False)
    release_info = {key: info.get(key) for key in PUBLIC_INFO}
    release_info |= {
        "data_name": Path(str(info.get("data_dir", ""))).name,
        "units": [{k: u.get(k) for k in ("id", "name", "level", "district_id",
                                          "district_name")} for u in info["units"]],
        "privacy": {"min_group_size": privacy.min_group_size,
                    "show_counts": privacy.show_counts,
                    "audit_min_range": privacy.audit_min_range
                    or privacy.min_group_size},
        "audit": result.summary(),
        "released_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (folder / "release.json").write_text(json.dumps(release_info, indent=2, default=str))
    (folder / "audit.json").write_text(json.dumps(result.summary(), indent=2))
    logger.info("public release written to %s (%d cells, %d hidden; audit passed)",
                folder, len(public), int(public["suppressed"].sum()))
    return PublicRelease(folder=folder, info=release_info, table=public, colours=colours)


def _failure_message(result: AuditResult, what: str) -> str:
    summary = result.summary()
    return (f"The privacy audit of {what} failed: {summary['failures']} hidden figure(s) "
            f"can be narrowed below the protection of "
            f"{summary['min_range']} (out of {summary['ranges_computed']} checked). "
            f"Nothing public may be posted from this run.")


def _comparison_date(dates: list[pd.Timestamp], as_of: pd.Timestamp,
                     student_level: bool) -> pd.Timestamp | None:
    """Same date last year (student-level data), else the previous year's figure."""
    if student_level:
        target = as_of - pd.DateOffset(years=1)
        return target if target in set(dates) else None
    earlier = [d for d in dates if d < as_of]
    return earlier[-1] if earlier else None


def status_colours(aggregate: pd.DataFrame, public: pd.DataFrame,
                   info: dict) -> pd.DataFrame:
    """The California colour of every unit and student group at the as-of date.

    A colour needs both years' rates shown, uncoded, in ``public``: the colour
    then adds nothing a reader could not work out from the release. Counts decide
    the n-size rule and the exact rounding but are not published.
    """
    as_of = pd.Timestamp(info["as_of"])
    agg = aggregate.reset_index(drop=True).copy()
    agg["as_of_date"] = pd.to_datetime(agg["as_of_date"])
    pub = public.reset_index(drop=True).copy()
    pub["as_of_date"] = pd.to_datetime(pub["as_of_date"])
    dates = sorted(agg["as_of_date"].unique())
    before = _comparison_date(dates, as_of, bool(info.get("student_level")))
    keys = ["level", "district_id", "school_id", "group_type", "group_value"]

    def cells(frame: pd.DataFrame, when) -> pd.DataFrame:
        rows = frame[(frame["as_of_date"] == when) & (frame["grade"] == ALL_GRADES)]
        return rows.assign(_key=rows[keys].astype("string").fillna("").agg(
            "|".join, axis=1)).drop_duplicates("_key").set_index("_key")

    now_pub, now_agg = cells(pub, as_of), cells(agg, as_of)
    prior_pub = cells(pub, before) if before is not None else now_pub.iloc[0:0]
    prior_agg = cells(agg, before) if before is not None else now_agg.iloc[0:0]

    rows = []
    for key, cell in now_pub.iterrows():
        shown = not cell["suppressed"] and not is_coded(pd.Series([cell["rate_display"]]))[0]
        row = {c: cell[c] for c in CELL_KEYS if c in cell}
        row |= {"school_name": cell.get("school_name"),
                "district_name": cell.get("district_name"),
                "group_label": GROUP_TYPE_LABELS.get(cell["group_type"],
                                                     cell["group_type"]),
                "rate_display": cell["rate_display"],
                "chronic_absence_rate": cell["chronic_absence_rate"],
                "suppressed": bool(cell["suppressed"]),
                "prior_date": before, "prior_rate_display": None, "status": None,
                "change": None, "change_pp": None, "colour": None,
                "small_population": False, "reason": ""}
        prior = prior_pub.loc[key] if key in prior_pub.index else None
        prior_shown = (prior is not None and not prior["suppressed"]
                       and not is_coded(pd.Series([prior["rate_display"]]))[0])
        if not shown:
            row["reason"] = ("hidden to protect privacy" if cell["suppressed"]
                             else "rate shown as a bound, so no colour")
        elif before is None:
            row["reason"] = "no prior year in this data"
        elif not prior_shown:
            row["reason"] = "last year's figure is hidden, coded or missing"
        else:
            row["prior_rate_display"] = prior["rate_display"]
            truth_now, truth_before = now_agg.loc[key], prior_agg.loc[key]
            small = (cell["group_type"] in ("foster", "homeless")
                     and cell["level"] == "district")
            result = dashboard_colour(
                truth_now["chronically_absent"], truth_now["students"],
                truth_before["chronically_absent"], truth_before["students"],
                current_rate=truth_now["chronic_absence_rate"],
                prior_rate=truth_before["chronic_absence_rate"],
                min_students=MIN_STUDENTS_SMALL_GROUPS if small else MIN_STUDENTS)
            row |= {"status": result["status"], "change": result["change"],
                    "change_pp": (None if result["change_tenths"] is None
                                  else result["change_tenths"] / 10),
                    "colour": result["colour"],
                    "small_population": result["small_population"],
                    "reason": result["reason"]}
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["as_of_date"] = pd.to_datetime(out["as_of_date"])
    out["chronic_absence_rate"] = out["chronic_absence_rate"].astype("Float64")
    out["change_pp"] = out["change_pp"].astype("Float64")
    for col in ("rate_display", "prior_rate_display", "status", "change", "colour",
                "reason", "group_label", "school_name", "district_name"):
        out[col] = out[col].astype("string")
    out["prior_date"] = pd.to_datetime(out["prior_date"])
    return out


# -------------------------------------------------------------------------- reading

def load_release(folder: Path) -> PublicRelease:
    """Open a release folder written by :func:`write_release`."""
    folder = Path(folder)
    info_file = folder / "release.json"
    if not info_file.exists():
        raise FileNotFoundError(
            f"No public release at {folder} (release.json missing). Run "
            f"`python -m analysis prepare --source <source>` first.")
    table = pd.read_parquet(folder / "public.parquet")
    table["as_of_date"] = pd.to_datetime(table["as_of_date"])
    colours_file = folder / "colours.parquet"
    colours = pd.read_parquet(colours_file) if colours_file.exists() else pd.DataFrame()
    return PublicRelease(folder=folder, info=json.loads(info_file.read_text()),
                         table=table, colours=colours)


def list_releases(root: Path | None = None) -> list[dict]:
    """Every release under ``root``: ``source, run, as_of, folder``, newest last."""
    root = root or release_root()
    out = []
    for info_file in sorted(Path(root).glob("*/*/release.json")):
        info = json.loads(info_file.read_text())
        out.append({"source": info["source"], "run": info_file.parent.name,
                    "as_of": info["as_of"], "folder": info_file.parent})
    return sorted(out, key=lambda r: (r["source"], r["as_of"], r["run"]))


def latest_release(source: str | None = None, root: Path | None = None) -> Path:
    """The folder of the newest release of ``source`` (any source when None).

    Raises
    ------
    FileNotFoundError
        Naming the releases that exist, when none matches.
    """
    found = list_releases(root)
    matching = [r for r in found if source in (None, r["source"])]
    if not matching:
        known = sorted({r["source"] for r in found}) or ["none yet"]
        raise FileNotFoundError(
            f"No public release for source {source!r} in {root or release_root()}; "
            f"releases exist for: {', '.join(known)}. Run `python -m analysis prepare "
            f"--source {source or 'sample'}`.")
    # Prefer a full run over one limited to a district, then the newest.
    matching.sort(key=lambda r: (r["run"] == r["as_of"], r["as_of"]))
    return matching[-1]["folder"]


# ---------------------------------------------------------------- auditing outputs

@dataclass
class OutputAudit:
    """The audit of everything public a batch wrote."""

    result: AuditResult
    tables: list[str]
    files_scanned: int
    identifiers_found: list[str]

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.identifiers_found

    def message(self) -> str:
        """A plain explanation, naming files but never identifiers."""
        parts = []
        if not self.result.ok:
            parts.append(_failure_message(self.result, "the public output"))
        if self.identifiers_found:
            parts.append(f"Student identifiers appear in {len(self.identifiers_found)} "
                         f"public file(s): {', '.join(self.identifiers_found[:5])}.")
        if not parts:
            return (f"privacy audit passed: {len(self.tables)} table(s), "
                    f"{self.files_scanned} file(s) scanned for student identifiers")
        return " ".join(parts)


def read_public_table(path: Path) -> pd.DataFrame:
    """Read one public table (Parquet or CSV) in the form the audit compares."""
    path = Path(path)
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "suppressed" in frame:
            frame["suppressed"] = frame["suppressed"].str.lower().isin(("true", "1"))
        if "chronic_absence_rate" in frame:
            frame["chronic_absence_rate"] = pd.to_numeric(
                frame["chronic_absence_rate"], errors="coerce")
        for col in frame.columns:
            if col.startswith("share_") and not col.endswith("_display"):
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
    else:
        frame = pd.read_parquet(path)
    missing = [c for c in ("suppressed", "rate_display", "chronic_absence_rate")
               + tuple(k for k in CELL_KEYS if k not in ("source", "definition"))
               if c not in frame]
    if missing:
        raise PrivacyError(
            f"{path} is in a public output but cannot be audited: columns {missing} "
            f"are missing. Every public table keeps the cell keys {list(CELL_KEYS)}.")
    frame["as_of_date"] = pd.to_datetime(frame["as_of_date"]).dt.strftime("%Y-%m-%d")
    for col in CELL_KEYS:
        if col in frame and col != "as_of_date":
            frame[col] = frame[col].astype("string").replace("", pd.NA)
    return frame


def audit_public_outputs(run_folder: Path, outputs: list[Path], privacy,
                         release_folder: Path | None = None) -> OutputAudit:
    """Audit every public table and file a batch wrote for one processed run.

    Parameters
    ----------
    run_folder : Path
        The processed run (its ``aggregate.parquet`` holds the true values and its
        ``students.parquet`` the identifiers to look for).
    outputs : list of Path
        Folders or files of public output (report packs, static exports).
    privacy : PrivacySettings
        The settings the release was made with.
    release_folder : Path, optional
        The run's release; found from ``run.json`` by default.

    Returns
    -------
    OutputAudit
        ``ok`` False when a hidden figure can be narrowed too far or a student
        identifier appears in a public file.
    """
    run_folder = Path(run_folder)
    aggregate = pd.read_parquet(run_folder / "aggregate.parquet")
    aggregate["as_of_date"] = pd.to_datetime(aggregate["as_of_date"]).dt.strftime(
        "%Y-%m-%d")
    if release_folder is None:
        info = json.loads((run_folder / "run.json").read_text())
        release_folder = release_root() / info["source"] / run_folder.name
    table_files = [run_folder / "public.parquet"]
    table_files += [Path(release_folder) / name for name in TABLES
                    if (Path(release_folder) / name).exists()]
    text_files: list[Path] = []
    for output in outputs:
        output = Path(output)
        files = [output] if output.is_file() else sorted(
            p for p in output.rglob("*") if p.is_file())
        table_files += [p for p in files if p.suffix in (".csv", ".parquet")]
        text_files += [p for p in files if p.suffix in (".html", ".csv", ".json", ".md",
                                                        ".txt", ".ipynb", ".svg")]
    tables = [read_public_table(p) for p in table_files]
    result = audit_public(tables, aggregate, privacy.min_group_size,
                          privacy.audit_min_range)
    found = scan_for_identifiers(text_files, student_identifiers(run_folder))
    audit = OutputAudit(result=result, tables=[str(p) for p in table_files],
                        files_scanned=len(text_files), identifiers_found=found)
    (logger.info if audit.ok else logger.error)("%s", audit.message())
    return audit


def student_identifiers(run_folder: Path) -> set[str]:
    """Identifiers of the run's students (empty for published aggregate sources)."""
    ids: set[str] = set()
    for name in ("students.parquet", "interventions.parquet"):
        path = Path(run_folder) / name
        if path.exists():
            column = pd.read_parquet(path, columns=["student_id"])["student_id"]
            ids |= {str(v) for v in column.dropna().unique()}
    return {i for i in ids if len(i) >= MIN_ID_LENGTH}


_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
_JOINER = re.compile(r"([_\-]+)")

#: Longest run of ``-``/``_``-joined parts tried as one identifier.
MAX_ID_PARTS = 6


def _words(text: str) -> set[str]:
    """Every word of ``text``, and every run of the parts of a joined word.

    ``row-ST000048`` gives ``row``, ``ST000048`` and ``row-ST000048``, so an id
    inside an HTML id or a file name (``student_ST000048``) is found, and so is an
    id that itself holds a hyphen (``AB-1234`` inside ``x-AB-1234``).
    """
    words: set[str] = set()
    for token in set(_TOKEN.findall(text)):
        words.add(token)
        pieces = _JOINER.split(token)     # part, joiner, part, ...
        if len(pieces) == 1:
            continue
        for first in range(0, len(pieces), 2):
            for last in range(first, min(len(pieces), first + 2 * MAX_ID_PARTS), 2):
                words.add("".join(pieces[first:last + 1]))
    words.discard("")
    return words


def scan_for_identifiers(files: list[Path], identifiers: set[str]) -> list[str]:
    """The files (names only) in which any of ``identifiers`` appears as a word.

    Parameters
    ----------
    files : list of Path
        Text files to read.
    identifiers : set of str
        Student identifiers to look for.

    Returns
    -------
    list of str
        The files holding one, as a whole word or as a ``-``/``_``-joined part
        of one (``row-ST000048``); ``XST000048X`` is not a hit.
    """
    if not identifiers:
        return []
    hits = []
    for path in files:
        text = Path(path).read_text(errors="ignore")
        if not identifiers.isdisjoint(_words(text)):
            hits.append(str(path))
    return hits


def hidden_values(release: PublicRelease, aggregate: pd.DataFrame) -> pd.DataFrame:
    """True rates of the hidden cells of a release (for tests that look for leaks).

    Staff-side only: it needs the aggregate table.
    """
    pub = release.table
    agg = aggregate.copy()
    agg["as_of_date"] = pd.to_datetime(agg["as_of_date"])
    keys = [k for k in CELL_KEYS if k in pub and k in agg]
    merged = pub[pub["suppressed"]][keys].merge(
        agg[keys + ["chronic_absence_rate", "students", "school_name"]], on=keys,
        how="left")
    merged["true_display"] = [("" if pd.isna(r) else f"{r:.1%}")
                              for r in merged["chronic_absence_rate"]]
    return merged.replace({np.nan: None})


__all__ = ["HIDDEN", "PublicRelease", "OutputAudit", "write_release", "load_release",
           "list_releases", "latest_release", "audit_public_outputs", "status_colours",
           "release_root", "read_public_table", "scan_for_identifiers",
           "student_identifiers", "hidden_values"]
