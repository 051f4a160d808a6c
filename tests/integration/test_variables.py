"""Variables end to end: the operator, the SDK with agents' own credentials, RBAC, the projection."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from lightkube.resources.core_v1 import ConfigMap

from mabeam.controller.variables import apply_session_outcome
from mabeam.core import agents as _agents
from mabeam.core.variables import decode_projection
from mabeam.core.variables_wire import WRITE_ANNOTATION, WRITER_ANNOTATION, encode_write, lease_name, settled
from mabeam.errors import AccessDeniedError, ApiError, ConflictError, InvalidSpecError, LockError
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, CONFIG_MAP, LEASE, ROLE, ROLE_BINDING, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.models.variable import VariableWrite, Writer
from mabeam.sdk import Variables
from tests.integration._util import eventually

NS = "default"


def variable(name: str, *, value: Any = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "number", **spec}
    if value is not None:
        body["value"] = value
    return {"metadata": {"name": name, "namespace": NS}, "spec": body}


def agent(name: str, **labels: str) -> dict[str, Any]:
    sleeper = [sys.executable, "-c", "import time; time.sleep(3600)"]
    return {
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"capabilities": ["compute"], "template": {"spec": {"containers": [
            {"name": "agent", "image": "example/agent:1", "command": sleeper}
        ]}}},
    }  # fmt: skip


async def status(kube: Kube, name: str) -> dict[str, Any]:
    obj = await kube.get(VARIABLE, name, NS)
    return (obj or {}).get("status") or {}


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


async def projected(kube: Kube) -> dict[str, Any]:
    cm = await kube.get(CONFIG_MAP, "mabeam-variables", NS)
    return decode_projection((cm or {}).get("data") or {})


async def until(kube: Kube, name: str, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        st = await status(kube, name)
        return st if check(st) else None

    result: dict[str, Any] = await eventually(probe, timeout=10, interval=0.05, what=what)
    return result


@asynccontextmanager
async def as_agent(cluster: LocalCluster, name: str) -> AsyncIterator[Variables]:
    """The SDK with the agent's own credentials (its ServiceAccount), as its pod has them."""
    path = cluster.api.kubeconfig(
        cluster.workdir / f"{name}-{time.monotonic_ns()}.kubeconfig",
        user=f"system:serviceaccount:{NS}:mabeam-agent-{name}",
    )
    kube = Kube.connect(path, namespace=NS)
    variables = Variables(kube, NS, name, write_timeout=10)
    try:
        yield variables
    finally:
        await variables.close()
        await kube.close()


async def agents_ready(kube: Kube, variable_name: str, *names: str) -> None:
    """Wait until the agents' base rights and the Variable's writer binding name them."""

    async def check() -> bool:
        binding = await kube.get(ROLE_BINDING, f"mabeam-var-{variable_name}-writer", NS)
        subjects = {s["name"] for s in (binding or {}).get("subjects") or []}
        bases = [await kube.get(ROLE_BINDING, _agents.service_account_name(n), NS) for n in names]
        return all(bases) and {f"mabeam-agent-{n}" for n in names} <= subjects

    await eventually(check, timeout=10, interval=0.05, what=f"RBAC for {names}")


@pytest.fixture(autouse=True)
def rbac(cluster: LocalCluster) -> None:
    """These tests rely on RBAC: agents and the operator use only the rights they are given."""
    assert cluster.api.emulator.authorize


@pytest.fixture
async def operator(cluster: LocalCluster, rbac: None) -> LocalCluster:
    await cluster.start_operator()
    return cluster


