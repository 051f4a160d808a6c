"""An answer's time is when the API server accepted it, not when the operator saw it.

The operator runs as a process that the test freezes (SIGSTOP) while the agents answer: some
before the deadline, one after it; it is thawed (SIGCONT) after the deadline. The answers the API
server accepted before the deadline's second count, the one after the deadline is Late: the
outcome is the one a prompt operator gives. (docs/reliability.md, "Answer time".)
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import AUCTION, BID, COORDINATION, VOTE, Res
from mabeam.local.cluster import LocalCluster
from mabeam.models.auction import bid_name
from mabeam.models.coordination import vote_name
from tests.integration._coordination import (
    NS,
    AsAgents,
    create_session,
    parse_time,
    phase_in,
    suspended,
    verdict,
)
from tests.integration._util import eventually
from tests.integration.test_economics import AUCTION_DONE, resource, sealed

#: The answer window: long enough that answers written at once are accepted a whole second
#: before the deadline even on a busy machine (the test checks that it was so).
WINDOW = 4


@pytest.fixture
async def frozen_operator(cluster: LocalCluster) -> AsyncIterator[Callable[[bool], None]]:
    """The operator as a process; ``freeze(True)`` stops it (SIGSTOP), ``freeze(False)`` resumes it."""
    await cluster.start_operator_process()
    pid = cluster.operator_pid
    assert pid is not None
    frozen = False

    def freeze(on: bool) -> None:
        nonlocal frozen
        os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)
        frozen = on

    yield freeze
    if frozen:
        os.kill(pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    await cluster.stop_operator()


async def past(instant: dt.datetime) -> None:
    """Wait until the wall clock (the API server's too: same machine) is past ``instant``."""

    async def passed() -> bool:
        return dt.datetime.now(dt.UTC) > instant

    await eventually(passed, timeout=WINDOW + 10, what=f"the clock past {instant.isoformat()}")


def accepted_second(obj: dict[str, Any]) -> dt.datetime:
    return parse_time(obj["metadata"]["creationTimestamp"])


async def deadline_of(kube: Kube, res: Res, name: str, phases: tuple[str, ...]) -> dt.datetime:
    status = await phase_in(kube, res, name, phases, timeout=15)
    return parse_time(status["deadline"])


async def test_votes_accepted_before_the_deadline_count_though_the_operator_saw_them_after(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, frozen_operator: Callable[[bool], None]
) -> None:
    names = ["ann", "ben", "cat", "dan"]
    await suspended(kube, names)
    # Two of four for "a": no early decision while cat and dan may still answer, so the session
    # is decided at the deadline, by the votes counted then.
    await create_session(kube, "paused", "majority", participants={"agents": names}, options=["a", "b"],
                         answerSeconds=WINDOW)  # fmt: skip
    deadline = await deadline_of(kube, COORDINATION, "paused", ("Collecting",))
    frozen_operator(True)
    on_time = [await as_agent.vote("paused", agent, choice="a") for agent in ("ann", "ben")]
    for vote in on_time:
        assert accepted_second(vote) + dt.timedelta(seconds=1) <= deadline, "the machine was too slow"
    await past(deadline + dt.timedelta(seconds=1))
    late = await as_agent.vote("paused", "cat", choice="b")
    assert accepted_second(late) > deadline
    frozen_operator(False)

    s = await phase_in(kube, COORDINATION, "paused", ("Decided", "NoDecision", "Failed"), timeout=15)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")
    assert sorted(a["agent"] for a in s["answers"]) == ["ann", "ben"]
    for agent, reason in (("ann", "Counted"), ("ben", "Counted"), ("cat", "Late")):
        v = await verdict(kube, VOTE, vote_name("paused", agent))
        assert v["reason"] == reason, (agent, v)


async def test_a_sealed_bid_accepted_before_bidding_closed_counts_though_the_operator_saw_it_after(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, frozen_operator: Callable[[bool], None]
) -> None:
    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await resource(kube, "gpu")
    await kube.create(AUCTION, {"metadata": {"name": "sale", "namespace": NS}, "spec": {
        "mechanism": "second-price", "participants": {"agents": names}, "items": ["gpu"],
        "reservePrice": 5, "bidSeconds": WINDOW}})  # fmt: skip
    deadline = await deadline_of(kube, AUCTION, "sale", ("Bidding",))
    auction = await kube.get(AUCTION, "sale", NS)
    assert auction is not None
    frozen_operator(True)
    for agent, amount in (("ann", 40), ("ben", 25)):
        bid = await as_agent.answer(BID, "sale", agent, sealed=sealed(auction, agent, amount=amount))
        assert accepted_second(bid) + dt.timedelta(seconds=1) <= deadline, "the machine was too slow"
    await past(deadline + dt.timedelta(seconds=1))
    await as_agent.answer(BID, "sale", "cat", sealed=sealed(auction, "cat", amount=99))
    frozen_operator(False)

    s = await phase_in(kube, AUCTION, "sale", AUCTION_DONE, timeout=15)
    assert s["phase"] == "Awarded", s
    (allocation,) = s["result"]["allocations"]
    assert (allocation["agent"], allocation["price"]) == ("ann", 25)
    late = await verdict(kube, BID, bid_name("sale", "cat"))
    assert late["reason"] == "Late", late
