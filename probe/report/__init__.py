"""Reports over the store: per service and vantage, what was blocked or throttled, since when,
at which hours of the day, and at what rates (``probe report``).

query.py aggregates in the database into the frozen shapes of model.py; hours.py finds a
verdict concentrated in a few hours; text.py, serialize.py and html.py (with plots.py, which
alone imports matplotlib) render a report.
"""

from probe.report.model import Filters, Report
from probe.report.query import build_report

__all__ = ["Filters", "Report", "build_report"]
