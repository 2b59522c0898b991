"""Load target lists: TOML files (validated, every error located by line), CSV via citizenlab.

tomllib reports positions only for syntax errors, so a Locator finds the lines of keys and
values in the raw text; it is a heuristic over the text, good for the files people write,
and it falls back to the enclosing [[service]] header (or line 1) when unsure.
"""

from __future__ import annotations

import bisect
import difflib
import re
import tomllib
from collections import Counter
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from targets import citizenlab
from targets.model import (
    CATEGORIES,
    Endpoint,
    Service,
    TargetError,
    TargetErrors,
    TargetList,
    name_problem,
    quoted,
    read_text,
    url_problem,
)

TOO_DEEP = "invalid TOML: arrays or tables nested too deeply"
TOP_KEYS = ("reference", "service")
SERVICE_KEYS = ("name", "category", "urls", "endpoints", "throughput_url")

# Any table header: [a], [a.b], [[a]], [["a"]]. The first dotted part is the top-level key.
_HEADER = re.compile(r"""^\s*\[(\[)?\s*([^\[\]#]+?)\s*\](?(1)\])\s*(?:#.*)?$""")
_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _assigns(line: str, key: str) -> bool:
    """True if a line assigns key: `key =`, `"key" =`, `'key' =` or a dotted `key.x =`."""
    # Plain string tests, not a regex built from the key: a key may be a megabyte long.
    text = line.lstrip()
    for spelled in (key, f'"{key}"', f"'{key}'"):
        if text.startswith(spelled) and text[len(spelled) :].lstrip()[:1] in ("=", "."):
            return True
    return False


class Locator:
    """Finds the line of a [[service]] table, a key, or a value in TOML source text."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self._headers: list[tuple[int, str, bool]] = []  # (0-based line, top key, is array)
        for number, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                top = match.group(2).split(".")[0].strip().strip("\"'")
                self._headers.append((number, top, match.group(1) is not None))
        self._services = [n for n, top, array in self._headers if top == "service" and array]
        self._starts = [n for n, _, _ in self._headers]  # in file order: sorted, for bisect

    def service_line(self, index: int) -> int:
        """1-based line of the index-th (1-based) [[service]] header."""
        if 1 <= index <= len(self._services):
            return self._services[index - 1] + 1
        # The services were written inline (service = [{...}]): point at that key.
        return self.key_line(None, "service")

    def _block(self, index: int | None) -> range:
        """0-based line numbers of a service's block (index None: the top-level block)."""
        # A block ends at the next header of any kind; a line beginning with "[" inside a
        # multi-line array would end it early, which only costs precision, never a crash.
        if index is None or not 1 <= index <= len(self._services):
            end = self._headers[0][0] if self._headers else len(self.lines)
            return range(0, end)
        start = self._services[index - 1]
        # The next header after it, found by bisection: a scan per value made a 2,000-service
        # list quadratic to load.
        following = bisect.bisect_right(self._starts, start)
        end = self._starts[following] if following < len(self._starts) else len(self.lines)
        return range(start, end)

    def key_line(self, index: int | None, key: str) -> int:
        """1-based line where key is assigned in a service (or at top level, index None)."""
        for number in self._block(index):
            if _assigns(self.lines[number], key):
                return number + 1
        if index is None:
            # An unknown top-level key may be a table of its own: [key] or [[key]].
            for number, top, _ in self._headers:
                if top == key:
                    return number + 1
            return 1
        return self.service_line(index)

    def value_line(self, index: int | None, key: str, value: Any, occurrence: int = 1) -> int:
        """1-based line of the occurrence-th appearance of value after key (else key's line)."""
        start = self.key_line(index, key) - 1
        if isinstance(value, str):
            needles = [f'"{value}"', f"'{value}'"]
        elif isinstance(value, bool):
            needles = [str(value).lower()]
        else:
            needles = [str(value)]
        seen = 0
        block = self._block(index)
        for number in range(max(start, block.start), block.stop):
            text = self.lines[number]
            seen += sum(text.count(needle) for needle in needles)
            if seen >= occurrence:
                return number + 1
        return start + 1


