"""The CRDs generated from the models: committed, valid, structural, and enforcing the models' rules.

Kubernetes itself is not here, so the tests play its part with independent tools:
kubernetes-validate checks each CRD object, a structural-schema checker (tested on bad
schemas too) checks the openAPIV3Schema, jsonschema validates manifests against it (after an
adapter for OpenAPI v3.0's nullable and boolean exclusiveMinimum, and Kubernetes' defaulting
and strict field validation), and cel-python evaluates the x-kubernetes-validations rules.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes
from pydantic import Field

from mabeam.kube.crdgen import (
    check_crds,
    crd_filename,
    crd_for,
    generate_crds,
    openapi_schema,
    render_yaml,
    write_crds,
)
from mabeam.models import AGENT, KINDS, AgentSpec, KindInfo, MabeamModel

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
KIND_IDS = [k.kind for k in KINDS]
PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


# --- a structural-schema checker (the rules of the Kubernetes CRD docs) ---------------------

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Inside a junctor only value validations may appear; these belong to the structure.
NOT_IN_JUNCTOR = {"type", "description", "default", "additionalProperties", "nullable", "items"} | {
    PRESERVE,
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
}
INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]


def structural_problems(node: Any, path: str = "", *, root: bool = True) -> list[str]:
    """Every way ``node`` breaks the structural-schema rules; empty when it is structural."""
    if not isinstance(node, dict):
        return [f"{path}: a schema must be an object"]
    problems: list[str] = []
    for key in ("$ref", "$defs", "definitions", "$schema", "id"):
        if key in node:
            problems.append(f"{path}: {key} is not supported")
    typ = node.get("type")
    if typ is None and not node.get(PRESERVE) and not node.get(INT_OR_STRING):
        problems.append(f"{path}: no type (and no preserve-unknown-fields or int-or-string)")
    if typ is not None and typ not in TYPES:
        problems.append(f"{path}: type {typ!r} is not one of {sorted(TYPES)}")
    if PRESERVE in node and node[PRESERVE] is not True:
        problems.append(f"{path}: {PRESERVE} must be true or absent")
    if node.get("uniqueItems"):
        problems.append(f"{path}: uniqueItems is forbidden")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{path}: {key} must be a boolean in OpenAPI v3.0")
    extra = node.get("additionalProperties")
    if extra is False:
        problems.append(f"{path}: additionalProperties: false is forbidden")
    if isinstance(extra, dict):
        if node.get("properties"):
            problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
        problems += structural_problems(extra, f"{path}[*]", root=False)
    if typ == "array" and "items" not in node:
        problems.append(f"{path}: an array needs items")
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]", root=False)
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}", root=False)
    for junctor in JUNCTORS:
        members = node.get(junctor)
        if members is None:
            continue
        members = members if isinstance(members, list) else [members]
        if node.get(INT_OR_STRING) and junctor == "anyOf" and members == INT_OR_STRING_ANYOF:
            continue  # the one place Kubernetes allows types in a junctor
        for i, member in enumerate(members):
            bad = set(member) & NOT_IN_JUNCTOR
            if bad:
                problems.append(f"{path}.{junctor}[{i}]: {sorted(bad)} is not allowed in a junctor")
    if node.get("x-kubernetes-list-type") == "map":
        item = node.get("items", {})
        for key in node.get("x-kubernetes-list-map-keys", []):
            prop = item.get("properties", {}).get(key)
            if prop is None or prop.get("type") not in TYPES - {"object", "array"}:
                problems.append(f"{path}: list-map key {key!r} must be a scalar property of the items")
            elif key not in item.get("required", []) and "default" not in prop:
                problems.append(f"{path}: list-map key {key!r} must be required or defaulted")
    if root:
        meta = node.get("properties", {}).get("metadata")
        # Kubernetes validates ObjectMeta itself; a CRD may only narrow name and generateName.
        restricted = set(meta.get("properties", {})) if meta else set()
        if restricted - {"name", "generateName"}:
            problems.append(f"{path}.metadata: only name and generateName may be restricted")
    return problems


NOT_STRUCTURAL = {
    "no-type": ({"type": "object", "properties": {"a": {"description": "x"}}}, ".a: no type"),
    "ref": ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}, ".a: $ref"),
    "closed-object": (
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        "additionalProperties: false",
    ),
    "int-or-string-with-typed-checks": (
        {INT_OR_STRING: True, "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]},
        ".anyOf[0]",
    ),
    "typed-anyof": (
        {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}}},
        ".a.anyOf[0]",
    ),
    "draft7-exclusive-minimum": (
        {"type": "number", "exclusiveMinimum": 0},
        "exclusiveMinimum must be a boolean",
    ),
    "array-without-items": ({"type": "array"}, "needs items"),
    "item-without-type": ({"type": "array", "items": {"minLength": 1}}, "[]: no type"),
    "map-value-without-type": ({"type": "object", "additionalProperties": {}}, "[*]: no type"),
    "unique-items": ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    "preserve-false": ({"type": "object", PRESERVE: False}, "must be true"),
    "metadata-restricted": (
        {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {}}}}},
        ".metadata: only name and generateName",
    ),
    "list-map-key-optional": (
        {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "properties": {"type": {"type": "string"}}},
        },
        "must be required or defaulted",
    ),
}


@pytest.mark.parametrize("case", NOT_STRUCTURAL, ids=list(NOT_STRUCTURAL))
def test_structural_checker_rejects_non_structural_schemas(case: str) -> None:
    schema, expected = NOT_STRUCTURAL[case]
    problems = structural_problems(schema)
    assert any(expected in p for p in problems), problems


def test_structural_checker_accepts_the_usual_shapes() -> None:
    schema = {
        "type": "object",
        "properties": {
            "any": {PRESERVE: True},
            "port": {INT_OR_STRING: True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "n": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "nullable": True},
        },
    }
    assert structural_problems(schema) == []


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_schema_is_structural(kind: KindInfo) -> None:
    assert structural_problems(root_schema(crd_for(kind))) == []


# --- the committed files ---------------------------------------------------------------------


def test_committed_crds_match_the_models() -> None:
    stale = check_crds(CRD_DIR)
    assert stale == [], (
        f"crds/ is out of date with the models ({', '.join(stale)}): run `make crds` "
        "(`mabeam crds --write crds/`) and commit the result; remove any other stray file by hand."
    )
    assert sorted(p.name for p in CRD_DIR.glob("*.y*ml")) == sorted(crd_filename(k) for k in KINDS)


def test_committed_files_say_they_are_generated() -> None:
    for kind in KINDS:
        head = (CRD_DIR / crd_filename(kind)).read_text(encoding="utf-8").splitlines()[:2]
        assert "mabeam crds --write crds/" in head[0]
        assert "Do not edit by hand" in head[1]


def test_check_crds_reports_missing_changed_and_stray_files(tmp_path: Path) -> None:
    written = write_crds(tmp_path)
    assert [p.name for p in written] == [crd_filename(k) for k in KINDS]
    assert check_crds(tmp_path) == []
    name = crd_filename(AGENT)
    target = tmp_path / name
    target.write_text(target.read_text(encoding="utf-8").replace("maxItems: 64", "maxItems: 65"))
    (tmp_path / "gadgets.mabeam.io.yaml").write_text("kind: CustomResourceDefinition\n")
    (tmp_path / "notes.yaml").write_text("hand: written\n")
    assert check_crds(tmp_path) == sorted([name, "gadgets.mabeam.io.yaml", "notes.yaml"])
    target.unlink()
    assert name in check_crds(tmp_path)
    # Writing again repairs the generated files and removes generated files of vanished kinds;
    # a file it did not generate is left for a human (and still reported).
    write_crds(tmp_path)
    assert check_crds(tmp_path) == ["notes.yaml"]
    assert not (tmp_path / "gadgets.mabeam.io.yaml").exists()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_yaml_is_deterministic_and_lossless(kind: KindInfo) -> None:
    text = render_yaml(crd_for(kind))
    assert text == render_yaml(crd_for(kind))
    assert yaml.safe_load(text) == crd_for(kind)
    assert "&id" not in text and "*id" not in text  # no YAML anchors from shared sub-schemas


# --- the CRD object as Kubernetes sees it -----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_crd_validates_against_the_newest_kubernetes(kind: KindInfo) -> None:
    newest = kubernetes_validate.latest_version()
    kubernetes_validate.validate(crd_for(kind), newest, strict=True)


def test_kubernetes_validate_catches_a_broken_crd() -> None:
    crd = crd_for(AGENT)
    root_schema(crd)["properties"]["spec"]["nullabel"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_crd_names_and_version(kind: KindInfo) -> None:
    crd = crd_for(kind)
    assert crd["metadata"]["name"] == f"{kind.plural}.mabeam.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"]) == (kind.kind, kind.plural, kind.singular)
    assert names["shortNames"] == list(kind.short_names)
    assert names["categories"] == ["mabeam"]
    assert crd["spec"]["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    root = root_schema(crd)
    assert root["required"] == ["spec"]
    assert set(root["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    rules = root["properties"]["spec"].get("x-kubernetes-validations", [])
    assert [(r["rule"], r["message"]) for r in rules] == list(kind.spec_validations)


def test_status_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = root_schema(crd_for(AGENT))["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


# --- printer columns --------------------------------------------------------------------------

OBJECT_META = {
    "name": "string",
    "namespace": "string",
    "uid": "string",
    "generation": "integer",
    "resourceVersion": "string",
    "creationTimestamp": "string",
    "deletionTimestamp": "string",
}
COLUMN_TYPES = {
    "string": {"string"},
    "integer": {"integer"},
    "number": {"number", "integer"},
    "boolean": {"boolean"},
    "date": {"string"},
}
COLUMN_TYPES["string"] = {"string", "any"}


def schema_type_at(root: dict[str, Any], json_path: str) -> str | None:
    """The type of the field ``json_path`` (``.a.b``) names, or None if the schema has no such field."""
    parts = json_path.lstrip(".").split(".")
    if parts[0] == "metadata":
        return OBJECT_META.get(parts[1]) if len(parts) == 2 else None
    node = root
    for part in parts:
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    if (node.get(PRESERVE) or node.get("x-kubernetes-int-or-string")) and "type" not in node:
        # An amount (mabeam.models._amount): any JSON value. The API server prints a string
        # column by JSONPath, whatever the value's type, so only string columns may show it.
        return "any"
    return node.get("type")


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_printer_columns_point_at_fields_of_the_right_type(kind: KindInfo) -> None:
    crd = crd_for(kind)
    (version,) = crd["spec"]["versions"]
    columns = version.get("additionalPrinterColumns", [])
    assert [c["name"] for c in columns] == [c.name for c in kind.printer_columns]
    for column in columns:
        found = schema_type_at(root_schema(crd), column["jsonPath"])
        assert found is not None, f"{kind.kind} column {column['name']}: no field {column['jsonPath']}"
        assert found in COLUMN_TYPES[column["type"]], f"{kind.kind} column {column['name']}: {found}"


def test_printer_column_lookup_finds_missing_fields() -> None:
    root = root_schema(crd_for(AGENT))
    assert schema_type_at(root, ".status.podName") == "string"
    assert schema_type_at(root, ".status.podname") is None
    assert schema_type_at(root, ".metadata.creationTimestamp") == "string"
    assert schema_type_at(root, ".metadata.nothing") is None


# --- validating objects the way the API server does ------------------------------------------


def to_jsonschema(node: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI v3.0 (Kubernetes flavour) to JSON Schema 2020-12.

    - ``nullable: true`` allows null; ``exclusiveMinimum: true`` makes ``minimum`` exclusive;
    - an object with properties and no preserve-unknown-fields is closed: unknown fields are
      errors, as with kubectl's default strict server-side field validation;
    - ``x-kubernetes-int-or-string`` accepts an integer or a string.
    """
    out: dict[str, Any] = {}
    for key in ("description", "enum", "pattern", "minLength", "maxLength", "minItems", "maxItems"):
        if key in node:
            out[key] = node[key]
    for key in ("required", "minProperties", "maxProperties", "multipleOf", "format"):
        if key in node:
            out[key] = node[key]
    for bound in ("Minimum", "Maximum"):
        low = bound.lower()
        if low in node:
            out[f"exclusive{bound}" if node.get(f"exclusive{bound}") else low] = node[low]
    types: list[str] = []
    if "type" in node:
        types = [node["type"]]
    elif node.get(INT_OR_STRING):
        types = ["integer", "string"]
    if types:
        if node.get("nullable"):
            types.append("null")
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        out["type"] = types if len(types) > 1 else types[0]
    if "items" in node:
        out["items"] = to_jsonschema(node["items"])
    for junctor in ("anyOf", "allOf"):
        if junctor in node:
            out[junctor] = [to_jsonschema(member) for member in node[junctor]]
    if "properties" in node:
        out["properties"] = {k: to_jsonschema(v) for k, v in node["properties"].items()}
        if not node.get(PRESERVE):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = to_jsonschema(node["additionalProperties"])
    elif node.get("type") == "object" and "properties" not in node and not node.get(PRESERVE):
        out["additionalProperties"] = False  # an object that declares nothing keeps nothing
    return out


