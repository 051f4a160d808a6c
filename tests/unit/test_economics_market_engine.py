"""The market engine: collection (verdicts, deadlines, withdrawal), closing, the outcome it writes
and the effects it asks for, cancellation, invalid specs and idempotence.

The tests write orders in clear (``limit``, ``schedule``); ``start`` and ``step`` here seal them
as each agent's SDK would (the same content of the same agent: the same ciphertext, as an Order
re-sent unchanged) and give the engine the operator's key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction as F

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mabeam.core.economics.market as engine
from mabeam.core.economics import MarketStep, OrderAnswer
from mabeam.core.economics._double import LimitOrder, clear_double_auction
from mabeam.core.economics._equilibrium import NetDemand, clear_equilibrium
from mabeam.core.economics.market import TERMINAL_PHASES, next_deadline, outcome_effects
from mabeam.core.protocols import EmitEvent, Participant, SetVariable
from mabeam.models._amount import to_decimal
from mabeam.models._sealed import SealedEnvelope
from mabeam.models.market import MarketSpec, MarketStatus, OrderContent, SchedulePoint
from tests.strategies_auctions import KEY, UID, seal_as
from tests.strategies_markets import DEADLINE, T0, at, markets

_SEALED: dict[tuple[str, str], SealedEnvelope] = {}


def sealed(agent: str, answer: OrderAnswer) -> OrderAnswer:
    """``answer`` as ``agent``'s SDK sends it: sealed (the same content, the same ciphertext)."""
    if answer.sealed is not None:
        return answer
    content = OrderContent.model_construct(
        side=answer.side,
        price=answer.price,
        quantity=answer.quantity,
        schedule=list(answer.schedule) if answer.schedule is not None else None,
    )
    key = (agent, content.model_dump_json())
    if key not in _SEALED:
        _SEALED[key] = seal_as(agent, content, kind="Order")  # type: ignore[arg-type]
    return OrderAnswer(at=answer.at, sealed=_SEALED[key])


def start(session: str, spec: MarketSpec, participants: list[Participant], now: dt.datetime) -> MarketStep:
    return engine.start(session, spec, participants, now, sealing=KEY.info)


def step(
    session: str,
    spec: MarketSpec,
    status: MarketStatus,
    answers: Mapping[str, OrderAnswer],
    alive: Mapping[str, bool],
    now: dt.datetime,
) -> MarketStep:
    sealed_answers = {agent: sealed(agent, answer) for agent, answer in answers.items()}
    return engine.step(session, spec, status, sealed_answers, alive, now, sealing_key=KEY, session_uid=UID)


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ABCD = [Participant(n) for n in ("a", "b", "c", "d")]


def make_spec(mechanism: str = "double-auction", **fields: object) -> MarketSpec:
    base: dict[str, object] = {
        "mechanism": mechanism,
        "participants": {"agents": ["a", "b", "c", "d"]},
        "good": "cpu-hours",
        "orderSeconds": 60,
        "priceVariableRef": {"name": "cpu-price"},
    }
    if mechanism == "equilibrium":
        base["priceGrid"] = {"min": 0, "max": 10, "step": 1}
    base.update(fields)
    return MarketSpec.model_validate(base)


def limit(side: str, price: float, quantity: int = 1, seconds: float = 0) -> OrderAnswer:
    return OrderAnswer(at=at(seconds), side=side, price=price, quantity=quantity)


def schedule(*points: tuple[float | str, float], seconds: float = 0) -> OrderAnswer:
    return OrderAnswer(at=at(seconds), schedule=tuple(SchedulePoint(price=p, quantity=q) for p, q in points))


def opened(spec: MarketSpec, participants: list[Participant] = ABCD) -> MarketStatus:
    return start("m1", spec, participants, T0).status


def run(spec: MarketSpec, answers: Mapping[str, OrderAnswer], now: dt.datetime) -> MarketStep:
    return step("m1", spec, opened(spec), answers, {}, now)


