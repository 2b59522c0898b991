"""``probe consent``: what a sweep does and who may see it; accept it, or withdraw."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli.render import print_json
from probe.config import CONSENT_TEXT, CONSENT_VERSION, consent_path, current_state, load_settings
from probe.config import consent as consent_store


def register(sub: Any) -> None:
    """Add the command to the parser."""
    p = sub.add_parser(
        "consent", help="what a sweep measures, stores and shows to the network; accept it"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--accept", action="store_true", help="record that you accept the text")
    group.add_argument("--revoke", action="store_true", help="remove the recorded acceptance")
    p.add_argument("--config", metavar="FILE", help="config file (TOML; its vantage.consent)")
    p.add_argument("--json", action="store_true", help="print the state as JSON")
    p.set_defaults(handler=consent)


def consent(args: argparse.Namespace) -> int:
    """Print the text and the state, or change the recorded acceptance."""
    settings = load_settings({}, args.config)
    if args.accept:
        consent_store.accept()
        message = f"accepted (version {CONSENT_VERSION}), recorded in {consent_path()}"
    elif args.revoke:
        had = consent_store.revoke()
        message = f"removed {consent_path()}" if had else "nothing was recorded"
    else:
        message = None
    state = current_state(settings)
    if args.json:
        print_json(
            "consent",
            {
                "accepted": state.accepted,
                "source": state.source,
                "version": state.version,
                "current_version": CONSENT_VERSION,
                "accepted_at": state.accepted_at,
                "problem": state.problem,
                "text": CONSENT_TEXT,
            },
        )
        return 0
    if message is None:
        print(CONSENT_TEXT)
    else:
        print(f"consent: {message}")
    print(f"consent: {state.describe()}")
    if args.revoke and state.accepted:
        print("consent: the config still accepts for this machine (vantage.consent)")
    return 0
