"""The auction engine the operator calls: one pure state machine per Auction.

::

    start(session, spec, participants, now)                -> AuctionStep
    step(session, spec, status, answers, alive, now)       -> AuctionStep (any number of times)
    next_deadline(spec, status)                            -> datetime | None
    outcome_effects(session, spec, status)                 -> the SetOwner effects of an Awarded status

Pure: ``now`` is an argument, nothing is read or written. ``answers`` is the complete current set
of the auction's Bids (agent -> :class:`BidAnswer`, ``at`` = when that version was received).
``alive`` (agent -> Ready) is part of the contract but changes nothing here: a bidder that is not
Ready is judged by its Bid like any other, and silence is judged at deadlines. A step repeated
with the status it returned returns that status again with no effects; each ``step`` runs until
nothing more changes at ``now`` (a phase or round that closes opens the next one, and the same
answers are judged again there), so outcome effects come only with the transition to a terminal
phase. Each answer gets a :class:`Verdict` (written to its Bid's status); the refused ones are
listed in ``status.refusals``. Reasons: ``Counted``; ``NotParticipant``, ``Late`` (received
after the deadline; an earlier counted version stays counted), ``Closed`` (the auction has
ended), ``WrongAnswerKind`` (a clock answer in a sealed auction or the reverse, or a sealed bid
that does not fit the mechanism), ``WrongKey``, ``BadSeal``, ``Copied`` (see
:mod:`.sealing`), ``UnknownItem``, ``DuplicateItem``, ``WrongRound``, ``NotActive``.

Sealed mechanisms (first-price, second-price, combinatorial) take bids encrypted to the
operator's key (:mod:`.sealing`); there is no reveal phase. ``start`` is given the public key to
publish (``sealing``), ``step`` the private key (``sealing_key``) and the Auction's
``metadata.uid`` (``session_uid``), which every sealed bid must name along with its bidder.

- ``start``: phase ``Bidding`` until ``now + bidSeconds``, ``status.sealing`` = the public key.
  No participant: ``NoSale``/``NoBidders``. No key given: ``Failed``/``NoSealingKey``.
- Bidding: a Bid counts with ``sealed`` only, once it opens (with the private key) as its
  bidder's bid in this auction (else ``WrongKey``, ``BadSeal``, or ``Copied`` when it is another
  participant's ciphertext) and fits the mechanism (``amount`` for first/second-price,
  ``bundles`` of items from ``spec.items`` with no item twice in a bundle for combinatorial).
  The newest version replaces the last (a refused one leaves the last counted); a Bid deleted
  before the deadline withdraws. ``status.bids`` records each counted ciphertext (never an
  amount while bidding is open). Refusal messages never tell a bid's content.
- Bidding closes at its deadline, or early once every participant has a counted bid. Then the
  counted bids are binding (a later version is ``Late``, a deletion withdraws nothing): they
  are opened, their amounts written into ``status.bids`` and the auction clears at once.
  Nobody bid: ``NoSale``/``NoBids``.
- Clearing: :mod:`._sealed` (first-price ``HighestBid``, second-price ``SecondPrice``; ties: the
  earliest received bid, then the name) or :mod:`._combinatorial` (``Optimal``: welfare
  maximizing XOR allocation with VCG prices, the reserve being the seller's value per item).
  Nothing sold: ``NoBids`` or ``BelowReserve`` (``Unsolved`` if the solver ran out of time).
  If the operator's key is no longer the one in ``status.sealing`` (the Secret was replaced),
  no bid can be opened: ``Failed``/``SealingKeyChanged``.

Clock mechanisms (:mod:`._clock` has the prices and the decisions): a Bid sets ``round`` and
``accept``; an answer for another round is refused ``WrongRound`` (unless it was counted in the
round it names, see ``status.rounds``).

- english: round 1 opens at ``startPrice`` (default: the reserve) with every participant active.
  A round closes at its deadline or early once every active bidder has answered it; the stayers
  are those that answered ``accept: true`` (silence is a drop). See
  :func:`mabeam.economics._clock.english_close` for the outcome (``ClockWinner``, ``MaxRounds``,
  ``NoAcceptance``); otherwise the next round opens at the close time for ``roundSeconds``.
- dutch: round ``k`` has the price ``startPrice - (k - 1) * decrement``. A counted
  ``accept: true`` ends the auction at once (``FirstAccept``; several: earliest ``at``, then the
  name). At a round's deadline without an accept the next round opens, unless its price is
  below the reserve (``NoSale``/``NoAcceptance``).

Every auction: ``spec.cancel`` ends it ``Cancelled``; a spec that parses but cannot work ends it
``Failed`` with reason ``Invalid`` (see :func:`validate`). Every terminal transition records
``status.result``, sets the ``Complete`` condition (``Invalid`` when Failed) and emits an
``EmitEvent``; an Awarded one first emits ``SetOwner`` for every sold item (the same effects
:func:`outcome_effects` derives from the status). A terminal status never changes again.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import pydantic

from ...errors import InvalidSpecError
from ...models._amount import to_decimal
from ...models._base import ending_conditions
from ...models._sealed import SealedEnvelope, SealingInfo
from ...models.auction import (
    SEALED_MECHANISMS,
    Allocation,
    AuctionResult,
    AuctionSpec,
    AuctionStatus,
    BidContent,
    BidRecord,
    RoundRecord,
)
from ...models.coordination import ParticipantRecord, Refusal
from ..protocols import EmitEvent, Participant, Verdict
from ._clock import dutch_price, dutch_rounds, dutch_winner, english_close, english_price, exact
from ._combinatorial import DEFAULT_TIME_LIMIT, BundleBid, XorBid, clear_combinatorial
from ._common import AuctionStep, BidAnswer, EconomicEffect, SetOwner
from ._sealed import SealedBid, first_price, second_price
from .sealing import Opened, SealingKey, key_problem, open_sealed

__all__ = ["TERMINAL_PHASES", "next_deadline", "outcome_effects", "start", "step", "validate"]

TERMINAL_PHASES = frozenset({"Awarded", "NoSale", "Failed", "Cancelled"})
MAX_BID_ROUND = 100000
"""The highest round a Bid can name (BidSpec.round)."""
KEEP_ROUNDS = 100
_MAX_PASSES = 16
_Terminal = Literal["Awarded", "NoSale", "Failed", "Cancelled"]


# ---------------------------------------------------------------------------------------------
# The spec


def _opening(spec: AuctionSpec) -> Decimal:
    """The clock's first price: startPrice, or (english only, when unset) the reserve."""
    return spec.start_price if spec.start_price is not None else spec.reserve_price


