"""``mabeam get|describe|vote|watch`` against the local API server (no operator needed)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from typing import Any

from mabeam.cli import build_parser
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, EVENT, NAMESPACE, VOTE
from mabeam.local.cluster import LocalCluster
from tests.unit._watching import drawn, watching

TEMPLATE = {"spec": {"containers": [{"name": "agent", "image": "x"}]}}


async def mabeam(cluster: LocalCluster, *argv: str) -> tuple[int, str]:
    args = build_parser().parse_args([*argv, "--kubeconfig", str(cluster.admin_kubeconfig)])
    out = io.StringIO()
    code = await args.async_func(args, out)
    return code, out.getvalue()


async def agent(kube: Kube, name: str, namespace: str = "default", **status: Any) -> None:
    await kube.create(
        AGENT,
        {"metadata": {"name": name, "namespace": namespace}, "spec": {"weight": 2, "template": TEMPLATE}},
    )
    if status:
        await kube.patch(AGENT, name, {"status": status}, namespace=namespace, status=True)


async def session(kube: Kube, name: str, **status: Any) -> None:
    await kube.create(
        COORDINATION,
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "protocol": "majority",
                "participants": {"agents": ["alice", "bob"]},
                "options": ["yes", "no"],
            },
        },
    )
    if status:
        await kube.patch(COORDINATION, name, {"status": status}, namespace="default", status=True)


async def test_get_shows_the_crd_printer_columns(cluster: LocalCluster, kube: Kube) -> None:
    await kube.create(NAMESPACE, {"metadata": {"name": "team-b"}})
    await agent(kube, "alice", phase="Ready", podName="alice-1", restarts=2)
    await agent(kube, "bob")
    await agent(kube, "carol", namespace="team-b", phase="Failed")

    code, out = await mabeam(cluster, "get", "agents")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "PHASE", "POD", "RESTARTS", "AGE"]
    assert rows[0].split()[:4] == ["alice", "Ready", "alice-1", "2"]
    assert rows[1].split()[0] == "bob" and len(rows) == 2
    assert rows[0].split()[-1].endswith("s")  # an age, like kubectl's

    code, out = await mabeam(cluster, "get", "ag", "-A", "-o", "wide")
    header, *rows = out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "PHASE", "POD", "RESTARTS", "WEIGHT", "PRIORITY", "AGE"]
    assert [r.split()[:2] for r in rows] == [["default", "alice"], ["default", "bob"], ["team-b", "carol"]]

    code, out = await mabeam(cluster, "get", "agent", "carol", "-n", "team-b")
    assert out.splitlines()[1].split()[:2] == ["carol", "Failed"]
    assert (await mabeam(cluster, "get", "agent", "nobody"))[0] == 1


async def test_describe_shows_spec_status_conditions_and_events(cluster: LocalCluster, kube: Kube) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await session(
        kube,
        "s1",
        phase="Decided",
        conditions=[
            {
                "type": "Anomalous",
                "status": "True",
                "reason": "SlowDecision",
                "message": "Decision latency 9s",
            }
        ],
    )
    ref = {"apiVersion": "mabeam.io/v1alpha1", "kind": "Coordination", "name": "s1", "namespace": "default"}
    for name, obj, reason in (("e1", ref, "Decided"), ("e2", {**ref, "kind": "Agent"}, "Other")):
        await kube.create(
            EVENT,
            {
                "metadata": {"name": name, "namespace": "default"},
                "involvedObject": obj,
                "type": "Normal",
                "reason": reason,
                "message": f"{reason} happened",
                "lastTimestamp": now,
                "source": {"component": "mabeam-operator"},
            },
        )
    code, out = await mabeam(cluster, "describe", "coordination", "s1")
    assert code == 0
    assert "Name:         s1" in out and "Kind:         Coordination" in out
    assert "  protocol: majority" in out and "  phase: Decided" in out
    conditions = out.split("Conditions:")[1].split("Events:")[0]
    assert "Anomalous" in conditions and "SlowDecision" in conditions and "Decision latency 9s" in conditions
    events = out.split("Events:")[1]
    assert "Decided happened" in events and "mabeam-operator" in events
    assert "Other happened" not in events  # another kind's object of the same name
    assert (await mabeam(cluster, "describe", "coord", "nope"))[0] == 1


async def test_vote_writes_the_named_vote_and_updates_it(cluster: LocalCluster, kube: Kube) -> None:
    await session(kube, "s1")
    code, out = await mabeam(cluster, "vote", "s1", "yes", "--as", "alice")
    assert (code, out) == (0, "vote.mabeam.io/s1-alice created\n")
    vote = await kube.get(VOTE, "s1-alice", "default")
    assert vote is not None
    assert vote["spec"] == {"session": "s1", "agent": "alice", "choice": "yes"}
    assert vote["metadata"]["labels"]["mabeam.io/session"] == "s1"
    code, out = await mabeam(cluster, "vote", "s1", "no", "--as", "alice")
    assert out == "vote.mabeam.io/s1-alice updated\n"
    vote = await kube.get(VOTE, "s1-alice", "default")
    assert vote is not None and vote["spec"]["choice"] == "no"
    _, out = await mabeam(cluster, "get", "votes")
    assert out.splitlines()[1].split()[:4] == ["s1-alice", "s1", "alice", "no"]


async def test_watch_redraws_on_changes_and_exits_when_decided(cluster: LocalCluster, kube: Kube) -> None:
    deadline = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await session(
        kube, "s2", phase="Collecting", deadline=deadline, participants=[{"name": "alice"}, {"name": "bob"}]
    )
    watch, out = watching(cluster, "coordination", "s2", "--refresh", "0.1")
    await drawn(watch, out, 1)
    received = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await kube.patch(
        COORDINATION,
        "s2",
        {
            "status": {
                "answers": [{"agent": "alice", "choice": "yes", "receivedAt": received}],
                "tally": {"yes": 1},
            }
        },
        namespace="default",
        status=True,
    )
    await drawn(watch, out, 2)
    await kube.patch(
        COORDINATION,
        "s2",
        {
            "status": {
                "phase": "Decided",
                "tally": {"yes": 2},
                "answers": [
                    {"agent": "alice", "choice": "yes", "receivedAt": received},
                    {"agent": "bob", "choice": "yes", "receivedAt": received},
                ],
                "result": {"value": "yes", "reason": "Majority", "message": "yes won", "decidedAt": received},
            }
        },
        namespace="default",
        status=True,
    )
    code, text = await asyncio.wait_for(watch, 30)
    assert code == 0
    frames = text.strip().split("\n\n")
    assert len(frames) == 3  # the start, alice's answer, the decision
    assert "phase Collecting" in frames[0] and ("closes in 30s" in frames[0] or "closes in 29s" in frames[0])
    assert [line.split() for line in frames[0].splitlines()[2:4]] == [
        ["alice", "waiting"],
        ["bob", "waiting"],
    ]
    assert ["alice", "yes", "counted"] in [line.split() for line in frames[1].splitlines()]
    assert ["yes", "1"] in [line.split() for line in frames[1].splitlines()]
    assert "phase Decided" in frames[2] and "closed" in frames[2]
    assert "Result: yes (Majority) yes won" in frames[2]


async def test_watch_of_a_missing_session_fails(cluster: LocalCluster) -> None:
    assert (await mabeam(cluster, "watch", "coordination", "nope"))[0] == 1


async def test_vote_refuses_an_unknown_option_or_a_non_participant_before_writing(
    cluster: LocalCluster, kube: Kube, capsys: Any
) -> None:
    import pytest

    from mabeam.errors import MabeamError

    await session(kube, "s2")
    not_an_option = r"'maybe' is not an option of coordination s2 \(options: yes, no\)"
    with pytest.raises(MabeamError, match=not_an_option):
        await mabeam(cluster, "vote", "s2", "maybe", "--as", "alice")
    with pytest.raises(MabeamError, match=r"mallory is not a participant of coordination s2"):
        await mabeam(cluster, "vote", "s2", "yes", "--as", "mallory")
    with pytest.raises(MabeamError, match=r'Coordination "nope" not found'):
        await mabeam(cluster, "vote", "nope", "yes", "--as", "alice")
    assert await kube.list(VOTE, "default") == []
    # The operator's verdict is reported when asked to wait for it (here a stand-in writes it).
    await session(kube, "s3")

    async def verdict() -> None:
        for _ in range(200):
            vote = await kube.get(VOTE, "s3-bob", "default")
            if vote is not None:
                status = {"accepted": False, "reason": "Late", "message": "the session closed",
                          "observedGeneration": vote["metadata"]["generation"]}  # fmt: skip
                await kube.patch(VOTE, "s3-bob", {"status": status}, namespace="default", status=True)
                return
            await asyncio.sleep(0.02)

    judge = asyncio.create_task(verdict())
    code, out = await mabeam(cluster, "vote", "s3", "yes", "--as", "bob", "--wait", "10")
    await judge
    assert code == 1 and out == "vote.mabeam.io/s3-bob created\n"
    assert "vote s3-bob refused: Late: the session closed" in capsys.readouterr().err


async def test_get_output_formats_selector_and_sealed_auction_price(
    cluster: LocalCluster, kube: Kube
) -> None:
    import json

    import yaml

    from mabeam.cli.get import auction_price, parse_selector
    from mabeam.errors import MabeamError

    await kube.create(
        AGENT,
        {"metadata": {"name": "alice", "namespace": "default", "labels": {"team": "a", "tier": "x"}},
         "spec": {"template": TEMPLATE}},
    )  # fmt: skip
    await kube.create(
        AGENT,
        {"metadata": {"name": "bob", "namespace": "default", "labels": {"team": "b"}},
         "spec": {"template": TEMPLATE}},
    )  # fmt: skip
    _, out = await mabeam(cluster, "get", "agents", "-o", "json")
    doc = json.loads(out)
    assert doc["kind"] == "List" and [o["metadata"]["name"] for o in doc["items"]] == ["alice", "bob"]
    _, out = await mabeam(cluster, "get", "agent", "bob", "-o", "yaml")
    assert yaml.safe_load(out)["metadata"]["name"] == "bob"
    _, out = await mabeam(cluster, "get", "agents", "-l", "team=a", "-o", "name")
    assert out == "agent.mabeam.io/alice\n"
    for selector, names in (("team!=a", ["bob"]), ("tier", ["alice"]), ("!tier", ["bob"]),
                            ("team in (a,b),tier", ["alice"]), ("team notin (a)", ["bob"])):  # fmt: skip
        _, out = await mabeam(cluster, "get", "agents", "-l", selector)
        assert [line.split()[0] for line in out.splitlines()[1:]] == names, selector
    try:
        parse_selector("team=a,=b")
    except MabeamError as exc:
        assert "invalid label selector" in str(exc)
    else:
        raise AssertionError("a bad selector was accepted")
    _, out = await mabeam(cluster, "get", "agents", "-o", "wide", "--context", "mabeam-local")
    assert out.splitlines()[0].split()[0] == "NAME"
    # A sealed auction has no clock price: PRICE is what its winners pay.
    sealed = {"status": {"result": {"allocations": [{"agent": "d", "items": ["g"], "price": 24}]}}}
    assert auction_price(sealed) == "24"
    assert auction_price({"status": {"clockPrice": 26}}) == 26
    assert auction_price({"status": {}}) is None


async def test_get_watch_prints_the_list_then_each_change(cluster: LocalCluster, kube: Kube) -> None:
    await agent(kube, "alice", phase="Pending")
    args = build_parser().parse_args(["get", "agents", "-w", "--kubeconfig", str(cluster.admin_kubeconfig)])
    out = io.StringIO()
    task = asyncio.create_task(args.async_func(args, out))
    for _ in range(250):
        if "alice" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    await kube.patch(AGENT, "alice", {"status": {"phase": "Ready"}}, namespace="default", status=True)
    for _ in range(250):
        if "Ready" in out.getvalue():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["NAME", "PHASE"]
    assert [line.split()[:2] for line in lines[1:]] == [["alice", "Pending"], ["alice", "Ready"]]
