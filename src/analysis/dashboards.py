"""Dashboards: a public one that reads only a public release, and a staff one.

**Public** (``notebooks/dashboards/public/``): district overview, then a school (or
community district); chronic absence and attendance bands over time; grades and
student groups with 95% intervals; the California status x change colour of each
unit and group; plain-language explanations and the definition in force. It reads
one thing: a release folder written by :func:`analysis.release.write_release`
(suppressed and audited), never student files, and never suppresses on its own.

**Staff** (``notebooks/dashboards/staff/``): one school at a time: the Tier 2/3 list,
students who crossed into a worse band this month, recent absences and the supports
delivered. It reads the processed run (student-level) and is only ever served with
a token (:mod:`analysis.dashboard_server`).

The page sections are HTML fragments built by :class:`PublicView`, so the served
dashboard and the static export (:mod:`analysis.dashboard_export`) show the same
thing. Widgets live in :class:`PublicDashboard` and :class:`StaffDashboard`, with
one small named callback per control. Charts are PNG images with alt text, drawn in
the Okabe-Ito palette (colour-blind safe).
"""

from __future__ import annotations

import base64
import html
import io
import os
import re
from pathlib import Path
from urllib.parse import parse_qs

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from analysis import paths, plots
from analysis.log import logger
from analysis.release import PublicRelease, latest_release, list_releases, load_release
from analysis.schema import (
    ALL_GRADES,
    BAND_LABELS,
    BANDS,
    GRADES,
    GROUP_TYPE_LABELS,
)
from analysis.status_colour import SWATCHES

#: Query-string keys a dashboard reads; anything else is ignored.
QUERY_KEYS = ("source", "unit", "group", "school")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 _.\-]{1,80}$")

OVERVIEW = "overview"
PURPOSE = ("How many students are missing 10% or more of school days, where, and for "
           "whom, so that families, schools and partners can act early.")
STAFF_PURPOSE = ("Which students at one school need support now, who slipped into a "
                 "worse attendance band this month, and which supports were delivered.")

EXPLAIN = (
    "A student is **chronically absent** after missing 10% or more of the days they "
    "were enrolled so far this year, for any reason: excused, unexcused or "
    "suspended. About two days a month is enough. Each figure is shown with a 95% "
    "interval: the range the rate could plausibly take given how many students it "
    "counts. Groups of 10 or fewer students are hidden, and so is any figure that "
    "would let a reader work a hidden one back out; rates very close to 0% or 100% "
    "are shown only as a bound (for example ≤5%).")


# ---------------------------------------------------------------------- query string

def parse_query(text: str | None) -> dict[str, str]:
    """The dashboard parameters in a query string; unsafe or unknown keys dropped.

    >>> parse_query("source=nyc-doe&unit=7&x=1&group=<script>")
    {'source': 'nyc-doe', 'unit': '7'}
    """
    out = {}
    for key, values in parse_qs(text or "", keep_blank_values=False).items():
        if key in QUERY_KEYS and values and _SAFE_VALUE.match(values[0]):
            out[key] = values[0]
    return out


def query_params() -> dict[str, str]:
    """The page's query parameters, read the way that works with preheated kernels.

    A preheated Voila kernel runs the notebook before any visitor asks for it, so
    ``QUERY_STRING`` is not set yet; ``voila.utils.get_query_string`` waits for the
    request. Outside Voila (tests, Papermill) the environment is read directly.
    """
    if os.environ.get("VOILA_PREHEAT", "False") != "False":
        from voila.utils import get_query_string

        return parse_query(get_query_string())
    return parse_query(os.environ.get("QUERY_STRING", ""))


# --------------------------------------------------------------------------- figures

def figure_html(fig: Figure, alt: str, caption: str = "", dpi: int = 90) -> str:
    """A figure as an ``<img>`` with alt text and a caption; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (f'<figure class="chart"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(alt, quote=True)}" style="max-width:100%">{cap}'
            f"</figure>")


def _table_html(frame: pd.DataFrame, columns: dict[str, str], caption: str = "",
                cell_html: dict[str, object] | None = None) -> str:
    """A plain, accessible HTML table (header cells scoped, caption stated)."""
    cell_html = cell_html or {}
    head = "".join(f'<th scope="col">{html.escape(t)}</th>' for t in columns.values())
    body = []
    for _, row in frame.iterrows():
        cells = []
        for col in columns:
            if col in cell_html:
                cells.append(f"<td>{cell_html[col](row)}</td>")
            else:
                value = row.get(col)
                text = "" if value is None or (not isinstance(value, str)
                                                and pd.isna(value)) else str(value)
                cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<table class="dash-table">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def natural_key(text) -> tuple:
    """Sort key that puts "District 2" before "District 10" (numbers by value).

    >>> sorted(["District 10", "District 2", "District 1"], key=natural_key)
    ['District 1', 'District 2', 'District 10']
    """
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", str(text)) if part)


def _markdown(text: str) -> str:
    """The little Markdown the explanations use (**bold**) as HTML."""
    escaped = html.escape(text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


def _interval(row) -> str:
    low, high = row.get("ci_low"), row.get("ci_upp")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"{low:.1%} to {high:.1%}"


def colour_badge(name) -> str:
    """A swatch plus the colour's name (never colour alone)."""
    if name is None or (not isinstance(name, str) and pd.isna(name)) or not name:
        return ""
    swatch = SWATCHES.get(str(name), "#999999")
    return (f'<span class="ca-colour" style="white-space:nowrap"><span '
            f'aria-hidden="true" style="display:inline-block;width:0.9em;height:0.9em;'
            f'border:1px solid #333;background:{swatch};'
            f'margin-right:0.3em;vertical-align:middle"></span>{html.escape(str(name))}'
            f"</span>")


