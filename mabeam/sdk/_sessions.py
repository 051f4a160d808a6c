"""Answering coordination sessions: the agent side of votes, calls for proposals and awards.

The SDK watches the Coordinations of the agent's namespace (one watch, no polling). A session
asks something of this agent when the operator recorded the agent among its participants and:

- the session is ``Collecting`` and its protocol asks for a vote (consensus, majority,
  weighted): ``on_vote(session)`` returns an option (or None to abstain);
- the session is ``Collecting`` and its protocol is contract net: ``on_call_for_proposals(task)``
  returns a cost, a :class:`~mabeam.models.coordination.Proposal` or ``{"cost": ..., "note": ...}``
  (or None: no bid);
- the session is ``Deciding`` and ``status.award`` names this agent: ``on_award(task)`` returns
  True to confirm the award, False to decline it.

Each request is answered once, with a Vote named ``<session>-<agent>`` (labels
``mabeam.io/session`` and ``mabeam.io/agent``) written with the agent's own credentials.
Callbacks may be sync (run in a thread) or async; one that raises or runs past its time limit
is logged and gives no answer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Callable, Coroutine, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pydantic

from ..core import protocols
from ..errors import InvalidSpecError
from ..kube.client import AlreadyExistsError, Kube
from ..kube.resources import COORDINATION, VOTE, Res
from ..models.coordination import CoordinationSpec, CoordinationStatus, Proposal, vote_name

log = logging.getLogger("mabeam.sdk")

SESSION_LABEL = "mabeam.io/session"
AGENT_LABEL = "mabeam.io/agent"

Callback = Callable[..., Any]


@dataclass(frozen=True)
class Session:
    """A vote this agent is asked to answer (what ``on_vote`` receives)."""

    name: str
    namespace: str
    protocol: str
    options: tuple[str, ...]
    deadline: dt.datetime | None
    participants: tuple[str, ...]
    agent: str
    agent_spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A contract-net task (what ``on_call_for_proposals`` and ``on_award`` receive)."""

    session: str
    namespace: str
    description: str
    capability: str
    deadline: dt.datetime | None
    agent: str
    agent_spec: Mapping[str, Any] = field(default_factory=dict)
    #: on_award only: the cost of this agent's proposal that won.
    cost: float | None = None


@dataclass
class SessionCallbacks:
    on_vote: Callback | None = None
    on_call_for_proposals: Callback | None = None
    on_award: Callback | None = None

    def __bool__(self) -> bool:
        return any((self.on_vote, self.on_call_for_proposals, self.on_award))


async def _call(fn: Callback, arg: Any, timeout: float) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await asyncio.wait_for(fn(arg), timeout)
    return await asyncio.wait_for(asyncio.to_thread(fn, arg), timeout)