async def test_spec_value_is_applied_projected_and_an_invalid_one_keeps_the_previous(
    operator: LocalCluster, kube: Kube
) -> None:
    await kube.create(VARIABLE, variable("target", value=21, constraints={"minimum": 10, "maximum": 30}))
    st = await until(kube, "target", lambda s: s.get("version") == 1, "version 1")
    assert (st["value"], st["phase"], condition(st, "Valid")["status"]) == (21, "Ready", "True")
    assert st["changedBy"] == {"kind": "User", "name": "spec"}
    await eventually(lambda: projected(kube), what="projection")
    assert await projected(kube) == {"target": 21}

    await kube.patch(VARIABLE, "target", {"spec": {"value": 35}}, namespace=NS)
    st = await until(kube, "target", lambda s: condition(s, "Valid").get("status") == "False", "Valid=False")
    assert (st["value"], st["version"], st["phase"]) == (21, 1, "Invalid")
    assert "at most 30" in condition(st, "Valid")["message"] or "30" in condition(st, "Valid")["message"]
    assert await projected(kube) == {"target": 21}

    await kube.patch(VARIABLE, "target", {"spec": {"value": 22.5}}, namespace=NS)
    st = await until(kube, "target", lambda s: s.get("version") == 2, "version 2")
    assert (st["value"], condition(st, "Valid")["status"]) == (22.5, "True")
    await eventually(lambda: _equals(projected(kube), {"target": 22.5}), what="projection of 22.5")
    # The writer Role grants update/patch on this Variable and get/update on its lock only.
    role = await kube.get(ROLE, "mabeam-var-target-writer", NS)
    assert role is not None and role["rules"] == [
        {"apiGroups": ["mabeam.io"], "resources": ["variables"], "verbs": ["update", "patch"],
         "resourceNames": ["target"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
         "resourceNames": ["mabeam-var-target"]},
    ]  # fmt: skip
    # The operator created the lock Lease, free, owned by the Variable (agents cannot create it).
    lease = await kube.get(LEASE, "mabeam-var-target", NS)
    assert lease is not None and not lease["spec"].get("holderIdentity")
    assert [o["name"] for o in lease["metadata"]["ownerReferences"]] == ["target"]


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_agent_writes_conflicts_and_invalid_values(operator: LocalCluster, kube: Kube) -> None:
    await kube.create(AGENT, agent("a1"))
    await kube.create(VARIABLE, variable("strict", value=1, access={"agents": ["a1"]}))
    await kube.create(
        VARIABLE, variable("loose", value=1, access={"agents": ["a1"]}, conflictPolicy="LastWriterWins")
    )
    await agents_ready(kube, "strict", "a1")
    await agents_ready(kube, "loose", "a1")
    async with as_agent(operator, "a1") as a1:
        await until(kube, "strict", lambda s: s.get("version") == 1, "strict v1")
        assert await a1.write("strict", 2, based_on=1, reason="warmer") == 2
        with pytest.raises(ConflictError) as stale:
            await a1.write("strict", 3, based_on=1)
        assert (stale.value.current_value, stale.value.current_version) == (2, 2)
        st = await status(kube, "strict")
        assert st["changedBy"] == {"kind": "Agent", "name": "a1"} and st["reason"] == "warmer"
        assert st["lastWrite"]["applied"] is True

        await until(kube, "loose", lambda s: s.get("version") == 1, "loose v1")
        assert await a1.write("loose", 5, based_on=1) == 2
        assert await a1.write("loose", 6, based_on=1) == 3  # stale, but the last writer wins

        with pytest.raises(InvalidSpecError, match="must be a number"):
            await a1.write("strict", "hot")
        obj = await kube.get(VARIABLE, "strict", NS)
        assert obj is not None and obj["status"]["value"] == 2 and obj["status"]["version"] == 2
        assert obj["status"]["lastWrite"]["reason"] == "InvalidValue"
        # spec.value does not keep pointing at the refused value.
        await eventually(lambda: _spec_value(kube, "strict", 2), what="spec.value reset to 2")
        assert await a1.get("strict") == 2
        assert await a1.write("strict", 3, based_on=2) == 3


async def _spec_value(kube: Kube, name: str, expected: Any) -> bool:
    obj = await kube.get(VARIABLE, name, NS)
    meta = (obj or {}).get("metadata") or {}
    return bool(
        obj
        and obj["spec"].get("value") == expected
        and "mabeam.io/write" not in (meta.get("annotations") or {})
    )


async def test_racing_writers_lose_no_acknowledged_write(operator: LocalCluster, kube: Kube) -> None:
    names = ["w1", "w2", "w3", "w4"]
    for name in names:
        await kube.create(AGENT, agent(name, team="blue"))
    spec = {"type": "integer", "historyLimit": 100, "access": {"selector": {"matchLabels": {"team": "blue"}}}}
    await kube.create(VARIABLE, {"metadata": {"name": "counter", "namespace": NS}, "spec": spec})
    await agents_ready(kube, "counter", *names)
    writes_each = 3
    acknowledged: dict[int, int] = {}

    async def writer(agent_name: str, index: int) -> None:
        async with as_agent(operator, agent_name) as sdk:
            for k in range(writes_each):
                value = index * 100 + k
                version = await sdk.write("counter", value)
                assert version not in acknowledged, f"version {version} acknowledged twice"
                acknowledged[version] = value

    await asyncio.gather(*(writer(names[i % len(names)], i) for i in range(8)))
    total = 8 * writes_each
    assert sorted(acknowledged) == list(range(1, total + 1))
    st = await status(kube, "counter")
    assert st["version"] == total
    assert [h["version"] for h in st["history"]] == list(range(1, total + 1))
    assert {h["version"]: h["value"] for h in st["history"]} == acknowledged
    assert {h["changedBy"]["name"] for h in st["history"]} == set(names)


async def test_lock_expires_and_an_old_fencing_token_is_refused(operator: LocalCluster, kube: Kube) -> None:
    for name in ("slow", "fast"):
        await kube.create(AGENT, agent(name))
    await kube.create(VARIABLE, variable("owner", value=0, access={"agents": ["slow", "fast"]}))
    await agents_ready(kube, "owner", "slow", "fast")
    await until(kube, "owner", lambda s: s.get("version") == 1, "owner v1")
    async with as_agent(operator, "slow") as slow, as_agent(operator, "fast") as fast:
        # A renewed lock outlives its TTL: the other agent cannot take it meanwhile.
        async with slow.lock("owner", ttl=1) as token:
            with pytest.raises(LockError, match="held by slow"):
                async with fast.lock("owner", ttl=1, wait=1.5):
                    pass
            assert await slow.write("owner", 1) == 2
        # A holder that stops renewing (paused) loses the lock once the TTL has passed.
        async with slow.lock("owner", ttl=1, renew=False) as old:
            assert old == token + 1
            started = time.monotonic()
            async with fast.lock("owner", ttl=5, wait=5) as new:
                assert time.monotonic() - started >= 0.9
                assert new == old + 1
                # The paused holder wakes up and writes with its old token: refused.
                with pytest.raises(ConflictError, match="fencing token"):
                    await slow.write("owner", 666)
                with pytest.raises(LockError, match="locked by fast"):
                    await _write_without_token(slow)
                assert await fast.write("owner", 2) == 3
                st = await until(
                    kube, "owner", lambda s: (s.get("lock") or {}).get("holder") == "fast", "mirror"
                )
                assert st["lock"]["fencingToken"] == new
        st = await until(kube, "owner", lambda s: condition(s, "Locked").get("status") == "False", "released")
        assert st["value"] == 2 and [h["value"] for h in st["history"]] == [0, 1, 2]


async def test_a_lock_taken_and_released_without_a_write_shows_in_the_status(
    operator: LocalCluster, kube: Kube
) -> None:
    """The Lease watch wakes the Variable: no write, no expiry (the TTL is long), no resync
    (ten minutes) is needed for status.lock to follow the Lease."""
    await kube.create(AGENT, agent("keeper"))
    await kube.create(VARIABLE, variable("gate", value=0, access={"agents": ["keeper"]}))
    await agents_ready(kube, "gate", "keeper")
    await until(kube, "gate", lambda s: s.get("version") == 1, "gate v1")
    async with as_agent(operator, "keeper") as keeper:
        async with keeper.lock("gate", ttl=120) as token:
            st = await until(kube, "gate", lambda s: (s.get("lock") or {}).get("holder") == "keeper", "held")
            assert st["lock"]["fencingToken"] == token
            assert condition(st, "Locked")["status"] == "True"
        st = await until(kube, "gate", lambda s: condition(s, "Locked").get("status") == "False", "released")
        assert st["version"] == 1


async def test_a_lock_lease_made_before_its_label_existed_gets_it(operator: LocalCluster, kube: Kube) -> None:
    """An older operator made lock Leases without the label the Lease watch selects by."""
    await kube.create(LEASE, {"metadata": {"name": lease_name("old"), "namespace": NS},
                              "spec": {"leaseTransitions": 0}})  # fmt: skip
    await kube.create(VARIABLE, variable("old", value=0))
    await until(kube, "old", lambda s: s.get("version") == 1, "old v1")

    async def labelled() -> bool:
        lease = await kube.get(LEASE, lease_name("old"), NS)
        return "mabeam.io/variable" in ((lease or {}).get("metadata") or {}).get("labels", {})

    await eventually(labelled, timeout=10, what="the Lease labelled")


async def test_another_agent_cannot_write_with_the_holders_token(operator: LocalCluster, kube: Kube) -> None:
    for name in ("holder", "other"):
        await kube.create(AGENT, agent(name))
    await kube.create(VARIABLE, variable("owner", value=0, access={"agents": ["holder", "other"]}))
    await agents_ready(kube, "owner", "holder", "other")
    await until(kube, "owner", lambda s: s.get("version") == 1, "owner v1")
    async with (
        as_agent(operator, "holder") as holder,
        as_agent(operator, "other") as other,
        holder.lock("owner", ttl=5) as token,
    ):
        lease = await kube.get(LEASE, "mabeam-var-owner", NS)
        assert (lease or {})["spec"]["leaseTransitions"] == token  # public: anyone may read it
        other._tokens["owner"] = token  # what a lying agent would send
        with pytest.raises(LockError, match=r"locked by holder .*not by other"):
            await other.write("owner", 666)
        assert await holder.write("owner", 1) == 2
    st = await status(kube, "owner")
    assert [h["value"] for h in st["history"]] == [0, 1]
    assert st["lastWrite"]["writer"]["name"] == "holder"


async def _write_without_token(sdk: Variables) -> int:
    sdk._tokens.pop("owner", None)
    return await sdk.write("owner", 667)


async def test_a_forbidden_agent_is_refused_by_the_api_server(operator: LocalCluster, kube: Kube) -> None:
    await kube.create(AGENT, agent("insider", role="compute"))
    await kube.create(AGENT, agent("outsider"))
    access = {"selector": {"matchLabels": {"role": "compute"}}}
    await kube.create(VARIABLE, variable("secret", value=1, access=access))
    await agents_ready(kube, "secret", "insider")
    await eventually(
        lambda: kube.get(ROLE_BINDING, "mabeam-agent-outsider", NS), timeout=10, what="outsider's base rights"
    )
    async with as_agent(operator, "outsider") as outsider, as_agent(operator, "insider") as insider:
        assert await outsider.get("secret") == 1  # reading is every agent's right
        with pytest.raises(AccessDeniedError, match="may not write"):
            await outsider.write("secret", 2)
        # Nor may it take the lock, which would block the writers (403 on the Lease).
        with pytest.raises(AccessDeniedError, match="may not lock Variable secret"):
            async with outsider.lock("secret", ttl=5, wait=0.5):
                pass
        lease = {"metadata": {"name": "mabeam-var-other", "namespace": NS}, "spec": {}}
        with pytest.raises(ApiError) as denied:
            await outsider.kube.create(LEASE, lease)
        assert denied.value.status == 403
        # Of the ConfigMaps it reads the projection only (also as a list selecting that name).
        assert await outsider.kube.get(CONFIG_MAP, "mabeam-variables", NS) is not None
        selected = outsider.kube.client.list(
            ConfigMap, namespace=NS, fields={"metadata.name": "mabeam-variables"}
        )
        assert [cm.metadata.name async for cm in selected] == ["mabeam-variables"]
        await kube.create(CONFIG_MAP, {"metadata": {"name": "private", "namespace": NS}, "data": {"k": "v"}})
        for call in (outsider.kube.get(CONFIG_MAP, "private", NS), outsider.kube.list(CONFIG_MAP, NS)):
            with pytest.raises(ApiError) as denied:
                await call
            assert denied.value.status == 403
        assert await insider.write("secret", 3) == 2
    refused = [
        r for r in operator.api.audit
        if r.user == "system:serviceaccount:default:mabeam-agent-outsider" and r.verb == "update"
    ]  # fmt: skip
    assert [(r.resource, r.name, r.code) for r in refused] == [
        ("mabeam.io/v1alpha1/variables", "secret", 403)
    ]
    denied_leases = [
        (r.verb, r.name, r.code) for r in operator.api.audit
        if r.user == "system:serviceaccount:default:mabeam-agent-outsider" and r.resource.endswith("leases")
    ]  # fmt: skip
    # lock() asked (and asked again while it waited for a grant), and every ask was refused.
    assert {d for d in denied_leases} == {("get", "mabeam-var-secret", 403), ("create", None, 403)}
    # Relabelling the outsider lets it write (the binding follows the selector).
    await kube.patch(AGENT, "outsider", {"metadata": {"labels": {"role": "compute"}}}, namespace=NS)
    await agents_ready(kube, "secret", "outsider")
    async with as_agent(operator, "outsider") as outsider:
        assert await outsider.write("secret", 4) == 3
    # The operator itself never went beyond its declared rights.
    assert [r for r in operator.api.audit if r.code == 403 and "operator" in r.user] == []


async def test_a_write_whose_two_writer_names_differ_is_refused(operator: LocalCluster, kube: Kube) -> None:
    # "low" passes admission with mabeam.io/writer = its own name but claims the higher-priority
    # "boss" in the write itself: the operator refuses it. Omitting mabeam.io/writer is refused
    # by the API server already (the admission policy).
    await kube.create(AGENT, agent("low"))
    await kube.create(AGENT, {**agent("boss"), "spec": {**agent("boss")["spec"], "priority": 10}})
    spec = {"conflictPolicy": "HighestPriority", "access": {"agents": ["low", "boss"]}}
    await kube.create(VARIABLE, variable("setpoint", value=1, **spec))
    await agents_ready(kube, "setpoint", "low", "boss")
    await until(kube, "setpoint", lambda s: s.get("version") == 1, "setpoint v1")

    async def settled_setpoint() -> dict[str, Any] | None:
        obj = await kube.get(VARIABLE, "setpoint", NS)
        return obj if obj is not None and settled(obj) else None

    def forged(obj: dict[str, Any], write_id: str, claimed: str | None) -> dict[str, Any]:
        write = VariableWrite(value=99, writer=Writer(kind="Agent", name="boss", priority=10))
        annotations = {WRITE_ANNOTATION: encode_write(write_id, write)}
        if claimed is not None:
            annotations[WRITER_ANNOTATION] = claimed
        obj["metadata"]["annotations"] = annotations
        obj["spec"]["value"] = 99
        return obj

    async def replace_as(client: Kube, write_id: str, claimed: str | None) -> None:
        # The operator may change the Variable between our read and our PUT: read again then.
        for _ in range(50):
            obj = await eventually(settled_setpoint, what="setpoint settled")
            try:
                await client.replace(VARIABLE, forged(obj, write_id, claimed))
                return
            except ConflictError:
                continue
        raise AssertionError("the Variable never stayed unchanged between a read and a write")

    async with as_agent(operator, "low") as low:
        with pytest.raises(ApiError, match=r"must name its writer in the annotation mabeam\.io/writer"):
            await replace_as(low.kube, "w-bare", None)
        await replace_as(low.kube, "w-forged", "low")  # RBAC lets "low" update the Variable
        st = await until(
            kube, "setpoint", lambda s: (s.get("lastWrite") or {}).get("writeId") == "w-forged", "w"
        )
        last = st["lastWrite"]
        assert (last["applied"], last["reason"], last["writer"]["name"]) == (False, "Forbidden", "boss")
        assert f"the annotation {WRITER_ANNOTATION} names agent low" in last["message"]
        assert (st["value"], st["version"]) == (1, 1)
        await eventually(lambda: _spec_value(kube, "setpoint", 1), what="spec.value reset to 1")
        meta = (await kube.get(VARIABLE, "setpoint", NS) or {})["metadata"]
        assert WRITER_ANNOTATION not in (meta.get("annotations") or {})
        # The SDK names the same agent in both annotations: its write is applied.
        assert await low.write("setpoint", 5) == 2
    st = await status(kube, "setpoint")
    assert st["changedBy"] == {"kind": "Agent", "name": "low"}


async def test_a_session_outcome_is_applied_once_across_an_operator_kill(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator_process()
    await kube.create(VARIABLE, variable("result", value=1, historyLimit=20))
    await until(kube, "result", lambda s: s.get("version") == 1, "v1")
    assert await apply_session_outcome(kube, NS, "result", 7, "session-uid-1") is True
    assert await apply_session_outcome(kube, NS, "result", 7, "session-uid-1") is False
    await cluster.kill_operator()
    assert await apply_session_outcome(kube, NS, "result", 8, "session-uid-1") is False
    await cluster.start_operator_process()
    await eventually(lambda: _equals(projected(kube), {"result": 7}), timeout=10, what="projection of 7")
    st = await status(kube, "result")
    assert st["version"] == 2 and st["appliedSessions"] == ["session-uid-1"]
    assert [(h["value"], h.get("session")) for h in st["history"]] == [(1, None), (7, "session-uid-1")]
    with pytest.raises(InvalidSpecError, match="must be a number"):
        await apply_session_outcome(kube, NS, "result", "seven", "session-uid-2")
    assert (await status(kube, "result"))["version"] == 2
    await cluster.stop_operator()


async def test_sdk_watch_yields_each_applied_change(operator: LocalCluster, kube: Kube) -> None:
    await kube.create(AGENT, agent("watcher"))
    await kube.create(VARIABLE, variable("mode", value=1))
    await eventually(lambda: kube.get(ROLE_BINDING, "mabeam-agent-watcher", NS), timeout=10, what="rights")
    async with as_agent(operator, "watcher") as sdk:
        seen: list[tuple[Any, int]] = []

        async def follow() -> None:
            async for value, version in sdk.watch("mode"):
                seen.append((value, version))
                if version == 3:
                    return

        follower = asyncio.create_task(follow())
        for value in (1, 2, 3):
            await until(kube, "mode", lambda s, v=value: s.get("value") == v, f"value {value}")
            if value < 3:
                await kube.patch(VARIABLE, "mode", {"spec": {"value": value + 1}}, namespace=NS)
        await asyncio.wait_for(follower, 5)
        assert seen == [(1, 1), (2, 2), (3, 3)]
        assert await sdk.read("mode") == (3, 3)


async def test_a_session_outcome_waits_until_its_variable_took_its_own_spec_in(
    cluster: LocalCluster, kube: Kube
) -> None:
    """Found by the nemesis: an outcome applied to a Variable whose first reconcile had not run
    yet (its operator slowed down by faults) became version 1, and that first reconcile then
    applied spec.value over it as version 2: the outcome was lost. Now the outcome waits
    (a retryable ApiError) until the Variable has been taken in, and then lands on top."""
    await kube.create(VARIABLE, variable("late-start", value=1, historyLimit=20))
    with pytest.raises(ApiError, match="not initialised yet"):
        await apply_session_outcome(kube, NS, "late-start", 7, "session-uid-1")
    assert ((await kube.get(VARIABLE, "late-start", NS)) or {}).get("status") is None
    await cluster.start_operator_process()
    await until(kube, "late-start", lambda s: s.get("version") == 1, "v1")
    assert await apply_session_outcome(kube, NS, "late-start", 7, "session-uid-1") is True
    st = await status(kube, "late-start")
    assert (st["value"], st["version"], st["appliedSessions"]) == (7, 2, ["session-uid-1"])
    await cluster.stop_operator()
