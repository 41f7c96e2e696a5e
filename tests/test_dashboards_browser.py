"""The dashboards in a real browser: Voila as users get it, driven with Playwright.

Each server is started once per session with
:func:`analysis.dashboard_server.voila_command` (the command ``make dashboards`` and
``make staff-dashboard`` run), on a free loopback port in 8930-8950, and its process
group is stopped at the end. Chromium is Debian's
``/usr/bin/chromium`` (no ``playwright install``; ../shared/STACK.md section 5).

The privacy checks read the page the way a visitor's browser holds it (rendered text
and the live HTML, chart alt text included):

* no student identifier of the run (:func:`analysis.release.student_identifiers`);
* no true value of a hidden cell (:func:`analysis.release.hidden_values`) of the unit
  shown, unless the same figure is published for that unit anyway; and every hidden
  grade or group row in the tables shows the release's coded text, not a number.

Screenshots go to ``reports/screenshots/<name>.png`` (git-ignored) for people to look
at. Missing Chromium, Playwright or data: skipped with the reason, or failed when
``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import pandas as pd
import pytest

from analysis import paths
from analysis.dashboard_server import server_environment, voila_command
from analysis.schema import ALL_GRADES

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Ports this file may use (other tools on this machine use 8900-8920).
PORTS = range(8930, 8951)
SCREENSHOTS = paths.REPORTS_DIR / "screenshots"
PUBLIC_PAGE = "/voila/render/chronic_absence.ipynb"
STAFF_PAGE = "/voila/render/attendance_team.ipynb"
#: Milliseconds to wait for a page or a redraw (a kernel start on a busy 2-core box).
TIMEOUT = 90_000
PERCENT = re.compile(r"(?<![\d.])\d{1,3}\.\d%")
DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+")
WORD = re.compile(r"[A-Za-z0-9_\-]+")
ALNUM = re.compile(r"[A-Za-z0-9]+")


def _words(text: str) -> set[str]:
    """Whole words, and the parts of joined ones (``row-ST000048``)."""
    return set(WORD.findall(text)) | set(ALNUM.findall(text))


def _missing(message: str):
    """Skip with the reason; fail when ``CI=true`` (CI must have everything)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: browser tests must run, not skip).")
    pytest.skip(message)


# ------------------------------------------------------------------------------ data

