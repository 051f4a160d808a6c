"""What the session controllers share: one reconcile loop per session object, driving a pure engine.

A session is a Coordination (answered by Votes), an Auction (Bids) or a Market (Orders). Each
kind describes itself with a :class:`SessionKind`: its resources, its spec and status models,
its pure engine (``start``/``step``/``next_deadline``/``outcome_effects``) and how to read one
answer object. The loop is the same for all of them:

1. read the session from the view that the watch events feed (:class:`SessionView`; from the
   API after a failed pass); a spec or status that does not parse is reported (``Invalid``);
2. a new session: resolve the participants (named Agents or a label selector, once) and
   ``start``; a running one: take its answers (label ``mabeam.io/session``) from the view,
   listing them from the API where the view could be behind in a way that matters
   (:meth:`SessionLoop._view_incomplete`, :meth:`SessionLoop._needs_list`), and ``step``;
3. write the new status with the ``resourceVersion`` read as a precondition (a second operator,
   or a stale view, loses the race with a 409 and reads again): it lists each counted answer's
   verdict (``status.counted``); a write that only records answers waits for the batching window
   (:data:`BATCH_SECONDS`). Then write each refused answer's verdict on it, then carry out the
   effects. An outcome effect (a Variable's value, a resource's owner) is applied at most once:
   the Variable records the session; ``status.outcomeApplied`` stops re-issuing it after a
   restart.

When an answer was received is when the *API server* accepted it, as closely as the API server
tells (:func:`received_at`): a first version (generation 1) was accepted within the second of its
``creationTimestamp`` (set by the API server, which a client cannot choose), so it counts as
received at the earlier of that second's end and when the operator first saw it (in a watch event
or a list). An operator that is slow, paused or restarted therefore cannot make an answer late
that the API server accepted before the deadline's second; within that second it counts if the
operator saw it by the deadline. A later version (an edited answer) has no such time that an
agent cannot forge (``managedFields`` times are written by clients too): it counts as received
when the operator first saw it. See docs/reliability.md, "Answer time".
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf
import pydantic

from ..core import protocols
from ..core.selectors import matches
from ..errors import ApiError, ConflictError, InvalidSpecError
from ..kube.client import Kube
from ..kube.resources import AGENT, Res
from ..models._base import MabeamModel, ending_conditions, running_conditions, stamp_generation
from ..models.coordination import CountedVersion
from ._anomaly import observe_session
from ._events import post
from ._loop import PARKED_SECONDS, TOO_LARGE, Backoff, Wakers, newer, report_failure, sleep_or_wake
from ._runtime import Runtime, clock

__all__ = [
    "SESSION_LABEL",
    "ParsedAnswer",
    "SessionKind",
    "SessionLoop",
    "received_at",
    "register",
    "run_session_loop",
]

SESSION_LABEL = "mabeam.io/session"

#: How many answer status writes one session has in flight at once.
VERDICT_WRITES_IN_FLIGHT = 16
#: The least time between two status writes of a session that only record answers: the answers
#: that arrive meanwhile are written together. A write that decides, moves the phase or acts at
#: a deadline is never held back.
BATCH_SECONDS = 0.05
#: The batching window grows to this many times the last status write's duration.
BATCH_WRITE_FACTOR = 4.0
#: How long a new session's first pass waits for kopf's finalizer write before it starts anyway.
FINALIZER_WAIT_SECONDS = 5.0


class _Step(Protocol):
    @property
    def status(self) -> Any: ...
    @property
    def effects(self) -> tuple[Any, ...]: ...
    @property
    def verdicts(self) -> tuple[protocols.Verdict, ...]: ...


@dataclass(frozen=True)
class ParsedAnswer:
    """One answer object read: the engine's answer, or why the object is refused before it."""

    agent: str | None
    answer: Any = None
    refusal: tuple[str, str] | None = None


@dataclass
class SessionKind:
    """Everything the loop needs to know about one kind of session."""

    res: Res
    answer_res: Res
    spec_model: type[MabeamModel]
    status_model: type[MabeamModel]
    terminal: frozenset[str]
    start: Callable[[str, Any, Sequence[protocols.Participant], dt.datetime], _Step]
    step: Callable[[str, Any, Any, Mapping[str, Any], Mapping[str, bool], dt.datetime], _Step]
    next_deadline: Callable[[Any, Any], dt.datetime | None]
    outcome_effects: Callable[[str, Any, Any], tuple[Any, ...]]
    #: (session name, answer object, received at) -> the parsed answer.
    parse_answer: Callable[[str, dict[str, Any], dt.datetime], ParsedAnswer]
    #: The name an agent's answer object must have.
    answer_name: Callable[[str, str], str]
    #: The metrics label of a session: its protocol or mechanism.
    label: Callable[[Any], str]
    #: The loop class that carries out the kind's own effects.
    loop: type[SessionLoop]
    #: Phases in which readiness matters before the deadline (contract net's awarding).
    readiness_phases: frozenset[str] = frozenset()
    #: Run ``step`` in a worker thread: it may solve something big (winner determination), and
    #: the event loop must keep serving the other sessions meanwhile.
    step_in_thread: bool = False

    def __post_init__(self) -> None:
        self.wakers = Wakers()
        #: The sessions and their answers as the watches last showed them (and our own writes).
        self.view = SessionView()
        #: (namespace, session) -> the participants, for waking on readiness changes.
        self.open: dict[tuple[str, str], frozenset[str]] = {}
        #: (namespace, session) -> the resourceVersion of the loop's own last status write.
        self.written: dict[tuple[str, str], str] = {}
        self.status_fields = {f.alias or n for n, f in self.status_model.model_fields.items()}

    def forget(self) -> None:
        """A new operator run: nothing of the last one, not even its wake-up flags (an
        asyncio.Event belongs to the event loop of the run that first waited on it)."""
        self.open.clear()
        self.written.clear()
        self.wakers = Wakers()
        self.view = SessionView()


