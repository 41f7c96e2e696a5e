"""From daily records to student totals, as Ibis expressions run in the engine.

Attendance rows are read once and summed per student, school and *period* (the days
between two consecutive as-of points, never more than a month); days enrolled come
from enrollment spans and the calendar by counting, without making a row per day;
student totals at an as-of point are sums over its periods:
:func:`enrollment_islands`, :func:`enrolled_periods`, :func:`period_marks`,
:func:`school_periods`, :func:`district_periods`, :func:`period_student_facts`
(what :func:`analysis.aggregate.build_aggregate` runs). Then the rules:
:func:`classify_students` (eligibility, the chronic flag, bands, the pace check) and
:func:`add_tiers`. The hand-computed cases in tests/test_metrics.py check the whole
path.

Nothing here reads files or knows about notebooks; the expressions run unchanged on
DuckDB, PostgreSQL and Spark (tests/test_engine_parity.py).
"""

from __future__ import annotations

from datetime import datetime

import ibis
import ibis.expr.types as ir

from analysis.definitions import Definition

#: Tolerance for comparing rates with cut points (18 / 180 must count as 10%).
EPS = 1e-9

DISTRICT = "district"


def as_date(value: ir.Value) -> ir.DateValue:
    """A date column as dates (pandas tables arrive as timestamps, Parquet as dates)."""
    return value if value.type().is_date() else value.date()


def as_int(condition: ir.BooleanValue) -> ir.IntegerValue:
    """1 where ``condition`` holds, else 0.

    PostgreSQL cannot cast a boolean to bigint, hence the ``ifelse``.
    """
    return ibis.ifelse(condition, 1, 0).cast("int64")


def school_year_start(date: ir.DateValue, start_month: int) -> ir.IntegerValue:
    """The calendar year in which the school year holding ``date`` began."""
    return ibis.ifelse(date.month() >= start_month, date.year(), date.year() - 1)


def instructional_days(calendar: ir.Table, as_of: ir.Scalar | object,
                       start_month: int, definition: Definition) -> ir.Table:
    """Instructional days of every school up to and including ``as_of``.

    Returns columns ``school_id, date, year_start, instructional_minutes``.
    """
    minutes = (calendar.instructional_minutes
               if "instructional_minutes" in calendar.columns else ibis.null())
    days = calendar.filter(calendar.instructional, as_date(calendar.date) <= as_of)
    return days.select(
        school_id=days.school_id,
        date=as_date(days.date),
        year_start=school_year_start(as_date(days.date), start_month),
        instructional_minutes=ibis.coalesce(
            minutes.cast("float64"),
            ibis.literal(definition.default_instructional_minutes),
        ),
    )


def missed_share(marks: ir.Table, definition: Definition) -> ir.FloatingValue:
    """The share of the day a mark counts as missed under ``definition`` (0 to 1).

    Present and in-school-suspension marks count 0. For absence marks: with minutes
    known, minutes missed / instructional minutes (capped at 1); otherwise the
    fraction given, or a whole day. ``partial_day`` then decides: ``fraction`` keeps
    the share; ``half_day`` makes it 1 at or above the threshold and 0 below;
    ``minutes_else_half_day`` keeps the minutes share but applies the half-day rule
    when only a fraction is known.
    """
    minutes_missed = marks.minutes_missed if "minutes_missed" in marks.columns \
        else ibis.null("float64")
    fraction = marks.fraction_missed if "fraction_missed" in marks.columns \
        else ibis.null("float64")
    minutes_share = ibis.least(
        minutes_missed.cast("float64") / marks.instructional_minutes, 1.0
    )
    has_minutes = minutes_missed.notnull()
    raw = ibis.cases(
        (has_minutes, minutes_share),
        (fraction.notnull(), fraction.cast("float64")),
        else_=1.0,
    )
    half_day = ibis.ifelse(raw >= definition.half_day_threshold - EPS, 1.0, 0.0)

    if definition.partial_day == "fraction":
        share = raw
    elif definition.partial_day == "half_day":
        share = half_day
    else:
        share = ibis.ifelse(has_minutes, minutes_share, half_day)

    is_absence = marks.category.isin(list(definition.absent_categories))
    return ibis.ifelse(is_absence, share, 0.0).cast("float64")


