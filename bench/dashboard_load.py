"""Load test of the public dashboard: concurrent viewers on loopback, first render.

``make bench-dashboards`` (or ``python bench/dashboard_load.py --seconds 60
--viewers 20``) measures how the public dashboard behaves when many people open it
at once, on this machine and on loopback only:

1. the public release of the sample district is made if it is missing
   (:func:`analysis.dashboard_server.ensure_data`);
2. Voila is started with exactly the command users get
   (:func:`analysis.dashboard_server.voila_command`, so preheated kernels, culling
   and the execution timeout are the served ones), in its own process group, and
   polled until it answers;
3. one view warms it (not counted);
4. for ``--seconds`` (default 60), ``--viewers`` (default 20) viewers each open the
   dashboard again and again, and each view is followed until its **first render**
   or until ``--view-timeout`` (default 120 s). A view started inside the window is
   followed to its end, so the run can last up to one view timeout longer. Views
   cycle through the overview (no query string) and every school of the release
   (``?school=S101``, the key :func:`analysis.dashboards.query_params` reads).

**What "first render" means.** The content does not come with the page. Voila
0.5 answers HTTP 200 (as soon as it has a kernel for the visit) and streams a
shell whose cell outputs hold only *references* to widgets
(``application/vnd.jupyter.widget-view+json``). A
preheated kernel has run the notebook before the visit; its last cell waits for
the visitor's query string, then redraws the dashboard for that school, and only
then does the page's HTML end. The page's scripts then open
``/api/kernels/<id>/channels``, ask for every widget's state on the
``jupyter.widget.control`` comm and draw the sections from it. A view is
**rendered** when the "Place" dropdown shows the school asked for (or the
overview), the headline paragraph (``.dash-headline``) names that place, and the
charts (``figure.chart img``) are there.

**Two kinds of viewer** (``--client``):

* ``websocket`` (the default): a thread per viewer does what the page's scripts
  do: reads the whole page, opens the kernel's websocket, sends the ``comm_open``
  and ``request_states`` messages of the ipywidgets 8 manager and checks the
  states it gets back (the dropdown, the headline and at least one chart in the
  HTML widgets); it then posts the shutdown request the page sends on
  ``beforeunload``. It fetches no scripts or styles and draws nothing, so nearly
  all the machine goes to the server. The time runs to the arrival of the states.
* ``browser``: a context per viewer in one headless Chromium (``/usr/bin/chromium``
  driven by Playwright); the same three checks run in the page every 0.1 s and
  the time is the page's own clock when they first hold (every chart must also
  have loaded with a non-zero width). After each view the viewer goes to
  ``about:blank``, which fires ``beforeunload``. This is the most faithful, but on
  2 cores it measures the browser: with 20 viewers Chromium used about as much
  CPU as Voila and all its kernels (90 and 109 CPU seconds against 103 and 99 in
  two runs of about two minutes), and every page finished within the same few
  seconds, well after the kernels had done their work.

A view is an **error** when the HTTP status is not 200, when an error output
appears (a kernel error or a cell timeout; Voila hides tracebacks and shows
"There was an error when executing cell" or "Cell execution timed out"), when the
dashboard says no release exists or the content is not the one asked for, or when
the render does not complete within ``--view-timeout`` (what the page showed then
is recorded).

Reported: views completed, errors by kind, first-render time (from the navigation
to the rendered page) p50 / p95 / max, the time to the first response byte for
contrast, the peak resident memory (RSS) of the Voila process plus all its kernel
processes (sampled every half second with psutil), kernels alive, and the CPU time
used by the server, by the client (this script and its browser) and by everything
else on the machine during the run (the machine is shared and has 2 cores, so
this says how much of it the server really had). Raw results go to
``bench/results/dashboard_load.json`` and the Voila log to
``bench/results/dashboard_load_voila.log``; a summary table replaces the section
between ``<!-- dashboard-load:start -->`` and ``<!-- dashboard-load:end -->``
in ``bench/README.md``. Numbers are reported, not asserted; the exit status is 1
when any error occurred. The server is always stopped at the end, also on Ctrl-C
or SIGTERM. A memory guard stops starting new views when the server's processes
pass ``--max-server-gb`` (default 12) or the machine's available memory falls
below 3 GB; it counts as an error only when it trips before the window closes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import html as html_lib
import http.client
import json
import logging
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
MARK_START, MARK_END = "<!-- dashboard-load:start -->", "<!-- dashboard-load:end -->"
NOTEBOOK = "chronic_absence.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage"]
#: Ports this benchmark may use (the first free one is taken).
PORTS = range(8900, 8921)
#: Stop starting views when the machine has less memory available than this.
MIN_AVAILABLE_GB = 3.0
GB = 1024 ** 3
#: How the viewers are made (``--client``).
CLIENTS = {"browser": "one headless Chromium, a context per viewer",
           "websocket": "HTTP + websocket clients doing what the page's scripts do"}

log = logging.getLogger("dashboard_load")

# Evaluated in the page until it returns an object: null while still rendering.
RENDERED_JS = r"""
(school) => {
  const body = document.body;
  if (!body) return null;
  const text = body.textContent || "";
  const err = document.querySelector(
    '[data-mime-type="application/vnd.jupyter.stderr"]');
  if (err || text.includes("There was an error when executing cell")) {
    return {state: "kernel-error",
            detail: (err ? err.innerText : text).slice(0, 300)};
  }
  if (text.includes("No public release has been written yet")) {
    return {state: "missing-content", detail: "no public release"};
  }
  const place = [...document.querySelectorAll(".widget-dropdown")].find(
    (d) => (d.querySelector("label") || {}).textContent === "Place");
  const select = place && place.querySelector("select");
  if (!select || !select.selectedOptions.length) return null;
  // ipywidgets writes option labels with non-breaking spaces
  const chosen = select.selectedOptions[0].text.replace(/\u00a0/g, " ");
  if (school ? !chosen.endsWith("(" + school + ")")
             : !chosen.startsWith("Overview")) return null;
  const name = chosen.replace(/^Overview: /, "").replace(/ \([^)]*\)$/, "");
  const head = document.querySelector(".dash-headline");
  if (!head || !head.textContent.includes(name)) return null;
  const imgs = [...document.querySelectorAll("figure.chart img")];
  if (!imgs.length || !imgs.every((i) => i.complete && i.naturalWidth > 0)) {
    return null;
  }
  const nav = performance.getEntriesByType("navigation")[0] || {};
  return {state: "ok", charts: imgs.length, response_start: nav.responseStart,
          response_end: nav.responseEnd, rendered: performance.now()};
}
"""

# What the page shows when a view times out (for the error record).
DIAGNOSE_JS = r"""
() => {
  const text = (document.body && document.body.innerText) || "";
  return {text: text.replace(/\s+/g, " ").slice(0, 160),
          loading_widget: text.includes("Loading widget"),
          headline: !!document.querySelector(".dash-headline"),
          charts: document.querySelectorAll("figure.chart img").length};
}
"""


# ----------------------------------------------------------------------- records

@dataclass
class View:
    """One view: who asked for what, when, and what came back.

    Attributes
    ----------
    viewer : int
        Viewer number (0 is the warm-up).
    school : str or None
        School in the query string; ``None`` for the overview.
    started : float
        Seconds since the window opened when the navigation started.
    status : int or None
        HTTP status of the page.
    response_s : float or None
        Navigation start to the first byte of the response (the HTTP 200).
    render_s : float or None
        Navigation start to the rendered page (see the module docstring), by the
        page's own clock (``performance.now()`` when the check first held).
    render_wall_s : float or None
        The same seen from this script (adds the browser round trip, at most
        the 0.1 s polling interval more).
    charts : int
        Charts on the rendered page.
    error : str or None
        Kind of error (``http``, ``timeout``, ``kernel-error``,
        ``missing-content``, ``navigation``); ``None`` when rendered.
    detail : str
        What the error looked like.
    """

    viewer: int
    school: str | None
    started: float
    status: int | None = None
    response_s: float | None = None
    render_s: float | None = None
    render_wall_s: float | None = None
    charts: int = 0
    error: str | None = None
    detail: str = ""


@dataclass
class Usage:
    """Memory and CPU of the server and of the client, sampled in a thread."""

    peak_server_rss: int = 0
    peak_kernels: int = 0
    peak_server_rss_at: float = 0.0
    min_available: int = 0
    server_rss: int = 0
    kernels: int = 0
    samples: list = field(default_factory=list)
    guard: str = ""
    guard_at_s: float | None = None


# ------------------------------------------------------------------- the machine

def machine() -> dict:
    """Cores, memory and versions of this machine and of the served stack."""
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from importlib.metadata import version

    return {"cores": os.cpu_count(), "cpu": cpu,
            "memory_gb": round(psutil.virtual_memory().total / GB, 1),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "voila": version("voila"),
            "ipywidgets": version("ipywidgets"), "playwright": version("playwright"),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def free_port(ports=PORTS) -> int:
    """The first port of ``ports`` nobody listens on.

    Raises
    ------
    RuntimeError
        When every port is taken.
    """
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


# -------------------------------------------------------------------- the server

class Server:
    """Voila for the public dashboards, as users get it, in its own process group.

    Parameters
    ----------
    port : int
        Loopback port to serve on.
    log_path : Path
        Where Voila's output goes.
    """

    def __init__(self, port: int, log_path: Path):
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        # Every kernel seen: kernels run in sessions of their own, so stopping the
        # process group would miss them.
        self.kernels: dict[int, psutil.Process] = {}
        #: Bytes of the log written before the stop (to tell the run from the stop).
        self.log_size_at_stop: int | None = None

    def start(self, timeout: float = 120.0) -> float:
        """Start Voila and wait until it answers; returns the seconds it took.

        Raises
        ------
        RuntimeError
            When Voila exits or does not answer within ``timeout``.
        """
        from analysis.dashboard_server import (
            check_served_folder,
            server_environment,
            voila_command,
        )

        check_served_folder("public")
        command = voila_command("public", self.port)
        log.info("starting Voila on %s", self.url)
        started = time.perf_counter()
        with open(self.log_path, "w") as out:
            self.process = subprocess.Popen(
                command, env=server_environment("public"), stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"Voila exited with status "
                                   f"{self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=5) as reply:
                    if reply.status == 200:
                        return time.perf_counter() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Voila did not answer within {timeout:.0f} s")

    def tree(self) -> tuple[psutil.Process | None, list[psutil.Process]]:
        """The Voila process and its kernel (and other child) processes now."""
        if self.process is None:
            return None, []
        try:
            root = psutil.Process(self.process.pid)
            children = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return None, []
        for child in children:
            self.kernels.setdefault(child.pid, child)
        return root, children

    def stop(self, grace: float = 30.0) -> None:
        """Stop Voila (SIGTERM, which shuts its kernels down), then anything left."""
        if self.process is None:
            return
        self.tree()
        if self.log_path.exists():
            self.log_size_at_stop = self.log_path.stat().st_size
        if self.process.poll() is None:
            log.info("stopping Voila (pid %d)", self.process.pid)
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("Voila did not stop in %.0f s: killing it", grace)
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(timeout=10)
        # Kernels Voila did not shut down (psutil checks the pid was not reused).
        left = [k for k in self.kernels.values() if k.is_running()]
        for kernel in left:
            try:
                kernel.terminate()
            except psutil.NoSuchProcess:
                pass
        gone, alive = psutil.wait_procs(left, timeout=10)
        for kernel in alive:
            kernel.kill()
        if left:
            log.warning("%d kernel process(es) outlived Voila and were stopped",
                        len(left))
        self.process = None


class Sampler(threading.Thread):
    """Samples memory of the server tree and CPU of server, client and machine.

    Parameters
    ----------
    server : Server
        The server whose process tree is measured.
    max_server_bytes : int
        Memory guard: past this RSS of the server tree, ``guard`` is set.
    interval : float
        Seconds between samples.
    """

    def __init__(self, server: Server, max_server_bytes: int, interval: float = 0.5):
        super().__init__(daemon=True, name="sampler")
        self.server = server
        self.max_server_bytes = max_server_bytes
        self.interval = interval
        self.usage = Usage(min_available=psutil.virtual_memory().available)
        self.stopped = threading.Event()
        self.origin = self.started_at = time.perf_counter()
        self.cpu: dict[str, dict[int, float]] = {"server": {}, "client": {}}
        self.base: dict[str, dict[int, float]] = {"server": {}, "client": {}}
        self.machine_base = psutil.cpu_times()
        self.machine_cpu = 0.0
        self.guard = threading.Event()

    def mark(self) -> None:
        """Start counting CPU from now (the window opens)."""
        self._sample()
        self.base = {k: dict(v) for k, v in self.cpu.items()}
        self.machine_base = psutil.cpu_times()
        self.started_at = time.perf_counter()

    def cpu_seconds(self) -> dict:
        """CPU seconds used since :meth:`mark` by server, client and the machine."""
        used = {k: sum(max(0.0, t - self.base[k].get(pid, 0.0))
                       for pid, t in self.cpu[k].items()) for k in self.cpu}
        now = psutil.cpu_times()
        busy = sum(getattr(now, f) - getattr(self.machine_base, f)
                   for f in ("user", "nice", "system", "irq", "softirq", "steal"))
        used["machine"] = busy
        used["other"] = max(0.0, busy - used["server"] - used["client"])
        used["wall"] = time.perf_counter() - self.started_at
        return {k: round(v, 1) for k, v in used.items()}

    @staticmethod
    def _cpu(proc: psutil.Process) -> float | None:
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return times.user + times.system

    def _sample(self) -> None:
        root, children = self.server.tree()
        rss, kernels = 0, 0
        for proc in ([root] if root else []) + children:
            try:
                rss += proc.memory_info().rss
                kernels += "ipykernel" in " ".join(proc.cmdline()[:4])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            cpu = self._cpu(proc)
            if cpu is not None:
                self.cpu["server"][proc.pid] = cpu
        server_pids = {p.pid for p in children} | ({root.pid} if root else set())
        me = psutil.Process()   # this script is part of the client (websocket mode)
        for proc in [me] + me.children(recursive=True):
            if proc.pid in server_pids:
                continue
            cpu = self._cpu(proc)
            if cpu is not None:
                self.cpu["client"][proc.pid] = cpu
        available = psutil.virtual_memory().available
        usage = self.usage
        usage.server_rss, usage.kernels = rss, kernels
        usage.min_available = min(usage.min_available, available)
        if rss > usage.peak_server_rss:
            usage.peak_server_rss = rss
            usage.peak_server_rss_at = round(time.perf_counter() - self.origin, 1)
        usage.peak_kernels = max(usage.peak_kernels, kernels)
        usage.samples.append((round(time.perf_counter() - self.origin, 1),
                              round(rss / GB, 3), kernels, round(available / GB, 2)))
        if not self.guard.is_set():
            if rss > self.max_server_bytes:
                usage.guard = (f"server processes reached {rss / GB:.1f} GB "
                               f"(limit {self.max_server_bytes / GB:.1f} GB)")
            elif available < MIN_AVAILABLE_GB * GB:
                usage.guard = (f"machine has {available / GB:.1f} GB available "
                               f"(< {MIN_AVAILABLE_GB:.0f} GB)")
            if usage.guard:
                usage.guard_at_s = round(time.perf_counter() - self.started_at, 1)
                log.warning("memory guard: %s; no new views", usage.guard)
                self.guard.set()

    def run(self) -> None:
        """Sample every ``interval`` seconds until ``stopped`` is set."""
        while not self.stopped.wait(self.interval):
            try:
                self._sample()
            except Exception as exc:  # a sample must never stop the benchmark
                log.debug("sample failed: %s", exc)


# ---------------------------------------------------------------------- viewers

def view_url(base_url: str, school: str | None) -> str:
    """The public dashboard's address, with ``?school=`` when a school is given."""
    url = f"{base_url}/voila/render/{NOTEBOOK}"
    return url + (f"?school={school}" if school else "")


