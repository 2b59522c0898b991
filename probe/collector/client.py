"""``probe upload``'s loop: send the outbox in batches, retry what may succeed later.

Each batch is one gzip POST, in id order. A 2xx moves the outbox's mark for this collector
past the batch (outbox.py), and only a 2xx: the collector answers it after its commit. A
429, 503, any 5xx, a timeout or a dropped connection is retried with exponential backoff and
full jitter (honouring Retry-After), at most ``attempts`` times; a 413 halves the batch (a
413 for a single measurement is refused for good, unmarked). Any other 4xx
will not change by retrying: it stops the upload and says why (the field the collector
named). What was acknowledged stays marked whatever happens later.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from probe.collector import outbox, wire
from probe.store.database import Database

MAX_BODY = 4 << 20  # bytes per upload as sent; under the collector's default 8 MiB


class UploadRefused(Exception):
    """The collector refused an upload for good (a 4xx: bad token, a field it rejects)."""


class CollectorUnavailable(Exception):
    """The collector kept failing (or could not be reached) through every attempt."""


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently to try one batch."""

    attempts: int = 6
    base: float = 0.5  # seconds before the second attempt, at most (full jitter)
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt counts from 0)."""
        backoff = random.uniform(0, min(self.cap, self.base * 2**attempt))
        return max(backoff, min(retry_after or 0.0, self.cap))


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What one ``probe upload`` did."""

    sent: int  # measurements acknowledged
    stored: int  # of which new to the collector
    duplicates: int  # of which it held already (an earlier answer that never arrived)
    batches: int
    pending: int  # still in the outbox


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error", response.text)
    except ValueError:
        error = response.text[:200]
    return f"the collector answered {response.status_code}: {error}"


class Uploader:
    """Sends one database's outbox to one collector."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        batch_size: int = 500,
        retry: Retry = Retry(),
        timeout: float = 60.0,
        say: Callable[[str], None] = lambda _: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = outbox.collector_url(url)  # whose mark the outbox keeps
        self.endpoint = self.url + wire.PATH
        self.headers = {"Authorization": f"Bearer {token}", "Content-Encoding": "gzip",
                        "Content-Type": "application/json"}  # fmt: skip
        self.batch_size, self.retry, self.say, self.sleep = batch_size, retry, say, sleep
        self.client = httpx.Client(timeout=timeout, trust_env=False)

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def send(self, db: Database) -> UploadResult:
        """Upload every pending measurement; raises UploadRefused or CollectorUnavailable."""
        sent = stored = duplicates = batches = 0
        size, after = self.batch_size, outbox.mark(db, self.url)
        while (batch := outbox.next_batch(db, size, after)).ids:
            body = wire.encode(batch.runs, batch.measurements)
            if len(body) > MAX_BODY and size > 1:
                size = max(1, size // 2)
                continue
            response = self._post(self.headers, body)
            if response.status_code == 413:
                if size == 1:  # never marked: the next upload tries it again
                    raise UploadRefused(_refusal(response))
                size = max(1, size // 2)
                continue
            answer = response.json()
            after = batch.ids[-1]
            outbox.advance(db, self.url, after)
            sent += len(batch.ids)
            stored += int(answer.get("stored", 0))
            duplicates += int(answer.get("duplicates", 0))
            batches += 1
            self.say(f"sent {sent} measurements ({duplicates} the collector had already)")
        return UploadResult(sent, stored, duplicates, batches, outbox.pending_count(db, self.url))

    def delete_mine(self) -> int:
        """Ask the collector to delete everything this token uploaded; how many went."""
        headers = {"Authorization": self.headers["Authorization"]}
        return int(self._request("DELETE", headers, None).json().get("deleted", 0))

    def _post(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self._request("POST", headers, body)

    def _request(self, method: str, headers: dict[str, str], body: bytes | None) -> httpx.Response:
        """One request, retried while retrying may help; a 2xx or 413, else an exception."""
        problem = ""
        for attempt in range(self.retry.attempts):
            retry_after: float | None = None
            try:
                response = self.client.request(method, self.endpoint, headers=headers, content=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                code = response.status_code
                if 200 <= code < 300 or code == 413:
                    return response
                if code not in (408, 429) and code < 500:
                    raise UploadRefused(_refusal(response))
                problem, retry_after = _refusal(response), _retry_after(response)
            if attempt + 1 < self.retry.attempts:
                wait = self.retry.delay(attempt, retry_after)
                self.say(
                    f"{problem}; retrying in {wait:.1f} s ({attempt + 2}/{self.retry.attempts})"
                )
                self.sleep(wait)
        raise CollectorUnavailable(
            f"{self.endpoint}: {problem} (after {self.retry.attempts} attempts; the outbox "
            "keeps what was not acknowledged)"
        )