def verdicts(result: MarketStep) -> dict[str, str]:
    return {v.agent: v.reason for v in result.verdicts}


# --- start --------------------------------------------------------------------------------------


def test_start_records_the_participants_and_opens_the_collection() -> None:
    spec = make_spec()
    result = start("m1", spec, [Participant("b"), *ABCD, Participant("a", weight=5)], T0)
    status = result.status
    assert status.phase == "Collecting"
    assert [p.name for p in status.participants] == ["a", "b", "c", "d"]  # sorted, each once
    assert status.participants[0].weight == 1.0  # the first listing counts
    assert (status.started_at, status.deadline) == (T0, DEADLINE)
    (event,) = result.effects
    assert isinstance(event, EmitEvent) and event.reason == "Started"
    assert "until 2026-01-01T00:01:00+00:00" in event.message
    assert next_deadline(spec, status) == DEADLINE


def test_a_market_without_participants_ends_without_trade() -> None:
    result = start("m1", make_spec(), [], T0)
    assert result.status.phase == "NoTrade"
    assert result.status.result is not None and result.status.result.reason == "NoOrders"
    assert [c.type for c in result.status.conditions] == ["Complete"]
    assert [type(e) for e in result.effects] == [EmitEvent]
    assert next_deadline(make_spec(), result.status) is None


def test_a_fine_grid_at_huge_prices_is_exact() -> None:
    # 5001 prices between 1e14 and 1e14 + 5: binary floats near 1e14 cannot tell them apart,
    # exact decimals can
    grid = {"min": "100000000000000", "max": "100000000000005", "step": "0.001"}
    spec = make_spec("equilibrium", priceGrid=grid)
    result = start("m1", spec, ABCD, T0)
    assert result.status.phase == "Collecting"
    answers = {
        "a": schedule(("100000000000000", 1), ("100000000000002.002", 0)),
        "b": schedule(("100000000000000", 0), ("100000000000002.001", -1)),
    }
    cleared = step("m1", spec, opened(spec), answers, {}, DEADLINE)
    res = cleared.status.result
    assert res is not None and res.reason == "Equilibrium"
    assert res.price == Decimal("100000000000002.001")
    assert res.to_wire()["price"] == "100000000000002.001"


def test_a_spec_edited_into_one_that_cannot_work_fails_the_open_market() -> None:
    status = opened(make_spec("equilibrium"))
    broken = make_spec("equilibrium").model_copy(update={"price_grid": None})
    result = step("m1", broken, status, {}, {}, at(5))
    assert (result.status.phase, result.status.result and result.status.result.reason) == (
        "Failed",
        "Invalid",
    )


def test_a_status_edited_by_hand_cannot_change_a_counted_order() -> None:
    spec = make_spec("equilibrium")
    status = step("m1", spec, opened(spec), {"a": schedule((0, 1))}, {}, at(1)).status
    rising = [SchedulePoint(price=0, quantity=1), SchedulePoint(price=2, quantity=3)]
    edited = status.model_copy(update={"orders": [status.orders[0].model_copy(update={"schedule": rising})]})
    result = step("m1", spec, edited, {}, {}, at(61))  # deleted after the deadline: it stays
    # The order counted is the sealed one, opened at the close; the edited fields are ignored.
    assert result.status.phase == "NoTrade"
    assert result.status.orders[0].schedule == [SchedulePoint(price=0, quantity=1)]


def test_orders_stay_sealed_until_the_close_and_copies_are_refused() -> None:
    spec = make_spec()
    status = opened(spec)
    assert status.sealing == KEY.info
    a = sealed("a", limit("buy", 7.25, seconds=1))
    first = step("m1", spec, status, {"a": a, "b": OrderAnswer(at=at(2), sealed=a.sealed)}, {}, at(2))
    assert verdicts(first) == {"a": "Counted", "b": "Copied"}
    assert "copy of a's sealed Order" in first.status.refusals[0].message
    assert [(o.agent, o.sealed, o.side, o.price) for o in first.status.orders] == [
        ("a", a.sealed, None, None)
    ]
    assert "7.25" not in first.status.model_dump_json()
    bid = OrderAnswer(at=at(3), sealed=seal_as("c", OrderContent(side="sell", price=1), kind="Bid"))  # type: ignore[arg-type]
    clear = OrderAnswer(at=at(3), side="sell", price=1)  # an order in clear is no order
    answers = {"a": a, "c": bid, "d": clear}
    other = engine.step("m1", spec, first.status, answers, {}, at(3), sealing_key=KEY, session_uid=UID)
    assert verdicts(other) == {"a": "Counted", "c": "BadSeal", "d": "WrongAnswerKind"}
    done = step("m1", spec, first.status, {"a": a}, {}, DEADLINE)
    assert [(o.agent, o.side, o.price, o.quantity) for o in done.status.orders] == [("a", "buy", 7.25, 1)]


def test_a_market_without_the_key_fails() -> None:
    spec = make_spec()
    keyless = engine.start("m1", spec, ABCD, T0)
    assert keyless.status.result is not None and keyless.status.result.reason == "NoSealingKey"
    status = opened(spec)
    replaced = engine.step(
        "m1", spec, status, {}, {}, at(1), sealing_key=type(KEY)(bytes(32)), session_uid=UID
    )
    assert replaced.status.phase == "Failed"
    assert replaced.status.result is not None and replaced.status.result.reason == "SealingKeyChanged"


def test_an_equilibrium_spec_without_a_grid_fails_with_the_path() -> None:
    spec = make_spec("equilibrium").model_copy(update={"price_grid": None})
    result = start("m1", spec, ABCD, T0)
    assert result.status.result is not None
    assert result.status.result.message.startswith("spec.priceGrid:")


# --- double auction -----------------------------------------------------------------------------


def test_a_double_auction_collects_until_the_deadline_then_clears() -> None:
    spec = make_spec()
    status = opened(spec)
    early = {"a": limit("buy", 10, seconds=1), "c": limit("sell", 2, seconds=2)}
    first = step("m1", spec, status, early, {}, at(2))
    assert first.status.phase == "Collecting"
    assert (first.effects, verdicts(first)) == ((), {"a": "Counted", "c": "Counted"})
    assert [(o.agent, o.side, o.received_at) for o in first.status.orders] == [
        ("a", None, at(1)),  # sealed: no content before the close
        ("c", None, at(2)),
    ]
    everyone = {**early, "b": limit("buy", 8, seconds=3)}
    second = step("m1", spec, first.status, everyone, {}, at(3))
    assert second.status.phase == "Collecting"  # d has not ordered: wait for the deadline
    # b's and d's limits: k = 1 (10 >= 2; 8 < 9); p0 = (8 + 9) / 2 = 8.5 in [2, 10]: one unit at 8.5
    final = step("m1", spec, second.status, {**everyone, "d": limit("sell", 9, seconds=60)}, {}, DEADLINE)
    assert final.status.phase == "Cleared"
    result = final.status.result
    assert result is not None
    assert (result.reason, result.price, result.seller_price, result.volume, result.surplus) == (
        "AllEfficientTrades",
        8.5,
        8.5,
        1.0,
        0.0,
    )
    assert [(t.agent, t.side, t.quantity, t.price, t.total) for t in result.trades] == [
        ("a", "buy", 1.0, 8.5, 8.5),
        ("c", "sell", 1.0, 8.5, 8.5),
    ]
    assert result.decided_at == DEADLINE
    assert [c.type for c in final.status.conditions] == ["Complete"]
    assert final.effects == (
        SetVariable("cpu-price", 8.5, "m1"),
        EmitEvent("AllEfficientTrades", result.message),
    )
    assert outcome_effects("m1", spec, final.status) == final.effects[:1]
    assert next_deadline(spec, final.status) is None