class _Checker:
    """Validates parsed TOML into a TargetList, collecting every error with its line."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.locate = Locator(text)
        self.errors: list[TargetError] = []
        self.block: int | None = None  # the [[service]] being checked; None: top level
        self.where: dict[str, Any] = {}  # how errors name that service

    def error(self, line: int | None, message: str, field: str | None = None) -> None:
        self.errors.append(TargetError(self.source, line, message, field=field, **self.where))

    def key_line(self, key: str) -> int:
        return self.locate.key_line(self.block, key)

    def unknown_keys(self, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {quoted(close[0])}?" if close else ""
                self.error(self.key_line(key), f"unknown key {quoted(key)}{hint}", key)

    def strings(self, raw: Any, key: str) -> list[tuple[str, str, int]]:
        """(field, string, line) for each item of a list field; reports what is no string."""
        if not isinstance(raw, list):
            self.error(self.key_line(key), "must be a list of strings", key)
            return []
        out = []
        seen: Counter[str] = Counter()
        for position, item in enumerate(raw):
            seen[repr(item)] += 1
            line = self.locate.value_line(self.block, key, item, seen[repr(item)])
            field = f"{key}[{position}]"
            if not isinstance(item, str):
                self.error(line, f"must be a string, not {quoted(item)}", field)
            elif seen[repr(item)] > 1:
                self.error(line, f"{quoted(item)} is listed twice", field)
            else:
                out.append((field, item, line))
        return out

    def urls(self, raw: Any, key: str) -> tuple[str, ...]:
        good = []
        for field, url, line in self.strings(raw, key):
            if problem := url_problem(url):
                self.error(line, problem, field)
            else:
                good.append(url)
        return tuple(good)

    def service(self, raw: dict[str, Any], index: int) -> Service | None:
        """The service of the index-th [[service]] table, or None if it has errors."""
        self.block = index
        header = self.locate.service_line(index)
        name = raw.get("name")
        # A missing or non-string name cannot label the errors: fall back to "service #n".
        usable = isinstance(name, str) and name != ""
        self.where = {"service": name} if usable else {"index": index}
        before = len(self.errors)
        self.unknown_keys(raw, SERVICE_KEYS)
        if name is None:
            self.error(header, "missing (every service needs a name)", "name")
        elif not isinstance(name, str):
            self.error(self.key_line("name"), "must be a string", "name")
        elif problem := name_problem(name):
            self.error(self.key_line("name"), problem, "name")
        category = raw.get("category")
        allowed = " or ".join(sorted(CATEGORIES))
        if category is None:
            self.error(header, f"missing (one of {allowed})", "category")
        elif not isinstance(category, str) or category not in CATEGORIES:
            line = self.key_line("category")
            self.error(line, f"{quoted(category)} is not {allowed}", "category")
        urls = self.urls(raw.get("urls", []), "urls")
        endpoints = []
        for field, text, line in self.strings(raw.get("endpoints", []), "endpoints"):
            try:
                endpoint = Endpoint.parse(text)
            except ValueError as exc:
                self.error(line, str(exc), field)
                continue
            if endpoint in endpoints:  # spelt differently: "A.test:443" and "a.test:443"
                self.error(line, f"{quoted(text)} is listed twice (as {endpoint})", field)
            else:
                endpoints.append(endpoint)
        if not raw.get("urls") and not raw.get("endpoints"):
            self.error(header, "has neither urls nor endpoints: nothing to test")
        throughput = raw.get("throughput_url")
        if throughput is not None:
            line = self.key_line("throughput_url")
            if not isinstance(throughput, str):
                self.error(line, "must be a string", "throughput_url")
            elif problem := url_problem(throughput):
                self.error(line, problem, "throughput_url")
        self.block, self.where = None, {}
        if len(self.errors) > before:
            return None  # the list is rejected anyway; only the errors matter now
        return Service(str(name), str(category), urls, tuple(endpoints), throughput)

    def target_list(self, data: dict[str, Any]) -> TargetList:
        """The validated list; raises TargetErrors with every problem, sorted by line."""
        self.unknown_keys(data, TOP_KEYS)
        references = self.urls(data.get("reference", []), "reference")
        raw_services = data.get("service", [])
        tables_only = "must be an array of tables, written [[service]]"
        if not isinstance(raw_services, list):
            self.error(self.key_line("service"), tables_only, "service")
            raw_services = []
        services: list[Service] = []
        first_seen: dict[str, int] = {}  # name -> line of its first definition
        for index, raw in enumerate(raw_services, start=1):
            if not isinstance(raw, dict):
                self.error(self.key_line("service"), tables_only, "service")
                continue
            service = self.service(raw, index)
            name = raw.get("name")
            if isinstance(name, str) and name:
                line = self.locate.key_line(index, "name")
                if name in first_seen:
                    message = f"duplicate name (first defined at line {first_seen[name]})"
                    self.errors.append(
                        TargetError(self.source, line, message, field="name", service=name)
                    )
                else:
                    first_seen[name] = line
            if service is not None:
                services.append(service)
        if not raw_services and not self.errors:
            blank = not any(
                line.strip() and not line.lstrip().startswith("#") for line in self.locate.lines
            )
            self.error(1, "empty file" if blank else "no [[service]] tables: nothing to test")
        if self.errors:
            # A stable sort by line: the user reads and fixes the file top to bottom.
            raise TargetErrors(sorted(self.errors, key=lambda e: e.line or 0))
        return TargetList(tuple(services), references, self.source)


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> TargetError:
    """A TargetError from tomllib's message, moving its "(at line L, column C)" into fields."""
    message = str(exc)
    match = _POSITION.search(message)
    if not match:
        return TargetError(source, None, f"invalid TOML: {message}")
    message = message[: match.start()]
    if match.group(1):
        return TargetError(
            source, int(match.group(1)), f"invalid TOML: {message}", column=int(match.group(2))
        )
    return TargetError(
        source, max(1, len(text.splitlines())), f"invalid TOML: {message} (at end of file)"
    )


