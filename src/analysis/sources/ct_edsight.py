"""Connecticut EdSight chronic absenteeism by school and student group.

Reads the EdSight exports in ``ct_edsight_school`` (see its ``SOURCE.md``):

* ``chronic_absenteeism/chronic-absenteeism__<year>_all-schools_<dimension>.csv``:
  one row per school x group value x year, with ``% Chronically Absent`` only;
* ``chronic_absenteeism/chronic-absenteeism__<year>__<dimension>_ct.csv``: the
  statewide rows;
* ``enrollment/enrollment__<year>_all-schools_<dimension>.csv``: October student
  counts per school, wide (one column per group value).

Connecticut calls a student chronically absent when absent 10 % or more of the
days enrolled. EdSight publishes rates, not counts, so ``students`` is the school's
October enrollment for the group and ``chronically_absent`` is estimated as
``round(rate x students)``; such rows are ``approximate``. October enrollment is
not the attendance-eligible denominator, so intervals built on it are a guide.

Export quirks handled here: title lines before the header (and a second header
row in the enrollment files), codes written as Excel formulas (``="0010111"``)
whose leading zeros must survive, CRLF line endings and a trailing blank line,
``*`` for suppressed cells (never read as zero), grade labels ``Grade   1`` (three
spaces) in the absenteeism files against ``Grade 1`` in enrollment, and a
``State Level`` pseudo-school (code ``0000000``) inside the school group files,
which repeats the ``_ct`` state figures and is set aside.

Free-lunch and reduced-price-lunch rows are combined into one "Economically
disadvantaged" row, their rates weighted by October enrollment; "Not Eligible For
Lunch" becomes "Not economically disadvantaged".
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.log import logger
from analysis.quality import DataContractError, QualityLedger
from analysis.schema import (
    ALL_GRADES,
    ALL_STUDENTS,
    FLAG_GROUP_VALUES,
    conform_aggregate,
)
from analysis.statistics import wilson_interval

SOURCE = "ct-edsight"
DEFINITION = "ct-edsight"
STATE_NAME = "State of Connecticut"

ABSENTEEISM_DIR = "chronic_absenteeism"
ENROLLMENT_DIR = "enrollment"

SUPPRESSED = "*"
RATE_COLUMN = "% Chronically Absent"

#: A file may have at most this share of unmappable rows before the run stops.
MAX_BAD_SHARE = 0.02

#: The code EdSight gives its "State Level" pseudo-district and pseudo-school.
STATE_LEVEL_CODE = "0000000"

_YEAR = r"(?P<year>\d{4}-\d{2})"
_DIM = r"(?P<dimension>[a-z-]+)"
SCHOOL_FILE_RE = re.compile(rf"chronic-absenteeism__{_YEAR}_all-schools_{_DIM}\.csv")
STATE_FILE_RE = re.compile(rf"chronic-absenteeism__{_YEAR}__{_DIM}_ct\.csv")
ENROLLMENT_FILE_RE = re.compile(rf"enrollment__{_YEAR}_all-schools_{_DIM}\.csv")

#: File dimension -> the group column of the absenteeism files (None: all students).
GROUP_COLUMNS: dict[str, str | None] = {
    "all-students": None,
    "race": "Race/Ethnicity",
    "grade": "Grade",
    "ell": "English Learner Status",
    "lunch": "Free/Reduced Price Meal Eligibility",
    "special-education": "Special Education Status",
    "gender": "Gender",
}

#: Label given to the rows of the all-students files, which have no group column.
ALL_LABEL = "All Students"

_EL, _NOT_EL = FLAG_GROUP_VALUES["english_learner"]
_SWD, _NOT_SWD = FLAG_GROUP_VALUES["disability"]
_ED, _NOT_ED = FLAG_GROUP_VALUES["economically_disadvantaged"]

#: EdSight group label (runs of spaces collapsed) -> (grade, group_type, group_value).
LABELS: dict[str, tuple[str, str, str]] = {
    ALL_LABEL: (ALL_GRADES, "all", ALL_STUDENTS),
    "Pre-Kindergarten": ("PK", "all", ALL_STUDENTS),
    "Kindergarten": ("K", "all", ALL_STUDENTS),
    **{f"Grade {g}": (str(g), "all", ALL_STUDENTS) for g in range(1, 13)},
    "American Indian or Alaska Native":
        (ALL_GRADES, "race_ethnicity", "American Indian"),
    "Asian": (ALL_GRADES, "race_ethnicity", "Asian"),
    "Black or African American": (ALL_GRADES, "race_ethnicity", "Black"),
    "Hispanic/Latino of any race": (ALL_GRADES, "race_ethnicity", "Hispanic"),
    "Native Hawaiian or Other Pacific Islander":
        (ALL_GRADES, "race_ethnicity", "Pacific Islander"),
    "Two or More Races": (ALL_GRADES, "race_ethnicity", "Multiracial"),
    "White": (ALL_GRADES, "race_ethnicity", "White"),
    "ELL": (ALL_GRADES, "english_learner", _EL),
    "Non-ELL": (ALL_GRADES, "english_learner", _NOT_EL),
    "Special Education": (ALL_GRADES, "disability", _SWD),
    "Non-Special Education": (ALL_GRADES, "disability", _NOT_SWD),
    "Eligible For Free Lunch": (ALL_GRADES, "economically_disadvantaged", _ED),
    "Eligible For Reduced Lunch": (ALL_GRADES, "economically_disadvantaged", _ED),
    "Not Eligible For Lunch": (ALL_GRADES, "economically_disadvantaged", _NOT_ED),
    "Female": (ALL_GRADES, "gender", "Female"),
    "Male": (ALL_GRADES, "gender", "Male"),
}

#: Labels whose rates are combined into one row, weighted by October enrollment.
COMBINED_LABELS = frozenset({"Eligible For Free Lunch", "Eligible For Reduced Lunch"})

#: Enrollment file column -> absenteeism label, per dimension. "Total" is not used.
ENROLLMENT_LABELS: dict[str, dict[str, str]] = {
    "all-students": {"Count": ALL_LABEL},
    "race": {label: label for label, (_, group_type, _) in LABELS.items()
             if group_type == "race_ethnicity"},
    "grade": {label: label for label, (grade, _, _) in LABELS.items()
              if grade != ALL_GRADES},
    "ell": {"Yes": "ELL", "No": "Non-ELL"},
    "lunch": {"Free": "Eligible For Free Lunch",
              "Reduced": "Eligible For Reduced Lunch",
              "Non-Subsidized": "Not Eligible For Lunch"},
    "special-education": {"Yes": "Special Education", "No": "Non-Special Education"},
    "gender": {"Female": "Female", "Male": "Male"},
}

CODE_COLUMNS = ("District Code", "School Code")
SCHOOL_COLUMNS = ("District", "District Code", "School", "School Code")
KEY = ["school_year", "level", "district_id", "school_id", "label"]

NOTE_ESTIMATED = "counts estimated from the published rate and October enrollment"
NOTE_NO_ENROLLMENT = ("October enrollment missing, suppressed or 0 for this school "
                      "and group: counts not estimated")
NOTE_SUPPRESSED = "suppressed at source (*)"
NOTE_COMBINED = ("free and reduced-price lunch rates combined, weighted by October "
                 "enrollment")
NOTE_NOT_COMBINED = ("free and reduced-price lunch rates not combined: October "
                     "enrollment missing")
NOTE_STATE = "no state enrollment in these files: counts not estimated"
NOTE_STATE_WEIGHTS = ("state weights are summed school October counts, suppressed "
                      "cells left out")
NOTE_UNPUBLISHED = "bands, tiers and days not published by CT EdSight"


def read_ct_edsight(folder: Path, ledger: QualityLedger | None = None) -> pd.DataFrame:
    """Read CT EdSight school and state chronic absenteeism into the aggregate table.

    Parameters
    ----------
    folder : pathlib.Path
        The ``ct_edsight_school`` folder, holding ``chronic_absenteeism/`` and
        ``enrollment/``.
    ledger : QualityLedger, optional
        Where rows read and set aside are recorded, one table per file
        (``"ct-edsight:<file stem>"``). A fresh ledger is used when omitted.

    Returns
    -------
    pandas.DataFrame
        Aggregate rows (see :data:`analysis.schema.AGGREGATE_COLUMNS`): level
        ``"school"`` for each school x group x year and ``"state"`` for the
        statewide rows. Rates are the published percentages / 100; ``students``
        is October enrollment and ``chronically_absent`` an estimate from it.

    Raises
    ------
    DataContractError
        If a folder or file is missing or unexpected, a header is not where the
        EdSight export puts it, or more than ``MAX_BAD_SHARE`` of a file's rows
        cannot be read. The message names the file, line, column and value.
    """
    folder = Path(folder)
    ledger = ledger if ledger is not None else QualityLedger()
    absent_files = _list_files(folder / ABSENTEEISM_DIR,
                               (SCHOOL_FILE_RE, STATE_FILE_RE))
    enrol_files = _list_files(folder / ENROLLMENT_DIR, (ENROLLMENT_FILE_RE,))

    # Step 1: the published rates, school files and state files alike.
    rates, pseudo_state = [], []
    for path, match in absent_files:
        school, state_level = _read_rates(path, match, ledger)
        rates.append(school)
        pseudo_state.append(state_level)
    rates = pd.concat(rates, ignore_index=True)
    _check_pseudo_state(pd.concat(pseudo_state, ignore_index=True), rates, ledger)

    # Step 2: October enrollment, long, keyed like the rates.
    schools = rates[rates["level"] == "school"]
    published = {key: set(ids) for key, ids in
                 schools.groupby(["school_year", "dimension"])["school_id"]}
    enrollment = pd.concat(
        [_read_enrollment(path, match, published, ledger)
         for path, match in enrol_files],
        ignore_index=True,
    )
    enrollment = pd.concat([enrollment, _state_enrollment(enrollment)],
                           ignore_index=True)

    # Step 3: join, combine free + reduced lunch, estimate counts.
    joined = _join_enrollment(rates, enrollment)
    out = _to_aggregate(_combine_lunch(joined))
    out = conform_aggregate(out.sort_values(
        ["school_year", "level", "district_id", "school_id"], kind="stable",
        na_position="first"))
    logger.info("ct-edsight: %d aggregate rows from %d files", len(out),
                len(absent_files) + len(enrol_files))
    return out


def filter_district(df: pd.DataFrame, district: str) -> pd.DataFrame:
    """Keep the rows of one district, given its code or part of its name.

    Parameters
    ----------
    df : pandas.DataFrame
        An aggregate table with ``district_id`` and ``district_name``.
    district : str
        A district code (``"0640011"``; leading zeros may be left off) or a
        case-insensitive name or part of one (``"new haven"``). A name that is
        the whole district name, with or without "School District"/"District",
        wins over names that merely contain it. Names are matched in every
        spelling the table holds, so all years of a renamed district are kept.

    Returns
    -------
    pandas.DataFrame
        The rows whose ``district_id`` is the matched district, all years.

    Raises
    ------
    ValueError
        If nothing matches (the message lists close names) or a part of a name
        matches several districts (the message lists them).
    """
    query = str(district).strip()
    names = (df[["district_id", "district_name"]].dropna().drop_duplicates()
             .astype(str))
    codes = set(names["district_id"])

    # A code, exactly or with its leading zeros dropped.
    if query in codes or (query.isdigit() and query.zfill(7) in codes):
        code = query if query in codes else query.zfill(7)
        return df[df["district_id"] == code].reset_index(drop=True)

    # A whole name first, then part of one.
    wanted = query.casefold()
    lowered = names["district_name"].str.casefold()
    bare = lowered.str.replace(r"\s+(school\s+)?district$", "", regex=True)
    exact = names.loc[(lowered == wanted) | (bare == wanted), "district_id"].unique()
    partial = names.loc[lowered.str.contains(wanted, regex=False), "district_id"]
    partial = partial.unique()
    matched = exact if len(exact) == 1 else partial
    if len(matched) == 1:
        return df[df["district_id"] == matched[0]].reset_index(drop=True)

    if len(matched) > 1:
        listed = (names[names["district_id"].isin(matched)]
                  .drop_duplicates("district_id")
                  .apply(lambda r: f"{r.district_name} ({r.district_id})", axis=1))
        raise ValueError(
            f"{district!r} matches {len(matched)} districts: "
            f"{'; '.join(sorted(listed))}. Give the district code or more of the "
            "name."
        )
    close = difflib.get_close_matches(query, sorted(set(names["district_name"])),
                                      n=5, cutoff=0.5)
    if not close:
        # Short queries rarely look like a whole name: compare the bare names.
        bare_names = dict(zip(bare, names["district_name"], strict=True))
        close = [bare_names[b] for b in difflib.get_close_matches(
            wanted, sorted(bare_names), n=5, cutoff=0.6)]
    hint = f" Close matches: {'; '.join(close)}." if close else ""
    raise ValueError(
        f"No district matches {district!r} (looked for a district code or a part of "
        f"a district name among {len(codes)} districts).{hint}"
    )


# --- reading the exports ----------------------------------------------------------


def _list_files(folder: Path, patterns: tuple[re.Pattern, ...]):
    """Return ``(path, match)`` per CSV in ``folder``; an unknown name stops the run."""
    if not folder.is_dir():
        raise DataContractError(
            f"Folder {folder} not found; expected the EdSight export folders "
            f"{ABSENTEEISM_DIR}/ and {ENROLLMENT_DIR}/."
        )
    found = []
    for path in sorted(folder.glob("*.csv")):
        match = next((m for p in patterns if (m := p.fullmatch(path.name))), None)
        if match is None or match["dimension"] not in GROUP_COLUMNS:
            raise DataContractError(
                f"{path}: file name not recognised; expected names like "
                f"{[p.pattern for p in patterns]} with a dimension among "
                f"{list(GROUP_COLUMNS)}."
            )
        found.append((path, match))
    if not found:
        raise DataContractError(f"No EdSight CSV files in {folder}.")
    return found


def _read_export(path: Path, year: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Read one EdSight export: skip the title lines, return rows and line numbers.

    All cells are text. Codes lose their ``="..."`` wrapper; blank lines (the
    trailing one) are dropped. The title must name the year in the file name.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        # EdSight exports are ASCII; older ones may carry Windows-1252 names.
        text = path.read_text(encoding="cp1252")
    lines = text.splitlines()
    header_at = next((i for i, line in enumerate(lines)
                      if line.startswith(('"District"', '"Organization"'))), None)
    if header_at is None:
        raise DataContractError(
            f"{path.name}: no header line starting with \"District\" or "
            "\"Organization\"; expected title lines, a blank line and the header "
            "of an EdSight export."
        )
    titles = " ".join(" ".join(row) for row in csv.reader(lines[:header_at]))
    if year not in titles:
        raise DataContractError(
            f"{path.name}: the title lines ({titles.strip()!r}) do not name the "
            f"school year {year} in the file name; the file may be mislabelled."
        )

    frame = pd.read_csv(io.StringIO("\n".join(lines[header_at:])), dtype=str,
                        keep_default_na=False, skip_blank_lines=False)
    line = header_at + 2 + np.arange(len(frame))  # 1-based; header is header_at + 1
    keep = ~(frame == "").all(axis=1).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    for col in CODE_COLUMNS:
        if col in frame.columns:
            frame[col] = frame[col].str.replace(r'^="(.*)"$', r"\1", regex=True)
    return frame, line[keep]


def _require_columns(path: Path, frame: pd.DataFrame, columns) -> None:
    """Stop the run when ``frame`` lacks one of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{path.name}: missing column(s) {missing}; found {list(frame.columns)}. "
            "Expected an EdSight export with its title lines and header."
        )


