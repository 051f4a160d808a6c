"""Scale: N Agents to Ready, on the real control plane (pods faked by kwok) and on the emulator.

For each control plane, in the same run:

- the floor: the same N Pods created by hand (32 in flight), bound to the fake nodes, timed
  until the API server accepted all of them, and until all were Ready;
- MABEAM: N Agents created the same way, timed until every Agent is Ready (the operator made
  each one's ServiceAccount, RoleBinding and Pod, and saw the Pod Ready);
- the operator's requests per Agent (the API server's audit log: requests whose user is the
  operator's ServiceAccount) and its RSS once all are Ready.

On the real control plane there are no processes per pod: kwok's nodes (label type=kwok) make
pods Running and Ready. On the emulator a small task does kwok's job (marks bound pods Ready).
The operator runs as its own process under the chart's ServiceAccount (its token from the
TokenRequest API) with the chart's RBAC.

    python bench/scale.py [--agents 1000] [--skip-emulator] [--skip-cluster] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import yaml

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, NAMESPACE, POD, Res

IN_FLIGHT = 32
NODES = 10
NODE = {"pods": "5000", "cpu": "1000", "memory": "10Ti"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pod_body(name: str, ns: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"bench": "floor"}},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "containers": [{"name": "c", "image": "example/agent:1", "command": ["sleep", "3600"]}],
        },
    }


def agent_body(name: str, ns: str, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "capabilities": ["vote"],
            "template": {
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {"name": "agent", "image": "example/agent:1", "command": ["sleep", "3600"]}
                    ],
                }
            },
        },
    }


async def create_all(kube: Kube, res: Res, bodies: list[dict[str, Any]]) -> float:
    """Create every body, IN_FLIGHT at a time; seconds taken."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            await kube.create(res, body)

    start = time.monotonic()
    await asyncio.gather(*(one(b) for b in bodies))
    return time.monotonic() - start


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, poll: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


def pods_ready(pods: list[dict[str, Any]]) -> int:
    return sum(
        1
        for p in pods
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )


Counts = collections.Counter[str]


