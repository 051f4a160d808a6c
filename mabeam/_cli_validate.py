"""``mabeam validate -f PATH``: check manifests offline against the MABEAM CRD schemas.

Every ``mabeam.io`` object in the files (YAML, several documents per file; directories are
searched for ``*.yaml``/``*.yml``/``*.json``) is validated with :func:`mabeam._schema.validate`
in strict mode, as ``kubectl apply --validate=strict`` would be by the API server: unknown fields
are errors, and the CEL rules run. Each problem is one line
``file:doc-index: Kind/name: field.path: message`` (documents count from 0); the exit status is
1 if there is any. Objects of other API groups are skipped with a note on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from . import _crdgen
from .models._base import GROUP

__all__ = ["add_command", "validate_paths"]

_SUFFIXES = (".yaml", ".yml", ".json")


def _files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        else:
            yield path


def _schemas() -> dict[str, dict[str, Any]]:
    """Each mabeam.io kind's openAPIV3Schema, for every served version (``apiVersion -> kind``)."""
    out: dict[str, dict[str, Any]] = {}
    for crd in _crdgen.generate_crds():
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[f"{GROUP}/{version['name']}/{kind}"] = version["schema"]["openAPIV3Schema"]
    return out


def validate_paths(paths: list[str], out: TextIO, notes: TextIO) -> int:
    """Validate every document; print problems to ``out``, skips to ``notes``; return the count."""
    from . import _schema  # needs cel-python (the [local] extra)

    schemas = _schemas()
    problems = 0
    checked = 0
    for path in _files(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{path}: cannot read: {exc}", file=out)
            problems += 1
            continue
        for index, doc in enumerate(documents):
            where = f"{path}:{index}"
            if doc is None:
                continue
            if not isinstance(doc, dict):
                print(f"{where}: not an object (a {type(doc).__name__})", file=out)
                problems += 1
                continue
            api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
            name = str((doc.get("metadata") or {}).get("name") or "<no name>")
            if not api_version.startswith(f"{GROUP}/"):
                print(
                    f"{where}: {kind or '<no kind>'}/{name}: skipped "
                    f"({api_version or 'no apiVersion'} is not a {GROUP} kind)",
                    file=notes,
                )
                continue
            schema = schemas.get(f"{api_version}/{kind}")
            if schema is None:
                known = sorted({key.rsplit("/", 1)[1] for key in schemas})
                print(
                    f"{where}: {kind}/{name}: unknown {api_version} kind {kind!r} "
                    f"(known: {', '.join(known)})",
                    file=out,
                )
                problems += 1
                continue
            checked += 1
            errors = []
            if not (doc.get("metadata") or {}).get("name"):
                errors.append("metadata.name: Required value")
            _, found = _schema.validate(doc, schema, strict=True)
            errors.extend(str(e) for e in found)
            for error in errors:
                print(f"{where}: {kind}/{name}: {error}", file=out)
            problems += len(errors)
    print(f"{checked} MABEAM object(s) checked, {problems} problem(s).", file=notes)
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    missing = [p for p in args.filename if not Path(p).exists()]
    if missing:
        print(f"Error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 1 if validate_paths(args.filename, sys.stdout, sys.stderr) else 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("validate", help="check manifests offline against the MABEAM CRD schemas (strict)")
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="a file or directory of YAML (repeatable)"
    )
    p.set_defaults(func=cmd_validate)
