"""Every control of one input, one line each: configured, asked, and what came of it.

The raw answers are in the evidence's ``controls``; this says what a reader asks first: was
the control there at all, did the probe ask it, and did it answer, fail, refuse, or could it
not be reached. "No helper configured", "the helper refused this address (why)" and "the
helper could not be reached" are three different lines. Pure: built from the controls, the
observations and what the sweep was set up with (docs/architecture.md, README "Results").

=============  ===================================================================
outcome        meaning
=============  ===================================================================
answered       asked, and it gave what the rules read (a handshake, a page, a report)
failed         asked, and it gave nothing usable (its own connect or lookup failed,
               an answer that is not the protocol's, the input's deadline ran out)
refused        asked, and it declined (the helper refused the request; a control
               address the safety rule forbids contacting)
unreachable    asked, and it could not be reached (the helper's address)
not_needed     available, but the rules needed no answer from it for this input
not_configured not set up for this sweep (no DoH server, no helper, throughput off)
skipped        available, but the sweep did not ask it (an offline vantage, a spent
               throughput budget); the detail says why
=============  ===================================================================
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from measurements.observations import HTTPObservation, ThroughputObservation, TLSObservation
from probe.classify.controls import http_failed
from probe.classify.evidence import Controls, HelperReport, InputEvidence

Outcome = Literal[
    "answered", "failed", "refused", "unreachable", "not_needed", "not_configured", "skipped"
]
# The helper client's own words (probe/helper/client.py) for a helper that could not be
# asked and for one that refused; tests/probe/test_control_status.py holds them together.
HELPER_UNREACHABLE = "the helper could not be asked"
HELPER_REFUSED = "the helper refused"
THROUGHPUT_CONTROLS = (
    "throughput_innocuous", "throughput_reference", "throughput_helper", "throughput_history",
)  # fmt: skip
_PLANNED = ("tls_innocuous", "tls_at_doh", "http_at_doh", "http_innocuous")
_NO_ANSWER = "asked, no answer before the input's deadline"


@dataclass(frozen=True, slots=True)
class ControlStatus:
    """One control of one input: whether it was there, asked, and what came of it."""

    name: str
    configured: bool
    asked: bool
    outcome: Outcome
    detail: str


@dataclass(frozen=True, slots=True)
class ControlSetup:
    """What the sweep had to ask (counts and flags only: no addresses, no secrets)."""

    doh: int = 0  # DoH servers configured
    helper: bool = False
    references: int = 0  # reference hosts (rule 2's, and the throughput reference)
    innocuous_name: str = "www.example.com"
    throughput: bool = False  # throughput tests enabled


@dataclass(frozen=True, slots=True)
class ThroughputRun:
    """For a throughput URL: whether it was timed, or why not (None: not accessible)."""

    timed: bool
    skipped: str | None = None


_NO_THROUGHPUT_HELPER = ControlStatus(
    "throughput_helper", False, False, "not_configured", "no helper configured"
)


def control_status(
    setup: ControlSetup,
    ev: InputEvidence,
    ctl: Controls,
    asked: frozenset[str] = frozenset(),
    throughput: ThroughputRun | None = None,
    replay_skipped: str | None = None,
) -> tuple[ControlStatus, ...]:
    """One line per control of the input; the throughput controls only for a throughput URL,
    the SNI replay only for an HTTPS name."""
    ref = _reference(setup, ctl)
    if not ctl.vantage_ok:
        why = "the vantage is offline: no input was measured"
        names = ("doh", *_PLANNED, "helper")
        return (ref, *(ControlStatus(n, True, False, "skipped", why) for n in names))
    out = [ref, _doh(setup, ev, ctl)]
    for name in _PLANNED:
        # Asked is configured: the planner asks at DoH's address only what DoH gave.
        configured = setup.doh > 0 or name.endswith("innocuous") or name in asked
        out.append(_planned(name, configured, name in asked, ctl, setup.innocuous_name))
    out.append(_helper(setup, "helper" in asked, ctl.helper, ctl.helper_problem))
    if throughput is not None:
        out += _throughput(setup, throughput, ctl)
    if ev.scheme == "https" and ev.hostname is not None:
        out.append(_replay(setup, ev, ctl, replay_skipped))
    return tuple(out)


def _replay(
    setup: ControlSetup, ev: InputEvidence, ctl: Controls, skipped: str | None
) -> ControlStatus:
    """The SNI replay at the helper's TLS listener (probe.engine.replay)."""
    if not setup.helper or not setup.throughput:
        why = "no helper configured" if not setup.helper else "throughput tests are off"
        return ControlStatus("replay", False, False, "not_configured", why)
    sent = (*ev.replay, *ctl.replay_innocuous)
    if sent:
        ok = [o for o in sent if o.failure is None and o.bytes]
        outcome: Outcome = "answered" if ok else "failed"
        said = (
            f"{len(ev.replay)} transfers naming {ev.hostname} and "
            f"{len(ctl.replay_innocuous)} naming {setup.innocuous_name}, {len(ok)} with bytes"
        )
        return ControlStatus("replay", True, True, outcome, said)
    problem = ctl.replay_problem
    if problem is not None:
        if "no SNI replay listener" in problem:
            return ControlStatus("replay", True, True, "not_configured", problem)
        outcome = "unreachable" if HELPER_UNREACHABLE in problem else "failed"
        outcome = "refused" if HELPER_REFUSED in problem or "safety" in problem else outcome
        return ControlStatus("replay", True, True, outcome, problem)
    if skipped is not None:
        return ControlStatus("replay", True, False, "skipped", skipped)
    return ControlStatus(
        "replay", True, False, "not_needed", "only a name found accessible is replayed"
    )


