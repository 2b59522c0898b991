"""What to test: service lists as data (TOML), their validating loader, Citizen Lab import."""

from targets.citizenlab import load_csv
from targets.load import load_default, load_many, load_targets, merge, parse_toml
from targets.model import (
    CATEGORIES,
    Endpoint,
    Input,
    Service,
    TargetError,
    TargetErrors,
    TargetList,
)

__all__ = [
    "CATEGORIES",
    "Endpoint",
    "Input",
    "Service",
    "TargetError",
    "TargetErrors",
    "TargetList",
    "load_csv",
    "load_default",
    "load_many",
    "load_targets",
    "merge",
    "parse_toml",
]