def _set_aside_bad(path: Path, table: str, frame: pd.DataFrame, line: np.ndarray,
                   checks: list[tuple[str, np.ndarray, str]],
                   ledger: QualityLedger) -> np.ndarray:
    """Set aside rows failing ``checks`` (column, bad mask, expected); return good mask.

    Each row is counted once, under its first problem. When more than
    ``MAX_BAD_SHARE`` of the rows are bad the run stops with the first one.
    """
    bad_any = np.zeros(len(frame), dtype=bool)
    first_problem = None
    for column, bad, expected in checks:
        bad = bad & ~bad_any
        if bad.any():
            for value, idx in frame.loc[bad].groupby(column).groups.items():
                rows = [int(line[i]) for i in idx]  # frame has a RangeIndex
                ledger.set_aside(
                    table, f"{column} value {value!r} not usable (expected {expected})",
                    len(idx),
                    [{"row": r, "column": column, "value": value, "expected": expected}
                     for r in rows[:5]],
                )
                if first_problem is None:
                    first_problem = (rows[0], column, value, expected)
        bad_any |= bad
    if len(frame) and bad_any.mean() > MAX_BAD_SHARE:
        row, column, value, expected = first_problem
        raise DataContractError(
            f"{path.name}: {int(bad_any.sum())} of {len(frame)} rows cannot be read "
            f"(more than {MAX_BAD_SHARE:.0%}); first at line {row}, column {column!r}, "
            f"value {value!r}, expected {expected}."
        )
    return ~bad_any