async def open_view(page, base_url: str, viewer: int, school: str | None,
                    t0: float, timeout: float) -> View:
    """Open the dashboard once in ``page`` and wait for its first render.

    Parameters
    ----------
    page : playwright.async_api.Page
        The viewer's tab.
    base_url : str
        The server, ``http://127.0.0.1:<port>``.
    viewer : int
        Viewer number, for the record.
    school : str or None
        School for the query string; ``None`` opens the overview.
    t0 : float
        ``time.perf_counter()`` when the window opened.
    timeout : float
        Seconds the whole view may take.

    Returns
    -------
    View
        The record, with ``error`` set when the view failed.
    """
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    url = view_url(base_url, school)
    start = time.perf_counter()
    view = View(viewer=viewer, school=school, started=round(start - t0, 2))
    try:
        response = await page.goto(url, wait_until="commit", timeout=timeout * 1000)
        view.status = response.status if response else None
        view.response_s = round(time.perf_counter() - start, 3)
        if view.status != 200:
            view.error, view.detail = "http", f"HTTP {view.status}"
            return view
        left = max(1.0, timeout - (time.perf_counter() - start))
        handle = await page.wait_for_function(RENDERED_JS, arg=school,
                                              timeout=left * 1000, polling=100)
        done = await handle.json_value()
        elapsed = time.perf_counter() - start
        if done.get("state") != "ok":
            view.error, view.detail = done.get("state"), done.get("detail", "")
            return view
        view.render_wall_s = round(elapsed, 3)
        rendered = done.get("rendered")
        view.render_s = round(rendered / 1000 if rendered else elapsed, 3)
        view.charts = done.get("charts", 0)
        if done.get("response_start") is not None:
            view.response_s = round(done["response_start"] / 1000, 3)
    except PlaywrightTimeout:
        view.error = "timeout"
        try:
            state = await page.evaluate(DIAGNOSE_JS)
            view.detail = json.dumps(state)
        except PlaywrightError as exc:
            view.detail = str(exc).splitlines()[0]
    except PlaywrightError as exc:
        view.error, view.detail = "navigation", str(exc).splitlines()[0][:300]
    return view