def validate(spec: AuctionSpec) -> None:
    """Raise InvalidSpecError (with the field path) if the spec cannot work.

    Besides what the model itself checks (repeated here for specs built without validation):
    an english opening price below the reserve, and a dutch clock that needs more rounds than a
    Bid can name. Prices are exact decimals, so no increment is too fine.
    """
    mechanism = spec.mechanism
    if mechanism != "combinatorial" and len(spec.items) != 1:
        raise InvalidSpecError(f"a {mechanism} auction sells exactly one item", path="spec.items")
    for i, item in enumerate(spec.items):
        if item in spec.items[:i]:
            raise InvalidSpecError(f"item {item!r} is listed twice", path=f"spec.items[{i}]")
    if mechanism == "english":
        if spec.increment is None:
            raise InvalidSpecError(
                "an english auction needs the clock's rise per round", path="spec.increment"
            )
        if spec.start_price is not None and spec.start_price < spec.reserve_price:
            raise InvalidSpecError(
                f"the opening price {spec.start_price:g} is below the reserve price "
                f"{spec.reserve_price:g}; raise it or leave it unset to open at the reserve",
                path="spec.startPrice",
            )
    if mechanism == "dutch":
        if spec.start_price is None or spec.decrement is None:
            raise InvalidSpecError(
                "a dutch auction needs spec.startPrice and spec.decrement",
                path="spec.startPrice" if spec.start_price is None else "spec.decrement",
            )
        if spec.start_price < spec.reserve_price:
            raise InvalidSpecError(
                f"the opening price {spec.start_price:g} is below the reserve price {spec.reserve_price:g}",
                path="spec.startPrice",
            )
        rounds = dutch_rounds(spec.start_price, spec.decrement, spec.reserve_price)
        if rounds > MAX_BID_ROUND:
            raise InvalidSpecError(
                f"the clock would take {rounds} rounds from {spec.start_price:g} down to the reserve "
                f"{spec.reserve_price:g}, but a Bid names at most round {MAX_BID_ROUND}; use a larger "
                "decrement",
                path="spec.decrement",
            )