def classify_students(facts: ir.Table, definition: Definition,
                      tier2_first_month: int | None = None) -> ir.Table:
    """Add eligibility, absence rate, the chronic flag, the band and the pace flag.

    Parameters
    ----------
    facts : ibis.Table
        Output of the totals step: one row per as-of point, student and unit.
    definition : Definition
        The rules in force.

    Notes
    -----
    The Tier 2 pace rule (2 days missed by the end of month 1, 4 by month 2, ...) is
    checked only at month ends (``is_checkpoint``); month 1 is ``tier2_first_month``
    (September by default), so absences in late August count towards month 1.
    """
    first_month = tier2_first_month or definition.tier2_first_month
    rate = facts.days_absent / facts.days_enrolled

    grade_ok = (facts.grade.isin(list(definition.grades))
                if definition.grades else ibis.literal(True))
    eligible = (
        (facts.days_enrolled >= definition.min_days_enrolled)
        & (facts.days_attended >= definition.min_days_present)
        & grade_ok
    )

    def at_or_above(cut: float) -> ir.BooleanValue:
        if definition.band_boundary == "at_or_above":
            return rate >= cut - EPS
        return rate > cut + EPS

    if definition.chronic_rule == "days":
        chronic = facts.days_absent >= definition.chronic_days - EPS
    else:
        chronic = at_or_above(definition.chronic_rate)
    low, mid, high = definition.band_cutoffs
    band = ibis.cases(
        (at_or_above(high), "severe_chronic"),
        (at_or_above(mid), "moderate_chronic"),
        (at_or_above(low), "at_risk"),
        else_="satisfactory",
    )

    # Month index of a checkpoint: September = 1 when the first month is 9.
    month = facts.as_of_date.month()
    month_index = ibis.ifelse(month >= first_month, month - first_month + 1,
                              month + 12 - first_month + 1)
    month_index = ibis.ifelse(month_index > 12, month_index - 12, month_index)
    pace_met = (
        facts.is_checkpoint
        & (month_index <= 10)
        & (facts.days_absent >= definition.tier2_days_per_month * month_index - EPS)
    )
    return facts.mutate(
        absence_rate=rate,
        eligible=eligible,
        chronic=eligible & chronic,
        band=ibis.ifelse(eligible, band, ibis.null("string")),
        severe=eligible & at_or_above(definition.tier3_rate),
        pace_met=pace_met,
    )


def add_tiers(facts: ir.Table, prior: ir.Table, unit: str) -> ir.Table:
    """Add the Tier 2 and Tier 3 flags (Attendance Works' activation rules).

    Tier 3: 20% or more missed this year, or last year. Tier 2 (when not Tier 3):
    chronically absent now, chronic last year, or on pace to be (the month-end pace
    rule met at any checkpoint so far this year). Only eligible students get a tier.

    ``prior`` holds each student's full-year district figures for the previous year:
    ``student_id, year_start, prior_chronic, prior_severe, prior_absence_rate``.
    """
    pace_window = ibis.window(
        group_by=[facts.student_id, facts[unit], facts.year_start],
        order_by=facts.as_of_date, preceding=None, following=0,
    )
    facts = facts.mutate(on_pace=as_int(facts.pace_met).max().over(pace_window) > 0)

    prior = prior.mutate(next_year=prior.year_start + 1).drop("year_start")
    joined = facts.left_join(
        prior, [facts.student_id == prior.student_id,
                facts.year_start == prior.next_year]
    ).drop("student_id_right", "next_year")
    prior_chronic = ibis.coalesce(joined.prior_chronic, False)
    prior_severe = ibis.coalesce(joined.prior_severe, False)

    # Tiers are given to eligible students only: a student enrolled a few days has
    # no rate to act on yet.
    tier3 = joined.eligible & (joined.severe | prior_severe)
    tier2 = joined.eligible & ~tier3 & (joined.chronic | prior_chronic | joined.on_pace)
    return joined.mutate(tier3=tier3, tier2=tier2,
                         prior_chronic=prior_chronic, prior_severe=prior_severe)


