"""The tables and sentences of the school report and the district summary.

Notebooks call these functions and plot what they return; no metric is computed
here. Every function reads a processed run (see :mod:`analysis.pipeline`): the
aggregate table for staff, or only the public release made by
:mod:`analysis.privacy` for the public audience. Student rows are reachable only
through :func:`tier_list`, which refuses the public audience.

Reading is lazy and sliced. A function about one unit reads only that unit's rows
and its district's (or the state's), with the filter pushed into the Parquet
reader, so a school report neither loads nor filters a state-wide table; only
:func:`school_overview` (the district summary) reads whole files. The reader
skips a Parquet row group only when its statistics rule the unit out:
:func:`analysis.pipeline.prepare_run` writes the tables sorted by unit in small
row groups (:func:`analysis.pipeline.write_table`), so a slice decodes one or two
row groups. A run written before that (unsorted, one row group) still gives the
same slices, but each decodes the file's columns once (~0.4 s for a 1,000-school
aggregate instead of ~0.03 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from analysis.pipeline import ProcessedRun, load_processed, read_table, unit_filters
from analysis.quality import QualityLedger
from analysis.schema import (
    ALL_GRADES,
    BAND_LABELS,
    BANDS,
    GRADES,
    GROUP_TYPE_LABELS,
    MODALITY_LABELS,
)

AUDIENCES = ("staff", "public")


#: Columns of the student facts :func:`tier_list` needs (when the file has them).
TIER_COLUMNS = ("level", "unit_id", "student_id", "grade", "days_enrolled",
                "days_absent", "absence_rate", "chronic", "severe", "prior_chronic",
                "prior_severe", "on_pace", "tier2", "tier3")


class ReportData:
    """One processed run, as one audience may see it.

    Tables are read from the run's Parquet files on first use. ``table`` (the
    aggregate table, or the public release for the public audience),
    ``students`` (``None`` for the public audience) and ``modality`` load whole
    files; the per-unit functions of this module read slices instead (see
    :meth:`unit_slice`).
    """

    def __init__(self, run: ProcessedRun, audience: str, ledger: QualityLedger) -> None:
        self.run = run
        self.audience = audience
        self.ledger = ledger
        self._table: pd.DataFrame | None = None
        self._students: pd.DataFrame | None = None
        self._modality: pd.DataFrame | None = None
        self._dates: pd.DataFrame | None = None
        self._slices: dict[tuple[str, str], pd.DataFrame] = {}

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.run.as_of)

    @property
    def student_level(self) -> bool:
        return bool(self.run.info.get("student_level"))

    @property
    def is_public(self) -> bool:
        return self.audience == "public"

    @property
    def table_file(self) -> Path:
        """The aggregate table (staff) or its public release (public)."""
        name = "public.parquet" if self.is_public else "aggregate.parquet"
        return self.run.folder / name

    @property
    def table(self) -> pd.DataFrame:
        """The whole aggregate table (staff) or public release (public)."""
        if self._table is None:
            self._table = self._prepare(pd.read_parquet(self.table_file))
        return self._table

    @property
    def has_students(self) -> bool:
        """Whether student facts exist for this audience (without reading them)."""
        return not self.is_public and (self.run.folder / "students.parquet").exists()

    @property
    def students(self) -> pd.DataFrame | None:
        """All student facts (staff, student-level runs); ``None`` otherwise."""
        if self._students is None and self.has_students:
            self._students = pd.read_parquet(self.run.folder / "students.parquet")
        return self._students

    @property
    def modality(self) -> pd.DataFrame | None:
        """Days by learning modality, when the run has them."""
        path = self.run.folder / "modality.parquet"
        if self._modality is None and path.exists():
            self._modality = pd.read_parquet(path)
        return self._modality

    def unit_slice(self, unit: dict) -> pd.DataFrame:
        """Rows of ``unit``, of its district (for a school) and of the state.

        Read once per unit with the filter pushed into the Parquet reader, or
        cut from :attr:`table` when that is already loaded.
        """
        key = (unit["level"], unit["id"])
        if key not in self._slices:
            self._slices[key] = self._read_slice(unit)
        return self._slices[key]

    def _read_slice(self, unit: dict) -> pd.DataFrame:
        wanted = unit_filters(unit)
        if self._table is not None:
            table = self._table
            keep = pd.Series(False, index=table.index)
            for conditions in wanted:
                match = pd.Series(True, index=table.index)
                for name, _, value in conditions:
                    match &= table[name] == value
                keep |= match
            return table[keep.fillna(False)]
        return self._prepare(read_table(self.table_file, filters=wanted))

    def as_of_dates(self) -> pd.DataFrame:
        """Every as-of date in the table with its school year, one row each."""
        if self._dates is None:
            columns = ["as_of_date", "school_year"]
            frame = self._table[columns] if self._table is not None else \
                pd.read_parquet(self.table_file, columns=columns)
            frame = frame.drop_duplicates("as_of_date").copy()
            frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
            self._dates = frame.sort_values("as_of_date").reset_index(drop=True)
        return self._dates

    def unit_students(self, unit: dict, columns: tuple[str, ...]) -> pd.DataFrame:
        """Student facts of ``unit`` meeting a Tier 2 or Tier 3 trigger."""
        if self._students is not None:
            facts = self._students
            return facts[(facts["level"] == unit["level"])
                         & (facts["unit_id"] == unit["id"])
                         & (facts["tier2"] | facts["tier3"])]
        unit_rows = [("level", "==", unit["level"]), ("unit_id", "==", unit["id"])]
        return read_table(self.run.folder / "students.parquet", columns=list(columns),
                          filters=[unit_rows + [("tier2", "==", True)],
                                   unit_rows + [("tier3", "==", True)]])

    def unit_modality(self, unit: dict) -> pd.DataFrame | None:
        """Days by learning modality of ``unit``; ``None`` when the run has none.

        Cut from :attr:`modality` when that is loaded, else read with the filter
        pushed into the Parquet reader.
        """
        if self._modality is not None:
            frame = self._modality
        else:
            path = self.run.folder / "modality.parquet"
            if not path.exists():
                return None
            frame = read_table(path, filters=[[("level", "==", unit["level"]),
                                                ("unit_id", "==", unit["id"])]])
        return frame[(frame["level"] == unit["level"])
                     & (frame["unit_id"] == unit["id"])]

    def _prepare(self, table: pd.DataFrame) -> pd.DataFrame:
        """Add ``rate_display`` (staff) and parse ``as_of_date``."""
        if not self.is_public:
            table["rate_display"] = [
                "not available" if pd.isna(r) else f"{r:.1%}"
                for r in table["chronic_absence_rate"]
            ]
        table["as_of_date"] = pd.to_datetime(table["as_of_date"])
        return table


def load_report_data(processed_dir: str | Path, audience: str = "staff") -> ReportData:
    """Open a processed run for ``audience`` ("staff" or "public").

    Only ``run.json`` and ``quality.json`` are read here; tables are read when a
    function needs them, sliced to its unit. The public audience gets the public
    release only; student facts are never read from disk for it.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, got {audience!r}")
    run = load_processed(Path(processed_dir))
    ledger = QualityLedger.from_dict(
        json.loads((run.folder / "quality.json").read_text()))
    return ReportData(run=run, audience=audience, ledger=ledger)