# ---------------------------------------------------------------------------------------------
# Verdicts, terminal transitions


@dataclass
class _Judge:
    verdicts: list[Verdict] = field(default_factory=list)
    refusals: dict[str, Refusal] = field(default_factory=dict)

    def count(self, agent: str, message: str) -> None:
        self.verdicts.append(Verdict(agent, True, "Counted", message))

    def refuse(self, agent: str, reason: str, message: str, *, kept: bool = False) -> None:
        if kept:
            message += "; the earlier counted bid stays counted"
        self.refusals[agent] = Refusal(agent=agent, reason=reason, message=message)
        self.verdicts.append(Verdict(agent, False, reason, message))

    def refusal_list(self) -> list[Refusal]:
        return [self.refusals[a] for a in sorted(self.refusals)]


@dataclass(frozen=True)
class _Win:
    agent: str
    items: tuple[str, ...]
    price: Fraction
    bid: Fraction | None = None


def _set_owner(session: str, result: AuctionResult) -> tuple[EconomicEffect, ...]:
    return tuple(SetOwner(item, a.agent, session) for a in result.allocations for item in a.items)


def _finish(
    session: str,
    status: AuctionStatus,
    *,
    phase: _Terminal,
    reason: str,
    message: str,
    now: _dt.datetime,
    wins: Sequence[_Win] = (),
    verdicts: Sequence[Verdict] = (),
    gap: float | None = None,
    work: float | None = None,
) -> AuctionStep:
    """End the auction: record the result, set the condition, emit SetOwner effects and the event."""
    conditions = ending_conditions(
        status.conditions, failed=phase == "Failed", reason=reason, message=message, now=now
    )
    ordered = sorted(wins, key=lambda w: w.agent)
    result = AuctionResult(
        allocations=[
            Allocation(
                agent=w.agent,
                items=sorted(w.items),
                price=to_decimal(w.price),
                bid=None if w.bid is None else to_decimal(w.bid),
            )
            for w in ordered
        ],
        winners=",".join(w.agent for w in ordered) or None,
        revenue=to_decimal(sum((w.price for w in ordered), Fraction(0))),
        reason=reason,
        message=message,
        gap=gap,
        work=work,
        decided_at=now,
    )
    new = status.model_copy(
        update={
            "phase": phase,
            "result": result,
            "conditions": conditions,
        }
    )
    effects = (
        *_set_owner(session, result),
        EmitEvent(reason, message, "Warning" if phase == "Failed" else "Normal"),
    )
    return AuctionStep(status=new, effects=effects, verdicts=tuple(verdicts))


def _round_record(status: AuctionStatus, round: int) -> RoundRecord | None:
    return next((r for r in status.rounds if r.round == round), None)


def _round_closed_at(spec: AuctionSpec, status: AuctionStatus, round_: int) -> _dt.datetime | None:
    """When a clock round closed, if the status tells: the last round's deadline (or the decision,
    if earlier); a dutch round's fixed deadline. An earlier english round may have closed early."""
    if round_ == status.round and status.deadline is not None:
        end = status.deadline
    elif spec.mechanism == "dutch" and status.started_at is not None:
        end = status.started_at + _dt.timedelta(seconds=round_ * spec.round_seconds)
    else:
        return None
    if status.result is not None:
        end = min(end, status.result.decided_at)
    return end


def _was_counted(spec: AuctionSpec, status: AuctionStatus, agent: str, answer: BidAnswer) -> bool:
    """Whether this answer is the one the status counted for its agent.

    Sealed: it is the agent's counted sealed bid. Clock: the record of the round it
    names lists the agent as accepting (``accept: true``), or (``accept: false``) the agent was in
    that round, does not accept in it, and the answer arrived before the round closed (when the
    status tells when it closed)."""
    if spec.mechanism in SEALED_MECHANISMS:
        bid = next((r for r in status.bids if r.agent == agent), None)
        return bid is not None and answer.sealed is not None and answer.sealed == bid.sealed
    if answer.round is None or answer.accept is None:
        return False
    record = _round_record(status, answer.round)
    if record is None:
        return False
    if answer.accept:
        return agent in record.accepted
    if agent not in {p.name for p in status.participants} or agent in record.accepted:
        return False
    closed_at = _round_closed_at(spec, status, answer.round)
    if closed_at is None or answer.at > closed_at:
        return False
    if spec.mechanism == "dutch" or answer.round == 1:
        return True
    before = _round_record(status, answer.round - 1)
    return before is not None and agent in before.accepted


