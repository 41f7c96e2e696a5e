"""Serve dashboards via Voila, hardened (``make dashboards``, ``make staff-dashboard``).

``python -m analysis.dashboard_server public`` serves ``notebooks/dashboards/public``
and ``… staff`` serves ``notebooks/dashboards/staff``. :func:`voila_command` is the
one place the settings live, so the browser tests and the load benchmark start
exactly what users get:

* **loopback only** by default (``--Voila.ip=127.0.0.1``); put a proxy in front to
  publish it, and pass ``--ip`` only on purpose;
* **a token for staff**: read from ``$STAFF_DASHBOARD_TOKEN`` or the file
  ``.cache/staff-dashboard.token`` (made on first use, readable by its owner only);
  the staff server refuses to start without one. It reaches Voila through the
  server's environment, never its command line (which every user of the machine
  can read with ``ps``), and ``voila_config/voila.py`` takes it out of the
  environment before any kernel starts;
* **no template or theme override** from the query string, **tracebacks hidden**;
* **idle kernels culled** (every minute, after five idle minutes) and an
  **execution timeout** on every cell;
* **preheated kernels** (a small pool per notebook) so a page loads in about a
  second once the pool is warm; the notebooks read the query string the
  preheat-safe way (:func:`analysis.dashboards.query_params`);
* **a served folder that holds only the dashboards**, and no file served from it.

Voila itself refuses ``execute_request`` messages from the browser, so a visitor
cannot run code through the kernel channel (a test checks it).
"""

from __future__ import annotations

import argparse
import os
import secrets
import stat
import sys
from pathlib import Path

from analysis import paths
from analysis.log import configure_logging, logger

FOLDERS = {"public": paths.NOTEBOOKS_DIR / "dashboards" / "public",
           "staff": paths.NOTEBOOKS_DIR / "dashboards" / "staff"}
DEFAULT_PORTS = {"public": 8866, "staff": 8867}
TOKEN_FILE = paths.PROJECT_ROOT / ".cache" / "staff-dashboard.token"
TOKEN_ENV = "STAFF_DASHBOARD_TOKEN"
#: The variable that hands the token to ``voila_config/voila.py`` (then removed).
VOILA_TOKEN_ENV = "ANALYSIS_VOILA_TOKEN"

#: Seconds: how often to look for idle kernels, and how idle is too idle.
CULL_INTERVAL = 60
CULL_IDLE_TIMEOUT = 300
#: Seconds a dashboard cell may run.
EXECUTION_TIMEOUT = 60
#: The folder of the one ``voila.py`` the servers read.
VOILA_CONFIG = Path(__file__).resolve().parent / "voila_config"
#: Preheated kernels kept ready per notebook.
POOL_SIZE = 2
#: A regular expression that matches no path (``a`` can never precede the start).
NOTHING = "a^"


def voila_command(audience: str, port: int, ip: str = "127.0.0.1",
                  pool_size: int = POOL_SIZE, folder: Path | None = None,
                  cull_idle_timeout: int = CULL_IDLE_TIMEOUT) -> list[str]:
    """The Voila command line for one audience, with every hardening setting.

    The staff token is not on it: :func:`server_environment` carries it.

    Raises
    ------
    ValueError
        For an unknown audience.
    """
    _check_audience(audience)
    folder = Path(folder or FOLDERS[audience])
    command = [
        sys.executable, "-m", "voila", str(folder),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--VoilaConfiguration.allow_template_override=NO",
        "--VoilaConfiguration.allow_theme_override=NO",
        "--VoilaConfiguration.show_tracebacks=False",
        # Serve no file from the folder: the dashboards need none. (An allowlist
        # entry that matches nothing replaces the default "images" entry. It must
        # not look like a Python literal such as "(?!)": traitlets would warn that
        # the "[...]"/"(...)" form for lists is deprecated.)
        "--VoilaConfiguration.file_allowlist", NOTHING,
        "--VoilaConfiguration.file_denylist", ".*",
        f"--MappingKernelManager.cull_interval={CULL_INTERVAL}",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_timeout}",
        f"--VoilaExecutor.timeout={EXECUTION_TIMEOUT}",
        # Settings a command line cannot carry (voila_config/voila.py says which).
        "--Voila.config_file_paths", str(VOILA_CONFIG),
    ]
    if pool_size > 0:
        command += ["--preheat_kernel=True", f"--pool_size={pool_size}"]
    return command


def _check_audience(audience: str) -> None:
    if audience not in FOLDERS:
        raise ValueError(f"audience must be one of {sorted(FOLDERS)}, got {audience!r}")


def served_files(audience: str, folder: Path | None = None) -> list[Path]:
    """Everything in a served folder (it must hold only dashboard notebooks)."""
    folder = Path(folder or FOLDERS[audience])
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and ".ipynb_checkpoints" not in p.parts)