async def measure(
    kube: Kube, n: int, count_requests: Callable[[], Counts], rss: Callable[[], int], timeout: float,
    idle_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """The floor (pods by hand) and MABEAM (agents) on one control plane.

    The Agents come in two waves, a tenth of them and then the rest: after each wave is Ready,
    the operator's requests are counted for ``idle_seconds`` while nothing changes (its idle
    cost at two fleet sizes). The time to Ready is the sum of both waves' times.
    """
    await kube.create(NAMESPACE, {"metadata": {"name": "floor"}})
    await kube.create(NAMESPACE, {"metadata": {"name": "fleet"}})
    nodes = [f"kwok-{i}" for i in range(NODES)]
    start = time.monotonic()
    accept = await create_all(kube, POD, [pod_body(f"p-{i}", "floor", nodes[i % NODES]) for i in range(n)])
    poll = 0.5 if n <= 1000 else 2.0

    async def floor_ready() -> bool:
        return pods_ready(await kube.list(POD, "floor")) >= n

    await until(floor_ready, timeout, "the floor's pods Ready", poll)
    floor = time.monotonic() - start

    fleet = 0.0
    spent: Counts = collections.Counter()
    idle: dict[int, float] = {}
    idle_spent: dict[int, Counts] = {}
    memory: dict[int, float] = {}
    made = 0
    for size in sorted({max(n // 10, 1), n}):
        before = count_requests()
        start = time.monotonic()
        bodies = [agent_body(f"a-{i}", "fleet", nodes[i % NODES]) for i in range(made, size)]
        await create_all(kube, AGENT, bodies)
        made = size

        async def agents_ready(size: int = size) -> bool:
            agents = await kube.list(AGENT, "fleet")
            return sum(1 for a in agents if (a.get("status") or {}).get("phase") == "Ready") >= size

        await until(agents_ready, timeout, "every Agent Ready", poll)
        fleet += time.monotonic() - start
        await asyncio.sleep(2)  # requests still in flight when the last Agent turned Ready
        rested = count_requests()
        spent += rested - before
        await asyncio.sleep(idle_seconds)
        idle_spent[size] = count_requests() - rested
        idle[size] = idle_spent[size].total() / idle_seconds
        memory[size] = rss() / 2**20
    return {
        "floor_accept_s": accept,
        "floor_ready_s": floor,
        "agents_ready_s": fleet,
        "requests_per_agent": spent.total() / n,
        "requests_by_kind": {k: v / n for k, v in spent.most_common()},
        "idle_requests_per_s": idle,
        "idle_requests": {size: dict(c.most_common()) for size, c in idle_spent.items()},
        "idle_seconds": idle_seconds,
        "operator_rss_mb": rss() / 2**20,
        "operator_rss_mb_by_size": memory,
    }


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the operator exited; see {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the operator did not become healthy; see {log}")


# --------------------------------------------------------------------------- the real one


@contextlib.asynccontextmanager
async def real_plane(workdir: Path) -> AsyncIterator[tuple[Any, Kube, subprocess.Popen[bytes], str]]:
    """The real control plane of ``make e2e`` with kwok nodes, MABEAM's CRDs and chart RBAC, and
    the operator in its own process under the chart's ServiceAccount: (plane, an admin client,
    the operator's process, the operator's user name). Another bench uses it too."""
    from mabeam.cluster import ControlPlane, build_binaries
    from mabeam.cluster._install import apply, crds, kubectl, render_chart

    plane = ControlPlane(
        workdir,
        bin_dir=build_binaries(),
        kubelet=False,
        kwok=True,
        audit=True,
        apiserver_flags={"max-requests-inflight": "1000", "max-mutating-requests-inflight": "500"},
    )
    await asyncio.to_thread(plane.start)
    operator: subprocess.Popen[bytes] | None = None
    kube = Kube.connect(plane.admin_kubeconfig)
    try:
        config = plane.admin_kubeconfig
        apply(config, crds())
        kubectl(config, "wait", "--for=condition=Established", "--all", "crd", "--timeout=60s")
        kubectl(config, "create", "namespace", "mabeam-system")
        objects = [o for o in render_chart({"clusterWide": True}) if o.get("kind") != "Deployment"]
        apply(config, objects)
        account = next(o for o in objects if o.get("kind") == "ServiceAccount")["metadata"]["name"]
        operator_config = token_kubeconfig(plane, workdir / "operator.kubeconfig", "mabeam-system", account)
        for i in range(NODES):
            kubectl(config, "apply", "-f", "-", stdin=yaml.safe_dump(kwok_node(f"kwok-{i}")))
        port = free_port()
        log = workdir / "operator.log"
        with open(log, "ab") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "mabeam.cli", "run", "--kubeconfig", str(operator_config),
                 "--liveness", f"http://127.0.0.1:{port}/healthz"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        await wait_healthy(port, operator, log)
        yield plane, kube, operator, f"system:serviceaccount:mabeam-system:{account}"
    finally:
        await kube.close()
        if operator is not None and operator.poll() is None:
            operator.terminate()
            operator.wait()
        await asyncio.to_thread(plane.stop)


def token_kubeconfig(plane: Any, path: Path, namespace: str, account: str) -> Path:
    """A kubeconfig for the ServiceAccount (a token from the TokenRequest API)."""
    from mabeam.cluster._install import kubectl

    config = plane.admin_kubeconfig
    token = kubectl(config, "-n", namespace, "create", "token", account, "--duration=24h").strip()
    admin = yaml.safe_load(config.read_text())
    path.write_text(
        yaml.safe_dump(
            {
                **admin,
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "mabeam", "context": {"cluster": "mabeam", "user": "sa"}}],
            }
        )
    )
    return path


async def on_cluster(n: int, workdir: Path, timeout: float, idle_seconds: float) -> dict[str, Any]:
    async with real_plane(workdir) as (plane, kube, operator, user):
        pid = operator.pid
        return await measure(
            kube, n, AuditCounter(plane.audit_log, user), lambda: rss_of(pid), timeout, idle_seconds
        )


def kwok_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"type": "kwok"}, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "status": {"allocatable": NODE, "capacity": NODE},
    }


def kind_of(verb: str, resource: str, subresource: str | None) -> str:
    """A request's kind for the counts: ``patch agents/status``, ``create pods``, ..."""
    resource = resource.rsplit("/", 1)[-1]  # the emulator names the group and version too
    return f"{verb} {resource}/{subresource}" if subresource else f"{verb} {resource}"


def rotated(log: BinaryIO, offset: int) -> None:
    """Raise if the audit log is shorter than what was read of it (rotated: counts would be lost)."""
    size = os.fstat(log.fileno()).st_size
    if size < offset:
        raise RuntimeError(f"the audit log was rotated ({size} bytes, {offset} read): requests were lost")


class AuditCounter:
    """The requests of one user in the real API server's audit log, by kind (read as it grows)."""

    def __init__(self, path: Path, user: str) -> None:
        self.path, self.needle = path, f'"username":"{user}"'
        self.offset = 0
        self.counts: Counts = collections.Counter()

    def __call__(self) -> Counts:
        if self.path.exists():
            with open(self.path, "rb") as f:
                rotated(f, self.offset)
                f.seek(self.offset)
                for line in f:
                    if not line.endswith(b"\n"):
                        break
                    self.offset += len(line)
                    text = line.decode()
                    if self.needle in text:
                        record = json.loads(text)
                        ref = record.get("objectRef") or {}
                        verb, resource = record.get("verb", "?"), ref.get("resource", "?")
                        self.counts[kind_of(verb, resource, ref.get("subresource"))] += 1
        return collections.Counter(self.counts)


# --------------------------------------------------------------------------- the emulator


async def fake_kwok(kube: Kube, stop: asyncio.Event) -> None:
    """kwok's job on the emulator: pods bound to kwok-* nodes become Running and Ready."""
    done: set[tuple[str, str]] = set()
    while not stop.is_set():
        for pod in await kube.list(POD):
            meta = pod["metadata"]
            key = (meta["namespace"], meta["name"])
            if key in done or not str((pod.get("spec") or {}).get("nodeName", "")).startswith("kwok-"):
                continue
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            status = {
                "phase": "Running",
                "podIP": "10.64.0.1",
                "startTime": now,
                "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                               for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
                "containerStatuses": [
                    {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"], "imageID": "",
                     "started": True, "state": {"running": {"startedAt": now}}}
                    for c in pod["spec"]["containers"]
                ],
            }  # fmt: skip
            with contextlib.suppress(Exception):
                await kube.patch(
                    POD, meta["name"], {"status": status}, namespace=meta["namespace"], status=True
                )
                done.add(key)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


#: The operator under tracemalloc (``--tracemalloc``): on SIGUSR1 it writes a snapshot of what
#: is allocated, then a file saying it is done. Tracing starts once the operator is imported.
TRACED_OPERATOR = """
import gc, os, runpy, signal, sys, tracemalloc
out, frames = sys.argv.pop(1), int(sys.argv.pop(1))
count = 0
def dump(signum, frame):
    global count
    count += 1
    gc.collect()
    tracemalloc.take_snapshot().dump(f"{out}/snapshot-{count}")
    open(f"{out}/snapshot-{count}.done", "w").close()
signal.signal(signal.SIGUSR1, dump)
import mabeam.controller, mabeam.cli.run
tracemalloc.start(frames)
sys.argv[0] = "mabeam"
runpy.run_module("mabeam.cli", run_name="__main__", alter_sys=True)
"""


class Snapshots:
    """Tracemalloc snapshots of the operator process, one each time it is called."""

    def __init__(self, directory: Path, frames: int) -> None:
        self.directory, self.frames, self.taken = directory, frames, 0

    def __call__(self, pid: int) -> None:
        self.taken += 1
        done = self.directory / f"snapshot-{self.taken}.done"
        os.kill(pid, signal.SIGUSR1)
        while not done.exists():  # the emulator waits too: nothing changes meanwhile
            time.sleep(0.2)

    def report(self, agents: int, top: int = 15) -> None:
        """Where the memory between the first two snapshots (the two waves) went, per Agent."""
        import tracemalloc

        drop = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<unknown>")]
        first, second = (
            tracemalloc.Snapshot.load(str(self.directory / f"snapshot-{i}")).filter_traces(drop)
            for i in (1, 2)
        )
        grown = sum(t.size for t in second.traces) - sum(t.size for t in first.traces)
        print(
            f"\n  allocated (tracemalloc) between the waves: {grown / agents / 1024:.1f} KB per further Agent"
        )
        for stat in second.compare_to(first, "traceback")[:top]:
            frames = [f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback)][:5]
            print(f"    {stat.size_diff / agents / 1024:6.2f} KB {stat.count_diff / agents:5.1f} blocks  "
                  f"{' < '.join(frames)}")  # most recent call first  # fmt: skip