def status_html(text: str, **data: str) -> str:
    """A polite live region saying what is shown, with ``data-*`` attributes."""
    attrs = "".join(f' data-{k}="{html.escape(str(v), quote=True)}"'
                    for k, v in data.items())
    return (f'<p class="dash-status dash-note" role="status" aria-live="polite"{attrs}>'
            f"{html.escape(text)}</p>")


STYLE = """<style>
.dash-table{border-collapse:collapse;margin:0.5em 0 1em 0;font-size:0.92em}
.dash-table th,.dash-table td{border-bottom:1px solid #ccc;padding:0.25em 0.6em;
text-align:left}
.dash-table caption{text-align:left;font-weight:600;padding-bottom:0.3em}
figure.chart{margin:0.5em 0}figure.chart figcaption{font-size:0.85em;color:#444}
.dash-note{color:#444;font-size:0.9em}
</style>"""


# ----------------------------------------------------------------------- public view

class PublicView:
    """Everything the public dashboard shows, from one public release only."""

    def __init__(self, release: PublicRelease):
        self.release = release
        self.table = release.table
        self.as_of = release.as_of
        levels = set(self.table["level"].dropna())
        units = release.units()
        self.unit_level = units[0]["level"] if units else "school"
        # The overview is the one district above the schools, when there is one.
        parents = self.table[(self.table["level"] == "district")
                             & (self.unit_level == "school")]
        ids = sorted(parents["district_id"].dropna().unique())
        self.parent = None
        if "district" in levels and self.unit_level == "school" and len(ids) == 1:
            name = parents["district_name"].dropna()
            self.parent = {"id": ids[0], "level": "district",
                           "name": str(name.iloc[0]) if len(name) else ids[0]}

    # ------------------------------------------------------------------ units
    def units(self) -> list[dict]:
        """The units a reader can drill down to."""
        return self.release.units()

    def options(self) -> list[tuple[str, str]]:
        """Dropdown choices: the overview first, then every unit by name."""
        label = (f"Overview: {self.parent['name']}" if self.parent else
                 "Overview: all " + ("community districts" if self.unit_level ==
                                     "district" else "schools"))
        return [(label, OVERVIEW)] + sorted(
            ((f"{u['name']} ({u['id']})", u["id"]) for u in self.units()),
            key=lambda o: natural_key(o[0]))

    def unit(self, unit_id: str) -> dict | None:
        """The unit with ``unit_id``; the overview's own unit for ``overview``."""
        if unit_id == OVERVIEW:
            return self.parent
        for unit in self.units():
            if unit["id"] == str(unit_id):
                return unit
        return None

    def rows(self, unit: dict) -> pd.DataFrame:
        key = "school_id" if unit["level"] == "school" else "district_id"
        table = self.table
        rows = table[(table["level"] == unit["level"]) & (table[key] == unit["id"])]
        if unit["level"] == "district":
            rows = rows[rows["school_id"].isna()]
        return rows

    # ----------------------------------------------------------------- tables
    def headline(self, unit: dict) -> pd.Series | None:
        rows = self.rows(unit)
        rows = rows[(rows["grade"] == ALL_GRADES) & (rows["group_type"] == "all")
                    & (rows["as_of_date"] == self.as_of)]
        return None if rows.empty else rows.iloc[0]

    def trend(self, unit: dict) -> pd.DataFrame:
        """Headline rate at each month end (student-level data) or each year."""
        rows = self.rows(unit)
        rows = rows[(rows["grade"] == ALL_GRADES) & (rows["group_type"] == "all")]
        out = rows.sort_values("as_of_date").copy()
        if self.release.student_level:
            keep = out["as_of_date"].dt.is_month_end | (out["as_of_date"] == self.as_of)
            last_year = self.as_of - pd.DateOffset(years=1)
            # Last year's points after this date would compare a full year with part.
            keep &= (out["as_of_date"] > last_year - pd.DateOffset(years=1))
            out = out[keep]
            out["school_month"] = out["as_of_date"].dt.month.map(lambda m: (m - 7) % 12)
        return out.reset_index(drop=True)

    def bands(self, unit: dict) -> pd.DataFrame:
        """Share of students in each band at each month end of this school year."""
        trend = self.trend(unit)
        if not self.release.student_level or "share_satisfactory" not in trend:
            return pd.DataFrame()
        year = self.school_year()
        rows = trend[trend["school_year"] == year]
        long = []
        for _, row in rows.iterrows():
            for band in BANDS:
                long.append({"as_of_date": row["as_of_date"], "band": band,
                             "label": BAND_LABELS[band],
                             "share": row.get(f"share_{band}"),
                             "display": row.get(f"share_{band}_display") or
                             row["rate_display"]})
        return pd.DataFrame(long)

    def by_grade(self, unit: dict) -> pd.DataFrame:
        rows = self.rows(unit)
        rows = rows[(rows["group_type"] == "all") & (rows["grade"] != ALL_GRADES)
                    & (rows["as_of_date"] == self.as_of)].copy()
        rows["order"] = rows["grade"].map({g: i for i, g in enumerate(GRADES)})
        rows["label"] = "Grade " + rows["grade"].astype(str)
        return rows.sort_values("order").reset_index(drop=True)

    def by_group(self, unit: dict, group_type: str = "all") -> pd.DataFrame:
        rows = self.rows(unit)
        rows = rows[(rows["grade"] == ALL_GRADES) & (rows["group_type"] != "all")
                    & (rows["as_of_date"] == self.as_of)].copy()
        if group_type and group_type != "all":
            rows = rows[rows["group_type"] == group_type]
        order = {g: i for i, g in enumerate(GROUP_TYPE_LABELS)}
        rows["order"] = rows["group_type"].map(order).fillna(99)
        rows["label"] = (rows["group_type"].map(GROUP_TYPE_LABELS).fillna(
            rows["group_type"]) + ": " + rows["group_value"].astype(str))
        return rows.sort_values(["order", "group_value"]).reset_index(drop=True)

    def group_types(self) -> list[tuple[str, str]]:
        present = set(self.table["group_type"].dropna()) - {"all"}
        return [("All student groups", "all")] + [
            (label, key) for key, label in GROUP_TYPE_LABELS.items() if key in present]

    def colours(self, unit: dict | None) -> pd.DataFrame:
        """CA colours of a unit's groups (``None``: every unit's all-students row)."""
        table = self.release.colours
        if table.empty:
            return table
        if unit is None:
            rows = table[(table["level"] == self.unit_level)
                         & (table["group_type"] == "all")]
        else:
            key = "school_id" if unit["level"] == "school" else "district_id"
            rows = table[(table["level"] == unit["level"]) & (table[key] == unit["id"])]
            if unit["level"] == "district":
                rows = rows[rows["school_id"].isna()]
        order = {g: i for i, g in enumerate(GROUP_TYPE_LABELS)}
        return rows.assign(order=rows["group_type"].map(order).fillna(99)).sort_values(
            ["order", "group_value"]).reset_index(drop=True)

    def units_table(self) -> pd.DataFrame:
        """Every unit's rate now, with its interval and colour."""
        table = self.table
        rows = table[(table["level"] == self.unit_level)
                     & (table["grade"] == ALL_GRADES)
                     & (table["group_type"] == "all")
                     & (table["as_of_date"] == self.as_of)]
        key = "school_id" if self.unit_level == "school" else "district_id"
        name = "school_name" if self.unit_level == "school" else "district_name"
        out = rows[[key, name, "rate_display", "chronic_absence_rate", "ci_low",
                    "ci_upp"]].rename(columns={key: "id", name: "name"})
        colours = self.colours(None)
        if not colours.empty:
            out = out.merge(colours[[key, "colour", "change_pp", "prior_rate_display",
                                     "reason"]].rename(columns={key: "id"}),
                            on="id", how="left")
        return out.sort_values("name", key=lambda s: s.map(natural_key)).reset_index(
            drop=True)

    # ----------------------------------------------------------------- text
    def school_year(self) -> str:
        rows = self.table[self.table["as_of_date"] == self.as_of]["school_year"]
        return str(rows.iloc[0]) if len(rows) else ""

    def caption(self, unit: dict, population: str = "all students") -> str:
        info = self.release.info
        return (f"Population: {population}, {unit['name']}. Definition: "
                f"{info['definition']}. As of {self.as_of:%-d %b %Y}. Source: "
                f"{info['source']} ({info.get('data_name', '')}), public release.")

    def definition_html(self) -> str:
        info = self.release.info
        privacy = info.get("privacy", {})
        audit = info.get("audit", {})
        return (
            f"<h3>Definition, population and source</h3>"
            f"<p><strong>Definition.</strong> "
            f"{html.escape(info['definition_text'])}</p>"
            f"<p><strong>As of.</strong> {self.as_of:%-d %B %Y} (figures are year to "
            f"date) - school year {html.escape(self.school_year())}.</p>"
            f"<p><strong>Source.</strong> {html.escape(info['source'])} "
            f"({html.escape(info.get('data_name', ''))}); public release of "
            f"{html.escape(str(info.get('released_utc', '')))}.</p>"
            f"<p><strong>Privacy.</strong> Groups of "
            f"{privacy.get('min_group_size', 10)} "
            f"or fewer students are hidden; so is any figure that would reveal one. "
            f"Before release, an audit tried to work every hidden figure back out "
            f"from everything shown, and could not "
            f"({audit.get('hidden_cells_checked', 0)} hidden figures checked).</p>")

    def explanation_html(self) -> str:
        return f'<p class="dash-note">{_markdown(EXPLAIN)}</p>'

    def colour_explanation_html(self) -> str:
        return ('<p class="dash-note">The colour is the California School Dashboard '
                "performance level: this year's rate (status) against the change from "
                "last year, using CDE's five-by-five table (Blue best, then Green, "
                "Yellow, Orange, Red). It is shown only where both years' rates are "
                "shown and there are at least 30 students. California computes it "
                "from full-year data with its own definition (grades K-8, 31 or more "
                "days enrolled); here it uses the definition above "
                + ("and the same date last year" if self.release.student_level else
                   "and the previous school year")
                + ", so it is a guide, not the official colour.</p>")

    # ----------------------------------------------------------------- sections
    def headline_html(self, unit: dict) -> str:
        row = self.headline(unit)
        when = f"{self.as_of:%-d %B %Y}"
        if row is None:
            return f"<p>No figure is published for {html.escape(unit['name'])}.</p>"
        if pd.isna(row["chronic_absence_rate"]):
            text = (f"As of {when}, the chronic-absence rate at "
                    f"{html.escape(unit['name'])} is "
                    f"{html.escape(row['rate_display'])}.")
            if row["suppressed"]:
                text += " It is hidden to protect the privacy of a small group."
            return f'<p class="dash-headline">{text}</p>'
        text = (f"As of {when}, <strong>{row['chronic_absence_rate']:.1%}</strong> of "
                f"students at {html.escape(unit['name'])} are chronically absent")
        interval = _interval(row)
        text += f" (95% interval {interval})." if interval else "."
        colour = self.colours(unit)
        mine = colour[colour["group_type"] == "all"] if not colour.empty else colour
        if not mine.empty and pd.notna(mine.iloc[0]["colour"]):
            c = mine.iloc[0]
            text += (f" Dashboard colour: {colour_badge(c['colour'])} (status "
                     f"{html.escape(str(c['status']))}; "
                     f"{html.escape(str(c['change']).lower())}, "
                     f"{c['change_pp']:+.1f} points since last year).")
        return f'<p class="dash-headline">{text}</p>'

    def trend_html(self, unit: dict) -> str:
        trend = self.trend(unit)
        shown = trend.dropna(subset=["chronic_absence_rate"])
        if shown.empty:
            return "<p>No trend can be shown: every figure for this unit is hidden.</p>"
        monthly = self.release.student_level
        title = ("Year-to-date chronic absence, this year and last" if monthly
                 else "Chronic absence by school year")
        fig = plots.trend_chart(trend, title, self.caption(unit), monthly=monthly)
        parts = []
        for year, rows in shown.groupby("school_year", sort=True):
            first, last = rows.iloc[0], rows.iloc[-1]
            parts.append(f"{year}: {first['chronic_absence_rate']:.1%} at "
                         f"{first['as_of_date']:%-d %b %Y} to "
                         f"{last['chronic_absence_rate']:.1%} at "
                         f"{last['as_of_date']:%-d %b %Y}" if len(rows) > 1 else
                         f"{year}: {first['chronic_absence_rate']:.1%}")
        hidden = int(trend["chronic_absence_rate"].isna().sum())
        alt = (f"Line chart of the chronic-absence rate at {unit['name']} over time. "
               + "; ".join(parts) + "."
               + (f" {hidden} point(s) hidden or coded for privacy." if hidden else ""))
        return figure_html(fig, alt)

    def bands_html(self, unit: dict) -> str:
        bands = self.bands(unit)
        if bands.empty:
            return ('<p class="dash-note">Attendance bands need student-level data; '
                    "the published data has none.</p>")
        wide = bands.pivot(index="as_of_date", columns="band", values="share")
        complete = wide.dropna()
        if complete.empty:
            return ('<p class="dash-note">Attendance bands are hidden or coded for '
                    "privacy at every date.</p>")
        plots._style()
        fig, ax = plt.subplots(figsize=(7.5, 2.8))
        labels = [d.strftime("%b %Y") for d in complete.index]
        bottom = np.zeros(len(complete))
        for band in BANDS:
            values = complete[band].astype(float).to_numpy()
            ax.bar(labels, values, bottom=bottom, color=plots.BAND_COLOURS[band],
                   label=BAND_LABELS[band], edgecolor="white")
            bottom += values
        ax.yaxis.set_major_formatter(PercentFormatter(1, decimals=0))
        ax.set_ylim(0, 1)
        ax.set_ylabel("Share of students")
        ax.set_title("Students by attendance band, at each month end", loc="left")
        ax.legend(ncol=2, fontsize=7.5, frameon=False, loc="upper center",
                  bbox_to_anchor=(0.5, -0.15))
        fig.tight_layout()
        last = complete.iloc[-1]
        alt = (f"Stacked bar chart of the share of students at {unit['name']} in each "
               f"attendance band at each month end of {self.school_year()}. At "
               f"{complete.index[-1]:%-d %b %Y}: "
               + ", ".join(f"{BAND_LABELS[b].split(' (')[0].lower()} {last[b]:.0%}"
                           for b in BANDS) + ".")
        skipped = len(wide) - len(complete)
        note = (f" {skipped} month(s) left out: a band is hidden or coded for privacy."
                if skipped else "")
        return figure_html(fig, alt, self.caption(unit) + note)

    def rates_html(self, rows: pd.DataFrame, unit: dict, title: str, what: str,
                   population: str) -> str:
        if rows.empty:
            return f"<p>No {what} breakdown is published for this unit.</p>"
        head = self.headline(unit)
        reference = (None if head is None or pd.isna(head["chronic_absence_rate"])
                     else float(head["chronic_absence_rate"]))
        fig = plots.rate_chart(rows, "label", title, self.caption(unit, population),
                               reference=reference)
        shown = rows.dropna(subset=["chronic_absence_rate"])
        withheld = rows[rows["chronic_absence_rate"].isna()]
        alt = (f"Dot chart with 95% intervals: {title.lower()} at {unit['name']} on "
               f"{self.as_of:%-d %b %Y}. "
               + "; ".join(f"{r['label']} {r['chronic_absence_rate']:.1%}"
                           for _, r in shown.iterrows())
               + ("." if len(shown) else "")
               + (" Not shown as a number: " + "; ".join(
                   f"{r['label']} ({r['rate_display']})"
                   for _, r in withheld.iterrows())
                  + "." if len(withheld) else ""))
        table = _table_html(rows, {"label": what.capitalize(),
                                   "rate_display": "Chronically absent",
                                   "interval": "95% interval"},
                            caption=f"{title} (table)",
                            cell_html={"interval": lambda r: html.escape(_interval(r))})
        return figure_html(fig, alt) + table

    def colours_html(self, unit: dict | None) -> str:
        rows = self.colours(unit)
        if rows.empty:
            return ""
        rows = rows.assign(label=rows["group_label"].astype(str)
                           .where(rows["group_type"] != "all", "")
                           + rows["group_value"].astype(str).radd(
                               np.where(rows["group_type"] != "all", ": ", "")))
        cols = {"label": "Group", "rate_display": "This year",
                "prior_rate_display": "Last year", "change": "Change",
                "status": "Status", "colour": "Colour", "reason": "Note"}
        return _table_html(
            rows, cols, caption=f"California status x change colour, {unit['name']}"
            if unit else "California status x change colour",
            cell_html={"colour": lambda r: colour_badge(r["colour"]),
                       "change": lambda r: html.escape(
                           "" if pd.isna(r["change"]) else
                           f"{r['change']} ({r['change_pp']:+.1f} pts)")})

    def units_html(self) -> str:
        table = self.units_table()
        what = "Community district" if self.unit_level == "district" else "School"
        cols = {"name": what, "rate_display": "Chronically absent",
                "interval": "95% interval", "colour": "Colour"}
        return _table_html(
            table, cols, caption=f"Every {what.lower()} as of {self.as_of:%-d %B %Y}",
            cell_html={"interval": lambda r: html.escape(_interval(r)),
                       "colour": lambda r: colour_badge(r.get("colour"))})

    def sections(self, unit_id: str, group_type: str = "all") -> dict[str, str]:
        """Every section of one view, as HTML: the served and the static page."""
        unit = self.unit(unit_id)
        out = {"headline": "", "trend": "", "bands": "", "grades": "", "groups": "",
               "colours": "", "units": "", "definition": self.definition_html(),
               "explanation": self.explanation_html()}
        if unit_id == OVERVIEW:
            out["units"] = self.units_html() + self.colour_explanation_html()
        if unit is None:
            return out
        out["headline"] = self.headline_html(unit)
        out["trend"] = self.trend_html(unit)
        out["bands"] = self.bands_html(unit)
        out["grades"] = self.rates_html(self.by_grade(unit), unit,
                                        "Chronic absence by grade", "grade",
                                        "students by grade")
        label = dict((v, k) for k, v in self.group_types()).get(group_type, "")
        out["groups"] = self.rates_html(
            self.by_group(unit, group_type), unit, "Chronic absence by student group"
            + (f" ({label.lower()})" if group_type != "all" else ""), "group",
            "students by group")
        out["colours"] = self.colours_html(unit) + (
            "" if unit_id == OVERVIEW else self.colour_explanation_html())
        return out