def _closed_verdicts(
    spec: AuctionSpec, status: AuctionStatus, answers: Mapping[str, BidAnswer]
) -> tuple[Verdict, ...]:
    out = []
    for agent in sorted(answers):
        if _was_counted(spec, status, agent, answers[agent]):
            out.append(Verdict(agent, True, "Counted", "the bid was counted"))
        else:
            out.append(Verdict(agent, False, "Closed", f"the auction has ended ({status.phase})"))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Sealed mechanisms: Bidding, then opening and clearing


@dataclass(frozen=True)
class _Sealer:
    """What opens this auction's sealed bids: the operator's key, the Auction's uid, the bidders."""

    key: SealingKey
    uid: str
    participants: tuple[str, ...]

    @classmethod
    def of(cls, status: AuctionStatus, key: SealingKey | None, uid: str) -> _Sealer | tuple[str, str]:
        """The sealer, or (reason, message) why the auction's bids cannot be opened."""
        problem = key_problem(status.sealing, key)
        if problem is not None or key is None:
            return problem or ("NoSealingKey", "")
        return cls(key, uid, tuple(p.name for p in status.participants))

    def open(self, spec: AuctionSpec, agent: str, sealed: SealedEnvelope) -> BidContent | tuple[str, str]:
        """The bid ``agent`` sealed, or (reason, message) why it is not counted."""
        opened = open_sealed(self.key, sealed, "Bid", self.uid, agent, others=self.participants)
        if not isinstance(opened, Opened):
            return (opened.reason, opened.message)
        try:
            content = BidContent.model_validate(opened.content)
        except pydantic.ValidationError as exc:
            # Name the places, never the values: they are the sealed bid.
            where = ", ".join(".".join(str(p) for p in e["loc"]) or "(the bid)" for e in exc.errors())
            return (
                "WrongAnswerKind",
                f"{agent}'s sealed bid opens to something that is not a bid (problems at: {where})",
            )
        return _unfit(spec, content) or content


def _unfit(spec: AuctionSpec, content: BidContent) -> tuple[str, str] | None:
    """(reason, message) if the sealed bid does not fit the mechanism (the message tells no amount)."""
    if spec.mechanism != "combinatorial":
        if content.amount is None or content.bundles is not None:
            return (
                "WrongAnswerKind",
                f"a {spec.mechanism} auction's sealed bid sets amount (and no bundles)",
            )
        return None
    if content.bundles is None or content.amount is not None:
        return ("WrongAnswerKind", "a combinatorial auction's sealed bid sets bundles (and no amount)")
    items = set(spec.items)
    for j, bundle in enumerate(content.bundles):
        if not set(bundle.items) <= items:
            return (
                "UnknownItem",
                f"the sealed bundles[{j}] names an item that is not for sale here (spec.items)",
            )
        if len(set(bundle.items)) != len(bundle.items):
            return ("DuplicateItem", f"the sealed bundles[{j}] names an item twice")
    return None


