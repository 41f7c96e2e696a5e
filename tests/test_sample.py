"""Tests of the synthetic sample district (``analysis.sample``).

One clean district (no injected errors) and one with errors are generated once per
module; every figure is recomputed here from the written files with plain pandas.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandera import errors as pa_errors

from analysis.contract import ATTENDANCE_CATEGORIES, INTERVENTION_TYPES, SCHEMAS
from analysis.sample import (
    INJECTED_ERRORS,
    PLANTED_PUNITIVE_RATIO,
    generate_sample_district,
    main,
)

N_STUDENTS = 3000
AS_OF = "2026-11-30"
PRIOR_START, PRIOR_END = "2025-08-01", "2026-07-31"
ABSENT = ("excused", "unexcused", "suspension")


def _read(folder: Path) -> dict[str, pd.DataFrame]:
    """Read the six tables the way a district's files would be read."""
    tables = {name: pd.read_csv(folder / f"{name}.csv")
              for name in ("schools", "students", "enrollments", "calendar",
                           "interventions")}
    tables["attendance"] = pd.read_parquet(folder / "attendance.parquet")
    return tables


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[dict[str, pd.DataFrame], dict]:
    folder = tmp_path_factory.mktemp("clean")
    meta = generate_sample_district(folder, n_students=N_STUDENTS, as_of=AS_OF,
                                    inject_errors=False)
    return _read(folder), meta


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> tuple[dict[str, pd.DataFrame], dict]:
    folder = tmp_path_factory.mktemp("dirty")
    meta = generate_sample_district(folder, n_students=N_STUDENTS, as_of=AS_OF)
    return _read(folder), meta


def _enrolled_days(tables: dict[str, pd.DataFrame], start: str,
                   end: str) -> pd.DataFrame:
    """Return one row per (student, school, instructional day) inside a span."""
    spans = tables["enrollments"].copy()
    spans["exit_date"] = spans["exit_date"].fillna(AS_OF)
    spans = spans[(spans["entry_date"] >= start) & (spans["entry_date"] <= end)]
    cal = tables["calendar"]
    cal = cal[cal["instructional"] & (cal["date"] >= start) & (cal["date"] <= end)
              & (cal["date"] <= AS_OF)]
    days = spans.merge(cal[["school_id", "date"]], on="school_id")
    inside = (days["date"] >= days["entry_date"]) & (days["date"] <= days["exit_date"])
    return days.loc[inside, ["student_id", "school_id", "date", "grade"]]