# ----------------------------------------------------------------------------- units

def unit_info(data: ReportData, unit_id: str) -> dict:
    """The unit (school or district) with id ``unit_id``.

    Raises
    ------
    KeyError
        Naming the ids that exist, when ``unit_id`` is unknown.
    """
    for unit in data.run.units():
        if unit["id"] == str(unit_id):
            return unit
    known = ", ".join(u["id"] for u in data.run.units()[:30])
    raise KeyError(f"No school or district {unit_id!r} in this run. Known ids: {known}")


def _unit_rows(data: ReportData, unit: dict) -> pd.DataFrame:
    table = data.unit_slice(unit)
    key = "school_id" if unit["level"] == "school" else "district_id"
    return table[(table["level"] == unit["level"]) & (table[key] == unit["id"])]


def _parent_rows(data: ReportData, unit: dict) -> tuple[pd.DataFrame, str]:
    """Rows of the unit a figure is compared with: the district, else the state."""
    table = data.unit_slice(unit)
    if unit["level"] == "school":
        rows = table[(table["level"] == "district")
                     & (table["district_id"] == unit["district_id"])]
        if not rows.empty:
            return rows, str(rows["district_name"].dropna().iloc[0])
    rows = table[table["level"] == "state"]
    if not rows.empty:
        name = rows["district_name"].dropna()
        return rows, str(name.iloc[0]) if len(name) else "State"
    return rows.iloc[0:0], ""