def test_a_trade_reduction_pays_the_buyers_price_to_the_variable() -> None:
    spec = make_spec()
    answers = {"a": limit("buy", 10), "b": limit("buy", 8), "c": limit("sell", 2), "d": limit("sell", 3)}
    result = run(spec, answers, at(1))  # everyone has ordered: it closes early
    assert result.status.result is not None
    assert (result.status.result.reason, result.status.result.price, result.status.result.seller_price) == (
        "TradeReduction",
        8,
        3,
    )
    assert result.status.result.surplus == 5
    assert result.effects[0] == SetVariable("cpu-price", 8.0, "m1")
    assert outcome_effects("m1", spec, result.status) == result.effects[:1]


@pytest.mark.parametrize(
    ("answers", "reason"),
    [
        ({"a": limit("buy", 3), "c": limit("sell", 5)}, "NoCrossing"),
        ({"a": limit("buy", 10), "c": limit("sell", 5)}, "TradeReduction"),
        ({}, "NoOrders"),
    ],
    ids=["no-crossing", "only-pair-cut", "no-orders"],
)
def test_a_double_auction_without_trade_sets_no_variable(
    answers: dict[str, OrderAnswer], reason: str
) -> None:
    spec = make_spec()
    result = run(spec, answers, DEADLINE)
    assert result.status.phase == "NoTrade"
    assert result.status.result is not None and result.status.result.reason == reason
    assert result.status.result.price is None and result.status.result.trades == []
    assert result.effects == (EmitEvent(reason, result.status.result.message),)
    assert outcome_effects("m1", spec, result.status) == ()


# --- equilibrium --------------------------------------------------------------------------------


def test_an_equilibrium_market_clears_with_rationing_and_writes_floats() -> None:
    spec = make_spec("equilibrium", priceGrid={"min": 0, "max": 1, "step": 0.1})
    answers = {
        # Z(0.3) = 3 - 1 = 2 > 0; Z(0.4) = 1 - 3 = -2: p* = 0.4, sellers offer 3 for 1 bought
        "a": schedule((0.0, 3), (0.4, 1), (0.7, 0)),
        "b": schedule((0.1, -1), (0.4, -3)),
        "c": schedule((0.0, 0)),
        "d": schedule((0.9, 0)),
    }
    result = run(spec, answers, at(1))
    assert result.status.phase == "Cleared"
    res = result.status.result
    assert res is not None
    assert (res.reason, res.price, res.seller_price, res.volume, res.surplus) == (
        "Equilibrium",
        Decimal("0.4"),
        None,
        1.0,
        0.0,
    )
    assert [(t.agent, t.side, t.quantity, t.price) for t in res.trades] == [
        ("a", "buy", 1.0, Decimal("0.4")),
        ("b", "sell", 1.0, Decimal("0.4")),
    ]
    assert result.effects[0] == SetVariable("cpu-price", 0.4, "m1")


def test_a_schedule_price_a_rounding_error_off_the_grid_counts_as_the_grid_price() -> None:
    spec = make_spec("equilibrium", priceGrid={"min": 0, "max": 1, "step": 0.1})
    off = 0.1 + 0.2  # 0.30000000000000004
    result = step("m1", spec, opened(spec), {"a": schedule((off, 1))}, {}, at(1))
    assert verdicts(result) == {"a": "Counted"}
    again = step("m1", spec, result.status, {"a": schedule((off, 1))}, {}, at(2))
    assert again.status == result.status and verdicts(again) == {"a": "Counted"}
    done = step("m1", spec, result.status, {"a": schedule((off, 1))}, {}, DEADLINE)
    assert done.status.orders[0].schedule == [SchedulePoint(price=0.3, quantity=1)]