def as_json(statuses: Sequence[ControlStatus]) -> list[dict[str, Any]]:
    """The statuses as plain dicts for the evidence (field order kept, no type tag)."""
    return [{f.name: getattr(s, f.name) for f in fields(s)} for s in statuses]


def _reference(setup: ControlSetup, ctl: Controls) -> ControlStatus:
    if setup.references == 0:
        return ControlStatus(
            "reference", False, False, "not_configured", "no reference host to check the vantage"
        )
    if ctl.vantage_ok:
        return ControlStatus(
            "reference", True, True, "answered", "a reference host answered before the sweep"
        )
    return ControlStatus(
        "reference", True, True, "failed", f"none of {setup.references} reference hosts answered"
    )


def _doh(setup: ControlSetup, ev: InputEvidence, ctl: Controls) -> ControlStatus:
    if setup.doh == 0:
        return ControlStatus("doh", False, False, "not_configured", "no DoH server configured")
    if ev.hostname is None:
        return ControlStatus("doh", True, False, "not_needed", "the input names an address")
    if not ctl.doh:
        return ControlStatus("doh", True, bool(ev.dns), "failed", _NO_ANSWER)
    # Any DNS response is an answer (NXDOMAIN too: the name is unknown to the control).
    answered = [o for o in ctl.doh if o.rcode is not None]
    said = "; ".join(
        f"{o.resolver}: {', '.join(o.addresses) or o.rcode or o.failure}" for o in ctl.doh
    )
    return ControlStatus("doh", True, True, "answered" if answered else "failed", said)


def _planned(
    name: str, configured: bool, asked: bool, ctl: Controls, innocuous: str
) -> ControlStatus:
    """A control the step planner asks when the rules need it (probe/engine/planner.py)."""
    if not asked:
        if not configured:
            return ControlStatus(name, False, False, "not_configured", "no DoH server configured")
        return ControlStatus(name, True, False, "not_needed", "the rules needed no answer from it")
    tls = {"tls_innocuous": ctl.tls_innocuous, "tls_at_doh": ctl.tls_at_control_addresses}
    http = {"http_innocuous": ctl.http_innocuous, "http_at_doh": ctl.http_at_control_addresses}
    if not tls.get(name) and not http.get(name):
        return ControlStatus(name, configured, True, "failed", _NO_ANSWER)
    outcome, detail = _tls_said(tls[name]) if name in tls else _http_said(http[name])
    if name.endswith("innocuous"):
        detail = f"{detail} (name {innocuous})"
    return ControlStatus(name, configured, True, outcome, detail)


