"""Admission and validation: namespaces, names, envelopes, schemas, CRDs, initial status.

Every custom resource is pruned, defaulted and validated against its ``openAPIV3Schema`` (with
CEL rules) by :mod:`mabeam.kube.schema`; failures are 422 ``Invalid`` with field paths. Creating
a CustomResourceDefinition registers its kind (:meth:`Admission._register_crd`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import attrs

from mabeam.kube import schema as crd_schema

from ._store import Store
from ._types import (
    _CRD_GROUP,
    _DNS_LABEL,
    _DNS_SUBDOMAIN,
    BUILTIN_TYPES,
    ResourceType,
    _ApiError,
    _invalid,
    _meta,
    _now,
)


@attrs.define(kw_only=True)
class Admission(Store):
    """What a write must pass before it is stored, and the CRDs that declare types."""

    # ---- admission ----

    def _check_namespace(self, namespace: str) -> None:
        if not self.require_namespaces:
            return
        ns = self.load(BUILTIN_TYPES[0], None, namespace)
        if ns is None:
            raise _ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                {"name": namespace, "kind": "namespaces"},
            )
        if _meta(ns).get("deletionTimestamp"):
            raise _ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    def _check_envelope(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind not in (None, rtype.kind):
            raise _ApiError(
                400, "BadRequest", f"the kind {kind!r} does not match the resource ({rtype.kind})"
            )
        if api_version not in (None, rtype.group_version):
            versions = {
                t.group_version
                for t in self.types.values()
                if (t.group, t.plural) == (rtype.group, rtype.plural)
            }
            if api_version not in versions:
                raise _ApiError(
                    400,
                    "BadRequest",
                    f"the apiVersion {api_version!r} does not match the resource ({rtype.group_version})",
                )

    def _check_name(self, rtype: ResourceType, name: str) -> None:
        label = rtype.plural == "namespaces" and rtype.group == ""
        pattern, limit = (_DNS_LABEL, 63) if label else (_DNS_SUBDOMAIN, 253)
        if len(name) > limit or not pattern.match(name):
            what = "RFC 1123 label" if label else "RFC 1123 subdomain"
            chars = "'-'" if label else "'-' or '.'"
            raise _invalid(
                rtype,
                name,
                [
                    crd_schema.SchemaError(
                        "metadata.name",
                        f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case "
                        f"alphanumeric characters, {chars}, must start and end with "
                        f"an alphanumeric character, and be at most {limit} characters",
                    )
                ],
            )

    def _admit(
        self, rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, *, strict: bool
    ) -> dict[str, Any]:
        if rtype.group == _CRD_GROUP:
            self._check_crd(rtype, obj)
        if rtype.schema is None:
            return obj
        result, errors = crd_schema.validate(obj, rtype.schema, strict=strict, old=old)
        if errors:
            raise _invalid(rtype, _meta(obj).get("name", ""), errors)
        return result

    @staticmethod
    def _spec_of(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        skip = (
            ("metadata", "status", "apiVersion", "kind")
            if rtype.has_status
            else ("metadata", "apiVersion", "kind")
        )
        return {key: value for key, value in obj.items() if key not in skip}

    def _set_initial_status(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype.group == _CRD_GROUP:
            now = _now()
            obj["status"] = {
                "acceptedNames": copy.deepcopy(obj["spec"]["names"]),
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {
                        "type": kind,
                        "status": "True",
                        "reason": reason,
                        "lastTransitionTime": now,
                        "message": "",
                    }
                    for kind, reason in (
                        ("NamesAccepted", "NoConflicts"),
                        ("Established", "InitialNamesAccepted"),
                    )
                ],
            }
        if rtype.group != "":
            return
        if rtype.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif rtype.plural == "pods":
            obj["status"] = {"phase": "Pending"}

    # ---- custom resource definitions ----

    def _check_crd(self, rtype: ResourceType, crd: dict[str, Any]) -> None:
        errors: list[crd_schema.SchemaError] = []
        spec: dict[str, Any] = crd["spec"] if isinstance(crd.get("spec"), dict) else {}
        names: dict[str, Any] = spec["names"] if isinstance(spec.get("names"), dict) else {}
        for field in ("group",):
            if not spec.get(field):
                errors.append(crd_schema.SchemaError(f"spec.{field}", "Required value", "FieldValueRequired"))
        for field in ("plural", "kind"):
            if not names.get(field):
                errors.append(
                    crd_schema.SchemaError(f"spec.names.{field}", "Required value", "FieldValueRequired")
                )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            errors.append(
                crd_schema.SchemaError(
                    "spec.scope",
                    f"Unsupported value: {json.dumps(spec.get('scope'))}: "
                    'supported values: "Cluster", "Namespaced"',
                    "FieldValueNotSupported",
                )
            )
        versions: list[Any] = spec["versions"] if isinstance(spec.get("versions"), list) else []
        for index, version in enumerate(versions):
            if not isinstance(version, dict) or not isinstance(version.get("name"), str):
                errors.append(
                    crd_schema.SchemaError(
                        f"spec.versions[{index}].name", "Required value", "FieldValueRequired"
                    )
                )
        versions = [v for v in versions if isinstance(v, dict) and isinstance(v.get("name"), str)]
        if not versions:
            errors.append(
                crd_schema.SchemaError(
                    "spec.versions",
                    "Invalid value: null: must have exactly one version marked as storage version",
                )
            )
        elif sum(1 for v in versions if v.get("storage")) != 1:
            errors.append(
                crd_schema.SchemaError(
                    "spec.versions", "Invalid value: must have exactly one version marked as storage version"
                )
            )
        expected = f"{names.get('plural')}.{spec.get('group')}"
        name = _meta(crd).get("name")
        if names.get("plural") and spec.get("group") and name != expected:
            errors.append(
                crd_schema.SchemaError(
                    "metadata.name",
                    f'Invalid value: {json.dumps(name)}: must be spec.names.plural+"."+spec.group',
                )
            )
        for index, version in enumerate(versions):
            schema = (
                ((version.get("schema") or {}).get("openAPIV3Schema")) if isinstance(version, dict) else None
            )
            if isinstance(schema, dict):
                errors.extend(
                    dataclasses.replace(e, path=f"spec.versions[{index}].schema.{e.path}")
                    for e in crd_schema.check_rules(schema)
                )
        if errors:
            raise _invalid(rtype, name or "", errors)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec, names = crd["spec"], crd["spec"]["names"]
        storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
        self.undeclare(spec["group"], names["plural"])
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self.declare(
                ResourceType(
                    group=spec["group"],
                    version=version["name"],
                    plural=names["plural"],
                    kind=names["kind"],
                    namespaced=spec["scope"] == "Namespaced",
                    singular=names.get("singular") or names["kind"].lower(),
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    subresources=frozenset((version.get("subresources") or {}).keys()),
                    schema=schema,
                    storage_version=storage,
                    printer_columns=tuple(
                        c for c in version.get("additionalPrinterColumns") or () if isinstance(c, dict)
                    ),
                    custom=True,
                )
            )

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        served = [t for t in self.types.values() if (t.group, t.plural) == (group, plural)]
        if served:
            storage = next((t for t in served if t.version == (t.storage_version or t.version)), served[0])
            for obj in list(self.live(storage)):
                self._commit(storage, obj, obj, "DELETED")
                self._uids.pop(_meta(obj).get("uid", ""), None)
        if group and plural:
            self.undeclare(group, plural)
