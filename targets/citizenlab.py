"""Import Citizen Lab test lists (url,category_code,...) as target lists.

URLs are grouped into one service per registrable-ish domain ("www.facebook.com" and
"m.facebook.com" -> "facebook-com"). Without the Public Suffix List this is a heuristic:
hosting platforms (livejournal.com, github.io) fold their users' sites into one service,
which is acceptable because verdicts are still recorded per URL. A group takes the
category of its first row. Codes map GRP -> social, COMT -> messaging, anything else ->
"other"; "other" exists only for imports (see targets.model.IMPORT_CATEGORIES).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

from targets.model import (
    Service,
    TargetError,
    TargetErrors,
    TargetList,
    read_text,
    url_problem,
)

CODE_CATEGORIES: dict[str, str] = {"GRP": "social", "COMT": "messaging"}
REQUIRED_COLUMNS = ("url", "category_code")

# Second-level labels under which country registries sell names (bbc.co.uk, gov.kz sites).
_SECOND_LEVEL = frozenset(
    {
        "ac",
        "co",
        "com",
        "edu",
        "go",
        "gob",
        "gouv",
        "gov",
        "in",
        "mil",
        "ne",
        "net",
        "nic",
        "or",
        "org",
        "sch",
    }
)


def category_for(code: str) -> str:
    """The probe's category for a Citizen Lab code (case-insensitive)."""
    return CODE_CATEGORIES.get(code.strip().upper(), "other")


def parse_codes(text: str) -> set[str]:
    """Category codes from a --category value such as "GRP,comt" -> {"GRP", "COMT"}."""
    return {code.strip().upper() for code in text.split(",") if code.strip()}


def is_csv(source: str) -> bool:
    """True when a TargetList's source names a Citizen Lab CSV file."""
    return source.lower().endswith(".csv")


def registrable(host: str) -> str:
    """The registrable-ish part of a host: the last two labels, three under co.uk-like zones."""
    host = host.lower().removesuffix(".")
    if ":" in host or re.fullmatch(r"[\d.]+", host):
        return host  # an IP literal is its own site
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def service_name(domain: str) -> str:
    """A valid service name from a domain: "facebook.com" -> "facebook-com"."""
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        pass  # the substitution below still yields a valid name
    name = re.sub(r"[^a-z0-9-]+", "-", domain.lower()).strip("-")
    return name[:64].rstrip("-") or "site"


def _unique(name: str, taken: set[str]) -> str:
    """name, or name-2, name-3... whichever is not taken yet."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        suffix = f"-{number}"
        candidate = name[: 64 - len(suffix)].rstrip("-") + suffix
    return candidate


def parse_csv(text: str, source: str, categories: set[str] | None = None) -> TargetList:
    """Parse Citizen Lab CSV text; only rows whose code is in categories (all if None)."""
    wanted = {code.upper() for code in categories} if categories is not None else None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise TargetErrors([TargetError(source, 1, f"invalid CSV: {exc}")]) from exc
    columns = [column.strip().lower() for column in header or []]
    if not all(column in columns for column in REQUIRED_COLUMNS):
        message = "header must name the columns url and category_code"
        raise TargetErrors([TargetError(source, 1, message)])
    url_at, code_at = columns.index("url"), columns.index("category_code")

    errors: list[TargetError] = []
    groups: dict[str, tuple[str, list[str]]] = {}  # domain -> (category, urls)
    seen_urls: set[str] = set()
    rows = 0
    while True:
        line = reader.line_num + 1  # where the row starts; a quoted field may span lines
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(TargetError(source, line, f"invalid CSV: {exc}"))
            break  # the reader cannot resynchronise after a broken quote
        if not any(cell.strip() for cell in row):
            continue
        rows += 1
        if len(row) <= max(url_at, code_at):
            errors.append(TargetError(source, line, f"expected {len(columns)} columns"))
            continue
        url, code = row[url_at].strip(), row[code_at].strip().upper()
        if not code:
            errors.append(TargetError(source, line, "empty", field="category_code"))
            continue
        if wanted is not None and code not in wanted:
            continue  # rows nobody asked for are not judged either
        if problem := url_problem(url):
            errors.append(TargetError(source, line, problem, field="url"))
            continue
        if url in seen_urls:
            continue  # repeated rows would only repeat the measurement
        seen_urls.add(url)
        domain = registrable(urlsplit(url).hostname or "")
        groups.setdefault(domain, (category_for(code), []))[1].append(url)
    if rows == 0 and not errors:
        errors.append(TargetError(source, 1, "no rows after the header: nothing to test"))
    if errors:
        raise TargetErrors(errors)

    services: list[Service] = []
    taken: set[str] = set()
    for domain, (category, urls) in groups.items():
        name = _unique(service_name(domain), taken)
        taken.add(name)
        services.append(Service(name, category, tuple(urls), ()))
    return TargetList(tuple(services), (), source)


def load_csv(path: str | Path, categories: set[str] | None = None) -> TargetList:
    """Load a Citizen Lab CSV file; categories are codes such as {"GRP", "COMT"}.

    A filter that matches no row gives an empty list rather than an error, so a country
    list without such rows can still be merged with the global one.
    """
    path = Path(path)
    return parse_csv(read_text(path), str(path), categories)