def apply_defaults(value: Any, node: dict[str, Any]) -> Any:
    """Kubernetes' structural defaulting: absent fields get their default, then nested defaults."""
    if isinstance(value, dict):
        props = node.get("properties", {})
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        extra = node.get("additionalProperties")
        for name, sub_value in value.items():
            if name in props:
                apply_defaults(sub_value, props[name])
            elif isinstance(extra, dict):
                apply_defaults(sub_value, extra)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            apply_defaults(item, node["items"])
    return value


def is_unknown_type(node: dict[str, Any]) -> bool:
    """Kubernetes' "unknown type": a schema CEL cannot see into."""
    if "type" not in node:
        return bool(node.get(PRESERVE))
    if node["type"] == "array":
        return is_unknown_type(node.get("items", {}))
    extra = node.get("additionalProperties")
    return node["type"] == "object" and isinstance(extra, dict) and is_unknown_type(extra)


def to_cel(value: Any, node: dict[str, Any]) -> Any:
    """A JSON value as Kubernetes hands it to CEL.

    Typed by the schema (a ``number`` is a double even when written as 300), null-valued fields
    absent, and fields that are only preserved (x-kubernetes-preserve-unknown-fields, or of an
    unknown type) invisible, as the Kubernetes docs on validation rules say.
    """
    typ = node.get("type")
    if typ == "number":
        return celtypes.DoubleType(value)
    if typ == "integer":
        return celtypes.IntType(value)
    if isinstance(value, dict) and typ == "object":
        props = node.get("properties", {})
        extra = node.get("additionalProperties")
        visible = {}
        for key, sub_value in value.items():
            sub = props.get(key, extra if key not in props and isinstance(extra, dict) else None)
            if sub_value is None or sub is None or is_unknown_type(sub):
                continue
            visible[celtypes.StringType(key)] = to_cel(sub_value, sub)
        return celtypes.MapType(visible)
    if isinstance(value, list) and typ == "array":
        return celtypes.ListType([to_cel(v, node.get("items", {})) for v in value])
    return celpy.json_to_cel(value)


