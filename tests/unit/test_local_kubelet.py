"""The local kubelet runs Pods as real processes against the strict local API server, over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from mabeam.local.apiserver import LocalApiServer
from mabeam.local.kubelet import LocalKubelet, pod_phase
from mabeam.local.kubelet._pods import Container

PY = sys.executable
NS = "ns1"
KubeletFactory = Callable[..., Awaitable[LocalKubelet]]


class Api:
    """A tiny client for the test's own requests (what kubectl would do)."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def path(self, name: str) -> str:
        return f"{self.url}/api/v1/namespaces/{NS}/pods/{name}"

    async def create(
        self, name: str, containers: list[dict[str, Any]], *, finalizers: list[str] = (), **spec: Any
    ) -> None:
        meta = {"name": name, "namespace": NS, **({"finalizers": list(finalizers)} if finalizers else {})}
        account = spec.get("serviceAccountName")
        if account:  # as a cluster would require: the pod's ServiceAccount exists
            sa = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": NS},
            }
            async with self.session.post(
                f"{self.url}/api/v1/namespaces/{NS}/serviceaccounts", json=sa
            ) as resp:
                assert resp.status in (201, 409), await resp.text()
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"containers": containers, **spec},
        }
        async with self.session.post(f"{self.url}/api/v1/namespaces/{NS}/pods", json=pod) as resp:
            assert resp.status < 300, await resp.text()

    async def get(self, name: str) -> dict[str, Any] | None:
        async with self.session.get(self.path(name)) as resp:
            return None if resp.status == 404 else await resp.json()

    async def delete(self, name: str) -> None:
        async with self.session.delete(self.path(name)) as resp:
            assert resp.status < 300, await resp.text()

    async def patch(self, name: str, body: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(self.path(name), data=json.dumps(body), headers=headers) as resp:
            assert resp.status < 300, await resp.text()

    async def wait(
        self, name: str, check: Callable[[dict[str, Any] | None], bool], timeout: float = 5.0
    ) -> dict[str, Any] | None:
        """Poll the pod until ``check`` holds; return the pod that satisfied it."""
        deadline = time.monotonic() + timeout
        while True:
            pod = await self.get(name)
            if check(pod):
                return pod
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {name} never matched; last seen: {json.dumps(pod, indent=1)}")
            await asyncio.sleep(0.02)


def status(pod: dict[str, Any] | None) -> dict[str, Any]:
    return (pod or {}).get("status") or {}


def container(pod: dict[str, Any] | None, index: int = 0) -> dict[str, Any]:
    statuses = status(pod).get("containerStatuses") or [{}]
    return statuses[index] if index < len(statuses) else {}


def condition(pod: dict[str, Any] | None, ctype: str) -> str | None:
    return next((c["status"] for c in status(pod).get("conditions", []) if c["type"] == ctype), None)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_file(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"{path} was never written"
        await asyncio.sleep(0.02)
    return path.read_text()


async def wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        await asyncio.sleep(0.02)


def sleeper(pid_file: Path, *, ignore_term: bool = False) -> dict[str, Any]:
    """A container that writes its PID (and its child's) to a file and sleeps."""
    code = (
        "import os, signal, subprocess, sys, time\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
        + "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        + f"open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        + "time.sleep(60)\n"
    )
    return {"name": "main", "image": "ignored", "command": [PY, "-c", code]}


async def pids(pid_file: Path) -> list[int]:
    return [int(p) for p in (await wait_file(pid_file)).split()]


@pytest.fixture
async def server() -> AsyncIterator[LocalApiServer]:
    async with LocalApiServer() as server:
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield server
        assert server.server_errors == []


@pytest.fixture
async def api(server: LocalApiServer) -> AsyncIterator[Api]:
    headers = {"Authorization": f"Bearer {server.issue_token()}"}  # the cluster admin
    async with aiohttp.ClientSession(headers=headers) as session:
        yield Api(server.url, session)


@pytest.fixture
async def make_kubelet(server: LocalApiServer, tmp_path: Path) -> AsyncIterator[KubeletFactory]:
    started: list[LocalKubelet] = []

    async def make(url: str | None = None, **overrides: Any) -> LocalKubelet:
        options: dict[str, Any] = {
            "workdir": tmp_path / "kubelet",
            "backoff_base": 0.1,
            "backoff_cap": 0.4,
            "grace_period": 2.0,
            "probe_period": 0.05,
            "retry_delay": 0.05,
            "kubeconfig_path": server.kubeconfig(
                tmp_path / f"node-{len(started)}.yaml",
                user="system:node:local",
                groups=("system:nodes", "system:masters"),
            ),
        }
        kubelet = LocalKubelet(url or server.url, **{**options, **overrides})
        started.append(kubelet)
        return await kubelet.__aenter__()

    yield make
    for kubelet in started:
        await kubelet.stop()


@pytest.fixture
async def kubelet(make_kubelet: KubeletFactory) -> LocalKubelet:
    return await make_kubelet()


def running(pod: dict[str, Any] | None) -> bool:
    return status(pod).get("phase") == "Running"


async def test_pod_runs_with_its_env_and_kubeconfig(api: Api, kubelet: LocalKubelet, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    code = (
        "import json, os, sys, time\n"
        "print('hello from the pod', flush=True)\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{**os.environ, 'EXE': sys.executable}}) + '\\n')\n"
        "time.sleep(60)\n"
    )
    field = lambda path: {"fieldRef": {"fieldPath": path}}  # noqa: E731
    env = [
        {"name": "GREETING", "value": "hi"},
        {"name": "MESSAGE", "value": "$(GREETING) there, $$(GREETING)"},
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "NODE_NAME", "valueFrom": field("spec.nodeName")},
        {"name": "SA", "valueFrom": field("spec.serviceAccountName")},
        {"name": "POD_IP", "valueFrom": field("status.podIP")},
    ]
    containers = [
        {"name": "agent", "image": "ignored:1", "command": ["python", "-c"], "args": [code], "env": env}
    ]
    await api.create("p1", containers, serviceAccountName="robot")

    pod = await api.wait("p1", lambda p: condition(p, "Ready") == "True")
    assert pod is not None
    assert pod["spec"]["nodeName"] == "local"
    assert status(pod)["phase"] == "Running"
    assert status(pod)["podIP"] == "127.0.0.1"
    assert status(pod)["startTime"]
    assert {c["type"]: c["status"] for c in status(pod)["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    cs = container(pod)
    assert cs["name"] == "agent" and cs["ready"] is True and cs["started"] is True
    assert cs["restartCount"] == 0 and "startedAt" in cs["state"]["running"]

    seen = json.loads(await wait_file(out))
    assert seen["EXE"] == PY  # "python" is the kubelet's interpreter
    assert seen["POD_NAME"] == "p1" and seen["HOSTNAME"] == "p1"
    assert seen["POD_NAMESPACE"] == NS
    assert seen["NODE_NAME"] == "local"
    assert seen["SA"] == "robot"
    assert seen["POD_IP"] == "127.0.0.1"
    assert seen["MESSAGE"] == "hi there, $(GREETING)"
    config = yaml.safe_load(Path(seen["KUBECONFIG"]).read_text())
    assert config["clusters"][0]["cluster"]["server"] == api.url
    token = config["users"][0]["user"]["token"]
    assert "robot" not in token and len(token) >= 32  # a TokenRequest's secret, not a name
    assert config["contexts"][0]["context"]["namespace"] == NS
    assert oct(Path(seen["KUBECONFIG"]).stat().st_mode & 0o777) == "0o600"
    assert kubelet.log_path(NS, "p1", "agent").read_text() == "hello from the pod\n"


async def test_the_api_server_knows_who_speaks(
    server: LocalApiServer, api: Api, make_kubelet: KubeletFactory, tmp_path: Path
) -> None:
    await make_kubelet(
        kubeconfig_path=server.kubeconfig(
            tmp_path / "node.yaml", user="system:node:local", groups=("system:nodes", "system:masters")
        )
    )
    code = (
        "import os, time, urllib.request, yaml\n"
        "config = yaml.safe_load(open(os.environ['KUBECONFIG']))\n"
        "url = config['clusters'][0]['cluster']['server']\n"
        "ns = config['contexts'][0]['context']['namespace']\n"
        "token = config['users'][0]['user']['token']\n"
        "request = urllib.request.Request(f\"{url}/api/v1/namespaces/{ns}/pods/{os.environ['HOSTNAME']}\",\n"
        "                                 headers={'Authorization': f'Bearer {token}'})\n"
        "print(urllib.request.urlopen(request).status, flush=True)\n"
        "time.sleep(60)\n"
    )
    # The service account may read pods (the API server enforces RBAC for service accounts).
    server.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader", "namespace": NS},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        }
    )
    server.create(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "robot-reads-pods", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": NS}],
        }
    )
    await api.create("caller", [{"name": "c", "command": [PY, "-c", code]}], serviceAccountName="robot")
    assert await wait_file(tmp_path / "kubelet" / f"{NS}_caller_c.log") == "200\n"

    by_user = {(r.user, r.verb, r.subresource) for r in server.audit if r.name == "caller"}
    assert ("system:serviceaccount:ns1:robot", "get", None) in by_user  # the pod's own request
    assert ("system:node:local", "create", "binding") in by_user  # the pods/binding subresource
    assert ("system:node:local", "patch", "status") in by_user


async def test_crashing_container_restarts_with_growing_backoff(api: Api, kubelet: LocalKubelet) -> None:
    containers = [
        {"name": "crasher", "image": "x", "command": [PY, "-c", "print('boom'); raise SystemExit(7)"]}
    ]
    await api.create("crash", containers)

    backoffs: dict[int, str] = {}  # restartCount during the back-off -> announced delay
    restart_counts: list[int] = []

    def observe(pod: dict[str, Any] | None) -> bool:
        cs = container(pod)
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            assert status(pod)["phase"] == "Running"  # restarting, as in Kubernetes
            assert cs["lastState"]["terminated"]["exitCode"] == 7
            assert cs["lastState"]["terminated"]["reason"] == "Error"
            assert condition(pod, "Ready") == "False"
            backoffs[cs["restartCount"]] = waiting["message"].split()[1]
        if "restartCount" in cs:
            restart_counts.append(cs["restartCount"])
        return max(backoffs, default=0) >= 3

    await api.wait("crash", observe)
    expected = {0: "0.1s", 1: "0.2s", 2: "0.4s", 3: "0.4s"}  # doubling from the base up to the cap
    assert {n: backoffs[n] for n in backoffs if n <= 3} == {n: expected[n] for n in backoffs if n <= 3}
    assert 0 in backoffs and 3 in backoffs
    assert restart_counts == sorted(restart_counts)
    log = kubelet.log_path(NS, "crash", "crasher").read_text()
    assert log.count("boom") >= 4  # the program really ran again each time


async def test_exec_readiness_probe_toggles_readiness(
    api: Api, kubelet: LocalKubelet, tmp_path: Path
) -> None:
    flag = tmp_path / "ready"
    probe = {
        "exec": {
            "command": [PY, "-c", f"import os, sys; sys.exit(0 if os.path.exists({str(flag)!r}) else 1)"]
        },
        "failureThreshold": 1,
    }
    containers = [
        {"name": "c", "command": [PY, "-c", "import time; time.sleep(60)"], "readinessProbe": probe}
    ]
    await api.create("probed", containers)

    pod = await api.wait("probed", running)
    assert condition(pod, "Ready") == "False" and container(pod)["ready"] is False
    await asyncio.sleep(0.3)  # several failing probes: still not ready
    assert condition(await api.get("probed"), "Ready") == "False"

    flag.touch()
    pod = await api.wait("probed", lambda p: condition(p, "Ready") == "True")
    assert container(pod)["ready"] is True and condition(pod, "ContainersReady") == "True"

    flag.unlink()
    pod = await api.wait("probed", lambda p: condition(p, "Ready") == "False")
    assert container(pod)["ready"] is False and status(pod)["phase"] == "Running"


async def test_http_readiness_probe_and_working_dir(api: Api, kubelet: LocalKubelet, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    probe = {"httpGet": {"path": "/healthz", "port": "web"}, "failureThreshold": 1}
    containers = [
        {
            "name": "web",
            "command": serve,
            "workingDir": str(tmp_path),
            "ports": [{"name": "web", "containerPort": port}],
            "readinessProbe": probe,
        }
    ]
    await api.create("web", containers)

    await api.wait("web", running)
    await asyncio.sleep(0.3)  # serving, but /healthz is 404: not ready
    assert condition(await api.get("web"), "Ready") == "False"
    (tmp_path / "healthz").write_text("ok")  # served from workingDir
    await api.wait("web", lambda p: condition(p, "Ready") == "True")


@pytest.mark.parametrize(
    ("policy", "exit_code", "phase", "reason"),
    [
        ("Never", 0, "Succeeded", "Completed"),
        ("Never", 3, "Failed", "Error"),
        ("OnFailure", 0, "Succeeded", "Completed"),
    ],
    ids=["never-success", "never-failure", "onfailure-success"],
)
async def test_run_to_completion(
    api: Api, kubelet: LocalKubelet, policy: str, exit_code: int, phase: str, reason: str
) -> None:
    containers = [{"name": "job", "command": [PY, "-c", f"raise SystemExit({exit_code})"]}]
    await api.create("job", containers, restartPolicy=policy)

    pod = await api.wait("job", lambda p: status(p).get("phase") == phase)
    terminated = container(pod)["state"]["terminated"]
    assert terminated["exitCode"] == exit_code and terminated["reason"] == reason
    assert container(pod)["restartCount"] == 0
    assert condition(pod, "Ready") == "False"
    await asyncio.sleep(0.3)  # no restart follows
    pod = await api.get("job")
    assert status(pod)["phase"] == phase and container(pod)["restartCount"] == 0


async def test_never_with_one_failing_container_fails(api: Api, kubelet: LocalKubelet) -> None:
    containers = [
        {"name": "ok", "command": [PY, "-c", "pass"]},
        {"name": "bad", "command": [PY, "-c", "import time; time.sleep(0.2); raise SystemExit(2)"]},
    ]
    await api.create("mixed", containers, restartPolicy="Never")
    pod = await api.wait("mixed", lambda p: status(p).get("phase") == "Failed")
    codes = {cs["name"]: cs["state"]["terminated"]["exitCode"] for cs in status(pod)["containerStatuses"]}
    assert codes == {"ok": 0, "bad": 2}


async def test_missing_command_waits_with_command_not_found(api: Api, kubelet: LocalKubelet) -> None:
    containers = [{"name": "c", "image": "busybox", "command": ["no-such-program-mabeam", "--help"]}]
    await api.create("nocmd", containers)

    pod = await api.wait(
        "nocmd",
        lambda p: (
            "waiting" in (container(p).get("state") or {}) and "message" in container(p)["state"]["waiting"]
        ),
    )
    waiting = container(pod)["state"]["waiting"]
    assert waiting["reason"] == "CommandNotFound"
    assert "no-such-program-mabeam" in waiting["message"]
    assert status(pod)["phase"] == "Pending"
    assert condition(pod, "PodScheduled") == "True" and condition(pod, "Ready") == "False"


async def test_unsupported_env_source_is_a_config_error(api: Api, kubelet: LocalKubelet) -> None:
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    await api.create("secret", [{"name": "c", "command": [PY, "-c", "pass"], "env": env}])

    pod = await api.wait(
        "secret", lambda p: "message" in (container(p).get("state") or {}).get("waiting", {})
    )
    waiting = container(pod)["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "env[0] (PASSWORD).valueFrom" in waiting["message"]
    assert status(pod)["phase"] == "Pending"


async def test_deleting_the_pod_kills_its_processes(api: Api, kubelet: LocalKubelet, tmp_path: Path) -> None:
    await api.create("doomed", [sleeper(tmp_path / "pids")])
    main, child = await pids(tmp_path / "pids")
    assert alive(main) and alive(child)

    await api.delete("doomed")
    await wait_gone(main)
    await wait_gone(child)  # the whole process group goes


async def test_sigterm_is_followed_by_sigkill_after_the_grace_period(
    api: Api, make_kubelet: KubeletFactory, tmp_path: Path
) -> None:
    await make_kubelet(grace_period=0.3)
    await api.create("stubborn", [sleeper(tmp_path / "pids", ignore_term=True)])
    main, _ = await pids(tmp_path / "pids")

    started = time.monotonic()
    await api.delete("stubborn")
    await wait_gone(main)
    assert time.monotonic() - started >= 0.25  # SIGTERM alone did not end it


async def test_finalizers_keep_the_object_the_kubelet_only_stops_it(
    api: Api, kubelet: LocalKubelet, tmp_path: Path
) -> None:
    await api.create("held", [sleeper(tmp_path / "pids")], finalizers=["example.com/hold"])
    main, _ = await pids(tmp_path / "pids")

    await api.delete("held")  # with a finalizer: only a deletionTimestamp is set
    await wait_gone(main)
    pod = await api.wait("held", lambda p: "terminated" in (container(p).get("state") or {}))
    assert pod is not None and pod["metadata"]["deletionTimestamp"]
    assert container(pod)["state"]["terminated"]["exitCode"] == 128 + 15  # SIGTERM
    await asyncio.sleep(0.2)
    assert await api.get("held") is not None  # the kubelet does not delete it

    await api.patch("held", {"metadata": {"finalizers": []}})
    await api.wait("held", lambda p: p is None)


async def test_evict_fails_the_pod_and_does_not_restart_it(
    api: Api, kubelet: LocalKubelet, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids"
    await api.create("victim", [sleeper(pid_file)])
    main, child = await pids(pid_file)
    await api.wait("victim", running)

    await kubelet.evict(NS, "victim", message="The node was low on resource: memory.")
    assert not alive(main) and not alive(child)
    pod = await api.wait("victim", lambda p: status(p).get("phase") == "Failed")
    assert status(pod)["reason"] == "Evicted"
    assert status(pod)["message"] == "The node was low on resource: memory."
    assert condition(pod, "Ready") == "False" and condition(pod, "DisruptionTarget") == "True"
    assert "terminated" in container(pod)["state"]

    pid_file.unlink()
    await asyncio.sleep(0.5)  # longer than the back-off: restartPolicy Always does not bring it back
    assert not pid_file.exists()
    assert status(await api.get("victim"))["phase"] == "Failed"
    with pytest.raises(LookupError, match="does not run"):
        await kubelet.evict(NS, "nobody")


async def test_stop_leaves_no_process(api: Api, make_kubelet: KubeletFactory, tmp_path: Path) -> None:
    kubelet = await make_kubelet(grace_period=0.3)
    await api.create("a", [sleeper(tmp_path / "a")])
    await api.create("b", [sleeper(tmp_path / "b", ignore_term=True)])
    everyone = [*await pids(tmp_path / "a"), *await pids(tmp_path / "b")]
    assert all(alive(pid) for pid in everyone)

    await kubelet.stop()
    assert [pid for pid in everyone if alive(pid)] == []


class Proxy:
    """A TCP proxy in front of the API server whose connections the test can cut."""

    def __init__(self, target: str) -> None:
        self.host, port = target.split("//")[1].rstrip("/").split(":")
        self.port = int(port)
        self.down = False
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def cut(self) -> None:
        self.down = True
        for writer in self.writers:
            writer.close()
        self.writers.clear()


async def test_survives_a_broken_watch_and_relists(
    api: Api, make_kubelet: KubeletFactory, tmp_path: Path
) -> None:
    proxy = Proxy(api.url)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    async with server:
        await make_kubelet(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await api.create("before", [sleeper(tmp_path / "before")])
        await api.create("other", [sleeper(tmp_path / "other")])
        before, _ = await pids(tmp_path / "before")
        other, _ = await pids(tmp_path / "other")

        proxy.cut()  # the watch breaks and the API is unreachable for a while...
        await api.delete("other")  # ...so the kubelet misses this deletion
        await asyncio.sleep(0.2)
        assert alive(other)
        proxy.down = False

        await wait_gone(other)  # found out by listing again
        assert alive(before)
        await api.create("after", [sleeper(tmp_path / "after")])  # and the new watch works
        assert alive((await pids(tmp_path / "after"))[0])


@pytest.mark.parametrize(
    ("states", "policy", "phase"),
    [
        ([{"waiting": {}}, {"running": {}}], "Always", "Pending"),
        ([{"running": {}}, {"terminated": {"exitCode": 0}}], "Never", "Running"),
        ([{"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 0}}], "Never", "Succeeded"),
        ([{"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 1}}], "Never", "Failed"),
        ([{"terminated": {"exitCode": 0}}], "Always", "Running"),
        ([{"terminated": {"exitCode": 1}}], "OnFailure", "Running"),
        ([{"terminated": {"exitCode": 0}}], "OnFailure", "Succeeded"),
    ],
    ids=[
        "waiting",
        "one-running",
        "all-succeeded",
        "one-failed",
        "always-restarts",
        "onfailure-retries",
        "onfailure-done",
    ],
)
def test_pod_phase_follows_the_kubelet_rules(states: list[dict[str, Any]], policy: str, phase: str) -> None:
    containers = [Container(spec={}, name=str(i), state=state) for i, state in enumerate(states)]
    assert pod_phase(containers, policy) == phase


def test_waiting_for_a_restart_counts_as_having_run() -> None:
    restarting = Container(
        spec={},
        name="c",
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"exitCode": 1}},
    )
    assert pod_phase([restarting], "Always") == "Running"
    assert pod_phase([Container(spec={}, name="c")], "Always") == "Pending"