#: Learning modalities counted apart in the period sums; anything else is in person.
OTHER_MODALITIES: tuple[str, ...] = ("remote_live", "remote_async", "independent_study")

#: Reasons a mark is set aside, in the order they are tested.
REASON_UNKNOWN = "column category: expected one of {}"
REASON_MISSING = "missing student_id, school_id or date"
REASON_AFTER = "dated after the as-of date (ignored)"
REASON_CLOSED = "mark on a day that is not an instructional day at that school"
REASON_OUTSIDE = "absence outside the student's enrollment at that school"
REASON_DUPLICATE = ("another mark for the same student, school and day (largest missed "
                    "share kept)")


def enrollment_islands(enrollments: ir.Table, as_of: object,
                       definition: Definition) -> ir.Table:
    """Enrollment spans cut at the as-of date and merged where they overlap.

    Spans of one student at one school that overlap become one *island*, so that no
    day is counted twice; the island keeps the grade of its latest-starting span
    (the largest grade when two start the same day). A span with no exit date runs
    to the as-of date; with ``exit_date_inclusive`` false the exit date is the first
    day gone.

    Returns ``student_id, school_id, entry, exit, grade``, one row per island.
    """
    as_of_date = ibis.literal(as_of).cast("date")
    exit_date = as_date(enrollments.exit_date) if "exit_date" in enrollments.columns \
        else ibis.null("date")
    if not definition.exit_date_inclusive:
        exit_date = exit_date - ibis.interval(days=1)
    spans = enrollments.select(
        student_id=enrollments.student_id, school_id=enrollments.school_id,
        grade=enrollments.grade, entry=as_date(enrollments.entry_date),
        exit=ibis.least(ibis.coalesce(exit_date, as_of_date), as_of_date),
    )
    spans = spans.filter(spans.exit >= spans.entry)

    # Gaps and islands: a span opens a new island when it starts after every
    # earlier span of the student at that school has ended.
    keys = [spans.student_id, spans.school_id]
    order = [spans.entry, spans.exit, spans.grade]
    earlier_end = spans.exit.max().over(
        ibis.window(group_by=keys, order_by=order, rows=(None, -1)))
    spans = spans.mutate(opens=ibis.ifelse(
        earlier_end.isnull() | (spans.entry > earlier_end), 1, 0))
    spans = spans.mutate(island=spans.opens.sum().over(
        ibis.window(group_by=[spans.student_id, spans.school_id],
                    order_by=[spans.entry, spans.exit, spans.grade], rows=(None, 0))))

    latest = spans.entry.max().over(
        ibis.window(group_by=[spans.student_id, spans.school_id, spans.island]))
    spans = spans.mutate(latest_grade=ibis.ifelse(spans.entry == latest, spans.grade,
                                                  ibis.null("string")))
    return spans.group_by(["student_id", "school_id", "island"]).agg(
        entry=spans.entry.min(), exit=spans.exit.max(),
        grade=spans.latest_grade.max(),
    ).drop("island")


def day_ordinals(days: ir.Table) -> ir.Table:
    """Number each school's instructional days 1, 2, 3, ... in date order.

    ``days`` is :func:`instructional_days`; adds column ``k``.
    """
    return days.mutate(k=(ibis.row_number().over(group_by=days.school_id,
                                                 order_by=days.date) + 1).cast("int64"))


