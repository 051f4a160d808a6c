"""The market engine the operator calls: a call market that collects Orders, then clears once.

How the operator drives a Market (pure functions; ``now`` is an argument):

1. A new Market (``status.phase`` unset or Pending): resolve the participants and call
   :func:`start` with the operator's public key (``sealing``). It records them (sorted by name,
   each once), publishes the key in ``status.sealing``, opens the collection until
   ``now + spec.orderSeconds`` and emits ``Started``. No participant: NoTrade (``NoOrders``); no
   key: Failed (``NoSealingKey``).
2. Whenever an Order of the market changes or is deleted, the spec changes, or the timer from
   :func:`next_deadline` fires: call :func:`step` with the *complete* current set of Orders
   (agent -> :class:`OrderAnswer`, ``at`` = when that version arrived), the operator's private
   key (``sealing_key``) and the Market's uid (``session_uid``).
3. Write the returned status, each verdict to its Order's status, then carry out the effects.
   After a crash between the two, :func:`outcome_effects` re-derives the SetVariable of a
   cleared market (the Variable applies a session's write at most once).

Collection. Orders are sealed (:mod:`.sealing`, kind ``Order``): each new version is opened
with the operator's key to judge it, and ``status.orders`` records the counted ciphertext only,
never the content, until the market closes. The newest version of each participant's Order
counts; it may change until the deadline, and an Order deleted up to the deadline is withdrawn
(one deleted later stays counted: the market cannot tell when it went). Verdicts, one per Order
in the answers: ``Counted``; ``NotParticipant``; ``Late`` (received after the deadline: an
earlier counted version stays counted); ``WrongKey``, ``BadSeal``, ``Copied`` (the order does not
open as this agent's in this market, see :func:`.sealing.open_sealed`); ``WrongAnswerKind``
(double-auction: an order without side and price; equilibrium: one without a schedule); for a
schedule ``OffGrid`` (a price that is not on ``spec.priceGrid``; a price within a millionth of a
step of a grid price is taken as that grid price and recorded so), ``Unsorted`` (prices not
strictly rising) and ``NotMonotone`` (the net demand rises with the price); ``Closed`` once the
market has ended. Refusal messages name the place in the order, never its prices or
quantities. A refused Order is listed in ``status.refusals``; an Order re-sent unchanged keeps
its first receive time (and counts even after the deadline). Readiness (``alive``) plays no
part: an Order counts whether or not its agent is Ready.

Clearing. The collection closes at the deadline (``now >= deadline``), or as soon as every
participant has a counted Order; the counted orders are then binding, opened and written into
``status.orders``, and the market clears at once with them (see
:mod:`._double` and :mod:`._equilibrium` for the rules, ties and rounding) and ends:

- ``Cleared`` (reasons ``AllEfficientTrades``, ``TradeReduction``, ``Equilibrium``): the result
  holds the price (double auction: the buyers' price, ``sellerPrice`` the sellers'), the volume,
  one trade per trading agent (sorted by agent) and the surplus; effects: ``SetVariable`` of the
  price into ``spec.priceVariableRef`` (if set), then ``EmitEvent``.
- ``NoTrade``: ``NoOrders`` (no counted Order), ``NoCrossing`` (no buyer and seller agree),
  ``NoEquilibrium`` (demand exceeds supply at every grid price), ``TradeReduction`` (a double
  auction whose only efficient pair is cut). Only ``EmitEvent``.
- ``Cancelled`` (``spec.cancel`` while open) and ``Failed`` (reason ``Invalid``: a spec that
  pydantic accepts but that cannot work, e.g. a price grid too fine for the magnitude of its
  prices; the message starts with the field path). Only ``EmitEvent`` (a Warning for Failed).

Every ending records ``status.result`` and a ``Complete`` condition (``Invalid`` for Failed). An
ended market is returned unchanged by further steps, without effects. Exact arithmetic
(fractions) inside, exact decimals written (quantities stay floats).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pydantic

from ...errors import InvalidSpecError
from ...models._amount import dump_amount, to_decimal
from ...models._base import ending_conditions
from ...models._sealed import SealingInfo
from ...models.coordination import ParticipantRecord, Refusal
from ...models.market import (
    MAX_GRID_POINTS,
    MarketResult,
    MarketSpec,
    MarketStatus,
    OrderContent,
    OrderRecord,
    SchedulePoint,
    Trade,
)
from ..protocols import EmitEvent, Participant, SetVariable, Verdict
from ._common import EconomicEffect, MarketStep, OrderAnswer
from ._double import Fill, LimitOrder, clear_double_auction
from ._equilibrium import NetDemand, clear_equilibrium
from .sealing import Opened, SealingKey, key_problem, open_sealed

__all__ = ["TERMINAL_PHASES", "next_deadline", "outcome_effects", "start", "step"]

TERMINAL_PHASES = frozenset({"Cleared", "NoTrade", "Failed", "Cancelled"})
EndPhase = Literal["Cleared", "NoTrade", "Failed", "Cancelled"]
SNAP = 1e-6  # a schedule price within SNAP * step of a grid price is that grid price
_SNAP = Decimal(repr(SNAP))


def _num(value: Decimal | float) -> str:
    return str(value) if isinstance(value, Decimal) else f"{value:.12g}"


def _grid(spec: MarketSpec) -> list[Decimal]:
    """The checked price grid of an equilibrium market (empty for a double auction)."""
    if spec.mechanism == "double-auction":
        return []
    if spec.mechanism != "equilibrium":
        raise InvalidSpecError("use equilibrium or double-auction", path="spec.mechanism")
    grid = spec.price_grid
    if grid is None:
        raise InvalidSpecError("an equilibrium market needs a price grid", path="spec.priceGrid")
    prices = grid.prices()
    if len(prices) > MAX_GRID_POINTS + 1:
        raise InvalidSpecError(
            f"the grid has {len(prices)} prices, more than {MAX_GRID_POINTS + 1}; use a larger step",
            path="spec.priceGrid.step",
        )
    return prices


# --- orders ------------------------------------------------------------------------------------


class _Refused(Exception):
    """An order that is not counted: the verdict's reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _on_grid(price: Decimal, grid: list[Decimal], step: Decimal) -> Decimal | None:
    """The grid price ``price`` stands for, or None."""
    guess = round((price - grid[0]) / step)
    for index in (guess - 1, guess, guess + 1):
        if 0 <= index < len(grid) and abs(price - grid[index]) <= _SNAP * step:
            return grid[index]
    return None


