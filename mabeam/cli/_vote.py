"""``mabeam vote``: what it checks before it writes, the write, and the wait for the operator's verdict."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from ..errors import ConflictError, MabeamError
from ..kube.client import Kube
from ..kube.resources import COORDINATION, VOTE
from ..models.coordination import VoteSpec, answer_verdict, vote_name
from ._common import connect, namespace_of

__all__ = ["AGENT_LABEL", "SESSION_LABEL", "check_vote", "cmd_vote", "wait_for_verdict"]

SESSION_LABEL = "mabeam.io/session"
AGENT_LABEL = "mabeam.io/agent"


def check_vote(coordination: Mapping[str, Any], agent: str, choice: str) -> None:
    """Refuse, before writing, a vote the operator would not count: a choice that is not one of
    the session's options, or an agent that is not one of its participants (the resolved ones
    once the session started, else the listed ones; a selector is resolved only at the start)."""
    name = (coordination.get("metadata") or {}).get("name", "")
    spec = coordination.get("spec") or {}
    status = coordination.get("status") or {}
    options = [str(o) for o in spec.get("options") or ()]
    if options and choice not in options:
        raise MabeamError(
            f"{choice!r} is not an option of coordination {name} (options: {', '.join(options)})"
        )
    resolved = [str(p.get("name")) for p in status.get("participants") or () if isinstance(p, dict)]
    listed = [str(a) for a in (spec.get("participants") or {}).get("agents") or ()]
    names = resolved or listed
    if names and agent not in names:
        shown = ", ".join(names)
        raise MabeamError(f"{agent} is not a participant of coordination {name} (participants: {shown})")


async def wait_for_verdict(
    kube: Kube, namespace: str, name: str, generation: Any, wait: float, out: TextIO
) -> int:
    """Wait up to ``wait`` seconds for the operator's verdict on this version of the Vote."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        vote = await kube.get(VOTE, name, namespace)
        session = ((vote or {}).get("spec") or {}).get("session")
        status: dict[str, Any] = {}
        if vote is not None and session:
            # A refusal is on the Vote; a counted version is listed in its session's status.
            coordination = await kube.get(COORDINATION, session, namespace)
            status = answer_verdict(vote, coordination) or {}
        if status.get("reason") and status.get("observedGeneration") == generation:
            if status.get("accepted"):
                print(f"vote.mabeam.io/{name} counted", file=out)
                return 0
            print(
                f"Error: vote {name} refused: {status['reason']}: {status.get('message', '')}",
                file=sys.stderr,
            )
            return 1
        if loop.time() >= deadline:
            print(f"No verdict on vote {name} within {wait:g}s: is the operator running?", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)


async def cmd_vote(args: argparse.Namespace, out: TextIO) -> int:
    namespace = namespace_of(args)
    spec = VoteSpec(session=args.session, agent=args.agent, choice=args.choice).to_wire()
    name = vote_name(args.session, args.agent)
    labels = {SESSION_LABEL: args.session, AGENT_LABEL: args.agent}
    kube = connect(args)
    try:
        coordination = await kube.get(COORDINATION, args.session, namespace)
        if coordination is None:
            raise MabeamError(
                f'Coordination "{args.session}" not found in namespace {namespace}; '
                f"list them with: mabeam get coordinations -n {namespace}"
            )
        check_vote(coordination, args.agent, args.choice)
        for _ in range(3):
            current = await kube.get(VOTE, name, namespace)
            try:
                if current is None:
                    written = await kube.create(
                        VOTE,
                        {"metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec},
                    )
                    print(f"vote.mabeam.io/{name} created", file=out)
                else:
                    meta = current["metadata"]
                    body = {
                        "metadata": {
                            "name": name,
                            "namespace": namespace,
                            "labels": {**(meta.get("labels") or {}), **labels},
                            "resourceVersion": meta["resourceVersion"],
                        },
                        "spec": spec,
                    }
                    written = await kube.replace(VOTE, body)
                    print(f"vote.mabeam.io/{name} updated", file=out)
                if args.wait > 0:
                    generation = (written.get("metadata") or {}).get("generation")
                    return await wait_for_verdict(kube, namespace, name, generation, args.wait, out)
                return 0
            except ConflictError:
                continue  # someone wrote it meanwhile; read again
    finally:
        await kube.close()
    print(f"Error: vote {name} kept changing; try again", file=sys.stderr)
    return 1
