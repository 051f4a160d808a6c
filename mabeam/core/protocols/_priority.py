"""Priority resolution: participants contend for one resource; the highest priority wins.

Each participant answers with ``claim: true`` (it wants ``spec.resource``) or ``claim: false``.
The claimants are ranked by the Agent priority snapshot taken at the start (highest first); the
documented tie-break is the earliest claim (the time the counted claim was received), then the
agent name. The first in the ranking wins (``HighestPriority``, value: the agent's name); with no
claimant the session ends NoDecision (``NoClaims``). The quorum and threshold do not apply.

Early decision: once the best claimant has a strictly higher priority than every open
participant (no counted answer, Ready or not), nobody can overtake it (an open participant of
equal priority could still claim earlier than the operator saw, so it is waited for). The session
also closes when no participant is open, or at the deadline. Readiness plays no part: a claim
stands even if its agent is not Ready, and absentPolicy does not apply.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from ...models.coordination import CoordinationSpec, CoordinationStatus, RankEntry
from ._base import Answer, Protocol, StepResult, collect, finish, invalid, past_deadline

__all__ = ["Priority"]


def _claim_check(answer: Answer) -> tuple[str, str] | None:
    if answer.claim is None:
        return ("WrongAnswerKind", "this session asks for a claim (true or false)")
    return None


class Priority(Protocol):
    name = "priority"
    answer_kind = "claim"

    def validate(self, spec: CoordinationSpec) -> None:
        if spec.resource is None:
            raise invalid("spec.resource", "priority resolution needs the resource contended for")

    def step(
        self,
        session: str,
        spec: CoordinationSpec,
        status: CoordinationStatus,
        answers: Mapping[str, Answer],
        alive: Mapping[str, bool],
        now: _dt.datetime,
    ) -> StepResult:
        collected = collect(status, answers, now, fields=lambda a: {"claim": a.claim}, check=_claim_check)
        status = collected.apply(status)
        priority = {p.name: p.priority for p in status.participants}
        claims = [r for r in collected.records.values() if r.claim]
        claims.sort(key=lambda r: (-priority[r.agent], r.received_at, r.agent))
        status.ranking = [
            RankEntry(agent=r.agent, priority=priority[r.agent], received_at=r.received_at) for r in claims
        ]
        open_ = collected.unanswered(status)
        closing = past_deadline(status, now) or not open_
        if claims:
            best = claims[0]
            if closing or all(priority[a] < priority[best.agent] for a in open_):
                return finish(
                    status,
                    spec,
                    session,
                    phase="Decided",
                    value=best.agent,
                    reason="HighestPriority",
                    message=f"{best.agent} (priority {priority[best.agent]}) gets {spec.resource}",
                    now=now,
                    verdicts=collected.verdicts,
                )
        elif closing:
            return finish(
                status,
                spec,
                session,
                phase="NoDecision",
                value=None,
                reason="NoClaims",
                message=f"nobody claimed {spec.resource}",
                now=now,
                verdicts=collected.verdicts,
            )
        return StepResult(status=status, verdicts=tuple(collected.verdicts))