async def viewer_loop(number: int, browser, base_url: str, targets: list,
                      deadline: float, stop: asyncio.Event, t0: float,
                      timeout: float, views: list[View], inflight: set) -> None:
    """One viewer: open the dashboard again and again until the window closes."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    opened = 0
    try:
        while time.perf_counter() < deadline and not stop.is_set():
            school = targets[(number + opened) % len(targets)]
            inflight.add(number)
            view = await open_view(page, base_url, number, school, t0, timeout)
            inflight.discard(number)
            views.append(view)
            opened += 1
            if view.error:
                log.warning("viewer %d: %s %s (%s)", number, view.error,
                            school or "overview", view.detail[:160])
            # Leave the page as a reader does: fires beforeunload (kernel shutdown).
            try:
                await page.goto("about:blank", timeout=30_000)
            except Exception:
                await page.close()
                page = await context.new_page()
    finally:
        inflight.discard(number)
        try:
            await context.close()
        except Exception as exc:  # the browser may be gone already (Ctrl-C)
            log.debug("closing a context: %s", exc)


async def progress(views: list[View], inflight: set, sampler: Sampler, t0: float,
                   every: float, done: asyncio.Event) -> None:
    """Log a line every ``every`` seconds while the viewers run."""
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), timeout=every)
        except asyncio.TimeoutError:
            pass
        ok = sorted(v.render_s for v in views if v.error is None)
        usage = sampler.usage
        log.info("%5.0f s: %d rendered, %d errors, %d in flight, p50 %s s; server "
                 "%.2f GB in %d kernels; load %.1f",
                 time.perf_counter() - t0, len(ok), sum(v.error is not None
                                                        for v in views),
                 len(inflight), f"{statistics.median(ok):.1f}" if ok else "-",
                 usage.server_rss / GB, usage.kernels, os.getloadavg()[0])


class BrowserClient:
    """Viewers as contexts of one headless Chromium (Playwright).

    Parameters
    ----------
    base_url : str
        The server, ``http://127.0.0.1:<port>``.
    """

    name = "browser"

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.version = ""
        self._pw = self._manager = self.browser = None

    async def __aenter__(self) -> BrowserClient:
        from playwright.async_api import async_playwright

        self._manager = async_playwright()
        self._pw = await self._manager.__aenter__()
        self.browser = await self._pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        self.version = f"Chromium {self.browser.version}"
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await self.browser.close()
        except Exception as err:  # the browser may already be gone (Ctrl-C)
            log.debug("closing the browser: %s", err)
        await self._manager.__aexit__(*exc)

    async def warm_up(self, timeout: float) -> View:
        """One view in a context of its own."""
        context = await self.browser.new_context()
        page = await context.new_page()
        view = await open_view(page, self.base_url, 0, None, time.perf_counter(),
                               timeout)
        await page.goto("about:blank")
        await context.close()
        return view

    async def viewer(self, number: int, targets: list, deadline: float,
                     stop: asyncio.Event, t0: float, timeout: float,
                     views: list[View], inflight: set) -> None:
        """One viewer: a context of its own, views until the window closes."""
        await viewer_loop(number, self.browser, self.base_url, targets, deadline,
                          stop, t0, timeout, views, inflight)


class SocketClient:
    """Viewers as HTTP + websocket clients that do what the page's scripts do.

    Each view reads the whole page (Voila streams it while the cells run), opens
    the kernel's websocket, asks for every widget's state on the
    ``jupyter.widget.control`` comm (as the ipywidgets 8 manager does), checks that
    the states hold the rendered dashboard, and finally posts the shutdown beacon
    the page sends on ``beforeunload``. It does not fetch the page's scripts and
    styles or draw anything, so it costs the machine almost nothing.

    Parameters
    ----------
    base_url : str
        The server, ``http://127.0.0.1:<port>``.
    viewers : int
        Threads to keep (one per viewer).
    """

    name = "websocket"

    def __init__(self, base_url: str, viewers: int):
        from concurrent.futures import ThreadPoolExecutor
        from importlib.metadata import version

        self.base_url = base_url
        self.version = f"websocket-client {version('websocket-client')}"
        self.pool = ThreadPoolExecutor(max_workers=viewers + 1,
                                       thread_name_prefix="viewer")

    async def __aenter__(self) -> SocketClient:
        return self

    async def __aexit__(self, *exc) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def warm_up(self, timeout: float) -> View:
        """One view before the window opens."""
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, socket_view, self.base_url, 0, None, time.perf_counter(),
            timeout)

    async def viewer(self, number: int, targets: list, deadline: float,
                     stop: asyncio.Event, t0: float, timeout: float,
                     views: list[View], inflight: set) -> None:
        """One viewer: views one after another until the window closes.

        Parameters
        ----------
        number : int
            Viewer number (1 to ``--viewers``).
        targets : list
            The overview (``None``) and the school ids, taken in turn.
        deadline : float
            ``time.perf_counter()`` after which no view is started.
        stop : asyncio.Event
            Set by the memory guard: start no more views.
        t0 : float
            ``time.perf_counter()`` when the window opened.
        timeout : float
            Seconds one view may take.
        views : list of View
            Where each finished view is appended.
        inflight : set
            Viewers with a view under way (for the progress lines).
        """
        loop = asyncio.get_running_loop()
        opened = 0
        while time.perf_counter() < deadline and not stop.is_set():
            school = targets[(number + opened) % len(targets)]
            inflight.add(number)
            view = await loop.run_in_executor(self.pool, socket_view, self.base_url,
                                              number, school, t0, timeout)
            inflight.discard(number)
            views.append(view)
            opened += 1
            if view.error:
                log.warning("viewer %d: %s %s (%s)", number, view.error,
                            school or "overview", view.detail[:160])


def _kernel_message(msg_type: str, content: dict, session: str,
                    metadata: dict | None = None) -> str:
    """A Jupyter shell message in the websocket's JSON form."""
    import uuid

    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": msg_type,
                   "username": "bench", "session": session, "version": "5.3",
                   "date": dt.datetime.now(dt.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": metadata or {}, "content": content,
        "channel": "shell", "buffers": []})