def _bidding(
    session: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    answers: Mapping[str, BidAnswer],
    now: _dt.datetime,
    sealer: _Sealer,
    solver_seconds: float,
) -> AuctionStep:
    deadline = status.deadline or now
    participants = set(sealer.participants)
    records = {r.agent: r for r in status.bids}
    judge = _Judge()
    if now <= deadline:
        for agent in [a for a in records if a not in answers]:
            del records[agent]  # a Bid deleted while bidding is open withdraws
    for agent in sorted(answers):
        answer = answers[agent]
        old = records.get(agent)
        if agent not in participants:
            judge.refuse(agent, "NotParticipant", f"{agent} is not a bidder in this auction")
        elif answer.sealed is None or answer.round is not None:
            judge.refuse(
                agent,
                "WrongAnswerKind",
                f"a {spec.mechanism} auction takes sealed bids: spec.sealed only, the bid encrypted to "
                "status.sealing.publicKey (no round or accept)",
                kept=old is not None,
            )
        elif old is not None and old.sealed == answer.sealed:
            judge.count(agent, "the sealed bid is counted; it is opened when bidding closes")
        elif answer.at > deadline:
            judge.refuse(
                agent,
                "Late",
                f"received after bidding closed at {deadline.isoformat()}",
                kept=old is not None,
            )
        else:
            opened = sealer.open(spec, agent, answer.sealed)
            if isinstance(opened, tuple):
                judge.refuse(agent, opened[0], opened[1], kept=old is not None)
            else:
                records[agent] = BidRecord(agent=agent, sealed=answer.sealed, received_at=answer.at)
                judge.count(agent, "the sealed bid is counted; it is opened when bidding closes")
    status = status.model_copy(
        update={"bids": [records[a] for a in sorted(records)], "refusals": judge.refusal_list()}
    )
    if now >= deadline:
        closed_at = deadline
    elif participants and participants <= records.keys():
        closed_at = now
    else:
        return AuctionStep(status=status, verdicts=tuple(judge.verdicts))
    if not records:
        return _finish(
            session,
            status,
            phase="NoSale",
            reason="NoBids",
            message=f"no bidder sent a sealed bid before bidding closed at {closed_at.isoformat()}",
            now=now,
            verdicts=judge.verdicts,
        )
    # Bidding has closed: the counted bids are binding; open them and clear.
    opened_bids: list[BidRecord] = []
    unopened: list[str] = []
    for record in status.bids:
        content = sealer.open(spec, record.agent, record.sealed) if record.sealed is not None else None
        if not isinstance(content, BidContent):
            unopened.append(record.agent)  # cannot happen with the key that counted it
            continue
        opened_bids.append(record.model_copy(update={"amount": content.amount, "bundles": content.bundles}))
    status = status.model_copy(update={"bids": opened_bids})
    note = (
        f"; {', '.join(unopened)}: the sealed bid could not be opened and was not counted" if unopened else ""
    )
    return _clear_sealed(session, spec, status, now, judge.verdicts, solver_seconds, note)


def _clear_sealed(
    session: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    now: _dt.datetime,
    verdicts: Sequence[Verdict],
    solver_seconds: float,
    note: str,
) -> AuctionStep:
    wins: list[_Win] = []
    gap: float | None = None
    work: float | None = None
    if spec.mechanism == "combinatorial":
        ordered = sorted(status.bids, key=lambda r: (r.received_at, r.agent))
        bids = [
            XorBid(r.agent, tuple(BundleBid(frozenset(b.items), exact(b.amount)) for b in r.bundles or ()))
            for r in ordered
        ]
        outcome = clear_combinatorial(
            bids,
            spec.items,
            exact(spec.reserve_price),
            work_limit=min(spec.work_limit, solver_seconds),
            on_timeout=spec.on_timeout,
        )
        reason, message = outcome.reason, outcome.message
        gap, work = outcome.gap, round(outcome.work, 3)
        wins = [_Win(w.agent, w.items, w.price, w.bid) for w in outcome.wins]
    else:
        sealed = [SealedBid(r.agent, r.amount or Decimal(0), r.received_at) for r in status.bids]
        clear = first_price if spec.mechanism == "first-price" else second_price
        single = clear(sealed, spec.reserve_price)
        reason, message = single.reason, single.message
        if single.winner is not None and single.price is not None:
            bid = None if single.bid is None else Fraction(single.bid)
            wins = [_Win(single.winner, tuple(spec.items), Fraction(single.price), bid)]
    return _finish(
        session,
        status,
        phase="Awarded" if wins else "NoSale",
        reason=reason,
        message=message + note,
        now=now,
        wins=wins,
        verdicts=verdicts,
        gap=gap,
        work=work,
    )


# ---------------------------------------------------------------------------------------------
# Clock mechanisms


