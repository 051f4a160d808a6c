"""The nemesis's sessions: what each one is, how its agents behave, and how it is driven.

A :class:`Plan` is drawn from the seed: a Coordination of each protocol, an Auction of each
mechanism, a Market of each mechanism, or a write to a Variable under its lock with fencing.
Each participant gets a behaviour:

- ``normal``: answers once, at once;
- ``twice``: sends its answer twice (a sealed answer is sealed again: a new version, same bid);
- ``flood``: sends its answer, then a burst of changes to the answer object (annotations, or for
  a sealed answer new seals of the same bid), each an event for the operator;
- ``killed``: never answers (an agent that died);
- ``frozen``: answers only once the session's deadline has passed (an agent that hung);
- ``late``: answers after the session has ended.

Answers are written with each agent's own credentials, straight to the API server (the faults
are the operator's). A session's outcome must not depend on any of this beyond which answers
were accepted (see :mod:`._invariants`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from mabeam.errors import ApiError, ConflictError, LockError, MabeamError
from mabeam.kube.client import AlreadyExistsError, Kube
from mabeam.kube.resources import AUCTION, BID, COORDINATION, MARKET, ORDER, ROLE_BINDING, VARIABLE, VOTE, Res
from mabeam.models._sealed import SealingInfo
from mabeam.models.auction import SEALED_MECHANISMS, BidContent, bid_name
from mabeam.models.coordination import vote_name
from mabeam.models.market import OrderContent, order_name
from mabeam.sdk import Variables
from mabeam.sdk._trading import seal_bid, seal_order

__all__ = ["BEHAVIOURS", "KINDS", "Plan", "agent_pool", "draw_plans", "drive"]

BEHAVIOURS = ("normal", "twice", "flood", "killed", "frozen", "late")
#: Behaviours whose answer is written while the session is open.
ON_TIME = ("normal", "twice", "flood")
TERMINAL = {
    COORDINATION: ("Decided", "NoDecision", "Failed", "Cancelled"),
    AUCTION: ("Awarded", "NoSale", "Failed", "Cancelled"),
    MARKET: ("Cleared", "NoTrade", "Failed", "Cancelled"),
}
ANSWER_OF = {COORDINATION: VOTE, AUCTION: BID, MARKET: ORDER}
SESSION_FIELD = {VOTE: "session", BID: "auction", ORDER: "market"}
NAME_OF = {VOTE: vote_name, BID: bid_name, ORDER: order_name}

#: (kind, protocol or mechanism) of every session the nemesis runs.
KINDS: tuple[tuple[str, str], ...] = (
    ("coordination", "majority"),
    ("coordination", "consensus"),
    ("coordination", "weighted"),
    ("coordination", "priority"),
    ("coordination", "contract-net"),
    ("auction", "first-price"),
    ("auction", "second-price"),
    ("auction", "combinatorial"),
    ("auction", "english"),
    ("auction", "dutch"),
    ("market", "double-auction"),
    ("market", "equilibrium"),
    ("variable", "locked-write"),
)

#: How long sessions take answers: long enough that an operator restart (a few seconds) rarely
#: makes an on-time answer late, short enough that a session waiting for a killed agent ends.
ANSWER_SECONDS = 12
FLOOD = 8


def agent_pool(size: int = 10) -> dict[str, dict[str, Any]]:
    """The agents (suspended: no Pod; they answer through the nemesis): distinct priorities."""
    return {
        f"ag{i}": {"priority": i + 1, "weight": 1 + i % 3, "capabilities": ["vote", "weld"]}
        for i in range(size)
    }


@dataclass
class Plan:
    """One session: what is created, who answers what, and how each agent behaves."""

    kind: str
    label: str
    name: str
    spec: dict[str, Any]
    #: Variables created first: name -> spec.
    variables: dict[str, dict[str, Any]]
    #: agent -> the answer's fields (a Vote's or clock Bid's spec fields) or sealed content.
    answers: dict[str, dict[str, Any]]
    behaviours: dict[str, str]
    sealed: bool = False
    #: Filled in by the driver.
    errors: list[str] = field(default_factory=list)
    #: agent -> how many answer writes it made (all versions).
    writes: dict[str, int] = field(default_factory=dict)
    #: locked-write: the writes each writer saw succeed (the versions returned).
    succeeded: list[int] = field(default_factory=list)
    #: locked-write: refused writes (the fenced ones among them), by reason.
    refused: list[str] = field(default_factory=list)
    #: locked-write: writes whose outcome the writer never learned (applied or not).
    unknown: int = 0
    #: locked-write: writes given up before they were made (the Variable stayed busy).
    gave_up: int = 0

    @property
    def res(self) -> Res | None:
        return {"coordination": COORDINATION, "auction": AUCTION, "market": MARKET}.get(self.kind)

    @property
    def outcome_variables(self) -> list[str]:
        return list(self.variables)


def _behaviours(rng: random.Random, agents: list[str], on_time: set[str] | None = None) -> dict[str, str]:
    """Mostly answering agents; about one session in four has an agent that does not."""
    out = {}
    for agent in agents:
        weights = (50, 15, 12, 5, 5, 13)
        behaviour = rng.choices(BEHAVIOURS, weights=weights)[0]
        if on_time is not None and agent in on_time and behaviour not in ON_TIME:
            behaviour = "normal"
        out[agent] = behaviour
    return out


def _plan(rng: random.Random, kind: str, label: str, name: str, pool: dict[str, dict[str, Any]]) -> Plan:
    names = sorted(pool)
    if kind == "coordination":
        agents = sorted(rng.sample(names, rng.randint(3, 4)))
        spec: dict[str, Any] = {"protocol": label, "participants": {"agents": agents},
                                "answerSeconds": ANSWER_SECONDS}  # fmt: skip
        variables: dict[str, dict[str, Any]] = {}
        answers: dict[str, dict[str, Any]] = {}
        if label in ("majority", "consensus", "weighted"):
            options = ["x", "y"] if label == "consensus" else ["x", "y", "z"]
            spec["options"] = options
            # consensus agrees more often than not, so that both outcomes are seen
            common = rng.choice(options)
            for a in agents:
                answers[a] = {"choice": common if rng.random() < 0.7 else rng.choice(options)}
            variables[f"{name}-v"] = {"type": "string", "value": "unset"}
            spec["variableRef"] = {"name": f"{name}-v"}
        elif label == "priority":
            spec["resource"] = f"{name}-gpu"
            for a in agents:
                answers[a] = {"claim": rng.random() < 0.6}
        else:  # contract-net: the proposal confirms the award in advance
            spec["task"] = {"description": "weld a seam", "capability": "weld"}
            spec["awardSeconds"] = ANSWER_SECONDS
            costs = rng.sample(range(1, 100), len(agents))
            for a, cost in zip(agents, costs, strict=True):
                answers[a] = {"proposal": {"cost": cost}, "accept": True}
        return Plan(kind, label, name, spec, variables, answers, _behaviours(rng, agents))
    if kind == "auction":
        agents = sorted(rng.sample(names, rng.randint(2, 4)))
        items = [f"{name}-i1", f"{name}-i2"] if label == "combinatorial" else [f"{name}-i1"]
        variables = {item: {"type": "string", "value": "slot"} for item in items}
        spec = {"mechanism": label, "participants": {"agents": agents}, "items": items}
        answers = {}
        on_time: set[str] | None = None
        if label in SEALED_MECHANISMS:
            spec["bidSeconds"] = ANSWER_SECONDS
            spec["reservePrice"] = rng.choice([0, 20])
            amounts = rng.sample(range(1, 100), len(agents))
            for a, amount in zip(agents, amounts, strict=True):
                if label == "combinatorial":
                    bundles = [{"items": [rng.choice(items)], "amount": amount}]
                    if rng.random() < 0.5:
                        bundles.append({"items": items, "amount": amount + rng.randint(1, 60)})
                    answers[a] = {"bundles": bundles}
                else:
                    answers[a] = {"amount": amount}
        elif label == "english":
            # One round: with maxRounds 1 the clock stops after it, whoever stayed in.
            spec.update({"startPrice": 10, "increment": 5, "roundSeconds": ANSWER_SECONDS, "maxRounds": 1})
            for a in agents:
                answers[a] = {"round": 1, "accept": rng.random() < 0.6}
        else:  # dutch: at most one accepts round 1 (two would be told apart by the time the
            # operator saw them, which no reference can know); nobody -> NoSale after round 1.
            spec.update(
                {"startPrice": 50, "decrement": 45, "reservePrice": 10, "roundSeconds": ANSWER_SECONDS}
            )
            buyer = rng.choice(agents) if rng.random() < 0.8 else None
            for a in agents:
                answers[a] = {"round": 1, "accept": a == buyer}
            on_time = {buyer} if buyer else None
        return Plan(
            kind, label, name, spec, variables, answers, _behaviours(rng, agents, on_time),
            sealed=label in SEALED_MECHANISMS,
        )  # fmt: skip
    if kind == "market":
        agents = sorted(rng.sample(names, 4))
        spec = {"mechanism": label, "good": "slot-hours", "participants": {"agents": agents},
                "orderSeconds": ANSWER_SECONDS}  # fmt: skip
        variables = {}
        answers = {}
        if label == "double-auction":
            for i, a in enumerate(agents):
                side = "buy" if i % 2 == 0 else "sell"
                answers[a] = {"side": side, "price": rng.randint(1, 20), "quantity": rng.randint(1, 3)}
        else:
            spec["priceGrid"] = {"min": 0, "max": 10, "step": 1}
            variables[f"{name}-p"] = {"type": "number", "value": 0}
            spec["priceVariableRef"] = {"name": f"{name}-p"}
            for i, a in enumerate(agents):
                limit = rng.randint(1, 10)
                qty = rng.randint(1, 5)
                schedule = (
                    [{"price": 0, "quantity": qty}, {"price": limit, "quantity": 0}]
                    if i % 2 == 0
                    else [{"price": 0, "quantity": 0}, {"price": limit, "quantity": -qty}]
                )
                answers[a] = {"schedule": schedule}
        return Plan(kind, label, name, spec, variables, answers, _behaviours(rng, agents), sealed=True)
    # locked-write: writers increment a counter under the Variable's lock; a frozen writer holds
    # the lock past its ttl, then writes with its stale fencing token.
    agents = sorted(rng.sample(names, 3))
    behaviours = {a: ("frozen" if rng.random() < 0.3 else "normal") for a in agents}
    variables = {f"{name}-c": {"type": "number", "value": 0, "access": {"agents": agents}}}
    return Plan(kind, label, name, {}, variables, {a: {"increments": 2} for a in agents}, behaviours)


def draw_plans(
    seed: int, count: int, pool: dict[str, dict[str, Any]], labels: tuple[str, ...] = ()
) -> list[Plan]:
    """``count`` sessions, every kind in turn (so that each appears), in a seeded order;
    ``labels``: only these protocols or mechanisms."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if not labels or k[1] in labels]
    if not kinds:
        raise ValueError(f"no session kind among {labels}; known: {[k[1] for k in KINDS]}")
    plans = [_plan(rng, *kinds[i % len(kinds)], name=f"s{seed}-{i:03d}", pool=pool) for i in range(count)]
    rng.shuffle(plans)
    return plans