def check_states(states: dict, school: str | None) -> tuple[str, str, int]:
    """Does a widget state dump hold the rendered dashboard for ``school``?

    Returns
    -------
    tuple
        ``("ok", "", charts)``, or an error kind and what was wrong.
    """
    place, html_values = None, []
    for model in states.values():
        state = model.get("state", {})
        if model.get("model_name") == "DropdownModel" and \
                state.get("description") == "Place":
            place = state
        if model.get("model_name") == "HTMLModel":
            html_values.append(state.get("value") or "")
    text = "".join(html_values)
    if "No public release has been written yet" in text:
        return "missing-content", "no public release", 0
    if place is None or place.get("index") is None:
        return "missing-content", "no Place dropdown with a value", 0
    chosen = place["_options_labels"][place["index"]].replace("\u00a0", " ")
    if (school and not chosen.endswith(f"({school})")) or \
            (not school and not chosen.startswith("Overview")):
        return "missing-content", f"Place shows {chosen!r}", 0
    name = re.sub(r" \([^)]*\)$", "", chosen.removeprefix("Overview: "))
    heads = [v for v in html_values if 'class="dash-headline"' in v]
    if not heads or not any(html_lib.escape(name) in h or name in h for h in heads):
        return "missing-content", f"no headline naming {name!r}", 0
    charts = text.count('<figure class="chart"><img src="data:image/png;base64,')
    if not charts:
        return "missing-content", "no chart", 0
    return "ok", "", charts


