"""The attacks of an agent that reads everything RBAC lets it read and acts last.

Each attack is an ``async def attack_*(plane)`` that makes the attempt with the attacker's own
credentials, asserts the refusal (status and message) and, where a session is attacked, that
its outcome equals the outcome without the attacker. ``ATTACKS`` lists them for both suites:
tests/security/test_attacks.py (mabeam local) and tests/e2e/test_security.py (the real
control plane).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from mabeam.kube.resources import ACCOUNT, AGENT, AUCTION, BID, COORDINATION, MARKET, ORDER, VARIABLE, VOTE
from mabeam.models._sealed import SealingInfo
from mabeam.models.auction import BidContent
from mabeam.models.market import OrderContent
from mabeam.sdk._trading import seal_bid, seal_order
from tests.integration._util import eventually as _eventually
from tests.security._plane import Plane, Reply

Attack = Callable[[Plane], Awaitable[None]]

MERGE = "application/merge-patch+json"


async def eventually(check: Callable[[], Awaitable[Any]], *, what: str = "") -> Any:
    """Wait on a condition, with the patience a real cluster needs."""
    return await _eventually(check, timeout=60.0, interval=0.1, what=what)


def refused(reply: Reply, status: int | tuple[int, ...], *fragments: str) -> None:
    wanted = (status,) if isinstance(status, int) else status
    assert reply.status in wanted, f"expected {wanted}, got {reply.status}: {reply.message}"
    for fragment in fragments:
        assert fragment in reply.message, f"{fragment!r} not in {reply.message!r}"


async def can_list_votes(plane: Plane, token: str, namespace: str | None = None) -> None:
    """Wait until an agent's rights are in force (RBAC caches may lag behind a new binding)."""

    async def check() -> bool:
        return (
            await plane.request("GET", plane.path("votes", namespace=namespace), token=token)
        ).status == 200

    await eventually(check, what="the agent's rights in force")


def vote(plane: Plane, session: str, agent: str, choice: str, name: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Vote",
        "metadata": {
            "name": name or f"{session}-{agent}",
            "namespace": plane.namespace,
            "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent},  # as the SDK sets them
        },
        "spec": {"session": session, "agent": agent, "choice": choice},
    }


async def suspended_agents(plane: Plane, *names: str) -> None:
    for name in names:
        body = {
            "metadata": {"name": name, "namespace": plane.namespace},
            "spec": {
                "capabilities": ["vote"],
                "suspend": True,
                "template": {"spec": {"containers": [{"name": "agent", "image": "example/agent:1"}]}},
            },
        }
        await plane.admin.create(AGENT, body)


