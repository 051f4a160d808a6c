"""Coordination handlers: one session loop per Coordination, driving the pure engine.

A kopf daemon per Coordination owns every write to it and to its Votes' status, so no two
passes of one session race inside the operator (a second operator would lose on the
``resourceVersion`` precondition). Each pass gathers the inputs, calls
:func:`mabeam.protocols.start` or :func:`mabeam.protocols.step`, writes the status, the Votes'
verdicts, and then carries out the effects (see docs/coordination.md).

Wakes: a Vote of the session changed (label ``mabeam.io/session``), a participant's readiness
changed, the Coordination changed, or the time from :func:`mabeam.protocols.next_deadline`
came; a resync interval is the safety net.

When an answer was received is what the *operator* saw: the first time it saw that generation
of the Vote (in a watch event or a list). An agent cannot move its answer in time, and the
API server's timestamps (second precision, creation only) are not used. After an operator
restart, versions it never saw before count as received at the restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import kopf
import pydantic

from .. import protocols
from .._kube import Kube
from .._resources import AGENT, COORDINATION, VOTE
from .._selectors import matches
from ..errors import ApiError, ConflictError, InvalidSpecError
from ..models.coordination import CoordinationSpec, CoordinationStatus, VoteSpec, vote_name
from ._anomaly import observe_session
from ._events import post
from ._loop import Wakers, sleep_or_wake
from ._runtime import Runtime, clock
from .variables import apply_session_outcome

log = logging.getLogger(__name__)

SESSION_LABEL = "mabeam.io/session"
AGENT_LABEL = "mabeam.io/agent"

_wakers = Wakers()
wake = _wakers.wake
#: (namespace, session) -> the participants, for waking on readiness changes.
_open: dict[tuple[str, str], frozenset[str]] = {}
#: (namespace, agent) -> Ready, as last seen in an Agent event.
_ready: dict[tuple[str, str], bool] = {}
#: (vote uid, generation) -> when the operator first saw that version of the Vote.
_seen: dict[tuple[str, int], dt.datetime] = {}
#: (namespace, session) -> the resourceVersion of the session loop's own last status write.
_written: dict[tuple[str, str], str] = {}

#: How many Vote status writes one session has in flight at once.
VERDICT_WRITES_IN_FLIGHT = 16

_STATUS_FIELDS = {f.alias or n for n, f in CoordinationStatus.model_fields.items()}


_event = post


def _is_ready(agent: dict[str, Any]) -> bool:
    return (agent.get("status") or {}).get("phase") == "Ready"


def _see(vote: dict[str, Any], now: dt.datetime) -> tuple[dt.datetime, bool]:
    """When this version of ``vote`` was first seen, and whether it is new now."""
    meta = vote.get("metadata", {})
    key = (str(meta.get("uid", meta.get("name"))), int(meta.get("generation") or 1))
    first = key not in _seen
    return _seen.setdefault(key, now), first


@kopf.on.startup()
async def forget(**_: Any) -> None:
    """A new operator run starts without the last run's observations (as after a crash)."""
    _seen.clear()
    _ready.clear()
    _open.clear()
    _written.clear()


@kopf.on.event(VOTE.kopf_ref, labels={SESSION_LABEL: kopf.PRESENT})  # type: ignore[arg-type]
async def vote_changed(
    event: dict[str, Any], body: kopf.Body, namespace: str, labels: dict[str, str], **_: Any
) -> None:
    if event.get("type") == "DELETED":
        wake(namespace, labels.get(SESSION_LABEL))
        return
    new = _see(dict(body), clock())[1]
    if new:  # a status write or a metadata change is no new answer
        wake(namespace, labels.get(SESSION_LABEL))


@kopf.on.event(AGENT.kopf_ref)  # type: ignore[arg-type]
async def participant_changed(
    event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any
) -> None:
    ready = event.get("type") != "DELETED" and _is_ready(dict(body))
    if _ready.get((namespace, name)) == ready:
        return
    _ready[(namespace, name)] = ready
    for (ns, session), names in list(_open.items()):
        if ns == namespace and name in names:
            wake(ns, session)


