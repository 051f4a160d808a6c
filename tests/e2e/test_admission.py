"""Every refusal the chart's admission policies promise, made by the real API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mabeam.errors import ApiError
from mabeam.kube.client import Kube
from mabeam.kube.resources import ACCOUNT, AGENT, BID, COORDINATION, MARKET, ORDER, VARIABLE, VOTE
from mabeam.models._sealed import SealingInfo
from mabeam.models.account import HOUSE_ACCOUNT, parse_money
from mabeam.models.market import OrderContent, order_name
from mabeam.sdk._trading import seal_order
from tests.e2e._helpers import E2E, eventually
from tests.e2e.test_agents import sleeper


@pytest.fixture
async def agents(e2e: E2E, kube: Kube, ns: str, tmp_path: Path) -> AsyncIterator[dict[str, Kube]]:
    """Two running agents, ann and ben, and an API client speaking as each one's ServiceAccount."""
    for name in ("ann", "ben"):
        await kube.create(AGENT, sleeper(name, ns))
    for name in ("ann", "ben"):
        e2e.kubectl("-n", ns, "wait", "--for=condition=Ready", f"agent/{name}", "--timeout=90s")
    clients = {name: e2e.as_service_account(ns, f"mabeam-agent-{name}", tmp_path) for name in ("ann", "ben")}
    yield clients
    for client in clients.values():
        await client.close()


def answer(ns: str, name: str, agent: str, **spec: Any) -> dict[str, Any]:
    """An answer as the SDK writes it: labelled with the session it names (its session finds it
    by the label; admission refuses an answer without it)."""
    session = spec.get("session") or spec.get("auction") or spec.get("market")
    labels = {"mabeam.io/session": session, "mabeam.io/agent": agent}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": {"agent": agent, **spec}}


async def refused(call: Any, *fragments: str) -> str:
    with pytest.raises(ApiError) as info:
        await call
    message = str(info.value)
    assert info.value.status in (403, 422), message
    for fragment in fragments:
        assert fragment in message, message
    return message


async def test_an_agent_cannot_answer_in_another_agents_name(agents: dict[str, Kube], ns: str) -> None:
    ann = agents["ann"]
    await refused(
        ann.create(VOTE, answer(ns, "s-ben", "ben", session="s", choice="x")),
        "may not write a Vote in the name of agent ben",
    )
    await refused(
        ann.create(
            BID,
            answer(
                ns, "a-ben", "ben", auction="a", sealed={"keyId": "sha256:" + "0" * 32, "ciphertext": "AAAA"}
            ),
        ),
        "may not write a Bid in the name of agent ben",
    )
    await refused(
        ann.create(
            ORDER,
            answer(
                ns, "m-ben", "ben", market="m", sealed={"keyId": "sha256:" + "0" * 32, "ciphertext": "AAAA"}
            ),
        ),
        "may not write a Order in the name of agent ben",
    )


async def test_an_agent_cannot_move_its_answer_to_another_agent_or_session(
    agents: dict[str, Kube], ns: str
) -> None:
    ann = agents["ann"]
    await ann.create(VOTE, answer(ns, "s-ann", "ann", session="s", choice="x"))
    await refused(
        ann.patch(VOTE, "s-ann", {"spec": {"agent": "ben"}}, namespace=ns), "in the name of agent ben"
    )
    await refused(ann.patch(VOTE, "s-ann", {"spec": {"session": "t"}}, namespace=ns), "cannot change")
    # and another agent cannot touch it at all
    await refused(agents["ben"].patch(VOTE, "s-ann", {"spec": {"choice": "y"}}, namespace=ns), "ann")


async def test_an_agent_cannot_change_a_session_or_a_verdict(
    agents: dict[str, Kube], kube: Kube, ns: str
) -> None:
    await kube.create(
        COORDINATION,
        {
            "metadata": {"name": "s", "namespace": ns},
            "spec": {
                "protocol": "majority",
                "participants": {"agents": ["ann", "ben"]},
                "options": ["x", "y"],
            },
        },
    )
    ann = agents["ann"]
    await refused(ann.patch(COORDINATION, "s", {"spec": {"options": ["x"]}}, namespace=ns), "forbidden")
    await refused(
        ann.patch(COORDINATION, "s", {"status": {"phase": "Decided"}}, namespace=ns, status=True),
        "forbidden",
    )
    await ann.create(VOTE, answer(ns, "s-ann", "ann", session="s", choice="x"))
    await refused(
        ann.patch(VOTE, "s-ann", {"status": {"reason": "Accepted"}}, namespace=ns, status=True),
        "forbidden",
    )