# ------------------------------------------------------------------ public widgets

SECTION_TITLES = {"headline": "", "units": "Overview", "trend": "Over time",
                  "bands": "Attendance bands", "grades": "By grade",
                  "groups": "By student group", "colours": "Dashboard colours",
                  "explanation": "How to read this", "definition": ""}


class PublicDashboard:
    """The public dashboard's widgets.

    Parameters
    ----------
    root : Path, optional
        Releases folder; ``data/public`` (or ``$ANALYSIS_RELEASES``) by default.
    source : str, optional
        Source to open first (``sample``, ``nyc-doe``, ...).
    """

    def __init__(self, root: Path | None = None, source: str | None = None):
        import ipywidgets as w

        self.root = root
        self.releases = list_releases(root)
        sources = sorted({r["source"] for r in self.releases})
        # The notebook's first cell carries the title and purpose; this adds styles.
        self.title = w.HTML(STYLE)
        self.message = w.HTML("")
        # Says what is shown once every section is drawn (read by screen readers,
        # and by the browser tests to know the page has redrawn).
        self.status = w.HTML("")
        self.source_picker = w.Dropdown(options=sources, description="Data",
                                        layout=w.Layout(width="22em"))
        self.unit_picker = w.Dropdown(description="Place",
                                      layout=w.Layout(width="34em"))
        self.group_picker = w.Dropdown(description="Groups",
                                       layout=w.Layout(width="28em"))
        self.sections = {name: w.HTML("") for name in SECTION_TITLES}
        self.view: PublicView | None = None
        self.widget = w.VBox(
            [self.title, w.HBox([self.source_picker, self.unit_picker]),
             self.message, self.status]
            + [self.sections[n]
               for n in ("headline", "units", "trend", "bands", "grades")]
            + [self.group_picker, self.sections["groups"], self.sections["colours"],
               self.sections["explanation"], self.sections["definition"]])
        if not sources:
            self.message.value = ("<p>No public release has been written yet. Run "
                                  "<code>make dashboards</code>.</p>")
            return
        self._quiet = False   # True while the code, not the reader, sets controls
        self.source_picker.value = source if source in sources else (
            "sample" if "sample" in sources else sources[0])
        self._open(self.source_picker.value)
        self.source_picker.observe(self.on_source_change, names="value")
        self.unit_picker.observe(self.on_unit_change, names="value")
        self.group_picker.observe(self.on_group_change, names="value")

    # Callbacks: small, named, one per control.
    def on_source_change(self, change) -> None:
        """Open the newest release of the chosen source, at its overview."""
        if not self._quiet:
            self._open(change["new"])

    def on_unit_change(self, change) -> None:
        """Show the chosen unit (or the overview)."""
        if not self._quiet:
            self.render()

    def on_group_change(self, change) -> None:
        """Redraw the student-group chart for the chosen dimension."""
        if not self._quiet:
            self._render_groups()

    def apply_query(self, params: dict[str, str]) -> None:
        """Honour ``?source=…&unit=…&group=…`` where the values exist."""
        source = params.get("source")
        if source and source in self.source_picker.options and \
                source != self.source_picker.value:
            self.source_picker.value = source
        units = dict((v, k) for k, v in self.unit_picker.options)
        unit = params.get("unit") or params.get("school")
        if unit in units:
            self.unit_picker.value = unit
        groups = dict((v, k) for k, v in self.group_picker.options)
        if params.get("group") in groups:
            self.group_picker.value = params["group"]

    def _open(self, source: str) -> None:
        release = load_release(latest_release(source, self.root))
        self.view = PublicView(release)
        self._quiet = True
        try:
            self.unit_picker.options = self.view.options()
            self.unit_picker.value = OVERVIEW
            self.group_picker.options = self.view.group_types()
            self.group_picker.value = "all"
        finally:
            self._quiet = False
        self.render()

    def render(self) -> None:
        """Fill every section for the current choices."""
        parts = self.view.sections(self.unit_picker.value, self.group_picker.value)
        for name, widget in self.sections.items():
            title = SECTION_TITLES[name]
            body = parts.get(name, "")
            widget.value = (f"<h2>{title}</h2>" if title and body else "") + body
        self.message.value = ""
        self._show_status()
        logger.debug("public dashboard: %s %s", self.view.release.source,
                      self.unit_picker.value)

    def _render_groups(self) -> None:
        view, unit_id = self.view, self.unit_picker.value
        unit = view.unit(unit_id)
        if unit is None:
            return
        label = dict((v, k) for k, v in view.group_types()).get(self.group_picker.value)
        group = self.group_picker.value
        body = view.rates_html(view.by_group(unit, group), unit,
                               "Chronic absence by student group"
                               + (f" ({label.lower()})" if group != "all" else ""),
                               "group", "students by group")
        self.sections["groups"].value = f"<h2>{SECTION_TITLES['groups']}</h2>" + body
        self._show_status()

    def _show_status(self) -> None:
        """State what the page now shows (set last, after every section)."""
        view, unit_id = self.view, self.unit_picker.value
        unit = view.unit(unit_id)
        name = (unit["name"] if unit else dict(
            (v, k) for k, v in view.options()).get(unit_id, str(unit_id)))
        self.status.value = status_html(
            f"Showing {name}, as of {view.as_of:%-d %B %Y} ({view.release.source}).",
            source=view.release.source, unit=unit_id, group=self.group_picker.value)