def socket_view(base_url: str, viewer: int, school: str | None, t0: float,
                timeout: float) -> View:
    """Open the dashboard once as the page's scripts would, without a browser.

    Parameters
    ----------
    base_url : str
        The server, ``http://127.0.0.1:<port>``.
    viewer : int
        Viewer number, for the record.
    school : str or None
        School for the query string; ``None`` opens the overview.
    t0 : float
        ``time.perf_counter()`` when the window opened.
    timeout : float
        Seconds the whole view may take.

    Returns
    -------
    View
        The record, with ``error`` set when the view failed.
    """
    import uuid

    import websocket

    url = view_url(base_url, school)
    start = time.perf_counter()
    view = View(viewer=viewer, school=school, started=round(start - t0, 2))

    def left() -> float:
        remaining = timeout - (time.perf_counter() - start)
        if remaining <= 0:
            raise TimeoutError
        return remaining

    # Socket timeouts bound each wait, not the view: Voila may keep a page open
    # without a byte (a kernel that died while starting) and the kernel websocket
    # is kept alive by pings. So a timer shuts the sockets at the deadline.
    sockets: list = []
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    kernel_id, ws, conn = None, None, None
    try:
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(base_url).netloc,
                                          timeout=left())
        conn.connect()
        sockets.append(conn.sock)
        conn.request("GET", url.removeprefix(base_url))
        reply = conn.getresponse()
        view.status = reply.status
        view.response_s = round(time.perf_counter() - start, 3)
        page = reply.read().decode("utf-8", "replace")
        conn.close()
        if view.status != 200:
            view.error, view.detail = "http", f"HTTP {view.status}"
            return view
        # Voila writes error outputs (a failed or timed-out cell) into the page as
        # HTML; the browser check finds the same element.
        found = re.search(r'data-mime-type="application/vnd\.jupyter\.stderr">'
                          r'\s*<pre>\s*([^<]{0,200})', page)
        if found or '"output_type": "error"' in page:
            view.error = "kernel-error"
            view.detail = (found.group(1).strip() if found else
                           "error output in the page")
            return view
        found = re.search(r'"kernelId": "([0-9a-f-]+)"', page)
        if not found:
            view.error, view.detail = "missing-content", "no kernel id in the page"
            return view
        kernel_id = found.group(1)
        session = uuid.uuid4().hex
        ws_url = (base_url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}"
                  f"/channels?session_id={session}")
        ws = websocket.create_connection(ws_url, timeout=left())
        sockets.append(ws.sock)
        comm_id = uuid.uuid4().hex
        ws.send(_kernel_message("comm_open", {
            "comm_id": comm_id, "target_name": "jupyter.widget.control", "data": {}},
            session, {"version": "1.0.0"}))
        ws.send(_kernel_message("comm_msg", {
            "comm_id": comm_id, "data": {"method": "request_states"}}, session))
        while True:
            ws.settimeout(left())
            frame = ws.recv()
            if not isinstance(frame, str):
                continue   # binary frames carry buffers; the dashboard sends none
            msg = json.loads(frame)
            kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
            content = msg.get("content", {})
            if kind == "error":
                view.error, view.detail = "kernel-error", content.get("ename", "")
                return view
            if kind == "comm_msg" and content.get("comm_id") == comm_id and \
                    content.get("data", {}).get("method") == "update_states":
                states = content["data"]["states"]
                break
        state, detail, charts = check_states(states, school)
        elapsed = time.perf_counter() - start
        if state != "ok":
            view.error, view.detail = state, detail
            return view
        view.render_s = view.render_wall_s = round(elapsed, 3)
        view.charts = charts
    except (OSError, websocket.WebSocketException, ValueError,
            http.client.HTTPException) as err:
        if expired.is_set() or isinstance(err, (TimeoutError,
                                                websocket.WebSocketTimeoutException)):
            view.error = "timeout"
            view.detail = ("waiting for the widget states" if kernel_id else
                           "waiting for the page" if view.status else
                           "waiting for the response")
        else:
            view.error = "navigation"
            view.detail = f"{type(err).__name__}: {err}"[:300]
    finally:
        watchdog.cancel()
        if conn is not None:
            conn.close()
        if kernel_id:
            leave(base_url, kernel_id)
        if ws is not None:
            try:
                ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass
    return view