async def test_an_agent_cannot_write_a_variable_in_another_agents_name_or_rewrite_its_rules(
    agents: dict[str, Kube], kube: Kube, ns: str
) -> None:
    await kube.create(
        VARIABLE,
        {
            "metadata": {"name": "v", "namespace": ns},
            "spec": {"type": "integer", "value": 1, "access": {"agents": ["ann", "ben"]}},
        },
    )

    async def writable() -> bool:  # the operator grants the writers update on the Variable
        try:
            await agents["ann"].patch(VARIABLE, "v", {"metadata": {"labels": {"probe": "1"}}}, namespace=ns)
        except ApiError:
            return False
        return True

    await eventually(writable, what="ann may update Variable v")
    ann = agents["ann"]
    await refused(
        ann.patch(
            VARIABLE,
            "v",
            {"metadata": {"annotations": {"mabeam.io/write": '{"value": 2}', "mabeam.io/writer": "ben"}}},
            namespace=ns,
        ),
        "may not write Variable v in the name of agent ben",
    )
    await refused(ann.patch(VARIABLE, "v", {"spec": {"value": 5}}, namespace=ns), "only as a write")
    await refused(
        ann.patch(VARIABLE, "v", {"spec": {"access": {"selector": {}}}}, namespace=ns),
        "may only change spec.value",
    )


async def test_the_house_name_is_reserved_and_an_account_holding_escrow_is_not_deleted(
    agents: dict[str, Kube], kube: Kube, ns: str
) -> None:
    """The chart's reserved-names and account-escrow policies, made by the real API server."""
    await refused(kube.create(AGENT, sleeper(HOUSE_ACCOUNT, ns)), f"the name {HOUSE_ACCOUNT} is reserved")
    await refused(
        kube.create(ACCOUNT, {"metadata": {"name": HOUSE_ACCOUNT, "namespace": ns}, "spec": {"budget": 5}}),
        f"the name {HOUSE_ACCOUNT} is reserved",
    )
    await kube.create(ACCOUNT, {"metadata": {"name": "ann", "namespace": ns}, "spec": {"budget": 30}})

    async def free(amount: int) -> bool:
        status = ((await kube.get(ACCOUNT, "ann", ns)) or {}).get("status") or {}
        return "free" in status and parse_money(status["free"]) == amount * 100

    await eventually(lambda: free(30), what="ann's budget granted")
    await kube.create(MARKET, {"metadata": {"name": "dx", "namespace": ns}, "spec": {
        "mechanism": "double-auction", "good": "gpu", "participants": {"agents": ["ann", "ben"]},
        "orderSeconds": 300}})  # fmt: skip

    async def sealing() -> dict[str, Any] | None:
        obj = await kube.get(MARKET, "dx", ns)
        return obj if obj and (obj.get("status") or {}).get("sealing") else None

    market = await eventually(sealing, what="the market's sealing key")
    envelope = seal_order(
        SealingInfo.model_validate(market["status"]["sealing"]),
        market["metadata"]["uid"],
        "ann",
        OrderContent.model_validate({"side": "buy", "price": 10}),
    )
    await agents["ann"].create(
        ORDER,
        {
            "metadata": {
                "name": order_name("dx", "ann"),
                "namespace": ns,
                "labels": {"mabeam.io/session": "dx", "mabeam.io/agent": "ann"},
            },
            "spec": {"market": "dx", "agent": "ann", "sealed": envelope.to_wire()},
        },
    )
    await eventually(lambda: free(20), what="ann's order held in escrow")
    await refused(kube.delete(ACCOUNT, "ann", ns), "Account ann holds escrow for open sessions")
    await kube.patch(MARKET, "dx", {"spec": {"cancel": True}}, namespace=ns)
    await eventually(lambda: free(30), what="the escrow released")
    assert await kube.delete(ACCOUNT, "ann", ns)
