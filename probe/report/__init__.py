"""Reports over the store: per service and vantage, what was blocked or throttled, since when,
at which hours of the day, and at what rates (``probe report``).

query.py aggregates in the database into the frozen shapes of model.py; hours.py finds a
verdict concentrated in a few hours; text.py, serialize.py and html.py (with plots.py, which
alone imports matplotlib) render a report.

Nothing is imported here: ``probe report``'s flags are parsed before the store is loaded
(probe/cli/__init__.py), so each caller imports the module it uses.
"""
