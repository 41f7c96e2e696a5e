"""The dashboards without a browser: the Voila command, the views and the static export.

The views run on the tiny district (tests/tiny_district.py), where every group is
small, so every public figure is hidden: a good place to check that nothing hidden and
no student identifier reaches a dashboard page. The browser tests are in
tests/test_dashboards_browser.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import warnings
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import tiny_district
from analysis import dashboard_server as server
from analysis import dashboards
from analysis.dashboard_export import export_static
from analysis.dashboards import OVERVIEW, PublicDashboard, PublicView, StaffView
from analysis.release import (
    audit_public_outputs,
    hidden_values,
    latest_release,
    load_release,
)
from analysis.settings import load_settings

DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")
TINY_IDS = {f"s{i}" for i in range(1, 9)}


def _words(html: str) -> set[str]:
    text = DATA_URI.sub("", html)   # whole words and the parts of joined ones
    return set(re.findall(r"[A-Za-z0-9_\-]+", text)) | set(
        re.findall(r"[A-Za-z0-9]+", text))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A processed run of the tiny district and its release (in a temporary folder)."""
    from analysis.pipeline import prepare_run

    base = tmp_path_factory.mktemp("dash")
    folder = tiny_district.write(base / "raw")
    settings = load_settings(source="student-files", data_dir=str(folder))
    run = prepare_run(settings, as_of=dt.date(2026, 9, 30), out_root=base / "processed")
    return {"run": run.folder, "releases": base / "public",
            "release": latest_release("student-files", base / "public")}


@pytest.fixture(scope="module")
def view(tiny) -> PublicView:
    return PublicView(load_release(tiny["release"]))


# ---------------------------------------------------------------------- query string

class TestQuery:
    def test_known_safe_keys_only(self):
        assert dashboards.parse_query("source=nyc-doe&unit=7&x=1&group=<script>") == {
            "source": "nyc-doe", "unit": "7"}
        assert dashboards.parse_query("school=S101&unit=" + "a" * 81) == {
            "school": "S101"}
        assert dashboards.parse_query(None) == {}
        assert dashboards.parse_query("unit=1;import os") == {}

    def test_read_from_the_environment_outside_preheat(self, monkeypatch):
        monkeypatch.delenv("VOILA_PREHEAT", raising=False)
        monkeypatch.setenv("QUERY_STRING", "source=sample&school=S103")
        assert dashboards.query_params() == {"source": "sample", "school": "S103"}

    def test_natural_order(self):
        names = ["District 10", "District 2", "district 1", "A school", "District 1B"]
        assert sorted(names, key=dashboards.natural_key) == [
            "A school", "district 1", "District 1B", "District 2", "District 10"]


# ---------------------------------------------------------------------------- server