# -------------------------------------------------------------------- staff side

class StaffView:
    """The staff dashboard's tables for one processed run (student-level)."""

    def __init__(self, processed_dir: Path):
        from analysis.report import load_report_data

        self.data = load_report_data(processed_dir, "staff")
        self.run = self.data.run
        folder = Path(processed_dir)
        interventions = folder / "interventions.parquet"
        self.interventions = (pd.read_parquet(interventions)
                              if interventions.exists() else None)
        self.previous = previous_students(folder, self.run)

    def schools(self) -> list[tuple[str, str]]:
        return sorted(((f"{u['name']} ({u['id']})", u["id"]) for u in self.run.units()),
                      key=lambda o: natural_key(o[0]))

    def tier_list(self, school: str) -> pd.DataFrame:
        from analysis.report import tier_list

        return tier_list(self.data, school)

    def band_changes(self, school: str) -> pd.DataFrame | None:
        """Students whose band got worse since the last month end (None: no data)."""
        if self.previous is None or self.data.students is None:
            return None
        now = self.data.students
        now = now[(now["level"] == "school") & (now["unit_id"] == school)]
        before = self.previous
        before = before[(before["level"] == "school") & (before["unit_id"] == school)]
        merged = now.merge(before[["student_id", "band", "absence_rate"]],
                           on="student_id", suffixes=("", "_before"))
        rank = {b: i for i, b in enumerate(BANDS)}
        worse = merged["band"].map(rank) > merged["band_before"].map(rank)
        out = merged[worse & merged["eligible"]][
            ["student_id", "grade", "band_before", "band", "absence_rate_before",
             "absence_rate"]].copy()
        out["band_before"] = out["band_before"].map(BAND_LABELS)
        out["band"] = out["band"].map(BAND_LABELS)
        return out.sort_values("absence_rate", ascending=False).reset_index(drop=True)

    def recent_absences(self, school: str, days: int = 14) -> pd.DataFrame:
        """Absences at the school in the last ``days`` days, as recorded."""
        folder = Path(self.run.info["data_dir"])
        files = [folder / "attendance.parquet", folder / "attendance.csv"]
        path = next((f for f in files if f.exists()), None)
        if path is None:
            return pd.DataFrame()
        frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                 else pd.read_csv(path, dtype=str))
        frame = frame[frame["school_id"].astype(str) == str(school)].copy()
        frame["date"] = pd.to_datetime(frame["date"], errors="coerce")
        since = self.data.as_of - pd.Timedelta(days=days)
        absent = frame["category"].isin(("excused", "unexcused", "suspension"))
        frame = frame[absent & (frame["date"] > since)
                      & (frame["date"] <= self.data.as_of)]
        return frame.sort_values(["date", "student_id"], ascending=[False, True])[
            ["date", "student_id", "category"]].reset_index(drop=True)

    def supports(self, school: str, days: int = 30) -> pd.DataFrame:
        """Supports (and punitive steps) recorded at the school in the last ``days``."""
        if self.interventions is None:
            return pd.DataFrame()
        frame = self.interventions
        frame = frame[frame["school_id"].astype(str) == str(school)].copy()
        frame["date"] = pd.to_datetime(frame["date"])
        since = self.data.as_of - pd.Timedelta(days=days)
        frame = frame[(frame["date"] > since) & (frame["date"] <= self.data.as_of)]
        return frame.sort_values("date", ascending=False).reset_index(drop=True)

    def sections(self, school: str) -> dict[str, str]:
        """The staff page for one school, as HTML."""
        from analysis.report import headline

        unit = next(u for u in self.run.units() if u["id"] == school)
        h = headline(self.data, school)
        tiers = self.tier_list(school)
        changes = self.band_changes(school)
        recent = self.recent_absences(school)
        supports = self.supports(school)
        tiered = set(tiers["student_id"]) if not tiers.empty else set()
        helped = (set(supports.loc[supports["kind"] == "supportive", "student_id"])
                  if not supports.empty and "kind" in supports else set())
        no_support = len(tiered - helped)
        out = {
            "headline": (f"<p><strong>{html.escape(unit['name'])}</strong>: "
                         f"{_markdown(h['sentence'])} {len(tiers)} students meet a "
                         f"Tier 2 or 3 trigger; {no_support} of them have no "
                         f"supportive step recorded in the last 30 days. "
                         f"<em>Confidential: for the school attendance team "
                         f"only.</em></p>"),
            "tiers": _table_html(
                tiers.head(300).assign(
                    absence_rate=tiers["absence_rate"].map("{:.1%}".format),
                    days_absent=tiers["days_absent"].map(_days),
                    days_enrolled=tiers["days_enrolled"].map(_days)),
                {"tier": "Tier", "student_id": "Student", "grade": "Grade",
                 "days_enrolled": "Days enrolled", "days_absent": "Days missed",
                 "absence_rate": "Missed", "why": "Why"},
                caption=f"Students to act on ({len(tiers)})"),
        }
        if changes is None:
            out["changes"] = ("<p class='dash-note'>No processed run for the last "
                              "month end was found, so band changes cannot be shown. "
                              "Run <code>make staff-dashboard</code>, which prepares "
                              "it.</p>")
        else:
            out["changes"] = _table_html(
                changes.assign(
                    absence_rate=changes["absence_rate"].map("{:.1%}".format),
                    absence_rate_before=changes["absence_rate_before"].map(
                        "{:.1%}".format)),
                {"student_id": "Student", "grade": "Grade",
                 "band_before": "Band before", "band": "Band now",
                 "absence_rate_before": "Missed before", "absence_rate": "Missed now"},
                caption=f"Crossed into a worse band since the last month end "
                        f"({len(changes)})")
        out["recent"] = _table_html(
            recent.head(300).assign(date=recent["date"].dt.strftime("%Y-%m-%d"))
            if not recent.empty else recent,
            {"date": "Date", "student_id": "Student", "category": "Recorded as"},
            caption=f"Absences in the last 14 days ({len(recent)}, as recorded in the "
                    f"student information system)")
        out["supports"] = _table_html(
            supports.head(300).assign(
                date=supports["date"].dt.strftime("%Y-%m-%d"),
                intervention_type=supports["intervention_type"].astype(str)
                .str.replace("_", " ").str.capitalize())
            if not supports.empty else supports,
            {"date": "Date", "student_id": "Student", "intervention_type": "Support",
             "kind": "Kind"},
            caption=f"Supports and other steps recorded in the last 30 days "
                    f"({len(supports)})")
        return out


