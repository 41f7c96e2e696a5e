"""The privacy gate: primary and complementary suppression, top/bottom coding."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.privacy import code_rate, publish, suppress
from analysis.schema import conform_aggregate


def _cells(sizes: dict[str, int], chronic: dict[str, int], group_type="race_ethnicity"):
    """One school's total plus one row per group value."""
    rows = [{"group_type": "all", "group_value": "All students",
             "students": sum(sizes.values()),
             "chronically_absent": sum(chronic.values())}]
    rows += [{"group_type": group_type, "group_value": k, "students": n,
              "chronically_absent": chronic[k]} for k, n in sizes.items()]
    frame = pd.DataFrame(rows)
    frame["source"], frame["definition"], frame["level"] = "t", "d", "school"
    frame["school_year"], frame["as_of_date"] = "2026-27", "2026-11-30"
    frame["school_id"], frame["district_id"], frame["grade"] = "A", "D", "All"
    frame["chronic_absence_rate"] = frame["chronically_absent"] / frame["students"]
    frame["ci_low"] = frame["chronic_absence_rate"] - 0.01
    frame["ci_upp"] = frame["chronic_absence_rate"] + 0.01
    return conform_aggregate(frame)


class TestSuppress:
    def test_small_group_hidden_and_next_smallest_hidden_too(self):
        cells = _cells({"Asian": 8, "Black": 40, "Hispanic": 60, "White": 25},
                       {"Asian": 2, "Black": 10, "Hispanic": 12, "White": 5})
        marked = suppress(cells, 10).set_index("group_value")
        assert marked.loc["Asian", "suppressed"]
        assert marked.loc["Asian", "suppression"] == "10 or fewer students"
        # Total minus the shown groups would give Asian back: White (25) goes too.
        assert marked.loc["White", "suppressed"]
        assert marked.loc["White", "suppression"] == "complementary"
        assert not marked.loc["Black", "suppressed"]
        assert not marked.loc["All students", "suppressed"]

    def test_exactly_ten_is_hidden_eleven_is_shown(self):
        cells = _cells({"Asian": 10, "Black": 11, "White": 12},
                       {"Asian": 1, "Black": 1, "White": 1})
        marked = suppress(cells, 10).set_index("group_value")
        assert marked.loc["Asian", "suppressed"]
        assert marked.loc["Black", "suppression"] == "complementary"
        assert not marked.loc["White", "suppressed"]

    def test_two_hidden_cells_need_no_more(self):
        cells = _cells({"Asian": 5, "Black": 6, "White": 50},
                       {"Asian": 1, "Black": 1, "White": 5})
        marked = suppress(cells, 10).set_index("group_value")
        assert not marked.loc["White", "suppressed"]


class TestPublish:
    def test_hidden_cells_carry_no_numbers(self):
        cells = _cells({"Asian": 8, "Black": 40, "Hispanic": 60, "White": 25},
                       {"Asian": 2, "Black": 10, "Hispanic": 12, "White": 5})
        release = publish(cells, 10).set_index("group_value")
        hidden = release[release["suppressed"]]
        assert hidden["chronic_absence_rate"].isna().all()
        assert hidden["ci_low"].isna().all()
        assert set(hidden["rate_display"]) == {"suppressed"}
        assert "students" not in release.columns  # counts only with show_counts

    def test_counts_only_when_asked(self):
        cells = _cells({"Black": 40, "White": 50}, {"Black": 10, "White": 5})
        release = publish(cells, 10, show_counts=True).set_index("group_value")
        assert release.loc["Black", "students"] == 40

    @pytest.mark.parametrize("rate, size, shown", [
        (0.004, 350, "≤1%"), (0.995, 350, "≥99%"), (0.015, 150, "≤2%"),
        (0.04, 60, "≤5%"), (0.97, 60, "≥95%"), (0.25, 60, "25.0%"),
        (0.08, 25, "≤10%"), (0.15, 15, "≤20%"), (0.5, 15, "50.0%"),
    ])
    def test_top_bottom_coding(self, rate, size, shown):
        assert code_rate(rate, size) == shown

    def test_coded_rates_are_not_published_exactly(self):
        cells = _cells({"Black": 400, "White": 400}, {"Black": 1, "White": 100})
        release = publish(cells, 10).set_index("group_value")
        assert release.loc["Black", "rate_display"] == "≤1%"
        assert pd.isna(release.loc["Black", "chronic_absence_rate"])
        assert release.loc["White", "chronic_absence_rate"] == pytest.approx(0.25)


def test_groups_within_one_grade_are_protected_too():
    # Published sources (NYC) give group x grade rows: they form their own sets.
    cells = _cells({"Asian": 4, "Black": 30, "White": 20},
                   {"Asian": 1, "Black": 5, "White": 3})
    cells["grade"] = "3"
    marked = suppress(cells, 10).set_index("group_value")
    assert marked.loc["Asian", "suppressed"]
    assert marked.loc["White", "suppression"] == "complementary"


# DOMAIN.md A4 (district procedure after NCES 2011-603): >= 300 students: <= 1% /
# >= 99%; 100-299: <= 2% / >= 98%; 40-99: <= 5% / >= 95%; 20-39: <= 10% / >= 90%
# and 10-19: <= 20% / >= 80% (these two bands marked [U] there). Each size at a
# band edge, with the count that lands exactly on the bound and the next count in.
@pytest.mark.parametrize("size, chronic, shown", [
    (300, 3, "≤1%"), (300, 4, "1.3%"), (300, 297, "≥99%"), (300, 296, "98.7%"),
    (299, 5, "≤2%"), (299, 7, "2.3%"), (299, 294, "≥98%"), (299, 293, "98.0%"),
    (100, 2, "≤2%"), (100, 3, "3.0%"), (100, 98, "≥98%"), (100, 97, "97.0%"),
    (99, 4, "≤5%"), (99, 5, "5.1%"), (99, 95, "≥95%"), (99, 94, "94.9%"),
    (40, 2, "≤5%"), (40, 3, "7.5%"), (40, 38, "≥95%"), (40, 37, "92.5%"),
    (39, 3, "≤10%"), (39, 4, "10.3%"), (39, 36, "≥90%"), (39, 35, "89.7%"),
    (20, 2, "≤10%"), (20, 3, "15.0%"), (20, 18, "≥90%"), (20, 17, "85.0%"),
    (19, 3, "≤20%"), (19, 4, "21.1%"), (19, 16, "≥80%"), (19, 15, "78.9%"),
    (11, 2, "≤20%"), (11, 3, "27.3%"), (11, 9, "≥80%"), (11, 8, "72.7%"),
    (300, 0, "≤1%"), (300, 300, "≥99%"), (11, 0, "≤20%"), (11, 11, "≥80%"),
])
def test_top_bottom_coding_at_band_edges(size, chronic, shown):
    assert code_rate(chronic / size, size) == shown


def test_coding_needs_a_rate_and_a_size():
    assert code_rate(float("nan"), 50) == "suppressed"
    assert code_rate(0.5, pd.NA) == "suppressed"
