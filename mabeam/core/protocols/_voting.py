"""Voting: consensus (unanimity), majority and weighted majority.

Each participant votes for one of ``spec.options`` (a Vote with ``choice``). When collection
closes (at the deadline, or earlier when the outcome can no longer change) the session decides:

1. Quorum: at least ``quorum`` participants must have a counted vote (default ``100%`` for
   consensus, ``50%`` for majority and weighted; always at least one). A percentage is taken of
   the quorum base: all participants, less the absent ones (not Ready at the deadline, no vote)
   under ``absentPolicy: exclude``.
   Otherwise: NoDecision, reason ``QuorumNotMet``.
2. consensus: every counted vote names the same option -> Decided (``Unanimous``); otherwise
   NoDecision (``NoConsensus``).
3. majority / weighted: each option's tally is the number of votes (majority) or the sum of the
   voters' weights as snapshot at the start (weighted), computed exactly (fractions). The
   leaders are the options with the highest tally. Several leaders: with ``tiePolicy:
   NoDecision`` -> NoDecision (``Tie``); with ``FirstListed`` the leader listed first in
   ``options`` goes on. The leader wins if its share of the votes (weight) cast is above
   ``threshold`` (``GreaterThan``, default: more than half) or at least ``threshold``
   (``AtLeast``) -> Decided (``Majority`` / ``WeightedMajority``); else NoDecision
   (``ThresholdNotMet``).

Early decision. Counted votes are final once the session decides; the *open* participants (no
counted vote, Ready or not) may still vote for any option, or stay silent and be Ready or not at
the deadline. The session decides before the deadline only when every such continuation gives the
same result. "The quorum is met for sure" means it is met with all participants in the base
(nobody excluded), the largest base there can be:

- no open participant is left (the rules above apply as at the deadline, nobody is absent);
- the quorum cannot be met even if every open participant votes -> ``QuorumNotMet``
  (an extra vote never hurts a quorum: it adds one answer and at most one to the base);
- consensus: the quorum is met for sure and two options have votes -> ``NoConsensus``;
  or it is met for sure, all votes agree and there is only one option -> ``Unanimous``;
- majority/weighted: the quorum is met for sure and some option X wins even if all open
  participants' weight R goes to any single rival: for every rival Y, X still leads
  ``tally(Y) + R`` (or ties it and is listed first under FirstListed), and X still meets the
  threshold with ``R`` added to the votes cast. If no rival option exists, R cannot count against X.

Other outcomes (a NoDecision whose reason could still change) wait for the deadline.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from fractions import Fraction
from typing import ClassVar

from ...models.coordination import CoordinationSpec, CoordinationStatus
from ._base import (
    Answer,
    Protocol,
    StepResult,
    absent_participants,
    collect,
    finish,
    invalid,
    past_deadline,
    quorum_required,
)

__all__ = ["Consensus", "Majority", "Weighted"]


def _check_options(spec: CoordinationSpec) -> None:
    if not spec.options:
        raise invalid("spec.options", "list the options the participants vote on (at least one)")
    seen: set[str] = set()
    for i, option in enumerate(spec.options):
        if option in seen:
            raise invalid(f"spec.options[{i}]", f"option {option!r} is listed twice")
        seen.add(option)


def _passes(votes: Fraction, total: Fraction, spec: CoordinationSpec) -> bool:
    threshold = Fraction(str(spec.threshold))
    if spec.threshold_comparison == "AtLeast":
        return votes >= threshold * total
    return votes > threshold * total


class _Voting(Protocol):
    answer_kind = "vote"
    weighted: ClassVar[bool] = False
    unanimity: ClassVar[bool] = False
    default_quorum: ClassVar[str] = "50%"
    win_reason: ClassVar[str] = "Majority"

    def validate(self, spec: CoordinationSpec) -> None:
        _check_options(spec)

    def step(
        self,
        session: str,
        spec: CoordinationSpec,
        status: CoordinationStatus,
        answers: Mapping[str, Answer],
        alive: Mapping[str, bool],
        now: _dt.datetime,
    ) -> StepResult:
        options = set(spec.options)

        def check(answer: Answer) -> tuple[str, str] | None:
            if answer.choice is None:
                return ("WrongAnswerKind", "this session asks for a choice among the options")
            if answer.choice not in options:
                return ("UnknownOption", f"{answer.choice!r} is not one of {spec.options}")
            return None

        collected = collect(status, answers, now, fields=lambda a: {"choice": a.choice}, check=check)
        status = collected.apply(status)
        choices = {agent: str(r.choice) for agent, r in collected.records.items()}
        weights = {p.name: Fraction(p.weight) if self.weighted else Fraction(1) for p in status.participants}
        tally = {o: Fraction(0) for o in spec.options}
        for agent, choice in choices.items():
            tally[choice] += weights[agent]
        status.tally = {o: float(t) for o, t in tally.items()}

        open_ = collected.unanswered(status)
        closing = past_deadline(status, now)
        base = len(status.participants)
        if closing:
            open_ = []
            if spec.absent_policy == "exclude":
                base -= len(absent_participants(status, choices, alive))
        required = quorum_required(spec, base, self.default_quorum)
        remaining = sum((weights[a] for a in open_), Fraction(0))
        n_open = len(open_)

        outcome = self._decide(spec, tally, choices, required, n_open, remaining)
        if outcome is None:
            return StepResult(status=status, verdicts=tuple(collected.verdicts))
        value, reason, message = outcome
        return finish(
            status,
            spec,
            session,
            phase="Decided" if value is not None else "NoDecision",
            value=value,
            reason=reason,
            message=message,
            now=now,
            verdicts=collected.verdicts,
        )

    def _decide(
        self,
        spec: CoordinationSpec,
        tally: dict[str, Fraction],
        choices: Mapping[str, str],
        required: int,
        n_open: int,
        remaining: Fraction,
    ) -> tuple[str | None, str, str] | None:
        """(value, reason, message) if the outcome is certain, else None."""
        votes = len(choices)
        if votes + n_open < required:
            return (None, "QuorumNotMet", f"{votes} of the {required} answers the quorum needs")
        if votes < required:
            return None
        if self.unanimity:
            return self._unanimity(spec, choices, n_open)
        total = sum(tally.values(), Fraction(0))
        if n_open == 0:
            return self._final(spec, tally, total)
        for x in spec.options:
            if self._certain_winner(spec, tally, total, x, remaining):
                return (x, self.win_reason, self._win_message(x, tally[x], total))
        return None

    def _unanimity(
        self, spec: CoordinationSpec, choices: Mapping[str, str], n_open: int
    ) -> tuple[str | None, str, str] | None:
        distinct = sorted(set(choices.values()), key=spec.options.index)
        if len(distinct) > 1:
            return (None, "NoConsensus", f"the votes are split between {distinct}")
        if n_open > 0 and len(spec.options) > 1:
            return None
        return (distinct[0], "Unanimous", f"all {len(choices)} votes are for {distinct[0]!r}")

    def _final(
        self, spec: CoordinationSpec, tally: dict[str, Fraction], total: Fraction
    ) -> tuple[str | None, str, str]:
        top = max(tally.values())
        leaders = [o for o in spec.options if tally[o] == top]
        if len(leaders) > 1 and spec.tie_policy == "NoDecision":
            return (None, "Tie", f"options {leaders} tie with {float(top):g} each")
        leader = leaders[0]
        if not _passes(tally[leader], total, spec):
            return (
                None,
                "ThresholdNotMet",
                f"{leader!r} leads with {float(tally[leader]):g} of {float(total):g}, which does not "
                f"meet the threshold ({spec.threshold_comparison} {spec.threshold:g})",
            )
        return (leader, self.win_reason, self._win_message(leader, tally[leader], total))

    def _certain_winner(
        self,
        spec: CoordinationSpec,
        tally: dict[str, Fraction],
        total: Fraction,
        x: str,
        remaining: Fraction,
    ) -> bool:
        rivals = [y for y in spec.options if y != x]
        against = remaining if rivals else Fraction(0)
        if not _passes(tally[x], total + against, spec):
            return False
        first_listed = spec.tie_policy == "FirstListed"
        index = spec.options.index
        for y in rivals:
            worst = tally[y] + remaining
            if tally[x] > worst:
                continue
            if first_listed and tally[x] == worst and index(x) < index(y):
                continue
            return False
        return True

    def _win_message(self, option: str, votes: Fraction, total: Fraction) -> str:
        unit = "weight" if self.weighted else "votes"
        return f"{option!r} wins with {float(votes):g} of {float(total):g} {unit}"


class Consensus(_Voting):
    """Unanimity: every counted vote for the same option, quorum default 100%."""

    name = "consensus"
    unanimity = True
    default_quorum = "100%"
    win_reason = "Unanimous"


class Majority(_Voting):
    """One participant, one vote; the leader needs more than ``threshold`` of the votes cast."""

    name = "majority"


class Weighted(_Voting):
    """Like majority, with each vote worth the voter's weight (Agent spec.weight at the start)."""

    name = "weighted"
    weighted = True
    win_reason = "WeightedMajority"
