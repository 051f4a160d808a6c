"""What must hold after the nemesis, whatever was injected.

For every session:

- **one outcome**: its stored versions go through exactly one terminal status (phase and
  result), and never leave it;
- **the clean outcome**: that outcome is the one the pure core computes from the same accepted
  answers without faults (:func:`reference`: the engine's ``start`` and ``step``, all accepted
  answers at once, then the deadlines in turn, as an operator that never failed would call it);
- **no accepted answer lost**: every answer whose verdict (for its current version) is
  accepted is among the answers the session counted; no answer written after the session's
  deadline or end is counted;
- **outcome applied once**: a decided session's Variable took the outcome once (one version,
  the session recorded once in ``appliedSessions``, ``outcomeApplied`` set); an auction's item
  is owned by its winner only, set once (no double allocation), an unsold item by nobody.

For every Variable: no write stays pending once the faults stop, ``status.version`` never skips
a number across its stored versions, and its ``status.history`` is consecutive and ends at the
current version and value. A counter
written under its lock ends at exactly the number of increments its writers saw succeed.

Money: :func:`check_money_conserved`.
"""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from mabeam.controller import auctions as auction_controller
from mabeam.controller import coordination as coordination_controller
from mabeam.controller import markets as market_controller
from mabeam.controller._session import SessionKind
from mabeam.core.economics.sealing import SealingKey
from mabeam.core.protocols import Participant
from mabeam.core.variables_wire import settled
from mabeam.kube.resources import AUCTION, COORDINATION, MARKET, Res
from mabeam.models.auction import SEALED_MECHANISMS
from mabeam.models.coordination import answer_verdict

from ._sessions import TERMINAL, Plan

__all__ = ["check_locked_writes", "check_money_conserved", "check_session", "check_variable", "reference"]

SESSION_KINDS: dict[Res, SessionKind] = {
    COORDINATION: coordination_controller.KIND,
    AUCTION: auction_controller.KIND,
    MARKET: market_controller.KIND,
}
#: Result fields that say when or in what words, not what: left out of the comparison.
_VOLATILE = {"decidedAt", "message", "work", "gap"}