def parse_toml(text: str, source: str) -> TargetList:
    """Parse and validate TOML target text; raises TargetErrors listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetErrors([_syntax_error(exc, text, source)]) from exc
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: bad input, not a crash.
        raise TargetErrors([TargetError(source, None, TOO_DEEP)]) from None
    return _Checker(text, source).target_list(data)


def load_targets(path: str | Path, categories: set[str] | None = None) -> TargetList:
    """Load a target file: .csv as a Citizen Lab list (filtered by categories), else TOML.

    categories (Citizen Lab codes such as GRP, COMT) applies to .csv files only.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return citizenlab.load_csv(path, categories)
    return parse_toml(read_text(path), str(path))


def load_default() -> TargetList:
    """The bundled list, targets/default.toml."""
    text = resources.files("targets").joinpath("default.toml").read_text(encoding="utf-8")
    return parse_toml(text, "targets/default.toml")


def _union(first: Service, second: Service) -> Service:
    """Two imports of one site (a global and a country list) as one service."""
    urls = first.urls + tuple(u for u in second.urls if u not in first.urls)
    endpoints = first.endpoints + tuple(e for e in second.endpoints if e not in first.endpoints)
    return Service(first.name, first.category, urls, endpoints, first.throughput_url)


def merge(lists: Iterable[TargetList]) -> TargetList:
    """One list from several; a service name defined in two files is an error naming both.

    Exception: Citizen Lab imports name services after their domain, and a country list may
    hold other URLs of a domain the global list has; two such imports are combined.
    """
    services: list[Service] = []
    origin: dict[str, tuple[int, str]] = {}  # name -> (position in services, source)
    references: list[str] = []
    sources: list[str] = []
    errors: list[TargetError] = []
    for target_list in lists:
        sources.append(target_list.source)
        references.extend(r for r in target_list.references if r not in references)
        for service in target_list.services:
            if service.name not in origin:
                origin[service.name] = (len(services), target_list.source)
                services.append(service)
                continue
            position, first_source = origin[service.name]
            if citizenlab.is_csv(first_source) and citizenlab.is_csv(target_list.source):
                services[position] = _union(services[position], service)
            else:
                errors.append(
                    TargetError(
                        target_list.source,
                        None,
                        f"also defined in {first_source}",
                        service=service.name,
                    )
                )
    if errors:
        raise TargetErrors(errors)
    return TargetList(tuple(services), tuple(references), ", ".join(sources))


def load_many(paths: Iterable[str | Path], categories: set[str] | None = None) -> TargetList:
    """Load and merge several --targets files, reporting the errors of all of them at once."""
    lists: list[TargetList] = []
    errors: list[TargetError] = []
    for path in paths:
        try:
            lists.append(load_targets(path, categories))
        except TargetErrors as exc:
            errors.extend(exc.errors)
    try:
        merged = merge(lists)
    except TargetErrors as exc:
        errors.extend(exc.errors)
    if errors:
        raise TargetErrors(errors)
    return merged