async def decided(plane: Plane, session: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await plane.admin.get(COORDINATION, session, plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") in ("Decided", "NoDecision", "Failed") else None

    result: dict[str, Any] = await eventually(check, what=f"{session} decided")
    return result


# ---- answers in another agent's name ----------------------------------------------------------


async def attack_votes_in_other_names(plane: Plane) -> None:
    """Mallory forges, squats, edits and deletes other agents' Votes; the majority stands."""
    await suspended_agents(plane, "alice", "bob", "carol")
    tokens = {name: await plane.agent(name) for name in ("alice", "bob", "carol", "mallory")}
    mallory = tokens["mallory"]
    await can_list_votes(plane, mallory)
    session = {
        "metadata": {"name": "pick", "namespace": plane.namespace},
        "spec": {
            "protocol": "majority",
            "participants": {"agents": ["alice", "bob", "carol"]},
            "options": ["a", "b"],
            "answerSeconds": 120,
        },
    }
    await plane.admin.create(COORDINATION, session)
    votes = plane.path("votes")
    # A Vote in Carol's name, before Carol votes.
    forged = await plane.request("POST", votes, token=mallory, body=vote(plane, "pick", "carol", "a"))
    refused(
        forged,
        403,
        "system:serviceaccount:",
        "may not write a Vote in the name of agent carol",
        "from the ServiceAccount mabeam-agent-carol",
    )
    # Carol's answer name taken first, in Mallory's own name.
    squat = await plane.request(
        "POST", votes, token=mallory, body=vote(plane, "pick", "mallory", "a", "pick-carol")
    )
    refused(squat, 422, "a Vote of agent mallory must be named pick-mallory, not pick-carol")
    # The honest votes.
    for agent, choice in (("alice", "a"), ("bob", "b")):
        await can_list_votes(plane, tokens[agent])
        reply = await plane.request(
            "POST", votes, token=tokens[agent], body=vote(plane, "pick", agent, choice)
        )
        assert reply.status == 201, reply
    # Bob's Vote edited, moved to Mallory, deleted; a verdict written; the session changed.
    edit = await plane.request(
        "PATCH",
        plane.path("votes", "pick-bob"),
        token=mallory,
        body={"spec": {"choice": "a"}},
        content_type=MERGE,
    )
    refused(edit, 403, "may not write a Vote in the name of agent bob")
    moved = await plane.request(
        "PATCH",
        plane.path("votes", "pick-bob"),
        token=mallory,
        body={"spec": {"agent": "mallory"}},
        content_type=MERGE,
    )
    refused(moved, (403, 422), "cannot change; create a new object instead")
    deleted = await plane.request("DELETE", plane.path("votes", "pick-bob"), token=mallory)
    refused(deleted, 403, 'cannot delete resource "votes"')
    verdict = await plane.request(
        "PATCH",
        plane.path("votes", "pick-bob", sub="status"),
        token=mallory,
        body={"status": {"verdict": "Refused"}},
        content_type=MERGE,
    )
    refused(verdict, 403, 'cannot patch resource "votes/status"')
    for sub, body in (("", {"spec": {"answerSeconds": 1}}), ("status", {"status": {"phase": "Decided"}})):
        changed = await plane.request(
            "PATCH",
            plane.path("coordinations", "pick", sub=sub),
            token=mallory,
            body=body,
            content_type=MERGE,
        )
        refused(changed, 403, "cannot patch resource")
    await can_list_votes(plane, tokens["carol"])
    reply = await plane.request("POST", votes, token=tokens["carol"], body=vote(plane, "pick", "carol", "b"))
    assert reply.status == 201, reply
    status = await decided(plane, "pick")
    # The outcome without the attacker: a, b, b.
    assert (status["phase"], status["result"]["value"]) == ("Decided", "b"), status
    counted = {a["agent"]: a["choice"] for a in status["answers"]}
    assert counted == {"alice": "a", "bob": "b", "carol": "b"}
    stored = await plane.admin.get(VOTE, "pick-bob", plane.namespace)
    assert stored is not None and stored["spec"] == {"session": "pick", "agent": "bob", "choice": "b"}


async def attack_from_another_namespace(plane: Plane) -> None:
    """An agent of another namespace, even one given rights here, cannot answer for agents here."""
    other = f"{plane.namespace}-x"
    created = await plane.request(
        "POST", "/api/v1/namespaces", admin=True, body={"metadata": {"name": other}}
    )
    assert created.status == 201, created
    try:
        intruder = await plane.agent("mallory", other)
        await can_list_votes(plane, intruder, other)
        body = vote(plane, "pick", "alice", "a")
        reply = await plane.request("POST", plane.path("votes"), token=intruder, body=body)
        refused(
            reply,
            403,
            f'User "system:serviceaccount:{other}:mabeam-agent-mallory" cannot create resource "votes"',
        )
        # Even with the agents' rights in this namespace, the name must be its own, here.
        await plane.grant(
            "mabeam-agent-mallory", "ClusterRole", "mabeam-agent", plane.namespace, account_namespace=other
        )
        await can_list_votes(plane, intruder)
        for agent in ("alice", "mallory"):
            reply = await plane.request(
                "POST", plane.path("votes"), token=intruder, body=vote(plane, "pick", agent, "a")
            )
            refused(reply, 403, f"may not write a Vote in the name of agent {agent}")
    finally:
        await plane.request("DELETE", f"/api/v1/namespaces/{other}", admin=True)


# ---- credentials -------------------------------------------------------------------------------


async def attack_credentials(plane: Plane) -> None:
    """Guessed tokens, anonymous requests, impersonation and a deleted agent's token."""
    votes = plane.path("votes")
    guessed = await plane.request("GET", votes, token=f"sa:{plane.namespace}:mabeam-agent-alice")
    refused(guessed, 401, "Unauthorized")
    for path, method, body in (
        (plane.path("v1/secrets"), "GET", None),
        (votes, "GET", None),
        (
            plane.path("rbac/rolebindings"),
            "POST",
            {
                "metadata": {"name": "anonymous-admin"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [{"kind": "Group", "name": "system:unauthenticated"}],
            },
        ),
    ):
        reply = await plane.request(method, path, body=body)  # no token: anonymous
        refused(reply, (401, 403))
    mallory = await plane.agent("mallory")
    await can_list_votes(plane, mallory)
    for user in ("system:admin", f"system:serviceaccount:{plane.namespace}:mabeam-agent-alice"):
        reply = await plane.request(
            "GET", plane.path("v1/secrets"), token=mallory, headers={"Impersonate-User": user}
        )
        refused(reply, 403, "cannot impersonate")
    reply = await plane.request(
        "GET",
        votes,
        token=mallory,
        headers={"Impersonate-User": "system:admin", "Impersonate-Group": "system:masters"},
    )
    refused(reply, 403, "cannot impersonate")
    # A token of an agent that is gone (its ServiceAccount deleted) no longer works.
    dora = await plane.agent("dora")
    await can_list_votes(plane, dora)
    gone = await plane.request("DELETE", plane.path("v1/serviceaccounts", "mabeam-agent-dora"), admin=True)
    assert gone.status == 200, gone

    async def rejected() -> bool:
        return (await plane.request("GET", votes, token=dora)).status == 401

    await eventually(rejected, what="the deleted agent's token refused")
    # Nothing the attempts asked for happened.
    listed = await plane.request("GET", plane.path("rbac/rolebindings", "anonymous-admin"), admin=True)
    assert listed.status == 404, listed


# ---- Variables -----------------------------------------------------------------------------------


async def attack_variables(plane: Plane) -> None:
    """A writer of a Variable writes in another's name, around the protocol, or changes access."""
    await suspended_agents(plane, "alice", "mallory")
    body = {
        "metadata": {"name": "quota", "namespace": plane.namespace},
        "spec": {"type": "number", "value": 1, "access": {"agents": ["alice", "mallory"]}},
    }
    await plane.admin.create(VARIABLE, body)
    mallory = await plane.agent("mallory")
    # "An agent with write access": Mallory may update the Variable (RBAC), as its writers may.
    rules = [{"apiGroups": ["mabeam.io"], "resources": ["variables"], "verbs": ["get", "update", "patch"]}]
    await plane.grant("mabeam-agent-mallory", "Role", "attack-variable-writer", plane.namespace, rules=rules)
    await can_list_votes(plane, mallory)
    path = plane.path("variables", "quota")

    async def current() -> dict[str, Any]:
        reply = await plane.request("GET", path, token=mallory)
        assert reply.status == 200, reply
        return dict(reply.body)

    async def settled() -> bool:
        return ((await current()).get("status") or {}).get("version") == 1

    await eventually(settled, what="quota at version 1")
    as_alice = {
        "metadata": {
            "annotations": {
                "mabeam.io/write": '{"id":"w1","value":7,"writer":{"kind":"Agent","name":"alice"}}',
                "mabeam.io/writer": "alice",
            }
        },
        "spec": {"value": 7},
    }
    reply = await plane.request("PATCH", path, token=mallory, body=as_alice, content_type=MERGE)
    refused(reply, 403, "may not write Variable quota in the name of agent alice")
    reply = await plane.request("PATCH", path, token=mallory, body={"spec": {"value": 9}}, content_type=MERGE)
    refused(reply, 403, "changes spec.value of a Variable only as a write")
    opened = {"spec": {"access": {"agents": ["alice", "mallory", "eve"]}}}
    reply = await plane.request("PATCH", path, token=mallory, body=opened, content_type=MERGE)
    refused(reply, 403, "may only change spec.value of a Variable")
    obj = await current()
    assert obj["spec"]["value"] == 1 and obj["spec"]["access"] == {"agents": ["alice", "mallory"]}
    assert (obj.get("status") or {}).get("version") == 1


# ---- sealed bids -------------------------------------------------------------------------------


async def attack_sealed_bid_copy(plane: Plane) -> None:
    """Mallory reads every Bid, copies Alice's ciphertext as her own, reads Secrets, bids late."""
    await suspended_agents(plane, "alice", "bob", "mallory")
    tokens = {name: await plane.agent(name) for name in ("alice", "bob", "mallory")}
    gpu = {
        "metadata": {"name": "gpu", "namespace": plane.namespace},
        "spec": {"type": "string", "value": "slot"},
    }
    await plane.admin.create(VARIABLE, gpu)
    auction = {
        "metadata": {"name": "sale", "namespace": plane.namespace},
        "spec": {
            "mechanism": "second-price",
            "participants": {"agents": ["alice", "bob", "mallory"]},
            "items": ["gpu"],
            "reservePrice": 5,
            "bidSeconds": 4,
        },
    }
    await plane.admin.create(AUCTION, auction)

    async def bidding() -> dict[str, Any] | None:
        obj = await plane.admin.get(AUCTION, "sale", plane.namespace)
        return obj if ((obj or {}).get("status") or {}).get("sealing") else None

    opened = await eventually(bidding, what="sale bidding with a sealing key")
    sealing = SealingInfo.model_validate(opened["status"]["sealing"])
    uid = opened["metadata"]["uid"]

    def bid(agent: str, sealed: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "mabeam.io/v1alpha1",
            "kind": "Bid",
            "metadata": {
                "name": f"sale-{agent}",
                "namespace": plane.namespace,
                "labels": {"mabeam.io/session": "sale", "mabeam.io/agent": agent},
            },
            "spec": {"auction": "sale", "agent": agent, "sealed": sealed},
        }

    for agent, amount in (("alice", 40), ("bob", 25)):
        await can_list_votes(plane, tokens[agent])
        sealed = seal_bid(sealing, uid, agent, BidContent(amount=amount)).to_wire()
        reply = await plane.request("POST", plane.path("bids"), token=tokens[agent], body=bid(agent, sealed))
        assert reply.status == 201, reply
    mallory = tokens["mallory"]
    await can_list_votes(plane, mallory)
    # No Secret anywhere is readable, the operator's key least of all.
    refused(
        await plane.request("GET", "/api/v1/secrets", token=mallory), 403, 'cannot list resource "secrets"'
    )
    # Every Bid is readable: Alice's ciphertext, copied as Mallory's own bid.
    alice = await plane.request("GET", plane.path("bids", "sale-alice"), token=mallory)
    assert alice.status == 200 and "amount" not in json.dumps(alice.body["spec"])
    copy = await plane.request(
        "POST", plane.path("bids"), token=mallory, body=bid("mallory", alice.body["spec"]["sealed"])
    )
    assert copy.status == 201, copy  # the API server cannot tell; the operator can

    async def copied() -> dict[str, Any] | None:
        obj = await plane.admin.get(BID, "sale-mallory", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("reason") else None

    verdict = await eventually(copied, what="a verdict on Mallory's bid")
    assert verdict["reason"] == "Copied" and "alice" in verdict["message"], verdict

    async def awarded() -> dict[str, Any] | None:
        obj = await plane.admin.get(AUCTION, "sale", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("phase") in ("Awarded", "NoSale", "Failed") else None

    status = await eventually(awarded, what="sale decided")
    # The outcome without the attacker: Alice wins and pays Bob's 25 (the copy would make it 40).
    (allocation,) = status["result"]["allocations"]
    assert (status["phase"], allocation["agent"], allocation["price"]) == ("Awarded", "alice", 25), status
    # A bid changed after the close counts for nothing.
    late = seal_bid(sealing, uid, "mallory", BidContent(amount=1000)).to_wire()
    reply = await plane.request(
        "PATCH",
        plane.path("bids", "sale-mallory"),
        token=mallory,
        body={"spec": {"sealed": late}},
        content_type=MERGE,
    )
    assert reply.status == 200, reply
    after = await plane.admin.get(AUCTION, "sale", plane.namespace)
    assert after is not None and after["status"]["result"] == status["result"]


async def attack_money(plane: Plane) -> None:
    """Mallory tries to mint money, to read Alice's balance, to spend beyond her own, to bid in
    Alice's name, to grant herself goods and to sell goods she does not hold: each is refused,
    and the money and goods move as without her."""
    await suspended_agents(plane, "alice", "mallory")
    tokens = {name: await plane.agent(name) for name in ("alice", "mallory")}
    for name, budget in (("alice", 50), ("mallory", 10)):
        await plane.admin.create(
            ACCOUNT, {"metadata": {"name": name, "namespace": plane.namespace}, "spec": {"budget": budget}}
        )

    async def granted() -> bool:
        objs = {o["metadata"]["name"]: o for o in await plane.admin.list(ACCOUNT, plane.namespace)}
        return all(
            ((objs.get(n) or {}).get("status") or {}).get("balance") == b
            for n, b in (("alice", "50.00"), ("mallory", "10.00"))
        )

    await eventually(granted, what="the budgets granted")
    mallory = tokens["mallory"]
    await can_list_votes(plane, mallory)
    # No Account may be written by an agent: not its own spec, not its status, not a new one.
    mine = plane.path("accounts", "mallory")
    refused(
        await plane.request(
            "PATCH", mine, token=mallory, body={"spec": {"budget": 1000}}, content_type=MERGE
        ),
        403,
        "accounts",
    )
    refused(
        await plane.request(
            "PATCH",
            mine + "/status",
            token=mallory,
            body={"status": {"balance": "1000.00"}},
            content_type=MERGE,
        ),
        403,
        "accounts/status",
    )
    minted = {
        "apiVersion": "mabeam.io/v1alpha1",
        "kind": "Account",
        "metadata": {"name": "mallory-2", "namespace": plane.namespace},
        "spec": {"budget": 1000},
    }
    refused(await plane.request("POST", plane.path("accounts"), token=mallory, body=minted), 403, "accounts")
    # Her own Account she may read; Alice's (and the list of all) she may not.

    async def can_read_own() -> bool:
        return (await plane.request("GET", mine, token=mallory)).status == 200

    await eventually(can_read_own, what="mallory reads her own Account")
    refused(await plane.request("GET", plane.path("accounts", "alice"), token=mallory), 403, "accounts")
    refused(await plane.request("GET", plane.path("accounts"), token=mallory), 403, "accounts")
    # Beyond her means: a bid of 40 with 10 is refused, with her balance; it holds nothing.
    gpu = {
        "metadata": {"name": "gpu", "namespace": plane.namespace},
        "spec": {"type": "string", "value": "slot"},
    }
    await plane.admin.create(VARIABLE, gpu)
    auction = {
        "metadata": {"name": "sale", "namespace": plane.namespace},
        "spec": {
            "mechanism": "first-price",
            "participants": {"agents": ["alice", "mallory"]},
            "items": ["gpu"],
            "bidSeconds": 60,
        },
    }
    await plane.admin.create(AUCTION, auction)

    async def bidding() -> dict[str, Any] | None:
        obj = await plane.admin.get(AUCTION, "sale", plane.namespace)
        return obj if ((obj or {}).get("status") or {}).get("sealing") else None

    opened = await eventually(bidding, what="sale bidding")
    sealing = SealingInfo.model_validate(opened["status"]["sealing"])
    uid = opened["metadata"]["uid"]

    def bid(agent: str, amount: int, name: str | None = None) -> dict[str, Any]:
        sealed = seal_bid(sealing, uid, agent, BidContent(amount=amount)).to_wire()
        return {
            "apiVersion": "mabeam.io/v1alpha1",
            "kind": "Bid",
            "metadata": {
                "name": name or f"sale-{agent}",
                "namespace": plane.namespace,
                "labels": {"mabeam.io/session": "sale", "mabeam.io/agent": agent},
            },
            "spec": {"auction": "sale", "agent": agent, "sealed": sealed},
        }

    # Spending Alice's money: a bid in her name is refused at admission.
    reply = await plane.request("POST", plane.path("bids"), token=mallory, body=bid("alice", 45))
    assert reply.status in (403, 422), reply
    reply = await plane.request("POST", plane.path("bids"), token=mallory, body=bid("mallory", 40))
    assert reply.status == 201, reply

    async def verdict() -> dict[str, Any] | None:
        obj = await plane.admin.get(BID, "sale-mallory", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("reason") else None

    over = await eventually(verdict, what="a verdict on Mallory's bid")
    over_obj = await plane.admin.get(BID, "sale-mallory", plane.namespace)
    assert over_obj is not None
    over_rv = over_obj["metadata"]["resourceVersion"]
    assert (over["reason"], over["accepted"]) == ("OverBudget", False), over
    assert "10.00" in over["message"] and "40" not in over["message"], over
    # Within her means, a new version counts (and every bidder is in: bidding closes at once).
    reply = await plane.request(
        "PUT", plane.path("bids", "sale-mallory"), token=mallory,
        body={**bid("mallory", 5), "metadata": {**bid("mallory", 5)["metadata"], "resourceVersion": over_rv}},
    )  # fmt: skip
    assert reply.status == 200, reply
    reply = await plane.request("POST", plane.path("bids"), token=tokens["alice"], body=bid("alice", 30))
    assert reply.status == 201, reply

    async def paid() -> dict[str, Any] | None:
        obj = await plane.admin.get(AUCTION, "sale", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("outcomeApplied") else None

    status = await eventually(paid, what="sale settled")
    # Without Mallory: Alice wins at her 30 and pays the house; Mallory keeps her 10.
    (allocation,) = status["result"]["allocations"]
    assert (allocation["agent"], allocation["price"]) == ("alice", 30), status
    balances = {
        o["metadata"]["name"]: (o.get("status") or {}).get("balance")
        for o in await plane.admin.list(ACCOUNT, plane.namespace)
    }
    assert balances == {"alice": "20.00", "mallory": "10.00", "mabeam-house": "30.00"}, balances
    # Goods: she cannot grant herself any (her Account's spec is the administrator's) ...
    refused(
        await plane.request(
            "PATCH", mine, token=mallory, body={"spec": {"goods": {"gpu-hours": 5}}}, content_type=MERGE
        ),
        403,
        "accounts",
    )
    # ... and an order selling gpu-hours she does not hold is refused at counting, with her
    # holding; Alice's buy order finds no seller and her money is released.
    market = {
        "metadata": {"name": "hours", "namespace": plane.namespace},
        "spec": {
            "mechanism": "double-auction",
            "good": "gpu-hours",
            "participants": {"agents": ["alice", "mallory"]},
            "orderSeconds": 4,
        },
    }
    await plane.admin.create(MARKET, market)

    async def collecting() -> dict[str, Any] | None:
        obj = await plane.admin.get(MARKET, "hours", plane.namespace)
        return obj if ((obj or {}).get("status") or {}).get("sealing") else None

    opened = await eventually(collecting, what="the market collecting")
    sealing = SealingInfo.model_validate(opened["status"]["sealing"])

    def order(agent: str, **content: Any) -> dict[str, Any]:
        sealed = seal_order(sealing, opened["metadata"]["uid"], agent, OrderContent.model_validate(content))
        return {
            "apiVersion": "mabeam.io/v1alpha1",
            "kind": "Order",
            "metadata": {
                "name": f"hours-{agent}",
                "namespace": plane.namespace,
                "labels": {"mabeam.io/session": "hours", "mabeam.io/agent": agent},
            },
            "spec": {"market": "hours", "agent": agent, "sealed": sealed.to_wire()},
        }

    reply = await plane.request(
        "POST", plane.path("orders"), token=mallory, body=order("mallory", side="sell", price=1, quantity=3)
    )
    assert reply.status == 201, reply

    async def sold() -> dict[str, Any] | None:
        obj = await plane.admin.get(ORDER, "hours-mallory", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("reason") else None

    not_held = await eventually(sold, what="a verdict on Mallory's sell order")
    assert (not_held["reason"], not_held["accepted"]) == ("NotHeld", False), not_held
    assert "mallory holds 0 of gpu-hours free to sell (held 0," in not_held["message"], not_held
    reply = await plane.request(
        "POST", plane.path("orders"), token=tokens["alice"], body=order("alice", side="buy", price=10)
    )
    assert reply.status == 201, reply

    async def ended() -> dict[str, Any] | None:
        obj = await plane.admin.get(MARKET, "hours", plane.namespace)
        status = (obj or {}).get("status") or {}
        return status if status.get("outcomeApplied") else None

    status = await eventually(ended, what="the market ended")
    assert status["phase"] == "NoTrade" and not (status["settlement"] or {}).get("goods"), status
    accounts = {
        o["metadata"]["name"]: o.get("status") or {} for o in await plane.admin.list(ACCOUNT, plane.namespace)
    }
    assert {n: (s.get("balance"), s.get("escrow")) for n, s in accounts.items()} == {
        "alice": ("20.00", "0.00"),
        "mallory": ("10.00", "0.00"),
        "mabeam-house": ("30.00", "0.00"),
    }, accounts
    assert not any(s.get("goods") for s in accounts.values()), accounts


ATTACKS: list[Attack] = [
    attack_votes_in_other_names,
    attack_from_another_namespace,
    attack_credentials,
    attack_variables,
    attack_sealed_bid_copy,
    attack_money,
]
