"""Transient API errors on the operator's requests change nothing but the time it takes.

The operator talks to the local API through :mod:`tests.integration._fault_proxy`, which answers
a seeded share of its requests with 409, 429 (Retry-After), 500, 503 or a slow response, and
one planned 503 on the write that comes right after the decision (the outcome's Variable). Each
session still ends with the outcome of a clean run, applied exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mabeam.kube.client import Kube
from mabeam.kube.resources import AUCTION, BID, COORDINATION, ROLE_BINDING, VARIABLE
from mabeam.local.cluster import LocalCluster
from mabeam.sdk import Variables
from tests.integration._coordination import (
    NS,
    AsAgents,
    collecting,
    create_session,
    phase_in,
    suspended,
    verdict,
    vote_status,
)
from tests.integration._fault_proxy import FaultProxy, Rule, any_request
from tests.integration._util import eventually
from tests.integration.test_economics import AUCTION_DONE, resource, sealed

SEEDS = [11, 23]
#: The share of the operator's requests (its kinds, the Leases) that get a fault.
RATE = 0.15


@pytest.fixture
async def faulty(
    cluster: LocalCluster, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FaultProxy]:
    """The proxy, with the test's rules (``proxy.rules``), and the operator talking through it."""
    monkeypatch.setenv("MABEAM_RETRY_SECONDS", "0.1")  # the backoff's first step
    proxy = FaultProxy(cluster.url, [], seed=request.param)
    async with proxy:
        cluster.operator_kubeconfig = proxy.kubeconfig(
            cluster.operator_kubeconfig, cluster.workdir / "operator-through-proxy.kubeconfig"
        )
        yield proxy
        proxy.rules.clear()  # a clean stop: the faults are for the sessions
        await cluster.stop_operator()


def history(cluster: LocalCluster, plural: str, name: str) -> list[dict[str, Any]]:
    return [v for v in cluster.api.history(f"mabeam.io/v1alpha1/{plural}", name, NS) if v]


def values_taken(cluster: LocalCluster, name: str) -> list[tuple[int, Any]]:
    """Every (version, value) the Variable's stored status went through, in order, no repeats."""
    seen: list[tuple[int, Any]] = []
    for v in history(cluster, "variables", name):
        s = v.get("status") or {}
        pair = (s.get("version"), s.get("value"))
        if "version" in s and (not seen or seen[-1] != pair):
            seen.append(pair)
    return seen


def terminal_phases(cluster: LocalCluster, plural: str, name: str, done: tuple[str, ...]) -> set[Any]:
    return {
        ((v.get("status") or {}).get("phase"), str((v.get("status") or {}).get("result")))
        for v in history(cluster, plural, name)
        if (v.get("status") or {}).get("phase") in done
    }


async def outcome_applied(kube: Kube, res: Any, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await kube.get(res, name, NS)
        s = (obj or {}).get("status") or {}
        return s if s.get("outcomeApplied") else None

    result: dict[str, Any] = await eventually(check, timeout=30, what=f"{name} outcomeApplied")
    return result


@pytest.mark.parametrize("faulty", SEEDS, indirect=True)
async def test_a_vote_under_transient_errors_gives_the_clean_outcome_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, faulty: FaultProxy
) -> None:
    # The outcome, written into the Variable right after the decision: one 503 (its first
    # status write, version 1 from its spec, goes through).
    planned = Rule("PATCH", r"/variables/channel/status$", plan=[None, "503"])
    faulty.rules += [planned, *any_request(RATE)]
    names = ["ann", "ben", "cat"]
    await suspended(kube, names)
    await kube.create(VARIABLE, {"metadata": {"name": "channel", "namespace": NS},
                                 "spec": {"type": "string", "value": "nightly"}})  # fmt: skip
    await cluster.start_operator()
    await eventually(lambda: _version(kube, "channel", 1), timeout=30, what="channel v1")
    await create_session(kube, "flt", "majority", participants={"agents": names}, options=["stable", "beta"],
                         answerSeconds=60, variableRef={"name": "channel"})  # fmt: skip
    await collecting(kube, "flt", timeout=30)
    await as_agent.vote("flt", "ann", choice="beta")
    await vote_status(kube, "flt", "ann", timeout=30)
    await as_agent.vote("flt", "ben", choice="beta")  # 2 of 3: decided
    s = await outcome_applied(kube, COORDINATION, "flt")
    # The clean run's outcome: beta, by ann and ben, before the deadline.
    assert (s["phase"], s["result"]["value"]) == ("Decided", "beta")
    assert terminal_phases(cluster, "coordinations", "flt", ("Decided", "NoDecision", "Failed")) == {
        ("Decided", str(s["result"]))
    }
    var = (await kube.get(VARIABLE, "channel", NS) or {}).get("status") or {}
    assert (var["value"], var["version"]) == ("beta", 2)
    assert values_taken(cluster, "channel") == [(1, "nightly"), (2, "beta")]
    assert [x.split(":")[0] for x in var["appliedSessions"]] == ["flt"]
    assert (await vote_status(kube, "flt", "ben", timeout=30))["reason"] == "Counted"
    assert planned.injected == 1 and sum(faulty.injected.values()) >= 3, faulty.injected