def _clock_answers(
    spec: AuctionSpec,
    status: AuctionStatus,
    answers: Mapping[str, BidAnswer],
    price: Fraction,
) -> tuple[_Judge, dict[str, BidAnswer]]:
    """Judge the answers to the current round; returns the judge and the counted answers."""
    round_ = status.round or 1
    deadline = status.deadline
    participants = {p.name for p in status.participants}
    active = set(status.active) if spec.mechanism == "english" else participants
    judge = _Judge()
    counted: dict[str, BidAnswer] = {}
    for agent in sorted(answers):
        answer = answers[agent]
        if agent not in participants:
            judge.refuse(agent, "NotParticipant", f"{agent} is not a bidder in this auction")
        elif answer.round is None or answer.sealed is not None:
            judge.refuse(
                agent, "WrongAnswerKind", f"a {spec.mechanism} auction takes spec.round and spec.accept only"
            )
        elif agent not in active:
            judge.refuse(agent, "NotActive", f"{agent} dropped out in an earlier round (no accept)")
        elif answer.round != round_:
            if answer.round < round_ and _was_counted(spec, status, agent, answer):
                judge.count(
                    agent,
                    f"counted in round {answer.round}; round {round_} is open at {to_decimal(price)}: "
                    "answer it",
                )
            else:
                judge.refuse(
                    agent,
                    "WrongRound",
                    f"the current round is {round_} at {to_decimal(price)}: set spec.round to it",
                )
        elif deadline is not None and answer.at > deadline:
            judge.refuse(agent, "Late", f"received after round {round_} closed at {deadline.isoformat()}")
        else:
            counted[agent] = answer
            judge.count(agent, f"counted for round {round_} at {to_decimal(price)}")
    return judge, counted


def _english(
    session: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    answers: Mapping[str, BidAnswer],
    now: _dt.datetime,
) -> tuple[AuctionStep, bool]:
    round_ = status.round or 1
    opening, increment = _opening(spec), spec.increment or 0.0
    price = english_price(opening, increment, round_)
    judge, counted = _clock_answers(spec, status, answers, price)
    status = status.model_copy(update={"refusals": judge.refusal_list()})
    deadline = status.deadline or now
    active = set(status.active)
    if now >= deadline:
        closed_at = deadline
    elif active and active <= counted.keys():
        closed_at = now
    else:
        return AuctionStep(status=status, verdicts=tuple(judge.verdicts)), False
    stayers = sorted(a for a, answer in counted.items() if answer.accept)
    previous = english_price(opening, increment, round_ - 1) if round_ > 1 else None
    decision = english_close(round_, sorted(active), stayers, price, previous, spec.max_rounds)
    record = RoundRecord(round=round_, price=to_decimal(price), accepted=stayers)
    status = status.model_copy(update={"rounds": [*status.rounds, record][-KEEP_ROUNDS:]})
    if decision.kind == "next":
        status = status.model_copy(
            update={
                "round": round_ + 1,
                "clock_price": to_decimal(english_price(opening, increment, round_ + 1)),
                "active": list(decision.active),
                "deadline": closed_at + _dt.timedelta(seconds=spec.round_seconds),
            }
        )
        return AuctionStep(status=status, verdicts=tuple(judge.verdicts)), True
    wins = []
    if decision.winner is not None and decision.price is not None:
        wins = [_Win(decision.winner, tuple(spec.items), decision.price)]
    return _finish(
        session,
        status,
        phase="Awarded" if wins else "NoSale",
        reason=decision.reason,
        message=decision.message,
        now=now,
        wins=wins,
        verdicts=judge.verdicts,
    ), False


