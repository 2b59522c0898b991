"""The field readers of the helper's protocol (probe.helper.protocol), and its one error.

A reader takes a JSON value and the field's path and returns the field's Python value, or
raises ``ProtocolError`` naming the path; it never raises anything else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from measurements.addresses import is_ip


class ProtocolError(ValueError):
    """A message that is not what the protocol says; the text names the field first."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path


Reader = Callable[[Any, str], Any]


def text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(path, "expected a string")
    return value


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(path, "expected true or false")
    return value


def integer(low: int, high: int | None = None) -> Reader:
    expected = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"

    def read(value: Any, path: str) -> int:
        # bool is an int to Python, not to JSON; a float is not a count even when whole.
        if type(value) is not int or value < low or (high is not None and value > high):
            raise ProtocolError(path, f"expected {expected}")
        return value

    return read


def number(low: float, high: float | None = None) -> Reader:
    expected = f"a number {low:g}-{high:g}" if high is not None else f"a number >= {low:g}"

    def read(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(path, f"expected {expected}")
        try:
            number = float(value)  # a 3,000-digit integer overflows here
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or number < low or (high is not None and number > high):
            raise ProtocolError(path, f"expected {expected}")
        return number

    return read


def ip_address(value: Any, path: str) -> str:
    if not isinstance(value, str) or not is_ip(value):
        raise ProtocolError(path, "expected an IP address")
    return value


def one_of(choices: tuple[str, ...], expected: str | None = None) -> Reader:
    expected = expected or f"one of {', '.join(choices)}"

    def read(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ProtocolError(path, f"expected {expected}")
        return value

    return read


@dataclass(frozen=True, slots=True)
class Optional:
    """A field that may be null (or absent)."""

    reader: Reader

    def __call__(self, value: Any, path: str) -> Any:
        return None if value is None else self.reader(value, path)


def list_of(reader: Reader) -> Reader:
    def read(value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ProtocolError(path, "expected a list")
        return tuple(reader(item, f"{path}[{i}]") for i, item in enumerate(value))

    return read