@pytest.mark.parametrize(
    ("order", "reason", "words"),
    [
        (limit("buy", 5), "WrongAnswerKind", "seal a schedule"),
        (schedule((0, 2), (2.5, 1)), "OffGrid", "schedule[1].price is not on the price grid"),
        (schedule((3, 2), (1, 1)), "Unsorted", "schedule[1].price is not above"),
        (schedule((3, 2), (3, 1)), "Unsorted", "each price once"),
        (schedule((0, 1), (4, 2)), "NotMonotone", "schedule[1].quantity is above"),
    ],
    ids=["no-schedule", "off-grid", "unsorted", "price-twice", "rising"],
)
def test_an_equilibrium_market_refuses_a_schedule_it_cannot_use(
    order: OrderAnswer, reason: str, words: str
) -> None:
    result = run(make_spec("equilibrium"), {"a": order}, at(1))
    assert verdicts(result) == {"a": reason}
    assert result.status.orders == []
    assert [(r.agent, r.reason) for r in result.status.refusals] == [("a", reason)]
    assert words in result.verdicts[0].message
    assert "2.5" not in result.verdicts[0].message  # the sealed values are never told
    if reason == "NotMonotone":
        assert "slope down" in result.verdicts[0].message


def test_a_double_auction_refuses_a_schedule_only_order() -> None:
    result = run(make_spec(), {"a": schedule((0, 1))}, at(1))
    assert verdicts(result) == {"a": "WrongAnswerKind"}
    assert "seal a side" in result.verdicts[0].message


def test_a_demand_that_exceeds_supply_everywhere_is_no_equilibrium() -> None:
    answers = {"a": schedule((0, 5)), "b": schedule((0, -1))}
    result = run(make_spec("equilibrium"), answers, DEADLINE)
    assert result.status.phase == "NoTrade"
    assert result.status.result is not None and result.status.result.reason == "NoEquilibrium"
    assert "top price 10" in result.status.result.message
    assert [type(e) for e in result.effects] == [EmitEvent]


# --- collection ---------------------------------------------------------------------------------


def test_an_outsider_is_refused_and_does_not_trade() -> None:
    answers = {"a": limit("buy", 10), "c": limit("sell", 2), "zed": limit("sell", 1)}
    result = run(make_spec(), answers, at(1))
    assert verdicts(result) == {"a": "Counted", "c": "Counted", "zed": "NotParticipant"}
    assert [o.agent for o in result.status.orders] == ["a", "c"]


def test_a_late_change_is_refused_and_the_earlier_order_stays_counted() -> None:
    spec = make_spec()
    status = step("m1", spec, opened(spec), {"a": limit("buy", 10, seconds=5)}, {}, at(5)).status
    answers = {"a": limit("buy", 3, seconds=61), "b": limit("buy", 9, seconds=62), "c": limit("sell", 2)}
    result = step("m1", spec, status, answers, {}, at(62))  # the operator comes late
    assert verdicts(result) == {"a": "Late", "b": "Late", "c": "Counted"}
    assert "stays counted" in result.verdicts[0].message
    assert "stays counted" not in result.verdicts[1].message
    assert [(o.agent, o.price) for o in result.status.orders] == [("a", 10), ("c", 2)]
    assert result.status.phase == "NoTrade"  # one efficient pair (10, 2): the reduction cuts it


def test_an_order_deleted_before_the_deadline_is_withdrawn() -> None:
    spec = make_spec()
    status = step("m1", spec, opened(spec), {"a": limit("buy", 10), "b": limit("buy", 9)}, {}, at(1)).status
    result = step("m1", spec, status, {"b": limit("buy", 9)}, {}, at(2))
    assert [o.agent for o in result.status.orders] == ["b"]
    assert verdicts(result) == {"b": "Counted"}