def _dutch(
    session: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    answers: Mapping[str, BidAnswer],
    now: _dt.datetime,
) -> tuple[AuctionStep, bool]:
    round_ = status.round or 1
    start_price, decrement = spec.start_price or 0.0, spec.decrement or 0.0
    price = dutch_price(start_price, decrement, round_)
    judge, counted = _clock_answers(spec, status, answers, price)
    status = status.model_copy(update={"refusals": judge.refusal_list()})
    deadline = status.deadline or now
    accepts = {agent: answer.at for agent, answer in counted.items() if answer.accept}
    if accepts:
        winner = dutch_winner(accepts)
        record = RoundRecord(round=round_, price=to_decimal(price), accepted=sorted(accepts))
        status = status.model_copy(update={"rounds": [*status.rounds, record][-KEEP_ROUNDS:]})
        others = f" (first of {len(accepts)}: earliest, then by name)" if len(accepts) > 1 else ""
        return _finish(
            session,
            status,
            phase="Awarded",
            reason="FirstAccept",
            message=f"{winner} accepted {to_decimal(price)} in round {round_}{others} and wins at that price",
            now=now,
            wins=[_Win(winner, tuple(spec.items), price)],
            verdicts=judge.verdicts,
        ), False
    if now < deadline:
        return AuctionStep(status=status, verdicts=tuple(judge.verdicts)), False
    record = RoundRecord(round=round_, price=to_decimal(price), accepted=[])
    status = status.model_copy(update={"rounds": [*status.rounds, record][-KEEP_ROUNDS:]})
    following = dutch_price(start_price, decrement, round_ + 1)
    if following < exact(spec.reserve_price):
        return _finish(
            session,
            status,
            phase="NoSale",
            reason="NoAcceptance",
            message=f"nobody accepted down to {to_decimal(price)} (the next price would be below the "
            f"reserve {spec.reserve_price:g})",
            now=now,
            verdicts=judge.verdicts,
        ), False
    status = status.model_copy(
        update={
            "round": round_ + 1,
            "clock_price": to_decimal(following),
            "deadline": deadline + _dt.timedelta(seconds=spec.round_seconds),
        }
    )
    return AuctionStep(status=status, verdicts=tuple(judge.verdicts)), True


# ---------------------------------------------------------------------------------------------
# The engine


def start(
    session: str,
    spec: AuctionSpec,
    participants: Sequence[Participant],
    now: _dt.datetime,
    *,
    sealing: SealingInfo | None = None,
) -> AuctionStep:
    """Open the auction: check the spec, record the participants (sorted; a name listed twice
    counts once), open bidding (sealed, publishing ``sealing`` as ``status.sealing``) or round 1
    (clock).

    A spec that cannot work ends it Failed (reason Invalid, the field path in the message);
    ``spec.cancel`` ends it Cancelled; no participant ends it NoSale (``NoBidders``); a sealed
    mechanism without ``sealing`` ends it Failed (``NoSealingKey``).
    """
    pending = AuctionStatus(phase="Pending")
    try:
        validate(spec)
    except InvalidSpecError as error:
        return _finish(session, pending, phase="Failed", reason="Invalid", message=str(error), now=now)
    unique: dict[str, Participant] = {}
    for p in participants:
        unique.setdefault(p.name, p)
    records = [
        ParticipantRecord(name=p.name, weight=p.weight, priority=p.priority)
        for p in sorted(unique.values(), key=lambda p: p.name)
    ]
    status = AuctionStatus(phase="Bidding", participants=records, started_at=now)
    if spec.cancel:
        return _finish(
            session, status, phase="Cancelled", reason="Cancelled", message="spec.cancel is true", now=now
        )
    if not records:
        return _finish(
            session, status, phase="NoSale", reason="NoBidders", message="no agent could bid", now=now
        )
    names = [r.name for r in records]
    items = ", ".join(spec.items)
    if spec.mechanism in SEALED_MECHANISMS:
        if sealing is None:
            return _finish(
                session,
                status,
                phase="Failed",
                reason="NoSealingKey",
                message="the operator has no key to seal bids to; see its log (Secret mabeam-sealing-key)",
                now=now,
            )
        deadline = now + _dt.timedelta(seconds=spec.bid_seconds)
        message = (
            f"{spec.mechanism} auction of {items} takes sealed bids (spec.sealed, to key "
            f"{sealing.key_id}) from {len(names)} bidders until {deadline.isoformat()}"
        )
        status = status.model_copy(update={"deadline": deadline, "sealing": sealing})
    else:
        deadline = now + _dt.timedelta(seconds=spec.round_seconds)
        price = exact(_opening(spec))
        status = status.model_copy(
            update={
                "deadline": deadline,
                "round": 1,
                "clock_price": to_decimal(price),
                "active": names if spec.mechanism == "english" else [],
            }
        )
        message = (
            f"{spec.mechanism} auction of {items} opens at {to_decimal(price)} with {len(names)} bidders; "
            f"round 1 closes at {deadline.isoformat()}"
        )
    return AuctionStep(status=status, effects=(EmitEvent("Started", message),))