def _schedule(answer: OrderAnswer, spec: MarketSpec, grid: list[Decimal]) -> list[SchedulePoint]:
    if answer.schedule is None:
        raise _Refused("WrongAnswerKind", "this is an equilibrium market: seal a schedule")
    step = spec.price_grid.step if spec.price_grid is not None else Decimal(1)
    points: list[SchedulePoint] = []
    for j, point in enumerate(answer.schedule):
        price = _on_grid(point.price, grid, step)
        if price is None:
            raise _Refused(
                "OffGrid",
                f"schedule[{j}].price is not on the price grid ({_num(grid[0])} to {_num(grid[-1])} "
                f"in steps of {_num(step)})",
            )
        if points and price <= points[-1].price:
            raise _Refused(
                "Unsorted",
                f"schedule[{j}].price is not above schedule[{j - 1}].price: list the points by "
                "rising price, each price once",
            )
        if points and point.quantity > points[-1].quantity:
            raise _Refused(
                "NotMonotone",
                f"schedule[{j}].quantity is above schedule[{j - 1}].quantity: a demand schedule "
                "must slope down (never rise with the price)",
            )
        points.append(SchedulePoint(price=price, quantity=point.quantity))
    return points


def _fields(answer: OrderAnswer, spec: MarketSpec, grid: list[Decimal]) -> dict[str, object]:
    """The part of ``answer`` the mechanism counts, checked (raises _Refused)."""
    if spec.mechanism == "double-auction":
        if answer.side not in ("buy", "sell") or answer.price is None:
            raise _Refused(
                "WrongAnswerKind", "this is a double auction: seal a side (buy or sell) and a price"
            )
        return {"side": answer.side, "price": answer.price, "quantity": answer.quantity}
    return {"schedule": _schedule(answer, spec, grid)}


def _same(record: OrderRecord, answer: OrderAnswer) -> bool:
    """Whether ``answer`` is the counted ``record`` as sent (the same ciphertext)."""
    return answer.sealed is not None and record.sealed == answer.sealed


