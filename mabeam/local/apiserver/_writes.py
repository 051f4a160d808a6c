"""Writes: create, replace, patch and delete, the ``status`` and ``pods/binding`` subresources,
garbage collection.

Each write is synchronous (no awaits inside), so it is atomic on the event loop. ``/status``
writes change only ``.status`` and main writes ignore it; a ``resourceVersion`` in a body or
patch is a precondition; deletion honours finalizers, preconditions and owner references
(background, recursive; ``Orphan`` supported); deleting a namespace deletes its content.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
import uuid
from typing import Any

import attrs

from mabeam.errors import InvalidSpecError
from mabeam.kube import schema as crd_schema

from ._patch import json_patch, merge_patch
from ._policies import AdmissionPolicies
from ._types import (
    _CRD_GROUP,
    _STALE,
    BUILTIN_TYPES,
    ResourceType,
    _ApiError,
    _conflict,
    _invalid,
    _meta,
    _not_found,
    _now,
)


@attrs.define(kw_only=True)
class Writes(AdmissionPolicies):
    """Create, replace, patch and delete objects, as the API server does."""

    def create_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        strict: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Create an object (POST)."""
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        name = meta.get("name")
        if not name:
            raise _invalid(
                rtype, "", [crd_schema.SchemaError("metadata.name", "Required value", "FieldValueRequired")]
            )
        if rtype.namespaced:
            if namespace is None:
                raise _ApiError(
                    405, "MethodNotAllowed", f"{rtype.qualified} are namespaced: POST to a namespace"
                )
            if meta.get("namespace") not in (None, namespace):
                raise _ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace
            self._check_namespace(namespace)
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise _ApiError(400, "BadRequest", "resourceVersion should not be set on objects to be created")
        self._check_envelope(rtype, obj)
        self._check_name(rtype, name)
        if self.load(rtype, meta.get("namespace"), name) is not None:
            raise _ApiError(
                409,
                "AlreadyExists",
                f'{rtype.qualified} "{name}" already exists',
                {"name": name, "group": rtype.group, "kind": rtype.plural},
            )
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        if rtype.has_status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = rtype.group_version, rtype.kind
        obj = self._admit(rtype, obj, None, strict=strict)
        self._set_initial_status(rtype, obj)
        self._check_policies(rtype, "CREATE", obj, None, dry_run=dry_run)
        if dry_run:
            return obj
        self._commit(rtype, None, obj, "ADDED")
        if rtype.group == _CRD_GROUP:
            self._register_crd(obj)
        if rtype.group == "" and rtype.plural == "namespaces":
            # As the ServiceAccount controller of a cluster does: every namespace has "default".
            account = {"metadata": {"name": "default", "namespace": name}}
            self.create_object(self._by_kind("v1", "ServiceAccount"), name, account)
        return obj

    def replace_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
        require_rv: bool = False,
        managed: bool = False,
    ) -> dict[str, Any]:
        """Update an object (PUT, and the last step of every PATCH). ``managed``: the caller set
        ``managedFields`` (server-side apply); otherwise :meth:`_record_fields` does."""
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the request body must be a JSON object")
        new = copy.deepcopy(body)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name", name) != name:
            raise _ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if rtype.namespaced and meta.get("namespace", namespace) != namespace:
            raise _ApiError(
                400, "BadRequest", "the namespace of the object does not match the namespace on the URL"
            )
        rv = meta.get("resourceVersion")
        if rv is not None and str(rv) != _meta(old)["resourceVersion"]:
            raise _conflict(rtype, name, _STALE)
        if rv is None and require_rv:
            raise _invalid(
                rtype,
                name,
                [
                    crd_schema.SchemaError(
                        "metadata.resourceVersion", "Invalid value: 0: must be specified for an update"
                    )
                ],
            )
        self._check_envelope(rtype, new)
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        elif rtype.has_status:
            new.pop("status", None)
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
        meta, old_meta = new["metadata"], _meta(old)
        for key in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["name"] = name
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = rtype.group_version, rtype.kind
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    rtype,
                    name,
                    [
                        crd_schema.SchemaError(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {sorted(added)}",
                            "FieldValueForbidden",
                        )
                    ],
                )
        new = self._admit(rtype, new, old, strict=strict)
        self._check_policies(rtype, "UPDATE", new, old, subresource=subresource, dry_run=dry_run)
        meta = new["metadata"]
        if not managed:
            self._record_fields(rtype, old, new, subresource)
        if self._spec_of(rtype, new) != self._spec_of(rtype, old):
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
        if new == old or dry_run:
            return new if dry_run else old
        self._commit(rtype, old, new, "MODIFIED")
        if rtype.group == _CRD_GROUP:
            self._register_crd(new)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(rtype, new)
        return new

    def _record_fields(
        self, rtype: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
    ) -> None:
        """Record who changed which fields (``managedFields``): see :mod:`._apply`."""

    def patch_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        strict: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Patch an object: merge, strategic-merge (as merge) or JSON patch (apply: see
        :mod:`._apply`)."""
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise _ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            patched = merge_patch(old, body)
        elif content_type == "application/json-patch+json":
            try:
                patched = json_patch(old, body)
            except ValueError as exc:
                raise _ApiError(422, "Invalid", f"the server rejected our request: {exc}") from None
        else:
            raise _ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format: {content_type}",
            )
        if not isinstance(patched, dict):
            raise _ApiError(422, "Invalid", "the patched object is not a JSON object")
        patched_rv = _meta(patched).get("resourceVersion")
        if patched_rv is not None and str(patched_rv) != _meta(old)["resourceVersion"]:
            raise _conflict(rtype, name, _STALE)
        return self.replace_object(
            rtype, namespace, name, patched, subresource=subresource, strict=strict, dry_run=dry_run
        )

    def bind_pod(self, namespace: str, name: str, body: Any, *, dry_run: bool = False) -> dict[str, Any]:
        """The ``pods/binding`` subresource (POST a ``v1`` ``Binding``): assign a pod to a node once.

        As a real API server does: the Binding names the pod (and may carry its ``uid`` as a
        precondition) and targets a Node; ``spec.nodeName`` is set, the Binding's annotations
        are copied to the pod and its ``PodScheduled`` condition becomes True. A pod that is
        already assigned, or being deleted, is refused with 409 Conflict.
        """
        rtype = self._by_kind("v1", "Pod")
        if not isinstance(body, dict):
            raise _ApiError(400, "BadRequest", "the request body must be a JSON object")
        meta: dict[str, Any] = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        if body.get("kind", "Binding") != "Binding":
            raise _ApiError(
                400, "BadRequest", f"the body of pods/binding must be a Binding, not {body['kind']}"
            )
        if meta.get("name", name) != name:
            raise _ApiError(400, "BadRequest", "name in URL does not match name in Binding object")
        if meta.get("namespace", namespace) != namespace:
            raise _ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        target: dict[str, Any] = body["target"] if isinstance(body.get("target"), dict) else {}
        errors: list[crd_schema.SchemaError] = []
        if target.get("kind", "Node") not in ("", "Node"):
            errors.append(
                crd_schema.SchemaError(
                    "target.kind", f"Invalid value: {target['kind']!r}: must be empty or 'Node'"
                )
            )
        if not isinstance(target.get("name"), str) or not target["name"]:
            errors.append(crd_schema.SchemaError("target.name", "Required value", "FieldValueRequired"))
        binding_type = dataclasses.replace(rtype, plural="bindings", kind="Binding")
        if errors:
            raise _invalid(binding_type, name, errors)
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        old_meta, node = _meta(old), (old.get("spec") or {}).get("nodeName")
        uid = meta.get("uid")
        if uid and uid != old_meta.get("uid"):
            raise _conflict(
                rtype,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {old_meta.get('uid')}",
            )
        binding_resource = dataclasses.replace(rtype, plural="pods/binding")
        if old_meta.get("deletionTimestamp"):
            raise _conflict(
                binding_resource, name, f"pod {name} is being deleted, cannot be assigned to a host"
            )
        if node:
            raise _conflict(binding_resource, name, f'pod {name} is already assigned to node "{node}"')
        new = copy.deepcopy(old)
        new.setdefault("spec", {})["nodeName"] = target["name"]
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and annotations:
            new["metadata"].setdefault("annotations", {}).update(annotations)
        conditions = [
            c
            for c in (new.setdefault("status", {}).get("conditions") or [])
            if c.get("type") != "PodScheduled"
        ]
        conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()})
        new["status"]["conditions"] = conditions
        if not dry_run:
            self._commit(rtype, old, new, "MODIFIED")
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success", "code": 201}

    def delete_object(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete an object (or mark it for deletion when it has finalizers)."""
        options = options or {}
        old = self.load(rtype, namespace, name)
        if old is None:
            raise _not_found(rtype, name)
        old_meta = _meta(old)
        preconditions = options.get("preconditions") or {}
        want_rv = preconditions.get("resourceVersion")
        if want_rv is not None and str(want_rv) != old_meta["resourceVersion"]:
            raise _conflict(
                rtype,
                name,
                f"Precondition failed: ResourceVersion in precondition: {want_rv}, "
                f"ResourceVersion in object meta: {old_meta['resourceVersion']}",
            )
        want_uid = preconditions.get("uid")
        if want_uid is not None and want_uid != old_meta["uid"]:
            raise _conflict(
                rtype,
                name,
                f"Precondition failed: UID in precondition: {want_uid}, "
                f"UID in object meta: {old_meta['uid']}",
            )
        self._check_policies(rtype, "DELETE", None, old, dry_run=dry_run)
        if dry_run:
            return old
        orphan = options.get("propagationPolicy") == "Orphan" or options.get("orphanDependents") is True
        if old_meta.get("deletionTimestamp"):
            return old
        if rtype.group == "" and rtype.plural == "namespaces":
            return self._delete_namespace(rtype, old)
        if old_meta.get("finalizers"):
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
            return self._commit(rtype, old, new, "MODIFIED")
        self._remove(rtype, old, orphan=orphan)
        return old

    def _delete_namespace(self, rtype: ResourceType, old: dict[str, Any]) -> dict[str, Any]:
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = _now()
        new.setdefault("status", {})["phase"] = "Terminating"
        self._commit(rtype, old, new, "MODIFIED")
        namespace = new["metadata"]["name"]
        for other in list(self.types.values()):
            if other.namespaced and other.version == (other.storage_version or other.version):
                for obj in list(self.live(other, namespace)):
                    self.delete_object(other, namespace, obj["metadata"]["name"])
        self._finish_namespace(namespace)
        return new

    def _finish_namespace(self, namespace: str) -> None:
        ns_type = BUILTIN_TYPES[0]
        ns = self.load(ns_type, None, namespace)
        if ns is None or not _meta(ns).get("deletionTimestamp") or _meta(ns).get("finalizers"):
            return
        for other in self.types.values():
            if other.namespaced and next(self.live(other, namespace), None) is not None:
                return
        self._remove(ns_type, ns)

    def _remove(self, rtype: ResourceType, obj: dict[str, Any], *, orphan: bool = False) -> None:
        """Really delete: the DELETED event, then garbage collection of dependents."""
        if self.load(rtype, _meta(obj).get("namespace"), _meta(obj)["name"]) is None:
            return
        self._commit(rtype, obj, obj, "DELETED")
        uid = _meta(obj)["uid"]
        if rtype.group == _CRD_GROUP:
            self._unregister_crd(obj)
        self._collect_garbage(uid, orphan=orphan)
        namespace = _meta(obj).get("namespace")
        if namespace:
            self._finish_namespace(namespace)

    def _collect_garbage(self, owner_uid: str, *, orphan: bool) -> None:
        dependents = []
        for (_, namespace, name), stored in list(self.objects.items()):
            if stored.deleted:
                continue
            refs = _meta(stored.raw).get("ownerReferences") or []
            if any(isinstance(ref, dict) and ref.get("uid") == owner_uid for ref in refs):
                dependents.append((namespace, name, stored.raw))
        for namespace, name, raw in dependents:
            rtype = self.resolve(f"{raw['apiVersion']}/{self._plural_of(raw)}")
            refs = _meta(raw).get("ownerReferences") or []
            remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
            if orphan or any(ref.get("uid") in self._uids for ref in remaining):
                new = copy.deepcopy(raw)
                if remaining:
                    new["metadata"]["ownerReferences"] = remaining
                else:
                    new["metadata"].pop("ownerReferences", None)
                self._commit(rtype, raw, new, "MODIFIED")
            elif self.load(rtype, namespace, name) is not None:
                self.delete_object(rtype, namespace, name)

    def _plural_of(self, raw: dict[str, Any]) -> str:
        for rtype in self.types.values():
            if rtype.group_version == raw.get("apiVersion") and rtype.kind == raw.get("kind"):
                return rtype.plural
        raise KeyError(f"no type for {raw.get('apiVersion')}/{raw.get('kind')}")

    def install_crd(self, crd: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) a CRD directly; raises InvalidSpecError if the server rejects it."""
        crd_type = self.types[_CRD_GROUP, "v1", "customresourcedefinitions"]
        name = _meta(crd).get("name", "")
        try:
            if self.load(crd_type, None, name) is None:
                return self.create_object(crd_type, None, crd)
            body = copy.deepcopy(crd)
            body.setdefault("metadata", {}).pop("resourceVersion", None)
            return self.replace_object(crd_type, None, name, body)
        except _ApiError as exc:
            causes = exc.details.get("causes") or [{}]
            raise InvalidSpecError(exc.message, path=causes[0].get("field", "")) from None
