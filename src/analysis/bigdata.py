"""A fast generator of large synthetic districts, written in the engine (DuckDB SQL).

:func:`generate_large_district` writes the contract tables of a made-up state-sized
district straight to Parquet, from 1 million to 1 billion daily attendance rows,
without building a single row in Python: every random draw is a hash of the seed
and a key, so the same seed gives the same tables at any size and any thread count.

It has the shape of the sample district (:mod:`analysis.sample`), simplified so
that it runs in a few SQL statements:

* two school years (the prior full year and the current year up to the as-of
  date), weekday calendars with the usual holidays and recesses, a few one-day
  emergency closures and remote-instruction days per school;
* schools of three levels grouped in districts of :data:`SCHOOLS_PER_DISTRICT`;
* enrollment spans with late entries, students who leave, students who move to
  another school of their district (a third of them on a hand-off day enrolled at
  both schools) and students who leave and come back after a gap;
* every day enrolled has an attendance row (``marks="all"``, like a daily SIS
  export) or only absences have one (``marks="absences"``); absences cluster in
  short spells, a right-skewed share of students misses many days, 8% of absences
  are partial days (minutes missed, or a fraction of the day at one school type);
* optionally a small, counted number of bad rows (duplicate marks, unknown codes,
  marks on days that are not school days, marks outside enrollment).

Attendance goes to ``attendance/part-NNNNN.parquet`` (one file per block of
students); the other tables are one Parquet file each.

Notes
-----
The absence model is simpler than the sample district's: no calibration to NYC
odds by grade and group, no flu weeks, no planted equity effect and no
interventions table. It is meant for measuring speed and memory, not for
analysis. Random draws use DuckDB's ``hash``, which is stable for a given DuckDB
version; a new DuckDB release may change the data drawn from a seed.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb

from analysis.log import logger

#: Schools per district; each block of 20 schools holds 12 elementary, 5 middle
#: and 3 high schools.
SCHOOLS_PER_DISTRICT = 40
STUDENTS_PER_SCHOOL = 550
PLANNED_DAYS = 180

#: Attendance rows per attendance file (about; files are cut at student blocks).
ROWS_PER_FILE = 25_000_000

_RACES = ("American Indian", "Asian", "Black", "Hispanic", "Pacific Islander",
          "White", "Multiracial")
_RACE_CUTS = (0.008, 0.158, 0.408, 0.808, 0.812, 0.962, 1.0)
_GRADES = ("K", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12")


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_monday_of_may(year: int) -> date:
    last = date(year, 5, 31)
    return last - timedelta(days=last.weekday())


def _closures(start_year: int) -> dict[date, str]:
    """Planned district-wide non-instructional weekdays of one school year."""
    y, y1 = start_year, start_year + 1
    closed = {
        _nth_weekday(y, 9, 0, 1): "Labor Day",
        _nth_weekday(y, 10, 0, 2): "Indigenous Peoples' Day",
        date(y, 11, 11): "Veterans Day",
        _nth_weekday(y, 11, 3, 4): "Thanksgiving",
        _nth_weekday(y, 11, 3, 4) + timedelta(days=1): "Thanksgiving recess",
        _nth_weekday(y1, 1, 0, 3): "Martin Luther King Jr. Day",
        _last_monday_of_may(y1): "Memorial Day",
        date(y1, 6, 19): "Juneteenth",
    }
    winter = date(y, 12, 22) - timedelta(days=date(y, 12, 22).weekday())
    presidents = _nth_weekday(y1, 2, 0, 3)
    spring = _nth_weekday(y1, 4, 0, 1)
    for k in range(12):
        closed.setdefault(winter + timedelta(days=k), "Winter recess")
    for k in range(5):
        closed.setdefault(presidents + timedelta(days=k), "Mid-winter recess")
        closed.setdefault(spring + timedelta(days=k), "Spring recess")
    return {d: e for d, e in closed.items() if d.weekday() < 5}


def _year_days(start_year: int) -> list[tuple[date, bool, str]]:
    """Every weekday of a school year: (date, district school day, event)."""
    closures = _closures(start_year)
    day = date(start_year, 8, 26) - timedelta(days=date(start_year, 8, 26).weekday())
    rows, count = [], 0
    while count < PLANNED_DAYS:
        if day.weekday() < 5:
            open_ = day not in closures
            rows.append((day, open_, closures.get(day, "")))
            count += open_
        day += timedelta(days=1)
    return rows


def _school_year(day: date) -> int:
    return day.year if day.month >= 7 else day.year - 1


def rows_per_student(as_of: date) -> float:
    """About how many daily rows one student adds (both years, before mobility)."""
    current = _school_year(as_of)
    prior = sum(o for _, o, _ in _year_days(current - 1))
    now = sum(o for d, o, _ in _year_days(current) if d <= as_of)
    # 85% of students were there last year; some leave, move or arrive late,
    # and about one school day a year is an emergency closure (fitted once on a
    # generated district).
    return (0.85 * prior * 0.96 + now * 0.98) * 0.93


def _setup(con: duckdb.DuckDBPyConnection, seed: int, n_students: int,
           as_of: date) -> dict:
    """Create the small tables (days, schools, students, spans) in ``con``."""
    current = _school_year(as_of)
    n_schools = 20 * max(1, math.ceil(n_students / (20 * STUDENTS_PER_SCHOOL)))
    n_districts = math.ceil(n_schools / SCHOOLS_PER_DISTRICT)

    # A uniform draw in [0, 1) from the seed, a key and a salt.
    con.execute(f"""
        CREATE OR REPLACE MACRO u(k, salt) AS
            hash(xor(hash({seed}, k), salt::UBIGINT))::DOUBLE
            / 18446744073709551616.0;
        CREATE OR REPLACE MACRO u2(k, j, salt) AS
            hash(xor(hash({seed}, k, j), salt::UBIGINT))::DOUBLE
            / 18446744073709551616.0;
    """)

    # Weekdays of both years, numbered among district school days.
    rows = []
    for which, year in (("prior", current - 1), ("current", current)):
        pos = 0
        for day, open_, event in _year_days(year):
            rows.append((year, day, open_, event, pos if open_ else -1))
            pos += open_
    con.execute("CREATE OR REPLACE TABLE weekdays (year_start INTEGER, date DATE, "
                "district_open BOOLEAN, event VARCHAR, pos INTEGER)")
    con.executemany("INSERT INTO weekdays VALUES (?, ?, ?, ?, ?)", rows)
    n_pos = {
        "prior": sum(1 for r in rows if r[0] == current - 1 and r[2]),
        "current": sum(1 for r in rows if r[0] == current and r[2] and r[1] <= as_of),
    }

    # Schools: level by place in a block of 20; one high school type records
    # partial days as a fraction of the day.
    con.execute(f"""
        CREATE OR REPLACE TABLE schools_n AS
        SELECT i AS school_no,
               'S' || lpad(i::VARCHAR, 6, '0') AS school_id,
               CASE WHEN i % 20 < 12 THEN 0 WHEN i % 20 < 17 THEN 1 ELSE 2 END
                   AS level,
               i // {SCHOOLS_PER_DISTRICT} AS district_no,
               i % 20 = 19 AS fraction_school
        FROM range({n_schools}) t(i)
    """)

    # Students: 85% were there last year, 15% are new this year.
    race_case = " ".join(f"WHEN u(i, 5) < {cut} THEN '{race}'"
                         for race, cut in zip(_RACES, _RACE_CUTS, strict=True))
    n_old = round(0.85 * n_students)
    con.execute(f"""
        CREATE OR REPLACE TABLE students_n AS
        SELECT i AS student_no,
               lpad(i::VARCHAR, 9, '0') AS student_id,
               CASE WHEN i < {n_old} THEN (u(i, 1) * 13)::INTEGER % 13
                    WHEN u(i, 2) < 0.55 THEN 0
                    ELSE 1 + (u(i, 3) * 12)::INTEGER % 12 END AS grade0,
               i < {n_old} AS was_there,
               (u(i, 4) * {n_districts})::INTEGER % {n_districts} AS district_no,
               CASE {race_case} ELSE 'Multiracial' END AS race_ethnicity,
               CASE WHEN u(i, 6) < 0.488 THEN 'Female' WHEN u(i, 6) < 0.997
                    THEN 'Male' ELSE 'Nonbinary' END AS gender,
               u(i, 7) < 0.15 AS english_learner,
               u(i, 8) < 0.19 AS disability,
               u(i, 9) < 0.70 AS economically_disadvantaged,
               u(i, 10) < 0.06 AS homeless,
               u(i, 11) < 0.01 AS foster,
               -- A right-skewed daily absence rate (logit-normal).
               1 / (1 + exp(3.0 - 0.85 * sqrt(-2 * ln(1 - u(i, 12)))
                        * cos(2 * pi() * u(i, 13)))) AS rate,
               u(i, 14) < 0.004 AS independent_study
        FROM range({n_students}) t(i)
    """)
    counts = con.execute(
        "SELECT district_no, count(*) FILTER (WHERE level = 0), "
        "count(*) FILTER (WHERE level = 1), count(*) FILTER (WHERE level = 2) "
        "FROM schools_n GROUP BY ALL").fetchall()
    con.execute("CREATE OR REPLACE TABLE level_counts (district_no INTEGER, "
                "level INTEGER, n INTEGER)")
    con.executemany("INSERT INTO level_counts VALUES (?, ?, ?)",
                    [(d, lv, c[lv]) for d, *c in counts for lv in range(3)])
    con.execute("""
        CREATE OR REPLACE TABLE level_schools AS
        SELECT district_no, level, school_no,
               row_number() OVER (PARTITION BY district_no, level
                                  ORDER BY school_no) - 1 AS k
        FROM schools_n
    """)

    _make_spans(con, n_pos, current)
    return {"n_schools": n_schools, "n_districts": n_districts, "n_pos": n_pos,
            "current": current}


def _make_spans(con: duckdb.DuckDBPyConnection, n_pos: dict, current: int) -> None:
    """Enrollment spans of both years, in positions of district school days."""
    parts = []
    for y, which, salt, frac in ((current - 1, "prior", 100, 1.0),
                                 (current, "current", 200, None)):
        last = n_pos[which] - 1
        if frac is None:
            frac = n_pos["current"] / PLANNED_DAYS
        grade = ("s.grade0" if which == "prior" else
                 "CASE WHEN s.was_there THEN s.grade0 + (u(s.student_no, 20) >= 0.02)"
                 "::INTEGER ELSE s.grade0 END")
        # Who is enrolled this year: last year's students; this year's returners
        # (not past grade 12, 6% left over summer) and the new students.
        who = ("s.was_there" if which == "prior" else
               "(NOT s.was_there OR (s.grade0 < 12 AND u(s.student_no, 21) >= 0.06))")
        late_share = 0.04 if which == "prior" else 0.0
        parts.append(f"""
        SELECT {y} AS year_start, s.student_no, s.district_no, g.grade,
               CASE WHEN g.grade <= 5 THEN 0 WHEN g.grade <= 8 THEN 1 ELSE 2 END
                   AS level,
               u(s.student_no, {salt}) AS u_school,
               CASE WHEN u(s.student_no, {salt + 1}) < {late_share} AND {last} > 40
                    THEN 5 + (u(s.student_no, {salt + 2}) * ({last} - 35))::INTEGER
                    WHEN NOT s.was_there AND {which == 'current'}
                         AND u(s.student_no, {salt + 3}) < 0.15 AND {last} > 15
                    THEN 3 + (u(s.student_no, {salt + 4}) * ({last} - 8))::INTEGER
                    ELSE 0 END AS start,
               u(s.student_no, {salt + 5}) AS u_move,
               u(s.student_no, {salt + 6}) AS u_cut,
               u(s.student_no, {salt + 7}) AS u_restart,
               s.homeless,
               {last} AS last_pos,
               {'TRUE' if which == 'current' else 'FALSE'} AS open_year,
               {frac} AS frac
        FROM students_n s, LATERAL (SELECT {grade} AS grade) g
        WHERE {who}
        """)
    con.execute("CREATE OR REPLACE TABLE student_years AS "
                + " UNION ALL ".join(parts))

    # One mobility path per student-year: leave, move school, or leave and return.
    con.execute("""
        CREATE OR REPLACE TABLE paths AS
        SELECT *,
               CASE WHEN last_pos - start <= 40 THEN 'stay'
                    WHEN u_move < 0.04 * frac THEN 'leave'
                    WHEN u_move < (0.04 + 0.06 * (1 + homeless::INTEGER)) * frac
                        THEN 'move'
                    WHEN NOT open_year
                         AND u_move < 0.10 + 0.06 * (1 + homeless::INTEGER) + 0.006
                        THEN 'gap'
                    ELSE 'stay' END AS path,
               start + 10 + (u_cut * greatest(last_pos - start - 30, 1))::INTEGER
                   AS cut
        FROM student_years
    """)
    con.execute("""
        CREATE OR REPLACE TABLE spans_pos AS
        WITH first AS (
            SELECT p.*, ls.school_no AS school_no, lc.n AS n_level,
                   (p.u_school * lc.n)::INTEGER % lc.n AS k
            FROM paths p
            JOIN level_counts lc USING (district_no, level)
            JOIN level_schools ls ON ls.district_no = p.district_no
                 AND ls.level = p.level
                 AND ls.k = (p.u_school * lc.n)::INTEGER % lc.n
        ), second AS (
            SELECT f.year_start, f.student_no, f.district_no, f.grade,
                   CASE WHEN f.path = 'gap' AND u(f.student_no, f.year_start) < 0.6
                        THEN f.school_no ELSE ls.school_no END AS school_no,
                   CASE WHEN f.path = 'gap'
                        THEN f.cut + 20 + (f.u_restart * 41)::INTEGER
                        WHEN f.u_restart < 0.35 THEN f.cut   -- a hand-off day
                        ELSE f.cut + 1 + (f.u_restart * 4)::INTEGER END AS start,
                   CASE WHEN f.open_year THEN NULL ELSE f.last_pos END AS stop,
                   f.last_pos
            FROM first f
            JOIN level_schools ls ON ls.district_no = f.district_no
                 AND ls.level = f.level AND ls.k = (f.k + 1) % f.n_level
            WHERE f.path IN ('move', 'gap')
        )
        SELECT year_start, student_no, school_no, grade, start,
               CASE WHEN path IN ('leave', 'move', 'gap') THEN cut
                    WHEN open_year THEN NULL ELSE last_pos END AS stop,
               last_pos
        FROM first
        UNION ALL
        SELECT year_start, student_no, school_no, grade, start, stop, last_pos
        FROM second WHERE start <= last_pos
    """)


def _attendance_sql(seed: int, marks: str, inject_errors: bool, lo: int,
                    hi: int) -> str:
    """The daily attendance rows of students ``lo`` to ``hi - 1``."""
    keep = "" if marks == "all" else "WHERE category <> 'present'"
    errors = ""
    if inject_errors:
        # A few counted bad rows: a second mark the same day, a mark on a Saturday
        # (not a school day), a mark at a school the student is not enrolled in,
        # and an unknown code.
        errors = """
        UNION ALL SELECT student_id, school_id, date, 'present', NULL, NULL,
               modality FROM rows WHERE h % 200000 = 7 AND category <> 'present'
        UNION ALL SELECT student_id, school_id, date + (6 - isodow(date))::INTEGER,
               'excused', NULL, NULL, 'in_person' FROM rows WHERE h % 400000 = 11
        UNION ALL SELECT student_id, 'S999999', date, 'unexcused', NULL, NULL,
               'in_person' FROM rows WHERE h % 400000 = 13
        """
    category = ("CASE WHEN h % 400000 = 17 THEN 'X' ELSE category END"
                if inject_errors else "category")
    return f"""
    WITH exploded AS (
        SELECT sp.year_start, sp.student_no, sp.school_no, sp.grade,
               unnest(generate_series(sp.start, coalesce(sp.stop, sp.last_pos)))
                   AS pos
        FROM spans_pos sp
        WHERE sp.student_no >= {lo} AND sp.student_no < {hi}
    ), days AS (
        SELECT e.*, w.date, month(w.date) AS month, isodow(w.date) AS dow,
               st.student_id, st.rate, st.independent_study, sc.school_id,
               sc.fraction_school, sc.level,
               hash({seed}, e.student_no, w.date) AS h
        FROM exploded e
        JOIN weekdays w ON w.year_start = e.year_start AND w.pos = e.pos
        JOIN students_n st ON st.student_no = e.student_no
        JOIN schools_n sc ON sc.school_no = e.school_no
        -- about one emergency closure per school and year
        WHERE u2(e.school_no, w.date, 1) >= 0.004
    ), marked AS (
        SELECT *,
               least(0.95, rate * CASE month WHEN 9 THEN 0.75 WHEN 12 THEN 1.15
                       WHEN 1 THEN 1.25 WHEN 2 THEN 1.2 WHEN 6 THEN 1.2
                       WHEN 8 THEN 0.7 ELSE 1.0 END
                   * CASE dow WHEN 1 THEN 1.15 WHEN 5 THEN 1.1 ELSE 0.95 END) AS p,
               u2(student_no, date, 2) AS u_day,
               -- absences come in spells of up to four school days
               u2(student_no, year_start * 1000 + pos // 4, 3) AS u_spell,
               u2(student_no, date, 4) AS u_kind
        FROM days
    ), rows AS (
        SELECT student_id, school_id, date, h,
               CASE WHEN u_day < 0.75 * p OR u_spell < 0.25 * p THEN
                        CASE WHEN u_kind < 0.5 THEN 'excused'
                             WHEN u_kind < 0.93 THEN 'unexcused'
                             ELSE 'suspension' END
                    WHEN u_kind < 0.003 THEN 'in_school_suspension'
                    ELSE 'present' END AS category,
               u2(student_no, date, 5) < 0.08 AS partial,
               fraction_school,
               CASE WHEN u2(school_no, date, 6) < 0.006 THEN 'remote_live'
                    WHEN independent_study THEN 'independent_study'
                    ELSE 'in_person' END AS modality
        FROM marked
    ), final AS (
        SELECT student_id, school_id, date, {category} AS category,
               CASE WHEN partial AND category IN ('excused', 'unexcused')
                         AND NOT fraction_school
                    THEN CAST(30 * (1 + h % 10) AS DOUBLE) END AS minutes_missed,
               CASE WHEN partial AND category IN ('excused', 'unexcused')
                         AND fraction_school
                    THEN round(0.1 + 0.8 * ((h // 7) % 1000) / 1000.0, 2)
                    END AS fraction_missed,
               modality
        FROM rows {keep}
        {errors}
    )
    SELECT * FROM final ORDER BY student_id, date, school_id, category
    """


def generate_large_district(out_dir: Path, daily_rows: float = 1e6, *,
                            seed: int = 20261203, as_of: str = "2026-11-30",
                            marks: str = "all", inject_errors: bool = True,
                            threads: int = 2, memory_limit: str = "6GB") -> dict:
    """Write a synthetic district of about ``daily_rows`` daily attendance rows.

    Parameters
    ----------
    out_dir : Path
        Folder to write (replaced if it exists).
    daily_rows : float
        Target number of student-school-days enrolled (with ``marks="all"``, the
        number of attendance rows). The student count is chosen to match; the
        result is within a few percent.
    seed : int
        The same seed gives the same tables.
    as_of : str
        ISO date; the current year runs up to it, the prior year is complete.
    marks : {"all", "absences"}
        Every day enrolled gets a row, or only absences do (exception-only).
    inject_errors : bool
        Add a small, counted number of bad attendance rows.
    threads, memory_limit
        DuckDB settings for the generation.

    Returns
    -------
    dict
        What ``meta.json`` holds: parameters, sizes, row counts and seconds taken.
    """
    if marks not in ("all", "absences"):
        raise ValueError(f"marks must be 'all' or 'absences', got {marks!r}")
    if daily_rows < 1e4:
        raise ValueError(f"daily_rows must be at least 10,000, got {daily_rows:g}")
    started = time.perf_counter()
    as_of_date = date.fromisoformat(as_of)
    n_students = max(200, round(daily_rows / rows_per_student(as_of_date)))
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "attendance").mkdir(parents=True)
    logger.info("large district: %d students for about %.3g daily rows, into %s",
                n_students, daily_rows, out_dir)

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}; SET memory_limit = '{memory_limit}'; "
                f"SET preserve_insertion_order = false")
    info = _setup(con, seed, n_students, as_of_date)

    # The small tables, one Parquet file each.
    copy = "(FORMAT parquet, COMPRESSION zstd)"
    con.execute(f"""COPY (SELECT school_id,
            'School ' || school_no AS school_name,
            ['elementary', 'middle', 'high'][level + 1] AS school_level,
            'D' || lpad(district_no::VARCHAR, 4, '0') AS district_id,
            'District ' || district_no AS district_name
        FROM schools_n ORDER BY school_no) TO '{out_dir / 'schools.parquet'}' {copy}""")
    grades = "[" + ", ".join(f"'{g}'" for g in _GRADES) + "]"
    con.execute(f"""COPY (
        SELECT s.student_id, {grades}[y.grade + 1] AS grade, s.race_ethnicity,
               s.gender, s.english_learner, s.disability,
               s.economically_disadvantaged, s.homeless, s.foster
        FROM students_n s
        JOIN (SELECT student_no, arg_max(grade, year_start) AS grade
              FROM spans_pos GROUP BY student_no) y USING (student_no)
        ORDER BY s.student_no) TO '{out_dir / 'students.parquet'}' {copy}""")
    con.execute(f"""COPY (
        SELECT st.student_id, sc.school_id, {grades}[sp.grade + 1] AS grade,
               w1.date AS entry_date, w2.date AS exit_date
        FROM spans_pos sp
        JOIN students_n st USING (student_no)
        JOIN schools_n sc USING (school_no)
        JOIN weekdays w1 ON w1.year_start = sp.year_start AND w1.pos = sp.start
        LEFT JOIN weekdays w2 ON w2.year_start = sp.year_start AND w2.pos = sp.stop
        ORDER BY st.student_id, w1.date, sc.school_id
        ) TO '{out_dir / 'enrollments.parquet'}' {copy}""")
    con.execute(f"""COPY (
        SELECT sc.school_id, w.date,
               w.district_open AND u2(sc.school_no, w.date, 1) >= 0.004
                   AS instructional,
               CASE WHEN NOT w.district_open THEN w.event
                    WHEN u2(sc.school_no, w.date, 1) < 0.004
                        THEN 'Emergency closure'
                    WHEN u2(sc.school_no, w.date, 6) < 0.006
                        THEN 'Remote instruction' END AS event,
               CASE WHEN w.district_open AND u2(sc.school_no, w.date, 1) >= 0.004
                    THEN CASE WHEN sc.level = 0 THEN 360 ELSE 390 END
                    END AS instructional_minutes
        FROM schools_n sc, weekdays w
        ORDER BY sc.school_id, w.date) TO '{out_dir / 'calendar.parquet'}' {copy}""")

    # Attendance, one file per block of students so memory stays bounded.
    per_file = max(1, round(ROWS_PER_FILE / rows_per_student(as_of_date)))
    n_files = math.ceil(n_students / per_file)
    for part in range(n_files):
        lo, hi = part * per_file, min(n_students, (part + 1) * per_file)
        target = out_dir / "attendance" / f"part-{part:05d}.parquet"
        con.execute(f"COPY ({_attendance_sql(seed, marks, inject_errors, lo, hi)}) "
                    f"TO '{target}' (FORMAT parquet, COMPRESSION zstd, "
                    f"ROW_GROUP_SIZE 1000000)")
        logger.info("attendance part %d of %d written", part + 1, n_files)

    glob = out_dir / "attendance" / "*.parquet"
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0]
    sizes = {name: con.execute(
        f"SELECT count(*) FROM read_parquet('{out_dir / (name + '.parquet')}')"
    ).fetchone()[0] for name in ("schools", "students", "enrollments", "calendar")}
    sizes["attendance"] = rows
    meta = {
        "generator": "analysis.bigdata",
        "seed": seed, "as_of": as_of, "marks": marks,
        "inject_errors": inject_errors, "daily_rows_target": daily_rows,
        "n_students": n_students, "n_schools": info["n_schools"],
        "n_districts": info["n_districts"], "sizes": sizes,
        "attendance_files": n_files,
        "bytes": sum(p.stat().st_size for p in out_dir.rglob("*.parquet")),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    con.close()
    logger.info("large district written: %d attendance rows in %.0f s", rows,
                meta["seconds"])
    return meta
