"""NYC DOE end-of-year attendance and chronic absenteeism, by community district.

Reads the district workbook ``public-district-attendance-results-2018-2022.xlsx``
as exported one CSV per sheet (``..._All_Students.csv``, ``..._Ethnicity.csv`` and
so on; see the folder's ``SOURCE.md``). One input row is one community school
district x grade x student category x school year; it becomes one aggregate row.

NYC publishes counts, so the chronic-absence rate is recomputed from them
(NYSED definition: attendance at or below 90 %, among students enrolled 10 or
more days and present at least one day). Cells the publisher suppressed (``s``)
are never read as zero: the row is kept, the hidden measures are missing and
``suppressed_at_source`` is true. Measures the publisher did show on such a row
(often ``# Total Days``) are kept.
"""

from __future__ import annotations

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

SOURCE = "nyc-doe"
DEFINITION = "nyc-doe"

#: The published file names are ``<stem>__<sheet>.csv``.
FILE_PATTERN = "*__*.csv"

#: Suppression marker used by the publisher in any numeric column.
SUPPRESSED = "s"

#: A file may have at most this share of unmappable rows before the run stops.
MAX_BAD_SHARE = 0.02

KEY_COLUMNS = ("District", "Grade", "Category", "Year")

#: Published count columns -> aggregate columns.
MEASURE_COLUMNS: dict[str, str] = {
    "# Total Days": "days_enrolled",
    "# Days Absent": "days_absent",
    "# Contributing 10+ Total Days and 1+ Pres Day": "students",
    "# Chronically Absent": "chronically_absent",
}

#: Published grade labels -> schema grades.
GRADE_MAP: dict[str, str] = {
    "PK in K-12 Schools": "PK",
    "0K": "K",
    **{str(g): str(g) for g in range(1, 13)},
    "All Grades": ALL_GRADES,
}

#: (sheet, Category) -> (group_type, group_value). The sheet must agree with the
#: category, so a "Female" row in the Ethnicity sheet is set aside, not guessed.
_EL, _NOT_EL = FLAG_GROUP_VALUES["english_learner"]
_SWD, _NOT_SWD = FLAG_GROUP_VALUES["disability"]
_POV, _NOT_POV = FLAG_GROUP_VALUES["economically_disadvantaged"]
_STH, _NOT_STH = FLAG_GROUP_VALUES["homeless"]
GROUP_MAP: dict[tuple[str, str], tuple[str, str]] = {
    ("All_Students", "All Students"): ("all", ALL_STUDENTS),
    # NYC's "Other" (multiracial, Native American, missing ...) has no schema
    # race value; it is kept as published rather than folded into one.
    **{("Ethnicity", v): ("race_ethnicity", v)
       for v in ("Asian", "Black", "Hispanic", "White", "Other")},
    ("Gender", "Female"): ("gender", "Female"),
    ("Gender", "Male"): ("gender", "Male"),
    ("ELL", "ELL"): ("english_learner", _EL),
    ("ELL", "Not ELL"): ("english_learner", _NOT_EL),
    ("SWD", "SWD"): ("disability", _SWD),
    ("SWD", "Not SWD"): ("disability", _NOT_SWD),
    ("Poverty", "Poverty"): ("economically_disadvantaged", _POV),
    ("Poverty", "Not Poverty"): ("economically_disadvantaged", _NOT_POV),
    ("STH", "STH"): ("homeless", _STH),
    ("STH", "Not STH"): ("homeless", _NOT_STH),
}
SHEETS: tuple[str, ...] = tuple(dict.fromkeys(sheet for sheet, _ in GROUP_MAP))

#: Community school districts 1-32 plus District 75 (citywide special education).
DISTRICTS: tuple[str, ...] = (*(str(d) for d in range(1, 33)), "75")

NOTE = "bands, tiers and students_enrolled not published by NYC DOE"
NOTE_SUPPRESSED = "suppressed at source (s)"


def district_name(district_id: str) -> str:
    """Return the display name of an NYC district number such as ``"1"`` or ``"75"``."""
    if district_id == "75":
        return "District 75 (citywide special education)"
    return f"Community School District {district_id}"


def read_nyc_doe(folder: Path, ledger: QualityLedger | None = None) -> pd.DataFrame:
    """Read the NYC DOE district attendance CSVs into the aggregate table.

    Parameters
    ----------
    folder : pathlib.Path
        Folder holding the seven sheet CSVs
        (``public-district-attendance-results-2018-2022__<sheet>.csv``).
    ledger : QualityLedger, optional
        Where rows read and set aside are recorded, one table per sheet
        (``"nyc-doe:<sheet>"``). A fresh ledger is used when omitted.

    Returns
    -------
    pandas.DataFrame
        Aggregate rows (see :data:`analysis.schema.AGGREGATE_COLUMNS`), level
        ``"district"``, one per published row that could be mapped.

    Raises
    ------
    DataContractError
        If the folder has no sheet files, a file is not one of the known sheets,
        a column is missing, or more than ``MAX_BAD_SHARE`` of a file's rows
        cannot be mapped. The message names the file, line, column and value.
    """
    folder = Path(folder)
    ledger = ledger if ledger is not None else QualityLedger()
    files = sorted(folder.glob(FILE_PATTERN))
    if not files:
        raise DataContractError(
            f"No NYC DOE sheet files ({FILE_PATTERN}) in {folder}; expected the "
            f"sheets {', '.join(SHEETS)} exported as CSV."
        )

    frames = [_read_sheet(path, ledger) for path in files]
    out = conform_aggregate(pd.concat(frames, ignore_index=True))
    logger.info("nyc-doe: %d aggregate rows from %d files", len(out), len(files))
    return out


def _read_sheet(path: Path, ledger: QualityLedger) -> pd.DataFrame:
    """Read one sheet CSV, record it in the ledger and map it to aggregate rows."""
    sheet = path.stem.split("__")[-1]
    if sheet not in SHEETS:
        raise DataContractError(
            f"{path.name}: sheet {sheet!r} is not a known NYC DOE sheet; expected "
            f"one of {', '.join(SHEETS)}. Remove the file or extend GROUP_MAP."
        )
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in (*KEY_COLUMNS, *MEASURE_COLUMNS) if c not in raw.columns]
    if missing:
        raise DataContractError(
            f"{path.name}: missing column(s) {missing}; expected the NYC DOE columns "
            f"{[*KEY_COLUMNS, *MEASURE_COLUMNS]}."
        )
    table = f"{SOURCE}:{sheet}"
    ledger.add_file(table, path, len(raw))

    # Line numbers in the file: line 1 is the header.
    line = pd.Series(np.arange(len(raw)) + 2, index=raw.index)
    raw = raw.apply(lambda col: col.str.strip())

    # Each check yields a mask of bad rows, with the column and what was expected.
    checks: list[tuple[str, pd.Series, str]] = [
        ("District", ~raw["District"].isin(DISTRICTS), "1-32 or 75"),
        ("Grade", ~raw["Grade"].isin(list(GRADE_MAP)), f"one of {list(GRADE_MAP)}"),
        ("Category", ~raw["Category"].map(lambda c: (sheet, c) in GROUP_MAP),
         f"a {sheet} category: {[c for s, c in GROUP_MAP if s == sheet]}"),
        ("Year", ~raw["Year"].str.fullmatch(r"\d{4}-\d{2}"),
         "a school year like 2017-18"),
    ]

    # Counts: a whole number, or the suppression marker. Never "" or text.
    values: dict[str, pd.Series] = {}
    for col in MEASURE_COLUMNS:
        number = pd.to_numeric(raw[col].where(raw[col] != SUPPRESSED), errors="coerce")
        is_bad = (raw[col] != SUPPRESSED) & (
            number.isna() | (number < 0) | (number % 1 != 0)
        )
        checks.append((col, is_bad, f"a whole number >= 0 or '{SUPPRESSED}'"))
        values[col] = number

    # A count of chronically absent students above its denominator is an error
    # in the row, not a rounding question.
    over = values["# Chronically Absent"] > values[
        "# Contributing 10+ Total Days and 1+ Pres Day"
    ]
    checks.append(("# Chronically Absent", over.fillna(False),
                   "at most # Contributing 10+ Total Days and 1+ Pres Day"))

    bad_any = pd.Series(False, index=raw.index)
    for column, mask, expected in checks:
        mask = mask & ~bad_any  # count each row once, under its first problem
        if mask.any():
            _set_aside(ledger, table, raw, line, column, mask, expected)
        bad_any |= mask

    # A second row for the same district x grade x category x year would count
    # its students twice downstream: keep the first, set the rest aside.
    dup = raw.duplicated(list(KEY_COLUMNS)) & ~bad_any
    if dup.any():
        ledger.set_aside(
            table, "duplicate District x Grade x Category x Year (first row kept)",
            int(dup.sum()),
            [{"row": int(line[i]), "column": "District, Grade, Category, Year",
              "value": ", ".join(raw.loc[i, list(KEY_COLUMNS)]),
              "expected": "one row per key"} for i in raw.index[dup][:5]],
        )
    bad_any |= dup

    if bad_any.mean() > MAX_BAD_SHARE:
        first = bad_any.idxmax()
        column, expected = next(
            ((c, e) for c, m, e in checks if m[first]),
            ("District", "one row per District x Grade x Category x Year"),
        )
        raise DataContractError(
            f"{path.name}: {int(bad_any.sum())} of {len(raw)} rows cannot be read "
            f"(more than {MAX_BAD_SHARE:.0%}); first at line {line[first]}, column "
            f"{column!r}, value {raw.at[first, column]!r}, expected {expected}. "
            "Check that the file is the NYC DOE district attendance export."
        )

    good = ~bad_any
    return _to_aggregate(raw[good], {k: v[good] for k, v in values.items()}, sheet)


