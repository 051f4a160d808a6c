"""Coordination sessions end to end: the real operator, Votes written with agents' credentials.

Every test checks the outcome a user relies on: exactly one result, reached on time (the
deadline plus a small slack), verdicts on the Votes with the documented reasons.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from typing import Any

import pytest

from mabeam.errors import ApiError
from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT, COORDINATION, VOTE
from mabeam.local.cluster import LocalCluster
from mabeam.models.coordination import vote_name
from mabeam.sdk import AgentApp, Session
from tests.integration._coordination import (
    NS,
    AsAgents,
    agent_body,
    collecting,
    create_session,
    ended,
    grant_agents,
    parse_time,
    ready_agents,
    status,
    suspended,
    vote_status,
)
from tests.integration._util import eventually

#: How late after its deadline a session may end (timer, one pass, one status write).
SLACK = 1.0


def outcomes(cluster: LocalCluster, name: str) -> list[tuple[str, str | None]]:
    """Every terminal (phase, value) the session's stored history went through, in order."""
    seen = []
    for version in cluster.api.history("mabeam.io/v1alpha1/coordinations", name, NS):
        s = (version or {}).get("status") or {}
        if s.get("phase") in ("Decided", "NoDecision", "Failed", "Cancelled"):
            pair = (s["phase"], (s.get("result") or {}).get("value"))
            if not seen or seen[-1] != pair:
                seen.append(pair)
    return seen


