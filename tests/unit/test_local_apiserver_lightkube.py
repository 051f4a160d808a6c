"""The local API server driven by lightkube's AsyncClient, as the operator and the SDK drive it."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import Container, PodSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from mabeam.local.apiserver import LocalApiServer

Gizmo = create_namespaced_resource("lk.mabeam.io", "v1", "Gizmo", "gizmos")

GIZMO_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gizmos.lk.mabeam.io"},
    "spec": {
        "group": "lk.mabeam.io",
        "scope": "Namespaced",
        "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "level": {"type": "integer", "minimum": 0, "default": 1},
                                },
                                "x-kubernetes-validations": [
                                    {"rule": "self.level < 100", "message": "too high"}
                                ],
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
async def client(tmp_path: pathlib.Path) -> AsyncIterator[tuple[LocalApiServer, AsyncClient]]:
    async with LocalApiServer() as api:
        api.install_crds([GIZMO_CRD])
        config = KubeConfig.from_file(api.kubeconfig(tmp_path / "kubeconfig"))
        lightkube = AsyncClient(config=config)
        yield api, lightkube
        await lightkube.close()
        assert api.server_errors == []


async def test_custom_resource_lifecycle(client: tuple[LocalApiServer, AsyncClient]) -> None:
    api, lk = client
    created = await lk.create(Gizmo(metadata=ObjectMeta(name="g1", namespace="default"), spec={}))
    assert created.spec == {"level": 1}
    fetched = await lk.get(Gizmo, "g1", namespace="default")
    assert fetched.metadata.resourceVersion == created.metadata.resourceVersion
    patched = await lk.patch(
        Gizmo, "g1", {"spec": {"level": 5}}, namespace="default", patch_type=PatchType.MERGE
    )
    assert patched.spec["level"] == 5
    assert patched.metadata.generation == 2
    status = await lk.patch(
        Gizmo.Status, "g1", {"status": {"ok": True}}, namespace="default", patch_type=PatchType.MERGE
    )
    assert status.status == {"ok": True}
    latest = await lk.get(Gizmo, "g1", namespace="default")
    latest.spec["level"] = 7
    replaced = await lk.replace(latest)
    assert replaced.spec["level"] == 7
    with pytest.raises(ApiError) as info:
        await lk.replace(latest)  # its resourceVersion is stale now
    assert info.value.status.code == 409
    names = [g.metadata.name async for g in lk.list(Gizmo, namespace="default")]
    assert names == ["g1"]
    await lk.delete(Gizmo, "g1", namespace="default")
    assert api.get("gizmos.lk.mabeam.io", "g1", "default") is None


async def test_validation_errors_surface_as_api_errors(client: tuple[LocalApiServer, AsyncClient]) -> None:
    _, lk = client
    with pytest.raises(ApiError) as info:
        await lk.create(Gizmo(metadata=ObjectMeta(name="g1", namespace="default"), spec={"level": 500}))
    assert info.value.status.code == 422
    assert "too high" in (info.value.status.message or "")


async def test_pod_lifecycle_and_watch(client: tuple[LocalApiServer, AsyncClient]) -> None:
    _, lk = client
    pod = Pod(
        metadata=ObjectMeta(name="p1", namespace="default", labels={"app": "agent"}),
        spec=PodSpec(containers=[Container(name="c", image="busybox")]),
    )
    created = await lk.create(pod)
    assert created.status.phase == "Pending"
    seen: list[tuple[str, str]] = []
    started = asyncio.Event()

    async def watch() -> None:
        async for op, obj in lk.watch(Pod, namespace="default", labels={"app": "agent"}):
            seen.append((op, obj.metadata.name))
            started.set()
            if op == "DELETED":
                return

    task = asyncio.create_task(watch())
    async with asyncio.timeout(5):
        await started.wait()
    await lk.patch(Pod.Status, "p1", {"status": {"phase": "Running"}}, namespace="default")
    await lk.delete(Pod, "p1", namespace="default")
    async with asyncio.timeout(5):
        await task
    assert seen[0] == ("ADDED", "p1")
    assert seen[-1] == ("DELETED", "p1")
    fetched = [p async for p in lk.list(Pod, namespace="default")]
    assert fetched == []