def _set_aside(ledger: QualityLedger, table: str, raw: pd.DataFrame,
               line: pd.Series, column: str, mask: pd.Series, expected: str) -> None:
    """Record the rows in ``mask`` as set aside, one reason per column and value."""
    for value, idx in raw.loc[mask].groupby(column).groups.items():
        examples = [
            {"row": int(line[i]), "column": column, "value": value,
             "expected": expected}
            for i in idx[:5]
        ]
        ledger.set_aside(
            table, f"{column} value {value!r} not usable (expected {expected})",
            len(idx), examples,
        )


def _to_aggregate(raw: pd.DataFrame, values: dict[str, pd.Series],
                  sheet: str) -> pd.DataFrame:
    """Map the mappable rows of one sheet to aggregate columns."""
    groups = [GROUP_MAP[(sheet, c)] for c in raw["Category"]]
    end_year = raw["Year"].str[:4].astype(int) + 1
    out = pd.DataFrame({
        "source": SOURCE,
        "definition": DEFINITION,
        "school_year": raw["Year"],
        "as_of_date": pd.to_datetime(end_year.astype(str) + "-06-30"),
        "level": "district",
        "district_id": raw["District"],
        "district_name": raw["District"].map(district_name),
        "grade": raw["Grade"].map(GRADE_MAP),
        "group_type": [g[0] for g in groups],
        "group_value": [g[1] for g in groups],
    }, index=raw.index)
    for col, target in MEASURE_COLUMNS.items():
        out[target] = values[col]

    # Rates are recomputed from the counts on the 0-1 scale; a suppressed count
    # leaves them missing (NaN propagates), never zero.
    out["chronic_absence_rate"] = out["chronically_absent"] / out["students"]
    out["ci_low"], out["ci_upp"] = wilson_interval(
        out["chronically_absent"], out["students"]
    )
    out["attendance_rate"] = 1 - out["days_absent"] / out["days_enrolled"]

    suppressed = (raw[list(MEASURE_COLUMNS)] == SUPPRESSED).any(axis=1)
    out["suppressed_at_source"] = suppressed
    out["approximate"] = False
    out["note"] = np.where(suppressed, f"{NOTE}; {NOTE_SUPPRESSED}", NOTE)
    return out