def leave(base_url: str, kernel_id: str) -> None:
    """Post what the page posts on ``beforeunload``: a request to shut its kernel.

    Like the browser's ``navigator.sendBeacon``, the answer is not waited for
    long and not checked (Voila 0.5.13 refuses it: see the report in the README).
    """
    data = b"_xsrf="
    request = urllib.request.Request(f"{base_url}/voila/api/shutdown/{kernel_id}",
                                     data=data, method="POST")
    try:
        urllib.request.urlopen(request, timeout=5).close()
    except (urllib.error.URLError, OSError):
        pass


async def run_viewers(client, targets: list, viewers: int, seconds: float,
                      timeout: float, sampler: Sampler, every: float) -> dict:
    """Warm the server with one view, then run the viewers for ``seconds``."""
    async with client:
        log.info("client: %s (%s); warming up with one view", client.name,
                 client.version)
        warm = await client.warm_up(max(timeout, 180))
        if warm.error:
            raise RuntimeError(f"warm-up view failed: {warm.error} {warm.detail}")
        log.info("warm-up view rendered in %.1f s", warm.render_s)

        views: list[View] = []
        inflight: set = set()
        stop, done = asyncio.Event(), asyncio.Event()
        sampler.mark()
        t0 = time.perf_counter()
        deadline = t0 + seconds
        ticker = asyncio.create_task(progress(views, inflight, sampler, t0, every,
                                              done))

        async def guard() -> None:
            while not done.is_set():
                if sampler.guard.is_set():
                    stop.set()
                    return
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(guard())
        log.info("window opens: %d viewers for %.0f s", viewers, seconds)
        try:
            await asyncio.gather(*(client.viewer(n, targets, deadline, stop, t0,
                                                 timeout, views, inflight)
                                   for n in range(1, viewers + 1)))
        finally:
            elapsed = time.perf_counter() - t0
            cpu = sampler.cpu_seconds()
            done.set()
            await asyncio.gather(ticker, watcher, return_exceptions=True)
        return {"warm_up": asdict(warm), "views": views, "elapsed": elapsed,
                "cpu": cpu, "client": client.name, "client_version": client.version,
                "window_opened_s": round(t0 - sampler.origin, 1)}


# ---------------------------------------------------------------------- outputs

def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) by linear interpolation; ``None`` when empty."""
    if not values:
        return None
    values = sorted(values)
    pos = q * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def log_counts(text: str) -> dict:
    """What Voila's log says about kernels and errors."""
    lines = text.splitlines()
    return {
        "kernels_started": text.count("Kernel started:"),
        "kernels_shut_down": text.count("Kernel shutdown:"),
        # The access-log line of each refused request (the warning repeats it).
        "shutdown_refused_403": len(re.findall(
            r"^403 POST /voila/api/shutdown/\S+ \([^)]*\) [\d.]+ms$", text, re.M)),
        "kernels_culled": len(re.findall(r"Culling '\w+' kernel", text)),
        "cell_timeouts": text.count("A cell timed out"),
        "error_lines": sum("ERROR" in line or "Traceback" in line for line in lines),
    }


