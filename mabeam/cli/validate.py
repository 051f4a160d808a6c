"""``mabeam validate -f PATH``: check manifests offline, as the API server and the operator would.

Every ``mabeam.io`` object in the files (YAML, several documents per file; directories are
searched for ``*.yaml``/``*.yml``/``*.json``) is validated with :func:`mabeam.kube.schema.validate`
in strict mode, as ``kubectl apply --validate=strict`` would be by the API server: unknown fields
are errors, and the CEL rules run. An object that passes its schema then gets the operator's own
checks, those that need no cluster: a Variable's constraints must fit its type
(:func:`mabeam.core.variables.validate_spec`) and its ``spec.value`` must fit both
(:func:`mabeam.core.variables.validate_value`); a Coordination's protocol must be installed
(:func:`mabeam.core.protocols.default_registry`) and its spec must fit that protocol.

Each problem is one line ``file:line: Kind/name: field.path: message``; the line (from 1) is the
field's when the file has it, else the nearest enclosing field's, else the document's first.
The exit status is 1 if there is any. Objects of other API groups are skipped with a note on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pydantic
import yaml

from ..errors import InvalidSpecError
from ..kube import crdgen
from ..models._base import GROUP

__all__ = ["add_commands", "validate_paths"]

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
    for crd in crdgen.generate_crds():
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[f"{GROUP}/{version['name']}/{kind}"] = version["schema"]["openAPIV3Schema"]
    return out


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _line_of(node: yaml.Node, path: str) -> int:
    """The line (from 1) of ``path`` (``spec.items[0].name``) in a document, or of its nearest parent."""
    line: int = node.start_mark.line + 1
    for key, index in _PATH_PART.findall(path):
        if key and isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == key:
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                break
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            node = node.value[int(index)]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _load(text: str) -> list[tuple[Any, yaml.Node | None]]:
    """Each document of ``text`` with its node (for line numbers); raises yaml.YAMLError."""
    documents = list(yaml.safe_load_all(text))
    nodes: list[yaml.Node | None] = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    nodes += [None] * (len(documents) - len(nodes))
    return list(zip(documents, nodes, strict=False))


def _pydantic_problem(exc: pydantic.ValidationError, prefix: str) -> InvalidSpecError:
    err = exc.errors()[0]
    where = ".".join([prefix, *(str(p) for p in err["loc"])])
    return InvalidSpecError(err["msg"], path=where)


def _semantic(kind: str, spec: Any) -> list[InvalidSpecError]:
    """The operator's offline checks of a schema-valid ``spec`` (Variables and Coordinations)."""
    if not isinstance(spec, dict):
        return []
    try:
        if kind == "Variable":
            from ..core import variables

            vspec = variables.parse_spec(spec)
            variables.validate_spec(vspec)
            if vspec.value is not None:
                variables.validate_value(vspec, vspec.value)
        elif kind == "Coordination":
            from ..core import protocols
            from ..models.coordination import CoordinationSpec

            try:
                cspec = CoordinationSpec.model_validate(spec)
            except pydantic.ValidationError as exc:
                return [_pydantic_problem(exc, "spec")]
            protocols.default_registry().get(cspec.protocol).validate(cspec)
    except InvalidSpecError as exc:
        return [exc]
    return []


def validate_paths(paths: list[str], out: TextIO, notes: TextIO) -> int:
    """Validate every document; print problems to ``out``, skips to ``notes``; return the count."""
    from ..kube import schema as crd_schema  # needs cel-python (the [local] extra)

    schemas = _schemas()
    problems = 0
    checked = 0
    for path in _files(paths):
        try:
            documents = _load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            print(f"{path}{at}: cannot read: {exc}", file=out)
            problems += 1
            continue
        for doc, node in documents:
            if doc is None:
                continue
            start = node.start_mark.line + 1 if node is not None else 1
            where = f"{path}:{start}"
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
            errors: list[tuple[str, str]] = []
            if not (doc.get("metadata") or {}).get("name"):
                errors.append(("metadata.name", "metadata.name: Required value"))
            _, found = crd_schema.validate(doc, schema, strict=True)
            errors.extend((e.path, str(e)) for e in found)
            if not found:
                errors.extend((e.path, str(e)) for e in _semantic(kind, doc.get("spec")))
            for field_path, error in errors:
                line = _line_of(node, field_path) if node is not None else start
                print(f"{path}:{line}: {kind}/{name}: {error}", file=out)
            problems += len(errors)
    print(f"{checked} MABEAM object(s) checked, {problems} problem(s).", file=notes)
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    missing = [p for p in args.filename if not Path(p).exists()]
    if missing:
        print(f"Error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 1 if validate_paths(args.filename, sys.stdout, sys.stderr) else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "validate", help="check manifests offline: the CRD schemas (strict) and the operator's own checks"
    )
    p.add_argument(
        "-f", "--filename", action="append", required=True, help="a file or directory of YAML (repeatable)"
    )
    p.set_defaults(func=cmd_validate)