async def test_majority_decides_early_once_every_participant_voted(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await create_session(
        kube, "pick", "majority", participants={"agents": names}, options=["stable", "beta"], answerSeconds=30
    )
    started = await collecting(kube, "pick")
    assert [p["name"] for p in started["participants"]] == names
    for agent, choice in zip(names, ["stable", "beta", "stable"], strict=True):
        await as_agent.vote("pick", agent, choice=choice)
    s = await ended(kube, "pick", timeout=5)
    assert (s["phase"], s["result"]["value"], s["result"]["reason"]) == ("Decided", "stable", "Majority")
    assert s["tally"] == {"stable": 2, "beta": 1}
    for agent in names:
        assert (await vote_status(kube, "pick", agent))["reason"] == "Counted"
    assert outcomes(cluster, "pick") == [("Decided", "stable")]


async def test_silent_participants_end_the_session_at_its_deadline(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat", "dan"]
    await suspended(kube, names)
    await create_session(
        kube,
        "quiet",
        "majority",
        participants={"agents": names},
        options=["a", "b"],
        answerSeconds=2,
        quorum="50%",
    )
    started = await collecting(kube, "quiet")
    await as_agent.vote("quiet", "ann", choice="a")
    s = await ended(kube, "quiet", timeout=2 + SLACK + 2)
    observed = time.time()
    deadline = parse_time(started["deadline"])
    decided = parse_time(s["result"]["decidedAt"])
    assert deadline <= decided <= deadline + dt.timedelta(seconds=SLACK)
    assert observed - deadline.timestamp() < SLACK + 0.5
    # Suspended agents are not Ready: the silent ones are absent and excluded (policy exclude),
    # so the one vote meets the 50% quorum of the one remaining participant.
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")
    assert outcomes(cluster, "quiet") == [("Decided", "a")]


async def test_late_and_outsider_answers_are_refused_with_a_reason(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    await suspended(kube, ["ann", "ben", "eve"])
    await create_session(
        kube,
        "strict",
        "majority",
        participants={"agents": ["ann", "ben"]},
        options=["a", "b"],
        answerSeconds=1.5,
        absentPolicy="abstain",
        quorum=1,
    )
    await collecting(kube, "strict")
    await as_agent.vote("strict", "ann", choice="a")
    await as_agent.vote("strict", "eve", choice="b")
    outsider = await vote_status(kube, "strict", "eve")
    assert (outsider["accepted"], outsider["reason"]) == (False, "NotParticipant")
    await ended(kube, "strict", timeout=5)
    await as_agent.vote("strict", "ben", choice="b")
    late = await vote_status(kube, "strict", "ben")
    assert late["accepted"] is False and late["reason"] in ("Late", "Closed")
    s = await status(kube, "strict")
    assert (s["phase"], s["result"]["value"], s["tally"]) == ("Decided", "a", {"a": 1, "b": 0})


async def test_a_changed_answer_counts_once_as_its_last_version(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben", "cat", "dan"]
    await suspended(kube, names)
    await create_session(
        kube, "flip", "majority", participants={"agents": names}, options=["a", "b"], answerSeconds=5
    )
    await collecting(kube, "flip")
    await as_agent.vote("flip", "ann", choice="a")
    await as_agent.vote("flip", "ben", choice="a")
    first = await vote_status(kube, "flip", "ben", generation=1)
    assert first["reason"] == "Counted"
    assert (await status(kube, "flip"))["tally"] == {"a": 2, "b": 0}
    await as_agent.vote("flip", "ben", choice="b")
    await vote_status(kube, "flip", "ben", generation=2)
    await as_agent.vote("flip", "cat", choice="b")
    await as_agent.vote("flip", "dan", choice="b")
    s = await ended(kube, "flip", timeout=3)  # everyone voted: decided before the deadline
    assert s["tally"] == {"a": 1, "b": 3}
    assert (s["result"]["value"], [a["choice"] for a in s["answers"]]) == ("b", ["a", "b", "b", "b"])


@pytest.mark.parametrize(
    ("policy", "expected"), [("exclude", ("Decided", "a")), ("abstain", ("NoDecision", None))]
)
async def test_a_participant_that_dies_mid_session(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, policy: str, expected: tuple[str, str | None]
) -> None:
    """All three are Ready at the start; one loses its Pod and never answers. With quorum 100%,
    exclude drops it from the base (2 of 2 voted), abstain keeps it (2 of 3: no quorum)."""
    await cluster.start_operator()
    names = ["ann", "ben", "cat"]
    for name in names:
        await kube.create(
            AGENT,
            agent_body(
                name,
                command=["sleep", "3600"],
                suspend=False,
                restart={"initialDelaySeconds": 30, "maxDelaySeconds": 30},
            ),
        )
    await ready_agents(kube, names)
    await create_session(
        kube,
        "crash",
        "majority",
        participants={"agents": names},
        options=["a", "b"],
        answerSeconds=2.5,
        quorum="100%",
        absentPolicy=policy,
    )
    await collecting(kube, "crash")
    await as_agent.vote("crash", "ann", choice="a")
    await as_agent.vote("crash", "ben", choice="a")
    await kube.delete(AGENT, "cat", NS)
    s = await ended(kube, "crash", timeout=2.5 + SLACK + 3)
    assert (s["phase"], (s.get("result") or {}).get("value")) == expected
    assert outcomes(cluster, "crash") == [expected]


@pytest.mark.slow
@pytest.mark.timeout(600)  # a bound: 4 min with the other core saturated; the waits are on conditions
async def test_many_participants_answering_directly(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """500 participants chosen by a label selector, each answering with its own credentials.

    The deadline is far: the session must end by its early decision, whatever the time the
    500 answers take to arrive (under load, a 30 s window once closed after 32 of them).
    """
    names = [f"v{i:03d}" for i in range(500)]
    # As many connections at once as the local server (in this process) accepts in time even
    # when the machine is busy: a connect that times out may leave its socket to the collector.
    limit = asyncio.Semaphore(16)

    async def create(name: str) -> None:
        async with limit:  # within the client's pool: no wait for a connection that could time out
            await kube.create(AGENT, agent_body(name, labels={"team": "big"}))

    await asyncio.gather(*(create(n) for n in names))
    await grant_agents(kube, names)
    await cluster.start_operator_process()  # its own process: it does not share the API server's GIL
    await create_session(
        kube,
        "crowd",
        "majority",
        participants={"selector": {"matchLabels": {"team": "big"}}},
        options=["x", "y"],
        answerSeconds=3600,
    )
    started = await collecting(kube, "crowd")
    assert len(started["participants"]) == 500

    async def vote(i: int, name: str) -> None:
        async with limit:
            for attempt in range(5):
                try:
                    await as_agent.vote("crowd", name, choice="x" if i % 3 else "y")
                    return
                except ApiError as exc:
                    # No answer at all (a connect timeout while the server, in this process, is
                    # starved): try again, as an agent would; the write is create-or-update.
                    if exc.status is not None or attempt == 4:
                        raise

    await asyncio.gather(*(vote(i, n) for i, n in enumerate(names)))
    # Ended by the early decision (the deadline is an hour away). How fast is bench/coordination.py's
    # to measure: the API server, the kubelet and 500 clients share this test's process.
    s = await ended(kube, "crowd", timeout=60)
    assert (s["phase"], s["result"]["value"], s["result"]["reason"]) == ("Decided", "x", "Majority")
    # Decided once x could no longer be caught: every counted vote is its agent's, and the lead
    # is larger than the votes still open (or everyone voted).
    wanted = {n: "x" if i % 3 else "y" for i, n in enumerate(names)}
    counted = {a["agent"]: a["choice"] for a in s["answers"]}
    assert counted.items() <= wanted.items()
    tally = s["tally"]
    assert tally["x"] + tally["y"] == len(counted)
    assert tally["x"] - tally["y"] > 500 - len(counted) or len(counted) == 500
    assert outcomes(cluster, "crowd") == [("Decided", "x")]


async def test_fifty_sdk_agents_answer_through_their_callbacks(cluster: LocalCluster, kube: Kube) -> None:
    """50 AgentApps (the SDK, in this process), each with its own credentials; a third of them
    use an async callback, one raises, one is too slow: those two give no answer.

    The session may decide as soon as 90 % have answered and x cannot be caught, before the last
    answers land (how many is a matter of timing): the check is on the Votes the agents wrote,
    and on the tally being that of the answers counted. The deadline is far, so that the
    outcome never depends on how fast 48 agents in one busy process answer.
    """
    names = [f"a{i:02d}" for i in range(50)]
    released = threading.Event()
    await asyncio.gather(*(kube.create(AGENT, agent_body(n, labels={"team": "fifty"})) for n in names))
    await grant_agents(kube, names)
    await cluster.start_operator()

    def preference(name: str) -> str:
        return "x" if int(name[1:]) % 4 else "y"

    def make_app(name: str) -> AgentApp:
        path = cluster.workdir / f"{name}.kubeconfig"
        cluster.api.kubeconfig(path, user=f"system:serviceaccount:{NS}:mabeam-agent-{name}")
        app = AgentApp(
            name,
            NS,
            kubeconfig=str(path),
            ready_file=str(cluster.workdir / f"{name}.ready"),
            callback_timeout=10,  # a bound for a busy machine; only a02 ever reaches it
        )
        if name == "a01":
            app.on_vote(lambda s: (_ for _ in ()).throw(RuntimeError("broken")))
        elif name == "a02":
            # Too slow by construction, not by a race with the clock: it answers only after
            # the test has ended, long past its time limit.
            app.on_vote(lambda s: released.wait(60) and "y")
        elif int(name[1:]) % 3:
            app.on_vote(lambda s: preference(s.agent))
        else:

            async def on_vote(s: Session) -> str:
                return preference(s.agent)

            app.on_vote(on_vote)
        return app

    apps = [make_app(n) for n in names]
    runs = [asyncio.ensure_future(app.run_async()) for app in apps]
    users = {f"system:serviceaccount:{NS}:mabeam-agent-{n}" for n in names}

    async def watching() -> bool:
        watches = [r for r in cluster.api.audit if r.verb == "watch"]
        return users <= {r.user for r in watches if r.resource.endswith("/coordinations")}

    try:
        # Each agent sees the session from its start only if its watch runs before it exists.
        await eventually(watching, timeout=60, what="every agent watching Coordinations")
        await create_session(
            kube,
            "fifty",
            "majority",
            participants={"selector": {"matchLabels": {"team": "fifty"}}},
            options=["x", "y"],
            answerSeconds=3600,
            quorum="90%",
        )
        s = await ended(kube, "fifty", timeout=60)
        voters = [n for n in names if n not in ("a01", "a02")]

        async def all_voted() -> dict[str, str] | None:
            votes = {
                v["spec"]["agent"]: v["spec"].get("choice")
                for v in await kube.list(VOTE, NS, labels={"mabeam.io/session": "fifty"})
            }
            return votes if set(votes) >= set(voters) else None

        # Every agent whose callback works answered through it, also those after the decision.
        votes = await eventually(all_voted, timeout=30, what="a Vote from every working agent")
    finally:
        released.set()
        for app in apps:
            app.stop()
        await asyncio.gather(*runs)
    assert votes == {n: preference(n) for n in voters}  # a01 raised, a02 was too slow: no Vote
    counted = {a["agent"]: a["choice"] for a in s["answers"]}
    assert counted.items() <= votes.items() and len(counted) >= 45  # the quorum: 90 % of 50
    assert s["tally"] == {o: sum(c == o for c in counted.values()) for o in ("x", "y")}
    assert (s["phase"], s["result"]["value"], s["result"]["reason"]) == ("Decided", "x", "Majority")


def operator_status_writes(cluster: LocalCluster, name: str) -> int:
    return sum(
        1
        for r in cluster.api.audit
        if r.name == name and r.subresource == "status" and r.verb == "patch"
        and r.user.endswith(":mabeam-operator")
    )  # fmt: skip


async def test_a_corrupted_status_is_reported_and_other_sessions_go_on(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = ["ann", "ben"]
    await suspended(kube, names)
    for session in ("broken", "fine"):
        await create_session(
            kube, session, "majority", participants={"agents": names}, options=["a", "b"], answerSeconds=30
        )
        await collecting(kube, session)
    # Someone edits the status by hand into something the operator cannot read.
    await kube.patch(
        COORDINATION, "broken", {"status": {"deadline": "next tuesday"}}, namespace=NS, status=True
    )

    async def reported() -> dict[str, Any] | None:
        s = await status(kube, "broken")
        invalid = [c for c in s.get("conditions", []) if c.get("type") == "Invalid"]
        return s if invalid else None

    s = await eventually(reported, timeout=5, what="the broken session reported")
    (condition,) = [c for c in s["conditions"] if c["type"] == "Invalid"]
    assert (condition["status"], condition["reason"]) == ("True", "InvalidStatus")
    assert "status.deadline" in condition["message"] and "re-create" in condition["message"]
    assert (s["phase"], s["result"]["reason"]) == ("Failed", "InvalidStatus")
    # The operator keeps serving the other session.
    for agent in names:
        await as_agent.vote("fine", agent, choice="b")
    fine = await ended(kube, "fine", timeout=5)
    assert (fine["phase"], fine["result"]["value"]) == ("Decided", "b")
    # It reported the broken one without spinning on it: no more writes to it.
    before = operator_status_writes(cluster, "broken")
    await asyncio.sleep(0.3)
    assert operator_status_writes(cluster, "broken") == before


async def test_an_agent_cannot_set_when_its_answer_was_received(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    """The time a version was received (status.receivedAt, kept across operator restarts) is
    the operator's: an agent cannot write it, neither in the Vote it creates nor through the
    status subresource."""
    await suspended(kube, ["ann", "ben"])
    await create_session(kube, "clock", "majority", participants={"agents": ["ann", "ben"]},
                         options=["a", "b"], answerSeconds=60)  # fmt: skip
    forged = {"accepted": True, "reason": "Counted", "observedGeneration": 1,
              "receivedAt": "2000-01-01T00:00:00.000000Z"}  # fmt: skip
    agent = as_agent("ann")
    created = await agent.create(VOTE, {
        "metadata": {"name": vote_name("clock", "ann"), "namespace": NS,
                     "labels": {"mabeam.io/session": "clock", "mabeam.io/agent": "ann"}},
        "spec": {"session": "clock", "agent": "ann", "choice": "a"}, "status": forged})  # fmt: skip
    assert "receivedAt" not in (created.get("status") or {})
    with pytest.raises(ApiError) as denied:
        await agent.patch(VOTE, vote_name("clock", "ann"), {"status": forged}, namespace=NS, status=True)
    assert denied.value.status == 403
    stored = await kube.get(VOTE, vote_name("clock", "ann"), NS)
    assert "receivedAt" not in ((stored or {}).get("status") or {})
