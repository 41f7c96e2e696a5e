"""The California Dashboard colour for chronic absence (status x change, DOMAIN.md A2).

The expected table below is copied by hand from DOMAIN.md A2 (CDE's five-by-five
colour table), not from :mod:`analysis.status_colour`, so a typo in the module's
table fails here.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from analysis.status_colour import (
    CHANGE_LEVELS,
    STATUS_LEVELS,
    change_level,
    colour,
    dashboard_colour,
    status_level,
    tenths,
)

# DOMAIN.md A2, "5x5 color grid": rows = status, columns = change from Increased
# Significantly to Declined Significantly.
#
# | Status \ Change | Inc. Sig. | Increased | Maintained | Declined | Decl. Sig. |
# | Very Low        | Yellow    | Green     | Blue       | Blue     | Blue       |
# | Low             | Orange    | Yellow    | Green      | Green    | Blue       |
# | Medium          | Orange    | Orange    | Yellow     | Green    | Green      |
# | High            | Red       | Orange    | Orange     | Yellow   | Yellow     |
# | Very High       | Red       | Red       | Red        | Orange   | Yellow     |
EXPECTED = {
    ("Very Low", "Increased Significantly"): "Yellow",
    ("Very Low", "Increased"): "Green",
    ("Very Low", "Maintained"): "Blue",
    ("Very Low", "Declined"): "Blue",
    ("Very Low", "Declined Significantly"): "Blue",
    ("Low", "Increased Significantly"): "Orange",
    ("Low", "Increased"): "Yellow",
    ("Low", "Maintained"): "Green",
    ("Low", "Declined"): "Green",
    ("Low", "Declined Significantly"): "Blue",
    ("Medium", "Increased Significantly"): "Orange",
    ("Medium", "Increased"): "Orange",
    ("Medium", "Maintained"): "Yellow",
    ("Medium", "Declined"): "Green",
    ("Medium", "Declined Significantly"): "Green",
    ("High", "Increased Significantly"): "Red",
    ("High", "Increased"): "Orange",
    ("High", "Maintained"): "Orange",
    ("High", "Declined"): "Yellow",
    ("High", "Declined Significantly"): "Yellow",
    ("Very High", "Increased Significantly"): "Red",
    ("Very High", "Increased"): "Red",
    ("Very High", "Maintained"): "Red",
    ("Very High", "Declined"): "Orange",
    ("Very High", "Declined Significantly"): "Yellow",
}


def test_the_table_has_every_level_once():
    assert set(STATUS_LEVELS) == {s for s, _ in EXPECTED}
    assert set(CHANGE_LEVELS) == {c for _, c in EXPECTED}
    assert len(EXPECTED) == 25


@pytest.mark.parametrize(("status", "change"), sorted(EXPECTED))
def test_colour_table_cell_by_cell(status, change):
    assert colour(status, change) == EXPECTED[(status, change)]


# A rate in tenths of a percent (26 = 2.6%). DOMAIN.md A2: Very Low <= 2.5%,
# Low > 2.5-5.0%, Medium > 5.0-10.0%, High > 10.0-20.0%, Very High > 20.0%.
@pytest.mark.parametrize(("rate_tenths", "expected"), [
    (0, "Very Low"), (25, "Very Low"), (26, "Low"), (50, "Low"), (51, "Medium"),
    (100, "Medium"), (101, "High"), (200, "High"), (201, "Very High"),
    (1000, "Very High"),
])
def test_status_level_boundaries(rate_tenths, expected):
    assert status_level(rate_tenths) == expected


# A change in tenths of a percentage point. DOMAIN.md A2: Declined Significantly is
# a decline of 3.0 or more; Declined 0.5 to < 3.0; Maintained under 0.5 either way;
# Increased 0.5 to 3.0; Increased Significantly > 3.0 (3.1 or more after rounding).
# +3.0 is "Increased" but -3.0 is "Declined Significantly" (CDE's asymmetry).
@pytest.mark.parametrize(("change_tenths", "expected"), [
    (31, "Increased Significantly"), (30, "Increased"), (5, "Increased"),
    (4, "Maintained"), (0, "Maintained"), (-4, "Maintained"), (-5, "Declined"),
    (-29, "Declined"), (-30, "Declined Significantly"),
    (-31, "Declined Significantly"), (200, "Increased Significantly"),
])
def test_change_level_boundaries(change_tenths, expected):
    assert change_level(change_tenths) == expected


@pytest.mark.parametrize(("share", "expected"), [
    (Fraction(25, 1000), 25),       # 2.5% exactly
    (Fraction(2549, 100000), 25),   # 2.549% -> 2.5
    (Fraction(255, 10000), 26),     # 2.55% -> 2.6 (half away from zero)
    (Fraction(-255, 10000), -26),   # -2.55 points -> -2.6
    (Fraction(-245, 10000), -25),
    (Fraction(0), 0),
])
def test_tenths_rounds_half_away_from_zero(share, expected):
    assert tenths(share) == expected


class TestDashboardColour:
    def test_status_read_on_the_rounded_rate(self):
        # 251 / 10000 = 2.51% rounds to 2.5%: Very Low. 255 / 10000 = 2.55% -> 2.6%.
        assert dashboard_colour(251, 10000, 251, 10000)["status"] == "Very Low"
        assert dashboard_colour(255, 10000, 255, 10000)["status"] == "Low"

    def test_change_of_exactly_three_points_up_and_down(self):
        # 13.0% now against 10.0% last year: +3.0 -> Increased; High + Increased.
        up = dashboard_colour(130, 1000, 100, 1000)
        assert (up["change_tenths"], up["change"]) == (30, "Increased")
        assert (up["status"], up["colour"]) == ("High", "Orange")
        # 10.0% now against 13.0%: -3.0 -> Declined Significantly; Medium -> Green.
        down = dashboard_colour(100, 1000, 130, 1000)
        assert (down["change_tenths"], down["change"]) == (-30,
                                                          "Declined Significantly")
        assert (down["status"], down["colour"]) == ("Medium", "Green")

    def test_change_just_over_three_points(self):
        # 13.1% against 10.0%: +3.1 -> Increased Significantly; High -> Red.
        result = dashboard_colour(131, 1000, 100, 1000)
        assert (result["change"], result["colour"]) == ("Increased Significantly",
                                                         "Red")

    def test_maintained_within_less_than_half_a_point(self):
        # 20.4% against 20.0%: +0.4 Maintained; status 20.4% is Very High -> Red.
        result = dashboard_colour(204, 1000, 200, 1000)
        assert (result["status"], result["change"], result["colour"]) == (
            "Very High", "Maintained", "Red")
        # 20.0% against 20.5%: -0.5 Declined; 20.0% is High -> Yellow.
        result = dashboard_colour(200, 1000, 205, 1000)
        assert (result["status"], result["change"], result["colour"]) == (
            "High", "Declined", "Yellow")

    def test_thirty_students_in_both_years_needed(self):
        assert dashboard_colour(3, 30, 3, 30)["colour"] is not None
        none = dashboard_colour(3, 29, 3, 30)
        assert none["colour"] is None and "fewer than 30" in none["reason"]
        assert dashboard_colour(3, 29, 3, 30, min_students=15)["colour"] is not None

    def test_published_rates_without_counts(self):
        # 0.025 as a float is read as 2.5% (Very Low), not 2.5000000000000001%.
        result = dashboard_colour(None, None, None, None, current_rate=0.025,
                                  prior_rate=0.055)
        assert result["status_tenths"] == 25 and result["change_tenths"] == -30
        assert result["colour"] == "Blue"

    def test_no_prior_year_gives_no_colour(self):
        result = dashboard_colour(10, 100, None, None)
        assert result["status"] == "Medium" and result["colour"] is None
        assert result["reason"] == "no prior-year rate"
