"""From daily records to student totals, as Ibis expressions run in the engine.

The steps, each a function:

1. :func:`instructional_days` - the school's instructional days up to the as-of date.
2. :func:`enrolled_days` - those days inside each student's enrollment spans.
3. :func:`classify_marks` - attendance rows turned into a missed share of the day,
   with the rows that cannot be used set aside by reason.
4. :func:`daily_records` - one row per student, school and day enrolled.
5. :func:`student_facts` - totals per student and school (and per student in the
   district) at each as-of point: days enrolled, days absent, eligibility, the
   chronic flag, the band and the tier.

Nothing here reads files or knows about notebooks; the expressions run unchanged on
any Ibis backend.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from analysis.definitions import Definition

#: Tolerance for comparing rates with cut points (18 / 180 must count as 10%).
EPS = 1e-9

DISTRICT = "district"


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
    days = calendar.filter(calendar.instructional, calendar.date.date() <= as_of)
    return days.select(
        school_id=days.school_id,
        date=days.date.date(),
        year_start=school_year_start(days.date.date(), start_month),
        instructional_minutes=ibis.coalesce(
            minutes.cast("float64"), ibis.literal(definition.default_instructional_minutes)
        ),
    )


def enrolled_days(enrollments: ir.Table, days: ir.Table, as_of: object,
                  definition: Definition) -> ir.Table:
    """Instructional days that fall inside a student's enrollment spans at a school.

    A span with no exit date runs to the as-of date. With ``exit_date_inclusive``
    false, the exit date is the first day gone. Overlapping spans at one school count
    each day once; a day in spans at two schools (a hand-off day) counts at each.

    Returns columns ``student_id, school_id, date, year_start, grade,
    instructional_minutes``.
    """
    exit_date = enrollments.exit_date.date() if "exit_date" in enrollments.columns \
        else ibis.null("date")
    if not definition.exit_date_inclusive:
        exit_date = exit_date - ibis.interval(days=1)
    spans = enrollments.select(
        student_id=enrollments.student_id,
        school_id=enrollments.school_id,
        grade=enrollments.grade,
        entry=enrollments.entry_date.date(),
        exit=ibis.coalesce(exit_date, ibis.literal(as_of).cast("date")),
    )

    joined = spans.join(
        days,
        [spans.school_id == days.school_id, days.date >= spans.entry,
         days.date <= spans.exit],
    )
    rows = joined.select(
        student_id=spans.student_id, school_id=spans.school_id, date=days.date,
        year_start=days.year_start, grade=spans.grade,
        instructional_minutes=days.instructional_minutes,
    )

    # Overlapping spans at one school must not count a day twice; keep the grade of
    # the span that started last.
    return rows.group_by(["student_id", "school_id", "date"]).agg(
        year_start=rows.year_start.max(),
        grade=rows.grade.max(),
        instructional_minutes=rows.instructional_minutes.max(),
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


def classify_marks(attendance: ir.Table, calendar: ir.Table, enrolled: ir.Table,
                   as_of: object, definition: Definition) -> ir.Table:
    """Give every attendance row a missed share, and a reason when it cannot be used.

    ``attendance`` must carry a ``row_id`` column. Reasons, in the order tested:
    dated after the as-of date; not an instructional day at that school; outside the
    student's enrollment at that school; another mark for the same student, school
    and day (the largest missed share is kept, as DOMAIN.md's defaults say).

    Returns ``attendance``'s columns plus ``share``, ``reason`` (null when used) and
    ``conflict`` (true when the day had marks of different categories).
    """
    day_kind = calendar.select(
        school_id=calendar.school_id, cal_date=calendar.date.date(),
        cal_instructional=calendar.instructional,
        cal_minutes=(calendar.instructional_minutes.cast("float64")
                     if "instructional_minutes" in calendar.columns
                     else ibis.null("float64")),
    )
    marks = attendance.mutate(date=attendance.date.date())
    marks = marks.left_join(
        day_kind,
        [marks.school_id == day_kind.school_id, marks.date == day_kind.cal_date],
    ).drop("school_id_right", "cal_date")
    marks = marks.mutate(
        instructional_minutes=ibis.coalesce(
            marks.cal_minutes, ibis.literal(definition.default_instructional_minutes)
        )
    )

    keys = enrolled.select("student_id", "school_id", "date").mutate(enrolled=True)
    marks = marks.left_join(keys, ["student_id", "school_id", "date"]).drop(
        "student_id_right", "school_id_right", "date_right"
    )
    marks = marks.mutate(share=missed_share(marks, definition))

    # The first rule a row breaks is its reason.
    base_reason = ibis.cases(
        (marks.date > ibis.literal(as_of).cast("date"),
         "dated after the as-of date (ignored)"),
        (marks.cal_instructional.isnull() | ~marks.cal_instructional,
         "mark on a day that is not an instructional day at that school"),
        (marks.enrolled.isnull(),
         "absence outside the student's enrollment at that school"),
        else_=ibis.null("string"),
    )
    marks = marks.mutate(base_reason=base_reason)

    # Among usable rows, several marks for one student, school and day make one day.
    usable = marks.base_reason.isnull()
    window = ibis.window(group_by=[marks.student_id, marks.school_id, marks.date,
                                   usable],
                         order_by=[ibis.desc(marks.share), marks.row_id])
    marks = marks.mutate(
        rank=ibis.row_number().over(window),
        n_categories=marks.category.nunique().over(
            ibis.window(group_by=[marks.student_id, marks.school_id, marks.date, usable])
        ),
    )
    reason = ibis.ifelse(
        usable & (marks["rank"] > 0),
        "another mark for the same student, school and day (largest missed share kept)",
        marks.base_reason,
    )
    return marks.mutate(reason=reason, conflict=usable & (marks.n_categories > 1)).drop(
        "rank", "n_categories", "base_reason", "cal_minutes", "enrolled"
    )


def daily_records(enrolled: ir.Table, marks: ir.Table) -> ir.Table:
    """One row per student, school and day enrolled, with the share of the day missed.

    Days without a usable mark count as present, in person.

    Returns ``student_id, school_id, date, year_start, grade, share, modality``.
    """
    used = marks.filter(marks.reason.isnull())
    modality = used.modality if "modality" in used.columns else ibis.null("string")
    used = used.select(
        student_id=used.student_id, school_id=used.school_id, date=used.date,
        share=used.share, modality=modality,
    )
    joined = enrolled.left_join(used, ["student_id", "school_id", "date"])
    return joined.select(
        student_id=enrolled.student_id, school_id=enrolled.school_id, date=enrolled.date,
        year_start=enrolled.year_start, grade=enrolled.grade,
        share=ibis.coalesce(joined.share, 0.0),
        modality=ibis.coalesce(joined.modality, "in_person"),
    )


def district_daily_records(daily: ir.Table, schools: ir.Table) -> ir.Table:
    """One row per student, district and day: a hand-off day counts once.

    On a day enrolled at two schools the larger missed share is kept.
    """
    joined = daily.join(schools.select("school_id", "district_id"), "school_id")
    grouped = joined.group_by(["student_id", "district_id", "date"]).agg(
        year_start=joined.year_start.max(),
        grade=joined.grade.max(),
        share=joined.share.max(),
    )
    return grouped


def _facts_at_points(daily: ir.Table, points: ir.Table, unit: str) -> ir.Table:
    """Totals per as-of point, student and ``unit`` (school_id or district_id)."""
    points = points.rename(point_year="year_start")
    joined = daily.join(
        points, [daily.year_start == points.point_year, daily.date <= points.as_of_date]
    )
    return joined.group_by(
        ["as_of_date", "is_checkpoint", "year_start", "student_id", unit]
    ).agg(
        days_enrolled=joined.date.count(),
        days_absent=joined.share.sum(),
        days_attended=(joined.share < 1).cast("int64").sum(),
        grade=joined.grade.argmax(joined.date),
        first_day=joined.date.min(),
        last_day=joined.date.max(),
    )


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
    facts = facts.mutate(on_pace=facts.pace_met.cast("int8").max().over(pace_window) > 0)

    prior = prior.mutate(next_year=prior.year_start + 1).drop("year_start")
    joined = facts.left_join(
        prior, [facts.student_id == prior.student_id, facts.year_start == prior.next_year]
    ).drop("student_id_right", "next_year")
    prior_chronic = ibis.coalesce(joined.prior_chronic, False)
    prior_severe = ibis.coalesce(joined.prior_severe, False)

    # Tiers are given to eligible students only: a student enrolled a few days has
    # no rate to act on yet.
    tier3 = joined.eligible & (joined.severe | prior_severe)
    tier2 = joined.eligible & ~tier3 & (joined.chronic | prior_chronic | joined.on_pace)
    return joined.mutate(tier3=tier3, tier2=tier2,
                         prior_chronic=prior_chronic, prior_severe=prior_severe)


def student_facts(daily: ir.Table, district_daily: ir.Table, points: ir.Table,
                  year_end_points: ir.Table, definition: Definition) -> dict[str, ir.Table]:
    """Student totals and flags at every as-of point, for schools and the district.

    Parameters
    ----------
    daily, district_daily : ibis.Table
        From :func:`daily_records` and :func:`district_daily_records`.
    points : ibis.Table
        ``as_of_date, year_start, is_checkpoint``: the month ends, the as-of date and
        the same date last year.
    year_end_points : ibis.Table
        The last instructional day of each complete earlier year, for last year's
        chronic and severe flags.
    definition : Definition

    Returns
    -------
    dict
        ``{"school": table, "district": table}``, one row per as-of point, student and
        unit (``school_id`` or ``district_id``).
    """
    district = classify_students(
        _facts_at_points(district_daily, points, "district_id"), definition
    )
    year_end = classify_students(
        _facts_at_points(district_daily, year_end_points, "district_id"), definition
    )
    prior = year_end.select(
        student_id=year_end.student_id, year_start=year_end.year_start,
        prior_chronic=year_end.chronic, prior_severe=year_end.severe,
        prior_absence_rate=ibis.ifelse(year_end.eligible, year_end.absence_rate,
                                       ibis.null("float64")),
    )
    school = classify_students(_facts_at_points(daily, points, "school_id"), definition)
    return {
        "school": add_tiers(school, prior, "school_id"),
        "district": add_tiers(district, prior, "district_id"),
    }