def _headline_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["grade"] == ALL_GRADES) & (rows["group_type"] == "all")]


def _at(rows: pd.DataFrame, when: pd.Timestamp) -> pd.Series | None:
    hit = rows[rows["as_of_date"] == when]
    return None if hit.empty else hit.iloc[0]


def comparison_date(data: ReportData) -> pd.Timestamp | None:
    """The same date last year (student-level) or last year's end (published)."""
    dates = list(data.as_of_dates()["as_of_date"])
    if data.student_level:
        target = data.as_of - pd.DateOffset(years=1)
        return target if target in set(dates) else None
    earlier = [d for d in dates if d < data.as_of]
    return earlier[-1] if earlier else None


# ------------------------------------------------------------------------- headline

def headline(data: ReportData, unit_id: str) -> dict:
    """The headline figure of a unit with its comparisons.

    Returns
    -------
    dict
        ``rate``, ``rate_display``, ``ci_low``, ``ci_upp``, ``students`` (staff),
        ``parent_name``, ``parent_rate``, ``last_year_rate``, ``change_pp`` and a
        plain-language ``sentence``.
    """
    unit = unit_info(data, unit_id)
    rows = _headline_rows(_unit_rows(data, unit))
    now = _at(rows, data.as_of)
    parent_rows, parent_name = _parent_rows(data, unit)
    parent = _at(_headline_rows(parent_rows), data.as_of)
    when = comparison_date(data)
    before = _at(rows, when) if when is not None else None

    def value(row, col):
        return None if row is None or pd.isna(row[col]) else float(row[col])

    result = {
        "unit": unit,
        "rate": value(now, "chronic_absence_rate"),
        "rate_display": None if now is None else now["rate_display"],
        "ci_low": value(now, "ci_low"), "ci_upp": value(now, "ci_upp"),
        "students": value(now, "students") if "students" in rows else None,
        "parent_name": parent_name,
        "parent_rate": value(parent, "chronic_absence_rate"),
        "last_year_date": when,
        "last_year_rate": value(before, "chronic_absence_rate"),
    }
    rate, last = result["rate"], result["last_year_rate"]
    result["change_pp"] = None if rate is None or last is None else 100 * (rate - last)
    result["sentence"] = _headline_sentence(data, result)
    return result


def _headline_sentence(data: ReportData, h: dict) -> str:
    name, as_of = h["unit"]["name"], data.as_of.strftime("%-d %B %Y")
    if h["rate"] is None:
        shown = h["rate_display"] or "not available"
        return f"As of {as_of}, the chronic-absence rate at {name} is {shown}."
    text = (f"As of {as_of}, **{h['rate']:.1%}** of students at {name} are chronically "
            f"absent")
    if h["ci_low"] is not None:
        text += f" (95% interval {h['ci_low']:.1%} to {h['ci_upp']:.1%})"
    text += "."
    if h["parent_rate"] is not None:
        text += f" {h['parent_name']}: {h['parent_rate']:.1%}."
    if h["change_pp"] is not None:
        direction = "up" if h["change_pp"] > 0 else "down"
        label = "the same date last year" if data.student_level else "last year"
        text += (f" That is {direction} {abs(h['change_pp']):.1f} percentage points from "
                 f"{label} ({h['last_year_rate']:.1%}).")
    return text


