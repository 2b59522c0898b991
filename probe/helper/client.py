"""Asking the control helper what an input looks like from an uncensored network.

The helper is another machine: what it answers is read through probe.helper.protocol's
validator before any of it reaches the evidence. An unreachable helper, a refusal or an
answer that is not the protocol's is no answer (a missing control, never an exception that
reaches the sweep); ``ask_check``, ``ask_throughput``, ``ask_health`` and ``ask_whoami``
also say why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from measurements import trust
from measurements.failures import failure_of
from measurements.observations import ThroughputObservation
from probe.classify.evidence import HelperReport
from probe.helper.protocol import (
    CheckReport,
    CheckRequest,
    ErrorBody,
    Health,
    ProtocolError,
    ThroughputReport,
    ThroughputRequest,
    Whoami,
    transfer_time_limit,
)

_MAX_REASON = 200  # characters of the helper's own refusal kept: it is another machine's text


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """What came of asking for a check: the helper's report, or why there is none."""

    report: HelperReport | None
    problem: str | None = None  # None when there is a report


@dataclass(frozen=True, slots=True)
class ThroughputAnswer:
    """What came of asking for a throughput test: the helper's transfers, or why none."""

    transfers: tuple[ThroughputObservation, ...] = ()
    problem: str | None = None  # None when the helper answered


class HelperClient:
    """One HTTP client to the helper for the whole sweep."""

    def __init__(
        self, base_url: str, ca_bundle: str | None, timeout: float, *, token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._ca_bundle = ca_bundle
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    async def check(self, input_: str, address: str) -> HelperReport | None:
        """The helper's view of ``input_`` at ``address``; None when the helper failed."""
        return (await self.ask_check(input_, address)).report

    async def ask_check(self, input_: str, address: str) -> CheckAnswer:
        """The helper's view of ``input_`` at ``address``, or why there is none."""
        request = CheckRequest(input_, address)
        data, problem = await self._ask(request.PATH, request.to_json(), self._timeout)
        if problem is not None:
            return CheckAnswer(None, problem)
        try:
            return CheckAnswer(CheckReport.from_json(data).evidence())
        except ProtocolError as exc:
            return CheckAnswer(None, str(exc))

    async def throughput(
        self, url: str, address: str, *, max_bytes: int, max_seconds: float, trials: int
    ) -> tuple[ThroughputObservation, ...]:
        """The helper's timed downloads of ``url`` from ``address``; () when it failed."""
        answer = await self.ask_throughput(
            url, address, max_bytes=max_bytes, max_seconds=max_seconds, trials=trials
        )
        return answer.transfers

    async def ask_throughput(
        self, url: str, address: str, *, max_bytes: int, max_seconds: float, trials: int
    ) -> ThroughputAnswer:
        """The helper's timed downloads of ``url`` from ``address``, or why there are none."""
        request = ThroughputRequest(url, address, max_bytes, max_seconds, trials)
        seconds = transfer_time_limit(trials, max_seconds) + self._timeout
        data, problem = await self._ask(request.PATH, request.to_json(), seconds)
        if problem is not None:
            return ThroughputAnswer((), problem)
        try:
            # All or nothing: a helper that sends one transfer wrong is not trusted for others.
            return ThroughputAnswer(ThroughputReport.from_json(data).transfers)
        except ProtocolError as exc:
            return ThroughputAnswer((), str(exc))

    async def ask_health(self) -> tuple[Health | None, str | None]:
        """The helper's health answer (where its SNI replay listens), or why there is none."""
        data, problem = await self._ask(Health.PATH, None, self._timeout)
        if problem is not None:
            return None, problem
        try:
            return Health.from_json(data), None
        except ProtocolError as exc:
            return None, str(exc)

    async def ask_whoami(self, seconds: float | None = None) -> tuple[Whoami | None, str | None]:
        """Where the helper places this probe (ASN, network, country), or why it does not."""
        data, problem = await self._ask(Whoami.PATH, None, seconds or self._timeout)
        if problem is not None:
            return None, problem
        try:
            return Whoami.from_json(data), None
        except ProtocolError as exc:
            return None, str(exc)

    async def _ask(
        self, path: str, body: dict[str, Any] | None, seconds: float
    ) -> tuple[Any, str | None]:
        """The JSON of the helper's 200 answer, or None and why there is none."""
        try:
            response = await self._post(path, body, seconds=seconds)
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: e.g. its trust anchors
            # The helper being unreachable is a missing control, not an observation.
            return None, f"the helper could not be asked: {failure_of(exc)}"
        try:
            data = response.json()
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            return None, f"the helper's answer ({response.status_code}) is not JSON"
        if response.status_code == 200:
            return data, None
        try:
            why = ErrorBody.from_json(data).error[:_MAX_REASON]
        except ProtocolError:
            why = "no reason given"
        return None, f"the helper refused ({response.status_code}): {why}"

    async def _post(
        self, path: str, body: dict[str, Any] | None, *, seconds: float
    ) -> httpx.Response:
        if self._client is None:
            ctx = await trust.context_async(self._ca_bundle)
            # trust_env off: an environment proxy must not stand between probe and helper.
            # As many connections as the helper checks at once by default (16), and half of
            # what it lets one address hold (32): more would wait there or be turned away.
            self._client = httpx.AsyncClient(
                verify=ctx, trust_env=False, timeout=self._timeout, headers=self._headers,
                limits=httpx.Limits(max_connections=16),
            )  # fmt: skip
        url = f"{self.base_url}{path}"
        if body is None:
            return await self._client.get(url, timeout=seconds)
        return await self._client.post(url, json=body, timeout=seconds)

    async def aclose(self) -> None:
        """Close the client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