@dataclass(frozen=True)
class _Opener:
    """What opens this market's sealed orders: the operator's key, the Market's uid, the traders."""

    key: SealingKey
    uid: str
    participants: tuple[str, ...]

    def open(self, agent: str, answer: OrderAnswer) -> OrderAnswer:
        """The order's content as an answer received at the same time (raises _Refused)."""
        if answer.sealed is None:
            raise _Refused(
                "WrongAnswerKind", "orders are sealed: set spec.sealed (the SDK and `mabeam order` do it)"
            )
        opened = open_sealed(self.key, answer.sealed, "Order", self.uid, agent, others=self.participants)
        if not isinstance(opened, Opened):
            raise _Refused(opened.reason, opened.message)
        try:
            content = OrderContent.model_validate(opened.content)
        except pydantic.ValidationError as exc:
            where = ", ".join(".".join(str(p) for p in e["loc"]) or "(the order)" for e in exc.errors())
            raise _Refused(
                "WrongAnswerKind",
                f"{agent}'s sealed order opens to something that is not an order (problems at: {where})",
            ) from None
        return OrderAnswer.opened(content, answer.at)


def _collect(
    spec: MarketSpec,
    grid: list[Decimal],
    status: MarketStatus,
    answers: Mapping[str, OrderAnswer],
    now: _dt.datetime,
    opener: _Opener,
) -> tuple[MarketStatus, list[Verdict]]:
    participants = {p.name for p in status.participants}
    deadline = status.deadline
    open_now = deadline is not None and now <= deadline
    records = {r.agent: r for r in status.orders if r.agent in answers or not open_now}
    refusals = {r.agent: r for r in status.refusals if r.agent in answers}
    verdicts: list[Verdict] = []
    for agent in sorted(answers):
        answer = answers[agent]
        old = records.get(agent)
        refusal: _Refused | None = None
        if old is not None and _same(old, answer):
            refusals.pop(agent, None)
            verdicts.append(Verdict(agent, True, "Counted", "the order is counted"))
            continue
        if agent not in participants:
            refusal = _Refused("NotParticipant", f"{agent} is not a participant of this market")
        elif deadline is not None and answer.at > deadline:
            refusal = _Refused("Late", f"received after the deadline {deadline.isoformat()}")
        else:
            try:  # checked now; the content is published only once the market has closed
                _fields(opener.open(agent, answer), spec, grid)
            except _Refused as refused:
                refusal = refused
        if refusal is not None:
            message = refusal.message + ("; the earlier order stays counted" if old is not None else "")
            refusals[agent] = Refusal(agent=agent, reason=refusal.reason, message=message)
            verdicts.append(Verdict(agent, False, refusal.reason, message))
            continue
        records[agent] = OrderRecord(agent=agent, sealed=answer.sealed, received_at=answer.at)
        refusals.pop(agent, None)
        verdicts.append(Verdict(agent, True, "Counted", "the order is counted"))
    new = status.model_copy(
        update={
            "orders": [records[a] for a in sorted(records)],
            "refusals": [refusals[a] for a in sorted(refusals)],
        }
    )
    return new, verdicts


def _closed_verdicts(
    spec: MarketSpec, status: MarketStatus, answers: Mapping[str, OrderAnswer]
) -> tuple[Verdict, ...]:
    """Verdicts once the market has ended: what was counted stays counted, the rest is Closed."""
    counted = {r.agent: r for r in status.orders}
    out = []
    for agent in sorted(answers):
        record = counted.get(agent)
        if record is not None and _same(record, answers[agent]):
            out.append(Verdict(agent, True, "Counted", "the order was counted"))
        else:
            out.append(Verdict(agent, False, "Closed", f"the market has ended ({status.phase})"))
    return tuple(out)


# --- endings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    phase: EndPhase
    reason: str
    message: str
    price: Fraction | None = None
    seller_price: Fraction | None = None
    volume: Fraction = Fraction(0)
    fills: tuple[Fill, ...] = ()
    surplus: Fraction = Fraction(0)


def _finish(
    session: str,
    spec: MarketSpec,
    status: MarketStatus,
    outcome: _Outcome,
    now: _dt.datetime,
    verdicts: Sequence[Verdict] = (),
) -> MarketStep:
    conditions = ending_conditions(
        status.conditions,
        failed=outcome.phase == "Failed",
        reason=outcome.reason,
        message=outcome.message,
        now=now,
    )
    result = MarketResult(
        price=to_decimal(outcome.price) if outcome.price is not None else None,
        seller_price=to_decimal(outcome.seller_price) if outcome.seller_price is not None else None,
        volume=float(outcome.volume),
        trades=[
            Trade(
                agent=f.agent,
                side=f.side,
                quantity=float(f.quantity),
                price=to_decimal(f.price),
                total=to_decimal(f.total),
            )
            for f in outcome.fills
        ],
        surplus=to_decimal(outcome.surplus),
        reason=outcome.reason,
        message=outcome.message,
        decided_at=now,
    )
    new = status.model_copy(
        update={
            "phase": outcome.phase,
            "result": result,
            "conditions": conditions,
        }
    )
    effects: list[EconomicEffect] = list(outcome_effects(session, spec, new))
    effects.append(
        EmitEvent(outcome.reason, outcome.message, "Warning" if outcome.phase == "Failed" else "Normal")
    )
    return MarketStep(status=new, effects=tuple(effects), verdicts=tuple(verdicts))


