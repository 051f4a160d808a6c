"""Contract net (Smith 1980): call for proposals, award to the cheapest, confirm or move on.

1. Call for proposals: the participants that have ``spec.task.capability`` (others do not take
   part) are asked for a proposal (a Vote with ``proposal.cost``). A proposal may change until
   collection closes: at the deadline, or earlier once every participant has proposed.
2. Ranking: the proposals sorted by cost, then by agent name (the documented tie-break: equal
   costs go to the alphabetically first agent). No proposal -> NoDecision (``NoProposals``).
3. Award: the best-ranked agent gets the award (an :class:`Award` effect) and must confirm it
   with ``accept: true`` on its Vote within ``awardSeconds``. A confirmation given before the
   award (on the same Vote) counts. ``accept: false``, no answer by the award deadline, or the
   agent not being Ready moves the award to the next in the ranking (recorded in
   ``status.declined`` as ``Declined``, ``NoConfirmation`` or ``Absent``).
4. The first confirmation decides (``Awarded``, value: the agent's name). When the ranking runs
   out -> NoDecision (``NoConfirmation``).

While awarding the phase is ``Deciding``; changed proposals are then refused (``Closed``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from ...models.coordination import (
    AwardRecord,
    CoordinationSpec,
    CoordinationStatus,
    DeclineRecord,
    RankEntry,
)
from ._base import (
    Answer,
    Award,
    Effect,
    EmitEvent,
    Participant,
    Protocol,
    RequestAnswers,
    StepResult,
    Verdict,
    collect,
    finish,
    invalid,
    past_deadline,
)

__all__ = ["ContractNet"]


def _cost_check(answer: Answer) -> tuple[str, str] | None:
    if answer.cost is None:
        return ("WrongAnswerKind", "this session asks for a proposal with a cost")
    return None


def _cost_fields(answer: Answer) -> dict[str, object]:
    return {"cost": answer.cost}


class ContractNet(Protocol):
    name = "contract-net"
    answer_kind = "proposal"

    def validate(self, spec: CoordinationSpec) -> None:
        if spec.task is None:
            raise invalid("spec.task", "contract-net needs a task (description and capability)")

    def eligible(self, spec: CoordinationSpec, participant: Participant) -> bool:
        return spec.task is not None and spec.task.capability in participant.capabilities

    def next_deadline(self, status: CoordinationStatus) -> _dt.datetime | None:
        if status.phase == "Deciding" and status.award is not None:
            return status.award.deadline
        return super().next_deadline(status)

    def step(
        self,
        session: str,
        spec: CoordinationSpec,
        status: CoordinationStatus,
        answers: Mapping[str, Answer],
        alive: Mapping[str, bool],
        now: _dt.datetime,
    ) -> StepResult:
        deciding = status.phase == "Deciding"
        collected = collect(status, answers, now, fields=_cost_fields, check=_cost_check, closed=deciding)
        status = collected.apply(status)
        verdicts = collected.verdicts
        if not deciding:
            if collected.unanswered(status) and not past_deadline(status, now):
                return StepResult(status=status, verdicts=tuple(verdicts))
            ranked = sorted(collected.records.values(), key=lambda r: (float(r.cost or 0.0), r.agent))
            status.ranking = [RankEntry(agent=r.agent, cost=r.cost) for r in ranked]
            if not ranked:
                return finish(
                    status,
                    spec,
                    session,
                    phase="NoDecision",
                    value=None,
                    reason="NoProposals",
                    message="no participant proposed",
                    now=now,
                    verdicts=verdicts,
                )
            status.phase = "Deciding"
            return self._award(session, spec, status, answers, alive, now, verdicts, [], first=True)
        return self._award(session, spec, status, answers, alive, now, verdicts, [], first=False)

    def _award(
        self,
        session: str,
        spec: CoordinationSpec,
        status: CoordinationStatus,
        answers: Mapping[str, Answer],
        alive: Mapping[str, bool],
        now: _dt.datetime,
        verdicts: list[Verdict],
        effects: list[Effect],
        *,
        first: bool,
    ) -> StepResult:
        """Settle the current award (or make the first), moving down the ranking as needed."""
        need_new = first
        while True:
            if need_new:
                tried = {d.agent for d in status.declined}
                candidates = [e for e in status.ranking if e.agent not in tried]
                if not candidates:
                    status.award = None
                    return finish(
                        status,
                        spec,
                        session,
                        phase="NoDecision",
                        value=None,
                        reason="NoConfirmation",
                        message=f"no bidder confirmed the award ({len(status.declined)} tried)",
                        now=now,
                        verdicts=verdicts,
                        effects=effects,
                    )
                best = candidates[0]
                status.award = AwardRecord(
                    agent=best.agent,
                    cost=float(best.cost or 0.0),
                    awarded_at=now,
                    deadline=now + _dt.timedelta(seconds=spec.award_seconds),
                )
                need_new = False
                award_effects: list[Effect] = [
                    Award(session, best.agent, float(best.cost or 0.0), status.award.deadline),
                    RequestAnswers(session, "confirmation", (best.agent,), status.award.deadline),
                ]
            else:
                award_effects = []
            award = status.award
            if award is None:  # a Deciding status without an award: make one
                need_new = True
                continue
            answer = answers.get(award.agent)
            confirmation = answer.accept if answer is not None and answer.at <= award.deadline else None
            if confirmation is True:
                self._note_accept(status, award.agent, True)
                return finish(
                    status,
                    spec,
                    session,
                    phase="Decided",
                    value=award.agent,
                    reason="Awarded",
                    message=f"{award.agent} confirmed the task at cost {award.cost:g}",
                    now=now,
                    verdicts=verdicts,
                    effects=[*effects, *award_effects],
                )
            reason = None
            if confirmation is False:
                reason = "Declined"
                self._note_accept(status, award.agent, False)
            elif not alive.get(award.agent, True):
                reason = "Absent"
            elif now >= award.deadline:
                reason = "NoConfirmation"
            if reason is None:
                effects.extend(award_effects)
                return StepResult(status=status, effects=tuple(effects), verdicts=tuple(verdicts))
            status.declined = [*status.declined, DeclineRecord(agent=award.agent, reason=reason)]
            effects.append(EmitEvent("AwardMoved", f"the award to {award.agent} did not hold ({reason})"))
            need_new = True

    @staticmethod
    def _note_accept(status: CoordinationStatus, agent: str, accept: bool) -> None:
        status.answers = [
            r.model_copy(update={"accept": accept}) if r.agent == agent else r for r in status.answers
        ]
