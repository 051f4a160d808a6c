"""OpenAPI v3 documents, as ``kubectl explain`` and ``kubectl apply`` read them.

``/openapi/v3`` lists one document per group version (``serverRelativeURL`` with a content
hash, so clients cache them); ``/openapi/v3/apis/<group>/<version>`` (``/openapi/v3/api/v1``) is
that document: for each kind a schema named as Kubernetes names them (``io.mabeam.v1alpha1.Agent``,
``io.k8s.api.core.v1.Pod``) tagged with ``x-kubernetes-group-version-kind``, and the paths of
its objects. A custom resource's schema is its CRD version's ``openAPIV3Schema`` with
``metadata`` referring to ``ObjectMeta``; a built-in kind's is an open object with the envelope
fields (this server validates no built-in schema). Every PATCH operation declares the
``fieldValidation`` parameter: kubectl then validates on the server (``fieldValidation=Strict``)
and needs no OpenAPI v2 document, which is not served (client-go reads v2 only as protobuf).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ._types import ResourceType

__all__ = ["group_version_document", "openapi_root", "schema_name"]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_META_REF = f"#/components/schemas/{_META}"
_API_VERSION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized values. More "
    "info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
_KIND = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer "
    "this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
_METADATA = (
    "Standard object's metadata. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

_OBJECT_META: dict[str, Any] = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all "
    "objects users must create.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "generateName": {
            "type": "string",
            "description": "An optional prefix, used by the server, to generate a unique name.",
        },
        "namespace": {
            "type": "string",
            "description": "Namespace defines the space within which each name must be unique.",
        },
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Map of string keys and values to organize and categorize objects.",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Annotations is an unstructured key value map stored with a resource.",
        },
        "finalizers": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Must be empty before the object is deleted from the registry.",
        },
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "List of objects depended by this object.",
        },
        "uid": {
            "type": "string",
            "description": "UID is the unique in time and space value for this object.",
        },
        "resourceVersion": {
            "type": "string",
            "description": "An opaque value that represents the internal version of this object.",
        },
        "generation": {
            "type": "integer",
            "format": "int64",
            "description": "A sequence number representing a specific generation of the desired state.",
        },
        "creationTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "A timestamp representing the server time when this object was created.",
        },
        "deletionTimestamp": {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 date and time at which this resource will be deleted.",
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "Which fields each workflow (field manager) manages: for server-side apply.",
        },
    },
}


def schema_name(rtype: ResourceType) -> str:
    """``io.mabeam.v1alpha1.Agent`` for a custom kind, ``io.k8s.api.core.v1.Pod`` for a built-in."""
    if rtype.custom:
        return ".".join([*reversed(rtype.group.split(".")), rtype.version, rtype.kind])
    group = rtype.group.removesuffix(".k8s.io").split(".")[0] if rtype.group else "core"
    if rtype.group == "apiextensions.k8s.io":
        return f"io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{rtype.version}.{rtype.kind}"
    return f"io.k8s.api.{group}.{rtype.version}.{rtype.kind}"


def _gvk(rtype: ResourceType) -> list[dict[str, str]]:
    return [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind}]


def _kind_schema(rtype: ResourceType) -> dict[str, Any]:
    if rtype.schema is not None:
        schema = copy.deepcopy(rtype.schema)
    else:
        schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties = schema.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "description": _API_VERSION}
    properties["kind"] = {"type": "string", "description": _KIND}
    properties["metadata"] = {"allOf": [{"$ref": _META_REF}], "description": _METADATA}
    schema["x-kubernetes-group-version-kind"] = _gvk(rtype)
    return schema


def _paths(rtype: ResourceType) -> dict[str, Any]:
    prefix = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else f"/api/{rtype.version}"
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    ref = {"$ref": f"#/components/schemas/{schema_name(rtype)}"}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    params = [name_param]
    if rtype.namespaced:
        params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
    query = [
        {"name": name, "in": "query", "schema": {"type": "string"}}
        for name in ("dryRun", "fieldManager", "fieldValidation")
    ]
    extensions = {"x-kubernetes-group-version-kind": _gvk(rtype)[0]}
    operation = {"responses": ok, **extensions}
    item = {
        "get": {**operation, "x-kubernetes-action": "get"},
        "put": {**operation, "x-kubernetes-action": "put", "parameters": query},
        "patch": {
            **operation,
            "x-kubernetes-action": "patch",
            "parameters": [*query, {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
        },
        "delete": {**operation, "x-kubernetes-action": "delete"},
        "parameters": params,
    }
    collection = {
        "get": {**operation, "x-kubernetes-action": "list"},
        "post": {**operation, "x-kubernetes-action": "post", "parameters": query},
        "parameters": params[1:],
    }
    return {f"{prefix}{scope}/{rtype.plural}": collection, f"{prefix}{scope}/{rtype.plural}/{{name}}": item}


def _key(rtype: ResourceType) -> str:
    return f"apis/{rtype.group}/{rtype.version}" if rtype.group else f"api/{rtype.version}"


def group_version_document(types: Iterable[ResourceType], group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group version, or None if nothing is served there."""
    served = sorted(
        (t for t in types if (t.group, t.version) == (group, version) and "/" not in t.plural),
        key=lambda t: t.plural,
    )
    if not served:
        return None
    schemas: dict[str, Any] = {_META: _OBJECT_META}
    paths: dict[str, Any] = {}
    for rtype in served:
        schemas[schema_name(rtype)] = _kind_schema(rtype)
        paths.update(_paths(rtype))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0-mabeam-local"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_root(types: Iterable[ResourceType]) -> dict[str, Any]:
    """``/openapi/v3``: where each group version's document is, with a hash of its content."""
    served = list(types)
    paths: dict[str, Any] = {}
    for key in sorted({_key(t) for t in served}):
        group, version = ("", key.split("/")[1]) if key.startswith("api/") else tuple(key.split("/")[1:3])
        document = group_version_document(served, group, version)
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