async def on_emulator(
    n: int, workdir: Path, timeout: float, idle_seconds: float, snapshots: Snapshots | None = None
) -> dict[str, Any]:
    from mabeam.local.cluster import BOUNDED_HISTORY, OPERATOR_IDENTITY, LocalCluster

    user = OPERATOR_IDENTITY
    async with LocalCluster(workdir, api_options=BOUNDED_HISTORY) as cluster:
        cluster.api.emulator.audit = collections.deque(maxlen=None)  # count every request
        if snapshots is None:
            await cluster.start_operator_process()
        else:
            argv = ("-c", TRACED_OPERATOR, str(snapshots.directory), str(snapshots.frames), "run")
            await cluster.start_operator_process(*argv, timeout=600)
        assert cluster._process is not None
        pid = cluster._process.pid

        def rss() -> int:
            size = rss_of(pid)
            if snapshots is not None and snapshots.taken < 2:
                snapshots(pid)
            return size

        kube = cluster.client()
        stop = asyncio.Event()
        kwok = asyncio.create_task(fake_kwok(kube, stop))
        try:

            def counts() -> Counts:
                return collections.Counter(
                    kind_of(r.verb, r.resource, r.subresource)
                    for r in cluster.api.emulator.audit
                    if r.user == user
                )

            return await measure(kube, n, counts, rss, timeout, idle_seconds)
        finally:
            stop.set()
            await kwok
            await kube.close()
            await cluster.stop_operator()


