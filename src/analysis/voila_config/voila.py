"""Voila settings the command line cannot carry, for :mod:`analysis.dashboard_server`.

Voila reads this file because the launcher points ``--Voila.config_file_paths`` at
this folder (and nowhere else, so no stray ``voila.py`` in the working folder or a
user's Jupyter folder changes the hardened settings).

* The cell that waits for the visitor's query string has no time limit: in a
  preheated kernel it waits until someone visits, which may be hours. Every other
  cell keeps the limit (``$ANALYSIS_VOILA_TIMEOUT`` seconds). Without this, a pool
  kernel that waited longer than the limit showed the next visitor "Cell execution
  timed out".
* The token: the launcher hands it over in ``$ANALYSIS_VOILA_TOKEN`` (a command-line
  flag would show it to every user of the machine in ``ps``). It is taken out of the
  environment here, before any kernel starts, so no kernel inherits it. A staff
  server without one refuses to start.
* Public server only: the page's "shut my kernel down" request on leaving carries
  no XSRF token (Voila 0.5 with jupyter_server 2), so it was refused and every
  kernel lived until culled. The public server has no login to forge requests
  against, so the check is off there; the staff server keeps it and relies on the
  culler.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when Voila loads this file)

_LIMIT = int(os.environ.get("ANALYSIS_VOILA_TIMEOUT", "60"))


def _cell_timeout(cell):
    """No limit for the cell waiting for the visitor; the limit for the rest."""
    return None if "query_params()" in cell.source else _LIMIT


c.VoilaExecutor.timeout_func = _cell_timeout

_public = os.environ.get("ANALYSIS_DASHBOARD_AUDIENCE") == "public"
_token = os.environ.pop("ANALYSIS_VOILA_TOKEN", "")
if not _public and not _token:
    raise ValueError("The staff dashboard is never served without a token: start it "
                     "with `make staff-dashboard`.")
c.Voila.token = "" if _public else _token
if _public:
    c.Voila.tornado_settings = {"disable_check_xsrf": True}