def step(
    session: str,
    spec: AuctionSpec,
    status: AuctionStatus,
    answers: Mapping[str, BidAnswer],
    alive: Mapping[str, bool],
    now: _dt.datetime,
    *,
    solver_seconds: float = DEFAULT_TIME_LIMIT,
    sealing_key: SealingKey | None = None,
    session_uid: str = "",
) -> AuctionStep:
    """Advance an open auction with the complete current answers; see the module docstring.

    A terminal status is returned unchanged (verdicts: Counted for what was counted, else
    Closed). ``solver_seconds`` bounds the combinatorial winner determination (all solves
    together); run a combinatorial step in a worker thread. Sealed mechanisms need
    ``sealing_key`` (the operator's private key) and ``session_uid`` (the Auction's uid).
    """
    if status.phase in TERMINAL_PHASES:
        return AuctionStep(status=status, verdicts=_closed_verdicts(spec, status, answers))
    if status.phase in (None, "Pending"):
        return AuctionStep(status=status)
    if spec.cancel:
        done = _finish(
            session, status, phase="Cancelled", reason="Cancelled", message="spec.cancel is true", now=now
        )
        return AuctionStep(done.status, done.effects, _closed_verdicts(spec, done.status, answers))
    try:
        validate(spec)
    except InvalidSpecError as error:
        done = _finish(session, status, phase="Failed", reason="Invalid", message=str(error), now=now)
        return AuctionStep(done.status, done.effects, _closed_verdicts(spec, done.status, answers))
    if spec.mechanism in SEALED_MECHANISMS:
        sealer = _Sealer.of(status, sealing_key, session_uid)
        if isinstance(sealer, tuple):
            done = _finish(session, status, phase="Failed", reason=sealer[0], message=sealer[1], now=now)
            return AuctionStep(done.status, done.effects, _closed_verdicts(spec, done.status, answers))
        return _bidding(session, spec, status, answers, now, sealer, solver_seconds)
    effects: list[EconomicEffect] = []
    for _ in range(_MAX_PASSES):
        if spec.mechanism == "english":
            result, moved = _english(session, spec, status, answers, now)
        else:
            result, moved = _dutch(session, spec, status, answers, now)
        effects.extend(result.effects)
        status = result.status
        if not moved:
            break
    return AuctionStep(status=status, effects=tuple(effects), verdicts=result.verdicts)


def next_deadline(spec: AuctionSpec, status: AuctionStatus) -> _dt.datetime | None:
    """When the operator must call :func:`step` again if nothing else happens (None: never)."""
    if status.phase == "Bidding":
        return status.deadline
    return None


def outcome_effects(session: str, spec: AuctionSpec, status: AuctionStatus) -> tuple[EconomicEffect, ...]:
    """The SetOwner effects of an Awarded status (nothing otherwise), for re-applying after a crash.

    The same effects, in the same order, as the transition to Awarded emitted; each names the
    session, so a Variable that already applied it ignores it.
    """
    if status.phase != "Awarded" or status.result is None:
        return ()
    return _set_owner(session, status.result)


def open_bid(
    spec: AuctionSpec,
    status: AuctionStatus,
    agent: str,
    sealed: SealedEnvelope,
    sealing_key: SealingKey | None,
    session_uid: str,
) -> BidContent | None:
    """What ``agent``'s sealed bid contains, or None if it cannot be opened or does not fit
    (the engine refuses it then); for the escrow check before the engine counts it."""
    sealer = _Sealer.of(status, sealing_key, session_uid)
    if isinstance(sealer, tuple):
        return None
    opened = sealer.open(spec, agent, sealed)
    return opened if isinstance(opened, BidContent) else None


def recompute(session: str, spec: AuctionSpec, status: AuctionStatus) -> AuctionResult | None:
    """The result the engine gives for the bids recorded in an ended sealed auction's status
    (opened once bidding closed), for an audit; None for a clock auction or without bids."""
    if spec.mechanism not in SEALED_MECHANISMS or status.result is None or not status.bids:
        return None
    if any(b.amount is None and b.bundles is None for b in status.bids):
        return None  # never opened: the auction ended before bidding closed
    done = _clear_sealed(session, spec, status, status.result.decided_at, (), DEFAULT_TIME_LIMIT, "")
    return done.status.result