class TestVoilaCommand:
    def test_public_is_hardened(self):
        command = server.voila_command("public", 8930)
        text = " ".join(command)
        assert command[1:4] == ["-m", "voila", str(server.FOLDERS["public"])]
        for flag in ("--no-browser", "--port=8930", "--Voila.ip=127.0.0.1",
                     "--VoilaConfiguration.allow_template_override=NO",
                     "--VoilaConfiguration.allow_theme_override=NO",
                     "--VoilaConfiguration.show_tracebacks=False",
                     f"--MappingKernelManager.cull_interval={server.CULL_INTERVAL}",
                     "--MappingKernelManager.cull_idle_timeout="
                     f"{server.CULL_IDLE_TIMEOUT}",
                     f"--VoilaExecutor.timeout={server.EXECUTION_TIMEOUT}",
                     "--preheat_kernel=True", f"--pool_size={server.POOL_SIZE}"):
            assert flag in command, flag
        assert "token" not in text   # the environment carries it (staff only)
        assert "0.0.0.0" not in text

    def test_no_file_is_served(self):
        command = server.voila_command("public", 8930)
        allow = command[command.index("--VoilaConfiguration.file_allowlist") + 1]
        deny = command[command.index("--VoilaConfiguration.file_denylist") + 1]
        for path in ("chronic_absence.ipynb", "logo.png", "a", "", "../secret.csv"):
            assert re.fullmatch(allow, path, re.IGNORECASE) is None, path
            assert re.fullmatch(deny, path, re.IGNORECASE), path

    def test_voila_reads_the_command_as_meant(self):
        from voila.app import Voila
        from voila.configuration import VoilaConfiguration

        command = server.voila_command("staff", 8930)
        app = Voila()
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            app.parse_command_line(command[4:])
        config = VoilaConfiguration(config=app.config)
        assert config.file_allowlist == [server.NOTHING]
        assert config.file_denylist == [".*"]
        assert config.show_tracebacks is False
        assert app.config.Voila.ip == "127.0.0.1"

    @pytest.mark.parametrize("audience", ["public", "staff"])
    def test_the_config_file_lifts_the_limit_only_while_waiting(self, audience,
                                                                 monkeypatch):
        from traitlets.config.loader import PyFileConfigLoader

        command = server.voila_command(audience, 8930)
        folder = command[command.index("--Voila.config_file_paths") + 1]
        assert Path(folder) == server.VOILA_CONFIG
        for key, value in server.server_environment(audience, "t0ken").items():
            if key.startswith("ANALYSIS_"):
                monkeypatch.setenv(key, value)
        config = PyFileConfigLoader("voila.py", path=folder).load_config()
        timeout = config.VoilaExecutor.timeout_func

        # Each dashboard waits for its visitor in a cell that does nothing else.
        notebook = nbformat.read(server.served_files(audience)[0], as_version=4)
        waits = [c for c in notebook.cells if "query_params()" in c.source]
        assert len(waits) == 1 and timeout(waits[0]) is None
        assert waits[0].source.strip().splitlines()[-1] == (
            "query = dashboards.query_params()")
        others = [c for c in notebook.cells if c.cell_type == "code" and c not in waits]
        assert others and all(timeout(c) == server.EXECUTION_TIMEOUT for c in others)
        # Leaving a public page shuts its kernel down (no XSRF token on that call).
        xsrf_off = config.Voila.tornado_settings.get("disable_check_xsrf", False) \
            if "tornado_settings" in config.Voila else False
        assert xsrf_off is (audience == "public")

    def test_staff_needs_a_token(self):
        with pytest.raises(ValueError, match="never served without a token"):
            server.server_environment("staff")
        with pytest.raises(ValueError, match="never served without a token"):
            server.server_environment("staff", token="")
        command = server.voila_command("staff", 8930)
        assert command[3] == str(server.FOLDERS["staff"])

    @pytest.mark.parametrize("audience", ["public", "staff"])
    def test_the_token_reaches_voila_by_the_environment_only(self, audience,
                                                              monkeypatch):
        # Not on the command line (`ps` shows it to every user), and gone from the
        # environment once Voila has it, so no kernel inherits it.
        from traitlets.config.loader import PyFileConfigLoader

        monkeypatch.setenv(server.TOKEN_ENV, "s3cret")
        env = server.server_environment(audience, token="s3cret")
        assert "s3cret" not in " ".join(server.voila_command(audience, 8930))
        assert server.TOKEN_ENV not in env
        for key in list(os.environ):
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)

        config = PyFileConfigLoader("voila.py", path=str(server.VOILA_CONFIG)
                                    ).load_config()

        assert config.Voila.token == ("s3cret" if audience == "staff" else "")
        assert "s3cret" not in os.environ.values()

    def test_the_config_refuses_a_staff_server_without_a_token(self, monkeypatch):
        from traitlets.config.loader import PyFileConfigLoader

        monkeypatch.setenv("ANALYSIS_DASHBOARD_AUDIENCE", "staff")
        monkeypatch.delenv(server.VOILA_TOKEN_ENV, raising=False)
        with pytest.raises(ValueError, match="never served without a token"):
            PyFileConfigLoader("voila.py", path=str(server.VOILA_CONFIG)).load_config()

    def test_unknown_audience(self):
        with pytest.raises(ValueError, match="audience"):
            server.voila_command("everyone", 8930)

    def test_served_folders_hold_only_dashboards(self, tmp_path):
        for audience in server.FOLDERS:
            server.check_served_folder(audience)
            assert server.served_files(audience)
        (tmp_path / "dash.ipynb").write_text("{}")
        server.check_served_folder("public", tmp_path)
        (tmp_path / "students.csv").write_text("student_id\n")
        with pytest.raises(ValueError, match="students.csv"):
            server.check_served_folder("public", tmp_path)

    def test_staff_token_file_is_private_and_kept(self, tmp_path, monkeypatch):
        monkeypatch.delenv(server.TOKEN_ENV, raising=False)
        monkeypatch.setattr(server, "TOKEN_FILE", tmp_path / "sub" / "staff.token")
        assert server.staff_token(create=False) == ""
        token = server.staff_token()
        assert len(token) >= 32
        mode = stat.S_IMODE(server.TOKEN_FILE.stat().st_mode)
        assert mode == stat.S_IRUSR | stat.S_IWUSR
        assert server.staff_token() == token
        monkeypatch.setenv(server.TOKEN_ENV, " from-env ")
        assert server.staff_token() == "from-env"

    def test_environment(self, monkeypatch):
        monkeypatch.setenv("MPLBACKEND", "Agg")
        env = server.server_environment("public")
        assert "MPLBACKEND" not in env
        assert Path(env["ANALYSIS_RELEASES"]).name == "public"
        staff = server.server_environment("staff", token="t0ken")
        assert "MPLBACKEND" not in staff
        assert staff["MPLCONFIGDIR"].endswith("matplotlib")