def cel_failures(rules: list[dict[str, str]], self_value: Any, node: dict[str, Any]) -> list[str]:
    """The messages of the rules that do not hold (an evaluation error fails the rule too)."""
    env = celpy.Environment()
    activation = {"self": to_cel(self_value, node)}
    failed = []
    for rule in rules:
        try:
            result = env.program(env.compile(rule["rule"])).evaluate(activation)
        except celpy.CELEvalError:
            result = None
        if not isinstance(result, celtypes.BoolType) or not bool(result):
            failed.append(rule["message"])
    return failed


def admission_errors(crd: dict[str, Any], obj: dict[str, Any]) -> list[str]:
    """What the API server would say to a create of ``obj``: schema errors, then CEL rules."""
    root = root_schema(crd)
    obj = apply_defaults(copy.deepcopy(obj), root)
    schema = to_jsonschema(root)
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: the API server checks it
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
    if errors:
        return errors  # Kubernetes runs CEL rules only on schema-valid objects
    spec_node = root["properties"]["spec"]
    return cel_failures(spec_node.get("x-kubernetes-validations", []), obj["spec"], spec_node)


def test_the_adapter_honours_openapi_semantics() -> None:
    assert jsonschema.Draft202012Validator(
        to_jsonschema({"type": "string", "nullable": True, "enum": ["a"]})
    ).is_valid(None)
    exclusive = jsonschema.Draft202012Validator(
        to_jsonschema({"type": "number", "minimum": 0, "exclusiveMinimum": True})
    )
    assert not exclusive.is_valid(0) and exclusive.is_valid(0.5)
    inclusive = jsonschema.Draft202012Validator(to_jsonschema({"type": "number", "minimum": 0}))
    assert inclusive.is_valid(0)