def _count_before(ordinals: ir.Table, bounds: ir.Table) -> ir.Table:
    """For each ``school_id, date`` in ``bounds``: instructional days before it.

    A running count over the school's instructional days and the boundary dates
    sorted together; boundary dates sort before a school day of the same date.
    Also the first school day on or after the date (``next_day``) and the last one
    before it (``previous_day``).
    """
    both = ibis.union(
        bounds.select("school_id", "date", w=ibis.literal(0, "int64")),
        ordinals.select("school_id", "date", w=ibis.literal(1, "int64")),
        distinct=False,
    )
    # A count, not a sum: DuckDB sums integers to a 128-bit type, which then misleads
    # its join planner (and Ibis would drop a cast it believes is a no-op).
    school_day = ibis.ifelse(both.w == 1, both.w, ibis.null("int64"))
    day_date = ibis.ifelse(both.w == 1, both.date, ibis.null("date"))
    order = dict(group_by=both.school_id, order_by=[both.date, both.w])
    both = both.mutate(
        before=school_day.count().over(ibis.window(**order, rows=(None, 0))),
        next_day=day_date.min().over(ibis.window(**order, rows=(0, None))),
        previous_day=day_date.max().over(ibis.window(**order, rows=(None, 0))),
    )
    return both.filter(both.w == 0).select("school_id", "date", "before", "next_day",
                                           "previous_day")


def locate_islands(islands: ir.Table, ordinals: ir.Table,
                   schools: ir.Table) -> ir.Table:
    """Give each island its first and last instructional day, as ordinals and dates.

    Islands with no instructional day are dropped. Adds ``district_id, k_first,
    k_last, first_date, last_date, overlap_from, overlap_to``: the last two bound
    the days on which the student is also enrolled at another school of the
    district (a hand-off day, or dual enrollment), null when there are none.
    """
    one_day = ibis.interval(days=1)
    bounds = ibis.union(
        islands.select("school_id", date=islands.entry),
        islands.select("school_id", date=islands.exit + one_day),
        distinct=True,
    )
    before = _count_before(ordinals, bounds)
    at_entry = before.select(e_school="school_id", e_date="date", k_entry="before",
                             first_date="next_day")
    at_exit = before.select(x_school="school_id", x_date="date", k_exit="before",
                            last_date="previous_day")
    located = islands.join(
        at_entry, [islands.school_id == at_entry.e_school,
                   islands.entry == at_entry.e_date],
    ).join(
        at_exit, [islands.school_id == at_exit.x_school,
                  (islands.exit + one_day) == at_exit.x_date],
    ).select(islands, k_first=at_entry.k_entry + 1, k_last=at_exit.k_exit,
             first_date=at_entry.first_date, last_date=at_exit.last_date)
    located = located.filter(located.k_last >= located.k_first)
    located = located.join(schools.select("school_id", "district_id"), "school_id")

    # Dates shared with an island at another school of the same district: with the
    # islands in date order, an island overlaps the earlier ones when it starts
    # before the latest of their last days, and the later ones when the next one
    # starts before its own last day. Windows, not a self-join, keep this cheap.
    keys = [located.student_id, located.district_id]
    order = [located.first_date, located.school_id]
    earlier_last = located.last_date.max().over(
        ibis.window(group_by=keys, order_by=order, rows=(None, -1)))
    later_last = located.last_date.max().over(
        ibis.window(group_by=keys, order_by=order, rows=(1, None)))
    next_first = located.first_date.lead().over(
        ibis.window(group_by=keys, order_by=order))
    with_earlier = earlier_last >= located.first_date
    with_later = next_first <= located.last_date
    overlap_from = ibis.cases(
        (with_earlier, located.first_date), (with_later, next_first),
        else_=ibis.null("date"))
    overlap_to = ibis.cases(
        (with_earlier & with_later,
         ibis.least(located.last_date, ibis.greatest(earlier_last, later_last))),
        (with_later, ibis.least(located.last_date, later_last)),
        (with_earlier, ibis.least(located.last_date, earlier_last)),
        else_=ibis.null("date"))
    return located.mutate(overlap_from=overlap_from, overlap_to=overlap_to)


def period_ranges(ordinals: ir.Table, date_periods: ir.Table) -> ir.Table:
    """Each school's instructional days per period, as a range of ordinals.

    ``date_periods`` maps every calendar date up to the as-of date to
    ``year_start, period_end``. Returns ``school_id, year_start, period_end, k_lo,
    k_hi, d_lo, d_hi``.
    """
    days = ordinals.join(date_periods.select("date", "period_end"), "date")
    return days.group_by(["school_id", "year_start", "period_end"]).agg(
        k_lo=days.k.min(), k_hi=days.k.max(),
        d_lo=days.date.min(), d_hi=days.date.max())


