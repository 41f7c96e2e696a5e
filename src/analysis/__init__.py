"""Chronic-absence analysis: find, track and act on chronic absence with equity in view.

The package holds every rule and computation; notebooks and dashboards call it.
Data flows one way: input files -> validation (``contract``, ``sources``) -> engine
(``engine``, ``metrics``) -> one aggregate table (``aggregate``) -> reports
(``batch``), the privacy gate (``privacy``) and dashboards.
"""

__version__ = "0.1.0"