def test_defaults_are_valid_for_their_own_schema() -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        if "default" in node:
            jsonschema.validate(node["default"], to_jsonschema(node))
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:
            walk(node["items"], f"{path}[]")

    for kind in KINDS:
        walk(root_schema(crd_for(kind)), kind.kind)


def agent(**spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"team": "blue"}},
            "spec": {
                "containers": [
                    {
                        "name": "agent",
                        "image": "ghcr.io/example/agent:1.0",
                        "command": ["python", "-m", "agent"],
                        "env": [{"name": "MODE", "value": "vote"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    }
                ]
            },
        },
        "capabilities": ["vote", "negotiate"],
        "weight": 2.5,
        "priority": 10,
    }
    spec.update(spec_changes)
    return {"apiVersion": "mabeam.io/v1alpha1", "kind": "Agent", "metadata": {"name": "a1"}, "spec": spec}


def with_pod_spec(**pod_changes: Any) -> dict[str, Any]:
    obj = agent()
    pod = obj["spec"]["template"]["spec"]
    for key, value in pod_changes.items():
        if value is None:
            pod.pop(key, None)
        else:
            pod[key] = value
    return obj


def without_template() -> dict[str, Any]:
    obj = agent()
    del obj["spec"]["template"]
    return obj


MESSAGES = [message for _, message in AGENT.spec_validations]
NO_CONTAINER, RESTART_ALWAYS, BACKOFF_ORDER = MESSAGES