def _days(value) -> str:
    """Days (possibly fractional, from partial days) with at most one decimal."""
    if value is None or pd.isna(value):
        return ""
    return f"{float(value):.1f}".removesuffix(".0")


def previous_students(folder: Path, run) -> pd.DataFrame | None:
    """Student facts at the last month end before the run's as-of date, if prepared.

    Looks for the sibling processed run ``<source>/<previous month end>/``.
    """
    as_of = pd.Timestamp(run.as_of)
    month_end = (as_of - pd.offsets.MonthEnd(1)) if not as_of.is_month_end else \
        as_of - pd.offsets.MonthEnd(1)
    sibling = Path(folder).parent / month_end.date().isoformat() / "students.parquet"
    return pd.read_parquet(sibling) if sibling.exists() else None


def latest_processed(source: str, root: Path | None = None) -> Path:
    """The newest processed run of ``source`` (a full run, not a one-district run).

    Raises
    ------
    FileNotFoundError
        When none exists, with the command that makes one.
    """
    base = Path(root or os.environ.get("ANALYSIS_PROCESSED", paths.PROCESSED_DIR))
    runs = sorted(p.parent for p in (base / source).glob("*/run.json")
                  if re.fullmatch(r"\d{4}-\d{2}-\d{2}", p.parent.name))
    if not runs:
        raise FileNotFoundError(f"No processed run for {source!r} in {base}; run "
                                f"`python -m analysis prepare --source {source}`.")
    return runs[-1]