def enrolled_periods(located: ir.Table, ranges: ir.Table) -> ir.Table:
    """Days enrolled per student, school and period, counted from the islands.

    Returns ``student_id, school_id, district_id, year_start, period_end,
    days_enrolled, first_date, last_date, grade`` (the grade on the last day).
    """
    joined = located.join(ranges, [
        located.school_id == ranges.school_id,
        ranges.k_lo <= located.k_last, ranges.k_hi >= located.k_first,
    ])
    parts = joined.select(
        located.student_id, located.school_id, located.district_id,
        ranges.year_start, ranges.period_end, located.grade,
        days=(ibis.least(located.k_last, ranges.k_hi)
              - ibis.greatest(located.k_first, ranges.k_lo) + 1),
        first_date=ibis.ifelse(located.k_first >= ranges.k_lo, located.first_date,
                               ranges.d_lo),
        last_date=ibis.ifelse(located.k_last <= ranges.k_hi, located.last_date,
                              ranges.d_hi),
    )
    # Islands never overlap, so the last day is in exactly one island.
    return parts.group_by(
        ["student_id", "school_id", "district_id", "year_start", "period_end"]
    ).agg(
        days_enrolled=parts.days.sum(), first_date=parts.first_date.min(),
        last_date=parts.last_date.max(), grade=parts.grade.argmax(parts.last_date),
    )


def period_marks(attendance: ir.Table, calendar: ir.Table, date_periods: ir.Table,
                 located: ir.Table, as_of: object, definition: Definition) -> ir.Table:
    """Read the attendance rows once: classify each and sum them per period.

    Each row gets a missed share (:func:`missed_share`) and, when it cannot be used,
    the first reason it breaks: an unknown category code, a missing key, dated after
    the as-of date, not an instructional day at that school, outside the student's
    enrollment there. Rows are summed per student, school, period and reason; rows
    on days the student is also enrolled at another school of the district keep
    their date (``overlap_date``) so the district can count that day once.

    Returns the classified rows, one per attendance row, to be summed per
    ``student_id, school_id, year_start, period_end, reason, overlap_date`` by
    :func:`sum_marks` into ``rows, absent, full_days, day_bits`` and, per
    modality in :data:`OTHER_MODALITIES`, ``days_<m>, absent_<m>``.
    ``day_bits`` is the sum of ``2 ** day of month``: it has as many bits set as
    rows exactly when no day has two usable marks (a period never spans two
    months; two marks on a day carry into another bit), and
    :func:`resolve_duplicates` settles the periods where it does not.

    Notes
    -----
    A modality outside :data:`OTHER_MODALITIES` counts as in person.
    """
    from analysis.contract import ATTENDANCE_CATEGORIES

    day_kind = calendar.select(
        cal_school="school_id", cal_date=as_date(calendar.date),
        cal_instructional=calendar.instructional,
        cal_minutes=(calendar.instructional_minutes.cast("float64")
                     if "instructional_minutes" in calendar.columns
                     else ibis.null("float64")),
    )
    marks = attendance.mutate(date=as_date(attendance.date))
    spans = located.select(
        i_student="student_id", i_school="school_id", i_first="first_date",
        i_last="last_date", i_from="overlap_from", i_to="overlap_to")
    periods = date_periods.select(p_date="date", year_start="year_start",
                                  period_end="period_end")
    joined = marks.left_join(
        day_kind, [marks.school_id == day_kind.cal_school,
                   marks.date == day_kind.cal_date],
    ).left_join(
        periods, marks.date == periods.p_date,
    ).left_join(
        spans, [marks.student_id == spans.i_student, marks.school_id == spans.i_school,
                marks.date >= spans.i_first, marks.date <= spans.i_last],
    )
    modality = marks.modality if "modality" in marks.columns else ibis.null("string")
    marks = joined.select(
        marks.student_id, marks.school_id, marks.date, marks.category,
        *[marks[c] for c in ("minutes_missed", "fraction_missed")
          if c in marks.columns],
        modality=modality,
        year_start=periods.year_start, period_end=periods.period_end,
        cal_instructional=day_kind.cal_instructional,
        instructional_minutes=ibis.coalesce(
            day_kind.cal_minutes,
            ibis.literal(definition.default_instructional_minutes)),
        enrolled=spans.i_first.notnull(),
        in_overlap=(marks.date >= spans.i_from) & (marks.date <= spans.i_to),
    )
    known = list(ATTENDANCE_CATEGORIES)
    reason = ibis.cases(
        (marks.category.isnull() | ~marks.category.isin(known),
         REASON_UNKNOWN.format(known)),
        (marks.student_id.isnull() | marks.school_id.isnull() | marks.date.isnull(),
         REASON_MISSING),
        (marks.date > ibis.literal(as_of).cast("date"), REASON_AFTER),
        (marks.cal_instructional.isnull() | ~marks.cal_instructional, REASON_CLOSED),
        (~marks.enrolled, REASON_OUTSIDE),
        else_=ibis.null("string"),
    )
    marks = marks.mutate(share=missed_share(marks, definition), reason=reason)
    marks = marks.mutate(
        overlap_date=ibis.ifelse(
            marks.reason.isnull() & marks.in_overlap.fill_null(False),
            marks.date, ibis.null("date")),
        bit=_day_bit(marks.date),
    )
    return marks