def summarise(args, result: dict, usage: Usage, server_start_s: float,
              log_path: Path, log_size_at_stop: int | None) -> dict:
    """The figures of one run (what the README table and the JSON show)."""
    views: list[View] = result["views"]
    ok = [v.render_s for v in views if v.error is None]
    first_byte = [v.response_s for v in views if v.response_s is not None]
    errors: dict[str, int] = {}
    for view in views:
        if view.error:
            errors[view.error] = errors.get(view.error, 0) + 1
    # The guard is an error only when it cut the window short (it may also trip
    # after the window, while the last views finish and the pool refills).
    cut_short = usage.guard_at_s is not None and usage.guard_at_s < args.seconds
    if cut_short:
        errors["stopped-by-memory-guard"] = 1
    voila_log = log_path.read_text(errors="replace") if log_path.exists() else ""

    def r(x, n=2):
        return None if x is None else round(x, n)

    return {
        "client": result["client"], "client_version": result["client_version"],
        "viewers": args.viewers, "window_s": args.seconds,
        "view_timeout_s": args.view_timeout,
        "elapsed_s": r(result["elapsed"], 1),
        "views_started": len(views), "views_rendered": len(ok),
        "errors": sum(errors.values()), "errors_by_kind": errors,
        "render_p50_s": r(percentile(ok, 0.5)), "render_p95_s": r(percentile(ok, 0.95)),
        "render_max_s": r(max(ok) if ok else None),
        "render_min_s": r(min(ok) if ok else None),
        "first_byte_p50_s": r(percentile(first_byte, 0.5), 3),
        "first_byte_max_s": r(max(first_byte) if first_byte else None, 3),
        "views_per_minute": r(len(ok) / result["elapsed"] * 60, 1),
        "peak_server_rss_gb": r(usage.peak_server_rss / GB),
        "peak_kernels": usage.peak_kernels,
        "min_available_gb": r(usage.min_available / GB, 1),
        "memory_guard": (f"{usage.guard} at {usage.guard_at_s:.0f} s"
                         + ("" if cut_short else ", after the window closed")
                         if usage.guard else None),
        "cpu_seconds": result["cpu"],
        "server_start_s": r(server_start_s, 1),
        "warm_up_render_s": result["warm_up"]["render_s"],
        # Until the server was told to stop, then the whole log.
        "voila_log_during_run": log_counts(
            voila_log.encode()[:log_size_at_stop].decode(errors="replace")
            if log_size_at_stop is not None else voila_log),
        "voila_log": log_counts(voila_log),
    }


def table(summary: dict, info: dict, command: str, when: str) -> str:
    """The Markdown that goes between the markers in bench/README.md."""
    import textwrap

    s = summary
    cpu = s["cpu_seconds"]
    wall = max(cpu["wall"], 1e-9)
    cores = info["cores"] or 1
    run = s["voila_log_during_run"]

    def fmt(x, spec=".1f"):
        return "-" if x is None else format(x, spec)

    def share(x):
        return f"{x:.0f} ({x / wall / cores:.0%})"

    def para(text):
        return textwrap.fill(text, 88, break_on_hyphens=False, break_long_words=False)

    kinds = ", ".join(f"{k} {n}" for k, n in s["errors_by_kind"].items())
    rows = [
        para(f"Machine: {cores} cores ({info['cpu']}), {info['memory_gb']:.0f} GB, "
             f"Python {info['python']}, Voila {info['voila']}, ipywidgets "
             f"{info['ipywidgets']}."),
        "",
        para(f"Command: `{command}` ({when} UTC; loopback; viewers: "
             f"{CLIENTS[s['client']]}, {s['client_version']}; a view may take "
             f"{s['view_timeout_s']:.0f} s)."),
        "",
        "| viewers | window s | views rendered | errors | first render p50 s | p95 s "
        "| max s | first byte p50 s | peak RSS GB (Voila + kernels) | peak kernels |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['viewers']} | {s['window_s']:.0f} | {s['views_rendered']} "
        f"| {s['errors']}{f' ({kinds})' if kinds else ''} "
        f"| {fmt(s['render_p50_s'])} | {fmt(s['render_p95_s'])} "
        f"| {fmt(s['render_max_s'])} | {fmt(s['first_byte_p50_s'], '.2f')} "
        f"| {fmt(s['peak_server_rss_gb'], '.2f')} | {s['peak_kernels']} |",
        "",
        para(f"The last views ended {s['elapsed_s']:.0f} s after the window opened "
             f"({s['views_per_minute']:.1f} views rendered a minute). CPU in that "
             f"time ({cores} cores = {cpu['wall'] * cores:.0f} core-seconds): Voila "
             f"and its kernels {share(cpu['server'])}, the client "
             f"{share(cpu['client'])}, other work on the machine "
             f"{share(cpu['other'])}. Voila's log until the stop: "
             f"{run['kernels_started']} kernels started, {run['kernels_shut_down']} "
             f"shut down, {run['shutdown_refused_403']} shutdown requests refused "
             f"(403), {run['kernels_culled']} culled, {run['cell_timeouts']} cell "
             f"timeouts."),
    ]
    if s["memory_guard"]:
        rows += ["", para(f"Memory guard (no new views from then on): "
                          f"{s['memory_guard']}.")]
    return "\n".join(rows)


