"""The privacy gate: primary and complementary suppression, top/bottom coding."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.privacy import code_rate, publish, suppress
from analysis.schema import conform_aggregate


def _cells(sizes: dict[str, int], chronic: dict[str, int], group_type="race_ethnicity"):
    """One school's total plus one row per group value."""
    rows = [{"group_type": "all", "group_value": "All students",
             "students": sum(sizes.values()), "chronically_absent": sum(chronic.values())}]
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
        (0.04, 60, "≤5%"), (0.97, 60, "≥95%"), (0.25, 60, "25.0%"), (0.08, 25, "≤10%"),
        (0.15, 15, "≤20%"), (0.5, 15, "50.0%"),
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