Key = tuple[str, str]


@dataclass
class SessionView:
    """The latest sessions and answers seen, from watch events and from the loop's own writes.

    A pass reads its session and answers here instead of the API. The view is trusted to be
    complete only where being behind cannot change an outcome (see :meth:`SessionLoop._pass`):
    a pass that would end the session, move its phase, act at a deadline, or withdraw a counted
    answer lists the answers first.
    """

    sessions: dict[Key, dict[str, Any]] = field(default_factory=dict)
    #: (namespace, session) -> answer name -> the answer.
    answers: dict[Key, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: (namespace, answer name) -> the session it is filed under.
    _filed: dict[Key, str] = field(default_factory=dict)

    def put_session(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if newer(self.sessions.get(key), obj):
            self.sessions[key] = obj

    def drop_session(self, namespace: str, name: str) -> None:
        self.sessions.pop((namespace, name), None)
        for answer in self.answers.pop((namespace, name), {}):
            self._filed.pop((namespace, answer), None)

    def put_answer(self, obj: dict[str, Any], *, deleted: bool = False) -> None:
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]
        session = (meta.get("labels") or {}).get(SESSION_LABEL)
        before = self._filed.get((ns, name))
        current = self.answers.get((ns, before), {}).get(name) if before is not None else None
        if not deleted and not newer(current, obj):
            return
        if before is not None and (deleted or before != session):
            self.answers.get((ns, before), {}).pop(name, None)
            self._filed.pop((ns, name), None)
        if deleted or not session:
            return
        self.answers.setdefault((ns, session), {})[name] = obj
        self._filed[(ns, name)] = session

    def replace_answers(self, namespace: str, session: str, objs: list[dict[str, Any]]) -> None:
        """What a list of the session's answers returned: the whole truth as of that list."""
        for name in list(self.answers.get((namespace, session), {})):
            self._filed.pop((namespace, name), None)
        self.answers[(namespace, session)] = {}
        for obj in objs:
            self.put_answer(obj)

    def answer_list(self, namespace: str, session: str) -> list[dict[str, Any]]:
        return list(self.answers.get((namespace, session), {}).values())


#: Every kind registered by a controller module, for the shared Agent and startup handlers.
KINDS: list[SessionKind] = []
#: (answer uid, generation) -> when the operator first saw that version of an answer.
_seen: dict[tuple[str, int], dt.datetime] = {}
#: (namespace, agent) -> Ready, as last seen in an Agent event.
_ready: dict[tuple[str, str], bool] = {}
#: (namespace, agent) -> what a session's start reads of the Agent (labels, weight, priority,
#: capabilities, phase), as last seen in an Agent event.
_agents: dict[tuple[str, str], dict[str, Any]] = {}


def register(kind: SessionKind) -> SessionKind:
    """Register ``kind``'s kopf handlers: answer events, session events, the daemon."""
    KINDS.append(kind)

    @kopf.on.event(kind.answer_res.kopf_ref, labels={SESSION_LABEL: kopf.PRESENT}, id="answer_changed")  # type: ignore[arg-type]
    async def answer_changed(
        event: dict[str, Any], body: kopf.Body, namespace: str, labels: dict[str, str], **_: Any
    ) -> None:
        obj = event.get("object")
        deleted = event.get("type") == "DELETED"
        if isinstance(obj, dict):
            kind.view.put_answer(obj, deleted=deleted)
        session = kind.view.sessions.get((namespace, labels.get(SESSION_LABEL, "")))
        if deleted or see(dict(body), clock(), session)[1]:
            # A status write or a metadata change is no new answer.
            kind.wakers.wake(namespace, labels.get(SESSION_LABEL))

    @kopf.on.event(kind.res.kopf_ref, id="session_changed")  # type: ignore[arg-type]
    async def session_changed(
        event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any
    ) -> None:
        if event.get("type") == "DELETED":
            kind.wakers.forget(namespace, name)  # the session is gone: so is its loop
            kind.view.drop_session(namespace, name)
            return
        obj = event.get("object")
        if isinstance(obj, dict):
            kind.view.put_session(obj)
        if kind.written.get((namespace, name)) == body.get("metadata", {}).get("resourceVersion"):
            return  # the loop's own status write: it already knows
        kind.wakers.wake(namespace, name)

    @kopf.daemon(kind.res.kopf_ref, cancellation_timeout=10, id="session_loop")  # type: ignore[arg-type]
    async def session_loop(
        namespace: str,
        name: str,
        stopped: kopf.DaemonStopped,
        memo: Runtime,
        logger: logging.Logger,
        **_: Any,
    ) -> None:
        await run_session_loop(kind, kind.loop(kind, memo, namespace, name, logger), stopped)

    return kind


def _is_ready(agent: dict[str, Any]) -> bool:
    return (agent.get("status") or {}).get("phase") == "Ready"


def see(
    obj: dict[str, Any], now: dt.datetime, session: dict[str, Any] | None = None
) -> tuple[dt.datetime, bool]:
    """When this version of answer ``obj`` was first seen, and whether it is new now.

    A version judged before (by an earlier operator run) has its time in its verdict: in the
    session's ``status.counted`` (a counted version; ``session`` is the session as last seen) or
    in the answer's own ``status.receivedAt`` for ``status.observedGeneration`` (a refused one).
    That time stands, so that an answer counted before a restart is not taken for one received at
    the restart (Late). Only the operator writes those statuses."""
    meta = obj.get("metadata", {})
    key = (str(meta.get("uid", meta.get("name"))), int(meta.get("generation") or 1))
    first = key not in _seen
    if first:
        recorded = _recorded_receipt(obj, key[1]) or _counted_receipt(obj, key[1], session)
        if recorded is not None and recorded <= now:
            now = recorded
    return _seen.setdefault(key, now), first


def _counted_receipt(
    obj: dict[str, Any], generation: int, session: dict[str, Any] | None
) -> dt.datetime | None:
    agent = (obj.get("spec") or {}).get("agent")
    for record in ((session or {}).get("status") or {}).get("counted") or ():
        if (
            isinstance(record, dict)
            and record.get("agent") == agent
            and record.get("generation") == generation
        ):
            return _parse_time(record.get("receivedAt"))
    return None


def _recorded_receipt(obj: dict[str, Any], generation: int) -> dt.datetime | None:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != generation:
        return None
    return _parse_time(status.get("receivedAt"))


def _parse_time(raw: Any) -> dt.datetime | None:
    if not raw:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _wire_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The resolution of ``metadata.creationTimestamp`` (RFC 3339, whole seconds).
TIMESTAMP_RESOLUTION = dt.timedelta(seconds=1)


def received_at(obj: dict[str, Any], seen: dt.datetime) -> dt.datetime:
    """When this version of answer ``obj`` counts as received, given when the operator first saw it.

    A first version: no later than the end of the second of its ``creationTimestamp`` (the API
    server accepted it before then), nor than ``seen``; so never earlier than it was accepted
    (a late answer stays late), and an operator that saw it late does not make it late. A later
    version, or a timestamp that cannot be read: ``seen``.
    """
    meta = obj.get("metadata") or {}
    if meta.get("generation") not in (None, 1):
        return seen
    created = meta.get("creationTimestamp")
    if not isinstance(created, str):
        return seen
    try:
        accepted = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return seen
    if accepted.tzinfo is None:
        return seen
    return min(seen, accepted + TIMESTAMP_RESOLUTION)


@kopf.on.startup()
async def forget(**_: Any) -> None:
    """A new operator run starts without the last run's observations (as after a crash)."""
    _seen.clear()
    _ready.clear()
    _agents.clear()
    for kind in KINDS:
        kind.forget()


@kopf.on.event(AGENT.kopf_ref)  # type: ignore[arg-type]
async def participant_changed(
    event: dict[str, Any], body: kopf.Body, namespace: str, name: str, **_: Any
) -> None:
    if event.get("type") == "DELETED":
        _agents.pop((namespace, name), None)
    else:
        spec = body.get("spec") or {}
        _agents[(namespace, name)] = {
            "metadata": {"name": name, "labels": dict(body.get("metadata", {}).get("labels") or {})},
            "spec": {k: spec[k] for k in ("weight", "priority", "capabilities") if k in spec},
            "status": {"phase": (body.get("status") or {}).get("phase")},
        }
    ready = event.get("type") != "DELETED" and _is_ready(dict(body))
    if _ready.get((namespace, name)) == ready:
        return
    _ready[(namespace, name)] = ready
    for kind in KINDS:
        for (ns, session), names in list(kind.open.items()):
            if ns == namespace and name in names:
                kind.wakers.wake(ns, session)


async def run_session_loop(kind: SessionKind, session: SessionLoop, stopped: kopf.DaemonStopped) -> None:
    """Pass after pass until kopf stops the daemon (the object is deleted or the operator stops)."""
    memo, namespace, name = session.memo, session.namespace, session.name
    settings = memo.settings.agents
    backoff = Backoff(settings.retry_seconds, settings.resync_seconds)
    try:
        while not stopped:
            # Looked up on every pass: another loop of the same name that ends (a daemon kopf
            # restarts, an operator run that stops) must not leave this one waiting on a flag
            # that nobody sets any more.
            waker = kind.wakers.get(namespace, name)
            waker.clear()
            pause = 0.0  # after a failure: waited out whatever wakes the loop
            try:
                with memo.metrics.reconcile_seconds.labels(kind=kind.res.kind).time():
                    delay = await session.reconcile()
                backoff.succeeded()
            except ConflictError:
                delay = 0.0  # someone wrote in between: read again at once
            except (pydantic.ValidationError, InvalidSpecError) as exc:
                # Data written by a user or an agent that the pass could not read: report it and
                # wait for a change (or the resync) instead of crashing or spinning.
                session.logger.warning(f"Pass of {kind.res.kind} {name} could not read its inputs: {exc}")
                delay = None
            except ApiError as exc:
                if exc.status == TOO_LARGE:
                    # The status outgrew the object's size limit: retrying the same write cannot
                    # help. Say so on the session and wait for a change of it.
                    await report_failure(session.kube, kind.res, namespace, name, "StatusTooLarge",
                                         f"the status could not be written: {exc}")  # fmt: skip
                    await sleep_or_wake(waker, stopped, PARKED_SECONDS)
                    continue
                # A transient failure (429, 5xx, a dropped connection) anywhere in the pass, also
                # after the decision: the next pass re-does what this one did not finish.
                pause = delay = backoff.failed(exc.retry_after)
                session.logger.warning(
                    f"Pass of {kind.res.kind} {name} failed, retrying in {delay:.2f} s: {exc}"
                )
                memo.metrics.api_errors.labels(kind=kind.res.kind).inc()
            except Exception as exc:  # a bug, or input nobody foresaw: this session's trouble only
                session.logger.exception(f"Pass of {kind.res.kind} {name} failed unexpectedly")
                await report_failure(session.kube, kind.res, namespace, name, "ReconcileFailed",
                                     f"{type(exc).__name__}: {exc}")  # fmt: skip
                pause = delay = backoff.failed()
            if delay is None and session.parked:
                delay = PARKED_SECONDS
            else:
                delay = settings.resync_seconds if delay is None else min(delay, settings.resync_seconds)
            if pause > 0:
                await sleep_or_wake(asyncio.Event(), stopped, min(pause, delay))
                continue
            await sleep_or_wake(waker, stopped, delay)
    finally:
        memo.metrics.set_session_phase(kind.res.kind, namespace, name, None)
        kind.open.pop((namespace, name), None)
        kind.written.pop((namespace, name), None)


class SessionLoop(abc.ABC):
    """The operator's side of one session: gather inputs, call the engine, carry out effects.

    Subclasses carry out the kind's own effects in :meth:`carry_out_effect`.
    """

    def __init__(self, kind: SessionKind, memo: Runtime, namespace: str, name: str, logger: logging.Logger):
        self.kind = kind
        self.memo = memo
        self.kube: Kube = memo.kube
        self.namespace = namespace
        self.name = name
        self.logger = logger
        #: A terminal session whose status.outcomeApplied is not set has its outcome re-issued
        #: once per operator run, and again after any failed pass (see :meth:`reconcile`).
        self.outcome_checked = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    #: Set by a pass that found the session ended with nothing more to do: wait for events only.
    parked: bool = False
    #: Whether the view of the session can be read (False: read the API, after a failed pass).
    fresh: bool = True
    #: Whether the start already waited once for kopf's finalizer write.
    waited_for_finalizer: bool = False
    #: When the loop last wrote the session's status (the event loop's clock), and how long it took.
    last_write: float = float("-inf")
    write_seconds: float = 0.0

    async def reconcile(self) -> float | None:
        """One pass; returns seconds until the next wanted pass (None: on events only).

        A pass that fails (any exception) leaves the outcome to be checked again: the failure
        may have come between the decision and its outcome (a verdict write that got a 503),
        and the next pass, which finds the session already ended, must still carry it out.
        """
        self.parked = False
        try:
            return await self._pass()
        except BaseException:
            self.outcome_checked = False
            # Whatever failed may have been a stale view (a 409): the next pass reads the API.
            self.fresh = False
            raise

    async def _read(self) -> dict[str, Any] | None:
        """The session: from the view, or from the API when the view cannot be trusted."""
        kind = self.kind
        body = kind.view.sessions.get(self.key) if self.fresh else None
        if body is None:
            body = await self.kube.get(kind.res, self.name, self.namespace)
            if body is not None:
                kind.view.put_session(body)
                body = kind.view.sessions.get(self.key, body)
            self.fresh = True
        return body

    async def _list_answers(self) -> list[dict[str, Any]]:
        objs = await self.kube.list(self.kind.answer_res, self.namespace, labels={SESSION_LABEL: self.name})
        self.kind.view.replace_answers(self.namespace, self.name, objs)
        return objs

    async def _pass(self) -> float | None:
        kind = self.kind
        body = await self._read()
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        now = clock()
        try:
            spec = kind.spec_model.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as exc:
            await self._invalid(body, InvalidSpecError(str(exc), path="spec"), now)
            return None
        raw = {k: v for k, v in (body.get("status") or {}).items() if k in kind.status_fields}
        try:
            status = kind.status_model.model_validate(raw)
        except pydantic.ValidationError as exc:
            await self._invalid_status(body, exc, now)
            return None
        phase = getattr(status, "phase", None)
        answers_objs: list[dict[str, Any]] = []
        refused: dict[str, tuple[str, str]] = {}
        started = False
        if phase in (None, "Pending"):
            if not body["metadata"].get("finalizers") and not self.waited_for_finalizer:
                # kopf adds its finalizer (the daemon's) in a write of its own right after the
                # session appears: a status write now would race it and lose (409). Its event
                # wakes the loop; the timeout only covers a finalizer that never comes.
                self.waited_for_finalizer = True
                return FINALIZER_WAIT_SECONDS
            agents = await self._participant_agents(spec)
            options = await self.engine_options(body, spec, starting=True)
            result = kind.start(self.name, spec, self._resolve(spec, agents), now, **options)
            result = await self.on_start(body, spec, result)
            self.outcome_checked = True
            started = True
        else:
            if phase in kind.terminal and not status.outcome_applied and not self.outcome_checked:  # type: ignore[attr-defined]
                # After a restart the outcome may not have been carried out. Only while
                # status.outcomeApplied is unset: a Variable remembers the sessions it applied for
                # a while only, so an old outcome must not be offered to it again.
                self.outcome_checked = True
                effects = self.outcome_effects(spec, status)
                if await self._carry_out(body, spec, effects):
                    body = await self._record_applied(body)
                    status = status.model_copy(update={"outcome_applied": True})
            self.outcome_checked = True
            # The answers as the watch shows them; listed from the API where the view may be
            # behind in a way that matters (_view_incomplete, _needs_list): then the step is
            # taken again from the list.
            listed = self._view_incomplete(status)
            answers_objs = (
                await self._list_answers() if listed else kind.view.answer_list(self.namespace, self.name)
            )
            while True:
                # Seen now, after the list: a version listed was accepted before this instant
                # (the pass's ``now`` was read before the list, so it is no bound on when they came).
                answers, refused = self._answers(answers_objs, clock(), body)
                alive = await self._alive(status, now)
                options = await self.engine_options(body, spec, starting=False)
                answers = await self.admit(body, spec, status, answers, refused, answers_objs, options)
                if kind.step_in_thread:
                    result = await asyncio.to_thread(
                        kind.step, self.name, spec, status, answers, alive, now, **options
                    )
                else:
                    result = kind.step(self.name, spec, status, answers, alive, now, **options)
                if listed or not self._needs_list(status, result.status, now):
                    break
                answers_objs, listed = await self._list_answers(), True
            result = dataclasses.replace(
                result,  # type: ignore[type-var]
                status=result.status.model_copy(
                    update={"counted": self._counted(status, result.verdicts, answers_objs, refused)}
                ),
            )
            wait = self._batching(status, result.status, now)
            if wait > 0 and result.status != status:
                # Answers that arrive together are written together: the counted answers of
                # this pass wait for the next one (the loop is woken again meanwhile as more
                # arrive); a pass that decides or acts at a deadline is never held back.
                return wait
            result = await self.after_step(body, spec, status, result)
        new_phase = getattr(result.status, "phase", None)
        if new_phase not in kind.terminal:
            kind.open[self.key] = frozenset(p.name for p in result.status.participants)
        else:
            kind.open.pop(self.key, None)
        if result.status != status or status.observed_generation != body["metadata"].get("generation"):  # type: ignore[attr-defined]
            body = await self._write_status(body, result.status)
            before = {(c.agent, c.generation) for c in status.counted}  # type: ignore[attr-defined]
            for record in result.status.counted:
                if (record.agent, record.generation) not in before:
                    self.memo.metrics.answers.labels(protocol=kind.label(spec), result="counted").inc()
            if phase not in kind.terminal and new_phase in kind.terminal:
                body = await self._ended(body, spec, result.status)
                kind.view.put_session(body)
        await self._write_verdicts(spec, answers_objs, result.verdicts, refused, result.status.counted)
        if await self._carry_out(body, spec, result.effects):
            await self._record_applied(body)
        wake_at = kind.next_deadline(spec, result.status)
        # An ended session has nothing left to do on its own: only an event (a late answer, an
        # edit) wakes it again, so the thousands that are kept cost nothing at rest.
        self.parked = new_phase in kind.terminal and wake_at is None
        if started and new_phase not in kind.terminal:
            # Answers may be there already (written as soon as the session was created, before
            # this pass): their events are spent, so look at them now rather than at the deadline.
            return 0.0
        if wake_at is None:
            return None
        # A timer may fire a little early; a millisecond later the deadline has surely passed.
        return max((wake_at - clock()).total_seconds(), 0.0) + 0.001

    def _counted(
        self,
        status: Any,
        verdicts: tuple[protocols.Verdict, ...],
        objs: list[dict[str, Any]],
        refused: dict[str, tuple[str, str]],
    ) -> list[CountedVersion]:
        """``status.counted`` after this pass: the verdict Counted on each agent's answer, once
        per version (a version judged before keeps its verdict and time), while the answer is
        there."""
        by_name = {o["metadata"]["name"]: o for o in objs if not o["metadata"].get("deletionTimestamp")}
        ended = status.phase in self.kind.terminal  # an ended session's record only grows
        out = {
            c.agent: c
            for c in status.counted
            if ended or self.kind.answer_name(self.name, c.agent) in by_name
        }
        for verdict in verdicts:
            name = self.kind.answer_name(self.name, verdict.agent)
            obj = by_name.get(name)
            if not verdict.accepted or obj is None or name in refused:
                continue
            generation = int(obj["metadata"].get("generation") or 1)
            own = obj.get("status") or {}
            if own.get("reason") and own.get("observedGeneration") == generation:
                continue  # this version has its verdict already (a refusal stands)
            if verdict.agent in out and out[verdict.agent].generation == generation:
                continue
            received, _ = see(obj, clock())  # seen by this pass already: the time it was first seen
            out[verdict.agent] = CountedVersion(
                agent=verdict.agent, generation=generation, received_at=received
            )
        return [out[a] for a in sorted(out)]

    def _batching(self, before: Any, after: Any, now: dt.datetime) -> float:
        """Seconds to hold back a status write that only records answers (0: write now)."""
        if self._moves(before, after, now):
            return 0.0
        since = asyncio.get_running_loop().time() - self.last_write
        # An API server that takes long to write is busy: wait longer between writes, so that
        # this session's writes stay a small share of its time (and of the server's work).
        window = max(BATCH_SECONDS, BATCH_WRITE_FACTOR * self.write_seconds)
        return max(window - since, 0.0)

    @staticmethod
    def _moves(before: Any, after: Any, now: dt.datetime) -> bool:
        """Whether a step acts at or after a deadline, or moves the session's phase or round."""
        deadline = getattr(before, "deadline", None)
        if deadline is not None and now >= deadline:
            return True
        return bool(
            getattr(after, "phase", None) != getattr(before, "phase", None)
            or getattr(after, "round", None) != getattr(before, "round", None)
        )

    def _view_incomplete(self, status: Any) -> bool:
        """Whether the view may lack answers that would change this pass: an answer counted
        in the status but absent from the view (a withdrawal, or a view still filling after a
        restart: the API decides which)."""
        names = {o["metadata"]["name"] for o in self.kind.view.answer_list(self.namespace, self.name)}
        records = getattr(status, "answers", None)
        if records is None:
            records = getattr(status, "bids", None) or getattr(status, "orders", None) or ()
        agents = {r.agent for r in records} | {c.agent for c in status.counted}
        return any(self.kind.answer_name(self.name, agent) not in names for agent in agents)

    def _needs_list(self, before: Any, after: Any, now: dt.datetime) -> bool:
        """Whether a step from the view must be taken again from a list of the answers.

        At or after a deadline, always: an answer the API accepted before that instant counts
        even if its watch event has not arrived yet (answer time is API acceptance time). Before
        it, a step that ends the session or moves its phase or round, unless every participant's
        answer is in the view: then a list could only show a version newer than the view's, one
        that reached the API a few milliseconds ago, and a step before it is as good as a step
        taken a few milliseconds earlier (that version gets its own verdict next).
        """
        deadline = getattr(before, "deadline", None)
        if deadline is not None and now >= deadline:
            return True
        if not self._moves(before, after, now):
            return False
        names = {o["metadata"]["name"] for o in self.kind.view.answer_list(self.namespace, self.name)}
        return any(self.kind.answer_name(self.name, p.name) not in names for p in before.participants)

    # --- inputs ------------------------------------------------------------------------------

    async def _participant_agents(self, spec: Any) -> dict[str, dict[str, Any]]:
        """The Agents to resolve the participants from: the ones the Agent events showed, when
        every named participant is among them; otherwise (a selector, or a name not seen: the
        watch may still be filling after a restart) a list of the namespace's Agents."""
        named = spec.participants.agents
        if named is not None and all((self.namespace, n) in _agents for n in named):
            return {n: _agents[(self.namespace, n)] for n in named}
        return {a["metadata"]["name"]: a for a in await self.kube.list_shared(AGENT, self.namespace)}

    def _resolve(self, spec: Any, agents: dict[str, dict[str, Any]]) -> list[protocols.Participant]:
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

    async def _alive(self, status: Any, now: dt.datetime) -> dict[str, bool]:
        """Readiness, read only when an engine uses it: at a deadline, or in readiness phases.

        Before the deadline the engines treat every participant as able to answer (an early
        decision never depends on readiness), so a missing map is the same as all alive.
        """
        if status.phase not in self.kind.readiness_phases and (
            status.deadline is None or now < status.deadline
        ):
            return {}
        agents = {a["metadata"]["name"]: a for a in await self.kube.list_shared(AGENT, self.namespace)}
        return {p.name: p.name in agents and _is_ready(agents[p.name]) for p in status.participants}

    def _answers(
        self, objs: list[dict[str, Any]], now: dt.datetime, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
        """The answers to pass to the engine, and the objects refused before it (by name)."""
        answers: dict[str, Any] = {}
        refused: dict[str, tuple[str, str]] = {}
        for obj in objs:
            oname = obj["metadata"]["name"]
            if obj["metadata"].get("deletionTimestamp"):
                continue
            seen, _ = see(obj, now, body)
            parsed = self.kind.parse_answer(self.name, obj, received_at(obj, seen))
            if parsed.refusal is not None:
                refused[oname] = parsed.refusal
                continue
            assert parsed.agent is not None  # a parser returns an agent or a refusal
            if oname != self.kind.answer_name(self.name, parsed.agent):
                refused[oname] = (
                    "WrongName",
                    f"an answer of {parsed.agent} must be the {self.kind.answer_res.kind} "
                    f"{self.kind.answer_name(self.name, parsed.agent)}",
                )
                continue
            answers[parsed.agent] = parsed.answer
        return answers, refused

    # --- writes ------------------------------------------------------------------------------

    async def _write_status(self, body: dict[str, Any], status: Any) -> dict[str, Any]:
        generation = body["metadata"].get("generation")
        status.observed_generation = generation
        if status.phase not in self.kind.terminal:  # kstatus (Flux): in progress while running
            status.conditions = running_conditions(status.conditions, phase=str(status.phase), now=clock())
        status.conditions = stamp_generation(status.conditions, generation)
        wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        old = body.get("status") or {}
        patch: dict[str, Any] = {k: v for k, v in wire.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in wire})
        precondition = {"resourceVersion": body["metadata"]["resourceVersion"]}
        started = asyncio.get_running_loop().time()
        written = await self.kube.patch(
            self.kind.res,
            self.name,
            {"metadata": precondition, "status": patch},
            namespace=self.namespace,
            status=True,
        )
        self.kind.written[self.key] = written["metadata"]["resourceVersion"]
        self.kind.view.put_session(written)
        self.last_write = asyncio.get_running_loop().time()
        self.write_seconds = self.last_write - started
        phase = getattr(status, "phase", None)
        self.memo.metrics.set_session_phase(
            self.kind.res.kind, self.namespace, self.name, None if phase in self.kind.terminal else phase
        )
        return written

    async def _ended(self, body: dict[str, Any], spec: Any, status: Any) -> dict[str, Any]:
        """Count the ended session in the metrics and feed the anomaly detector."""
        label = self.kind.label(spec)
        phase = str(status.phase)
        metrics = self.memo.metrics
        # The outcome label is the terminal phase (a handful of values, what the alerts match);
        # the reason stays in the session's status and Events.
        metrics.sessions.labels(protocol=label, outcome=phase).inc()
        metrics.observe_outcome(self.kind.res.kind, label, status)
        latency = None
        if status.started_at is not None and status.result is not None:
            latency = (status.result.decided_at - status.started_at).total_seconds()
            if phase not in ("Failed", "Cancelled", "NoDecision", "NoSale", "NoTrade"):
                metrics.decision_latency.labels(protocol=label).observe(max(latency, 0.0))
        return await observe_session(self.memo, body, label, phase, latency, res=self.kind.res)

    async def _write_answer_status(
        self, obj: dict[str, Any], accepted: bool, reason: str, message: str
    ) -> None:
        meta = obj["metadata"]
        received, _ = see(obj, clock())  # seen by this pass already: the time it was first seen
        wanted = {
            "accepted": accepted,
            "reason": reason,
            "message": message,
            "observedGeneration": meta.get("generation"),
            "receivedAt": _wire_time(received),
        }
        current = obj.get("status") or {}
        # One verdict per version of the answer, given when the operator first judged it: a
        # later pass does not reword it (a Late answer stays Late after the session ends, where
        # the engine would now say Closed), and a new version (generation) gets a new verdict.
        if current.get("reason") and current.get("observedGeneration") == wanted["observedGeneration"]:
            return
        try:
            written = await self.kube.patch(
                self.kind.answer_res, meta["name"], {"status": wanted}, namespace=self.namespace, status=True
            )
            self.kind.view.put_answer(written)
        except ApiError as exc:
            if exc.status != 404:  # an answer deleted meanwhile needs no verdict
                raise

    async def _write_verdicts(
        self,
        spec: Any,
        objs: list[dict[str, Any]],
        verdicts: tuple[protocols.Verdict, ...],
        refused: dict[str, tuple[str, str]],
        counted: Sequence[CountedVersion],
    ) -> None:
        """Write each refused answer's verdict on it (only where it changed), a bounded number
        at a time. A counted answer has its verdict in the session's ``status.counted``,
        written with the status; a version counted before keeps that verdict."""
        by_name = {o["metadata"]["name"]: o for o in objs}
        kept = {(self.kind.answer_name(self.name, c.agent), c.generation) for c in counted}
        writes: list[tuple[dict[str, Any], bool, str, str]] = [
            (by_name[n], False, reason, message) for n, (reason, message) in refused.items() if n in by_name
        ]
        for verdict in verdicts:
            name = self.kind.answer_name(self.name, verdict.agent)
            obj = by_name.get(name)
            if (
                obj is not None and name not in refused and not verdict.accepted
            ):  # a refusal before the engine stands
                writes.append((obj, verdict.accepted, verdict.reason, verdict.message))
        writes = [
            w
            for w in writes
            if (w[0]["metadata"]["name"], int(w[0]["metadata"].get("generation") or 1)) not in kept
        ]
        limit = asyncio.Semaphore(VERDICT_WRITES_IN_FLIGHT)
        label = self.kind.label(spec)

        async def write(obj: dict[str, Any], accepted: bool, reason: str, message: str) -> None:
            current = obj.get("status") or {}
            generation = obj["metadata"].get("generation")
            if not current.get("reason") or current.get("observedGeneration") != generation:
                result = "counted" if accepted else reason
                self.memo.metrics.answers.labels(protocol=label, result=result).inc()
            async with limit:
                await self._write_answer_status(obj, accepted, reason, message)

        await asyncio.gather(*(write(*w) for w in writes))

    async def _record_applied(self, body: dict[str, Any]) -> dict[str, Any]:
        """Set status.outcomeApplied, on the version just read or written (resourceVersion)."""
        try:
            written = await self.kube.patch(
                self.kind.res,
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
        self.kind.written[self.key] = written["metadata"]["resourceVersion"]
        self.kind.view.put_session(written)
        return written

    async def _carry_out(self, body: dict[str, Any], spec: Any, effects: tuple[Any, ...]) -> bool:
        """Carry out ``effects``; True if an outcome effect is now applied (now, or already)."""
        applied = False
        for effect in effects:
            if isinstance(effect, protocols.EmitEvent):
                post(body, type=effect.type, reason=effect.reason, message=effect.message)
            elif await self.carry_out_effect(body, spec, effect):
                applied = True
        return applied

    async def engine_options(self, body: dict[str, Any], spec: Any, *, starting: bool) -> dict[str, Any]:
        """Keyword arguments for the engine's ``start`` (``starting``) or ``step``: none here;
        an auction passes its sealing key (ApiError: retry the pass)."""
        return {}

    # --- hooks of kinds whose outcomes are paid (see _money.py) ---------------------------------

    async def on_start(self, body: dict[str, Any], spec: Any, result: Any) -> Any:
        """The start's result, completed by the kind (a paid session records its payment mode)."""
        return result

    async def admit(
        self,
        body: dict[str, Any],
        spec: Any,
        status: Any,
        answers: dict[str, Any],
        refused: dict[str, tuple[str, str]],
        objs: list[dict[str, Any]],
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The answers the engine may count; the others go into ``refused`` (by object name)."""
        return answers

    async def after_step(self, body: dict[str, Any], spec: Any, before: Any, result: Any) -> Any:
        """The step's result, completed by the kind before its status is written (escrow, and
        the settlement of a session that ends)."""
        return result

    def outcome_effects(self, spec: Any, status: Any) -> tuple[Any, ...]:
        """The effects that carry out an ended session's outcome (again, after a restart)."""
        return tuple(self.kind.outcome_effects(self.name, spec, status))

    @abc.abstractmethod
    async def carry_out_effect(self, body: dict[str, Any], spec: Any, effect: Any) -> bool:
        """Carry out one effect of the kind; True if it is an outcome now applied."""

    # --- bad input ---------------------------------------------------------------------------

    async def _invalid(self, body: dict[str, Any], error: InvalidSpecError, now: dt.datetime) -> None:
        status = body.get("status") or {}
        if status.get("phase") == "Failed":
            return
        generation = body["metadata"].get("generation")
        ended = ending_conditions([], failed=True, reason="Invalid", message=str(error), now=now)
        patch = {
            "phase": "Failed",
            "result": {"reason": "Invalid", "message": str(error), "decidedAt": now.isoformat()},
            "observedGeneration": generation,
            "conditions": [c.to_wire() for c in stamp_generation(ended, generation)],
        }
        written = await self.kube.patch(
            self.kind.res, self.name, {"status": patch}, namespace=self.namespace, status=True
        )
        self.kind.view.put_session(written)
        post(body, type="Warning", reason="Invalid", message=str(error))

    async def _invalid_status(
        self, body: dict[str, Any], error: pydantic.ValidationError, now: dt.datetime
    ) -> None:
        """The status was edited into something the operator cannot read: say so, once.

        A session that had not ended fails (its record of answers cannot be trusted); an ended
        one keeps its phase. Either way an ``Invalid`` condition (reason InvalidStatus) names
        the field, and the session can be run again only by deleting and re-creating it.
        """
        kind = self.kind.res.kind
        first = error.errors()[0]
        where = "status." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "status"
        message = (
            f"{where}: {first['msg']} ({error.error_count()} problem(s) in the status). The status "
            f"is written by the operator only; delete and re-create the {kind} to run the "
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
        if status.get("phase") not in self.kind.terminal:
            patch["phase"] = "Failed"
            patch["result"] = {"reason": "InvalidStatus", "message": message, "decidedAt": now.isoformat()}
        precondition = {"resourceVersion": body["metadata"]["resourceVersion"]}
        try:
            written = await self.kube.patch(
                self.kind.res,
                self.name,
                {"metadata": precondition, "status": patch},
                namespace=self.namespace,
                status=True,
            )
        except ApiError as exc:
            if exc.status != 422:
                raise
            # The API server refused the merge (the bad fields clash with it): report by Event only.
            self.logger.warning(f"Could not mark {kind} {self.name} invalid: {exc}")
        else:
            self.kind.written[self.key] = written["metadata"]["resourceVersion"]
        self.kind.view.put_session(written)
        self.kind.open.pop(self.key, None)
        post(body, type="Warning", reason="InvalidStatus", message=message)