def _day_bit(date: ir.DateValue) -> ir.IntegerValue:
    """``2 ** day of month`` as a 64-bit integer (written as a power: PostgreSQL
    has no shift for the numeric its day extraction returns)."""
    return (ibis.literal(2.0) ** date.day().cast("float64")).cast("int64")


def bit_count(value: ir.IntegerValue, bits: int = 40) -> ir.IntegerValue:
    """How many bits of ``value`` are set (0 <= value < 2 ** ``bits``).

    Spelled out with division, which every backend has (Spark lacks ``bit_or``).
    """
    return sum(((value / 2 ** k).floor().cast("int64") % 2) for k in range(bits))


def sum_marks(marks: ir.Table) -> ir.Table:
    """Sum classified marks (from :func:`period_marks`) per period and reason."""
    keys = ["student_id", "school_id", "year_start", "period_end", "reason",
            "overlap_date"]
    sums = {
        "rows": marks.count(),
        "absent": marks.share.sum(),
        "full_days": as_int(marks.share >= 1).sum(),
        "day_bits": marks.bit.sum(),
    }
    for name in OTHER_MODALITIES:
        is_it = marks.modality == name
        sums[f"days_{name}"] = as_int(is_it).sum()
        sums[f"absent_{name}"] = ibis.ifelse(is_it, marks.share, 0.0).sum()
    return marks.group_by(keys).agg(**sums)


def resolve_duplicates(marks: ir.Table, flagged: ir.Table) -> tuple[ir.Table, ir.Table]:
    """Settle days with several usable marks, for the flagged periods only.

    The largest missed share is kept (its modality; the last in alphabetical order
    on a tie). Returns the period sums of those periods (as :func:`sum_marks`, one
    row per day kept) and one row per day with ``marks`` (how many) and
    ``conflict`` (marks of different categories).
    """
    keys = ["student_id", "school_id", "year_start", "period_end"]
    used = marks.filter(marks.reason.isnull()).semi_join(flagged, keys)
    day_keys = [*keys, "date", "overlap_date"]
    top = used.share.max().over(ibis.window(group_by=[used[k] for k in day_keys]))
    used = used.mutate(top=top)
    days = used.group_by(day_keys).agg(
        share=used.share.max(),
        marks=used.count(),
        categories=used.category.nunique(),
        modality=ibis.ifelse(used.share == used.top, used.modality,
                             ibis.null("string")).max(),
    )
    kept = days.mutate(reason=ibis.null("string"),
                       bit=_day_bit(days.date))
    return sum_marks(kept), days.select(*day_keys, "marks",
                                        conflict=days.categories > 1)


