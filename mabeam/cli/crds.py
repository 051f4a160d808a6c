"""``mabeam crds``: print the CustomResourceDefinitions, write them, or check committed ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..kube import crdgen

__all__ = ["add_commands", "cmd_crds"]


def cmd_crds(args: argparse.Namespace) -> int:
    if args.check:
        stale = crdgen.check_crds(Path(args.check))
        for name in stale:
            print(f"{name}: differs from the models; run `make crds`", file=sys.stderr)
        return 1 if stale else 0
    if args.write:
        for path in crdgen.write_crds(Path(args.write)):
            print(path)
        return 0
    print("\n---\n".join(crdgen.render_yaml(crd) for crd in crdgen.generate_crds()), end="")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("crds", help="print, write or check the CustomResourceDefinitions")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR", help="write one YAML file per kind into DIR")
    group.add_argument("--check", metavar="DIR", help="exit 1 if DIR's CRDs differ from the models")
    p.set_defaults(func=cmd_crds)