def _plain(value: Any) -> Any:
    """Numbers as exact decimals (1 and 1.0 are the same amount), recursively."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(Decimal(str(value)).normalize())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def outcome(status: dict[str, Any]) -> tuple[str, str]:
    result = {k: v for k, v in (status.get("result") or {}).items() if k not in _VOLATILE}
    return str(status.get("phase")), repr(_plain(result))


def _time(raw: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))


def _received(res: Res, status: dict[str, Any]) -> dict[str, dt.datetime]:
    """When the operator received each counted answer (what the engine was given)."""
    records = {COORDINATION: "answers", AUCTION: "bids", MARKET: "orders"}[res]
    return {r["agent"]: _time(r["receivedAt"]) for r in status.get(records) or [] if r.get("receivedAt")}


def _current_accepted(obj: dict[str, Any], body: dict[str, Any]) -> bool:
    st = answer_verdict(obj, body) or {}
    return bool(st.get("accepted"))


def reference(
    res: Res,
    body: dict[str, Any],
    answer_objs: list[dict[str, Any]],
    agents: dict[str, dict[str, Any]],
    key: SealingKey | None,
) -> dict[str, Any]:
    """The status the pure core reaches from the accepted answers, without any fault."""
    kind = SESSION_KINDS[res]
    name = body["metadata"]["name"]
    spec = kind.spec_model.model_validate(body.get("spec") or {})
    final = body.get("status") or {}
    started = _time(final["startedAt"])
    participants = [
        Participant(
            name=a,
            weight=float(agents[a].get("weight", 1.0)),
            priority=int(agents[a].get("priority", 0)),
            capabilities=frozenset(agents[a].get("capabilities") or ()),
        )
        for a in spec.participants.agents or []
        if a in agents
    ]
    sealed = res is MARKET or (res is AUCTION and spec.mechanism in SEALED_MECHANISMS)
    if sealed and key is None:
        raise AssertionError("a sealed session needs the operator's sealing key for its reference")
    start_options: dict[str, Any] = {"sealing": key.info} if sealed and key else {}
    step_options: dict[str, Any] = (
        {"sealing_key": key, "session_uid": body["metadata"]["uid"]} if sealed and key else {}
    )
    result = kind.start(name, spec, participants, started, **start_options)
    received = _received(res, final)
    answers: dict[str, Any] = {}
    for obj in answer_objs:
        if not _current_accepted(obj, body):
            continue
        agent = (obj.get("spec") or {}).get("agent", "")
        parsed = kind.parse_answer(name, obj, received.get(agent, started))
        if parsed.agent is not None:
            answers[parsed.agent] = parsed.answer
    # A sealed answer sent again after the session closed (the same bid sealed anew: a new
    # version) is refused as Closed; the version that was counted is the one the status keeps.
    for record in final.get({AUCTION: "bids", MARKET: "orders"}.get(res, ""), []) if sealed else []:
        agent = record["agent"]
        if agent not in answers and record.get("sealed"):
            field = {AUCTION: "auction", MARKET: "market"}[res]
            counted = {"spec": {field: name, "agent": agent, "sealed": record["sealed"]}}
            parsed = kind.parse_answer(name, counted, received.get(agent, started))
            if parsed.agent is not None:
                answers[parsed.agent] = parsed.answer
    status = result.status
    now = max([started, *(getattr(a, "at", started) for a in answers.values())])
    for _ in range(32):
        if status.phase in kind.terminal:
            break
        deadline = status.deadline
        readiness = status.phase in kind.readiness_phases or (deadline is not None and now >= deadline)
        # The agents are suspended (never Ready): what the operator reads when it asks.
        alive = {p.name: False for p in status.participants} if readiness else {}
        status = kind.step(name, spec, status, answers, alive, now, **step_options).status
        if status.phase in kind.terminal:
            break
        following = kind.next_deadline(spec, status)
        if following is None:
            break
        now = max(now, following)
    wire: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return wire


def check_session(
    plan: Plan,
    body: dict[str, Any] | None,
    versions: list[dict[str, Any]],
    answer_objs: list[dict[str, Any]],
    variables: dict[str, dict[str, Any]],
    variable_versions: dict[str, list[dict[str, Any]]],
    agents: dict[str, dict[str, Any]],
    key: SealingKey | None,
) -> list[str]:
    """The violations of one session (empty: all invariants hold)."""
    res = plan.res
    assert res is not None
    out = [f"{plan.name}: {e}" for e in plan.errors]
    if body is None:
        return [*out, f"{plan.name}: the session is gone"]
    status = body.get("status") or {}
    terminal = TERMINAL[res]
    if status.get("phase") not in terminal:
        return [*out, f"{plan.name}: not ended ({status.get('phase')})"]
    # One outcome, never left.
    outcomes: list[tuple[str, str]] = []
    ended = False
    for v in versions:
        st = v.get("status") or {}
        if st.get("phase") in terminal:
            ended = True
            if not outcomes or outcomes[-1] != outcome(st):
                outcomes.append(outcome(st))
        elif ended:
            out.append(f"{plan.name}: left its terminal phase for {st.get('phase')}")
            break
    if len(set(outcomes)) != 1:
        out.append(f"{plan.name}: {len(set(outcomes))} outcomes: {outcomes}")
    # The clean outcome.
    expected = reference(res, body, answer_objs, agents, key)
    if outcome(expected) != outcome(status):
        out.append(f"{plan.name} ({plan.label}): outcome {outcome(status)} != reference {outcome(expected)}")
    # No accepted answer lost; nothing late counted.
    counted = _counted(plan, status)
    by_agent = {(o.get("spec") or {}).get("agent"): o for o in answer_objs}
    for agent, obj in by_agent.items():
        st = answer_verdict(obj, body)
        if st is None:
            out.append(f"{plan.name}: the answer of {agent} has no verdict for its current version")
            st = {}
        if _current_accepted(obj, body) and agent not in counted:
            out.append(f"{plan.name}: the accepted answer of {agent} is not counted")
        if plan.behaviours.get(agent) in ("late", "frozen") and st.get("accepted"):
            out.append(f"{plan.name}: a {plan.behaviours[agent]} answer of {agent} was accepted")
    # What was counted is what the agent sent (a sealed answer, once opened).
    for record in status.get("bids") or status.get("orders") or []:
        sent = plan.answers.get(record["agent"], {})
        for field_, value in sent.items():
            if field_ in record and _plain(record[field_]) != _plain(value):
                out.append(
                    f"{plan.name}: {record['agent']} sent {field_}={value!r}, counted {record[field_]!r}"
                )
    # The outcome applied once.
    out += _applied(plan, status, variables, variable_versions)
    return out


def _counted(plan: Plan, status: dict[str, Any]) -> set[str]:
    """Who the session counted, as its status records it."""
    if plan.kind == "coordination":
        return {r["agent"] for r in status.get("answers") or []}
    if plan.kind == "market":
        return {r["agent"] for r in status.get("orders") or []}
    if plan.sealed:
        return {r["agent"] for r in status.get("bids") or []}
    # Clock auctions count a declining answer too; the rounds say who accepted: an accepted
    # ``accept: true`` must be there, an accepted ``false`` counts as heard.
    accepted = {a for r in status.get("rounds") or [] for a in r.get("accepted") or []}
    return accepted | {a for a, ans in plan.answers.items() if not ans.get("accept")}


def _applied(
    plan: Plan,
    status: dict[str, Any],
    variables: dict[str, dict[str, Any]],
    versions: dict[str, list[dict[str, Any]]],
) -> list[str]:
    out: list[str] = []
    phase = status.get("phase")
    result = status.get("result") or {}
    session_entries = {
        v: [x for x in ((variables.get(v) or {}).get("status") or {}).get("appliedSessions") or []
            if x.split(":")[0] == plan.name]
        for v in plan.variables
    }  # fmt: skip
    if plan.kind in ("coordination", "market") and plan.variables:
        (var,) = plan.variables
        vst = (variables.get(var) or {}).get("status") or {}
        values = _values_taken(versions.get(var, []))
        want = result.get("value") if plan.kind == "coordination" else result.get("price")
        applies = (phase == "Decided" and want is not None) or (phase == "Cleared" and want is not None)
        if applies:
            if not status.get("outcomeApplied"):
                out.append(f"{plan.name}: outcomeApplied is not set")
            if not _same(vst.get("value"), want):
                out.append(f"{plan.name}: {var} is {vst.get('value')!r}, the outcome {want!r}")
            if len(session_entries[var]) != 1:
                out.append(f"{plan.name}: {var} records the session {len(session_entries[var])} times")
            if len(values) > 2:
                out.append(f"{plan.name}: {var} took {values} (the outcome more than once)")
        elif len(values) > 1 or session_entries[var]:
            out.append(f"{plan.name}: {var} changed ({values}) without an outcome")
    if plan.kind == "auction":
        winners = {item: a["agent"] for a in result.get("allocations") or [] for item in a.get("items") or []}
        if phase == "Awarded" and winners and not status.get("outcomeApplied"):
            out.append(f"{plan.name}: outcomeApplied is not set")
        for item in plan.variables:
            owners = [
                ((v.get("status") or {}).get("owner") or {}).get("name") for v in versions.get(item, [])
            ]
            changes = [o for i, o in enumerate(owners) if i == 0 or owners[i - 1] != o]
            set_to = [o for o in changes if o is not None]
            want = winners.get(item)
            if want is None and set_to:
                out.append(f"{plan.name}: unsold {item} got owners {set_to}")
            if want is not None:
                final = (((variables.get(item) or {}).get("status") or {}).get("owner") or {}).get("name")
                if final != want:
                    out.append(f"{plan.name}: {item} is owned by {final}, won by {want}")
                if set_to != [want]:
                    out.append(f"{plan.name}: {item} owners over time {set_to} (double allocation)")
                if len(session_entries[item]) != 1:
                    out.append(f"{plan.name}: {item} records the auction {len(session_entries[item])} times")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float | str) and isinstance(b, int | float | str) and not isinstance(a, str):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except ArithmeticError:
            return False
    return bool(a == b)


def _values_taken(versions: list[dict[str, Any]]) -> list[Any]:
    seen: list[Any] = []
    for v in versions:
        st = v.get("status") or {}
        if "version" in st and (not seen or seen[-1] != st.get("value")):
            seen.append(st.get("value"))
    return seen


def check_variable(name: str, obj: dict[str, Any] | None, versions: list[dict[str, Any]]) -> list[str]:
    """Versions without gaps; a history that is consecutive and ends at the current value."""
    if obj is None:
        return [f"Variable {name} is gone"]
    out = []
    if not settled(obj):
        out.append(f"Variable {name}: a write or a spec change is still pending after the faults stopped")
    numbers = [(v.get("status") or {}).get("version") for v in versions]
    numbers = [n for n in numbers if isinstance(n, int)]
    for before, after in itertools.pairwise(numbers):
        if after < before or after > before + 1:
            out.append(f"Variable {name}: version {before} then {after}")
            break
    st = obj.get("status") or {}
    history = st.get("history") or []
    hv = [h.get("version") for h in history]
    if hv and hv != list(range(hv[0], hv[0] + len(hv))):
        out.append(f"Variable {name}: history versions {hv} are not consecutive")
    if hv and (hv[-1] != st.get("version") or not _same(history[-1].get("value"), st.get("value"))):
        out.append(f"Variable {name}: history ends at {hv[-1]}, the status is at {st.get('version')}")
    return out


def check_locked_writes(plan: Plan, obj: dict[str, Any] | None) -> list[str]:
    """A counter incremented under its lock: every increment seen to succeed is there, once."""
    out = [f"{plan.name}: {e}" for e in plan.errors]
    st = (obj or {}).get("status") or {}
    value = st.get("value")
    done = len(plan.succeeded)
    if len(set(plan.succeeded)) != done:
        out.append(f"{plan.name}: two writes got the same version: {sorted(plan.succeeded)}")
    if not isinstance(value, int | float) or not done <= value <= done + plan.unknown:
        out.append(f"{plan.name}: the counter is {value!r} after {done} increments ({plan.unknown} unknown)")
    elif st.get("version") != 1 + value:
        out.append(
            f"{plan.name}: {value} increments but version {st.get('version')} (a write applied twice?)"
        )
    return out


def check_money_conserved(
    plans: list[Plan], bodies: dict[str, dict[str, Any] | None], accounts: list[dict[str, Any]]
) -> list[str]:
    """Money is neither created nor lost by a session's outcome.

    In every outcome: an auction's revenue is the sum of what its winners pay, nobody pays more
    than it bid or less than nothing; a market's buyers buy what its sellers sell and pay at
    least what the sellers receive (a McAfee trade reduction keeps the difference).

    In the Accounts (when the nemesis runs with money, ``--money``): the balances of all
    Accounts (the house's included) add up to what was granted, once every session has ended
    nothing is held in escrow, no balance is negative, free is balance minus escrow, and no
    Account lists a session as settled twice; each good's holdings add up to what was granted,
    with nothing held in escrow and no holding negative.
    """
    out = []
    granted = sum((_money(a, "granted") for a in accounts), Decimal(0))
    balances = sum((_money(a, "balance") for a in accounts), Decimal(0))
    if accounts and granted != balances:
        out.append(f"money: the balances add up to {balances}, {granted} was granted")
    for account in accounts:
        name = account["metadata"]["name"]
        balance, escrow, free = (_money(account, f) for f in ("balance", "escrow", "free"))
        if escrow != 0 or balance < 0 or free != balance - escrow:
            out.append(f"money: Account {name} balance {balance} escrow {escrow} free {free}")
        settled = ((account.get("status") or {}).get("settled")) or []
        if len(settled) != len(set(settled)):
            out.append(f"money: Account {name} settled a session twice: {settled}")
        for stock in (account.get("status") or {}).get("goods") or []:
            if stock.get("holds") or Decimal(str(stock.get("held", 0))) < 0:
                out.append(f"goods: Account {name} holds {stock}")
    # Goods, like money, change only by grants: what all Accounts hold of a good is what was granted.
    held: dict[str, Decimal] = {}
    given: dict[str, Decimal] = {}
    for account in accounts:
        for stock in (account.get("status") or {}).get("goods") or []:
            good = str(stock.get("good"))
            held[good] = held.get(good, Decimal(0)) + Decimal(str(stock.get("held", 0)))
            given[good] = given.get(good, Decimal(0)) + Decimal(str(stock.get("granted", 0)))
    out += [
        f"goods: {g} held {held[g]} in all, {given[g]} granted" for g in sorted(held) if held[g] != given[g]
    ]
    for plan in plans:
        status = ((bodies.get(plan.name) or {}).get("status")) or {}
        result = status.get("result") or {}
        if plan.kind == "auction" and status.get("phase") == "Awarded":
            prices = [Decimal(str(a["price"])) for a in result.get("allocations") or []]
            if Decimal(str(result.get("revenue", 0))) != sum(prices, Decimal(0)):
                out.append(
                    f"{plan.name}: revenue {result.get('revenue')} is not the sum of the prices {prices}"
                )
            for a in result.get("allocations") or []:
                price = Decimal(str(a["price"]))
                if price < 0 or (a.get("bid") is not None and price > Decimal(str(a["bid"]))):
                    out.append(f"{plan.name}: {a['agent']} pays {price} for a bid of {a.get('bid')}")
        if plan.kind == "market" and status.get("phase") == "Cleared":
            trades = result.get("trades") or []
            bought = sum(Decimal(str(t["quantity"])) for t in trades if t["side"] == "buy")
            sold = sum(Decimal(str(t["quantity"])) for t in trades if t["side"] == "sell")
            paid = sum(Decimal(str(t["total"])) for t in trades if t["side"] == "buy")
            received = sum(Decimal(str(t["total"])) for t in trades if t["side"] == "sell")
            # Quantities are floats in the model (an equilibrium rations them pro rata): equal
            # within float precision; money is exact.
            if abs(bought - sold) > Decimal("1e-9") * max(bought, 1) or paid < received:
                out.append(f"{plan.name}: bought {bought} sold {sold}, paid {paid} received {received}")
    return out


def _money(account: dict[str, Any], field_: str) -> Decimal:
    return Decimal(str(((account.get("status") or {}).get(field_)) or 0))
