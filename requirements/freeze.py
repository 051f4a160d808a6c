"""Print exact pins of mabeam's runtime dependencies as installed in the running environment.

Usage (from the repository root, with the project's virtualenv active; pip-tools may live in
another virtualenv, and must not see a local find-links directory, so that the hashes are PyPI's):

    python requirements/freeze.py | pip-compile --generate-hashes --no-annotate --strip-extras \
        -o requirements/operator.txt -

The pins are the input of pip-compile, which keeps them (they are exact) and adds the sha256 of
every file PyPI has for each, so that the images download with ``--require-hashes``.

It walks the dependency tree from ``[project.dependencies]`` in pyproject.toml through the
installed distributions' metadata, following the extras that a requirement asks for (e.g.
``httpx2[http2,ws]``); markers are evaluated for the running interpreter, which must be Linux
and the images' Python minor version.
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# Exact pins of the runtime dependencies, as installed (the input of pip-compile --generate-hashes)
"""


def runtime_closure(roots: list[str]) -> dict[str, str]:
    """Map each distribution reachable from ``roots`` to its installed version."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    pending: list[tuple[Requirement, str]] = [(Requirement(r), "") for r in roots]
    while pending:
        req, parent_extra = pending.pop()
        if req.marker and not req.marker.evaluate({"extra": parent_extra}):
            continue
        name = canonicalize_name(req.name)
        dist = md.distribution(name)
        pins[name] = dist.version
        for extra in ("", *sorted(req.extras)):
            if (name, extra) not in seen:
                seen.add((name, extra))
                pending.extend((Requirement(r), extra) for r in dist.requires or ())
    return pins


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = runtime_closure(project["dependencies"])
    sys.stdout.write(HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