@dataclass
class SourceData:
    """One source's release as the dashboard opens it, and what must never show."""

    source: str
    release: object            # analysis.release.PublicRelease
    hidden: pd.DataFrame       # hidden cells with their true values
    identifiers: set[str]      # student identifiers of the run

    def forbidden(self, unit: dict | None) -> set[str]:
        """True values of the hidden cells a page about ``unit`` draws from (its
        grades and groups at the as-of date and its trend), less any figure the
        release shows for the same unit (a shown figure may equal a hidden one by
        chance). ``None``: the overview table (every unit now)."""
        def on_page(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame[frame["level"] == self.release.units()[0]["level"]
                          if unit is None else frame["level"] == unit["level"]]
            if unit is not None:
                key = "school_id" if unit["level"] == "school" else "district_id"
                frame = frame[frame[key] == unit["id"]]
            now = pd.to_datetime(frame["as_of_date"]) == self.release.as_of
            trend = (frame["grade"] == ALL_GRADES) & (frame["group_type"] == "all")
            return frame[(now | trend) if unit is not None else (now & trend)]

        values = {v for v in on_page(self.hidden)["true_display"] if v}
        colours = self.release.colours
        if not colours.empty:
            colours = on_page(colours.assign(grade=ALL_GRADES))
        out = values - _published_percents(on_page(self.release.table), colours)
        if unit is None:   # the overview also shows the district above the units
            from analysis.dashboards import PublicView

            parent = PublicView(self.release).parent
            out |= self.forbidden(parent) if parent else set()
        return out


def _published_percents(table: pd.DataFrame, colours: pd.DataFrame) -> set[str]:
    shown = table[~table["suppressed"].astype(bool)]
    out: set[str] = set()
    for col in shown.columns:
        if col in ("chronic_absence_rate", "ci_low", "ci_upp") or (
                col.startswith("share_") and not col.endswith("_display")):
            out |= {f"{v:.1%}" for v in pd.to_numeric(shown[col], errors="coerce")
                    .dropna()}
        elif col == "rate_display" or col.endswith("_display"):
            out |= {str(v) for v in shown[col].dropna()}
    if not colours.empty:
        for col in ("rate_display", "prior_rate_display"):
            if col in colours:
                out |= {str(v) for v in colours[col].dropna()}
    return out


def _source_data(source: str) -> SourceData:
    from analysis.release import (
        hidden_values,
        latest_release,
        load_release,
        student_identifiers,
    )

    release = load_release(latest_release(source))
    run = paths.PROCESSED_DIR / source / release.folder.name
    aggregate = pd.read_parquet(run / "aggregate.parquet")
    return SourceData(source=source, release=release,
                      hidden=hidden_values(release, aggregate),
                      identifiers=student_identifiers(run))


@pytest.fixture(scope="session")
def dashboard_data() -> dict[str, SourceData]:
    """Prepare what the dashboards read (as ``make dashboards`` does), once."""
    from analysis.dashboard_server import ensure_data
    from analysis.pipeline import default_data_dir, prepare_run
    from analysis.release import list_releases
    from analysis.settings import load_settings

    # A fresh clone has no sample district: preparing the run generates it, as
    # `make dashboards` does.
    for source in ("nyc-doe", "ct-edsight"):
        folder = default_data_dir(load_settings(source=source))
        if not folder.exists():
            _missing(f"real data for {source} not found at {folder}")
    ensure_data("public", ["sample", "nyc-doe"])
    ensure_data("staff", ["sample"])
    if not any(r["source"] == "ct-edsight" for r in list_releases()):
        # One district is enough to show the dashboard works on Connecticut data.
        prepare_run(load_settings(source="ct-edsight"), district="Hartford")
    return {s: _source_data(s) for s in ("sample", "nyc-doe", "ct-edsight")}


# --------------------------------------------------------------------------- servers

@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    token: str | None = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _descendants(pid: int) -> list[int]:
    """Every process started under ``pid`` (kernels run in their own sessions)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                out.append(child)
                todo.append(child)
    return out


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (Voila shuts its kernels down), then make
    sure: SIGKILL whatever this server started that is still alive."""
    started = _descendants(process.pid)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def _voila(audience: str, log: Path, token: str | None = None):
    port = _free_port()
    command = voila_command(audience, port)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=server_environment(audience, token),
                                   cwd=paths.PROJECT_ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log=log,
                    token=token)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"voila exited with {process.returncode}:\n"
                            + server.log_tail())
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("voila did not listen within 90 s:\n" + server.log_tail())
            time.sleep(0.3)
        yield server
    finally:
        _stop(process)
        # Voila removes its connection files on a clean shutdown; not when killed.
        found = re.search(r"Storing connection files in (\S+?)\.?$",
                          log.read_text(errors="replace"), re.MULTILINE)
        if found and Path(found.group(1)).name.startswith("voila_"):
            shutil.rmtree(found.group(1), ignore_errors=True)


@pytest.fixture(scope="session")
def public_server(dashboard_data, tmp_path_factory):
    with _voila("public", tmp_path_factory.mktemp("voila") / "public.log") as server:
        yield server


@pytest.fixture(scope="session")
def staff_server(dashboard_data, tmp_path_factory):
    token = uuid.uuid4().hex
    with _voila("staff", tmp_path_factory.mktemp("voila") / "staff.log",
                token=token) as server:
        yield server


# --------------------------------------------------------------------------- browser

