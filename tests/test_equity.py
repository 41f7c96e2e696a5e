"""Tests of the equity analyses (``analysis.equity``).

Every statistic is checked against an independent calculation written here: a hand
formula (with its source) or another library's implementation, with the tolerance
stated. The action audit must find the disparity the sample generator plants
(``analysis.sample.PLANTED_PUNITIVE_RATIO``) and must not flag the groups it leaves
alone beyond the stated error rate; small groups, zero cells and one-group schools
must give clear output, never an infinity or a crash.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy.special import expit
from statsmodels.stats.contingency_tables import StratifiedTable, Table2x2
from statsmodels.stats.multitest import multipletests

from analysis import equity, paths
from analysis.sample import PLANTED_PUNITIVE_RATIO, generate_sample_district
from analysis.schema import conform_aggregate

Z95 = 1.959963984540054  # standard normal 97.5% quantile
SETTINGS = equity.EquitySettings()
AS_OF = pd.Timestamp("2026-11-30")


def _aggregate(rows: list[tuple], **extra) -> pd.DataFrame:
    """Aggregate rows from (level, district, school, type, value, students, chronic)."""
    frame = pd.DataFrame(rows, columns=["level", "district_id", "school_id",
                                        "group_type", "group_value", "students",
                                        "chronically_absent"])
    frame["source"], frame["definition"] = "test", "attendance-works"
    frame["school_year"], frame["as_of_date"] = "2026-27", AS_OF
    frame["grade"] = "All"
    frame["district_name"] = "District " + frame["district_id"].astype(str)
    frame["school_name"] = frame["school_id"].map(lambda s: s and f"School {s}")
    frame["suppressed_at_source"] = False
    frame["approximate"] = extra.get("approximate", False)
    frame["chronic_absence_rate"] = frame["chronically_absent"] / frame["students"]
    return conform_aggregate(frame)


def _row(ratios: pd.DataFrame, unit: str, value: str,
         level: str = "school") -> pd.Series:
    hit = ratios[(ratios["unit_id"] == unit) & (ratios["group_value"] == value)
                 & (ratios["level"] == level)]
    assert len(hit) == 1, (unit, value, level, len(hit))
    return hit.iloc[0]


# ------------------------------------------------------------------------ risk ratios

class TestRiskRatio:
    def test_katz_interval_matches_hand_formula_and_statsmodels(self):
        # Katz et al. (1978), Biometrics 34:469: se(log RR) = sqrt(1/a - 1/n1 + 1/c
        # - 1/n2); statsmodels' Table2x2 uses the same log-normal interval.
        a, n1, c, n2 = 30, 120, 45, 400
        row = equity.risk_ratio([a], [n1], [c], [n2]).iloc[0]
        rr = (a / n1) / (c / n2)
        se = math.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n2)
        assert row.risk_ratio == pytest.approx(rr, rel=1e-12)
        assert row.ci_low == pytest.approx(rr * math.exp(-Z95 * se), rel=1e-12)
        assert row.ci_upp == pytest.approx(rr * math.exp(Z95 * se), rel=1e-12)
        assert row.pvalue == pytest.approx(math.erfc(abs(math.log(rr)) / se
                                                     / math.sqrt(2)), rel=1e-9)
        table = Table2x2(np.array([[a, n1 - a], [c, n2 - c]]))
        low, upp = table.riskratio_confint(method="normal")
        assert (row.risk_ratio, row.ci_low, row.ci_upp) == pytest.approx(
            (table.riskratio, low, upp), rel=1e-9)
        assert row.ratio_note == ""

    def test_zero_cell_gets_the_stated_haldane_anscombe_correction(self):
        # 0.5 added to each of the four cells: a = 0.5, n1 = 41, c = 12.5, n2 = 201.
        row = equity.risk_ratio([0], [40], [12], [200]).iloc[0]
        assert row.risk_ratio == pytest.approx((0.5 / 41) / (12.5 / 201), rel=1e-12)
        se = math.sqrt(1 / 0.5 - 1 / 41 + 1 / 12.5 - 1 / 201)
        assert row.ci_upp == pytest.approx(row.risk_ratio * math.exp(Z95 * se),
                                           rel=1e-12)
        assert "Haldane-Anscombe" in row.ratio_note
        assert np.isfinite([row.risk_ratio, row.ci_low, row.ci_upp]).all()

    @pytest.mark.parametrize("counts, reason", [
        ((0, 40, 0, 200), "no students with the outcome in either group"),
        ((3, 0, 12, 200), "no students in the group"),
        ((3, 40, 0, 0), "no students to compare with"),
        ((np.nan, 40, 12, 200), "suppressed at source"),
    ])
    def test_not_computable_says_why_and_is_never_infinite(self, counts, reason):
        row = equity.risk_ratio(*[[v] for v in counts]).iloc[0]
        assert np.isnan(row.risk_ratio) and np.isnan(row.ci_upp)
        assert reason in row.ratio_note

    def test_without_correction_a_zero_cell_is_not_computable(self):
        row = equity.risk_ratio([0], [40], [12], [200], correction=0).iloc[0]
        assert np.isnan(row.risk_ratio)
        assert row.ratio_note == "not computable: a count is zero"


class TestMultipleComparisons:
    def test_holm_matches_statsmodels_with_ties_and_missing_values(self):
        rng = np.random.default_rng(3)
        pvalues = np.r_[rng.uniform(0, 0.2, 12), 0.01, 0.01, np.nan]
        ours = equity.adjust_pvalues(pvalues, "holm")
        theirs = multipletests(pvalues[:-1], method="holm")[1]
        np.testing.assert_allclose(ours[:-1], theirs, rtol=1e-12)
        assert np.isnan(ours[-1])

    def test_other_methods_go_through_statsmodels(self):
        pvalues = np.array([0.001, 0.02, 0.03, 0.2])
        np.testing.assert_allclose(equity.adjust_pvalues(pvalues, "fdr_bh"),
                                   multipletests(pvalues, method="fdr_bh")[1])


class TestMantelHaenszel:
    # Three strata (a, n1, c, n0): the group's and the comparison's events and sizes.
    STRATA = np.array([[4, 50, 10, 300], [12, 80, 20, 200], [9, 30, 15, 60]], float)

    def test_pooled_ratio_matches_statsmodels_and_greenland_robins_by_hand(self):
        a, n1, c, n0 = self.STRATA.T
        result = equity.mantel_haenszel_risk_ratio(a, n1, c, n0)
        tables = [np.array([[ai, n1i - ai], [ci, n0i - ci]])
                  for ai, n1i, ci, n0i in self.STRATA]
        assert result["ratio"] == pytest.approx(
            StratifiedTable(tables).riskratio_pooled, rel=1e-12)
        # Greenland & Robins (1985), Biometrics 41:55, written out stratum by stratum.
        r = s = v = 0.0
        for ai, n1i, ci, n0i in self.STRATA:
            total = n1i + n0i
            r += ai * n0i / total
            s += ci * n1i / total
            v += (n1i * n0i * (ai + ci) - ai * ci * total) / total ** 2
        se = math.sqrt(v / (r * s))
        assert result["se_log"] == pytest.approx(se, rel=1e-12)
        assert result["ci_low"] == pytest.approx(r / s * math.exp(-Z95 * se), rel=1e-12)

    def test_one_stratum_reduces_to_katz(self):
        # An identity: with one stratum the Greenland-Robins variance is Katz's.
        result = equity.mantel_haenszel_risk_ratio([30], [120], [45], [400])
        katz = equity.risk_ratio([30], [120], [45], [400]).iloc[0]
        assert (result["ratio"], result["ci_low"], result["ci_upp"]) == pytest.approx(
            (katz.risk_ratio, katz.ci_low, katz.ci_upp), rel=1e-12)

    def test_strata_with_one_group_only_add_nothing(self):
        with_empty = equity.mantel_haenszel_risk_ratio(
            np.r_[self.STRATA[:, 0], 5], np.r_[self.STRATA[:, 1], 20],
            np.r_[self.STRATA[:, 2], 0], np.r_[self.STRATA[:, 3], 0])
        without = equity.mantel_haenszel_risk_ratio(*self.STRATA.T)
        assert with_empty["ratio"] == pytest.approx(without["ratio"], rel=1e-12)

    def test_no_events_in_a_group_is_not_computable(self):
        result = equity.mantel_haenszel_risk_ratio([0, 0], [40, 30], [5, 9], [100, 90])
        assert all(np.isnan(result[k]) for k in ("ratio", "ci_low", "pvalue"))


# ----------------------------------------------------------------- disproportionality

def _district_with_two_schools() -> pd.DataFrame:
    """School S1: Black 60 (24 chronic), Hispanic 100 (20), White 40 (4), of 200 (48).
    School S2: Black 20 (4), Hispanic 150 (30), White 30 (3), of 200 (37).
    District D = S1 + S2 (no student at both)."""
    rows = [
        ("school", "D", "S1", "all", "All students", 200, 48),
        ("school", "D", "S1", "race_ethnicity", "Black", 60, 24),
        ("school", "D", "S1", "race_ethnicity", "Hispanic", 100, 20),
        ("school", "D", "S1", "race_ethnicity", "White", 40, 4),
        ("school", "D", "S2", "all", "All students", 200, 37),
        ("school", "D", "S2", "race_ethnicity", "Black", 20, 4),
        ("school", "D", "S2", "race_ethnicity", "Hispanic", 150, 30),
        ("school", "D", "S2", "race_ethnicity", "White", 30, 3),
        ("district", "D", None, "all", "All students", 400, 85),
        ("district", "D", None, "race_ethnicity", "Black", 80, 28),
        ("district", "D", None, "race_ethnicity", "Hispanic", 250, 50),
        ("district", "D", None, "race_ethnicity", "White", 70, 7),
    ]
    return _aggregate(rows)


class TestDisproportionality:
    def test_risk_ratio_composition_and_gap_by_hand(self):
        ratios = equity.disproportionality(_district_with_two_schools(), SETTINGS)
        black = _row(ratios, "S1", "Black")
        assert black.comparison_students == 140 and black.comparison_chronic == 24
        rr = (24 / 60) / (24 / 140)
        assert black.ratio_kind == "risk ratio"
        assert black.ratio == pytest.approx(rr, rel=1e-12)
        se = math.sqrt(1 / 24 - 1 / 60 + 1 / 24 - 1 / 140)
        assert black.ratio_low == pytest.approx(rr * math.exp(-Z95 * se), rel=1e-12)
        # Composition: share of the chronically absent against share of students.
        assert black.composition_chronic == pytest.approx(24 / 48)
        assert black.composition_students == pytest.approx(60 / 200)
        assert black.gap_pp == pytest.approx(100 * (24 / 60 - 24 / 140))
        assert black.shown and black.flagged  # 2.33, p far below 0.05 / 3

    def test_weighted_risk_ratio_follows_westat_by_hand(self):
        # Westat (Bollmer et al. 2014, p. 32): WRR_i = R_i * sum_{j!=i} w_j /
        # sum_{j!=i} w_j R_j, with R the school's risks, w the district's shares.
        ratios = equity.disproportionality(_district_with_two_schools(), SETTINGS)
        risks = {"Black": 24 / 60, "Hispanic": 20 / 100, "White": 4 / 40}
        weights = {"Black": 80 / 400, "Hispanic": 250 / 400, "White": 70 / 400}
        for group in risks:
            others = [g for g in risks if g != group]
            expected = risks[group] * sum(weights[g] for g in others) / sum(
                weights[g] * risks[g] for g in others)
            assert _row(ratios, "S1", group).weighted_risk_ratio == pytest.approx(
                expected, rel=1e-12), group

    def test_district_ratio_standardized_over_schools_by_hand(self):
        ratios = equity.disproportionality(_district_with_two_schools(), SETTINGS)
        black = _row(ratios, "D", "Black", level="district")
        # Weights: each school's share of the district's students (1/2 each here).
        group = 0.5 * 24 / 60 + 0.5 * 4 / 20
        others = 0.5 * 24 / 140 + 0.5 * 33 / 180
        assert black.standardized_risk_ratio == pytest.approx(group / others, rel=1e-12)
        # The district is its own top level: no alternate or weighted ratio.
        assert np.isnan(black.weighted_risk_ratio)
        assert black.ratio == pytest.approx((28 / 80) / (57 / 320), rel=1e-12)

    def test_alternate_ratio_when_the_comparison_group_is_too_small(self):
        rows = [
            ("school", "D", "S1", "all", "All students", 45, 20),
            ("school", "D", "S1", "race_ethnicity", "Hispanic", 40, 18),
            ("school", "D", "S1", "race_ethnicity", "White", 5, 2),
            ("district", "D", None, "all", "All students", 1000, 200),
            ("district", "D", None, "race_ethnicity", "Hispanic", 400, 110),
            ("district", "D", None, "race_ethnicity", "White", 600, 90),
        ]
        ratios = equity.disproportionality(_aggregate(rows), SETTINGS)
        hispanic = _row(ratios, "S1", "Hispanic")
        # 5 other students, 2 chronic: both below the rules. Compare with the
        # district's non-Hispanic students instead (34 CFR 300.647 alternate ratio).
        assert hispanic.ratio_kind == "alternate risk ratio"
        assert hispanic.ratio == pytest.approx((18 / 40) / (90 / 600), rel=1e-12)
        assert hispanic.gap_pp == pytest.approx(100 * (18 / 40 - 90 / 600))
        assert "level above" in hispanic.reason
        white = _row(ratios, "S1", "White")
        assert not white.shown and "fewer than 10" in white.reason

    def test_small_groups_zero_cells_and_one_group_schools_stay_clear(self):
        rows = [
            ("school", "D", "S1", "all", "All students", 200, 30),
            ("school", "D", "S1", "english_learner", "English learner", 29, 12),
            ("school", "D", "S1", "homeless", "Homeless", 60, 0),
            ("school", "D", "S1", "disability", "Student with disability", 50, 9),
            # S2: every student is Hispanic, so there is nobody to compare with here.
            ("school", "D", "S2", "all", "All students", 80, 20),
            ("school", "D", "S2", "race_ethnicity", "Hispanic", 80, 20),
            ("district", "D", None, "all", "All students", 280, 50),
            ("district", "D", None, "race_ethnicity", "Hispanic", 80, 20),
        ]
        ratios = equity.disproportionality(_aggregate(rows), SETTINGS)
        numeric = ratios[["risk_ratio", "ci_upp", "alternate_risk_ratio", "ratio",
                          "weighted_risk_ratio"]].to_numpy(dtype=float)
        assert not np.isinf(numeric).any()
        reasons = {v: _row(ratios, "S1", v).reason
                   for v in ("English learner", "Homeless", "Student with disability")}
        assert reasons["English learner"] == "fewer than 30 students in the group"
        assert reasons["Homeless"] == ("fewer than 10 chronically absent students in "
                                       "the group")
        assert "fewer than 10" in reasons["Student with disability"]
        assert "Haldane" in _row(ratios, "S1", "Homeless").ratio_note
        # S2 has nobody to compare with: the district's other students are used.
        one_group = _row(ratios, "S2", "Hispanic")
        assert one_group.ratio_note == "not computable: no students to compare with"
        assert one_group.ratio_kind == "alternate risk ratio"
        assert one_group.ratio == pytest.approx((20 / 80) / (30 / 200), rel=1e-12)

        # A district of one school where everyone is Hispanic: nothing to compare.
        alone = equity.disproportionality(_aggregate([
            ("school", "E", "S9", "all", "All students", 80, 20),
            ("school", "E", "S9", "race_ethnicity", "Hispanic", 80, 20),
            ("district", "E", None, "all", "All students", 80, 20),
            ("district", "E", None, "race_ethnicity", "Hispanic", 80, 20)]), SETTINGS)
        for level, unit in (("school", "S9"), ("district", "E")):
            row = _row(alone, unit, "Hispanic", level=level)
            assert not row.shown and not row.flagged and np.isnan(row.ratio)
            assert row.reason == ("comparison group too small here and in the level "
                                  "above")

    def test_a_flag_needs_the_threshold_and_the_corrected_test(self):
        rows = [
            ("school", "D", "S1", "all", "All students", 2000, 424),
            # 1.34: clear of chance, under the 1.5 threshold.
            ("school", "D", "S1", "english_learner", "English learner", 800, 200),
            # 1.59, but on 30 students: the interval reaches below 1.
            ("school", "D", "S1", "foster", "Foster youth", 30, 10),
            # 1.98 and clear: flagged.
            ("school", "D", "S1", "homeless", "Homeless", 300, 110),
        ]
        ratios = equity.disproportionality(_aggregate(rows), SETTINGS)
        el, foster, homeless = (_row(ratios, "S1", v) for v in
                                ("English learner", "Foster youth", "Homeless"))
        assert el.pvalue_adjusted < 0.05 and el.ratio < 1.5 and not el.flagged
        assert foster.ratio >= 1.5 and foster.pvalue_adjusted > 0.05
        assert not foster.flagged
        assert homeless.flagged
        # Holm across the three shown groups: the smallest p-value is tripled.
        smallest = ratios[ratios["unit_id"] == "S1"].sort_values("ratio_pvalue").iloc[0]
        assert smallest.pvalue_adjusted == pytest.approx(
            min(1, 3 * smallest.ratio_pvalue), rel=1e-12)

    def test_approximate_counts_give_labelled_gaps_and_no_ratio(self):
        rows = [("school", "D", "S1", "all", "All students", 400, 80),
                ("school", "D", "S1", "race_ethnicity", "Hispanic", 200, 60),
                ("school", "D", "S2", "all", "All students", 300, 30),
                ("school", "D", "S2", "race_ethnicity", "Hispanic", 100, 15)]
        ratios = equity.disproportionality(_aggregate(rows, approximate=True), SETTINGS)
        hispanic = _row(ratios, "S1", "Hispanic")
        assert np.isnan(hispanic.ratio) and hispanic.shown and not hispanic.flagged
        assert hispanic.gap_pp == pytest.approx(100 * (60 / 200 - 20 / 200))
        assert "approximate" in hispanic.reason
        # The district, summed from its schools, is added and is approximate too.
        district = _row(ratios, "D", "Hispanic", level="district")
        assert district.students == 300 and district.chronically_absent == 75
        assert district.approximate and np.isnan(district.ratio)

    def test_a_level_is_added_above_district_only_files(self):
        rows = [("district", "1", None, "all", "All students", 1000, 300),
                ("district", "1", None, "homeless", "Homeless", 100, 50),
                ("district", "2", None, "all", "All students", 3000, 600),
                ("district", "2", None, "homeless", "Homeless", 100, 40)]
        ratios = equity.disproportionality(_aggregate(rows), SETTINGS)
        city = _row(ratios, "all", "Homeless", level="state")
        assert (city.students, city.chronically_absent) == (200, 90)
        assert city.ratio == pytest.approx((90 / 200) / (810 / 3800), rel=1e-12)
        one = _row(ratios, "1", "Homeless", level="district")
        assert one.alternate_risk_ratio == pytest.approx((50 / 100) / (810 / 3800),
                                                         rel=1e-12)


class TestPublishRatios:
    def test_public_ratios_pass_through_the_privacy_gate(self, monkeypatch):
        calls = []
        real_publish = equity.publish

        def spy(frame, *args, **kwargs):
            calls.append(len(frame))
            return real_publish(frame, *args, **kwargs)

        monkeypatch.setattr(equity, "publish", spy)
        rows = [("school", "D", "S1", "all", "All students", 1200, 250),
                # 10 of 1,100 chronic: under 1%, coded "<=1%" for 300+ students.
                ("school", "D", "S1", "gender", "Female", 1100, 10),
                ("school", "D", "S1", "gender", "Male", 100, 240),
                ("school", "D", "S1", "homeless", "Homeless", 300, 120)]
        aggregate = _aggregate(rows)
        ratios = equity.disproportionality(aggregate, SETTINGS)
        public = equity.publish_ratios(ratios, aggregate, 10)
        assert calls, "publish_ratios must call analysis.privacy.publish"
        female = public[public["group_value"] == "Female"].iloc[0]
        assert not female.public and np.isnan(female.ratio)
        assert "near 0%" in female.reason
        homeless = public[public["group_value"] == "Homeless"].iloc[0]
        assert homeless.public and homeless.ratio == pytest.approx(
            (120 / 300) / (130 / 900))
        assert not {"students", "chronically_absent", "comparison_students"} & set(
            public.columns)


# ------------------------------------------------------------- student-level models

def _synthetic_students(rng: np.random.Generator, n: int = 4000,
                        ratio: float = 1.8) -> pd.DataFrame:
    """An audit frame with a known truth: punitive actions are ``ratio`` times as
    likely for Black students at every absence rate; nothing else depends on group.
    """
    race = rng.choice(["Black", "Hispanic", "White", "Asian"], n, p=[.25, .4, .2, .15])
    absence = rng.beta(1.3, 12, n)
    base = np.clip(0.01 + 0.8 * absence, 0, 0.5)
    punitive = rng.random(n) < base * np.where(race == "Black", ratio, 1.0)
    chronic = absence >= 0.10
    tiered = chronic | (rng.random(n) < 0.1)
    frame = pd.DataFrame({
        "student_id": [f"x{i}" for i in range(n)],
        "school": rng.choice([f"S{k}" for k in range(12)], n),
        "grade": rng.choice(["1", "2", "3", "4", "5"], n),
        "absence_rate": absence,
        "chronic": chronic, "tiered": tiered,
        "prior_absence_rate": np.where(rng.random(n) < 0.85,
                                       np.clip(absence + rng.normal(0, .03, n), 0, 1),
                                       np.nan),
        "race_ethnicity": race,
        "gender": rng.choice(["Female", "Male"], n),
        "english_learner": rng.random(n) < 0.15,
        "disability": rng.random(n) < 0.15,
        "economically_disadvantaged": rng.random(n) < 0.6,
        "homeless": rng.random(n) < 0.06,
        "foster": rng.random(n) < 0.01,
        "punitive": punitive,
        "supportive": rng.random(n) < np.where(tiered, 0.4, 0.05),
    })
    frame["stratum"] = equity.absence_stratum(frame["absence_rate"],
                                              SETTINGS.absence_strata)
    frame["band"] = pd.cut(frame["absence_rate"], [-1, .05, .1, .2, 2], right=False,
                           labels=["satisfactory", "at_risk", "moderate_chronic",
                                   "severe_chronic"]).astype(str)
    return frame


class TestAdjustedGaps:
    def test_average_marginal_effect_matches_get_margeff_and_a_finite_difference(self):
        rng = np.random.default_rng(7)
        n = 3000
        data = pd.DataFrame({"g": (rng.random(n) < 0.3).astype(float),
                             "prior": rng.beta(1.5, 12, n),
                             "school": rng.choice(list("ABCDEFGHIJKL"), n)})
        eta = -2 + 0.6 * data["g"] + 8 * data["prior"]
        data["y"] = (rng.random(n) < expit(eta)).astype(float)
        exog = pd.concat([pd.Series(1.0, index=data.index, name="const"),
                          data[["g", "prior"]],
                          pd.get_dummies(data["school"], drop_first=True, dtype=float)],
                         axis=1)
        fit = sm.Logit(data["y"], exog).fit(disp=0, cov_type="cluster",
                                            cov_kwds={"groups": data["school"]})
        ame, se = equity.average_marginal_effect(fit, exog, "g")

        # statsmodels' own discrete-change margins (dummy=True).
        margins = fit.get_margeff(at="overall", dummy=True).summary_frame().loc["g"]
        assert ame == pytest.approx(margins["dy/dx"], rel=1e-8)
        assert se == pytest.approx(margins["Std. Err."], rel=1e-6)
        # The cluster form (scores summed by school) agrees where both are exact.
        _, se_clustered = equity.average_marginal_effect(fit, exog, "g",
                                                         data["school"].to_numpy())
        assert se_clustered == pytest.approx(margins["Std. Err."], rel=1e-6)
        # A finite difference by hand: mean predicted probability at g=1 minus g=0.
        x1, x0 = exog.copy(), exog.copy()
        x1["g"], x0["g"] = 1.0, 0.0
        by_hand = np.mean(expit(x1 @ fit.params) - expit(x0 @ fit.params))
        assert ame == pytest.approx(by_hand, rel=1e-12)

    def test_collinear_school_and_grade_controls_are_left_out(self):
        # Elementary schools teach K only here, so school=E equals grade=K.
        exog = pd.DataFrame({
            "const": 1.0, "g": [0, 1, 0, 1, 0, 1, 1, 0], "prior": np.linspace(0, .3, 8),
            "grade=K": [1, 1, 1, 0, 0, 0, 0, 0], "grade=6": [0, 0, 0, 1, 1, 0, 0, 0],
            "school=E": [1, 1, 1, 0, 0, 0, 0, 0], "school=M2": [0, 0, 0, 0, 0, 1, 1, 0]},
            dtype=float)
        kept = equity._independent_columns(exog)
        assert list(kept.columns) == ["const", "g", "prior", "grade=K", "grade=6",
                                      "school=M2"]
        assert np.linalg.matrix_rank(kept.to_numpy()) == kept.shape[1]

    def test_adjusted_gap_matches_an_independent_formula_fit(self):
        frame = _synthetic_students(np.random.default_rng(11), n=5000)
        gaps = equity.adjusted_gaps(frame, SETTINGS)
        row = gaps[gaps["group_value"] == "Economically disadvantaged"].iloc[0]

        data = frame.assign(y=frame["chronic"].astype(float),
                            g=frame["economically_disadvantaged"].astype(float),
                            prior=frame["prior_absence_rate"].fillna(0.0),
                            no_prior=frame["prior_absence_rate"].isna().astype(float))
        fit = smf.logit("y ~ g + prior + no_prior + C(grade) + C(school)", data).fit(
            disp=0, cov_type="cluster", cov_kwds={"groups": data["school"]}, use_t=True)
        margins = fit.get_margeff(at="overall", dummy=True).summary_frame().loc["g"]
        assert row["odds_ratio"] == pytest.approx(math.exp(fit.params["g"]), rel=1e-6)
        assert row["ame_pp"] == pytest.approx(100 * margins["dy/dx"], rel=1e-5)
        raw = 100 * (data.loc[data.g == 1, "y"].mean()
                     - data.loc[data.g == 0, "y"].mean())
        assert row["raw_gap_pp"] == pytest.approx(raw, rel=1e-12)
        if abs(raw) >= 1:
            assert row["share_remaining"] == pytest.approx(row["ame_pp"] / raw,
                                                           rel=1e-12)
        assert row["errors"].startswith("cluster-robust by school (12 schools")
        # Cluster-robust inference with t(G - 1) = t(11) critical values.
        t11 = 2.200985160091639  # scipy.stats.t.ppf(0.975, 11)
        assert row["or_upp"] == pytest.approx(
            math.exp(fit.params["g"] + t11 * fit.bse["g"]), rel=1e-6)

    def test_small_groups_are_not_modelled(self):
        frame = _synthetic_students(np.random.default_rng(5), n=1500)
        gaps = equity.adjusted_gaps(frame, SETTINGS)
        foster = gaps[gaps["group_value"] == "Foster youth"].iloc[0]
        assert not foster["shown"] and "fewer than" in foster["reason"]


# ------------------------------------------------------------------- calibration

REPLICATIONS = 60


@pytest.fixture(scope="module")
def calibration_runs():
    """Synthetic districts with a known truth: 1.8 for Black students, 1 for the rest.

    Seeds are fixed, so the counts in the tests are deterministic; the bounds are
    what a correct procedure gives with high probability (binomial tails near 1%).
    """
    rng = np.random.default_rng(2026)
    runs = []
    for _ in range(REPLICATIONS):
        frame = _synthetic_students(rng, n=3000)
        runs.append((equity.stratified_risk_ratios(frame, "punitive", SETTINGS),
                     equity.action_regression(frame, "punitive", SETTINGS)))
    return runs


class TestCalibration:
    def test_planted_ratio_is_covered_and_found(self, calibration_runs):
        covered = found = 0
        for stratified, regression in calibration_runs:
            black = stratified[stratified["group_value"] == "Black"].iloc[0]
            covered += black.ci_low <= 1.8 <= black.ci_upp
            found += bool(black.flagged)
            side = regression[regression["group_value"] == "Black"].iloc[0]
            covered += side.ci_low <= 1.8 <= side.ci_upp
        # Nominal 95% coverage over 2 x 60 intervals (mean 114, sd 2.4); P(< 107)
        # is under 1%.
        assert covered >= 107
        assert found >= REPLICATIONS - 3

    def test_null_groups_are_not_flagged_beyond_the_error_rate(self, calibration_runs):
        # Holm keeps the chance of ANY false rejection in a family at 5%: count the
        # districts where any group with no planted effect was rejected at all
        # (adjusted p < 0.05, in either direction, whatever the ratio's size).
        # One-against-all-others ratios of other races are not null (their
        # comparison holds the Black students), so they are judged in the
        # regression, which sets the groups side by side.
        stratified_errors = regression_errors = 0
        for stratified, regression in calibration_runs:
            nulls = stratified[stratified["group_type"] != "race_ethnicity"]
            stratified_errors += bool((nulls["pvalue_adjusted"] < 0.05).any())
            nulls = regression[regression["group_value"] != "Black"]
            regression_errors += bool((nulls["pvalue_adjusted"] < 0.05).any())
        # At most 5% expected: 3 of 60; P(more than 7 | 5%) is about 1%.
        assert stratified_errors <= 7
        assert regression_errors <= 7


# ------------------------------------------------------------- the sample district

@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The default sample district (12,000 students, seed 20261130), prepared.

    Reuses ``data/processed/sample/2026-11-30`` (what `make reports` and the
    notebook tests write) when it was made from the default sample; otherwise
    generates and prepares a fresh copy in a temporary folder (a few minutes).
    """
    folder = paths.PROCESSED_DIR / "sample" / "2026-11-30"
    info_file = folder / "run.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        meta_file = paths.Path(info["data_dir"]) / "sample_meta.json"
        if meta_file.exists():
            meta = json.loads(meta_file.read_text())
            if (meta.get("seed"), meta.get("n_students")) == (20261130, 12000) and \
                    (folder / "interventions.parquet").exists():
                return folder
    from analysis.pipeline import prepare_run
    from analysis.settings import load_settings

    raw = tmp_path_factory.mktemp("sample")
    generate_sample_district(raw)
    run = prepare_run(load_settings(source="sample", data_dir=str(raw)),
                      as_of=dt.date(2026, 11, 30),
                      out_root=tmp_path_factory.mktemp("processed"))
    return run.folder