# --------------------------------------------------------------------------- tables

def trend(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Year-to-date rate at each as-of point, for this year and last (or each year)."""
    unit = unit_info(data, unit_id)
    rows = _headline_rows(_unit_rows(data, unit)).sort_values("as_of_date")
    columns = ["school_year", "as_of_date", "chronic_absence_rate", "ci_low", "ci_upp",
               "rate_display"]
    out = rows[columns].copy()
    if data.student_level:
        # Month ends, the as-of date and each year's last day; the same date last
        # year is dropped when it is not one of those (it would break the line).
        last_day = out.groupby("school_year")["as_of_date"].transform("max")
        keep = (out["as_of_date"].dt.is_month_end | (out["as_of_date"] == data.as_of)
                | (out["as_of_date"] == last_day))
        out = out[keep]
        start = out["as_of_date"].dt.month.map(lambda m: (m - 7) % 12)
        out["school_month"] = start
    return out.reset_index(drop=True)


def bands(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Students in each attendance band at the as-of date (staff, student-level)."""
    unit = unit_info(data, unit_id)
    if data.is_public or not data.student_level:
        return pd.DataFrame(columns=["band", "label", "students", "share"])
    row = _at(_headline_rows(_unit_rows(data, unit)), data.as_of)
    counts = [int(row[b]) if row is not None and not pd.isna(row[b]) else 0 for b in BANDS]
    total = sum(counts)
    return pd.DataFrame({
        "band": list(BANDS), "label": [BAND_LABELS[b] for b in BANDS], "students": counts,
        "share": [c / total if total else float("nan") for c in counts],
    })


def by_grade(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Rates by grade at the as-of date, in school order."""
    unit = unit_info(data, unit_id)
    rows = _unit_rows(data, unit)
    rows = rows[(rows["group_type"] == "all") & (rows["grade"] != ALL_GRADES)
                & (rows["as_of_date"] == data.as_of)].copy()
    rows["order"] = rows["grade"].map({g: i for i, g in enumerate(GRADES)})
    return rows.sort_values("order").drop(columns="order").reset_index(drop=True)


def by_group(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Rates by student group at the as-of date, with ``group_label``."""
    unit = unit_info(data, unit_id)
    rows = _unit_rows(data, unit)
    rows = rows[(rows["grade"] == ALL_GRADES) & (rows["as_of_date"] == data.as_of)].copy()
    order = {g: i for i, g in enumerate(GROUP_TYPE_LABELS)}
    rows["group_label"] = rows["group_type"].map(GROUP_TYPE_LABELS).fillna(rows["group_type"])
    rows["order"] = rows["group_type"].map(order).fillna(99)
    return rows.sort_values(["order", "group_value"]).drop(columns="order") \
        .reset_index(drop=True)


def by_modality(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Share of days missed by learning modality (staff, student-level runs)."""
    unit = unit_info(data, unit_id)
    rows = None if data.is_public else data.unit_modality(unit)
    if rows is None:
        return pd.DataFrame(columns=["modality", "students_enrolled", "days_enrolled",
                                     "days_absent", "absence_rate"])
    rows = rows.copy()
    rows["absence_rate"] = rows["days_absent"] / rows["days_enrolled"]
    rows = rows.drop(columns=["level", "unit_id"]).sort_values("modality")
    rows["modality"] = rows["modality"].map(MODALITY_LABELS).fillna(rows["modality"])
    return rows.reset_index(drop=True)


def quality_table(data: ReportData) -> pd.DataFrame:
    """Rows read, used and set aside by reason, for the data-quality box."""
    return data.ledger.summary()


def tier_list(data: ReportData, unit_id: str) -> pd.DataFrame:
    """Students meeting a Tier 2 or Tier 3 trigger at the as-of date (staff only).

    Raises
    ------
    PermissionError
        For the public audience: student rows never reach a public output.
    """
    if data.is_public:
        raise PermissionError("The Tier 2/3 student list is for staff reports only.")
    unit = unit_info(data, unit_id)
    if not data.has_students:
        return pd.DataFrame()
    rows = data.unit_students(unit, TIER_COLUMNS).copy()
    rows["tier"] = rows["tier3"].map({True: "Tier 3", False: "Tier 2"})
    reasons = []
    for _, r in rows.iterrows():
        why = []
        if r["severe"]:
            why.append("20%+ this year")
        elif r["chronic"]:
            why.append("chronic this year")
        if r.get("prior_severe"):
            why.append("20%+ last year")
        elif r.get("prior_chronic"):
            why.append("chronic last year")
        if r.get("on_pace") and not r["chronic"]:
            why.append("on pace (monthly check)")
        reasons.append("; ".join(why))
    rows["why"] = reasons
    columns = ["tier", "student_id", "grade", "days_enrolled", "days_absent",
               "absence_rate", "why"]
    return rows.sort_values(["tier", "absence_rate"], ascending=[False, False])[columns] \
        .reset_index(drop=True)


def definition_box(data: ReportData, unit_id: str) -> str:
    """Markdown stating definition, population, as-of date, source and code version."""
    unit = unit_info(data, unit_id)
    info = data.run.info
    code = info.get("code", {})
    commit = (code.get("git_commit") or "")[:10] or "not in a git checkout"
    inputs = info.get("inputs", {})
    population = (
        f"Students enrolled at {unit['name']} ({unit['level']}) in the "
        f"{_school_year(data)} school year up to the as-of date who meet the "
        f"definition's eligibility rule; all grades unless a table says otherwise."
        if data.student_level else
        f"Students counted by the publisher for {unit['name']} in each school year shown."
    )
    lines = [
        f"**Definition.** {info['definition_text']}",
        f"**Population.** {population}",
        f"**As of.** {data.as_of:%-d %B %Y} (figures are year to date).",
        f"**Source.** {info['source']} data in `{Path(info['data_dir']).name}`: "
        f"{len(inputs)} input files, checksums in `run.json`.",
        f"**Audience.** {data.audience}: " + (
            "groups of 10 or fewer students are hidden, and rates near 0% or 100% are "
            "shown as a bound." if data.is_public else
            "includes student-level lists; do not share outside the attendance team."),
        f"**Code.** analysis {code.get('version', '?')}, commit {commit}; "
        f"computed {info.get('created_utc', '?')}.",
    ]
    return "\n\n".join(lines)


def _school_year(data: ReportData) -> str:
    dates = data.as_of_dates()
    rows = dates[dates["as_of_date"] == data.as_of]["school_year"]
    return str(rows.iloc[0]) if len(rows) else ""


# ---------------------------------------------------------------- district summary

def school_overview(data: ReportData) -> pd.DataFrame:
    """Every unit side by side: rate now, a month ago and a year ago, and the changes."""
    units = data.run.units()
    level = units[0]["level"] if units else "school"
    table = data.table
    rows = table[(table["level"] == level) & (table["grade"] == ALL_GRADES)
                 & (table["group_type"] == "all")]
    key = "school_id" if level == "school" else "district_id"
    name = "school_name" if level == "school" else "district_name"

    dates = sorted(rows["as_of_date"].unique())
    current = [d for d in dates if d < data.as_of
               and _same_year(rows, d, data.as_of)]
    last_month = current[-1] if current and data.student_level else None
    last_year = comparison_date(data)

    def rate_at(when):
        if when is None:
            return pd.Series(dtype="Float64")
        return rows[rows["as_of_date"] == when].set_index(key)["chronic_absence_rate"]

    now = rows[rows["as_of_date"] == data.as_of].set_index(key)
    out = pd.DataFrame({
        "name": now[name],
        "rate": now["chronic_absence_rate"],
        "rate_display": now["rate_display"],
        "ci_low": now["ci_low"], "ci_upp": now["ci_upp"],
    })
    if "students" in now:
        out["students"] = now["students"]
    out["rate_last_month"] = rate_at(last_month)
    out["rate_last_year"] = rate_at(last_year)
    out["change_month_pp"] = 100 * (out["rate"] - out["rate_last_month"])
    out["change_year_pp"] = 100 * (out["rate"] - out["rate_last_year"])
    out.attrs["last_month"] = last_month
    out.attrs["last_year"] = last_year
    return out.sort_values("rate", ascending=False).rename_axis("id").reset_index()


def _same_year(rows: pd.DataFrame, a, b) -> bool:
    years = rows.drop_duplicates("as_of_date").set_index("as_of_date")["school_year"]
    return years.get(a) == years.get(b)


def biggest_movers(overview: pd.DataFrame, n: int = 5, min_students: int = 30) -> pd.DataFrame:
    """The ``n`` units whose rate changed most since last month (else last year)."""
    column = "change_month_pp" if overview["change_month_pp"].notna().any() \
        else "change_year_pp"
    rows = overview.dropna(subset=[column])
    if "students" in rows:
        rows = rows[rows["students"] >= min_students]
    order = rows[column].abs().sort_values(ascending=False).index[:n]
    return rows.loc[order, ["id", "name", "rate", column]].reset_index(drop=True)


# ------------------------------------------------------------------ notebook helpers

def check_parameters(data: ReportData, source: str, as_of: str, profile: str) -> None:
    """Fail early when a notebook's parameters do not match the processed run it reads.

    Raises
    ------
    ValueError
        Naming the parameter, the value given and the value in the run.
    """
    info = data.run.info
    expected = {"source": info["source"], "as_of": info["as_of"]}
    if info.get("student_level"):
        expected["profile"] = info["definition"]
    given = {"source": source, "as_of": str(as_of), "profile": profile}
    for key, value in expected.items():
        if given[key] and given[key] != value:
            raise ValueError(
                f"Parameter {key}={given[key]!r} does not match the processed run in "
                f"{data.run.folder} ({key}={value!r}). Rerun `python -m analysis reports` "
                f"with the parameters you want."
            )


def caption(data: ReportData, unit: dict, population: str = "all students") -> str:
    """The one-line caption under every chart: population, definition, as-of, source."""
    info = data.run.info
    return (f"Population: {population}, {unit['name']}. Definition: {info['definition']}. "
            f"As of {data.as_of:%-d %b %Y}. Source: {info['source']} "
            f"({Path(info['data_dir']).name}). Audience: {data.audience}.")


def markdown_table(frame: pd.DataFrame, columns: dict[str, str],
                   percent: tuple[str, ...] = (), decimals: int = 1,
                   labels: dict[str, dict] | None = None) -> str:
    """Render selected columns as a Markdown table with readable headers.

    ``percent`` columns print as percentages; other numbers with ``decimals``
    places (whole numbers without); ``labels`` maps a column's codes to words.
    """
    rows = frame[list(columns)].copy()
    for col in percent:
        rows[col] = [("" if pd.isna(v) else f"{v:.1%}") for v in rows[col]]
    for col in rows.columns:
        if col not in percent and pd.api.types.is_float_dtype(rows[col]):
            # Whole numbers print without decimals, the rest with one.
            rows[col] = [("" if pd.isna(v) else f"{v:,.0f}" if float(v).is_integer()
                          else f"{v:,.{decimals}f}") for v in rows[col]]
    if labels:
        for col, mapping in labels.items():
            rows[col] = rows[col].map(lambda v, m=mapping: m.get(v, v))
    rows = rows.rename(columns=columns).astype(object)
    rows = rows.where(rows.notna(), "")
    header = "| " + " | ".join(rows.columns) + " |"
    rule = "|" + "|".join("---" for _ in rows.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in r) + " |" for r in rows.itertuples(index=False)]
    return "\n".join([header, rule, *body])
