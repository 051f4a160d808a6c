"""Coordination with real agent programs (agents/voter.py, agents/worker.py run as Pods by the
local kubelet), outcomes applied to a Variable exactly once, and an operator SIGKILLed mid-session."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from mabeam.controller import Runtime
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, VARIABLE, VOTE
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import (
    NS,
    AsAgents,
    agent_body,
    collecting,
    create_session,
    ended,
    grant_agents,
    python_agent,
    ready_agents,
    status,
    vote_status,
)
from tests.integration._util import eventually


async def channel_variable(kube: Kube) -> None:
    await kube.create(
        VARIABLE,
        {
            "metadata": {"name": "release-channel", "namespace": NS},
            "spec": {
                "type": "enum",
                "constraints": {"allowedValues": ["stable", "beta", "nightly"]},
                "value": "nightly",
            },
        },
    )


async def variable_status(kube: Kube) -> dict[str, Any]:
    obj = await kube.get(VARIABLE, "release-channel", NS)
    return (obj or {}).get("status") or {}


def sessions_in_history(status: dict[str, Any]) -> list[str]:
    return [h["session"].split(":")[0] for h in status.get("history", []) if h.get("session")]


async def test_voter_pods_decide_a_majority_that_lands_in_a_variable(
    cluster: LocalCluster, kube: Kube
) -> None:
    await cluster.start_operator()
    await channel_variable(kube)
    prefs = {"ann": "stable,beta", "ben": "beta", "cat": "lts,stable"}  # cat likes lts, offered: no
    for name, pref in prefs.items():
        await kube.create(AGENT, python_agent(name, "voter.py", {"VOTER_PREFERENCES": pref}))
    await ready_agents(kube, list(prefs), timeout=20)
    await create_session(
        kube,
        "channel",
        "majority",
        participants={"agents": list(prefs)},
        options=["stable", "beta", "nightly"],
        # Decided early by two votes: the window only bounds how long slow agent pods may take.
        answerSeconds=15,
        variableRef={"name": "release-channel"},
    )
    s = await ended(kube, "channel", timeout=30)
    assert (s["phase"], s["result"]["value"], s["result"]["reason"]) == ("Decided", "stable", "Majority")
    expected = {"ann": "stable", "ben": "beta", "cat": "stable"}  # each voter's own preference

    # Two votes for stable decide it early; a voter whose watch first saw the session decided
    # is asked nothing, and a vote that came after the decision is refused.
    votes = await kube.list(VOTE, NS, labels={"mabeam.io/session": "channel"})
    given = {v["spec"]["agent"]: v["spec"]["choice"] for v in votes}
    counted = {a["agent"]: a["choice"] for a in s["answers"]}
    assert counted.items() <= given.items() <= expected.items()
    assert counted["ann"] == "stable" and s["tally"]["stable"] == 2
    var = await eventually(lambda: _applied(kube, "stable"), timeout=5, what="release-channel applied")
    assert sessions_in_history(var) == ["channel"]
    # The Votes were written by the agents themselves (a create that failed, e.g. a retry that
    # found the Vote already there, stored nothing and says nothing about who wrote it).
    writers = {
        r.user
        for r in cluster.api.audit
        if r.resource.endswith("/votes") and r.verb == "create" and r.code < 300
    }
    # Read after the Votes were listed, so every listed Vote's create is in it; a voter that
    # answers only now (after the decision) may add its own create, never anyone else's.
    assert {f"system:serviceaccount:{NS}:mabeam-agent-{n}" for n in given} <= writers
    assert writers <= {f"system:serviceaccount:{NS}:mabeam-agent-{n}" for n in expected}


async def _applied(kube: Kube, value: str) -> dict[str, Any] | None:
    s = await variable_status(kube)
    return s if s.get("value") == value else None


async def test_operator_killed_mid_session_gives_one_outcome_applied_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    names = ["ann", "ben", "cat"]
    for name in names:
        await kube.create(AGENT, agent_body(name))
    await grant_agents(kube, names)
    await channel_variable(kube)
    await cluster.start_operator_process()
    await create_session(
        kube,
        "restart",
        "majority",
        participants={"agents": names},
        options=["stable", "beta"],
        answerSeconds=6,
        variableRef={"name": "release-channel"},
    )
    await collecting(kube, "restart")
    await as_agent.vote("restart", "ann", choice="beta")
    await vote_status(kube, "restart", "ann")
    await cluster.kill_operator()
    await as_agent.vote("restart", "ben", choice="beta")
    await as_agent.vote("restart", "cat", choice="stable")
    await cluster.start_operator_process()
    s = await ended(kube, "restart", timeout=6)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "beta")
    await eventually(lambda: _applied(kube, "beta"), timeout=5, what="release-channel applied")
    # Killed again right after the decision and restarted: the outcome is offered again, not applied again.
    await cluster.kill_operator()
    await cluster.start_operator_process()
    await vote_status(kube, "restart", "cat")
    var = await variable_status(kube)
    assert sessions_in_history(var) == ["restart"]
    terminal = [
        v
        for v in cluster.api.history("mabeam.io/v1alpha1/coordinations", "restart", NS)
        if ((v or {}).get("status") or {}).get("phase") == "Decided"
    ]
    assert {t["status"]["result"]["value"] for t in terminal} == {"beta"}


async def test_contract_net_award_falls_back_when_the_best_bidder_fills_up(
    cluster: LocalCluster, kube: Kube
) -> None:
    """w1 is cheapest but holds one task; two sessions award it both: it confirms one and
    declines the other, which goes to w2."""
    await cluster.start_operator()
    workers = {"w1": "1.0", "w2": "3.0"}
    for name, rate in workers.items():
        await kube.create(
            AGENT,
            python_agent(
                name, "worker.py", {"WORKER_RATE": rate, "WORKER_CAPACITY": "1"}, capabilities=["weld"]
            ),
        )
    await ready_agents(kube, list(workers), timeout=20)
    for session in ("seam-a", "seam-b"):
        await create_session(
            kube,
            session,
            "contract-net",
            participants={"agents": list(workers)},
            task={"description": "weld the north seam", "capability": "weld"},
            # Both phases end early once every bid and the award's answer are in: the windows
            # only bound how long slow agent pods may take.
            answerSeconds=15,
            awardSeconds=15,
        )
    a = await ended(kube, "seam-a", timeout=40)
    b = await ended(kube, "seam-b", timeout=40)
    results = sorted(
        [
            (a["result"]["value"], [(d["agent"], d["reason"]) for d in a.get("declined", [])]),
            (b["result"]["value"], [(d["agent"], d["reason"]) for d in b.get("declined", [])]),
        ]
    )
    assert results == [("w1", []), ("w2", [("w1", "Declined")])]
    assert {a["phase"], b["phase"]} == {"Decided"}


async def test_an_answer_written_while_the_operator_was_down_past_the_deadline_is_late(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """Lateness is judged by when the operator received the answer, never by the agent."""
    names = ["ann", "ben", "cat"]
    for name in names:
        await kube.create(AGENT, agent_body(name))
    await grant_agents(kube, names)
    await cluster.start_operator_process()
    # Long enough that the operator is surely killed before the deadline on a busy machine (a
    # session decided before the kill would refuse the answers as Closed, not Late).
    await create_session(kube, "down", "majority", participants={"agents": names},
                         options=["a", "b"], answerSeconds=8, absentPolicy="abstain", quorum=1)  # fmt: skip
    status = await collecting(kube, "down")
    await as_agent.vote("down", "ann", choice="a")
    assert (await vote_status(kube, "down", "ann"))["reason"] == "Counted"
    await cluster.kill_operator()
    body = await kube.get(COORDINATION, "down", NS)
    assert body["status"]["phase"] == "Collecting", "the operator decided before it was killed"
    deadline = dt.datetime.fromisoformat(status["deadline"].replace("Z", "+00:00"))
    # Time itself must pass here (no condition to wait on): until the deadline is behind us.
    await asyncio.sleep(max((deadline - dt.datetime.now(dt.UTC)).total_seconds(), 0) + 0.5)
    await as_agent.vote("down", "ben", choice="b")
    await as_agent.vote("down", "cat", choice="b")
    await cluster.start_operator_process()
    s = await ended(kube, "down", timeout=8)
    assert (s["phase"], s["result"]["value"], s["tally"]) == ("Decided", "a", {"a": 1, "b": 0})
    for agent in ("ben", "cat"):
        verdict = await vote_status(kube, "down", agent)
        assert (verdict["accepted"], verdict["reason"]) == (False, "Late")


async def _passes_at_least(runtime: Runtime, count: int) -> bool:
    """Whether the restarted operator made ``count`` Coordination passes (the only session)."""
    done = runtime.metrics.registry.get_sample_value(
        "mabeam_reconcile_duration_seconds_count", {"kind": "Coordination"}
    )
    return (done or 0) >= count


async def test_an_applied_outcome_is_not_applied_again_after_a_restart_once_the_variable_forgot_it(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    names = ["ann", "ben"]
    for name in names:
        await kube.create(AGENT, agent_body(name))
    await grant_agents(kube, names)
    await channel_variable(kube)
    await cluster.start_operator()
    await create_session(
        kube, "old", "majority", participants={"agents": names}, options=["stable", "beta"],
        answerSeconds=6, variableRef={"name": "release-channel"},
    )  # fmt: skip
    await collecting(kube, "old")
    for name in names:
        await as_agent.vote("old", name, choice="beta")
    assert (await ended(kube, "old", timeout=5))["result"]["value"] == "beta"
    await eventually(lambda: _applied(kube, "beta"), timeout=5, what="release-channel applied")

    async def recorded() -> bool:
        return (await status(kube, "old")).get("outcomeApplied") is True

    await eventually(recorded, timeout=5, what="status.outcomeApplied")

    # A newer value, then the Variable forgets the old session (as after 256 later sessions).
    await kube.patch(VARIABLE, "release-channel", {"spec": {"value": "stable"}}, namespace=NS)
    newer = await eventually(lambda: _applied(kube, "stable"), timeout=5, what="the newer value")
    forgotten = [h for h in newer["history"] if not h.get("session")]
    await kube.patch(
        VARIABLE, "release-channel", {"status": {"appliedSessions": [], "history": forgotten}},
        namespace=NS, status=True,
    )  # fmt: skip
    assert sessions_in_history(await variable_status(kube)) == []

    await cluster.stop_operator()
    runtime = Runtime()
    await cluster.start_operator(runtime)
    # The session loop is sequential: once it made a second pass (woken by a label change after
    # its first), its first pass after the restart — where a replay would be — is over. A pass
    # reads the session from the watch, not the API: the passes are counted in the metrics.
    await eventually(lambda: _passes_at_least(runtime, 1), timeout=10, what="first pass")
    await kube.patch(COORDINATION, "old", {"metadata": {"labels": {"touched": "yes"}}}, namespace=NS)
    await eventually(lambda: _passes_at_least(runtime, 2), timeout=10, what="second pass")
    after = await variable_status(kube)
    assert (after["value"], after["version"]) == ("stable", newer["version"])
    assert sessions_in_history(after) == []