@pytest.fixture(scope="module")
def sample_data(sample_run):
    return equity.load_equity_data(sample_run, "staff", SETTINGS)


@pytest.fixture(scope="module")
def sample_audit(sample_data):
    unit = equity.resolve_unit(sample_data, "")
    frame, audit = equity.unit_audit(sample_data, unit, "current")
    return frame, audit


class TestOneSchoolRead:
    """The school report's section reads one school's rows, with the same ratios."""

    @pytest.mark.parametrize("audience", ["staff", "public"])
    def test_same_ratios_as_the_whole_run(self, sample_run, audience):
        whole = equity.load_equity_data(sample_run, audience, SETTINGS)
        for school in [u["id"] for u in whole.info["units"]][::4]:
            unit = equity.resolve_unit(whole, school)
            one = equity.load_unit_equity_data(sample_run, school, audience, SETTINGS)
            assert one.only_unit == school and one.students is None
            assert len(one.aggregate) < len(whole.aggregate) / 5
            pd.testing.assert_frame_equal(equity.unit_ratios(whole, unit),
                                          equity.unit_ratios(one, unit),
                                          check_dtype=False)

    def test_district_summed_from_its_schools(self, sample_run, tmp_path):
        # A file of schools only (as Connecticut's): the district is their sum.
        from analysis.pipeline import write_table

        for name in ("run.json", "quality.json", "aggregate.parquet", "public.parquet"):
            (tmp_path / name).write_bytes((sample_run / name).read_bytes())
        for name in ("aggregate", "public"):
            table = pd.read_parquet(tmp_path / f"{name}.parquet")
            write_table(table[table["level"] != "district"],
                        tmp_path / f"{name}.parquet")
        for audience in ("staff", "public"):
            whole = equity.load_equity_data(tmp_path, audience, SETTINGS)
            unit = equity.resolve_unit(whole, "S101")
            one = equity.load_unit_equity_data(tmp_path, "S101", audience, SETTINGS)
            expected = equity.unit_ratios(whole, unit)
            assert len(expected)
            pd.testing.assert_frame_equal(expected, equity.unit_ratios(one, unit),
                                          check_dtype=False)

    def test_audits_refuse_one_school_data(self, sample_run):
        one = equity.load_unit_equity_data(sample_run, "S101", "staff", SETTINGS)
        unit = equity.resolve_unit(one, "S101")
        with pytest.raises(ValueError, match="load_equity_data"):
            equity.unit_gaps(one, unit)