def test_an_order_deleted_after_the_deadline_stays_counted() -> None:
    spec = make_spec()
    status = step("m1", spec, opened(spec), {"a": limit("buy", 10), "b": limit("sell", 2)}, {}, at(1)).status
    result = step("m1", spec, status, {"b": limit("sell", 2)}, {}, at(61))  # the operator comes late
    assert [o.agent for o in result.status.orders] == ["a", "b"]


def test_a_refusal_goes_once_the_order_is_fixed_or_deleted() -> None:
    spec = make_spec()
    refused = step("m1", spec, opened(spec), {"a": schedule((0, 1)), "b": schedule((0, 1))}, {}, at(1))
    assert [r.agent for r in refused.status.refusals] == ["a", "b"]
    fixed = step("m1", spec, refused.status, {"a": limit("buy", 4, seconds=2)}, {}, at(2))
    assert fixed.status.refusals == []
    assert [o.agent for o in fixed.status.orders] == ["a"]


def test_an_order_resent_unchanged_keeps_its_first_receive_time() -> None:
    spec = make_spec()
    status = step("m1", spec, opened(spec), {"a": limit("buy", 10, seconds=1)}, {}, at(1)).status
    result = step("m1", spec, status, {"a": limit("buy", 10, seconds=70)}, {}, at(70))
    assert verdicts(result) == {"a": "Counted"}
    assert result.status.orders[0].received_at == at(1)


def test_the_market_closes_early_once_every_participant_has_ordered() -> None:
    spec = make_spec()
    answers = {"a": limit("buy", 10), "b": limit("buy", 8), "c": limit("sell", 2)}
    waiting = run(spec, answers, at(1))
    assert waiting.status.phase == "Collecting"
    done = step("m1", spec, waiting.status, {**answers, "d": limit("sell", 9, seconds=2)}, {}, at(2))
    assert done.status.phase == "Cleared"
    assert done.status.result is not None and done.status.result.decided_at == at(2)
    later = step("m1", spec, done.status, {**answers, "d": limit("sell", 1, seconds=3)}, {}, at(3))
    assert later.status == done.status and later.effects == ()
    assert verdicts(later) == {"a": "Counted", "b": "Counted", "c": "Counted", "d": "Closed"}


def test_readiness_does_not_matter() -> None:
    spec = make_spec()
    answers = {"a": limit("buy", 10), "c": limit("sell", 2)}
    gone = {"a": False, "b": False, "c": False, "d": False}
    assert step("m1", spec, opened(spec), answers, gone, at(1)) == step(
        "m1", spec, opened(spec), answers, {}, at(1)
    )


# --- cancel, idempotence, the rest --------------------------------------------------------------


def test_cancel_ends_an_open_market() -> None:
    spec = make_spec()
    status = step("m1", spec, opened(spec), {"a": limit("buy", 10)}, {}, at(1)).status
    cancelled = make_spec(cancel=True)
    result = step("m1", cancelled, status, {"a": limit("buy", 10), "b": limit("buy", 3)}, {}, at(2))
    assert result.status.phase == "Cancelled"
    assert result.status.result is not None and result.status.result.reason == "Cancelled"
    assert [c.type for c in result.status.conditions] == ["Complete"]
    assert result.effects == (EmitEvent("Cancelled", "spec.cancel is true"),)
    assert verdicts(result) == {"a": "Counted", "b": "Closed"}
    assert outcome_effects("m1", cancelled, result.status) == ()
    assert next_deadline(cancelled, result.status) is None


def test_a_market_not_started_is_left_alone() -> None:
    pending = MarketStatus(phase="Pending")
    result = step("m1", make_spec(cancel=True), pending, {"a": limit("buy", 1)}, {}, at(1))
    assert result == MarketStep(status=pending)
    assert next_deadline(make_spec(), pending) is None


orders = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "zed"]),
    st.builds(
        limit,
        side=st.sampled_from(["buy", "sell"]),
        price=st.integers(min_value=0, max_value=10).map(float),
        quantity=st.integers(min_value=1, max_value=3),
        seconds=st.sampled_from([0, 30, 60, 61]),
    ),
)