def _fail(
    session: str, spec: MarketSpec, status: MarketStatus, error: InvalidSpecError, now: _dt.datetime
) -> MarketStep:
    return _finish(session, spec, status, _Outcome("Failed", "Invalid", str(error)), now)


def _clear(spec: MarketSpec, grid: list[Decimal], orders: Sequence[OrderRecord]) -> _Outcome:
    """Clear the counted orders with the spec's mechanism (orders that do not fit it are left out)."""
    if spec.mechanism == "double-auction":
        limits = [
            LimitOrder(r.agent, r.side, Fraction(r.price), r.quantity, r.received_at)
            for r in orders
            if r.side is not None and r.price is not None and r.quantity is not None
        ]
        if not limits:
            return _Outcome("NoTrade", "NoOrders", "no participant placed an order that counts")
        auction = clear_double_auction(limits)
        return _Outcome(
            "Cleared" if auction.traded else "NoTrade",
            auction.reason,
            auction.message,
            price=auction.buyer_price,
            seller_price=auction.seller_price,
            volume=Fraction(auction.volume),
            fills=auction.fills,
            surplus=auction.surplus,
        )
    schedules = [
        NetDemand(r.agent, tuple((Fraction(p.price), Fraction(p.quantity)) for p in r.schedule))
        for r in orders
        if r.schedule
    ]
    if not schedules:
        return _Outcome("NoTrade", "NoOrders", "no participant placed an order that counts")
    try:
        market = clear_equilibrium(schedules, [Fraction(p) for p in grid])
    except ValueError as error:  # only a status edited by hand gets here: orders are checked
        return _Outcome("Failed", "Invalid", f"status.orders: {error}")
    return _Outcome(
        "Cleared" if market.traded else "NoTrade",
        market.reason,
        market.message,
        price=market.price,
        volume=market.volume,
        fills=market.fills,
    )


# --- the engine --------------------------------------------------------------------------------


def start(
    session: str,
    spec: MarketSpec,
    participants: Sequence[Participant],
    now: _dt.datetime,
    *,
    sealing: SealingInfo | None = None,
) -> MarketStep:
    """Open the market: record the participants (sorted, each once), the key orders are sealed to
    (``sealing``, published in ``status.sealing``) and the deadline.

    A spec that cannot work ends it as Failed (reason Invalid); no participant as NoTrade
    (NoOrders); no key as Failed (NoSealingKey).
    """
    pending = MarketStatus(phase="Pending")
    try:
        _grid(spec)
    except InvalidSpecError as error:
        return _fail(session, spec, pending, error, now)
    unique: dict[str, Participant] = {}
    for p in participants:
        unique.setdefault(p.name, p)
    records = [
        ParticipantRecord(name=p.name, weight=p.weight, priority=p.priority)
        for _, p in sorted(unique.items())
    ]
    status = MarketStatus(phase="Collecting", participants=records, started_at=now, sealing=sealing)
    if not records:
        return _finish(
            session, spec, status, _Outcome("NoTrade", "NoOrders", "no participant could take part"), now
        )
    if sealing is None:
        message = "the operator has no key to seal orders to; see its log (Secret mabeam-sealing-key)"
        return _finish(session, spec, status, _Outcome("Failed", "NoSealingKey", message), now)
    status.deadline = now + _dt.timedelta(seconds=spec.order_seconds)
    message = (
        f"{spec.mechanism} market for {spec.good} takes sealed orders (to key {sealing.key_id}) from "
        f"{len(records)} participants until {status.deadline.isoformat()}"
    )
    return MarketStep(status=status, effects=(EmitEvent("Started", message),))