def check_served_folder(audience: str, folder: Path | None = None) -> None:
    """Refuse to serve a folder holding anything but dashboard notebooks.

    Raises
    ------
    ValueError
        Naming the files that do not belong.
    """
    stray = [p for p in served_files(audience, folder) if p.suffix != ".ipynb"]
    if stray:
        raise ValueError(f"The served folder must hold only dashboards; remove "
                         f"{[str(p) for p in stray]}.")


def staff_token(create: bool = True) -> str:
    """The staff token: ``$STAFF_DASHBOARD_TOKEN``, else the token file (made once)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip()
    if not create:
        return ""
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    TOKEN_FILE.write_text(secrets.token_urlsafe(32) + "\n")
    TOKEN_FILE.chmod(stat.S_IRUSR | stat.S_IWUSR)
    logger.info("made a staff token in %s (readable by you only)", TOKEN_FILE)
    return TOKEN_FILE.read_text().strip()


def server_environment(audience: str, token: str | None = None) -> dict[str, str]:
    """Environment for the server and its kernels (state kept inside the project).

    Parameters
    ----------
    audience : {"public", "staff"}
        Which dashboards the server serves.
    token : str, optional
        The staff token (:func:`staff_token`); required for staff, ignored for
        public. ``voila_config/voila.py`` reads it and removes it, so the kernels
        never see it.

    Raises
    ------
    ValueError
        For the staff audience without a token, or an unknown audience.
    """
    _check_audience(audience)
    if audience == "staff" and not token:
        raise ValueError("The staff dashboard shows student identifiers and is never "
                         "served without a token.")
    env = dict(os.environ)
    env.pop(TOKEN_ENV, None)  # handed over below, then removed by voila.py
    env[VOILA_TOKEN_ENV] = token if audience == "staff" else ""
    cache = paths.PROJECT_ROOT / ".cache"
    env.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
    env.setdefault("IPYTHONDIR", str(cache / "ipython"))
    env.pop("MPLBACKEND", None)   # STACK.md P6: it would remove every chart
    # Read by voila_config/voila.py.
    env["ANALYSIS_DASHBOARD_AUDIENCE"] = audience
    env["ANALYSIS_VOILA_TIMEOUT"] = str(EXECUTION_TIMEOUT)
    if audience == "public":
        # Public kernels are pointed at releases only (nothing student-level there).
        from analysis.release import release_root

        env["ANALYSIS_RELEASES"] = str(release_root())
    return env


def ensure_data(audience: str, sources: list[str]) -> None:
    """Prepare what a dashboard reads when it is missing.

    Public: a release for each source. Staff: the newest processed run of each
    source and the run at the month end before it (for "crossed a band this
    month").
    """
    import pandas as pd

    from analysis.dashboards import latest_processed
    from analysis.pipeline import prepare_run
    from analysis.release import list_releases
    from analysis.settings import load_settings

    for source in sources:
        settings = load_settings(source=source)
        if audience == "public":
            if not any(r["source"] == source for r in list_releases()):
                logger.info("no public release for %s yet: preparing it", source)
                prepare_run(settings)
            continue
        try:
            folder = latest_processed(source)
        except FileNotFoundError:
            folder = prepare_run(settings).folder
        as_of = pd.Timestamp(folder.name)
        previous = (as_of - pd.offsets.MonthEnd(1)).date()
        if not (folder.parent / previous.isoformat() / "students.parquet").exists():
            logger.info("preparing %s as of %s for band changes", source, previous)
            prepare_run(settings, as_of=previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.dashboard_server",
                                     description="Serve a dashboard folder with Voila.")
    parser.add_argument("audience", choices=sorted(FOLDERS))
    parser.add_argument("--port", type=int)
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to listen on (loopback by default; use a proxy)")
    parser.add_argument("--pool-size", type=int, default=POOL_SIZE)
    parser.add_argument("--prepare", nargs="*", default=[], metavar="SOURCE",
                        help="first prepare what the dashboard reads for these "
                             "sources, when missing")
    args = parser.parse_args(argv)
    configure_logging()

    check_served_folder(args.audience)
    ensure_data(args.audience, args.prepare)
    token = staff_token() if args.audience == "staff" else None
    port = args.port or DEFAULT_PORTS[args.audience]
    env = server_environment(args.audience, token)
    command = voila_command(args.audience, port, ip=args.ip,
                            pool_size=args.pool_size)
    if args.ip != "127.0.0.1":
        logger.warning("listening on %s, not loopback: put a TLS proxy in front",
                       args.ip)
    url = f"http://{args.ip}:{port}/"
    hint = ("?token=<the token in " + str(TOKEN_FILE) + " or $" + TOKEN_ENV + ">"
            if token else "")
    # The folder's page lists the notebooks; name each dashboard's own address too.
    pages = " ".join(f"{url}voila/render/{p.relative_to(FOLDERS[args.audience])}{hint}"
                     for p in served_files(args.audience))
    logger.info("serving the %s dashboards at %s%s (Ctrl-C stops); open %s",
                args.audience, url, hint, pages)
    os.execve(command[0], command, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