def _proposal(value: Any) -> dict[str, Any] | None:
    """A callback's bid as the Vote's ``proposal`` (None: no bid)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a proposal is a cost (a number), a Proposal or a dict, not a boolean")
    if isinstance(value, int | float):
        value = {"cost": float(value)}
    proposal = value if isinstance(value, Proposal) else Proposal.model_validate(value)
    return proposal.model_dump(mode="json", by_alias=True)


Answering = Callable[[], Coroutine[Any, Any, None]]


class Requests:
    """What an agent is asked, by a key: each answered once, in its own task, cancelled at the end."""

    def __init__(self) -> None:
        self._handled: set[Hashable] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def answer(self, key: Hashable, answer: Answering) -> None:
        """Run ``answer`` unless this key was answered (or is being answered) already."""
        if key in self._handled:
            return
        self._handled.add(key)
        task = asyncio.ensure_future(answer())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def cancel(self) -> None:
        """Cancel every answer in progress and wait until each has ended: none is left writing
        through a client that is about to close."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SessionResponder:
    """Watches the namespace's Coordinations and answers what is asked of ``agent``."""

    def __init__(
        self,
        kube: Kube,
        agent: str,
        namespace: str,
        callbacks: SessionCallbacks,
        *,
        agent_spec: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.kube = kube
        self.agent = agent
        self.namespace = namespace
        self.callbacks = callbacks
        self.agent_spec = dict(agent_spec or {})
        self.timeout = timeout
        #: Requests by (session uid, what, award deadline).
        self.requests = Requests()
        #: Session name -> uid, so that a Vote is owned by (and deleted with) its session.
        self._uids: dict[str, str] = {}

    async def run(self) -> None:
        """Watch until cancelled; a broken watch is resumed after a short pause."""
        try:
            await watch_forever(self.kube, COORDINATION, self.namespace, self.consider)
        finally:
            await self.requests.cancel()

    def consider(self, obj: dict[str, Any]) -> None:
        """Start answering ``obj`` if it asks something of this agent that is not answered yet."""
        request = self._request(obj)
        if request is not None:
            self.requests.answer(*request)

    def _request(self, obj: dict[str, Any]) -> tuple[tuple[str, str, str], Answering] | None:
        meta = obj.get("metadata") or {}
        raw_status = obj.get("status") or {}
        phase = raw_status.get("phase")
        if phase not in ("Collecting", "Deciding") or meta.get("deletionTimestamp"):
            return None
        if not any(p.get("name") == self.agent for p in raw_status.get("participants") or ()):
            return None
        try:
            spec = CoordinationSpec.model_validate(obj.get("spec") or {})
            status = CoordinationStatus.model_validate(raw_status)
            kind = protocols.default_registry().get(spec.protocol).answer_kind
        except (pydantic.ValidationError, InvalidSpecError) as exc:
            log.warning("session %s cannot be answered: %s", meta.get("name"), exc)
            return None
        name, uid = str(meta.get("name")), str(meta.get("uid", meta.get("name")))
        if meta.get("uid"):
            self._uids[name] = str(meta["uid"])
        on_vote, on_cfp, on_award = (
            self.callbacks.on_vote,
            self.callbacks.on_call_for_proposals,
            self.callbacks.on_award,
        )
        if phase == "Collecting" and kind == "vote" and on_vote is not None:
            return (uid, "vote", ""), lambda: self._vote(on_vote, name, spec, status)
        if spec.task is None:
            return None
        task = self._task(name, spec.task.description, spec.task.capability, status)
        if phase == "Collecting" and kind == "proposal" and on_cfp is not None:
            return (uid, "proposal", ""), lambda: self._propose(on_cfp, task)
        award = status.award
        if phase == "Deciding" and award is not None and award.agent == self.agent and on_award is not None:
            return (uid, "award", award.deadline.isoformat()), lambda: self._confirm(on_award, task)
        return None

    def _task(self, name: str, description: str, capability: str, status: CoordinationStatus) -> Task:
        award = status.award
        return Task(
            session=name,
            namespace=self.namespace,
            description=description,
            capability=capability,
            deadline=award.deadline if award is not None else status.deadline,
            agent=self.agent,
            agent_spec=self.agent_spec,
            cost=award.cost if award is not None else None,
        )

    async def _ask(self, fn: Callback, arg: Any, what: str, session: str) -> tuple[bool, Any]:
        try:
            return True, await _call(fn, arg, self.timeout)
        except TimeoutError:
            log.warning(
                "%s callback for session %s timed out after %gs: no answer", what, session, self.timeout
            )
        except Exception:
            log.exception("%s callback for session %s failed: no answer", what, session)
        return False, None

    async def _vote(
        self, fn: Callback, name: str, spec: CoordinationSpec, status: CoordinationStatus
    ) -> None:
        session = Session(
            name=name,
            namespace=self.namespace,
            protocol=spec.protocol,
            options=tuple(spec.options),
            deadline=status.deadline,
            participants=tuple(p.name for p in status.participants),
            agent=self.agent,
            agent_spec=self.agent_spec,
        )
        ok, choice = await self._ask(fn, session, "on_vote", name)
        if ok and choice is not None:
            await self.answer(name, {"choice": str(choice)})

    async def _propose(self, fn: Callback, task: Task) -> None:
        name = task.session
        ok, value = await self._ask(fn, task, "on_call_for_proposals", name)
        if not ok:
            return
        try:
            proposal = _proposal(value)
        except (TypeError, pydantic.ValidationError) as exc:
            log.warning("on_call_for_proposals for session %s gave no valid proposal: %s", name, exc)
            return
        if proposal is not None:
            await self.answer(name, {"proposal": proposal})

    async def _confirm(self, fn: Callback, task: Task) -> None:
        ok, accept = await self._ask(fn, task, "on_award", task.session)
        if ok and accept is not None:
            await self.answer(task.session, {"accept": bool(accept)})

    async def answer(self, session: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Write (or update) this agent's Vote in ``session`` with ``fields`` of its spec."""
        vote = await write_answer(
            self.kube,
            VOTE,
            COORDINATION,
            name=vote_name(session, self.agent),
            namespace=self.namespace,
            session=session,
            session_uid=self._uids.get(session),
            agent=self.agent,
            spec={"session": session, "agent": self.agent},
            fields=fields,
        )
        log.info("answered session %s: %s", session, dict(fields))
        return vote


async def watch_forever(
    kube: Kube, res: Res, namespace: str, consider: Callable[[dict[str, Any]], None]
) -> None:
    """Pass every object of ``res`` seen in ``namespace`` to ``consider``, until cancelled; a
    dropped watch is resumed after a short pause (it must not stop the agent)."""
    while True:
        try:
            async for _, obj in kube.watch(res, namespace):
                consider(obj)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("watching %s failed, resuming: %s", res.plural, exc)
            await asyncio.sleep(1.0)


async def write_answer(
    kube: Kube,
    res: Res,
    owner: Res,
    *,
    name: str,
    namespace: str,
    session: str,
    session_uid: str | None,
    agent: str,
    spec: Mapping[str, Any],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """Create the answer object ``name`` (a Vote, Bid or Order) or update its ``fields``.

    It carries the labels the operator selects on (``mabeam.io/session``, ``mabeam.io/agent``)
    and, when the session's uid is known, an ownerReference to the session, so that the
    garbage collector deletes it with the session.
    """
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {SESSION_LABEL: session, AGENT_LABEL: agent},
    }
    if session_uid is not None:
        metadata["ownerReferences"] = [
            {"apiVersion": owner.api_version, "kind": owner.kind, "name": session, "uid": session_uid}
        ]
    body = {"metadata": metadata, "spec": {**spec, **fields}}
    try:
        return await kube.create(res, body)
    except AlreadyExistsError:
        return await kube.patch(res, name, {"spec": dict(fields)}, namespace=namespace)
