"""The SDK's session answering: what is asked of whom, sync/async callbacks, failures = no answer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import pytest

from mabeam.kube.client import AlreadyExistsError
from mabeam.kube.resources import Res
from mabeam.models.coordination import Proposal
from mabeam.sdk import Session, Task
from mabeam.sdk._sessions import SessionCallbacks, SessionResponder


class FakeKube:
    """Records the Votes written; a second create of a name is AlreadyExists, as on a server."""

    def __init__(self) -> None:
        self.votes: dict[str, dict[str, Any]] = {}

    async def create(self, res: Res, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if name in self.votes:
            raise AlreadyExistsError(name)
        self.votes[name] = {"metadata": dict(body["metadata"]), "spec": dict(body["spec"])}
        return self.votes[name]

    async def patch(self, res: Res, name: str, patch: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        self.votes[name]["spec"].update(patch["spec"])
        return self.votes[name]


def session(
    protocol: str = "majority", phase: str = "Collecting", uid: str = "u1", **status: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"protocol": protocol, "participants": {"agents": ["ann", "ben"]}}
    if protocol == "contract-net":
        spec["task"] = {"description": "weld the seam", "capability": "weld"}
    else:
        spec["options"] = ["stable", "beta"]
    return {
        "metadata": {"name": "s1", "uid": uid},
        "spec": spec,
        "status": {
            "phase": phase,
            "participants": [{"name": "ann"}, {"name": "ben"}],
            "deadline": "2030-01-01T00:00:00Z",
            **status,
        },
    }


async def settle(responder: SessionResponder) -> None:
    while responder.requests.tasks:
        await asyncio.sleep(0.01)


def responder(kube: FakeKube, timeout: float = 1.0, **callbacks: Any) -> SessionResponder:
    return SessionResponder(kube, "ann", "default", SessionCallbacks(**callbacks), timeout=timeout)  # type: ignore[arg-type]


async def test_a_vote_is_asked_once_and_written_with_the_agents_name_and_labels() -> None:
    kube = FakeKube()
    seen: list[Session] = []

    def on_vote(s: Session) -> str:
        seen.append(s)
        return s.options[-1]

    r = responder(kube, on_vote=on_vote)
    r.consider(session())
    r.consider(session())  # the same request again (a status update): answered once
    await settle(r)
    assert len(seen) == 1 and seen[0].options == ("stable", "beta") and seen[0].agent == "ann"
    vote = kube.votes["s1-ann"]
    assert vote["spec"] == {"session": "s1", "agent": "ann", "choice": "beta"}
    assert vote["metadata"]["labels"] == {"mabeam.io/session": "s1", "mabeam.io/agent": "ann"}
    owner = {"apiVersion": "mabeam.io/v1alpha1", "kind": "Coordination", "name": "s1", "uid": "u1"}
    assert vote["metadata"]["ownerReferences"] == [owner]


@pytest.mark.parametrize(
    "obj",
    [
        session(phase="Decided"),
        session(participants=[{"name": "ben"}]),
        session(phase=None),
    ],
    ids=["ended", "not-a-participant", "not-started"],
)
async def test_nothing_is_asked_outside_an_open_session_of_ours(obj: dict[str, Any]) -> None:
    kube = FakeKube()
    r = responder(kube, on_vote=lambda s: "stable")
    r.consider(obj)
    await settle(r)
    assert kube.votes == {}


async def test_async_bid_then_award_confirmation_on_the_same_vote() -> None:
    kube = FakeKube()
    tasks: list[Task] = []

    async def on_cfp(task: Task) -> Proposal:
        tasks.append(task)
        return Proposal(cost=4.5, note="cheap")

    async def on_award(task: Task) -> bool:
        tasks.append(task)
        return True

    r = responder(kube, on_call_for_proposals=on_cfp, on_award=on_award)
    r.consider(session("contract-net"))
    await settle(r)
    assert kube.votes["s1-ann"]["spec"]["proposal"] == {"cost": 4.5, "note": "cheap"}
    award = {
        "agent": "ann",
        "cost": 4.5,
        "awardedAt": "2030-01-01T00:00:00Z",
        "deadline": "2030-01-01T00:00:10Z",
    }
    r.consider(session("contract-net", phase="Deciding", award=award))
    await settle(r)
    assert kube.votes["s1-ann"]["spec"]["accept"] is True
    assert kube.votes["s1-ann"]["spec"]["proposal"] == {"cost": 4.5, "note": "cheap"}
    assert [t.cost for t in tasks] == [None, 4.5] and tasks[0].capability == "weld"


async def test_an_award_to_someone_else_is_not_answered() -> None:
    kube = FakeKube()
    r = responder(kube, on_award=lambda t: True)
    award = {
        "agent": "ben",
        "cost": 1,
        "awardedAt": "2030-01-01T00:00:00Z",
        "deadline": "2030-01-01T00:00:10Z",
    }
    r.consider(session("contract-net", phase="Deciding", award=award))
    await settle(r)
    assert kube.votes == {}


def raising(_: object) -> str:
    raise RuntimeError("the model is down")


def slow(_: object) -> str:
    time.sleep(0.5)
    return "stable"


async def hanging(_: object) -> str:
    await asyncio.sleep(10)
    return "stable"


@pytest.mark.parametrize(
    "callback",
    [raising, slow, hanging, lambda s: None],
    ids=["raises", "slow-sync", "slow-async", "abstains"],
)
async def test_a_failing_late_or_abstaining_callback_gives_no_answer(
    callback: Any, caplog: pytest.LogCaptureFixture
) -> None:
    kube = FakeKube()
    r = responder(kube, timeout=0.1, on_vote=callback)
    r.consider(session())
    await settle(r)
    assert kube.votes == {}


@pytest.mark.parametrize("bid", [True, "cheap", {"cost": -1}], ids=["boolean", "text", "negative"])
async def test_an_invalid_bid_is_no_answer(bid: object) -> None:
    kube = FakeKube()
    r = responder(kube, on_call_for_proposals=lambda t: bid)
    r.consider(session("contract-net"))
    await settle(r)
    assert kube.votes == {}