def _code_check(frame: pd.DataFrame, column: str):
    """A check for ``_set_aside_bad``: ``column`` must hold a 7-digit code."""
    return column, ~frame[column].str.fullmatch(r"\d{7}").to_numpy(), "a 7-digit code"


def _read_rates(path: Path, match: re.Match,
                ledger: QualityLedger) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read one absenteeism file into long rows keyed by ``KEY``.

    Returns the usable rows and, separately, the "State Level" pseudo-school rows
    of a school file (set aside in the ledger, kept only for a cross-check).
    """
    year, dimension = match["year"], match["dimension"]
    is_state = STATE_FILE_RE.fullmatch(path.name) is not None
    frame, line = _read_export(path, year)
    group_col = GROUP_COLUMNS[dimension]
    id_cols = ("Organization",) if is_state else SCHOOL_COLUMNS
    _require_columns(path, frame, [*id_cols, *([group_col] if group_col else []),
                                   RATE_COLUMN])
    table = f"{SOURCE}:{path.stem}"
    ledger.add_file(table, path, len(frame))

    # Group labels: collapse "Grade   1" to "Grade 1" before looking them up.
    if group_col:
        frame[group_col] = (frame[group_col].str.strip()
                            .str.replace(r"\s+", " ", regex=True))
        labels = frame[group_col]
    else:
        labels = pd.Series(ALL_LABEL, index=frame.index)

    rate_text = frame[RATE_COLUMN].str.strip()
    rate = pd.to_numeric(rate_text.where(rate_text != SUPPRESSED), errors="coerce")
    checks = [
        (RATE_COLUMN,
         ((rate_text != SUPPRESSED) & ~rate.between(0, 100)).to_numpy(),
         f"a percentage 0-100 or '{SUPPRESSED}'"),
    ]
    if group_col:
        checks.insert(0, (group_col, ~labels.isin(list(LABELS)).to_numpy(),
                          f"an EdSight {group_col} label"))
    if is_state:
        checks.insert(0, ("Organization",
                          (frame["Organization"] != STATE_NAME).to_numpy(),
                          repr(STATE_NAME)))
    else:
        checks[:0] = [_code_check(frame, "District Code"),
                      _code_check(frame, "School Code")]
    good = _set_aside_bad(path, table, frame, line, checks, ledger)

    rows = pd.DataFrame({
        "school_year": year,
        "level": "state" if is_state else "school",
        "district_id": pd.NA if is_state else frame.get("District Code"),
        "district_name": STATE_NAME if is_state else frame.get("District"),
        "school_id": pd.NA if is_state else frame.get("School Code"),
        "school_name": pd.NA if is_state else frame.get("School"),
        "label": labels,
        "rate": rate / 100,
        "suppressed": rate_text == SUPPRESSED,
        "dimension": dimension,
    })[good]

    # The school group files carry a "State Level" pseudo-school that repeats the
    # _ct state file; it is set aside so the state is not counted as a school.
    pseudo = rows["school_id"].eq(STATE_LEVEL_CODE).fillna(False)
    pseudo |= rows["district_id"].eq(STATE_LEVEL_CODE).fillna(False)
    ledger.set_aside(table, "'State Level' pseudo-school (code 0000000): repeats "
                     "the _ct state file", int(pseudo.sum()))
    return rows[~pseudo], rows[pseudo]


def _check_pseudo_state(pseudo: pd.DataFrame, rates: pd.DataFrame,
                        ledger: QualityLedger) -> None:
    """Note any "State Level" pseudo-school rate that differs from the state file."""
    if pseudo.empty:
        return
    state = rates[rates["level"] == "state"]
    both = pseudo.merge(state, on=["school_year", "label"], how="left",
                        suffixes=("", "_state"))
    differ = ~np.isclose(both["rate"], both["rate_state"], equal_nan=True) | (
        both["suppressed"] != both["suppressed_state"]
    )
    if differ.any():
        ledger.note(
            f"ct-edsight: {int(differ.sum())} 'State Level' rows in the school files "
            "differ from (or are missing in) the _ct state files; the _ct files are "
            "used."
        )


def _read_enrollment(path: Path, match: re.Match,
                     published: dict[tuple[str, str], set[str]],
                     ledger: QualityLedger) -> pd.DataFrame:
    """Read one wide enrollment file into long rows: one per school and label.

    ``published`` maps (year, dimension) to the school codes with absenteeism
    rows. Other schools are set aside: their counts have no rate to go with.
    """
    year, dimension = match["year"], match["dimension"]
    frame, line = _read_export(path, year)
    columns = ENROLLMENT_LABELS[dimension]
    # The all-students file has one count column and no "Total".
    _require_columns(path, frame, [*SCHOOL_COLUMNS, *columns])
    table = f"{SOURCE}:{path.stem}"
    ledger.add_file(table, path, len(frame))
    extra = set(frame.columns) - set(SCHOOL_COLUMNS) - set(columns) - {"Total"}
    if extra:
        ledger.note(f"{path.name}: columns {sorted(extra)} not used")

    counts = frame[list(columns)].apply(lambda col: col.str.strip())
    numbers = counts.apply(lambda col: pd.to_numeric(col.where(col != SUPPRESSED),
                                                     errors="coerce"))
    bad_count = ((counts != SUPPRESSED)
                 & (numbers.isna() | (numbers < 0) | (numbers % 1 != 0)))
    checks = [_code_check(frame, "District Code"), _code_check(frame, "School Code")]
    for col in columns:
        checks.append((col, bad_count[col].to_numpy(),
                       f"a whole number >= 0 or '{SUPPRESSED}'"))
    good = _set_aside_bad(path, table, frame, line, checks, ledger)

    # Enrollment of a school with no rate in this dimension and year is not used.
    with_rates = published.get((year, dimension), set())
    unused = good & ~frame["School Code"].isin(with_rates).to_numpy()
    ledger.set_aside(table, "school has no chronic-absenteeism rows this year "
                     "(enrollment not used)", int(unused.sum()))

    wide = numbers[good].rename(columns=columns)
    wide["district_id"] = frame.loc[good, "District Code"]
    wide["school_id"] = frame.loc[good, "School Code"]
    long = wide.melt(id_vars=["district_id", "school_id"], var_name="label",
                     value_name="enrollment")
    long.insert(0, "school_year", year)
    long.insert(1, "level", "school")
    if long.duplicated(KEY).any():
        dup = long[long.duplicated(KEY)].iloc[0]
        raise DataContractError(
            f"{path.name}: school {dup.school_id} appears more than once; expected "
            "one row per school."
        )
    return long


def _state_enrollment(enrollment: pd.DataFrame) -> pd.DataFrame:
    """Statewide enrollment per year and label: the sum of the school counts.

    EdSight suppresses enrollment cells in a complementary pattern (the large
    "No" cell beside a small "Yes" is hidden too), so these sums undercount some
    groups badly (ELL/non-ELL miss about 100,000 of 537,624 students in 2015-16).
    They are used only to weight the state's free and reduced lunch rates, never
    as the state's ``students``.
    """
    state = (enrollment.groupby(["school_year", "label"], as_index=False)
             ["enrollment"].sum(min_count=1))
    state["level"] = "state"
    state["district_id"] = pd.NA
    state["school_id"] = pd.NA
    return state


# --- mapping ----------------------------------------------------------------------


def _join_enrollment(rates: pd.DataFrame, enrollment: pd.DataFrame) -> pd.DataFrame:
    """Attach October enrollment to each rate row by year, level, codes and label."""
    # Joining on the district code as well as the school code keeps the detention
    # centres that EdSight lists once per sending district (2015-16) apart.
    joined = rates.merge(enrollment, on=KEY, how="left", validate="many_to_one")
    matched = joined["enrollment"].notna()
    logger.info("ct-edsight: %d of %d rate rows matched to October enrollment",
                int(matched.sum()), len(joined))
    return joined


def _combine_lunch(rows: pd.DataFrame) -> pd.DataFrame:
    """Merge free- and reduced-lunch rows into one economically disadvantaged row.

    The combined rate is the enrollment-weighted mean of the published rates. A
    part with October enrollment 0 carries no weight and is dropped when another
    part has students. The result is suppressed when a remaining part is, and has
    no rate when a weight is unknown.
    """
    rows = rows.copy()
    rows["combined"] = False
    rows["not_combined"] = False
    is_part = rows["label"].isin(COMBINED_LABELS)
    parts, rest = rows[is_part].copy(), rows[~is_part]
    if parts.empty:
        return rows

    unit = ["school_year", "level", "district_id", "school_id"]
    # dropna=False throughout: state rows have no codes and must still group.
    has_students = (parts["enrollment"] > 0).groupby(
        [parts[c] for c in unit], dropna=False).transform("any")
    parts = parts[~(parts["enrollment"].eq(0) & has_students)]

    parts["weighted"] = parts["rate"] * parts["enrollment"]
    parts["no_weight"] = parts["enrollment"].isna()
    grouped = parts.groupby(unit, dropna=False, sort=False)
    combined = grouped.agg(
        district_name=("district_name", "first"),
        school_name=("school_name", "first"),
        n_parts=("label", "size"),
        suppressed=("suppressed", "any"),
        no_weight=("no_weight", "any"),
        enrollment=("enrollment", "sum"),
        weighted=("weighted", "sum"),
        first_rate=("rate", "first"),
    ).reset_index()

    # A sum with an unknown weight is unknown, not a smaller number.
    combined["enrollment"] = combined["enrollment"].where(~combined["no_weight"])
    single = combined["n_parts"] == 1
    rate = np.where(single, combined["first_rate"],
                    combined["weighted"] / combined["enrollment"])
    unusable = combined["suppressed"] | (~single & combined["no_weight"])
    combined["rate"] = np.where(unusable, np.nan, rate)
    combined["combined"] = ~single
    combined["not_combined"] = ~single & combined["no_weight"] & ~combined["suppressed"]
    combined["label"] = "Eligible For Free Lunch"  # maps to Economically disadvantaged
    combined = combined.drop(columns=["n_parts", "no_weight", "weighted",
                                      "first_rate"])
    return pd.concat([rest, combined], ignore_index=True)


def _to_aggregate(rows: pd.DataFrame) -> pd.DataFrame:
    """Map joined rate rows to aggregate columns, estimating counts."""
    mapped = rows["label"].map(LABELS)
    end_year = rows["school_year"].str[:4].astype(int) + 1
    # October enrollment 0 beside a published rate is no denominator; state sums
    # of suppressed school cells are no denominator either (see _state_enrollment).
    is_state = rows["level"] == "state"
    students = rows["enrollment"].where((rows["enrollment"] > 0) & ~is_state)
    has_count = students.notna() & rows["rate"].notna()
    chronic = np.floor(rows["rate"] * students + 0.5).where(has_count)

    out = pd.DataFrame({
        "source": SOURCE,
        "definition": DEFINITION,
        "school_year": rows["school_year"],
        "as_of_date": pd.to_datetime(end_year.astype(str) + "-06-30"),
        "level": rows["level"],
        "district_id": rows["district_id"],
        "district_name": rows["district_name"],
        "school_id": rows["school_id"],
        "school_name": rows["school_name"],
        "grade": mapped.str[0],
        "group_type": mapped.str[1],
        "group_value": mapped.str[2],
        "students": students,
        "chronically_absent": chronic,
        "chronic_absence_rate": rows["rate"],
        "suppressed_at_source": rows["suppressed"],
        "approximate": has_count | (rows["combined"] & rows["rate"].notna()),
    })
    out["ci_low"], out["ci_upp"] = wilson_interval(chronic, students)

    # Say why each measure is missing or approximate, in the order a reader needs.
    notes = pd.DataFrame({
        NOTE_SUPPRESSED: rows["suppressed"],
        NOTE_ESTIMATED: has_count,
        NOTE_NO_ENROLLMENT: students.isna() & ~is_state,
        NOTE_STATE: is_state,
        NOTE_COMBINED: rows["combined"] & rows["rate"].notna(),
        NOTE_STATE_WEIGHTS: rows["combined"] & rows["rate"].notna() & is_state,
        NOTE_NOT_COMBINED: rows["not_combined"].astype(bool),
    })
    # Few flag combinations occur: encode each row's flags as one number and
    # write each combination's text once.
    code = notes.to_numpy(dtype=np.int64) @ (1 << np.arange(notes.shape[1]))
    texts = {c: "; ".join([*(n for i, n in enumerate(notes.columns) if c >> i & 1),
                           NOTE_UNPUBLISHED])
             for c in np.unique(code)}
    out["note"] = pd.Series(code, index=out.index).map(texts)
    return out