def test_a_valid_agent_is_admitted_and_defaulted() -> None:
    crd = crd_for(AGENT)
    obj = agent()
    assert admission_errors(crd, obj) == []
    AgentSpec.model_validate(obj["spec"])  # the operator's parse agrees
    defaulted = apply_defaults(copy.deepcopy(obj), root_schema(crd))
    # The API server fills in what the model would: the CEL rules can rely on it.
    assert defaulted["spec"]["restart"] == AgentSpec.model_validate(obj["spec"]).restart.to_wire()
    assert defaulted["spec"]["suspend"] is False


def test_a_minimal_agent_with_status_is_admitted() -> None:
    obj = agent()
    obj["spec"] = {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}
    obj["status"] = {
        "phase": "Ready",
        "podName": None,
        "restarts": 2,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }
    assert admission_errors(crd_for(AGENT), obj) == []


REJECTED = {
    "weight-negative": (agent(weight=-1), "spec.weight"),
    "weight-zero": (agent(weight=0), "spec.weight"),
    "weight-too-big": (agent(weight=2_000_000), "spec.weight"),
    "priority-not-integer": (agent(priority=1.5), "spec.priority"),
    "unknown-spec-field": (agent(replicas=3), "spec: Additional properties"),
    "unknown-restart-field": (agent(restart={"jitter": 1}), "spec.restart: Additional properties"),
    "bad-capability": (agent(capabilities=["Bad_Cap"]), "spec.capabilities.0"),
    "long-capability": (agent(capabilities=["a" * 64]), "spec.capabilities.0"),
    "too-many-capabilities": (agent(capabilities=[f"c{i}" for i in range(65)]), "spec.capabilities"),
    "label-not-string": (
        agent(template={"metadata": {"labels": {"n": 1}}, "spec": {"containers": [{"name": "a"}]}}),
        "spec.template.metadata.labels.n",
    ),
    "no-template": (without_template(), "spec: 'template' is a required property"),
    "containers-not-list": (with_pod_spec(containers={"name": "a"}), "spec.template.spec.containers"),
    "no-containers-field": (with_pod_spec(containers=None), NO_CONTAINER),
    "empty-containers": (with_pod_spec(containers=[]), NO_CONTAINER),
    "restart-never": (with_pod_spec(restartPolicy="Never"), RESTART_ALWAYS),
    "backoff-cap-below-initial": (
        agent(restart={"initialDelaySeconds": 10, "maxDelaySeconds": 5}),
        BACKOFF_ORDER,
    ),
    "backoff-cap-below-default-initial": (agent(restart={"maxDelaySeconds": 0.5}), BACKOFF_ORDER),
}


