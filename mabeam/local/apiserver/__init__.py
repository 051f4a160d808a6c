"""A strict in-memory Kubernetes API server: the control plane of ``mabeam local`` and the tests.

Built on kmock's :class:`kmock.KubernetesEmulator` (discovery, HTTP plumbing) and served over
HTTP with :class:`kmock.Server`. Resource requests are handled here, like a real API server:

* one global, monotonically increasing ``resourceVersion``; ``uid``, ``creationTimestamp``,
  ``generation`` (bumped only when something outside metadata and status changes);
* create (409 AlreadyExists), replace (409 Conflict on a stale ``resourceVersion``), merge /
  strategic-merge / JSON patches (a ``resourceVersion`` in the patch is a precondition),
  server-side apply (``managedFields``, conflicts between field managers, ``force``, removal of
  the fields a manager stops applying; lists are atomic), delete with finalizers, preconditions,
  and owner-reference garbage collection (background, recursive; ``Orphan`` supported);
* the ``status`` subresource: ``/status`` writes change only ``.status``; main writes ignore it;
* the ``pods/binding`` subresource: a POSTed ``Binding`` sets ``spec.nodeName`` once (409
  Conflict for a pod already assigned), as the scheduler, here the local kubelet, does;
* label and field selectors, ``limit``/``continue`` paging, watches with ``resourceVersion``
  resumption, 410 Gone for expired versions, ``timeoutSeconds`` and bookmarks;
* CustomResourceDefinitions: creating one registers its kind in discovery, and every custom
  resource is pruned, defaulted and validated against its ``openAPIV3Schema`` (with CEL rules)
  by :mod:`mabeam.kube.schema`; failures are 422 ``Invalid`` with field paths;
* namespaces must exist; deleting one deletes its content;
* the ``pods/log`` subresource (``container``, ``tailLines``, ``limitBytes``, ``follow``), read
  from the files whose paths whoever runs the kubelet gives :meth:`LocalApiServer.serve_logs`;
* OpenAPI v3 documents from the CRDs' schemas (minimal ones for built-ins) for ``kubectl
  explain``, with the ``fieldValidation`` parameter so that kubectl validates on the server;
* Table responses for ``kubectl get`` (the CRDs' printer columns, Kubernetes' columns for the
  common built-in kinds, Name / Created At otherwise);
* HTTPS with a CA of its own when asked (``tls=True``, as ``mabeam local`` does): kubectl sends
  a kubeconfig's token only over TLS.

Entry point::

    async with LocalApiServer(port=0) as api:
        api.kubeconfig(path)              # a kubeconfig (the admin's token) for kubectl / lightkube / kopf
        api.install_crds([crd_dict])      # or create CRDs through the API
        api.get("mabeam.io/v1alpha1/agents", "a1", namespace="default")

Callers are identified by ``Impersonate-User`` or a bearer token ``sa:<namespace>:<name>`` (a
service account) or ``user:<name>``; see :attr:`LocalApiServer.audit`. Service accounts are
authorised by RBAC from the stored Roles, ClusterRoles and bindings (:mod:`mabeam.local.rbac`;
403 Forbidden otherwise); other users are not restricted. ``authorize_service_accounts=False``
turns RBAC off.

The package, by concern (each layer a class over the one below):

- ``_types``: resource types, the error a request fails with, shared helpers;
- ``_patch``, ``_selectors``: merge and JSON patches; label and field selectors;
- ``_tables``: Table responses (server-side printing); ``_tls``: the serving certificate;
- ``_logs``: the ``pods/log`` subresource, from the kubelet's files; ``_openapi``: OpenAPI v3;
- ``_store``: the types served, the objects, ``resourceVersion`` and events (:class:`Store`);
- ``_admission``: namespaces, names, schemas and CRDs, initial status (:class:`Admission`);
- ``_writes``: create, replace, patch, delete, the status subresource, garbage collection;
- ``_apply``: server-side apply and field ownership (``managedFields``);
- ``_watch``: list selections and watch streams;
- ``_auth``: authentication, RBAC and the audit log;
- ``_emulator``: HTTP, verbs and discovery (:class:`LocalApiEmulator`);
- ``_server``: :class:`LocalApiServer`, in the caller's event loop or in a thread.
"""

from __future__ import annotations

from ._emulator import LocalApiEmulator
from ._server import LocalApiServer, ThreadedApiServer
from ._types import AuditRecord, ResourceType

__all__ = [
    "AuditRecord",
    "LocalApiEmulator",
    "LocalApiServer",
    "ResourceType",
    "ThreadedApiServer",
]
