"""Helpers for the session integration tests: agents, sessions, answers (Votes, Bids, Orders) as an
agent, and waiting for phases and verdicts."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mabeam.kube.client import AlreadyExistsError, Kube
from mabeam.kube.resources import AGENT, AUCTION, BID, COORDINATION, MARKET, ORDER, ROLE_BINDING, VOTE, Res
from mabeam.local.cluster import LocalCluster
from mabeam.models.auction import bid_name
from mabeam.models.coordination import answer_verdict, vote_name
from mabeam.models.market import order_name
from tests.integration._util import eventually

NS = "default"
REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("Decided", "NoDecision", "Failed", "Cancelled")

#: Each answer kind: the name of an agent's answer in a session, and the spec field naming the session.
ANSWERS: dict[Res, tuple[Callable[[str, str], str], str]] = {
    VOTE: (vote_name, "session"),
    BID: (bid_name, "auction"),
    ORDER: (order_name, "market"),
}


def agent_body(
    name: str,
    *,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """An Agent; with a ``command`` its Pod runs it (Ready when running), else it is suspended."""
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
        "spec": {
            "capabilities": ["vote"],
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "agent",
                            "image": "example/agent:1",
                            "command": command or ["sleep", "3600"],
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ]
                }
            },
            "restart": {"initialDelaySeconds": 0.2, "maxDelaySeconds": 1, "resetAfterSeconds": 600},
            **spec,
        },
    }
    if command is None:
        body["spec"]["suspend"] = True
    return body


def python_agent(name: str, script: str, env: dict[str, str], **spec: Any) -> dict[str, Any]:
    """An Agent whose Pod runs one of the example programs in agents/ with this interpreter."""
    env = {"PYTHONPATH": str(REPO), **env}
    return agent_body(name, command=[sys.executable, str(REPO / "agents" / script)], env=env, **spec)


async def grant_agents(kube: Kube, names: list[str]) -> None:
    """Give suspended agents (no Pod, so no binding from the operator) their base rights."""
    await kube.create(
        ROLE_BINDING,
        {
            "metadata": {"name": f"test-agents-{len(names)}-{names[0]}", "namespace": NS},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "mabeam-agent",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": f"mabeam-agent-{n}", "namespace": NS} for n in names
            ],
        },
    )


async def suspended(kube: Kube, names: list[str], **spec: object) -> None:
    """Agents without a Pod (they answer through ``AsAgents``), with their base rights."""
    for name in names:
        await kube.create(AGENT, agent_body(name, **spec))
    await grant_agents(kube, names)


class AsAgents:
    """API clients that speak as agents (their ServiceAccount tokens), closed together."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.clients: dict[str, Kube] = {}

    def __call__(self, agent: str) -> Kube:
        if agent not in self.clients:
            path = self.cluster.workdir / f"agent-{agent}.kubeconfig"
            self.cluster.api.kubeconfig(path, user=f"system:serviceaccount:{NS}:mabeam-agent-{agent}")
            self.clients[agent] = Kube.connect(path, namespace=NS)
        return self.clients[agent]

    async def close(self) -> None:
        # A copy: a vote still running when a test failed may add its client meanwhile.
        for client in list(self.clients.values()):
            await client.close()

    async def answer(self, res: Res, session: str, agent: str, **fields: Any) -> dict[str, Any]:
        """Create or change ``agent``'s Vote, Bid or Order in ``session``, as the agent."""
        kube = self(agent)
        name_of, session_field = ANSWERS[res]
        name = name_of(session, agent)
        try:
            return await kube.create(
                res,
                {
                    "metadata": {
                        "name": name,
                        "namespace": NS,
                        "labels": {"mabeam.io/session": session, "mabeam.io/agent": agent},
                    },
                    "spec": {session_field: session, "agent": agent, **fields},
                },
            )
        except AlreadyExistsError:
            return await kube.patch(res, name, {"spec": fields}, namespace=NS)

    async def vote(self, session: str, agent: str, **fields: Any) -> dict[str, Any]:
        return await self.answer(VOTE, session, agent, **fields)


async def create_session(kube: Kube, name: str, protocol: str, **spec: Any) -> dict[str, Any]:
    return await kube.create(
        COORDINATION, {"metadata": {"name": name, "namespace": NS}, "spec": {"protocol": protocol, **spec}}
    )


async def status(kube: Kube, name: str) -> dict[str, Any]:
    obj = await kube.get(COORDINATION, name, NS)
    return (obj or {}).get("status") or {}


async def phase_in(
    kube: Kube, res: Res, name: str, phases: tuple[str, ...], timeout: float = 10.0
) -> dict[str, Any]:
    """The status of session ``name`` once its phase is one of ``phases``."""

    async def check() -> dict[str, Any] | None:
        obj = await kube.get(res, name, NS)
        s = (obj or {}).get("status") or {}
        return s if s.get("phase") in phases else None

    result: dict[str, Any] = await eventually(
        check, timeout=timeout, interval=0.02, what=f"{name} in {phases}"
    )
    return result


async def collecting(kube: Kube, name: str, timeout: float = 10.0) -> dict[str, Any]:
    return await phase_in(kube, COORDINATION, name, ("Collecting", "Deciding", *TERMINAL), timeout)


async def ended(kube: Kube, name: str, timeout: float = 15.0) -> dict[str, Any]:
    return await phase_in(kube, COORDINATION, name, TERMINAL, timeout)


SESSION_OF = {VOTE.kind: COORDINATION, BID.kind: AUCTION, ORDER.kind: MARKET}


async def answer_status(kube: Kube, res: Res, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict on the current version of answer ``obj``: a refusal on the answer itself, a
    counted version in its session's ``status.counted`` (``answer_verdict``)."""
    session = (obj["metadata"].get("labels") or {}).get("mabeam.io/session")
    body = await kube.get(SESSION_OF[res.kind], session, NS) if session else None
    return answer_verdict(obj, body)


async def verdict(
    kube: Kube, res: Res, name: str, generation: int | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """The verdict on answer ``name`` (for ``generation``, if given), once the operator wrote it."""

    async def check() -> dict[str, Any] | None:
        obj = await kube.get(res, name, NS)
        if obj is None:
            return None
        s = await answer_status(kube, res, obj)
        if s is None or (generation is not None and s.get("observedGeneration") != generation):
            return None
        return s

    result: dict[str, Any] = await eventually(
        check, timeout=timeout, interval=0.02, what=f"verdict on {name}"
    )
    return result


async def vote_status(
    kube: Kube, session: str, agent: str, generation: int | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    return await verdict(kube, VOTE, vote_name(session, agent), generation, timeout)


async def ready_agents(kube: Kube, names: list[str], timeout: float = 15.0) -> None:
    async def check() -> bool:
        agents = {a["metadata"]["name"]: a for a in await kube.list(AGENT, NS)}
        return all(((agents.get(n) or {}).get("status") or {}).get("phase") == "Ready" for n in names)

    await eventually(check, timeout=timeout, what=f"agents Ready: {names}")


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