class TestPlantedDisparity:
    PLANTED = PLANTED_PUNITIVE_RATIO["race_ethnicity"]["Black"]

    def test_the_audit_finds_the_planted_disparity(self, sample_audit):
        _, audit = sample_audit
        black = audit.punitive[audit.punitive["group_value"] == "Black"].iloc[0]
        assert black.flagged
        assert black.ci_low <= self.PLANTED <= black.ci_upp
        side = audit.punitive_regression
        assert side.loc[side["group_value"] == "Black", "flagged"].item()

    def test_null_groups_are_not_flagged(self, sample_audit):
        _, audit = sample_audit
        for name in ("punitive", "supportive", "tiering"):
            table = getattr(audit, name)
            flagged = table[table["flagged"]]["group_value"].tolist()
            assert flagged == (["Black"] if name == "punitive" else []), name
        for table in (audit.punitive_regression, audit.supportive_regression):
            nulls = table[table["group_value"] != "Black"]
            assert not (nulls["pvalue_adjusted"] < SETTINGS.alpha).any()
        assert not audit.absence_when_punished["flagged"].any()

    def test_adjusted_gap_intervals_on_the_sample_are_finite_and_sane(self,
                                                                       sample_data):
        # School fixed effects next to school clusters once gave intervals of
        # millions of points (or NaN) here; each must hold its estimate.
        gaps = equity.unit_gaps(sample_data, equity.resolve_unit(sample_data, ""))
        shown = gaps[gaps["shown"].astype(bool)]
        assert len(shown) >= 8
        assert np.isfinite(shown[["ame_low", "ame_upp"]].to_numpy()).all()
        assert (shown["ame_low"] < shown["ame_pp"]).all()
        assert (shown["ame_pp"] < shown["ame_upp"]).all()
        assert (shown["ame_upp"] - shown["ame_low"]).max() < 40

    def test_last_year_audit_finds_it_too(self, sample_data):
        unit = equity.resolve_unit(sample_data, "")
        _, prior = equity.unit_audit(sample_data, unit, "prior")
        flagged = prior.punitive[prior.punitive["flagged"]]["group_value"].tolist()
        assert flagged == ["Black"]

    def test_findings_lead_with_a_question_about_the_planted_disparity(
            self, sample_data, sample_audit):
        unit = equity.resolve_unit(sample_data, "")
        found = equity.findings(equity.unit_ratios(sample_data, unit), None,
                                sample_audit[1], SETTINGS)
        first = found.iloc[0]
        assert first.topic == "punitive" and first.group == "Black students"
        assert "Is the referral process applied the same way" in first.text
        assert found["question"].str.endswith("?").all()
        # The groups flagged for chronic absence follow, each as a question.
        assert set(found.loc[found["topic"] == "chronic absence", "group"]) == {
            equity.group_phrase(t, v) for t, v in
            equity.unit_ratios(sample_data, unit).query("flagged")[
                ["group_type", "group_value"]].itertuples(index=False)}

    def test_audit_frame_counts_actions_in_the_school_year(self, sample_run,
                                                           sample_audit):
        frame, _ = sample_audit
        log = pd.read_parquet(sample_run / "interventions.parquet")
        log = log[(pd.to_datetime(log["date"]) >= "2026-07-01")
                  & (pd.to_datetime(log["date"]) <= AS_OF)]
        punished = set(log.loc[log["kind"] == "punitive", "student_id"])
        assert frame["punitive"].sum() == len(punished & set(frame["student_id"]))

    def test_aggregate_ratios_match_the_student_rows(self, sample_data, sample_run):
        # The ratio from the aggregate table, against one computed from the
        # staff-only student facts with plain pandas.
        students = pd.read_parquet(sample_run / "students.parquet")
        district = students[(students["level"] == "district") & students["eligible"]]
        black = district["race_ethnicity"] == "Black"
        expected = district.loc[black, "chronic"].mean() / district.loc[
            ~black, "chronic"].mean()
        ratios = equity.unit_ratios(sample_data, equity.resolve_unit(sample_data, ""))
        row = ratios[ratios["group_value"] == "Black"].iloc[0]
        assert row.risk_ratio == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------- real data