STAFF_SECTIONS = {"headline": "", "tiers": "Tier 2 and Tier 3",
                  "changes": "Crossed a band this month",
                  "recent": "Recent absences", "supports": "Supports delivered"}


class StaffDashboard:
    """The staff dashboard's widgets: one school at a time."""

    def __init__(self, processed_dir: Path | None = None, source: str = "sample"):
        import ipywidgets as w

        folder = Path(processed_dir) if processed_dir else latest_processed(source)
        self.view = StaffView(folder)
        self.title = w.HTML(STYLE)
        self.school_picker = w.Dropdown(options=self.view.schools(),
                                        description="School",
                                        layout=w.Layout(width="34em"))
        self.sections = {name: w.HTML("") for name in STAFF_SECTIONS}
        self.status = w.HTML("")
        self.widget = w.VBox([self.title, self.school_picker, self.status]
                             + list(self.sections.values()))
        self.render()
        self.school_picker.observe(self.on_school_change, names="value")

    def on_school_change(self, change) -> None:
        """Show the chosen school."""
        self.render()

    def apply_query(self, params: dict[str, str]) -> None:
        """Honour ``?school=…`` when the school exists."""
        ids = [v for _, v in self.school_picker.options]
        if params.get("school") in ids:
            self.school_picker.value = params["school"]

    def render(self) -> None:
        """Fill every section for the chosen school, then say so."""
        school = self.school_picker.value
        parts = self.view.sections(school)
        for name, widget in self.sections.items():
            title = STAFF_SECTIONS[name]
            widget.value = (f"<h2>{title}</h2>" if title else "") + parts.get(name, "")
        name = dict((v, k) for k, v in self.school_picker.options).get(school, school)
        self.status.value = status_html(
            f"Showing {name}, as of {self.view.data.as_of:%-d %B %Y}.", school=school)

