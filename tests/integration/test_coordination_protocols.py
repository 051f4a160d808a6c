"""Each built-in protocol against the local API, with answers written in the agents' own names.

test_coordination.py drives majority and contract net through failure modes; here consensus,
weighted voting and priority resolution run end to end, each with a hand-computed outcome.
"""

from __future__ import annotations

from typing import Any

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import AGENT
from mabeam.local.cluster import LocalCluster
from tests.integration._coordination import AsAgents, agent_body, create_session, ended, grant_agents


async def agents(kube: Kube, spec: dict[str, dict[str, Any]]) -> list[str]:
    for name, extra in spec.items():
        await kube.create(AGENT, agent_body(name, **extra))
    await grant_agents(kube, list(spec))
    return list(spec)


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        (["go", "go", "go"], ("Decided", "go")),
        (["go", "stop", "go"], ("NoDecision", None)),
    ],
    ids=["unanimous", "one-dissent"],
)
async def test_consensus(
    cluster: LocalCluster,
    kube: Kube,
    as_agent: AsAgents,
    choices: list[str],
    expected: tuple[str, str | None],
) -> None:
    await cluster.start_operator()
    names = await agents(kube, {"ann": {}, "ben": {}, "cat": {}})
    await create_session(
        kube, "agree", "consensus", participants={"agents": names}, options=["go", "stop"], answerSeconds=30
    )
    for agent, choice in zip(names, choices, strict=True):
        await as_agent.vote("agree", agent, choice=choice)
    s = await ended(kube, "agree", timeout=10)  # decided early: long before the 30 s deadline
    assert (s["phase"], (s.get("result") or {}).get("value")) == expected


async def test_weighted_voting_counts_agent_weights(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    # ann alone (weight 3) outweighs ben and cat together (1 + 1): 3/5 of the weight.
    names = await agents(kube, {"ann": {"weight": 3}, "ben": {"weight": 1}, "cat": {"weight": 1}})
    await create_session(
        kube, "weigh", "weighted", participants={"agents": names}, options=["a", "b"], answerSeconds=30
    )
    for agent, choice in zip(names, ["a", "b", "b"], strict=True):
        await as_agent.vote("weigh", agent, choice=choice)
    s = await ended(kube, "weigh", timeout=10)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "a")
    assert {k: float(v) for k, v in s["tally"].items()} == {"a": 3.0, "b": 2.0}


async def test_priority_resolution_gives_the_resource_to_the_highest_priority_claimant(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents
) -> None:
    await cluster.start_operator()
    names = await agents(kube, {"low": {"priority": 1}, "high": {"priority": 9}, "mid": {"priority": 5}})
    await create_session(
        kube, "gpu", "priority", participants={"agents": names}, resource="gpu-0", answerSeconds=30
    )
    await as_agent.vote("gpu", "low", claim=True)
    await as_agent.vote("gpu", "mid", claim=True)
    await as_agent.vote("gpu", "high", claim=False)  # the top priority declines
    s = await ended(kube, "gpu", timeout=10)
    assert (s["phase"], s["result"]["value"]) == ("Decided", "mid")
