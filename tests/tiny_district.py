"""A tiny district written by hand, so every expected number can be worked out by hand.

September 2026 has 22 weekdays. Labor Day (7 Sep) is not an instructional day at
either school, and school A closed on 18 Sep (a water-main break), so school A has
20 instructional days and school B has 21:

    A: 1 2 3 4 8 9 10 11 14 15 16 17 21 22 23 24 25 28 29 30
    B: the same days and 18

Last year (2025-26) school A taught 1-15 Sep 2025: 11 weekdays.

Students (all grades at elementary schools A and B):

==  =====================================  ==========================================
id  enrollment                             marks
==  =====================================  ==========================================
s1  A all month                            unexcused 2, 3 Sep -> 2/20 = 10.0% chronic;
                                           also a mark on 7 Sep (holiday), one on
                                           18 Sep (A closed) and one on 1 Oct (after
                                           the as-of date): all three set aside
s2  A all month                            excused 8 Sep and a second mark "present"
                                           the same day (duplicate, kept as absent)
                                           -> 1/20 = 5.0% at risk
s3  A all month                            1, 2 unexcused, 3 suspension, 4 excused
                                           -> 4/20 = 20.0% severe, Tier 3
s4  A all month; last year 1-15 Sep 2025   in-school suspension 9 Sep (present), an
                                           unknown code "X" on 10 Sep (set aside);
                                           last year absent 2 and 3 Sep 2025
                                           (2/11 = 18.2%, chronic) -> 0% now, Tier 2
s5  A all month                            14 Sep 180 of 360 minutes (0.5), 15 Sep
                                           90 minutes (0.25), 16 Sep fraction 0.6
                                           (half-day rule -> 1), 17 Sep fraction 0.3
                                           (-> 0): 1.75/20 = 8.75% at risk
s6  A 1-15 Sep, B from 15 Sep (hand-off)   A: 3 Sep -> 1/10 = 10.0% chronic at A;
                                           B: 22 Sep -> 1/12 = 8.3% at B;
                                           district: 10 + 12 - 1 = 21 days, 2 absent,
                                           9.5% at risk, on pace (2 by end of Sep)
s7  A 1-4 Sep and 14-30 Sep (a gap)        9 Sep (in the gap: set aside), 21 Sep
                                           -> 1/16 = 6.25% at risk
s8  B from 18 Sep                          21, 22 Sep -> 9 days enrolled: not eligible
==  =====================================  ==========================================
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

AS_OF = "2026-09-30"


def _weekdays(start: str, end: str) -> list[pd.Timestamp]:
    return list(pd.bdate_range(start, end))


def calendar() -> pd.DataFrame:
    rows = []
    for school in ("A", "B"):
        for day in _weekdays("2026-09-01", "2026-09-30"):
            closed = day.day == 7 or (school == "A" and day.day == 18)
            event = ("Labor Day" if day.day == 7 else
                     "Closed: water-main break" if closed else "")
            rows.append((school, day.date().isoformat(), not closed, event, 360))
    for day in _weekdays("2025-09-01", "2025-09-15"):
        rows.append(("A", day.date().isoformat(), True, "", 360))
    return pd.DataFrame(rows, columns=["school_id", "date", "instructional", "event",
                                       "instructional_minutes"])


def students() -> pd.DataFrame:
    rows = [
        # id, grade, race, gender, EL, SWD, econ, homeless, foster
        ("s1", "1", "Black", "Female", "yes", "no", "yes", "no", "no"),
        ("s2", "1", "Hispanic", "Male", "no", "no", "yes", "no", "no"),
        ("s3", "2", "Black", "Male", "no", "yes", "yes", "yes", "no"),
        ("s4", "1", "White", "Female", "no", "no", "no", "no", "no"),
        ("s5", "3", "Asian", "Female", "yes", "no", "no", "no", "no"),
        ("s6", "4", "Hispanic", "Female", "no", "no", "yes", "no", "yes"),
        ("s7", "5", "Multiracial", "Male", "no", "no", "no", "no", "no"),
        ("s8", "4", "Hispanic", "Nonbinary", "no", "yes", "yes", "no", "no"),
    ]
    return pd.DataFrame(rows, columns=[
        "student_id", "grade", "race_ethnicity", "gender", "english_learner",
        "disability", "economically_disadvantaged", "homeless", "foster"])


def enrollments() -> pd.DataFrame:
    rows = [(s, "A", g, "2026-09-01", "") for s, g in
            (("s1", "1"), ("s2", "1"), ("s3", "2"), ("s4", "1"), ("s5", "3"))]
    rows += [
        ("s4", "A", "K", "2025-09-01", "2025-09-15"),
        ("s6", "A", "4", "2026-09-01", "2026-09-15"),
        ("s6", "B", "4", "2026-09-15", ""),
        ("s7", "A", "5", "2026-09-01", "2026-09-04"),
        ("s7", "A", "5", "2026-09-14", ""),
        ("s8", "B", "4", "2026-09-18", ""),
    ]
    return pd.DataFrame(rows, columns=["student_id", "school_id", "grade", "entry_date",
                                       "exit_date"])


def attendance() -> pd.DataFrame:
    rows = [
        ("s1", "A", "2026-09-02", "unexcused", "", ""),
        ("s1", "A", "2026-09-03", "unexcused", "", ""),
        ("s1", "A", "2026-09-07", "unexcused", "", ""),   # holiday: set aside
        ("s1", "A", "2026-09-18", "excused", "", ""),     # A closed: set aside
        ("s1", "A", "2026-10-01", "excused", "", ""),     # after as-of: set aside
        ("s2", "A", "2026-09-08", "excused", "", ""),
        ("s2", "A", "2026-09-08", "present", "", ""),     # duplicate: set aside
        ("s3", "A", "2026-09-01", "unexcused", "", ""),
        ("s3", "A", "2026-09-02", "unexcused", "", ""),
        ("s3", "A", "2026-09-03", "suspension", "", ""),
        ("s3", "A", "2026-09-04", "excused", "", ""),
        ("s4", "A", "2026-09-09", "in_school_suspension", "", ""),
        ("s4", "A", "2026-09-10", "X", "", ""),           # unknown code: set aside
        ("s4", "A", "2025-09-02", "unexcused", "", ""),
        ("s4", "A", "2025-09-03", "unexcused", "", ""),
        ("s5", "A", "2026-09-14", "excused", "180", ""),
        ("s5", "A", "2026-09-15", "unexcused", "90", ""),
        ("s5", "A", "2026-09-16", "excused", "", "0.6"),
        ("s5", "A", "2026-09-17", "excused", "", "0.3"),
        ("s6", "A", "2026-09-03", "excused", "", ""),
        ("s6", "B", "2026-09-22", "excused", "", ""),
        ("s7", "A", "2026-09-09", "unexcused", "", ""),   # in the gap: set aside
        ("s7", "A", "2026-09-21", "unexcused", "", ""),
        ("s8", "B", "2026-09-21", "unexcused", "", ""),
        ("s8", "B", "2026-09-22", "unexcused", "", ""),
    ]
    return pd.DataFrame(rows, columns=["student_id", "school_id", "date", "category",
                                       "minutes_missed", "fraction_missed"])


def schools() -> pd.DataFrame:
    return pd.DataFrame({
        "school_id": ["A", "B"],
        "school_name": ["Alder Elementary", "Birch Elementary"],
        "school_level": ["elementary", "elementary"], "district_id": ["D1", "D1"],
        "district_name": ["Tiny District", "Tiny District"],
    })


def write(folder: Path) -> Path:
    """Write the tiny district's files as CSV into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in (("calendar", calendar()), ("students", students()),
                        ("enrollments", enrollments()), ("attendance", attendance()),
                        ("schools", schools())):
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder
