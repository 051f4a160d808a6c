"""Variables: read latency (SDK cache vs API GET) and write throughput (SDK vs raw PATCH).

Each figure is printed beside a baseline measured in the same run against the same local API
server: a raw GET of a ConfigMap by the same agent (the projection ``mabeam-variables``, the one
ConfigMap its RBAC lets it read) and a raw PATCH of a ConfigMap. Run with
``python bench/variables.py [--quick]`` (not a test).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mabeam.core.variables_wire import PROJECTION_CONFIGMAP, write_annotations
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, CONFIG_MAP, ROLE_BINDING, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.models.variable import VariableWrite, Writer
from mabeam.sdk import Variables

NS = "default"


async def latencies(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - start)
    return out


def describe(name: str, samples: list[float]) -> tuple[float, str]:
    p50 = statistics.median(samples)
    p99 = sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]
    return p50, f"{name:<34} p50 {p50 * 1e6:9.1f} us   p99 {p99 * 1e6:9.1f} us"


async def measure(
    kube: Kube, agent_kube: Kube, stop: Callable[[], Awaitable[Any]], reads: int, writes: int, where: str
) -> None:
    """The figures, on a control plane where Variable x (written by agent bench) and its
    projection exist; ``kube`` is an admin, ``agent_kube`` the agent."""
    sdk = Variables(agent_kube, NS, "bench")
    await sdk.start()
    print(f"Variables benchmark: {where}, {reads} reads, {writes} writes\n")
    base_p50, line = describe("baseline: GET ConfigMap (API)", await latencies(
        lambda: agent_kube.get(CONFIG_MAP, PROJECTION_CONFIGMAP, NS), reads))  # fmt: skip
    print(line)
    api_p50, line = describe("GET Variable (API)", await latencies(
        lambda: agent_kube.get(VARIABLE, "x", NS), reads))  # fmt: skip
    print(line)
    cache_p50, line = describe("SDK get (cache)", await latencies(lambda: sdk.get("x"), reads))
    print(line)
    print(f"  -> Variable GET / ConfigMap GET: {api_p50 / base_p50:.2f}x; "
          f"SDK cache is {base_p50 / cache_p50:.0f}x faster than a ConfigMap GET\n")  # fmt: skip

    counter = iter(range(10**9))

    async def patch() -> None:
        await kube.patch(CONFIG_MAP, "baseline", {"data": {"x": str(next(counter))}}, namespace=NS)

    start = time.perf_counter()
    for _ in range(writes):
        await patch()
    base_rate = writes / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(writes):
        await sdk.write("x", i + 2)
    sdk_rate = writes / (time.perf_counter() - start)
    await sdk.close()
    # The API work of an applied write, by hand and without the operator: the agent's
    # PUT (value and write annotation, through the same admission) and one status write.
    await stop()
    obj = await agent_kube.get(VARIABLE, "x", NS)
    assert obj is not None
    start = time.perf_counter()
    for i in range(writes):
        value = writes + i + 2
        write = VariableWrite(value=value, writer=Writer(kind="Agent", name="bench"))
        meta = obj["metadata"]
        annotations = {**(meta.get("annotations") or {}), **write_annotations(f"h{i}", write)}
        body = {**obj, "metadata": {**meta, "annotations": annotations},
                "spec": {**obj["spec"], "value": value}}  # fmt: skip
        obj = await agent_kube.replace(VARIABLE, body)
        status = {**(obj.get("status") or {}), "value": value, "version": value,
                  "observedGeneration": obj["metadata"]["generation"]}  # fmt: skip
        version = obj["metadata"]["resourceVersion"]
        obj = await kube.patch(VARIABLE, "x", [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/status", "value": status},
        ], namespace=NS, status=True, json_patch=True)  # fmt: skip
    hand_rate = writes / (time.perf_counter() - start)
    print(f"{'baseline: PATCH ConfigMap (API)':<34} {base_rate:9.1f} writes/s")
    print(f"{'floor: PUT + status by hand':<34} {hand_rate:9.1f} writes/s "
          f"({hand_rate / base_rate:.3f}x the ConfigMap PATCH)")  # fmt: skip
    print(f"{'SDK write (acknowledged+applied)':<34} {sdk_rate:9.1f} writes/s")
    print(f"  -> SDK write / ConfigMap PATCH: {sdk_rate / base_rate:.3f}x; / the floor by hand: "
          f"{sdk_rate / hand_rate:.2f}x (an applied write: the PUT, the operator's reads of the "
          "Variable, Lease and Agents, its status write; the projection is batched)")  # fmt: skip
    await agent_kube.close()
    await kube.close()


async def prepare(kube: Kube, template: dict[str, Any]) -> None:
    """Agent bench (its pod from ``template``), Variable x that it may write, a baseline ConfigMap."""
    await kube.create(AGENT, {"metadata": {"name": "bench", "namespace": NS}, "spec": {"template": template}})
    spec = {"type": "integer", "value": 1, "access": {"agents": ["bench"]}}
    await kube.create(VARIABLE, {"metadata": {"name": "x", "namespace": NS}, "spec": spec})
    await kube.create(CONFIG_MAP, {"metadata": {"name": "baseline", "namespace": NS}, "data": {"x": "1"}})
    while not (await kube.get(ROLE_BINDING, "mabeam-var-x-writer", NS) or {}).get("subjects"):
        await asyncio.sleep(0.05)
    while await kube.get(CONFIG_MAP, PROJECTION_CONFIGMAP, NS) is None:
        await asyncio.sleep(0.05)  # the projection, made on the Variable's first pass


async def main(reads: int, writes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with LocalCluster(Path(tmp)) as cluster:
            kube = cluster.client()
            await cluster.start_operator()
            sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
            await prepare(kube, {"spec": {"containers": [{"name": "a", "image": "x", "command": sleeper}]}})
            path = cluster.api.kubeconfig(
                cluster.workdir / "bench.kubeconfig", user=f"system:serviceaccount:{NS}:mabeam-agent-bench"
            )
            agent_kube = Kube.connect(path, namespace=NS)
            await measure(kube, agent_kube, cluster.stop_operator, reads, writes, "local API server")


async def main_cluster(reads: int, writes: int) -> None:
    """The same on the real control plane of ``make e2e`` (operator in its own process)."""
    from scale import real_plane, token_kubeconfig

    with tempfile.TemporaryDirectory() as tmp:
        async with real_plane(Path(tmp)) as (plane, kube, operator, _):
            container = {"name": "a", "image": "x", "command": ["sleep", "3600"]}
            await prepare(kube, {"spec": {"nodeName": "kwok-0", "containers": [container]}})
            path = token_kubeconfig(plane, Path(tmp) / "bench.kubeconfig", NS, "mabeam-agent-bench")
            agent_kube = Kube.connect(path, namespace=NS)

            async def stop_operator() -> None:
                operator.terminate()
                await asyncio.to_thread(operator.wait)

            await measure(kube, agent_kube, stop_operator, reads, writes,
                          "real control plane (kube-apiserver v1.37)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--writes", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="50 reads, 5 writes: checks that it runs")
    parser.add_argument("--cluster", action="store_true", help="on the real control plane (make e2e's)")
    args = parser.parse_args()
    if args.quick:
        args.reads, args.writes = 50, 5
    asyncio.run((main_cluster if args.cluster else main)(args.reads, args.writes))