@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        _missing(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    yield page
    context.close()


def _open(page, url: str):
    response = page.goto(url, wait_until="domcontentloaded")
    assert response is not None and response.status == 200, url
    return response


def _wait_drawn(page, **data: str) -> None:
    """Wait until the dashboard says it shows ``data`` and its charts have loaded."""
    selector = ".dash-status" + "".join(f'[data-{k}="{v}"]' for k, v in data.items())
    page.wait_for_selector(selector, state="attached")
    page.wait_for_function(
        "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")


def _pick(page, index: int, label: str) -> None:
    """Choose ``label`` in the index-th dropdown of the page, as a reader would."""
    page.locator(".widget-dropdown select").nth(index).select_option(label=label)


def _screenshot(page, name: str) -> Path:
    """The whole dashboard (Voila scrolls inside #rendered_cells, not the page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => { const e = "
                           "document.querySelector('#rendered_cells');"
                           " return e ? e.scrollHeight : document.body.scrollHeight; }")
    page.set_viewport_size({"width": 1280, "height": min(max(900, height + 40), 16000)})
    page.wait_for_timeout(300)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert path.stat().st_size > 10_000, path
    return path


def _page_text(page) -> tuple[str, str]:
    """The rendered text and the live HTML (without the inline chart bytes)."""
    return page.inner_text("body"), DATA_URI.sub("data:", page.content())


def _tables(page) -> list[dict]:
    """Every dashboard table: its caption and rows of cell texts."""
    return page.evaluate("""() => [...document.querySelectorAll('table.dash-table')]
        .map(t => ({caption: t.caption ? t.caption.innerText : '',
                    rows: [...t.querySelectorAll('tbody tr')]
                          .map(r => [...r.cells].map(c => c.innerText.trim()))}))""")


def _assert_private(page, data: SourceData, unit: dict | None) -> None:
    """No student identifier, no hidden value; hidden rows show the coded text."""
    text, markup = _page_text(page)
    words = _words(text) | _words(markup)
    leaked_ids = words & data.identifiers
    assert not leaked_ids, f"{len(leaked_ids)} student identifier(s) on the public page"
    shown = set(PERCENT.findall(text)) | set(PERCENT.findall(markup))
    leaked = shown & data.forbidden(unit)
    assert not leaked, f"hidden figures on the page: {sorted(leaked)}"
    if unit is None:
        return
    # Row by row: a hidden grade or group shows what the release shows.
    from analysis.dashboards import PublicView

    view = PublicView(data.release)
    for what, rows in (("by grade", view.by_grade(unit)),
                       ("by student group", view.by_group(unit))):
        expected = {row["label"]: row["rate_display"] for _, row in
                    rows[rows["suppressed"].astype(bool)].iterrows()}
        table = next((t for t in _tables(page) if what in t["caption"]), None)
        if table is None:
            assert not expected, f"no table {what} although it has hidden rows"
            continue
        seen = 0
        for cells in table["rows"]:
            if cells and cells[0] in expected:
                seen += 1
                assert cells[1] == expected[cells[0]], (cells, expected[cells[0]])
                assert not PERCENT.search(cells[2]), cells
        if what == "by grade":   # the grade table always lists every grade
            assert seen == len(expected), (what, seen, len(expected))


def _unit(data: SourceData, unit_id: str) -> dict:
    return next(u for u in data.release.units() if u["id"] == unit_id)


def _most_hidden_unit(data: SourceData) -> dict:
    """Of the units with the most hidden cells now, the one whose page has the most
    hidden figures that could leak (the hardest page to get right)."""
    hidden = data.hidden[pd.to_datetime(data.hidden["as_of_date"])
                         == data.release.as_of]
    level = data.release.units()[0]["level"]
    key = "school_id" if level == "school" else "district_id"
    ids = {u["id"] for u in data.release.units()}
    counts = hidden[hidden["level"] == level][key].value_counts()
    top = [_unit(data, i) for i in counts.index if i in ids][:8]
    return max(top, key=lambda u: len(data.forbidden(u)))


def _label(unit: dict) -> str:
    return f"{unit['name']} ({unit['id']})"


# ----------------------------------------------------------------------------- public

class TestPublicDashboard:
    def test_sample_overview_then_a_school_then_a_group(self, page, public_server,
                                                        dashboard_data):
        data = dashboard_data["sample"]
        _open(page, public_server.url + PUBLIC_PAGE)
        _wait_drawn(page, source="sample", unit="overview")
        text = page.inner_text("body")
        district = data.release.units()[0]["district_name"]
        assert f"of students at {district} are chronically absent" in text
        for heading in ("Overview", "Over time", "Attendance bands", "By grade",
                        "By student group", "Dashboard colours", "How to read this",
                        "Definition, population and source"):
            assert heading in text, heading
        units = next(t for t in _tables(page)
                     if t["caption"].startswith("Every school"))
        assert len(units["rows"]) == len(data.release.units())
        assert all(re.search(r"Blue|Green|Yellow|Orange|Red", r[3]) or not r[3]
                   for r in units["rows"])
        assert page.locator("figure.chart img").count() >= 4
        _assert_private(page, data, None)
        _screenshot(page, "public-sample-overview")

        school = _most_hidden_unit(data)
        assert data.forbidden(school), "the check below would check nothing"
        _pick(page, 1, _label(school))
        _wait_drawn(page, unit=school["id"])
        headline = page.inner_text(".dash-headline")
        assert school["name"] in headline
        _assert_private(page, data, school)
        _screenshot(page, "public-sample-school")

        _pick(page, 2, "Race/ethnicity")
        _wait_drawn(page, unit=school["id"], group="race_ethnicity")
        groups = next(t for t in _tables(page) if "by student group" in t["caption"])
        assert groups["rows"] and all(r[0].startswith("Race/ethnicity")
                                      for r in groups["rows"])
        _assert_private(page, data, school)

    def test_nyc_district_from_the_query_string_then_the_overview(
            self, page, public_server, dashboard_data):
        data = dashboard_data["nyc-doe"]
        unit = _most_hidden_unit(data)
        query = f"?source=nyc-doe&unit={unit['id']}"
        _open(page, public_server.url + PUBLIC_PAGE + query)
        _wait_drawn(page, source="nyc-doe", unit=unit["id"])
        assert unit["name"] in page.inner_text(".dash-headline")
        assert "Attendance bands need student-level data" in page.inner_text("body")
        _assert_private(page, data, unit)
        _screenshot(page, "public-nyc-district")

        _pick(page, 1, "Overview: all community districts")
        _wait_drawn(page, source="nyc-doe", unit="overview")
        units = next(t for t in _tables(page) if t["caption"].startswith("Every"))
        names = [r[0] for r in units["rows"]]
        assert names[:3] == [f"Community School District {i}" for i in (1, 2, 3)]
        _assert_private(page, data, None)
        _screenshot(page, "public-nyc-overview")

    def test_connecticut_school(self, page, public_server, dashboard_data):
        data = dashboard_data["ct-edsight"]
        school = _most_hidden_unit(data)
        _open(page, public_server.url + PUBLIC_PAGE)
        _wait_drawn(page, source="sample")
        _pick(page, 0, "ct-edsight")
        _wait_drawn(page, source="ct-edsight", unit="overview")
        _pick(page, 1, _label(school))
        _wait_drawn(page, source="ct-edsight", unit=school["id"])
        assert school["name"] in page.inner_text(".dash-headline")
        _assert_private(page, data, school)
        _screenshot(page, "public-ct-school")

    def test_no_source_code_files_or_server_api(self, public_server):
        html = urlopen(public_server.url + PUBLIC_PAGE, timeout=60).read().decode()
        # Sources are stripped: none of the notebook's code reaches the browser.
        for code in ("dashboards.PublicDashboard", "apply_query", "query_params"):
            assert code not in html, code
        for path in ("/voila/files/chronic_absence.ipynb", "/api/kernels",
                     "/api/contents",
                     "/voila/files/%2e%2e/staff/attendance_team.ipynb"):
            with pytest.raises(HTTPError) as refused:
                urlopen(public_server.url + path, timeout=30)
            assert refused.value.code in (403, 404), path

    def test_kernel_channel_refuses_execute_request(self, public_server, tmp_path):
        import websocket

        html = urlopen(public_server.url + PUBLIC_PAGE, timeout=60).read().decode()
        kernel_id = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', html).group(1)
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{public_server.url.rsplit(':', 1)[1]}/api/kernels/"
            f"{kernel_id}/channels", timeout=5)
        session = uuid.uuid4().hex

        def send(msg_type: str, content: dict) -> str:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "visitor", "session": session,
                           "msg_type": msg_type, "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "content": content,
                "channel": "shell", "buffers": []}))
            return msg_id

        marker = tmp_path / "executed-through-the-dashboard"
        info_id = send("kernel_info_request", {})
        exec_id = send("execute_request", {
            "code": f"open({str(marker)!r}, 'w').write('x')", "silent": False,
            "store_history": False, "user_expressions": {}, "allow_stdin": False,
            "stop_on_error": True})
        replies = []
        # Listen for 20 s at most, and 3 s after the kernel answered the info request
        # (a kernel that ran the code would have replied within that time).
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                try:
                    reply = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    continue
                replies.append(reply)
                if reply["parent_header"].get("msg_id") == info_id and \
                        reply["header"]["msg_type"] == "kernel_info_reply":
                    deadline = min(deadline, time.monotonic() + 3)
        finally:
            ws.close()
        # The channel works (the allowed request is answered) ...
        assert any(r["header"]["msg_type"] == "kernel_info_reply"
                   and r["parent_header"].get("msg_id") == info_id for r in replies)
        # ... but code is never run.
        assert not any(r["header"]["msg_type"] == "execute_reply"
                       and r["parent_header"].get("msg_id") == exec_id
                       and r["content"].get("status") == "ok" for r in replies)
        assert not any(r["parent_header"].get("msg_id") == exec_id for r in replies)
        time.sleep(1)
        assert not marker.exists()
        assert '"execute_request", which is not allowed' in \
            public_server.log.read_text(errors="replace")


# ------------------------------------------------------------------------------ staff

class TestStaffDashboard:
    def test_refused_without_the_token(self, page, staff_server, dashboard_data):
        ids = dashboard_data["sample"].identifiers
        for query in ("", "?token=not-the-token"):
            response = page.goto(staff_server.url + STAFF_PAGE + query,
                                 wait_until="domcontentloaded")
            refused = response.status == 403 or "/login" in page.url
            assert refused, (response.status, page.url)
            text, markup = _page_text(page)
            assert "Tier" not in text and page.locator(".dash-status").count() == 0
            assert not (_words(markup) & ids)
        _screenshot(page, "staff-without-token")
        with pytest.raises(HTTPError) as refused:
            urlopen(staff_server.url + "/api/kernels", timeout=30)
        assert refused.value.code in (403, 404)

    def test_token_is_in_no_command_line_and_no_kernel(self, staff_server):
        # `ps` shows every process's command line to every user of the machine;
        # the kernels run dashboard code and need no token either.
        processes = [staff_server.process.pid, *_descendants(staff_server.process.pid)]
        kernels = [pid for pid in processes[1:]
                   if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert kernels, "the staff server has no preheated kernel to look at"
        secret = staff_server.token.encode()
        for pid in processes:
            assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
        for pid in kernels:
            assert secret not in Path(f"/proc/{pid}/environ").read_bytes(), pid

    def test_with_the_token_shows_the_tier_list(self, page, staff_server,
                                                dashboard_data):
        ids = dashboard_data["sample"].identifiers
        _open(page, f"{staff_server.url}{STAFF_PAGE}?token={staff_server.token}")
        page.wait_for_selector(".dash-status", state="attached")
        first = page.get_attribute(".dash-status", "data-school")
        tiers = next(t for t in _tables(page)
                     if t["caption"].startswith("Students to act on"))
        assert tiers["rows"], "empty Tier 2/3 list"
        assert {r[0] for r in tiers["rows"]} <= {"Tier 2", "Tier 3"}
        assert {r[1] for r in tiers["rows"]} <= ids
        text = page.inner_text("body")
        for heading in ("Tier 2 and Tier 3", "Crossed a band this month",
                        "Recent absences", "Supports delivered"):
            assert heading in text, heading

        options = page.locator(".widget-dropdown select option").all_inner_texts()
        other = next(o for o in options if not o.endswith(f"({first})"))
        _pick(page, 0, other)
        school = other.rsplit("(", 1)[1].rstrip(")")
        _wait_drawn(page, school=school)
        tiers = next(t for t in _tables(page)
                     if t["caption"].startswith("Students to act on"))
        assert tiers["rows"] and {r[1] for r in tiers["rows"]} <= ids
        _screenshot(page, "staff-with-token")
