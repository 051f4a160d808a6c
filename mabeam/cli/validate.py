"""``mabeam validate -f PATH``: check manifests offline, as the API server and the operator would.

Every ``mabeam.io`` object in the files (YAML, several documents per file; directories are
searched for ``*.yaml``/``*.yml``/``*.json``; ``-f -`` reads stdin) is validated with
:func:`mabeam.kube.schema.validate` in strict mode, as ``kubectl apply --validate=strict`` would be
by the API server: unknown fields are errors, and the CEL rules run. Then come the checks the
schema cannot make, each error with the exact field path: ``metadata.name`` must be a DNS
subdomain (an Agent's a DNS label: it names the agent's Pod and ServiceAccount); the spec must
parse into its model (every error of the model, not only the first); an Agent's pod template
must be one the operator can run (:func:`mabeam.core.agents.parse_spec`); a Variable's
constraints must fit its type (:func:`mabeam.core.variables.validate_spec`) and its
``spec.value`` must fit both (:func:`mabeam.core.variables.validate_value`); a Coordination's
protocol must be installed (:func:`mabeam.core.protocols.default_registry`) and its spec must fit
that protocol. A problem at a path under one already reported is not reported twice.

kubectl reads YAML 1.1, where a plain ``yes``, ``no``, ``on``, ``off``, ``y`` or ``n`` is a
boolean (PyYAML and other YAML 1.2 readers disagree on some of them): each such plain scalar is a
problem, so that ``choice: yes`` is written ``choice: "yes"`` (the string) or ``true``.

Everything runs from a plain ``pip install mabeam``: the CEL rules need cel-python, a base
dependency for that reason.

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
from ..kube import schema as crd_schema
from ..models import KINDS
from ..models._base import GROUP

__all__ = ["add_commands", "validate_paths"]

_SUFFIXES = (".yaml", ".yml", ".json")


STDIN = "-"


def _files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if raw == STDIN:
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
        else:
            yield path


def _read(path: Path) -> str:
    return str(sys.stdin.read()) if str(path) == STDIN else path.read_text()


def _shown(path: Path) -> str:
    return "<stdin>" if str(path) == STDIN else str(path)


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


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Plain scalars that YAML 1.1 (kubectl's sigs.k8s.io/yaml) reads as booleans.
_YAML11_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON"), "true"),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF"), "false"),
}
_FIELD_IN_MESSAGE = re.compile(r"\bspec\.[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)*")


def _name_problems(kind: str, meta: Any) -> list[InvalidSpecError]:
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if not name:
        return [InvalidSpecError("Required value", path="metadata.name")]
    out = []
    if kind == "Agent" and (not isinstance(name, str) or len(name) > 63 or not _DNS_LABEL.match(name)):
        out.append(InvalidSpecError(
            f"Invalid value: {name!r}: an Agent's name must be a DNS label (lower case letters, "
            "digits and '-', starting and ending with a letter or digit, at most 63): it names its Pod",
            path="metadata.name",
        ))  # fmt: skip
    elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        out.append(InvalidSpecError(
            f"Invalid value: {name!r}: a name must be a DNS subdomain (lower case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit, at most 253)",
            path="metadata.name",
        ))  # fmt: skip
    namespace = meta.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not _DNS_LABEL.match(namespace)):
        out.append(InvalidSpecError(f"Invalid value: {namespace!r}: a namespace is a DNS label",
                                    path="metadata.namespace"))  # fmt: skip
    return out


def _yaml11_booleans(node: yaml.Node, path: str = "") -> Iterator[InvalidSpecError]:
    """Each plain scalar that kubectl reads as a YAML 1.1 boolean, with its field path."""
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.value in _YAML11_BOOLS:
            meaning = _YAML11_BOOLS[node.value]
            yield InvalidSpecError(
                f"plain {node.value} is a YAML 1.1 boolean (kubectl reads {meaning}): write {meaning}, "
                f'or quote it ("{node.value}") for the string',
                path=path,
            )
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            label = key.value if isinstance(key, yaml.ScalarNode) else "?"
            yield from _yaml11_booleans(value, f"{path}.{label}" if path else label)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _yaml11_booleans(item, f"{path}[{i}]")


def _model_problems(kind: str, spec: Any) -> list[InvalidSpecError]:
    """Every error of the kind's spec model, each at its field (a whole-spec rule: at the field
    its message names)."""
    info = next((k for k in KINDS if k.kind == kind), None)
    if info is None:
        return []
    try:
        info.spec.model_validate(spec)
    except pydantic.ValidationError as exc:
        out = []
        for err in exc.errors():
            message = str(err["msg"]).removeprefix("Value error, ")
            path = "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            if not err["loc"]:
                named = _FIELD_IN_MESSAGE.search(message)
                path = named.group(0) if named else path
            out.append(InvalidSpecError(message, path=path))
        return out
    return []


def _semantic(kind: str, spec: Any) -> list[InvalidSpecError]:
    """The operator's offline checks of ``spec`` (all kinds' models; Agents, Variables and
    Coordinations go further)."""
    if not isinstance(spec, dict):
        return []
    problems = _model_problems(kind, spec)
    if problems:
        return problems
    try:
        if kind == "Agent":
            from ..core import agents

            agents.parse_spec(spec)
        elif kind == "Variable":
            from ..core import variables

            vspec = variables.parse_spec(spec)
            variables.validate_spec(vspec)
            if vspec.value is not None:
                variables.validate_value(vspec, vspec.value)
        elif kind == "Coordination":
            from ..core import protocols
            from ..models.coordination import CoordinationSpec

            protocols.default_registry().get(spec.get("protocol", "")).validate(
                CoordinationSpec.model_validate(spec)
            )
    except InvalidSpecError as exc:
        return [exc]
    return []


def _exact_path(path: str, message: str) -> str:
    """A CEL rule of an object reports at the object (``spec``); its message names the field."""
    named: set[str] = set(_FIELD_IN_MESSAGE.findall(message))
    if len(named) == 1 and path and (field := named.pop()).startswith(f"{path}."):
        return field  # a rule about one field; a rule naming several stays at the object
    return path


def _under(path: str, reported: set[str]) -> bool:
    """Whether ``path`` is, or is inside, a path already reported."""
    return any(path == r or path.startswith((f"{r}.", f"{r}[")) for r in reported)


def validate_paths(paths: list[str], out: TextIO, notes: TextIO) -> int:
    """Validate every document; print problems to ``out``, skips to ``notes``; return the count."""
    schemas = _schemas()
    problems = 0
    checked = 0
    for path in _files(paths):
        try:
            documents = _load(_read(path))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f":{mark.line + 1}" if mark is not None else ""
            print(f"{_shown(path)}{at}: cannot read: {' '.join(str(exc).split())}", file=out)
            problems += 1
            continue
        for doc, node in documents:
            if doc is None:
                continue
            start = node.start_mark.line + 1 if node is not None else 1
            where = f"{_shown(path)}:{start}"
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
            errors: list[tuple[str, str]] = [
                (e.path, str(e)) for e in _name_problems(kind, doc.get("metadata"))
            ]
            _, found = crd_schema.validate(doc, schema, strict=True)
            for schema_error in found:
                exact = _exact_path(schema_error.path, schema_error.message)
                if not _under(exact, {p for p, _ in errors}):
                    errors.append(
                        (exact, f"{exact}: {schema_error.message}" if exact else schema_error.message)
                    )
            reported = {p for p, _ in errors}
            errors.extend(
                (e.path, str(e)) for e in _semantic(kind, doc.get("spec")) if not _under(e.path, reported)
            )
            if node is not None:
                errors.extend((e.path, str(e)) for e in _yaml11_booleans(node))
            for field_path, error in errors:
                line = _line_of(node, field_path) if node is not None else start
                print(f"{_shown(path)}:{line}: {kind}/{name}: {error}", file=out)
            problems += len(errors)
    print(f"{checked} MABEAM object(s) checked, {problems} problem(s).", file=notes)
    return problems


def cmd_validate(args: argparse.Namespace) -> int:
    missing = [p for p in args.filename if p != STDIN and not Path(p).exists()]
    if missing:
        print(f"Error: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 1 if validate_paths(args.filename, sys.stdout, sys.stderr) else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "validate", help="check manifests offline: the CRD schemas (strict) and the operator's own checks"
    )
    p.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        help="a file or directory of YAML, or - for stdin (repeatable)",
    )
    p.set_defaults(func=cmd_validate)