@SETTINGS
@given(orders, st.sampled_from([0, 30, 60, 61, 90]))
def test_a_repeated_step_returns_the_same_status_and_no_effects(
    answers: dict[str, OrderAnswer], second: int
) -> None:
    spec = make_spec()
    first = step("m1", spec, opened(spec), answers, {}, at(second))
    again = step("m1", spec, first.status, answers, {}, at(second))
    assert again.status == first.status
    assert again.effects == ()
    assert {v.agent: v.accepted for v in again.verdicts} == {v.agent: v.accepted for v in first.verdicts}
    if first.status.phase in TERMINAL_PHASES:
        assert {v.reason for v in again.verdicts} <= {"Counted", "Closed"}
    else:
        assert again.verdicts == first.verdicts


@SETTINGS
@given(
    st.lists(st.sampled_from(["buy", "sell"]), min_size=4, max_size=4),
    st.lists(st.integers(0, 10), min_size=4, max_size=4),
)
def test_closing_early_gives_what_waiting_for_the_deadline_gives(sides: list[str], prices: list[int]) -> None:
    spec = make_spec()
    answers = {p.name: limit(side, price) for p, side, price in zip(ABCD, sides, prices, strict=True)}
    early = run(spec, answers, at(1))
    late = run(spec, answers, DEADLINE)
    assert early.status.phase in TERMINAL_PHASES
    assert early.status.result is not None and late.status.result is not None
    assert early.status.result.model_copy(update={"decided_at": DEADLINE}) == late.status.result
    assert early.effects == late.effects
    reference = clear_double_auction(
        [LimitOrder(a, o.side, F(o.price), o.quantity, o.at) for a, o in answers.items()]
    )
    assert early.status.result.reason == reference.reason
    assert [(t.agent, t.quantity, t.price) for t in early.status.result.trades] == [
        (f.agent, float(f.quantity), float(f.price)) for f in reference.fills
    ]


@SETTINGS
@given(markets(max_agents=4))
def test_an_equilibrium_market_writes_what_the_clearing_computes(
    market: tuple[list[NetDemand], list[F]],
) -> None:
    schedules, grid = market
    spec = make_spec(
        "equilibrium",
        participants={"agents": [s.agent for s in schedules] or ["nobody"]},
        priceGrid={"min": float(grid[0]), "max": float(grid[-1]), "step": float(grid[1] - grid[0])},
    )
    answers = {s.agent: schedule(*((float(p), float(q)) for p, q in s.points)) for s in schedules}
    participants = [Participant(s.agent) for s in schedules] or [Participant("nobody")]
    result = step("m1", spec, opened(spec, participants), answers, {}, DEADLINE)
    reference = clear_equilibrium(schedules, grid)
    res = result.status.result
    assert res is not None
    if not schedules:
        assert res.reason == "NoOrders"
        return
    assert res.reason == reference.reason
    assert result.status.phase == ("Cleared" if reference.traded else "NoTrade")
    assert res.price == (to_decimal(reference.price) if reference.price is not None else None)
    assert res.volume == float(reference.volume)
    assert [(t.agent, t.side, t.quantity, t.total) for t in res.trades] == [
        (f.agent, f.side, float(f.quantity), to_decimal(f.total)) for f in reference.fills
    ]
    expected = (SetVariable("cpu-price", res.price, "m1"),) if reference.traded else ()
    assert outcome_effects("m1", spec, result.status) == expected == result.effects[:-1]


def test_the_engine_exports_exactly_its_contract() -> None:
    assert sorted(engine.__all__) == ["TERMINAL_PHASES", "next_deadline", "outcome_effects", "start", "step"]
    assert frozenset({"Cleared", "NoTrade", "Failed", "Cancelled"}) == TERMINAL_PHASES