def update_readme(markdown: str) -> None:
    """Replace the dashboard-load section of bench/README.md (add it if absent)."""
    text = README.read_text()
    if MARK_START in text and MARK_END in text:
        start, end = text.index(MARK_START), text.index(MARK_END)
        text = text[:start + len(MARK_START)] + "\n" + markdown + "\n" + text[end:]
    else:
        section = ("## Dashboard load test\n\n"
                   "`make bench-dashboards` (`bench/dashboard_load.py`; `--seconds`,\n"
                   "`--viewers`, `--client browser`): concurrent viewers open the "
                   "public dashboard\non loopback and wait for its first render "
                   "(the dashboard's content arrived,\nnot just the HTTP 200 of the "
                   "shell). How it is measured is in the script's\ndocstring.\n\n"
                   f"{MARK_START}\n{markdown}\n{MARK_END}\n")
        notes = text.find("\n## Notes")
        if notes >= 0:
            text = text[:notes + 1] + section + "\n" + text[notes + 1:]
        else:
            text = text.rstrip("\n") + "\n\n" + section
    README.write_text(text)


def print_summary(summary: dict) -> None:
    """The figures as a small table on standard output."""
    s = summary
    lines = [("client", f"{s['client']} ({s['client_version']})"),
             ("viewers", s["viewers"]), ("window (s)", s["window_s"]),
             ("elapsed incl. views in flight (s)", s["elapsed_s"]),
             ("views started", s["views_started"]),
             ("views rendered", s["views_rendered"]),
             ("errors", f"{s['errors']} {s['errors_by_kind'] or ''}".strip()),
             ("first render p50 / p95 / max (s)",
              f"{s['render_p50_s']} / {s['render_p95_s']} / {s['render_max_s']}"),
             ("first byte (HTTP 200) p50 / max (s)",
              f"{s['first_byte_p50_s']} / {s['first_byte_max_s']}"),
             ("rendered views per minute", s["views_per_minute"]),
             ("peak RSS Voila + kernels (GB)", s["peak_server_rss_gb"]),
             ("peak kernels alive", s["peak_kernels"]),
             ("CPU s: server / client / other / wall",
              "{server} / {client} / {other} / {wall}".format(**s["cpu_seconds"])),
             ("Voila log until the stop", s["voila_log_during_run"])]
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in lines))


# ------------------------------------------------------------------------- main

def release_targets() -> list:
    """The overview (``None``) and every school of the newest sample release."""
    from analysis.release import latest_release, load_release

    release = load_release(latest_release("sample"))
    return [None] + sorted(u["id"] for u in release.units())


def main(argv: list[str] | None = None) -> int:
    """Run the load test; 0 when every view rendered, 1 on any error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60,
                        help="how long viewers keep opening views (default 60)")
    parser.add_argument("--viewers", type=int, default=20,
                        help="concurrent viewers (default 20)")
    parser.add_argument("--view-timeout", type=float, default=120,
                        help="seconds one view may take to render (default 120)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="websocket",
                        help="viewers as HTTP + websocket clients (default) or as "
                             "contexts of one headless Chromium")
    parser.add_argument("--port", type=int,
                        help=f"port (default: first free in {PORTS.start}-"
                             f"{PORTS.stop - 1})")
    parser.add_argument("--max-server-gb", type=float, default=12,
                        help="memory guard for Voila + kernels (default 12)")
    parser.add_argument("--log-every", type=float, default=5,
                        help="seconds between progress lines (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS / "dashboard_load.json",
                        help="raw results (default bench/results/dashboard_load.json;"
                             " Voila's log goes next to it)")
    parser.add_argument("--no-readme", action="store_true",
                        help="do not rewrite the section in bench/README.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    from analysis.dashboard_server import ensure_data
    from analysis.log import configure_logging

    configure_logging()
    command = "python bench/dashboard_load.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    log.info("machine: %d cores, %.0f GB; load average %s", info["cores"],
             info["memory_gb"], info["load_average_at_start"])
    ensure_data("public", ["sample"])
    targets = release_targets()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.with_name(args.out.stem + "_voila.log")
    server = Server(args.port or free_port(), log_path)
    sampler = Sampler(server, int(args.max_server_gb * GB))
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        start_s = server.start()
        log.info("Voila answered after %.1f s", start_s)
        sampler.start()
        client = (BrowserClient(server.url) if args.client == "browser" else
                  SocketClient(server.url, args.viewers))
        result = asyncio.run(run_viewers(client, targets, args.viewers,
                                         args.seconds, args.view_timeout, sampler,
                                         args.log_every))
    except KeyboardInterrupt:
        log.error("interrupted: stopping the server")
        return 130
    except Exception as exc:  # the server is stopped below either way
        log.error("the load test failed: %s: %s", type(exc).__name__,
                  str(exc).splitlines()[0] if str(exc) else "")
        return 1
    finally:
        sampler.stopped.set()
        server.stop()
    summary = summarise(args, result, sampler.usage, start_s, log_path,
                        server.log_size_at_stop)
    raw = {"command": command, "when_utc": when, "machine": info,
           "settings": {"client": args.client, "viewers": args.viewers,
                        "seconds": args.seconds,
                        "view_timeout": args.view_timeout, "port": server.port,
                        "targets": targets, "chromium_args": CHROMIUM_ARGS},
           "summary": summary, "warm_up": result["warm_up"],
           "views": [asdict(v) for v in result["views"]],
           "memory_samples": {"window_opened_s": result["window_opened_s"],
                              "columns": ["s", "server_rss_gb", "kernels",
                                          "available_gb"],
                              "rows": sampler.usage.samples}}
    out = args.out
    out.write_text(json.dumps(raw, indent=1))
    if not args.no_readme:
        update_readme(table(summary, info, command, when))
    print_summary(summary)
    log.info("raw results in %s", out)
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
