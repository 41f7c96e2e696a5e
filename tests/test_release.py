"""Public releases: written through the privacy gate, audited whole, free of ids.

A small synthetic district (the sample generator with 800 students, so some groups
are small and some are not) is prepared once; ``prepare_run`` calls
:func:`analysis.release.write_release`, as ``make reports`` does.
"""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pandas as pd
import pytest

from analysis import release as release_module
from analysis.pipeline import prepare_run
from analysis.privacy import HIDDEN, PrivacyError, is_coded
from analysis.release import (
    audit_public_outputs,
    load_release,
    scan_for_identifiers,
    student_identifiers,
    write_release,
)
from analysis.sample import generate_sample_district
from analysis.settings import load_settings

AS_OF = dt.date(2026, 11, 30)
KEYS = ["as_of_date", "level", "school_id", "grade", "group_type", "group_value"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A prepared run of a small sample district, with its release."""
    root = tmp_path_factory.mktemp("district")
    generate_sample_district(root / "raw", n_students=800)
    settings = load_settings(source="sample", data_dir=str(root / "raw"))
    prepared = prepare_run(settings, as_of=AS_OF, out_root=root / "processed")
    folder = root / "public" / "sample" / prepared.folder.name
    return SimpleNamespace(folder=prepared.folder, info=prepared.info,
                           release=folder, privacy=settings.privacy)


@pytest.fixture(scope="module")
def aggregate(run):
    return pd.read_parquet(run.folder / "aggregate.parquet")


@pytest.fixture(scope="module")
def merged(run, aggregate):
    """The public table beside the true counts, cell by cell."""
    public = pd.read_parquet(run.release / "public.parquet")
    truth = aggregate.copy()
    for frame in (public, truth):
        frame["as_of_date"] = pd.to_datetime(frame["as_of_date"])
        frame["school_id"] = frame["school_id"].astype("string").fillna("")
    out = public.merge(truth[KEYS + ["students", "chronically_absent"]], on=KEYS,
                       how="left", validate="one_to_one")
    assert len(out) == len(public) == len(aggregate)
    return out


class TestWrittenRelease:
    def test_files(self, run):
        names = {p.name for p in run.release.iterdir()}
        assert names == {"public.parquet", "colours.parquet", "release.json",
                         "audit.json"}
        assert (run.folder / "public.parquet").exists()
        audit = json.loads((run.release / "audit.json").read_text())
        assert audit["ok"] and audit["failures"] == 0
        assert audit["hidden_cells_checked"] > 0

    def test_small_groups_hidden_and_large_ones_shown(self, merged):
        small = merged["students"].between(1, 10)
        assert small.any()
        assert merged.loc[small, "suppressed"].all()
        assert (merged.loc[small, "rate_display"] == HIDDEN).all()
        assert (~merged["suppressed"]).sum() > 0     # not everything hidden
        assert merged.loc[merged["suppressed"], "chronic_absence_rate"].isna().all()

    def test_no_counts_published_by_default(self, run):
        public = pd.read_parquet(run.release / "public.parquet")
        assert not {"students", "chronically_absent", "days_absent",
                    "days_enrolled"} & set(public.columns)
        assert "student_id" not in public.columns

    def test_release_passes_the_output_audit(self, run):
        audit = audit_public_outputs(run.folder, [run.release], run.privacy,
                                     release_folder=run.release)
        assert audit.ok, audit.message()
        assert audit.result.cells_checked > 0
        # public.parquet beside the run, the release's two tables, and the copies
        # found again in the output folder: all audited together.
        assert len(audit.tables) >= 3
        assert audit.identifiers_found == []

    def test_colours_only_where_both_years_are_shown(self, run):
        rel = load_release(run.release)
        coloured = rel.colours[rel.colours["colour"].notna()]
        assert not coloured["suppressed"].any()
        assert not is_coded(coloured["rate_display"]).any()
        assert not is_coded(coloured["prior_rate_display"]).any()
        assert coloured["prior_rate_display"].ne(HIDDEN).all()
        hidden = rel.colours[rel.colours["suppressed"]]
        assert hidden["colour"].isna().all() and hidden["status"].isna().all()


class TestIdentifiers:
    def test_real_release_files_hold_no_student_id(self, run):
        ids = student_identifiers(run.folder)
        assert len(ids) > 100
        files = sorted(p for p in run.release.iterdir() if p.is_file())
        assert scan_for_identifiers(files, ids) == []

    def test_planted_id_is_found(self, run, tmp_path):
        ids = student_identifiers(run.folder)
        planted = sorted(ids)[0]
        pack = tmp_path / "pack"
        pack.mkdir()
        (pack / "clean.html").write_text("<p>Chronic absence 12.5%</p>")
        (pack / "leak.html").write_text(f"<td>{planted}</td><td>absent</td>")
        (pack / "leak.json").write_text(json.dumps({"student": planted}))
        # Joined to other words by "-" or "_", as in an HTML id or a link.
        (pack / "row.html").write_text(f'<tr id="row-{planted}"><td>x</td></tr>')
        (pack / "link.md").write_text(f"[file](student_{planted}.html)")
        # A longer token that merely contains an id is not a hit.
        (pack / "word.txt").write_text(f"X{planted}X")
        found = scan_for_identifiers(sorted(pack.iterdir()), ids)
        assert sorted(found) == sorted(str(pack / name) for name in (
            "leak.html", "leak.json", "row.html", "link.md"))

        audit = audit_public_outputs(run.folder, [pack], run.privacy,
                                     release_folder=run.release)
        assert not audit.ok
        assert audit.result.ok             # the tables are fine; the files are not
        assert planted not in audit.message()
        assert "leak.html" in audit.message()


class TestAuditOfOutputs:
    def test_unhiding_one_small_cell_fails_the_audit(self, run, merged, tmp_path):
        # A report that shows one small group's rate, as a careless export might.
        public = pd.read_parquet(run.release / "public.parquet")
        pick = merged.index[merged["students"].between(1, 10)
                            & merged["chronically_absent"].notna()][0]
        row = merged.loc[pick]
        rate = row["chronically_absent"] / row["students"]
        public.loc[pick, ["suppressed", "rate_display"]] = [False, f"{rate:.1%}"]
        public.loc[pick, "chronic_absence_rate"] = rate
        out = tmp_path / "export"
        out.mkdir()
        public.to_csv(out / "table.csv", index=False)
        audit = audit_public_outputs(run.folder, [out], run.privacy,
                                     release_folder=run.release)
        assert not audit.ok and not audit.result.ok
        assert "privacy audit" in audit.message()

    def test_failed_audit_writes_nothing(self, run, aggregate, tmp_path, monkeypatch):
        # A publish that forgets to suppress: write_release must refuse, remove a
        # stale public.parquet from an earlier run and write no release folder.
        published = pd.read_parquet(run.release / "public.parquet")

        def leaky(frame, *args, **kwargs):
            table = published.copy()
            table["suppressed"] = False
            table["rate_display"] = [f"{r:.1%}" if pd.notna(r) else "0.0%"
                                     for r in frame["chronic_absence_rate"]]
            table["chronic_absence_rate"] = frame["chronic_absence_rate"].to_numpy()
            return table

        run_folder = tmp_path / "run"
        run_folder.mkdir()
        (run_folder / "public.parquet").write_bytes(b"stale")
        monkeypatch.setattr(release_module, "publish", leaky)
        with pytest.raises(PrivacyError, match="privacy audit"):
            write_release(aggregate, run_folder, run.info, run.privacy,
                          root=tmp_path / "public")
        assert not (run_folder / "public.parquet").exists()
        assert not (tmp_path / "public").exists()