@pytest.mark.parametrize("case", REJECTED, ids=list(REJECTED))
def test_an_invalid_agent_is_rejected(case: str) -> None:
    obj, expected = REJECTED[case]
    errors = admission_errors(crd_for(AGENT), obj)
    assert any(e.startswith(expected) or e == expected for e in errors), errors


@pytest.mark.parametrize("message", MESSAGES, ids=["containers", "restartPolicy", "backoff"])
def test_each_cel_rule_holds_for_valid_specs_and_fails_alone(message: str) -> None:
    """Each rule: true on the valid agent, and the only failure for the spec written to break it."""
    crd = crd_for(AGENT)
    assert admission_errors(crd, agent()) == []
    breakers = [obj for obj, expected in REJECTED.values() if expected == message]
    assert breakers, "every rule needs a spec that breaks it"
    for obj in breakers:
        assert admission_errors(crd, obj) == [message]


def test_cel_sees_declared_fields_only() -> None:
    node = {
        "type": "object",
        PRESERVE: True,
        "properties": {"known": {"type": "number"}, "blob": {PRESERVE: True}},
    }
    seen = to_cel({"known": 3, "blob": {"a": 1}, "extra": "x", "gone": None}, node)
    assert seen == celtypes.MapType({celtypes.StringType("known"): celtypes.DoubleType(3.0)})
    assert cel_failures([{"rule": "has(self.extra)", "message": "m"}], {"extra": "x"}, node) == ["m"]


def test_restart_policy_always_is_allowed() -> None:
    assert admission_errors(crd_for(AGENT), with_pod_spec(restartPolicy="Always")) == []


# --- the conversion rules, on a model that uses every one of them ----------------------------


class _Inner(MabeamModel):
    """An inner object."""

    size: int = Field(default=1, ge=1, lt=10, description="Between 1 and 9.")


class _Everything(MabeamModel):
    mode: Literal["fast"] = Field(default="fast", description="One value.")
    choice: Literal["a"] | Literal["b"] | None = Field(default=None, description="Two or none.")
    port: int | str = Field(description="A number or a name.")
    quorum: Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern="^[0-9]+%$")] = Field(
        default=1, description="A count or a percentage."
    )
    anything: Any = Field(default=None, description="Any JSON value.")
    values: list[Any] = Field(default_factory=list, description="Any JSON values.")
    tags: set[str] = Field(default_factory=set, description="Distinct tags.")
    by_name: dict[str, _Inner] = Field(default_factory=dict, description="Inner objects by name.")
    inner: _Inner = Field(default_factory=lambda: _Inner(size=3), description="Defaults to size 3.")
    ratio: float = Field(default=0.5, gt=0, lt=1, description="Strictly between 0 and 1.")
    name: str = Field(default="x", min_length=1, max_length=8, pattern="^[a-z]+$", description="A name.")


