"""Tests for analysis.provenance: checksums, code version and run records."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess

import pytest

import analysis
from analysis import paths, provenance
from analysis.provenance import checksum_inputs, code_version, run_record, sha256_file


@pytest.fixture
def input_folder(tmp_path):
    """A small input folder with a nested file and a hidden file."""
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "attendance.csv").write_text("school,absent\nS1,3\n")
    (folder / "sub" / "enrolment.csv").write_text("school,enrolled\nS1,30\n")
    (folder / ".hidden").write_text("stray file\n")
    return folder


class TestSha256File:
    def test_matches_hashlib(self, tmp_path):
        path = tmp_path / "abc.txt"
        path.write_bytes(b"abc")
        # SHA-256("abc") from FIPS 180-2, appendix B.1.
        expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        assert sha256_file(path) == expected

    def test_large_file_is_read_in_chunks(self, tmp_path):
        path = tmp_path / "big.bin"
        data = bytes(range(256)) * 10_000  # 2.5 MB, more than one chunk
        path.write_bytes(data)
        assert sha256_file(path) == hashlib.sha256(data).hexdigest()


class TestChecksumInputs:
    def test_folder_names_are_relative_sorted_and_complete(self, input_folder):
        checksums = checksum_inputs(input_folder)
        assert list(checksums) == [".hidden", "attendance.csv", "sub/enrolment.csv"]
        assert checksums["attendance.csv"] == sha256_file(
            input_folder / "attendance.csv"
        )

    def test_checksums_are_stable(self, input_folder):
        assert checksum_inputs(input_folder) == checksum_inputs(str(input_folder))

    def test_a_changed_file_changes_only_its_checksum(self, input_folder):
        before = checksum_inputs(input_folder)
        (input_folder / "attendance.csv").write_text("school,absent\nS1,4\n")
        after = checksum_inputs(input_folder)
        changed = {name for name in before if before[name] != after[name]}
        assert changed == {"attendance.csv"}

    def test_list_of_paths_is_named_from_their_common_folder(self, input_folder):
        checksums = checksum_inputs(
            [input_folder / "sub" / "enrolment.csv", input_folder / "attendance.csv"]
        )
        assert list(checksums) == ["attendance.csv", "sub/enrolment.csv"]

    def test_folder_in_a_list_keeps_its_name(self, input_folder, tmp_path):
        params = tmp_path / "school.yaml"
        params.write_text("school_id: '0123'\n")
        checksums = checksum_inputs([input_folder, params])
        assert "inputs/attendance.csv" in checksums
        assert "school.yaml" in checksums

    def test_missing_input_raises(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="missing.csv"):
            checksum_inputs([tmp_path / "missing.csv"])

    @pytest.mark.parametrize("empty", [None, []], ids=["none", "empty-list"])
    def test_no_inputs_give_empty_dict(self, empty):
        assert checksum_inputs(empty) == {}


class TestCodeVersion:
    def test_records_package_python_and_key_packages(self):
        version = code_version()
        assert version["version"] == analysis.__version__
        assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version["python"])
        assert set(version["packages"]) == set(provenance.KEY_PACKAGES)
        assert version["packages"]["papermill"] == importlib.metadata.version(
            "papermill"
        )

    def test_records_commit_inside_git(self):
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
        )
        if shutil.which("git") is None or inside.returncode != 0:
            pytest.skip("the project is not a git checkout here")
        version = code_version()
        assert re.fullmatch(r"[0-9a-f]{40}", version["git_commit"])
        assert isinstance(version["git_dirty"], bool)

    def test_outside_git_gives_none(self, tmp_path, monkeypatch):
        monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path)
        # Stop git from finding a repository in a folder above tmp_path.
        monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
        version = code_version()
        assert version["git_commit"] is None
        assert version["git_dirty"] is None
        assert version["version"] == analysis.__version__

    def test_without_git_installed_gives_none(self, monkeypatch):
        def no_git(*args, **kwargs):
            raise FileNotFoundError("git")

        monkeypatch.setattr(provenance.subprocess, "run", no_git)
        version = code_version()
        assert version["git_commit"] is None
        assert version["git_dirty"] is None


class TestRunRecord:
    def test_combines_parameters_inputs_code_and_time(self, input_folder):
        record = run_record({"school_id": "0123"}, input_folder)
        assert record["parameters"] == {"school_id": "0123"}
        assert record["inputs"] == checksum_inputs(input_folder)
        assert record["code"]["version"] == analysis.__version__
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["created_utc"])

    def test_defaults_are_empty(self):
        record = run_record()
        assert record["parameters"] == {} and record["inputs"] == {}