class TestNotebooks:
    @pytest.mark.parametrize("audience", sorted(server.FOLDERS))
    def test_committed_clean_and_thin(self, audience):
        for path in server.served_files(audience):
            nb = nbformat.read(path, as_version=4)
            assert nb.metadata.kernelspec.name == "python3", path
            code = [c for c in nb.cells if c.cell_type == "code"]
            assert code, path
            for cell in code:
                assert cell.outputs == [] and cell.execution_count is None, path
                assert "from analysis import dashboards" in cell.source or \
                    "app." in cell.source or "dashboards." in cell.source, path
                for forbidden in ("read_parquet", "read_csv", "open(", "eval(",
                                  "exec(", "subprocess", "!"):
                    assert forbidden not in cell.source, (path, forbidden)
            source = "\n".join(c.source for c in code)
            assert "query_params()" in source, path

    def test_public_notebook_reads_no_student_data(self):
        (path,) = server.served_files("public")
        nb = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "PublicDashboard" in source
        for name in ("Staff", "processed", "students.", "PROCESSED", "StaffView"):
            assert name not in source


# ------------------------------------------------------------------------ public view

class TestPublicView:
    def test_options(self, view):
        options = view.options()
        assert options[0] == ("Overview: Tiny District", OVERVIEW)
        assert [v for _, v in options[1:]] == ["A", "B"]
        assert view.unit(OVERVIEW)["level"] == "district"
        assert view.unit("nope") is None

    def test_every_page_hides_what_is_hidden(self, tiny, view):
        aggregate = pd.read_parquet(tiny["run"] / "aggregate.parquet")
        hidden = hidden_values(view.release, aggregate)
        assert len(hidden) and hidden["true_display"].astype(bool).any()
        published = set(view.table.loc[~view.table["suppressed"], "rate_display"])
        for unit_id, _ in [(OVERVIEW, None), ("A", None), ("B", None)]:
            html = "".join(view.sections(unit_id).values())
            assert not (_words(html) & TINY_IDS), unit_id
            text = DATA_URI.sub("", html)
            leaked = {v for v in hidden["true_display"] if v and v not in published
                      and v in text}
            assert not leaked, (unit_id, leaked)
            assert "suppressed" in text or "hidden" in text

    def test_sections_and_explanations(self, view):
        parts = view.sections(OVERVIEW)
        assert set(parts) == {"headline", "trend", "bands", "grades", "groups",
                              "colours", "units", "definition", "explanation"}
        assert "Every school" in parts["units"]
        assert "chronically absent" in parts["explanation"]
        assert "Definition" in parts["definition"]
        assert "hidden to protect the privacy" in view.sections("A")["headline"]
        assert parts["units"].count("<tr>") == 1 + 2   # header + schools A and B

    def test_status_is_escaped(self):
        html = dashboards.status_html('<b>"x"</b>', unit='"><script>')
        assert "<script>" not in html and "<b>" not in html
        assert 'role="status"' in html

    def test_staff_days(self):
        assert dashboards._days(22.208333) == "22.2"
        assert dashboards._days(63) == "63"
        assert dashboards._days(None) == ""