@kopf.on.event(COORDINATION.kopf_ref)  # type: ignore[arg-type]
async def session_changed(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    if _written.get((namespace, name)) == body.get("metadata", {}).get("resourceVersion"):
        return  # the loop's own status write: it already knows
    wake(namespace, name)


@kopf.daemon(COORDINATION.kopf_ref, cancellation_timeout=10)  # type: ignore[arg-type]
async def session_loop(
    namespace: str, name: str, stopped: kopf.DaemonStopped, memo: Runtime, logger: logging.Logger, **_: Any
) -> None:
    waker = _wakers.get(namespace, name)
    settings = memo.settings.agents
    session = Session(memo, namespace, name, logger)
    try:
        while not stopped:
            waker.clear()
            try:
                with memo.metrics.reconcile_seconds.labels(kind="Coordination").time():
                    delay = await session.reconcile()
            except ConflictError:
                delay = 0.0  # someone wrote in between: read again at once
            except (pydantic.ValidationError, InvalidSpecError) as exc:
                # Data written by a user or an agent that the pass could not read: report it and
                # wait for a change (or the resync) instead of crashing or spinning.
                logger.warning(f"Pass of session {name} could not read its inputs: {exc}")
                delay = None
            except ApiError as exc:
                logger.warning(f"Pass of session {name} failed, retrying: {exc}")
                memo.metrics.api_errors.labels(kind="Coordination").inc()
                delay = settings.retry_seconds
            delay = settings.resync_seconds if delay is None else min(delay, settings.resync_seconds)
            await sleep_or_wake(waker, stopped, delay)
    finally:
        _wakers.forget(namespace, name)
        _open.pop((namespace, name), None)
        _written.pop((namespace, name), None)


class Session:
    """The operator's side of one session: gather inputs, call the engine, carry out effects."""

    def __init__(self, memo: Runtime, namespace: str, name: str, logger: logging.Logger) -> None:
        self.memo = memo
        self.kube: Kube = memo.kube
        self.namespace = namespace
        self.name = name
        self.logger = logger
        #: A decided session whose status.outcomeApplied is not set has its outcome re-issued
        #: once per operator run (and again after a failed attempt to record it).
        self.outcome_checked = False

    async def reconcile(self) -> float | None:
        """One pass; returns seconds until the next wanted pass (None: on events only)."""
        body = await self.kube.get(COORDINATION, self.name, self.namespace)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        now = clock()
        try:
            spec = CoordinationSpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as exc:
            await self._invalid(body, InvalidSpecError(str(exc), path="spec"), now)
            return None
        raw = {k: v for k, v in (body.get("status") or {}).items() if k in _STATUS_FIELDS}
        try:
            status = CoordinationStatus.model_validate(raw)
        except pydantic.ValidationError as exc:
            await self._invalid_status(body, exc, now)
            return None
        if status.phase in (None, "Pending"):
            agents = {a["metadata"]["name"]: a for a in await self.kube.list(AGENT, self.namespace)}
            participants = self._resolve(spec, agents)
            result = protocols.start(self.name, spec, participants, now)
            self.outcome_checked = True
            votes: list[dict[str, Any]] = []
            refused: dict[str, tuple[str, str]] = {}
        else:
            if (
                status.phase in protocols.TERMINAL_PHASES
                and not status.outcome_applied
                and not self.outcome_checked
            ):
                # After a restart: the outcome may not have been carried out. Only while
                # status.outcomeApplied is unset: the Variable remembers the sessions it applied
                # for a while only, so an old outcome must not be offered to it again.
                self.outcome_checked = True
                effects = protocols.outcome_effects(self.name, spec, status)
                if await self._carry_out(body, spec, effects):
                    body = await self._record_applied(body)
                    status = status.model_copy(update={"outcome_applied": True})
            self.outcome_checked = True
            votes = await self.kube.list(VOTE, self.namespace, labels={SESSION_LABEL: self.name})
            answers, refused = self._answers(votes, now)
            alive = await self._alive(status, now)
            result = protocols.step(self.name, spec, status, answers, alive, now)
        if result.status.phase not in protocols.TERMINAL_PHASES:
            _open[(self.namespace, self.name)] = frozenset(p.name for p in result.status.participants)
        else:
            _open.pop((self.namespace, self.name), None)
        if result.status != status or status.observed_generation != body["metadata"].get("generation"):
            body = await self._write_status(body, result.status)
            self._count_outcome(spec, status, result.status)
            if (
                status.phase not in protocols.TERMINAL_PHASES
                and result.status.phase in protocols.TERMINAL_PHASES
            ):
                latency = None
                if result.status.started_at is not None and result.status.result is not None:
                    latency = (result.status.result.decided_at - result.status.started_at).total_seconds()
                body = await observe_session(
                    self.memo, body, spec.protocol, str(result.status.phase), latency
                )
        await self._write_verdicts(spec, votes, result.verdicts, refused)
        if await self._carry_out(body, spec, result.effects):
            await self._record_applied(body)
        wake_at = protocols.next_deadline(spec, result.status)
        if wake_at is None:
            return None
        # A timer may fire a little early; a millisecond later the deadline has surely passed.
        return max((wake_at - clock()).total_seconds(), 0.0) + 0.001

    def _resolve(
        self, spec: CoordinationSpec, agents: dict[str, dict[str, Any]]
    ) -> list[protocols.Participant]:
        """The participants, once at the start: the named Agents or those the selector matches."""
        chosen: list[dict[str, Any]] = []
        if spec.participants.agents is not None:
            missing = [n for n in spec.participants.agents if n not in agents]
            if missing:
                self.logger.warning(
                    f"Named participants that do not exist are left out: {', '.join(missing)}"
                )
            chosen = [agents[n] for n in spec.participants.agents if n in agents]
        elif spec.participants.selector is not None:
            selector = spec.participants.selector
            chosen = [a for a in agents.values() if matches(selector, a["metadata"].get("labels") or {})]
        out = []
        for agent in chosen:
            aspec = agent.get("spec") or {}
            try:
                participant = protocols.Participant(
                    name=agent["metadata"]["name"],
                    weight=float(aspec.get("weight", 1.0)),
                    priority=int(aspec.get("priority", 0)),
                    capabilities=frozenset(str(c) for c in aspec.get("capabilities") or ()),
                )
            except (TypeError, ValueError) as exc:
                self.logger.warning(
                    f"Agent {agent['metadata']['name']} is left out: its spec.weight, spec.priority "
                    f"or spec.capabilities cannot be read ({exc})"
                )
                continue
            out.append(participant)
        return out

    async def _alive(self, status: CoordinationStatus, now: dt.datetime) -> dict[str, bool]:
        """Readiness, read only when the engine uses it: at a deadline, or while awarding.

        Before the deadline the engine treats every participant as able to answer (an early
        decision never depends on readiness), so a missing map is the same as all alive.
        """
        if status.phase != "Deciding" and (status.deadline is None or now < status.deadline):
            return {}
        agents = {a["metadata"]["name"]: a for a in await self.kube.list(AGENT, self.namespace)}
        return {p.name: p.name in agents and _is_ready(agents[p.name]) for p in status.participants}

    def _answers(
        self, votes: list[dict[str, Any]], now: dt.datetime
    ) -> tuple[dict[str, protocols.Answer], dict[str, tuple[str, str]]]:
        """The answers to pass to the engine, and the Votes refused before it (by Vote name)."""
        answers: dict[str, protocols.Answer] = {}
        refused: dict[str, tuple[str, str]] = {}
        for vote in votes:
            vname = vote["metadata"]["name"]
            if vote["metadata"].get("deletionTimestamp"):
                continue
            try:
                vspec = VoteSpec.model_validate(vote.get("spec") or {})
            except pydantic.ValidationError as exc:
                refused[vname] = ("Invalid", f"the Vote's spec is not valid: {exc.errors()[0]['msg']}")
                continue
            if vspec.session != self.name:
                refused[vname] = (
                    "WrongSession",
                    f"spec.session is {vspec.session!r}, the label says {self.name!r}",
                )
                continue
            if vname != vote_name(self.name, vspec.agent):
                refused[vname] = (
                    "WrongName",
                    f"an answer of {vspec.agent} must be the Vote {vote_name(self.name, vspec.agent)}",
                )
                continue
            at, _ = _see(vote, now)
            answers[vspec.agent] = protocols.Answer.from_vote(vspec, at)
        return answers, refused

    async def _write_status(self, body: dict[str, Any], status: CoordinationStatus) -> dict[str, Any]:
        status.observed_generation = body["metadata"].get("generation")
        wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        old = body.get("status") or {}
        patch: dict[str, Any] = {k: v for k, v in wire.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in wire})
        precondition = {"resourceVersion": body["metadata"]["resourceVersion"]}
        written = await self.kube.patch(
            COORDINATION,
            self.name,
            {"metadata": precondition, "status": patch},
            namespace=self.namespace,
            status=True,
        )
        _written[(self.namespace, self.name)] = written["metadata"]["resourceVersion"]
        return written

    async def _write_vote_status(
        self, vote: dict[str, Any], accepted: bool, reason: str, message: str
    ) -> None:
        meta = vote["metadata"]
        wanted = {
            "accepted": accepted,
            "reason": reason,
            "message": message,
            "observedGeneration": meta.get("generation"),
        }
        current = vote.get("status") or {}
        # One verdict per version of the answer, given when the operator first judged it: a
        # later pass does not reword it (a Late answer stays Late after the session ends, where
        # the engine would now say Closed), and a new version (generation) gets a new verdict.
        if current.get("reason") and current.get("observedGeneration") == wanted["observedGeneration"]:
            return
        try:
            await self.kube.patch(
                VOTE, meta["name"], {"status": wanted}, namespace=self.namespace, status=True
            )
        except ApiError as exc:
            if exc.status != 404:  # a Vote deleted meanwhile needs no verdict
                raise

    async def _write_verdicts(
        self,
        spec: CoordinationSpec,
        votes: list[dict[str, Any]],
        verdicts: tuple[protocols.Verdict, ...],
        refused: dict[str, tuple[str, str]],
    ) -> None:
        """Write each Vote's verdict (only where it changed), a bounded number at a time."""
        by_name = {v["metadata"]["name"]: v for v in votes}
        writes: list[tuple[dict[str, Any], bool, str, str]] = [
            (by_name[n], False, reason, message) for n, (reason, message) in refused.items() if n in by_name
        ]
        for verdict in verdicts:
            vote = by_name.get(vote_name(self.name, verdict.agent))
            if vote is not None:
                writes.append((vote, verdict.accepted, verdict.reason, verdict.message))
        limit = asyncio.Semaphore(VERDICT_WRITES_IN_FLIGHT)

        async def write(vote: dict[str, Any], accepted: bool, reason: str, message: str) -> None:
            current = vote.get("status") or {}
            generation = vote["metadata"].get("generation")
            if not current.get("reason") or current.get("observedGeneration") != generation:
                result = "counted" if accepted else reason
                self.memo.metrics.answers.labels(protocol=spec.protocol, result=result).inc()
            async with limit:
                await self._write_vote_status(vote, accepted, reason, message)

        await asyncio.gather(*(write(*w) for w in writes))

    def _count_outcome(
        self, spec: CoordinationSpec, old: CoordinationStatus, new: CoordinationStatus
    ) -> None:
        if old.phase in protocols.TERMINAL_PHASES or new.phase not in protocols.TERMINAL_PHASES:
            return
        # The outcome label is the terminal phase (a handful of values, what the alerts match);
        # the protocol's reason stays in the session's status and Events.
        self.memo.metrics.sessions.labels(protocol=spec.protocol, outcome=str(new.phase)).inc()
        if new.phase == "Decided" and new.started_at is not None and new.result is not None:
            latency = (new.result.decided_at - new.started_at).total_seconds()
            self.memo.metrics.decision_latency.labels(protocol=spec.protocol).observe(max(latency, 0.0))

    async def _record_applied(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set status.outcomeApplied, on the version just read or written (resourceVersion)."""
        try:
            written = await self.kube.patch(
                COORDINATION,
                self.name,
                {
                    "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                    "status": {"outcomeApplied": True},
                },
                namespace=self.namespace,
                status=True,
            )
        except ConflictError:
            # Not recorded: the next pass reads again and re-issues the outcome (the Variable
            # still remembers this session, so that changes nothing) before recording it.
            self.outcome_checked = False
            raise
        _written[(self.namespace, self.name)] = written["metadata"]["resourceVersion"]
        return written

    async def _carry_out(
        self, body: dict[str, Any], spec: CoordinationSpec, effects: tuple[protocols.Effect, ...]
    ) -> bool:
        """Carry out ``effects``; True if an outcome is now in its Variable (applied, or already)."""
        applied = False
        for effect in effects:
            if isinstance(effect, protocols.SetVariable):
                # The session id names this Coordination object (uid), not only its name: a
                # session deleted and made again under the same name is another session.
                session_id = f"{effect.session}:{body['metadata'].get('uid', '')}"
                try:
                    await apply_session_outcome(
                        self.kube, self.namespace, effect.name, effect.value, session_id
                    )
                    applied = True
                except InvalidSpecError as exc:
                    _event(body, type="Warning", reason="OutcomeNotApplied", message=str(exc))
            elif isinstance(effect, protocols.EmitEvent):
                _event(body, type=effect.type, reason=effect.reason, message=effect.message)
            elif isinstance(effect, protocols.RequestAnswers):
                # The request is in the status (participants, phase, deadline): the SDK reads it there.
                self.logger.info(
                    f"Asked {len(effect.agents)} agent(s) for a {effect.kind} "
                    f"by {effect.deadline.isoformat()}"
                )
            elif isinstance(effect, protocols.Award):
                # status.award names the agent; it confirms with accept on its Vote.
                self.logger.info(f"Awarded to {effect.agent} at cost {effect.cost:g}")
        return applied

    async def _invalid(self, body: dict[str, Any], error: InvalidSpecError, now: dt.datetime) -> None:
        status = body.get("status") or {}
        if status.get("phase") == "Failed":
            return
        patch = {
            "phase": "Failed",
            "result": {"reason": "Invalid", "message": str(error), "decidedAt": now.isoformat()},
            "observedGeneration": body["metadata"].get("generation"),
        }
        await self.kube.patch(
            COORDINATION, self.name, {"status": patch}, namespace=self.namespace, status=True
        )
        _event(body, type="Warning", reason="Invalid", message=str(error))

    async def _invalid_status(
        self, body: dict[str, Any], error: pydantic.ValidationError, now: dt.datetime
    ) -> None:
        """The status was edited into something the operator cannot read: say so, once.

        A session that had not ended fails (its record of answers cannot be trusted); an ended
        one keeps its phase. Either way an ``Invalid`` condition (reason InvalidStatus) names
        the field, and the session can be run again only by deleting and re-creating it.
        """
        first = error.errors()[0]
        where = "status." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "status"
        message = (
            f"{where}: {first['msg']} ({error.error_count()} problem(s) in the status). The status "
            "is written by the operator only; delete and re-create the Coordination to run the "
            "session again."
        )
        status = body.get("status") or {}
        conditions = status.get("conditions")
        conditions = conditions if isinstance(conditions, list) else []
        if any(
            isinstance(c, dict) and c.get("type") == "Invalid" and c.get("message") == message
            for c in conditions
        ):
            return  # already reported
        condition = {
            "type": "Invalid",
            "status": "True",
            "reason": "InvalidStatus",
            "message": message,
            "lastTransitionTime": now.isoformat(),
        }
        others = [c for c in conditions if not (isinstance(c, dict) and c.get("type") == "Invalid")]
        patch: dict[str, Any] = {
            "conditions": [*others, condition],
            "observedGeneration": body["metadata"].get("generation"),
        }
        if status.get("phase") not in protocols.TERMINAL_PHASES:
            patch["phase"] = "Failed"
            patch["result"] = {"reason": "InvalidStatus", "message": message, "decidedAt": now.isoformat()}
        precondition = {"resourceVersion": body["metadata"]["resourceVersion"]}
        try:
            written = await self.kube.patch(
                COORDINATION,
                self.name,
                {"metadata": precondition, "status": patch},
                namespace=self.namespace,
                status=True,
            )
        except ApiError as exc:
            if exc.status != 422:
                raise
            # The API server refused the merge (the bad fields clash with it): report by Event only.
            self.logger.warning(f"Could not mark session {self.name} invalid: {exc}")
        else:
            _written[(self.namespace, self.name)] = written["metadata"]["resourceVersion"]
        _open.pop((self.namespace, self.name), None)
        _event(body, type="Warning", reason="InvalidStatus", message=message)