def test_conversion_rules_on_every_feature() -> None:
    schema = openapi_schema(_Everything, "spec")
    props = schema["properties"]
    assert structural_problems(schema) == []
    assert not {"title", "$ref", "$defs"} & all_keys(schema)
    assert props["mode"] == {
        "description": "One value.",
        "type": "string",
        "enum": ["fast"],
        "default": "fast",
    }
    assert props["choice"] == {
        "description": "Two or none.",
        "type": "string",
        "nullable": True,
        "enum": ["a", "b"],
    }
    assert props["port"] == {
        "description": "A number or a name.",
        INT_OR_STRING: True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    assert props["quorum"]["allOf"] == [{"minimum": 1}, {"pattern": "^[0-9]+%$"}]
    quorum = jsonschema.Draft202012Validator(to_jsonschema(props["quorum"]))
    accepted = [v for v in (0, 3, "60%", "abc", 1.5, None) if quorum.is_valid(v)]
    assert accepted == [3, "60%"]
    assert props["anything"] == {"description": "Any JSON value.", PRESERVE: True}
    assert props["values"]["items"] == {PRESERVE: True}
    assert props["tags"]["x-kubernetes-list-type"] == "set"
    assert props["byName"]["additionalProperties"]["properties"]["size"] == {
        "description": "Between 1 and 9.",
        "type": "integer",
        "default": 1,
        "minimum": 1,
        "maximum": 10,
        "exclusiveMaximum": True,
    }
    assert props["inner"]["default"] == {"size": 3}
    assert props["inner"]["description"] == "Defaults to size 3."
    assert (props["ratio"]["minimum"], props["ratio"]["exclusiveMinimum"]) == (0, True)
    assert (props["ratio"]["maximum"], props["ratio"]["exclusiveMaximum"]) == (1, True)
    assert {k: props["name"][k] for k in ("minLength", "maxLength", "pattern")} == {
        "minLength": 1,
        "maxLength": 8,
        "pattern": "^[a-z]+$",
    }
    assert schema["required"] == ["port"]
    assert "additionalProperties" not in schema  # closed models rely on Kubernetes' pruning


def all_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(all_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(all_keys(v) for v in node))
    return set()


class _Unrepresentable(MabeamModel):
    value: int | list[int] = Field(description="Not a structural type.")


def test_an_unrepresentable_union_is_refused_with_its_path() -> None:
    with pytest.raises(ValueError, match=r"spec\.value: a union"):
        openapi_schema(_Unrepresentable, "spec")


def test_generate_crds_covers_every_kind_in_order() -> None:
    assert [c["spec"]["names"]["kind"] for c in generate_crds()] == [k.kind for k in KINDS]


# --- CEL rules read only what Kubernetes lets them see -----------------------------------------

_SELF_PATH = re.compile(r"\bself((?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\s*\()?")


def invisible_references(rule: str, node: dict[str, Any]) -> list[str]:
    """The ``self.a.b`` paths in ``rule`` that name no field CEL can see under ``node``.

    Kubernetes compiles rules against the schema: a field that is only preserved
    (x-kubernetes-preserve-unknown-fields) or of an unknown type is an "undefined field" there,
    and the CRD is refused. A trailing ``.name(`` is a method call, not a field.
    """
    problems = []
    for match in _SELF_PATH.finditer(rule):
        names = match.group(1).lstrip(".").split(".")
        if match.group(2):
            names = names[:-1]
        current = node
        for i, name in enumerate(names):
            shown = "self." + ".".join(names[: i + 1])
            extra = current.get("additionalProperties")
            if isinstance(extra, dict):
                current = extra  # a map: self.m.key reads one entry
            elif name in current.get("properties", {}):
                current = current["properties"][name]
            else:
                problems.append(f"{shown} is not a declared field")
                break
            if is_unknown_type(current):
                problems.append(f"{shown} is of an unknown type (preserved only)")
                break
    return problems


def test_the_reference_check_finds_preserved_fields() -> None:
    node = {
        "type": "object",
        "properties": {
            "pod": {"type": "object", PRESERVE: True, "properties": {"name": {"type": "string"}}},
            "blob": {PRESERVE: True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    assert invisible_references("self.pod.name == 'a' && self.labels.team == 'b'", node) == []
    assert invisible_references("size(self.pod.containers) > 0", node) == [
        "self.pod.containers is not a declared field"
    ]
    assert invisible_references("has(self.blob)", node) == [
        "self.blob is of an unknown type (preserved only)"
    ]
    assert invisible_references("self.pod.name.startsWith('a')", node) == []


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_cel_rules_read_only_declared_fields(kind: KindInfo) -> None:
    spec = root_schema(crd_for(kind))["properties"]["spec"]
    for rule in spec.get("x-kubernetes-validations", []):
        assert invisible_references(rule["rule"], spec) == [], rule["rule"]
        celpy.Environment().compile(rule["rule"])  # standard CEL, as NOTES.md asks