class TestPublicDashboard:
    def test_callbacks_and_query(self, tiny):
        app = PublicDashboard(root=tiny["releases"])
        assert app.source_picker.value == "student-files"
        assert 'data-unit="overview"' in app.status.value
        app.unit_picker.value = "B"
        assert 'data-unit="B"' in app.status.value
        assert "Birch Elementary" in app.sections["headline"].value
        app.apply_query({"unit": "A", "group": "gender"})
        assert app.unit_picker.value == "A" and app.group_picker.value == "gender"
        assert 'data-group="gender"' in app.status.value
        app.apply_query({"unit": "nope", "source": "nope", "group": "nope"})
        assert app.unit_picker.value == "A"

    def test_no_release_says_how_to_make_one(self, tmp_path):
        app = PublicDashboard(root=tmp_path)
        assert "make dashboards" in app.message.value


# ------------------------------------------------------------------------- staff view

class TestStaffView:
    def test_tables(self, tiny):
        view = StaffView(tiny["run"])
        assert [v for _, v in view.schools()] == ["A", "B"]
        tiers = view.tier_list("A")
        assert {"s3", "s4"} <= set(tiers["student_id"])
        assert view.band_changes("A") is None   # no run at the last month end
        parts = view.sections("A")
        assert "No processed run for the last month end" in parts["changes"]
        assert "s3" in _words(parts["tiers"])
        assert "Students to act on" in parts["tiers"]
        recent = view.recent_absences("A")
        assert set(recent["category"]) <= {"excused", "unexcused", "suspension"}

    def test_dashboard_widget(self, tiny):
        app = dashboards.StaffDashboard(processed_dir=tiny["run"])
        assert 'data-school="A"' in app.status.value
        app.apply_query({"school": "B"})
        assert 'data-school="B"' in app.status.value
        assert "Birch Elementary" in app.sections["headline"].value
        app.apply_query({"school": "Z"})
        assert app.school_picker.value == "B"


# ----------------------------------------------------------------------- static export

def test_static_export_is_audited_and_self_contained(tiny, tmp_path):
    out = export_static(tiny["release"], tmp_path / "export")
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    assert pages == ["index.html", "units/A.html", "units/B.html"]
    assert (out / "data" / "public.csv").exists() and (out / "README.txt").exists()
    for page in out.rglob("*.html"):
        html = page.read_text()
        assert "<script" not in html.lower()
        assert not (_words(html) & TINY_IDS), page
        assert "http://" not in DATA_URI.sub("", html).replace(
            "http://www.w3.org", "")
    audit = audit_public_outputs(tiny["run"], [out], load_settings().privacy,
                                 release_folder=tiny["release"])
    assert audit.ok, audit.message()


def test_export_command_moves_the_folder_in_only_after_the_audit(tiny, tmp_path,
                                                                  monkeypatch):
    from types import SimpleNamespace

    from analysis import dashboard_export, paths

    monkeypatch.setenv("ANALYSIS_RELEASES", str(tiny["releases"]))
    monkeypatch.setattr(paths, "PROCESSED_DIR", tiny["run"].parent.parent)
    out = tmp_path / "site"
    assert dashboard_export.main(["--source", "student-files", "--out", str(out)]) == 0
    assert (out / "index.html").exists()
    assert not out.with_name("site.partial").exists()

    failed = SimpleNamespace(ok=False, message=lambda: "audit failed (test).")
    monkeypatch.setattr(dashboard_export, "audit_public_outputs",
                        lambda *a, **k: failed)
    other = tmp_path / "other"
    assert dashboard_export.main(["--source", "student-files",
                                  "--out", str(other)]) == 1
    assert not other.exists() and not other.with_name("other.partial").exists()
    assert dashboard_export.main(["--source", "student-files", "--run", "nope"]) == 2