@pytest.mark.parametrize("faulty", SEEDS, indirect=True)
async def test_an_auction_under_transient_errors_allocates_the_clean_outcome_once(
    cluster: LocalCluster, kube: Kube, as_agent: AsAgents, faulty: FaultProxy
) -> None:
    # The allocation of g2, written right after the award: one 429, one 503 (its first status
    # write, from its spec, goes through).
    planned = Rule("PATCH", r"/variables/g2/status$", plan=[None, "429", "503"])
    faulty.rules += [planned, *any_request(RATE)]
    names = ["ann", "ben"]
    await suspended(kube, names)
    for item in ("g1", "g2"):
        await resource(kube, item)
    await cluster.start_operator()
    await kube.create(AUCTION, {"metadata": {"name": "lot", "namespace": NS}, "spec": {
        "mechanism": "combinatorial", "participants": {"agents": names}, "items": ["g1", "g2"],
        "bidSeconds": 60}})  # fmt: skip
    await phase_in(kube, AUCTION, "lot", ("Bidding",), timeout=30)
    auction = await kube.get(AUCTION, "lot", NS)
    assert auction is not None
    bundles = {
        "ann": [{"items": ["g1"], "amount": 9}],
        "ben": [{"items": ["g2"], "amount": 4}, {"items": ["g1", "g2"], "amount": 11}],
    }
    await as_agent.answer(BID, "lot", "ann", sealed=sealed(auction, "ann", bundles=bundles["ann"]))
    await verdict(kube, BID, "lot-ann", timeout=30)
    await as_agent.answer(BID, "lot", "ben", sealed=sealed(auction, "ben", bundles=bundles["ben"]))
    s = await outcome_applied(kube, AUCTION, "lot")
    # As in a clean run (test_economics): ann g1 at 7, ben g2 at 0 (VCG).
    assert s["phase"] == "Awarded"
    assert {a["agent"]: (a["items"], a["price"]) for a in s["result"]["allocations"]} == {
        "ann": (["g1"], 7),
        "ben": (["g2"], 0),
    }
    assert len(terminal_phases(cluster, "auctions", "lot", AUCTION_DONE)) == 1
    for item, owner in (("g1", "ann"), ("g2", "ben")):
        st = (await kube.get(VARIABLE, item, NS) or {}).get("status") or {}
        assert st["owner"] == {"kind": "Agent", "name": owner}
        assert [x.split(":")[0] for x in st["appliedSessions"]] == ["lot"]
        owners = [(v.get("status") or {}).get("owner") for v in history(cluster, "variables", item)]
        changes = [o for i, o in enumerate(owners) if i == 0 or owners[i - 1] != o]
        assert changes[-1] == {"kind": "Agent", "name": owner} and changes.count(changes[-1]) == 1
    assert (await verdict(kube, BID, "lot-ben", timeout=30))["accepted"] is True
    assert planned.injected == 2 and sum(faulty.injected.values()) >= 3, faulty.injected


@pytest.mark.parametrize("faulty", SEEDS, indirect=True)
async def test_a_locked_write_under_transient_errors_is_applied_once(
    cluster: LocalCluster, kube: Kube, faulty: FaultProxy
) -> None:
    faulty.rules += any_request(RATE)
    spec = {"type": "number", "value": 1, "access": {"agents": ["w"]}}
    await kube.create(VARIABLE, {"metadata": {"name": "setpoint", "namespace": NS}, "spec": spec})
    await suspended(kube, ["w"])
    await cluster.start_operator()
    await eventually(lambda: _version(kube, "setpoint", 1), timeout=30, what="setpoint v1")
    await eventually(lambda: _writer_bound(kube, "setpoint", "w"), timeout=30, what="writer RBAC")
    path = cluster.api.kubeconfig(
        cluster.workdir / "w.kubeconfig", user=f"system:serviceaccount:{NS}:mabeam-agent-w"
    )
    agent_kube = Kube.connect(path, namespace=NS)
    sdk = Variables(agent_kube, NS, "w", write_timeout=60)
    try:
        async with sdk.lock("setpoint", ttl=30, wait=30) as token:
            assert token >= 1
            assert await sdk.write("setpoint", 5, based_on=1) == 2
    finally:
        await sdk.close()
        await agent_kube.close()
    st = (await kube.get(VARIABLE, "setpoint", NS) or {}).get("status") or {}
    assert (st["value"], st["version"], st["lastWrite"]["applied"]) == (5, 2, True)
    assert values_taken(cluster, "setpoint") == [(1, 1), (2, 5)]
    assert sum(faulty.injected.values()) >= 3, faulty.injected


async def _version(kube: Kube, name: str, version: int) -> bool:
    obj = await kube.get(VARIABLE, name, NS)
    return ((obj or {}).get("status") or {}).get("version") == version


async def _writer_bound(kube: Kube, variable: str, agent: str) -> bool:
    binding = await kube.get(ROLE_BINDING, f"mabeam-var-{variable}-writer", NS)
    return f"mabeam-agent-{agent}" in {s["name"] for s in (binding or {}).get("subjects") or []}


@pytest.mark.parametrize("faulty", SEEDS[:1], indirect=True)
async def test_a_grant_whose_writes_fail_is_retried_until_it_lands(
    cluster: LocalCluster, kube: Kube, faulty: FaultProxy
) -> None:
    """An Account's event is spent when its reconcile fails: the operator retries on its own."""
    from tests.integration.test_money import account, granted

    faulty.rules += [Rule("PATCH", r"/accounts/ann/status$", plan=["503", "500", "429"])]
    await cluster.start_operator()
    await account(kube, "ann", 30)
    await granted(kube, {"ann": 3000})
    assert faulty.injected, faulty.injected