def step(
    session: str,
    spec: MarketSpec,
    status: MarketStatus,
    answers: Mapping[str, OrderAnswer],
    alive: Mapping[str, bool],
    now: _dt.datetime,
    *,
    sealing_key: SealingKey | None = None,
    session_uid: str = "",
) -> MarketStep:
    """Take the current Orders into account; clear once the collection closes.

    An ended market is returned unchanged, without effects (Counted for what was counted, else
    Closed); a market not yet started is returned unchanged. ``alive`` is part of the engine
    contract but a market does not depend on readiness. ``sealing_key`` (the operator's private
    key) and ``session_uid`` (the Market's uid) open the sealed orders; without a key that fits
    ``status.sealing`` the market fails (NoSealingKey, SealingKeyChanged).
    """
    del alive  # a market does not depend on readiness (see the module docstring)
    if status.phase in TERMINAL_PHASES:
        return MarketStep(status=status, verdicts=_closed_verdicts(spec, status, answers))
    if status.phase in (None, "Pending"):
        return MarketStep(status=status)
    if spec.cancel:
        return _finish(
            session,
            spec,
            status,
            _Outcome("Cancelled", "Cancelled", "spec.cancel is true"),
            now,
            _closed_verdicts(spec, status, answers),
        )
    try:
        grid = _grid(spec)
    except InvalidSpecError as error:
        return _fail(session, spec, status, error, now)
    problem = key_problem(status.sealing, sealing_key)
    if problem is not None or sealing_key is None:
        reason, message = problem or ("NoSealingKey", "")
        return _finish(
            session,
            spec,
            status,
            _Outcome("Failed", reason, message),
            now,
            _closed_verdicts(spec, status, answers),
        )
    opener = _Opener(sealing_key, session_uid, tuple(p.name for p in status.participants))
    status, verdicts = _collect(spec, grid, status, answers, now, opener)
    counted = {r.agent for r in status.orders}
    everyone = all(p.name in counted for p in status.participants)
    if not everyone and status.deadline is not None and now < status.deadline:
        return MarketStep(status=status, verdicts=tuple(verdicts))
    # Closed: the counted orders are binding; open them, publish them and clear.
    opened: list[OrderRecord] = []
    for record in status.orders:
        try:
            answer = opener.open(record.agent, OrderAnswer(at=record.received_at, sealed=record.sealed))
            fields = _fields(answer, spec, grid)
        except _Refused:
            continue  # cannot happen with the key that counted it (key_problem checked above)
        opened.append(record.model_copy(update=fields))
    status = status.model_copy(update={"orders": opened})
    return _finish(session, spec, status, _clear(spec, grid, status.orders), now, verdicts)


def next_deadline(spec: MarketSpec, status: MarketStatus) -> _dt.datetime | None:
    """When :func:`step` must run again if nothing else happens: the deadline while Collecting."""
    return status.deadline if status.phase == "Collecting" else None


def outcome_effects(session: str, spec: MarketSpec, status: MarketStatus) -> tuple[EconomicEffect, ...]:
    """The SetVariable of a cleared market's price into ``spec.priceVariableRef`` (else nothing)."""
    if status.phase != "Cleared" or status.result is None or status.result.price is None:
        return ()
    if spec.price_variable_ref is None:
        return ()
    # The wire form of the price (mabeam.models._amount): a JSON number unless it needs more than
    # 15 significant digits, then a decimal string.
    price = dump_amount(status.result.price)
    return (SetVariable(name=spec.price_variable_ref.name, value=price, session=session),)


def open_order(
    spec: MarketSpec,
    status: MarketStatus,
    agent: str,
    answer: OrderAnswer,
    sealing_key: SealingKey | None,
    session_uid: str,
) -> OrderAnswer | None:
    """What ``agent``'s sealed order contains, or None if it cannot be opened (the engine
    refuses it then); for the escrow check before the engine counts it."""
    if sealing_key is None or key_problem(status.sealing, sealing_key) is not None:
        return None
    opener = _Opener(sealing_key, session_uid, tuple(p.name for p in status.participants))
    try:
        return opener.open(agent, answer)
    except _Refused:
        return None


def recompute(session: str, spec: MarketSpec, status: MarketStatus) -> MarketResult | None:
    """The result the engine gives for the orders recorded in an ended market's status (their
    content is published once the market closed), for an audit; None without orders."""
    if status.result is None or not status.orders:
        return None
    try:
        grid = _grid(spec)
    except InvalidSpecError:
        return None
    outcome = _clear(spec, grid, status.orders)
    return _finish(session, spec, status, outcome, status.result.decided_at).status.result