def school_periods(enrolled: ir.Table, usable: ir.Table) -> ir.Table:
    """Per student, school and period: days enrolled, absent, full days missed, ...

    ``usable`` is the period sums of usable marks (reason null, duplicates settled).
    """
    keys = ["student_id", "school_id", "year_start", "period_end"]
    sums = ["absent", "full_days", *[f"{kind}_{m}" for m in OTHER_MODALITIES
                                     for kind in ("days", "absent")]]
    marks = usable.group_by(keys).agg(**{c: usable[c].sum() for c in sums})
    joined = enrolled.left_join(marks, keys)
    return joined.select(
        enrolled,
        days_absent=ibis.coalesce(marks.absent, 0.0),
        full_days=ibis.coalesce(marks.full_days, 0),
        **{c: ibis.coalesce(marks[c], 0) for c in sums[2:]},
    )


def district_periods(school_rows: ir.Table, usable: ir.Table, located: ir.Table,
                     ordinals: ir.Table, date_periods: ir.Table) -> ir.Table:
    """Per student, district and period, a day enrolled at two schools counted once.

    ``school_rows`` is :func:`school_periods`. On a day enrolled at two schools the
    larger missed share is kept. Returns
    ``student_id, district_id, year_start, period_end, days_enrolled,
    days_absent, full_days, first_date, last_date, grade`` (the grade on the last
    day; the larger one when two schools share it).
    """
    keys = ["student_id", "district_id", "year_start", "period_end"]

    # Days enrolled and instructional at more than one school of the district.
    spans = located.filter(located.overlap_from.notnull())
    days = ordinals.select(o_school="school_id", o_date="date")
    enrolled_days = spans.join(days, [
        spans.school_id == days.o_school, days.o_date >= spans.overlap_from,
        days.o_date <= spans.overlap_to,
    ]).select(spans.student_id, spans.district_id, spans.school_id, date=days.o_date)
    shared = enrolled_days.group_by(["student_id", "district_id", "date"]).agg(
        n_schools=enrolled_days.school_id.nunique())
    shared = shared.filter(shared.n_schools > 1)
    shared = shared.join(date_periods.select("date", "year_start", "period_end"),
                         "date")
    extra_days = shared.group_by(keys).agg(extra_days=(shared.n_schools - 1).sum())

    # Marks on those days: the largest share across schools is the day's share.
    on_day = usable.filter(usable.overlap_date.notnull()).join(
        located.select("student_id", "school_id", "district_id").distinct(),
        ["student_id", "school_id"])
    per_day = on_day.group_by([*keys, "overlap_date"]).agg(
        total=on_day.absent.sum(), top=on_day.absent.max(),
        full_total=on_day.full_days.sum(),
        full_top=as_int(on_day.absent >= 1).max(),
    )
    extra_marks = per_day.group_by(keys).agg(
        extra_absent=(per_day.total - per_day.top).sum(),
        extra_full=(per_day.full_total - per_day.full_top).sum(),
    )

    # Sum the schools, then take off what was counted twice.
    last = school_rows.last_date.max().over(
        ibis.window(group_by=[school_rows[k] for k in keys]))
    rows = school_rows.mutate(last_grade=ibis.ifelse(
        school_rows.last_date == last, school_rows.grade, ibis.null("string")))
    summed = rows.group_by(keys).agg(
        days_enrolled=rows.days_enrolled.sum(), days_absent=rows.days_absent.sum(),
        full_days=rows.full_days.sum(), first_date=rows.first_date.min(),
        last_date=rows.last_date.max(), grade=rows.last_grade.max(),
    )
    joined = summed.left_join(extra_days, keys).left_join(extra_marks, keys)
    return joined.select(
        *[summed[k] for k in keys],
        days_enrolled=summed.days_enrolled - ibis.coalesce(extra_days.extra_days, 0),
        days_absent=summed.days_absent - ibis.coalesce(extra_marks.extra_absent, 0.0),
        full_days=summed.full_days - ibis.coalesce(extra_marks.extra_full, 0),
        first_date=summed.first_date, last_date=summed.last_date, grade=summed.grade,
    )