def report(name: str, figures: dict[str, Any], n: int) -> None:
    print(f"\n{name}: {n} Agents")
    print(f"  floor: {n} Pods by hand accepted in {figures['floor_accept_s']:.1f} s, all Ready in "
          f"{figures['floor_ready_s']:.1f} s")  # fmt: skip
    ratio = figures["agents_ready_s"] / figures["floor_ready_s"]
    print(f"  MABEAM: {n} Agents all Ready in {figures['agents_ready_s']:.1f} s "
          f"({ratio:.2f}x the floor's Ready time; "
          f"{figures['agents_ready_s'] / figures['floor_accept_s']:.2f}x its accept time)")  # fmt: skip
    print(f"  operator requests per Agent: {figures['requests_per_agent']:.1f} "
          f"(floor: 1 Pod create; the target is at most 6)")  # fmt: skip
    kinds = ", ".join(f"{k} {v:.2f}" for k, v in figures["requests_by_kind"].items())
    print(f"    by kind: {kinds}")
    (small, at_small), (_, at_n) = sorted(figures["operator_rss_mb_by_size"].items())
    per_agent = (at_n - at_small) * 1024 / max(n - small, 1)
    print(f"  operator RSS: {figures['operator_rss_mb']:.0f} MB ({at_small:.0f} MB at {small} Agents: "
          f"{per_agent:.0f} KB per further Agent; at 10 000 that would be about "
          f"{at_small + per_agent * (10_000 - small) / 1024:.0f} MB; the target is < 300 MB)")  # fmt: skip
    for size, rate in figures["idle_requests_per_s"].items():
        what = ", ".join(f"{k} {v}" for k, v in figures["idle_requests"][size].items()) or "none"
        print(f"  idle at {size} Agents: {rate:.2f} operator requests/s over {figures['idle_seconds']:.0f} s "
              f"(floor: 0; {what})")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    results = {}
    with tempfile.TemporaryDirectory(prefix="mabeam-scale-") as tmp:
        if not args.skip_cluster:
            results["real control plane (kube-apiserver v1.37 + kwok)"] = await on_cluster(
                args.agents, Path(tmp) / "cluster", args.timeout, args.idle
            )
        snapshots = Snapshots(Path(tmp), args.tracemalloc) if args.tracemalloc else None
        if not args.skip_emulator:
            results["emulator (mabeam local)"] = await on_emulator(
                args.agents, Path(tmp) / "local", args.timeout, args.idle, snapshots
            )
        for name, figures in results.items():
            report(name, figures, args.agents)
        if snapshots is not None and snapshots.taken == 2:
            snapshots.report(args.agents - max(args.agents // 10, 1))
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="20 Agents: checks that the benchmark runs")
    parser.add_argument("--skip-cluster", action="store_true", help="only the emulator")
    parser.add_argument("--skip-emulator", action="store_true", help="only the real control plane")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of rest counted per wave")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="emulator: the operator under tracemalloc (FRAMES frames a trace, e.g. 10); where its "
        "memory per further Agent goes (much slower, and its RSS includes tracemalloc's own: "
        "measure the RSS without it)",
    )
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.agents = 20
        arguments.idle = 3.0
    if os.environ.get("MABEAM_BENCH_NO_CLUSTER"):
        arguments.skip_cluster = True
    asyncio.run(main(arguments))
