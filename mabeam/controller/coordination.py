"""Coordination handlers: one session loop per Coordination, driving :mod:`mabeam.core.protocols`.

The loop itself is shared with auctions and markets (:mod:`._session`): it reads the session and
its Votes, calls :func:`mabeam.core.protocols.start` or :func:`mabeam.core.protocols.step`, writes the
status and the Votes' verdicts, then carries out the effects below (see docs/coordination.md).

Wakes: a Vote of the session changed (label ``mabeam.io/session``), a participant's readiness
changed, the Coordination changed, or the time from :func:`mabeam.core.protocols.next_deadline`
came; a resync interval is the safety net.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic

from ..core import protocols
from ..errors import InvalidSpecError
from ..kube.resources import COORDINATION, VOTE
from ..models.coordination import CoordinationSpec, CoordinationStatus, VoteSpec, vote_name
from ._events import post
from ._session import ParsedAnswer, SessionKind, SessionLoop, register
from .variables import apply_session_outcome


def parse_vote(session: str, vote: dict[str, Any], at: dt.datetime) -> ParsedAnswer:
    """A Vote as the engine's answer, or why it is refused before the engine sees it."""
    try:
        spec = VoteSpec.model_validate(vote.get("spec") or {})
    except pydantic.ValidationError as exc:
        return ParsedAnswer(
            None, refusal=("Invalid", f"the Vote's spec is not valid: {exc.errors()[0]['msg']}")
        )
    if spec.session != session:
        return ParsedAnswer(
            None, refusal=("WrongSession", f"spec.session is {spec.session!r}, the label says {session!r}")
        )
    return ParsedAnswer(spec.agent, protocols.Answer.from_vote(spec, at))


class CoordinationLoop(SessionLoop):
    """Carries out the protocols' effects: outcomes into Variables; requests and awards are
    already in the status (the SDK reads them there), so they are only logged."""

    async def carry_out_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        if isinstance(effect, protocols.SetVariable):
            return await set_variable(self, body, effect)
        if isinstance(effect, protocols.RequestAnswers):
            self.logger.info(
                f"Asked {len(effect.agents)} agent(s) for a {effect.kind} by {effect.deadline.isoformat()}"
            )
        elif isinstance(effect, protocols.Award):
            # status.award names the agent; it confirms with accept on its Vote.
            self.logger.info(f"Awarded to {effect.agent} at cost {effect.cost:g}")
        return False


async def set_variable(loop: SessionLoop, body: dict[str, Any], effect: protocols.SetVariable) -> bool:
    """Apply a session's outcome to its Variable, at most once; True if it is there now."""
    # The session id names this object (uid), not only its name: a session deleted and made
    # again under the same name is another session.
    session_id = f"{effect.session}:{body['metadata'].get('uid', '')}"
    try:
        await apply_session_outcome(
            loop.kube, loop.namespace, effect.name, effect.value, session_id, metrics=loop.memo.metrics
        )
    except InvalidSpecError as exc:
        post(body, type="Warning", reason="OutcomeNotApplied", message=str(exc))
        return False
    return True


def _label(spec: CoordinationSpec) -> str:
    return spec.protocol


KIND = register(
    SessionKind(
        res=COORDINATION,
        answer_res=VOTE,
        spec_model=CoordinationSpec,
        status_model=CoordinationStatus,
        terminal=protocols.TERMINAL_PHASES,
        start=protocols.start,
        step=protocols.step,
        next_deadline=protocols.next_deadline,
        outcome_effects=protocols.outcome_effects,
        parse_answer=parse_vote,
        answer_name=vote_name,
        label=_label,
        loop=CoordinationLoop,
        readiness_phases=frozenset({"Deciding"}),
    )
)