def _running_totals(periods: ir.Table, unit: str) -> ir.Table:
    """Year-to-date totals at the end of each period a student was enrolled in.

    Running sums over the student's periods in the school year, in date order, and
    ``next_end``: the end of the student's next period that year (null for the
    last), so that a row holds the totals for every point from its own period end
    up to the day before ``next_end``.
    """
    keys = [periods.student_id, periods[unit], periods.year_start]
    so_far = ibis.window(group_by=keys, order_by=periods.period_end, rows=(None, 0))
    ordered = ibis.window(group_by=keys, order_by=periods.period_end)
    return periods.select(
        "student_id", unit, "year_start", "period_end",
        next_end=periods.period_end.lead().over(ordered),
        days_enrolled=periods.days_enrolled.sum().over(so_far),
        days_absent=periods.days_absent.sum().over(so_far),
        days_attended=(periods.days_enrolled - periods.full_days).sum().over(so_far),
        first_day=periods.first_date.min().over(so_far),
        last_day=periods.last_date.max().over(so_far),
        # Periods never overlap and each has a day enrolled, so the latest one
        # holds the last day: its grade is the grade on the last day.
        grade=periods.grade,
    )


def _period_facts_at_points(periods: ir.Table, points: ir.Table,
                            unit: str) -> ir.Table:
    """Totals per as-of point, student and unit, summed over the periods up to it.

    Running totals per period (:func:`_running_totals`), each joined to the points
    it covers: from its own period end up to the next period the student was
    enrolled in. A student who left keeps a row at every later point of the year.
    ``points`` is a small engine table: ``as_of_date, year_start, is_checkpoint``.
    """
    # Only the school years that have points: last year's year end needs no
    # running totals for this year.
    years = points.select(p_year=points.year_start.cast("int64")).distinct()
    periods = periods.semi_join(years, periods.year_start == years.p_year)
    # A view: joined straight onto the semi-join, Ibis would flatten the two joins
    # and reject the range predicates below.
    running = _running_totals(periods, unit).view()
    table = points.select(p_date=points.as_of_date.cast("timestamp"),
                          p_year=points.year_start.cast("int64"),
                          p_checkpoint=points.is_checkpoint)
    far = ibis.literal(datetime(9999, 12, 31), type="timestamp")
    joined = running.join(table, [
        running.year_start == table.p_year,
        table.p_date >= running.period_end,
        table.p_date < ibis.coalesce(running.next_end.cast("timestamp"), far),
    ])
    return joined.select(
        as_of_date=joined.p_date, is_checkpoint=joined.p_checkpoint,
        year_start=joined.year_start, student_id=joined.student_id,
        **{unit: joined[unit]},
        days_enrolled=joined.days_enrolled, days_absent=joined.days_absent,
        days_attended=joined.days_attended, grade=joined.grade,
        first_day=joined.first_day, last_day=joined.last_day,
    )


def period_student_facts(school_rows: ir.Table, district_rows: ir.Table,
                         points: ir.Table, year_end_points: ir.Table,
                         definition: Definition) -> dict[str, ir.Table]:
    """Student totals and flags at every as-of point, from the period sums.

    From :func:`school_periods` and :func:`district_periods`; the points are the
    tables of :func:`analysis.aggregate.as_of_points`, loaded into the engine.
    """
    return _classify_and_tier(
        _period_facts_at_points(school_rows, points, "school_id"),
        _period_facts_at_points(district_rows, points, "district_id"),
        _period_facts_at_points(district_rows, year_end_points, "district_id"),
        definition,
    )


def _classify_and_tier(school: ir.Table, district: ir.Table, year_end: ir.Table,
                       definition: Definition) -> dict[str, ir.Table]:
    """Flags and tiers for school and district totals; last year's from ``year_end``."""
    year_end = classify_students(year_end, definition)
    prior = year_end.select(
        student_id=year_end.student_id, year_start=year_end.year_start,
        prior_chronic=year_end.chronic, prior_severe=year_end.severe,
        prior_absence_rate=ibis.ifelse(year_end.eligible, year_end.absence_rate,
                                       ibis.null("float64")),
    )
    return {
        "school": add_tiers(classify_students(school, definition), prior, "school_id"),
        "district": add_tiers(classify_students(district, definition), prior,
                              "district_id"),
    }