def _nyc_counts(folder, sheet: str, district: str, year: str, category: str):
    with open(folder / f"public-district-attendance-results-2018-2022__{sheet}.csv",
              newline="") as handle:
        for row in csv.DictReader(handle):
            if (row["District"], row["Grade"], row["Year"], row["Category"]) == (
                    district, "All Grades", year, category):
                return (float(row["# Chronically Absent"]),
                        float(row["# Contributing 10+ Total Days and 1+ Pres Day"]))
    raise KeyError((sheet, district, year, category))


@pytest.fixture(scope="module")
def nyc_ratios(require_real):
    from analysis.quality import QualityLedger
    from analysis.sources.nyc_doe import read_nyc_doe

    folder = require_real("nyc_doe_eoy_attendance_district")
    return folder, equity.disproportionality(read_nyc_doe(folder, QualityLedger()),
                                             SETTINGS)


@pytest.mark.real_data
class TestRealData:
    @pytest.mark.parametrize("sheet, category, value", [
        ("Ethnicity", "Black", "Black"), ("STH", "STH", "Homeless"),
        ("Poverty", "Poverty", "Economically disadvantaged"),
    ])
    def test_nyc_ratio_matches_the_published_counts(self, nyc_ratios, sheet, category,
                                                    value):
        folder, ratios = nyc_ratios
        a, n = _nyc_counts(folder, sheet, "1", "2017-18", category)
        total_a, total_n = _nyc_counts(folder, "All_Students", "1", "2017-18",
                                       "All Students")
        row = ratios[(ratios["level"] == "district") & (ratios["unit_id"] == "1")
                     & (ratios["school_year"] == "2017-18")
                     & (ratios["group_value"] == value)].iloc[0]
        expected = (a / n) / ((total_a - a) / (total_n - n))
        assert row.risk_ratio == pytest.approx(expected, rel=1e-12)

    def test_nyc_every_district_and_year_has_ratios(self, nyc_ratios):
        _, ratios = nyc_ratios
        districts = ratios[ratios["level"] == "district"]
        for group_type in ("race_ethnicity", "english_learner", "disability",
                           "economically_disadvantaged", "homeless"):
            part = districts[(districts["group_type"] == group_type)
                             & districts["ratio"].notna()]
            assert part.groupby("school_year")["unit_id"].nunique().min() >= 30, \
                group_type
            assert part["school_year"].nunique() == 5

    def test_connecticut_shows_approximate_gaps_only(self, require_real):
        from analysis.quality import QualityLedger
        from analysis.sources.ct_edsight import filter_district, read_ct_edsight

        folder = require_real("ct_edsight_school")
        aggregate = filter_district(read_ct_edsight(folder, QualityLedger()),
                                    "Hartford")
        ratios = equity.disproportionality(aggregate, SETTINGS)
        assert ratios["ratio"].isna().all() and not ratios["flagged"].any()
        shown = ratios[ratios["shown"]]
        assert len(shown) and shown["gap_pp"].notna().all()
        assert shown["approximate"].all()
        assert shown["reason"].str.contains("approximate").all()
