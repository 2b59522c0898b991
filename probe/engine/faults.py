"""Verdicts of the probe's own faults, never the network's: a bug, or too busy to time.

probe.error   the measurement or classification of the input raised (a bug to report)
probe.busy    the input's failure was a wait the probe itself was too busy to time
              (probe.engine.lag): its event loop ran late, so the deadline says nothing
              of the network
"""

from __future__ import annotations

import traceback

from measurements.failures import describe
from probe.classify.common import inconclusive
from probe.classify.verdict import Verdict


def error_verdict(exc: Exception) -> Verdict:
    """``inconclusive`` / ``probe.error`` for an input whose measurement raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    return inconclusive(
        "probe.error",
        "probe.error",
        f"The probe failed on this input ({type(exc).__name__}): a bug, not a "
        "measurement. Please report it.",
        error_type=type(exc).__name__,
        error=describe(exc),
        at=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in where],
    )


def busy_verdict(verdict: Verdict, starved: list[object], exceeded_while_busy: bool) -> Verdict:
    """``inconclusive`` / ``probe.busy`` for an input whose failure the probe caused by being
    too busy to time it (a starved last attempt, or a deadline lag ate); else ``verdict``.

    An accessible input stays accessible: what answered, answered.
    """
    if verdict.verdict == "accessible" or not (starved or exceeded_while_busy):
        return verdict
    return inconclusive(
        "probe.busy",
        "probe.busy",
        "The probe was too busy to time this input (its event loop ran late while it waited):"
        " the probe's fault, not the network's. Measure it again on a quieter machine.",
        unbusy_verdict=f"{verdict.verdict} {verdict.detail}",
        starved_attempts=len(starved),
        deadline_while_busy=exceeded_while_busy,
    )