def _tls_said(seen: Sequence[TLSObservation]) -> tuple[Outcome, str]:
    ok = next((o for o in seen if o.failure is None), None)
    if ok is None:
        last = seen[-1]
        return "failed", f"{last.failure} at {last.ip}:{last.port} ({len(seen)} attempts)"
    chain = "chain not checked"
    if ok.cert_valid is not None:
        chain = "chain valid" if ok.cert_valid else f"chain not valid ({ok.cert_failure})"
    return "answered", f"handshake completed at {ok.ip}:{ok.port}, {chain}"


def _http_said(seen: Sequence[HTTPObservation]) -> tuple[Outcome, str]:
    ok = next((o for o in seen if not http_failed(o)), None)
    if ok is not None:
        return "answered", f"status {ok.final.status} from {ok.final.ip}"
    last = seen[-1].final
    if last.refused is not None:
        return "refused", f"not contacted: {last.refused}"
    return "failed", f"{last.failure or 'no answer'} at {last.ip} ({len(seen)} attempts)"


def _helper(
    setup: ControlSetup, asked: bool, report: HelperReport | None, problem: str | None
) -> ControlStatus:
    if not setup.helper:
        return ControlStatus("helper", False, False, "not_configured", "no helper configured")
    if not asked:
        return ControlStatus(
            "helper", True, False, "not_needed", "the rules needed no answer from it"
        )
    if report is not None:
        return ControlStatus("helper", True, True, "answered", _report_text(report))
    return ControlStatus("helper", True, True, *_problem(problem))


def _problem(problem: str | None) -> tuple[Outcome, str]:
    """What became of asking the helper, from the client's account of it."""
    if not problem:
        return "failed", _NO_ANSWER
    if problem.startswith(HELPER_UNREACHABLE):
        return "unreachable", problem
    if problem.startswith(HELPER_REFUSED):
        return "refused", problem
    return "failed", problem


def _report_text(r: HelperReport) -> str:
    yes = {True: "yes", False: "no"}
    parts = [f"connected {yes[r.tcp_ok]}"] if r.tcp_ok is not None else []
    parts += [f"chain valid {yes[r.tls_valid]}"] if r.tls_valid is not None else []
    parts += [f"status {r.status}"] if r.status is not None else []
    parts += [f"first byte {r.first_byte_ms:.0f} ms"] if r.first_byte_ms is not None else []
    return ", ".join(parts) or "a report with nothing measured"


def _throughput(setup: ControlSetup, run: ThroughputRun, ctl: Controls) -> list[ControlStatus]:
    """Rule 7's controls for a throughput URL."""
    names = (
        "throughput_innocuous",
        "throughput_reference",
        "throughput_helper",
        "throughput_history",
    )
    if not setup.throughput:
        return [ControlStatus(n, False, False, "not_configured", "throughput tests are off")
                for n in names]  # fmt: skip
    if not run.timed:
        outcome: Outcome = "skipped" if run.skipped else "not_needed"
        why = run.skipped or "the input was not found accessible: nothing to time"
        out = [ControlStatus(n, True, False, outcome, why) for n in names]
        if not setup.helper:
            out[2] = _NO_THROUGHPUT_HELPER
        return out
    out = [
        _transfers("throughput_innocuous", ctl.throughput_innocuous),
        _transfers("throughput_reference", ctl.throughput_reference),
    ]
    if not setup.helper:
        out.append(_NO_THROUGHPUT_HELPER)
    elif ctl.throughput_helper:
        out.append(_transfers("throughput_helper", ctl.throughput_helper))
    else:
        out.append(ControlStatus("throughput_helper", True, True,
                                 *_problem(ctl.throughput_helper_problem)))  # fmt: skip
    n = len(ctl.throughput_history)
    out.append(ControlStatus(
        "throughput_history", True, True, "answered" if n else "failed",
        f"{n} earlier tests of this input at this vantage" if n
        else "no earlier test of this input at this vantage",
    ))  # fmt: skip
    return out


def _transfers(name: str, seen: tuple[ThroughputObservation, ...]) -> ControlStatus:
    rates = [o.goodput_kbps for o in seen if o.failure is None and o.goodput_kbps is not None]
    if not rates:
        failures = sorted({o.failure or "no body byte" for o in seen}) or ["no transfer"]
        return ControlStatus(name, True, True, "failed", ", ".join(failures))
    return ControlStatus(
        name, True, True, "answered",
        f"{len(rates)} of {len(seen)} transfers, median {statistics.median(rates):.0f} kbit/s",
    )  # fmt: skip