# --- a whole market, replayed from the rules ----------------------------------------------------

Content = tuple[str, float, int]  # side, price, quantity
Event = tuple[int, Content | None]  # (second, the new version; None: the Order is deleted)
SECONDS = [0, 10, 30, 60, 61, 75]
contents = st.tuples(
    st.sampled_from(["buy", "sell"]), st.sampled_from([2.0, 4.0, 5.0, 8.0]), st.integers(1, 2)
)
histories = st.lists(st.tuples(st.sampled_from(SECONDS), st.one_of(st.none(), contents)), max_size=3).map(
    lambda events: sorted({s: c for s, c in events}.items())
)


def current(events: list[Event], t: int) -> Event | None:
    """The newest event at or before ``t``."""
    seen = [e for e in events if e[0] <= t]
    return seen[-1] if seen else None


def counted_at(events: list[Event], t: int) -> tuple[Content, int] | None:
    """The order counted after a step at ``t`` while open: the newest version received by
    min(t, deadline), unless deleted; received when its run of identical versions began."""
    newest = current(events, min(t, 60))
    if newest is None or newest[1] is None:
        return None
    content, since = newest[1], newest[0]
    for second, earlier in reversed([e for e in events if e[0] < newest[0]]):
        if earlier != content:
            break
        since = second
    return content, since


@settings(SETTINGS, max_examples=500)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True),
    st.fixed_dictionaries({name: histories for name in ("a", "b", "c", "d", "zed")}),
    st.booleans(),
)
def test_a_whole_market_matches_a_replay_of_the_rules(
    names: list[str], history: dict[str, list[Event]], on_time: bool
) -> None:
    spec = make_spec(participants={"agents": names})
    status = start("m1", spec, [Participant(n) for n in names], T0).status
    steps = sorted(
        {s for events in history.values() for s, _ in events} | ({60} if on_time else set()) | {90}
    )
    closed_at: int | None = None
    for t in steps:
        answers = {}
        for agent, events in history.items():
            event = current(events, t)
            if event is not None and event[1] is not None:
                side, price, quantity = event[1]
                answers[agent] = limit(side, price, quantity, seconds=event[0])
        result = step("m1", spec, status, answers, {}, at(t))
        was_open = status.phase == "Collecting"
        status = result.status
        if was_open:
            everyone = all(counted_at(history[n], t) is not None for n in names)
            assert (status.phase in TERMINAL_PHASES) == (t >= 60 or everyone)
            if status.phase in TERMINAL_PHASES:
                closed_at = t
        else:
            assert result.effects == ()
            for verdict in result.verdicts:
                record = counted_at(history[verdict.agent], closed_at) if verdict.agent in names else None  # type: ignore[arg-type]
                latest = current(history[verdict.agent], t)
                same = record is not None and latest is not None and latest[1] == record[0]
                assert verdict.reason == ("Counted" if same else "Closed")
    assert closed_at is not None and status.result is not None
    counted = {n: counted_at(history[n], closed_at) for n in names}
    expected_orders = sorted((n, c[0], at(c[1])) for n, c in counted.items() if c is not None)
    assert [(o.agent, (o.side, o.price, o.quantity), o.received_at) for o in status.orders] == expected_orders
    assert status.result.decided_at == at(closed_at)
    if not expected_orders:
        assert status.result.reason == "NoOrders"
        return
    reference = clear_double_auction(
        [LimitOrder(n, c[0], F(c[1]), c[2], when) for n, c, when in expected_orders]  # type: ignore[arg-type]
    )
    assert (status.result.reason, status.result.volume, status.result.surplus) == (
        reference.reason,
        reference.volume,
        float(reference.surplus),
    )
    assert [(t.agent, t.side, t.quantity, t.price) for t in status.result.trades] == [
        (f.agent, f.side, float(f.quantity), float(f.price)) for f in reference.fills
    ]
