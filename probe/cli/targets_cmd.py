"""``probe targets list|check``: what would be measured, and whether a list is valid."""

from __future__ import annotations

import argparse
from typing import Any

from probe.cli.render import print_json, table
from probe.cli.run import load_target_list


def register(sub: Any) -> None:
    """Add the commands to the parser."""
    p = sub.add_parser("targets", help="list or check target lists")
    tsub = p.add_subparsers(dest="targets_command", required=True)
    lp = tsub.add_parser("list", help="the services and inputs a sweep would measure")
    lp.add_argument("--targets", action="append", metavar="FILE", help="default: bundled list")
    lp.add_argument("--category", metavar="CODES", help="for .csv lists, e.g. GRP,COMT")
    lp.add_argument("--json", action="store_true")
    lp.set_defaults(handler=list_targets)
    cp = tsub.add_parser("check", help="validate target files (exit 2 with every error)")
    cp.add_argument("files", nargs="+", metavar="FILE")
    cp.add_argument("--category", metavar="CODES", help="for .csv lists, e.g. GRP,COMT")
    cp.set_defaults(handler=check_targets)


def list_targets(args: argparse.Namespace) -> int:
    """Services with their inputs."""
    targets = load_target_list(args.targets, args.category)
    if args.json:
        print_json(
            "targets",
            {
                "source": targets.source,
                "references": list(targets.references),
                "services": [
                    {
                        "name": s.name, "category": s.category, "urls": list(s.urls),
                        "endpoints": [str(e) for e in s.endpoints],
                    }
                    for s in targets.services
                ],
            },
        )  # fmt: skip
        return 0
    rows = [(s.name, s.category, len(s.urls), len(s.endpoints)) for s in targets.services]
    print(table(("service", "category", "urls", "endpoints"), rows))
    print(
        f"\n{len(targets.services)} services, {len(targets.inputs())} inputs from {targets.source}"
    )
    return 0


def check_targets(args: argparse.Namespace) -> int:
    """Load each file; errors propagate to main (exit 2)."""
    targets = load_target_list(args.files, args.category)
    print(f"ok: {len(targets.services)} services, {len(targets.inputs())} inputs")
    return 0