# --- driving ---------------------------------------------------------------------------------


class Agents:
    """One API client per agent (its own credentials), made on first use."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.clients: dict[str, Kube] = {}
        self._lock = asyncio.Lock()

    async def __call__(self, agent: str) -> Kube:
        async with self._lock:
            if agent not in self.clients:
                self.clients[agent] = await self.target.agent_client(agent)
        return self.clients[agent]

    async def close(self) -> None:
        for client in list(self.clients.values()):
            await client.close()


async def _retrying(what: str, call: Any, attempts: int = 20) -> Any:
    """An agent's own request, retried on the API server's transient answers."""
    for attempt in range(attempts):
        try:
            return await call()
        except (ApiError, ConflictError) as exc:
            status = getattr(exc, "status", 409)
            if (
                isinstance(exc, AlreadyExistsError)
                or status not in (409, 429, 500, 503, 504)
                or attempt == attempts - 1
            ):
                raise
            await asyncio.sleep(0.2)
    raise AssertionError(what)


async def _poll(check: Any, timeout: float, interval: float = 0.25) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    return None


@dataclass
class Driver:
    target: Any
    agents: Agents
    #: How long a session may take to end once its deadline has passed (faults, restarts).
    slack: float = 90.0

    @property
    def admin(self) -> Kube:
        return self.target.admin

    @property
    def ns(self) -> str:
        return self.target.namespace

    async def answer(self, plan: Plan, body: dict[str, Any], agent: str) -> None:
        res = plan.res
        assert res is not None
        answer_res = ANSWER_OF[res]
        name = NAME_OF[answer_res](plan.name, agent)
        fields = dict(plan.answers[agent])
        if plan.sealed:
            info = SealingInfo.model_validate(body["status"]["sealing"])
            uid = body["metadata"]["uid"]
            if answer_res is BID:
                envelope = seal_bid(info, uid, agent, BidContent.model_validate(fields))
            else:
                envelope = seal_order(info, uid, agent, OrderContent.model_validate(fields))
            fields = {"sealed": envelope.to_wire()}
        kube = await self.agents(agent)
        plan.writes[agent] = plan.writes.get(agent, 0) + 1
        body_ = {
            "metadata": {"name": name, "namespace": self.ns,
                         "labels": {"mabeam.io/session": plan.name, "mabeam.io/agent": agent}},
            "spec": {SESSION_FIELD[answer_res]: plan.name, "agent": agent, **fields},
        }  # fmt: skip
        try:
            await _retrying(f"create {name}", lambda: kube.create(answer_res, body_))
        except AlreadyExistsError:
            await _retrying(
                f"patch {name}", lambda: kube.patch(answer_res, name, {"spec": fields}, namespace=self.ns)
            )

    async def flood(self, plan: Plan, body: dict[str, Any], agent: str) -> None:
        res = plan.res
        assert res is not None
        answer_res = ANSWER_OF[res]
        name = NAME_OF[answer_res](plan.name, agent)
        kube = await self.agents(agent)
        for i in range(FLOOD):
            if plan.sealed:
                await self.answer(plan, body, agent)  # sealed again: a new version, the same bid
            else:
                plan.writes[agent] = plan.writes.get(agent, 0) + 1
                patch = {"metadata": {"annotations": {"nemesis.mabeam.io/flood": str(i)}}}
                await _retrying(
                    f"flood {name}", lambda p=patch: kube.patch(answer_res, name, p, namespace=self.ns)
                )

    async def status(self, plan: Plan) -> dict[str, Any] | None:
        assert plan.res is not None
        return await self.admin.get(plan.res, plan.name, self.ns)

    async def drive(self, plan: Plan) -> None:
        try:
            for vname, vspec in plan.variables.items():
                await self.admin.create(
                    VARIABLE, {"metadata": {"name": vname, "namespace": self.ns}, "spec": vspec}
                )
            if plan.kind == "variable":
                await self._locked_writes(plan)
            else:
                await self._session(plan)
        except Exception as exc:  # reported as the session's failure
            plan.errors.append(f"driver: {type(exc).__name__}: {exc}")

    async def _session(self, plan: Plan) -> None:
        res = plan.res
        assert res is not None
        await self.admin.create(
            res, {"metadata": {"name": plan.name, "namespace": self.ns}, "spec": plan.spec}
        )
        terminal = TERMINAL[res]

        async def opened() -> dict[str, Any] | None:
            body = await self.status(plan)
            phase = ((body or {}).get("status") or {}).get("phase")
            return body if phase not in (None, "Pending") else None

        body = await _poll(opened, self.slack)
        if body is None:
            plan.errors.append("never started")
            return

        async def one(agent: str, behaviour: str) -> None:
            if behaviour in ("normal", "twice", "flood"):
                await self.answer(plan, body, agent)
                if behaviour == "twice":
                    await self.answer(plan, body, agent)
                elif behaviour == "flood":
                    await self.flood(plan, body, agent)

        await asyncio.gather(*(one(a, b) for a, b in plan.behaviours.items()))

        async def ended() -> dict[str, Any] | None:
            obj = await self.status(plan)
            return obj if ((obj or {}).get("status") or {}).get("phase") in terminal else None

        frozen = [a for a, b in plan.behaviours.items() if b == "frozen"]
        if frozen:
            deadline = _deadline(body)
            wait = (deadline - dt.datetime.now(dt.UTC)).total_seconds() + 0.5 if deadline else 0
            await _poll(ended, max(wait, 0.0))  # ends early, or the deadline passes
            await asyncio.gather(*(self.answer(plan, body, a) for a in frozen))
        final = await _poll(ended, ANSWER_SECONDS + self.slack)
        if final is None:
            plan.errors.append("never ended")
            return
        late = [a for a, b in plan.behaviours.items() if b == "late"]
        await asyncio.gather(*(self.answer(plan, final, a) for a in late))

    async def _locked_writes(self, plan: Plan) -> None:
        (var,) = plan.variables
        writers = list(plan.behaviours)

        async def ready() -> bool:
            obj = await self.admin.get(VARIABLE, var, self.ns)
            if ((obj or {}).get("status") or {}).get("version") != 1:
                return False
            binding = await self.admin.get(ROLE_BINDING, f"mabeam-var-{var}-writer", self.ns)
            bound = {s["name"] for s in (binding or {}).get("subjects") or []}
            return all(f"mabeam-agent-{w}" in bound for w in writers)

        # Twice the slack: the operator (killed again and again) takes every new Variable in
        # and binds its writers, all at once, at the start.
        if not await _poll(ready, 2 * self.slack):
            plan.errors.append("the Variable or its writers' rights never came")
            return

        async def writer(agent: str) -> None:
            kube = await self.agents(agent)
            sdk = Variables(kube, self.ns, agent, write_timeout=self.slack)
            try:
                for _ in range(plan.answers[agent]["increments"]):
                    await self._increment(plan, sdk, var, frozen=plan.behaviours[agent] == "frozen")
            finally:
                await sdk.close()

        await asyncio.gather(*(writer(a) for a in writers))

    async def _increment(self, plan: Plan, sdk: Variables, var: str, *, frozen: bool) -> None:
        for _attempt in range(30):
            try:
                if frozen:
                    # Takes the lock without renewing it, hangs past its ttl, then writes with the
                    # stale token: refused if another writer took the lock meanwhile.
                    async with sdk.lock(var, ttl=1.5, wait=self.slack, renew=False):
                        current = await sdk.read(var)
                        await asyncio.sleep(3.0)
                        plan.succeeded.append(
                            await sdk.write(var, current.value + 1, based_on=current.version)
                        )
                    return
                async with sdk.lock(var, ttl=10, wait=self.slack):
                    current = await sdk.read(var)
                    plan.succeeded.append(await sdk.write(var, current.value + 1, based_on=current.version))
                return
            except ApiError as exc:
                if "did not report" in str(exc):
                    plan.unknown += 1  # accepted by the API; applied or not, the writer cannot tell
                    return
                if "stayed busy" in str(exc):
                    # The operator was too slow (killed again and again): the writer gives up,
                    # nothing was written. That a pending write is processed in the end is checked
                    # once the faults stop (check_variable: settled).
                    plan.gave_up += 1
                    return
                raise
            except (LockError, ConflictError, MabeamError) as exc:
                plan.refused.append(type(exc).__name__)
                if frozen:
                    return  # fenced off: the frozen writer gives up
                await asyncio.sleep(0.2)
        plan.errors.append(f"{var}: an increment never got through")


def _deadline(body: dict[str, Any]) -> dt.datetime | None:
    raw = (body.get("status") or {}).get("deadline")
    if not raw:
        return None
    return dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))


async def drive(target: Any, plans: list[Plan], concurrency: int, slack: float = 90.0) -> None:
    """Drive every plan, ``concurrency`` at a time."""
    limit = asyncio.Semaphore(concurrency)
    agents = Agents(target)
    d = Driver(target, agents, slack)

    async def one(plan: Plan) -> None:
        async with limit:
            await d.drive(plan)

    try:
        await asyncio.gather(*(one(p) for p in plans))
    finally:
        await agents.close()