def _whole_day_absences(att: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    """Return whole-day absence rows (partial days left out) between two dates."""
    whole = (att["category"].isin(ABSENT) & att["minutes_missed"].isna()
             & att["fraction_missed"].isna())
    in_year = (att["date"] >= start) & (att["date"] <= end)
    return att.loc[whole & in_year, ["student_id", "school_id", "date", "category"]]


def _chronic(tables: dict[str, pd.DataFrame], start: str, end: str) -> pd.DataFrame:
    """Per student: district days enrolled, whole days absent, chronic flag."""
    days = _enrolled_days(tables, start, end)
    enrolled = days.drop_duplicates(["student_id", "date"]).groupby("student_id").size()
    absences = _whole_day_absences(tables["attendance"], start, end)
    absent = absences.drop_duplicates(["student_id", "date"]).groupby(
        "student_id").size()
    out = pd.DataFrame({"enrolled": enrolled}).join(absent.rename("absent"))
    out["absent"] = out["absent"].fillna(0)
    out = out[out["enrolled"] >= 10]
    out["chronic"] = out["absent"] / out["enrolled"] >= 0.10
    grade = days.sort_values("date").groupby("student_id")["grade"].first()
    return out.join(grade.astype(str)).join(
        tables["students"].set_index("student_id").drop(columns="grade"))


@pytest.fixture(scope="module")
def prior_chronic(clean) -> pd.DataFrame:
    return _chronic(clean[0], PRIOR_START, PRIOR_END)


# ----------------------------------------------------------------------------------
# Files, determinism and the contract
# ----------------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_sample_district(tmp_path / "a", seed=7, n_students=400)
    b = generate_sample_district(tmp_path / "b", seed=7, n_students=400)
    c = generate_sample_district(tmp_path / "c", seed=8, n_students=400)

    assert set(a["files"]) == {"schools.csv", "students.csv", "enrollments.csv",
                               "calendar.csv", "attendance.parquet",
                               "interventions.csv"}
    for name, info in a["files"].items():
        assert info["sha256"] == hashlib.sha256(
            (tmp_path / "a" / name).read_bytes()).hexdigest()
        assert b["files"][name]["sha256"] == info["sha256"], name
    assert a == b
    assert ((tmp_path / "a" / "sample_meta.json").read_bytes()
            == (tmp_path / "b" / "sample_meta.json").read_bytes())
    for name in ("students.csv", "enrollments.csv", "attendance.parquet",
                 "interventions.csv"):
        assert c["files"][name]["sha256"] != a["files"][name]["sha256"], name


def test_meta_file_matches_return_value(clean, tmp_path):
    meta = generate_sample_district(tmp_path, n_students=300, seed=3)
    on_disk = json.loads((tmp_path / "sample_meta.json").read_text())
    assert on_disk == meta
    assert meta["seed"] == 3 and meta["n_students"] == 300
    assert meta["as_of"] == AS_OF
    assert meta["planted_effects"]["punitive_ratio"] == PLANTED_PUNITIVE_RATIO
    assert PLANTED_PUNITIVE_RATIO == {"race_ethnicity": {"Black": 1.8}}
    tables, clean_meta = clean
    for name, frame in tables.items():
        assert clean_meta["sizes"][name] == len(frame), name


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_clean_tables_pass_the_contract(clean, table):
    tables, _ = clean
    SCHEMAS[table].validate(tables[table], lazy=True)


def test_students_and_schools_look_like_a_district(clean):
    tables, _ = clean
    students, schools = tables["students"], tables["schools"]

    assert len(students) == N_STUDENTS
    assert students["student_id"].str.fullmatch(r"ST\d{6}").all()
    assert len(schools) == 20
    assert schools["school_level"].value_counts().to_dict() == {
        "elementary": 12, "middle": 5, "high": 3}
    shares = students["race_ethnicity"].value_counts(normalize=True)
    assert 0.35 < shares["Hispanic"] < 0.45 and 0.20 < shares["Black"] < 0.30
    assert 0.60 < students["economically_disadvantaged"].mean() < 0.80
    assert 0.03 < students["homeless"].mean() < 0.09
    assert 0.10 < students["english_learner"].mean() < 0.20
    assert 0.15 < students["disability"].mean() < 0.25
    assert students["foster"].sum() > 0


def test_calendar_is_real_looking(clean):
    cal = clean[0]["calendar"]
    dates = pd.to_datetime(cal["date"])

    assert (dates.dt.day_of_week < 5).all()
    prior = cal[(cal["date"] >= PRIOR_START) & (cal["date"] <= PRIOR_END)]
    days = prior[prior["instructional"]].groupby("school_id").size()
    assert days.between(172, 181).all()
    assert prior["date"].min() >= "2025-08-15" and prior["date"].max() >= "2026-06-08"
    events = " ".join(cal["event"].dropna().unique())
    for holiday in ("Labor Day", "Indigenous Peoples' Day", "Veterans Day",
                    "Thanksgiving", "Winter recess", "Martin Luther King Jr. Day",
                    "Presidents' Day", "Spring recess", "Memorial Day",
                    "Professional development", "Emergency closure"):
        assert holiday in events, holiday
    thanksgiving = cal[cal["date"] == "2025-11-27"]
    assert not thanksgiving["instructional"].any()

    # An emergency closure hits one school only; other schools are open that day.
    closure = cal[cal["event"].fillna("").str.contains("water main")]
    assert closure["school_id"].nunique() == 1
    same_day = cal[cal["date"].isin(closure["date"])
                   & ~cal["school_id"].isin(closure["school_id"])]
    assert same_day["instructional"].all()
    assert cal.loc[cal["instructional"], "instructional_minutes"].isin(
        [360, 390, 240, 180]).all()


# ----------------------------------------------------------------------------------
# Enrollment and mobility
# ----------------------------------------------------------------------------------


def test_enrollment_has_mobility_and_progression(clean):
    tables, _ = clean
    enr = tables["enrollments"]
    prior = enr[enr["entry_date"] <= PRIOR_END]
    current = enr[enr["entry_date"] > PRIOR_END]

    # Some students at two or more schools in one year; a few with a gap.
    schools_per_student = prior.groupby("student_id")["school_id"].nunique()
    assert 0.02 < (schools_per_student >= 2).mean() < 0.15
    two = prior[prior.duplicated("student_id", keep=False)].sort_values(
        ["student_id", "entry_date"])
    pairs = two.groupby("student_id").agg(first_exit=("exit_date", "first"),
                                          second_entry=("entry_date", "last"))
    gap = (pd.to_datetime(pairs["second_entry"])
           - pd.to_datetime(pairs["first_exit"])).dt.days
    assert (gap == 0).any()       # hand-off on the same date
    assert (gap > 14).any()       # a gap between two enrollments

    # Leavers and mid-year entrants in the prior year.
    last_day = prior["exit_date"].max()
    final_exit = prior.groupby("student_id")["exit_date"].max()
    assert (final_exit < last_day).mean() > 0.02
    assert (prior.groupby("student_id")["entry_date"].min() > "2025-09-15").any()

    # Current-year spans are open at the as-of date unless the student left.
    assert current["exit_date"].isna().mean() > 0.9
    assert (current["exit_date"].dropna() <= AS_OF).all()

    # Grades advance: a returning student is one grade up (a few repeat);
    # nobody in grade 12 last year is enrolled this year.
    g_prior = prior.groupby("student_id")["grade"].last().astype(str)
    g_now = current.groupby("student_id")["grade"].first().astype(str)
    both = g_prior.index.intersection(g_now.index)
    order = {g: i for i, g in enumerate(["K"] + [str(k) for k in range(1, 13)])}
    step = g_now[both].map(order) - g_prior[both].map(order)
    assert (step == 1).mean() > 0.95
    assert set(step.unique()) <= {0, 1}
    assert not (g_prior[both] == "12").any()
    newcomers = g_now.index.difference(g_prior.index)
    assert (g_now[newcomers] == "K").mean() > 0.4


# ----------------------------------------------------------------------------------
# Absence: level, grade and group patterns, persistence, seasonality
# ----------------------------------------------------------------------------------


def test_prior_year_chronic_share(prior_chronic):
    share = prior_chronic["chronic"].mean()
    assert 0.18 <= share <= 0.32
    rate = prior_chronic["absent"] / prior_chronic["enrolled"]
    assert rate.mean() > rate.median()  # right-skewed
    assert (rate >= 0.20).mean() > 0.03  # a tail of severe absence


def test_grade_pattern(prior_chronic):
    by_grade = prior_chronic.groupby("grade")["chronic"].mean()
    assert by_grade["K"] > by_grade["4"]
    assert by_grade["12"] > by_grade["4"]
    assert by_grade[["9", "10", "11", "12"]].mean() > by_grade[["6", "7"]].mean()


def test_group_pattern(prior_chronic):
    by_race = prior_chronic.groupby("race_ethnicity")["chronic"].mean()
    assert by_race["Asian"] < by_race["Black"]
    assert by_race["Asian"] < by_race["Hispanic"]
    assert by_race["White"] < by_race["Black"]
    by_homeless = prior_chronic.groupby("homeless")["chronic"].mean()
    assert by_homeless[True] > by_homeless[False] + 0.05
    by_swd = prior_chronic.groupby("disability")["chronic"].mean()
    assert by_swd[True] > by_swd[False]
    by_econ = prior_chronic.groupby("economically_disadvantaged")["chronic"].mean()
    assert by_econ[True] > by_econ[False]


def test_absence_persists_across_years(clean, prior_chronic):
    current = _chronic(clean[0], "2026-08-01", AS_OF)
    both = prior_chronic[["chronic"]].join(
        current[["chronic"]].rename(columns={"chronic": "chronic_now"}), how="inner")
    again = both.groupby("chronic")["chronic_now"].mean()
    assert again[True] > 2 * again[False]


def test_seasonality(clean):
    tables, _ = clean
    days = _enrolled_days(tables, PRIOR_START, PRIOR_END)
    absences = _whole_day_absences(tables["attendance"], PRIOR_START, PRIOR_END)
    month = lambda frame: frame["date"].str[5:7]  # noqa: E731
    rate = absences.groupby(month(absences)).size() / days.groupby(month(days)).size()
    assert rate[["12", "01", "02"]].mean() > 1.2 * rate["09"]


def test_attendance_rows(clean):
    att = clean[0]["attendance"]

    # Mostly excused and unexcused; a few suspensions of both kinds.
    share = att["category"].value_counts(normalize=True)
    assert share["excused"] + share["unexcused"] > 0.85
    assert 0 < share["suspension"] < 0.03
    assert 0 < share["in_school_suspension"] < 0.03

    # About 8% of in-person absences are partial days; one school reports fractions.
    in_person = att[att["modality"].isna() & att["category"].isin(ABSENT)]
    partial = in_person["minutes_missed"].notna() | in_person["fraction_missed"].notna()
    assert 0.05 < partial.mean() < 0.11
    assert in_person["fraction_missed"].notna().sum() > 0
    assert not (att["minutes_missed"].notna() & att["fraction_missed"].notna()).any()

    # Distance learning: affirmative rows, present or absent, in three modalities.
    remote = att[att["modality"].notna()]
    assert set(remote["modality"]) == {"remote_live", "remote_async",
                                       "independent_study"}
    assert (remote["category"] == "present").any()
    assert remote["category"].isin(ABSENT).any()
    assert (att.loc[att["modality"].isna(), "category"] != "present").all()


def test_clean_attendance_has_no_quality_problems(clean):
    counts = _quality_counts(clean[0])
    assert counts == {kind: 0 for kind in INJECTED_ERRORS}


# ----------------------------------------------------------------------------------
# Interventions and the planted disparity
# ----------------------------------------------------------------------------------


def test_interventions_have_both_kinds(clean):
    log = clean[0]["interventions"]
    assert set(log["kind"]) == {"supportive", "punitive"}
    assert set(log["intervention_type"]) == set(INTERVENTION_TYPES)
    assert (log["intervention_type"].map(INTERVENTION_TYPES) == log["kind"]).all()
    assert (log["date"] <= AS_OF).all()

    # Every action is dated inside an enrollment span at the school it names.
    spans = clean[0]["enrollments"].fillna({"exit_date": AS_OF})
    rows = log.reset_index()
    inside = rows.merge(spans, on=["student_id", "school_id"])
    inside = inside[(inside["date"] >= inside["entry_date"])
                    & (inside["date"] <= inside["exit_date"])]
    assert rows["index"].isin(inside["index"]).all()


def _per_student_year(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Unexcused whole days and punitive actions per student and school year."""
    att, log = tables["attendance"], tables["interventions"]
    year = lambda frame: np.where(  # noqa: E731
        frame["date"] > PRIOR_END, "cur", "prior")
    unexc = _whole_day_absences(att, PRIOR_START, AS_OF)
    unexc = unexc[unexc["category"] == "unexcused"]
    u = unexc.groupby([year(unexc), unexc["student_id"]]).size().rename("unexcused")
    pun = log[log["kind"] == "punitive"]
    p = pun.groupby([year(pun), pun["student_id"]]).size().rename("punitive")
    sup = log[log["kind"] == "supportive"]
    s = sup.groupby([year(sup), sup["student_id"]]).size().rename("supportive")
    enr = tables["enrollments"]
    keys = pd.MultiIndex.from_arrays([year(enr.rename(columns={"entry_date": "date"})),
                                      enr["student_id"]]).unique()
    out = pd.DataFrame(index=keys).join([u, p, s]).fillna(0)
    out.index.names = ["year", "student_id"]
    out = out.reset_index().merge(tables["students"], on="student_id")
    out["stratum"] = out["year"] + "-" + out["unexcused"].clip(upper=25).astype(
        int).astype(str)
    return out


def _standardised_ratio(frame: pd.DataFrame, group: pd.Series,
                        reference: pd.Series, outcome: str) -> float:
    """Observed over expected share with any ``outcome``, at equal unexcused days."""
    hit = frame[outcome] > 0
    rate = hit[reference].groupby(frame.loc[reference, "stratum"]).mean()
    expected = frame.loc[group, "stratum"].map(rate).fillna(0).sum()
    return hit[group].sum() / expected


def test_punitive_actions_follow_unexcused_absence(clean):
    frame = _per_student_year(clean[0])
    any_punitive = frame["punitive"] > 0
    assert not any_punitive[frame["unexcused"] < 3].any()
    high = frame["unexcused"] >= 10
    low = frame["unexcused"].between(3, 5)
    assert any_punitive[high].mean() > 2 * any_punitive[low].mean()


def test_planted_disparity_and_null(clean):
    frame = _per_student_year(clean[0])
    black = frame["race_ethnicity"] == "Black"

    ratio = _standardised_ratio(frame, black, ~black, "punitive")
    assert 1.35 < ratio < 2.4

    # No effect for any other group, among non-Black students (a known null).
    hispanic = frame["race_ethnicity"] == "Hispanic"
    ratio = _standardised_ratio(frame, hispanic & ~black, ~hispanic & ~black,
                                "punitive")
    assert 0.7 < ratio < 1.35
    homeless = frame["homeless"]
    ratio = _standardised_ratio(frame, homeless & ~black, ~homeless & ~black,
                                "punitive")
    assert 0.5 < ratio < 1.6

    # Supportive actions carry no planted effect for Black students.
    ratio = _standardised_ratio(frame, black, ~black, "supportive")
    assert 0.75 < ratio < 1.3


# ----------------------------------------------------------------------------------
# Injected errors
# ----------------------------------------------------------------------------------


def _quality_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Count each kind of bad attendance row, the way a quality check would."""
    att = tables["attendance"].copy()
    parsed = pd.to_datetime(att["date"], format="%Y-%m-%d", errors="coerce")
    counts = {"unparseable_date": int(parsed.isna().sum())}
    att = att[parsed.notna()]
    counts["unknown_category"] = int((~att["category"].isin(
        ATTENDANCE_CATEGORIES)).sum())
    counts["duplicate_mark"] = int(att.duplicated(
        ["student_id", "school_id", "date"]).sum())

    cal = tables["calendar"][["school_id", "date", "instructional"]]
    on_day = att.merge(cal, on=["school_id", "date"], how="left")
    counts["absence_on_non_instructional_day"] = int(
        (on_day["instructional"] == False).sum())  # noqa: E712

    spans = tables["enrollments"].copy()
    spans["exit_date"] = spans["exit_date"].fillna(AS_OF)
    rows = att.reset_index()[["index", "student_id", "school_id", "date"]]
    within = rows.merge(spans, on=["student_id", "school_id"])
    within = within[(within["date"] >= within["entry_date"])
                    & (within["date"] <= within["exit_date"])]
    counts["absence_outside_enrollment"] = int(
        (~rows["index"].isin(within["index"])).sum())
    return {kind: counts[kind] for kind in INJECTED_ERRORS}


def test_injected_errors_are_counted(dirty):
    tables, meta = dirty
    assert meta["injected_errors"] == INJECTED_ERRORS
    assert _quality_counts(tables) == meta["injected_errors"]
    assert sum(INJECTED_ERRORS.values()) >= 20

    # The contract itself rejects the unknown codes and bad dates, and only them;
    # the other kinds break rules that need the calendar and enrollments.
    att = tables["attendance"]
    parsed = pd.to_datetime(att["date"], format="%Y-%m-%d", errors="coerce")
    schema_bad = ~att["category"].isin(ATTENDANCE_CATEGORIES) | parsed.isna()
    assert schema_bad.sum() == (INJECTED_ERRORS["unknown_category"]
                                + INJECTED_ERRORS["unparseable_date"])
    bad_rows = att[schema_bad]
    for i in range(len(bad_rows)):
        with pytest.raises((pa_errors.SchemaError, pa_errors.SchemaErrors)):
            SCHEMAS["attendance"].validate(bad_rows.iloc[[i]])
    SCHEMAS["attendance"].validate(att[~schema_bad], lazy=True)


def test_clean_run_records_no_errors(clean):
    _, meta = clean
    assert meta["injected_errors"] == {kind: 0 for kind in INJECTED_ERRORS}


# ----------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------


def test_command_line(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="analysis"):
        status = main(["--out", str(tmp_path), "--students", "300", "--seed", "5",
                       "--as-of", "2026-10-15", "--no-errors"])
    assert status == 0
    meta = json.loads((tmp_path / "sample_meta.json").read_text())
    assert meta["seed"] == 5 and meta["as_of"] == "2026-10-15"
    assert meta["injected_errors"] == {kind: 0 for kind in INJECTED_ERRORS}
    att = pd.read_parquet(tmp_path / "attendance.parquet")
    assert att["date"].max() <= "2026-10-15"
    assert "ST0" not in caplog.text  # no student ids in the log


def test_as_of_before_the_year_starts_is_refused(tmp_path):
    with pytest.raises(ValueError, match="before the first school day"):
        generate_sample_district(tmp_path, n_students=300, as_of="2026-08-10")
